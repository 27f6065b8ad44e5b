//! Geo queries over HTTP on both protocols: "stores within 2 km" as the SDK's `geoNear` encodes it
//! (canonical EJSON on GATEWAY, legacy JSON on CLOUD_API), nearest first, answered through the
//! 2dsphere index (explain shows it and how little it read); `$geoWithin` / `$geoIntersects`;
//! the index through the admin API; bad GeoJSON and misplaced operators as clear errors.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::gateway::{add_docs, call, count_in, create_coll, ids_of, list, list_uri, Svc};

const R: f64 = 6_378_100.0;
const CENTRE: (f64, f64) = (113.3, 23.1);

fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (l1, p1, l2, p2) = (a.0.to_radians(), a.1.to_radians(), b.0.to_radians(), b.1.to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * ((l2 - l1) / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().asin()
}

/// 2,000 stores spread over about 60 km × 60 km around the centre (deterministic).
fn stores() -> Vec<(String, (f64, f64))> {
    let mut x: u64 = 42;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..2000)
        .map(|i| {
            let p = (CENTRE.0 + 0.6 * (next() - 0.5), CENTRE.1 + 0.6 * (next() - 0.5));
            (format!("s{i:04}"), p)
        })
        .collect()
}

async fn seed(app: &impl Svc) -> Vec<(String, (f64, f64))> {
    create_coll(app, "default", "stores").await;
    let all = stores();
    for chunk in all.chunks(500) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|(id, (lon, lat))| {
                json!({"_id": id, "kind": if id.ends_with('0') { "tea" } else { "food" },
                       "location": {"type": "Point", "coordinates": [lon, lat]}})
            })
            .collect();
        add_docs(app, "default", "stores", Value::Array(docs)).await;
    }
    all
}

const INDEXES: &str = "/admin/v1/envs/default/collections/stores/indexes";

/// Creates the 2dsphere index through the admin API and waits until it is ready.
async fn geo_index(app: &impl Svc, body: Value) {
    let (status, reply) = send(app, post_json(INDEXES, &body)).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["index"]["name"], "location_2dsphere", "{reply}");
    assert_eq!(
        reply["index"]["fields"],
        json!([{"field": "location", "direction": "2dsphere"}])
    );
    for _ in 0..200 {
        let (_, l) = send(app, get(INDEXES)).await;
        if l["indexes"][0]["state"] == "ready" {
            assert_eq!(l["indexes"][0]["entries"], 2000, "{l}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the index did not become ready");
}

async fn explain(app: &impl Svc, query: &Value) -> Value {
    let (status, e) = send(
        app,
        post_json(
            "/admin/v1/envs/default/collections/stores/explain",
            &json!({"query": query, "limit": 100}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{e}");
    e
}

async fn web(app: &impl Svc, fields: Value) -> Value {
    let mut body = json!({"dataVersion": "2020-01-10", "env": "default", "access_token": TEST_ADMIN_KEY});
    for (k, v) in fields.as_object().expect("object") {
        body[k] = v.clone();
    }
    let (status, reply, _) = call(app, post_json("/web?env=default", &body)).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

fn coords(doc: &Value) -> (f64, f64) {
    let c = &doc["location"]["coordinates"];
    (c[0].as_f64().expect("lon"), c[1].as_f64().expect("lat"))
}

#[actix_web::test]
async fn stores_within_2_km_on_both_protocols_through_the_geo_index() {
    let t = TestApp::new();
    let app = t.service().await;
    let all = seed(&app).await;
    geo_index(
        &app,
        json!({"fields": [{"field": "location", "direction": "2dsphere"}]}),
    )
    .await;
    let mut want: Vec<(f64, &str)> = all
        .iter()
        .map(|(id, p)| (metres(CENTRE, *p), id.as_str()))
        .filter(|(d, _)| *d <= 2000.0)
        .collect();
    want.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(want.len() >= 2, "the data has stores within 2 km: {}", want.len());
    let want_ids: Vec<String> = want.iter().map(|(_, id)| id.to_string()).collect();

    // GATEWAY: where({location: _.geoNear({geometry: new db.Geo.Point(113.3, 23.1), maxDistance: 2000, minDistance: 0})})
    let ejson = r#"{"location":{"$nearSphere":{"$geometry":{"type":"Point","coordinates":[{"$numberDouble":"113.3"},{"$numberDouble":"23.1"}]},"$maxDistance":{"$numberInt":"2000"},"$minDistance":{"$numberInt":"0"}}}}"#;
    let got = list(&app, "stores", &[("query", ejson), ("limit", "100"), ("offset", "0")]).await;
    assert_eq!(ids_of(&got), want_ids, "nearest first, exactly the stores within 2 km");
    let ds: Vec<f64> = got.iter().map(|d| metres(CENTRE, coords(d))).collect();
    assert!(
        ds.windows(2).all(|w| w[0] <= w[1]) && ds.iter().all(|d| *d <= 2000.0),
        "{ds:?}"
    );
    assert_eq!(count_in(&app, "default", "stores", ejson).await, want.len() as u64);
    // paging keeps the distance order
    let page = list(&app, "stores", &[("query", ejson), ("limit", "1"), ("offset", "1")]).await;
    assert_eq!(ids_of(&page), want_ids[1..2]);

    // CLOUD_API: the same query in legacy JSON
    let legacy = json!({"location": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [113.3, 23.1]}, "$maxDistance": 2000, "$minDistance": 0}}});
    let reply = web(
        &app,
        json!({"action": "database.queryDocument", "collectionName": "stores", "queryType": "WHERE", "query": legacy, "limit": 100}),
    )
    .await;
    let list_web = reply["data"]["list"].as_array().unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(ids_of(list_web), want_ids);

    // explain: the index, and a small neighbourhood of the 2,000 documents read
    let e = explain(&app, &legacy).await;
    assert_eq!(e["plan"]["type"], "geoNear", "{e}");
    assert_eq!(e["plan"]["index"], "location_2dsphere", "{e}");
    assert_eq!(e["returned"], want.len());
    let examined = e["docsExamined"].as_u64().expect("docsExamined");
    assert!(
        examined < 3 * want.len() as u64 + 10 && examined < 200,
        "read {examined} of 2000 documents: {e}"
    );

    // with another condition and a minimum distance
    let q = json!({"kind": "food", "location": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [113.3, 23.1]}, "$maxDistance": 5000, "$minDistance": 1000}}});
    let reply = web(
        &app,
        json!({"action": "database.queryDocument", "collectionName": "stores", "queryType": "WHERE", "query": q, "limit": 100}),
    )
    .await;
    let got = reply["data"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .clone();
    let expect: Vec<&str> = {
        let mut v: Vec<(f64, &str)> = all
            .iter()
            .filter(|(id, _)| !id.ends_with('0'))
            .map(|(id, p)| (metres(CENTRE, *p), id.as_str()))
            .filter(|(d, _)| (1000.0..=5000.0).contains(d))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v.into_iter().map(|(_, id)| id).collect()
    };
    assert_eq!(ids_of(&got), expect);

    // $geoWithin a 0.1° square (GATEWAY) and $geoIntersects it (CLOUD_API), through the index
    let (w, s, e_, n) = (113.25, 23.05, 113.35, 23.15);
    let square = json!({"type": "Polygon", "coordinates": [[[w, s], [e_, s], [e_, n], [w, n], [w, s]]]});
    let within = json!({"location": {"$geoWithin": {"$geometry": square}}}).to_string();
    let got = list(&app, "stores", &[("query", &within), ("limit", "1000")]).await;
    let inside = |p: (f64, f64), m: f64| p.0 > w + m && p.0 < e_ - m && p.1 > s + m && p.1 < n - m;
    for (id, p) in &all {
        let found = got.iter().any(|d| d["_id"] == id.as_str());
        if inside(*p, 1e-4) {
            assert!(found, "{id} {p:?} is inside");
        } else if !inside(*p, -1e-4) {
            assert!(!found, "{id} {p:?} is outside");
        }
    }
    let e = explain(&app, &serde_json::from_str(&within).expect("json")).await;
    assert_eq!(e["plan"]["type"], "index", "{e}");
    assert_eq!(e["plan"]["index"], "location_2dsphere");
    assert!(
        e["docsExamined"].as_u64().expect("n") < 4 * got.len() as u64 + 20,
        "{e}"
    );
    let reply = web(
        &app,
        json!({"action": "database.queryDocument", "collectionName": "stores", "queryType": "WHERE",
               "query": {"location": {"$geoIntersects": {"$geometry": square}}}, "limit": 1000}),
    )
    .await;
    let mut a = ids_of(reply["data"]["list"].as_array().expect("list"));
    let mut b = ids_of(&got);
    a.sort();
    b.sort();
    assert_eq!(a, b, "a point intersects a polygon exactly when it is within it");
}

#[actix_web::test]
async fn geo_index_admin_and_bad_input_are_clear_errors() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "stores").await;
    add_docs(
        &app,
        "default",
        "stores",
        json!([{"_id": "a", "location": {"type": "Point", "coordinates": [113.3, 23.1]}},
               {"_id": "b", "location": {"type": "Point", "coordinates": [113.31, 23.1]}}]),
    )
    .await;
    // $near without a geo index: a scan, still nearest first
    let q = json!({"location": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [113.32, 23.1]}}}})
        .to_string();
    assert_eq!(ids_of(&list(&app, "stores", &[("query", &q)]).await), ["b", "a"]);
    assert_eq!(
        explain(&app, &serde_json::from_str(&q).expect("json")).await["plan"]["type"],
        "collectionScan"
    );

    // index specs
    for (body, why) in [
        (json!({"fields": "location:2d"}), "2dsphere"),
        (json!({"fields": "location:2dsphere,kind"}), "exactly one field"),
        (
            json!({"fields": [{"field": "location", "direction": "2dsphere"}], "unique": true}),
            "unique",
        ),
        (
            json!({"fields": [{"field": "location", "direction": "sphere"}]}),
            "direction",
        ),
    ] {
        let (status, e) = send(&app, post_json(INDEXES, &body)).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["code"], "INVALID_PARAM");
        assert!(e["message"].as_str().is_some_and(|m| m.contains(why)), "{e}");
    }
    let (status, reply) = send(&app, post_json(INDEXES, &json!({"fields": "location:2dsphere"}))).await;
    assert_eq!(status, 202, "{reply}");
    for _ in 0..200 {
        let (_, l) = send(&app, get(INDEXES)).await;
        if l["indexes"][0]["state"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        explain(&app, &serde_json::from_str(&q).expect("json")).await["plan"]["type"],
        "geoNear"
    );

    // a document the index cannot hold: refused on both protocols, nothing written
    let bad = json!({"_id": "x", "location": {"type": "Point", "coordinates": [200, 23]}});
    let (status, e) = send(
        &app,
        post_json(&format!("{DB}/collections/stores/documents"), &json!({"data": [bad]})),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["code"], "DATABASE_INVALID_GEOMETRY");
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("longitude 200")),
        "{e}"
    );
    let reply = web(
        &app,
        json!({"action": "database.addDocument", "collectionName": "stores", "data": {"location": "Guangzhou"}}),
    )
    .await;
    assert_eq!(reply["code"], "DATABASE_INVALID_GEOMETRY", "{reply}");
    assert_eq!(count_in(&app, "default", "stores", "{}").await, 2);

    // bad queries
    let unclosed = json!({"location": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}}});
    let in_or = json!({"$or": [{"location": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [0, 0]}}}}, {"kind": "x"}]});
    let legacy = json!({"location": {"$nearSphere": [113.3, 23.1]}});
    let negative = json!({"location": {"$nearSphere": {"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": -1}}});
    for (query, code, status_want) in [
        (unclosed, "DATABASE_INVALID_GEOMETRY", 400),
        (in_or, "DATABASE_INVALID_COMMAND", 400),
        (legacy, "NOT_SUPPORTED", 400),
        (negative, "DATABASE_INVALID_COMMAND", 400),
    ] {
        let uri = list_uri("stores", &[("query", &query.to_string())]);
        let (status, e) = send(&app, get(&uri)).await;
        assert_eq!((status, e["code"].as_str()), (status_want, Some(code)), "{query}: {e}");
        let reply = web(
            &app,
            json!({"action": "database.queryDocument", "collectionName": "stores", "queryType": "WHERE", "query": query}),
        )
        .await;
        assert_eq!(reply["code"], code, "{reply}");
    }
}

/// `aggregate().geoNear({...})` on both protocols, as @cloudbase/js-sdk 3.7.0 sends it: GATEWAY
/// `{pipeline: [{$geoNear: {…}}, …]}` (relaxed EJSON: plain numbers; canonical EJSON numbers are
/// accepted too), CLOUD_API `stages` with each value as JSON text.
#[actix_web::test]
async fn geo_near_aggregation_on_both_protocols() {
    let t = TestApp::new();
    let app = t.service().await;
    let all = seed(&app).await;
    geo_index(&app, json!({"fields": "location:2dsphere"})).await;
    let agg = format!("{DB}/collections/stores/documents/aggregations");
    // the tea stores within 8 km, nearest first
    let mut want: Vec<(f64, &str, (f64, f64))> = all
        .iter()
        .filter(|(id, _)| id.ends_with('0'))
        .map(|(id, p)| (metres(CENTRE, *p), id.as_str(), *p))
        .filter(|(d, _, _)| *d <= 8000.0)
        .collect();
    want.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(want.len() >= 6, "{}", want.len());
    let check = |docs: &[Value], n: usize| {
        assert_eq!(docs.len(), n, "{docs:?}");
        for (d, (dist, id, p)) in docs.iter().zip(&want) {
            assert_eq!(d["_id"], *id);
            assert!((d["distance"].as_f64().expect("distance") - dist).abs() < 1.0, "{d}");
            assert_eq!(
                d["loc"],
                json!({"type": "Point", "coordinates": [p.0, p.1]}),
                "includeLocs: {d}"
            );
            assert_eq!(d["kind"], "tea");
        }
    };
    // db.collection('stores').aggregate().geoNear({distanceField: 'distance', spherical: true,
    //   near: new db.Geo.Point(113.3, 23.1), query: {kind: 'tea'}, key: 'location',
    //   includeLocs: 'loc', maxDistance: 8000}).limit(5).end()
    let stage = json!({"distanceField": "distance", "spherical": true,
        "near": {"type": "Point", "coordinates": [113.3, 23.1]}, "query": {"kind": "tea"},
        "key": "location", "includeLocs": "loc", "maxDistance": 8000});
    let (status, reply, _) = call(
        &app,
        post_json(&agg, &json!({"pipeline": [{"$geoNear": stage}, {"$limit": 5}]})),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    check(reply["list"].as_array().expect("list"), 5);
    // canonical EJSON numbers, and no `key` (the only 2dsphere index's field)
    let canonical = r#"{"pipeline":[{"$geoNear":{"distanceField":"distance","spherical":true,
        "near":{"type":"Point","coordinates":[{"$numberDouble":"113.3"},{"$numberDouble":"23.1"}]},
        "query":{"kind":"tea"},"includeLocs":"loc","maxDistance":{"$numberInt":"8000"}}}]}"#;
    let (status, reply, _) = call(&app, post_json(&agg, &serde_json::from_str(canonical).expect("json"))).await;
    assert_eq!(status, 200, "{reply}");
    check(reply["list"].as_array().expect("list"), want.len());
    // CLOUD_API: the same stages as JSON text; the list comes back as JSON text
    let reply = web(
        &app,
        json!({"action": "database.aggregate", "collectionName": "stores", "stages": [
            {"stageKey": "$geoNear", "stageValue": stage.to_string()},
            {"stageKey": "$limit", "stageValue": "5"}]}),
    )
    .await;
    let text = reply["data"]["list"].as_str().unwrap_or_else(|| panic!("{reply}"));
    let docs: Vec<Value> = serde_json::from_str::<Vec<String>>(text)
        .expect("strings")
        .iter()
        .map(|s| serde_json::from_str(s).expect("doc"))
        .collect();
    check(&docs, 5);
    // later stages work on the output: distance bands, in km
    let bands = json!([{"$geoNear": {"near": {"type": "Point", "coordinates": [113.3, 23.1]}, "distanceField": "km",
        "distanceMultiplier": 0.001, "maxDistance": 6000}},
        {"$bucket": {"groupBy": "$km", "boundaries": [0, 2, 4, 6.0001], "output": {"n": {"$sum": 1}}}}]);
    let (status, reply, _) = call(&app, post_json(&agg, &json!({ "pipeline": bands }))).await;
    assert_eq!(status, 200, "{reply}");
    let count = |lo: f64, hi: f64| {
        all.iter()
            .filter(|(_, p)| (lo..hi).contains(&metres(CENTRE, *p)))
            .count()
    };
    let got: Vec<(f64, u64)> = reply["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|b| (b["_id"].as_f64().expect("id"), b["n"].as_u64().expect("n")))
        .collect();
    let expect = [
        (0.0, count(0.0, 2000.0) as u64),
        (2.0, count(2000.0, 4000.0) as u64),
        (4.0, count(4000.0, 6000.0) as u64),
    ];
    assert!(expect.iter().all(|(_, n)| *n > 0), "{expect:?}");
    assert_eq!(got, expect);
}

#[actix_web::test]
async fn bad_geo_near_stages_are_clear_4xx_on_both_protocols() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "stores").await;
    add_docs(
        &app,
        "default",
        "stores",
        json!([{"_id": "a", "location": {"type": "Point", "coordinates": [113.3, 23.1]}}]),
    )
    .await;
    let agg = format!("{DB}/collections/stores/documents/aggregations");
    let near = json!({"type": "Point", "coordinates": [113.3, 23.1]});
    let cases = [
        (
            json!([{"$match": {}}, {"$geoNear": {"near": near, "distanceField": "d"}}]),
            "DATABASE_INVALID_COMMAND",
            "only allowed as the first stage",
        ),
        (
            json!([{"$geoNear": {"near": near}}]),
            "DATABASE_INVALID_COMMAND",
            "needs `distanceField`",
        ),
        (
            json!([{"$geoNear": {"distanceField": "d"}}]),
            "DATABASE_INVALID_COMMAND",
            "needs `near`",
        ),
        (
            json!([{"$geoNear": {"near": {"type": "Point", "coordinates": [113.3, 95]}, "distanceField": "d"}}]),
            "DATABASE_INVALID_GEOMETRY",
            "latitude 95",
        ),
        (
            json!([{"$geoNear": {"near": [113.3, 23.1], "distanceField": "d"}}]),
            "NOT_SUPPORTED",
            "spherical: true",
        ),
        // no 2dsphere index and no `key`: nothing says which field holds the locations
        (
            json!([{"$geoNear": {"near": near, "distanceField": "d"}}]),
            "DATABASE_INVALID_COMMAND",
            "no 2dsphere index",
        ),
    ];
    for (pipeline, code, why) in cases {
        let (status, e) = send(&app, post_json(&agg, &json!({ "pipeline": pipeline }))).await;
        assert_eq!((status, e["code"].as_str()), (400, Some(code)), "{pipeline}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| m.contains(why)), "{e}");
        let stages: Vec<Value> = pipeline
            .as_array()
            .expect("array")
            .iter()
            .map(|s| {
                let (k, v) = s.as_object().expect("stage").iter().next().expect("one");
                json!({"stageKey": k, "stageValue": v.to_string()})
            })
            .collect();
        let reply = web(
            &app,
            json!({"action": "database.aggregate", "collectionName": "stores", "stages": stages}),
        )
        .await;
        assert_eq!(reply["code"], code, "{reply}");
    }
    // with `key` it works without an index (a scan)
    let (status, reply) = send(
        &app,
        post_json(
            &agg,
            &json!({"pipeline": [{"$geoNear": {"near": near, "distanceField": "d", "key": "location"}}]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["list"], json!([{"_id": "a", "location": near, "d": 0.0}]));
}
