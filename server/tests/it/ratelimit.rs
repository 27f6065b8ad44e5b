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
    post_json(
        "/admin/v1/login",
        &json!({ "email": "root@example.com", "password": "guess" }),
    )
    .peer_addr(peer(from))
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
    // another address is not affected; other admin routes are another class
    let (status, ..) = call(&app, login("198.51.100.1:1")).await;
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
    let via = |proxy: &str, xff: &str| login(proxy).insert_header(("x-forwarded-for", xff.to_string()));

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
    assert_eq!(call(&app, login("198.51.100.7:2")).await.0, 429);
}

#[actix_web::test]
async fn without_trusted_proxies_forwarded_for_is_never_read() {
    let t = TestApp::with_config(|c| c.rate_limits.signin = "1/h:1".parse().unwrap());
    let app = t.service().await;
    let via = |xff: &str| login("10.0.0.1:1").insert_header(("x-forwarded-for", xff.to_string()));
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
