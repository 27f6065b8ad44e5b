//! Background index builds and drops. A build walks the collection in `_id` order, a chunk at a
//! time; each chunk's entries and the build's progress (`cursor`, `done`) are written in one atomic
//! batch under the collection's write lock, so reads and writes go on between chunks, a restart
//! resumes after the last chunk, and writes made meanwhile (which already maintain a building
//! index) are never lost or duplicated. A drop deletes the entries a chunk at a time, then the
//! definition.

use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::Value;

use super::keys::prefix_end;
use super::{Index, IndexDef, State};
use crate::db::database::{coll_id, doc_key, doc_prefix, Database};
use crate::db::kv::Op;
use crate::db::scan;
use crate::db::DbError;

/// Documents (or entries, when dropping) per chunk: a chunk holds the collection's write lock for
/// a few milliseconds.
const CHUNK: usize = 1000;

/// Runs the pending work of one index (build or drop) on its own thread.
pub fn spawn(db: Arc<Database>, env: String, coll: String, id: String) {
    let spawned = std::thread::Builder::new().name("index-build".into()).spawn(move || {
        if let Err(e) = run(&db, &env, &coll, &id) {
            tracing::error!(env, coll, index = id, error = %e, "index build or drop stopped");
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start an index build thread");
    }
}

/// Resumes every build and drop a restart interrupted.
pub fn resume(db: &Arc<Database>) -> Result<(), DbError> {
    for env in db.envs()? {
        for coll in db.collections_names(&env.name)? {
            for ix in db.indexes(&env.name, &coll)?.list.iter() {
                if matches!(ix.def.state, State::Building | State::Dropping) {
                    tracing::info!(env = env.name, coll, index = ix.def.name, "resuming index work");
                    spawn(db.clone(), env.name.clone(), coll.clone(), ix.def.id.clone());
                }
            }
        }
    }
    Ok(())
}

/// Builds or drops index `id` of `env/coll` to the end (blocking).
pub fn run(db: &Database, env: &str, coll: &str, id: &str) -> Result<(), DbError> {
    let mut total_known = false;
    loop {
        let Some(def) = current(db, env, coll, id)? else {
            return Ok(());
        };
        let more = match def.state {
            State::Building => {
                if !total_known && def.done == 0 {
                    let total = count_documents(db, env, coll)?;
                    let lock = db.lock(&coll_id(env, coll))?;
                    let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
                    update(db, env, coll, id, Vec::new(), |d| d.total = total)?;
                }
                total_known = true;
                build_chunk(db, env, coll, id)?
            }
            State::Dropping => drop_chunk(db, env, coll, id)?,
            State::Ready | State::Failed => false,
        };
        if !more {
            return Ok(());
        }
    }
}

fn current(db: &Database, env: &str, coll: &str, id: &str) -> Result<Option<IndexDef>, DbError> {
    match db.indexes(env, coll) {
        Ok(ixs) => Ok(ixs.list.iter().find(|i| i.def.id == id).map(|i| i.def.clone())),
        Err(DbError::CollectionNotExist(_) | DbError::InvalidEnv(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn count_documents(db: &Database, env: &str, coll: &str) -> Result<u64, DbError> {
    let mut n = 0;
    db.kv.scan_prefix(&doc_prefix(env, coll), &mut |_, _| {
        n += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(n)
}

/// Indexes the next chunk of documents; false when the build is over (ready or failed).
fn build_chunk(db: &Database, env: &str, coll: &str, id: &str) -> Result<bool, DbError> {
    let lock = db.lock(&coll_id(env, coll))?;
    let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
    let Some(def) = current(db, env, coll, id)? else {
        return Ok(false);
    };
    if def.state != State::Building {
        return Ok(false);
    }
    let ix = Index::new(env, coll, def.clone());
    let prefix = doc_prefix(env, coll);
    let start = match &def.cursor {
        Some(last) => [doc_key(env, coll, last).as_slice(), &[0]].concat(),
        None => prefix.clone(),
    };
    let end = prefix_end(&prefix).unwrap_or_else(|| vec![u8::MAX]);
    let mut ops = Vec::new();
    let mut claimed = std::collections::HashMap::new();
    let mut last = None;
    let mut n = 0u64;
    let mut multikey = def.multikey;
    let mut failure = None;
    db.kv.scan_range(&start, &end, false, &mut |key, bytes| {
        let doc_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let doc: Value = scan::decode(bytes, None).map_err(|e| DbError::Storage(format!("corrupt document: {e}")))?;
        let (keys, mk) = match ix.keys(&doc_id, &doc) {
            Ok(k) => k,
            Err(e) => {
                failure = Some(e.to_string());
                return Ok(ControlFlow::Break(()));
            }
        };
        multikey |= mk;
        for k in keys {
            if ix.def.unique {
                let holder = match claimed.get(&k) {
                    Some(h) => Some(std::borrow::Cow::Borrowed(h)),
                    None => db
                        .kv
                        .get(&k)?
                        .map(|v| std::borrow::Cow::Owned(String::from_utf8_lossy(&v).into_owned())),
                };
                if holder.as_deref().is_some_and(|h| *h != doc_id) {
                    failure = Some(format!(
                        "documents `{}` and `{doc_id}` have the same value {}",
                        holder.unwrap_or_default(),
                        ix.describe(&doc)
                    ));
                    return Ok(ControlFlow::Break(()));
                }
                claimed.insert(k.clone(), doc_id.clone());
            }
            ops.push(Op::Put(k, doc_id.clone().into_bytes()));
        }
        n += 1;
        last = Some(doc_id);
        Ok(if n as usize >= CHUNK {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    if let Some(error) = failure {
        tracing::warn!(env, coll, index = def.name, error, "index build failed");
        update(db, env, coll, id, Vec::new(), |d| {
            d.state = State::Failed;
            d.error = Some(error);
        })?;
        return Ok(false);
    }
    let finished = (n as usize) < CHUNK;
    update(db, env, coll, id, ops, |d| {
        d.done += n;
        d.multikey = multikey;
        if last.is_some() {
            d.cursor = last;
        }
        if finished {
            d.state = State::Ready;
            d.cursor = None;
            d.total = d.total.max(d.done);
        }
    })?;
    if finished {
        tracing::info!(env, coll, index = def.name, "index ready");
    }
    Ok(!finished)
}

/// Deletes the next chunk of entries; when none are left, the definition. False when done.
fn drop_chunk(db: &Database, env: &str, coll: &str, id: &str) -> Result<bool, DbError> {
    let lock = db.lock(&coll_id(env, coll))?;
    let _guard = lock.lock().map_err(|_| DbError::Storage("lock poisoned".into()))?;
    let prefix = super::entries_prefix(env, coll, id);
    let mut ops = Vec::new();
    db.kv.scan_prefix(&prefix, &mut |k, _| {
        ops.push(Op::Delete(k.to_vec()));
        Ok(if ops.len() >= CHUNK {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    if ops.len() >= CHUNK {
        db.kv.apply(ops)?;
        drop(db.kv.commit());
        return Ok(true);
    }
    let mut meta = db.collection_meta(env, coll)?;
    let mut defs = defs_of(&meta)?;
    defs.retain(|d| d.id != id);
    meta.insert(
        "indexes".into(),
        serde_json::to_value(defs).map_err(|e| DbError::Storage(e.to_string()))?,
    );
    drop(db.apply_with_meta(env, coll, &meta, ops)?);
    Ok(false)
}

/// Applies `ops` with index `id`'s definition changed by `f`, atomically. The caller holds the
/// collection's write lock.
fn update(
    db: &Database,
    env: &str,
    coll: &str,
    id: &str,
    ops: Vec<Op>,
    f: impl FnOnce(&mut IndexDef),
) -> Result<(), DbError> {
    let mut meta = db.collection_meta(env, coll)?;
    let mut defs = defs_of(&meta)?;
    let Some(def) = defs.iter_mut().find(|d| d.id == id) else {
        return Ok(());
    };
    f(def);
    meta.insert(
        "indexes".into(),
        serde_json::to_value(defs).map_err(|e| DbError::Storage(e.to_string()))?,
    );
    drop(db.apply_with_meta(env, coll, &meta, ops)?);
    Ok(())
}

pub fn defs_of(meta: &serde_json::Map<String, Value>) -> Result<Vec<IndexDef>, DbError> {
    match meta.get("indexes") {
        None => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| DbError::Storage(format!("corrupt index definitions: {e}")))
        }
    }
}
