//! `$geoNear` over a real store, with and without a 2dsphere index: distances against a haversine
//! computed here, order, bounds, `query` (with `$expr`), `distanceMultiplier`, `includeLocs`,
//! `key`, legacy pairs in radians, the stages after it, the source scan the rules narrow, the
//! memory budget, and every kind of bad input.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::db::index::IndexSpec;
use crate::db::{Budget, Database, DbError, GeoNear, Limits};

const ENV: &str = "default";
const R: f64 = 6_378_100.0;
const CENTRE: [f64; 2] = [113.3, 23.1];

/// Great-circle metres between two [lon, lat] points (haversine, MongoDB's Earth radius).
fn haversine(a: [f64; 2], b: [f64; 2]) -> f64 {
    let (l1, p1, l2, p2) = (
        a[0].to_radians(),
        a[1].to_radians(),
        b[0].to_radians(),
        b[1].to_radians(),
    );
    let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * ((l2 - l1) / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().asin()
}

/// `n` places within about ±11 km of the centre (deterministic); every 7th has no location,
/// every 5th has a second location list `alt`, every 3rd is a café.
fn places(n: usize, pad: usize) -> Vec<Value> {
    let mut x: u64 = 7;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let p = [CENTRE[0] + 0.2 * (next() - 0.5), CENTRE[1] + 0.2 * (next() - 0.5)];
            let mut d = json!({"_id": format!("p{i:04}"), "cat": if i % 3 == 0 { "cafe" } else { "shop" }, "n": i});
            if i % 7 != 6 {
                d["loc"] = json!({"type": "Point", "coordinates": p});
            }
            if i % 5 == 0 {
                let q = [p[0] + 0.01, p[1]];
                d["alt"] =
                    json!([{"type": "Point", "coordinates": q}, {"type": "Point", "coordinates": [p[0] - 0.05, p[1]]}]);
            }
            if pad > 0 {
                d["pad"] = json!("x".repeat(pad));
            }
            d
        })
        .collect()
}

fn geo_index(field: &str) -> IndexSpec {
    IndexSpec {
        fields: IndexSpec::parse_fields(&format!("{field}:2dsphere")).unwrap(),
        unique: false,
        name: None,
    }
}

/// `indexed` (2dsphere on `loc`) and `plain` (no index) with the same places.
fn store_with(limits: Limits, n: usize, pad: usize) -> (TempDir, Arc<Database>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), limits).unwrap());
    for c in ["indexed", "plain"] {
        db.create_collection(ENV, c).unwrap().wait_blocking().unwrap();
        db.insert(ENV, c, places(n, pad)).unwrap().1.wait_blocking().unwrap();
    }
    db.create_index(ENV, "indexed", &geo_index("loc"), false).unwrap();
    (dir, db)
}

fn store() -> (TempDir, Arc<Database>) {
    store_with(Limits::default(), 300, 0)
}

fn run_on(db: &Database, coll: &str, pipeline: Value) -> Result<Vec<Value>, DbError> {
    let p = db.pipeline(&pipeline)?;
    let out = db.aggregate(ENV, coll, &p)?;
    Ok(out.iter().map(|r| serde_json::from_str(r.get()).unwrap()).collect())
}

fn run(db: &Database, coll: &str, pipeline: Value) -> Vec<Value> {
    run_on(db, coll, pipeline.clone()).unwrap_or_else(|e| panic!("{pipeline} failed: {e}"))
}

/// The same pipeline on both collections (`key` named for the plain one): the same result.
fn both(db: &Database, stage: Value, rest: Value) -> Vec<Value> {
    let mut keyed = stage.clone();
    keyed["$geoNear"]["key"] = json!("loc");
    let mut a = vec![stage];
    a.extend(rest.as_array().unwrap().iter().cloned());
    let mut b = vec![keyed];
    b.extend(rest.as_array().unwrap().iter().cloned());
    let x = run(db, "indexed", Value::Array(a));
    let y = run(db, "plain", Value::Array(b));
    assert_eq!(x, y);
    x
}

fn point(p: [f64; 2]) -> Value {
    json!({"type": "Point", "coordinates": p})
}

fn coords(v: &Value) -> [f64; 2] {
    [
        v["coordinates"][0].as_f64().unwrap(),
        v["coordinates"][1].as_f64().unwrap(),
    ]
}

fn ids(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["_id"].as_str().unwrap_or("?")).collect()
}

fn fails(db: &Database, coll: &str, pipeline: Value) -> DbError {
    match run_on(db, coll, pipeline.clone()) {
        Err(e) => e,
        Ok(v) => panic!("{pipeline} should fail, gave {v:?}"),
    }
}

#[test]
fn distances_are_great_circle_metres_nearest_first() {
    let (_d, db) = store();
    let out = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "dist", "spherical": true}}),
        json!([]),
    );
    // every place with a location, none without
    assert_eq!(out.len(), (0..300).filter(|i| i % 7 != 6).count());
    for d in &out {
        let want = haversine(CENTRE, coords(&d["loc"]));
        let got = d["dist"].as_f64().unwrap();
        assert!((got - want).abs() < 1.0, "{}: {got} vs {want}", d["_id"]);
    }
    assert!(out.windows(2).all(|w| w[0]["dist"].as_f64() <= w[1]["dist"].as_f64()));
    // the documents are whole, with the distance added
    let first = &out[0];
    assert!(first["cat"].is_string() && first["n"].is_number(), "{first}");
    // a place exactly at the point is 0 m away
    let at = coords(&out[3]["loc"]);
    let top = both(
        &db,
        json!({"$geoNear": {"near": point(at), "distanceField": "d"}}),
        json!([{"$limit": 1}]),
    );
    assert_eq!(
        (top[0]["_id"].clone(), top[0]["d"].as_f64()),
        (out[3]["_id"].clone(), Some(0.0))
    );
}

#[test]
fn bounds_query_and_multiplier() {
    let (_d, db) = store();
    let all = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d"}}),
        json!([]),
    );
    let within = |lo: f64, hi: f64| -> Vec<&str> {
        all.iter()
            .filter(|d| (lo..=hi).contains(&d["d"].as_f64().unwrap()))
            .map(|d| d["_id"].as_str().unwrap())
            .collect()
    };
    let out = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d", "minDistance": 2000, "maxDistance": 5000}}),
        json!([]),
    );
    assert!(!out.is_empty());
    assert_eq!(ids(&out), within(2000.0, 5000.0));
    // query: only cafés, in the same order
    let out = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d", "query": {"cat": "cafe"}, "maxDistance": 5000}}),
        json!([]),
    );
    let cafes: Vec<&str> = all
        .iter()
        .filter(|d| d["cat"] == "cafe" && d["d"].as_f64().unwrap() <= 5000.0)
        .map(|d| d["_id"].as_str().unwrap())
        .collect();
    assert!(!cafes.is_empty());
    assert_eq!(ids(&out), cafes);
    // a query with `$expr` (tested on the stored document, before the distance is added)
    let out = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d",
            "query": {"cat": "cafe", "$expr": {"$lt": ["$n", 100]}}}}),
        json!([{"$limit": 4}]),
    );
    let small: Vec<&str> = all
        .iter()
        .filter(|d| d["cat"] == "cafe" && d["n"].as_i64().unwrap() < 100)
        .take(4)
        .map(|d| d["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids(&out), small);
    // distanceMultiplier: kilometres
    let out = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "km", "distanceMultiplier": 0.001}}),
        json!([{"$limit": 10}]),
    );
    for (d, full) in out.iter().zip(&all) {
        assert_eq!(d["_id"], full["_id"]);
        assert!((d["km"].as_f64().unwrap() - full["d"].as_f64().unwrap() / 1000.0).abs() < 1e-9);
    }
    // limit (CloudBase's option): at most that many
    let out = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d", "limit": 3}}),
        json!([]),
    );
    assert_eq!(ids(&out), ids(&all[..3]));
}

#[test]
fn include_locs_key_and_dotted_fields() {
    let (_d, db) = store();
    // `alt` holds two points per document; includeLocs shows the nearer one
    let out = run(
        &db,
        "plain",
        json!([{"$geoNear": {"near": point(CENTRE), "distanceField": "at.dist", "includeLocs": "at.where", "key": "alt"}}]),
    );
    assert_eq!(out.len(), 60);
    for d in &out {
        let pts: Vec<[f64; 2]> = d["alt"].as_array().unwrap().iter().map(coords).collect();
        let (best, dist) = pts
            .iter()
            .map(|p| (*p, haversine(CENTRE, *p)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert_eq!(coords(&d["at"]["where"]), best, "{d}");
        assert!((d["at"]["dist"].as_f64().unwrap() - dist).abs() < 1.0);
    }
    // a dotted distanceField goes into an existing object without losing its other fields
    let out = run(
        &db,
        "indexed",
        json!([{"$geoNear": {"near": point(CENTRE), "distanceField": "loc.dist"}}, {"$limit": 1}]),
    );
    assert_eq!(out[0]["loc"]["type"], "Point");
    assert!(out[0]["loc"]["dist"].is_f64(), "{}", out[0]);
    // two 2dsphere indexes: `key` picks one; without it the stage refuses to guess
    db.create_index(ENV, "indexed", &geo_index("alt"), false).unwrap();
    let e = fails(
        &db,
        "indexed",
        json!([{"$geoNear": {"near": point(CENTRE), "distanceField": "d"}}]),
    );
    assert!(
        matches!(&e, DbError::InvalidCommand(m) if m.contains("several 2dsphere indexes")),
        "{e}"
    );
    let by_alt = run(
        &db,
        "indexed",
        json!([{"$geoNear": {"near": point(CENTRE), "distanceField": "d", "key": "alt", "includeLocs": "l"}}]),
    );
    assert_eq!(by_alt.len(), 60);
    assert!(by_alt.iter().all(|d| d["alt"].as_array().unwrap().contains(&d["l"])));
    let by_loc = run(
        &db,
        "indexed",
        json!([{"$geoNear": {"near": point(CENTRE), "distanceField": "d", "key": "loc", "includeLocs": "l"}}]),
    );
    assert_eq!(by_loc.len(), 258);
    assert!(by_loc.iter().all(|d| d["l"] == d["loc"]));
}

#[test]
fn legacy_pairs_measure_in_radians() {
    let (_d, db) = store();
    let metres = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d"}}),
        json!([]),
    );
    let out = both(
        &db,
        json!({"$geoNear": {"near": CENTRE, "spherical": true, "distanceField": "d", "maxDistance": 3000.0 / R}}),
        json!([]),
    );
    let near: Vec<&Value> = metres.iter().filter(|d| d["d"].as_f64().unwrap() <= 3000.0).collect();
    assert_eq!(out.len(), near.len());
    for (r, m) in out.iter().zip(near) {
        assert_eq!(r["_id"], m["_id"]);
        assert!((r["d"].as_f64().unwrap() * R - m["d"].as_f64().unwrap()).abs() < 1e-6);
    }
    // MongoDB's idiom: radians times the Earth's radius in km
    let out = run(
        &db,
        "indexed",
        json!([{"$geoNear": {"near": CENTRE, "spherical": true, "distanceField": "km", "distanceMultiplier": 6378.1}}, {"$limit": 1}]),
    );
    assert!((out[0]["km"].as_f64().unwrap() * 1000.0 - metres[0]["d"].as_f64().unwrap()).abs() < 1e-6);
    // without spherical a legacy pair would mean flat 2d geometry
    let e = fails(
        &db,
        "indexed",
        json!([{"$geoNear": {"near": CENTRE, "distanceField": "d"}}]),
    );
    assert!(
        matches!(&e, DbError::NotSupported(m) if m.contains("spherical: true")),
        "{e}"
    );
}

#[test]
fn later_stages_work_on_the_output() {
    let (_d, db) = store();
    let all = both(
        &db,
        json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d"}}),
        json!([]),
    );
    let stage = json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d", "spherical": true}});
    let out = both(
        &db,
        stage.clone(),
        json!([{"$skip": 2}, {"$limit": 3}, {"$project": {"_id": 1, "d": 1}}]),
    );
    assert_eq!(ids(&out), ids(&all[2..5]));
    assert_eq!(out[0].as_object().unwrap().len(), 2);
    // a $match after it sees the distance (it is not merged into the source)
    let out = both(
        &db,
        stage.clone(),
        json!([{"$match": {"d": {"$lte": 1500}}}, {"$count": "n"}]),
    );
    let n = all.iter().filter(|d| d["d"].as_f64().unwrap() <= 1500.0).count();
    assert_eq!(out, vec![json!({"n": n})]);
    // $group over the distances
    let out = both(
        &db,
        stage.clone(),
        json!([{"$group": {"_id": "$cat", "nearest": {"$min": "$d"}, "first": {"$first": "$_id"}, "n": {"$sum": 1}}},
               {"$sort": {"_id": 1}}]),
    );
    let cafe = all.iter().find(|d| d["cat"] == "cafe").unwrap();
    assert_eq!(out[0]["_id"], "cafe");
    assert_eq!(out[0]["first"], cafe["_id"]);
    assert_eq!(out[0]["nearest"], cafe["d"]);
    assert_eq!(
        out[0]["n"].as_u64().unwrap() + out[1]["n"].as_u64().unwrap(),
        all.len() as u64
    );
    // the client cap (a final $limit) keeps the nearest
    for (coll, stage) in [
        ("indexed", stage.clone()),
        (
            "plain",
            json!({"$geoNear": {"near": point(CENTRE), "distanceField": "d", "key": "loc"}}),
        ),
    ] {
        let mut p = db.pipeline(&json!([stage])).unwrap();
        p.cap_output(2);
        let capped: Vec<Value> = db
            .aggregate(ENV, coll, &p)
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(r.get()).unwrap())
            .collect();
        assert_eq!(ids(&capped), ids(&all[..2]), "{coll}");
    }
}

#[test]
fn the_source_query_is_what_the_rules_narrow() {
    let (_d, db) = store();
    let mut p = db
        .pipeline(&json!([{"$geoNear": {"near": point(CENTRE), "distanceField": "d", "query": {"cat": "cafe"}}}]))
        .unwrap();
    {
        let mut scans = p.scans_mut();
        assert_eq!(scans.len(), 1);
        assert_eq!(scans[0].query(), Some(&json!({"cat": "cafe"})));
        // what Gate::aggregate does for a PRIVATE collection: AND the owner condition in
        scans[0]
            .set_query(Some(json!({"$and": [{"cat": "cafe"}, {"n": {"$lt": 30}}]})))
            .unwrap();
    }
    let out: Vec<Value> = db
        .aggregate(ENV, "indexed", &p)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get()).unwrap())
        .collect();
    assert_eq!(out.len(), (0..30).filter(|i| i % 3 == 0 && i % 7 != 6).count());
    assert!(out.iter().all(|d| d["cat"] == "cafe" && d["n"].as_i64().unwrap() < 30));
    // no query: the scan's query is empty, and narrowing it works the same
    let mut p = db
        .pipeline(&json!([{"$geoNear": {"near": point(CENTRE), "distanceField": "d"}}]))
        .unwrap();
    assert_eq!(p.scans_mut()[0].query(), None);
    p.scans_mut()[0].set_query(Some(json!({"n": 0}))).unwrap();
    let out = db.aggregate(ENV, "indexed", &p).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn memory_held_by_the_search_is_bounded() {
    let limits = Limits {
        aggregate_memory_limit: 256 * 1024,
        ..Limits::default()
    };
    let (_d, db) = store_with(limits, 2000, 100);
    for (coll, key) in [("indexed", None), ("plain", Some("loc"))] {
        let mut spec = json!({"near": point(CENTRE), "distanceField": "d"});
        if let Some(k) = key {
            spec["key"] = json!(k);
        }
        // everything nearest first would hold too much at once
        let e = fails(&db, coll, json!([{"$geoNear": spec}, {"$count": "n"}]));
        assert!(
            matches!(&e, DbError::AggregateMemory { stage, .. } if stage == "$geoNear"),
            "{coll}: {e}"
        );
        // the nearest few do not
        let out = run(
            &db,
            coll,
            json!([{"$geoNear": spec}, {"$limit": 5}, {"$project": {"d": 1}}]),
        );
        assert_eq!(out.len(), 5);
        let out = run(
            &db,
            coll,
            json!([{"$geoNear": spec}, {"$skip": 10}, {"$limit": 5}, {"$count": "n"}]),
        );
        assert_eq!(out, vec![json!({"n": 5})]);
        let out = run(
            &db,
            coll,
            json!([{"$geoNear": spec}, {"$limit": 5}, {"$group": {"_id": null, "all": {"$push": "$pad"}}}]),
        );
        assert_eq!(out[0]["all"].as_array().unwrap().len(), 5);
    }
}

/// Counts what a read holds.
#[derive(Default)]
struct Counter {
    held: Cell<usize>,
    peak: Cell<usize>,
}

impl Budget for Counter {
    fn hold(&self, bytes: &[u8], _: &Value) -> Result<usize, DbError> {
        self.held.set(self.held.get() + bytes.len());
        self.peak.set(self.peak.get().max(self.held.get()));
        Ok(bytes.len())
    }
    fn release(&self, n: usize) {
        self.held.set(self.held.get() - n);
    }
}

#[test]
fn what_the_search_holds_is_given_back_however_it_ends() {
    let (_d, db) = store_with(Limits::default(), 2000, 100);
    let near = point(CENTRE);
    for (coll, stop_after) in [
        ("indexed", 10),
        ("indexed", usize::MAX),
        ("plain", 10),
        ("plain", usize::MAX),
    ] {
        let req = GeoNear {
            near: &near,
            key: Some("loc"),
            min_distance: None,
            max_distance: None,
            query: None,
            limit: stop_after,
            locations: false,
        };
        let budget = Counter::default();
        let mut seen = 0;
        db.geo_near_each(ENV, coll, &req, None, &budget, &mut |_| {
            seen += 1;
            if seen >= stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(seen, stop_after.min(2000 - 2000 / 7), "{coll}");
        assert!(budget.peak.get() > 0, "{coll}: nothing was charged");
        assert_eq!(budget.held.get(), 0, "{coll} stopping after {stop_after}");
    }
}

#[test]
fn bad_geo_near_stages_are_refused_with_the_problem_named() {
    let (_d, db) = store();
    let p = |spec: Value| json!([{ "$geoNear": spec }]);
    let near = point(CENTRE);
    let msg = |pipeline: Value, code: fn(&DbError) -> bool, text: &str| {
        let e = fails(&db, "indexed", pipeline.clone());
        assert!(code(&e) && e.to_string().contains(text), "{pipeline}: {e:?}");
    };
    let command = |e: &DbError| matches!(e, DbError::InvalidCommand(_));
    let geometry = |e: &DbError| matches!(e, DbError::InvalidGeometry(_));
    // not first, or nested
    msg(
        json!([{"$match": {"cat": "cafe"}}, {"$geoNear": {"near": near, "distanceField": "d"}}]),
        command,
        "only allowed as the first stage",
    );
    msg(
        json!([{"$facet": {"a": [{"$geoNear": {"near": near, "distanceField": "d"}}]}}]),
        command,
        "only allowed as the first stage",
    );
    msg(
        json!([{"$lookup": {"from": "plain", "as": "x", "pipeline": [{"$geoNear": {"near": near, "distanceField": "d"}}]}}]),
        command,
        "cannot be used in a `$lookup` pipeline",
    );
    // required options
    msg(p(json!({"distanceField": "d"})), command, "needs `near`");
    msg(p(json!({"near": near})), command, "needs `distanceField`");
    msg(p(json!([1])), command, "needs an object of options");
    // bad GeoJSON
    msg(
        p(json!({"near": {"type": "Point", "coordinates": [200, 0]}, "distanceField": "d"})),
        geometry,
        "longitude 200",
    );
    msg(
        p(json!({"near": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "distanceField": "d"})),
        geometry,
        "must be a Point",
    );
    msg(
        p(json!({"near": {"type": "Blob"}, "distanceField": "d"})),
        geometry,
        "`near`",
    );
    msg(
        p(json!({"near": [0, 95], "spherical": true, "distanceField": "d"})),
        geometry,
        "latitude 95",
    );
    msg(
        p(json!({"near": "here", "distanceField": "d"})),
        command,
        "`near` must be a GeoJSON Point",
    );
    // bad options
    msg(
        p(json!({"near": near, "distanceField": ""})),
        command,
        "`distanceField`",
    );
    msg(
        p(json!({"near": near, "distanceField": "$d"})),
        command,
        "`distanceField`",
    );
    msg(
        p(json!({"near": near, "distanceField": 5})),
        command,
        "`distanceField` must be a field path",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "includeLocs": "a..b"})),
        command,
        "`includeLocs`",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "maxDistance": -1})),
        command,
        "`maxDistance` must be a non-negative",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "minDistance": "far"})),
        command,
        "`minDistance`",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "distanceMultiplier": -2})),
        command,
        "`distanceMultiplier`",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "spherical": "yes"})),
        command,
        "`spherical`",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "limit": 0})),
        command,
        "`limit` must be a positive",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "key": 3})),
        command,
        "`key`",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "nearby": 1})),
        command,
        "unknown `$geoNear` option `nearby`",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "query": [1]})),
        command,
        "`query` must be a query object",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "query": {"loc": {"$nearSphere": {"$geometry": near}}}})),
        command,
        "cannot contain `$near`",
    );
    msg(
        p(json!({"near": near, "distanceField": "d", "query": {"$expr": {"$frob": 1}}})),
        command,
        "$frob",
    );
    // no 2dsphere index and no key: nothing to measure
    let e = fails(&db, "plain", p(json!({"near": near, "distanceField": "d"})));
    assert!(
        matches!(&e, DbError::InvalidCommand(m) if m.contains("no 2dsphere index")),
        "{e}"
    );
    // a collection that does not exist
    let e = fails(
        &db,
        "nope",
        p(json!({"near": near, "distanceField": "d", "key": "loc"})),
    );
    assert!(matches!(e, DbError::CollectionNotExist(_)), "{e}");
}
