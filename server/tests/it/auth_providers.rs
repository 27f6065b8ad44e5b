//! External sign-in through HTTP: custom tickets (the admin key download, tickets minted by
//! `scripts/mint-ticket.py` and by hand, tampered / expired / other-env / overlong / `alg: none`
//! tickets) and WeChat mini-program sign-in against a fake WeChat server on a real socket
//! (`jscode2session` replies per code, its error codes mapped, tampered provider tokens).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::TestRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::*;

const APPID: &str = "wx1234567890";

fn app_with(f: impl FnOnce(&mut lightbase::Config)) -> TestApp {
    TestApp::with_config(|c| {
        c.rate_limits.signin = "100000/s:100000".parse().unwrap();
        c.rate_limits.auth = "100000/s:100000".parse().unwrap();
        f(c);
    })
}

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("authorization", format!("Bearer {token}")))
}

async fn call<S, B>(app: &S, req: TestRequest) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    send(app, as_guest(req)).await
}

fn assert_auth_error(status: u16, body: &Value, want_status: u16, want_error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(
        body["error_description"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
}

fn assert_credentials(body: &Value) {
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(
        body["access_token"].as_str().is_some_and(|t| t.split('.').count() == 3),
        "{body}"
    );
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() >= 40), "{body}");
    assert_eq!(body["scope"], "user", "{body}");
    assert!(body["sub"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn hs256(key: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(key)).unwrap()
}

/// Replaces the payload of a JWT, keeping its header and signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn mint_with_script(key: &str, env: &str, uid: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/mint-ticket.py");
    let out = Command::new("python3")
        // `--key=…`: a base64url key may start with `-`
        .args([script, &format!("--key={key}"), "--env", env, "--uid", uid])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ---- custom tickets ------------------------------------------------------------------------

#[actix_web::test]
async fn custom_tickets_sign_in_and_bad_tickets_are_refused() {
    let t = app_with(|_| {});
    t.state.db.create_env("other").unwrap().wait().await.unwrap();
    let app = t.service().await;
    let signin = |env: &str, ticket: &str| {
        post_json(
            &format!("/auth/v1/signin/custom?client_id={env}"),
            &json!({ "provider_id": "custom", "ticket": ticket }),
        )
    };

    // before any key exists, no ticket can be valid (and trying does not create one)
    let (status, body) = call(&app, signin("default", "a.b.c")).await;
    assert_auth_error(status, &body, 401, "invalid_grant");

    // the key download is admin-only
    let (status, _) = call(&app, get("/admin/v1/envs/default/ticket-key")).await;
    assert_eq!(status, 401);
    let (status, k) = send(&app, get("/admin/v1/envs/default/ticket-key")).await;
    assert_eq!(status, 200, "{k}");
    assert_eq!((k["env"].as_str(), k["alg"].as_str()), (Some("default"), Some("HS256")));
    let key_b64 = k["key"].as_str().unwrap().to_string();
    let key = URL_SAFE_NO_PAD.decode(&key_b64).unwrap();
    assert_eq!(key.len(), 32);
    let (_, again) = send(&app, get("/admin/v1/envs/default/ticket-key")).await;
    assert_eq!(again["key"], k["key"], "the key is created once");
    let (status, _) = send(&app, get("/admin/v1/envs/nope/ticket-key")).await;
    assert_eq!(status, 400);

    // a ticket minted by the script signs in; the same uid is the same user
    let ticket = mint_with_script(&key_b64, "default", "dev-user_42");
    let (status, c1) = call(&app, signin("default", &ticket)).await;
    assert_eq!(status, 200, "{c1}");
    assert_credentials(&c1);
    let ticket2 = hs256(
        &key,
        &json!({ "uid": "dev-user_42", "env": "default", "iat": now(), "exp": now() + 600 }),
    );
    let (status, c2) = call(&app, signin("default", &ticket2)).await;
    assert_eq!(status, 200, "{c2}");
    assert_eq!(c1["sub"], c2["sub"]);
    let (status, me) = call(
        &app,
        bearer(get("/auth/v1/user/me"), c1["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["loginType"], "CUSTOM");
    assert_eq!(me["custom_user_id"], "dev-user_42");
    assert_eq!(me["hasPassword"], false, "{me}");
    let (_, other_user) = call(
        &app,
        signin("default", &mint_with_script(&key_b64, "default", "someone-else")),
    )
    .await;
    assert_ne!(other_user["sub"], c1["sub"]);

    // bad tickets: all invalid_grant
    let n = now();
    let good_claims = json!({ "uid": "u1", "env": "default", "iat": n, "exp": n + 600 });
    let tampered = with_payload(
        &hs256(&key, &good_claims),
        &json!({ "uid": "admin", "env": "default", "iat": n, "exp": n + 600 }),
    );
    let mut sig_flipped = hs256(&key, &good_claims);
    let last = sig_flipped.pop().unwrap();
    sig_flipped.push(if last == 'A' { 'B' } else { 'A' });
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good_claims.to_string())
    );
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &good_claims,
        &EncodingKey::from_secret(&key),
    )
    .unwrap();
    let bad = [
        ("tampered claims", tampered),
        ("flipped signature", sig_flipped),
        ("alg none", none_alg),
        ("HS512", hs512),
        ("wrong key", hs256(&[7u8; 32], &good_claims)),
        (
            "expired",
            hs256(
                &key,
                &json!({ "uid": "u1", "env": "default", "iat": n - 1000, "exp": n - 500 }),
            ),
        ),
        (
            "other env",
            hs256(&key, &json!({ "uid": "u1", "env": "other", "iat": n, "exp": n + 600 })),
        ),
        (
            "longer than 10 minutes",
            hs256(
                &key,
                &json!({ "uid": "u1", "env": "default", "iat": n, "exp": n + 601 }),
            ),
        ),
        (
            "bad uid",
            hs256(
                &key,
                &json!({ "uid": "a b", "env": "default", "iat": n, "exp": n + 600 }),
            ),
        ),
        (
            "no uid",
            hs256(&key, &json!({ "env": "default", "iat": n, "exp": n + 600 })),
        ),
        ("not a jwt", "hello".to_string()),
    ];
    for (what, ticket) in bad {
        let (status, body) = call(&app, signin("default", &ticket)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_auth_error(status, &body, 401, "invalid_grant");
    }

    // a ticket for `default` signed with `default`'s key is refused by `other` (its own key differs)
    let (_, ko) = send(&app, get("/admin/v1/envs/other/ticket-key")).await;
    assert_ne!(ko["key"], k["key"]);
    let (status, body) = call(&app, signin("other", &ticket2)).await;
    assert_auth_error(status, &body, 401, "invalid_grant");
    let (status, body) = call(
        &app,
        signin(
            "other",
            &mint_with_script(ko["key"].as_str().unwrap(), "other", "dev-user_42"),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["sub"], c1["sub"], "users are per env");

    // bad input
    let (status, body) = call(
        &app,
        post_json(
            "/auth/v1/signin/custom?client_id=default",
            &json!({ "provider_id": "custom" }),
        ),
    )
    .await;
    assert_auth_error(status, &body, 400, "invalid_argument");
    let (status, body) = call(
        &app,
        post_json(
            "/auth/v1/signin/custom?client_id=default",
            &json!({ "provider_id": "x", "ticket": ticket2 }),
        ),
    )
    .await;
    assert_auth_error(status, &body, 400, "invalid_argument");
    let (status, body) = call(&app, signin("nope", &ticket2)).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(&app, get("/auth/v1/signin/custom")).await;
    assert_auth_error(status, &body, 405, "invalid_argument");
}

#[test]
fn the_mint_script_refuses_bad_input() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/mint-ticket.py");
    let key = URL_SAFE_NO_PAD.encode([1u8; 32]);
    let out = Command::new("python3")
        .args([script, "--key", &key, "--env", "default", "--uid", "not ok"])
        .output()
        .expect("run python3");
    assert!(!out.status.success());
    let ticket = mint_with_script(&key, "e1", "abc");
    let claims = payload(&ticket);
    assert_eq!(
        (claims["uid"].as_str(), claims["env"].as_str()),
        (Some("abc"), Some("e1"))
    );
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 600);
}

// ---- WeChat ---------------------------------------------------------------------------------

/// A fake WeChat API on 127.0.0.1: `GET /sns/jscode2session` answers per `js_code`:
/// `code-<x>` → openid `o-<x>` (and unionid `u-<x>`), `nounion-<x>` → openid only, `bad` → 40029,
/// `limit`/`slow` → 45011, `busy` → -1, `http500` → HTTP 500; a wrong appid/secret → 40125.
fn fake_wechat() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let q: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
            let p = |k: &str| {
                q.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let (status, body) = if path != "/sns/jscode2session" || p("grant_type") != "authorization_code" {
                (404, json!({ "errcode": 404, "errmsg": "not found" }))
            } else if p("appid") != APPID || p("secret") != "s3cret" {
                (200, json!({ "errcode": 40125, "errmsg": "invalid appsecret" }))
            } else {
                let code = p("js_code");
                match code.as_str() {
                    "bad" => (200, json!({ "errcode": 40029, "errmsg": "invalid code" })),
                    "limit" | "slow" => (
                        200,
                        json!({ "errcode": 45011, "errmsg": "api minute-quota reach limit" }),
                    ),
                    "busy" => (200, json!({ "errcode": -1, "errmsg": "system error" })),
                    "http500" => (500, json!({})),
                    c if c.starts_with("nounion-") => (
                        200,
                        json!({ "openid": format!("o-{}", &c[8..]), "session_key": "SESSIONKEY" }),
                    ),
                    c if c.starts_with("code-") => (
                        200,
                        json!({ "openid": format!("o-{}", &c[5..]), "session_key": "SESSIONKEY", "unionid": format!("u-{}", &c[5..]) }),
                    ),
                    _ => (200, json!({ "errcode": 40029, "errmsg": "invalid code" })),
                }
            };
            let body = body.to_string();
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    base
}

fn provider_token_req(env: &str, appid: &str, code: &str) -> TestRequest {
    post_json(
        &format!("/auth/v1/provider/token?client_id={env}"),
        &json!({
            "provider_id": appid,
            "provider_code": code,
            "provider_params": { "provider_code_type": "open_id", "appid": appid }
        }),
    )
}

fn with_provider(env: &str, token: &str) -> TestRequest {
    post_json(
        &format!("/auth/v1/signin/with/provider?client_id={env}"),
        &json!({ "provider_token": token }),
    )
}

#[actix_web::test]
async fn wechat_sign_in_against_a_fake_wechat_server() {
    let base = fake_wechat();
    let t = app_with(|c| c.wechat_api_base = base.clone());
    t.state.db.create_env("other").unwrap().wait().await.unwrap();
    let app = t.service().await;

    // not configured yet
    let (status, body) = call(&app, provider_token_req("default", APPID, "code-a")).await;
    assert_auth_error(status, &body, 400, "invalid_argument");

    // settings: admin only; the secret is never returned
    let settings = "/admin/v1/envs/default/settings/wechat";
    let (status, _) = call(&app, put_json(settings, &json!({ "appid": APPID, "secret": "s3cret" }))).await;
    assert_eq!(status, 401);
    let (status, s) = send(&app, get(settings)).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (s["appid"].clone(), s["secret_set"].clone()),
        (Value::Null, json!(false))
    );
    let (status, s) = send(&app, put_json(settings, &json!({ "appid": APPID, "secret": "s3cret" }))).await;
    assert_eq!(status, 200, "{s}");
    let (status, s) = send(&app, get(settings)).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["appid"], APPID);
    assert_eq!(s["secret_set"], true);
    assert!(!s.to_string().contains("s3cret"), "{s}");
    let (status, _) = send(
        &app,
        put_json(settings, &json!({ "appid": "bad appid!", "secret": "x" })),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(&app, put_json(settings, &json!({ "appid": APPID }))).await;
    assert_eq!(status, 400);

    // code → provider token → credentials
    let (status, pt) = call(&app, provider_token_req("default", APPID, "code-a")).await;
    assert_eq!(status, 200, "{pt}");
    assert_eq!(pt["expires_in"], 600);
    let token = pt["provider_token"].as_str().unwrap().to_string();
    let claims = payload(&token);
    assert_eq!(claims["oid"], "o-a");
    assert!(!token.contains("SESSIONKEY") && !claims.to_string().contains("SESSIONKEY"));
    let (status, c1) = call(&app, with_provider("default", &token)).await;
    assert_eq!(status, 200, "{c1}");
    assert_credentials(&c1);
    let at = c1["access_token"].as_str().unwrap().to_string();
    let (status, me) = call(&app, bearer(get("/auth/v1/user/me"), &at)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["loginType"], "WECHAT-OPEN");
    assert_eq!(me["open_id"], "o-a");
    assert_eq!(me["union_id"], "u-a");

    // the same openid is the same user; another openid another user
    let (_, pt2) = call(&app, provider_token_req("default", APPID, "code-a")).await;
    let (status, c2) = call(&app, with_provider("default", pt2["provider_token"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{c2}");
    assert_eq!(c1["sub"], c2["sub"]);
    let (_, pt3) = call(&app, provider_token_req("default", APPID, "nounion-b")).await;
    let (status, c3) = call(&app, with_provider("default", pt3["provider_token"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{c3}");
    assert_ne!(c1["sub"], c3["sub"]);
    let (_, me3) = call(
        &app,
        bearer(get("/auth/v1/user/me"), c3["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        (me3["open_id"].as_str(), me3["union_id"].as_str()),
        (Some("o-b"), Some(""))
    );

    // WeChat's errors
    for (code, want_status, want_error) in [
        ("bad", 401, "invalid_grant"),
        ("limit", 429, "resource_exhausted"),
        ("slow", 429, "resource_exhausted"),
        ("busy", 503, "unavailable"),
        ("http500", 503, "unavailable"),
    ] {
        let (status, body) = call(&app, provider_token_req("default", APPID, code)).await;
        assert_auth_error(status, &body, want_status, want_error);
    }
    // an appid that is not the env's
    let (status, body) = call(&app, provider_token_req("default", "wxother", "code-a")).await;
    assert_auth_error(status, &body, 400, "invalid_argument");
    // missing code
    let (status, body) = call(
        &app,
        post_json(
            "/auth/v1/provider/token?client_id=default",
            &json!({ "provider_id": APPID }),
        ),
    )
    .await;
    assert_auth_error(status, &body, 400, "invalid_argument");
    // a wrong secret is the server's problem, not the user's
    send(&app, put_json(settings, &json!({ "appid": APPID, "secret": "wrong" }))).await;
    let (status, body) = call(&app, provider_token_req("default", APPID, "code-a")).await;
    assert_auth_error(status, &body, 503, "unavailable");
    send(&app, put_json(settings, &json!({ "appid": APPID, "secret": "s3cret" }))).await;

    // provider tokens: tampered, other env, expired, other kinds of token
    let n = now();
    let tampered = with_payload(
        &token,
        &json!({ "typ": "wx_provider", "env": "default", "oid": "o-victim", "iat": n, "exp": n + 600 }),
    );
    let (status, body) = call(&app, with_provider("default", &tampered)).await;
    assert_auth_error(status, &body, 401, "invalid_grant");
    let (status, body) = call(&app, with_provider("other", &token)).await;
    assert_auth_error(status, &body, 401, "invalid_grant");
    let key = std::fs::read(t.dir.path().join("keys/jwt.key")).unwrap();
    let expired = hs256(
        &key,
        &json!({ "typ": "wx_provider", "env": "default", "oid": "o-a", "iat": n - 1000, "exp": n - 400 }),
    );
    let (status, body) = call(&app, with_provider("default", &expired)).await;
    assert_auth_error(status, &body, 401, "invalid_grant");
    let (status, body) = call(&app, with_provider("default", &at)).await;
    assert_auth_error(status, &body, 401, "invalid_grant");
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let (status, body) = call(&app, with_provider("default", &none_alg)).await;
    assert_auth_error(status, &body, 401, "invalid_grant");
    // a provider token is not an access token
    let (status, _) = call(&app, bearer(get("/auth/v1/user/me"), &token)).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn an_unreachable_wechat_is_unavailable() {
    let port = free_port();
    let t = app_with(|c| c.wechat_api_base = format!("http://127.0.0.1:{port}"));
    let app = t.service().await;
    let settings = "/admin/v1/envs/default/settings/wechat";
    let (status, _) = send(&app, put_json(settings, &json!({ "appid": APPID, "secret": "s3cret" }))).await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, provider_token_req("default", APPID, "code-a")).await;
    assert_auth_error(status, &body, 503, "unavailable");
}
