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
            if probe(&s).await {
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

/// One probe (see the module documentation); on success the cache is proven as of the probe's
/// write. A failed probe drops the tracking connection (the cache is off until a new one is
/// proven). False without a tracking connection.
pub(super) async fn probe(s: &Shared) -> bool {
    let _one_at_a_time = s.probing.lock().await;
    let (tracking, mut main) = {
        let state = s.lock();
        match (state.tracking.clone(), s.main.clone()) {
            (Some(t), Some(m)) => (t, m),
            _ => return false,
        }
    };
    let ok = probe_over(s, &tracking, &mut main).await;
    if !ok {
        s.lose(tracking.id);
    }
    ok
}

async fn probe_over(
    s: &Shared,
    tracking: &Tracking,
    main: &mut redis::aio::ConnectionManager,
) -> bool {
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
        return false;
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
        return false;
    }
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
    loop {
        {
            let mut state = s.lock();
            if state.current != tracking.id {
                return false;
            }
            if state.probes_seen > before {
                state.proven_ms = state.proven_ms.max(written_ms.max(1));
                return true;
            }
        }
        if tokio::time::timeout_at(deadline, notified.as_mut())
            .await
            .is_err()
        {
            return false;
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
    let refused = |e: redis::RedisError| match e.kind() {
        ErrorKind::RESP3NotSupported
        | ErrorKind::Server(ServerErrorKind::ResponseError)
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
        .map_err(refused)?;
    let mut state = s.lock();
    // Whatever was cached came from an older connection.
    super::flush(&mut state);
    state.tracking = Some(Tracking { conn, id });
    state.current = id;
    state.proven_ms = 0;
    state.probes_seen = 0;
    Ok(())
}
