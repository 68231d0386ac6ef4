//! The near cache's state: its maps, the reads in flight, and how pushes and fills change
//! them (the rules are in the parent module's documentation).

use super::{MAX_ENTRY_AGE, MAX_RENEW_EVERY, STALENESS_BOUND, Shared, Tracking};
use crate::session::snapshot::AccountState;
use crate::session::{SessionRecord, Timeouts};
use lru::LruCache;
use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub(super) struct State {
    pub(super) sessions: LruCache<String, CachedSession>,
    pub(super) accounts: LruCache<String, CachedAccount>,
    /// Redis keys being read to fill the cache, with whether an invalidation hit them since.
    pub(super) reads: HashMap<String, InFlight>,
    /// Bumped by every flush: a read started before it never fills the cache.
    pub(super) stamp: u64,
    pub(super) tracking: Option<Tracking>,
    /// The id of the installed tracking connection (0: none); ids only grow.
    pub(super) current: u64,
    pub(super) last_id: u64,
    /// Milliseconds since `origin` at which the last probe that came back over the current
    /// connection was written; 0 when it is not proven.
    pub(super) proven_ms: u64,
    /// Probe invalidations seen on the current connection.
    pub(super) probes_seen: u64,
}

pub(super) struct InFlight {
    pub(super) readers: u32,
    pub(super) stale: bool,
}

pub(super) struct CachedSession {
    pub(super) record: Arc<SessionRecord>,
    /// When Redis expires the record unless renewed, as it stood when the read was sent (a
    /// renewal by any server evicts the entry).
    pub(super) idle_deadline: Instant,
    /// Milliseconds since `origin` of the last renewal (by any server, as far as known).
    pub(super) renewed_ms: AtomicU64,
    /// Served until then at most, then read again: should Redis ever stop watching a key
    /// without telling us, the entry cannot outlive this.
    pub(super) read_again_at: Instant,
}

#[derive(Clone)]
pub(super) struct CachedAccount {
    pub(super) epoch: Option<i64>,
    pub(super) state: Option<Arc<AccountState>>,
    /// See [`CachedSession::read_again_at`].
    pub(super) read_again_at: Instant,
}

/// A read in progress over connection `connection`: its registered keys, released when it ends
/// (also on error or cancellation).
pub(super) struct Registration<'a> {
    pub(super) shared: &'a Shared,
    pub(super) keys: Vec<String>,
    pub(super) stamp: u64,
    pub(super) connection: u64,
}

impl Registration<'_> {
    pub(super) fn add(&mut self, key: String) {
        let mut state = self.shared.lock();
        state
            .reads
            .entry(key.clone())
            .and_modify(|r| r.readers += 1)
            .or_insert(InFlight {
                readers: 1,
                stale: false,
            });
        self.keys.push(key);
    }

    /// Whether none of `keys` was invalidated since it was registered, the cache was not
    /// flushed and the read's connection is still the current one.
    pub(super) fn fresh(&self, state: &State, keys: &[&String]) -> bool {
        state.stamp == self.stamp
            && state.current == self.connection
            && keys
                .iter()
                .all(|k| state.reads.get(k.as_str()).is_some_and(|r| !r.stale))
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        for key in self.keys.drain(..) {
            if let Some(r) = state.reads.get_mut(&key) {
                r.readers -= 1;
                if r.readers == 0 {
                    state.reads.remove(&key);
                }
            }
        }
    }
}

impl Shared {
    pub(super) fn new(
        prefix: &str,
        timeouts: Timeouts,
        capacity: NonZeroUsize,
        main: Option<ConnectionManager>,
    ) -> Self {
        Self {
            prefix: prefix.to_string(),
            idle: timeouts.idle.max(Duration::from_secs(1)),
            renew_every: (timeouts.idle / 10).min(MAX_RENEW_EVERY),
            max_age: (timeouts.idle / 10).clamp(Duration::from_secs(1), MAX_ENTRY_AGE),
            state: RwLock::new(State {
                sessions: LruCache::new(capacity),
                accounts: LruCache::new(capacity),
                reads: HashMap::new(),
                stamp: 0,
                tracking: None,
                current: 0,
                last_id: 0,
                proven_ms: 0,
                probes_seen: 0,
            }),
            origin: Instant::now(),
            main,
            probe_key: format!("{prefix}nc:{}", uuid::Uuid::new_v4().simple()),
            probing: tokio::sync::Mutex::new(()),
            probed: tokio::sync::Notify::new(),
            unsupported: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            fills: AtomicU64::new(0),
        }
    }

    /// The state, to change it.
    pub(super) fn lock(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        // Each update under the lock is one map operation, so a panic cannot leave an entry
        // half-written; but be strict: start over empty, on a connection to be proven again.
        self.state.write().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            flush(&mut state);
            state.proven_ms = 0;
            self.state.clear_poison();
            state
        })
    }

    /// The state, to read it.
    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        match self.state.read() {
            Ok(state) => state,
            Err(_) => {
                // Poisoned: empty it first (see `lock`).
                drop(self.lock());
                self.state.read().unwrap_or_else(|p| p.into_inner())
            }
        }
    }

    pub(super) fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Whether the last returned probe was written less than [`STALENESS_BOUND`] before
    /// `now_ms`.
    pub(super) fn is_proven(&self, state: &State, now_ms: u64) -> bool {
        state.proven_ms != 0
            && Duration::from_millis(now_ms.saturating_sub(state.proven_ms)) < STALENESS_BOUND
    }

    pub(super) fn key(&self, kind: &str, k: &str) -> String {
        crate::session::redis_store::store_key(&self.prefix, kind, k)
    }

    /// Caches what `read` found unless an invalidation crossed it: the session if its record
    /// key was not invalidated, its account if neither the epoch nor the snapshot key was.
    pub(super) fn keep(
        &self,
        read: &Registration,
        key: &str,
        session: CachedSession,
        account: CachedAccount,
    ) {
        let id = session.record.account.id.clone();
        let (record_key, epoch_key, state_key) =
            (self.key("s", key), self.key("e", &id), self.key("k", &id));
        let mut state = self.lock();
        if read.fresh(&state, &[&record_key]) {
            state.sessions.put(key.to_string(), session);
        }
        if read.fresh(&state, &[&epoch_key, &state_key]) {
            state.accounts.put(id, account);
        }
    }

    pub(super) fn register(&self, connection: u64) -> Registration<'_> {
        let stamp = self.read().stamp;
        Registration {
            shared: self,
            keys: Vec::with_capacity(3),
            stamp,
            connection,
        }
    }

    /// The tracking connection, if the last returned probe is recent enough.
    pub(super) fn proven(&self) -> Option<Tracking> {
        let state = self.read();
        if !self.is_proven(&state, self.millis(Instant::now())) {
            return None;
        }
        state.tracking.clone()
    }

    /// The connection `id` failed: drop it, and everything it vouched for.
    pub(super) fn lose(&self, id: u64) {
        let mut state = self.lock();
        if id != 0 && state.current == id {
            state.tracking = None;
            state.current = 0;
            state.proven_ms = 0;
            flush(&mut state);
        }
    }

    /// A message Redis pushed on the tracking connection `id`.
    pub(super) fn on_push(&self, id: u64, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    let mut probed = false;
                    let mut state = self.lock();
                    for key in keys {
                        match redis::from_redis_value_ref::<String>(key) {
                            Ok(key) if key == self.probe_key => {
                                if id == state.current {
                                    state.probes_seen += 1;
                                    probed = true;
                                }
                            }
                            // Also from an older connection: evicting more is always safe.
                            Ok(key) => self.invalidate(&mut state, &key),
                            // A key we cannot name: be safe.
                            Err(_) => flush(&mut state),
                        }
                    }
                    drop(state);
                    if probed {
                        self.probed.notify_waiters();
                    }
                }
                // FLUSHALL / FLUSHDB, or a shape we do not know.
                _ => flush(&mut self.lock()),
            },
            PushKind::Disconnection => self.lose(id),
            _ => {}
        }
    }

    pub(super) fn invalidate(&self, state: &mut State, key: &str) {
        if let Some(r) = state.reads.get_mut(key) {
            r.stale = true;
        }
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
            return;
        };
        if let Some(session) = rest.strip_prefix("s:") {
            state.sessions.pop(session);
        } else if let Some(account) = rest.strip_prefix("e:").or_else(|| rest.strip_prefix("k:")) {
            state.accounts.pop(account);
        }
    }
}

pub(super) fn flush(state: &mut State) {
    state.sessions.clear();
    state.accounts.clear();
    state.stamp += 1;
    for r in state.reads.values_mut() {
        r.stale = true;
    }
}
