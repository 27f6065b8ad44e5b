//! Secondary indexes through the real interfaces: the admin API (create, background build, list,
//! explain, drop) and its bad input, unique indexes refusing writes on both protocols, a `kill -9`
//! in the middle of a build, and the CLI.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

fn indexes_url(base: &str, coll: &str) -> String {
    format!("{base}/admin/v1/envs/default/collections/{coll}/indexes")
}

fn seed(base: &str, coll: &str, n: usize, doc: impl Fn(usize) -> Value) {
    let (s, body) = http(
        "POST",
        &format!("{base}{DB}/collections"),
        Some(&json!({"collectionName": coll})),
    );
    assert_eq!(s, 200, "{body}");
    let docs: Vec<Value> = (0..n).map(doc).collect();
    for chunk in docs.chunks(1000) {
        let (s, body) = http(
            "POST",
            &format!("{base}{DB}/collections/{coll}/documents"),
            Some(&json!({ "data": chunk })),
        );
        assert_eq!(s, 200, "{body}");
    }
}

/// Polls the index list until `name` is in `state`; returns its listing.
fn wait_state(base: &str, coll: &str, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, body) = http("GET", &indexes_url(base, coll), None);
        assert_eq!(s, 200, "{body}");
        let found = body["indexes"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == name).cloned());
        if let Some(ix) = found.filter(|i| i["state"] == state) {
            return ix;
        }
        assert!(Instant::now() < deadline, "index {name} never reached {state}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn indexes_are_built_in_the_background_used_listed_and_dropped() {
    let server = SocketServer::start();
    let base = server.base.clone();
    seed(
        &base,
        "posts",
        3000,
        |i| json!({"_id": format!("p{i:05}"), "n": i, "email": format!("u{i}@x.cn")}),
    );

    let (s, body) = http("POST", &indexes_url(&base, "posts"), Some(&json!({"fields": "n:desc"})));
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["index"]["name"], "n_-1");
    assert!(body["index"].get("id").is_none(), "{body}");
    let ix = wait_state(&base, "posts", "n_-1", "ready");
    assert_eq!(
        (ix["done"].clone(), ix["total"].clone(), ix["entries"].clone()),
        (json!(3000), json!(3000), json!(3000))
    );
    assert!(ix["bytes"].as_u64().unwrap() > 3000 * 10, "{ix}");

    // the filtered, sorted, limited list reads the index and stops after the page
    let q = json!({"query": {"n": {"$gt": 100}}, "order": [{"field": "n", "direction": "desc"}], "limit": 20});
    let (s, plan) = http(
        "POST",
        &format!("{base}/admin/v1/envs/default/collections/posts/explain"),
        Some(&q),
    );
    assert_eq!(s, 200, "{plan}");
    assert_eq!(
        (plan["plan"]["type"].clone(), plan["plan"]["index"].clone()),
        (json!("index"), json!("n_-1")),
        "{plan}"
    );
    assert_eq!(
        (plan["docsExamined"].clone(), plan["returned"].clone()),
        (json!(20), json!(20)),
        "{plan}"
    );
    let url = format!(
        "{base}{DB}/collections/posts/documents?query={}&order={}&limit=20",
        enc(&json!({"n": {"$gt": 100}}).to_string()),
        enc(&json!([{"field": "n", "direction": "desc"}]).to_string())
    );
    let (s, list) = http("GET", &url, None);
    assert_eq!(s, 200, "{list}");
    let ns: Vec<i64> = list["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (2980..3000).rev().collect::<Vec<_>>());

    // a unique index refuses duplicates on both protocols, naming the index and the value
    let unique = json!({"fields": [{"field": "email", "direction": "asc"}], "unique": true, "name": "by_email"});
    let (s, body) = http("POST", &indexes_url(&base, "posts"), Some(&unique));
    assert_eq!(s, 202, "{body}");
    wait_state(&base, "posts", "by_email", "ready");
    let (s, body) = http(
        "POST",
        &format!("{base}{DB}/collections/posts/documents"),
        Some(&json!({"data": [{"email": "fresh@x.cn"}, {"email": "u7@x.cn"}]})),
    );
    assert_eq!(
        (s, body["code"].as_str()),
        (409, Some("DATABASE_DUPLICATE_KEY")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("by_email") && msg.contains("u7@x.cn"), "{msg}");
    let web = json!({
        "action": "database.addDocument", "env": "default", "collectionName": "posts",
        "data": {"email": "u8@x.cn"}, "access_token": TEST_ADMIN_KEY,
    });
    let (s, body) = http("POST", &format!("{base}/web"), Some(&web));
    assert_eq!(
        (s, body["code"].as_str()),
        (200, Some("DATABASE_DUPLICATE_KEY")),
        "{body}"
    );
    let count_url = format!(
        "{base}{DB}/collections/posts/documents?query={}&limit=1",
        enc(r#"{"email":"fresh@x.cn"}"#)
    );
    assert_eq!(
        http("GET", &count_url, None).1["list"],
        json!([]),
        "nothing of the refused batch was written"
    );

    // dropping: the planner stops using it at once, its entries go
    let (s, body) = http("DELETE", &format!("{}/n_-1", indexes_url(&base, "posts")), None);
    assert_eq!((s, body["state"].as_str()), (202, Some("dropping")), "{body}");
    let (_, plan) = http(
        "POST",
        &format!("{base}/admin/v1/envs/default/collections/posts/explain"),
        Some(&q),
    );
    assert_eq!(plan["plan"]["type"], "collectionScan", "{plan}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http("GET", &indexes_url(&base, "posts"), None).1["indexes"]
        .as_array()
        .unwrap()
        .len()
        != 1
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop().unwrap();
}

#[test]
fn the_index_api_refuses_bad_input_and_non_admins() {
    let server = SocketServer::start();
    let base = server.base.clone();
    seed(&base, "c", 1, |_| json!({"n": 1}));
    let url = indexes_url(&base, "c");
    let raw = |body: &str, token: Option<&str>| {
        let mut req = ureq::post(&url).set("content-type", "application/json");
        if let Some(t) = token {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        match req.send_string(body) {
            Ok(r) => (r.status(), r.into_json::<Value>().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(c, r)) => (c, r.into_json::<Value>().unwrap_or(Value::Null)),
            Err(e) => panic!("{e}"),
        }
    };
    for (body, status, code) in [
        ("{not json", 400, "INVALID_JSON"),
        ("[]", 400, "INVALID_JSON"),
        ("{}", 400, "INVALID_PARAM"),
        (r#"{"fields": 5}"#, 400, "INVALID_PARAM"),
        (r#"{"fields": "n:sideways"}"#, 400, "INVALID_PARAM"),
        (r#"{"fields": "$where"}"#, 400, "INVALID_PARAM"),
        (r#"{"fields": "a,a"}"#, 400, "INVALID_PARAM"),
        (
            r#"{"fields": [{"field": "n", "direction": "up"}]}"#,
            400,
            "INVALID_PARAM",
        ),
        (r#"{"fields": "n", "unique": "yes"}"#, 400, "INVALID_PARAM"),
        (r#"{"fields": "n", "name": "no spaces"}"#, 400, "INVALID_PARAM"),
    ] {
        let (s, b) = raw(body, Some(TEST_ADMIN_KEY));
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{body}: {b}");
    }
    let big = format!(r#"{{"fields": "{}"}}"#, "a".repeat(11 * 1024 * 1024));
    assert_eq!(raw(&big, Some(TEST_ADMIN_KEY)).0, 413);
    assert_eq!(raw(r#"{"fields": "n"}"#, Some(TEST_ADMIN_KEY)).0, 202);
    let (s, b) = raw(r#"{"fields": "n"}"#, Some(TEST_ADMIN_KEY));
    assert_eq!(
        (s, b["code"].as_str()),
        (409, Some("DATABASE_INDEX_ALREADY_EXIST")),
        "{b}"
    );
    let (s, b) = http("POST", &indexes_url(&base, "nope"), Some(&json!({"fields": "n"})));
    assert_eq!(
        (s, b["code"].as_str()),
        (404, Some("DATABASE_COLLECTION_NOT_EXIST")),
        "{b}"
    );
    let (s, b) = http("GET", &format!("{base}/admin/v1/envs/nope/collections/c/indexes"), None);
    assert_eq!((s, b["code"].as_str()), (400, Some("INVALID_ENV")), "{b}");
    let (s, b) = http("DELETE", &format!("{url}/missing"), None);
    assert_eq!((s, b["code"].as_str()), (404, Some("DATABASE_INDEX_NOT_EXIST")), "{b}");
    let (s, b) = http("PUT", &url, Some(&json!({})));
    assert_eq!((s, b["code"].as_str()), (405, Some("METHOD_NOT_ALLOWED")), "{b}");
    let explain = format!("{base}/admin/v1/envs/default/collections/c/explain");
    let (s, b) = http("POST", &explain, Some(&json!({"query": {"n": {"$bogus": 1}}})));
    assert_eq!((s, b["code"].as_str()), (400, Some("DATABASE_INVALID_COMMAND")), "{b}");

    // guests and end users: never
    let (s, b) = raw(r#"{"fields": "m"}"#, None);
    assert_eq!((s, b["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{b}");
    let (_, creds) = http_as(
        "POST",
        &format!("{base}/auth/v1/signin/anonymously"),
        Some(&json!({})),
        None,
    );
    let user = creds["access_token"].as_str().unwrap().to_string();
    let (s, b) = raw(r#"{"fields": "m"}"#, Some(&user));
    assert_eq!((s, b["code"].as_str()), (403, Some("ADMIN_REQUIRED")), "{b}");
    for (method, u) in [
        ("GET", url.clone()),
        ("DELETE", format!("{url}/n_1")),
        ("POST", explain.clone()),
    ] {
        let (s, _) = http_as(method, &u, Some(&json!({})), Some(&user));
        assert_eq!(s, 403, "{method} {u}");
    }
    assert_eq!(
        http("GET", &url, None).1["indexes"].as_array().unwrap().len(),
        1,
        "nothing was created or dropped"
    );
    server.stop().unwrap();
}

#[test]
fn a_build_killed_midway_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("server.log");
    let start = || {
        let child = Command::new(env!("CARGO_BIN_EXE_lightbase"))
            .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
            .arg(dir.path().join("data"))
            .env("LIGHTBASE_LOG", "info")
            .env("LIGHTBASE_ADMIN_KEY", TEST_ADMIN_KEY)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .expect("spawn lightbase");
        wait_healthy(&base);
        child
    };
    let mut server = start();
    seed(
        &base,
        "big",
        40_000,
        |i| json!({"_id": format!("b{i:06}"), "n": (i * 7919) % 40_000}),
    );
    let (s, body) = http("POST", &indexes_url(&base, "big"), Some(&json!({"fields": "n"})));
    assert_eq!(s, 202, "{body}");
    server.kill().expect("kill -9");
    server.wait().expect("reap");

    let mut server = start();
    let ix = wait_state(&base, "big", "n_1", "ready");
    assert_eq!(
        (ix["done"].clone(), ix["entries"].clone()),
        (json!(40_000), json!(40_000)),
        "{ix}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("resuming index work"),
        "the restart found the build unfinished:\n{text}"
    );
    let q = json!({"query": {"n": {"$gte": 100, "$lt": 200}}, "limit": 1000});
    let (_, plan) = http(
        "POST",
        &format!("{base}/admin/v1/envs/default/collections/big/explain"),
        Some(&q),
    );
    assert_eq!(
        (plan["plan"]["exact"].clone(), plan["returned"].clone()),
        (json!(true), json!(100)),
        "{plan}"
    );
    server.kill().expect("kill");
    server.wait().expect("reap");
}

fn lb(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lightbase"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("LIGHTBASE_LOG", "warn")
        .env("LIGHTBASE_ADMIN_TOKEN", TEST_ADMIN_KEY)
        .output()
        .expect("run lightbase");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn the_cli_manages_indexes_offline_and_through_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(lb(dir.path(), &["collection", "create", "default", "shops"]).0);
    let (ok, out, err) = lb(
        dir.path(),
        &["index", "create", "default", "shops", "city,rating:desc", "--unique"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("city_1_rating_-1") && out.contains("ready") && out.contains("unique"),
        "{out}"
    );
    let (ok, out, _) = lb(dir.path(), &["index", "list", "default", "shops"]);
    assert!(
        ok && out.starts_with("city_1_rating_-1\tcity:asc,rating:desc\tready"),
        "{out}"
    );
    let (ok, _, err) = lb(dir.path(), &["index", "create", "default", "shops", "city:up"]);
    assert!(!ok && err.contains("direction"), "{err}");
    let (ok, _, err) = lb(dir.path(), &["index", "drop", "default", "shops", "nope"]);
    assert!(!ok && err.contains("does not exist"), "{err}");

    // with a server running on the data dir, the same commands go through its admin API
    let port = free_port();
    let mut server = spawn_server(dir.path(), port);
    let (ok, out, err) = lb(
        dir.path(),
        &["index", "create", "default", "shops", "name", "--name", "by_name"],
    );
    assert!(ok && out.contains("by_name"), "{out} {err}");
    wait_state(&format!("http://127.0.0.1:{port}"), "shops", "by_name", "ready");
    let (ok, out, err) = lb(dir.path(), &["index", "drop", "default", "shops", "city_1_rating_-1"]);
    assert!(ok, "{out} {err}");
    server.kill().expect("kill");
    server.wait().expect("reap");
    let (ok, out, _) = lb(dir.path(), &["index", "list", "default", "shops"]);
    assert!(ok && out.trim().starts_with("by_name\tname:asc\tready"), "{out}");
}
