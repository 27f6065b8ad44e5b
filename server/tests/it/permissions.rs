//! The permission matrix: guest, anonymous user, user A, user B and admin × every preset and a
//! custom rule set × get/list/count/add/update/set/remove, through both protocols, asserting who
//! sees and changes what.

use serde_json::{json, Value};

use crate::common::*;
use crate::gateway::Svc;

const C: &str = "notes";

struct World {
    app: TestApp,
    a: Who,
    b: Who,
    anon: Who,
}

#[derive(Clone)]
struct Who {
    token: Option<String>,
    sub: String,
}

impl Who {
    fn guest() -> Who {
        Who {
            token: None,
            sub: String::new(),
        }
    }
}

async fn sign_up(svc: &impl Svc, name: &str) -> Who {
    let body = json!({"username": name, "password": "correct horse battery"});
    let (status, cred) = send(svc, post_json("/auth/v1/signup?client_id=default", &body)).await;
    assert_eq!(status, 200, "{cred}");
    Who {
        token: cred["access_token"].as_str().map(str::to_string),
        sub: cred["sub"].as_str().unwrap().to_string(),
    }
}

async fn anonymous(svc: &impl Svc) -> Who {
    let (status, cred) = send(
        svc,
        post_json("/auth/v1/signin/anonymously?client_id=default", &json!({})),
    )
    .await;
    assert_eq!(status, 200, "{cred}");
    Who {
        token: cred["access_token"].as_str().map(str::to_string),
        sub: cred["sub"].as_str().unwrap().to_string(),
    }
}

/// A GATEWAY request as `who` (no Authorization header for guests).
fn as_who(req: actix_web::test::TestRequest, who: &Who) -> actix_web::test::TestRequest {
    match &who.token {
        Some(t) => req.insert_header(("authorization", format!("Bearer {t}"))),
        None => as_guest(req),
    }
}

/// A CLOUD_API envelope as `who` (the token in `access_token`, as the SDK sends it).
fn web(who: &Who, action: &str, mut fields: Value) -> actix_web::test::TestRequest {
    fields["action"] = json!(action);
    fields["env"] = json!("default");
    fields["collectionName"] = json!(C);
    if let Some(t) = &who.token {
        fields["access_token"] = json!(t);
    }
    as_guest(post_json("/web?env=default", &fields))
}

fn docs() -> String {
    format!("{DB}/collections/{C}/documents")
}

async fn setup(rules: Value) -> World {
    let app = TestApp::new();
    let svc = app.service().await;
    let a = sign_up(&svc, "alice").await;
    let b = sign_up(&svc, "bob").await;
    let anon = anonymous(&svc).await;
    let (s, body) = send(
        &svc,
        post_json(&format!("{DB}/collections"), &json!({"collectionName": C})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seed = json!({"data": [
        {"_id": "a1", "_openid": a.sub, "public": true, "n": 1},
        {"_id": "a2", "_openid": a.sub, "public": false, "n": 2},
        {"_id": "b1", "_openid": b.sub, "public": true, "n": 3},
        {"_id": "x1", "public": true, "n": 4}
    ]});
    let (s, body) = send(&svc, post_json(&docs(), &seed)).await;
    assert_eq!(s, 200, "{body}");
    let uri = format!("/admin/v1/envs/default/collections/{C}/rules");
    let (s, body) = send(&svc, put_json(&uri, &rules)).await;
    assert_eq!(s, 200, "{body}");
    drop(svc);
    World { app, a, b, anon }
}

/// Ids a caller sees with `where({})` through GATEWAY, or the error code.
async fn gateway_list(svc: &impl Svc, who: &Who, query: &str) -> Result<Vec<String>, String> {
    let uri = format!("{}?query={}&limit=100", docs(), enc(query));
    let (s, body) = send(svc, as_who(get(&uri), who)).await;
    if s != 200 {
        return Err(body["code"].as_str().unwrap_or("?").to_string());
    }
    Ok(body["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect())
}

/// The same through CLOUD_API.
async fn web_list(svc: &impl Svc, who: &Who, query: Value) -> Result<Vec<String>, String> {
    let (_, body) = send(svc, web(who, "database.queryDocument", json!({"query": query}))).await;
    match body["data"]["list"].as_array() {
        Some(list) => Ok(list.iter().map(|d| d["_id"].as_str().unwrap().to_string()).collect()),
        None => Err(body["code"].as_str().unwrap_or("?").to_string()),
    }
}

fn ids(v: &[&str]) -> Result<Vec<String>, String> {
    Ok(v.iter().map(|s| s.to_string()).collect())
}

fn denied() -> Result<Vec<String>, String> {
    Err("DATABASE_PERMISSION_DENIED".to_string())
}

async fn add_as(svc: &impl Svc, who: &Who, doc: Value) -> (u16, Value) {
    send(svc, as_who(post_json(&docs(), &json!({ "data": [doc] })), who)).await
}

async fn update_as(svc: &impl Svc, who: &Who, query: Value, data: Value, multi: bool) -> (u16, Value) {
    send(
        svc,
        as_who(
            patch_json(&docs(), &json!({"query": query, "data": data, "multi": multi})),
            who,
        ),
    )
    .await
}

async fn remove_as(svc: &impl Svc, who: &Who, query: Value) -> (u16, Value) {
    send(
        svc,
        as_who(
            post_json(&format!("{}/remove", docs()), &json!({"query": query, "multi": true})),
            who,
        ),
    )
    .await
}

async fn n_of(svc: &impl Svc, id: &str) -> Value {
    let (_, doc) = send(svc, get(&format!("{}/{id}", docs()))).await;
    doc["n"].clone()
}

#[actix_web::test]
async fn private_preset_scopes_everything_to_the_creator() {
    let w = setup(json!({"preset": "PRIVATE"})).await;
    let svc = w.app.service().await;
    for (who, want) in [
        (&w.a, ids(&["a1", "a2"])),
        (&w.b, ids(&["b1"])),
        (&w.anon, ids(&[])),
        (&Who::guest(), denied()),
    ] {
        assert_eq!(gateway_list(&svc, who, "{}").await, want);
        assert_eq!(web_list(&svc, who, json!({})).await, want);
    }
    // GET by id: the owner reads it, another user is told it does not exist, a guest is refused
    let by_id = |id: &str| get(&format!("{}/{id}", docs()));
    let (s, doc) = send(&svc, as_who(by_id("a1"), &w.a)).await;
    assert_eq!((s, doc["_id"].as_str()), (200, Some("a1")), "{doc}");
    let (s, body) = send(&svc, as_who(by_id("a1"), &w.b)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (404, Some("DATABASE_DOCUMENT_NOT_EXIST")),
        "{body}"
    );
    let (s, body) = send(&svc, as_who(by_id("a1"), &Who::guest())).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (403, Some("DATABASE_PERMISSION_DENIED")),
        "{body}"
    );
    // count is scoped the same way
    let (_, body) = send(&svc, as_who(get(&format!("{}?count=true", docs())), &w.b)).await;
    assert_eq!(body["total"], json!(1));
    // B's update of everything touches only B's documents
    let (s, body) = update_as(&svc, &w.b, json!({}), json!({"$inc": {"n": 100}}), true).await;
    assert_eq!((s, body["updated"].clone()), (200, json!(1)), "{body}");
    assert_eq!((n_of(&svc, "a1").await, n_of(&svc, "b1").await), (json!(1), json!(103)));
    // B cannot remove A's document; A can
    let (_, body) = remove_as(&svc, &w.b, json!({"_id": "a1"})).await;
    assert_eq!(body["deleted"], json!(0));
    let (_, body) = remove_as(&svc, &w.a, json!({"_id": "a1"})).await;
    assert_eq!(body["deleted"], json!(1));
    // a guest can neither add nor write
    assert_eq!(
        add_as(&svc, &Who::guest(), json!({"n": 9})).await.1["code"],
        json!("DATABASE_PERMISSION_DENIED")
    );
    let (_, body) = update_as(&svc, &Who::guest(), json!({}), json!({"$set": {"n": 0}}), true).await;
    assert_eq!(body["code"], json!("DATABASE_PERMISSION_DENIED"));
}

#[actix_web::test]
async fn inserts_get_the_callers_openid_and_clients_cannot_forge_it() {
    let w = setup(json!({"preset": "PRIVATE"})).await;
    let svc = w.app.service().await;
    let (s, body) = add_as(&svc, &w.a, json!({"_id": "new", "title": "mine"})).await;
    assert_eq!(s, 200, "{body}");
    let (_, doc) = send(&svc, get(&format!("{}/new", docs()))).await;
    assert_eq!(doc["_openid"], json!(w.a.sub));
    // forging _openid on insert or changing it by update is refused, and nothing changes
    let (s, body) = add_as(&svc, &w.a, json!({"title": "x", "_openid": w.b.sub})).await;
    assert_eq!((s, body["code"].as_str()), (400, Some("INVALID_PARAM")), "{body}");
    let (s, body) = update_as(
        &svc,
        &w.a,
        json!({"_id": "new"}),
        json!({"$set": {"_openid": w.b.sub}}),
        false,
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (400, Some("INVALID_PARAM")), "{body}");
    let (_, doc) = send(&svc, get(&format!("{}/new", docs()))).await;
    assert_eq!(doc["_openid"], json!(w.a.sub));
    // '{openid}' in a query means the caller
    assert_eq!(
        gateway_list(&svc, &w.a, r#"{"_openid":"{openid}"}"#).await,
        ids(&["a1", "a2", "new"])
    );
    // set() (replace) keeps the owner
    let body = json!({"query": {"_id": "new"}, "data": {"title": "replaced"}, "multi": false, "upsert": true});
    let (s, reply) = send(&svc, as_who(patch_json(&docs(), &body), &w.a)).await;
    assert_eq!((s, reply["updated"].clone()), (200, json!(1)), "{reply}");
    let (_, doc) = send(&svc, get(&format!("{}/new", docs()))).await;
    assert_eq!(doc, json!({"_id": "new", "title": "replaced", "_openid": w.a.sub}));
    // an upsert that creates gives the new document the caller as owner
    let body = json!({"query": {"_id": "up1"}, "data": {"title": "upserted"}, "multi": false, "upsert": true});
    let (s, reply) = send(&svc, as_who(patch_json(&docs(), &body), &w.b)).await;
    assert_eq!((s, reply["upsert_id"].clone()), (200, json!("up1")), "{reply}");
    let (_, doc) = send(&svc, get(&format!("{}/up1", docs()))).await;
    assert_eq!(doc["_openid"], json!(w.b.sub));
}

#[actix_web::test]
async fn readonly_preset_lets_everyone_read_and_creators_write() {
    let w = setup(json!({"preset": "READONLY"})).await;
    let svc = w.app.service().await;
    for who in [&w.a, &w.b, &w.anon, &Who::guest()] {
        assert_eq!(gateway_list(&svc, who, "{}").await, ids(&["a1", "a2", "b1", "x1"]));
        assert_eq!(web_list(&svc, who, json!({})).await, ids(&["a1", "a2", "b1", "x1"]));
    }
    let (_, body) = update_as(&svc, &w.b, json!({}), json!({"$inc": {"n": 10}}), true).await;
    assert_eq!(body["updated"], json!(1));
    assert_eq!(n_of(&svc, "a1").await, json!(1));
    assert_eq!(add_as(&svc, &w.b, json!({"n": 5})).await.0, 200);
    assert_eq!(
        add_as(&svc, &Who::guest(), json!({"n": 5})).await.1["code"],
        json!("DATABASE_PERMISSION_DENIED")
    );
}

#[actix_web::test]
async fn adminwrite_and_adminonly_presets() {
    let w = setup(json!({"preset": "ADMINWRITE"})).await;
    let svc = w.app.service().await;
    assert_eq!(
        gateway_list(&svc, &Who::guest(), "{}").await,
        ids(&["a1", "a2", "b1", "x1"])
    );
    assert_eq!(
        add_as(&svc, &w.a, json!({"n": 1})).await.1["code"],
        json!("DATABASE_PERMISSION_DENIED")
    );
    let (_, body) = update_as(&svc, &w.a, json!({"_id": "a1"}), json!({"$set": {"n": 0}}), false).await;
    assert_eq!(body["code"], json!("DATABASE_PERMISSION_DENIED"));
    let (_, body) = remove_as(&svc, &w.a, json!({"_id": "a1"})).await;
    assert_eq!(body["code"], json!("DATABASE_PERMISSION_DENIED"));
    drop(svc);

    let w = setup(json!({"preset": "ADMINONLY"})).await;
    let svc = w.app.service().await;
    let (s, _) = send(&svc, as_who(get(&format!("{}/a1", docs())), &w.a)).await;
    assert_eq!(s, 403, "ADMINONLY: not even the creator reads by id");
    for who in [&w.a, &w.anon, &Who::guest()] {
        assert_eq!(gateway_list(&svc, who, "{}").await, denied());
        assert_eq!(web_list(&svc, who, json!({})).await, denied());
    }
    // the admin (the harness's default caller) bypasses every rule
    let (_, body) = send(&svc, get(&format!("{}?count=true", docs()))).await;
    assert_eq!(body["total"], json!(4));
}

#[actix_web::test]
async fn custom_rules_need_queries_that_imply_them() {
    let rules = json!({
        "read": "doc.public == true || doc._openid == auth.openid",
        "update": "doc._openid == auth.openid",
        "create": "auth != null && request.data.n < 100",
        "delete": false
    });
    let w = setup(rules).await;
    let svc = w.app.service().await;
    // a query that could match someone else's private document is refused as a whole
    assert_eq!(gateway_list(&svc, &w.b, "{}").await, denied());
    assert_eq!(web_list(&svc, &w.b, json!({})).await, denied());
    // queries that imply the rule are answered in full
    assert_eq!(
        gateway_list(&svc, &w.b, r#"{"public":true}"#).await,
        ids(&["a1", "b1", "x1"])
    );
    assert_eq!(
        gateway_list(&svc, &w.a, r#"{"_openid":"{openid}"}"#).await,
        ids(&["a1", "a2"])
    );
    // updates must pin the owner; create is checked against the document
    let (_, body) = update_as(&svc, &w.b, json!({"_id": "a1"}), json!({"$set": {"n": 0}}), false).await;
    assert_eq!(body["code"], json!("DATABASE_PERMISSION_DENIED"));
    let (s, body) = update_as(
        &svc,
        &w.b,
        json!({"_id": "b1", "_openid": "{openid}"}),
        json!({"$set": {"n": 7}}),
        false,
    )
    .await;
    assert_eq!((s, body["updated"].clone()), (200, json!(1)), "{body}");
    assert_eq!(add_as(&svc, &w.a, json!({"n": 5})).await.0, 200);
    assert_eq!(
        add_as(&svc, &w.a, json!({"n": 500})).await.1["code"],
        json!("DATABASE_PERMISSION_DENIED")
    );
    assert_eq!(
        add_as(&svc, &Who::guest(), json!({"n": 5})).await.1["code"],
        json!("DATABASE_PERMISSION_DENIED")
    );
    let (_, body) = remove_as(&svc, &w.a, json!({"_id": "a1", "_openid": "{openid}"})).await;
    assert_eq!(body["code"], json!("DATABASE_PERMISSION_DENIED"));
    assert_eq!(n_of(&svc, "a1").await, json!(1));
}

#[actix_web::test]
async fn rules_are_validated_when_saved() {
    let w = setup(json!({"preset": "PRIVATE"})).await;
    let svc = w.app.service().await;
    let uri = format!("/admin/v1/envs/default/collections/{C}/rules");
    let (s, body) = send(&svc, put_json(&uri, &json!({"read": "doc.x == (auth.openid"}))).await;
    assert_eq!(s, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("read"), "{body}");
    let (s, body) = send(&svc, get(&uri)).await;
    assert_eq!(
        (s, body["rules"].clone()),
        (200, json!({"preset": "PRIVATE"})),
        "{body}"
    );
    // only admins may read or change rules
    let (s, _) = send(&svc, as_who(put_json(&uri, &json!({"preset": "READONLY"})), &w.a)).await;
    assert_eq!(s, 403);
    let (s, _) = send(&svc, as_guest(get(&uri))).await;
    assert_eq!(s, 401);
}

#[actix_web::test]
async fn client_limit_is_capped() {
    let w = setup(json!({"preset": "READONLY"})).await;
    let svc = w.app.service().await;
    let many: Vec<Value> = (0..150).map(|i| json!({"n": i})).collect();
    let (s, _) = send(&svc, post_json(&docs(), &json!({ "data": many }))).await;
    assert_eq!(s, 200);
    let uri = format!("{}?limit=1000", docs());
    let (_, body) = send(&svc, as_who(get(&uri), &w.a)).await;
    assert_eq!(body["list"].as_array().unwrap().len(), 100, "client cap");
    let (_, body) = send(&svc, get(&uri)).await;
    assert_eq!(body["list"].as_array().unwrap().len(), 154, "admin: no client cap");
}
