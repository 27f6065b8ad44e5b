//! The binary's life: `--help`/`--version`, `/health`, config precedence, graceful shutdown on
//! SIGTERM and SIGINT with an in-flight request finishing and its write kept.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lightbase"))
}

#[test]
fn help_documents_every_option_and_version_prints() {
    let out = bin().arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let top = String::from_utf8_lossy(&bin().arg("--help").output().expect("run").stdout).to_string();
    for word in ["serve", "env", "collection", "--dir", "--config"] {
        assert!(top.contains(word), "lightbase --help lacks {word}:\n{top}");
    }
    let serve = String::from_utf8_lossy(&bin().args(["serve", "--help"]).output().expect("run").stdout).to_string();
    for word in [
        "--http",
        "LIGHTBASE_HTTP",
        "--dir",
        "LIGHTBASE_DIR",
        "--max-body-bytes",
        "--max-document-bytes",
        "--max-depth",
        "127.0.0.1:8080",
        "./lb_data",
    ] {
        assert!(serve.contains(word), "lightbase serve --help lacks {word}:\n{serve}");
    }
}

#[actix_web::test]
async fn health_answers_status_and_version() {
    let app = TestApp::new();
    let svc = app.service().await;
    let (status, body) = send(&svc, get("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}));
}

#[test]
fn env_vars_and_toml_configure_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let toml = dir.path().join("lightbase.toml");
    std::fs::write(&toml, format!("http = \"127.0.0.1:{port}\"\nmax_body_bytes = 2048\n")).expect("write");
    let data = dir.path().join("data");
    let mut child = bin()
        .arg("serve")
        .env("LIGHTBASE_CONFIG", &toml)
        .env("LIGHTBASE_DIR", &data)
        .env("LIGHTBASE_ADMIN_KEY", TEST_ADMIN_KEY)
        .env("LIGHTBASE_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base);
    assert!(data.join("db").exists(), "data dir from LIGHTBASE_DIR was not used");
    let big = json!({"data": [{"s": "x".repeat(4096)}]});
    let (status, body) = http("POST", &format!("{base}{DB}/collections/c/documents"), Some(&big));
    assert_eq!((status, body["code"].as_str()), (413, Some("REQUEST_BODY_TOO_LARGE")));
    child.kill().expect("kill");
    child.wait().expect("wait");
}

fn graceful_stop_keeps_in_flight_request(signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_server(dir.path(), port);
    http(
        "POST",
        &format!("{base}{DB}/collections"),
        Some(&json!({"collectionName": "c"})),
    );

    // start a request, send half of its body, signal the server, then finish the body
    let body = json!({"data": [{"_id": "inflight", "v": 1}]}).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(
        stream,
        "POST {DB}/collections/c/documents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .expect("write head");
    stream.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(tail.as_bytes()).expect("write tail");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read reply");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "in-flight request did not finish: {reply}"
    );
    assert!(reply.contains("inflight"), "{reply}");

    let exit = child.wait().expect("wait");
    assert!(exit.success(), "exit status after {signal}: {exit:?}");
    assert!(
        !dir.path().join(lightbase::SERVER_FILE).exists(),
        "server.json left behind"
    );

    // the write survived: open the data dir directly
    let db = lightbase::db::Database::open(dir.path(), lightbase::db::Limits::default()).expect("reopen");
    let doc = db
        .get_raw("default", "c", "inflight")
        .expect("get")
        .expect("document kept");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&doc).expect("json")["v"],
        json!(1)
    );
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    graceful_stop_keeps_in_flight_request("-TERM");
}

#[test]
fn sigint_finishes_in_flight_requests_and_exits_zero() {
    graceful_stop_keeps_in_flight_request("-INT");
}

#[test]
fn run_on_a_real_socket_stops_cleanly() {
    let server = SocketServer::start();
    let (status, body) = http("GET", &format!("{}/health", server.base), None);
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    server.stop().expect("run returned an error");
}
