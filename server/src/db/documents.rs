//! Document operations: find, count, get by id, insert, update (merge, replace, upsert), remove,
//! and the check of stored documents against a collection's schema.
//!
//! Reads do a point lookup when the filter pins `_id`, else walk the entries of the index the
//! planner picks (`index::plan`; `index::near` for `$near` on a geo index), else scan the
//! collection's key range; every document is matched against the whole filter either way. A
//! `$near` query without an explicit order returns the nearest documents first. Writes hold the collection's write lock while they compute
//! the whole change — documents and index entries — apply it as one atomic batch, release the
//! lock, and hand back a [`Commit`] for durability. Every document a write would store is checked
//! against the collection's schema first.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::database::{coll_id, doc_key, doc_prefix, Database, Find};
use super::geo;
use super::index::near::{NearPlan, NearStats};
use super::index::plan::{self, Plan};
use super::index::{self, IndexWrites};
use super::kv::{Commit, Op, Visit};
use super::query::{Filter, Sort};
use super::scan::{self, Fields};
use super::schema::{Report, Schema, Violation};
use super::update::{set_path, Update};
use super::{value, DbError};

/// Outcome of an update (`updated` counts documents that actually changed, as MongoDB's nModified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateResult {
    pub matched: u64,
    pub updated: u64,
    pub upserted_id: Option<String>,
}

/// How a read reaches its documents.
pub(super) enum Access<'f> {
    Id(&'f str),
    Index(Plan),
    /// `$near` on a geo index: documents come nearest first.
    Near(NearPlan),
    Scan,
}

/// What a read examined (for `explain`).
#[derive(Default)]
pub(super) struct Stats {
    keys: u64,
    docs: u64,
    near: Option<NearStats>,
}

/// The request of an aggregation `$geoNear` stage (see [`Database::geo_near`]).
pub struct GeoNear<'a> {
    /// A GeoJSON Point or a `[longitude, latitude]` pair.
    pub near: &'a Value,
    /// The field holding the geometries; `None`: the field of the collection's only 2dsphere index.
    pub key: Option<&'a str>,
    /// Metres.
    pub min_distance: Option<f64>,
    pub max_distance: Option<f64>,
    /// A query the documents must also match (already in the client's encoding).
    pub query: Option<&'a Value>,
    /// Most documents returned (without a geo index, the scan keeps this many nearest ones).
    pub limit: usize,
    /// Also return the geometry each distance was measured to ([`GeoHit::location`]).
    pub locations: bool,
}

/// One document `$geoNear` found.
pub struct GeoHit {
    pub doc: Value,
    /// Metres from the point to the document's nearest geometry in the `key` field.
    pub distance: f64,
    /// That geometry, when [`GeoNear::locations`] asked for it.
    pub location: Option<Value>,
}

/// A memory budget for what a read holds while it orders documents by distance (the candidates
/// of a `$near` round that are not yet certain, the nearest-so-far of a scan): an aggregation's
/// memory limit.
pub trait Budget {
    /// Charges one held document (its stored bytes and decoded value). Returns what it charged,
    /// to give back with [`Budget::release`], or the error that ends the read.
    fn hold(&self, bytes: &[u8], doc: &Value) -> Result<usize, DbError>;
    /// Gives back what `hold` charged.
    fn release(&self, n: usize);
}

/// No budget: reads whose page size already bounds what they keep.
struct Unbudgeted;

impl Budget for Unbudgeted {
    fn hold(&self, _: &[u8], _: &Value) -> Result<usize, DbError> {
        Ok(0)
    }
    fn release(&self, _: usize) {}
}

/// A document a read holds, with what holding it charged to the budget.
type Held = (usize, Stored);

/// Documents nearest first: distance (radians), what each charged, the document.
type Nearest = Vec<(f64, usize, Stored)>;

/// What one read has charged to a budget; whatever it still holds is given back when it ends.
struct Tally<'b> {
    budget: &'b dyn Budget,
    held: Cell<usize>,
}

impl<'b> Tally<'b> {
    fn new(budget: &'b dyn Budget) -> Tally<'b> {
        Tally {
            budget,
            held: Cell::new(0),
        }
    }

    fn hold(&self, s: &Stored) -> Result<usize, DbError> {
        let n = self.budget.hold(&s.bytes, &s.doc)?;
        self.held.set(self.held.get() + n);
        Ok(n)
    }

    fn release(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
        self.budget.release(n);
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.budget.release(self.held.get());
    }
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

    /// The stored JSON of one document if its `_openid` is exactly `owner` (decoding only that
    /// field): the presets' creator-only read of one document.
    pub fn get_raw_owned_by(&self, env: &str, coll: &str, id: &str, owner: &str) -> Result<Option<Vec<u8>>, DbError> {
        let Some(bytes) = self.get_raw(env, coll, id)? else {
            return Ok(None);
        };
        let doc =
            scan::decode(&bytes, Some(&["_openid"])).map_err(|e| DbError::Storage(format!("corrupt document: {e}")))?;
        Ok((doc.get("_openid").and_then(Value::as_str) == Some(owner)).then_some(bytes))
    }

    /// Matching documents, sorted, paged and projected, as ready-to-send JSON.
    /// Fails with `ResultTooLarge` rather than returning a truncated page.
    pub fn find(&self, env: &str, coll: &str, q: &Find) -> Result<Vec<Box<RawValue>>, DbError> {
        self.check_collection(env, coll)?;
        let access = self.access(env, coll, &q.filter, &q.sort)?;
        self.find_with(env, coll, q, &access).map(|(docs, _)| docs)
    }

    /// The plan `find` would use for `q`, run, with what it read (admins' `explain`).
    pub fn explain(&self, env: &str, coll: &str, q: &Find) -> Result<Value, DbError> {
        self.check_collection(env, coll)?;
        let access = self.access(env, coll, &q.filter, &q.sort)?;
        let plan = match &access {
            Access::Id(id) => serde_json::json!({ "type": "id", "id": id }),
            Access::Index(p) => {
                let mut d = p.describe();
                d["type"] = "index".into();
                d
            }
            Access::Near(_) | Access::Scan => Value::Null,
        };
        let (docs, stats) = self.find_with(env, coll, q, &access)?;
        let plan = match &access {
            Access::Near(p) => {
                let mut d = p.describe(stats.near.as_ref().unwrap_or(&NearStats::default()));
                d["type"] = "geoNear".into();
                d
            }
            Access::Scan => serde_json::json!({ "type": "collectionScan" }),
            _ => plan,
        };
        Ok(serde_json::json!({
            "plan": plan,
            "keysExamined": stats.keys,
            "docsExamined": stats.docs,
            "returned": docs.len(),
        }))
    }

    fn find_with(
        &self,
        env: &str,
        coll: &str,
        q: &Find,
        access: &Access<'_>,
    ) -> Result<(Vec<Box<RawValue>>, Stats), DbError> {
        let want = q.skip.saturating_add(q.limit);
        let mut fields = q.filter.fields();
        fields.extend(q.sort.fields());
        let mut page: Vec<Stored> = Vec::new();
        let by_distance = q.filter.near().is_some() && q.sort.is_empty();
        let in_order = if by_distance {
            matches!(access, Access::Near(_))
        } else {
            q.sort.is_empty() || matches!(access, Access::Index(p) if p.sorted)
        };
        let stats = if by_distance && !in_order {
            let tally = Tally::new(&Unbudgeted);
            let (nearest, stats) = self.nearest_by_scan(env, coll, &q.filter, access, Some(&fields), want, &tally)?;
            page.extend(nearest.into_iter().map(|(_, _, s)| s));
            stats
        } else if in_order {
            self.each_match(env, coll, &q.filter, access, Some(&fields), &mut |m| {
                page.push(m.stored());
                if page.len() >= want {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?
        } else {
            // keep memory at O(page): whenever twice the page has piled up, keep only the best page
            let shrink_at = want.saturating_mul(2).max(64);
            let stats = self.each_match(env, coll, &q.filter, access, Some(&fields), &mut |m| {
                page.push(m.stored());
                if page.len() >= shrink_at {
                    q.sort.sort_vec(&mut page, |s| &s.doc, want);
                }
                ControlFlow::Continue(())
            })?;
            q.sort.sort_vec(&mut page, |s| &s.doc, want);
            stats
        };
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
        Ok((out, stats))
    }

    /// The `want` nearest matches of a `$near` filter read through `access` in any order: all
    /// matches are visited, keeping memory at O(want) (charged to `tally`; each match comes with
    /// what it holds there). Nearest first, ties in reading order.
    #[allow(clippy::too_many_arguments)]
    fn nearest_by_scan(
        &self,
        env: &str,
        coll: &str,
        filter: &Filter,
        access: &Access<'_>,
        fields: Fields<'_>,
        want: usize,
        tally: &Tally<'_>,
    ) -> Result<(Nearest, Stats), DbError> {
        let mut kept: Vec<(f64, u64, usize, Stored)> = Vec::new();
        let shrink_at = want.saturating_mul(2).max(64);
        let by = |a: &(f64, u64, usize, Stored), b: &(f64, u64, usize, Stored)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let keep_nearest = |kept: &mut Vec<(f64, u64, usize, Stored)>| {
            kept.sort_unstable_by(by);
            for (_, _, n, _) in kept.drain(want.min(kept.len())..) {
                tally.release(n);
            }
        };
        let mut seq = 0u64;
        let mut failure = None;
        let stats = self.each_match(env, coll, filter, access, fields, &mut |m| {
            let d = filter.distance(&m.doc).unwrap_or(f64::INFINITY);
            let s = m.stored();
            match tally.hold(&s) {
                Ok(n) => kept.push((d, seq, n, s)),
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            }
            seq += 1;
            if kept.len() >= shrink_at {
                keep_nearest(&mut kept);
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        keep_nearest(&mut kept);
        Ok((kept.into_iter().map(|(d, _, n, s)| (d, n, s)).collect(), stats))
    }

    /// `$geoNear` for the aggregation pipeline: the documents nearest to `req.near` (that match
    /// `req.query`), nearest first, each with its distance in metres to the nearest geometry in
    /// `req.key`. Uses the 2dsphere index on `key` when there is a ready one, else scans.
    pub fn geo_near(&self, env: &str, coll: &str, req: &GeoNear<'_>) -> Result<Vec<(Value, f64)>, DbError> {
        let mut out = Vec::new();
        if req.limit == 0 {
            return Ok(out);
        }
        self.geo_near_each(env, coll, req, None, &Unbudgeted, &mut |hit| {
            out.push((hit.doc, hit.distance));
            if out.len() >= req.limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(out)
    }

    /// [`Database::geo_near`] as a stream: calls `visit` with each document, nearest first, until
    /// it breaks, decoding only `fields` (and what the search reads; `None` = everything).
    ///
    /// Without `key`, the field of the collection's only 2dsphere index is used (an error when it
    /// has none or several). With a ready 2dsphere index on the field, documents come from the
    /// index's growing-cap search, which stops as soon as `visit` breaks; without one the
    /// collection is scanned, keeping the `req.limit` nearest. What either holds along the way is
    /// charged to `budget`.
    pub fn geo_near_each(
        &self,
        env: &str,
        coll: &str,
        req: &GeoNear<'_>,
        fields: Fields<'_>,
        budget: &dyn Budget,
        visit: &mut dyn FnMut(GeoHit) -> ControlFlow<()>,
    ) -> Result<(), DbError> {
        self.check_collection(env, coll)?;
        let filter = self.geo_near_filter(env, coll, req)?;
        let mut wanted: Vec<&str> = Vec::new();
        if let Some(f) = fields {
            wanted.extend(f.iter().copied());
            wanted.extend(filter.fields());
        }
        let fields = fields.map(|_| wanted.as_slice());
        let hit = |doc: Value, radians: f64| GeoHit {
            location: if req.locations {
                filter.near_location(&doc).cloned()
            } else {
                None
            },
            distance: geo::radians_to_metres(radians),
            doc,
        };
        let tally = Tally::new(budget);
        match self.access(env, coll, &filter, &Sort::new(Vec::new()))? {
            Access::Near(plan) => {
                let mut docs = 0;
                self.near_matches(env, coll, &filter, &plan, fields, &tally, &mut docs, &mut |d, m| {
                    visit(hit(m.doc, d))
                })?;
            }
            access => {
                let (nearest, _) = self.nearest_by_scan(env, coll, &filter, &access, fields, req.limit, &tally)?;
                for (d, n, s) in nearest {
                    tally.release(n);
                    if visit(hit(s.doc, d)).is_break() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The filter of a `$geoNear`: its query and `$nearSphere` on the key field.
    fn geo_near_filter(&self, env: &str, coll: &str, req: &GeoNear<'_>) -> Result<Filter, DbError> {
        let key =
            match req.key {
                Some(k) => k.to_string(),
                None => {
                    let indexes = self.indexes(env, coll)?;
                    let geo: Vec<&str> = indexes
                        .list
                        .iter()
                        .filter(|i| i.is_geo() && i.def.state != index::State::Dropping)
                        .map(|i| i.first_field())
                        .collect();
                    match geo.as_slice() {
                        [one] => one.to_string(),
                        [] => return Err(DbError::InvalidCommand(
                            "`$geoNear` needs `key`: the collection has no 2dsphere index (create one on the field \
                             holding the locations, or name that field with `key`)"
                                .into(),
                        )),
                        _ => {
                            return Err(DbError::InvalidCommand(
                                "`$geoNear` needs `key`: the collection has several 2dsphere indexes".into(),
                            ))
                        }
                    }
                }
            };
        let point = match req.near {
            Value::Array(_) => serde_json::json!({"type": "Point", "coordinates": req.near}),
            other => other.clone(),
        };
        let mut near = Map::new();
        near.insert("$geometry".into(), point);
        if let Some(d) = req.max_distance {
            near.insert("$maxDistance".into(), Value::from(d));
        }
        if let Some(d) = req.min_distance {
            near.insert("$minDistance".into(), Value::from(d));
        }
        let mut cond = Map::new();
        cond.insert(key, serde_json::json!({ "$nearSphere": near }));
        let query = match req.query {
            None | Some(Value::Null) => Value::Object(cond),
            Some(q) => serde_json::json!({ "$and": [q, cond] }),
        };
        self.filter(Some(&query))
    }

    /// How many documents match; an index that answers the whole filter counts its entries
    /// without reading documents.
    pub fn count(&self, env: &str, coll: &str, filter: &Filter) -> Result<u64, DbError> {
        self.check_collection(env, coll)?;
        let access = self.access(env, coll, filter, &Sort::new(Vec::new()))?;
        if let Access::Index(plan) = &access {
            if plan.exact {
                return plan.count_entries(self.kv.as_ref());
            }
        }
        let mut n = 0;
        self.each_match(env, coll, filter, &access, Some(&filter.fields()), &mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }

    /// Inserts all documents or none. Returns their `_id`s in order. Each document must match the
    /// collection's schema, if it has one.
    pub fn insert(&self, env: &str, coll: &str, docs: Vec<Value>) -> Result<(Vec<String>, Commit), DbError> {
        self.check_collection(env, coll)?;
        if docs.is_empty() {
            return Err(DbError::InvalidParam("data must contain at least one document".into()));
        }
        let mut prepared = Vec::with_capacity(docs.len());
        for doc in docs {
            prepared.push(self.prepare_new(doc)?);
        }
        // checked before the lock (writers are not held up by it), and again under the lock only
        // if the schema was replaced in between
        let early = self.schema(env, coll)?;
        check_new(early.as_deref(), &prepared)?;
        let lock = self.lock(&coll_id(env, coll))?;
        let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
        let schema = self.schema_locked(env, coll)?;
        let same = match (&early, &schema) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            check_new(schema.as_deref(), &prepared)?;
        }
        let indexes = self.indexes(env, coll)?;
        let mut entries = IndexWrites::new(&indexes);
        let mut ops = Vec::with_capacity(prepared.len());
        let mut ids: Vec<String> = Vec::with_capacity(prepared.len());
        for New { id, doc, bytes } in prepared {
            let key = doc_key(env, coll, &id);
            if ids.contains(&id) || self.kv.get(&key)?.is_some() {
                return Err(DbError::DuplicateId(id));
            }
            entries.change(&id, None, Some(&doc), &|k| self.kv.get(k))?;
            ops.push(Op::Put(key, bytes));
            ids.push(id);
        }
        Ok((ids, self.apply_write(env, coll, ops, entries)?))
    }

    /// Applies `update` to the first (`multi == false`) or every matching document, all or none.
    /// With `upsert` and no match, inserts a document seeded from the query's equality fields.
    /// Every resulting document must match the collection's schema, if it has one.
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
        let schema = self.schema_locked(env, coll)?;
        let targets = self.targets(env, coll, filter, multi, None)?;
        let mut result = UpdateResult {
            matched: targets.len() as u64,
            ..Default::default()
        };
        let indexes = self.indexes(env, coll)?;
        let mut entries = IndexWrites::new(&indexes);
        let mut ops = Vec::new();
        for t in targets {
            let old = t.doc;
            let Value::Object(mut doc) = old.clone() else {
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
            let new = Value::Object(doc);
            let bytes = self.encode_checked(&new)?;
            if let Some(s) = &schema {
                s.require(&new, || match &id {
                    Some(Value::String(id)) => format!("document `{id}`"),
                    _ => "a document".into(),
                })?;
            }
            let id = id.as_ref().and_then(Value::as_str).unwrap_or_default();
            entries.change(id, Some(&old), Some(&new), &|k| self.kv.get(k))?;
            ops.push(Op::Put(t.key, bytes));
        }
        if result.matched == 0 && upsert {
            let New { id, doc, bytes } = self.prepare_new(self.upsert_document(filter, update)?)?;
            if let Some(s) = &schema {
                s.require(&doc, || "the upserted document".into())?;
            }
            let key = doc_key(env, coll, &id);
            if self.kv.get(&key)?.is_some() {
                return Err(DbError::DuplicateId(id));
            }
            entries.change(&id, None, Some(&doc), &|k| self.kv.get(k))?;
            ops.push(Op::Put(key, bytes));
            result.upserted_id = Some(id);
        }
        result.updated = ops.len() as u64 - u64::from(result.upserted_id.is_some());
        if ops.is_empty() {
            return Ok((result, Commit::none()));
        }
        Ok((result, self.apply_write(env, coll, ops, entries)?))
    }

    /// Applies a write's document ops with its index entries, saving the definitions of indexes
    /// that became multikey in the same batch. The caller holds the collection's write lock.
    fn apply_write(
        &self,
        env: &str,
        coll: &str,
        mut ops: Vec<Op>,
        entries: IndexWrites<'_>,
    ) -> Result<Commit, DbError> {
        let (entry_ops, became_multikey) = entries.into_parts();
        ops.extend(entry_ops);
        if became_multikey.is_empty() {
            self.kv.apply(ops)?;
            return Ok(self.kv.commit());
        }
        let mut meta = self.collection_meta(env, coll)?;
        let mut defs = index::build::defs_of(&meta)?;
        defs.iter_mut()
            .filter(|d| became_multikey.contains(&d.id))
            .for_each(|d| d.multikey = true);
        meta.insert(
            "indexes".into(),
            serde_json::to_value(defs).map_err(|e| DbError::Storage(e.to_string()))?,
        );
        self.apply_with_meta(env, coll, &meta, ops)
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
        let indexes = self.indexes(env, coll)?;
        let fields = filter.fields();
        // index entries are computed from the whole document
        let fields = if indexes.any_maintained() {
            None
        } else {
            Some(fields.as_slice())
        };
        let targets = self.targets(env, coll, filter, multi, fields)?;
        let mut entries = IndexWrites::new(&indexes);
        let mut ops = Vec::with_capacity(targets.len());
        for t in targets {
            let id = String::from_utf8_lossy(&t.key[doc_prefix(env, coll).len()..]).into_owned();
            entries.change(&id, Some(&t.doc), None, &|k| self.kv.get(k))?;
            ops.push(Op::Delete(t.key));
        }
        let n = ops.len() as u64;
        if n == 0 {
            return Ok((0, Commit::none()));
        }
        Ok((n, self.apply_write(env, coll, ops, entries)?))
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
        let access = self.access(env, coll, filter, &Sort::new(Vec::new()))?;
        self.each_match(env, coll, filter, &access, fields, &mut |m| {
            out.push(m.stored());
            if multi {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        Ok(out)
    }

    /// How a read reaches its documents: the `_id` the filter pins, an index, or a full scan.
    pub(super) fn access<'f>(
        &self,
        env: &str,
        coll: &str,
        filter: &'f Filter,
        sort: &Sort,
    ) -> Result<Access<'f>, DbError> {
        if let Some(id) = filter.id_equals() {
            return Ok(Access::Id(id));
        }
        let indexes = self.indexes(env, coll)?;
        if let Some((path, near)) = filter.near() {
            let geo = indexes
                .list
                .iter()
                .find(|i| i.def.state == index::State::Ready && i.is_geo() && i.first_field() == path);
            if let Some(ix) = geo {
                return Ok(Access::Near(NearPlan::new(ix.clone(), near)));
            }
        }
        Ok(match plan::choose(&indexes, filter, sort) {
            Some(p) => Access::Index(p),
            None => Access::Scan,
        })
    }

    /// Calls `visit` with every stored document the filter matches, in the order of `access`
    /// (`_id` order for a scan, the index's order for an index), decoding only `fields` (the
    /// filter's own fields must be among them; `None` = everything), until `visit` breaks.
    pub(super) fn each_match(
        &self,
        env: &str,
        coll: &str,
        filter: &Filter,
        access: &Access<'_>,
        fields: Fields<'_>,
        visit: &mut dyn FnMut(Match<'_>) -> ControlFlow<()>,
    ) -> Result<Stats, DbError> {
        let mut stats = Stats::default();
        let mut on_pair = |key: &[u8], bytes: &[u8]| -> Visit {
            stats.docs += 1;
            let doc = scan::decode(bytes, fields).map_err(|e| DbError::Storage(format!("corrupt document: {e}")))?;
            if !filter.matches(&doc) {
                return Ok(ControlFlow::Continue(()));
            }
            Ok(visit(Match { key, bytes, doc }))
        };
        match access {
            Access::Id(id) => {
                let key = doc_key(env, coll, id);
                if let Some(bytes) = self.kv.get(&key)? {
                    let _ = on_pair(&key, &bytes)?; // one document: nothing after it to stop
                }
            }
            Access::Index(plan) => {
                let keys = plan.scan(self.kv.as_ref(), &mut |id| {
                    let key = doc_key(env, coll, id);
                    match self.kv.get(&key)? {
                        Some(bytes) => on_pair(&key, &bytes),
                        None => Ok(ControlFlow::Continue(())),
                    }
                })?;
                stats.keys = keys;
            }
            Access::Near(plan) => {
                let tally = Tally::new(&Unbudgeted);
                let near =
                    self.near_matches(env, coll, filter, plan, fields, &tally, &mut stats.docs, &mut |_, m| {
                        visit(m)
                    })?;
                stats.keys = near.keys;
                stats.near = Some(near);
            }
            Access::Scan => self.kv.scan_prefix(&doc_prefix(env, coll), &mut on_pair)?,
        }
        Ok(stats)
    }

    /// The matches of `filter` through a geo index's `$near` search: `visit` gets each with its
    /// distance (radians), nearest first, until it breaks. The candidates the search holds until
    /// their order is certain are charged to `tally`; `docs` counts the documents read.
    #[allow(clippy::too_many_arguments)]
    fn near_matches(
        &self,
        env: &str,
        coll: &str,
        filter: &Filter,
        plan: &NearPlan,
        fields: Fields<'_>,
        tally: &Tally<'_>,
        docs: &mut u64,
        visit: &mut dyn FnMut(f64, Match<'_>) -> ControlFlow<()>,
    ) -> Result<NearStats, DbError> {
        let mut fetch = |id: &str| -> Result<Option<(f64, Held)>, DbError> {
            let key = doc_key(env, coll, id);
            let Some(bytes) = self.kv.get(&key)? else {
                return Ok(None);
            };
            *docs += 1;
            let doc = scan::decode(&bytes, fields).map_err(|e| DbError::Storage(format!("corrupt document: {e}")))?;
            if !filter.matches(&doc) {
                return Ok(None);
            }
            let d = filter.distance(&doc).unwrap_or(f64::INFINITY);
            let s = Stored { key, bytes, doc };
            Ok(Some((d, (tally.hold(&s)?, s))))
        };
        plan.run(self.kv.as_ref(), &mut fetch, &mut |d, (n, s)| {
            tally.release(n);
            visit(
                d,
                Match {
                    key: &s.key,
                    bytes: &s.bytes,
                    doc: s.doc,
                },
            )
        })
    }

    /// How many stored documents of a collection do not match its schema (every document matches
    /// when there is none), with the first `sample` of them and why. Reads without the write lock:
    /// under concurrent writes the count is that of a moment during the scan.
    pub fn schema_violations(&self, env: &str, coll: &str, sample: usize) -> Result<Report, DbError> {
        let schema = self.schema(env, coll)?;
        let mut report = Report {
            schema_set: schema.is_some(),
            checked: 0,
            violating: 0,
            sample: Vec::new(),
        };
        self.kv.scan_prefix(&doc_prefix(env, coll), &mut |_, bytes| {
            report.checked += 1;
            let Some(schema) = &schema else {
                return Ok(ControlFlow::Continue(()));
            };
            let doc = scan::decode(bytes, None).map_err(|e| DbError::Storage(format!("corrupt document: {e}")))?;
            if let Some(failures) = schema.check(&doc) {
                report.violating += 1;
                if report.sample.len() < sample {
                    report.sample.push(Violation {
                        id: doc.get("_id").and_then(Value::as_str).unwrap_or_default().to_string(),
                        failure_count: failures.total,
                        failures: failures.listed,
                    });
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(report)
    }

    /// Normalizes and checks a new document, fills in `_id` (first key), and encodes it.
    pub(super) fn prepare_new(&self, doc: Value) -> Result<New, DbError> {
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
        Ok(New { id, doc, bytes })
    }

    /// Checks field names, depth and size of a document about to be stored; returns its bytes.
    pub(super) fn encode_checked(&self, doc: &Value) -> Result<Vec<u8>, DbError> {
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

/// A new document ready to store: its `_id`, its value (what a schema checks) and its bytes.
pub(super) struct New {
    pub(super) id: String,
    pub(super) doc: Value,
    pub(super) bytes: Vec<u8>,
}

/// Checks new documents against a schema; a batch names the failing document by position.
fn check_new(schema: Option<&Schema>, docs: &[New]) -> Result<(), DbError> {
    let Some(schema) = schema else { return Ok(()) };
    for (i, new) in docs.iter().enumerate() {
        schema.require(&new.doc, || match docs.len() {
            1 => "the document".into(),
            n => format!("document {} of {n} (`{}`)", i + 1, new.id),
        })?;
    }
    Ok(())
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
