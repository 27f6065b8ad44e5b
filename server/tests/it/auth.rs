//! Authentication through HTTP: every `/auth/v1` route's reply shape, bad input in the auth error
//! shape, refresh rotation and reuse, expiry, tampering, the anonymous upgrade, admin login, the
//! admin endpoints of auth (users, API keys, the first admin), the CLI, and the key file's mode.

use std::net::SocketAddr;
use std::process::Command;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::TestRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

/// A test app whose sign-in quota does not get in the way of tests that sign in often.
fn app_with(f: impl FnOnce(&mut lightbase::Config)) -> TestApp {
    TestApp::with_config(|c| {
        c.rate_limits.signin = "100000/s:100000".parse().unwrap();
        f(c);
    })
}

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("authorization", format!("Bearer {token}")))
}

fn local(req: TestRequest) -> TestRequest {
    req.peer_addr("127.0.0.1:50000".parse::<SocketAddr>().unwrap())
}

/// An auth error: 4xx with exactly `{error, error_description}`.
fn assert_auth_error(status: u16, body: &Value, want_status: u16, want_error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(
        body["error_description"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
}

/// An admin-API error: `{code, type, message, details}`.
fn assert_admin_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["type"].is_string() && body["message"].is_string() && body["details"].is_object(),
        "{body}"
    );
}

fn assert_credentials(body: &Value, scope: &str) {
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(
        body["access_token"].as_str().is_some_and(|t| t.split('.').count() == 3),
        "{body}"
    );
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() >= 40), "{body}");
    assert_eq!(body["expires_in"], 7200, "{body}");
    assert_eq!(body["scope"], scope, "{body}");
    assert!(body["sub"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
}

fn at(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_string()
}

async fn call<S, B>(app: &S, req: TestRequest) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    // these tests bring their own credentials (or none): never the harness's admin key
    send(app, as_guest(req)).await
}

/// Creates the first admin (from loopback, no token) and returns an admin token.
async fn admin_token<S, B>(app: &S) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let creds = json!({ "email": "root@example.com", "password": "admin password" });
    let (status, body) = call(app, local(post_json("/admin/v1/admins", &creds))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(app, post_json("/admin/v1/login", &creds)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 86400);
    body["token"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn anonymous_sign_in_then_user_me_refresh_revoke() {
    let t = app_with(|_| {});
    let app = t.service().await;
    // the SDK's exact request: POST ?client_id=<env> with `{}`
    let (status, creds) = call(
        &app,
        post_json("/auth/v1/signin/anonymously?client_id=default", &json!({})),
    )
    .await;
    assert_eq!(status, 200, "{creds}");
    assert_credentials(&creds, "anonymous");
    // an empty body is fine too
    let (status, _) = call(&app, TestRequest::post().uri("/auth/v1/signin/anonymously")).await;
    assert_eq!(status, 200);

    let (status, me) = call(&app, bearer(get("/auth/v1/user/me"), &at(&creds))).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["sub"], creds["sub"]);
    assert_eq!(me["name"], "anonymous");
    assert_eq!(me["loginType"], "ANONYMOUS");
    assert_eq!(me["providers"], json!([]));
    // js-sdk reads `hasPassword` into user_metadata.hasPassword
    assert_eq!(me["hasPassword"], false, "{me}");
    assert!(me["created_at"].as_str().unwrap().ends_with('Z'));
    for field in ["username", "email", "open_id", "updated_at", "picture", "groups"] {
        assert!(me.get(field).is_some(), "user/me lacks {field}: {me}");
    }

    // refresh: the SDK's body, new tokens of the same user
    let body = json!({"client_id": "default", "client_secret": "", "grant_type": "refresh_token",
                      "refresh_token": creds["refresh_token"]});
    let (status, fresh) = call(&app, post_json("/auth/v1/token?client_id=default", &body)).await;
    assert_eq!(status, 200, "{fresh}");
    assert_credentials(&fresh, "anonymous");
    assert_eq!(fresh["sub"], creds["sub"]);
    assert_ne!(fresh["refresh_token"], creds["refresh_token"]);

    // revoke (the SDK's signOut): the session's tokens stop at once
    let (status, body) = call(
        &app,
        post_json("/auth/v1/revoke?client_id=default", &json!({"token": at(&fresh)})),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let (status, body) = call(&app, bearer(get("/auth/v1/user/me"), &at(&fresh))).await;
    assert_auth_error(status, &body, 401, "unauthenticated");
    let body = json!({"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]});
    let (status, body) = call(&app, post_json("/auth/v1/token", &body)).await;
    assert_auth_error(status, &body, 400, "invalid_grant");
    // revoking an unknown token is not an error (RFC 7009)
    let (status, _) = call(&app, post_json("/auth/v1/revoke", &json!({"token": "whatever"}))).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn sign_up_sign_in_and_sign_out() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (status, up) = call(
        &app,
        post_json(
            "/auth/v1/signup?client_id=default",
            &json!({"username": "alice", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{up}");
    assert_credentials(&up, "user");
    let (status, body) = call(
        &app,
        post_json(
            "/auth/v1/signup",
            &json!({"username": "ALICE", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_auth_error(status, &body, 409, "already_exists");

    let (status, inn) = call(
        &app,
        post_json(
            "/auth/v1/signin?client_id=default",
            &json!({"username": "alice", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{inn}");
    assert_credentials(&inn, "user");
    assert_eq!(inn["sub"], up["sub"]);
    let (status, me) = call(&app, bearer(get("/auth/v1/user/me"), &at(&inn))).await;
    assert_eq!(status, 200);
    assert_eq!(me["name"], "alice");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["loginType"], "USERNAME");
    assert_eq!(me["hasPassword"], true, "{me}");

    // wrong password and unknown user: the same 401 invalid_grant
    for body in [
        json!({"username": "alice", "password": "wrong-pw!"}),
        json!({"username": "nobody", "password": "secret-pw"}),
    ] {
        let (status, body) = call(&app, post_json("/auth/v1/signin", &body)).await;
        assert_auth_error(status, &body, 401, "invalid_grant");
    }

    // email accounts
    let (status, e) = call(
        &app,
        post_json(
            "/auth/v1/signup",
            &json!({"email": "bob@example.com", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{e}");
    let (status, e2) = call(
        &app,
        post_json(
            "/auth/v1/signin",
            &json!({"email": "Bob@Example.com", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{e2}");
    assert_eq!(e2["sub"], e["sub"]);
    let (_, me) = call(&app, bearer(get("/auth/v1/user/me"), &at(&e2))).await;
    assert_eq!(
        (me["email"].as_str(), me["loginType"].as_str()),
        (Some("bob@example.com"), Some("EMAIL"))
    );

    // sign-out ends this session only
    let (status, body) = call(&app, bearer(post_json("/auth/v1/user/signout", &json!({})), &at(&inn))).await;
    assert_eq!((status, body), (200, json!({})));
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me"), &at(&inn))).await;
    assert_eq!(status, 401);
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me"), &at(&up))).await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, post_json("/auth/v1/user/signout", &json!({}))).await;
    assert_auth_error(status, &body, 401, "unauthenticated");
}

#[actix_web::test]
async fn bad_input_is_a_4xx_in_the_auth_shape() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let raw = |uri: &str, body: &str| {
        TestRequest::post()
            .uri(uri)
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_string())
    };
    let cases: Vec<(TestRequest, u16)> = vec![
        (raw("/auth/v1/signin", "{not json"), 400),
        (raw("/auth/v1/signin", "[1,2]"), 400),
        (raw("/auth/v1/signin", ""), 400),
        (raw("/auth/v1/signup", "\"x\""), 400),
        (raw("/auth/v1/signin/anonymously", "{bad"), 400),
        (
            post_json("/auth/v1/signin", &json!({"username": 5, "password": "secret-pw"})),
            400,
        ),
        (
            post_json("/auth/v1/signin", &json!({"username": "alice", "password": ["x"]})),
            400,
        ),
        (post_json("/auth/v1/signin", &json!({"password": "secret-pw"})), 400),
        (post_json("/auth/v1/signin", &json!({"username": "alice"})), 400),
        (
            post_json("/auth/v1/signup", &json!({"username": "alice", "password": "short"})),
            400,
        ),
        (
            post_json(
                "/auth/v1/signup",
                &json!({"username": "no spaces", "password": "secret-pw"}),
            ),
            400,
        ),
        (
            post_json("/auth/v1/signup", &json!({"email": "nope", "password": "secret-pw"})),
            400,
        ),
        (post_json("/auth/v1/signup", &json!({"password": "secret-pw"})), 400),
        (
            post_json(
                "/auth/v1/signup",
                &json!({"phone_number": "+86 1", "password": "secret-pw"}),
            ),
            400,
        ),
        (post_json("/auth/v1/token", &json!({"grant_type": "password"})), 400),
        (
            post_json("/auth/v1/token", &json!({"grant_type": "refresh_token"})),
            400,
        ),
        (
            post_json(
                "/auth/v1/token",
                &json!({"grant_type": "refresh_token", "refresh_token": 1}),
            ),
            400,
        ),
        (
            post_json(
                "/auth/v1/token",
                &json!({"grant_type": "refresh_token", "refresh_token": "nope"}),
            ),
            400,
        ),
        (post_json("/auth/v1/revoke", &json!({})), 400),
        (post_json("/auth/v1/signin/anonymously?client_id=nope", &json!({})), 400),
        (
            post_json(
                "/auth/v1/signin?env=nope",
                &json!({"username": "a", "password": "secret-pw"}),
            ),
            400,
        ),
        (
            raw(
                "/auth/v1/signin",
                &format!("{{\"username\":\"{}\"}}", "a".repeat(70_000)),
            ),
            413,
        ),
        (get("/auth/v1/signin"), 405),
        (get("/auth/v1/user/me"), 401),
        (bearer(get("/auth/v1/user/me"), "garbage"), 401),
        (
            get("/auth/v1/user/me").insert_header(("authorization", "Basic ZGVmYXVsdDo=")),
            401,
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let (status, body) = call(&app, req).await;
        assert_eq!(status, want, "case {i}: {body}");
        assert!(
            body["error"].is_string() && body["error_description"].is_string(),
            "case {i}: {body}"
        );
    }
}

#[actix_web::test]
async fn refresh_reuse_revokes_the_whole_session() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (_, c1) = call(&app, post_json("/auth/v1/signin/anonymously", &json!({}))).await;
    let refresh = |token: &Value| {
        post_json(
            "/auth/v1/token",
            &json!({"grant_type": "refresh_token", "refresh_token": token}),
        )
    };
    let (status, c2) = call(&app, refresh(&c1["refresh_token"])).await;
    assert_eq!(status, 200);
    // the spent token again: refused, and every token of the session stops
    let (status, body) = call(&app, refresh(&c1["refresh_token"])).await;
    assert_auth_error(status, &body, 400, "invalid_grant");
    let (status, _) = call(&app, refresh(&c2["refresh_token"])).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me"), &at(&c2))).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn expired_access_tokens_are_refused() {
    let t = app_with(|c| c.access_token_ttl = 1);
    let app = t.service().await;
    let (_, c) = call(&app, post_json("/auth/v1/signin/anonymously", &json!({}))).await;
    assert_eq!(c["expires_in"], 1);
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me"), &at(&c))).await;
    assert_eq!(status, 200);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = call(&app, bearer(get("/auth/v1/user/me"), &at(&c))).await;
    assert_auth_error(status, &body, 401, "unauthenticated");
    assert!(
        body["error_description"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let body = json!({"grant_type": "refresh_token", "refresh_token": c["refresh_token"]});
    let (status, _) = call(&app, post_json("/auth/v1/token", &body)).await;
    assert_eq!(status, 200);
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[actix_web::test]
async fn tampered_and_foreign_tokens_are_refused() {
    let t = app_with(|_| {});
    t.state.db.create_env("other").unwrap().wait().await.unwrap();
    let app = t.service().await;
    let (_, mine) = call(&app, post_json("/auth/v1/signin/anonymously", &json!({}))).await;
    let (_, victim) = call(&app, post_json("/auth/v1/signin/anonymously", &json!({}))).await;
    let token = at(&mine);
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = victim["sub"].clone();
    let changed = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims));
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's key, not at all"),
    )
    .unwrap();
    for forged in [changed, none, wrong_key] {
        let (status, body) = call(&app, bearer(get("/auth/v1/user/me"), &forged)).await;
        assert_auth_error(status, &body, 401, "unauthenticated");
    }
    // a token of env `default` used for env `other`
    let (status, body) = call(&app, bearer(get("/auth/v1/user/me?client_id=other"), &token)).await;
    assert_auth_error(status, &body, 401, "unauthenticated");
    let caller = t.state.auth.verify_for_env(&token, "other");
    assert!(caller.is_err());
    // refresh tokens are bound to their env too
    let body = json!({"grant_type": "refresh_token", "refresh_token": mine["refresh_token"]});
    let (status, _) = call(&app, post_json("/auth/v1/token?client_id=other", &body)).await;
    assert_eq!(status, 400);
    // the genuine token still works
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me?client_id=default"), &token)).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn anonymous_upgrade_keeps_the_sub() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (_, anon) = call(&app, post_json("/auth/v1/signin/anonymously", &json!({}))).await;
    let req = bearer(
        post_json(
            "/auth/v1/signup",
            &json!({"username": "alice", "password": "secret-pw"}),
        ),
        &at(&anon),
    );
    let (status, up) = call(&app, req).await;
    assert_eq!(status, 200, "{up}");
    assert_credentials(&up, "user");
    assert_eq!(up["sub"], anon["sub"]);
    let (_, me) = call(&app, bearer(get("/auth/v1/user/me"), &at(&up))).await;
    assert_eq!(
        (me["sub"].clone(), me["name"].clone(), me["hasPassword"].clone()),
        (anon["sub"].clone(), json!("alice"), json!(true))
    );
    // the anonymous session is over; the password now signs in to the same sub
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me"), &at(&anon))).await;
    assert_eq!(status, 401);
    let (_, inn) = call(
        &app,
        post_json(
            "/auth/v1/signin",
            &json!({"username": "alice", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_eq!(inn["sub"], anon["sub"]);
}

#[actix_web::test]
async fn admin_login_and_the_user_admin_endpoints() {
    let t = app_with(|_| {});
    t.state.db.create_env("other").unwrap().wait().await.unwrap();
    let app = t.service().await;
    let (_, alice) = call(
        &app,
        post_json(
            "/auth/v1/signup",
            &json!({"username": "alice", "password": "secret-pw"}),
        ),
    )
    .await;
    call(
        &app,
        post_json("/auth/v1/signup", &json!({"username": "bob", "password": "secret-pw"})),
    )
    .await;
    call(
        &app,
        post_json("/auth/v1/signin/anonymously?client_id=other", &json!({})),
    )
    .await;
    let uid = alice["sub"].as_str().unwrap().to_string();
    let users = "/admin/v1/envs/default/users";
    let user = format!("{users}/{uid}");

    // no token → 401, a user token → 403, both in the admin shape
    let (status, body) = call(&app, get(users)).await;
    assert_admin_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = call(&app, bearer(get(users), &at(&alice))).await;
    assert_admin_error(status, &body, 403, "ADMIN_REQUIRED");
    let (status, body) = call(&app, bearer(get(users), "garbage")).await;
    assert_admin_error(status, &body, 401, "UNAUTHENTICATED");

    let admin = admin_token(&app).await;
    let (status, body) = call(
        &app,
        post_json(
            "/admin/v1/login",
            &json!({"email": "root@example.com", "password": "nope-nope"}),
        ),
    )
    .await;
    assert_admin_error(status, &body, 401, "INVALID_CREDENTIALS");
    let (status, body) = call(
        &app,
        post_json("/admin/v1/login", &json!({"email": "root@example.com"})),
    )
    .await;
    assert_admin_error(status, &body, 400, "INVALID_PARAM");

    let (status, list) = call(&app, bearer(get(users), &admin)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 2);
    assert!(list["users"][0].get("password").is_none());
    // only whether there is one
    assert!(
        list["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["has_password"] == true),
        "{list}"
    );
    let (_, found) = call(
        &app,
        bearer(get(&format!("{users}?search=ALI&limit=10&offset=0")), &admin),
    )
    .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["users"][0]["username"], "alice");
    let (status, body) = call(&app, bearer(get(&format!("{users}?limit=abc")), &admin)).await;
    assert_admin_error(status, &body, 400, "INVALID_PARAM");
    let (status, body) = call(&app, bearer(get("/admin/v1/envs/nope/users"), &admin)).await;
    assert_admin_error(status, &body, 400, "INVALID_ENV");
    let (_, other) = call(&app, bearer(get("/admin/v1/envs/other/users"), &admin)).await;
    assert_eq!(other["total"], 1);
    assert_eq!(other["users"][0]["anonymous"], true);

    let (status, one) = call(&app, bearer(get(&user), &admin)).await;
    assert_eq!((status, one["uid"].as_str()), (200, Some(uid.as_str())));
    let (status, body) = call(&app, bearer(get(&format!("{users}/nobody")), &admin)).await;
    assert_admin_error(status, &body, 404, "USER_NOT_EXIST");

    // disabling stops the user's tokens at once
    let (status, body) = call(&app, bearer(patch_json(&user, &json!({"disabled": "yes"})), &admin)).await;
    assert_admin_error(status, &body, 400, "INVALID_PARAM");
    let (status, patched) = call(&app, bearer(patch_json(&user, &json!({"disabled": true})), &admin)).await;
    assert_eq!((status, patched["disabled"].clone()), (200, json!(true)));
    let (status, body) = call(&app, bearer(get("/auth/v1/user/me"), &at(&alice))).await;
    assert_auth_error(status, &body, 401, "unauthenticated");
    let (status, body) = call(
        &app,
        post_json(
            "/auth/v1/signin",
            &json!({"username": "alice", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_auth_error(status, &body, 403, "permission_denied");
    call(&app, bearer(patch_json(&user, &json!({"disabled": false})), &admin)).await;
    let (status, inn) = call(
        &app,
        post_json(
            "/auth/v1/signin",
            &json!({"username": "alice", "password": "secret-pw"}),
        ),
    )
    .await;
    assert_eq!(status, 200);

    // deleting
    let (status, body) = call(&app, bearer(TestRequest::delete().uri(&user), &admin)).await;
    assert_eq!((status, body["deleted"].clone()), (200, json!(true)));
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me"), &at(&inn))).await;
    assert_eq!(status, 401);
    let (status, body) = call(&app, bearer(TestRequest::delete().uri(&user), &admin)).await;
    assert_admin_error(status, &body, 404, "USER_NOT_EXIST");
    let (status, body) = call(&app, bearer(TestRequest::put().uri(&user), &admin)).await;
    assert_admin_error(status, &body, 405, "METHOD_NOT_ALLOWED");
}

#[actix_web::test]
async fn the_first_admin_needs_loopback_and_later_ones_a_token() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let creds = json!({"email": "root@example.com", "password": "admin password"});
    // from another machine, or through a proxy: refused even while no admin exists
    let remote = post_json("/admin/v1/admins", &creds).peer_addr("203.0.113.9:4000".parse::<SocketAddr>().unwrap());
    let (status, body) = call(&app, remote).await;
    assert_admin_error(status, &body, 401, "UNAUTHENTICATED");
    let proxied = local(post_json("/admin/v1/admins", &creds)).insert_header(("x-forwarded-for", "203.0.113.9"));
    let (status, _) = call(&app, proxied).await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &app,
        local(post_json(
            "/admin/v1/admins",
            &json!({"email": "root@example.com", "password": "short"}),
        )),
    )
    .await;
    assert_admin_error(status, &body, 400, "INVALID_PARAM");
    let admin = admin_token(&app).await;
    // once one exists, loopback is not enough
    let second = json!({"email": "two@example.com", "password": "admin password"});
    let (status, _) = call(&app, local(post_json("/admin/v1/admins", &second))).await;
    assert_eq!(status, 401);
    let (status, body) = call(&app, bearer(post_json("/admin/v1/admins", &second), &admin)).await;
    assert_eq!((status, body), (201, json!({"email": "two@example.com"})));
    let (status, body) = call(&app, bearer(post_json("/admin/v1/admins", &second), &admin)).await;
    assert_admin_error(status, &body, 409, "ADMIN_ALREADY_EXIST");
}

#[actix_web::test]
async fn api_keys_are_created_used_and_revoked() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (status, body) = call(&app, post_json("/admin/v1/keys", &json!({"name": "ci"}))).await;
    assert_admin_error(status, &body, 401, "UNAUTHENTICATED");
    let admin = admin_token(&app).await;
    let (status, created) = call(
        &app,
        bearer(post_json("/admin/v1/keys", &json!({"name": "ci"})), &admin),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("lb_"));
    let id = created["id"].as_str().unwrap().to_string();
    // the key acts as an admin
    let (status, list) = call(&app, bearer(get("/admin/v1/keys"), &key)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list["keys"][0]["id"], id.as_str());
    assert!(list["keys"][0].get("key").is_none(), "a key is shown only once: {list}");
    assert!(!list.to_string().contains(&key));
    let (status, _) = call(&app, bearer(get("/admin/v1/envs/default/users"), &key)).await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, bearer(post_json("/admin/v1/keys", &json!({"name": 5})), &admin)).await;
    assert_admin_error(status, &body, 400, "INVALID_PARAM");
    // revoked: stops at once
    let (status, _) = call(
        &app,
        bearer(TestRequest::delete().uri(&format!("/admin/v1/keys/{id}")), &admin),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, bearer(get("/admin/v1/keys"), &key)).await;
    assert_admin_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = call(
        &app,
        bearer(TestRequest::delete().uri(&format!("/admin/v1/keys/{id}")), &admin),
    )
    .await;
    assert_admin_error(status, &body, 404, "NOT_FOUND");
}

#[test]
fn on_a_real_socket_the_key_file_is_private_and_tokens_work() {
    let server = SocketServer::start();
    let (status, creds) = http(
        "POST",
        &format!("{}/auth/v1/signin/anonymously?client_id=default", server.base),
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{creds}");
    let res = ureq::get(&format!("{}/auth/v1/user/me", server.base))
        .set("authorization", &format!("Bearer {}", at(&creds)))
        .call()
        .unwrap();
    let me: Value = res.into_json().unwrap();
    assert_eq!(me["sub"], creds["sub"]);
    let key = server.dir.path().join("keys/jwt.key");
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

fn lb(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lightbase"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("LIGHTBASE_LOG", "warn")
        .output()
        .expect("run lightbase");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_admin_create_and_api_keys_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = lb(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "root@example.com",
            "--password",
            "admin password",
        ],
    );
    assert!(ok && out.contains("created admin"), "{out} {err}");
    let (ok, _, err) = lb(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "root@example.com",
            "--password",
            "admin password",
        ],
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = lb(
        dir.path(),
        &["admin", "create", "--email", "x@example.com", "--password", "short"],
    );
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, out, err) = lb(dir.path(), &["admin", "key", "create", "deploy"]);
    assert!(ok, "{err}");
    let key = out.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("lb_"), "{out}");
    let (ok, out, _) = lb(dir.path(), &["admin", "key", "list"]);
    assert!(ok);
    let id = out.split('\t').next().unwrap().trim().to_string();
    assert!(out.contains("deploy") && !out.contains(&key), "{out}");

    // the server accepts what the CLI wrote
    let port = free_port();
    let mut child = spawn_server(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let (status, body) = http(
        "POST",
        &format!("{base}/admin/v1/login"),
        Some(&json!({"email": "root@example.com", "password": "admin password"})),
    );
    assert_eq!(status, 200, "{body}");
    let keys = ureq::get(&format!("{base}/admin/v1/keys"))
        .set("authorization", &format!("Bearer {key}"))
        .call()
        .unwrap();
    assert_eq!(keys.status(), 200);
    // keys are offline-only while a server holds the data dir
    let (ok, _, err) = lb(dir.path(), &["admin", "key", "list"]);
    assert!(!ok && err.contains("/admin/v1/keys"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();

    let (ok, _, err) = lb(dir.path(), &["admin", "key", "revoke", &id]);
    assert!(ok, "{err}");
    let (ok, out, _) = lb(dir.path(), &["admin", "key", "list"]);
    assert!(ok && out.trim().is_empty(), "{out}");
    let (ok, _, err) = lb(dir.path(), &["admin", "key", "revoke", &id]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}

#[test]
fn cli_admin_create_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_server(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    // the first admin: no token needed from this machine
    let (ok, out, err) = lb(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "root@example.com",
            "--password",
            "admin password",
        ],
    );
    assert!(ok && out.contains("created admin"), "{out} {err}");
    // the next one needs a token
    let (ok, _, err) = lb(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "two@example.com",
            "--password",
            "admin password",
        ],
    );
    assert!(
        !ok && err.contains("UNAUTHENTICATED") && err.contains("--token"),
        "{err}"
    );
    let (_, login) = http(
        "POST",
        &format!("{base}/admin/v1/login"),
        Some(&json!({"email": "root@example.com", "password": "admin password"})),
    );
    let token = login["token"].as_str().unwrap();
    let (ok, _, err) = lb(
        dir.path(),
        &[
            "admin",
            "create",
            "--email",
            "two@example.com",
            "--password",
            "admin password",
            "--token",
            token,
        ],
    );
    assert!(ok, "{err}");
    let (status, _) = http(
        "POST",
        &format!("{base}/admin/v1/login"),
        Some(&json!({"email": "two@example.com", "password": "admin password"})),
    );
    assert_eq!(status, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Verified tokens are cached for a moment (no user and session reads per request); every way of
/// taking a user's rights away must still stop a token that was used a moment before, at once.
#[actix_web::test]
async fn a_token_used_a_moment_ago_stops_at_once_when_its_rights_are_taken_away() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let admin = admin_token(&app).await;
    let (status, _) = send(
        &app,
        post_json(&format!("{DB}/collections"), &json!({"collectionName": "notes"})),
    )
    .await;
    assert_eq!(status, 200);
    let list = format!("{DB}/collections/notes/documents");
    let signin = json!({"username": "carol", "password": "secret-pw"});
    let (status, first) = call(&app, post_json("/auth/v1/signup", &signin)).await;
    assert_eq!(status, 200, "{first}");
    let user = format!("/admin/v1/envs/default/users/{}", first["sub"].as_str().unwrap());
    let sign_in = || call(&app, post_json("/auth/v1/signin", &signin));
    let reads = |token: String| call(&app, bearer(get(&list), &token));

    // disabled
    assert_eq!(reads(at(&first)).await.0, 200);
    assert_eq!(reads(at(&first)).await.0, 200, "served from the cache");
    call(&app, bearer(patch_json(&user, &json!({"disabled": true})), &admin)).await;
    let (status, body) = reads(at(&first)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );
    call(&app, bearer(patch_json(&user, &json!({"disabled": false})), &admin)).await;
    assert_eq!(reads(at(&first)).await.0, 401, "disabling ended the user's sessions");

    // signed out, and revoked
    let (_, first) = sign_in().await;
    let (_, second) = sign_in().await;
    assert_eq!(reads(at(&second)).await.0, 200);
    let (status, _) = call(
        &app,
        bearer(post_json("/auth/v1/user/signout", &json!({})), &at(&second)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reads(at(&second)).await.0, 401);
    assert_eq!(
        reads(at(&first)).await.0,
        200,
        "another session of the user is untouched"
    );
    let (status, _) = call(&app, post_json("/auth/v1/revoke", &json!({"token": at(&first)}))).await;
    assert_eq!(status, 200);
    assert_eq!(reads(at(&first)).await.0, 401);

    // a reused refresh token revokes its session
    let (_, third) = sign_in().await;
    assert_eq!(reads(at(&third)).await.0, 200);
    let refresh = json!({"grant_type": "refresh_token", "refresh_token": third["refresh_token"]});
    let (status, _) = call(&app, post_json("/auth/v1/token", &refresh)).await;
    assert_eq!(status, 200);
    assert_eq!(reads(at(&third)).await.0, 200, "rotation alone revokes nothing");
    let (status, _) = call(&app, post_json("/auth/v1/token", &refresh)).await;
    assert_eq!(status, 400);
    assert_eq!(reads(at(&third)).await.0, 401);

    // deleted
    let (_, fourth) = sign_in().await;
    assert_eq!(reads(at(&fourth)).await.0, 200);
    call(&app, bearer(TestRequest::delete().uri(&user), &admin)).await;
    assert_eq!(reads(at(&fourth)).await.0, 401);
}

// ---- password change ----------------------------------------------------------------------------

fn signin_body(name: &str, password: &str) -> Value {
    json!({"username": name, "password": password})
}

fn patch_password(token: &str, body: &Value) -> TestRequest {
    bearer(patch_json("/auth/v1/user/password", body), token)
}

#[actix_web::test]
async fn a_user_changes_their_password_with_the_old_one_and_other_sessions_end() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (status, a) = call(&app, post_json("/auth/v1/signup", &signin_body("alice", "secret-pw"))).await;
    assert_eq!(status, 200, "{a}");
    let (_, b) = call(&app, post_json("/auth/v1/signin", &signin_body("alice", "secret-pw"))).await;
    let (_, c) = call(&app, post_json("/auth/v1/signin", &signin_body("alice", "secret-pw"))).await;

    // bad requests change nothing: no token, wrong old password, too short, missing fields
    let body = json!({"old_password": "secret-pw", "new_password": "brand-new-pw"});
    let (status, reply) = call(&app, patch_json("/auth/v1/user/password", &body)).await;
    assert_auth_error(status, &reply, 401, "unauthenticated");
    let (status, reply) = call(
        &app,
        patch_password(
            &at(&a),
            &json!({"old_password": "wrong-pw", "new_password": "brand-new-pw"}),
        ),
    )
    .await;
    assert_auth_error(status, &reply, 401, "invalid_grant");
    assert!(
        reply["error_description"]
            .as_str()
            .unwrap()
            .contains("password is wrong"),
        "{reply}"
    );
    let (status, reply) = call(
        &app,
        patch_password(&at(&a), &json!({"old_password": "secret-pw", "new_password": "short"})),
    )
    .await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    assert!(
        reply["error_description"].as_str().unwrap().contains("at least 8"),
        "{reply}"
    );
    let (status, reply) = call(&app, patch_password(&at(&a), &json!({"new_password": "brand-new-pw"}))).await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    let (status, reply) = call(&app, patch_password(&at(&a), &json!({"old_password": "secret-pw"}))).await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    let (status, reply) = call(
        &app,
        patch_password(&at(&a), &json!({"old_password": 1, "new_password": "brand-new-pw"})),
    )
    .await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    let (status, reply) = call(&app, bearer(TestRequest::post().uri("/auth/v1/user/password"), &at(&a))).await;
    assert_auth_error(status, &reply, 405, "invalid_argument");
    for token in [at(&b), at(&c)] {
        assert_eq!(call(&app, bearer(get("/auth/v1/user/me"), &token)).await.0, 200);
    }

    // the change: this session stays, every other one ends (access and refresh tokens)
    let (status, reply) = call(&app, patch_password(&at(&a), &body)).await;
    assert_eq!((status, reply), (200, json!({})));
    assert_eq!(call(&app, bearer(get("/auth/v1/user/me"), &at(&a))).await.0, 200);
    for other in [&b, &c] {
        let (status, reply) = call(&app, bearer(get("/auth/v1/user/me"), &at(other))).await;
        assert_auth_error(status, &reply, 401, "unauthenticated");
        let refresh = json!({"grant_type": "refresh_token", "refresh_token": other["refresh_token"]});
        let (status, reply) = call(&app, post_json("/auth/v1/token", &refresh)).await;
        assert_auth_error(status, &reply, 400, "invalid_grant");
    }
    let refresh = json!({"grant_type": "refresh_token", "refresh_token": a["refresh_token"]});
    assert_eq!(call(&app, post_json("/auth/v1/token", &refresh)).await.0, 200);
    // the old password no longer signs in, the new one does
    let (status, reply) = call(&app, post_json("/auth/v1/signin", &signin_body("alice", "secret-pw"))).await;
    assert_auth_error(status, &reply, 401, "invalid_grant");
    let (status, reply) = call(
        &app,
        post_json("/auth/v1/signin", &signin_body("alice", "brand-new-pw")),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
}

#[actix_web::test]
async fn the_sdk_flow_sudo_then_patch_with_the_sudo_token() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (_, a) = call(&app, post_json("/auth/v1/signup", &signin_body("bob", "secret-pw"))).await;
    let (_, b) = call(&app, post_json("/auth/v1/signin", &signin_body("bob", "secret-pw"))).await;

    // sudo: wrong password, missing password, verification codes (not supported), no token
    let sudo = |token: &str, body: &Value| bearer(post_json("/auth/v1/user/sudo", body), token);
    let (status, reply) = call(&app, sudo(&at(&a), &json!({"password": "wrong-pw"}))).await;
    assert_auth_error(status, &reply, 401, "invalid_grant");
    let (status, reply) = call(&app, sudo(&at(&a), &json!({}))).await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    let (status, reply) = call(&app, sudo(&at(&a), &json!({"verification_token": "x"}))).await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    let (status, reply) = call(&app, post_json("/auth/v1/user/sudo", &json!({"password": "secret-pw"}))).await;
    assert_auth_error(status, &reply, 401, "unauthenticated");

    let (status, s) = call(&app, sudo(&at(&a), &json!({"password": "secret-pw"}))).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["expires_in"], 300);
    let sudo_token = s["sudo_token"].as_str().unwrap().to_string();
    // a sudo token is not an access token
    let (status, reply) = call(&app, bearer(get("/auth/v1/user/me"), &sudo_token)).await;
    assert_auth_error(status, &reply, 401, "unauthenticated");
    // it is bound to the session that proved the password, and it must be genuine
    let body = json!({"sudo_token": sudo_token, "new_password": "brand-new-pw"});
    let (status, reply) = call(&app, patch_password(&at(&b), &body)).await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    assert!(reply["error_description"].as_str().unwrap().contains("sudo"), "{reply}");
    let forged = json!({"sudo_token": format!("{sudo_token}x"), "new_password": "brand-new-pw"});
    let (status, reply) = call(&app, patch_password(&at(&a), &forged)).await;
    assert_auth_error(status, &reply, 400, "invalid_argument");
    let (status, reply) = call(
        &app,
        patch_password(&at(&a), &json!({"sudo_token": at(&a), "new_password": "brand-new-pw"})),
    )
    .await;
    assert_auth_error(status, &reply, 400, "invalid_argument");

    // the SDK's body; the sudo token may also come in the query string
    let (status, reply) = call(&app, patch_password(&at(&a), &body)).await;
    assert_eq!((status, reply), (200, json!({})));
    assert_eq!(call(&app, bearer(get("/auth/v1/user/me"), &at(&b))).await.0, 401);
    let uri = format!("/auth/v1/user/password?sudo_token={}", enc(&sudo_token));
    let (status, _) = call(
        &app,
        bearer(patch_json(&uri, &json!({"new_password": "third-password"})), &at(&a)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(&app, post_json("/auth/v1/signin", &signin_body("bob", "brand-new-pw")))
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            &app,
            post_json("/auth/v1/signin", &signin_body("bob", "third-password"))
        )
        .await
        .0,
        200
    );
}

#[actix_web::test]
async fn anonymous_users_have_no_password_to_change() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (_, anon) = call(&app, post_json("/auth/v1/signin/anonymously", &json!({}))).await;
    let (status, reply) = call(
        &app,
        bearer(
            post_json("/auth/v1/user/sudo", &json!({"password": "anything-1"})),
            &at(&anon),
        ),
    )
    .await;
    assert_auth_error(status, &reply, 400, "password_not_set");
    let body = json!({"old_password": "anything-1", "new_password": "brand-new-pw"});
    let (status, reply) = call(&app, patch_password(&at(&anon), &body)).await;
    assert_auth_error(status, &reply, 400, "password_not_set");
    assert!(
        reply["error_description"].as_str().unwrap().contains("sign up"),
        "{reply}"
    );
    // still anonymous, still signed in
    let (status, me) = call(&app, bearer(get("/auth/v1/user/me"), &at(&anon))).await;
    assert_eq!((status, me["is_anonymous"].clone()), (200, json!(true)));
}

#[actix_web::test]
async fn an_admin_sets_a_users_password_and_all_its_sessions_end() {
    let t = app_with(|_| {});
    let app = t.service().await;
    let (_, carol) = call(&app, post_json("/auth/v1/signup", &signin_body("carol", "secret-pw"))).await;
    let (_, anon) = call(&app, post_json("/auth/v1/signin/anonymously", &json!({}))).await;
    let admin = admin_token(&app).await;
    let user = format!("/admin/v1/envs/default/users/{}", carol["sub"].as_str().unwrap());

    let (status, body) = call(
        &app,
        bearer(patch_json(&user, &json!({"password": "admin-set-pw"})), &at(&carol)),
    )
    .await;
    assert_admin_error(status, &body, 403, "ADMIN_REQUIRED");
    let (status, body) = call(&app, patch_json(&user, &json!({"password": "admin-set-pw"}))).await;
    assert_admin_error(status, &body, 401, "UNAUTHENTICATED");
    for (bad, code) in [
        (json!({"password": "short"}), "INVALID_PARAM"),
        (json!({"password": 12345678}), "INVALID_PARAM"),
        (json!({}), "INVALID_PARAM"),
        (json!({"pasword": "admin-set-pw"}), "INVALID_PARAM"),
    ] {
        let (status, body) = call(&app, bearer(patch_json(&user, &bad), &admin)).await;
        assert_admin_error(status, &body, 400, code);
    }
    assert_eq!(call(&app, bearer(get("/auth/v1/user/me"), &at(&carol))).await.0, 200);

    let (status, body) = call(
        &app,
        bearer(patch_json(&user, &json!({"password": "admin-set-pw"})), &admin),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "carol");
    assert!(body.get("password").is_none(), "{body}");
    let (status, reply) = call(&app, bearer(get("/auth/v1/user/me"), &at(&carol))).await;
    assert_auth_error(status, &reply, 401, "unauthenticated");
    assert_eq!(
        call(&app, post_json("/auth/v1/signin", &signin_body("carol", "secret-pw")))
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            &app,
            post_json("/auth/v1/signin", &signin_body("carol", "admin-set-pw"))
        )
        .await
        .0,
        200
    );

    // both at once; an anonymous user or an unknown one cannot get a password
    let (status, body) = call(
        &app,
        bearer(
            patch_json(&user, &json!({"password": "another-pw", "disabled": true})),
            &admin,
        ),
    )
    .await;
    assert_eq!((status, body["disabled"].clone()), (200, json!(true)), "{body}");
    let anon_user = format!("/admin/v1/envs/default/users/{}", anon["sub"].as_str().unwrap());
    let (status, body) = call(
        &app,
        bearer(patch_json(&anon_user, &json!({"password": "admin-set-pw"})), &admin),
    )
    .await;
    assert_admin_error(status, &body, 400, "PASSWORD_NOT_SET");
    let (status, body) = call(
        &app,
        bearer(
            patch_json(
                "/admin/v1/envs/default/users/nobody",
                &json!({"password": "admin-set-pw"}),
            ),
            &admin,
        ),
    )
    .await;
    assert_admin_error(status, &body, 404, "USER_NOT_EXIST");
}
