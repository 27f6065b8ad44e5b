//! GATEWAY REST (`/v1/database/...`): every database payload the official SDK sends in GATEWAY mode
//! (cloudbase-protocol.md §3.9) replayed against the production app, reply shapes, env isolation,
//! missing collections, duplicate ids, and MongoDB semantics spot checks through HTTP.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::{self, TestRequest};
use serde_json::{json, Value};

use crate::common::*;

// ---- helpers shared with cloudapi.rs and bad_input.rs ---------------------------------------

/// The in-process app, whatever its concrete type.
pub(crate) trait Svc:
    Service<actix_http::Request, Response = ServiceResponse<Self::Body>, Error = actix_web::Error>
{
    type Body: actix_web::body::MessageBody;
}

impl<S, B> Svc for S
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    type Body = B;
}

/// Sends a request: (status, JSON body, `x-request-id` header).
pub(crate) async fn call(app: &impl Svc, req: TestRequest) -> (u16, Value, Option<String>) {
    let res = test::call_service(app, to_request(req)).await;
    let status = res.status().as_u16();
    let rid = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = test::read_body(res).await;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body, rid)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// `…/collections/{coll}/documents`
pub(crate) fn docs_uri(coll: &str) -> String {
    format!("{DB}/collections/{coll}/documents")
}

/// A GET list URI; every value is a JSON text, percent-encoded as the SDK does.
pub(crate) fn list_uri(coll: &str, params: &[(&str, &str)]) -> String {
    let qs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
    format!("{}?{}", docs_uri(coll), qs.join("&"))
}

/// `?env=` appended to a URI that may already have a query string.
pub(crate) fn in_env(uri: &str, env: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}env={}", enc(env))
}

/// Creates a collection through `POST …/collections` and checks the reply.
pub(crate) async fn create_coll(app: &impl Svc, env: &str, name: &str) {
    let uri = in_env(&format!("{DB}/collections"), env);
    let (status, body) = send(app, post_json(&uri, &json!({ "collectionName": name }))).await;
    assert_eq!(status, 200, "create collection {env}/{name}: {body}");
    assert!(body["requestId"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
}

/// Creates an env through the admin API.
pub(crate) async fn create_env(app: &impl Svc, name: &str) {
    let (status, body) = send(app, post_json("/admin/v1/envs", &json!({ "name": name }))).await;
    assert_eq!(status, 201, "create env {name}: {body}");
}

/// Adds documents (`{data:[…]}`, as the SDK always sends) and returns the inserted ids.
pub(crate) async fn add_docs(app: &impl Svc, env: &str, coll: &str, docs: Value) -> Vec<String> {
    let (status, body) = send(app, post_json(&in_env(&docs_uri(coll), env), &json!({ "data": docs }))).await;
    assert_eq!(status, 200, "add to {env}/{coll}: {body}");
    body["insertedIds"]
        .as_array()
        .unwrap_or_else(|| panic!("no insertedIds in {body}"))
        .iter()
        .map(|v| v.as_str().expect("string id").to_string())
        .collect()
}

/// A successful list: the `list` array of the reply.
pub(crate) async fn list(app: &impl Svc, coll: &str, params: &[(&str, &str)]) -> Vec<Value> {
    list_in(app, "default", coll, params).await
}

pub(crate) async fn list_in(app: &impl Svc, env: &str, coll: &str, params: &[(&str, &str)]) -> Vec<Value> {
    let uri = in_env(&list_uri(coll, params), env);
    let (status, body) = send(app, get(&uri)).await;
    assert_eq!(status, 200, "GET {uri}: {body}");
    body["list"]
        .as_array()
        .unwrap_or_else(|| panic!("no list in {body}"))
        .clone()
}

/// The `_id`s of a list query, in reply order.
pub(crate) async fn ids(app: &impl Svc, coll: &str, query: &str) -> Vec<String> {
    ids_of(&list(app, coll, &[("query", query), ("limit", "1000")]).await)
}

/// The `_id`s of a list query sorted by `order`, in reply order.
pub(crate) async fn sorted_ids(app: &impl Svc, coll: &str, query: &str, order: &str) -> Vec<String> {
    ids_of(&list(app, coll, &[("query", query), ("order", order), ("limit", "1000")]).await)
}

pub(crate) fn ids_of(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|d| d["_id"].as_str().unwrap_or_else(|| panic!("no _id in {d}")).to_string())
        .collect()
}

pub(crate) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

pub(crate) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `GET …/documents?count=true&query=…` → total.
pub(crate) async fn count_in(app: &impl Svc, env: &str, coll: &str, query: &str) -> u64 {
    let uri = in_env(&list_uri(coll, &[("count", "true"), ("query", query)]), env);
    let (status, body) = send(app, get(&uri)).await;
    assert_eq!(status, 200, "GET {uri}: {body}");
    body["total"].as_u64().unwrap_or_else(|| panic!("no total in {body}"))
}

/// `GET …/documents/{id}` → the stored document, or None on 404.
pub(crate) async fn get_doc_in(app: &impl Svc, env: &str, coll: &str, id: &str) -> Option<Value> {
    let uri = in_env(&format!("{}/{}", docs_uri(coll), enc(id)), env);
    let (status, body) = send(app, get(&uri)).await;
    match status {
        200 => Some(body),
        404 => {
            assert_eq!(body["code"], "DATABASE_DOCUMENT_NOT_EXIST", "{body}");
            None
        }
        _ => panic!("GET {uri}: {status} {body}"),
    }
}

pub(crate) async fn get_doc(app: &impl Svc, coll: &str, id: &str) -> Option<Value> {
    get_doc_in(app, "default", coll, id).await
}

/// Asserts an error reply of the GATEWAY shape.
pub(crate) fn assert_gateway_error(status: u16, body: &Value, want_status: u16, want_code: &str, what: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(body["code"], want_code, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: empty message in {body}"
    );
    assert!(
        body["requestId"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no requestId in {body}"
    );
}

/// The `$date` milliseconds of a returned date (`{"$date": ms}`).
pub(crate) fn date_ms(v: &Value) -> i64 {
    let m = v.as_object().unwrap_or_else(|| panic!("not a date: {v}"));
    assert_eq!(m.len(), 1, "a date is {{\"$date\": ms}}, got {v}");
    m["$date"].as_i64().unwrap_or_else(|| panic!("not a date: {v}"))
}

// ---- the capture's complex `where` ------------------------------------------------------------

/// The capture's query, GET query string form (canonical EJSON).
pub(crate) const COMPLEX_QUERY_EJSON: &str = r#"{"done":false,"tags":{"$in":["a","b"]},"owner.name":{"$regex":"^al","$options":"i"},"due":{"$lt":{"$date":{"$numberLong":"1700000000000"}}},"extra":{"$exists":true},"$and":[{"priority":{"$gte":{"$numberInt":"2"}}},{"priority":{"$lt":{"$numberInt":"5"}}}]}"#;
pub(crate) const COMPLEX_ORDER: &str = r#"[{"field":"priority","direction":"desc"},{"field":"_id","direction":"asc"}]"#;

/// The 16 documents the complex query matches, in `priority desc, _id asc` order.
pub(crate) const COMPLEX_MATCH_ORDER: [&str; 16] = [
    "k03", "k07", "k11", "k15", "k01", "k04", "k05", "k08", "k09", "k12", "k13", "k16", "k02", "k06", "k10", "k14",
];
/// `skip(10).limit(5)` of that order.
pub(crate) const COMPLEX_PAGE: [&str; 5] = ["k13", "k16", "k02", "k06", "k10"];

/// 16 matching documents (`k01`–`k16`) and decoys that each fail exactly one condition of the query
/// (their `_id`s sort before the matches, so a wrongly matched decoy shifts the page).
pub(crate) fn complex_seed() -> Vec<Value> {
    let prios = [3, 2, 4, 3, 3, 2, 4, 3, 3, 2, 4, 3, 3, 2, 4, 3];
    let owners = ["alice", "Alfred", "ALBERT", "al"];
    let mut docs = Vec::new();
    for (i, p) in prios.iter().enumerate() {
        let id = format!("k{:02}", i + 1);
        docs.push(json!({
            "_id": id,
            "title": format!("title {id}"),
            "done": false,
            "priority": p,
            "tags": if i % 2 == 0 { json!(["a"]) } else { json!(["z", "b"]) },
            "owner": { "name": owners[i % 4] },
            "due": { "$date": 1_600_000_000_000i64 + i as i64 * 1000 },
            "extra": if i % 3 == 0 { Value::Null } else { json!(i) },
        }));
    }
    let base = json!({
        "title": "decoy", "done": false, "priority": 3, "tags": ["a", "b"], "owner": { "name": "alan" },
        "due": { "$date": 1_650_000_000_000i64 }, "extra": "yes",
    });
    let changed: Vec<(&str, &str, Option<Value>)> = vec![
        ("d-done", "done", Some(json!(true))),
        ("d-done-null", "done", Some(Value::Null)),
        ("d-done-0", "done", Some(json!(0))),
        ("d-no-done", "done", None),
        ("d-tags", "tags", Some(json!(["c"]))),
        ("d-no-tags", "tags", None),
        ("d-owner", "owner", Some(json!({ "name": "bob" }))),
        ("d-owner-mid", "owner", Some(json!({ "name": "xal" }))),
        ("d-no-owner", "owner", None),
        ("d-due-eq", "due", Some(json!({ "$date": 1_700_000_000_000i64 }))),
        ("d-due-num", "due", Some(json!(5))),
        ("d-due-str", "due", Some(json!("2020-01-01"))),
        ("d-no-extra", "extra", None),
        ("d-p5", "priority", Some(json!(5))),
        ("d-p1", "priority", Some(json!(1))),
        ("d-pstr", "priority", Some(json!("3"))),
    ];
    for (id, field, v) in changed {
        let mut d = base.clone();
        d["_id"] = json!(id);
        match v {
            Some(v) => d[field] = v,
            None => {
                d.as_object_mut().expect("object").remove(field);
            }
        }
        docs.push(d);
    }
    docs.reverse();
    docs
}

// ---- §3.9 payloads ----------------------------------------------------------------------------

#[actix_web::test]
async fn collection_create_replies_and_conflicts() {
    let t = TestApp::new();
    let app = t.service().await;
    let (status, body, rid) = call(
        &app,
        post_json(&format!("{DB}/collections"), &json!({ "collectionName": "todos" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let request_id = body["requestId"].as_str().expect("requestId").to_string();
    assert!(!request_id.is_empty());
    assert_eq!(
        rid.as_deref(),
        Some(request_id.as_str()),
        "x-request-id header equals body requestId"
    );
    // the collection now exists and is empty
    assert_eq!(count_in(&app, "default", "todos", "{}").await, 0);
    // creating it again is a conflict
    let (status, body) = send(
        &app,
        post_json(&format!("{DB}/collections"), &json!({ "collectionName": "todos" })),
    )
    .await;
    assert_gateway_error(status, &body, 409, "DATABASE_COLLECTION_ALREADY_EXIST", "second create");
}

#[actix_web::test]
async fn complex_where_query_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(&app, "default", "todos", Value::Array(complex_seed())).await;

    // exactly the capture's request
    let params = [
        ("projection", r#"{"title":1,"priority":1}"#),
        ("offset", "10"),
        ("limit", "5"),
        ("order", COMPLEX_ORDER),
        ("query", COMPLEX_QUERY_EJSON),
    ];
    let uri = list_uri("todos", &params);
    let (status, body, rid) = call(&app, get(&uri)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requestId"].as_str(), rid.as_deref(), "{body}");
    let page = body["list"].as_array().expect("list");
    assert_eq!(ids_of(page), strs(&COMPLEX_PAGE), "{body}");
    // projection: only _id, title, priority
    let prios = [("k13", 3), ("k16", 3), ("k02", 2), ("k06", 2), ("k10", 2)];
    for (doc, (id, p)) in page.iter().zip(prios) {
        assert_eq!(
            doc,
            &json!({ "_id": id, "title": format!("title {id}"), "priority": p })
        );
    }

    // the whole matched set, in order (no decoy matches)
    let all = list(
        &app,
        "todos",
        &[
            ("order", COMPLEX_ORDER),
            ("query", COMPLEX_QUERY_EJSON),
            ("limit", "100"),
        ],
    )
    .await;
    assert_eq!(ids_of(&all), strs(&COMPLEX_MATCH_ORDER));
    // unprojected documents come back whole, dates as {"$date": ms}
    let k01 = all.iter().find(|d| d["_id"] == "k01").expect("k01");
    assert_eq!(k01["due"], json!({ "$date": 1_600_000_000_000i64 }));
    assert_eq!(k01["owner"], json!({ "name": "alice" }));
    assert_eq!(k01["extra"], Value::Null);
}

#[actix_web::test]
async fn or_query_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([
            { "_id": "a1b2", "a": 1, "b": 2 },       // a == 1
            { "_id": "a2b2", "a": 2, "b": 2 },       // neither
            { "_id": "a2b3", "a": 2, "b": 3 },       // b != 2
            { "_id": "a2", "a": 2 },                 // b missing: $ne matches
            { "_id": "a2bArr", "a": 2, "b": [2, 3] }, // b contains 2: $ne does not match
            { "_id": "aArr", "a": [5, 1], "b": 2 },  // a contains 1
            { "_id": "a1f", "a": 1.0, "b": 2 },      // 1.0 == 1
            { "_id": "aStr", "a": "1", "b": 2 },     // "1" != 1
        ]),
    )
    .await;
    let q = r#"{"$or":[{"a":{"$eq":{"$numberInt":"1"}}},{"b":{"$ne":{"$numberInt":"2"}}}]}"#;
    let got = list(&app, "todos", &[("query", q), ("offset", "0"), ("limit", "100")]).await;
    assert_eq!(sorted(ids_of(&got)), strs(&["a1b2", "a1f", "a2", "a2b3", "aArr"]));
}

#[actix_web::test]
async fn size_elem_match_not_nin_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let base = json!({ "arr": [1, 2, 3], "items": [{ "n": 0 }, { "n": 2 }], "score": 5, "meta": { "level": 3 } });
    let variants: Vec<(&str, &str, Option<Value>, bool)> = vec![
        ("base", "score", Some(json!(5)), true),
        ("no-score", "score", None, true), // $not $gt matches a missing field
        ("score-str", "score", Some(json!("x")), true), // "x" is not > 10 (type bracketing)
        ("score-11", "score", Some(json!(11)), false),
        ("score-10", "score", Some(json!(10)), true),
        ("no-meta", "meta", None, true), // $nin matches a missing field
        ("meta-arr", "meta", Some(json!({ "level": [3, 4] })), true),
        ("meta-arr-2", "meta", Some(json!({ "level": [2, 4] })), false),
        ("meta-2", "meta", Some(json!({ "level": 2 })), false),
        ("meta-1", "meta", Some(json!({ "level": 1 })), false),
        ("arr-2", "arr", Some(json!([1, 2])), false),
        ("arr-4", "arr", Some(json!([1, 2, 3, 4])), false),
        ("arr-str", "arr", Some(json!("abc")), false),
        ("arr-nested", "arr", Some(json!([[1, 2, 3]])), false),
        ("items-none", "items", Some(json!([{ "n": 1 }, { "n": 0 }])), false),
        ("items-other", "items", Some(json!([{ "n": 0 }, { "m": 5 }])), false),
        ("items-obj", "items", Some(json!({ "n": 5 })), false), // $elemMatch needs an array
        (
            "items-last",
            "items",
            Some(json!([{ "n": 0 }, { "n": 0 }, { "n": 1.5 }])),
            true,
        ),
    ];
    let mut docs = Vec::new();
    let mut want = Vec::new();
    for (id, field, v, matches) in &variants {
        let mut d = base.clone();
        d["_id"] = json!(id);
        match v {
            Some(v) => d[*field] = v.clone(),
            None => {
                d.as_object_mut().expect("object").remove(*field);
            }
        }
        docs.push(d);
        if *matches {
            want.push(id.to_string());
        }
    }
    add_docs(&app, "default", "todos", Value::Array(docs)).await;
    let q = r#"{"arr":{"$size":{"$numberInt":"3"}},"items":{"$elemMatch":{"n":{"$gt":{"$numberInt":"1"}}}},"score":{"$not":{"$gt":{"$numberInt":"10"}}},"meta.level":{"$nin":[{"$numberInt":"1"},{"$numberInt":"2"}]}}"#;
    assert_eq!(sorted(ids(&app, "todos", q).await), sorted(want));
}

#[actix_web::test]
async fn count_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([{ "done": true }, { "done": true }, { "done": false }, { "done": true }, { "done": "true" }, {}]),
    )
    .await;
    let uri = list_uri("todos", &[("count", "true"), ("query", r#"{"done":true}"#)]);
    let (status, body, rid) = call(&app, get(&uri)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 3, "{body}");
    assert!(body.get("list").is_none(), "a count reply has no list: {body}");
    assert_eq!(body["requestId"].as_str(), rid.as_deref());
    assert_eq!(count_in(&app, "default", "todos", "{}").await, 6);
    assert_eq!(
        count_in(&app, "default", "todos", r#"{"done":{"$exists":false}}"#).await,
        1
    );
    // count ignores limit
    let uri = list_uri("todos", &[("count", "true"), ("query", "{}"), ("limit", "2")]);
    let (_, body) = send(&app, get(&uri)).await;
    assert_eq!(body["total"], 6, "{body}");
}

#[actix_web::test]
async fn doc_get_is_a_list_query() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let doc = json!({ "_id": "doc-1", "title": "hello", "done": false, "due": { "$date": 1_700_000_000_000i64 } });
    add_docs(
        &app,
        "default",
        "todos",
        json!([doc, { "_id": "doc-2", "title": "other" }]),
    )
    .await;
    let params = [
        ("projection", "{}"),
        ("offset", "0"),
        ("limit", "100"),
        ("query", r#"{"_id":"doc-1"}"#),
    ];
    let got = list(&app, "todos", &params).await;
    assert_eq!(got, vec![doc]);
    let params = [
        ("projection", "{}"),
        ("offset", "0"),
        ("limit", "100"),
        ("query", r#"{"_id":"nope"}"#),
    ];
    assert_eq!(list(&app, "todos", &params).await, Vec::<Value>::new());
}

#[actix_web::test]
async fn add_single_with_server_date_geo_and_date() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let body = json!({ "data": [{
        "title": "x",
        "createdAt": { "$date": { "offset": 0 } },
        "loc": { "type": "Point", "coordinates": [113.3, 23.1] },
        "when": { "$date": 1_700_000_000_000i64 },
    }] });
    let before = now_ms();
    let (status, reply, rid) = call(&app, post_json(&docs_uri("todos"), &body)).await;
    let after = now_ms();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["requestId"].as_str(), rid.as_deref());
    let inserted = reply["insertedIds"].as_array().expect("insertedIds");
    assert_eq!(inserted.len(), 1, "{reply}");
    let id = inserted[0].as_str().expect("string id");
    assert_eq!(id.len(), 32, "generated _id is 32 hex chars: {id}");
    assert!(
        id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{id}"
    );

    let doc = get_doc(&app, "todos", id).await.expect("stored");
    let created = date_ms(&doc["createdAt"]);
    assert!(
        (before..=after).contains(&created),
        "createdAt {created} not in [{before}, {after}]"
    );
    assert_eq!(
        doc,
        json!({
            "_id": id,
            "title": "x",
            "createdAt": { "$date": created },
            "loc": { "type": "Point", "coordinates": [113.3, 23.1] },
            "when": { "$date": 1_700_000_000_000i64 },
        })
    );
    // the server date is a date: it compares with dates
    let q = format!(r#"{{"createdAt":{{"$gte":{{"$date":{{"$numberLong":"{before}"}}}}}}}}"#);
    assert_eq!(ids(&app, "todos", &q).await, vec![id.to_string()]);
    let q = format!(r#"{{"createdAt":{{"$gte":{}}}}}"#, before);
    assert_eq!(
        ids(&app, "todos", &q).await,
        Vec::<String>::new(),
        "a number never equals/compares with a date"
    );
}

#[actix_web::test]
async fn add_batch_and_client_ids() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let (status, reply) = send(
        &app,
        post_json(
            &docs_uri("todos"),
            &json!({ "data": [{ "title": "a" }, { "title": "b" }] }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let got: Vec<String> = reply["insertedIds"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("s").to_string())
        .collect();
    assert_eq!(got.len(), 2);
    assert_ne!(got[0], got[1]);
    assert_eq!(
        get_doc(&app, "todos", &got[0]).await,
        Some(json!({ "_id": got[0], "title": "a" }))
    );
    assert_eq!(
        get_doc(&app, "todos", &got[1]).await,
        Some(json!({ "_id": got[1], "title": "b" }))
    );
    // a client-supplied _id is honoured
    let mine = add_docs(&app, "default", "todos", json!([{ "_id": "mine", "title": "c" }])).await;
    assert_eq!(mine, vec!["mine"]);
    assert_eq!(
        get_doc(&app, "todos", "mine").await,
        Some(json!({ "_id": "mine", "title": "c" }))
    );
    assert_eq!(count_in(&app, "default", "todos", "{}").await, 3);
    // server dates in a batch, at the top level and nested, with offsets
    let before = now_ms();
    let batch = add_docs(
        &app,
        "default",
        "todos",
        json!([
            { "_id": "sd1", "at": { "$date": { "offset": -60000 } } },
            { "_id": "sd2", "meta": { "at": { "$date": { "offset": 0 } } }, "list": [{ "$date": { "offset": 5000 } }] },
        ]),
    )
    .await;
    let after = now_ms();
    assert_eq!(batch, vec!["sd1", "sd2"]);
    let sd1 = get_doc(&app, "todos", "sd1").await.expect("sd1");
    let at = date_ms(&sd1["at"]);
    assert!((before - 60000..=after - 60000).contains(&at), "{sd1}");
    let sd2 = get_doc(&app, "todos", "sd2").await.expect("sd2");
    let at = date_ms(&sd2["meta"]["at"]);
    assert!((before..=after).contains(&at), "{sd2}");
    let later = date_ms(&sd2["list"][0]);
    assert!((before + 5000..=after + 5000).contains(&later), "{sd2}");
    // and they sort as dates
    let order = r#"[{"field":"at","direction":"desc"}]"#;
    let q = r#"{"at":{"$exists":true}}"#;
    assert_eq!(sorted_ids(&app, "todos", q, order).await, strs(&["sd1"]));
    let q = format!(
        r#"{{"meta.at":{{"$gt":{{"$date":{{"$numberLong":"{}"}}}}}}}}"#,
        before - 1
    );
    assert_eq!(ids(&app, "todos", &q).await, strs(&["sd2"]));
}

#[actix_web::test]
async fn update_with_inc_push_set_unset_server_date() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([
            { "_id": "doc-1", "count": 5, "tags": ["a", "b"], "meta": { "w": 0 }, "stale": true, "nested": { "x": 1 }, "keep": "k" },
            { "_id": "doc-2", "count": 5 },
        ]),
    )
    .await;
    let body = json!({
        "query": { "_id": "doc-1" },
        "data": {
            "$inc": { "count": 1 },
            "$push": { "tags": { "$each": ["c"] } },
            "$set": { "meta.x": 1, "updatedAt": { "$date": { "offset": 1000 } }, "nested.y": 2 },
            "$unset": { "stale": "" },
        },
        "multi": false, "upsert": false, "replaceMode": false,
    });
    let before = now_ms();
    let (status, reply, rid) = call(&app, patch_json(&docs_uri("todos"), &body)).await;
    let after = now_ms();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 1, "{reply}");
    assert_eq!(reply["requestId"].as_str(), rid.as_deref());
    let doc = get_doc(&app, "todos", "doc-1").await.expect("doc-1");
    let updated_at = date_ms(&doc["updatedAt"]);
    assert!(
        (before + 1000..=after + 1000).contains(&updated_at),
        "updatedAt {updated_at} vs now {before}..{after} + 1000"
    );
    assert_eq!(
        doc,
        json!({
            "_id": "doc-1", "count": 6, "tags": ["a", "b", "c"], "meta": { "w": 0, "x": 1 },
            "nested": { "x": 1, "y": 2 }, "keep": "k", "updatedAt": { "$date": updated_at },
        })
    );
    // the other document is untouched
    assert_eq!(
        get_doc(&app, "todos", "doc-2").await,
        Some(json!({ "_id": "doc-2", "count": 5 }))
    );
}

/// The second update payload of the capture: every remaining operator.
pub(crate) fn every_operator_update() -> Value {
    json!({
        "$mul": { "m": 2 },
        "$pop": { "a1": 1, "a2": -1 },
        "$push": { "a3": { "$each": [0], "$position": 0 }, "a7": { "$each": [1, 2], "$position": 0, "$sort": -1, "$slice": 5 } },
        "$addToSet": { "a4": "z" },
        "$pull": { "a5": { "$gt": 3 } },
        "$pullAll": { "a6": [1, 2] },
        "$rename": { "old": "renamed" },
        "$min": { "lo": 1 },
        "$max": { "hi": 9 },
    })
}

/// A document for [`every_operator_update`] and what it must become.
pub(crate) fn every_operator_before_after() -> (Value, Value) {
    let before = json!({
        "_id": "doc-1", "m": 3, "a1": [1, 2, 3], "a2": [1, 2, 3], "a3": [1, 2], "a4": ["x"],
        "a5": [1, 5, 2, 7, 3], "a6": [1, 2, 3, 1], "old": "v", "lo": 5, "hi": 5, "a7": [3, 7, 5, 4],
    });
    let after = json!({
        "_id": "doc-1", "m": 6, "a1": [1, 2], "a2": [2, 3], "a3": [0, 1, 2], "a4": ["x", "z"],
        "a5": [1, 2, 3], "a6": [3], "renamed": "v", "lo": 1, "hi": 9, "a7": [7, 5, 4, 3, 2],
    });
    (before, after)
}

#[actix_web::test]
async fn update_with_every_other_operator() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let (before, after) = every_operator_before_after();
    add_docs(&app, "default", "todos", json!([before, { "_id": "doc-2" }])).await;
    let body = |id: &str| json!({ "query": { "_id": id }, "data": every_operator_update(), "multi": false, "upsert": false, "replaceMode": false });
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body("doc-1"))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 1, "{reply}");
    assert_eq!(get_doc(&app, "todos", "doc-1").await, Some(after));
    // on a document without those fields (MongoDB semantics: $mul creates 0, $pop/$pull/$rename are no-ops)
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body("doc-2"))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 1, "{reply}");
    assert_eq!(
        get_doc(&app, "todos", "doc-2").await,
        Some(json!({ "_id": "doc-2", "m": 0, "a3": [0], "a4": ["z"], "a7": [2, 1], "lo": 1, "hi": 9 }))
    );
}

#[actix_web::test]
async fn set_replaces_and_upserts() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([{ "_id": "doc-1", "title": "old", "count": 3, "tags": ["a"] }]),
    )
    .await;
    let body = |id: &str| json!({ "query": { "_id": id }, "data": { "title": "replaced", "done": true }, "multi": false, "upsert": true, "replaceMode": false });
    // existing id: replaced whole, no upsert
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body("doc-1"))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 1, "{reply}");
    assert_eq!(reply["upsert_id"], "", "{reply}");
    assert_eq!(reply["upserted_id"], "", "{reply}");
    assert_eq!(
        get_doc(&app, "todos", "doc-1").await,
        Some(json!({ "_id": "doc-1", "title": "replaced", "done": true }))
    );
    // missing id: inserted under that id
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body("doc-9"))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 0, "{reply}");
    assert_eq!(reply["upsert_id"], "doc-9", "{reply}");
    // js-sdk's doc().set() reports `upsertedId` from `upserted_id`
    assert_eq!(reply["upserted_id"], "doc-9", "{reply}");
    assert_eq!(
        get_doc(&app, "todos", "doc-9").await,
        Some(json!({ "_id": "doc-9", "title": "replaced", "done": true }))
    );
    assert_eq!(count_in(&app, "default", "todos", "{}").await, 2);
    // the same set again changes nothing and inserts nothing
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body("doc-9"))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["upsert_id"], "", "{reply}");
    assert_eq!(count_in(&app, "default", "todos", "{}").await, 2);
    // upsert: false on a missing id inserts nothing
    let body = json!({ "query": { "_id": "doc-8" }, "data": { "title": "t" }, "multi": false, "upsert": false });
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 0, "{reply}");
    assert_eq!(get_doc(&app, "todos", "doc-8").await, None);
}

#[actix_web::test]
async fn where_update_multi_and_single() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([
            { "_id": "a", "done": false }, { "_id": "b", "done": false }, { "_id": "c", "done": false },
            { "_id": "d", "done": true }, { "_id": "e" },
        ]),
    )
    .await;
    let body = json!({ "query": { "done": false }, "data": { "$set": { "done": true } }, "multi": true, "upsert": false, "replaceMode": false });
    let (status, reply, rid) = call(&app, patch_json(&docs_uri("todos"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 3, "{reply}");
    assert_eq!(reply["upsert_id"], "", "{reply}");
    assert_eq!(reply["requestId"].as_str(), rid.as_deref());
    assert_eq!(
        sorted(ids(&app, "todos", r#"{"done":true}"#).await),
        strs(&["a", "b", "c", "d"])
    );
    assert_eq!(get_doc(&app, "todos", "e").await, Some(json!({ "_id": "e" })));
    // multi: false touches exactly one
    let body = json!({ "query": { "done": true }, "data": { "$set": { "flag": 1 } }, "multi": false, "upsert": false });
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 1, "{reply}");
    assert_eq!(count_in(&app, "default", "todos", r#"{"flag":1}"#).await, 1);
    // a match that changes nothing is not counted as updated
    let body =
        json!({ "query": { "_id": "a" }, "data": { "$set": { "done": true } }, "multi": false, "upsert": false });
    let (status, reply) = send(&app, patch_json(&docs_uri("todos"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 0, "{reply}");
}

#[actix_web::test]
async fn remove_single_and_multi() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([
            { "_id": "doc-1", "done": true }, { "_id": "doc-2", "done": true }, { "_id": "doc-3", "done": true },
            { "_id": "doc-4", "done": true }, { "_id": "doc-5", "done": false },
        ]),
    )
    .await;
    let uri = format!("{}/remove", docs_uri("todos"));
    let (status, reply, rid) = call(
        &app,
        post_json(&uri, &json!({ "query": { "_id": "doc-1" }, "multi": false })),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["deleted"], 1, "{reply}");
    assert_eq!(reply["requestId"].as_str(), rid.as_deref());
    assert_eq!(get_doc(&app, "todos", "doc-1").await, None);
    // removing it again deletes nothing
    let (status, reply) = send(
        &app,
        post_json(&uri, &json!({ "query": { "_id": "doc-1" }, "multi": false })),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["deleted"], 0, "{reply}");
    // multi: false with several matches deletes one
    let (status, reply) = send(
        &app,
        post_json(&uri, &json!({ "query": { "done": true }, "multi": false })),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["deleted"], 1, "{reply}");
    assert_eq!(count_in(&app, "default", "todos", r#"{"done":true}"#).await, 2);
    // where({done:true}).remove()
    let (status, reply) = send(
        &app,
        post_json(&uri, &json!({ "query": { "done": true }, "multi": true })),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["deleted"], 2, "{reply}");
    assert_eq!(ids(&app, "todos", "{}").await, vec!["doc-5"]);
}

#[actix_web::test]
async fn post_with_method_override_is_an_update() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(&app, "default", "todos", json!([{ "_id": "doc-1", "count": 1 }])).await;
    let body = json!({ "query": { "_id": "doc-1" }, "data": { "$inc": { "count": 41 } }, "multi": false, "upsert": false, "replaceMode": false });
    let req = post_json(&docs_uri("todos"), &body).insert_header(("X-HTTP-Method-Override", "PATCH"));
    let (status, reply, rid) = call(&app, req).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 1, "{reply}");
    assert!(reply.get("insertedIds").is_none(), "{reply}");
    assert_eq!(reply["requestId"].as_str(), rid.as_deref());
    assert_eq!(
        get_doc(&app, "todos", "doc-1").await,
        Some(json!({ "_id": "doc-1", "count": 42 }))
    );
    assert_eq!(count_in(&app, "default", "todos", "{}").await, 1, "nothing was added");
    // set() through the override with upsert
    let body = json!({ "query": { "_id": "doc-2" }, "data": { "title": "t" }, "multi": false, "upsert": true, "replaceMode": false });
    let req = post_json(&docs_uri("todos"), &body).insert_header(("x-http-method-override", "patch"));
    let (status, reply) = send(&app, req).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["upsert_id"], "doc-2", "{reply}");
    assert_eq!(
        get_doc(&app, "todos", "doc-2").await,
        Some(json!({ "_id": "doc-2", "title": "t" }))
    );
}

#[actix_web::test]
async fn get_by_id_route() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let doc = json!({ "_id": "doc-1", "title": "hello", "n": 1.5, "due": { "$date": 1_700_000_000_000i64 }, "a": [1, { "b": null }] });
    add_docs(&app, "default", "todos", json!([doc, { "_id": "doc 2/x" }])).await;
    let (status, body, rid) = call(&app, get(&format!("{}/doc-1", docs_uri("todos")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, doc, "GET by id returns the document object itself");
    assert!(rid.is_some_and(|r| !r.is_empty()), "x-request-id header");
    // ids that need escaping
    assert_eq!(
        get_doc(&app, "todos", "doc 2/x").await,
        Some(json!({ "_id": "doc 2/x" }))
    );
    // missing id: 404 with the GATEWAY error shape
    let (status, body, rid) = call(&app, get(&format!("{}/nope", docs_uri("todos")))).await;
    assert_gateway_error(status, &body, 404, "DATABASE_DOCUMENT_NOT_EXIST", "GET missing id");
    assert_eq!(body["requestId"].as_str(), rid.as_deref());
}

#[actix_web::test]
async fn every_reply_carries_the_request_id() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let u = docs_uri("todos");
    let requests: Vec<(&str, TestRequest)> = vec![
        (
            "collections",
            post_json(&format!("{DB}/collections"), &json!({ "collectionName": "more" })),
        ),
        ("add", post_json(&u, &json!({ "data": [{ "_id": "r1", "v": 1 }] }))),
        ("list", get(&list_uri("todos", &[("query", "{}")]))),
        ("count", get(&list_uri("todos", &[("count", "true")]))),
        (
            "update",
            patch_json(&u, &json!({ "query": { "_id": "r1" }, "data": { "$set": { "v": 2 } } })),
        ),
        (
            "remove",
            post_json(
                &format!("{u}/remove"),
                &json!({ "query": { "_id": "r1" }, "multi": false }),
            ),
        ),
        ("error", get(&format!("{u}/missing"))),
        ("missing collection", get(&list_uri("ghost", &[]))),
    ];
    let mut seen = Vec::new();
    for (what, req) in requests {
        let (status, body, rid) = call(&app, req).await;
        assert!(status == 200 || status == 404, "{what}: {status} {body}");
        let in_body = body["requestId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no requestId in {body}"));
        assert!(!in_body.is_empty(), "{what}");
        assert_eq!(rid.as_deref(), Some(in_body), "{what}: header and body agree");
        seen.push(in_body.to_string());
    }
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "request ids are unique");
    // a sane client request id is echoed
    let req = get(&list_uri("todos", &[])).insert_header(("x-request-id", "client-req-42"));
    let (status, body, rid) = call(&app, req).await;
    assert_eq!(status, 200);
    assert_eq!(body["requestId"], "client-req-42");
    assert_eq!(rid.as_deref(), Some("client-req-42"));
}

#[actix_web::test]
async fn list_defaults_to_100_and_pages() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    let docs: Vec<Value> = (0..105).map(|i| json!({ "_id": format!("d{i:03}"), "i": i })).collect();
    add_docs(&app, "default", "todos", Value::Array(docs)).await;
    let (status, body) = send(&app, get(&docs_uri("todos"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["list"].as_array().expect("list").len(),
        100,
        "default limit is 100"
    );
    assert_eq!(list(&app, "todos", &[("limit", "1000")]).await.len(), 105);
    let order = r#"[{"field":"i","direction":"desc"}]"#;
    let page = list(&app, "todos", &[("order", order), ("offset", "100"), ("limit", "10")]).await;
    assert_eq!(ids_of(&page), strs(&["d004", "d003", "d002", "d001", "d000"]));
    let page = list(&app, "todos", &[("order", order), ("offset", "3"), ("limit", "2")]).await;
    assert_eq!(ids_of(&page), strs(&["d101", "d100"]));
    assert_eq!(list(&app, "todos", &[("offset", "200")]).await, Vec::<Value>::new());
}

// ---- dates, envs, missing collections, duplicates ------------------------------------------------

#[actix_web::test]
async fn dates_sort_and_compare_as_dates() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "ev").await;
    add_docs(
        &app,
        "default",
        "ev",
        json!([
            { "_id": "d1", "when": { "$date": 3000 } },
            { "_id": "d2", "when": { "$date": { "$numberLong": "1000" } } },
            { "_id": "d3", "when": { "$date": "1970-01-01T00:00:02.000Z" } },
            { "_id": "d4", "when": 1500 },
            { "_id": "d5", "when": "1970-01-01T00:00:01.500Z" },
            { "_id": "d6", "when": { "$date": -5000 } },
        ]),
    )
    .await;
    // stored and returned as {"$date": ms}
    assert_eq!(
        get_doc(&app, "ev", "d2").await,
        Some(json!({ "_id": "d2", "when": { "$date": 1000 } }))
    );
    assert_eq!(
        get_doc(&app, "ev", "d3").await,
        Some(json!({ "_id": "d3", "when": { "$date": 2000 } }))
    );
    // numbers < strings < dates; dates by time
    let asc = r#"[{"field":"when","direction":"asc"}]"#;
    assert_eq!(
        sorted_ids(&app, "ev", "{}", asc).await,
        strs(&["d4", "d5", "d6", "d2", "d3", "d1"])
    );
    let desc = r#"[{"field":"when","direction":"desc"}]"#;
    assert_eq!(
        sorted_ids(&app, "ev", "{}", desc).await,
        strs(&["d1", "d3", "d2", "d6", "d5", "d4"])
    );
    // comparisons only between dates (canonical EJSON in the query string)
    let q = r#"{"when":{"$lt":{"$date":{"$numberLong":"2500"}}}}"#;
    assert_eq!(sorted(ids(&app, "ev", q).await), strs(&["d2", "d3", "d6"]));
    let q = r#"{"when":{"$gte":{"$date":{"$numberLong":"2000"}},"$lte":{"$date":{"$numberLong":"3000"}}}}"#;
    assert_eq!(sorted(ids(&app, "ev", q).await), strs(&["d1", "d3"]));
    let q = r#"{"when":{"$date":{"$numberLong":"1000"}}}"#;
    assert_eq!(ids(&app, "ev", q).await, strs(&["d2"]));
    let q = r#"{"when":{"$gt":{"$numberInt":"0"}}}"#;
    assert_eq!(
        ids(&app, "ev", q).await,
        strs(&["d4"]),
        "a number does not compare with dates"
    );
}

#[actix_web::test]
async fn data_never_crosses_envs() {
    let t = TestApp::new();
    let app = t.service().await;
    create_env(&app, "other").await;
    create_coll(&app, "default", "todos").await;
    create_coll(&app, "other", "todos").await;
    create_coll(&app, "other", "only-other").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([{ "_id": "x", "env": "default" }, { "_id": "y", "env": "default" }]),
    )
    .await;
    // same _id in another env is no duplicate
    add_docs(&app, "other", "todos", json!([{ "_id": "x", "env": "other" }])).await;
    assert_eq!(
        list_in(&app, "other", "todos", &[]).await,
        vec![json!({ "_id": "x", "env": "other" })]
    );
    assert_eq!(
        get_doc_in(&app, "other", "todos", "x").await,
        Some(json!({ "_id": "x", "env": "other" }))
    );
    assert_eq!(
        get_doc_in(&app, "default", "todos", "x").await,
        Some(json!({ "_id": "x", "env": "default" }))
    );
    assert_eq!(get_doc_in(&app, "other", "todos", "y").await, None);
    assert_eq!(count_in(&app, "default", "todos", "{}").await, 2);
    assert_eq!(count_in(&app, "other", "todos", "{}").await, 1);
    // writes in one env leave the other alone
    let body = json!({ "query": {}, "data": { "$set": { "touched": true } }, "multi": true });
    let (status, reply) = send(&app, patch_json(&in_env(&docs_uri("todos"), "other"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["updated"], 1, "{reply}");
    assert_eq!(count_in(&app, "default", "todos", r#"{"touched":true}"#).await, 0);
    let uri = in_env(&format!("{}/remove", docs_uri("todos")), "default");
    let (status, reply) = send(&app, post_json(&uri, &json!({ "query": {}, "multi": true }))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["deleted"], 2, "{reply}");
    assert_eq!(count_in(&app, "other", "todos", "{}").await, 1);
    // a collection of one env does not exist in the other
    let (status, body) = send(&app, get(&list_uri("only-other", &[]))).await;
    assert_gateway_error(
        status,
        &body,
        404,
        "DATABASE_COLLECTION_NOT_EXIST",
        "collection of another env",
    );
    assert_eq!(count_in(&app, "other", "only-other", "{}").await, 0);
}

/// js-sdk never sends its env on GATEWAY (on CloudBase it is in the host name): without `?env=`
/// a signed-in user's requests go to the env of their token, so `init({env: 'other'})` works.
#[actix_web::test]
async fn without_env_a_user_token_addresses_its_own_env() {
    let t = TestApp::new();
    let app = t.service().await;
    create_env(&app, "other").await;
    create_coll(&app, "default", "todos").await;
    create_coll(&app, "other", "todos").await;
    let (status, cred) = send(
        &app,
        post_json("/auth/v1/signin/anonymously?client_id=other", &json!({})),
    )
    .await;
    assert_eq!(status, 200, "{cred}");
    let user = |req: TestRequest| {
        req.insert_header((
            "authorization",
            format!("Bearer {}", cred["access_token"].as_str().unwrap()),
        ))
    };

    // the SDK's add and list, with no env anywhere in the request
    let (status, body) = send(
        &app,
        user(post_json(&docs_uri("todos"), &json!({ "data": [{ "_id": "o1" }] }))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get_doc_in(&app, "other", "todos", "o1")
            .await
            .map(|d| d["_openid"].clone()),
        Some(cred["sub"].clone())
    );
    assert_eq!(get_doc_in(&app, "default", "todos", "o1").await, None);
    let (status, body) = send(&app, user(get(&list_uri("todos", &[])))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["list"].as_array().map(Vec::len), Some(1), "{body}");

    // an explicit ?env= still wins, and a user token of another env is refused there
    let (status, body) = send(&app, user(get(&in_env(&list_uri("todos", &[]), "default")))).await;
    assert_gateway_error(status, &body, 401, "UNAUTHENTICATED", "token of `other` in `default`");
    // a token that does not verify is refused as such, not sent to another env
    let bad = get(&list_uri("todos", &[])).insert_header(("authorization", "Bearer not-a-token"));
    let (status, body) = send(&app, bad).await;
    assert_gateway_error(status, &body, 401, "UNAUTHENTICATED", "garbage token");
    // guests (and admins) without ?env= are in `default`
    add_docs(&app, "default", "todos", json!([{ "_id": "d1" }])).await;
    assert_eq!(
        get_doc_in(&app, "default", "todos", "d1").await,
        Some(json!({ "_id": "d1" }))
    );
    let (status, body) = send(&app, as_guest(get(&list_uri("todos", &[])))).await;
    assert_gateway_error(
        status,
        &body,
        403,
        "DATABASE_PERMISSION_DENIED",
        "guest in default (PRIVATE)",
    );
}

#[actix_web::test]
async fn unknown_env_is_invalid_env() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(&app, "default", "todos", json!([{ "_id": "a" }])).await;
    let u = docs_uri("todos");
    for env in ["nope", "bad name"] {
        let requests: Vec<(&str, TestRequest)> = vec![
            ("list", get(&in_env(&list_uri("todos", &[]), env))),
            ("count", get(&in_env(&list_uri("todos", &[("count", "true")]), env))),
            ("get", get(&in_env(&format!("{u}/a"), env))),
            ("add", post_json(&in_env(&u, env), &json!({ "data": [{ "_id": "b" }] }))),
            (
                "update",
                patch_json(
                    &in_env(&u, env),
                    &json!({ "query": {}, "data": { "$set": { "v": 1 } }, "multi": true, "upsert": true }),
                ),
            ),
            (
                "remove",
                post_json(
                    &in_env(&format!("{u}/remove"), env),
                    &json!({ "query": {}, "multi": true }),
                ),
            ),
            (
                "collections",
                post_json(
                    &in_env(&format!("{DB}/collections"), env),
                    &json!({ "collectionName": "c2" }),
                ),
            ),
        ];
        for (what, req) in requests {
            let (status, body) = send(&app, req).await;
            assert_gateway_error(status, &body, 400, "INVALID_ENV", &format!("{what} in env `{env}`"));
        }
    }
    // nothing was written anywhere, and no env was created
    assert_eq!(list(&app, "todos", &[]).await, vec![json!({ "_id": "a" })]);
    let (_, envs) = send(&app, get("/admin/v1/envs")).await;
    let names: Vec<&str> = envs["envs"]
        .as_array()
        .expect("envs")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["default"]);
}

#[actix_web::test]
async fn missing_collection_is_404_for_reads_and_writes() {
    let t = TestApp::new();
    let app = t.service().await;
    let u = docs_uri("ghost");
    let requests: Vec<(&str, TestRequest)> = vec![
        ("list", get(&list_uri("ghost", &[("query", "{}")]))),
        ("count", get(&list_uri("ghost", &[("count", "true")]))),
        ("get", get(&format!("{u}/a"))),
        ("add", post_json(&u, &json!({ "data": [{ "_id": "a" }] }))),
        (
            "update",
            patch_json(&u, &json!({ "query": { "_id": "a" }, "data": { "$set": { "v": 1 } } })),
        ),
        (
            "upsert",
            patch_json(
                &u,
                &json!({ "query": { "_id": "a" }, "data": { "v": 1 }, "upsert": true }),
            ),
        ),
        (
            "override",
            post_json(
                &u,
                &json!({ "query": { "_id": "a" }, "data": { "v": 1 }, "upsert": true }),
            )
            .insert_header(("X-HTTP-Method-Override", "PATCH")),
        ),
        (
            "remove",
            post_json(&format!("{u}/remove"), &json!({ "query": {}, "multi": true })),
        ),
    ];
    for (what, req) in requests {
        let (status, body) = send(&app, req).await;
        assert_gateway_error(status, &body, 404, "DATABASE_COLLECTION_NOT_EXIST", what);
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("ghost")),
            "{what}: message names the collection: {body}"
        );
    }
    // no write created the collection
    let (status, body) = send(&app, get("/admin/v1/envs/default/collections")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["collections"], json!([]), "{body}");
}

#[actix_web::test]
async fn duplicate_id_is_409_and_writes_nothing() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "todos").await;
    add_docs(&app, "default", "todos", json!([{ "_id": "a", "v": 1 }])).await;
    let cases = [
        ("single", json!([{ "_id": "a", "v": 2 }])),
        (
            "batch, existing id last",
            json!([{ "_id": "b", "v": 2 }, { "_id": "a", "v": 2 }]),
        ),
        (
            "batch, duplicate inside",
            json!([{ "_id": "c", "v": 2 }, { "_id": "c", "v": 3 }]),
        ),
    ];
    for (what, data) in cases {
        let (status, body) = send(&app, post_json(&docs_uri("todos"), &json!({ "data": data }))).await;
        assert_gateway_error(status, &body, 409, "DATABASE_DUPLICATE_KEY", what);
        assert_eq!(
            list(&app, "todos", &[]).await,
            vec![json!({ "_id": "a", "v": 1 })],
            "{what}: nothing written"
        );
    }
}

// ---- MongoDB semantics through HTTP -----------------------------------------------------------

#[actix_web::test]
async fn equality_against_arrays() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "c").await;
    add_docs(
        &app,
        "default",
        "c",
        json!([
            { "_id": "a", "tags": ["x", "y"] },
            { "_id": "b", "tags": ["y", "x"] },
            { "_id": "c", "tags": "x" },
            { "_id": "d", "tags": [["x", "y"]] },
            { "_id": "e", "tags": ["z"] },
            { "_id": "f", "tags": [] },
        ]),
    )
    .await;
    assert_eq!(sorted(ids(&app, "c", r#"{"tags":"x"}"#).await), strs(&["a", "b", "c"]));
    assert_eq!(sorted(ids(&app, "c", r#"{"tags":["x","y"]}"#).await), strs(&["a", "d"]));
    assert_eq!(
        sorted(ids(&app, "c", r#"{"tags":{"$eq":["y","x"]}}"#).await),
        strs(&["b"])
    );
    assert_eq!(sorted(ids(&app, "c", r#"{"tags":[]}"#).await), strs(&["f"]));
    assert_eq!(
        sorted(ids(&app, "c", r#"{"tags":{"$in":["z","q"]}}"#).await),
        strs(&["e"])
    );
    assert_eq!(
        sorted(ids(&app, "c", r#"{"tags":{"$all":["y","x"]}}"#).await),
        strs(&["a", "b"])
    );
    assert_eq!(sorted(ids(&app, "c", r#"{"tags":{"$size":0}}"#).await), strs(&["f"]));
    assert_eq!(
        sorted(ids(&app, "c", r#"{"tags":{"$ne":"x"}}"#).await),
        strs(&["d", "e", "f"])
    );
}

#[actix_web::test]
async fn dot_paths_into_nested_arrays() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "c").await;
    add_docs(
        &app,
        "default",
        "c",
        json!([
            { "_id": "p", "a": { "b": [{ "c": 1 }, { "c": 2 }] } },
            { "_id": "q", "a": { "b": [{ "c": 2 }, { "c": 1 }] } },
            { "_id": "r", "a": [{ "b": [{ "c": 1 }] }] },
            { "_id": "s", "a": { "b": { "0": { "c": 1 } } } },
            { "_id": "t", "a": { "b": [] } },
        ]),
    )
    .await;
    assert_eq!(sorted(ids(&app, "c", r#"{"a.b.0.c":1}"#).await), strs(&["p", "r", "s"]));
    assert_eq!(sorted(ids(&app, "c", r#"{"a.b.1.c":1}"#).await), strs(&["q"]));
    assert_eq!(sorted(ids(&app, "c", r#"{"a.b.c":2}"#).await), strs(&["p", "q"]));
    assert_eq!(
        sorted(ids(&app, "c", r#"{"a.b.1":{"$exists":true}}"#).await),
        strs(&["p", "q"])
    );
    assert_eq!(sorted(ids(&app, "c", r#"{"a.b.0.c":{"$gt":1}}"#).await), strs(&["q"]));
    // update through a dot path with an array index
    let body = json!({ "query": { "_id": "p" }, "data": { "$set": { "a.b.1.c": 20 } }, "multi": false });
    let (status, reply) = send(&app, patch_json(&docs_uri("c"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        get_doc(&app, "c", "p").await,
        Some(json!({ "_id": "p", "a": { "b": [{ "c": 1 }, { "c": 20 }] } }))
    );
}

#[actix_web::test]
async fn cross_type_sort_order() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "c").await;
    add_docs(
        &app,
        "default",
        "c",
        json!([
            { "_id": "t2", "v": { "$date": 2000 } },
            { "_id": "b2", "v": true },
            { "_id": "s2", "v": "s" },
            { "_id": "p2", "v": 5 },
            { "_id": "o1", "v": { "x": 1 } },
            { "_id": "n1", "v": null },
            { "_id": "r1", "v": [[1]] },
            { "_id": "s1", "v": "a" },
            { "_id": "p1", "v": 2.5 },
            { "_id": "t1", "v": { "$date": 5 } },
            { "_id": "b1", "v": false },
            { "_id": "n2" },
            { "_id": "s3", "v": "B" },
            { "_id": "p3", "v": -1 },
        ]),
    )
    .await;
    let asc = r#"[{"field":"v","direction":"asc"},{"field":"_id","direction":"asc"}]"#;
    assert_eq!(
        sorted_ids(&app, "c", "{}", asc).await,
        strs(&["n1", "n2", "p3", "p1", "p2", "s3", "s1", "s2", "o1", "r1", "b1", "b2", "t1", "t2"])
    );
    let desc = r#"[{"field":"v","direction":"desc"},{"field":"_id","direction":"asc"}]"#;
    assert_eq!(
        sorted_ids(&app, "c", "{}", desc).await,
        strs(&["t2", "t1", "b2", "b1", "r1", "o1", "s2", "s1", "s3", "p2", "p1", "p3", "n1", "n2"])
    );
    // comparisons stay within a type
    assert_eq!(sorted(ids(&app, "c", r#"{"v":{"$lt":3}}"#).await), strs(&["p1", "p3"]));
    assert_eq!(sorted(ids(&app, "c", r#"{"v":{"$gt":"a"}}"#).await), strs(&["s2"]));
    assert_eq!(
        sorted(ids(&app, "c", r#"{"v":{"$gte":false}}"#).await),
        strs(&["b1", "b2"])
    );
    assert_eq!(sorted(ids(&app, "c", r#"{"v":null}"#).await), strs(&["n1", "n2"]));
}

#[actix_web::test]
async fn ne_and_nin_match_missing_fields() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "c").await;
    add_docs(
        &app,
        "default",
        "c",
        json!([
            { "_id": "a", "v": 1 }, { "_id": "b", "v": 2 }, { "_id": "c" }, { "_id": "d", "v": null },
            { "_id": "e", "v": [1, 2] }, { "_id": "f", "v": [2, 3] }, { "_id": "g", "v": "1" },
        ]),
    )
    .await;
    assert_eq!(
        sorted(ids(&app, "c", r#"{"v":{"$ne":1}}"#).await),
        strs(&["b", "c", "d", "f", "g"])
    );
    assert_eq!(
        sorted(ids(&app, "c", r#"{"v":{"$nin":[1,null]}}"#).await),
        strs(&["b", "f", "g"])
    );
    assert_eq!(
        sorted(ids(&app, "c", r#"{"v":{"$ne":null}}"#).await),
        strs(&["a", "b", "e", "f", "g"])
    );
    assert_eq!(sorted(ids(&app, "c", r#"{"v":{"$exists":false}}"#).await), strs(&["c"]));
}

// ---- paging echo, projections by id, empty updates, unsupported features, CORS ---------------

#[actix_web::test]
async fn replies_echo_the_offset_and_limit_applied() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", "p").await;
    add_docs(&svc, "default", "p", json!([{"n": 1}, {"n": 2}, {"n": 3}])).await;
    // canonical EJSON numbers, as the SDK's GET query strings carry them
    let uri = list_uri(
        "p",
        &[("limit", r#"{"$numberInt":"2"}"#), ("offset", r#"{"$numberInt":"1"}"#)],
    );
    let (status, body) = send(&svc, get(&uri)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["offset"].clone(), body["limit"].clone()), (json!(1), json!(2)));
    assert_eq!(body["list"].as_array().unwrap().len(), 2);
    // limit 0 means the default, and the reply says which
    let (_, body) = send(&svc, get(&list_uri("p", &[("limit", "0")]))).await;
    assert_eq!(body["limit"], json!(100));
    assert_eq!(body["list"].as_array().unwrap().len(), 3);
}

#[actix_web::test]
async fn get_by_id_honours_projection() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", "b").await;
    add_docs(&svc, "default", "b", json!([{"_id": "b1", "title": "t", "secret": 1}])).await;
    let uri = format!("{}/b1?projection={}", docs_uri("b"), enc(r#"{"title":1}"#));
    let (status, body) = send(&svc, get(&uri)).await;
    assert_eq!((status, body), (200, json!({"_id": "b1", "title": "t"})));
    let uri = format!("{}/nope?projection={}", docs_uri("b"), enc(r#"{"title":1}"#));
    let (status, body) = send(&svc, get(&uri)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_DOCUMENT_NOT_EXIST"))
    );
}

#[actix_web::test]
async fn an_empty_update_is_refused_and_changes_nothing() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", "w").await;
    add_docs(&svc, "default", "w", json!([{"_id": "w1", "keep": true}])).await;
    let body = json!({"query": {"_id": "w1"}, "data": {}, "multi": false});
    let (status, reply) = send(&svc, patch_json(&docs_uri("w"), &body)).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (400, Some("INVALID_PARAM")),
        "{reply}"
    );
    let web = json!({"action": "database.updateDocument", "collectionName": "w", "query": {"_id": "w1"}, "data": {}});
    let (status, reply) = send(&svc, post_json("/web?env=default", &web)).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (200, Some("INVALID_PARAM")),
        "{reply}"
    );
    let (_, doc) = send(&svc, get(&format!("{}/w1", docs_uri("w")))).await;
    assert_eq!(doc, json!({"_id": "w1", "keep": true}));
}

#[actix_web::test]
async fn unknown_transactions_do_not_exist() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", "a").await;
    let uri = list_uri("a", &[("query", r#"{"_id":"x"}"#), ("transactionId", "tx-1")]);
    let (status, body) = send(&svc, get(&uri)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_TRANSACTION_NOT_EXIST")),
        "{body}"
    );
}

#[actix_web::test]
async fn browsers_from_other_origins_pass_cors() {
    let app = TestApp::new();
    let svc = app.service().await;
    let preflight = TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri(&docs_uri("x"))
        .insert_header(("origin", "https://app.example.com"))
        .insert_header(("access-control-request-method", "PATCH"))
        .insert_header(("access-control-request-headers", "authorization, content-type"));
    let res = test::call_service(&svc, preflight.to_request()).await;
    assert!(res.status().is_success(), "preflight status {}", res.status());
    let allow = res
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(allow.as_deref(), Some("https://app.example.com"));
    let req = get("/health").insert_header(("origin", "https://app.example.com"));
    let res = test::call_service(&svc, req.to_request()).await;
    let exposed = res
        .headers()
        .get("access-control-expose-headers")
        .map(|v| v.to_str().unwrap().to_lowercase());
    assert!(exposed.is_some_and(|v| v.contains("x-request-id")));
}
