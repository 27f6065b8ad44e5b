//! Aggregation over both protocols: GATEWAY `POST …/documents/aggregations` and CLOUD_API
//! `database.aggregate` (cloudbase-protocol.md §3.3, §3.5) with exact replies, bad input of every
//! kind, the memory limit, and security rules (the source and every `$lookup` under the caller's
//! rules, the client cap), in process and on a real socket with the real binary.

use serde_json::{json, Value};

use crate::common::*;
use crate::gateway::{add_docs, call, create_coll, docs_uri, Svc};

fn agg_uri(coll: &str) -> String {
    format!("{}/aggregations", docs_uri(coll))
}

/// GATEWAY aggregation: (status, reply).
async fn gw(app: &impl Svc, coll: &str, pipeline: Value) -> (u16, Value) {
    send(app, post_json(&agg_uri(coll), &json!({ "pipeline": pipeline }))).await
}

/// The `list` of a successful GATEWAY aggregation; the reply is exactly `{list, requestId}`.
async fn gw_list(app: &impl Svc, coll: &str, pipeline: Value) -> Vec<Value> {
    let (status, body) = gw(app, coll, pipeline).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["list", "requestId"], "{body}");
    body["list"].as_array().unwrap().clone()
}

/// CLOUD_API stages as the SDK sends them: each value as JSON text.
fn stages(pipeline: &Value) -> Value {
    Value::Array(
        pipeline
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let (k, v) = s.as_object().unwrap().iter().next().unwrap();
                json!({ "stageKey": k, "stageValue": v.to_string() })
            })
            .collect(),
    )
}

fn web_req(coll: &str, fields: Value, token: Option<&str>) -> actix_web::test::TestRequest {
    let mut body = json!({"action": "database.aggregate", "dataVersion": "2020-01-10", "env": "default",
        "collectionName": coll, "seqId": "0a1b"});
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    match token {
        Some(t) => {
            body["access_token"] = json!(t);
            as_guest(post_json("/web?env=default", &body))
        }
        None => post_json("/web?env=default", &body),
    }
}

/// CLOUD_API aggregation as the admin: the whole reply (always HTTP 200).
async fn web(app: &impl Svc, coll: &str, fields: Value) -> Value {
    let (status, body) = send(app, web_req(coll, fields, None)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Decodes CLOUD_API's `data.list`: a JSON string of an array of JSON strings.
fn web_docs(reply: &Value) -> Vec<Value> {
    let text = reply["data"]["list"]
        .as_str()
        .unwrap_or_else(|| panic!("data.list must be a string: {reply}"));
    let items: Vec<String> = serde_json::from_str(text).expect("an array of strings");
    items
        .iter()
        .map(|s| serde_json::from_str(s).expect("each a JSON document"))
        .collect()
}

async fn web_list(app: &impl Svc, coll: &str, pipeline: Value) -> Vec<Value> {
    let reply = web(app, coll, json!({ "stages": stages(&pipeline) })).await;
    assert!(reply.get("code").is_none(), "{reply}");
    web_docs(&reply)
}

async fn seed_todos(app: &impl Svc) {
    create_coll(app, "default", "todos").await;
    add_docs(
        app,
        "default",
        "todos",
        json!([
            {"_id": "t1", "owner": "a", "done": false, "n": 1, "due": {"$date": 1_700_000_000_000i64}},
            {"_id": "t2", "owner": "b", "done": false, "n": 2, "due": {"$date": 1_700_086_400_000i64}},
            {"_id": "t3", "owner": "a", "done": false, "n": 3.5},
            {"_id": "t4", "owner": "a", "done": true, "n": 4}
        ]),
    )
    .await;
}

#[actix_web::test]
async fn gateway_answers_the_sdk_capture_exactly() {
    let app = TestApp::new();
    let svc = app.service().await;
    seed_todos(&svc).await;
    // the body @cloudbase/js-sdk 3.7.0 sends for
    // aggregate().match({done:false}).group({_id:'$owner', n:$.sum(1)}).sort({n:-1}).limit(10).end()
    let body = json!({"pipeline":[{"$match":{"done":false}},{"$group":{"_id":"$owner","n":{"$sum":1}}},{"$sort":{"n":-1}},{"$limit":10}]});
    let (status, reply, rid) = call(&svc, post_json(&agg_uri("todos"), &body)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["requestId"].as_str(), rid.as_deref());
    assert_eq!(
        reply,
        json!({"list": [{"_id": "a", "n": 2}, {"_id": "b", "n": 1}], "requestId": rid.unwrap()})
    );
}

#[actix_web::test]
async fn cloudapi_takes_json_text_stages_and_answers_json_text() {
    let app = TestApp::new();
    let svc = app.service().await;
    seed_todos(&svc).await;
    // stage values are JSON text, in canonical EJSON as the SDK's serializer writes it
    let reply = web(
        &svc,
        "todos",
        json!({"stages": [
            {"stageKey": "$match", "stageValue": r#"{"due":{"$lt":{"$date":{"$numberLong":"1700086400000"}}}}"#},
            {"stageKey": "$project", "stageValue": r#"{"due":1,"twice":{"$multiply":["$n",{"$numberInt":"2"}]}}"#},
            {"stageKey": "$limit", "stageValue": r#"{"$numberInt":"10"}"#}
        ]}),
    )
    .await;
    assert_eq!(reply["requestId"].as_str().map(str::len), Some(32), "{reply}");
    let keys: Vec<&String> = reply.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["requestId", "data"], "{reply}");
    // data.list: a JSON string of an array of JSON strings, dates in the legacy `{$date: ms}`
    assert_eq!(
        reply["data"]["list"],
        json!(r#"["{\"_id\":\"t1\",\"due\":{\"$date\":1700000000000},\"twice\":2}"]"#)
    );
    // a stageValue that is already JSON (not text) is taken as it is
    let reply = web(
        &svc,
        "todos",
        json!({"stages": [{"stageKey": "$group", "stageValue": {"_id": null, "total": {"$sum": "$n"}}}]}),
    )
    .await;
    assert_eq!(web_docs(&reply), vec![json!({"_id": null, "total": 10.5})]);
}

#[actix_web::test]
async fn both_protocols_run_the_same_pipelines() {
    let app = TestApp::new();
    let svc = app.service().await;
    seed_todos(&svc).await;
    create_coll(&svc, "default", "people").await;
    add_docs(
        &svc,
        "default",
        "people",
        json!([{"_id": "a", "name": "Alice"}, {"_id": "b", "name": "Bob"}]),
    )
    .await;
    let pipelines = [
        json!([{"$lookup": {"from": "people", "localField": "owner", "foreignField": "_id", "as": "p"}},
               {"$unwind": "$p"},
               {"$group": {"_id": "$p.name", "n": {"$sum": "$n"}, "ids": {"$push": "$_id"}}},
               {"$sort": {"_id": 1}}]),
        json!([{"$match": {"due": {"$exists": true}}},
               {"$project": {"_id": 0, "day": {"$dateToString": {"date": "$due", "format": "%Y-%m-%d", "timezone": "Asia/Shanghai"}},
                             "dow": {"$isoDayOfWeek": "$due"}}}]),
        json!([{"$bucket": {"groupBy": "$n", "boundaries": [0, 2, 10], "output": {"c": {"$sum": 1}}}}]),
        json!([{"$sortByCount": "$done"}]),
        json!([{"$match": {"owner": "nobody"}}, {"$count": "n"}]),
    ];
    let want = [
        json!([{"_id": "Alice", "n": 8.5, "ids": ["t1", "t3", "t4"]}, {"_id": "Bob", "n": 2, "ids": ["t2"]}]),
        // 1700000000000 is Tuesday 2023-11-14T22:13:20Z: already Wednesday in Shanghai
        json!([{"day": "2023-11-15", "dow": 2}, {"day": "2023-11-16", "dow": 3}]),
        json!([{"_id": 0, "c": 1}, {"_id": 2, "c": 3}]),
        json!([{"_id": false, "count": 3}, {"_id": true, "count": 1}]),
        json!([]),
    ];
    for (p, want) in pipelines.iter().zip(want) {
        assert_eq!(
            Value::Array(gw_list(&svc, "todos", p.clone()).await),
            want,
            "GATEWAY {p}"
        );
        assert_eq!(
            Value::Array(web_list(&svc, "todos", p.clone()).await),
            want,
            "CLOUD_API {p}"
        );
    }
}

#[actix_web::test]
async fn bad_pipelines_are_clear_4xx_on_both_protocols() {
    let app = TestApp::with_config(|c| c.max_body_bytes = 4096);
    let svc = app.service().await;
    seed_todos(&svc).await;
    let cases = [
        (
            json!([{"$frob": {}}]),
            400,
            "DATABASE_INVALID_COMMAND",
            "unknown aggregation stage `$frob`",
        ),
        (
            json!([{"$project": {"x": {"$frob": 1}}}]),
            400,
            "DATABASE_INVALID_COMMAND",
            "unknown expression operator `$frob`",
        ),
        (
            json!([{"$graphLookup": {"from": "todos"}}]),
            400,
            "NOT_SUPPORTED",
            "`$graphLookup` is not supported",
        ),
        (
            json!([{"$limit": 1}, {"$geoNear": {"near": [0, 0], "distanceField": "d"}}]),
            400,
            "DATABASE_INVALID_COMMAND",
            "only allowed as the first stage",
        ),
        (
            json!([{"$group": {"_id": null, "m": {"$median": "$n"}}}]),
            400,
            "NOT_SUPPORTED",
            "`$median`",
        ),
        (
            json!([{"$match": {}, "$limit": 1}]),
            400,
            "DATABASE_INVALID_COMMAND",
            "exactly one field",
        ),
        (
            json!([{"$limit": -1}]),
            400,
            "DATABASE_INVALID_COMMAND",
            "`$limit` needs an integer",
        ),
        (
            json!([{"$match": {"n": {"$bad": 1}}}]),
            400,
            "DATABASE_INVALID_COMMAND",
            "unknown query operator `$bad`",
        ),
        (
            json!([{"$project": {"x": {"$divide": ["$n", 0]}}}]),
            400,
            "DATABASE_INVALID_COMMAND",
            "divide by zero",
        ),
        (
            json!([{"$match": {"s": {"$regex": "("}}}]),
            400,
            "DATABASE_INVALID_REGEX",
            "",
        ),
        (
            json!([{"$lookup": {"from": "nope", "localField": "a", "foreignField": "b", "as": "x"}}]),
            404,
            "DATABASE_COLLECTION_NOT_EXIST",
            "`nope`",
        ),
        (
            Value::Array((0..101).map(|_| json!({"$skip": 0})).collect()),
            400,
            "INVALID_PARAM",
            "at most 100 stages",
        ),
    ];
    for (pipeline, status, code, words) in cases {
        let (s, body) = gw(&svc, "todos", pipeline.clone()).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (status, Some(code)),
            "GATEWAY {pipeline}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(words),
            "GATEWAY {pipeline}: {body}"
        );
        if pipeline[0].as_object().is_some_and(|m| m.len() > 1) {
            continue; // CLOUD_API's {stageKey, stageValue} cannot carry two stages in one
        }
        let body = web(&svc, "todos", json!({ "stages": stages(&pipeline) })).await;
        assert_eq!(body["code"].as_str(), Some(code), "CLOUD_API {pipeline}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(words),
            "CLOUD_API {pipeline}: {body}"
        );
    }
    // GATEWAY envelope: pipeline missing or not an array, transactions, bodies, methods
    for body in [
        json!({}),
        json!({"pipeline": {"$match": {}}}),
        json!({"pipeline": "[]"}),
    ] {
        let (s, reply) = send(&svc, post_json(&agg_uri("todos"), &body)).await;
        assert_eq!(
            (s, reply["code"].as_str()),
            (400, Some("INVALID_PARAM")),
            "{body}: {reply}"
        );
    }
    let (s, reply) = send(
        &svc,
        post_json(&agg_uri("todos"), &json!({"pipeline": [], "transactionId": "tx"})),
    )
    .await;
    assert_eq!((s, reply["code"].as_str()), (400, Some("NOT_SUPPORTED")), "{reply}");
    let (s, reply) = send(
        &svc,
        actix_web::test::TestRequest::post()
            .uri(&agg_uri("todos"))
            .set_payload("{\"pipeline\": [{\"$match\": "),
    )
    .await;
    assert_eq!((s, reply["code"].as_str()), (400, Some("INVALID_JSON")), "{reply}");
    let huge = json!({"pipeline": [{"$match": {"x": "y".repeat(5000)}}]});
    let (s, reply) = send(&svc, post_json(&agg_uri("todos"), &huge)).await;
    assert_eq!(
        (s, reply["code"].as_str()),
        (413, Some("REQUEST_BODY_TOO_LARGE")),
        "{reply}"
    );
    let (s, reply) = send(&svc, get(&agg_uri("todos"))).await;
    assert_eq!(
        (s, reply["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED")),
        "{reply}"
    );
    let (s, reply) = gw(&svc, "nope", json!([])).await;
    assert_eq!(
        (s, reply["code"].as_str()),
        (404, Some("DATABASE_COLLECTION_NOT_EXIST")),
        "{reply}"
    );
    // CLOUD_API envelope: stages missing or malformed
    for (fields, code, words) in [
        (json!({}), "INVALID_PARAM", "`stages`"),
        (json!({"stages": "[]"}), "INVALID_PARAM", "`stages`"),
        (json!({"stages": [5]}), "INVALID_PARAM", "`stages[0]`"),
        (
            json!({"stages": [{"stageValue": "{}"}]}),
            "INVALID_PARAM",
            "`stages[0].stageKey`",
        ),
        (
            json!({"stages": [{"stageKey": "$match"}]}),
            "INVALID_PARAM",
            "`stages[0].stageValue`",
        ),
        (
            json!({"stages": [{"stageKey": "$match", "stageValue": "{oops"}]}),
            "INVALID_JSON",
            "`stages[0].stageValue`",
        ),
        (
            json!({"stages": [{"stageKey": "$match", "stageValue": "{}"}], "collectionName": 5}),
            "INVALID_PARAM",
            "collectionName",
        ),
    ] {
        let body = web(&svc, "todos", fields.clone()).await;
        assert_eq!(body["code"].as_str(), Some(code), "{fields}: {body}");
        assert!(body["message"].as_str().unwrap().contains(words), "{fields}: {body}");
    }
}

#[actix_web::test]
async fn memory_and_reply_limits_fail_with_their_codes() {
    let app = TestApp::with_config(|c| c.aggregate_memory_limit = 64 * 1024);
    let svc = app.service().await;
    create_coll(&svc, "default", "big").await;
    let docs: Vec<Value> = (0..1500).map(|i| json!({"k": i, "pad": "p".repeat(200)})).collect();
    add_docs(&svc, "default", "big", Value::Array(docs)).await;
    let group = json!([{"$group": {"_id": "$k", "pads": {"$push": "$pad"}}}]);
    let (s, body) = gw(&svc, "big", group.clone()).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (413, Some("DATABASE_AGGREGATE_MEMORY_LIMIT_EXCEEDED")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("`$group`"), "{body}");
    let body = web(&svc, "big", json!({ "stages": stages(&group) })).await;
    assert_eq!(
        body["code"],
        json!("DATABASE_AGGREGATE_MEMORY_LIMIT_EXCEEDED"),
        "{body}"
    );
    let (s, body) = gw(&svc, "big", json!([{"$sort": {"k": -1}}])).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (413, Some("DATABASE_AGGREGATE_MEMORY_LIMIT_EXCEEDED")),
        "{body}"
    );
    // the top of a sort is bounded, whatever the collection's size
    let list = gw_list(
        &svc,
        "big",
        json!([{"$sort": {"k": -1}}, {"$limit": 2}, {"$project": {"_id": 0, "k": 1}}]),
    )
    .await;
    assert_eq!(list, vec![json!({"k": 1499}), json!({"k": 1498})]);
    // more than 1 MB of result is refused, never truncated
    let (s, body) = gw(
        &svc,
        "big",
        json!([{"$project": {"more": {"$concat": ["$pad", "$pad", "$pad", "$pad"]}}}]),
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (413, Some("DATABASE_RESULT_SIZE_LIMIT_EXCEEDED")),
        "{body}"
    );
}

// ---- security rules ------------------------------------------------------------------------

struct User {
    token: String,
    sub: String,
}

async fn sign_up(svc: &impl Svc, name: &str) -> User {
    let body = json!({"username": name, "password": "correct horse battery"});
    let (status, cred) = send(svc, post_json("/auth/v1/signup?client_id=default", &body)).await;
    assert_eq!(status, 200, "{cred}");
    User {
        token: cred["access_token"].as_str().unwrap().to_string(),
        sub: cred["sub"].as_str().unwrap().to_string(),
    }
}

async fn anonymous(svc: &impl Svc) -> User {
    let (status, cred) = send(
        svc,
        post_json("/auth/v1/signin/anonymously?client_id=default", &json!({})),
    )
    .await;
    assert_eq!(status, 200, "{cred}");
    User {
        token: cred["access_token"].as_str().unwrap().to_string(),
        sub: cred["sub"].as_str().unwrap().to_string(),
    }
}

async fn set_rules(svc: &impl Svc, coll: &str, rules: Value) {
    let uri = format!("/admin/v1/envs/default/collections/{coll}/rules");
    let (s, body) = send(svc, put_json(&uri, &rules)).await;
    assert_eq!(s, 200, "{body}");
}

/// A GATEWAY aggregation as `token` (None: a guest): the `_id`s, or the error code.
async fn gw_as(svc: &impl Svc, token: Option<&str>, coll: &str, pipeline: Value) -> Result<Vec<Value>, String> {
    let req = post_json(&agg_uri(coll), &json!({ "pipeline": pipeline }));
    let req = match token {
        Some(t) => req.insert_header(("authorization", format!("Bearer {t}"))),
        None => as_guest(req),
    };
    let (s, body) = send(svc, req).await;
    if s != 200 {
        return Err(format!("{} {}", body["code"].as_str().unwrap_or("?"), body["message"]));
    }
    Ok(body["list"].as_array().unwrap().clone())
}

/// The same through CLOUD_API (the token in the envelope).
async fn web_as(svc: &impl Svc, token: Option<&str>, coll: &str, pipeline: Value) -> Result<Vec<Value>, String> {
    let req = match token {
        Some(t) => web_req(coll, json!({ "stages": stages(&pipeline) }), Some(t)),
        None => as_guest(web_req(coll, json!({ "stages": stages(&pipeline) }), None)),
    };
    let (_, body) = send(svc, req).await;
    match body.get("code") {
        Some(code) => Err(format!("{} {}", code.as_str().unwrap_or("?"), body["message"])),
        None => Ok(web_docs(&body)),
    }
}

/// The result of `pipeline` as `token` through both protocols (which must agree).
async fn both(svc: &impl Svc, token: Option<&str>, coll: &str, pipeline: Value) -> Result<Vec<Value>, String> {
    let a = gw_as(svc, token, coll, pipeline.clone()).await;
    let b = web_as(svc, token, coll, pipeline.clone()).await;
    match (&a, &b) {
        (Ok(x), Ok(y)) => assert_eq!(x, y, "{pipeline}"),
        (Err(x), Err(y)) => assert_eq!(x.split(' ').next(), y.split(' ').next(), "{pipeline}"),
        _ => panic!("the protocols disagree on {pipeline}: {a:?} / {b:?}"),
    }
    a
}

fn id_list(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["_id"].as_str().unwrap_or("?")).collect()
}

fn denied(r: &Result<Vec<Value>, String>) -> bool {
    matches!(r, Err(e) if e.starts_with("DATABASE_PERMISSION_DENIED"))
}

#[actix_web::test]
async fn private_collections_show_each_user_only_their_own_documents() {
    let app = TestApp::new();
    let svc = app.service().await;
    let (a, b, anon) = (
        sign_up(&svc, "alice").await,
        sign_up(&svc, "bob").await,
        anonymous(&svc).await,
    );
    create_coll(&svc, "default", "notes").await;
    add_docs(
        &svc,
        "default",
        "notes",
        json!([
            {"_id": "a1", "_openid": a.sub, "n": 1}, {"_id": "a2", "_openid": a.sub, "n": 2},
            {"_id": "b1", "_openid": b.sub, "n": 3}, {"_id": "x1", "n": 4}
        ]),
    )
    .await;
    set_rules(&svc, "notes", json!({"preset": "PRIVATE"})).await;
    let all = json!([]);
    assert_eq!(
        id_list(&both(&svc, Some(&a.token), "notes", all.clone()).await.unwrap()),
        ["a1", "a2"]
    );
    assert_eq!(
        id_list(&both(&svc, Some(&b.token), "notes", all.clone()).await.unwrap()),
        ["b1"]
    );
    assert!(both(&svc, Some(&anon.token), "notes", all.clone())
        .await
        .unwrap()
        .is_empty());
    assert!(denied(&both(&svc, None, "notes", all).await));
    // later stages cannot see past the narrowed source
    let sum = json!([{"$group": {"_id": "$_openid", "total": {"$sum": "$n"}}}]);
    assert_eq!(
        both(&svc, Some(&a.token), "notes", sum.clone()).await.unwrap(),
        vec![json!({"_id": a.sub, "total": 3})]
    );
    assert_eq!(
        both(&svc, Some(&b.token), "notes", sum).await.unwrap(),
        vec![json!({"_id": b.sub, "total": 3})]
    );
    // asking for someone else's documents finds nothing
    let theirs = json!([{"$match": {"_openid": b.sub}}]);
    assert!(both(&svc, Some(&a.token), "notes", theirs).await.unwrap().is_empty());
    // '{openid}' is the caller everywhere in the pipeline
    let me = json!([{"$match": {"_openid": "{openid}"}}, {"$project": {"me": {"$literal": "{openid}"}, "_id": 0}}, {"$limit": 1}]);
    assert_eq!(
        both(&svc, Some(&a.token), "notes", me).await.unwrap(),
        vec![json!({"me": a.sub})]
    );
    // the admin sees everything
    assert_eq!(
        id_list(&gw_list(&svc, "notes", json!([])).await),
        ["a1", "a2", "b1", "x1"]
    );
}

#[actix_web::test]
async fn lookups_apply_the_rules_of_the_collection_they_read() {
    let app = TestApp::new();
    let svc = app.service().await;
    let (a, b) = (sign_up(&svc, "alice").await, sign_up(&svc, "bob").await);
    for c in ["posts", "comments", "secrets", "public", "flagged"] {
        create_coll(&svc, "default", c).await;
    }
    add_docs(&svc, "default", "posts", json!([{"_id": "p1", "title": "hello"}])).await;
    add_docs(
        &svc,
        "default",
        "comments",
        json!([{"_id": "c1", "post": "p1", "_openid": a.sub}, {"_id": "c2", "post": "p1", "_openid": b.sub}]),
    )
    .await;
    add_docs(&svc, "default", "secrets", json!([{"_id": "s1", "post": "p1"}])).await;
    add_docs(&svc, "default", "public", json!([{"_id": "u1", "post": "p1"}])).await;
    add_docs(
        &svc,
        "default",
        "flagged",
        json!([{"_id": "f1", "post": "p1", "ok": true}, {"_id": "f2", "post": "p1", "ok": false}]),
    )
    .await;
    set_rules(&svc, "posts", json!({"preset": "READONLY"})).await;
    set_rules(&svc, "comments", json!({"preset": "PRIVATE"})).await;
    set_rules(&svc, "secrets", json!({"preset": "ADMINONLY"})).await;
    set_rules(&svc, "public", json!({"preset": "READONLY"})).await;
    set_rules(&svc, "flagged", json!({"read": "doc.ok == true"})).await;
    let join = |from: &str| {
        json!([{"$lookup": {"from": from, "localField": "_id", "foreignField": "post", "as": "j"}},
               {"$project": {"j": "$j._id", "_id": 0}}])
    };
    // PRIVATE: narrowed to the caller's own comments
    assert_eq!(
        both(&svc, Some(&a.token), "posts", join("comments")).await.unwrap(),
        vec![json!({"j": ["c1"]})]
    );
    assert_eq!(
        both(&svc, Some(&b.token), "posts", join("comments")).await.unwrap(),
        vec![json!({"j": ["c2"]})]
    );
    // ADMINONLY: refused, and the message says which $lookup
    let r = both(&svc, Some(&a.token), "posts", join("secrets")).await;
    assert!(
        denied(&r) && r.as_ref().unwrap_err().contains("`$lookup` from `secrets`"),
        "{r:?}"
    );
    // inside $facet too
    let faceted = json!([{"$facet": {"j": [{"$lookup": {"from": "secrets", "localField": "_id", "foreignField": "post", "as": "s"}}]}}]);
    assert!(denied(&both(&svc, Some(&a.token), "posts", faceted).await));
    // nested in a sub-pipeline too
    let nested = json!([{"$lookup": {"from": "public", "as": "x", "pipeline": [
        {"$lookup": {"from": "secrets", "localField": "post", "foreignField": "post", "as": "y"}}]}}]);
    assert!(denied(&both(&svc, Some(&a.token), "posts", nested.clone()).await));
    // READONLY: everyone reads all
    assert_eq!(
        both(&svc, Some(&a.token), "posts", join("public")).await.unwrap(),
        vec![json!({"j": ["u1"]})]
    );
    // a custom rule must be implied by the lookup's own leading $match
    assert!(denied(&both(&svc, Some(&a.token), "posts", join("flagged")).await));
    let implied = json!([{"$lookup": {"from": "flagged", "let": {"p": "$_id"}, "as": "j", "pipeline": [
        {"$match": {"ok": true}}, {"$match": {"$expr": {"$eq": ["$post", "$$p"]}}}]}},
        {"$project": {"j": "$j._id", "_id": 0}}]);
    assert_eq!(
        both(&svc, Some(&a.token), "posts", implied).await.unwrap(),
        vec![json!({"j": ["f1"]})]
    );
    // the admin reads every collection
    assert_eq!(
        gw_list(&svc, "posts", join("secrets")).await,
        vec![json!({"j": ["s1"]})]
    );
    assert_eq!(gw_list(&svc, "posts", nested).await.len(), 1);
}

#[actix_web::test]
async fn client_results_are_capped_like_lists() {
    let app = TestApp::with_config(|c| c.client_max_limit = 3);
    let svc = app.service().await;
    let a = sign_up(&svc, "alice").await;
    create_coll(&svc, "default", "pub").await;
    let docs: Vec<Value> = (0..10).map(|i| json!({"_id": format!("d{i}"), "n": i})).collect();
    add_docs(&svc, "default", "pub", Value::Array(docs)).await;
    set_rules(&svc, "pub", json!({"preset": "READONLY"})).await;
    let top = json!([{"$sort": {"n": -1}}, {"$project": {"n": 1, "_id": 0}}]);
    assert_eq!(
        both(&svc, Some(&a.token), "pub", top.clone()).await.unwrap(),
        vec![json!({"n": 9}), json!({"n": 8}), json!({"n": 7})]
    );
    assert_eq!(gw_list(&svc, "pub", top).await.len(), 10, "admins are not capped");
}

// ---- the real binary on a real socket --------------------------------------------------------

#[test]
fn the_memory_limit_flag_works_on_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_server_with(dir.path(), port, &["--aggregate-memory-limit", "65536"]);
    let base = format!("http://127.0.0.1:{port}");
    let p = format!("{base}{DB}");
    let (s, body) = http(
        "POST",
        &format!("{p}/collections"),
        Some(&json!({"collectionName": "big"})),
    );
    assert_eq!(s, 200, "{body}");
    let docs: Vec<Value> = (0..1000)
        .map(|i| json!({"k": i % 10, "pad": "p".repeat(200)}))
        .collect();
    let (s, body) = http(
        "POST",
        &format!("{p}/collections/big/documents"),
        Some(&json!({ "data": docs })),
    );
    assert_eq!(s, 200, "{body}");
    let uri = format!("{p}/collections/big/documents/aggregations");
    let counts =
        json!({"pipeline": [{"$group": {"_id": "$k", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}, {"$limit": 2}]});
    let (s, body) = http("POST", &uri, Some(&counts));
    assert_eq!(
        (s, body["list"].clone()),
        (200, json!([{"_id": 0, "n": 100}, {"_id": 1, "n": 100}])),
        "{body}"
    );
    let hoard = json!({"pipeline": [{"$group": {"_id": null, "all": {"$push": "$pad"}}}]});
    let (s, body) = http("POST", &uri, Some(&hoard));
    assert_eq!(
        (s, body["code"].as_str()),
        (413, Some("DATABASE_AGGREGATE_MEMORY_LIMIT_EXCEEDED")),
        "{body}"
    );
    let web = json!({"action": "database.aggregate", "collectionName": "big",
        "stages": [{"stageKey": "$count", "stageValue": "\"n\""}]});
    let (s, body) = http("POST", &format!("{base}/web?env=default"), Some(&web));
    assert_eq!(
        (s, body["data"]["list"].clone()),
        (200, json!("[\"{\\\"n\\\":1000}\"]")),
        "{body}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `$geoNear`'s `query` is the source the rules narrow, like a leading `$match`: under `PRIVATE`
/// a user's `$geoNear` finds only their own documents, however near the others are, with or
/// without the 2dsphere index; a custom rule must be implied by the `query`.
#[actix_web::test]
async fn geo_near_shows_each_user_only_their_own_documents() {
    let app = TestApp::new();
    let svc = app.service().await;
    let (a, b, anon) = (
        sign_up(&svc, "alice").await,
        sign_up(&svc, "bob").await,
        anonymous(&svc).await,
    );
    create_coll(&svc, "default", "spots").await;
    let at = |dx: f64| json!({"type": "Point", "coordinates": [113.3 + dx, 23.1]});
    add_docs(
        &svc,
        "default",
        "spots",
        json!([
            {"_id": "a1", "_openid": a.sub, "loc": at(0.0), "public": true},
            {"_id": "a2", "_openid": a.sub, "loc": at(0.001)},
            {"_id": "x1", "loc": at(0.0015), "public": true},
            {"_id": "b1", "_openid": b.sub, "loc": at(0.002)},
            {"_id": "b2", "_openid": b.sub, "loc": at(0.01), "public": true}
        ]),
    )
    .await;
    set_rules(&svc, "spots", json!({"preset": "PRIVATE"})).await;
    let geo = |extra: Value| {
        let mut spec = json!({"near": at(0.0), "distanceField": "d", "spherical": true});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!([{ "$geoNear": spec }])
    };
    for indexed in [false, true] {
        // without the index the stage needs `key`; with it, the index's field is the default
        let key = if indexed { json!({}) } else { json!({"key": "loc"}) };
        let with = |extra: Value| {
            let mut e = key.clone();
            for (k, v) in extra.as_object().unwrap() {
                e[k] = v.clone();
            }
            geo(e)
        };
        let got = both(&svc, Some(&b.token), "spots", with(json!({}))).await.unwrap();
        assert_eq!(id_list(&got), ["b1", "b2"], "indexed: {indexed}");
        assert!((got[0]["d"].as_f64().unwrap() - 204.7).abs() < 1.0, "{}", got[0]);
        assert_eq!(
            id_list(&both(&svc, Some(&a.token), "spots", with(json!({}))).await.unwrap()),
            ["a1", "a2"]
        );
        // asking for someone else's documents finds nothing
        let theirs = with(json!({"query": {"_openid": a.sub}}));
        assert!(both(&svc, Some(&b.token), "spots", theirs).await.unwrap().is_empty());
        let sneaky = with(json!({"query": {"$or": [{"_openid": a.sub}, {"public": true}]}}));
        assert_eq!(
            id_list(&both(&svc, Some(&b.token), "spots", sneaky).await.unwrap()),
            ["b2"]
        );
        // '{openid}' in the query is the caller
        let mine = with(json!({"query": {"_openid": "{openid}"}}));
        assert_eq!(
            id_list(&both(&svc, Some(&b.token), "spots", mine).await.unwrap()),
            ["b1", "b2"]
        );
        // later stages see only the narrowed source
        let mut grouped = with(json!({})).as_array().unwrap().clone();
        grouped.push(json!({"$group": {"_id": "$_openid", "n": {"$sum": 1}}}));
        assert_eq!(
            both(&svc, Some(&b.token), "spots", Value::Array(grouped))
                .await
                .unwrap(),
            vec![json!({"_id": b.sub, "n": 2})]
        );
        assert!(both(&svc, Some(&anon.token), "spots", with(json!({})))
            .await
            .unwrap()
            .is_empty());
        assert!(denied(&both(&svc, None, "spots", with(json!({}))).await));
        // the admin sees everything, nearest first
        assert_eq!(
            id_list(&gw_list(&svc, "spots", with(json!({}))).await),
            ["a1", "a2", "x1", "b1", "b2"]
        );
        if !indexed {
            let (s, body) = send(
                &svc,
                post_json(
                    "/admin/v1/envs/default/collections/spots/indexes",
                    &json!({"fields": "loc:2dsphere"}),
                ),
            )
            .await;
            assert_eq!(s, 202, "{body}");
            let mut ready = false;
            for _ in 0..200 {
                let (_, l) = send(&svc, get("/admin/v1/envs/default/collections/spots/indexes")).await;
                ready = l["indexes"][0]["state"] == "ready";
                if ready {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(ready, "the index did not become ready");
        }
    }
    // a custom rule must be implied by the query, as with `$match`
    set_rules(&svc, "spots", json!({"read": "doc.public == true"})).await;
    assert!(denied(&both(&svc, Some(&b.token), "spots", geo(json!({}))).await));
    assert_eq!(
        id_list(
            &both(&svc, Some(&b.token), "spots", geo(json!({"query": {"public": true}})))
                .await
                .unwrap()
        ),
        ["a1", "x1", "b2"]
    );
}
