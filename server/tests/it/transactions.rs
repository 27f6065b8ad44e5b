//! Transactions over both protocols: GATEWAY `P/transactions…` and `transactionId` on the document
//! routes, the CLOUD_API transaction actions with their exact reply shapes, isolation until
//! commit, conflicts with normal writes, expiry, rollback, security rules and ownership, bad input
//! and limits, and parallel money transfers over a real socket conserving the total.

use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::common::*;
use crate::gateway::{call, create_coll, create_env, docs_uri, get_doc, in_env, list_uri, Svc};

const C: &str = "acc";

fn tx_uri() -> String {
    format!("{DB}/transactions")
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// A request as the holder of `token` (`None`: the harness's admin key).
fn by(req: TestRequest, token: Option<&str>) -> TestRequest {
    match token {
        Some(t) => req.insert_header(("authorization", format!("Bearer {t}"))),
        None => req,
    }
}

/// `POST P/transactions`: the id, after checking the reply is exactly `{transactionId, requestId}`.
async fn start(svc: &impl Svc, token: Option<&str>) -> String {
    let (status, body) = send(svc, by(TestRequest::post().uri(&tx_uri()), token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["requestId", "transactionId"], "{body}");
    let id = body["transactionId"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 32, "{id}");
    id
}

async fn end(svc: &impl Svc, id: &str, how: &str, token: Option<&str>) -> (u16, Value) {
    let uri = format!("{}/{id}/{how}", tx_uri());
    send(svc, by(TestRequest::post().uri(&uri), token)).await
}

/// A read inside a transaction the way the SDK sends `doc(id).get()`: a list query whose every
/// parameter, the id included, is `JSON.stringify`ed.
async fn tx_list(svc: &impl Svc, tx: &str, id: &str, token: Option<&str>) -> (u16, Value) {
    let uri = list_uri(
        C,
        &[
            ("query", &json!({ "_id": id }).to_string()),
            ("transactionId", &json!(tx).to_string()),
            ("limit", "100"),
        ],
    );
    send(svc, by(get(&uri), token)).await
}

async fn tx_doc(svc: &impl Svc, tx: &str, id: &str) -> Option<Value> {
    let (status, body) = tx_list(svc, tx, id, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["limit", "list", "offset", "requestId"], "{body}");
    body["list"].as_array().expect("list").first().cloned()
}

async fn tx_patch(svc: &impl Svc, tx: &str, id: &str, data: Value, token: Option<&str>) -> (u16, Value) {
    let body = json!({ "query": { "_id": id }, "data": data, "multi": false, "upsert": false, "transactionId": tx });
    send(svc, by(patch_json(&docs_uri(C), &body), token)).await
}

async fn seed(svc: &impl Svc, docs: Value) {
    let (status, body) = send(svc, post_json(&docs_uri(C), &json!({ "data": docs }))).await;
    assert_eq!(status, 200, "{body}");
}

fn n(doc: &Option<Value>) -> i64 {
    doc.as_ref().and_then(|d| d["n"].as_i64()).unwrap_or(i64::MIN)
}

#[actix_web::test]
async fn gateway_transaction_is_isolated_until_commit_with_the_sdk_reply_shapes() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    seed(
        &svc,
        json!([{"_id": "a", "n": 10}, {"_id": "b", "n": 0}, {"_id": "gone", "n": 1}]),
    )
    .await;
    let tx = start(&svc, None).await;

    assert_eq!(n(&tx_doc(&svc, &tx, "a").await), 10);
    let (status, body) = tx_patch(&svc, &tx, "a", json!({"$inc": {"n": -3}}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        ["matched", "requestId", "updated", "upsert_id", "upserted_id"]
    );
    assert_eq!(
        (&body["matched"], &body["updated"], &body["upsert_id"]),
        (&json!(1), &json!(1), &json!(""))
    );
    tx_patch(&svc, &tx, "b", json!({"$inc": {"n": 3}}), None).await;
    // set() of a missing document: a replacement with upsert
    let set = json!({"query": {"_id": "c"}, "data": {"n": 5}, "multi": false, "upsert": true, "replaceMode": false, "transactionId": tx});
    let (status, body) = send(&svc, patch_json(&docs_uri(C), &set)).await;
    assert_eq!((status, &body["upsert_id"]), (200, &json!("c")), "{body}");
    let add = json!({"data": [{"_id": "log1", "what": "a->b"}], "transactionId": tx});
    let (status, body) = send(&svc, post_json(&docs_uri(C), &add)).await;
    assert_eq!((status, &body["insertedIds"]), (200, &json!(["log1"])), "{body}");
    let remove = json!({"query": {"_id": "gone"}, "multi": false, "transactionId": tx});
    let (status, body) = send(&svc, post_json(&format!("{}/remove", docs_uri(C)), &remove)).await;
    assert_eq!((status, &body["deleted"]), (200, &json!(1)), "{body}");

    // inside: its own writes; the by-id route with the id as the SDK sends it
    let uri = format!("{}/a?transactionId={}", docs_uri(C), enc(&json!(tx).to_string()));
    let (status, doc) = send(&svc, get(&uri)).await;
    assert_eq!((status, doc), (200, json!({"_id": "a", "n": 7})));
    assert_eq!(tx_doc(&svc, &tx, "gone").await, None);
    let uri = format!("{}/gone?transactionId={tx}", docs_uri(C));
    let (status, body) = send(&svc, get(&uri)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_DOCUMENT_NOT_EXIST"))
    );
    // outside: nothing yet
    assert_eq!(n(&get_doc(&svc, C, "a").await), 10);
    assert_eq!(n(&get_doc(&svc, C, "gone").await), 1);
    assert_eq!(get_doc(&svc, C, "log1").await, None);
    assert_eq!(get_doc(&svc, C, "c").await, None);

    let (status, body) = end(&svc, &tx, "commit", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["requestId", "transactionId"]);
    assert_eq!(body["transactionId"], json!(tx));
    assert_eq!(n(&get_doc(&svc, C, "a").await), 7);
    assert_eq!(n(&get_doc(&svc, C, "b").await), 3);
    assert_eq!(n(&get_doc(&svc, C, "c").await), 5);
    assert_eq!(
        get_doc(&svc, C, "log1").await,
        Some(json!({"_id": "log1", "what": "a->b"}))
    );
    assert_eq!(get_doc(&svc, C, "gone").await, None);

    // the id is over
    let (status, body) = end(&svc, &tx, "commit", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_TRANSACTION_NOT_EXIST")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("committed"), "{body}");
    let (status, body) = tx_list(&svc, &tx, "a", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_TRANSACTION_NOT_EXIST"))
    );
}

#[actix_web::test]
async fn gateway_rollback_discards_everything() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    seed(&svc, json!([{"_id": "a", "n": 10}])).await;
    let tx = start(&svc, None).await;
    tx_patch(&svc, &tx, "a", json!({"n": 0}), None).await;
    let add = json!({"data": [{"_id": "x"}], "transactionId": tx});
    send(&svc, post_json(&docs_uri(C), &add)).await;
    let (status, body) = end(&svc, &tx, "rollback", None).await;
    assert_eq!(
        (status, keys(&body)),
        (200, vec!["requestId", "transactionId"]),
        "{body}"
    );
    assert_eq!(n(&get_doc(&svc, C, "a").await), 10);
    assert_eq!(get_doc(&svc, C, "x").await, None);
    let (status, body) = end(&svc, &tx, "commit", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_TRANSACTION_NOT_EXIST"))
    );
    assert!(body["message"].as_str().unwrap().contains("rolled back"), "{body}");
    assert_eq!(app.state.txns.open_count(), 0);
}

#[actix_web::test]
async fn a_normal_write_in_between_makes_the_commit_a_conflict_and_nothing_is_written() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    seed(&svc, json!([{"_id": "a", "n": 10}, {"_id": "b", "n": 0}])).await;
    let tx = start(&svc, None).await;
    let a = n(&tx_doc(&svc, &tx, "a").await);
    tx_patch(&svc, &tx, "b", json!({"$set": {"n": a}}), None).await;
    // a concurrent normal write to what the transaction read
    let normal = json!({"query": {"_id": "a"}, "data": {"$inc": {"n": 1}}});
    let (status, _) = send(&svc, patch_json(&docs_uri(C), &normal)).await;
    assert_eq!(status, 200);
    let (status, body) = end(&svc, &tx, "commit", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("DATABASE_TRANSACTION_CONFLICT")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("acc/a"), "{body}");
    assert_eq!(n(&get_doc(&svc, C, "b").await), 0);
    assert_eq!(n(&get_doc(&svc, C, "a").await), 11);

    // reading it again inside a transaction after it changed: the conflict comes at once
    let tx = start(&svc, None).await;
    tx_doc(&svc, &tx, "a").await;
    send(&svc, patch_json(&docs_uri(C), &normal)).await;
    let (status, body) = tx_list(&svc, &tx, "a", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("DATABASE_TRANSACTION_CONFLICT"))
    );
    let (status, body) = end(&svc, &tx, "commit", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_TRANSACTION_NOT_EXIST"))
    );
    assert!(body["message"].as_str().unwrap().contains("aborted"), "{body}");
}

#[actix_web::test]
async fn an_abandoned_transaction_expires_and_changes_nothing() {
    let app = TestApp::with_config(|c| c.transaction_ttl = 1);
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    let tx = start(&svc, None).await;
    let add = json!({"data": [{"_id": "x"}], "transactionId": tx});
    let (status, _) = send(&svc, post_json(&docs_uri(C), &add)).await;
    assert_eq!(status, 200);
    assert_eq!(app.state.txns.open_count(), 1);
    std::thread::sleep(std::time::Duration::from_millis(1600));
    assert_eq!(app.state.txns.open_count(), 0, "the sweeper discarded it");
    let (status, body) = end(&svc, &tx, "commit", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_TRANSACTION_EXPIRED")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("1 s"), "{body}");
    assert_eq!(get_doc(&svc, C, "x").await, None);
}

async fn sign_up(svc: &impl Svc, name: &str) -> (String, String) {
    let body = json!({"username": name, "password": "correct horse battery"});
    let (status, cred) = send(svc, post_json("/auth/v1/signup?client_id=default", &body)).await;
    assert_eq!(status, 200, "{cred}");
    (
        cred["access_token"].as_str().unwrap().to_string(),
        cred["sub"].as_str().unwrap().to_string(),
    )
}

#[actix_web::test]
async fn each_operation_passes_the_rules_and_the_id_is_bound_to_its_user() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await; // PRIVATE: creator-only
    let (alice, alice_id) = sign_up(&svc, "alice").await;
    let (bob, bob_id) = sign_up(&svc, "bob").await;
    seed(
        &svc,
        json!([{"_id": "al", "_openid": alice_id, "n": 1}, {"_id": "bo", "_openid": bob_id, "n": 2}]),
    )
    .await;
    let a = Some(alice.as_str());
    let tx = start(&svc, a).await;
    // her own document: readable and writable; Bob's: invisible and unchanged
    let (status, body) = tx_list(&svc, &tx, "al", a).await;
    assert_eq!((status, body["list"][0]["n"].clone()), (200, json!(1)), "{body}");
    let (status, body) = tx_list(&svc, &tx, "bo", a).await;
    assert_eq!((status, body["list"].clone()), (200, json!([])), "{body}");
    let (status, body) = tx_patch(&svc, &tx, "bo", json!({"$set": {"n": 0}}), a).await;
    assert_eq!((status, body["matched"].clone()), (200, json!(0)), "{body}");
    let (status, body) = tx_patch(&svc, &tx, "al", json!({"$set": {"n": 5}}), a).await;
    assert_eq!((status, body["updated"].clone()), (200, json!(1)), "{body}");
    let remove = json!({"query": {"_id": "bo"}, "transactionId": tx});
    let (status, body) = send(&svc, by(post_json(&format!("{}/remove", docs_uri(C)), &remove), a)).await;
    assert_eq!((status, body["deleted"].clone()), (200, json!(0)), "{body}");
    // inserts get her `_openid`; she cannot write one herself
    let add = json!({"data": [{"_id": "new"}], "transactionId": tx});
    let (status, _) = send(&svc, by(post_json(&docs_uri(C), &add), a)).await;
    assert_eq!(status, 200);
    let (status, body) = tx_patch(&svc, &tx, "al", json!({"$set": {"_openid": "x"}}), a).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_PARAM")), "{body}");
    // set() of a missing document is an insert: it gets her `_openid` too
    let set = json!({"query": {"_id": "set"}, "data": {"n": 9}, "upsert": true, "transactionId": tx});
    let (status, body) = send(&svc, by(patch_json(&docs_uri(C), &set), a)).await;
    assert_eq!((status, body["upsert_id"].clone()), (200, json!("set")), "{body}");

    // Bob, an admin and a guest cannot use her transaction
    for token in [Some(bob.as_str()), None] {
        let (status, body) = tx_list(&svc, &tx, "al", token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("DATABASE_TRANSACTION_NOT_EXIST")),
            "{body}"
        );
        let (status, body) = end(&svc, &tx, "rollback", token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("DATABASE_TRANSACTION_NOT_EXIST")),
            "{body}"
        );
    }
    let (status, body) = send(
        &svc,
        as_guest(TestRequest::post().uri(&format!("{}/{tx}/commit", tx_uri()))),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );
    let (status, body) = send(&svc, as_guest(TestRequest::post().uri(&tx_uri()))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );

    let (status, body) = end(&svc, &tx, "commit", a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(n(&get_doc(&svc, C, "al").await), 5);
    assert_eq!(n(&get_doc(&svc, C, "bo").await), 2);
    let new = get_doc(&svc, C, "new").await.unwrap();
    assert_eq!(new["_openid"], json!(alice_id));
    assert_eq!(get_doc(&svc, C, "set").await.unwrap()["_openid"], json!(alice_id));

    // rules that deny the read deny it inside a transaction too
    let uri = format!("/admin/v1/envs/default/collections/{C}/rules");
    let rules = json!({"read": "doc.n > 100", "write": false});
    let (status, body) = send(&svc, put_json(&uri, &rules)).await;
    assert_eq!(status, 200, "{body}");
    let tx = start(&svc, a).await;
    let (status, body) = tx_list(&svc, &tx, "al", a).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("DATABASE_PERMISSION_DENIED")),
        "{body}"
    );
    let add = json!({"data": [{"_id": "w"}], "transactionId": tx});
    let (status, body) = send(&svc, by(post_json(&docs_uri(C), &add), a)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("DATABASE_PERMISSION_DENIED")),
        "{body}"
    );
}

#[actix_web::test]
async fn bad_input_gets_a_clear_4xx() {
    let app = TestApp::with_config(|c| {
        c.transaction_max_ops = 3;
        c.max_body_bytes = 4096;
    });
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    seed(&svc, json!([{"_id": "a", "n": 1}])).await;
    let tx = start(&svc, None).await;
    let remove_uri = format!("{}/remove", docs_uri(C));
    let cases: Vec<(&str, TestRequest, u16, &str)> = vec![
        (
            "unknown id",
            patch_json(
                &docs_uri(C),
                &json!({"query": {"_id": "a"}, "data": {"n": 2}, "transactionId": "0123"}),
            ),
            404,
            "DATABASE_TRANSACTION_NOT_EXIST",
        ),
        (
            "unknown id commit",
            TestRequest::post().uri(&format!("{}/nope/commit", tx_uri())),
            404,
            "DATABASE_TRANSACTION_NOT_EXIST",
        ),
        (
            "transactionId a number",
            post_json(&docs_uri(C), &json!({"data": [{}], "transactionId": 5})),
            400,
            "INVALID_PARAM",
        ),
        (
            "query without _id",
            patch_json(
                &docs_uri(C),
                &json!({"query": {"n": 1}, "data": {"n": 2}, "transactionId": tx}),
            ),
            400,
            "INVALID_PARAM",
        ),
        (
            "query by several ids",
            post_json(
                &remove_uri,
                &json!({"query": {"_id": {"$in": ["a", "b"]}}, "transactionId": tx}),
            ),
            400,
            "INVALID_PARAM",
        ),
        (
            "multi update",
            patch_json(
                &docs_uri(C),
                &json!({"query": {"_id": "a"}, "data": {"n": 2}, "multi": true, "transactionId": tx}),
            ),
            400,
            "INVALID_PARAM",
        ),
        (
            "multi remove",
            post_json(
                &remove_uri,
                &json!({"query": {"_id": "a"}, "multi": true, "transactionId": tx}),
            ),
            400,
            "INVALID_PARAM",
        ),
        (
            "count",
            get(&list_uri(C, &[("count", "true"), ("transactionId", &tx)])),
            400,
            "INVALID_PARAM",
        ),
        (
            "list without a query",
            get(&list_uri(C, &[("transactionId", &tx)])),
            400,
            "INVALID_PARAM",
        ),
        ("GET on transactions", get(&tx_uri()), 405, "METHOD_NOT_ALLOWED"),
        (
            "DELETE on commit",
            TestRequest::delete().uri(&format!("{}/{tx}/commit", tx_uri())),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "malformed body",
            TestRequest::patch()
                .uri(&docs_uri(C))
                .insert_header(("content-type", "application/json"))
                .set_payload("{\"transactionId\":"),
            400,
            "INVALID_JSON",
        ),
        (
            "oversize body",
            post_json(
                &docs_uri(C),
                &json!({"data": [{"pad": "x".repeat(5000)}], "transactionId": tx}),
            ),
            413,
            "REQUEST_BODY_TOO_LARGE",
        ),
        (
            "unknown collection",
            patch_json(
                &format!("{DB}/collections/nope/documents"),
                &json!({"query": {"_id": "a"}, "data": {"n": 2}, "transactionId": tx}),
            ),
            404,
            "DATABASE_COLLECTION_NOT_EXIST",
        ),
    ];
    for (what, req, want_status, want_code) in cases {
        let (status, body, rid) = call(&svc, req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (want_status, Some(want_code)),
            "{what}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert_eq!(body["requestId"].as_str(), rid.as_deref(), "{what}");
    }
    // a transaction of another env does not exist here
    create_env(&svc, "other").await;
    create_coll(&svc, "other", C).await;
    let uri = in_env(
        &list_uri(C, &[("query", r#"{"_id":"a"}"#), ("transactionId", &tx)]),
        "other",
    );
    let (status, body) = send(&svc, get(&uri)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("DATABASE_TRANSACTION_NOT_EXIST")),
        "{body}"
    );
    // the refused operations left it usable; three operations are allowed (failed ones count)
    let tx = start(&svc, None).await;
    for _ in 0..3 {
        let (status, _) = tx_list(&svc, &tx, "a", None).await;
        assert_eq!(status, 200);
    }
    let (status, body) = tx_list(&svc, &tx, "a", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("DATABASE_TRANSACTION_TOO_LARGE")),
        "{body}"
    );
    let (status, _) = end(&svc, &tx, "commit", None).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn too_many_open_transactions_are_refused_with_retry_after() {
    let app = TestApp::with_config(|c| c.transaction_max_open = 2);
    let svc = app.service().await;
    let first = start(&svc, None).await;
    start(&svc, None).await;
    let res = actix_web::test::call_service(&svc, to_request(TestRequest::post().uri(&tx_uri()))).await;
    assert_eq!(res.status().as_u16(), 429);
    assert_eq!(
        res.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = actix_web::test::read_body_json(res).await;
    assert_eq!(body["code"], "DATABASE_TRANSACTION_LIMIT_EXCEEDED", "{body}");
    end(&svc, &first, "rollback", None).await;
    start(&svc, None).await;
}

// ---- CLOUD_API ------------------------------------------------------------------------------

/// `POST /web` with the envelope as the admin: the whole reply (always HTTP 200).
async fn web(svc: &impl Svc, action: &str, mut fields: Value) -> Value {
    fields["action"] = json!(action);
    fields["env"] = json!("default");
    fields["dataVersion"] = json!("2020-01-10");
    fields["access_token"] = json!(TEST_ADMIN_KEY);
    let (status, body) = send(svc, post_json("/web?env=default", &fields)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["requestId"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
    body
}

#[actix_web::test]
async fn cloudapi_transaction_actions_have_the_server_sdk_shapes() {
    let app = TestApp::new();
    let svc = app.service().await;
    create_coll(&svc, "default", C).await;
    seed(&svc, json!([{"_id": "a", "n": 10}])).await;

    let r = web(&svc, "database.startTransaction", json!({})).await;
    assert_eq!(keys(&r), ["requestId", "transactionId"], "{r}");
    let tx = r["transactionId"].as_str().unwrap().to_string();
    let pin = |id: &str| json!({ "_id": { "$eq": id } });

    // getInTransaction: `data` is the document as EJSON text, "null" when missing
    let r = web(
        &svc,
        "database.getInTransaction",
        json!({"collectionName": C, "transactionId": tx, "query": pin("a")}),
    )
    .await;
    assert_eq!(keys(&r), ["data", "requestId"], "{r}");
    let doc: Value = serde_json::from_str(r["data"].as_str().expect("EJSON text")).unwrap();
    assert_eq!(doc, json!({"_id": "a", "n": 10}));
    let r = web(
        &svc,
        "database.getInTransaction",
        json!({"collectionName": C, "transactionId": tx, "query": pin("zz")}),
    )
    .await;
    assert_eq!(r["data"], json!("null"));

    // update() sends operators as canonical EJSON text
    let data = json!({"$inc": {"n": {"$numberInt": "-3"}}}).to_string();
    let r = web(
        &svc,
        "database.updateDocInTransaction",
        json!({"collectionName": C, "transactionId": tx, "query": pin("a"), "data": data}),
    )
    .await;
    assert_eq!(keys(&r), ["matched", "requestId", "updated"], "{r}");
    assert_eq!(r["updated"], json!(1));
    // set() sends a plain document with upsert: true
    let data = json!({"n": {"$numberInt": "5"}, "at": {"$date": {"$numberLong": "1700000000000"}}}).to_string();
    let r = web(
        &svc,
        "database.updateDocInTransaction",
        json!({"collectionName": C, "transactionId": tx, "query": pin("s"), "data": data, "upsert": true}),
    )
    .await;
    assert_eq!(
        (r["updated"].clone(), r["matched"].clone()),
        (json!(0), json!(0)),
        "{r}"
    );
    let upserted: Value = serde_json::from_str(r["upserted"].as_str().expect("JSON text")).unwrap();
    assert_eq!(upserted, json!([{"index": 0, "_id": "s"}]));
    // create(): data as EJSON text, the id beside it
    let r = web(
        &svc,
        "database.insertDocInTransaction",
        json!({"collectionName": C, "transactionId": tx, "_id": "i", "data": json!({"k": {"$numberInt": "1"}}).to_string()}),
    )
    .await;
    assert_eq!(
        (r["inserted"].clone(), r["ok"].clone(), r["_id"].clone()),
        (json!(1), json!(1), json!("i")),
        "{r}"
    );
    // older SDKs name the document by a top-level `_id`
    let r = web(
        &svc,
        "database.deleteDocInTransaction",
        json!({"collectionName": C, "transactionId": tx, "_id": "i"}),
    )
    .await;
    assert_eq!(keys(&r), ["deleted", "requestId"], "{r}");
    assert_eq!(r["deleted"], json!(1));
    // the normal actions with a transactionId work inside it too
    let r = web(
        &svc,
        "database.queryDocument",
        json!({"collectionName": C, "transactionId": tx, "queryType": "DOC", "query": {"_id": "a"}}),
    )
    .await;
    assert_eq!(r["data"]["list"], json!([{"_id": "a", "n": 7}]), "{r}");
    let r = web(
        &svc,
        "database.queryDocument",
        json!({"collectionName": C, "query": {"_id": "a"}}),
    )
    .await;
    assert_eq!(
        r["data"]["list"],
        json!([{"_id": "a", "n": 10}]),
        "outside: unchanged {r}"
    );

    let r = web(&svc, "database.commitTransaction", json!({"transactionId": tx})).await;
    assert_eq!(keys(&r), ["requestId"], "{r}");
    assert_eq!(n(&get_doc(&svc, C, "a").await), 7);
    let s = get_doc(&svc, C, "s").await.unwrap();
    assert_eq!(s["n"], json!(5));
    assert_eq!(s["at"], json!({"$date": 1_700_000_000_000i64}));
    assert_eq!(get_doc(&svc, C, "i").await, None);

    // abort; then errors are {requestId, code, message} with HTTP 200
    let tx = web(&svc, "database.startTransaction", json!({})).await["transactionId"].clone();
    let r = web(
        &svc,
        "database.addDocument",
        json!({"collectionName": C, "transactionId": tx, "data": {"_id": "z"}}),
    )
    .await;
    assert_eq!(r["data"]["_id"], json!("z"), "{r}");
    let r = web(&svc, "database.abortTransaction", json!({"transactionId": tx})).await;
    assert_eq!(keys(&r), ["requestId"], "{r}");
    assert_eq!(get_doc(&svc, C, "z").await, None);
    for (action, fields, code) in [
        (
            "database.commitTransaction",
            json!({"transactionId": tx}),
            "DATABASE_TRANSACTION_NOT_EXIST",
        ),
        ("database.commitTransaction", json!({}), "INVALID_PARAM"),
        (
            "database.abortTransaction",
            json!({"transactionId": ["x"]}),
            "INVALID_PARAM",
        ),
        (
            "database.getInTransaction",
            json!({"collectionName": C, "transactionId": "x", "query": pin("a")}),
            "DATABASE_TRANSACTION_NOT_EXIST",
        ),
        (
            "database.getInTransaction",
            json!({"collectionName": C, "transactionId": "x"}),
            "INVALID_PARAM",
        ),
        (
            "database.insertDocInTransaction",
            json!({"collectionName": C, "transactionId": "x", "data": "{not json"}),
            "INVALID_JSON",
        ),
        (
            "database.insertDocInTransaction",
            json!({"collectionName": C, "transactionId": "x", "data": "[1]"}),
            "INVALID_PARAM",
        ),
        (
            "database.countDocument",
            json!({"collectionName": C, "transactionId": "x", "query": {}}),
            "INVALID_PARAM",
        ),
        (
            "database.renameInTransaction",
            json!({"transactionId": "x"}),
            "INVALID_ACTION",
        ),
    ] {
        let r = web(&svc, action, fields).await;
        assert_eq!(r["code"], json!(code), "{action}: {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
        assert_eq!(keys(&r), ["code", "message", "requestId"], "{r}");
    }

    // a conflict, as the SDK's runTransaction expects it: code DATABASE_TRANSACTION_CONFLICT
    let tx = web(&svc, "database.startTransaction", json!({})).await["transactionId"].clone();
    web(
        &svc,
        "database.getInTransaction",
        json!({"collectionName": C, "transactionId": tx, "query": pin("a")}),
    )
    .await;
    web(
        &svc,
        "database.updateDocument",
        json!({"collectionName": C, "query": {"_id": "a"}, "data": {"n": 0}}),
    )
    .await;
    let r = web(
        &svc,
        "database.updateDocInTransaction",
        json!({"collectionName": C, "transactionId": tx, "query": pin("a"), "data": "{\"$inc\":{\"n\":1}}"}),
    )
    .await;
    assert_eq!(r["code"], json!("DATABASE_TRANSACTION_CONFLICT"), "{r}");
    assert_eq!(n(&get_doc(&svc, C, "a").await), 0);
}

// ---- concurrency over a real socket ---------------------------------------------------------

/// One transfer of `amount` from `from` to `to` in a transaction; `Err(code)` if a step failed
/// (the transaction is rolled back, which may itself fail when a conflict already ended it).
fn transfer(base: &str, from: &str, to: &str, amount: i64) -> Result<(), String> {
    let p = format!("{base}{DB}");
    let (status, body) = http("POST", &format!("{p}/transactions"), None);
    if status != 200 {
        return Err(body["code"].as_str().unwrap_or("?").to_string());
    }
    let tx = body["transactionId"].as_str().unwrap_or_default().to_string();
    let step = || -> Result<(), String> {
        let check = |(status, body): (u16, Value)| {
            if status == 200 {
                Ok(body)
            } else {
                Err(body["code"].as_str().unwrap_or("?").to_string())
            }
        };
        let read = |id: &str| -> Result<i64, String> {
            let uri = format!(
                "{p}/collections/{C}/documents?query={}&transactionId={}",
                enc(&json!({ "_id": id }).to_string()),
                enc(&json!(tx).to_string())
            );
            let body = check(http("GET", &uri, None))?;
            Ok(body["list"][0]["n"].as_i64().unwrap_or(i64::MIN))
        };
        let write = |id: &str, value: i64| -> Result<(), String> {
            let body = json!({"query": {"_id": id}, "data": {"$set": {"n": value}}, "transactionId": tx});
            check(http("PATCH", &format!("{p}/collections/{C}/documents"), Some(&body))).map(drop)
        };
        let (a, b) = (read(from)?, read(to)?);
        write(from, a - amount)?;
        write(to, b + amount)?;
        check(http("POST", &format!("{p}/transactions/{tx}/commit"), None)).map(drop)
    };
    step().inspect_err(|_| {
        http("POST", &format!("{p}/transactions/{tx}/rollback"), None);
    })
}

#[test]
fn parallel_transfers_over_http_conserve_the_total() {
    const ACCOUNTS: usize = 4;
    const THREADS: usize = 6;
    const TRANSFERS: usize = 8;
    let server = SocketServer::start();
    let base = server.base.clone();
    let (status, body) = http(
        "POST",
        &format!("{base}{DB}/collections"),
        Some(&json!({"collectionName": C})),
    );
    assert_eq!(status, 200, "{body}");
    let accounts: Vec<Value> = (0..ACCOUNTS)
        .map(|i| json!({"_id": format!("a{i}"), "n": 1000}))
        .collect();
    let (status, body) = http(
        "POST",
        &format!("{base}{DB}/collections/{C}/documents"),
        Some(&json!({"data": accounts})),
    );
    assert_eq!(status, 200, "{body}");
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for k in 0..TRANSFERS {
                    let from = format!("a{}", (t + k) % ACCOUNTS);
                    let to = format!("a{}", (t + k + 1 + k % 2) % ACCOUNTS);
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        match transfer(&base, &from, &to, (k + 1) as i64) {
                            Ok(()) => break,
                            Err(code) if code == "DATABASE_TRANSACTION_CONFLICT" && tries < 200 => conflicts += 1,
                            Err(code) => panic!("transfer {from}->{to}: {code} after {tries} tries"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let (status, doc) = http("GET", &format!("{base}{DB}/collections/{C}/documents/a{i}"), None);
        assert_eq!(status, 200, "{doc}");
        total += doc["n"].as_i64().unwrap();
    }
    assert_eq!(
        total,
        1000 * ACCOUNTS as i64,
        "money is conserved ({conflicts} conflicts retried)"
    );
    eprintln!("{} transfers, {conflicts} conflicts retried", THREADS * TRANSFERS);
    server.stop().expect("stop");
}
