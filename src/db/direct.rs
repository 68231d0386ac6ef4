//! One direct connection shared by the clones of a [`super::Db`], for short-lived processes.
//!
//! The connection is taken out of its slot for each use and put back when the [`Taken`] guard
//! drops, so it can be used from the blocking pool (`Db::run`) as well as from the caller's
//! thread, and never by two callers at once.

use super::{DbConnection, DbError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[derive(Clone)]
pub struct Shared(Arc<Slot>);

struct Slot {
    conn: Mutex<State>,
    returned: Condvar,
}

enum State {
    Idle(DbConnection),
    InUse,
    Closed,
}

impl Shared {
    pub fn new(conn: DbConnection) -> Self {
        Self(Arc::new(Slot {
            conn: Mutex::new(State::Idle(conn)),
            returned: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held left the state consistent (it is one assignment).
        self.0.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, waiting while another caller has it.
    pub fn take(&self) -> Result<Taken, DbError> {
        let mut state = self.lock();
        loop {
            match std::mem::replace(&mut *state, State::InUse) {
                State::Idle(conn) => {
                    return Ok(Taken {
                        conn: Some(conn),
                        home: self.clone(),
                    });
                }
                State::InUse => {
                    state = self
                        .0
                        .returned
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                State::Closed => {
                    *state = State::Closed;
                    return Err(DbError::Closed("closed"));
                }
            }
        }
    }

    /// Closes the connection now (libpq's PQfinish for PostgreSQL). Fails while it is in use.
    pub fn close(self) -> Result<(), DbError> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Closed) {
            State::Idle(conn) => {
                drop(state);
                drop(conn);
                Ok(())
            }
            State::InUse => {
                *state = State::InUse;
                Err(DbError::Closed("still in use at close"))
            }
            State::Closed => Ok(()),
        }
    }
}

/// The direct connection while in use; goes back to its slot when dropped.
pub struct Taken {
    conn: Option<DbConnection>,
    home: Shared,
}

impl std::ops::Deref for Taken {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Taken {
    fn deref_mut(&mut self) -> &mut DbConnection {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut state = self.home.lock();
            *state = State::Idle(conn);
            drop(state);
            self.home.0.returned.notify_one();
        }
    }
}
