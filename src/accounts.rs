//! Administrative account operations, each audited in the same transaction as the change.

use crate::db::models::Account;
use crate::db::schema::accounts;
use crate::db::{DbConnection, DbError};
use crate::lifecycle::roles::{self, RoleChange, RoleOutcome};
use crate::lifecycle::{self, Applied, DisabledBy, Origin, Transition};
use crate::session::AccountState;
use diesel::prelude::*;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no account has the username {0:?}")]
    NotFound(String),
    #[error(
        "the account {0:?} was changed by someone else at the same time; nothing was written, try again"
    )]
    Concurrent(String),
    #[error("{0}")]
    Role(String),
    #[error(
        "no account holds the username {0:?} in quarantine (with the configured accounts.username_hash_key, or the key generated in the database); nothing was released"
    )]
    NotHeld(String),
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
        .get_result(conn)
        .optional()?)
}

/// An administrator disables (`Some(reason)`) or enables (`None`) the account, through the
/// lifecycle apply path; returns it as it now is. A disable is typed as an admin's whatever
/// its reason says (a reason starting with `directory:` made the sweeper treat an admin's
/// hold as its own and reactivate it), and queues the end of its sessions in every serving
/// process (the revocation log); a caller that holds the session store can revoke directly too.
pub fn set_disabled(
    conn: &mut DbConnection,
    username: &str,
    reason: Option<&str>,
    actor: &str,
) -> Result<Account, AccountError> {
    conn.write_transaction(|c| {
        let acc = find_by_username(c, username)?
            .ok_or_else(|| AccountError::NotFound(username.into()))?;
        let seen =
            lifecycle::read(c, &acc.id)?.ok_or_else(|| AccountError::NotFound(username.into()))?;
        if reason.is_none() && seen.active {
            // Enabling an active account changes nothing (and bumps no version).
            return Ok(acc);
        }
        let t = match reason {
            Some(reason) => Transition::Disable {
                by: DisabledBy::Admin,
                reason,
            },
            None => Transition::Enable,
        };
        let origin = Origin {
            actor,
            connection: None,
        };
        match lifecycle::transition(c, &acc.id, &seen, t, origin, json!({}))? {
            Applied::Done { .. } => {}
            // Read and written in one transaction: only a concurrent writer gets here.
            Applied::Skipped { .. } => return Err(AccountError::Concurrent(username.into())),
        }
        find_by_username(c, username)?.ok_or_else(|| AccountError::NotFound(username.into()))
    })
}

/// An administrator grants or removes a role, through the apply path; returns the account's
/// snapshot after the change (for the session store).
pub fn change_role(
    conn: &mut DbConnection,
    username: &str,
    change: RoleChange<'_>,
    actor: &str,
) -> Result<AccountState, AccountError> {
    conn.write_transaction(|c| {
        let acc = find_by_username(c, username)?
            .ok_or_else(|| AccountError::NotFound(username.into()))?;
        let origin = Origin {
            actor,
            connection: None,
        };
        match roles::change_role(c, &acc.id, change, origin)? {
            RoleOutcome::Done(state) => Ok(state),
            RoleOutcome::NoSuchAccount => Err(AccountError::NotFound(username.into())),
            RoleOutcome::FromClaims => Err(AccountError::Role(format!(
                "{username} holds this role from the identity provider's claims, not from an \
                 administrator's grant; change the connection's mapping (it is recomputed at \
                 every login)"
            ))),
            RoleOutcome::NotHeld => Err(AccountError::Role(format!(
                "{username} holds no administrator's grant of this role; nothing was changed"
            ))),
        }
    })
}

/// An administrator releases a quarantined username (`jitbridge accounts release-username`):
/// every hold of it ends now, audited as `username.released` with the name's hash and the
/// account that held it (never the name). Returns the holds removed.
pub fn release_username(
    conn: &mut DbConnection,
    quarantine: &crate::config::UsernameQuarantine,
    name: &str,
    actor: &str,
) -> Result<Vec<crate::usernames::Hold>, AccountError> {
    use crate::audit::{self, Event, Outcome};
    conn.write_transaction(|c| {
        let holds = crate::usernames::release(c, quarantine, name)?;
        if holds.is_empty() {
            return Err(AccountError::NotHeld(name.into()));
        }
        for h in &holds {
            audit::record(
                c,
                Event::new("username.released", Outcome::Success)
                    .actor(actor)
                    .account(&h.account_id)
                    .details(json!({
                        "name_hash": h.name_hash,
                        "held_until": h.until.to_string(),
                    })),
            )?;
        }
        Ok(holds)
    })
}
