//! The tracking connection of the near cache: connecting (RESP3, `CLIENT TRACKING ON OPTIN`),
//! and the probe that proves it current.
//!
//! A probe: the tracking connection reads this process's probe key with `CLIENT CACHING YES`
//! (so Redis watches it for us), then the main connection writes it, and the probe's
//! invalidation must come back on the tracking connection within [`PROBE_TIMEOUT`]. Redis
//! queues invalidations in the order it applies writes, and the connection hands them to
//! [`Shared::on_push`] in order with its replies, so when the probe's arrives, every
//! invalidation of a write applied before the probe's write has been handled. A PING would
//! only prove that some server answers: after a failover the main connection reconnects to the
//! new primary while the tracking connection may still be held by the old one, which never
//! sees the writes.

use super::{Shared, Tracking};
use redis::{AsyncConnectionConfig, ConnectionInfo, ProtocolVersion, PushInfo};
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the tracking connection is proven current.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long each step of a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the probe key outlives the last probe (it is this process's alone).
const PROBE_KEY_TTL_SECS: u64 = 60;

/// Keeps a proven tracking connection: connects (again) and probes; stops when the cache is
/// dropped.
pub(super) async fn keep(shared: Weak<Shared>, info: ConnectionInfo) {
    let mut backoff = Duration::from_millis(100);
    let mut down_since: Option<Instant> = None;
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        if s.unsupported.load(Ordering::Relaxed) {
            return;
        }
        let installed = s.lock().current != 0;
        if installed {
            let serving = probe(&s).await && s.is_proven(&s.read(), s.millis(Instant::now()));
            if serving {
                if let Some(since) = down_since.take() {
                    tracing::info!(after = ?since.elapsed(), "the near cache serves again");
                }
            } else if down_since.is_none() {
                down_since = Some(Instant::now());
                tracing::warn!(
                    "the near cache lost its Redis tracking connection, or it stopped seeing \
                     writes; sessions are read from Redis until it is proven again"
                );
            }
        } else {
            match connect(&s, &shared, &info).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Err(Refused::Unsupported(e)) => {
                    tracing::warn!(error = %e, "Redis refused RESP3 client tracking (Redis 6 or later, and the CLIENT command, are needed); the near cache is off and every /auth/verify reads Redis");
                    s.unsupported.store(true, Ordering::Relaxed);
                    return;
                }
                Err(Refused::Unavailable(e)) => {
                    if down_since.is_none() {
                        down_since = Some(Instant::now());
                        tracing::debug!(error = %e, "the near cache cannot connect to Redis yet");
                    }
                    drop(s);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        drop(s);
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// How a probe ended.
enum Probe {
    /// Its invalidation came back, with its own value: proven as of its write.
    Returned,
    /// The main connection could not write it: the proof lapses, the connection stays.
    NotWritten,
    /// The tracking connection failed, or never saw the write: dropped.
    Broken,
}

/// One probe (see the module documentation); true when it proved the cache current as of its
/// write. A probe the tracking connection failed drops it (the cache is off until a new one is
/// proven). False without a tracking connection.
pub(super) async fn probe(s: &Shared) -> bool {
    let _one_at_a_time = s.probing.lock().await;
    let (tracking, mut main) = {
        let state = s.read();
        match (state.tracking.clone(), s.main.clone()) {
            (Some(t), Some(m)) => (t, m),
            _ => return false,
        }
    };
    match probe_over(s, &tracking, &mut main).await {
        Probe::Returned => true,
        Probe::NotWritten => false,
        Probe::Broken => {
            s.lose(tracking.id);
            false
        }
    }
}

async fn probe_over(
    s: &Shared,
    tracking: &Tracking,
    main: &mut redis::aio::ConnectionManager,
) -> Probe {
    let mut conn = tracking.conn.clone();
    let mut watch = redis::pipe();
    watch
        .cmd("CLIENT")
        .arg("CACHING")
        .arg("YES")
        .ignore()
        .get(&s.probe_key)
        .ignore();
    let watched = tokio::time::timeout(PROBE_TIMEOUT, watch.query_async::<()>(&mut conn)).await;
    if !matches!(watched, Ok(Ok(()))) {
        return Probe::Broken;
    }
    let before = s.lock().probes_seen;
    let notified = s.probed.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let written_ms = s.origin.elapsed().as_millis() as u64;
    let mut write = redis::cmd("SET");
    write
        .arg(&s.probe_key)
        .arg(written_ms)
        .arg("EX")
        .arg(PROBE_KEY_TTL_SECS);
    let written = tokio::time::timeout(PROBE_TIMEOUT, write.query_async::<()>(main)).await;
    if !matches!(written, Ok(Ok(()))) {
        return Probe::NotWritten;
    }
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
    let mut seen = before;
    loop {
        let now_seen = {
            let state = s.read();
            if state.current != tracking.id {
                return Probe::Broken;
            }
            state.probes_seen
        };
        if now_seen > seen {
            seen = now_seen;
            // Some invalidation of the probe key came: ours only if the tracking connection
            // now reads our value (an expiry on another server, or an earlier probe's late
            // invalidation, is not ours). Its reply comes after every invalidation queued
            // before it.
            let mut read = redis::cmd("GET");
            read.arg(&s.probe_key);
            let value =
                tokio::time::timeout_at(deadline, read.query_async::<Option<String>>(&mut conn))
                    .await;
            match value {
                Ok(Ok(Some(v))) if v == written_ms.to_string() => {
                    let mut state = s.lock();
                    if state.current != tracking.id {
                        return Probe::Broken;
                    }
                    state.proven_ms = state.proven_ms.max(written_ms.max(1));
                    return Probe::Returned;
                }
                Ok(Ok(_)) => {}
                _ => return Probe::Broken,
            }
        }
        if tokio::time::timeout_at(deadline, notified.as_mut())
            .await
            .is_err()
        {
            return Probe::Broken;
        }
        notified.set(s.probed.notified());
        notified.as_mut().enable();
    }
}

enum Refused {
    Unsupported(redis::RedisError),
    Unavailable(redis::RedisError),
}

/// Opens a tracking connection and installs it (unproven: the next probe proves it).
async fn connect(s: &Shared, weak: &Weak<Shared>, info: &ConnectionInfo) -> Result<(), Refused> {
    use redis::{ErrorKind, ServerErrorKind};
    // A server without RESP3 is one for good; any other failure to connect (too many clients,
    // loading, down) is retried.
    let refused = |e: redis::RedisError| match e.kind() {
        ErrorKind::RESP3NotSupported => Refused::Unsupported(e),
        _ => Refused::Unavailable(e),
    };
    // CLIENT TRACKING refused as a command (unknown, or not allowed by an ACL) is for good.
    let refused_tracking = |e: redis::RedisError| match e.kind() {
        ErrorKind::Server(ServerErrorKind::ResponseError)
        | ErrorKind::Server(ServerErrorKind::NoPerm) => Refused::Unsupported(e),
        _ => Refused::Unavailable(e),
    };
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.clone().set_redis_settings(redis))
        .map_err(Refused::Unsupported)?;
    let id = {
        let mut state = s.lock();
        state.last_id += 1;
        state.last_id
    };
    let pushes = weak.clone();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(PROBE_TIMEOUT))
        .set_push_sender(move |info: PushInfo| -> Result<(), ()> {
            if let Some(s) = pushes.upgrade() {
                s.on_push(id, info);
            }
            Ok(())
        });
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(refused)?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("OPTIN")
        .query_async::<()>(&mut conn)
        .await
        .map_err(refused_tracking)?;
    let mut state = s.lock();
    // Whatever was cached came from an older connection.
    super::flush(&mut state);
    state.tracking = Some(Tracking { conn, id });
    state.current = id;
    state.proven_ms = 0;
    state.probes_seen = 0;
    Ok(())
}
