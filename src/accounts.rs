//! Administrative account operations, each audited in the same transaction as the change.

use crate::audit::{self, Event, Outcome};
use crate::db::models::{Account, STATUS_ACTIVE, STATUS_DISABLED};
use crate::db::schema::accounts;
use crate::db::{DbConnection, DbError, now};
use diesel::prelude::*;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no account has the username {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<Account>, DbError> {
    Ok(accounts::table
        .order(accounts::username)
        .select(Account::as_select())
        .load(conn)?)
}

pub fn find_by_username(
    conn: &mut DbConnection,
    username: &str,
) -> Result<Option<Account>, DbError> {
    Ok(accounts::table
        .filter(accounts::username.eq(username))
        .select(Account::as_select())
        .first(conn)
        .optional()?)
}

/// Disables (`Some(reason)`) or enables (`None`) the account; returns it as it now is.
/// A disable also queues the end of its sessions in every serving process (the revocation
/// log); a caller that holds the session store can revoke directly too.
pub fn set_disabled(
    conn: &mut DbConnection,
    username: &str,
    reason: Option<&str>,
    actor: &str,
) -> Result<Account, AccountError> {
    conn.write_transaction(|c| {
        let acc = find_by_username(c, username)?
            .ok_or_else(|| AccountError::NotFound(username.into()))?;
        let at = now();
        let (action, status) = match reason {
            Some(_) => ("account.disabled", STATUS_DISABLED),
            None => ("account.enabled", STATUS_ACTIVE),
        };
        // Exactly the status columns, each set explicitly: a whole-row write from the read
        // above would skip the `None`s (an enable kept the old reason and time) and would
        // overwrite profile columns a concurrent login just wrote.
        let disabled_reason = reason.map(str::to_string);
        let disabled_at = reason.map(|_| at);
        diesel::update(accounts::table.find(&acc.id))
            .set((
                accounts::status.eq(status),
                accounts::disabled_reason.eq(&disabled_reason),
                accounts::disabled_at.eq(disabled_at),
                accounts::updated_at.eq(at),
            ))
            .execute(c)?;
        if reason.is_some() {
            crate::session::revocations::queue(c, &acc.id)?;
        }
        audit::record(
            c,
            Event::new(action, Outcome::Success)
                .actor(actor)
                .account(&acc.id)
                .details(json!({ "reason": reason })),
        )?;
        Ok(Account {
            status: status.into(),
            disabled_reason,
            disabled_at,
            updated_at: at,
            ..acc
        })
    })
}
