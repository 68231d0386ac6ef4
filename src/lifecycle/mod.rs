//! The identity-event apply path: every change of an account's lifecycle state (disable,
//! enable, purge), whoever asks for it (the sweeper, the CLI, later the admin API, SCIM and
//! SSF), goes through [`transition`]; grants and their removal through [`roles`]; an IdP
//! ending sessions (back-channel logout, SLO) through [`idp`].
//!
//! A transition is compare-and-set against the state the caller saw: the `UPDATE` carries the
//! status and the lifecycle `version` it read in its `WHERE` clause and bumps the version, and
//! the row count says whether it applied. When someone changed the account first (an admin
//! disabled it while a sweep was listing, a login raced a disable), nothing is written and the
//! skip is audited. This is portable SQL (SQLite and PostgreSQL alike). Every applied change is
//! audited, and a disable or purge queues the end of the account's sessions (the revocation
//! log), all in the caller's transaction, so either all of it happens or none.
//!
//! A purge frees the account's username: it is held back for the account (see `usernames`)
//! in the same transaction.
//!
//! Profile writes at login (provisioning) do not bump the version: it counts state
//! transitions, so a sweep's disable is not skipped because the person's name changed.

use crate::audit::{self, Event, Outcome};
use crate::config::PurgeMode;
use crate::db::models::{STATUS_ACTIVE, STATUS_DISABLED};
use crate::db::schema::{account_roles, accounts, identities};
use crate::db::{DbConnection, DbError, now};
use crate::session::revocations::Queued;
use diesel::prelude::*;
use serde_json::{Value, json};
use time::PrimitiveDateTime;

/// Who disabled an account. Typed, so that no reason text can turn an admin's hold into a
/// directory disable (which the sweeper would later reactivate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledBy {
    /// The sweeper, because the directory no longer lists the person as active.
    Directory,
    /// An administrator (CLI, later the admin API).
    Admin,
    /// The identity provider (later: SCIM `active=false`, SSF/CAEP).
    Idp,
}

impl DisabledBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::Admin => "admin",
            Self::Idp => "idp",
        }
    }

    /// Who disabled an account whose row says `status` and `disabled_by`: `None` while it is
    /// active; a missing or unknown value reads as `Admin`, the kind no automation undoes.
    pub fn of_row(status: &str, disabled_by: Option<&str>) -> Option<Self> {
        (status != STATUS_ACTIVE).then(|| Self::parse(disabled_by.unwrap_or("admin")))
    }

    /// The stored value; an unknown one reads as `Admin`, the kind no automation undoes.
    pub fn parse(s: &str) -> Self {
        match s {
            "directory" => Self::Directory,
            "idp" => Self::Idp,
            _ => Self::Admin,
        }
    }
}

/// An account's lifecycle state as a caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub active: bool,
    pub disabled_by: Option<DisabledBy>,
    pub version: i64,
}

/// What to do to the account.
#[derive(Debug, Clone, Copy)]
pub enum Transition<'a> {
    Disable {
        by: DisabledBy,
        reason: &'a str,
    },
    Enable,
    /// `quarantine` holds the username the purge frees.
    Purge {
        mode: PurgeMode,
        quarantine: &'a crate::usernames::Quarantine,
    },
}

impl Transition<'_> {
    fn action(&self) -> &'static str {
        match self {
            Self::Disable { .. } => "account.disabled",
            Self::Enable => "account.enabled",
            Self::Purge { .. } => "account.purged",
        }
    }
}

/// Who asks, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub actor: &'a str,
    pub connection: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The transition was written; the account is now at `version`.
    Done { version: i64 },
    /// The account changed since the caller read it (or is gone): nothing was written.
    Skipped { now: Option<Seen> },
}

/// The lifecycle state of an account now.
pub fn read(c: &mut DbConnection, account_id: &str) -> Result<Option<Seen>, DbError> {
    let row: Option<(String, Option<String>, i64)> = accounts::table
        .find(account_id)
        .select((accounts::status, accounts::disabled_by, accounts::version))
        .get_result(c)
        .optional()?;
    Ok(row.map(|(status, by, version)| Seen {
        active: status == STATUS_ACTIVE,
        disabled_by: DisabledBy::of_row(&status, by.as_deref()),
        version,
    }))
}

/// Applies `t` to the account if it still is as `seen`. Call inside a write transaction: the
/// audit event and the revocation are written with the change.
pub fn transition(
    c: &mut DbConnection,
    account_id: &str,
    seen: &Seen,
    t: Transition<'_>,
    origin: Origin<'_>,
    details: Value,
) -> Result<Applied, DbError> {
    // An enable or purge of an active account is no transition: skipped (and audited) rather
    // than bumping the version or anonymizing an account that is in use.
    let valid = !seen.active || matches!(t, Transition::Disable { .. });
    let at = now();
    let status = if seen.active {
        STATUS_ACTIVE
    } else {
        STATUS_DISABLED
    };
    // The compare-and-set: the row as the caller saw it, or nothing.
    macro_rules! target {
        () => {
            accounts::table
                .filter(accounts::id.eq(account_id))
                .filter(accounts::status.eq(status))
                .filter(accounts::version.eq(seen.version))
        };
    }
    let version = seen.version + 1;
    // The name a purge frees, read under the caller's lock before it is gone.
    let username: Option<String> = match t {
        Transition::Purge { .. } if valid => accounts::table
            .find(account_id)
            .select(accounts::username)
            .get_result(c)
            .optional()?,
        _ => None,
    };
    let written = if !valid {
        0
    } else {
        match t {
            Transition::Disable { by, reason } => diesel::update(target!())
                .set((
                    accounts::status.eq(STATUS_DISABLED),
                    accounts::disabled_by.eq(Some(by.as_str())),
                    accounts::disabled_reason.eq(Some(reason)),
                    accounts::disabled_at.eq(Some(at)),
                    accounts::version.eq(version),
                    accounts::revision.eq(accounts::revision + 1),
                    accounts::updated_at.eq(at),
                ))
                .execute(c)?,
            Transition::Enable => diesel::update(target!())
                .set((
                    accounts::status.eq(STATUS_ACTIVE),
                    accounts::disabled_by.eq(None::<&str>),
                    accounts::disabled_reason.eq(None::<&str>),
                    accounts::disabled_at.eq(None::<PrimitiveDateTime>),
                    accounts::version.eq(version),
                    accounts::revision.eq(accounts::revision + 1),
                    accounts::updated_at.eq(at),
                ))
                .execute(c)?,
            Transition::Purge {
                mode: PurgeMode::Delete,
                ..
            } => diesel::delete(target!()).execute(c)?,
            Transition::Purge {
                mode: PurgeMode::Anonymize,
                ..
            } => {
                // Keep the row so the audit trail's references still resolve; drop every personal
                // value and the identity link (a returning person starts a fresh account).
                let n = diesel::update(target!())
                    .set((
                        accounts::username.eq(format!("purged-{account_id}")),
                        accounts::email.eq(None::<String>),
                        accounts::display_name.eq(None::<String>),
                        accounts::attributes.eq("{}"),
                        accounts::disabled_reason.eq("purged after the retention period"),
                        accounts::version.eq(version),
                        accounts::revision.eq(accounts::revision + 1),
                        accounts::updated_at.eq(at),
                    ))
                    .execute(c)?;
                if n > 0 {
                    diesel::delete(identities::table.filter(identities::account_id.eq(account_id)))
                        .execute(c)?;
                    diesel::delete(
                        account_roles::table.filter(account_roles::account_id.eq(account_id)),
                    )
                    .execute(c)?;
                }
                n
            }
        }
    };
    let mut event = Event::new(t.action(), Outcome::Success)
        .actor(origin.actor)
        .account(account_id);
    if let Some(conn) = origin.connection {
        event = event.connection(conn);
    }
    if written == 0 {
        let now = read(c, account_id)?;
        audit::record(
            c,
            Event::new("account.transition_skipped", Outcome::Failure)
                .actor(origin.actor)
                .account(account_id)
                .details(json!({
                    "wanted": t.action(),
                    "why": "the account changed since it was read",
                    "seen": describe(Some(seen)),
                    "now": describe(now.as_ref()),
                })),
        )?;
        tracing::info!(
            account = account_id,
            wanted = t.action(),
            "lifecycle transition skipped: the account changed first"
        );
        return Ok(Applied::Skipped { now });
    }
    if let (Transition::Purge { quarantine, .. }, Some(name)) = (t, &username) {
        quarantine.hold(c, name, account_id, at)?;
    }
    let mut details = details;
    if let (Transition::Disable { by, reason }, Value::Object(m)) = (t, &mut details) {
        m.insert("reason".into(), json!(reason));
        m.insert("by".into(), json!(by.as_str()));
    }
    audit::record(c, event.details(details))?;
    let queued = match t {
        Transition::Disable { .. } | Transition::Purge { .. } => Queued::Revoke { epoch: version },
        Transition::Enable => Queued::Snapshot { version },
    };
    crate::session::revocations::queue(c, account_id, queued)?;
    Ok(Applied::Done { version })
}

fn describe(s: Option<&Seen>) -> Value {
    match s {
        None => json!("gone"),
        Some(s) => json!({
            "status": if s.active { STATUS_ACTIVE } else { STATUS_DISABLED },
            "disabled_by": s.disabled_by.map(DisabledBy::as_str),
            "version": s.version,
        }),
    }
}

pub mod idp;
pub mod roles;

#[cfg(test)]
mod tests;
