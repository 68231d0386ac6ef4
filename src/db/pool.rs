//! The connection pool of a long-running process, and how long a caller waits for it.
//!
//! r2d2 makes every caller wait up to the full acquire timeout when the database does not
//! answer: during an outage each login's callback held a worker for that long twice (the
//! provisioning, then the audit event of the failure), so a person got a gateway time-out from
//! the proxy instead of the bridge's error page, and `/readyz` answered after 10 s. Once a
//! wait has timed out and a direct connection attempt fails too, the database counts as down
//! and callers wait only briefly, until one gets a connection again.

use super::{DbError, DbManager, PooledConn};
use diesel::r2d2::{self, ManageConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a caller waits for a connection while the database answers (a busy pool).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits while the database is known to be down.
pub const ACQUIRE_TIMEOUT_DOWN: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub(super) struct Pool {
    inner: r2d2::Pool<DbManager>,
    /// Opens one connection outside the pool, to tell "down" from "every connection busy".
    probe: Arc<DbManager>,
    down: Arc<AtomicBool>,
    /// Set by [`Pool::shut`]: the process is stopping, nothing more is handed out.
    shut: Arc<AtomicBool>,
}

impl Pool {
    pub(super) fn new(manager: DbManager, probe: DbManager, size: u32) -> Result<Self, DbError> {
        let inner = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(ACQUIRE_TIMEOUT)
            .build(manager)
            .map_err(DbError::Pool)?;
        Ok(Self {
            inner,
            probe: Arc::new(probe),
            down: Arc::new(AtomicBool::new(false)),
            shut: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Hands out no more connections, to any clone: for a process (or a test) that is stopping,
    /// so that background work asking for one fails at once instead of waiting out the
    /// acquire timeout against a database that is going away.
    pub(super) fn shut(&self) {
        self.shut.store(true, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> Result<PooledConn, DbError> {
        if self.shut.load(Ordering::Relaxed) {
            return Err(DbError::Closed("the process is stopping"));
        }
        let down = self.down.load(Ordering::Relaxed);
        let wait = if down {
            ACQUIRE_TIMEOUT_DOWN
        } else {
            ACQUIRE_TIMEOUT
        };
        match self.inner.get_timeout(wait) {
            Ok(c) => {
                if down && self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("the database answers again");
                }
                Ok(c)
            }
            Err(e) => {
                if !down
                    && self.probe.connect().is_err()
                    && !self.down.swap(true, Ordering::Relaxed)
                {
                    tracing::error!(error = %e, "the database does not answer; failing fast until it does");
                }
                Err(DbError::Pool(e))
            }
        }
    }
}
