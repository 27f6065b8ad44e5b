//! Test harness: an in-process app over a temp data dir, a real-socket server, and HTTP helpers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web};
use lightbase::db::{Database, Limits};
use lightbase::{build_app, AppState, Config};
use serde_json::Value;
use tempfile::TempDir;

/// The server API key every test server is configured with (`--admin-key`): requests built by
/// this harness act as the admin unless they say otherwise (`as_guest`, or their own token).
pub const TEST_ADMIN_KEY: &str = "test-admin-key-0123456789abcdef0123456789";

/// Marks a request to be sent with no credentials at all (a guest).
pub fn as_guest(req: test::TestRequest) -> test::TestRequest {
    req.insert_header(("x-test-guest", "1"))
}

/// The request as the app receives it: the admin key added unless the request carries its own
/// `Authorization` or is marked as a guest's.
pub fn to_request(req: test::TestRequest) -> actix_http::Request {
    let mut req = req.to_request();
    let headers = req.headers_mut();
    let guest = headers.remove("x-test-guest").next().is_some();
    if !guest && !headers.contains_key("authorization") {
        let value =
            actix_web::http::header::HeaderValue::from_str(&format!("Bearer {TEST_ADMIN_KEY}")).expect("header");
        headers.insert(actix_web::http::header::AUTHORIZATION, value);
    }
    req
}

/// GATEWAY prefix of the default instance/database.
pub const DB: &str = "/v1/database/instances/(default)/databases/(default)";

/// An in-process app over a fresh data dir.
pub struct TestApp {
    pub dir: TempDir,
    pub state: web::Data<AppState>,
}

impl TestApp {
    pub fn new() -> TestApp {
        Self::with_config(|_| {})
    }

    pub fn with_config(f: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::with_dir(dir.path());
        config.admin_key = Some(TEST_ADMIN_KEY.to_string());
        f(&mut config);
        let limits = Limits {
            max_document_bytes: config.max_document_bytes,
            max_depth: config.max_depth,
            aggregate_memory_limit: config.aggregate_memory_limit,
            ..Limits::default()
        };
        let db = Arc::new(Database::open(dir.path(), limits).expect("open db"));
        TestApp {
            dir,
            state: web::Data::new(AppState::new(db, config)),
        }
    }

    pub async fn service(
        &self,
    ) -> impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    > {
        test::init_service(build_app(self.state.clone())).await
    }
}

/// Sends a request and returns (status, JSON body). Non-JSON bodies become `Value::String`.
pub async fn send<S, B>(app: &S, req: test::TestRequest) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let res = test::call_service(app, to_request(req)).await;
    let status = res.status().as_u16();
    let bytes = test::read_body(res).await;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

pub fn post_json(uri: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri(uri)
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_string())
}

pub fn put_json(uri: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::put()
        .uri(uri)
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_string())
}

pub fn patch_json(uri: &str, body: &Value) -> test::TestRequest {
    test::TestRequest::patch()
        .uri(uri)
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_string())
}

pub fn get(uri: &str) -> test::TestRequest {
    test::TestRequest::get().uri(uri)
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A server on a real socket (127.0.0.1, ephemeral port) running `lightbase::run` in its own thread.
pub struct SocketServer {
    pub base: String,
    pub dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl SocketServer {
    pub fn start() -> SocketServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut config = Config::with_dir(dir.path());
        config.admin_key = Some(TEST_ADMIN_KEY.to_string());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(lightbase::run(listener, config, async move {
                let _ = rx.await;
            }))
        });
        wait_healthy(&base);
        SocketServer {
            base,
            dir,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Graceful stop; returns what `run` returned.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

pub fn wait_healthy(base: &str) {
    for _ in 0..200 {
        if ureq::get(&format!("{base}/health"))
            .timeout(Duration::from_millis(500))
            .call()
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("server at {base} did not become healthy");
}

/// Blocking HTTP call on a real socket as the admin: (status, JSON body).
pub fn http(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    http_as(method, url, body, Some(TEST_ADMIN_KEY))
}

/// Blocking HTTP call on a real socket with the given Bearer token (none: a guest).
pub fn http_as(method: &str, url: &str, body: Option<&Value>, token: Option<&str>) -> (u16, Value) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.set("authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => req.set("content-type", "application/json").send_string(&b.to_string()),
        None => req.call(),
    };
    match res {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The real `lightbase serve` binary on `127.0.0.1:port` over `dir`, once it answers `/health`.
pub fn spawn_server(dir: &std::path::Path, port: u16) -> std::process::Child {
    spawn_server_with(dir, port, &[])
}

/// [`spawn_server`] with extra command-line flags.
pub fn spawn_server_with(dir: &std::path::Path, port: u16, flags: &[&str]) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lightbase"))
        .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(dir)
        .args(flags)
        .env("LIGHTBASE_LOG", "warn")
        .env("LIGHTBASE_ADMIN_KEY", TEST_ADMIN_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn lightbase");
    wait_healthy(&format!("http://127.0.0.1:{port}"));
    child
}
