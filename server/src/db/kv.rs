//! The narrow ordered key-value interface the document engine stores through.
//!
//! The engine never sees sled: it gets, scans by prefix and applies atomic batches through [`Kv`],
//! so a distributed ordered KV store can stand in later without touching queries. Durability is
//! explicit: a write returns a [`Commit`] that resolves once the write is on disk. The sled
//! implementation (with its write-ahead log and group commit) is in `sled_kv.rs`.

use std::ops::ControlFlow;

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
    /// Calls `visit` with every pair with `start <= key < end`, in key order (descending when
    /// `reverse`), until it breaks.
    fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), DbError>;
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

pub(super) type Waiter = oneshot::Sender<Result<(), String>>;

impl Commit {
    pub(super) fn pending(rx: oneshot::Receiver<Result<(), String>>) -> Commit {
        Commit(Some(rx))
    }
}
