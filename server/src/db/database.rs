//! The `Database`: environments and collections (the catalog), limits, key layout, and the
//! parsing of client requests into compiled filters, updates and projections.
//!
//! Key layout in the ordered KV store (documented in docs/architecture.md):
//! `e/{env}` → env meta, `c/{env}/{coll}` → collection meta, `d/{env}/{coll}/{_id}` → document JSON.
//! Env and collection names cannot contain `/`, so every prefix scan is exact.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::kv::{Commit, Kv, Op};
use super::projection::Projection;
use super::query::{Direction, Filter, Sort};
use super::sled_kv::SledKv;
use super::update::Update;
use super::{value, DbError};

pub const DEFAULT_ENV: &str = "default";

/// Request and size limits (CloudBase's defaults; the document and depth limits are configurable).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_document_bytes: usize,
    pub max_depth: usize,
    /// A reply's documents may add up to this many bytes (CloudBase: 1 MB, error -602001).
    pub max_result_bytes: usize,
    pub default_limit: usize,
    pub max_limit: usize,
    pub max_skip: usize,
    /// Bytes an aggregation may hold in memory (buffering stages and `$lookup`), estimated.
    pub aggregate_memory_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 1024 * 1024,
            max_depth: value::DEFAULT_MAX_DEPTH,
            max_result_bytes: 1024 * 1024,
            default_limit: 100,
            max_limit: 1000,
            max_skip: 10_000_000,
            aggregate_memory_limit: 100 * 1024 * 1024,
        }
    }
}

/// A parsed list query: what to match, in which order, which page, which fields.
pub struct Find {
    pub filter: Filter,
    pub sort: Sort,
    pub skip: usize,
    pub limit: usize,
    pub projection: Projection,
}

/// The raw parts of a list query as both protocols carry them (JSON values, any of them absent).
#[derive(Default)]
pub struct FindParts<'a> {
    pub query: Option<&'a Value>,
    pub order: Option<&'a Value>,
    pub offset: Option<&'a Value>,
    pub limit: Option<&'a Value>,
    pub projection: Option<&'a Value>,
    /// A lower cap on `limit` for this caller (client callers); larger limits are lowered silently.
    pub cap: Option<usize>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvInfo {
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectionInfo {
    pub name: String,
    pub created_at: i64,
    pub count: u64,
}

pub struct Database {
    pub(super) kv: Arc<dyn Kv>,
    pub(super) limits: Limits,
    /// One writer at a time per collection: read-modify-write never loses an update, and a
    /// multi-document write is computed whole before it is applied as one atomic batch.
    write_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Database {
    /// Opens the store under `dir` (creating it), and the `default` env on first start.
    pub fn open(dir: &Path, limits: Limits) -> Result<Database, DbError> {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Storage(format!("{}: {e}", dir.display())))?;
        let kv = SledKv::open(&dir.join("db"))?;
        let db = Database {
            kv: Arc::new(kv),
            limits,
            write_locks: Mutex::new(HashMap::new()),
        };
        if db.kv.get(&env_key(DEFAULT_ENV))?.is_none() {
            // flushed inline: `open` may run inside an async runtime, where waiting on a Commit would block it
            drop(db.create_env(DEFAULT_ENV)?);
            db.kv.flush()?;
        }
        Ok(db)
    }

    /// The store itself, shared with the other domain modules that keep their own keys in it
    /// (auth: `a/…`, settings: `s/…`).
    pub fn kv(&self) -> Arc<dyn Kv> {
        self.kv.clone()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Makes every acknowledged and unacknowledged write durable (shutdown).
    pub fn flush(&self) -> Result<(), DbError> {
        self.kv.flush()
    }

    // ---- environments -------------------------------------------------------------------

    pub fn create_env(&self, name: &str) -> Result<Commit, DbError> {
        validate_env_name(name)?;
        let lock = self.lock("")?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let key = env_key(name);
        if self.kv.get(&key)?.is_some() {
            return Err(DbError::EnvExists(name.to_string()));
        }
        self.kv.apply(vec![Op::Put(key, meta_now())])?;
        Ok(self.kv.commit())
    }

    pub fn envs(&self) -> Result<Vec<EnvInfo>, DbError> {
        let mut out = Vec::new();
        self.kv.scan_prefix(b"e/", &mut |k, v| {
            let name = String::from_utf8_lossy(&k[2..]).into_owned();
            out.push(EnvInfo {
                name,
                created_at: created_at(v),
            });
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    pub fn check_env(&self, env: &str) -> Result<(), DbError> {
        if validate_env_name(env).is_err() || self.kv.get(&env_key(env))?.is_none() {
            return Err(DbError::InvalidEnv(env.chars().take(64).collect()));
        }
        Ok(())
    }

    // ---- collections --------------------------------------------------------------------

    pub fn create_collection(&self, env: &str, name: &str) -> Result<Commit, DbError> {
        self.check_env(env)?;
        validate_collection_name(name)?;
        let lock = self.lock(&coll_id(env, name))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let key = coll_key(env, name);
        if self.kv.get(&key)?.is_some() {
            return Err(DbError::CollectionExists(name.to_string()));
        }
        self.kv.apply(vec![Op::Put(key, meta_now())])?;
        Ok(self.kv.commit())
    }

    pub fn collections(&self, env: &str) -> Result<Vec<CollectionInfo>, DbError> {
        self.check_env(env)?;
        let prefix = format!("c/{env}/");
        let mut out = Vec::new();
        self.kv.scan_prefix(prefix.as_bytes(), &mut |k, v| {
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push(CollectionInfo {
                name,
                created_at: created_at(v),
                count: 0,
            });
            Ok(ControlFlow::Continue(()))
        })?;
        for c in &mut out {
            self.kv.scan_prefix(&doc_prefix(env, &c.name), &mut |_, _| {
                c.count += 1;
                Ok(ControlFlow::Continue(()))
            })?;
        }
        Ok(out)
    }

    /// Fails with `CollectionNotExist` (or `InvalidEnv`) unless `env/coll` exists.
    pub fn check_collection(&self, env: &str, coll: &str) -> Result<(), DbError> {
        if validate_collection_name(coll).is_err() || self.kv.get(&coll_key(env, coll))?.is_none() {
            self.check_env(env)?;
            return Err(DbError::CollectionNotExist(coll.chars().take(64).collect()));
        }
        Ok(())
    }

    /// The security rules saved for a collection (`None`: never set, which means the default).
    /// Rules are stored in the collection's metadata; the `rules` module gives them meaning.
    pub fn collection_rules(&self, env: &str, coll: &str) -> Result<Option<Value>, DbError> {
        let meta = self.collection_meta(env, coll)?;
        Ok(meta.get("rules").cloned())
    }

    /// Saves a collection's rules (validated by the caller).
    pub fn set_collection_rules(&self, env: &str, coll: &str, rules: Value) -> Result<Commit, DbError> {
        let lock = self.lock(&coll_id(env, coll))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let mut meta = self.collection_meta(env, coll)?;
        meta.insert("rules".into(), rules);
        let bytes = serde_json::to_vec(&meta).map_err(|e| DbError::Storage(e.to_string()))?;
        self.kv.apply(vec![Op::Put(coll_key(env, coll), bytes)])?;
        Ok(self.kv.commit())
    }

    fn collection_meta(&self, env: &str, coll: &str) -> Result<serde_json::Map<String, Value>, DbError> {
        let bytes = match validate_collection_name(coll) {
            Ok(()) => self.kv.get(&coll_key(env, coll))?,
            Err(_) => None,
        };
        let Some(bytes) = bytes else {
            self.check_env(env)?;
            return Err(DbError::CollectionNotExist(coll.chars().take(64).collect()));
        };
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(DbError::Storage(format!("corrupt metadata of collection {env}/{coll}"))),
        }
    }

    pub(super) fn lock(&self, id: &str) -> Result<Arc<Mutex<()>>, DbError> {
        let mut locks = self
            .write_locks
            .lock()
            .map_err(|_| DbError::Storage("lock poisoned".into()))?;
        Ok(locks.entry(id.to_string()).or_default().clone())
    }

    // ---- request parsing ----------------------------------------------------------------

    /// Normalizes client encodings (EJSON, `$date`, server dates) and checks nesting depth.
    pub fn normalize(&self, v: Value) -> Result<Value, DbError> {
        value::normalize(v, now_ms(), self.limits.max_depth)
    }

    /// Compiles a `where` query; `None` and `{}` match everything.
    pub fn filter(&self, query: Option<&Value>) -> Result<Filter, DbError> {
        match query {
            None | Some(Value::Null) => Filter::parse(&json!({})),
            Some(q) => Filter::parse(&self.normalize(q.clone())?),
        }
    }

    pub fn update_spec(&self, data: &Value, merge: bool) -> Result<Update, DbError> {
        Update::parse(&self.normalize(data.clone())?, merge)
    }

    pub fn find_spec(&self, parts: FindParts<'_>) -> Result<Find, DbError> {
        // GATEWAY query strings carry canonical EJSON numbers ({"$numberInt":"5"})
        let number = |v: Option<&Value>| v.map(|v| self.normalize(v.clone())).transpose();
        let (limit, offset) = (number(parts.limit)?, number(parts.offset)?);
        let limit = match count_param("limit", limit.as_ref(), self.limits.max_limit)? {
            None | Some(0) => self.limits.default_limit,
            Some(n) => n,
        };
        let limit = parts.cap.map_or(limit, |cap| limit.min(cap));
        let skip = count_param("offset", offset.as_ref(), self.limits.max_skip)?.unwrap_or(0);
        let projection = match parts.projection {
            None | Some(Value::Null) => Projection::parse(&json!({}))?,
            Some(p) => Projection::parse(p)?,
        };
        Ok(Find {
            filter: self.filter(parts.query)?,
            sort: parse_order(parts.order)?,
            skip,
            limit,
            projection,
        })
    }
}

/// `limit`/`offset`: a non-negative integer no larger than `max` (numbers or numeric strings).
fn count_param(name: &str, v: Option<&Value>, max: usize) -> Result<Option<usize>, DbError> {
    let n = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n >= 0 && (n as u64) <= max as u64 => Ok(Some(n as usize)),
        _ => Err(DbError::InvalidParam(format!(
            "{name} must be an integer between 0 and {max}"
        ))),
    }
}

/// `order`: `[{field, direction: "asc"|"desc"}]` (direction may also be 1/-1).
fn parse_order(order: Option<&Value>) -> Result<Sort, DbError> {
    let items = match order {
        None | Some(Value::Null) => return Ok(Sort::new(vec![])),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(DbError::InvalidParam(
                "order must be an array of {field, direction}".into(),
            ))
        }
    };
    if items.len() > 32 {
        return Err(DbError::InvalidParam("order takes at most 32 fields".into()));
    }
    let mut fields = Vec::with_capacity(items.len());
    for item in items {
        let field = item.get("field").and_then(Value::as_str).filter(|f| valid_path(f));
        let dir = match item.get("direction") {
            None => Some(Direction::Asc),
            Some(d) if d == "asc" || d == 1 => Some(Direction::Asc),
            Some(d) if d == "desc" || d == -1 => Some(Direction::Desc),
            Some(_) => None,
        };
        match (field, dir) {
            (Some(f), Some(d)) => fields.push((f.to_string(), d)),
            _ => {
                return Err(DbError::InvalidParam(
                    "each order item must be {\"field\": <path>, \"direction\": \"asc\"|\"desc\"}".into(),
                ))
            }
        }
    }
    Ok(Sort::new(fields))
}

fn valid_path(p: &str) -> bool {
    !p.is_empty() && p.len() <= 1024 && p.split('.').all(|s| !s.is_empty() && !s.starts_with('$'))
}

/// Env names: 1–64 of letters, digits, `_`, `-`, starting with a letter or digit.
pub fn validate_env_name(name: &str) -> Result<(), DbError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DbError::InvalidName(format!(
            "invalid environment name `{}`: use 1-64 letters, digits, `_` or `-`, starting with a letter or digit",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// Collection names (CloudBase's rule): 1–32 of letters, digits, `_`, `-`, `.`, starting with a
/// letter or digit.
pub fn validate_collection_name(name: &str) -> Result<(), DbError> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(DbError::InvalidName(format!(
            "invalid collection name `{}`: use 1-32 letters, digits, `_`, `-` or `.`, starting with a letter or digit",
            name.chars().take(64).collect::<String>()
        )))
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn meta_now() -> Vec<u8> {
    json!({ "created_at": now_ms() }).to_string().into_bytes()
}

fn created_at(meta: &[u8]) -> i64 {
    serde_json::from_slice::<Value>(meta)
        .ok()
        .and_then(|v| v["created_at"].as_i64())
        .unwrap_or(0)
}

fn env_key(env: &str) -> Vec<u8> {
    format!("e/{env}").into_bytes()
}

fn coll_key(env: &str, coll: &str) -> Vec<u8> {
    format!("c/{env}/{coll}").into_bytes()
}

pub(super) fn coll_id(env: &str, coll: &str) -> String {
    format!("{env}/{coll}")
}

pub(super) fn doc_prefix(env: &str, coll: &str) -> Vec<u8> {
    format!("d/{env}/{coll}/").into_bytes()
}

pub(super) fn doc_key(env: &str, coll: &str, id: &str) -> Vec<u8> {
    let mut k = doc_prefix(env, coll);
    k.extend_from_slice(id.as_bytes());
    k
}
