//! The revocation log: "end every session of this account", written in the same transaction as
//! the change that requires it (a disable, a purge), and followed by every serving process.
//!
//! With Redis sessions, whoever disables an account also revokes in Redis directly and every
//! replica sees it at once. With in-process sessions, the process that holds them may not be the
//! one that disabled the account (a CLI sweep, another admin command), so each server polls this
//! log every second and revokes locally.

use super::SessionStore;
use crate::db::schema::session_revocations;
use crate::db::{Db, DbConnection, DbError};
use diesel::prelude::*;
use std::time::Duration;

const POLL: Duration = Duration::from_secs(1);

/// Queues the end of an account's sessions for every process.
pub fn queue(c: &mut DbConnection, account_id: &str) -> Result<(), DbError> {
    diesel::insert_into(session_revocations::table)
        .values((
            session_revocations::account_id.eq(account_id),
            session_revocations::at.eq(crate::db::now()),
        ))
        .execute(c)?;
    Ok(())
}

fn latest_id(c: &mut DbConnection) -> Result<i64, DbError> {
    Ok(session_revocations::table
        .select(diesel::dsl::max(session_revocations::id))
        .first::<Option<i64>>(c)?
        .unwrap_or(0))
}

/// Follows the log until the process stops. Entries older than the absolute session timeout
/// can no longer match a live session and are deleted.
pub async fn follow_until_stopped(db: Db, sessions: SessionStore) {
    let mut last = match db.run(latest_id).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the revocation log; revocations from other processes will not reach this one");
            0
        }
    };
    let keep = time::Duration::seconds(sessions.timeouts().absolute.as_secs() as i64);
    let mut ticks = 0u64;
    loop {
        tokio::time::sleep(POLL).await;
        ticks += 1;
        let from = last;
        let rows = db
            .run(move |c| -> Result<Vec<(i64, String)>, DbError> {
                Ok(session_revocations::table
                    .filter(session_revocations::id.gt(from))
                    .order(session_revocations::id)
                    .select((session_revocations::id, session_revocations::account_id))
                    .limit(1000)
                    .load(c)?)
            })
            .await;
        match rows {
            Ok(rows) => {
                for (id, account) in rows {
                    match sessions.revoke_account(&account).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(account = %account, sessions = n, "sessions revoked")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "session store unavailable while revoking; retrying");
                            break;
                        }
                    }
                    last = id;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the revocation log"),
        }
        if ticks.is_multiple_of(600) {
            let before = crate::db::now() - keep;
            let _ = db
                .run(move |c| -> Result<usize, DbError> {
                    Ok(diesel::delete(
                        session_revocations::table.filter(session_revocations::at.lt(before)),
                    )
                    .execute(c)?)
                })
                .await;
        }
    }
}
