//! Admin subcommands (`env …`, `collection …`). With a server running on the data dir they go
//! through its admin API; otherwise they open the data dir directly.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{CollectionCommand, Command, EnvCommand};
use crate::db::{database, Database, Limits};

/// Where an admin command is carried out.
enum Target {
    Remote(String),
    Local(Database),
}

fn target(dir: &Path) -> Result<Target, String> {
    if let Some(addr) = crate::server_address(dir) {
        let addr = addr.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
        let base = format!("http://{addr}");
        let alive = ureq::get(&format!("{base}/health"))
            .timeout(Duration::from_secs(3))
            .call()
            .is_ok();
        if alive {
            return Ok(Target::Remote(base));
        }
    }
    Database::open(dir, Limits::default()).map(Target::Local).map_err(|e| {
        format!(
            "cannot open {}: {e} (is another lightbase process using it?)",
            dir.display()
        )
    })
}

/// Runs one admin command; returns what to print.
pub fn run(dir: &Path, command: &Command) -> Result<String, String> {
    match command {
        Command::Env(EnvCommand::Create { name }) => {
            database::validate_env_name(name).map_err(|e| e.to_string())?;
            match target(dir)? {
                Target::Remote(base) => remote(&base, "POST", "/admin/v1/envs", Some(json!({ "name": name })))?,
                Target::Local(db) => {
                    db.create_env(name)
                        .and_then(|c| c.wait_blocking())
                        .map_err(|e| e.to_string())?;
                    Value::Null
                }
            };
            Ok(format!("created environment {name}"))
        }
        Command::Env(EnvCommand::List) => {
            let envs = match target(dir)? {
                Target::Remote(base) => remote(&base, "GET", "/admin/v1/envs", None)?["envs"].clone(),
                Target::Local(db) => json!(db.envs().map_err(|e| e.to_string())?),
            };
            Ok(lines(&envs, |e| e["name"].as_str().unwrap_or_default().to_string()))
        }
        Command::Collection(CollectionCommand::Create { env, name }) => {
            database::validate_env_name(env).map_err(|e| e.to_string())?;
            match target(dir)? {
                Target::Remote(base) => {
                    let path = format!("/admin/v1/envs/{env}/collections");
                    remote(&base, "POST", &path, Some(json!({ "name": name })))?
                }
                Target::Local(db) => {
                    db.create_collection(env, name)
                        .and_then(|c| c.wait_blocking())
                        .map_err(|e| e.to_string())?;
                    Value::Null
                }
            };
            Ok(format!("created collection {env}/{name}"))
        }
        Command::Collection(CollectionCommand::List { env }) => {
            database::validate_env_name(env).map_err(|e| e.to_string())?;
            let colls = match target(dir)? {
                Target::Remote(base) => {
                    remote(&base, "GET", &format!("/admin/v1/envs/{env}/collections"), None)?["collections"].clone()
                }
                Target::Local(db) => json!(db.collections(env).map_err(|e| e.to_string())?),
            };
            Ok(lines(&colls, |c| {
                format!("{}\t{}", c["name"].as_str().unwrap_or_default(), c["count"])
            }))
        }
        Command::Serve(_) | Command::ErrorsDoc => Err("not an admin command".into()),
    }
}

fn lines(items: &Value, f: impl Fn(&Value) -> String) -> String {
    items
        .as_array()
        .map(|a| a.iter().map(f).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn remote(base: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let req = ureq::request(method, &format!("{base}{path}")).timeout(Duration::from_secs(30));
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match res {
        Ok(r) => r
            .into_json::<Value>()
            .map_err(|e| format!("bad reply from server: {e}")),
        Err(ureq::Error::Status(_, r)) => {
            let v: Value = r.into_json().unwrap_or(Value::Null);
            Err(format!(
                "{}: {}",
                v["code"].as_str().unwrap_or("ERROR"),
                v["message"].as_str().unwrap_or("")
            ))
        }
        Err(e) => Err(format!("cannot reach the server at {base}: {e}")),
    }
}
