//! The geo index against the truth: the same documents in a collection with a 2dsphere index and
//! in one without must give the same answers to every `$geoWithin`, `$geoIntersects` and
//! `$nearSphere` (random points, lines and polygons, around the antimeridian and a pole too); the
//! index must read far fewer documents than the collection holds; its entries follow every write.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{IndexSpec, State};
use crate::db::geo::{radians_to_metres, EARTH_RADIUS_M};
use crate::db::{Database, DbError, FindParts, GeoNear, Limits};

fn db() -> (tempfile::TempDir, Arc<Database>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Limits::default()).unwrap());
    for c in ["plain", "geo"] {
        db.create_collection("default", c).unwrap().wait_blocking().unwrap();
    }
    (dir, db)
}

fn geo_spec() -> IndexSpec {
    IndexSpec {
        fields: IndexSpec::parse_fields("loc:2dsphere").unwrap(),
        unique: false,
        name: None,
    }
}

/// A deterministic random source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// Centres of the clusters: a city, both sides of the antimeridian, near the north pole.
const CENTRES: &[(f64, f64)] = &[
    (113.3, 23.1),
    (179.95, -16.0),
    (-179.95, -16.0),
    (30.0, 89.7),
    (0.0, 0.0),
];

fn wrap(lon: f64) -> f64 {
    if lon > 180.0 {
        lon - 360.0
    } else if lon < -180.0 {
        lon + 360.0
    } else {
        lon
    }
}

fn near_point(r: &mut Rng, spread: f64) -> (f64, f64) {
    let (lon, lat) = CENTRES[(r.next() * CENTRES.len() as f64) as usize % CENTRES.len()];
    let lat = (lat + r.range(-spread, spread)).clamp(-89.99, 89.99);
    (wrap(lon + r.range(-spread, spread)), lat)
}

fn square(lon: f64, lat: f64, half: f64) -> Value {
    let (a, b) = (wrap(lon - half), wrap(lon + half));
    let (s, n) = ((lat - half).max(-89.9), (lat + half).min(89.9));
    json!({"type": "Polygon", "coordinates": [[[a, s], [b, s], [b, n], [a, n], [a, s]]]})
}

const CATS: [&str; 3] = ["food", "tea", "book"];

fn documents() -> Vec<Value> {
    let mut r = Rng(7);
    let mut out = Vec::new();
    for i in 0..700 {
        let kind = i % 10;
        let (lon, lat) = near_point(&mut r, 0.3);
        let loc = match kind {
            0 => {
                json!({"type": "LineString", "coordinates": [[lon, lat], [wrap(lon + r.range(-0.05, 0.05)), (lat + r.range(-0.05, 0.05)).clamp(-89.9, 89.9)]]})
            }
            1 => square(lon, lat, r.range(0.001, 0.05)),
            2 => json!({"type": "MultiPoint", "coordinates": [[lon, lat], [wrap(lon + 0.01), lat]]}),
            3 => {
                json!([{"type": "Point", "coordinates": [lon, lat]}, {"type": "Point", "coordinates": [wrap(lon + 0.2), lat]}])
            }
            4 if i % 20 == 4 => Value::Null,
            _ => json!({"type": "Point", "coordinates": [lon, lat]}),
        };
        let mut doc = json!({"_id": format!("d{i:04}"), "cat": CATS[i % 3], "loc": loc});
        if i % 37 == 5 {
            doc.as_object_mut().unwrap().remove("loc");
        }
        out.push(doc);
    }
    out
}

fn queries() -> Vec<(Value, bool)> {
    let mut r = Rng(99);
    let mut out = Vec::new();
    for i in 0..60 {
        let (lon, lat) = near_point(&mut r, 0.3);
        let q = match i % 6 {
            0 => json!({"loc": {"$geoWithin": {"$geometry": square(lon, lat, r.range(0.01, 0.3))}}}),
            1 => {
                json!({"loc": {"$geoWithin": {"$centerSphere": [[lon, lat], r.range(1000.0, 30_000.0) / EARTH_RADIUS_M]}}, "cat": "food"})
            }
            2 => json!({"loc": {"$geoIntersects": {"$geometry": square(lon, lat, r.range(0.01, 0.2))}}}),
            3 => {
                json!({"loc": {"$geoIntersects": {"$geometry": {"type": "LineString", "coordinates": [[lon, lat], [wrap(lon + 0.3), lat]]}}}})
            }
            4 => {
                json!({"loc": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [lon, lat]}, "$maxDistance": r.range(500.0, 40_000.0)}}})
            }
            _ => {
                json!({"loc": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [lon, lat]}, "$minDistance": r.range(0.0, 5000.0)}}, "cat": {"$ne": "tea"}})
            }
        };
        out.push((q, i % 6 >= 4));
    }
    // fixed cases: across the antimeridian, around the pole, the whole world
    out.push((
        json!({"loc": {"$geoWithin": {"$geometry": square(180.0, -16.0, 0.2)}}}),
        false,
    ));
    out.push((
        json!({"loc": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 89.5], [120, 89.5], [-120, 89.5], [0, 89.5]]]}}}}),
        false,
    ));
    out.push((
        json!({"loc": {"$geoIntersects": {"$geometry": {"type": "Point", "coordinates": [30, 89.7]}}}}),
        false,
    ));
    out.push((
        json!({"loc": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [180, -16]}}}}),
        true,
    ));
    out.push((
        json!({"loc": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [-60, -40]}}}}),
        true,
    ));
    out
}

fn run(db: &Database, coll: &str, q: &Value, order: Value, limit: u64) -> Vec<Value> {
    let f = db
        .find_spec(FindParts {
            query: Some(q),
            order: Some(&order),
            limit: Some(&json!(limit)),
            ..Default::default()
        })
        .unwrap();
    db.find("default", coll, &f)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get()).unwrap())
        .collect()
}

fn explain(db: &Database, coll: &str, q: &Value, limit: u64) -> Value {
    let f = db
        .find_spec(FindParts {
            query: Some(q),
            limit: Some(&json!(limit)),
            ..Default::default()
        })
        .unwrap();
    db.explain("default", coll, &f).unwrap()
}

fn ids(docs: &[Value]) -> Vec<String> {
    docs.iter().map(|d| d["_id"].as_str().unwrap().to_string()).collect()
}

/// Distances (metres) from the `$nearSphere` point of `q` to each document, in result order.
fn distances(q: &Value, docs: &[Value]) -> Vec<f64> {
    let filter = crate::db::query::Filter::parse(q).unwrap();
    docs.iter()
        .map(|d| radians_to_metres(filter.distance(d).unwrap()))
        .collect()
}

fn load(db: &Arc<Database>) {
    let docs = documents();
    for c in ["plain", "geo"] {
        db.insert("default", c, docs.clone())
            .unwrap()
            .1
            .wait_blocking()
            .unwrap();
    }
    let def = db.create_index("default", "geo", &geo_spec(), false).unwrap();
    assert_eq!(def.name, "loc_2dsphere");
    let ix = db.indexes("default", "geo").unwrap();
    assert_eq!(ix.list[0].def.state, State::Ready, "{:?}", ix.list[0].def.error);
}

#[test]
fn the_geo_index_answers_like_a_full_scan() {
    let (_dir, db) = db();
    load(&db);
    let mut nonempty = 0;
    for (q, near) in queries() {
        let plan = explain(&db, "geo", &q, 1000);
        let want = if near { "geoNear" } else { "index" };
        assert_eq!(plan["plan"]["type"], want, "{q}: {plan}");
        assert_eq!(explain(&db, "plain", &q, 1000)["plan"]["type"], "collectionScan");
        if near {
            for limit in [1000, 7] {
                let a = run(&db, "plain", &q, Value::Null, limit);
                let b = run(&db, "geo", &q, Value::Null, limit);
                let (da, db_) = (distances(&q, &a), distances(&q, &b));
                assert_eq!(a.len(), b.len(), "{q} limit {limit}");
                for (x, y) in da.iter().zip(&db_) {
                    assert!((x - y).abs() < 1e-6, "{q}: {da:?} vs {db_:?}");
                }
                assert!(db_.windows(2).all(|w| w[0] <= w[1]), "nearest first: {db_:?}");
                // the same documents, apart from ties at the last distance
                let last = db_.last().copied().unwrap_or(0.0);
                let below = |docs: &[Value], ds: &[f64]| {
                    let mut v: Vec<String> = ids(docs)
                        .into_iter()
                        .zip(ds)
                        .filter(|(_, d)| **d < last)
                        .map(|(i, _)| i)
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(below(&a, &da), below(&b, &db_), "{q} limit {limit}");
                nonempty += usize::from(!a.is_empty());
            }
            // an explicit order replaces the distance order
            let by_id = json!([{"field": "_id", "direction": "asc"}]);
            assert_eq!(
                ids(&run(&db, "plain", &q, by_id.clone(), 1000)),
                ids(&run(&db, "geo", &q, by_id, 1000))
            );
        } else {
            let by_id = json!([{"field": "_id", "direction": "asc"}]);
            let a = ids(&run(&db, "plain", &q, by_id.clone(), 1000));
            let b = ids(&run(&db, "geo", &q, by_id, 1000));
            assert_eq!(a, b, "{q}");
            let f = db.filter(Some(&q)).unwrap();
            assert_eq!(db.count("default", "geo", &f).unwrap(), a.len() as u64);
            nonempty += usize::from(!a.is_empty());
        }
    }
    assert!(nonempty > 40, "the queries must find something: {nonempty}");
}

#[test]
fn the_geo_index_reads_only_the_neighbourhood() {
    let (_dir, db) = db();
    load(&db);
    // 2 km around a point of the Guangzhou cluster (140 documents within ~30 km)
    let q = json!({"loc": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [113.3, 23.1]}, "$maxDistance": 2000}}});
    let e = explain(&db, "geo", &q, 100);
    let plain = explain(&db, "plain", &q, 100);
    assert_eq!(plain["docsExamined"], 700);
    assert_eq!(e["returned"], plain["returned"]);
    assert!(e["docsExamined"].as_u64().unwrap() < 30, "{e}");
    // the nearest 3 with no bound: the search stops once they are certain
    let q = json!({"loc": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [113.3, 23.1]}}}});
    let e = explain(&db, "geo", &q, 3);
    assert_eq!(e["returned"], 3);
    assert!(e["docsExamined"].as_u64().unwrap() < 100, "{e}");
    let w = json!({"loc": {"$geoWithin": {"$centerSphere": [[113.3, 23.1], 2000.0 / EARTH_RADIUS_M]}}});
    let e = explain(&db, "geo", &w, 100);
    assert!(e["docsExamined"].as_u64().unwrap() < 40, "{e}");
    assert_eq!(e["returned"], explain(&db, "plain", &w, 100)["returned"]);
}

#[test]
fn geo_near_for_aggregation_returns_distances_in_metres() {
    let (_dir, db) = db();
    load(&db);
    let near = json!([113.3, 23.1]);
    for coll in ["plain", "geo"] {
        let req = GeoNear {
            near: &near,
            key: Some("loc"),
            min_distance: Some(10.0),
            max_distance: Some(20_000.0),
            query: Some(&json!({"cat": "food"})),
            limit: 5,
            locations: false,
        };
        let out = db.geo_near("default", coll, &req).unwrap();
        assert!(!out.is_empty());
        assert!(out.windows(2).all(|w| w[0].1 <= w[1].1));
        for (doc, d) in &out {
            assert_eq!(doc["cat"], "food");
            assert!((10.0..=20_000.0).contains(d), "{d}");
        }
    }
    // no key: the only 2dsphere index's field; none: a clear error
    let req = GeoNear {
        near: &json!({"type": "Point", "coordinates": [113.3, 23.1]}),
        key: None,
        min_distance: None,
        max_distance: None,
        query: None,
        limit: 2,
        locations: false,
    };
    assert_eq!(db.geo_near("default", "geo", &req).unwrap().len(), 2);
    let e = db.geo_near("default", "plain", &req).unwrap_err();
    assert!(e.to_string().contains("no 2dsphere index"), "{e}");
}

fn entries(db: &Database, coll: &str) -> u64 {
    db.list_indexes("default", coll).unwrap()[0]["entries"]
        .as_u64()
        .unwrap()
}

fn near_ids(db: &Database, lon: f64, lat: f64, max: f64) -> Vec<String> {
    let q = json!({"loc": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [lon, lat]}, "$maxDistance": max}}});
    ids(&run(db, "geo", &q, Value::Null, 100))
}

#[test]
fn entries_follow_writes_and_bad_geojson_is_refused() {
    let (_dir, db) = db();
    db.create_index("default", "geo", &geo_spec(), false).unwrap();
    let ins = |docs: Value| -> Result<(), DbError> {
        db.insert("default", "geo", docs.as_array().unwrap().clone())?
            .1
            .wait_blocking()
    };
    ins(json!([
        {"_id": "a", "loc": {"type": "Point", "coordinates": [10, 10]}},
        {"_id": "b", "name": "no location"},
        {"_id": "c", "loc": null},
    ]))
    .unwrap();
    assert_eq!(entries(&db, "geo"), 1);
    assert_eq!(near_ids(&db, 10.0, 10.0, 10.0), ["a"]);
    // a move
    let f = db.filter(Some(&json!({"_id": "a"}))).unwrap();
    let u = db
        .update_spec(&json!({"loc": {"type": "Point", "coordinates": [20, 20]}}), true)
        .unwrap();
    db.update("default", "geo", &f, &u, false, false)
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
    assert!(near_ids(&db, 10.0, 10.0, 1000.0).is_empty());
    assert_eq!(near_ids(&db, 20.0, 20.0, 10.0), ["a"]);
    // invalid GeoJSON under a 2dsphere index: refused, nothing written
    for bad in [
        json!({"_id": "x", "loc": {"type": "Point", "coordinates": [200, 0]}}),
        json!({"_id": "x", "loc": "Guangzhou"}),
        json!({"_id": "x", "loc": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}),
    ] {
        let e = ins(json!([bad])).unwrap_err();
        assert!(matches!(e, DbError::InvalidGeometry(_)), "{e}");
        assert!(e.to_string().contains("loc_2dsphere"), "{e}");
    }
    let f = db.filter(Some(&json!({"_id": "a"}))).unwrap();
    let u = db.update_spec(&json!({"loc": [1, 2]}), true).unwrap();
    assert!(matches!(
        db.update("default", "geo", &f, &u, false, false),
        Err(DbError::InvalidGeometry(_))
    ));
    assert_eq!(near_ids(&db, 20.0, 20.0, 10.0), ["a"]);
    // remove
    let f = db.filter(Some(&json!({"_id": "a"}))).unwrap();
    db.remove("default", "geo", &f, false)
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
    assert_eq!(entries(&db, "geo"), 0);
}

#[test]
fn a_build_over_bad_geojson_fails_and_a_spec_is_checked() {
    let (_dir, db) = db();
    db.insert(
        "default",
        "plain",
        vec![
            json!({"_id": "a", "loc": {"type": "Point", "coordinates": [1, 1]}}),
            json!({"_id": "b", "loc": [1, 2]}),
        ],
    )
    .unwrap()
    .1
    .wait_blocking()
    .unwrap();
    db.create_index("default", "plain", &geo_spec(), false).unwrap();
    let ix = db.indexes("default", "plain").unwrap();
    assert_eq!(ix.list[0].def.state, State::Failed);
    assert!(
        ix.list[0].def.error.as_deref().unwrap_or("").contains("`b`"),
        "{:?}",
        ix.list[0].def.error
    );
    for (fields, unique, why) in [
        ("loc:2dsphere,cat", false, "exactly one field"),
        ("loc:2dsphere", true, "cannot be unique"),
    ] {
        let spec = IndexSpec {
            fields: IndexSpec::parse_fields(fields).unwrap(),
            unique,
            name: None,
        };
        assert!(spec.validate().unwrap_err().to_string().contains(why));
    }
    assert!(IndexSpec::parse_fields("loc:2d")
        .unwrap_err()
        .to_string()
        .contains("2dsphere"));
}
