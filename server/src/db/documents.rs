//! Document operations: find, count, get by id, insert, update (merge, replace, upsert), remove.
//!
//! Reads scan the collection's key range (indexes arrive later) or do a point lookup when the filter
//! pins `_id`. Writes hold the collection's write lock while they compute the whole change, apply
//! it as one atomic batch, release the lock, and hand back a [`Commit`] for durability.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::database::{coll_id, doc_key, doc_prefix, Database, Find};
use super::kv::{Commit, Op, Visit};
use super::query::Filter;
use super::scan::{self, Fields};
use super::update::{set_path, Update};
use super::{value, DbError};

/// Outcome of an update (`updated` counts documents that actually changed, as MongoDB's nModified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateResult {
    pub matched: u64,
    pub updated: u64,
    pub upserted_id: Option<String>,
}

/// A stored document: its key, its JSON bytes and its parsed value (only the fields the scan
/// asked for; see `scan::decode`).
struct Stored {
    key: Vec<u8>,
    bytes: Vec<u8>,
    doc: Value,
}

/// A matching document during a scan, borrowed from the store until it is kept.
pub(super) struct Match<'a> {
    key: &'a [u8],
    bytes: &'a [u8],
    pub(super) doc: Value,
}

impl Match<'_> {
    fn stored(self) -> Stored {
        Stored {
            key: self.key.to_vec(),
            bytes: self.bytes.to_vec(),
            doc: self.doc,
        }
    }
}

impl Database {
    /// The stored JSON of one document, without parsing it (the GET-by-id fast path).
    pub fn get_raw(&self, env: &str, coll: &str, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.check_collection(env, coll)?;
        self.kv.get(&doc_key(env, coll, id))
    }

    /// The stored JSON of one document if it matches `filter` (decoding only the fields the filter
    /// reads): a point read under a rule's condition without going through a query.
    pub fn get_raw_matching(
        &self,
        env: &str,
        coll: &str,
        id: &str,
        filter: &Filter,
    ) -> Result<Option<Vec<u8>>, DbError> {
        let Some(bytes) = self.get_raw(env, coll, id)? else {
            return Ok(None);
        };
        let doc = scan::decode(&bytes, Some(&filter.fields()))
            .map_err(|e| DbError::Storage(format!("corrupt document: {e}")))?;
        Ok(filter.matches(&doc).then_some(bytes))
    }

    /// Matching documents, sorted, paged and projected, as ready-to-send JSON.
    /// Fails with `ResultTooLarge` rather than returning a truncated page.
    pub fn find(&self, env: &str, coll: &str, q: &Find) -> Result<Vec<Box<RawValue>>, DbError> {
        self.check_collection(env, coll)?;
        let want = q.skip.saturating_add(q.limit);
        let mut fields = q.filter.fields();
        fields.extend(q.sort.fields());
        let mut page: Vec<Stored> = Vec::new();
        if q.sort.is_empty() {
            self.each_match(env, coll, &q.filter, Some(&fields), &mut |m| {
                page.push(m.stored());
                if page.len() >= want {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
        } else {
            // keep memory at O(page): whenever twice the page has piled up, keep only the best page
            let shrink_at = want.saturating_mul(2).max(64);
            self.each_match(env, coll, &q.filter, Some(&fields), &mut |m| {
                page.push(m.stored());
                if page.len() >= shrink_at {
                    q.sort.sort_vec(&mut page, |s| &s.doc, want);
                }
                ControlFlow::Continue(())
            })?;
            q.sort.sort_vec(&mut page, |s| &s.doc, want);
        }
        let mut total = 0usize;
        let mut out = Vec::with_capacity(page.len().saturating_sub(q.skip));
        for s in page.into_iter().skip(q.skip) {
            let raw = if q.projection.is_identity() {
                String::from_utf8(s.bytes).map_err(|e| DbError::Storage(e.to_string()))?
            } else {
                let doc = scan::decode(&s.bytes, None).map_err(|e| DbError::Storage(e.to_string()))?;
                serde_json::to_string(&q.projection.apply(&doc)).map_err(|e| DbError::Storage(e.to_string()))?
            };
            total += raw.len() + 1;
            if total > self.limits.max_result_bytes {
                return Err(DbError::ResultTooLarge(self.limits.max_result_bytes));
            }
            out.push(RawValue::from_string(raw).map_err(|e| DbError::Storage(e.to_string()))?);
        }
        Ok(out)
    }

    pub fn count(&self, env: &str, coll: &str, filter: &Filter) -> Result<u64, DbError> {
        self.check_collection(env, coll)?;
        let mut n = 0;
        self.each_match(env, coll, filter, Some(&filter.fields()), &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }

    /// Inserts all documents or none. Returns their `_id`s in order.
    pub fn insert(&self, env: &str, coll: &str, docs: Vec<Value>) -> Result<(Vec<String>, Commit), DbError> {
        self.check_collection(env, coll)?;
        if docs.is_empty() {
            return Err(DbError::InvalidParam("data must contain at least one document".into()));
        }
        let mut prepared = Vec::with_capacity(docs.len());
        for doc in docs {
            prepared.push(self.prepare_new(doc)?);
        }
        let lock = self.lock(&coll_id(env, coll))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let mut ops = Vec::with_capacity(prepared.len());
        let mut ids: Vec<String> = Vec::with_capacity(prepared.len());
        for (id, bytes) in prepared {
            let key = doc_key(env, coll, &id);
            if ids.contains(&id) || self.kv.get(&key)?.is_some() {
                return Err(DbError::DuplicateId(id));
            }
            ops.push(Op::Put(key, bytes));
            ids.push(id);
        }
        self.kv.apply(ops)?;
        Ok((ids, self.kv.commit()))
    }

    /// Applies `update` to the first (`multi == false`) or every matching document, all or none.
    /// With `upsert` and no match, inserts a document seeded from the query's equality fields.
    pub fn update(
        &self,
        env: &str,
        coll: &str,
        filter: &Filter,
        update: &Update,
        multi: bool,
        upsert: bool,
    ) -> Result<(UpdateResult, Commit), DbError> {
        self.check_collection(env, coll)?;
        let lock = self.lock(&coll_id(env, coll))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let targets = self.targets(env, coll, filter, multi, None)?;
        let mut result = UpdateResult {
            matched: targets.len() as u64,
            ..Default::default()
        };
        let mut ops = Vec::new();
        for t in targets {
            let Value::Object(mut doc) = t.doc else {
                return Err(DbError::Storage("stored document is not an object".into()));
            };
            let id = doc.get("_id").cloned();
            let owner = doc.get("_openid").cloned();
            if update.apply(&mut doc)?.is_empty() {
                continue;
            }
            // a replacement keeps the creator, like `_id`, unless it names one itself
            if let (true, Some(owner)) = (update.is_replacement(), owner) {
                doc.entry("_openid").or_insert(owner);
            }
            if doc.get("_id") != id.as_ref() {
                return Err(DbError::InvalidCommand("_id cannot be updated".into()));
            }
            ops.push(Op::Put(t.key, self.encode_checked(&Value::Object(doc))?));
        }
        if result.matched == 0 && upsert {
            let (id, bytes) = self.prepare_new(self.upsert_document(filter, update)?)?;
            let key = doc_key(env, coll, &id);
            if self.kv.get(&key)?.is_some() {
                return Err(DbError::DuplicateId(id));
            }
            ops.push(Op::Put(key, bytes));
            result.upserted_id = Some(id);
        }
        result.updated = ops.len() as u64 - u64::from(result.upserted_id.is_some());
        if ops.is_empty() {
            return Ok((result, Commit::none()));
        }
        self.kv.apply(ops)?;
        Ok((result, self.kv.commit()))
    }

    /// The document an upsert inserts when nothing matches: the query's equality fields with the
    /// update applied (as MongoDB does). It has no `_id` unless the query pins one.
    pub fn upsert_document(&self, filter: &Filter, update: &Update) -> Result<Value, DbError> {
        let mut seed = Map::new();
        for (path, v) in filter.equality_fields() {
            set_path(&mut seed, &path, v)?;
        }
        update.apply(&mut seed)?;
        Ok(Value::Object(seed))
    }

    /// Removes the first (`multi == false`) or every matching document. Returns how many.
    pub fn remove(&self, env: &str, coll: &str, filter: &Filter, multi: bool) -> Result<(u64, Commit), DbError> {
        self.check_collection(env, coll)?;
        let lock = self.lock(&coll_id(env, coll))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let fields = filter.fields();
        let targets = self.targets(env, coll, filter, multi, Some(&fields))?;
        let ops: Vec<Op> = targets.into_iter().map(|t| Op::Delete(t.key)).collect();
        let n = ops.len() as u64;
        if n == 0 {
            return Ok((0, Commit::none()));
        }
        self.kv.apply(ops)?;
        Ok((n, self.kv.commit()))
    }

    fn targets(
        &self,
        env: &str,
        coll: &str,
        filter: &Filter,
        multi: bool,
        fields: Fields<'_>,
    ) -> Result<Vec<Stored>, DbError> {
        let mut out = Vec::new();
        self.each_match(env, coll, filter, fields, &mut |m| {
            out.push(m.stored());
            if multi {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        Ok(out)
    }

    /// Calls `visit` with every stored document the filter matches, in `_id` order (a point lookup
    /// when the filter pins `_id`), decoding only `fields` (the filter's own fields must be among
    /// them; `None` = everything), until `visit` breaks.
    pub(super) fn each_match(
        &self,
        env: &str,
        coll: &str,
        filter: &Filter,
        fields: Fields<'_>,
        visit: &mut dyn FnMut(Match<'_>) -> ControlFlow<()>,
    ) -> Result<(), DbError> {
        let mut on_pair = |key: &[u8], bytes: &[u8]| -> Visit {
            let doc = scan::decode(bytes, fields).map_err(|e| DbError::Storage(format!("corrupt document: {e}")))?;
            if !filter.matches(&doc) {
                return Ok(ControlFlow::Continue(()));
            }
            Ok(visit(Match { key, bytes, doc }))
        };
        if let Some(id) = filter.id_equals() {
            let key = doc_key(env, coll, id);
            if let Some(bytes) = self.kv.get(&key)? {
                let _ = on_pair(&key, &bytes)?; // one document: nothing after it to stop
            }
            return Ok(());
        }
        self.kv.scan_prefix(&doc_prefix(env, coll), &mut on_pair)
    }

    /// Normalizes and checks a new document, fills in `_id` (first key), and encodes it.
    fn prepare_new(&self, doc: Value) -> Result<(String, Vec<u8>), DbError> {
        let Value::Object(fields) = self.normalize(doc)? else {
            return Err(DbError::InvalidParam("a document must be a JSON object".into()));
        };
        let id = match fields.get("_id") {
            Some(Value::String(s)) => {
                validate_id(s)?;
                s.clone()
            }
            Some(_) => return Err(DbError::InvalidParam("_id must be a string".into())),
            None => new_id(),
        };
        let mut doc = Map::with_capacity(fields.len() + 1);
        doc.insert("_id".into(), Value::String(id.clone()));
        doc.extend(fields.into_iter().filter(|(k, _)| k != "_id"));
        let doc = Value::Object(doc);
        let bytes = self.encode_checked(&doc)?;
        Ok((id, bytes))
    }

    /// Checks field names, depth and size of a document about to be stored; returns its bytes.
    fn encode_checked(&self, doc: &Value) -> Result<Vec<u8>, DbError> {
        value::validate_document(doc, self.limits.max_depth)?;
        let bytes = serde_json::to_vec(doc).map_err(|e| DbError::Storage(e.to_string()))?;
        if bytes.len() > self.limits.max_document_bytes {
            return Err(DbError::DocumentTooLarge {
                size: bytes.len(),
                max: self.limits.max_document_bytes,
            });
        }
        Ok(bytes)
    }
}

/// `_id`s are 1–256 bytes without control characters.
pub fn validate_id(id: &str) -> Result<(), DbError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(DbError::InvalidParam(
            "_id must be 1-256 bytes without control characters".into(),
        ));
    }
    Ok(())
}

/// A new `_id`: 32 lowercase hex chars — seconds since the epoch, a per-process random part and a
/// counter, so ids are unique and roughly insertion-ordered (good key locality).
pub fn new_id() -> String {
    static STATE: OnceLock<(u32, AtomicU64)> = OnceLock::new();
    let (process, counter) = STATE.get_or_init(|| (rand::random::<u32>(), AtomicU64::new(rand::random::<u64>())));
    let secs = (super::database::now_ms() / 1000) as u32;
    format!(
        "{secs:08x}{process:08x}{:016x}",
        counter.fetch_add(1, Ordering::Relaxed)
    )
}
