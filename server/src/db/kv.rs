//! The narrow ordered key-value interface the document engine stores through, and its sled
//! implementation with group commit.
//!
//! The engine never sees sled: it gets, puts, deletes, scans by prefix and applies atomic batches
//! through [`Kv`], so a distributed ordered KV store can stand in later without touching queries.
//! Durability is explicit: a write returns a [`Commit`] that resolves once the write is on disk.
//! One commit thread batches every waiting writer into one `flush()` + `fdatasync` (group commit;
//! see `../shared/reference/sled-notes.md` for why both calls are needed).

use std::fs::File;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a busy commit thread gathers writers before flushing.
const GROUP_WAIT: Duration = Duration::from_micros(500);

use tokio::sync::oneshot;

use super::DbError;

/// One write of an atomic batch.
#[derive(Debug)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// What a scan visitor wants next.
pub type Visit = Result<ControlFlow<()>, DbError>;

/// An ordered key-value store with atomic batches and group-committed durability.
pub trait Kv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError>;
    /// Applies all ops atomically: a reader or a crash sees all of them or none.
    fn apply(&self, ops: Vec<Op>) -> Result<(), DbError>;
    /// Calls `visit` with every pair whose key starts with `prefix`, in key order, until it breaks.
    /// The slices are borrowed from the store: a scan copies only what the visitor keeps.
    fn scan_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit) -> Result<(), DbError>;
    /// Resolves once everything applied before the call is durable.
    fn commit(&self) -> Commit;
    /// Makes everything durable now (shutdown).
    fn flush(&self) -> Result<(), DbError>;
}

/// A pending durability acknowledgement.
#[must_use = "a write is not durable until its Commit is waited for"]
pub struct Commit(Option<oneshot::Receiver<Result<(), String>>>);

impl Commit {
    /// Nothing was written, nothing to wait for.
    pub fn none() -> Commit {
        Commit(None)
    }

    pub async fn wait(self) -> Result<(), DbError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => flatten(rx.await),
        }
    }

    /// For callers outside an async runtime (the CLI working on the data dir directly).
    pub fn wait_blocking(self) -> Result<(), DbError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => flatten(rx.blocking_recv()),
        }
    }
}

fn flatten(r: Result<Result<(), String>, oneshot::error::RecvError>) -> Result<(), DbError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DbError::Storage(e)),
        Err(_) => Err(DbError::Closed),
    }
}

type Waiter = oneshot::Sender<Result<(), String>>;

/// sled behind [`Kv`].
pub struct SledKv {
    tree: sled::Db,
    committer: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
    data_file: Arc<File>,
}

impl SledKv {
    /// Opens (or creates) the store under `dir`. Fails with [`DbError::Storage`] if another process
    /// holds it.
    pub fn open(dir: &Path) -> Result<SledKv, DbError> {
        let tree = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(storage)?;
        // sled keeps its log in `<dir>/db`; fdatasync on it after each flush (sled-notes.md trap 2).
        let data_file = Arc::new(File::open(dir.join("db")).map_err(storage)?);
        let (tx, rx) = mpsc::channel::<Waiter>();
        let (t, f) = (tree.clone(), data_file.clone());
        let thread = std::thread::Builder::new()
            .name("lightbase-commit".into())
            .spawn(move || commit_loop(&t, &f, rx))
            .map_err(storage)?;
        Ok(SledKv {
            tree,
            committer: Some(tx),
            thread: Some(thread),
            data_file,
        })
    }

    fn sync_now(&self) -> Result<(), String> {
        durable_flush(&self.tree, &self.data_file)
    }
}

fn durable_flush(tree: &sled::Db, file: &File) -> Result<(), String> {
    tree.flush().map_err(|e| e.to_string())?;
    file.sync_data().map_err(|e| e.to_string())
}

/// Takes every writer waiting right now, makes their writes durable with one flush, wakes them all.
/// Under concurrent load (the last batch had company) it first waits a moment for more writers:
/// a flush costs the same for one write or a hundred, so larger batches mean more writes per second.
fn commit_loop(tree: &sled::Db, file: &File, rx: mpsc::Receiver<Waiter>) {
    let wait: Duration = std::env::var("LIGHTBASE_GROUP_WAIT_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_micros)
        .unwrap_or(GROUP_WAIT);
    let mut busy = false;
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first];
        if busy && !wait.is_zero() {
            let deadline = Instant::now() + wait;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(w) => waiters.push(w),
                    Err(_) => break,
                }
            }
        }
        waiters.extend(rx.try_iter());
        busy = waiters.len() > 1;
        let result = durable_flush(tree, file);
        if let Err(e) = &result {
            tracing::error!(error = %e, "group commit failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn storage(e: impl std::fmt::Display) -> DbError {
    DbError::Storage(e.to_string())
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.tree.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), DbError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch).map_err(storage)
    }

    fn scan_prefix(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit) -> Result<(), DbError> {
        for pair in self.tree.scan_prefix(prefix) {
            let (k, v) = pair.map_err(storage)?;
            if visit(&k, &v)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    fn commit(&self) -> Commit {
        let (tx, rx) = oneshot::channel();
        let sent = self.committer.as_ref().is_some_and(|c| c.send(tx).is_ok());
        if sent {
            Commit(Some(rx))
        } else {
            // the commit thread is gone (shutting down): flush inline instead
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(self.sync_now());
            Commit(Some(rx))
        }
    }

    fn flush(&self) -> Result<(), DbError> {
        self.sync_now().map_err(DbError::Storage)
    }
}

impl Drop for SledKv {
    fn drop(&mut self) {
        self.committer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.sync_now() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_atomic_and_scans_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(dir.path()).unwrap();
        kv.apply(vec![
            Op::Put(b"p/b".to_vec(), b"2".to_vec()),
            Op::Put(b"p/a".to_vec(), b"1".to_vec()),
            Op::Put(b"q/a".to_vec(), b"3".to_vec()),
        ])
        .unwrap();
        kv.commit().wait_blocking().unwrap();
        let mut keys = Vec::new();
        kv.scan_prefix(b"p/", &mut |k, _| {
            keys.push(k.to_vec());
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!(keys, vec![b"p/a".to_vec(), b"p/b".to_vec()]);
        kv.apply(vec![Op::Delete(b"p/a".to_vec())]).unwrap();
        assert_eq!(kv.get(b"p/a").unwrap(), None);
        assert_eq!(kv.get(b"p/b").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = SledKv::open(dir.path()).unwrap();
            kv.apply(vec![Op::Put(b"k".to_vec(), b"v".to_vec())]).unwrap();
            kv.commit().wait_blocking().unwrap();
        }
        let kv = SledKv::open(dir.path()).unwrap();
        assert_eq!(kv.get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn a_second_open_of_the_same_dir_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let _kv = SledKv::open(dir.path()).unwrap();
        assert!(matches!(SledKv::open(dir.path()), Err(DbError::Storage(_))));
    }
}
