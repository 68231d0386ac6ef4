//! Just-in-time provisioning: the only writer of accounts at login.
//!
//! One transaction finds the identity by (connection, subject) and updates its account, or
//! creates account + identity. Claim-derived roles are replaced by this login's set; manual and
//! temporary grants are left alone. Concurrent first logins of one subject race on the
//! identities primary key: the loser's transaction rolls back on the unique violation and its
//! retry finds the winner's account, so exactly one account exists whatever the timing.
//!
//! A login never writes the status or disable columns, and it decides on the account row only
//! after locking it, so a disable committed before that point refuses the login and one
//! committed after it waits for the login's commit (and then wins).
//!
//! Usernames are immutable unless the connection sets `update_username`: then a login whose
//! mapped username changed renames the account, and the name it gave up is held back (see
//! `usernames`). A new account, or a rename, never takes a name held for another account.

use crate::audit::{self, Event, Outcome};
use crate::config::UsernamePolicy;
use crate::db::models::{Account, AccountRole, Identity, STATUS_ACTIVE};
use crate::db::schema::{account_roles, accounts, identities};
use crate::db::{DbConnection, DbError, now};
use crate::mapping::Profile;
use crate::usernames::Quarantine;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;

const MAX_ATTEMPTS: usize = 5;
pub const ROLE_SOURCE_CLAIMS: &str = "claims";

/// What a session (and so forward-auth) needs to know about an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    /// The account's lifecycle version when the session was made (its epoch): a session older
    /// than the account's latest disable or purge is refused wherever it is checked, also when
    /// it was created after that revocation ran (see `session`). Records written before this
    /// field existed read as 0.
    #[serde(default)]
    pub version: i64,
    /// The account's snapshot revision when the session was made (see `session::snapshot`):
    /// a check refuses the session when the store's snapshot is missing or older, since then
    /// the store lost what it was told (a write lost in a failover) and nothing would show a
    /// role removed since. `None` in records written before this field existed. Keep it after
    /// `id`: the Redis store finds the id at the start of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The roles among `roles` that end (temporary grants, with no lasting grant of the same
    /// name), with their end in unix seconds: what the account's snapshot said at this check.
    /// Not stored; an identity assertion never outlives a role it carries.
    #[serde(skip)]
    pub role_ends: Vec<(String, i64)>,
}

impl AccountSnapshot {
    /// When `role` stops counting (unix seconds); `None` when it does not end.
    pub fn role_end(&self, role: &str) -> Option<i64> {
        self.role_ends
            .iter()
            .find(|(name, _)| name == role)
            .map(|(_, end)| *end)
    }
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub account: AccountSnapshot,
    /// The account's snapshot after this login, for the session store (see
    /// `session::snapshot`): delivered after the commit, before the session is created.
    pub state: crate::session::AccountState,
    pub created: bool,
    pub changed_fields: Vec<&'static str>,
    pub roles_added: Vec<String>,
    pub roles_removed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("this account is disabled")]
    AccountDisabled { account_id: String },
    #[error("the username is already used by another account")]
    UsernameTaken,
    /// The name was given up by another account (a rename, a purge) and is still held for it.
    #[error("the username is held for the account that gave it up, until {until}")]
    UsernameQuarantined {
        held_by: String,
        until: time::PrimitiveDateTime,
    },
    /// The account was purged between the identity read and its lock; `provision` retries.
    #[error("the account was removed during the login")]
    AccountGone,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ProvisionError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Who logs in: the identity key and the login's request id (for the audit trail).
#[derive(Debug, Clone, Copy)]
pub struct LoginKey<'a> {
    pub connection: &'a str,
    pub subject: &'a str,
    pub request_id: Option<&'a str>,
}

pub fn provision(
    conn: &mut DbConnection,
    key: LoginKey<'_>,
    profile: &Profile,
    usernames: &UsernamePolicy,
) -> Result<Provisioned, ProvisionError> {
    let quarantine = Quarantine::open(conn, &usernames.quarantine)?;
    provision_with(conn, key, profile, usernames.update, &quarantine)
}

/// [`provision`] with the quarantine's keys resolved by the caller (a server resolves the
/// generated one once, see [`Quarantine::open_cached`]); `rename` is `update_username`.
pub fn provision_with(
    conn: &mut DbConnection,
    key: LoginKey<'_>,
    profile: &Profile,
    rename: bool,
    quarantine: &Quarantine,
) -> Result<Provisioned, ProvisionError> {
    let rules = Rules { rename, quarantine };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match conn.write_transaction(|c| provision_once(c, key, profile, rules)) {
            Err(ProvisionError::Db(e)) if e.is_unique_violation() && attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, "concurrent first login, retrying");
            }
            Err(ProvisionError::AccountGone) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, "account purged during the login, retrying");
            }
            other => return other,
        }
    }
}

#[derive(Clone, Copy)]
struct Rules<'a> {
    /// Follow the mapped username (`update_username`).
    rename: bool,
    quarantine: &'a Quarantine,
}

fn refused(h: crate::usernames::Hold) -> ProvisionError {
    ProvisionError::UsernameQuarantined {
        held_by: h.account_id,
        until: h.until,
    }
}

fn provision_once(
    c: &mut DbConnection,
    key: LoginKey<'_>,
    profile: &Profile,
    rules: Rules<'_>,
) -> Result<Provisioned, ProvisionError> {
    let at = now();
    let attributes = serde_json::to_string(&profile.attributes).expect("json map serializes");
    // Order matters under READ COMMITTED (PostgreSQL), where each statement sees the data
    // committed before it started: read the username's owner first. A concurrent first login
    // of this subject commits its account and identity together, so if this read sees that
    // account, the identity read below (a later statement) sees its identity too, and we take
    // the update path instead of mistaking the person for a name collision.
    let username_owner: Option<String> = accounts::table
        .filter(accounts::username.eq(&profile.username))
        .select(accounts::id)
        .get_result(c)
        .optional()?;

    let existing: Option<String> = identities::table
        .filter(identities::connection.eq(key.connection))
        .filter(identities::subject.eq(key.subject))
        .select(identities::account_id)
        .get_result(c)
        .optional()?;

    let (account, created, changed_fields) = match existing {
        Some(account_id) => {
            // Lock the row before deciding anything (PostgreSQL: FOR UPDATE; SQLite: the
            // write transaction is already exclusive). A disable that commits after the lock
            // waits for this transaction; one that committed before is what we read below.
            let Some(acc) = crate::db::lock_and_read_account(c, &account_id)? else {
                // Purged since the identity read: the retry provisions a new account, as a
                // login after the purge would.
                return Err(ProvisionError::AccountGone);
            };
            if acc.status != STATUS_ACTIVE {
                return Err(ProvisionError::AccountDisabled { account_id });
            }
            let mut changed = Vec::new();
            // Without `update_username` the account keeps its name whatever the IdP maps now.
            let username = if rules.rename && acc.username != profile.username {
                if username_owner
                    .as_ref()
                    .is_some_and(|owner| *owner != acc.id)
                {
                    return Err(ProvisionError::UsernameTaken);
                }
                if let Some(h) = rules
                    .quarantine
                    .take(c, &profile.username, Some(&acc.id), at)?
                {
                    return Err(refused(h));
                }
                rules.quarantine.hold(c, &acc.username, &acc.id, at)?;
                changed.push("username");
                profile.username.clone()
            } else {
                acc.username.clone()
            };
            let email = profile.email.as_ref().map(|e| e.as_str().to_string());
            if acc.email != email {
                changed.push("email");
            }
            if acc.display_name != profile.display_name {
                changed.push("display_name");
            }
            if acc.attributes != attributes {
                changed.push("attributes");
            }
            let updated_at = if changed.is_empty() {
                acc.updated_at
            } else {
                at
            };
            // Only the profile columns login owns: status and the disable columns belong to
            // the admin and sweeper paths, and writing them back from our read is what undid
            // disables. The status condition makes the write refuse a disabled account on any
            // backend, whatever the locking.
            let written = diesel::update(
                accounts::table
                    .find(&acc.id)
                    .filter(accounts::status.eq(STATUS_ACTIVE)),
            )
            .set((
                accounts::username.eq(&username),
                accounts::email.eq(&email),
                accounts::display_name.eq(&profile.display_name),
                accounts::attributes.eq(&attributes),
                accounts::updated_at.eq(updated_at),
                accounts::last_login_at.eq(Some(at)),
                // Claim roles are recomputed below: the snapshot this login delivers must
                // replace any older one, and lose to any later change.
                accounts::revision.eq(accounts::revision + 1),
            ))
            .execute(c)?;
            if written != 1 {
                return Err(ProvisionError::AccountDisabled { account_id });
            }
            diesel::update(identities::table.find((key.connection, key.subject)))
                .set(identities::last_login_at.eq(Some(at)))
                .execute(c)?;
            let acc = Account {
                username,
                email,
                display_name: profile.display_name.clone(),
                attributes,
                updated_at,
                last_login_at: Some(at),
                ..acc
            };
            (acc, false, changed)
        }
        None => {
            if username_owner.is_some() {
                // Another subject owns the name (see the ordering note above). A concurrent
                // first login of this subject that has not committed yet makes our insert
                // below fail with a unique violation instead, which `provision` retries.
                return Err(ProvisionError::UsernameTaken);
            }
            // Read after the owner (see above): a purge or rename that freed the name committed
            // its hold with it.
            if let Some(h) = rules.quarantine.take(c, &profile.username, None, at)? {
                return Err(refused(h));
            }
            let acc = Account {
                id: uuid::Uuid::new_v4().to_string(),
                username: profile.username.clone(),
                email: profile.email.as_ref().map(|e| e.as_str().to_string()),
                display_name: profile.display_name.clone(),
                attributes,
                status: STATUS_ACTIVE.into(),
                disabled_reason: None,
                created_at: at,
                updated_at: at,
                last_login_at: Some(at),
                disabled_at: None,
                version: 0,
                disabled_by: None,
                revision: 0,
            };
            diesel::insert_into(accounts::table)
                .values(&acc)
                .execute(c)?;
            diesel::insert_into(identities::table)
                .values(Identity {
                    connection: key.connection.into(),
                    subject: key.subject.into(),
                    account_id: acc.id.clone(),
                    created_at: at,
                    last_login_at: Some(at),
                    last_seen_in_directory: None,
                    missing_since: None,
                    missing_count: 0,
                })
                .execute(c)?;
            (acc, true, vec![])
        }
    };

    let (roles_added, roles_removed, grants) =
        replace_claim_roles(c, &account.id, &profile.roles, at)?;
    // The snapshot as the database now holds the account, under the row lock: the row as this
    // transaction wrote it (a login bumps the revision by one; a new account starts at 0) and
    // every grant after the claim roles were replaced.
    let revision = if created {
        account.revision
    } else {
        account.revision + 1
    };
    let state = crate::session::snapshot::from_rows(
        &account.id,
        (
            STATUS_ACTIVE.to_string(),
            revision,
            account.username.clone(),
            account.email.clone(),
            account.display_name.clone(),
        ),
        grants,
        at,
    );
    // The roles that count now (the snapshot holds only those), once each: a role both
    // mapped from claims and granted by an admin is one role.
    let roles: Vec<String> = state
        .roles
        .iter()
        .map(|r| r.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !created
        && (!changed_fields.is_empty() || !roles_added.is_empty() || !roles_removed.is_empty())
    {
        // The account's other live sessions must see this login's changes even if its own
        // delivery after the commit never happens (the process dies, Redis times out).
        crate::session::revocations::queue(
            c,
            &account.id,
            crate::session::revocations::Queued::Snapshot {
                version: account.version,
            },
        )?;
    }

    let details = json!({
        "subject": key.subject,
        "changed_fields": changed_fields,
        "roles_added": roles_added,
        "roles_removed": roles_removed,
        "dropped_claims": profile.dropped_claims.len(),
    });
    let request_id = key.request_id.map(str::to_string);
    if created {
        audit::record(
            c,
            Event::new("account.created", Outcome::Success)
                .account(&account.id)
                .connection(key.connection)
                .details(details.clone())
                .request_id(request_id.clone()),
        )?;
    } else if !changed_fields.is_empty() || !roles_added.is_empty() || !roles_removed.is_empty() {
        audit::record(
            c,
            Event::new("account.updated", Outcome::Success)
                .account(&account.id)
                .connection(key.connection)
                .details(details)
                .request_id(request_id.clone()),
        )?;
    }
    audit::record(
        c,
        Event::new("login.succeeded", Outcome::Success)
            .actor(format!("subject:{}", key.subject))
            .account(&account.id)
            .connection(key.connection)
            .request_id(request_id),
    )?;

    Ok(Provisioned {
        account: AccountSnapshot {
            id: account.id,
            username: account.username,
            email: account.email,
            display_name: account.display_name,
            roles,
            version: account.version,
            revision: Some(state.revision),
            role_ends: state.role_ends_at(at.assume_utc().unix_timestamp()),
        },
        state,
        created,
        changed_fields,
        roles_added,
        roles_removed,
    })
}

/// The account's grants: (role, end).
type Grants = Vec<(String, Option<time::PrimitiveDateTime>)>;

/// Replaces the claim-derived roles with `wanted`; returns (added, removed) and every grant of
/// the account afterwards, for its snapshot.
fn replace_claim_roles(
    c: &mut DbConnection,
    account_id: &str,
    wanted: &BTreeSet<String>,
    at: time::PrimitiveDateTime,
) -> Result<(Vec<String>, Vec<String>, Grants), ProvisionError> {
    let rows: Vec<(String, String, Option<time::PrimitiveDateTime>)> = account_roles::table
        .filter(account_roles::account_id.eq(account_id))
        .select((
            account_roles::role,
            account_roles::source,
            account_roles::expires_at,
        ))
        .load(c)?;
    let (claims, others): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|(_, source, _)| source == ROLE_SOURCE_CLAIMS);
    let current: BTreeSet<String> = claims.into_iter().map(|(role, _, _)| role).collect();
    let removed: Vec<String> = current.difference(wanted).cloned().collect();
    let added: Vec<String> = wanted.difference(&current).cloned().collect();
    if !removed.is_empty() {
        diesel::delete(
            account_roles::table
                .filter(account_roles::account_id.eq(account_id))
                .filter(account_roles::source.eq(ROLE_SOURCE_CLAIMS))
                .filter(account_roles::role.eq_any(&removed)),
        )
        .execute(c)?;
    }
    // One statement per role: diesel's multi-backend connection has no batch insert.
    for role in &added {
        diesel::insert_into(account_roles::table)
            .values(AccountRole {
                account_id: account_id.into(),
                role: role.clone(),
                source: ROLE_SOURCE_CLAIMS.into(),
                granted_at: at,
                expires_at: None,
            })
            .execute(c)?;
    }
    // Claim roles never end.
    let grants = others
        .into_iter()
        .map(|(role, _, until)| (role, until))
        .chain(wanted.iter().map(|role| (role.clone(), None)))
        .collect();
    Ok((added, removed, grants))
}
