//! In-process session store: the embedded default, for a single bridge process.
//!
//! Reads take a shared lock and touch the idle timer through an atomic, so concurrent
//! forward-auth checks never wait on each other.

use super::{AccountState, SessionError, SessionRecord, Timeouts, unix_now};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

struct Entry {
    record: SessionRecord,
    /// Unix milliseconds: whole seconds would misjudge idleness by up to a second.
    last_seen_ms: AtomicI64,
}

/// How much longer than the absolute timeout a snapshot is kept.
const KEEP_MARGIN_SECS: i64 = 300;

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Arc<Entry>>,
    by_account: HashMap<String, HashSet<String>>,
    /// IdP session (connection + sid) -> session keys, for back-channel logout.
    by_idp: HashMap<String, HashSet<String>>,
    seen_once: HashMap<String, i64>,
    /// Account -> (the lowest lifecycle version a session may have, unix seconds until which
    /// this is remembered: the absolute timeout, after which no older session can be alive).
    epochs: HashMap<String, (i64, i64)>,
    /// Account -> (its snapshot, unix seconds until which it is kept: the absolute timeout).
    accounts: HashMap<String, (Arc<AccountState>, i64)>,
}

pub struct MemoryStore {
    inner: RwLock<Inner>,
    timeouts: Timeouts,
}

impl MemoryStore {
    pub fn new(timeouts: Timeouts) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            timeouts,
        }
    }

    pub(super) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for safety (each update is a single insert/remove), so keep serving.
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn insert(
        &self,
        key: &str,
        record: &SessionRecord,
    ) -> Result<(), SessionError> {
        let mut inner = self.write();
        inner
            .by_account
            .entry(record.account.id.clone())
            .or_default()
            .insert(key.to_string());
        for idp in record.idp_keys() {
            inner.by_idp.entry(idp).or_default().insert(key.to_string());
        }
        inner.sessions.insert(
            key.to_string(),
            Arc::new(Entry {
                record: record.clone(),
                last_seen_ms: AtomicI64::new(now_ms()),
            }),
        );
        Ok(())
    }

    /// Before its absolute end and used within the idle timeout.
    fn is_live(&self, e: &Entry, now: i64, now_ms: i64) -> bool {
        now < e.record.expires_at
            && now_ms - e.last_seen_ms.load(Ordering::Relaxed)
                < self.timeouts.idle.as_millis() as i64
    }

    pub(super) async fn get(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<(SessionRecord, Option<Arc<AccountState>>)>, SessionError> {
        let (entry, min_epoch, state) = {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            let entry = inner.sessions.get(key).cloned();
            let account = entry.as_ref().map(|e| &e.record.account.id);
            let min = account
                .and_then(|a| inner.epochs.get(a))
                .map(|(min, _)| *min);
            let state = account
                .and_then(|a| inner.accounts.get(a))
                .map(|(s, _)| s.clone());
            (entry, min, state)
        };
        let Some(entry) = entry else { return Ok(None) };
        let ms = now_ms();
        let outdated = min_epoch.is_some_and(|min| entry.record.account.version < min);
        if outdated || !self.is_live(&entry, now, ms) {
            self.remove(key);
            return Ok(None);
        }
        entry.last_seen_ms.store(ms, Ordering::Relaxed);
        Ok(Some((entry.record.clone(), state)))
    }

    pub(super) async fn put_account(&self, state: &AccountState) -> Result<bool, SessionError> {
        let now = unix_now();
        // Longer than any session made from now on can live.
        let until = now + self.timeouts.absolute.as_secs() as i64 + KEEP_MARGIN_SECS;
        // Expired snapshots are dropped by `purge_expired`, with the sessions.
        let mut inner = self.write();
        match inner.accounts.get_mut(&state.id) {
            Some((held, kept)) if held.revision > state.revision => {
                // The newer snapshot must outlive the sessions made now too.
                *kept = until;
                Ok(false)
            }
            _ => {
                inner
                    .accounts
                    .insert(state.id.clone(), (Arc::new(state.clone()), until));
                Ok(true)
            }
        }
    }

    fn remove(&self, key: &str) {
        remove_locked(&mut self.write(), key);
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), SessionError> {
        self.remove(key);
        Ok(())
    }

    pub(super) async fn revoke_account(
        &self,
        account_id: &str,
        epoch: Option<i64>,
    ) -> Result<usize, SessionError> {
        let now = unix_now();
        let mut inner = self.write();
        if let Some(epoch) = epoch {
            let until = now + self.timeouts.absolute.as_secs() as i64;
            let e = inner
                .epochs
                .entry(account_id.to_string())
                .or_insert((epoch, until));
            *e = (e.0.max(epoch), until);
            if inner.epochs.len() > 1024 {
                inner.epochs.retain(|_, (_, until)| *until > now);
            }
        }
        let keys: Vec<String> = inner
            .by_account
            .get(account_id)
            .into_iter()
            .flatten()
            .filter(|k| {
                let version = inner.sessions.get(*k).map(|e| e.record.account.version);
                epoch.is_none_or(|epoch| version.is_none_or(|v| v < epoch))
            })
            .cloned()
            .collect();
        for k in &keys {
            remove_locked(&mut inner, k);
        }
        Ok(keys.len())
    }

    pub(super) async fn drop_account(&self, account_id: &str) -> Result<(), SessionError> {
        self.write().accounts.remove(account_id);
        Ok(())
    }

    pub(super) async fn revoke_idp_session(&self, idp_key: &str) -> Result<usize, SessionError> {
        let mut inner = self.write();
        let keys = inner.by_idp.remove(idp_key).unwrap_or_default();
        for k in &keys {
            remove_locked(&mut inner, k);
        }
        Ok(keys.len())
    }

    pub(super) async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, SessionError> {
        let now = unix_now();
        let mut inner = self.write();
        match inner.seen_once.get(key) {
            Some(until) if *until > now => Ok(false),
            _ => {
                inner
                    .seen_once
                    .insert(key.to_string(), now + ttl.as_secs() as i64);
                Ok(true)
            }
        }
    }

    pub(super) async fn was_used(&self, key: &str) -> Result<bool, SessionError> {
        let now = unix_now();
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        Ok(inner.seen_once.get(key).is_some_and(|until| *until > now))
    }

    pub(super) async fn ping(&self) -> Result<(), SessionError> {
        Ok(())
    }

    /// Drops expired entries; called periodically so that abandoned sessions and replay markers do not
    /// accumulate. Returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let (now, ms) = (unix_now(), now_ms());
        let expired: Vec<String> = {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            inner
                .sessions
                .iter()
                .filter(|(_, e)| !self.is_live(e, now, ms))
                .map(|(k, _)| k.clone())
                .collect()
        };
        for k in &expired {
            self.remove(k);
        }
        let mut inner = self.write();
        let before = inner.seen_once.len();
        inner.seen_once.retain(|_, until| *until > now);
        inner.accounts.retain(|_, (_, until)| *until > now);
        expired.len() + before - inner.seen_once.len()
    }
}

/// Removes a session and its index entries (the caller holds the write lock).
fn remove_locked(inner: &mut Inner, key: &str) {
    let Some(e) = inner.sessions.remove(key) else {
        return;
    };
    let unindex = |map: &mut HashMap<String, HashSet<String>>, k: &str| {
        if let Some(set) = map.get_mut(k) {
            set.remove(key);
            if set.is_empty() {
                map.remove(k);
            }
        }
    };
    unindex(&mut inner.by_account, &e.record.account.id);
    for idp in e.record.idp_keys() {
        unindex(&mut inner.by_idp, &idp);
    }
}
