//! Rate limiting through HTTP: brute-force sign-in meets 429 + Retry-After, the database class is
//! not throttled at ordinary rates, X-Forwarded-For is believed only from trusted proxies, and every
//! protocol gets its own 429 shape.

use std::net::SocketAddr;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::{call_service, read_body, TestRequest};
use serde_json::{json, Value};

use crate::common::{get, post_json, SocketServer, TestApp, DB};

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Sends a request and returns (status, Retry-After, x-request-id, JSON body).
async fn call<S, B>(app: &S, req: TestRequest) -> (u16, Option<u64>, Option<String>, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let res = call_service(app, crate::common::to_request(req)).await;
    let status = res.status().as_u16();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry = header("retry-after").map(|v| v.parse::<u64>().expect("Retry-After is whole seconds"));
    let rid = header("x-request-id");
    let bytes = read_body(res).await;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry, rid, body)
}

fn login(from: &str) -> TestRequest {
    login_as("root@example.com", from)
}

fn login_as(email: &str, from: &str) -> TestRequest {
    post_json("/admin/v1/login", &json!({ "email": email, "password": "guess" })).peer_addr(peer(from))
}

/// An admin login for an account of its own, so only the per-address bucket is in play.
fn login_fresh(from: &str) -> TestRequest {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    login_as(&format!("admin{n}@example.com"), from)
}

#[actix_web::test]
async fn brute_force_admin_login_gets_429_with_retry_after_after_the_burst() {
    let t = TestApp::new();
    let app = t.service().await;
    // default sign-in quota: 10/min with a burst of 10, whatever the handler answers
    for i in 0..10 {
        let (status, _, _, _) = call(&app, login("203.0.113.7:40000")).await;
        assert_ne!(status, 429, "attempt {i} is within the burst");
    }
    let (status, retry, rid, body) = call(&app, login("203.0.113.7:40001")).await;
    assert_eq!(status, 429, "{body}");
    let retry = retry.expect("Retry-After");
    assert!((1..=6).contains(&retry), "one attempt every 6 s refills: {retry}");
    assert_eq!(body["code"], "EXCEED_REQUEST_LIMIT");
    assert_eq!(body["type"], "rate_limited");
    assert!(body["message"].as_str().unwrap().contains("sign-in"), "{body}");
    assert_eq!(
        body["details"]["requestId"].as_str(),
        rid.as_deref(),
        "429s carry the request id"
    );
    // another address is not affected (for another account); other admin routes are another class
    let (status, ..) = call(&app, login_as("other@example.com", "198.51.100.1:1")).await;
    assert_ne!(status, 429);
    let (status, ..) = call(&app, get("/admin/v1/envs").peer_addr(peer("203.0.113.7:1"))).await;
    assert_ne!(status, 429);
}

#[actix_web::test]
async fn password_and_ticket_sign_in_share_the_strict_class_and_auth_shape() {
    let t = TestApp::with_config(|c| c.rate_limits.signin = "3/min:3".parse().unwrap());
    let app = t.service().await;
    let from = peer("192.0.2.9:5555");
    let attempts = [
        "/auth/v1/signin",
        "/auth/v1/signin/custom",
        "/admin/v1/%6Cogin", // percent-encoded spelling the router decodes
        "/auth/v1/signin",
    ];
    let mut statuses = Vec::new();
    let mut last = (None, Value::Null);
    for path in attempts {
        let req = post_json(path, &json!({ "username": "alice", "password": "x" })).peer_addr(from);
        let (status, retry, _, body) = call(&app, req).await;
        statuses.push(status);
        last = (retry, body);
    }
    assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    assert_eq!(statuses[3], 429, "{statuses:?}");
    let (retry, body) = last;
    assert!(retry.unwrap() >= 1);
    assert_eq!(body["error"], "resource_exhausted", "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("retry after"));
    // anonymous sign-in and token refresh are the (generous) auth class
    let (status, ..) = call(
        &app,
        post_json("/auth/v1/signin/anonymously", &json!({})).peer_addr(from),
    )
    .await;
    assert_ne!(status, 429);
}

#[actix_web::test]
async fn the_database_class_is_not_throttled_at_ordinary_rates() {
    let t = TestApp::new();
    let app = t.service().await;
    let (status, ..) = call(
        &app,
        post_json(&format!("{DB}/collections"), &json!({ "collectionName": "todos" })).peer_addr(peer("127.0.0.1:1")),
    )
    .await;
    assert!(status < 300);
    for i in 0..3000 {
        let req = if i % 2 == 0 {
            get(&format!("{DB}/collections/todos/documents/nope")).peer_addr(peer("127.0.0.1:2"))
        } else {
            post_json(
                "/web",
                &json!({ "action": "database.countDocument", "collectionName": "todos" }),
            )
            .peer_addr(peer("127.0.0.1:3"))
        };
        let (status, retry, _, body) = call(&app, req).await;
        assert!(retry.is_none() && status != 429, "request {i}: {status} {body}");
        assert_ne!(body["code"], "EXCEED_REQUEST_LIMIT");
    }
}

#[actix_web::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let t = TestApp::with_config(|c| {
        c.rate_limits.signin = "1/h:1".parse().unwrap();
        c.trusted_proxies = "10.0.0.0/8".parse().unwrap();
    });
    let app = t.service().await;
    let via = |proxy: &str, xff: &str| login_fresh(proxy).insert_header(("x-forwarded-for", xff.to_string()));

    // behind the trusted proxy each forwarded client has its own bucket...
    assert_ne!(call(&app, via("10.0.0.1:1", "1.1.1.1")).await.0, 429);
    assert_ne!(call(&app, via("10.0.0.1:1", "2.2.2.2")).await.0, 429);
    assert_eq!(call(&app, via("10.0.0.1:1", "1.1.1.1")).await.0, 429);
    // ...and a client cannot escape it by prepending addresses: only the right-most untrusted hop counts
    assert_eq!(call(&app, via("10.0.0.2:1", "9.9.9.9, 2.2.2.2")).await.0, 429);
    // a chain of trusted proxies is walked through
    assert_ne!(call(&app, via("10.0.0.1:1", "3.3.3.3, 10.20.0.1")).await.0, 429);
    assert_eq!(call(&app, via("10.0.0.1:1", "3.3.3.3, 10.30.0.1")).await.0, 429);

    // from an untrusted peer the header is ignored: rotating it does not help
    assert_ne!(call(&app, via("198.51.100.7:1", "4.4.4.4")).await.0, 429);
    assert_eq!(call(&app, via("198.51.100.7:1", "5.5.5.5")).await.0, 429);
    assert_eq!(call(&app, login_fresh("198.51.100.7:2")).await.0, 429);
}

#[actix_web::test]
async fn without_trusted_proxies_forwarded_for_is_never_read() {
    let t = TestApp::with_config(|c| c.rate_limits.signin = "1/h:1".parse().unwrap());
    let app = t.service().await;
    let via = |xff: &str| login_fresh("10.0.0.1:1").insert_header(("x-forwarded-for", xff.to_string()));
    assert_ne!(call(&app, via("1.1.1.1")).await.0, 429);
    assert_eq!(call(&app, via("2.2.2.2")).await.0, 429);
}

#[actix_web::test]
async fn every_protocol_gets_its_own_429_shape() {
    let one = "1/h:1";
    let t = TestApp::with_config(|c| {
        let r = one.parse().unwrap();
        c.rate_limits.auth = r;
        c.rate_limits.database = r;
        c.rate_limits.storage = r;
        c.rate_limits.functions = r;
        c.rate_limits.admin = r;
    });
    let app = t.service().await;
    let from = peer("203.0.113.50:9");
    let twice = |make: &dyn Fn() -> TestRequest| (make(), make());

    // GATEWAY: 429 {code, message, requestId}
    let (a, b) = twice(&|| get(&format!("{DB}/collections/todos/documents")).peer_addr(from));
    call(&app, a).await;
    let (status, retry, rid, body) = call(&app, b).await;
    assert_eq!(status, 429);
    assert!(retry.unwrap() >= 3000, "one request an hour: {retry:?}");
    assert_eq!(body["code"], "EXCEED_REQUEST_LIMIT");
    assert!(body["message"].as_str().unwrap().contains("retry after"));
    assert_eq!(body["requestId"].as_str(), rid.as_deref());

    // CLOUD_API: HTTP 200 {code, message, requestId} as every CLOUD_API error, plus Retry-After
    // (/web is the database class, whose one token the GATEWAY call above already took)
    let web = || {
        post_json(
            "/web",
            &json!({ "action": "database.countDocument", "collectionName": "t" }),
        )
    };
    let (status, retry, rid, body) = call(&app, web().peer_addr(from)).await;
    assert_eq!(status, 200);
    assert!(retry.unwrap() >= 1);
    assert_eq!(body["code"], "EXCEED_REQUEST_LIMIT");
    assert!(body["message"].is_string());
    assert_eq!(body["requestId"].as_str(), rid.as_deref());

    // auth: 429 {error, error_description}
    let (a, b) = twice(&|| get("/auth/v1/user/me").peer_addr(from));
    call(&app, a).await;
    let (status, retry, _, body) = call(&app, b).await;
    assert_eq!((status, retry.is_some()), (429, true));
    assert_eq!(body["error"], "resource_exhausted");
    assert!(body["error_description"].is_string());

    // admin: 429 {code, type, message, details}
    let (a, b) = twice(&|| get("/admin/v1/envs").peer_addr(from));
    call(&app, a).await;
    let (status, retry, rid, body) = call(&app, b).await;
    assert_eq!((status, retry.is_some()), (429, true));
    assert_eq!(body["code"], "EXCEED_REQUEST_LIMIT");
    assert_eq!(body["type"], "rate_limited");
    assert_eq!(body["details"]["requestId"].as_str(), rid.as_deref());

    // storage and functions (GATEWAY shape), even before their routes exist
    for path in ["/v1/storages/get-objects-upload-info", "/v1/functions/hello"] {
        let (a, b) = twice(&|| post_json(path, &json!({})).peer_addr(from));
        call(&app, a).await;
        let (status, _, _, body) = call(&app, b).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("EXCEED_REQUEST_LIMIT")),
            "{path}"
        );
    }

    // /health and unknown paths are never limited
    for _ in 0..20 {
        assert_eq!(call(&app, get("/health").peer_addr(from)).await.0, 200);
        assert_eq!(call(&app, get("/nope").peer_addr(from)).await.0, 404);
    }
}

#[actix_web::test]
async fn cors_preflights_are_not_limited_and_429s_are_readable_cross_origin() {
    let t = TestApp::with_config(|c| c.rate_limits.signin = "1/h:1".parse().unwrap());
    let app = t.service().await;
    let from = peer("203.0.113.60:9");
    for _ in 0..5 {
        let pre = TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/auth/v1/signin")
            .insert_header(("origin", "https://app.example"))
            .insert_header(("access-control-request-method", "POST"))
            .peer_addr(from);
        let res = call_service(&app, pre.to_request()).await;
        assert!(res.status().is_success(), "{}", res.status());
    }
    let signin = || {
        post_json("/auth/v1/signin", &json!({ "username": "a", "password": "b" }))
            .insert_header(("origin", "https://app.example"))
            .peer_addr(from)
    };
    assert_ne!(call_service(&app, signin().to_request()).await.status(), 429);
    let res = call_service(&app, signin().to_request()).await;
    assert_eq!(res.status(), 429);
    let h = res.headers();
    assert!(h.get("access-control-allow-origin").is_some());
    let exposed = h
        .get("access-control-expose-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("x-request-id"),
        "{exposed}"
    );
}

#[test]
fn brute_force_on_a_real_socket_is_limited_by_peer_address() {
    let server = SocketServer::start();
    let url = format!("{}/admin/v1/login", server.base);
    let body = json!({ "email": "root@example.com", "password": "guess" }).to_string();
    let mut limited = None;
    for i in 0..12 {
        let res = ureq::post(&url)
            .set("content-type", "application/json")
            .send_string(&body);
        if let Err(ureq::Error::Status(429, r)) = res {
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(retry >= 1);
            let v: Value = r.into_json().unwrap();
            assert_eq!(v["code"], "EXCEED_REQUEST_LIMIT");
            limited = Some(i);
            break;
        }
    }
    assert_eq!(limited, Some(10), "the 11th attempt from 127.0.0.1 is refused");
    let (status, _) = crate::common::http("GET", &format!("{}/health", server.base), None);
    assert_eq!(status, 200);
}

// ---- per-env rate limits (runtime settings) ----------------------------------------------------

fn settings_url(env: &str) -> String {
    format!("/admin/v1/envs/{env}/settings")
}

fn list_docs(env: &str, from: &str) -> TestRequest {
    get(&format!("{DB}/collections/todos/documents?env={env}")).peer_addr(peer(from))
}

#[actix_web::test]
async fn per_env_rate_limits_change_at_runtime_and_leave_other_envs_alone() {
    let t = TestApp::new();
    t.state.db.create_env("other").unwrap().wait().await.unwrap();
    for env in ["default", "other"] {
        t.state
            .db
            .create_collection(env, "todos")
            .unwrap()
            .wait()
            .await
            .unwrap();
    }
    let app = t.service().await;

    // nothing overridden: every class is null, the server's quotas are shown beside
    let (status, _, _, body) = call(&app, get(&settings_url("default"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rateLimits"]["database"], Value::Null);
    assert_eq!(body["serverRateLimits"]["database"], "100000/s:200000");
    assert_eq!(body["serverRateLimits"]["signin"], "10/min:10");

    let put = |rates: Value| crate::common::put_json(&settings_url("default"), &json!({ "rateLimits": rates }));
    let (status, _, _, body) = call(&app, put(json!({"database": "3/min:3", "signin": "2/min"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rateLimits"]["database"], "3/min:3");
    assert_eq!(body["rateLimits"]["signin"], "2/min:2");
    assert_eq!(body["rateLimits"]["auth"], Value::Null);
    let (_, _, _, shown) = call(&app, get(&settings_url("default"))).await;
    assert_eq!(shown["rateLimits"], body["rateLimits"]);

    // GATEWAY: a burst of 3 from one address, then 429 + Retry-After (one token every 20 s)
    for i in 0..3 {
        let (status, _, _, body) = call(&app, list_docs("default", "203.0.113.1:1")).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let (status, retry, _, body) = call(&app, list_docs("default", "203.0.113.1:2")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "EXCEED_REQUEST_LIMIT");
    assert!((1..=20).contains(&retry.expect("Retry-After")), "{retry:?}");
    // another address in the same env, and the same address in another env, are unaffected
    assert_eq!(call(&app, list_docs("default", "203.0.113.2:1")).await.0, 200);
    for _ in 0..10 {
        assert_eq!(call(&app, list_docs("other", "203.0.113.1:3")).await.0, 200);
    }

    // CLOUD_API: the env is known once the envelope is parsed; HTTP 200 + code + Retry-After
    let web = |from: &str| {
        post_json(
            "/web",
            &json!({ "action": "database.countDocument", "collectionName": "todos", "env": "default" }),
        )
        .peer_addr(peer(from))
    };
    for _ in 0..3 {
        let (status, _, _, body) = call(&app, web("203.0.113.3:1")).await;
        assert_eq!((status, body.get("code")), (200, None), "{body}");
    }
    let (status, retry, _, body) = call(&app, web("203.0.113.3:1")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (200, Some("EXCEED_REQUEST_LIMIT")),
        "{body}"
    );
    assert!(retry.is_some());

    // per user: one user spread over many addresses is one bucket at the env's quota
    let (_, _, _, creds) = call(
        &app,
        crate::common::as_guest(post_json(
            "/auth/v1/signup",
            &json!({"username": "carol", "password": "secret-pw"}),
        )),
    )
    .await;
    let token = creds["access_token"].as_str().expect("signed up").to_string();
    let as_user = |n: u8| {
        list_docs("default", &format!("198.51.100.{n}:1")).insert_header(("authorization", format!("Bearer {token}")))
    };
    for n in 1..=3 {
        let (status, _, _, body) = call(&app, as_user(n)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, retry, _, body) = call(&app, as_user(4)).await;
    assert_eq!((status, retry.is_some()), (429, true), "{body}");

    // /auth: the env's sign-in quota (2) is stricter than the server's (10)
    let signin = |env: &str| {
        crate::common::as_guest(post_json(
            &format!("/auth/v1/signin?client_id={env}"),
            &json!({"username": "nobody", "password": "wrong-password"}),
        ))
        .peer_addr(peer("203.0.113.4:1"))
    };
    assert_eq!(call(&app, signin("default")).await.0, 401);
    assert_eq!(call(&app, signin("default")).await.0, 401);
    let (status, retry, _, body) = call(&app, signin("default")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("resource_exhausted")),
        "{body}"
    );
    assert!(retry.unwrap() >= 1);
    assert_eq!(
        call(&app, signin("other")).await.0,
        401,
        "another env keeps the server quota"
    );

    // back to the server defaults: the env's buckets are gone at once
    let (status, _, _, body) = call(&app, put(Value::Null)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["rateLimits"].as_object().unwrap().values().all(Value::is_null),
        "{body}"
    );
    for _ in 0..5 {
        assert_eq!(call(&app, list_docs("default", "203.0.113.1:4")).await.0, 200);
    }
    assert_eq!(call(&app, as_user(5)).await.0, 200);
}

#[actix_web::test]
async fn bad_settings_requests_are_refused_with_the_field_named() {
    let t = TestApp::new();
    let app = t.service().await;
    let url = settings_url("default");
    let put_raw = |payload: &str| {
        TestRequest::put()
            .uri(&url)
            .insert_header(("content-type", "application/json"))
            .set_payload(payload.to_string())
    };
    let cases: [(&str, u16, &str, &str); 8] = [
        ("{not json", 400, "INVALID_JSON", "malformed"),
        ("", 400, "INVALID_JSON", "empty"),
        (
            r#"{"rateLimits": {"database": "fast"}}"#,
            400,
            "INVALID_PARAM",
            "rateLimits.database",
        ),
        (
            r#"{"rateLimits": {"database": "0/s"}}"#,
            400,
            "INVALID_PARAM",
            "rateLimits.database",
        ),
        (
            r#"{"rateLimits": {"database": 100}}"#,
            400,
            "INVALID_PARAM",
            "rateLimits.database",
        ),
        (
            r#"{"rateLimits": {"uploads": "1/s"}}"#,
            400,
            "INVALID_PARAM",
            "rateLimits.uploads",
        ),
        (
            r#"{"rateLimits": {"admin": "1/s"}}"#,
            400,
            "INVALID_PARAM",
            "rateLimits.admin",
        ),
        (r#"{"rateLimit": {}}"#, 400, "INVALID_PARAM", "rateLimit"),
    ];
    for (payload, want_status, want_code, needle) in cases {
        let (status, _, _, body) = call(&app, put_raw(payload)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (want_status, Some(want_code)),
            "{payload}: {body}"
        );
        assert!(body["message"].as_str().unwrap().contains(needle), "{payload}: {body}");
    }
    // nothing was saved by the refused requests
    let (_, _, _, body) = call(&app, get(&url)).await;
    assert!(
        body["rateLimits"].as_object().unwrap().values().all(Value::is_null),
        "{body}"
    );

    // unknown env: the env-not-found code, for reads and writes
    let (status, _, _, body) = call(&app, get(&settings_url("nope"))).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_ENV")), "{body}");
    let body = json!({"rateLimits": {"database": "1/s"}});
    let (status, _, _, reply) = call(&app, crate::common::put_json(&settings_url("nope"), &body)).await;
    assert_eq!((status, reply["code"].as_str()), (400, Some("INVALID_ENV")), "{reply}");

    // no token → 401; a user token → 403; wrong method → 405
    let guest = crate::common::as_guest(crate::common::put_json(&url, &body));
    let (status, _, _, reply) = call(&app, guest).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{reply}"
    );
    let (_, _, _, creds) = call(
        &app,
        crate::common::as_guest(post_json("/auth/v1/signin/anonymously", &json!({}))),
    )
    .await;
    let user = creds["access_token"].as_str().unwrap().to_string();
    let as_user = crate::common::put_json(&url, &body).insert_header(("authorization", format!("Bearer {user}")));
    let (status, _, _, reply) = call(&app, as_user).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (403, Some("ADMIN_REQUIRED")),
        "{reply}"
    );
    let as_user = get(&url).insert_header(("authorization", format!("Bearer {user}")));
    assert_eq!(call(&app, as_user).await.0, 403);
    let (status, _, _, reply) = call(&app, TestRequest::delete().uri(&url)).await;
    assert_eq!((status, reply["code"].as_str()), (405, Some("METHOD_NOT_ALLOWED")));
    // and the limits in force did not change
    let (_, _, _, body) = call(&app, get(&url)).await;
    assert_eq!(body["rateLimits"]["database"], Value::Null);
}

// ---- per-account sign-in buckets -----------------------------------------------------------------

fn signin_from(body: Value, from: &str) -> TestRequest {
    crate::common::as_guest(post_json("/auth/v1/signin", &body)).peer_addr(peer(from))
}

#[actix_web::test]
async fn one_account_guessed_from_many_addresses_meets_its_own_bucket() {
    let t = TestApp::new();
    let app = t.service().await;
    let (status, ..) = call(
        &app,
        crate::common::as_guest(post_json(
            "/auth/v1/signup",
            &json!({"username": "alice", "email": "alice@example.com", "password": "secret-pw"}),
        )),
    )
    .await;
    assert_eq!(status, 200);

    // ten guesses, each from a fresh address (per-address buckets never fill), and every spelling
    // of the name is one account
    for i in 0..10 {
        let name = if i % 2 == 0 { "alice" } else { "ALICE" };
        let body = json!({"username": name, "password": format!("guess-{i}")});
        let (status, _, _, reply) = call(&app, signin_from(body, &format!("192.0.2.{}:1", i + 1))).await;
        assert_eq!(status, 401, "guess {i}: {reply}");
    }
    let body = json!({"username": "alice", "password": "guess-11"});
    let (status, retry, _, reply) = call(&app, signin_from(body, "192.0.2.50:1")).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (429, Some("resource_exhausted")),
        "{reply}"
    );
    assert!((1..=6).contains(&retry.expect("Retry-After")), "{retry:?}");
    // the right password is refused too while the bucket is empty (the bucket is charged before
    // the password is checked)
    let body = json!({"username": "alice", "password": "secret-pw"});
    assert_eq!(call(&app, signin_from(body, "192.0.2.51:1")).await.0, 429);
    // the email is another sign-in name with its own bucket; other accounts are unaffected
    let body = json!({"email": "alice@example.com", "password": "secret-pw"});
    assert_eq!(call(&app, signin_from(body, "192.0.2.52:1")).await.0, 200);
    let body = json!({"username": "bob", "password": "whatever-1"});
    assert_eq!(call(&app, signin_from(body, "192.0.2.50:1")).await.0, 401);

    // an account that does not exist answers exactly the same way: 10 × 401, then 429
    let mut seen = Vec::new();
    for i in 0..11 {
        let body = json!({"username": "ghost", "password": format!("guess-{i}")});
        seen.push(
            call(&app, signin_from(body, &format!("198.51.100.{}:1", i + 1)))
                .await
                .0,
        );
    }
    assert_eq!(seen[..10], [401; 10]);
    assert_eq!(seen[10], 429);
}

#[actix_web::test]
async fn admin_accounts_have_a_bucket_of_their_own_and_env_overrides_apply_to_accounts() {
    let t = TestApp::with_config(|c| c.rate_limits.signin = "3/min:3".parse().unwrap());
    let app = t.service().await;
    for i in 0..3 {
        let (status, ..) = call(&app, login_as("Root@Example.com", &format!("203.0.113.{}:1", i + 1))).await;
        assert_eq!(status, 401);
    }
    let (status, retry, _, body) = call(&app, login_as("root@example.com", "203.0.113.9:1")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("EXCEED_REQUEST_LIMIT")),
        "{body}"
    );
    assert!(retry.is_some());
    assert_eq!(call(&app, login_as("ops@example.com", "203.0.113.9:1")).await.0, 401);
    // an end user whose username is an admin's email is another account
    let body = json!({"username": "root@example.com", "password": "guess-guess"});
    assert_eq!(call(&app, signin_from(body, "203.0.113.9:1")).await.0, 401);

    // an env's sign-in quota applies to its accounts too (1 attempt instead of 3)
    let (status, ..) = call(
        &app,
        crate::common::put_json(
            "/admin/v1/envs/default/settings",
            &json!({"rateLimits": {"signin": "1/h:1"}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let body = json!({"username": "dave", "password": "guess-guess"});
    assert_eq!(call(&app, signin_from(body.clone(), "192.0.2.1:1")).await.0, 401);
    let (status, retry, ..) = call(&app, signin_from(body, "192.0.2.2:1")).await;
    assert_eq!(status, 429);
    assert!(retry.unwrap() > 60, "one attempt an hour: {retry:?}");
}

#[actix_web::test]
async fn checking_a_signed_in_users_password_is_charged_to_the_sign_in_buckets() {
    let t = TestApp::with_config(|c| c.rate_limits.signin = "3/min:3".parse().unwrap());
    let app = t.service().await;
    let (_, _, _, creds) = call(
        &app,
        crate::common::as_guest(post_json(
            "/auth/v1/signup",
            &json!({"username": "erin", "password": "secret-pw"}),
        )),
    )
    .await;
    let token = creds["access_token"].as_str().unwrap().to_string();
    let with_token = |req: TestRequest| req.insert_header(("authorization", format!("Bearer {token}")));
    // the account bucket is shared by sudo, password change and sign-in, across addresses
    let sudo = |from: &str| {
        with_token(post_json("/auth/v1/user/sudo", &json!({"password": "wrong-pw"}))).peer_addr(peer(from))
    };
    assert_eq!(call(&app, sudo("192.0.2.1:1")).await.0, 401);
    let change = json!({"old_password": "wrong-pw", "new_password": "brand-new-pw"});
    let patch = crate::common::patch_json("/auth/v1/user/password", &change);
    assert_eq!(
        call(&app, with_token(patch).peer_addr(peer("192.0.2.2:1"))).await.0,
        401
    );
    let body = json!({"username": "erin", "password": "wrong-pw"});
    assert_eq!(call(&app, signin_from(body.clone(), "192.0.2.3:1")).await.0, 401);
    let (status, retry, _, reply) = call(&app, sudo("192.0.2.4:1")).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (429, Some("resource_exhausted")),
        "{reply}"
    );
    assert!(retry.is_some());
    assert_eq!(call(&app, signin_from(body, "192.0.2.5:1")).await.0, 429);
    // and per address, sudo is the strict class (3 from one address, whatever the account)
    let (_, _, _, other) = call(
        &app,
        crate::common::as_guest(post_json(
            "/auth/v1/signup",
            &json!({"username": "frank", "password": "secret-pw"}),
        )),
    )
    .await;
    let frank = other["access_token"].as_str().unwrap().to_string();
    let sudo_frank = || {
        post_json("/auth/v1/user/sudo", &json!({"password": "wrong-pw"}))
            .insert_header(("authorization", format!("Bearer {frank}")))
            .peer_addr(peer("192.0.2.1:2"))
    };
    // 192.0.2.1 already spent one token on erin's sudo above
    assert_eq!(call(&app, sudo_frank()).await.0, 401);
    assert_eq!(call(&app, sudo_frank()).await.0, 401);
    assert_eq!(call(&app, sudo_frank()).await.0, 429);
}
