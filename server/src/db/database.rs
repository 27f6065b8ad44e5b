//! The `Database`: environments and collections (the catalog), limits, key layout, and the
//! parsing of client requests into compiled filters, updates and projections.
//!
//! Key layout in the ordered KV store (documented in docs/architecture.md):
//! `e/{env}` → env meta, `c/{env}/{coll}` → collection meta, `d/{env}/{coll}/{_id}` → document JSON.
//! Env and collection names cannot contain `/`, so every prefix scan is exact.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::index::{self, IndexDef, IndexSpec, Indexes};
use super::kv::{Commit, Kv, Op};
use super::projection::Projection;
use super::query::{Direction, Filter, Sort};
use super::schema::Schema;
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
    /// Bumped after every change to a collection's metadata, so caches of what is derived from it
    /// (compiled rules) know when to look again.
    meta_epoch: AtomicU64,
    /// The indexes of each collection, as of a metadata epoch.
    index_cache: RwLock<HashMap<String, (u64, Arc<Indexes>)>>,
    /// Compiled schemas by `env/coll` (`None`: the collection has none), filled on first use and
    /// replaced whenever a collection's metadata is written; only ever changed under the
    /// collection's write lock, so a write never checks against a schema that was replaced.
    schemas: RwLock<HashMap<String, Option<Arc<Schema>>>>,
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
            meta_epoch: AtomicU64::new(0),
            index_cache: RwLock::new(HashMap::new()),
            schemas: RwLock::new(HashMap::new()),
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
        let commit = self.put_collection_meta(key, meta_now())?;
        // a new collection has no schema, whatever an earlier one of the same name had
        self.cache_schema(env, name, None)?;
        Ok(commit)
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
        self.put_collection_meta(coll_key(env, coll), bytes)
    }

    /// Every write of a collection's metadata goes through here (see [`Database::meta_epoch`]).
    fn put_collection_meta(&self, key: Vec<u8>, meta: Vec<u8>) -> Result<Commit, DbError> {
        self.kv.apply(vec![Op::Put(key, meta)])?;
        self.meta_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(self.kv.commit())
    }

    /// Applies `ops` and a new metadata of `env/coll` as one batch (the caller holds the
    /// collection's write lock).
    pub(super) fn apply_with_meta(
        &self,
        env: &str,
        coll: &str,
        meta: &serde_json::Map<String, Value>,
        mut ops: Vec<Op>,
    ) -> Result<Commit, DbError> {
        let bytes = serde_json::to_vec(meta).map_err(|e| DbError::Storage(e.to_string()))?;
        ops.push(Op::Put(coll_key(env, coll), bytes));
        self.kv.apply(ops)?;
        self.meta_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(self.kv.commit())
    }

    /// Applies `ops` and new metadata of several collections of `env` as one batch (a transaction's
    /// commit; the caller holds the write locks of those collections).
    pub(super) fn apply_with_metas(
        &self,
        env: &str,
        metas: &[(String, serde_json::Map<String, Value>)],
        mut ops: Vec<Op>,
    ) -> Result<Commit, DbError> {
        for (coll, meta) in metas {
            let bytes = serde_json::to_vec(meta).map_err(|e| DbError::Storage(e.to_string()))?;
            ops.push(Op::Put(coll_key(env, coll), bytes));
        }
        self.kv.apply(ops)?;
        if !metas.is_empty() {
            self.meta_epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(self.kv.commit())
    }

    /// The names of the collections of `env`.
    pub fn collections_names(&self, env: &str) -> Result<Vec<String>, DbError> {
        let prefix = format!("c/{env}/");
        let mut out = Vec::new();
        self.kv.scan_prefix(prefix.as_bytes(), &mut |k, _| {
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    // ---- indexes ------------------------------------------------------------------------

    /// The indexes of `env/coll` (all states), from a cache kept per metadata epoch.
    pub fn indexes(&self, env: &str, coll: &str) -> Result<Arc<Indexes>, DbError> {
        let key = coll_id(env, coll);
        let epoch = self.meta_epoch();
        if let Some((seen, ixs)) = self.index_cache.read().ok().and_then(|m| m.get(&key).cloned()) {
            if seen == epoch {
                return Ok(ixs);
            }
        }
        let ixs = Arc::new(Indexes::from_meta(env, coll, &self.collection_meta(env, coll)?)?);
        if let Ok(mut m) = self.index_cache.write() {
            m.retain(|_, (seen, _)| *seen == epoch);
            m.insert(key, (epoch, ixs.clone()));
        }
        Ok(ixs)
    }

    /// Defines an index and starts building it in the background (`background == false`: builds
    /// it before returning, for the CLI working on the data dir).
    pub fn create_index(
        self: &Arc<Self>,
        env: &str,
        coll: &str,
        spec: &IndexSpec,
        background: bool,
    ) -> Result<IndexDef, DbError> {
        let name = spec.validate()?;
        let def = {
            let lock = self.lock(&coll_id(env, coll))?;
            let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
            let mut meta = self.collection_meta(env, coll)?;
            let mut defs = index::build::defs_of(&meta)?;
            if let Some(same) = defs
                .iter()
                .find(|d| d.name == name || (d.fields == spec.fields && d.state != index::State::Dropping))
            {
                return Err(DbError::IndexExists(same.name.clone()));
            }
            if defs.len() >= index::MAX_INDEXES {
                return Err(DbError::InvalidParam(format!(
                    "a collection has at most {} indexes",
                    index::MAX_INDEXES
                )));
            }
            let def = IndexDef {
                name,
                id: super::documents::new_id(),
                fields: spec.fields.clone(),
                unique: spec.unique,
                multikey: false,
                state: index::State::Building,
                done: 0,
                total: 0,
                cursor: None,
                error: None,
                created_at: now_ms(),
            };
            defs.push(def.clone());
            meta.insert(
                "indexes".into(),
                serde_json::to_value(&defs).map_err(|e| DbError::Storage(e.to_string()))?,
            );
            drop(self.apply_with_meta(env, coll, &meta, Vec::new())?);
            def
        };
        if background {
            index::build::spawn(self.clone(), env.to_string(), coll.to_string(), def.id.clone());
        } else {
            index::build::run(self, env, coll, &def.id)?;
        }
        Ok(def)
    }

    /// Stops using an index and deletes its entries in the background (`background == false`:
    /// before returning).
    pub fn drop_index(self: &Arc<Self>, env: &str, coll: &str, name: &str, background: bool) -> Result<(), DbError> {
        let id = {
            let lock = self.lock(&coll_id(env, coll))?;
            let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
            let mut meta = self.collection_meta(env, coll)?;
            let mut defs = index::build::defs_of(&meta)?;
            let Some(def) = defs
                .iter_mut()
                .find(|d| d.name == name && d.state != index::State::Dropping)
            else {
                return Err(DbError::IndexNotExist(name.chars().take(128).collect()));
            };
            def.state = index::State::Dropping;
            let id = def.id.clone();
            meta.insert(
                "indexes".into(),
                serde_json::to_value(&defs).map_err(|e| DbError::Storage(e.to_string()))?,
            );
            drop(self.apply_with_meta(env, coll, &meta, Vec::new())?);
            id
        };
        if background {
            index::build::spawn(self.clone(), env.to_string(), coll.to_string(), id);
        } else {
            index::build::run(self, env, coll, &id)?;
        }
        Ok(())
    }

    /// The indexes of `env/coll` with how many entries and bytes each holds.
    pub fn list_indexes(&self, env: &str, coll: &str) -> Result<Vec<Value>, DbError> {
        let ixs = self.indexes(env, coll)?;
        let mut out = Vec::new();
        for ix in ixs.list.iter().filter(|i| i.def.state != index::State::Dropping) {
            let (mut entries, mut bytes) = (0u64, 0u64);
            self.kv.scan_prefix(&ix.prefix, &mut |k, v| {
                entries += 1;
                bytes += (k.len() + v.len()) as u64;
                Ok(ControlFlow::Continue(()))
            })?;
            let mut v = serde_json::to_value(&ix.def).map_err(|e| DbError::Storage(e.to_string()))?;
            if let Value::Object(m) = &mut v {
                m.remove("id");
                m.remove("cursor");
                m.insert("entries".into(), entries.into());
                m.insert("bytes".into(), bytes.into());
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Changes whenever any collection's metadata (rules, …) changes. Read it *before* reading
    /// the metadata a cache derives something from, and keep the derived value only while the
    /// epoch is unchanged.
    pub fn meta_epoch(&self) -> u64 {
        self.meta_epoch.load(Ordering::Acquire)
    }

    /// The schema saved for a collection, as it was set (`None`: the collection has none).
    pub fn collection_schema(&self, env: &str, coll: &str) -> Result<Option<Value>, DbError> {
        Ok(self.collection_meta(env, coll)?.get("schema").cloned())
    }

    /// Sets (`Some`) or removes (`None`) a collection's schema. The schema is compiled first and
    /// refused with `InvalidSchema` if it does not compile; existing documents are not touched.
    pub fn set_collection_schema(
        &self,
        env: &str,
        coll: &str,
        schema: Option<Value>,
    ) -> Result<(Option<Arc<Schema>>, Commit), DbError> {
        self.check_collection(env, coll)?;
        let compiled = schema.map(Schema::compile).transpose()?.map(Arc::new);
        let lock = self.lock(&coll_id(env, coll))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let mut meta = self.collection_meta(env, coll)?;
        match &compiled {
            Some(s) => meta.insert("schema".into(), s.source().clone()),
            None => meta.remove("schema"),
        };
        let bytes = serde_json::to_vec(&meta).map_err(|e| DbError::Storage(e.to_string()))?;
        let commit = self.put_collection_meta(coll_key(env, coll), bytes)?;
        self.cache_schema(env, coll, compiled.clone())?;
        Ok((compiled, commit))
    }

    /// The compiled schema of a collection. Takes the collection's write lock when it has to
    /// load it, so a caller that holds that lock uses [`Database::schema_locked`] instead.
    pub fn schema(&self, env: &str, coll: &str) -> Result<Option<Arc<Schema>>, DbError> {
        if let Some(hit) = self.cached_schema(env, coll)? {
            return Ok(hit);
        }
        self.check_collection(env, coll)?;
        let lock = self.lock(&coll_id(env, coll))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        self.schema_locked(env, coll)
    }

    /// [`Database::schema`] for a caller holding the collection's write lock: compiles the stored
    /// schema on first use (once per collection and process) and caches it.
    pub(super) fn schema_locked(&self, env: &str, coll: &str) -> Result<Option<Arc<Schema>>, DbError> {
        if let Some(hit) = self.cached_schema(env, coll)? {
            return Ok(hit);
        }
        let compiled = match self.collection_meta(env, coll)?.remove("schema") {
            None => None,
            Some(source) => Some(Arc::new(Schema::compile(source).map_err(|e| {
                DbError::Storage(format!("the stored schema of {env}/{coll} does not compile: {e}"))
            })?)),
        };
        self.cache_schema(env, coll, compiled.clone())?;
        Ok(compiled)
    }

    fn cached_schema(&self, env: &str, coll: &str) -> Result<Option<Option<Arc<Schema>>>, DbError> {
        let schemas = self
            .schemas
            .read()
            .map_err(|_| DbError::Storage("lock poisoned".into()))?;
        Ok(schemas.get(&coll_id(env, coll)).cloned())
    }

    /// Replaces the cached schema of a collection; callers hold its write lock. (A future
    /// collection delete must call this too, so a recreated collection starts without a schema.)
    fn cache_schema(&self, env: &str, coll: &str, schema: Option<Arc<Schema>>) -> Result<(), DbError> {
        let mut schemas = self
            .schemas
            .write()
            .map_err(|_| DbError::Storage("lock poisoned".into()))?;
        schemas.insert(coll_id(env, coll), schema);
        Ok(())
    }

    pub(super) fn collection_meta(&self, env: &str, coll: &str) -> Result<serde_json::Map<String, Value>, DbError> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_schema_is_compiled_once_replaced_on_change_and_kept_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path(), Limits::default()).expect("open");
        db.create_collection(DEFAULT_ENV, "c")
            .and_then(|c| c.wait_blocking())
            .expect("create");
        assert!(db.schema(DEFAULT_ENV, "c").expect("schema").is_none());
        let (set, commit) = db
            .set_collection_schema(DEFAULT_ENV, "c", Some(json!({"required": ["a"]})))
            .expect("set");
        commit.wait_blocking().expect("durable");
        let set = set.expect("compiled");
        // every write uses the same compiled schema until it changes
        let first = db.schema(DEFAULT_ENV, "c").expect("schema").expect("some");
        assert!(Arc::ptr_eq(&first, &set));
        assert!(Arc::ptr_eq(
            &first,
            &db.schema(DEFAULT_ENV, "c").expect("schema").expect("some")
        ));
        let (replaced, _) = db
            .set_collection_schema(DEFAULT_ENV, "c", Some(json!({"required": ["b"]})))
            .expect("replace");
        let now = db.schema(DEFAULT_ENV, "c").expect("schema").expect("some");
        assert!(!Arc::ptr_eq(&now, &first));
        assert!(Arc::ptr_eq(&now, &replaced.expect("compiled")));
        assert!(db.insert(DEFAULT_ENV, "c", vec![json!({"a": 1})]).is_err());
        // an invalid schema changes nothing
        assert!(matches!(
            db.set_collection_schema(DEFAULT_ENV, "c", Some(json!({"type": 5}))),
            Err(DbError::InvalidSchema(_))
        ));
        assert!(Arc::ptr_eq(
            &now,
            &db.schema(DEFAULT_ENV, "c").expect("schema").expect("some")
        ));
        db.flush().expect("flush");
        drop(db);
        // reopened: loaded from the metadata and enforced
        let db = Database::open(dir.path(), Limits::default()).expect("reopen");
        assert_eq!(
            db.collection_schema(DEFAULT_ENV, "c").expect("meta"),
            Some(json!({"required": ["b"]}))
        );
        match db.insert(DEFAULT_ENV, "c", vec![json!({"a": 1})]) {
            Err(DbError::SchemaViolation(m)) => assert!(m.contains("\"b\" is a required property"), "{m}"),
            other => panic!("not refused: {:?}", other.map(|r| r.0)),
        }
        let (_, commit) = db.set_collection_schema(DEFAULT_ENV, "c", None).expect("clear");
        commit.wait_blocking().expect("durable");
        assert!(db.schema(DEFAULT_ENV, "c").expect("schema").is_none());
        assert!(db.insert(DEFAULT_ENV, "c", vec![json!({"a": 1})]).is_ok());
    }
}
