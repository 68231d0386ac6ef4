//! Grants on the apply path: an administrator's role (for good or until a time) and its removal.
//!
//! Like a transition, a role change takes the account's row lock, is audited and queued for
//! every process in the caller's transaction, and bumps the account's snapshot revision, so the
//! snapshot it returns (delivered after the commit) replaces every older one: a removed role
//! stops counting in live sessions at their next check, and a temporary grant carries its end
//! into the snapshot, where every check compares it with the clock.
//!
//! Claim-derived roles are the IdP's: they are recomputed at every login, so they are neither
//! granted nor removed here (removing one would last until the next login).

use super::Origin;
use crate::audit::{self, Event, Outcome};
use crate::db::models::AccountRole;
use crate::db::schema::{account_roles, accounts};
use crate::db::{DbConnection, DbError, now};
use crate::mapping::RoleName;
use crate::provisioning::ROLE_SOURCE_CLAIMS;
use crate::session::AccountState;
use crate::session::revocations::{Queued, queue};
use diesel::prelude::*;
use serde_json::json;
use time::PrimitiveDateTime;

pub const ROLE_SOURCE_MANUAL: &str = "manual";
pub const ROLE_SOURCE_TEMPORARY: &str = "temporary";

#[derive(Debug, Clone, Copy)]
pub enum RoleChange<'a> {
    /// Grants `role`, until `until` when given (a temporary grant). Granting a role the account
    /// already holds from the same source replaces that grant (its end moves).
    Grant {
        role: &'a RoleName,
        until: Option<PrimitiveDateTime>,
        reason: &'a str,
    },
    /// Removes the administrator's grants of `role` (permanent and temporary).
    Remove { role: &'a RoleName, reason: &'a str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOutcome {
    /// Written; the account's snapshot after the change, to deliver after the commit.
    Done(AccountState),
    NoSuchAccount,
    /// Nothing to remove: the account holds the role only from the IdP's claims.
    FromClaims,
    /// Nothing to remove: the account does not hold the role.
    NotHeld,
}

/// Applies `change` to the account. Call inside a write transaction.
pub fn change_role(
    c: &mut DbConnection,
    account_id: &str,
    change: RoleChange<'_>,
    origin: Origin<'_>,
) -> Result<RoleOutcome, DbError> {
    let at = now();
    // The revision bump takes the row lock (on PostgreSQL an UPDATE locks the row until the
    // commit), so role changes and logins of one account are ordered.
    let bumped = diesel::update(accounts::table.find(account_id))
        .set((
            accounts::revision.eq(accounts::revision + 1),
            accounts::updated_at.eq(at),
        ))
        .execute(c)?;
    if bumped == 0 {
        return Ok(RoleOutcome::NoSuchAccount);
    }
    let (action, details) = match change {
        RoleChange::Grant {
            role,
            until,
            reason,
        } => {
            let source = if until.is_some() {
                ROLE_SOURCE_TEMPORARY
            } else {
                ROLE_SOURCE_MANUAL
            };
            diesel::delete(
                account_roles::table
                    .filter(account_roles::account_id.eq(account_id))
                    .filter(account_roles::role.eq(role.as_str()))
                    .filter(account_roles::source.eq(source)),
            )
            .execute(c)?;
            diesel::insert_into(account_roles::table)
                .values(AccountRole {
                    account_id: account_id.into(),
                    role: role.as_str().into(),
                    source: source.into(),
                    granted_at: at,
                    expires_at: until,
                })
                .execute(c)?;
            let until = until.map(|t| t.assume_utc().unix_timestamp());
            (
                "role.granted",
                json!({ "role": role.as_str(), "source": source, "until": until, "reason": reason }),
            )
        }
        RoleChange::Remove { role, reason } => {
            let removed = diesel::delete(
                account_roles::table
                    .filter(account_roles::account_id.eq(account_id))
                    .filter(account_roles::role.eq(role.as_str()))
                    .filter(
                        account_roles::source.eq_any([ROLE_SOURCE_MANUAL, ROLE_SOURCE_TEMPORARY]),
                    ),
            )
            .execute(c)?;
            if removed == 0 {
                let from_claims: i64 = account_roles::table
                    .filter(account_roles::account_id.eq(account_id))
                    .filter(account_roles::role.eq(role.as_str()))
                    .filter(account_roles::source.eq(ROLE_SOURCE_CLAIMS))
                    .count()
                    .get_result(c)?;
                // Nothing to remove; the revision bump alone changes no snapshot.
                return Ok(if from_claims > 0 {
                    RoleOutcome::FromClaims
                } else {
                    RoleOutcome::NotHeld
                });
            }
            (
                "role.removed",
                json!({ "role": role.as_str(), "grants": removed, "reason": reason }),
            )
        }
    };
    let mut event = Event::new(action, Outcome::Success)
        .actor(origin.actor)
        .account(account_id)
        .details(details);
    if let Some(conn) = origin.connection {
        event = event.connection(conn);
    }
    audit::record(c, event)?;
    let version: i64 = accounts::table
        .find(account_id)
        .select(accounts::version)
        .get_result(c)?;
    queue(c, account_id, Queued::Snapshot { version })?;
    let state = crate::session::snapshot::load(c, account_id)?
        .ok_or_else(|| DbError::from(diesel::result::Error::NotFound))?;
    Ok(RoleOutcome::Done(state))
}
