//! The near cache of Redis sessions: each server keeps the sessions it served in memory, so
//! that `/auth/verify` answers without a Redis round trip, and Redis tells it at once when one
//! of them changes (server-assisted client-side caching: RESP3 `CLIENT TRACKING`).
//!
//! Revocation is what jitbridge is for, so a cached answer must be exactly as strict as asking
//! Redis, up to the time an invalidation message takes to arrive:
//! 1. Entries are filled only by reads over the tracking connection (opt-in tracking, so that
//!    only keys that exist are tracked: a stranger's random cookies cannot fill Redis'
//!    tracking table), whose invalidation messages arrive in order with its replies and are
//!    handled in its read loop. A read registers its keys before it is sent; an invalidation
//!    of a registered key marks the read stale, and a stale read is answered (it is what
//!    Redis held when it ran) but not cached. (redis-rs' own `cache-aio` inserts a reply
//!    without that check, so an invalidation that arrives between the reply and the insert is
//!    lost and the entry stays stale until its TTL: a revoked session could keep working.
//!    That is why this module exists.)
//! 2. The tracking connection never writes: Redis forgets a client's tracking of a key that
//!    client modifies itself, without telling it, so a write of its own would leave that key
//!    unwatched. Renewals and probes go over the store's main connection, and their
//!    invalidations evict like anyone else's.
//! 3. Entries are served only while the channel is proven current ([`tracking`]): four times
//!    a second the main connection writes a probe key the tracking connection watches, and
//!    the probe's invalidation must come back. It comes after every invalidation of writes
//!    applied before it, on the server the writes go to (not merely a server that answers),
//!    so a probe written at T proves that the cache reflects every write before T. Entries
//!    are served only while T is less than [`STALENESS_BOUND`] ago: a stalled, cut or
//!    misrouted connection (the main connection failed over, the tracking one did not) turns
//!    the cache off, never stale.
//! 4. A disconnection, a FLUSHALL/FLUSHDB or a new connection empties the cache, and a read
//!    made over an older connection is never cached.
//! 5. This server's own writes that end sessions or change an account evict what they know at
//!    once, then run a probe ([`NearCache::barrier`]), so that a request right after a local
//!    logout or disable never sees the old state.
//! 6. Idle renewals (`PEXPIRE`) of a served session are sent at most every `renew_every` (a
//!    tenth of the idle timeout, at most [`MAX_RENEW_EVERY`]), and only when no server renewed
//!    it more recently; each evicts the entry (point 2), which the next request reads again.
//!    An entry's idle deadline is what Redis' own expiry was when the read was sent, so a
//!    session may end up to `renew_every` before its idle timeout, never after.

mod state;
mod tracking;

#[cfg(test)]
use state::Registration;
use state::{CachedAccount, CachedSession, State, flush};

use super::snapshot::AccountState;
use super::{SessionRecord, Timeouts};
use redis::ConnectionInfo;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How old the last returned probe may be for cached entries to be served: the longest a
/// change can go unseen by this server when its invalidation message is lost.
pub(super) const STALENESS_BOUND: Duration = Duration::from_secs(1);
const MAX_RENEW_EVERY: Duration = Duration::from_secs(30);
/// The longest an entry is served without being read again (see [`CachedSession`]).
const MAX_ENTRY_AGE: Duration = Duration::from_secs(30);

/// What a read found for a session: its record, its account's epoch and snapshot.
#[derive(Clone)]
pub(super) struct Found {
    pub record: SessionRecord,
    pub epoch: Option<i64>,
    pub state: Option<Arc<AccountState>>,
}

/// The near cache; cheap to clone.
#[derive(Clone)]
pub(super) struct NearCache {
    shared: Arc<Shared>,
}

struct Shared {
    prefix: String,
    idle: Duration,
    renew_every: Duration,
    /// How long an entry is served before it is read again, invalidation or not.
    max_age: Duration,
    state: RwLock<State>,
    origin: Instant,
    /// The store's connection: renewals and probes (the tracking connection never writes).
    /// `None` only in unit tests.
    main: Option<ConnectionManager>,
    /// This process's probe key (see [`tracking`]).
    probe_key: String,
    /// One probe at a time: each watches the probe key again, then writes it.
    probing: tokio::sync::Mutex<()>,
    probed: tokio::sync::Notify,
    /// Set when the server refuses tracking: the cache stays off for good.
    unsupported: AtomicBool,
    hits: AtomicU64,
    fills: AtomicU64,
}

/// What the near cache did so far (for operators and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCacheStats {
    /// Whether it serves entries now (its invalidation channel is proven current).
    pub serving: bool,
    /// Requests answered from memory.
    pub hits: u64,
    /// Requests it read from Redis over its tracking connection.
    pub fills: u64,
    /// Tracking connections it opened so far (each new one starts empty).
    pub connections: u64,
}

/// The tracking connection and the id its pushes carry.
#[derive(Clone)]
struct Tracking {
    conn: MultiplexedConnection,
    id: u64,
}

/// What [`NearCache::get`] could do.
pub(super) enum Lookup {
    /// The session's record (parsed) with its account's epoch and snapshot, cached or read.
    Found(Box<Found>),
    /// No record under the key.
    Gone,
    /// A record the caller must judge itself (newer format, unreadable): the raw text.
    Raw(String),
    /// The cache cannot answer (no proven tracking connection, or a value it does not cache,
    /// such as a damaged epoch): read Redis directly.
    Unusable,
}

impl NearCache {
    /// Starts the cache and its tracking connection (in the background: until it is proven,
    /// [`Self::get`] says [`Lookup::Unusable`]). Needs a Tokio runtime.
    pub(super) fn start(
        info: ConnectionInfo,
        main: ConnectionManager,
        prefix: &str,
        timeouts: Timeouts,
        capacity: NonZeroUsize,
    ) -> Self {
        let shared = Arc::new(Shared::new(prefix, timeouts, capacity, Some(main)));
        tokio::spawn(tracking::keep(Arc::downgrade(&shared), info));
        Self { shared }
    }

    /// The session under `key`: from the cache when it holds it and the channel is proven,
    /// else read over the tracking connection (and cached when no invalidation crossed the
    /// read). `parse` reads a stored record (`None`: the caller must judge the raw text).
    pub(super) async fn get(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Option<SessionRecord>,
    ) -> Result<Lookup, redis::RedisError> {
        let s = &*self.shared;
        let now = Instant::now();
        let now_ms = s.millis(now);
        let tracking = {
            // Shared with the other workers: nothing here writes (a hit does not reorder the
            // LRU; the renewal mark is atomic), and the record is cloned after the lock.
            let state = s.read();
            if !s.is_proven(&state, now_ms) {
                return Ok(Lookup::Unusable);
            }
            let hit = state
                .sessions
                .peek(key)
                .filter(|e| e.idle_deadline > now && e.read_again_at > now)
                .and_then(|e| {
                    let a = state
                        .accounts
                        .peek(e.record.account.id.as_str())
                        .filter(|a| a.read_again_at > now)?;
                    let last = e.renewed_ms.load(Ordering::Relaxed);
                    // One renewal at a time for the entry: whoever moves the mark renews.
                    let renew = now_ms.saturating_sub(last) >= s.renew_every.as_millis() as u64
                        && e.renewed_ms
                            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok();
                    Some((e.record.clone(), a.epoch, a.state.clone(), renew))
                });
            if let Some((record, epoch, snapshot, renew)) = hit {
                drop(state);
                s.hits.fetch_add(1, Ordering::Relaxed);
                if renew {
                    let this = self.clone();
                    let key = key.to_string();
                    tokio::spawn(async move { this.renew(&key).await });
                }
                return Ok(Lookup::Found(Box::new(Found {
                    record: (*record).clone(),
                    epoch,
                    state: snapshot,
                })));
            }
            match state.tracking.clone() {
                Some(t) => t,
                None => return Ok(Lookup::Unusable),
            }
        };
        self.fill(tracking, key, parse).await
    }

    /// Reads a session and its account over the tracking connection, caching what no
    /// invalidation crossed.
    async fn fill(
        &self,
        tracking: Tracking,
        key: &str,
        parse: impl Fn(&str) -> Option<SessionRecord>,
    ) -> Result<Lookup, redis::RedisError> {
        let s = &*self.shared;
        s.fills.fetch_add(1, Ordering::Relaxed);
        let mut conn = tracking.conn;
        let record_key = s.key("s", key);
        let mut read = s.register(tracking.id);
        read.add(record_key.clone());
        let sent = Instant::now();
        // Whether there is a record at all (a stranger's cookie names none), over the main
        // connection: misses never queue on the tracking connection, and track nothing.
        let (raw, pttl): (Option<String>, i64) = match s.main.clone() {
            Some(mut main) => {
                redis::pipe()
                    .get(&record_key)
                    .pttl(&record_key)
                    .query_async(&mut main)
                    .await?
            }
            None => return Ok(Lookup::Unusable),
        };
        let Some(raw) = raw else {
            return Ok(Lookup::Gone);
        };
        let Some(record) = parse(&raw) else {
            return Ok(Lookup::Raw(raw));
        };
        let id = record.account.id.clone();
        let (epoch_key, state_key) = (s.key("e", &id), s.key("k", &id));
        read.add(epoch_key.clone());
        read.add(state_key.clone());
        // Tracked from here: the record again and the account's keys.
        let (tracked, (epoch_raw, state_raw)): (Option<String>, (Option<String>, Option<String>)) =
            redis::pipe()
                .cmd("CLIENT")
                .arg("CACHING")
                .arg("YES")
                .ignore()
                .get(&record_key)
                .cmd("CLIENT")
                .arg("CACHING")
                .arg("YES")
                .ignore()
                .mget(&[&epoch_key, &state_key])
                .query_async(&mut conn)
                .await?;
        let record = match tracked {
            None => return Ok(Lookup::Gone),
            Some(same) if same == raw => record,
            // Rewritten in between (records are written once, so this is someone else's).
            Some(other) => match parse(&other) {
                Some(r) if r.account.id == id => r,
                _ => return Ok(Lookup::Raw(other)),
            },
        };
        let epoch = match epoch_raw.as_deref() {
            None | Some("") => None,
            Some(e) => match e.parse::<i64>() {
                Ok(e) => Some(e),
                // A damaged epoch: the direct read reports it.
                Err(_) => return Ok(Lookup::Unusable),
            },
        };
        let state = state_raw
            .as_deref()
            .and_then(AccountState::decode)
            .map(Arc::new);
        let left = Duration::from_millis(pttl.max(0) as u64);
        // When some server last renewed it, as far as its time left tells.
        let renewed_ms = s
            .millis(sent)
            .saturating_sub(s.idle.saturating_sub(left).as_millis() as u64);
        let found = Found {
            record,
            epoch,
            state,
        };
        s.keep(
            &read,
            key,
            CachedSession {
                record: Arc::new(found.record.clone()),
                idle_deadline: sent + left,
                renewed_ms: AtomicU64::new(renewed_ms),
                read_again_at: sent + s.max_age,
            },
            CachedAccount {
                epoch: found.epoch,
                state: found.state.clone(),
                read_again_at: sent + s.max_age,
            },
        );
        drop(read);
        // Renew unless some server did within `renew_every`; the renewal's invalidation evicts
        // the entry just kept, and the next request reads it again, with its new deadline.
        if pttl >= 0 && left + s.renew_every < s.idle {
            let this = self.clone();
            let key = key.to_string();
            tokio::spawn(async move { this.renew(&key).await });
        }
        Ok(Lookup::Found(Box::new(found)))
    }

    /// Pushes the session's idle expiry forward, over the main connection.
    async fn renew(&self, key: &str) {
        let s = &*self.shared;
        let Some(mut main) = s.main.clone() else {
            return;
        };
        let renewed: Result<bool, _> = redis::cmd("PEXPIRE")
            .arg(s.key("s", key))
            .arg(s.idle.as_millis() as u64)
            .query_async(&mut main)
            .await;
        if !matches!(renewed, Ok(true)) {
            // Gone from Redis (its invalidation is on its way too), or the renewal failed: the
            // entry's deadline is the old one either way; forget it, to be sure.
            s.lock().sessions.pop(key);
        }
    }

    /// Forgets the session (this server ended it), and spoils reads of it in flight: this
    /// server's next requests see the change without waiting for Redis' invalidation.
    pub(super) fn evict_session(&self, key: &str) {
        let s = &*self.shared;
        s.invalidate(&mut s.lock(), &s.key("s", key));
    }

    /// Forgets the account's epoch and snapshot (this server changed them), and spoils reads
    /// of them in flight: its sessions are read again on their next use.
    pub(super) fn evict_account(&self, account_id: &str) {
        let s = &*self.shared;
        let mut state = s.lock();
        s.invalidate(&mut state, &s.key("e", account_id));
        s.invalidate(&mut state, &s.key("k", account_id));
    }

    /// Waits until every invalidation of writes this server made before now has been handled
    /// (a probe). Call after a write whose effect this server's next requests must see. A
    /// failed barrier turns the cache off until the channel is proven again.
    pub(super) async fn barrier(&self) {
        tracking::probe(&self.shared).await;
    }

    pub(super) fn stats(&self) -> NearCacheStats {
        let s = &*self.shared;
        NearCacheStats {
            serving: s.proven().is_some(),
            hits: s.hits.load(Ordering::Relaxed),
            fills: s.fills.load(Ordering::Relaxed),
            connections: s.read().last_id,
        }
    }
}

#[cfg(test)]
mod tests;
