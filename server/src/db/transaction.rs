//! Transactions: single-document reads and writes buffered per transaction and applied as one
//! atomic batch at commit, with optimistic concurrency control.
//!
//! A [`Txn`] belongs to one env. Every operation names one document by `_id` (CloudBase allows
//! nothing else in a transaction). Reads see the transaction's own buffered writes first; a
//! document read from the store is remembered in the *read set* by the SHA-256 of the bytes seen
//! (or "absent"). Reading the same document again and finding other bytes ends the transaction
//! with a conflict at once (it could never commit), so reads are repeatable. Writes (`insert`,
//! `update`, `set`, `remove`) read the document first and buffer the whole new document (or its
//! deletion) in the *write set*; nothing reaches the store before commit.
//!
//! Commit takes the write locks of every collection the transaction touched (read or written), in
//! name order so two commits never deadlock, checks that every document of the read set still has
//! the bytes the transaction saw (a normal write or another transaction changed one: conflict,
//! nothing written), then computes the index entries of all its writes through the same
//! [`IndexWrites`] as normal writes (a unique index violated at commit refuses the commit) and
//! applies documents, entries and any index definition that became multikey as one atomic batch.
//! Validation and apply under the locks of everything read make commits serializable: for
//! single-document operations there are no predicate reads, so no phantoms.
//!
//! [`Transactions`] is the registry of transactions clients drive over HTTP: random ids bound to
//! their owner and env, a deadline (default 10 s) after which a transaction is discarded, and
//! bounds on how many are open and how much one may buffer. [`Database::run_transaction`] is the
//! in-process form for server code (cloud functions), retried on conflict.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::database::{coll_id, doc_key, Database};
use super::documents::{New, UpdateResult};
use super::index::{self, IndexWrites};
use super::kv::{Commit, Op};
use super::query::Filter;
use super::update::Update;
use super::{scan, DbError};

/// How long a client transaction may stay open.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Most transactions open at once on the server.
pub const DEFAULT_MAX_OPEN: usize = 1000;
/// Most operations (reads and writes, failed ones included) in one client transaction.
pub const DEFAULT_MAX_OPS: usize = 100;
/// Most bytes of new documents one transaction may buffer.
pub const MAX_TXN_BYTES: usize = 16 * 1024 * 1024;
/// Most bytes all open client transactions together may buffer.
pub const MAX_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Most transactions one end user may have open at once.
pub const MAX_OPEN_PER_USER: usize = 16;
/// Most operations in one in-process transaction ([`Database::run_transaction`]).
pub const RUN_MAX_OPS: usize = 1000;
/// How many times [`Database::run_transaction`] runs its closure before giving up on conflicts.
pub const RUN_ATTEMPTS: usize = 5;
/// How long the end of a transaction is remembered, to say why its id no longer works.
const ENDED_KEPT: Duration = Duration::from_secs(300);
/// Most ended transactions remembered.
const ENDED_MAX: usize = 10_000;

/// SHA-256 of the bytes a transaction saw; `None`: the document did not exist.
type Seen = Option<[u8; 32]>;

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

struct Read {
    coll: String,
    seen: Seen,
}

/// A buffered write: the whole new document (`None`: deleted) and its encoded bytes.
struct Pending {
    coll: String,
    id: String,
    doc: Option<Value>,
    bytes: Vec<u8>,
}

/// Bytes buffered by all open client transactions together.
struct Budget {
    used: AtomicUsize,
    max: usize,
}

/// One transaction's read set and write set. See the module docs.
pub struct Txn {
    env: String,
    reads: HashMap<Vec<u8>, Read>,
    writes: BTreeMap<Vec<u8>, Pending>,
    ops: usize,
    bytes: usize,
    max_ops: usize,
    max_bytes: usize,
    budget: Option<Arc<Budget>>,
}

impl Drop for Txn {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

fn conflict(coll: &str, id: &str) -> DbError {
    DbError::TransactionConflict(format!(
        "transaction conflict: document `{coll}/{id}` was changed by another write since this transaction read it; \
         nothing was written, run the transaction again"
    ))
}

/// The one `_id` a filter inside a transaction must pin.
fn single_id(filter: &Filter) -> Result<String, DbError> {
    filter.id_equals().map(str::to_string).ok_or_else(|| {
        DbError::InvalidParam(
            "a transaction reads and writes single documents: the query must pin `_id` (e.g. {\"_id\": \"x\"})".into(),
        )
    })
}

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Storage(format!("corrupt document: {e}"))
}

impl Txn {
    fn new(env: &str, max_ops: usize, max_bytes: usize, budget: Option<Arc<Budget>>) -> Txn {
        Txn {
            env: env.to_string(),
            reads: HashMap::new(),
            writes: BTreeMap::new(),
            ops: 0,
            bytes: 0,
            max_ops,
            max_bytes,
            budget,
        }
    }

    pub fn env(&self) -> &str {
        &self.env
    }

    /// Counts `n` operations; refused beyond the limit. Failed operations count too: they may
    /// have grown the read set.
    fn count_ops(&mut self, n: usize) -> Result<(), DbError> {
        if self.ops.saturating_add(n) > self.max_ops {
            return Err(DbError::TransactionTooLarge(format!(
                "a transaction may have at most {} operations",
                self.max_ops
            )));
        }
        self.ops += n;
        Ok(())
    }

    /// The document as this transaction sees it: its own buffered write, else the store (the
    /// first time remembered in the read set, later checked against it).
    fn view(&mut self, db: &Database, coll: &str, id: &str) -> Result<Option<Value>, DbError> {
        let key = doc_key(&self.env, coll, id);
        if let Some(p) = self.writes.get(&key) {
            return Ok(p.doc.clone());
        }
        let bytes = db.kv.get(&key)?;
        let seen = bytes.as_deref().map(digest);
        match self.reads.get(&key) {
            Some(first) if first.seen != seen => return Err(conflict(coll, id)),
            Some(_) => {}
            None => {
                self.reads.insert(
                    key,
                    Read {
                        coll: coll.to_string(),
                        seen,
                    },
                );
            }
        }
        bytes.map(|b| scan::decode(&b, None).map_err(corrupt)).transpose()
    }

    /// Buffers writes, all or none (the byte limits are checked for all of them first).
    fn stage(&mut self, writes: Vec<(Vec<u8>, Pending)>) -> Result<(), DbError> {
        let old: usize = writes
            .iter()
            .filter_map(|(k, _)| self.writes.get(k))
            .map(|p| p.bytes.len())
            .sum();
        let new: usize = writes.iter().map(|(_, p)| p.bytes.len()).sum();
        let total = (self.bytes + new).saturating_sub(old);
        if total > self.max_bytes {
            return Err(DbError::TransactionTooLarge(format!(
                "a transaction may buffer at most {} bytes of documents",
                self.max_bytes
            )));
        }
        if let Some(b) = &self.budget {
            if total > self.bytes {
                let grow = total - self.bytes;
                let before = b.used.fetch_add(grow, Ordering::AcqRel);
                if before + grow > b.max {
                    b.used.fetch_sub(grow, Ordering::AcqRel);
                    return Err(DbError::TransactionLimit(format!(
                        "open transactions buffer more than {} bytes together; retry later",
                        b.max
                    )));
                }
            } else {
                b.used.fetch_sub(self.bytes - total, Ordering::AcqRel);
            }
        }
        self.bytes = total;
        self.writes.extend(writes);
        Ok(())
    }

    /// The document `filter` pins, if it exists (as this transaction sees it) and matches.
    pub fn get(&mut self, db: &Database, coll: &str, filter: &Filter) -> Result<Option<Value>, DbError> {
        db.check_collection(&self.env, coll)?;
        let id = single_id(filter)?;
        self.count_ops(1)?;
        Ok(self.view(db, coll, &id)?.filter(|d| filter.matches(d)))
    }

    /// Inserts documents (each one operation), all or none. Returns their `_id`s.
    pub fn insert(&mut self, db: &Database, coll: &str, docs: Vec<Value>) -> Result<Vec<String>, DbError> {
        db.check_collection(&self.env, coll)?;
        if docs.is_empty() {
            return Err(DbError::InvalidParam("data must contain at least one document".into()));
        }
        self.count_ops(docs.len())?;
        let mut staged: Vec<(Vec<u8>, Pending)> = Vec::with_capacity(docs.len());
        let mut ids = Vec::with_capacity(docs.len());
        for doc in docs {
            let New { id, doc, bytes } = db.prepare_new(doc)?;
            if ids.contains(&id) || self.view(db, coll, &id)?.is_some() {
                return Err(DbError::DuplicateId(id));
            }
            let pending = Pending {
                coll: coll.to_string(),
                id: id.clone(),
                doc: Some(doc),
                bytes,
            };
            staged.push((doc_key(&self.env, coll, &id), pending));
            ids.push(id);
        }
        self.stage(staged)?;
        Ok(ids)
    }

    /// Applies `update` to the document `filter` pins if it matches; with `upsert` and no match,
    /// inserts the document seeded from the filter's equality fields (as normal updates do).
    pub fn update(
        &mut self,
        db: &Database,
        coll: &str,
        filter: &Filter,
        update: &Update,
        upsert: bool,
    ) -> Result<UpdateResult, DbError> {
        db.check_collection(&self.env, coll)?;
        let id = single_id(filter)?;
        self.count_ops(1)?;
        let current = self.view(db, coll, &id)?;
        let Some(old) = current.as_ref().filter(|d| filter.matches(d)) else {
            if !upsert {
                return Ok(UpdateResult::default());
            }
            let New { id: new_id, doc, bytes } = db.prepare_new(db.upsert_document(filter, update)?)?;
            if current.is_some() || (new_id != id && self.view(db, coll, &new_id)?.is_some()) {
                return Err(DbError::DuplicateId(new_id));
            }
            let pending = Pending {
                coll: coll.to_string(),
                id: new_id.clone(),
                doc: Some(doc),
                bytes,
            };
            self.stage(vec![(doc_key(&self.env, coll, &new_id), pending)])?;
            return Ok(UpdateResult {
                upserted_id: Some(new_id),
                ..UpdateResult::default()
            });
        };
        let Value::Object(mut doc) = old.clone() else {
            return Err(DbError::Storage("stored document is not an object".into()));
        };
        let owner = doc.get("_openid").cloned();
        let mut result = UpdateResult {
            matched: 1,
            ..UpdateResult::default()
        };
        if update.apply(&mut doc)?.is_empty() {
            return Ok(result);
        }
        // a replacement keeps the creator, like `_id`, unless it names one itself
        if let (true, Some(owner)) = (update.is_replacement(), owner) {
            doc.entry("_openid").or_insert(owner);
        }
        if doc.get("_id").and_then(Value::as_str) != Some(id.as_str()) {
            return Err(DbError::InvalidCommand("_id cannot be updated".into()));
        }
        let new = Value::Object(doc);
        let bytes = db.encode_checked(&new)?;
        let pending = Pending {
            coll: coll.to_string(),
            id: id.clone(),
            doc: Some(new),
            bytes,
        };
        self.stage(vec![(doc_key(&self.env, coll, &id), pending)])?;
        result.updated = 1;
        Ok(result)
    }

    /// Deletes the document `filter` pins if it exists and matches. Returns 1 or 0.
    pub fn remove(&mut self, db: &Database, coll: &str, filter: &Filter) -> Result<u64, DbError> {
        db.check_collection(&self.env, coll)?;
        let id = single_id(filter)?;
        self.count_ops(1)?;
        if !self.view(db, coll, &id)?.is_some_and(|d| filter.matches(&d)) {
            return Ok(0);
        }
        let pending = Pending {
            coll: coll.to_string(),
            id: id.clone(),
            doc: None,
            bytes: Vec::new(),
        };
        self.stage(vec![(doc_key(&self.env, coll, &id), pending)])?;
        Ok(1)
    }

    /// Validates the read set and applies the write set with its index entries as one atomic
    /// batch (see the module docs). Nothing is written on any error.
    pub fn commit(self, db: &Database) -> Result<Commit, DbError> {
        let colls: BTreeSet<&str> = self
            .reads
            .values()
            .map(|r| r.coll.as_str())
            .chain(self.writes.values().map(|p| p.coll.as_str()))
            .collect();
        if colls.is_empty() {
            return Ok(Commit::none());
        }
        let locks = colls
            .iter()
            .map(|c| db.lock(&coll_id(&self.env, c)))
            .collect::<Result<Vec<_>, _>>()?;
        let _guards = locks
            .iter()
            .map(|l| l.lock().map_err(|_| DbError::Storage("lock poisoned".into())))
            .collect::<Result<Vec<_>, _>>()?;
        // every written document was read first: its current bytes are the `old` of its entries
        let mut current: HashMap<&[u8], Option<Vec<u8>>> = HashMap::new();
        for (key, read) in &self.reads {
            let now = db.kv.get(key)?;
            if now.as_deref().map(digest) != read.seen {
                let id = String::from_utf8_lossy(&key[doc_key(&self.env, &read.coll, "").len()..]).into_owned();
                return Err(conflict(&read.coll, &id));
            }
            if self.writes.contains_key(key) {
                current.insert(key, now);
            }
        }
        let mut by_coll: BTreeMap<&str, Vec<(&Vec<u8>, &Pending)>> = BTreeMap::new();
        for (key, p) in &self.writes {
            by_coll.entry(p.coll.as_str()).or_default().push((key, p));
        }
        let mut ops = Vec::new();
        let mut metas = Vec::new();
        for (coll, writes) in by_coll {
            db.check_collection(&self.env, coll)?;
            let indexes = db.indexes(&self.env, coll)?;
            let schema = db.schema_locked(&self.env, coll)?;
            let mut entries = IndexWrites::new(&indexes);
            let mut changes = Vec::with_capacity(writes.len());
            for (key, p) in writes {
                if let (Some(s), Some(doc)) = (&schema, &p.doc) {
                    s.require(doc, || format!("document `{}`", p.id))?;
                }
                let old = match current.get(key.as_slice()) {
                    Some(Some(bytes)) => Some(scan::decode(bytes, None).map_err(corrupt)?),
                    Some(None) => None,
                    None => return Err(DbError::Storage("a transaction wrote a document it never read".into())),
                };
                if old.is_none() && p.doc.is_none() {
                    continue; // inserted and deleted again inside the transaction
                }
                ops.push(match p.doc {
                    Some(_) => Op::Put(key.clone(), p.bytes.clone()),
                    None => Op::Delete(key.clone()),
                });
                changes.push((p, old));
            }
            let lookup = |k: &[u8]| db.kv.get(k);
            if changes.len() == 1 {
                let (p, old) = &changes[0];
                entries.change(&p.id, old.as_ref(), p.doc.as_ref(), &lookup)?;
            } else {
                // every old entry goes before any new one is taken, so the outcome does not depend
                // on the order of the writes (two documents may even swap unique values)
                for (p, old) in &changes {
                    entries.change(&p.id, old.as_ref(), None, &lookup)?;
                }
                for (p, _) in &changes {
                    entries.change(&p.id, None, p.doc.as_ref(), &lookup)?;
                }
            }
            let (entry_ops, became_multikey) = entries.into_parts();
            ops.extend(last_wins(entry_ops));
            if !became_multikey.is_empty() {
                metas.push((coll.to_string(), multikey_meta(db, &self.env, coll, &became_multikey)?));
            }
        }
        if ops.is_empty() {
            return Ok(Commit::none());
        }
        db.apply_with_metas(&self.env, &metas, ops)
    }
}

/// The ops with only the last op of each key, in first-seen order (an entry deleted and put
/// again by the two passes of a commit becomes one put).
fn last_wins(ops: Vec<Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    let mut at: HashMap<Vec<u8>, usize> = HashMap::with_capacity(ops.len());
    for op in ops {
        let key = match &op {
            Op::Put(k, _) | Op::Delete(k) => k.clone(),
        };
        match at.get(&key) {
            Some(&i) => out[i] = op,
            None => {
                at.insert(key, out.len());
                out.push(op);
            }
        }
    }
    out
}

/// The metadata of `env/coll` with the indexes `became` marked multikey.
fn multikey_meta(db: &Database, env: &str, coll: &str, became: &[String]) -> Result<Map<String, Value>, DbError> {
    let mut meta = db.collection_meta(env, coll)?;
    let mut defs = index::build::defs_of(&meta)?;
    defs.iter_mut()
        .filter(|d| became.contains(&d.id))
        .for_each(|d| d.multikey = true);
    meta.insert(
        "indexes".into(),
        serde_json::to_value(defs).map_err(|e| DbError::Storage(e.to_string()))?,
    );
    Ok(meta)
}

/// A transaction of server code, with by-`_id` shorthands (see [`Database::run_transaction`]).
pub struct Tx<'a> {
    db: &'a Database,
    txn: &'a mut Txn,
}

impl Tx<'_> {
    fn id_filter(&self, id: &str) -> Result<Filter, DbError> {
        self.db.filter(Some(&serde_json::json!({ "_id": id })))
    }

    /// The document `coll/id`, if it exists.
    pub fn get(&mut self, coll: &str, id: &str) -> Result<Option<Value>, DbError> {
        let filter = self.id_filter(id)?;
        self.txn.get(self.db, coll, &filter)
    }

    /// Inserts a document (its `_id` if it has one, else a new one); returns the `_id`.
    pub fn insert(&mut self, coll: &str, doc: Value) -> Result<String, DbError> {
        let mut ids = self.txn.insert(self.db, coll, vec![doc])?;
        Ok(ids.pop().unwrap_or_default())
    }

    /// `doc(id).update(data)`: operators, plain fields as `$set`.
    pub fn update(&mut self, coll: &str, id: &str, data: &Value) -> Result<UpdateResult, DbError> {
        let filter = self.id_filter(id)?;
        let update = self.db.update_spec(data, true)?;
        self.txn.update(self.db, coll, &filter, &update, false)
    }

    /// `doc(id).set(doc)`: replaces the document, or creates it.
    pub fn set(&mut self, coll: &str, id: &str, doc: &Value) -> Result<UpdateResult, DbError> {
        let filter = self.id_filter(id)?;
        let update = self.db.update_spec(doc, false)?;
        self.txn.update(self.db, coll, &filter, &update, true)
    }

    /// `doc(id).remove()`: 1 if it existed.
    pub fn delete(&mut self, coll: &str, id: &str) -> Result<u64, DbError> {
        let filter = self.id_filter(id)?;
        self.txn.remove(self.db, coll, &filter)
    }

    /// The underlying transaction, for filter-based operations.
    pub fn txn(&mut self) -> &mut Txn {
        self.txn
    }
}

impl Database {
    /// A new in-process transaction on `env` (no deadline, [`RUN_MAX_OPS`] operations).
    pub fn begin(&self, env: &str) -> Result<Txn, DbError> {
        self.check_env(env)?;
        Ok(Txn::new(env, RUN_MAX_OPS, MAX_TXN_BYTES, None))
    }

    /// Runs `f` in a transaction on `env` and commits it; on a conflict (in `f` or at commit) runs
    /// it again, up to [`RUN_ATTEMPTS`] times, with a short random backoff. An error from `f`
    /// discards the transaction (nothing is written) and is returned as it is. The returned
    /// [`Commit`] resolves once the writes are durable.
    ///
    /// ```
    /// # use lightbase::db::{Database, DbError, Limits};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), DbError> {
    /// # let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.to_string()))?;
    /// # let db = Database::open(dir.path(), Limits::default())?;
    /// # for c in ["accounts", "log"] { db.create_collection("default", c)?.wait_blocking()?; }
    /// # let docs = vec![json!({"_id": "alice", "balance": 100}), json!({"_id": "bob", "balance": 20})];
    /// # db.insert("default", "accounts", docs)?.1.wait_blocking()?;
    /// let (moved, commit) = db.run_transaction("default", |tx| {
    ///     let from = tx.get("accounts", "alice")?.and_then(|d| d["balance"].as_i64()).unwrap_or(0);
    ///     if from < 30 {
    ///         return Err(DbError::InvalidParam("insufficient funds".into()));
    ///     }
    ///     tx.update("accounts", "alice", &json!({"$inc": {"balance": -30}}))?;
    ///     tx.update("accounts", "bob", &json!({"$inc": {"balance": 30}}))?;
    ///     tx.insert("log", json!({"from": "alice", "to": "bob", "amount": 30}))?;
    ///     Ok(30)
    /// })?;
    /// commit.wait_blocking()?; // durable (from async code: `commit.wait().await?`)
    /// # assert_eq!(moved, 30);
    /// # let bob: serde_json::Value = serde_json::from_slice(&db.get_raw("default", "accounts", "bob")?.unwrap_or_default()).unwrap_or_default();
    /// # assert_eq!(bob["balance"], 50);
    /// # Ok(())
    /// # }
    /// ```
    pub fn run_transaction<T>(
        &self,
        env: &str,
        mut f: impl FnMut(&mut Tx<'_>) -> Result<T, DbError>,
    ) -> Result<(T, Commit), DbError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut txn = self.begin(env)?;
            let outcome = f(&mut Tx {
                db: self,
                txn: &mut txn,
            })
            .and_then(|v| Ok((v, txn.commit(self)?)));
            match outcome {
                Err(DbError::TransactionConflict(_)) if attempt < RUN_ATTEMPTS => {
                    let cap = 1u64 << attempt.min(6);
                    std::thread::sleep(Duration::from_millis(rand::random_range(0..=cap)));
                }
                other => return other,
            }
        }
    }
}

/// Limits of client transactions (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct TxnLimits {
    pub ttl: Duration,
    pub max_open: usize,
    pub max_ops: usize,
}

impl Default for TxnLimits {
    fn default() -> Self {
        TxnLimits {
            ttl: DEFAULT_TTL,
            max_open: DEFAULT_MAX_OPEN,
            max_ops: DEFAULT_MAX_OPS,
        }
    }
}

/// Why a transaction id no longer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Committed,
    RolledBack,
    Expired,
    /// A conflict (or a unique index at commit) aborted it.
    Aborted,
}

/// The transaction of an open id; `None` once a commit has taken it out.
type Slot = Arc<Mutex<Option<Txn>>>;

struct Open {
    owner: String,
    env: String,
    deadline: Instant,
    txn: Slot,
}

struct Gone {
    owner: String,
    env: String,
    why: Ended,
    at: Instant,
}

#[derive(Default)]
struct Registry {
    open: HashMap<String, Open>,
    ended: HashMap<String, Gone>,
    ended_order: VecDeque<String>,
}

impl Registry {
    fn end(&mut self, id: &str, owner: String, env: String, why: Ended) {
        if self.ended.len() >= ENDED_MAX {
            if let Some(oldest) = self.ended_order.pop_front() {
                self.ended.remove(&oldest);
            }
        }
        let gone = Gone {
            owner,
            env,
            why,
            at: Instant::now(),
        };
        if self.ended.insert(id.to_string(), gone).is_none() {
            self.ended_order.push_back(id.to_string());
        }
    }

    /// The error for an id that is not open for `owner` in `env` (what became of it, if it was
    /// theirs; nothing about anyone else's).
    fn missing(&self, id: &str, owner: &str, env: &str, ttl: Duration) -> DbError {
        let shown: String = id.chars().take(64).collect();
        match self.ended.get(id).filter(|g| g.owner == owner && g.env == env) {
            Some(g) if g.why == Ended::Expired => DbError::TransactionExpired(format!(
                "transaction `{shown}` expired: it was open longer than {} s and was discarded; nothing it did was written",
                ttl.as_secs_f64()
            )),
            Some(g) => DbError::TransactionNotExist(format!(
                "transaction `{shown}` is over: it was {}",
                match g.why {
                    Ended::Committed => "committed",
                    Ended::RolledBack => "rolled back",
                    Ended::Aborted => "aborted by a conflict or a failed commit (nothing was written)",
                    Ended::Expired => "expired",
                }
            )),
            None => DbError::TransactionNotExist(format!("transaction `{shown}` does not exist")),
        }
    }
}

/// The transactions clients drive over HTTP. See the module docs.
pub struct Transactions {
    limits: TxnLimits,
    budget: Arc<Budget>,
    inner: Mutex<Registry>,
    stop_sweeper: OnceLock<mpsc::Sender<()>>,
}

impl Transactions {
    pub fn new(limits: TxnLimits) -> Arc<Transactions> {
        Arc::new(Transactions {
            limits,
            budget: Arc::new(Budget {
                used: AtomicUsize::new(0),
                max: MAX_TOTAL_BYTES,
            }),
            inner: Mutex::new(Registry::default()),
            stop_sweeper: OnceLock::new(),
        })
    }

    pub fn limits(&self) -> TxnLimits {
        self.limits
    }

    fn registry(&self) -> Result<std::sync::MutexGuard<'_, Registry>, DbError> {
        self.inner
            .lock()
            .map_err(|_| DbError::Storage("transaction registry poisoned".into()))
    }

    /// Discards expired transactions every `every` on a thread of its own, until the registry is
    /// dropped.
    pub fn start_sweeper(self: &Arc<Self>, every: Duration) {
        let (tx, rx) = mpsc::channel::<()>();
        if self.stop_sweeper.set(tx).is_err() {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("lightbase-txn-sweeper".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(mpsc::RecvTimeoutError::Timeout) => match weak.upgrade() {
                        Some(txns) => {
                            txns.sweep();
                        }
                        None => return,
                    },
                    _ => return,
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the transaction sweeper; expired transactions are discarded on use");
        }
    }

    /// Discards expired transactions and forgets old ends; returns how many expired.
    pub fn sweep(&self) -> usize {
        let Ok(mut reg) = self.inner.lock() else { return 0 };
        let now = Instant::now();
        let expired: Vec<String> = reg
            .open
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            if let Some(o) = reg.open.remove(id) {
                reg.end(id, o.owner, o.env, Ended::Expired);
            }
        }
        while let Some(oldest) = reg.ended_order.front() {
            if reg
                .ended
                .get(oldest)
                .is_some_and(|g| now.duration_since(g.at) < ENDED_KEPT)
            {
                break;
            }
            if let Some(oldest) = reg.ended_order.pop_front() {
                reg.ended.remove(&oldest);
            }
        }
        expired.len()
    }

    /// How many transactions are open.
    pub fn open_count(&self) -> usize {
        self.inner.lock().map(|r| r.open.len()).unwrap_or(0)
    }

    /// Opens a transaction on `env` for `owner` and returns its id. `per_owner` caps how many
    /// `owner` may have open (end users; `None` for admins).
    pub fn begin(&self, db: &Database, env: &str, owner: &str, per_owner: Option<usize>) -> Result<String, DbError> {
        db.check_env(env)?;
        let mut reg = self.registry()?;
        if reg.open.len() >= self.limits.max_open {
            return Err(DbError::TransactionLimit(format!(
                "{} transactions are open on this server, the most allowed; commit or roll back some, or retry later",
                self.limits.max_open
            )));
        }
        if let Some(cap) = per_owner {
            if reg.open.values().filter(|o| o.owner == owner).count() >= cap {
                return Err(DbError::TransactionLimit(format!(
                    "this user has {cap} transactions open, the most allowed; commit or roll back one first"
                )));
            }
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let txn = Txn::new(env, self.limits.max_ops, MAX_TXN_BYTES, Some(self.budget.clone()));
        reg.open.insert(
            id.clone(),
            Open {
                owner: owner.to_string(),
                env: env.to_string(),
                deadline: Instant::now() + self.limits.ttl,
                txn: Arc::new(Mutex::new(Some(txn))),
            },
        );
        Ok(id)
    }

    /// The open transaction `id` of `owner` in `env`; an expired one is ended here.
    fn find(&self, id: &str, owner: &str, env: &str) -> Result<Slot, DbError> {
        let mut reg = self.registry()?;
        match reg.open.get(id) {
            Some(o) if o.owner == owner && o.env == env => {
                if o.deadline > Instant::now() {
                    return Ok(o.txn.clone());
                }
                if let Some(o) = reg.open.remove(id) {
                    reg.end(id, o.owner, o.env, Ended::Expired);
                }
                Err(reg.missing(id, owner, env, self.limits.ttl))
            }
            _ => Err(reg.missing(id, owner, env, self.limits.ttl)),
        }
    }

    /// Takes transaction `id` out of the open ones (commit, rollback), ending it with `why`.
    fn take(&self, id: &str, owner: &str, env: &str, why: Ended) -> Result<Slot, DbError> {
        let mut reg = self.registry()?;
        let expired = match reg.open.get(id) {
            Some(o) if o.owner == owner && o.env == env => o.deadline <= Instant::now(),
            _ => return Err(reg.missing(id, owner, env, self.limits.ttl)),
        };
        let Some(o) = reg.open.remove(id) else {
            return Err(reg.missing(id, owner, env, self.limits.ttl));
        };
        reg.end(id, o.owner, o.env, if expired { Ended::Expired } else { why });
        if expired {
            return Err(reg.missing(id, owner, env, self.limits.ttl));
        }
        Ok(o.txn)
    }

    /// Runs one operation on transaction `id`. A conflict ends the transaction; any other error
    /// leaves it as it was before the operation.
    pub fn with<T>(
        &self,
        id: &str,
        owner: &str,
        env: &str,
        f: impl FnOnce(&mut Txn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let slot = self.find(id, owner, env)?;
        let mut guard = slot
            .lock()
            .map_err(|_| DbError::Storage("transaction poisoned".into()))?;
        let Some(txn) = guard.as_mut() else {
            // committed while this operation waited for it
            drop(guard);
            return Err(self.registry()?.missing(id, owner, env, self.limits.ttl));
        };
        let out = f(txn);
        if let Err(DbError::TransactionConflict(_)) = &out {
            drop(guard);
            let mut reg = self.registry()?;
            if let Some(o) = reg.open.remove(id) {
                reg.end(id, o.owner, o.env, Ended::Aborted);
            }
        }
        out
    }

    /// Commits transaction `id` (see [`Txn::commit`]); it is over either way.
    pub fn commit(&self, db: &Database, id: &str, owner: &str, env: &str) -> Result<Commit, DbError> {
        let slot = self.take(id, owner, env, Ended::Committed)?;
        // waits for an operation still running on it
        let txn = slot
            .lock()
            .map_err(|_| DbError::Storage("transaction poisoned".into()))?
            .take();
        let Some(txn) = txn else {
            return Err(self.registry()?.missing(id, owner, env, self.limits.ttl));
        };
        let out = txn.commit(db);
        if out.is_err() {
            let mut reg = self.registry()?;
            if let Some(g) = reg.ended.get_mut(id) {
                g.why = Ended::Aborted;
            }
        }
        out
    }

    /// Discards transaction `id`.
    pub fn rollback(&self, id: &str, owner: &str, env: &str) -> Result<(), DbError> {
        self.take(id, owner, env, Ended::RolledBack).map(drop)
    }
}

#[cfg(test)]
mod tests;
