//! Admin subcommands (`env …` including `env settings`, `collection …` including `collection schema`,
//! `index …`, `admin …`). With a server running on the data dir they go
//! through its admin API; otherwise they open the data dir directly.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{AdminCommand, CollectionCommand, Command, Config, EnvCommand, IndexCommand, KeyCommand};
use crate::db::index::IndexSpec;
use crate::db::{database, Database, Limits};
use crate::ratelimit::{Class, EnvRates, Rate};
use crate::settings;

/// Where an admin command is carried out.
enum Target {
    Remote(String),
    Local(Box<Database>),
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
    Database::open(dir, Limits::default())
        .map(|db| Target::Local(Box::new(db)))
        .map_err(|e| {
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
        Command::Env(EnvCommand::Settings {
            name,
            rate_limits,
            reset,
        }) => env_settings(dir, name, rate_limits, *reset),
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
        Command::Index(cmd) => index(dir, cmd),
        Command::Collection(CollectionCommand::Schema {
            env,
            coll,
            set,
            clear,
            check,
        }) => {
            database::validate_env_name(env).map_err(|e| e.to_string())?;
            database::validate_collection_name(coll).map_err(|e| e.to_string())?;
            let action = match (set, clear, check) {
                (Some(file), _, _) => SchemaAction::Set(read_schema_file(file)?),
                (_, true, _) => SchemaAction::Clear,
                (_, _, true) => SchemaAction::Check,
                _ => SchemaAction::Show,
            };
            schema(dir, env, coll, action)
        }
        Command::Admin(cmd) => admin(dir, cmd),
        Command::Serve(_) | Command::ErrorsDoc => Err("not an admin command".into()),
    }
}

/// `index create|list|drop`: through the admin API when a server runs on the data dir, else on
/// the data dir itself (a build then runs to the end before the command returns).
fn index(dir: &Path, cmd: &IndexCommand) -> Result<String, String> {
    let (env, coll) = match cmd {
        IndexCommand::Create { env, coll, .. }
        | IndexCommand::List { env, coll }
        | IndexCommand::Drop { env, coll, .. } => (env, coll),
    };
    database::validate_env_name(env).map_err(|e| e.to_string())?;
    database::validate_collection_name(coll).map_err(|e| e.to_string())?;
    let base_path = format!("/admin/v1/envs/{env}/collections/{coll}/indexes");
    let err = |e: crate::db::DbError| e.to_string();
    match (cmd, target(dir)?) {
        (
            IndexCommand::Create {
                fields, unique, name, ..
            },
            target,
        ) => {
            let spec = IndexSpec {
                fields: IndexSpec::parse_fields(fields).map_err(err)?,
                unique: *unique,
                name: name.clone(),
            };
            let def = match target {
                Target::Remote(base) => {
                    let body = json!({ "fields": spec.fields, "unique": spec.unique, "name": spec.name });
                    remote(&base, "POST", &base_path, Some(body))?["index"].clone()
                }
                Target::Local(db) => {
                    let db = Arc::new(*db);
                    let def = db.create_index(env, coll, &spec, false).map_err(err)?;
                    db.flush().map_err(err)?;
                    let now = db.list_indexes(env, coll).map_err(err)?;
                    now.into_iter()
                        .find(|i| i["name"] == def.name.as_str())
                        .unwrap_or(Value::Null)
                }
            };
            Ok(format!(
                "index {} on {env}/{coll}: {}",
                def["name"].as_str().unwrap_or_default(),
                index_line(&def)
            ))
        }
        (IndexCommand::List { .. }, target) => {
            let list = match target {
                Target::Remote(base) => remote(&base, "GET", &base_path, None)?["indexes"].clone(),
                Target::Local(db) => json!(db.list_indexes(env, coll).map_err(err)?),
            };
            Ok(lines(&list, |i| {
                format!("{}\t{}", i["name"].as_str().unwrap_or_default(), index_line(i))
            }))
        }
        (IndexCommand::Drop { name, .. }, target) => {
            match target {
                Target::Remote(base) => {
                    remote(&base, "DELETE", &format!("{base_path}/{name}"), None)?;
                }
                Target::Local(db) => {
                    let db = Arc::new(*db);
                    db.drop_index(env, coll, name, false).map_err(err)?;
                    db.flush().map_err(err)?;
                }
            }
            Ok(format!("dropped index {name} of {env}/{coll}"))
        }
    }
}

/// `city:asc,age:desc unique ready 1000/1000 entries=1000 bytes=52000`
fn index_line(i: &Value) -> String {
    let fields = i["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| {
                    format!(
                        "{}:{}",
                        f["field"].as_str().unwrap_or_default(),
                        f["direction"].as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mut out = format!(
        "{fields}\t{}\t{}/{}",
        i["state"].as_str().unwrap_or_default(),
        i["done"],
        i["total"]
    );
    if i["unique"] == true {
        out.push_str("\tunique");
    }
    if let Some(n) = i["entries"].as_u64() {
        out.push_str(&format!("\tentries={n}\tbytes={}", i["bytes"]));
    }
    if let Some(e) = i["error"].as_str() {
        out.push_str(&format!("\terror: {e}"));
    }
    out
}

enum SchemaAction {
    Show,
    Set(Value),
    Clear,
    Check,
}

/// A JSON file (or `-`: standard input) holding a schema.
fn read_schema_file(file: &Path) -> Result<Value, String> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read standard input: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", file.display()))
}

/// `collection schema ENV COLL [--set FILE | --clear | --check]`.
fn schema(dir: &Path, env: &str, coll: &str, action: SchemaAction) -> Result<String, String> {
    let path = format!("/admin/v1/envs/{env}/collections/{coll}/schema");
    let name = format!("{env}/{coll}");
    let err = |e: crate::db::DbError| e.to_string();
    let reply = match (target(dir)?, action) {
        (Target::Remote(base), SchemaAction::Show) => remote(&base, "GET", &path, None)?["schema"].clone(),
        (Target::Local(db), SchemaAction::Show) => json!(db.collection_schema(env, coll).map_err(err)?),
        (Target::Remote(base), SchemaAction::Set(schema)) => {
            remote(&base, "PUT", &path, Some(json!({ "schema": schema })))?;
            return Ok(format!("set the schema of {name}"));
        }
        (Target::Local(db), SchemaAction::Set(schema)) => {
            let (_, commit) = db.set_collection_schema(env, coll, Some(schema)).map_err(err)?;
            commit.wait_blocking().map_err(err)?;
            return Ok(format!("set the schema of {name}"));
        }
        (Target::Remote(base), SchemaAction::Clear) => {
            remote(&base, "DELETE", &path, None)?;
            return Ok(format!("removed the schema of {name}"));
        }
        (Target::Local(db), SchemaAction::Clear) => {
            let (_, commit) = db.set_collection_schema(env, coll, None).map_err(err)?;
            commit.wait_blocking().map_err(err)?;
            return Ok(format!("removed the schema of {name}"));
        }
        (Target::Remote(base), SchemaAction::Check) => {
            return Ok(violations_text(&remote(
                &base,
                "GET",
                &format!("{path}/violations"),
                None,
            )?))
        }
        (Target::Local(db), SchemaAction::Check) => {
            let report = db.schema_violations(env, coll, 10).map_err(err)?;
            return Ok(violations_text(&json!(report)));
        }
    };
    match reply {
        Value::Null => Ok(format!("{name} has no schema")),
        schema => serde_json::to_string_pretty(&schema).map_err(|e| e.to_string()),
    }
}

/// `3 of 120 documents violate the schema of …`, then one line per sampled document.
fn violations_text(report: &Value) -> String {
    if report["schema_set"] != true {
        return "no schema is set: every document matches".into();
    }
    let mut out = format!(
        "{} of {} documents violate the schema",
        report["violating"], report["checked"]
    );
    for v in report["sample"].as_array().into_iter().flatten() {
        let failures: Vec<String> = v["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                format!(
                    "{}: {}",
                    f["path"].as_str().unwrap_or(""),
                    f["reason"].as_str().unwrap_or("")
                )
            })
            .collect();
        out.push_str(&format!(
            "\n{}\t{}",
            v["_id"].as_str().unwrap_or(""),
            failures.join("; ")
        ));
        let more = v["failure_count"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(failures.len() as u64);
        if more > 0 {
            out.push_str(&format!(" (and {more} more)"));
        }
    }
    out
}

/// `env settings NAME [--reset] [--rate-limit CLASS=RATE]…`: reads the env's rate limits, applies
/// the changes (if any) and prints every per-env class as `class<TAB>rate` or `class<TAB>default`.
fn env_settings(dir: &Path, env: &str, changes: &[String], reset: bool) -> Result<String, String> {
    database::validate_env_name(env).map_err(|e| e.to_string())?;
    let mut parsed = Vec::new();
    for change in changes {
        let (class, rate) = change
            .split_once('=')
            .ok_or_else(|| format!("--rate-limit {change}: expected CLASS=RATE (e.g. database=200/s:400)"))?;
        let class = Class::parse(class.trim())
            .filter(|c| Class::PER_ENV.contains(c))
            .ok_or_else(|| {
                format!("--rate-limit {change}: the class must be one of auth, signin, database, storage, functions")
            })?;
        let rate = match rate.trim() {
            "default" | "" => None,
            r => Some(r.parse::<Rate>().map_err(|e| format!("--rate-limit {change}: {e}"))?),
        };
        parsed.push((class, rate));
    }
    let apply = |mut rates: EnvRates| -> Result<EnvRates, String> {
        if reset {
            rates = EnvRates::default();
        }
        for (class, rate) in &parsed {
            rates.set(*class, *rate)?;
        }
        Ok(rates)
    };
    let changing = reset || !parsed.is_empty();
    let rates = match target(dir)? {
        Target::Remote(base) => {
            let path = format!("/admin/v1/envs/{env}/settings");
            let current = remote(&base, "GET", &path, None)?;
            let rates = apply(EnvRates::from_json(&current["rateLimits"], "rateLimits")?)?;
            if changing {
                remote(&base, "PUT", &path, Some(json!({ "rateLimits": rates.to_json() })))?;
            }
            rates
        }
        Target::Local(db) => {
            let rates = apply(settings::stored_rate_limits(&db, env).map_err(|e| e.to_string())?)?;
            if changing {
                settings::store_rate_limits(&db, env, &rates)
                    .and_then(|c| c.wait_blocking())
                    .map_err(|e| e.to_string())?;
            }
            rates
        }
    };
    Ok(Class::PER_ENV
        .iter()
        .map(|c| match rates.get(*c) {
            Some(r) => format!("{}\t{r}", c.as_str()),
            None => format!("{}\tdefault", c.as_str()),
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

fn lines(items: &Value, f: impl Fn(&Value) -> String) -> String {
    items
        .as_array()
        .map(|a| a.iter().map(f).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// An admin API call to the running server, authorized by `LIGHTBASE_ADMIN_TOKEN` (an admin token
/// from `/admin/v1/login` or a server API key).
fn remote(base: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let token = std::env::var("LIGHTBASE_ADMIN_TOKEN").ok().filter(|t| !t.is_empty());
    remote_with_token(base, method, path, body, token.as_deref()).map_err(|e| match token {
        None if e.contains("UNAUTHENTICATED") => {
            format!(
                "{e} (a server is running on this data dir: set LIGHTBASE_ADMIN_TOKEN to an admin token or API key)"
            )
        }
        _ => e,
    })
}

/// `admin create` and `admin key …`. Keys are managed on the data dir only (a running server holds
/// its lock; use the admin API then).
fn admin(dir: &Path, cmd: &AdminCommand) -> Result<String, String> {
    let local_auth = |db: Database| {
        let settings = crate::auth::AuthSettings::from_config(&Config::with_dir(dir));
        crate::auth::Auth::open(std::sync::Arc::new(db), dir, settings).map_err(|e| e.to_string())
    };
    match cmd {
        AdminCommand::Create { email, password, token } => {
            match target(dir)? {
                Target::Remote(base) => {
                    let body = json!({ "email": email, "password": password });
                    remote_with_token(&base, "POST", "/admin/v1/admins", Some(body), token.as_deref())?;
                }
                Target::Local(db) => local_auth(*db)?
                    .create_admin_blocking(email, password)
                    .map_err(|e| e.to_string())?,
            }
            Ok(format!("created admin {email}"))
        }
        AdminCommand::Key(key) => {
            let auth = match target(dir)? {
                Target::Remote(base) => {
                    return Err(format!(
                        "a server is running at {base}: manage API keys through its admin API \
                         (POST/GET/DELETE /admin/v1/keys with an admin token), or stop it first"
                    ))
                }
                Target::Local(db) => local_auth(*db)?,
            };
            match key {
                KeyCommand::Create { name } => {
                    let (created, commit) = auth.create_api_key(name).map_err(|e| e.to_string())?;
                    commit.wait_blocking().map_err(|e| e.to_string())?;
                    Ok(format!(
                        "created API key {} ({name}); it is shown only this once:\n{}",
                        created.info.id, created.key
                    ))
                }
                KeyCommand::List => {
                    let keys = auth.api_keys().map_err(|e| e.to_string())?;
                    Ok(keys
                        .iter()
                        .map(|k| format!("{}\t{}\t{}…", k.id, k.name, k.prefix))
                        .collect::<Vec<_>>()
                        .join("\n"))
                }
                KeyCommand::Revoke { id } => {
                    auth.revoke_api_key(id)
                        .and_then(|c| c.wait_blocking().map_err(Into::into))
                        .map_err(|e| e.to_string())?;
                    Ok(format!("revoked API key {id}"))
                }
            }
        }
    }
}

/// [`remote`] with an optional `Authorization: Bearer` token; errors in either reply shape.
fn remote_with_token(
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Result<Value, String> {
    let mut req = ureq::request(method, &format!("{base}{path}")).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.set("authorization", &format!("Bearer {t}"));
    }
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
            let mut msg = format!(
                "{}: {}",
                v["code"].as_str().unwrap_or("ERROR"),
                v["message"].as_str().unwrap_or("")
            );
            if token.is_none() && v["code"] == "UNAUTHENTICATED" {
                msg.push_str(" (an admin already exists, or the server is not on this machine: pass --token)");
            }
            Err(msg)
        }
        Err(e) => Err(format!("cannot reach the server at {base}: {e}")),
    }
}
