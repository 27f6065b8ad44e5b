//! Geometry on the sphere: parsing and validation, predicates on every geometry type, distances,
//! and the antimeridian and pole cases a planar implementation gets wrong.

use serde_json::{json, Value};

use super::*;

fn g(v: Value) -> Geometry {
    Geometry::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn pt(lon: f64, lat: f64) -> Geometry {
    g(json!({"type": "Point", "coordinates": [lon, lat]}))
}

fn p(lon: f64, lat: f64) -> Point {
    LatLng::from_degrees(lat, lon).to_point()
}

fn square(lon0: f64, lat0: f64, lon1: f64, lat1: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]})
}

fn within(geom: &Geometry, region: Value) -> bool {
    geom.within(&g(region).into_within().unwrap())
}

#[test]
fn bad_geojson_is_refused_with_a_reason() {
    let cases = [
        (json!("x"), "is an object"),
        (json!({"coordinates": [1, 2]}), "string `type`"),
        (json!({"type": "Circle", "coordinates": [1, 2]}), "unknown GeoJSON type"),
        (json!({"type": "Point"}), "needs `coordinates`"),
        (json!({"type": "Point", "coordinates": [1]}), "[longitude, latitude]"),
        (json!({"type": "Point", "coordinates": ["1", 2]}), "of numbers"),
        (json!({"type": "Point", "coordinates": [181, 0]}), "longitude 181"),
        (json!({"type": "Point", "coordinates": [0, -90.5]}), "latitude -90.5"),
        (json!({"type": "LineString", "coordinates": [[1, 1]]}), "two different"),
        (
            json!({"type": "LineString", "coordinates": [[1, 1], [1, 1]]}),
            "two different",
        ),
        (
            json!({"type": "LineString", "coordinates": [[0, 0], [180, 0]]}),
            "antipodal",
        ),
        (
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
            "closed",
        ),
        (
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}),
            "four positions",
        ),
        (
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 0], [0, 0]]]}),
            "three different",
        ),
        (json!({"type": "Polygon", "coordinates": []}), "at least one ring"),
        (
            // a bow tie
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}),
            "cross itself",
        ),
        (
            json!({"type": "Polygon", "coordinates": [square(0.0, 0.0, 1.0, 1.0)["coordinates"][0], square(5.0, 5.0, 6.0, 6.0)["coordinates"][0]]}),
            "not inside its exterior ring",
        ),
        (
            json!({"type": "Polygon", "coordinates": [
                square(0.0, 0.0, 10.0, 10.0)["coordinates"][0],
                square(1.0, 1.0, 5.0, 5.0)["coordinates"][0],
                square(4.0, 4.0, 6.0, 6.0)["coordinates"][0]]}),
            "overlaps another hole",
        ),
        (json!({"type": "MultiPoint", "coordinates": []}), "at least one member"),
        (
            json!({"type": "GeometryCollection", "geometries": [{"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]}]}]}),
            "cannot contain another",
        ),
        (json!({"type": "GeometryCollection"}), "needs `geometries`"),
    ];
    for (v, want) in cases {
        match Geometry::parse(&v) {
            Ok(_) => panic!("{v} was accepted"),
            Err(e) => assert!(e.contains(want), "{v}: `{e}` does not say `{want}`"),
        }
    }
    let many: Vec<Value> = (0..MAX_VERTICES + 1).map(|i| json!([i as f64 * 1e-6, 0])).collect();
    let e = Geometry::parse(&json!({"type": "MultiPoint", "coordinates": many})).unwrap_err();
    assert!(e.contains("at most"), "{e}");
}

#[test]
fn every_type_parses_and_extra_altitude_and_repeated_positions_are_tolerated() {
    for v in [
        json!({"type": "Point", "coordinates": [113.3, 23.1, 12.0]}),
        json!({"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]}),
        json!({"type": "LineString", "coordinates": [[0, 0], [0, 0], [1, 1]]}),
        json!({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3]]]}),
        square(0.0, 0.0, 1.0, 1.0),
        json!({"type": "MultiPolygon", "coordinates": [square(0.0, 0.0, 1.0, 1.0)["coordinates"], square(2.0, 2.0, 3.0, 3.0)["coordinates"]]}),
        json!({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]}, square(2.0, 2.0, 3.0, 3.0)]}),
    ] {
        g(v);
    }
    assert!(Geometry::of_value(&json!({"lng": 1, "lat": 2})).is_none());
    assert!(Geometry::of_value(&json!({"type": "Point", "coordinates": [500, 0]})).is_none());
}

#[test]
fn point_in_polygon_with_holes_and_either_orientation() {
    let outer = square(0.0, 0.0, 10.0, 10.0)["coordinates"][0].clone();
    let hole = square(4.0, 4.0, 6.0, 6.0)["coordinates"][0].clone();
    let with_hole = json!({"type": "Polygon", "coordinates": [outer, hole]});
    assert!(within(&pt(2.0, 2.0), with_hole.clone()));
    assert!(!within(&pt(5.0, 5.0), with_hole.clone()), "inside the hole");
    assert!(!within(&pt(11.0, 5.0), with_hole));
    // clockwise ring: still the small square, not the rest of the world
    let cw = json!({"type": "Polygon", "coordinates": [[[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]]});
    assert!(within(&pt(5.0, 5.0), cw.clone()));
    assert!(!within(&pt(50.0, 5.0), cw));
}

#[test]
fn edges_are_great_circles_so_polygons_cross_the_antimeridian() {
    let across = square(170.0, -10.0, -170.0, 10.0);
    assert!(within(&pt(180.0, 0.0), across.clone()));
    assert!(within(&pt(-175.0, 5.0), across.clone()));
    assert!(within(&pt(175.0, -5.0), across.clone()));
    assert!(
        !within(&pt(0.0, 0.0), across.clone()),
        "a planar reading would contain lon 0"
    );
    assert!(!within(&pt(160.0, 0.0), across));
    // an edge from (-60, 60) to (60, 60) bulges towards the pole (it crosses lon 0 at lat 73.9):
    // between lats 60 and 70 on a map, but not on the sphere
    let band = json!({"type": "Polygon", "coordinates": [[[-60, 60], [60, 60], [60, 70], [-60, 70], [-60, 60]]]});
    assert!(
        !within(&pt(0.0, 65.0), band.clone()),
        "a planar reading would contain it"
    );
    assert!(within(&pt(0.0, 75.0), band.clone()));
    assert!(within(&pt(0.0, 78.0), band), "a planar reading would not contain it");
}

#[test]
fn a_ring_around_a_pole_and_points_on_the_pole() {
    // a ring at latitude 80 holds the north pole (the smaller side)
    let cap = json!({"type": "Polygon", "coordinates": [[[0, 80], [90, 80], [180, 80], [-90, 80], [0, 80]]]});
    assert!(within(&pt(0.0, 90.0), cap.clone()));
    assert!(within(&pt(123.0, 90.0), cap.clone()), "every longitude names the pole");
    assert!(within(&pt(45.0, 85.0), cap.clone()));
    assert!(!within(&pt(45.0, 70.0), cap.clone()));
    assert!(!within(&pt(0.0, -90.0), cap));
    assert!(pt(0.0, 90.0).intersects(&pt(77.0, 90.0)));
    assert!(pt(180.0, 10.0).intersects(&pt(-180.0, 10.0)));
    assert!(pt(0.0, 90.0).distance(p(100.0, 90.0)) < 1e-12);
}

#[test]
fn distances_are_haversine_on_mongodb_radius() {
    // one degree of a great circle
    let d = radians_to_metres(pt(0.0, 0.0).distance(p(1.0, 0.0)));
    assert!((d - 111_318.8).abs() < 1.0, "{d}");
    // across the antimeridian: 2 degrees, not 358
    let d = radians_to_metres(pt(179.0, 0.0).distance(p(-179.0, 0.0)));
    assert!((d - 2.0 * 111_318.8).abs() < 2.0, "{d}");
    // Guangzhou tower to Canton Fair: about 2.9 km
    let d = radians_to_metres(pt(113.3245, 23.1064).distance(p(113.3688, 23.1023)));
    assert!((4400.0..4600.0).contains(&d), "{d}");
    // to a line: the perpendicular, to a polygon: 0 inside, the nearest edge outside
    let line = g(json!({"type": "LineString", "coordinates": [[0, -1], [0, 1]]}));
    let d = radians_to_metres(line.distance(p(1.0, 0.0)));
    assert!((d - 111_318.8).abs() < 1.0, "{d}");
    let sq = g(square(0.0, 0.0, 1.0, 1.0));
    assert_eq!(sq.distance(p(0.5, 0.5)), 0.0);
    let d = radians_to_metres(sq.distance(p(0.5, -1.0)));
    assert!((d - 111_318.8).abs() < 50.0, "{d}");
    // a multi-geometry: its nearest part
    let mp = g(json!({"type": "MultiPoint", "coordinates": [[10, 0], [2, 0]]}));
    let d = radians_to_metres(mp.distance(p(0.0, 0.0)));
    assert!((d - 2.0 * 111_318.8).abs() < 2.0, "{d}");
}

#[test]
fn intersects_between_every_pair_of_types() {
    let sq = g(square(0.0, 0.0, 10.0, 10.0));
    let cross = g(json!({"type": "LineString", "coordinates": [[-5, 5], [15, 5]]}));
    let outside_line = g(json!({"type": "LineString", "coordinates": [[-5, 20], [15, 20]]}));
    let vertical = g(json!({"type": "LineString", "coordinates": [[5, -5], [5, 15]]}));
    let other_sq = g(square(5.0, 5.0, 15.0, 15.0));
    let far_sq = g(square(50.0, 50.0, 60.0, 60.0));
    let inner_sq = g(square(2.0, 2.0, 3.0, 3.0));
    let mpt = g(json!({"type": "MultiPoint", "coordinates": [[100, 0], [3, 3]]}));
    let mline = g(json!({"type": "MultiLineString", "coordinates": [[[100, 0], [101, 1]], [[-5, 5], [15, 5]]]}));
    let mpoly = g(
        json!({"type": "MultiPolygon", "coordinates": [square(50.0, 50.0, 60.0, 60.0)["coordinates"], square(8.0, 8.0, 12.0, 12.0)["coordinates"]]}),
    );
    let coll = g(
        json!({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [70, 70]}, {"type": "LineString", "coordinates": [[5, -5], [5, 15]]}]}),
    );
    let yes = [
        (&pt(5.0, 5.0), &sq),
        (&cross, &sq),
        (&cross, &vertical),
        (&other_sq, &sq),
        (&inner_sq, &sq),
        (&mpt, &sq),
        (&mline, &sq),
        (&mpoly, &sq),
        (&coll, &sq),
        (&coll, &cross),
    ];
    for (a, b) in yes {
        assert!(a.intersects(b), "{a:?} ∩ {b:?}");
        assert!(b.intersects(a), "{b:?} ∩ {a:?} (symmetric)");
    }
    let no = [
        (&pt(20.0, 5.0), &sq),
        (&outside_line, &sq),
        (&outside_line, &cross),
        (&far_sq, &sq),
        (&pt(1.0, 1.0), &pt(1.0, 1.000001)),
        (&far_sq, &cross),
    ];
    for (a, b) in no {
        assert!(!a.intersects(b), "{a:?} ∩ {b:?}");
        assert!(!b.intersects(a), "{b:?} ∩ {a:?}");
    }
}

#[test]
fn within_polygons_and_caps_for_every_type() {
    let region = square(0.0, 0.0, 10.0, 10.0);
    assert!(within(
        &g(json!({"type": "LineString", "coordinates": [[1, 1], [9, 9]]})),
        region.clone()
    ));
    assert!(!within(
        &g(json!({"type": "LineString", "coordinates": [[1, 1], [19, 9]]})),
        region.clone()
    ));
    assert!(within(&g(square(2.0, 2.0, 3.0, 3.0)), region.clone()));
    assert!(!within(&g(square(2.0, 2.0, 13.0, 3.0)), region.clone()));
    assert!(within(
        &g(json!({"type": "MultiPoint", "coordinates": [[1, 1], [2, 2]]})),
        region.clone()
    ));
    assert!(!within(
        &g(json!({"type": "MultiPoint", "coordinates": [[1, 1], [20, 2]]})),
        region.clone()
    ));
    // a MultiPolygon region: each part inside one of its polygons
    let two = json!({"type": "MultiPolygon", "coordinates": [square(0.0, 0.0, 1.0, 1.0)["coordinates"], square(5.0, 5.0, 6.0, 6.0)["coordinates"]]});
    assert!(within(
        &g(json!({"type": "MultiPoint", "coordinates": [[0.5, 0.5], [5.5, 5.5]]})),
        two.clone()
    ));
    assert!(!within(
        &g(json!({"type": "MultiPoint", "coordinates": [[0.5, 0.5], [3, 3]]})),
        two
    ));
    // a cap: 200 km around (0, 0)
    let cap = Within::Cap {
        center: p(0.0, 0.0),
        radius: metres_to_radians(200_000.0),
    };
    assert!(pt(1.0, 1.0).within(&cap));
    assert!(!pt(2.0, 0.0).within(&cap));
    assert!(g(json!({"type": "LineString", "coordinates": [[-1, 0], [1, 0]]})).within(&cap));
    assert!(!g(json!({"type": "LineString", "coordinates": [[-1, 0], [3, 0]]})).within(&cap));
    assert!(g(square(-0.5, -0.5, 0.5, 0.5)).within(&cap));
    // a cap larger than a hemisphere still works
    let big = Within::Cap {
        center: p(0.0, 0.0),
        radius: 2.0,
    };
    assert!(pt(90.0, 0.0).within(&big));
    assert!(!pt(180.0, 0.0).within(&big));
    // LineString / Point are not regions
    assert!(g(json!({"type": "Point", "coordinates": [0, 0]}))
        .into_within()
        .is_err());
}

#[test]
fn index_cells_cover_the_geometry_and_query_cells_find_them() {
    let point = pt(113.3, 23.1);
    let cells = point.index_cells();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].level(), Level::MAX);
    let sq = g(square(113.0, 23.0, 113.5, 23.5));
    let cells = sq.index_cells();
    assert!(!cells.is_empty() && cells.len() <= COVER_MAX_CELLS);
    assert!(cells.iter().all(|c| c.level().as_u8() <= COVER_MAX_LEVEL));
    let cover = CellUnion::from_cell_ids(cells);
    for (lon, lat) in [(113.0, 23.0), (113.25, 23.25), (113.5, 23.5)] {
        assert!(cover.contains_point(p(lon, lat)));
    }
    // a cap's covering contains every point of the cap
    let q = cap_cells(p(113.3, 23.1), metres_to_radians(2000.0));
    assert!(q.len() <= QUERY_MAX_CELLS);
    assert!(CellUnion::from_cell_ids(q).contains_point(p(113.31, 23.105)));
    // many points: coarser cells, never more than the cap
    let many: Vec<Value> = (0..2000).map(|i| json!([i as f64 * 0.01, 0])).collect();
    let mp = g(json!({"type": "MultiPoint", "coordinates": many}));
    let cells = mp.index_cells();
    assert!(cells.len() <= MAX_CELLS_PER_DOC, "{}", cells.len());
    let cover = CellUnion::from_cell_ids(cells);
    assert!(cover.contains_point(p(0.0, 0.0)) && cover.contains_point(p(19.99, 0.0)));
    // the whole sphere
    assert_eq!(cap_cells(p(0.0, 0.0), 4.0).len(), 6);
}

#[test]
fn random_rings_anywhere_never_panic() {
    let mut x: u64 = 3;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut valid = Vec::new();
    for i in 0..400 {
        let n = 3 + i % 6;
        let (lon0, lat0) = (next() * 360.0 - 180.0, next() * 180.0 - 90.0);
        let spread = [0.001, 1.0, 40.0, 170.0][i % 4];
        let mut ring: Vec<Value> = (0..n)
            .map(|_| {
                let lon = (lon0 + (next() - 0.5) * spread).clamp(-180.0, 180.0);
                let lat = (lat0 + (next() - 0.5) * spread).clamp(-90.0, 90.0);
                json!([lon, lat])
            })
            .collect();
        ring.push(ring[0].clone());
        let line = json!({"type": "LineString", "coordinates": ring[..2].to_vec()});
        for v in [json!({"type": "Polygon", "coordinates": [ring]}), line] {
            if let Ok(geom) = Geometry::parse(&v) {
                valid.push(geom);
            }
        }
    }
    assert!(valid.len() > 300, "{}", valid.len());
    for (i, a) in valid.iter().enumerate() {
        let b = &valid[(i * 7 + 3) % valid.len()];
        let _ = a.intersects(b);
        let _ = a.distance(p(next() * 360.0 - 180.0, next() * 180.0 - 90.0));
        let _ = a.index_cells();
        let _ = a.query_cells();
        if let Ok(w) = b.clone().into_within() {
            let _ = a.within(&w);
        }
    }
}
