//! The near cache of Redis sessions: each server keeps the sessions it served in memory, so
//! that `/auth/verify` answers without a Redis round trip, and Redis tells it at once when one
//! of them changes (server-assisted client-side caching: RESP3 `CLIENT TRACKING`).
//!
//! Revocation is what jitbridge is for, so a cached answer must be exactly as strict as asking
//! Redis, up to the time an invalidation message takes to arrive:
//! 1. Entries are filled only by reads over the tracking connection, whose invalidation
//!    messages arrive in order with its replies and are handled in its read loop. A read
//!    registers its keys before it is sent; an invalidation of a registered key marks the read
//!    stale, and a stale read is answered (it is what Redis held when it ran) but not cached.
//!    (redis-rs' own `cache-aio` inserts a reply without that check, so an invalidation that
//!    arrives between the reply and the insert is lost and the entry stays stale until its TTL:
//!    a revoked session could keep working. That is why this module exists.)
//! 2. An entry is served only while the invalidation channel is proven current: a PING on the
//!    tracking connection every [`HEARTBEAT`]. Its reply comes after every invalidation Redis
//!    queued before it, so an answered PING sent at T proves that the cache reflects every
//!    write before T; entries are served only while T is less than [`STALENESS_BOUND`] ago.
//!    A stalled or cut connection turns the cache off (reads go to Redis), never stale.
//! 3. A disconnection, a FLUSHALL/FLUSHDB or a new connection empties the cache.
//! 4. This server's own writes that end sessions or change an account evict what they know at
//!    once, then wait for a PING on the tracking connection ([`NearCache::barrier`]), so a
//!    request right after a local logout or disable never sees the old state.
//! 5. Idle renewals (`EXPIRE`) of a served session are sent at most every `renew_every` (a
//!    tenth of the idle timeout, at most [`MAX_RENEW_EVERY`]) and only when no server renewed
//!    it more recently; they go over the tracking connection, whose `NOLOOP` keeps them from
//!    evicting our own entry. A session may so end up to `renew_every` before its idle
//!    timeout, never after it.

use super::snapshot::AccountState;
use super::{SessionRecord, Timeouts};
use lru::LruCache;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often the tracking connection is proven alive and current.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// How old the last answered heartbeat may be for cached entries to be served: the longest a
/// change can go unseen by this server when its invalidation message is lost in the network.
pub(super) const STALENESS_BOUND: Duration = Duration::from_secs(1);
/// How long a heartbeat or a barrier waits for its answer.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_RENEW_EVERY: Duration = Duration::from_secs(30);

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
    state: Mutex<State>,
    conn: Mutex<Option<Tracking>>,
    /// Milliseconds since `origin` at which the last answered heartbeat was sent; 0 when the
    /// channel is not proven (no connection yet, or it failed).
    proven_ms: AtomicU64,
    origin: Instant,
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
}

#[derive(Clone)]
struct Tracking {
    conn: MultiplexedConnection,
    id: u64,
}

struct State {
    sessions: LruCache<String, CachedSession>,
    accounts: LruCache<String, CachedAccount>,
    /// Redis keys being read to fill the cache, with whether an invalidation hit them since.
    reads: HashMap<String, InFlight>,
    /// Bumped by every flush: a read started before it never fills the cache.
    stamp: u64,
    /// Bumped by every connection: pushes of an older connection only evict.
    connection: u64,
}

struct InFlight {
    readers: u32,
    stale: bool,
}

#[derive(Clone)]
struct CachedSession {
    record: SessionRecord,
    /// When Redis would expire the record unless renewed (as far as this server knows: a
    /// renewal by another server evicts the entry).
    idle_deadline: Instant,
    renewed_at: Instant,
}

#[derive(Clone)]
struct CachedAccount {
    epoch: Option<i64>,
    state: Option<Arc<AccountState>>,
}

/// A read in progress: its registered keys, released when it ends (also on error or cancel).
struct Registration<'a> {
    shared: &'a Shared,
    keys: Vec<String>,
    stamp: u64,
}

impl Registration<'_> {
    fn add(&mut self, key: String) {
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

    /// Whether none of `keys` was invalidated since it was registered, nor the cache flushed.
    fn fresh(&self, state: &State, keys: &[&String]) -> bool {
        state.stamp == self.stamp
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

/// What [`NearCache::get`] could do.
pub(super) enum Lookup {
    /// The session's record (parsed) with its account's epoch and snapshot, cached or read.
    Found(Box<Found>),
    /// No record under the key.
    Gone,
    /// A record the caller must judge itself (newer format, unreadable): the raw text.
    Raw(String),
    /// The cache cannot answer now (no proven tracking connection): read Redis directly.
    Unusable,
}

impl NearCache {
    /// Starts the cache and its tracking connection (in the background: until it is proven,
    /// [`Self::get`] says [`Lookup::Unusable`]). Needs a Tokio runtime.
    pub(super) fn start(
        info: ConnectionInfo,
        prefix: &str,
        timeouts: Timeouts,
        capacity: NonZeroUsize,
    ) -> Self {
        let shared = Arc::new(Shared::new(prefix, timeouts, capacity));
        tokio::spawn(keep_tracking(Arc::downgrade(&shared), info));
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
        let Some(tracking) = s.proven() else {
            return Ok(Lookup::Unusable);
        };
        let now = Instant::now();
        let (hit, renew) = {
            let mut guard = s.lock();
            let state = &mut *guard;
            match state.sessions.get_mut(key) {
                Some(entry) if entry.idle_deadline > now => {
                    let renew = now.duration_since(entry.renewed_at) >= s.renew_every;
                    if renew {
                        // One renewal at a time for the entry.
                        entry.renewed_at = now;
                    }
                    let record = entry.record.clone();
                    match state.accounts.get(record.account.id.as_str()) {
                        Some(a) => (
                            Some(Found {
                                record,
                                epoch: a.epoch,
                                state: a.state.clone(),
                            }),
                            renew,
                        ),
                        None => (None, false),
                    }
                }
                Some(_) => {
                    state.sessions.pop(key);
                    (None, false)
                }
                None => (None, false),
            }
        };
        if let Some(found) = hit {
            s.hits.fetch_add(1, Ordering::Relaxed);
            if renew {
                let this = self.clone();
                let key = key.to_string();
                tokio::spawn(async move { this.renew(tracking, &key).await });
            }
            return Ok(Lookup::Found(Box::new(found)));
        }
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
        let mut read = s.register();
        read.add(record_key.clone());
        let (raw, pttl): (Option<String>, i64) = redis::pipe()
            .get(&record_key)
            .pttl(&record_key)
            .query_async(&mut conn)
            .await?;
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
        let sent = Instant::now();
        let mut pipe = redis::pipe();
        pipe.mget(&[&epoch_key, &state_key]);
        // Renew unless some server did within `renew_every` (its EXPIRE left more than that
        // much of the idle timeout).
        let renew = pttl >= 0
            && Duration::from_millis(pttl as u64) + s.renew_every < s.idle
            && !s.idle.is_zero();
        if renew {
            pipe.expire(&record_key, s.idle.as_secs().max(1) as i64);
        }
        let values: Vec<Value> = pipe.query_async(&mut conn).await?;
        let (epoch_raw, state_raw): (Option<String>, Option<String>) =
            redis::from_redis_value(values.first().cloned().unwrap_or(Value::Nil))?;
        let epoch = match epoch_raw.as_deref() {
            None | Some("") => Some(None),
            Some(e) => e.parse::<i64>().ok().map(Some),
        };
        let Some(epoch) = epoch else {
            // A damaged epoch: the caller's direct read reports it.
            return Ok(Lookup::Unusable);
        };
        let state = state_raw
            .as_deref()
            .and_then(AccountState::decode)
            .map(Arc::new);
        let left = Duration::from_millis(pttl.max(0) as u64);
        let (idle_deadline, renewed_at) = if renew {
            (sent + s.idle, sent)
        } else {
            // When some server last renewed it, as far as its time left tells.
            let ago = s.idle.saturating_sub(left);
            (sent + left, sent.checked_sub(ago).unwrap_or(s.origin))
        };
        let found = Found {
            record,
            epoch,
            state,
        };
        s.keep(
            &read,
            key,
            CachedSession {
                record: found.record.clone(),
                idle_deadline,
                renewed_at,
            },
            CachedAccount {
                epoch: found.epoch,
                state: found.state.clone(),
            },
        );
        drop(read);
        Ok(Lookup::Found(Box::new(found)))
    }

    async fn renew(&self, tracking: Tracking, key: &str) {
        let s = &*self.shared;
        let mut conn = tracking.conn;
        let sent = Instant::now();
        let renewed: Result<bool, _> = redis::cmd("EXPIRE")
            .arg(s.key("s", key))
            .arg(s.idle.as_secs().max(1))
            .query_async(&mut conn)
            .await;
        let mut state = s.lock();
        match renewed {
            Ok(true) => {
                if let Some(entry) = state.sessions.get_mut(key) {
                    entry.idle_deadline = sent + s.idle;
                }
            }
            // Gone from Redis: so from here (its invalidation is on its way too).
            Ok(false) => {
                state.sessions.pop(key);
            }
            // The entry keeps its old deadline; the heartbeat judges the connection.
            Err(_) => {}
        }
    }

    /// Forgets the session (this server ended it).
    pub(super) fn evict_session(&self, key: &str) {
        self.shared.lock().sessions.pop(key);
    }

    /// Forgets the account's epoch and snapshot (this server changed them): its sessions are
    /// read again on their next use.
    pub(super) fn evict_account(&self, account_id: &str) {
        self.shared.lock().accounts.pop(account_id);
    }

    /// Waits until every invalidation Redis queued for this server before now has been
    /// handled: a PING over the tracking connection. Call after a write of this server whose
    /// effect its next requests must see. A failed barrier empties the cache.
    pub(super) async fn barrier(&self) {
        let s = &*self.shared;
        let Some(tracking) = s.current() else {
            return;
        };
        let mut conn = tracking.conn;
        let answered = tokio::time::timeout(
            PING_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        if !matches!(answered, Ok(Ok(_))) {
            s.lose(tracking.id);
        }
    }

    pub(super) fn stats(&self) -> NearCacheStats {
        let s = &*self.shared;
        NearCacheStats {
            serving: s.proven().is_some(),
            hits: s.hits.load(Ordering::Relaxed),
            fills: s.fills.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    fn new(prefix: &str, timeouts: Timeouts, capacity: NonZeroUsize) -> Self {
        Self {
            prefix: prefix.to_string(),
            idle: timeouts.idle.max(Duration::from_secs(1)),
            renew_every: (timeouts.idle / 10).min(MAX_RENEW_EVERY),
            state: Mutex::new(State {
                sessions: LruCache::new(capacity),
                accounts: LruCache::new(capacity),
                reads: HashMap::new(),
                stamp: 0,
                connection: 0,
            }),
            conn: Mutex::new(None),
            proven_ms: AtomicU64::new(0),
            origin: Instant::now(),
            unsupported: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            fills: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave an entry half-written that is unsafe to
        // serve (each update is one map operation), but be strict: start over empty.
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            flush(&mut state);
            self.state.clear_poison();
            state
        })
    }

    fn key(&self, kind: &str, k: &str) -> String {
        format!("{}{kind}:{k}", self.prefix)
    }

    /// Caches what `read` found unless an invalidation crossed it: the session if its record
    /// key was not invalidated, its account if neither the epoch nor the snapshot key was.
    fn keep(&self, read: &Registration, key: &str, session: CachedSession, account: CachedAccount) {
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

    fn register(&self) -> Registration<'_> {
        let stamp = self.lock().stamp;
        Registration {
            shared: self,
            keys: Vec::with_capacity(3),
            stamp,
        }
    }

    fn current(&self) -> Option<Tracking> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tracking connection, if the last answered heartbeat is recent enough.
    fn proven(&self) -> Option<Tracking> {
        let proven = self.proven_ms.load(Ordering::Acquire);
        if proven == 0 {
            return None;
        }
        let age = (self.origin.elapsed().as_millis() as u64).saturating_sub(proven);
        if Duration::from_millis(age) >= STALENESS_BOUND {
            return None;
        }
        self.current()
    }

    /// The connection `id` failed: drop it, and everything it vouched for.
    fn lose(&self, id: u64) {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.as_ref().is_some_and(|t| t.id == id) {
            *conn = None;
            self.proven_ms.store(0, Ordering::Release);
            drop(conn);
            flush(&mut self.lock());
        }
    }

    /// A message Redis pushed on the tracking connection `id`.
    fn on_push(&self, id: u64, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    let mut state = self.lock();
                    for key in keys {
                        match redis::from_redis_value_ref::<String>(key) {
                            Ok(key) => self.invalidate(&mut state, &key),
                            // A key we cannot name: be safe.
                            Err(_) => flush(&mut state),
                        }
                    }
                }
                // FLUSHALL / FLUSHDB, or a shape we do not know.
                _ => flush(&mut self.lock()),
            },
            PushKind::Disconnection => self.lose(id),
            _ => {}
        }
    }

    fn invalidate(&self, state: &mut State, key: &str) {
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

fn flush(state: &mut State) {
    state.sessions.clear();
    state.accounts.clear();
    state.stamp += 1;
    for r in state.reads.values_mut() {
        r.stale = true;
    }
}

/// Keeps a proven tracking connection: connects (again), turns tracking on, and sends the
/// heartbeat; stops when the cache is dropped.
async fn keep_tracking(shared: Weak<Shared>, info: ConnectionInfo) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        if s.unsupported.load(Ordering::Relaxed) {
            return;
        }
        match s.current() {
            Some(tracking) => {
                let sent = s.origin.elapsed().as_millis() as u64;
                let mut conn = tracking.conn.clone();
                let answered = tokio::time::timeout(
                    PING_TIMEOUT,
                    redis::cmd("PING").query_async::<String>(&mut conn),
                )
                .await;
                match answered {
                    Ok(Ok(_)) => {
                        s.proven_ms.fetch_max(sent.max(1), Ordering::AcqRel);
                    }
                    _ => {
                        tracing::warn!(
                            "the near cache's Redis connection failed; sessions are read from Redis until it is back"
                        );
                        s.lose(tracking.id);
                    }
                }
            }
            None => match connect(&s, &shared, &info).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    warned = false;
                    continue;
                }
                Err(Refused::Unsupported(e)) => {
                    tracing::warn!(error = %e, "Redis refused CLIENT TRACKING (RESP3, Redis 6 or later, is needed); the near cache is off and every /auth/verify reads Redis");
                    s.unsupported.store(true, Ordering::Relaxed);
                    return;
                }
                Err(Refused::Unavailable(e)) => {
                    if !warned {
                        tracing::debug!(error = %e, "the near cache cannot connect to Redis yet");
                        warned = true;
                    }
                    drop(s);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        }
        drop(s);
        tokio::time::sleep(HEARTBEAT).await;
    }
}

enum Refused {
    Unsupported(redis::RedisError),
    Unavailable(redis::RedisError),
}

async fn connect(s: &Shared, weak: &Weak<Shared>, info: &ConnectionInfo) -> Result<(), Refused> {
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.clone().set_redis_settings(redis))
        .map_err(Refused::Unsupported)?;
    let id = {
        let mut state = s.lock();
        state.connection += 1;
        state.connection
    };
    let pushes = weak.clone();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(PING_TIMEOUT))
        .set_push_sender(move |info: PushInfo| -> Result<(), ()> {
            if let Some(s) = pushes.upgrade() {
                s.on_push(id, info);
            }
            Ok(())
        });
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| {
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) {
                Refused::Unsupported(e)
            } else {
                Refused::Unavailable(e)
            }
        })?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("NOLOOP")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                Refused::Unavailable(e)
            } else {
                Refused::Unsupported(e)
            }
        })?;
    // Whatever was cached came from an older connection.
    flush(&mut s.lock());
    *s.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(Tracking { conn, id });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::AccountSnapshot;

    fn shared() -> Shared {
        Shared::new(
            "p:",
            Timeouts {
                idle: Duration::from_secs(600),
                absolute: Duration::from_secs(3600),
            },
            NonZeroUsize::new(16).unwrap(),
        )
    }

    fn session(account: &str) -> CachedSession {
        CachedSession {
            record: SessionRecord {
                account: AccountSnapshot {
                    id: account.into(),
                    username: "u".into(),
                    email: None,
                    display_name: None,
                    roles: vec![],
                    version: 0,
                    revision: None,
                },
                connection: "c".into(),
                subject: "s".into(),
                idp_session: None,
                idp_principal: None,
                idp_logout_ref: None,
                created_at: 0,
                expires_at: i64::MAX,
            },
            idle_deadline: Instant::now() + Duration::from_secs(60),
            renewed_at: Instant::now(),
        }
    }

    fn account() -> CachedAccount {
        CachedAccount {
            epoch: None,
            state: None,
        }
    }

    fn invalidate(s: &Shared, keys: &[&str]) {
        s.on_push(
            0,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Array(
                    keys.iter()
                        .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                        .collect(),
                )],
            },
        );
    }

    /// A read whose keys every later step needs: registered as `fill` does.
    fn read<'a>(s: &'a Shared, key: &str, account: &str) -> Registration<'a> {
        let mut r = s.register();
        r.add(s.key("s", key));
        r.add(s.key("e", account));
        r.add(s.key("k", account));
        r
    }

    fn cached(s: &Shared, key: &str, account: &str) -> (bool, bool) {
        let mut state = s.lock();
        (
            state.sessions.get(key).is_some(),
            state.accounts.get(account).is_some(),
        )
    }

    #[test]
    fn a_read_no_invalidation_crossed_is_cached() {
        let s = shared();
        let r = read(&s, "k1", "a1");
        s.keep(&r, "k1", session("a1"), account());
        drop(r);
        assert_eq!(cached(&s, "k1", "a1"), (true, true));
        assert!(s.lock().reads.is_empty(), "registrations are released");
    }

    /// redis-rs' cache-aio bug, which this module exists to avoid: the invalidation of a key
    /// arrives after the read's reply but before the reply is cached; caching it anyway keeps
    /// the revoked state until the entry's TTL.
    #[test]
    fn an_invalidation_between_a_reply_and_its_insert_keeps_the_reply_out_of_the_cache() {
        let s = shared();
        let r = read(&s, "k1", "a1");
        invalidate(&s, &["p:s:k1"]);
        s.keep(&r, "k1", session("a1"), account());
        assert_eq!(cached(&s, "k1", "a1"), (false, true), "the session only");

        let s = shared();
        let r = read(&s, "k1", "a1");
        invalidate(&s, &["p:e:a1"]);
        s.keep(&r, "k1", session("a1"), account());
        assert_eq!(cached(&s, "k1", "a1"), (true, false), "the account only");

        let s = shared();
        let r = read(&s, "k1", "a1");
        invalidate(&s, &["p:k:a1"]);
        s.keep(&r, "k1", session("a1"), account());
        assert_eq!(cached(&s, "k1", "a1"), (true, false), "a snapshot change");
    }

    #[test]
    fn a_flush_during_a_read_keeps_it_out_and_empties_the_cache() {
        let s = shared();
        let first = read(&s, "k0", "a0");
        s.keep(&first, "k0", session("a0"), account());
        drop(first);
        let r = read(&s, "k1", "a1");
        // FLUSHALL: Redis sends a null instead of keys.
        s.on_push(
            0,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        );
        s.keep(&r, "k1", session("a1"), account());
        drop(r);
        assert_eq!(cached(&s, "k1", "a1"), (false, false));
        assert_eq!(cached(&s, "k0", "a0"), (false, false), "emptied");

        // The disconnection of a connection that is no longer the current one (replaced
        // after a failed heartbeat) changes nothing: the current one still vouches.
        let r = read(&s, "k2", "a2");
        s.keep(&r, "k2", session("a2"), account());
        drop(r);
        s.on_push(
            7,
            PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
        );
        assert_eq!(cached(&s, "k2", "a2"), (true, true));
    }

    #[test]
    fn an_invalidation_evicts_the_session_or_its_account_and_other_prefixes_nothing() {
        let s = shared();
        let r = read(&s, "k1", "a1");
        s.keep(&r, "k1", session("a1"), account());
        drop(r);
        invalidate(&s, &["other:s:k1", "p:o:k1"]);
        assert_eq!(cached(&s, "k1", "a1"), (true, true));
        invalidate(&s, &["p:s:k1"]);
        assert_eq!(cached(&s, "k1", "a1"), (false, true));
        invalidate(&s, &["p:k:a1"]);
        assert_eq!(cached(&s, "k1", "a1"), (false, false));
    }

    #[test]
    fn nothing_is_served_without_a_proven_channel() {
        let s = shared();
        assert!(s.proven().is_none(), "never proven");
        s.proven_ms.store(1, Ordering::Release);
        std::thread::sleep(STALENESS_BOUND + Duration::from_millis(10));
        assert!(s.proven().is_none(), "proven too long ago");
    }
}
