//! Bad input on every endpoint (GATEWAY list/get/add/update/override/remove/collections, CLOUD_API
//! `/web`, admin envs/collections): each case must answer a 4xx (HTTP 200 with a code on `/web`)
//! with the expected stable code and a non-empty message, and must leave every env, collection and
//! document exactly as it was.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::common::*;
use crate::gateway::{add_docs, call, create_coll, create_env, docs_uri, ids_of, list_uri, Svc};

// ---- cases --------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ep {
    Add,
    Update,
    Override,
    Remove,
    Collections,
    Web,
    AdminEnvs,
    AdminColls,
}

/// Every endpoint that takes a body.
const BODY_EPS: [Ep; 8] = [
    Ep::Add,
    Ep::Update,
    Ep::Override,
    Ep::Remove,
    Ep::Collections,
    Ep::Web,
    Ep::AdminEnvs,
    Ep::AdminColls,
];

struct Case {
    what: String,
    method: Method,
    uri: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

impl Case {
    fn request(&self) -> TestRequest {
        let mut req = TestRequest::default().method(self.method.clone()).uri(&self.uri);
        if let Some(b) = &self.body {
            req = req
                .insert_header(("content-type", "application/json"))
                .set_payload(b.clone());
        }
        // after the payload, so that a test can send a content-length that lies
        for h in &self.headers {
            req = req.insert_header(*h);
        }
        req
    }
}

/// HTTP status of each code (the error table), for protocols that use one.
fn status_of(code: &str) -> u16 {
    match code {
        "INVALID_JSON"
        | "INVALID_PARAM"
        | "DATABASE_INVALID_COMMAND"
        | "DATABASE_INVALID_REGEX"
        | "INVALID_NAME"
        | "DATABASE_NESTING_TOO_DEEP"
        | "INVALID_ENV"
        | "INVALID_ACTION"
        | "NOT_SUPPORTED" => 400,
        "DATABASE_COLLECTION_NOT_EXIST"
        | "DATABASE_DOCUMENT_NOT_EXIST"
        | "NOT_FOUND"
        | "DATABASE_TRANSACTION_NOT_EXIST" => 404,
        "METHOD_NOT_ALLOWED" => 405,
        "DATABASE_COLLECTION_ALREADY_EXIST" | "ENV_ALREADY_EXIST" | "DATABASE_DUPLICATE_KEY" => 409,
        "REQUEST_BODY_TOO_LARGE" | "DATABASE_DOCUMENT_TOO_LARGE" | "DATABASE_RESULT_SIZE_LIMIT_EXCEEDED" => 413,
        other => panic!("no status for {other}"),
    }
}

fn ep_route(ep: Ep) -> (Method, String, Vec<(&'static str, &'static str)>) {
    let docs = docs_uri("todos");
    match ep {
        Ep::Add => (Method::POST, docs, vec![]),
        Ep::Update => (Method::PATCH, docs, vec![]),
        Ep::Override => (Method::POST, docs, vec![("X-HTTP-Method-Override", "PATCH")]),
        Ep::Remove => (Method::POST, format!("{docs}/remove"), vec![]),
        Ep::Collections => (Method::POST, format!("{DB}/collections"), vec![]),
        Ep::Web => (Method::POST, "/web?env=default".to_string(), vec![]),
        Ep::AdminEnvs => (Method::POST, "/admin/v1/envs".to_string(), vec![]),
        Ep::AdminColls => (Method::POST, "/admin/v1/envs/default/collections".to_string(), vec![]),
    }
}

/// A case on a body endpoint; `/web` answers errors with HTTP 200.
fn body_case(what: impl AsRef<str>, ep: Ep, body: impl Into<Vec<u8>>, code: &'static str) -> Case {
    let (method, uri, headers) = ep_route(ep);
    let status = if ep == Ep::Web { 200 } else { status_of(code) };
    Case {
        what: format!("{ep:?}: {}", what.as_ref()),
        method,
        uri,
        headers,
        body: Some(body.into()),
        status,
        code,
    }
}

/// A GET list case; `params` values are JSON texts (percent-encoded here).
fn list_case(what: impl AsRef<str>, params: &[(&str, &str)], code: &'static str) -> Case {
    Case {
        what: format!("List: {}", what.as_ref()),
        method: Method::GET,
        uri: list_uri("todos", params),
        headers: vec![],
        body: None,
        status: status_of(code),
        code,
    }
}

/// A CLOUD_API body: the SDK envelope around the action fields.
fn web_body(fields: Value) -> String {
    let mut body =
        json!({ "dataVersion": "2020-01-10", "env": "default", "access_token": TEST_ADMIN_KEY, "seqId": "0a1b2c3d" });
    for (k, v) in fields.as_object().expect("object") {
        body[k] = v.clone();
    }
    body.to_string()
}

/// A CLOUD_API body whose action fields are given as JSON text (for bodies `json!` cannot build).
fn web_text(action_fields: &str) -> String {
    format!(
        r#"{{"dataVersion":"2020-01-10","env":"default","access_token":"{TEST_ADMIN_KEY}","seqId":"0a1b2c3d",{action_fields}}}"#
    )
}

// ---- the fixture and the "nothing written" snapshot ------------------------------------------------

/// `default/todos` with three documents, `other/todos` with one.
async fn fixture(app: &impl Svc) {
    create_env(app, "other").await;
    create_coll(app, "default", "todos").await;
    create_coll(app, "other", "todos").await;
    add_docs(
        app,
        "default",
        "todos",
        json!([
            { "_id": "t1", "title": "a", "n": 1, "tags": ["x"], "done": false },
            { "_id": "t2", "title": "b", "n": 2, "tags": ["y"], "done": true },
            { "_id": "t3", "title": "c", "n": "str", "done": false },
        ]),
    )
    .await;
    add_docs(app, "other", "todos", json!([{ "_id": "o1", "n": 1 }])).await;
}

/// Every env, every collection and every document.
async fn snapshot(app: &impl Svc) -> Value {
    let (status, envs) = send(app, get("/admin/v1/envs")).await;
    assert_eq!(status, 200, "{envs}");
    let mut names: Vec<String> = envs["envs"]
        .as_array()
        .expect("envs")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    let mut out = serde_json::Map::new();
    for env in names {
        let (status, colls) = send(app, get(&format!("/admin/v1/envs/{env}/collections"))).await;
        assert_eq!(status, 200, "{colls}");
        let mut cs = serde_json::Map::new();
        for c in colls["collections"].as_array().expect("collections") {
            let name = c["name"].as_str().expect("name");
            let order = r#"[{"field":"_id","direction":"asc"}]"#;
            let uri = format!("{}&env={env}", list_uri(name, &[("order", order), ("limit", "1000")]));
            let (status, docs) = send(app, get(&uri)).await;
            assert_eq!(status, 200, "{docs}");
            cs.insert(name.to_string(), docs["list"].clone());
        }
        out.insert(env, Value::Object(cs));
    }
    Value::Object(out)
}

fn shorten(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 400 {
        format!(
            "{}…",
            &s[..s
                .char_indices()
                .take_while(|(i, _)| *i < 400)
                .last()
                .map_or(0, |(i, _)| i)]
        )
    } else {
        s
    }
}

/// Runs every case; collects every mismatch and fails once with the whole list.
async fn check(app: &impl Svc, cases: Vec<Case>) {
    let n = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        let before = snapshot(app).await;
        let (status, body, rid) = call(app, c.request()).await;
        let after = snapshot(app).await;
        let mut problems = Vec::new();
        if status != c.status {
            problems.push(format!("status {status}, want {}", c.status));
        }
        if body["code"] != c.code {
            problems.push(format!("code {}, want {}", body["code"], c.code));
        }
        if body["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
            problems.push("no message".to_string());
        }
        let body_rid = body["requestId"]
            .as_str()
            .or_else(|| body["details"]["requestId"].as_str());
        if body_rid.is_none() || body_rid != rid.as_deref() {
            problems.push(format!("requestId {body_rid:?} vs header {rid:?}"));
        }
        if before != after {
            problems.push(format!(
                "state changed: before {} after {}",
                shorten(&before),
                shorten(&after)
            ));
        }
        if !problems.is_empty() {
            let uri: String = c.uri.chars().take(100).collect();
            failures.push(format!(
                "{} [{} {uri}]: {} — got {status} {}",
                c.what,
                c.method,
                problems.join("; "),
                shorten(&body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- tests --------------------------------------------------------------------------------------

#[actix_web::test]
async fn malformed_json() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let mut cases = Vec::new();
    for ep in BODY_EPS {
        for bad in [
            r#"{"data": ["#,
            "{'a': 1}",
            r#"{"query":{"_id":"t1"},}"#,
            "nope",
            "{\"a\":1}}",
            "\u{1}",
        ] {
            cases.push(body_case(format!("body {bad:?}"), ep, bad, "INVALID_JSON"));
        }
    }
    cases.push(body_case(
        "invalid UTF-8",
        Ep::Add,
        b"{\"data\":[{\"a\":\"\xff\"}]}".to_vec(),
        "INVALID_JSON",
    ));
    cases.push(list_case("query not JSON", &[("query", "{bad")], "INVALID_JSON"));
    cases.push(list_case("order not JSON", &[("order", "[{")], "INVALID_JSON"));
    cases.push(list_case("limit not JSON", &[("limit", "abc")], "INVALID_JSON"));
    cases.push(list_case(
        "count query not JSON",
        &[("count", "true"), ("query", "{bad")],
        "INVALID_JSON",
    ));
    check(&app, cases).await;
}

#[actix_web::test]
async fn non_object_and_empty_bodies() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let mut cases = Vec::new();
    for ep in BODY_EPS {
        for bad in [
            "[1,2]",
            "[]",
            r#""text""#,
            "5",
            "true",
            "null",
            r#"[{"data":[{"a":1}]}]"#,
        ] {
            cases.push(body_case(format!("body {bad}"), ep, bad, "INVALID_JSON"));
        }
        cases.push(body_case("empty body", ep, "", "INVALID_JSON"));
        cases.push(body_case("whitespace body", ep, "  \n ", "INVALID_JSON"));
    }
    // no body and no content-type at all
    for ep in BODY_EPS {
        let (method, uri, headers) = ep_route(ep);
        let status = if ep == Ep::Web { 200 } else { 400 };
        cases.push(Case {
            what: format!("{ep:?}: no body"),
            method,
            uri,
            headers,
            body: None,
            status,
            code: "INVALID_JSON",
        });
    }
    check(&app, cases).await;
}

#[actix_web::test]
async fn wrong_types() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let p = "INVALID_PARAM";
    let mut cases = vec![
        list_case("limit \"abc\"", &[("limit", r#""abc""#)], p),
        list_case("limit -1", &[("limit", "-1")], p),
        list_case("limit 5000", &[("limit", "5000")], p),
        list_case("limit 1.5", &[("limit", "1.5")], p),
        list_case("limit true", &[("limit", "true")], p),
        list_case("limit {}", &[("limit", "{}")], p),
        list_case("offset -3", &[("offset", "-3")], p),
        list_case("offset 1e11", &[("offset", "100000000000")], p),
        list_case("offset \"x\"", &[("offset", r#""x""#)], p),
        list_case("query [1]", &[("query", "[1]")], p),
        list_case("query \"x\"", &[("query", r#""x""#)], p),
        list_case("query 5", &[("query", "5")], p),
        list_case("order \"x\"", &[("order", r#""x""#)], p),
        list_case("order [1]", &[("order", "[1]")], p),
        list_case("order {field}", &[("order", r#"{"field":"n"}"#)], p),
        list_case("order field 5", &[("order", r#"[{"field":5,"direction":"asc"}]"#)], p),
        list_case(
            "order direction up",
            &[("order", r#"[{"field":"n","direction":"up"}]"#)],
            p,
        ),
        list_case(
            "order field $x",
            &[("order", r#"[{"field":"$x","direction":"asc"}]"#)],
            p,
        ),
        list_case("projection 5", &[("projection", "5")], p),
        list_case("projection mixed", &[("projection", r#"{"a":1,"b":0}"#)], p),
        list_case("count with query [1]", &[("count", "true"), ("query", "[1]")], p),
    ];
    let update_like = [
        (r#"{"query":{"_id":"t1"},"data":5}"#, "data 5"),
        (r#"{"query":{"_id":"t1"},"data":[1]}"#, "data [1]"),
        (r#"{"query":{"_id":"t1"},"data":"x"}"#, "data \"x\""),
        (r#"{"query":{"_id":"t1"}}"#, "no data"),
        (r#"{"query":[1],"data":{"$set":{"n":9}},"multi":true}"#, "query [1]"),
        (r#"{"query":"x","data":{"$set":{"n":9}},"multi":true}"#, "query \"x\""),
        (
            r#"{"query":{"_id":"t1"},"data":{"$set":{"n":9}},"multi":"yes"}"#,
            "multi \"yes\"",
        ),
        (r#"{"query":{"_id":"t1"},"data":{"$set":{"n":9}},"multi":1}"#, "multi 1"),
        (
            r#"{"query":{"_id":"zz"},"data":{"$set":{"n":9}},"upsert":"yes"}"#,
            "upsert \"yes\"",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$set":{"n":9}},"replaceMode":"x"}"#,
            "replaceMode \"x\"",
        ),
    ];
    for ep in [Ep::Update, Ep::Override] {
        for (body, what) in update_like {
            cases.push(body_case(what, ep, body, p));
        }
        // a well-formed request in a transaction that was never started
        let tx = r#"{"query":{"_id":"t1"},"data":{"$set":{"n":9}},"transactionId":"tx-1"}"#;
        cases.push(body_case("transactionId", ep, tx, "DATABASE_TRANSACTION_NOT_EXIST"));
        let tx = r#"{"query":{"_id":"t1"},"data":{"$set":{"n":9}},"transactionId":7}"#;
        cases.push(body_case("transactionId 7", ep, tx, p));
    }
    for (body, what) in [
        (r#"{"data":5}"#, "data 5"),
        (r#"{"data":"x"}"#, "data \"x\""),
        (r#"{"data":[]}"#, "data []"),
        (r#"{"data":[1]}"#, "data [1]"),
        (r#"{"data":null}"#, "data null"),
        ("{}", "no data"),
        (r#"{"data":[{"_id":"new1"},5]}"#, "batch with a non-object"),
        (r#"{"data":[{"_id":5}]}"#, "_id 5"),
        (r#"{"data":[{"_id":""}]}"#, "_id empty"),
        (r#"{"data":[{"_id":["a"]}]}"#, "_id array"),
        (r#"{"data":[{"_id":null}]}"#, "_id null"),
    ] {
        cases.push(body_case(what, Ep::Add, body, p));
    }
    let tx = r#"{"data":[{"a":1}],"transactionId":"tx-1"}"#;
    cases.push(body_case(
        "transactionId",
        Ep::Add,
        tx,
        "DATABASE_TRANSACTION_NOT_EXIST",
    ));
    for (body, what) in [
        (r#"{"query":[1],"multi":true}"#, "query [1]"),
        (r#"{"query":"x","multi":true}"#, "query \"x\""),
        (r#"{"query":{},"multi":"yes"}"#, "multi \"yes\""),
        (r#"{"query":{"_id":"t1"},"multi":1}"#, "multi 1"),
    ] {
        cases.push(body_case(what, Ep::Remove, body, p));
    }
    for (body, what) in [
        (r#"{"collectionName":5}"#, "name 5"),
        ("{}", "no name"),
        (r#"{"collectionName":null}"#, "name null"),
    ] {
        cases.push(body_case(what, Ep::Collections, body, p));
    }
    for (body, what) in [
        (r#"{"name":5}"#, "name 5"),
        ("{}", "no name"),
        (r#"{"name":["x"]}"#, "name [x]"),
    ] {
        cases.push(body_case(what, Ep::AdminEnvs, body, p));
        cases.push(body_case(what, Ep::AdminColls, body, p));
    }
    let q = |extra: Value| {
        let mut f =
            json!({ "action": "database.queryDocument", "collectionName": "todos", "queryType": "WHERE", "query": {} });
        for (k, v) in extra.as_object().expect("object") {
            f[k] = v.clone();
        }
        web_body(f)
    };
    let web_cases = [
        ("action 5", web_body(json!({ "action": 5 }))),
        ("no action", web_body(json!({ "collectionName": "todos" }))),
        ("action null", web_body(json!({ "action": null }))),
        ("query: collectionName 5", q(json!({ "collectionName": 5 }))),
        (
            "query: no collectionName",
            web_body(json!({ "action": "database.queryDocument", "query": {} })),
        ),
        ("query: limit \"abc\"", q(json!({ "limit": "abc" }))),
        ("query: limit -1", q(json!({ "limit": -1 }))),
        ("query: limit 5000", q(json!({ "limit": 5000 }))),
        ("query: offset -3", q(json!({ "offset": -3 }))),
        ("query: order \"x\"", q(json!({ "order": "x" }))),
        ("query: query [1]", q(json!({ "query": [1] }))),
        ("query: projection 5", q(json!({ "projection": 5 }))),
        (
            "count: query [1]",
            web_body(json!({ "action": "database.countDocument", "collectionName": "todos", "query": [1] })),
        ),
        (
            "add: data 5",
            web_body(json!({ "action": "database.addDocument", "collectionName": "todos", "data": 5 })),
        ),
        (
            "add: data []",
            web_body(json!({ "action": "database.addDocument", "collectionName": "todos", "data": [] })),
        ),
        (
            "add: data [1]",
            web_body(json!({ "action": "database.addDocument", "collectionName": "todos", "data": [1] })),
        ),
        (
            "add: no data",
            web_body(json!({ "action": "database.addDocument", "collectionName": "todos" })),
        ),
        (
            "update: data 5",
            web_body(
                json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" }, "data": 5 }),
            ),
        ),
        (
            "update: no data",
            web_body(
                json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" } }),
            ),
        ),
        (
            "update: multi \"yes\"",
            web_body(
                json!({ "action": "database.updateDocument", "collectionName": "todos", "query": {}, "data": { "$set": { "n": 9 } }, "multi": "yes" }),
            ),
        ),
        (
            "update: merge \"yes\"",
            web_body(
                json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" }, "data": { "n": 9 }, "merge": "yes" }),
            ),
        ),
        (
            "update: upsert \"yes\"",
            web_body(
                json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "zz" }, "data": { "n": 9 }, "upsert": "yes" }),
            ),
        ),
        (
            "update: query [1]",
            web_body(
                json!({ "action": "database.updateDocument", "collectionName": "todos", "query": [1], "data": { "$set": { "n": 9 } }, "multi": true }),
            ),
        ),
        (
            "delete: multi \"yes\"",
            web_body(
                json!({ "action": "database.deleteDocument", "collectionName": "todos", "query": {}, "multi": "yes" }),
            ),
        ),
        (
            "delete: query [1]",
            web_body(
                json!({ "action": "database.deleteDocument", "collectionName": "todos", "query": [1], "multi": true }),
            ),
        ),
        (
            "addCollection: name 5",
            web_body(json!({ "action": "database.addCollection", "collectionName": 5 })),
        ),
    ];
    for (what, body) in web_cases {
        cases.push(body_case(what, Ep::Web, body, p));
    }
    // the envelope's env has the wrong type (no ?env= to override it)
    cases.push(Case {
        what: "Web: env 5 in the envelope".into(),
        method: Method::POST,
        uri: "/web".into(),
        headers: vec![],
        body: Some(
            json!({ "action": "database.countDocument", "collectionName": "todos", "env": 5 })
                .to_string()
                .into_bytes(),
        ),
        status: 200,
        code: p,
    });
    check(&app, cases).await;
}

#[actix_web::test]
async fn unknown_and_misused_operators() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let c = "DATABASE_INVALID_COMMAND";
    let mut cases = Vec::new();
    let bad_queries = [
        r#"{"n":{"$foo":1}}"#,
        r#"{"$foo":[{"n":1}]}"#,
        r#"{"n":{"$gt":1,"$bar":2}}"#,
        r#"{"n":{"$in":5}}"#,
        r#"{"$and":{}}"#,
        r#"{"$or":[]}"#,
        r#"{"$or":[1]}"#,
        r#"{"n":{"$mod":[0,1]}}"#,
        r#"{"n":{"$mod":"x"}}"#,
        r#"{"n":{"$size":-1}}"#,
        r#"{"n":{"$exists":"x"}}"#,
        r#"{"n":{"$elemMatch":5}}"#,
        r#"{"n":{"$not":5}}"#,
        r#"{"title":{"$regex":5}}"#,
        r#"{"$where":"this.n > 1"}"#,
    ];
    for q in bad_queries {
        cases.push(list_case(format!("query {q}"), &[("query", q)], c));
    }
    cases.push(list_case(
        "count query $foo",
        &[("count", "true"), ("query", r#"{"n":{"$foo":1}}"#)],
        c,
    ));
    for q in [r#"{"n":{"$foo":1}}"#, r#"{"$foo":[{"n":1}]}"#, r#"{"$where":"1"}"#] {
        cases.push(body_case(
            format!("query {q}"),
            Ep::Remove,
            format!(r#"{{"query":{q},"multi":true}}"#),
            c,
        ));
    }
    let bad_updates = [
        (
            r#"{"query":{"_id":"t1"},"data":{"$foo":{"n":1}}}"#,
            "unknown update operator",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$set":{"n":100},"$foo":{"n":1}}}"#,
            "valid $set + unknown operator",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$inc":{"n":"x"}}}"#,
            "$inc by a string",
        ),
        (r#"{"query":{"_id":"t1"},"data":{"$set":5}}"#, "$set 5"),
        (r#"{"query":{"_id":"t1"},"data":{"$set":{"_id":"new"}}}"#, "$set _id"),
        (
            r#"{"query":{"_id":"t1"},"data":{"$set":{"n":1},"$inc":{"n":1}}}"#,
            "conflicting paths",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$rename":{"n":5}}}"#,
            "$rename to a number",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$push":{"tags":{"$each":5}}}}"#,
            "$push $each 5",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$inc":{"title":1}}}"#,
            "$inc a string field",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$push":{"title":"z"}}}"#,
            "$push onto a string",
        ),
        (
            r#"{"query":{},"data":{"$inc":{"n":1}},"multi":true}"#,
            "multi $inc failing on the 3rd doc",
        ),
        (
            r#"{"query":{},"data":{"$set":{"title":"new"},"$inc":{"n":1}},"multi":true}"#,
            "multi $set+$inc failing on one doc",
        ),
        (
            r#"{"query":{"n":{"$foo":1}},"data":{"$set":{"n":9}},"multi":true}"#,
            "query with unknown operator",
        ),
        (
            r#"{"query":{"_id":"t1"},"data":{"$set":{"x":1}, "y":2},"replaceMode":true}"#,
            "operators in a replacement",
        ),
    ];
    for ep in [Ep::Update, Ep::Override] {
        for (body, what) in bad_updates {
            cases.push(body_case(what, ep, body, c));
        }
    }
    let web_cases = [
        (
            "query: unknown",
            json!({ "action": "database.queryDocument", "collectionName": "todos", "query": { "n": { "$foo": 1 } } }),
        ),
        (
            "count: unknown",
            json!({ "action": "database.countDocument", "collectionName": "todos", "query": { "$foo": [] } }),
        ),
        (
            "update: unknown",
            json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" }, "data": { "$foo": { "n": 1 } }, "merge": true }),
        ),
        (
            "update: multi failing half-way",
            json!({ "action": "database.updateDocument", "collectionName": "todos", "query": {}, "data": { "$inc": { "n": 1 } }, "multi": true, "merge": true }),
        ),
        (
            "set: operators with merge false",
            json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" }, "data": { "$set": { "n": 1 } }, "merge": false }),
        ),
        (
            "delete: unknown",
            json!({ "action": "database.deleteDocument", "collectionName": "todos", "query": { "n": { "$foo": 1 } }, "multi": true }),
        ),
    ];
    for (what, fields) in web_cases {
        cases.push(body_case(what, Ep::Web, web_body(fields), c));
    }
    check(&app, cases).await;
}

#[actix_web::test]
async fn regex_that_does_not_compile() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let r = "DATABASE_INVALID_REGEX";
    let mut cases = Vec::new();
    let huge = format!(r#"{{"title":{{"$regex":"{}"}}}}"#, "(a{1000}){1000}");
    let bad = [
        r#"{"title":{"$regex":"(unclosed"}}"#.to_string(),
        r#"{"title":{"$regex":"[a-"}}"#.to_string(),
        r#"{"title":{"$regex":"a","$options":"q"}}"#.to_string(),
        r#"{"title":{"$in":[{"$regex":"("}]}}"#.to_string(),
        r#"{"title":{"$not":{"$regex":"*"}}}"#.to_string(),
        r#"{"title":{"$regularExpression":{"pattern":"(","options":""}}}"#.to_string(),
        huge,
    ];
    for q in &bad {
        cases.push(list_case(
            format!("query {}", &q[..q.len().min(80)]),
            &[("query", q)],
            r,
        ));
        cases.push(body_case(
            format!("query {}", &q[..q.len().min(80)]),
            Ep::Remove,
            format!(r#"{{"query":{q},"multi":true}}"#),
            r,
        ));
    }
    cases.push(list_case("count", &[("count", "true"), ("query", &bad[0])], r));
    for ep in [Ep::Update, Ep::Override] {
        cases.push(body_case(
            "regex in query",
            ep,
            format!(r#"{{"query":{},"data":{{"$set":{{"n":9}}}},"multi":true}}"#, bad[0]),
            r,
        ));
        cases.push(body_case(
            "regex in $pull",
            ep,
            r#"{"query":{"_id":"t1"},"data":{"$pull":{"tags":{"$regex":"("}}}}"#,
            r,
        ));
    }
    cases.push(body_case(
        "query",
        Ep::Web,
        web_text(&format!(
            r#""action":"database.queryDocument","collectionName":"todos","query":{}"#,
            bad[0]
        )),
        r,
    ));
    cases.push(body_case(
        "delete",
        Ep::Web,
        web_text(&format!(
            r#""action":"database.deleteDocument","collectionName":"todos","multi":true,"query":{}"#,
            bad[2]
        )),
        r,
    ));
    check(&app, cases).await;
}

/// `depth` levels of `[`…`]` around 1.
fn deep_array(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` levels of `{"a":`…`}` around 1.
fn deep_object(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

#[actix_web::test]
async fn deep_nesting() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let d = "DATABASE_NESTING_TOO_DEEP";
    let mut cases = Vec::new();
    for depth in [100, 1000] {
        for (shape, deep) in [("arrays", deep_array(depth)), ("objects", deep_object(depth))] {
            let what = format!("{depth}-deep {shape}");
            cases.push(body_case(&what, Ep::Add, format!(r#"{{"data":[{{"x":{deep}}}]}}"#), d));
            for ep in [Ep::Update, Ep::Override] {
                cases.push(body_case(
                    format!("{what} in $set"),
                    ep,
                    format!(r#"{{"query":{{"_id":"t1"}},"data":{{"$set":{{"x":{deep}}}}}}}"#),
                    d,
                ));
                cases.push(body_case(
                    format!("{what} in a replacement"),
                    ep,
                    format!(r#"{{"query":{{"_id":"t1"}},"data":{{"x":{deep}}},"upsert":true}}"#),
                    d,
                ));
                cases.push(body_case(
                    format!("{what} in query"),
                    ep,
                    format!(r#"{{"query":{{"x":{deep}}},"data":{{"$set":{{"n":9}}}},"multi":true}}"#),
                    d,
                ));
            }
            cases.push(body_case(
                &what,
                Ep::Remove,
                format!(r#"{{"query":{{"x":{deep}}},"multi":true}}"#),
                d,
            ));
            cases.push(list_case(&what, &[("query", &format!(r#"{{"x":{deep}}}"#))], d));
            cases.push(body_case(
                format!("{what} in add"),
                Ep::Web,
                web_text(&format!(
                    r#""action":"database.addDocument","collectionName":"todos","data":{{"x":{deep}}}"#
                )),
                d,
            ));
            cases.push(body_case(
                format!("{what} in query"),
                Ep::Web,
                web_text(&format!(
                    r#""action":"database.queryDocument","collectionName":"todos","query":{{"x":{deep}}}"#
                )),
                d,
            ));
            cases.push(body_case(
                format!("{what} in update"),
                Ep::Web,
                web_text(&format!(
                    r#""action":"database.updateDocument","collectionName":"todos","query":{{"_id":"t1"}},"data":{{"$set":{{"x":{deep}}}}},"merge":true"#
                )),
                d,
            ));
        }
    }
    for (ep, key) in [
        (Ep::Collections, "collectionName"),
        (Ep::AdminEnvs, "name"),
        (Ep::AdminColls, "name"),
    ] {
        cases.push(body_case(
            "1000-deep name",
            ep,
            format!(r#"{{"{key}":{}}}"#, deep_array(1000)),
            d,
        ));
    }
    check(&app, cases).await;
    // a document just within the limit (64 levels including the document itself) is accepted
    let ok = format!(r#"{{"data":[{{"_id":"deep-ok","x":{}}}]}}"#, deep_array(62));
    let (status, body) = send(
        &app,
        TestRequest::post()
            .uri(&docs_uri("todos"))
            .insert_header(("content-type", "application/json"))
            .set_payload(ok),
    )
    .await;
    assert_eq!(status, 200, "62 nested arrays inside a document: {}", shorten(&body));
}

#[actix_web::test]
async fn oversize_body_is_413() {
    let t = TestApp::with_config(|c| c.max_body_bytes = 1024);
    let app = t.service().await;
    fixture(&app).await;
    let big = "x".repeat(2048);
    let code = "REQUEST_BODY_TOO_LARGE";
    let mut cases = vec![
        body_case(
            "2 KB add",
            Ep::Add,
            json!({ "data": [{ "big": big }] }).to_string(),
            code,
        ),
        body_case(
            "2 KB update",
            Ep::Update,
            json!({ "query": { "_id": "t1" }, "data": { "$set": { "big": big } } }).to_string(),
            code,
        ),
        body_case(
            "2 KB override",
            Ep::Override,
            json!({ "query": { "_id": "t1" }, "data": { "$set": { "big": big } } }).to_string(),
            code,
        ),
        body_case(
            "2 KB remove",
            Ep::Remove,
            json!({ "query": { "title": { "$ne": big } }, "multi": true }).to_string(),
            code,
        ),
        body_case(
            "2 KB collections",
            Ep::Collections,
            json!({ "collectionName": "big", "pad": big }).to_string(),
            code,
        ),
        body_case(
            "2 KB add",
            Ep::Web,
            web_body(json!({ "action": "database.addDocument", "collectionName": "todos", "data": { "big": big } })),
            code,
        ),
        body_case(
            "2 KB env",
            Ep::AdminEnvs,
            json!({ "name": "bigenv", "pad": big }).to_string(),
            code,
        ),
        body_case(
            "2 KB collection",
            Ep::AdminColls,
            json!({ "name": "bigcoll", "pad": big }).to_string(),
            code,
        ),
        // a body that is not even JSON is refused for its size first
        body_case("2 KB garbage", Ep::Add, big.clone(), code),
    ];
    // a lying small content-length does not get a large body through
    let mut lying = body_case(
        "2 KB with content-length 10",
        Ep::Add,
        json!({ "data": [{ "big": big }] }).to_string(),
        code,
    );
    lying.headers.push(("content-length", "10"));
    cases.push(lying);
    check(&app, cases).await;
    // a body under the limit still works
    let ids = add_docs(
        &app,
        "default",
        "todos",
        json!([{ "_id": "small", "pad": "y".repeat(500) }]),
    )
    .await;
    assert_eq!(ids, vec!["small"]);
}

#[actix_web::test]
async fn oversize_document_is_413() {
    let t = TestApp::with_config(|c| c.max_document_bytes = 1024);
    let app = t.service().await;
    fixture(&app).await;
    let big = "x".repeat(2000);
    let code = "DATABASE_DOCUMENT_TOO_LARGE";
    let many: Vec<String> = (0..200).map(|i| format!("item-{i:04}")).collect();
    let mut cases = vec![
        body_case("single", Ep::Add, json!({ "data": [{ "big": big }] }).to_string(), code),
        body_case(
            "batch, second too large",
            Ep::Add,
            json!({ "data": [{ "_id": "ok1", "a": 1 }, { "big": big }] }).to_string(),
            code,
        ),
    ];
    for ep in [Ep::Update, Ep::Override] {
        cases.push(body_case(
            "$set",
            ep,
            json!({ "query": { "_id": "t1" }, "data": { "$set": { "big": big } } }).to_string(),
            code,
        ));
        cases.push(body_case(
            "$push $each",
            ep,
            json!({ "query": { "_id": "t1" }, "data": { "$push": { "tags": { "$each": many } } } }).to_string(),
            code,
        ));
        cases.push(body_case(
            "replace",
            ep,
            json!({ "query": { "_id": "t1" }, "data": { "big": big } }).to_string(),
            code,
        ));
        cases.push(body_case(
            "upsert",
            ep,
            json!({ "query": { "_id": "new1" }, "data": { "big": big }, "upsert": true }).to_string(),
            code,
        ));
        cases.push(body_case(
            "multi $set",
            ep,
            json!({ "query": {}, "data": { "$set": { "big": big } }, "multi": true }).to_string(),
            code,
        ));
    }
    for (what, fields) in [
        (
            "add",
            json!({ "action": "database.addDocument", "collectionName": "todos", "data": { "big": big } }),
        ),
        (
            "add batch",
            json!({ "action": "database.addDocument", "collectionName": "todos", "data": [{ "_id": "ok2" }, { "big": big }] }),
        ),
        (
            "update",
            json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" }, "data": { "$set": { "big": big } }, "merge": true }),
        ),
        (
            "set",
            json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" }, "data": { "big": big }, "merge": false, "upsert": true }),
        ),
    ] {
        cases.push(body_case(what, Ep::Web, web_body(fields), code));
    }
    check(&app, cases).await;
    // a document under the limit is fine
    let ids = add_docs(
        &app,
        "default",
        "todos",
        json!([{ "_id": "fits", "pad": "y".repeat(800) }]),
    )
    .await;
    assert_eq!(ids, vec!["fits"]);
}

#[actix_web::test]
async fn invalid_names() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let n = "INVALID_NAME";
    let mut cases = Vec::new();
    let long33 = "a".repeat(33);
    let coll_names = [
        "bad name",
        "",
        "_x",
        "-x",
        long33.as_str(),
        "a/b",
        "$x",
        "中文",
        "a\u{0}b",
        "a?b",
        "a%b",
    ];
    for name in coll_names {
        cases.push(body_case(
            format!("collection {name:?}"),
            Ep::Collections,
            json!({ "collectionName": name }).to_string(),
            n,
        ));
        cases.push(body_case(
            format!("collection {name:?}"),
            Ep::AdminColls,
            json!({ "name": name }).to_string(),
            n,
        ));
        cases.push(body_case(
            format!("addCollection {name:?}"),
            Ep::Web,
            web_body(json!({ "action": "database.addCollection", "collectionName": name })),
            n,
        ));
    }
    let long65 = "e".repeat(65);
    for name in ["bad env", "", "-x", "_x", long65.as_str(), "a/b", "a.b", "é", "a\nb"] {
        cases.push(body_case(
            format!("env {name:?}"),
            Ep::AdminEnvs,
            json!({ "name": name }).to_string(),
            n,
        ));
    }
    check(&app, cases).await;
    // the limits themselves are fine
    let ok32 = "c".repeat(32);
    create_coll(&app, "default", &ok32).await;
    create_env(&app, &"e".repeat(64)).await;
}

#[actix_web::test]
async fn invalid_field_names() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let n = "INVALID_NAME";
    let mut cases = Vec::new();
    let docs = [
        json!({ "$bad": 1 }),
        json!({ "a.b": 1 }),
        json!({ "ok": 1, "x": { "$y": 1 } }),
        json!({ "x": { "a.b": 1 } }),
        json!({ "arr": [{ "$z": 1 }] }),
        json!({ "": 1 }),
        json!({ "x": { "y": [{ "p.q": 1 }] } }),
    ];
    for doc in &docs {
        cases.push(body_case(
            format!("add {doc}"),
            Ep::Add,
            json!({ "data": [doc] }).to_string(),
            n,
        ));
        cases.push(body_case(
            format!("batch add {doc}"),
            Ep::Add,
            json!({ "data": [{ "_id": "fine" }, doc] }).to_string(),
            n,
        ));
        cases.push(body_case(
            format!("add {doc}"),
            Ep::Web,
            web_body(json!({ "action": "database.addDocument", "collectionName": "todos", "data": doc })),
            n,
        ));
    }
    for ep in [Ep::Update, Ep::Override] {
        for (what, body) in [
            (
                "replace with a dotted field",
                json!({ "query": { "_id": "t1" }, "data": { "a.b": 1 } }),
            ),
            (
                "replace with a nested dotted field",
                json!({ "query": { "_id": "t1" }, "data": { "x": { "a.b": 1 } } }),
            ),
            (
                "upsert with a dotted field",
                json!({ "query": { "_id": "new1" }, "data": { "x": { "a.b": 1 } }, "upsert": true }),
            ),
            (
                "$set a value with a $ field",
                json!({ "query": { "_id": "t1" }, "data": { "$set": { "x": { "$y": 1 } } } }),
            ),
            (
                "$set a value with a dotted field",
                json!({ "query": { "_id": "t1" }, "data": { "$set": { "x": { "a.b": 1 } } } }),
            ),
            (
                "$push a value with a $ field",
                json!({ "query": { "_id": "t1" }, "data": { "$push": { "tags": { "$each": [{ "$y": 1 }] } } } }),
            ),
        ] {
            cases.push(body_case(what, ep, body.to_string(), n));
        }
    }
    cases.push(body_case(
        "set with a dotted field",
        Ep::Web,
        web_body(json!({ "action": "database.updateDocument", "collectionName": "todos", "query": { "_id": "t1" }, "data": { "a.b": 1 }, "merge": false })),
        n,
    ));
    check(&app, cases).await;
}

#[actix_web::test]
async fn wrong_method_is_405() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let docs = docs_uri("todos");
    let add_body = json!({ "data": [{ "_id": "via-wrong-method" }] }).to_string();
    let m = |what: &str, method: Method, uri: String, body: Option<String>| Case {
        what: what.to_string(),
        method,
        uri,
        headers: vec![],
        body: body.map(String::into_bytes),
        status: 405,
        code: "METHOD_NOT_ALLOWED",
    };
    let mut cases = vec![
        m("DELETE documents", Method::DELETE, docs.clone(), None),
        m("PUT documents", Method::PUT, docs.clone(), Some(add_body.clone())),
        m("GET remove", Method::GET, format!("{docs}/remove"), None),
        m(
            "PATCH remove",
            Method::PATCH,
            format!("{docs}/remove"),
            Some(r#"{"query":{},"multi":true}"#.into()),
        ),
        m("GET collections", Method::GET, format!("{DB}/collections"), None),
        m("DELETE collections", Method::DELETE, format!("{DB}/collections"), None),
        m("DELETE document", Method::DELETE, format!("{docs}/t1"), None),
        m(
            "PATCH document",
            Method::PATCH,
            format!("{docs}/t1"),
            Some(r#"{"data":{"$set":{"n":9}}}"#.into()),
        ),
        m(
            "POST document",
            Method::POST,
            format!("{docs}/t1"),
            Some(add_body.clone()),
        ),
        m("GET /web", Method::GET, "/web?env=default".into(), None),
        m(
            "PUT /web",
            Method::PUT,
            "/web?env=default".into(),
            Some(web_body(
                json!({ "action": "database.addDocument", "collectionName": "todos", "data": {} }),
            )),
        ),
        m("DELETE admin envs", Method::DELETE, "/admin/v1/envs".into(), None),
        m(
            "PUT admin collections",
            Method::PUT,
            "/admin/v1/envs/default/collections".into(),
            Some(r#"{"name":"x"}"#.into()),
        ),
        m("GET health via POST", Method::POST, "/health".into(), Some("{}".into())),
    ];
    let mut override_delete = m(
        "method override DELETE",
        Method::POST,
        docs.clone(),
        Some(r#"{"query":{},"multi":true}"#.into()),
    );
    override_delete.headers.push(("X-HTTP-Method-Override", "DELETE"));
    cases.push(override_delete);
    check(&app, cases).await;
}

#[actix_web::test]
async fn unknown_route_is_404_json() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let n = |what: &str, method: Method, uri: String, body: Option<String>| Case {
        what: what.to_string(),
        method,
        uri,
        headers: vec![],
        body: body.map(String::into_bytes),
        status: 404,
        code: "NOT_FOUND",
    };
    let docs = docs_uri("todos");
    let cases = vec![
        n("GET /nope", Method::GET, "/nope".into(), None),
        n(
            "POST /nope",
            Method::POST,
            "/nope".into(),
            Some(r#"{"data":[{}]}"#.into()),
        ),
        n("GET /", Method::GET, "/".into(), None),
        n("GET /v1/database", Method::GET, "/v1/database".into(), None),
        n("GET a collection", Method::GET, format!("{DB}/collections/todos"), None),
        n(
            "POST below a document",
            Method::POST,
            format!("{docs}/t1/x"),
            Some(r#"{"data":[{}]}"#.into()),
        ),
        n("GET below remove", Method::GET, format!("{docs}/remove/x"), None),
        n("GET /admin/v1/nope", Method::GET, "/admin/v1/nope".into(), None),
        n(
            "POST /web/x",
            Method::POST,
            "/web/x".into(),
            Some(web_body(
                json!({ "action": "database.addCollection", "collectionName": "zz" }),
            )),
        ),
    ];
    check(&app, cases).await;
}

#[actix_web::test]
async fn admin_errors_use_the_admin_shape() {
    let t = TestApp::new();
    let app = t.service().await;
    fixture(&app).await;
    let requests: Vec<(&str, TestRequest, u16, &str)> = vec![
        (
            "malformed",
            post_json("/admin/v1/envs", &json!(1)).set_payload("{bad"),
            400,
            "INVALID_JSON",
        ),
        (
            "invalid name",
            post_json("/admin/v1/envs", &json!({ "name": "bad env" })),
            400,
            "INVALID_NAME",
        ),
        (
            "duplicate env",
            post_json("/admin/v1/envs", &json!({ "name": "other" })),
            409,
            "ENV_ALREADY_EXIST",
        ),
        (
            "unknown env",
            get("/admin/v1/envs/nope/collections"),
            400,
            "INVALID_ENV",
        ),
        (
            "duplicate collection",
            post_json("/admin/v1/envs/default/collections", &json!({ "name": "todos" })),
            409,
            "DATABASE_COLLECTION_ALREADY_EXIST",
        ),
        (
            "wrong method",
            TestRequest::delete().uri("/admin/v1/envs"),
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    let mut failures = Vec::new();
    for (what, req, status, code) in requests {
        let (got, body, rid) = call(&app, req).await;
        let ok = got == status
            && body["code"] == code
            && body["type"].as_str().is_some_and(|s| !s.is_empty())
            && body["message"].as_str().is_some_and(|s| !s.is_empty())
            && body["details"]["requestId"].as_str() == rid.as_deref()
            && rid.is_some();
        if !ok {
            failures.push(format!(
                "{what}: want {status} {code} as {{code, type, message, details.requestId}}, got {got} {body}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[actix_web::test]
async fn reply_over_1mb_is_413_never_truncated() {
    let t = TestApp::new();
    let app = t.service().await;
    create_coll(&app, "default", "big").await;
    let docs: Vec<Value> = (0..12)
        .map(|i| json!({ "_id": format!("b{i:02}"), "i": i, "blob": "z".repeat(100_000) }))
        .collect();
    add_docs(&app, "default", "big", Value::Array(docs)).await;
    // the whole list would be ~1.2 MB
    for params in [vec![], vec![("limit", "100")], vec![("query", "{}"), ("limit", "12")]] {
        let (status, body, rid) = call(&app, get(&list_uri("big", &params))).await;
        assert_eq!(status, 413, "params {params:?}: {}", shorten(&body));
        assert_eq!(
            body["code"],
            "DATABASE_RESULT_SIZE_LIMIT_EXCEEDED",
            "{}",
            shorten(&body)
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(body.get("list").is_none(), "never a truncated list");
        assert_eq!(body["requestId"].as_str(), rid.as_deref());
    }
    // CLOUD_API: HTTP 200 with the code, no data
    let fields =
        json!({ "action": "database.queryDocument", "collectionName": "big", "queryType": "WHERE", "query": {} });
    let (status, body) = send(
        &app,
        post_json(
            "/web?env=default",
            &serde_json::from_str(&web_body(fields)).expect("json"),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["code"],
        "DATABASE_RESULT_SIZE_LIMIT_EXCEEDED",
        "{}",
        shorten(&body)
    );
    assert!(body.get("data").is_none(), "never a truncated list");
    // smaller pages succeed, whole
    let order = r#"[{"field":"i","direction":"asc"}]"#;
    let (status, body) = send(&app, get(&list_uri("big", &[("order", order), ("limit", "5")]))).await;
    assert_eq!(status, 200, "{}", shorten(&body));
    let page = body["list"].as_array().expect("list");
    assert_eq!(ids_of(page), vec!["b00", "b01", "b02", "b03", "b04"]);
    assert!(page
        .iter()
        .all(|d| d["blob"].as_str().is_some_and(|b| b.len() == 100_000)));
    let (status, body) = send(&app, get(&list_uri("big", &[("order", order), ("offset", "10")]))).await;
    assert_eq!(status, 200, "{}", shorten(&body));
    assert_eq!(ids_of(body["list"].as_array().expect("list")), vec!["b10", "b11"]);
    // projecting the blob away makes the whole collection fit
    let (status, body) = send(
        &app,
        get(&list_uri("big", &[("projection", r#"{"blob":0}"#), ("order", order)])),
    )
    .await;
    assert_eq!(status, 200, "{}", shorten(&body));
    let all = body["list"].as_array().expect("list");
    assert_eq!(all.len(), 12);
    assert_eq!(all[3], json!({ "_id": "b03", "i": 3 }));
    // counting is not limited by the reply size
    let (_, body) = send(&app, get(&list_uri("big", &[("count", "true")]))).await;
    assert_eq!(body["total"], 12);
}
