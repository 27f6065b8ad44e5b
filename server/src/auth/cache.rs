//! The verified-token cache: a bearer token that verified a moment ago is not verified again (no
//! HMAC, no JSON decoding of claims, no user and session reads) for up to [`TTL`].
//!
//! It stays exact on this node: every auth write that can take rights away — deleting anything
//! (sessions, users, API keys) or rewriting a user record (disable, upgrade) — bumps an epoch
//! *after* the write is visible, and an entry only counts while the epoch it was verified under is
//! still current. A verification reads the epoch *before* it reads the records, so one that raced a
//! revocation is stored already stale. The TTL bounds how long another node (several stateless
//! nodes over a shared store, later) could see a revoked token as valid, and an entry never outlives
//! its token's `exp`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::Caller;
use crate::db::kv::Op;

/// How long a verified token is trusted without re-reading its user and session.
pub const TTL: Duration = Duration::from_secs(1);
/// Most tokens held; when full, stale entries are dropped, and if that is not enough, all of them.
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    caller: Caller,
    epoch: u64,
    until: Instant,
}

#[derive(Default)]
pub struct TokenCache {
    epoch: AtomicU64,
    map: RwLock<HashMap<Box<str>, Entry>>,
}

impl TokenCache {
    /// The epoch to pass to [`TokenCache::insert`]; read it before reading any record.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn get(&self, token: &str) -> Option<Caller> {
        let map = self.map.read().ok()?;
        let e = map.get(token)?;
        (e.epoch == self.epoch() && e.until > Instant::now()).then(|| e.caller.clone())
    }

    /// Remembers a verified token until `min(now + TTL, its expiry)`; `expires_in` is the time
    /// left before the token's `exp` (`None` for tokens without one, like API keys).
    pub fn insert(&self, token: &str, caller: Caller, epoch: u64, expires_in: Option<Duration>) {
        let now = Instant::now();
        let ttl = expires_in.map_or(TTL, |left| TTL.min(left));
        if ttl.is_zero() {
            return;
        }
        let Ok(mut map) = self.map.write() else { return };
        if map.len() >= MAX_ENTRIES {
            let current = self.epoch();
            map.retain(|_, e| e.epoch == current && e.until > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            token.into(),
            Entry {
                caller,
                epoch,
                until: now + ttl,
            },
        );
    }

    /// Invalidates every entry; call it after a write for which [`revokes`] is true is visible.
    pub fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether a write may take rights away: it deletes something or rewrites a user record.
pub fn revokes(ops: &[Op]) -> bool {
    ops.iter().any(|op| match op {
        Op::Delete(_) => true,
        Op::Put(key, _) => key.starts_with(b"a/usr/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_dropped_when_rights_may_have_been_taken_away() {
        let cache = TokenCache::default();
        cache.insert("t", Caller::Admin, cache.epoch(), None);
        assert_eq!(cache.get("t"), Some(Caller::Admin));
        let session = [
            Op::Put(b"a/ses/e/u/s".to_vec(), vec![]),
            Op::Put(b"a/rt/x".to_vec(), vec![]),
        ];
        assert!(!revokes(&session), "opening a session revokes nothing");
        assert!(
            revokes(&[Op::Put(b"a/usr/e/u".to_vec(), vec![])]),
            "a user record may be a disabled user"
        );
        assert!(revokes(&[Op::Delete(b"a/ses/e/u/s".to_vec())]));
        cache.bump();
        assert_eq!(cache.get("t"), None);
    }

    #[test]
    fn a_verification_that_raced_a_revocation_is_stored_stale() {
        let cache = TokenCache::default();
        let before = cache.epoch();
        cache.bump();
        cache.insert("t", Caller::Guest, before, None);
        assert_eq!(cache.get("t"), None);
    }

    #[test]
    fn entries_never_outlive_their_token_and_the_map_stays_bounded() {
        let cache = TokenCache::default();
        cache.insert("expiring", Caller::Admin, cache.epoch(), Some(Duration::ZERO));
        assert_eq!(cache.get("expiring"), None);
        for i in 0..MAX_ENTRIES + 10 {
            cache.insert(&format!("t{i}"), Caller::Admin, cache.epoch(), None);
        }
        assert!(cache.map.read().unwrap().len() <= MAX_ENTRIES);
        assert_eq!(cache.get(&format!("t{}", MAX_ENTRIES + 9)), Some(Caller::Admin));
    }
}
