//! Admin subcommands work on the data dir directly when no server runs, and through the server's
//! admin API when one does.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

fn lb(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lightbase"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("LIGHTBASE_LOG", "warn")
        .env("LIGHTBASE_ADMIN_TOKEN", TEST_ADMIN_KEY)
        .output()
        .expect("run lightbase");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn admin_commands_work_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(lb(dir.path(), &["env", "create", "prod"]).0);
    let (ok, out, _) = lb(dir.path(), &["env", "list"]);
    assert!(ok);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["default", "prod"]);
    assert!(lb(dir.path(), &["collection", "create", "prod", "todos"]).0);
    let (ok, out, _) = lb(dir.path(), &["collection", "list", "prod"]);
    assert!(ok);
    assert_eq!(out.trim(), "todos\t0");
    // errors are reported with a non-zero exit
    let (ok, _, err) = lb(dir.path(), &["collection", "create", "prod", "todos"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = lb(dir.path(), &["collection", "create", "nope", "todos"]);
    assert!(!ok && err.contains("nope"), "{err}");
    let (ok, _, err) = lb(dir.path(), &["env", "create", "bad/name"]);
    assert!(!ok && err.contains("invalid environment name"), "{err}");
}

#[test]
fn admin_commands_go_through_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = spawn_server(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    // the server holds the data dir; the CLI must use its API, and the server sees the change at once
    let (ok, _, err) = lb(dir.path(), &["env", "create", "staging"]);
    assert!(ok, "{err}");
    let (ok, _, err) = lb(dir.path(), &["collection", "create", "staging", "posts"]);
    assert!(ok, "{err}");
    let (status, _) = http(
        "POST",
        &format!("{base}{DB}/collections/posts/documents?env=staging"),
        Some(&json!({"data": [{"t": 1}]})),
    );
    assert_eq!(status, 200);
    let (ok, out, _) = lb(dir.path(), &["collection", "list", "staging"]);
    assert!(ok);
    assert_eq!(out.trim(), "posts\t1");
    let (ok, _, err) = lb(dir.path(), &["env", "create", "staging"]);
    assert!(!ok && err.contains("ENV_ALREADY_EXIST"), "{err}");
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn env_settings_offline_are_loaded_at_start_and_changed_through_the_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out, err) = lb(dir.path(), &["env", "settings", "default"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "auth\tdefault",
            "signin\tdefault",
            "database\tdefault",
            "storage\tdefault",
            "functions\tdefault"
        ]
    );
    let (ok, out, err) = lb(
        dir.path(),
        &[
            "env",
            "settings",
            "default",
            "--rate-limit",
            "database=2/min",
            "--rate-limit",
            "signin=5/min:3",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("database\t2/min:2") && out.contains("signin\t5/min:3") && out.contains("auth\tdefault"),
        "{out}"
    );
    // bad input: unknown class, bad rate, server-wide class, unknown env
    for (args, needle) in [
        (vec!["--rate-limit", "uploads=1/s"], "class must be one of"),
        (vec!["--rate-limit", "database=fast"], "invalid rate"),
        (vec!["--rate-limit", "admin=1/s"], "class must be one of"),
        (vec!["--rate-limit", "database"], "CLASS=RATE"),
    ] {
        let mut all = vec!["env", "settings", "default"];
        all.extend(args);
        let (ok, _, err) = lb(dir.path(), &all);
        assert!(!ok && err.contains(needle), "{all:?}: {err}");
    }
    let (ok, _, err) = lb(dir.path(), &["env", "settings", "nope"]);
    assert!(!ok && err.contains("nope"), "{err}");

    // a server started on the data dir enforces what was stored
    let port = free_port();
    let mut child = spawn_server(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let (status, body) = http("GET", &format!("{base}/admin/v1/envs/default/settings"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rateLimits"]["database"], "2/min:2");
    let (status, _) = http(
        "POST",
        &format!("{base}{DB}/collections"),
        Some(&json!({"collectionName": "todos"})),
    );
    assert!(status < 300);
    let list = format!("{base}{DB}/collections/todos/documents");
    // the create took the first of the two tokens (admins are counted per address too)
    let statuses: Vec<u16> = (0..2).map(|_| http("GET", &list, None).0).collect();
    assert_eq!(statuses, vec![200, 429], "the stored 2/min applies from the start");

    // through the running server: changes apply at once
    let (ok, out, err) = lb(
        dir.path(),
        &["env", "settings", "default", "--rate-limit", "database=default"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("database\tdefault") && out.contains("signin\t5/min:3"),
        "{out}"
    );
    assert_eq!(http("GET", &list, None).0, 200);
    let (ok, out, err) = lb(dir.path(), &["env", "settings", "default", "--reset"]);
    assert!(ok, "{err}");
    assert!(!out.contains("5/min"), "{out}");
    let (_, body) = http("GET", &format!("{base}/admin/v1/envs/default/settings"), None);
    assert_eq!(body["rateLimits"]["signin"], Value::Null);
    let (ok, _, err) = lb(
        dir.path(),
        &["env", "settings", "default", "--rate-limit", "database=0/s"],
    );
    assert!(!ok && err.contains("invalid rate"), "{err}");
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn collection_schema_offline_and_through_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("person.json");
    std::fs::write(&file, r#"{"type": "object", "required": ["name"]}"#).expect("write");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"type": "objekt"}"#).expect("write");
    let file = file.to_str().expect("utf-8");
    assert!(lb(dir.path(), &["collection", "create", "default", "people"]).0);
    let (ok, out, _) = lb(dir.path(), &["collection", "schema", "default", "people"]);
    assert!(ok);
    assert_eq!(out.trim(), "default/people has no schema");
    // offline: set, show, refuse a bad one
    let (ok, out, err) = lb(
        dir.path(),
        &["collection", "schema", "default", "people", "--set", file],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "set the schema of default/people");
    let (ok, out, _) = lb(dir.path(), &["collection", "schema", "default", "people"]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&out).expect("the schema as JSON");
    assert_eq!(shown, json!({"type": "object", "required": ["name"]}));
    let (ok, _, err) = lb(
        dir.path(),
        &[
            "collection",
            "schema",
            "default",
            "people",
            "--set",
            bad.to_str().expect("utf-8"),
        ],
    );
    assert!(!ok && err.contains("invalid schema at /type"), "{err}");
    let (ok, _, err) = lb(
        dir.path(),
        &["collection", "schema", "default", "people", "--clear", "--check"],
    );
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    let (ok, _, err) = lb(dir.path(), &["collection", "schema", "default", "nope", "--check"]);
    assert!(!ok && err.contains("`nope` does not exist"), "{err}");

    // through a running server: documents are checked, --check counts the violating ones
    let port = free_port();
    let mut child = spawn_server(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let docs = format!("{base}{DB}/collections/people/documents");
    let (status, body) = http("POST", &docs, Some(&json!({"data": [{"_id": "a", "x": 1}]})));
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!("DATABASE_SCHEMA_VIOLATION")),
        "{body}"
    );
    let (ok, _, err) = lb(dir.path(), &["collection", "schema", "default", "people", "--clear"]);
    assert!(ok, "{err}");
    let (status, body) = http(
        "POST",
        &docs,
        Some(&json!({"data": [{"_id": "a", "x": 1}, {"_id": "b", "name": "B"}]})),
    );
    assert_eq!(status, 200, "{body}");
    let (ok, _, err) = lb(
        dir.path(),
        &["collection", "schema", "default", "people", "--set", file],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = lb(dir.path(), &["collection", "schema", "default", "people", "--check"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "1 of 2 documents violate the schema\na\t/: \"name\" is a required property"
    );
    let (ok, _, err) = lb(
        dir.path(),
        &[
            "collection",
            "schema",
            "default",
            "people",
            "--set",
            bad.to_str().expect("utf-8"),
        ],
    );
    assert!(!ok && err.contains("INVALID_SCHEMA"), "{err}");
    // killed without a shutdown: the acknowledged schema is on disk, and enforced offline too
    child.kill().expect("kill");
    child.wait().expect("wait");
    let (ok, out, _) = lb(dir.path(), &["collection", "schema", "default", "people"]);
    assert!(ok);
    assert!(out.contains("\"required\""), "{out}");
    let (ok, out, _) = lb(dir.path(), &["collection", "schema", "default", "people", "--check"]);
    assert!(ok);
    assert!(out.starts_with("1 of 2 documents violate the schema"), "{out}");
}
