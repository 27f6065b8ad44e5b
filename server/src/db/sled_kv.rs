//! sled behind the [`Kv`] interface, made durable by the write-ahead log with group commit.
//!
//! `apply` writes the batch to sled (in memory) and appends its log record, both under one mutex,
//! so the log holds batches in the order they were applied. One commit thread takes every writer
//! waiting at that moment, writes their records and `fdatasync`s the log once, then wakes them
//! all: that is the acknowledgement. sled persists its own state in the background; when the log
//! passes [`CHECKPOINT_BYTES`] the commit thread flushes sled and empties the log. Opening replays
//! the log over sled (puts and deletes of whole values, so replaying twice is harmless).
//!
//! Why not `sled::Db::flush()` per commit: it costs several `sync_file_range` calls on sled's IO
//! threads and still needs an `fdatasync` (`../shared/reference/sled-notes.md`); one sequential
//! append + `fdatasync` is a fraction of that, so group commits are cheaper and writes faster.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::kv::{Commit, Kv, Op, Visit, Waiter};
use super::wal::{self, Wal};
use super::DbError;

/// How long a busy commit thread gathers writers before syncing the log.
const GROUP_WAIT: Duration = Duration::from_micros(500);
/// Log size at which sled is flushed and the log emptied.
const CHECKPOINT_BYTES: u64 = 32 * 1024 * 1024;

pub struct SledKv {
    tree: sled::Db,
    /// Log records of applied batches not yet written to the log file.
    pending: Arc<Mutex<Vec<u8>>>,
    wal: Arc<Mutex<Wal>>,
    committer: Option<mpsc::Sender<Waiter>>,
    thread: Option<JoinHandle<()>>,
}

impl SledKv {
    /// Opens (or creates) the store under `dir`, replaying the log. Fails with
    /// [`DbError::Storage`] if another process holds it.
    pub fn open(dir: &Path) -> Result<SledKv, DbError> {
        let tree = sled::Config::new()
            .path(dir)
            .cache_capacity(32 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(storage)?;
        let (mut log, contents) = Wal::open(&dir.join("wal")).map_err(storage)?;
        let batches = wal::decode(&contents);
        if !batches.is_empty() {
            tracing::info!(batches = batches.len(), "replaying the write-ahead log");
            for ops in batches {
                apply_to_sled(&tree, ops)?;
            }
        }
        if !log.is_empty() {
            tree.flush().map_err(storage)?;
            log.truncate().map_err(storage)?;
        }
        let pending = Arc::new(Mutex::new(Vec::new()));
        let wal = Arc::new(Mutex::new(log));
        let (tx, rx) = mpsc::channel::<Waiter>();
        let (t, p, w) = (tree.clone(), pending.clone(), wal.clone());
        let thread = std::thread::Builder::new()
            .name("lightbase-commit".into())
            .spawn(move || commit_loop(&t, &p, &w, rx))
            .map_err(storage)?;
        Ok(SledKv {
            tree,
            pending,
            wal,
            committer: Some(tx),
            thread: Some(thread),
        })
    }
}

/// One op is a plain insert or remove, atomic by itself. Several go through `apply_batch`, which
/// sled keeps atomic across crashes but which forces a write of sled's IO buffer every time
/// (`pin_log` rolls it), so it is kept for the writes that need it.
fn apply_to_sled(tree: &sled::Db, mut ops: Vec<Op>) -> Result<(), DbError> {
    if ops.len() == 1 {
        match ops.pop() {
            Some(Op::Put(k, v)) => tree.insert(k, v).map(drop),
            Some(Op::Delete(k)) => tree.remove(k).map(drop),
            None => Ok(()),
        }
        .map_err(storage)
    } else {
        tree.apply_batch(batch_of(ops)).map_err(storage)
    }
}

fn batch_of(ops: Vec<Op>) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for op in ops {
        match op {
            Op::Put(k, v) => batch.insert(k, v),
            Op::Delete(k) => batch.remove(k),
        }
    }
    batch
}

/// Writes the pending records and syncs the log; checkpoints when the log has grown large.
fn sync(tree: &sled::Db, pending: &Mutex<Vec<u8>>, wal: &Mutex<Wal>) -> Result<(), String> {
    let mut wal = wal.lock().map_err(|_| "log lock poisoned".to_string())?;
    let records = std::mem::take(&mut *pending.lock().map_err(|_| "log lock poisoned".to_string())?);
    wal.append_durably(&records).map_err(|e| e.to_string())?;
    if wal.len() > CHECKPOINT_BYTES {
        checkpoint(tree, &mut wal)?;
    }
    Ok(())
}

/// Everything in the log is applied to sled before it is written, so once sled is flushed the
/// log can be emptied. Records appended meanwhile are still pending and go to the emptied log.
fn checkpoint(tree: &sled::Db, wal: &mut Wal) -> Result<(), String> {
    tree.flush().map_err(|e| e.to_string())?;
    wal.truncate().map_err(|e| e.to_string())
}

/// Takes every writer waiting right now, makes their writes durable with one log sync, wakes
/// them all. Under concurrent load (the last batch had company) it first waits a moment for more
/// writers: a sync costs the same for one write or a hundred.
fn commit_loop(tree: &sled::Db, pending: &Mutex<Vec<u8>>, wal: &Mutex<Wal>, rx: mpsc::Receiver<Waiter>) {
    let mut busy = false;
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first];
        if busy {
            let deadline = Instant::now() + GROUP_WAIT;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(left) {
                    Ok(w) => waiters.push(w),
                    Err(_) => break,
                }
            }
        }
        waiters.extend(rx.try_iter());
        busy = waiters.len() > 1;
        let result = sync(tree, pending, wal);
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
        let mut record = Vec::new();
        wal::encode(&ops, &mut record);
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| DbError::Storage("log lock poisoned".into()))?;
        apply_to_sled(&self.tree, ops)?;
        pending.extend_from_slice(&record);
        Ok(())
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

    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), DbError> {
        if start >= end {
            return Ok(());
        }
        let range = self.tree.range(start..end);
        let mut each = |pair: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, DbError> {
            let (k, v) = pair.map_err(storage)?;
            Ok(visit(&k, &v)?.is_break())
        };
        if reverse {
            for pair in range.rev() {
                if each(pair)? {
                    break;
                }
            }
        } else {
            for pair in range {
                if each(pair)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn commit(&self) -> Commit {
        let (tx, rx) = oneshot::channel();
        match &self.committer {
            Some(c) => {
                if let Err(mpsc::SendError(tx)) = c.send(tx) {
                    // the commit thread is gone (shutting down): sync inline instead
                    let _ = tx.send(sync(&self.tree, &self.pending, &self.wal));
                }
            }
            None => {
                let _ = tx.send(sync(&self.tree, &self.pending, &self.wal));
            }
        }
        Commit::pending(rx)
    }

    fn flush(&self) -> Result<(), DbError> {
        sync(&self.tree, &self.pending, &self.wal).map_err(DbError::Storage)?;
        let mut wal = self
            .wal
            .lock()
            .map_err(|_| DbError::Storage("log lock poisoned".into()))?;
        checkpoint(&self.tree, &mut wal).map_err(DbError::Storage)
    }
}

impl Drop for SledKv {
    fn drop(&mut self) {
        self.committer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

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
        assert_eq!(reopen(dir.path()).get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    /// Opens again after a drop: sled's own background thread may hold its file lock a moment longer.
    fn reopen(dir: &Path) -> SledKv {
        for _ in 0..100 {
            if let Ok(kv) = SledKv::open(dir) {
                return kv;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        SledKv::open(dir).unwrap()
    }

    #[test]
    fn a_second_open_of_the_same_dir_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let _kv = SledKv::open(dir.path()).unwrap();
        assert!(matches!(SledKv::open(dir.path()), Err(DbError::Storage(_))));
    }

    #[test]
    fn acknowledged_writes_come_back_from_the_log_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SledKv::open(dir.path()).unwrap();
        kv.apply(vec![Op::Put(b"a".to_vec(), b"1".to_vec())]).unwrap();
        kv.apply(vec![Op::Put(b"b".to_vec(), b"2".to_vec()), Op::Delete(b"a".to_vec())])
            .unwrap();
        kv.commit().wait_blocking().unwrap();
        // the crash image: the files as they are on disk right after the acknowledgement
        let image = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), image.path());
        assert_eq!(wal::decode(&std::fs::read(image.path().join("wal")).unwrap()).len(), 2);
        let recovered = SledKv::open(image.path()).unwrap();
        assert_eq!(recovered.get(b"a").unwrap(), None);
        assert_eq!(recovered.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(
            std::fs::metadata(image.path().join("wal")).unwrap().len(),
            0,
            "log emptied after replay"
        );
        drop(recovered);
        // replaying is idempotent: a second recovery of the same image gives the same state
        let again = reopen(image.path());
        assert_eq!(again.get(b"b").unwrap(), Some(b"2".to_vec()));
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}
