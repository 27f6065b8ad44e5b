//! Collection schemas over HTTP: the admin API (set, read, remove, check existing documents), every
//! write path of both protocols checked against the schema with nothing written on a violation,
//! what the schema sees (`_id`, `_openid`, stored dates), bad schema bodies, and who may do this.

use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::common::*;
use crate::gateway::{add_docs, call, create_coll, docs_uri, get_doc, list, Svc};

const C: &str = "people";

fn schema_uri(env: &str, coll: &str) -> String {
    format!("/admin/v1/envs/{env}/collections/{coll}/schema")
}

fn person() -> Value {
    json!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "age": {"type": "integer", "minimum": 0},
            "email": {"type": "string", "format": "email"},
        },
    })
}

async fn set_schema(app: &impl Svc, coll: &str, schema: Value) {
    let (s, body) = send(
        app,
        put_json(&schema_uri("default", coll), &json!({ "schema": schema })),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["schema"], schema, "PUT answers the schema it set");
}

/// A collection `people` with the person schema and one valid document `ann`.
async fn setup(app: &impl Svc) {
    create_coll(app, "default", C).await;
    set_schema(app, C, person()).await;
    add_docs(app, "default", C, json!([{"_id": "ann", "name": "Ann", "age": 31}])).await;
}

/// Asserts a GATEWAY schema violation naming each of `paths`.
fn assert_violation(status: u16, body: &Value, paths: &[&str]) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "DATABASE_SCHEMA_VIOLATION", "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(msg.contains("does not match the collection schema"), "{msg}");
    for p in paths {
        assert!(msg.contains(&format!("{p}: ")), "{p} not named in {msg}");
    }
}

async fn all_docs(app: &impl Svc) -> Vec<Value> {
    list(app, C, &[("limit", "1000")]).await
}

#[actix_web::test]
async fn set_read_and_remove_a_schema() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    let uri = schema_uri("default", C);
    let (s, body) = send(&svc, get(&uri)).await;
    assert_eq!((s, body.clone()), (200, json!({ "schema": null })), "{body}");
    set_schema(&svc, C, person()).await;
    let (s, body) = send(&svc, get(&uri)).await;
    assert_eq!((s, body["schema"].clone()), (200, person()));
    // replacing it takes effect at once: `name` is no longer required
    set_schema(&svc, C, json!({"properties": {"age": {"type": "integer"}}})).await;
    add_docs(&svc, "default", C, json!([{"age": 5}])).await;
    let (s, body) = send(&svc, TestRequest::delete().uri(&uri)).await;
    assert_eq!((s, body.clone()), (200, json!({ "schema": null })), "{body}");
    let (s, body) = send(&svc, get(&uri)).await;
    assert_eq!((s, body["schema"].clone()), (200, Value::Null));
    // removed: anything goes again; removing twice is fine
    add_docs(&svc, "default", C, json!([{"age": "old"}])).await;
    let (s, _) = send(&svc, TestRequest::delete().uri(&uri)).await;
    assert_eq!(s, 200);
    // the rules of the collection are kept beside the schema, and the other way round
    let rules = format!("/admin/v1/envs/default/collections/{C}/rules");
    set_schema(&svc, C, person()).await;
    let (s, _) = send(&svc, put_json(&rules, &json!({"preset": "READONLY"}))).await;
    assert_eq!(s, 200);
    let (_, body) = send(&svc, get(&uri)).await;
    assert_eq!(body["schema"], person());
    let (_, body) = send(&svc, get(&rules)).await;
    assert_eq!(body["rules"], json!({"preset": "READONLY"}));
}

#[actix_web::test]
async fn gateway_writes_are_checked_and_violations_write_nothing() {
    let app = TestApp::new();
    let svc = app.service().await;
    setup(&svc).await;
    let docs = docs_uri(C);
    let ann = get_doc(&svc, C, "ann").await;
    // valid writes pass
    add_docs(
        &svc,
        "default",
        C,
        json!([{"_id": "bob", "name": "Bob", "email": "bob@example.com"}]),
    )
    .await;
    // insert: every failing path is named
    let (s, body) = send(
        &svc,
        post_json(&docs, &json!({"data": [{"_id": "x", "age": -1, "email": "no"}]})),
    )
    .await;
    assert_violation(s, &body, &["/", "/age", "/email"]);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("\"name\" is a required property"),
        "{body}"
    );
    // a batch with one bad document writes none of them, and names the bad one
    let batch = json!({"data": [{"_id": "c1", "name": "C"}, {"_id": "c2", "name": 7}]});
    let (s, body) = send(&svc, post_json(&docs, &batch)).await;
    assert_violation(s, &body, &["/name"]);
    assert!(
        body["message"].as_str().unwrap().starts_with("document 2 of 2 (`c2`)"),
        "{body}"
    );
    assert_eq!(get_doc(&svc, C, "c1").await, None);
    // update: checked on the resulting document
    let upd = json!({"query": {"_id": "ann"}, "data": {"$set": {"age": "old"}}});
    let (s, body) = send(&svc, patch_json(&docs, &upd)).await;
    assert_violation(s, &body, &["/age"]);
    assert!(
        body["message"].as_str().unwrap().starts_with("document `ann`"),
        "{body}"
    );
    let unset = json!({"query": {"_id": "ann"}, "data": {"$unset": {"name": ""}}});
    let (s, body) = send(&svc, patch_json(&docs, &unset)).await;
    assert_violation(s, &body, &["/"]);
    let inc = json!({"query": {"_id": "ann"}, "data": {"$inc": {"age": -100}}});
    let (s, body) = send(&svc, patch_json(&docs, &inc)).await;
    assert_violation(s, &body, &["/age"]);
    // set (replacement)
    let set = json!({"query": {"_id": "ann"}, "data": {"age": 3}});
    let (s, body) = send(&svc, patch_json(&docs, &set)).await;
    assert_violation(s, &body, &["/"]);
    assert_eq!(get_doc(&svc, C, "ann").await, ann, "nothing written to ann");
    // upsert: the document it would insert is checked
    let upsert = json!({"query": {"_id": "new"}, "data": {"$set": {"age": 1}}, "upsert": true});
    let (s, body) = send(&svc, patch_json(&docs, &upsert)).await;
    assert_violation(s, &body, &["/"]);
    assert!(
        body["message"].as_str().unwrap().starts_with("the upserted document"),
        "{body}"
    );
    assert_eq!(get_doc(&svc, C, "new").await, None);
    let upsert = json!({"query": {"_id": "new"}, "data": {"$set": {"name": "New"}}, "upsert": true});
    let (s, body) = send(&svc, patch_json(&docs, &upsert)).await;
    assert_eq!((s, body["upsert_id"].clone()), (200, json!("new")), "{body}");
    // the same update through the mini-program method override
    let (s, body) = send(
        &svc,
        post_json(&docs, &json!({"query": {"_id": "ann"}, "data": {"$set": {"name": ""}}}))
            .insert_header(("x-http-method-override", "PATCH")),
    )
    .await;
    assert_violation(s, &body, &["/name"]);
    // valid update and set pass
    let (s, body) = send(
        &svc,
        patch_json(&docs, &json!({"query": {"_id": "ann"}, "data": {"$inc": {"age": 1}}})),
    )
    .await;
    assert_eq!((s, body["updated"].clone()), (200, json!(1)), "{body}");
    let (s, body) = send(
        &svc,
        patch_json(&docs, &json!({"query": {"_id": "bob"}, "data": {"name": "Robert"}})),
    )
    .await;
    assert_eq!((s, body["updated"].clone()), (200, json!(1)), "{body}");
    assert_eq!(
        get_doc(&svc, C, "bob").await,
        Some(json!({"_id": "bob", "name": "Robert"}))
    );
    assert_eq!(all_docs(&svc).await.len(), 3, "ann, bob, new");
}

#[actix_web::test]
async fn a_multi_update_is_all_or_nothing() {
    let app = TestApp::new();
    let svc = app.service().await;
    setup(&svc).await;
    add_docs(
        &svc,
        "default",
        C,
        json!([{"_id": "b", "name": "B", "age": 10}, {"_id": "c", "name": "C", "age": 2}, {"_id": "d", "name": "D", "age": 50}]),
    )
    .await;
    let before = all_docs(&svc).await;
    // `c` would go below the minimum; nobody is changed
    let upd = json!({"query": {"age": {"$gte": 0}}, "data": {"$inc": {"age": -5}}, "multi": true});
    let (s, body) = send(&svc, patch_json(&docs_uri(C), &upd)).await;
    assert_violation(s, &body, &["/age"]);
    assert!(body["message"].as_str().unwrap().starts_with("document `c`"), "{body}");
    assert_eq!(all_docs(&svc).await, before);
    let upd = json!({"query": {"age": {"$gte": 10}}, "data": {"$inc": {"age": -5}}, "multi": true});
    let (s, body) = send(&svc, patch_json(&docs_uri(C), &upd)).await;
    assert_eq!((s, body["updated"].clone()), (200, json!(3)), "{body}");
}

/// `POST /web` as the admin: the whole reply (CLOUD_API answers HTTP 200 even for errors).
async fn web(app: &impl Svc, fields: Value) -> Value {
    let mut body = fields;
    body["env"] = json!("default");
    body["collectionName"] = json!(C);
    body["access_token"] = json!(TEST_ADMIN_KEY);
    let (s, reply, _) = call(app, post_json("/web?env=default", &body)).await;
    assert_eq!(s, 200, "{reply}");
    reply
}

fn assert_web_violation(reply: &Value, paths: &[&str]) {
    assert_eq!(reply["code"], "DATABASE_SCHEMA_VIOLATION", "{reply}");
    assert!(reply.get("data").is_none(), "{reply}");
    let msg = reply["message"].as_str().unwrap_or_default();
    for p in paths {
        assert!(msg.contains(&format!("{p}: ")), "{p} not named in {msg}");
    }
}

#[actix_web::test]
async fn cloud_api_writes_are_checked_too() {
    let app = TestApp::new();
    let svc = app.service().await;
    setup(&svc).await;
    add_docs(&svc, "default", C, json!([{"_id": "b", "name": "B", "age": 1}])).await;
    let before = all_docs(&svc).await;
    let r = web(
        &svc,
        json!({"action": "database.addDocument", "data": {"_id": "x", "name": 1}}),
    )
    .await;
    assert_web_violation(&r, &["/name"]);
    let r = web(
        &svc,
        json!({"action": "database.addDocument", "data": [{"name": "ok"}, {"age": "x"}]}),
    )
    .await;
    assert_web_violation(&r, &["/", "/age"]);
    let update = |data: Value, merge: bool, multi: bool, upsert: bool, query: Value| {
        json!({"action": "database.updateDocument", "data": data, "merge": merge, "multi": multi,
               "upsert": upsert, "query": query})
    };
    let r = web(
        &svc,
        update(json!({"$set": {"age": 1.5}}), true, false, false, json!({"_id": "ann"})),
    )
    .await;
    assert_web_violation(&r, &["/age"]);
    let r = web(
        &svc,
        update(json!({"email": "x"}), false, false, false, json!({"_id": "ann"})),
    )
    .await;
    assert_web_violation(&r, &["/", "/email"]);
    let r = web(
        &svc,
        update(json!({"age": 3}), false, false, true, json!({"_id": "nope"})),
    )
    .await;
    assert_web_violation(&r, &["/"]);
    let r = web(&svc, update(json!({"$inc": {"age": -2}}), true, true, false, json!({}))).await;
    assert_web_violation(&r, &["/age"]);
    assert_eq!(all_docs(&svc).await, before, "nothing written");
    // valid ones pass
    let r = web(
        &svc,
        json!({"action": "database.addDocument", "data": {"_id": "y", "name": "Y"}}),
    )
    .await;
    assert_eq!(r["data"], json!({"_id": "y"}), "{r}");
    let r = web(
        &svc,
        update(
            json!({"$inc": {"age": 1}}),
            true,
            true,
            false,
            json!({"age": {"$gte": 0}}),
        ),
    )
    .await;
    assert_eq!(r["data"]["updated"], 2, "{r}");
}

#[actix_web::test]
async fn the_schema_sees_ids_owners_and_stored_dates() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    set_schema(
        &svc,
        C,
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["_id", "_openid", "title", "createdAt"],
            "properties": {
                "_id": {"type": "string"},
                "_openid": {"type": "string", "minLength": 1},
                "title": {"type": "string"},
                "createdAt": {
                    "type": "object", "required": ["$date"], "additionalProperties": false,
                    "properties": {"$date": {"type": "integer"}},
                },
            },
        }),
    )
    .await;
    // a signed-up user (PRIVATE rules: a user may create, and gets `_openid`)
    let cred = json!({"username": "alice", "password": "correct horse battery"});
    let (s, cred) = send(&svc, post_json("/auth/v1/signup?client_id=default", &cred)).await;
    assert_eq!(s, 200, "{cred}");
    let token = cred["access_token"].as_str().expect("token").to_string();
    let as_user = |req: TestRequest| req.insert_header(("authorization", format!("Bearer {token}")));
    let docs = docs_uri(C);
    // a server date arrives as {"$date": {"offset": 0}} and is checked as the stored {"$date": ms}
    let data = json!({"data": [{"title": "t", "createdAt": {"$date": {"offset": 0}}}]});
    let (s, body) = send(&svc, as_user(post_json(&docs, &data))).await;
    assert_eq!(s, 200, "{body}");
    let id = body["insertedIds"][0].as_str().expect("id");
    let stored = get_doc(&svc, C, id).await.expect("stored");
    assert!(stored["createdAt"]["$date"].is_i64(), "{stored}");
    // an ISO string is not a date: refused for the user as for anyone
    let data = json!({"data": [{"title": "t", "createdAt": "2024-01-01T00:00:00Z"}]});
    let (s, body) = send(&svc, as_user(post_json(&docs, &data))).await;
    assert_violation(s, &body, &["/createdAt"]);
    // the admin inserts without an owner: `_openid` is required by this schema
    let data = json!({"data": [{"title": "t", "createdAt": {"$date": 0}}]});
    let (s, body) = send(&svc, post_json(&docs, &data)).await;
    assert_violation(s, &body, &["/"]);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("\"_openid\" is a required property"),
        "{body}"
    );
    // a client upsert that inserts is checked, with its owner
    let upsert = json!({"query": {"title": "u"}, "data": {"$set": {"extra": 1}}, "upsert": true});
    let (s, body) = send(&svc, as_user(patch_json(&docs, &upsert))).await;
    assert_violation(s, &body, &["/"]);
    assert!(body["message"].as_str().unwrap().contains("extra"), "{body}");
    let upsert = json!({"query": {"title": "u"}, "data": {"$set": {"createdAt": {"$date": 5}}}, "upsert": true});
    let (s, body) = send(&svc, as_user(patch_json(&docs, &upsert))).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["upsert_id"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    // a client update on its own document is checked on the result
    let upd = json!({"query": {"_id": id, "_openid": "{openid}"}, "data": {"$set": {"title": 5}}});
    let (s, body) = send(&svc, as_user(patch_json(&docs, &upd))).await;
    assert_violation(s, &body, &["/title"]);
    assert_eq!(get_doc(&svc, C, id).await, Some(stored));
}

#[actix_web::test]
async fn a_new_schema_does_not_rewrite_documents_and_violations_are_counted() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    let seed = json!([
        {"_id": "a", "name": "A", "age": 1},
        {"_id": "b", "age": "x"},
        {"_id": "c", "name": "C"},
        {"_id": "d", "name": 4, "age": -3},
    ]);
    add_docs(&svc, "default", C, seed).await;
    let violations = format!("{}/violations", schema_uri("default", C));
    // no schema: everything matches
    let (s, body) = send(&svc, get(&violations)).await;
    assert_eq!(
        (s, body.clone()),
        (
            200,
            json!({"schema_set": false, "checked": 4, "violating": 0, "sample": []})
        )
    );
    let before = all_docs(&svc).await;
    set_schema(&svc, C, person()).await;
    assert_eq!(all_docs(&svc).await, before, "setting a schema rewrites nothing");
    let (s, body) = send(&svc, get(&violations)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (body["checked"].clone(), body["violating"].clone()),
        (json!(4), json!(2)),
        "{body}"
    );
    let sample = body["sample"].as_array().expect("sample");
    assert_eq!(sample.len(), 2);
    assert_eq!(sample[0]["_id"], "b");
    assert_eq!(sample[0]["failure_count"], 2);
    assert_eq!(
        sample[1],
        json!({"_id": "d", "failure_count": 2, "failures": [
            {"path": "/name", "reason": "4 is not of type \"string\""},
            {"path": "/age", "reason": "-3 is less than the minimum of 0"},
        ]})
    );
    let (s, body) = send(&svc, get(&format!("{violations}?sample=1"))).await;
    assert_eq!((s, body["violating"].clone()), (200, json!(2)));
    assert_eq!(body["sample"].as_array().map(Vec::len), Some(1));
    for bad in ["?sample=x", "?sample=101", "?sample=-1"] {
        let (s, body) = send(&svc, get(&format!("{violations}{bad}"))).await;
        assert_eq!(
            (s, body["code"].clone()),
            (400, json!("INVALID_PARAM")),
            "{bad}: {body}"
        );
    }
    // violating documents can still be read and removed, and fixed by a write that matches
    let (s, _) = send(
        &svc,
        patch_json(&docs_uri(C), &json!({"query": {"_id": "b"}, "data": {"name": "B"}})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, body) = send(&svc, get(&violations)).await;
    assert_eq!(body["violating"], 1, "{body}");
}

#[actix_web::test]
async fn bad_schema_bodies_are_refused_and_change_nothing() {
    let app = TestApp::new();
    let svc = app.service().await;
    setup(&svc).await;
    let uri = schema_uri("default", C);
    let raw = |body: &str| {
        TestRequest::put()
            .uri(&uri)
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
    };
    let big: serde_json::Map<String, Value> = (0..5000)
        .map(|i| (format!("field{i}"), json!({"type": "string"})))
        .collect();
    let cases: Vec<(&str, TestRequest, u16, &str, &str)> = vec![
        (
            "malformed",
            raw("{\"schema\": {"),
            400,
            "INVALID_JSON",
            "malformed JSON",
        ),
        ("empty", raw(""), 400, "INVALID_JSON", "empty"),
        ("not an object", raw("[1]"), 400, "INVALID_JSON", "object"),
        ("no schema", raw("{}"), 400, "INVALID_PARAM", "`schema` is required"),
        ("null schema", raw("{\"schema\": null}"), 400, "INVALID_PARAM", "DELETE"),
        (
            "unknown field",
            raw("{\"schema\": {}, \"x\": 1}"),
            400,
            "INVALID_PARAM",
            "unknown field `x`",
        ),
        (
            "bad type",
            raw("{\"schema\": {\"type\": \"objekt\"}}"),
            400,
            "INVALID_SCHEMA",
            "/type",
        ),
        (
            "string schema",
            raw("{\"schema\": \"x\"}"),
            400,
            "INVALID_SCHEMA",
            "JSON object",
        ),
        (
            "remote ref",
            raw("{\"schema\": {\"$ref\": \"https://example.com/s.json\"}}"),
            400,
            "INVALID_SCHEMA",
            "never fetched",
        ),
        (
            "file ref",
            raw("{\"schema\": {\"properties\": {\"a\": {\"$ref\": \"file:///etc/passwd\"}}}}"),
            400,
            "INVALID_SCHEMA",
            "never fetched",
        ),
        (
            "unknown draft",
            raw("{\"schema\": {\"$schema\": \"https://example.com/meta\"}}"),
            400,
            "INVALID_SCHEMA",
            "unsupported `$schema`",
        ),
        (
            "unknown format",
            raw("{\"schema\": {\"properties\": {\"a\": {\"format\": \"emial\"}}}}"),
            400,
            "INVALID_SCHEMA",
            "emial",
        ),
        (
            "oversize",
            put_json(&uri, &json!({"schema": {"properties": big}})),
            413,
            "REQUEST_BODY_TOO_LARGE",
            "larger than",
        ),
    ];
    for (what, req, status, code, says) in cases {
        let (s, body) = send(&svc, req).await;
        assert_eq!((s, body["code"].as_str()), (status, Some(code)), "{what}: {body}");
        assert_eq!(
            body["type"],
            if status == 413 { "too_large" } else { "invalid_request" },
            "{what}"
        );
        assert!(
            body["message"].as_str().unwrap_or_default().contains(says),
            "{what}: {body}"
        );
        let (_, now) = send(&svc, get(&uri)).await;
        assert_eq!(now["schema"], person(), "{what} changed the schema");
    }
    // the old schema still applies
    let (s, body) = send(&svc, post_json(&docs_uri(C), &json!({"data": [{"age": 1}]}))).await;
    assert_violation(s, &body, &["/"]);
}

#[actix_web::test]
async fn only_admins_may_see_or_change_schemas() {
    let app = TestApp::new();
    let svc = app.service().await;
    setup(&svc).await;
    let cred = json!({"username": "mallory", "password": "correct horse battery"});
    let (s, cred) = send(&svc, post_json("/auth/v1/signup?client_id=default", &cred)).await;
    assert_eq!(s, 200, "{cred}");
    let bearer = format!("Bearer {}", cred["access_token"].as_str().expect("token"));
    let uri = schema_uri("default", C);
    let violations = format!("{uri}/violations");
    let requests = || {
        vec![
            get(&uri),
            put_json(&uri, &json!({"schema": true})),
            TestRequest::delete().uri(&uri),
            get(&violations),
        ]
    };
    for req in requests() {
        let (s, body) = send(&svc, as_guest(req)).await;
        assert_eq!((s, body["code"].clone()), (401, json!("UNAUTHENTICATED")), "{body}");
    }
    for req in requests() {
        let (s, body) = send(&svc, req.insert_header(("authorization", bearer.clone()))).await;
        assert_eq!((s, body["code"].clone()), (403, json!("ADMIN_REQUIRED")), "{body}");
    }
    let (_, body) = send(&svc, get(&uri)).await;
    assert_eq!(body["schema"], person(), "unchanged");
}

#[actix_web::test]
async fn unknown_envs_and_collections_and_wrong_methods() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    for (env, coll, status, code) in [
        ("nope", C, 400, "INVALID_ENV"),
        ("default", "nope", 404, "DATABASE_COLLECTION_NOT_EXIST"),
        ("default", "bad%2Fname", 404, "DATABASE_COLLECTION_NOT_EXIST"),
    ] {
        let uri = schema_uri(env, coll);
        for req in [
            get(&uri),
            put_json(&uri, &json!({"schema": true})),
            TestRequest::delete().uri(&uri),
            get(&format!("{uri}/violations")),
        ] {
            let (s, body) = send(&svc, req).await;
            assert_eq!((s, body["code"].as_str()), (status, Some(code)), "{env}/{coll}: {body}");
        }
    }
    let (s, body) = send(&svc, post_json(&schema_uri("default", C), &json!({"schema": true}))).await;
    assert_eq!((s, body["code"].clone()), (405, json!("METHOD_NOT_ALLOWED")), "{body}");
    let (s, body) = send(
        &svc,
        TestRequest::delete().uri(&format!("{}/violations", schema_uri("default", C))),
    )
    .await;
    assert_eq!((s, body["code"].clone()), (405, json!("METHOD_NOT_ALLOWED")), "{body}");
}

#[actix_web::test]
async fn schemas_are_per_env_and_collection() {
    let app = TestApp::new();
    let svc = app.service().await;
    setup(&svc).await;
    create_coll(&svc, "default", "other").await;
    crate::gateway::create_env(&svc, "prod").await;
    create_coll(&svc, "prod", C).await;
    // neither another collection nor the same name in another env has the schema
    add_docs(&svc, "default", "other", json!([{"age": "x"}])).await;
    add_docs(&svc, "prod", C, json!([{"age": "x"}])).await;
    let (s, body) = send(&svc, get(&schema_uri("prod", C))).await;
    assert_eq!((s, body["schema"].clone()), (200, Value::Null));
}
