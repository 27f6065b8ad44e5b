//! CLOUD_API action RPC (`POST /web?env=…`): every database payload the official SDK sends in
//! CLOUD_API mode (cloudbase-protocol.md §3.9) with the full envelope, the HTTP-200 reply and error
//! shapes, and the same data seen through both protocols.

use serde_json::{json, Value};

use crate::common::*;
use crate::gateway::{
    add_docs, call, complex_seed, count_in, create_coll, create_env, date_ms, every_operator_before_after,
    every_operator_update, get_doc, get_doc_in, ids_of, list, list_in, now_ms, sorted, strs, Svc, COMPLEX_MATCH_ORDER,
    COMPLEX_PAGE,
};

/// The envelope of every CLOUD_API call, around the action-specific fields.
fn envelope(env: &str, fields: Value) -> Value {
    let mut body = json!({
        "dataVersion": "2020-01-10",
        "env": env,
        "access_token": TEST_ADMIN_KEY,
        "seqId": "8f3a1c2b9d4e5f60",
    });
    let m = body.as_object_mut().expect("object");
    for (k, v) in fields.as_object().expect("action fields are an object") {
        m.insert(k.clone(), v.clone());
    }
    body
}

/// `POST /web?env={env}` with the envelope: the whole reply (always HTTP 200).
async fn web_raw(app: &impl Svc, env: &str, fields: Value) -> Value {
    let uri = format!("/web?env={}", enc(env));
    let (status, body, rid) = call(app, post_json(&uri, &envelope(env, fields))).await;
    assert_eq!(status, 200, "CLOUD_API always answers HTTP 200: {body}");
    let in_body = body["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("no requestId in {body}"));
    assert!(!in_body.is_empty());
    assert_eq!(
        rid.as_deref(),
        Some(in_body),
        "x-request-id header equals body requestId"
    );
    body
}

/// A successful call: `data` of `{requestId, data}`.
async fn web(app: &impl Svc, fields: Value) -> Value {
    web_in(app, "default", fields).await
}

async fn web_in(app: &impl Svc, env: &str, fields: Value) -> Value {
    let action = fields["action"].clone();
    let body = web_raw(app, env, fields).await;
    assert!(body.get("code").is_none(), "{action} failed: {body}");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 2, "success is exactly {{requestId, data}}: {body}");
    body.get("data").unwrap_or_else(|| panic!("no data in {body}")).clone()
}

/// A failed call: asserts the `{requestId, code, message}` shape and returns it.
async fn web_err(app: &impl Svc, env: &str, fields: Value, code: &str) -> Value {
    let body = web_raw(app, env, fields).await;
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "empty message: {body}"
    );
    assert!(body.get("data").is_none(), "an error has no data: {body}");
    body
}

async fn add_collection(app: &impl Svc, env: &str, name: &str) {
    let data = web_in(
        app,
        env,
        json!({ "action": "database.addCollection", "collectionName": name }),
    )
    .await;
    assert!(data.is_object(), "{data}");
}

/// The capture's complex query, CLOUD_API form (legacy encodings: plain numbers, `{$date: ms}`).
fn complex_query() -> Value {
    json!({
        "done": false, "tags": { "$in": ["a", "b"] }, "owner.name": { "$regex": "^al", "$options": "i" },
        "due": { "$lt": { "$date": 1_700_000_000_000i64 } }, "extra": { "$exists": true },
        "$and": [{ "priority": { "$gte": 2 } }, { "priority": { "$lt": 5 } }],
    })
}

fn complex_order() -> Value {
    json!([{ "field": "priority", "direction": "desc" }, { "field": "_id", "direction": "asc" }])
}

#[actix_web::test]
async fn add_collection_and_conflict() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    assert_eq!(
        count_in(&app, "default", "todos", "{}").await,
        0,
        "created, seen through GATEWAY"
    );
    let body = web_err(
        &app,
        "default",
        json!({ "action": "database.addCollection", "collectionName": "todos" }),
        "DATABASE_COLLECTION_ALREADY_EXIST",
    )
    .await;
    assert!(body["message"].as_str().is_some_and(|m| m.contains("todos")), "{body}");
}

#[actix_web::test]
async fn query_where_complex_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    add_docs(&app, "default", "todos", Value::Array(complex_seed())).await;
    let data = web(
        &app,
        json!({
            "action": "database.queryDocument", "collectionName": "todos", "queryType": "WHERE",
            "query": complex_query(), "order": complex_order(), "offset": 10, "limit": 5,
            "projection": { "title": 1, "priority": 1 },
        }),
    )
    .await;
    let page = data["list"].as_array().unwrap_or_else(|| panic!("no list in {data}"));
    assert_eq!(ids_of(page), strs(&COMPLEX_PAGE), "{data}");
    let prios = [("k13", 3), ("k16", 3), ("k02", 2), ("k06", 2), ("k10", 2)];
    for (doc, (id, p)) in page.iter().zip(prios) {
        assert_eq!(
            doc,
            &json!({ "_id": id, "title": format!("title {id}"), "priority": p })
        );
    }
    // the whole matched set
    let data = web(
        &app,
        json!({
            "action": "database.queryDocument", "collectionName": "todos", "queryType": "WHERE",
            "query": complex_query(), "order": complex_order(), "limit": 100,
        }),
    )
    .await;
    assert_eq!(
        ids_of(data["list"].as_array().expect("list")),
        strs(&COMPLEX_MATCH_ORDER)
    );
}

#[actix_web::test]
async fn query_or_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([
            { "_id": "a1b2", "a": 1, "b": 2 }, { "_id": "a2b2", "a": 2, "b": 2 }, { "_id": "a2b3", "a": 2, "b": 3 },
            { "_id": "a2", "a": 2 }, { "_id": "a2bArr", "a": 2, "b": [2, 3] },
        ]),
    )
    .await;
    let data = web(
        &app,
        json!({
            "action": "database.queryDocument", "collectionName": "todos", "queryType": "WHERE",
            "query": { "$or": [{ "a": { "$eq": 1 } }, { "b": { "$ne": 2 } }] }, "limit": 100,
        }),
    )
    .await;
    assert_eq!(
        sorted(ids_of(data["list"].as_array().expect("list"))),
        strs(&["a1b2", "a2", "a2b3"])
    );
}

#[actix_web::test]
async fn count_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([{ "done": true }, { "done": true }, { "done": false }, { "done": true }, {}]),
    )
    .await;
    let data = web(
        &app,
        json!({ "action": "database.countDocument", "collectionName": "todos", "queryType": "WHERE", "query": { "done": true } }),
    )
    .await;
    assert_eq!(data, json!({ "total": 3 }));
    let data = web(
        &app,
        json!({ "action": "database.countDocument", "collectionName": "todos", "queryType": "WHERE" }),
    )
    .await;
    assert_eq!(data, json!({ "total": 5 }));
}

#[actix_web::test]
async fn doc_get_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    let doc = json!({ "_id": "doc-1", "title": "hello", "done": false, "due": { "$date": 1_700_000_000_000i64 } });
    add_docs(&app, "default", "todos", json!([doc, { "_id": "doc-2" }])).await;
    let data = web(
        &app,
        json!({
            "action": "database.queryDocument", "collectionName": "todos", "query": { "_id": "doc-1" },
            "queryType": "DOC", "multi": false, "projection": {},
        }),
    )
    .await;
    assert_eq!(data["list"], json!([doc]), "{data}");
    let data = web(
        &app,
        json!({
            "action": "database.queryDocument", "collectionName": "todos", "query": { "_id": "nope" },
            "queryType": "DOC", "multi": false, "projection": {},
        }),
    )
    .await;
    assert_eq!(data["list"], json!([]), "{data}");
}

#[actix_web::test]
async fn add_single_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    let before = now_ms();
    let data = web(
        &app,
        json!({
            "action": "database.addDocument", "collectionName": "todos",
            "data": {
                "title": "x", "createdAt": { "$date": { "offset": 0 } },
                "loc": { "type": "Point", "coordinates": [113.3, 23.1] }, "when": { "$date": 1_700_000_000_000i64 },
            },
        }),
    )
    .await;
    let after = now_ms();
    let id = data["_id"]
        .as_str()
        .unwrap_or_else(|| panic!("single add replies {{_id}}: {data}"))
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    let doc = get_doc(&app, "todos", &id).await.expect("stored, seen through GATEWAY");
    let created = date_ms(&doc["createdAt"]);
    assert!(
        (before..=after).contains(&created),
        "createdAt {created} not in [{before}, {after}]"
    );
    assert_eq!(
        doc,
        json!({
            "_id": id, "title": "x", "createdAt": { "$date": created },
            "loc": { "type": "Point", "coordinates": [113.3, 23.1] }, "when": { "$date": 1_700_000_000_000i64 },
        })
    );
    // js-sdk 1.x sends the id beside the data
    let data = web(
        &app,
        json!({ "action": "database.addDocument", "collectionName": "todos", "_id": "side-id", "data": { "v": 1 } }),
    )
    .await;
    assert_eq!(data, json!({ "_id": "side-id" }));
    assert_eq!(
        get_doc(&app, "todos", "side-id").await,
        Some(json!({ "_id": "side-id", "v": 1 }))
    );
}

#[actix_web::test]
async fn add_batch_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    let data = web(
        &app,
        json!({ "action": "database.addDocument", "collectionName": "todos", "data": [{ "title": "a" }, { "title": "b" }] }),
    )
    .await;
    let ids: Vec<String> = data["insertedIds"]
        .as_array()
        .unwrap_or_else(|| panic!("batch add replies {{insertedIds}}: {data}"))
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        get_doc(&app, "todos", &ids[0]).await,
        Some(json!({ "_id": ids[0], "title": "a" }))
    );
    assert_eq!(
        get_doc(&app, "todos", &ids[1]).await,
        Some(json!({ "_id": ids[1], "title": "b" }))
    );
}

#[actix_web::test]
async fn update_merge_true_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([{ "_id": "doc-1", "count": 5, "tags": ["a"], "stale": 1, "nested": { "x": 1 } }]),
    )
    .await;
    let before = now_ms();
    let data = web(
        &app,
        json!({
            "action": "database.updateDocument", "collectionName": "todos",
            "data": {
                "$inc": { "count": 1 }, "$push": { "tags": { "$each": ["c"] } },
                "$set": { "meta.x": 1, "updatedAt": { "$date": { "offset": 1000 } }, "nested.y": 2 }, "$unset": { "stale": "" },
            },
            "query": { "_id": "doc-1" }, "queryType": "DOC", "multi": false, "merge": true, "upsert": false,
        }),
    )
    .await;
    let after = now_ms();
    assert_eq!(data["updated"], 1, "{data}");
    let doc = get_doc(&app, "todos", "doc-1").await.expect("doc-1");
    let updated_at = date_ms(&doc["updatedAt"]);
    assert!((before + 1000..=after + 1000).contains(&updated_at), "{updated_at}");
    assert_eq!(
        doc,
        json!({
            "_id": "doc-1", "count": 6, "tags": ["a", "c"], "nested": { "x": 1, "y": 2 }, "meta": { "x": 1 },
            "updatedAt": { "$date": updated_at },
        })
    );
    // the second update payload, every remaining operator
    let (before, after) = every_operator_before_after();
    let mut seed = before;
    seed["_id"] = json!("doc-ops");
    add_docs(&app, "default", "todos", json!([seed])).await;
    let data = web(
        &app,
        json!({
            "action": "database.updateDocument", "collectionName": "todos", "data": every_operator_update(),
            "query": { "_id": "doc-ops" }, "queryType": "DOC", "multi": false, "merge": true, "upsert": false,
        }),
    )
    .await;
    assert_eq!(data["updated"], 1, "{data}");
    let mut want = after;
    want["_id"] = json!("doc-ops");
    assert_eq!(get_doc(&app, "todos", "doc-ops").await, Some(want));
}

#[actix_web::test]
async fn set_merge_false_with_upsert_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([{ "_id": "doc-1", "title": "old", "n": 1 }]),
    )
    .await;
    let set = |id: &str| {
        json!({
            "action": "database.updateDocument", "collectionName": "todos", "queryType": "DOC",
            "data": { "title": "replaced", "done": true }, "multi": false, "merge": false, "upsert": true, "query": { "_id": id },
        })
    };
    let data = web(&app, set("doc-1")).await;
    assert_eq!(data["updated"], 1, "{data}");
    assert_eq!(data["upsert_id"], "", "no upsert on an existing doc: {data}");
    assert_eq!(data["upserted_id"], "", "no upsert on an existing doc: {data}");
    assert_eq!(
        get_doc(&app, "todos", "doc-1").await,
        Some(json!({ "_id": "doc-1", "title": "replaced", "done": true }))
    );
    let data = web(&app, set("doc-9")).await;
    assert_eq!(data["updated"], 0, "{data}");
    assert_eq!(data["upsert_id"], "doc-9", "{data}");
    // js-sdk's doc().set() reports `upsertedId` from `upserted_id`
    assert_eq!(data["upserted_id"], "doc-9", "{data}");
    assert_eq!(
        get_doc(&app, "todos", "doc-9").await,
        Some(json!({ "_id": "doc-9", "title": "replaced", "done": true }))
    );
    // merge: true with plain fields merges (update()), it does not replace
    let data = web(
        &app,
        json!({
            "action": "database.updateDocument", "collectionName": "todos", "queryType": "DOC",
            "data": { "extra": { "k": 1 } }, "multi": false, "merge": true, "upsert": false, "query": { "_id": "doc-9" },
        }),
    )
    .await;
    assert_eq!(data["updated"], 1, "{data}");
    assert_eq!(
        get_doc(&app, "todos", "doc-9").await,
        Some(json!({ "_id": "doc-9", "title": "replaced", "done": true, "extra": { "k": 1 } }))
    );
}

#[actix_web::test]
async fn where_update_and_removes_from_capture() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    add_docs(
        &app,
        "default",
        "todos",
        json!([{ "_id": "doc-1", "done": false }, { "_id": "doc-2", "done": false }, { "_id": "doc-3", "done": true }, { "_id": "doc-4" }]),
    )
    .await;
    let data = web(
        &app,
        json!({
            "action": "database.updateDocument", "collectionName": "todos", "query": { "done": false }, "queryType": "WHERE",
            "multi": true, "merge": true, "upsert": false, "data": { "$set": { "done": true } },
        }),
    )
    .await;
    assert_eq!(data["updated"], 2, "{data}");
    assert_eq!(count_in(&app, "default", "todos", r#"{"done":true}"#).await, 3);

    let data = web(
        &app,
        json!({ "action": "database.deleteDocument", "collectionName": "todos", "query": { "_id": "doc-1" }, "queryType": "DOC", "multi": false }),
    )
    .await;
    assert_eq!(data, json!({ "deleted": 1 }));
    assert_eq!(get_doc(&app, "todos", "doc-1").await, None);
    let data = web(
        &app,
        json!({ "action": "database.deleteDocument", "collectionName": "todos", "query": { "done": true }, "queryType": "WHERE", "multi": true }),
    )
    .await;
    assert_eq!(data, json!({ "deleted": 2 }));
    assert_eq!(ids_of(&list(&app, "todos", &[]).await), strs(&["doc-4"]));
}

#[actix_web::test]
async fn errors_are_http_200_with_code() {
    let t = TestApp::new();
    let app = t.service().await;
    add_collection(&app, "default", "todos").await;
    add_docs(&app, "default", "todos", json!([{ "_id": "a" }])).await;
    web_err(
        &app,
        "default",
        json!({ "action": "database.noSuchThing", "collectionName": "todos" }),
        "INVALID_ACTION",
    )
    .await;
    web_err(&app, "default", json!({ "action": "storage.nope" }), "INVALID_ACTION").await;
    // missing collection, for reads and writes
    for fields in [
        json!({ "action": "database.queryDocument", "collectionName": "ghost", "queryType": "WHERE", "query": {} }),
        json!({ "action": "database.countDocument", "collectionName": "ghost", "queryType": "WHERE", "query": {} }),
        json!({ "action": "database.addDocument", "collectionName": "ghost", "data": { "v": 1 } }),
        json!({ "action": "database.updateDocument", "collectionName": "ghost", "query": { "_id": "a" }, "data": { "v": 1 }, "merge": false, "upsert": true }),
        json!({ "action": "database.deleteDocument", "collectionName": "ghost", "query": {}, "multi": true }),
    ] {
        web_err(&app, "default", fields, "DATABASE_COLLECTION_NOT_EXIST").await;
    }
    // unknown env, for reads and writes
    for fields in [
        json!({ "action": "database.queryDocument", "collectionName": "todos", "queryType": "WHERE", "query": {} }),
        json!({ "action": "database.addDocument", "collectionName": "todos", "data": { "v": 1 } }),
        json!({ "action": "database.addCollection", "collectionName": "c2" }),
        json!({ "action": "database.deleteDocument", "collectionName": "todos", "query": {}, "multi": true }),
    ] {
        web_err(&app, "env-test", fields, "INVALID_ENV").await;
    }
    // duplicate _id
    web_err(
        &app,
        "default",
        json!({ "action": "database.addDocument", "collectionName": "todos", "data": { "_id": "a" } }),
        "DATABASE_DUPLICATE_KEY",
    )
    .await;
    // nothing was written by any of them
    assert_eq!(list(&app, "todos", &[]).await, vec![json!({ "_id": "a" })]);
    let (_, body) = send(&app, get("/admin/v1/envs/default/collections")).await;
    let names: Vec<&str> = body["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["todos"], "{body}");
    // the env of the envelope is used when the query string has none
    let (status, body) = send(
        &app,
        post_json(
            "/web",
            &envelope(
                "nope",
                json!({ "action": "database.queryDocument", "collectionName": "todos" }),
            ),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], "INVALID_ENV", "{body}");
}

#[actix_web::test]
async fn both_protocols_see_the_same_data() {
    let t = TestApp::new();
    let app = t.service().await;
    create_env(&app, "other").await;
    // collection created through GATEWAY, written through CLOUD_API
    create_coll(&app, "other", "todos").await;
    let data = web_in(
        &app,
        "other",
        json!({ "action": "database.addDocument", "collectionName": "todos", "data": { "_id": "w1", "via": "web" } }),
    )
    .await;
    assert_eq!(data, json!({ "_id": "w1" }));
    assert_eq!(
        get_doc_in(&app, "other", "todos", "w1").await,
        Some(json!({ "_id": "w1", "via": "web" }))
    );
    // written through GATEWAY, read and updated through CLOUD_API
    add_docs(
        &app,
        "other",
        "todos",
        json!([{ "_id": "g1", "via": "gateway", "n": 1 }]),
    )
    .await;
    let data = web_in(
        &app,
        "other",
        json!({ "action": "database.queryDocument", "collectionName": "todos", "queryType": "WHERE", "query": {}, "order": [{ "field": "_id", "direction": "asc" }] }),
    )
    .await;
    assert_eq!(
        data["list"],
        json!([{ "_id": "g1", "via": "gateway", "n": 1 }, { "_id": "w1", "via": "web" }])
    );
    let data = web_in(
        &app,
        "other",
        json!({ "action": "database.updateDocument", "collectionName": "todos", "queryType": "DOC", "query": { "_id": "g1" }, "data": { "$inc": { "n": 1 } }, "merge": true }),
    )
    .await;
    assert_eq!(data["updated"], 1, "{data}");
    assert_eq!(
        list_in(&app, "other", "todos", &[("query", r#"{"n":2}"#)]).await,
        vec![json!({ "_id": "g1", "via": "gateway", "n": 2 })]
    );
    // and nothing of it is in the default env
    add_collection(&app, "default", "todos").await;
    let data = web(
        &app,
        json!({ "action": "database.countDocument", "collectionName": "todos", "query": {} }),
    )
    .await;
    assert_eq!(data, json!({ "total": 0 }));
}
