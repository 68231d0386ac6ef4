//! The sweeper's storage: the lease that keeps sweeps of a connection exclusive, the local
//! identities it reconciles, and the one transaction that applies a plan.

use super::reconcile::{Absence, Action, LocalIdentity, LocalStatus, Plan};
use crate::audit::{self, Event, Outcome};
use crate::config::PurgeMode;
use crate::db::models::{STATUS_ACTIVE, STATUS_DISABLED};
use crate::db::schema::{account_roles, accounts, identities, sweep_locks, sweep_runs};
use crate::db::{DbConnection, DbError, now};
use diesel::prelude::*;
use serde_json::json;
use time::PrimitiveDateTime;

/// Prefix of `disabled_reason` for accounts the sweeper disabled (and so may reactivate).
pub const DIRECTORY_REASON_PREFIX: &str = "directory:";

/// Whether the sweeper disabled the account (so may reactivate or purge it). The one place
/// that reads "who disabled" from the reason, until a typed `disabled_by` column replaces it.
pub fn disabled_by_directory(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.starts_with(DIRECTORY_REASON_PREFIX))
}

pub fn to_unix(t: PrimitiveDateTime) -> i64 {
    t.assume_utc().unix_timestamp()
}

pub fn from_unix(s: i64) -> PrimitiveDateTime {
    let t =
        time::OffsetDateTime::from_unix_timestamp(s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    PrimitiveDateTime::new(t.date(), t.time())
}

/// Takes the connection's lease unless another live holder has it; returns that holder then.
///
/// Safe under concurrency on both backends: a takeover is a conditional UPDATE (PostgreSQL
/// re-checks its WHERE against a row another transaction just changed, so only one of two
/// racing sweepers matches), and a first lease is an INSERT that the primary key lets only one
/// sweeper make.
pub fn acquire_lease(
    c: &mut DbConnection,
    connection: &str,
    holder: &str,
    ttl: time::Duration,
) -> Result<Result<(), String>, DbError> {
    let taken: Result<Result<(), String>, DbError> = c.write_transaction(|c| {
        let at = now();
        let renewed = diesel::update(
            sweep_locks::table
                .filter(sweep_locks::connection.eq(connection))
                .filter(
                    sweep_locks::expires_at
                        .le(at)
                        .or(sweep_locks::holder.eq(holder)),
                ),
        )
        .set((
            sweep_locks::holder.eq(holder),
            sweep_locks::expires_at.eq(at + ttl),
        ))
        .execute(c)?;
        if renewed == 1 {
            return Ok(Ok(()));
        }
        let current: Option<String> = sweep_locks::table
            .find(connection)
            .select(sweep_locks::holder)
            .first(c)
            .optional()?;
        if let Some(other) = current {
            return Ok(Err(other));
        }
        diesel::insert_into(sweep_locks::table)
            .values((
                sweep_locks::connection.eq(connection),
                sweep_locks::holder.eq(holder),
                sweep_locks::expires_at.eq(at + ttl),
            ))
            .execute(c)?;
        Ok(Ok(()))
    });
    match taken {
        Err(e) if e.is_unique_violation() => {
            Ok(Err("another sweeper that started at the same moment".into()))
        }
        other => other,
    }
}

pub fn release_lease(c: &mut DbConnection, connection: &str, holder: &str) -> Result<(), DbError> {
    diesel::delete(
        sweep_locks::table
            .filter(sweep_locks::connection.eq(connection))
            .filter(sweep_locks::holder.eq(holder)),
    )
    .execute(c)?;
    Ok(())
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<PrimitiveDateTime>,
    Option<PrimitiveDateTime>,
    i32,
);

/// Every identity of the connection with what the reconciler needs of its account.
pub fn load_locals(c: &mut DbConnection, connection: &str) -> Result<Vec<LocalIdentity>, DbError> {
    let rows: Vec<Row> = identities::table
        .inner_join(accounts::table)
        .filter(identities::connection.eq(connection))
        .select((
            identities::subject,
            accounts::id,
            accounts::status,
            accounts::disabled_reason,
            accounts::disabled_at,
            identities::missing_since,
            identities::missing_count,
        ))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(
            |(subject, account_id, status, reason, disabled_at, missing_since, missing_count)| {
                let since = disabled_at.map(to_unix).unwrap_or(0);
                let status = if status == STATUS_ACTIVE {
                    LocalStatus::Active
                } else if disabled_by_directory(reason.as_deref()) {
                    LocalStatus::DisabledByDirectory { since }
                } else {
                    LocalStatus::DisabledOther { since }
                };
                LocalIdentity {
                    subject,
                    account_id,
                    status,
                    missing_since: missing_since.map(to_unix),
                    missing_count,
                }
            },
        )
        .collect())
}

/// What a sweep did, as recorded in `sweep_runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub seen: i64,
    pub missing: i64,
    pub disabled: i64,
    pub reactivated: i64,
    pub purged: i64,
    pub deprovision_seconds_sum: i64,
}

pub fn record_run(
    c: &mut DbConnection,
    connection: &str,
    started: PrimitiveDateTime,
    outcome: &str,
    reason: Option<&str>,
    s: &RunStats,
) -> Result<(), DbError> {
    diesel::insert_into(sweep_runs::table)
        .values((
            sweep_runs::connection.eq(connection),
            sweep_runs::started_at.eq(started),
            sweep_runs::finished_at.eq(now()),
            sweep_runs::outcome.eq(outcome),
            sweep_runs::reason.eq(reason),
            sweep_runs::seen.eq(s.seen),
            sweep_runs::missing.eq(s.missing),
            sweep_runs::disabled.eq(s.disabled),
            sweep_runs::reactivated.eq(s.reactivated),
            sweep_runs::purged.eq(s.purged),
            sweep_runs::deprovision_seconds_sum.eq(s.deprovision_seconds_sum),
        ))
        .execute(c)?;
    Ok(())
}

/// Applies the plan in one transaction (all of it or nothing, so a killed sweeper leaves a
/// consistent state); returns the stats and the accounts whose sessions must end.
pub fn apply(
    c: &mut DbConnection,
    connection: &str,
    plan: &Plan,
    purge: PurgeMode,
    started: PrimitiveDateTime,
) -> Result<(RunStats, Vec<String>), DbError> {
    c.write_transaction(|c| {
        let at = now();
        let mut stats = RunStats { seen: plan.seen as i64, ..Default::default() };
        let mut revoke = Vec::new();
        for p in &plan.actions {
            let ident = identities::table.find((connection, p.subject.as_str()));
            let event = |action| Event::new(action, Outcome::Success).actor("sweeper").account(&p.account_id).connection(connection);
            match &p.action {
                Action::MarkMissing { missing_since, missing_count, why } => {
                    stats.missing += 1;
                    diesel::update(ident)
                        .set((identities::missing_since.eq(Some(from_unix(*missing_since))), identities::missing_count.eq(*missing_count)))
                        .execute(c)?;
                    if *missing_count == 1 {
                        audit::record(c, event("account.missing").details(json!({ "subject": p.subject, "why": why_text(*why) })))?;
                    }
                }
                Action::Disable { missing_since, missing_count, why } => {
                    stats.missing += 1;
                    stats.disabled += 1;
                    let waited = to_unix(at) - missing_since;
                    stats.deprovision_seconds_sum += waited.max(0);
                    diesel::update(ident)
                        .set((identities::missing_since.eq(Some(from_unix(*missing_since))), identities::missing_count.eq(*missing_count)))
                        .execute(c)?;
                    diesel::update(accounts::table.find(&p.account_id))
                        .set((
                            accounts::status.eq(STATUS_DISABLED),
                            accounts::disabled_reason.eq(format!("{DIRECTORY_REASON_PREFIX} {}", why_text(*why))),
                            accounts::disabled_at.eq(Some(at)),
                            accounts::updated_at.eq(at),
                        ))
                        .execute(c)?;
                    audit::record(
                        c,
                        event("account.disabled").details(json!({
                            "subject": p.subject,
                            "reason": why_text(*why),
                            "missing_sweeps": missing_count,
                            "time_to_deprovision_seconds": waited,
                        })),
                    )?;
                    crate::session::revocations::queue(c, &p.account_id)?;
                    revoke.push(p.account_id.clone());
                }
                Action::ClearMissing => {
                    diesel::update(ident)
                        .set((identities::missing_since.eq(None::<PrimitiveDateTime>), identities::missing_count.eq(0), identities::last_seen_in_directory.eq(Some(at))))
                        .execute(c)?;
                    audit::record(c, event("account.reappeared").details(json!({ "subject": p.subject })))?;
                }
                Action::Reactivate => {
                    stats.reactivated += 1;
                    diesel::update(ident)
                        .set((identities::missing_since.eq(None::<PrimitiveDateTime>), identities::missing_count.eq(0), identities::last_seen_in_directory.eq(Some(at))))
                        .execute(c)?;
                    diesel::update(accounts::table.find(&p.account_id))
                        .set((
                            accounts::status.eq(STATUS_ACTIVE),
                            accounts::disabled_reason.eq(None::<String>),
                            accounts::disabled_at.eq(None::<PrimitiveDateTime>),
                            accounts::updated_at.eq(at),
                        ))
                        .execute(c)?;
                    audit::record(c, event("account.reactivated").details(json!({ "subject": p.subject })))?;
                }
                Action::LeaveDisabled => {
                    let changed = diesel::update(ident.filter(identities::missing_since.is_not_null()))
                        .set((identities::missing_since.eq(None::<PrimitiveDateTime>), identities::missing_count.eq(0), identities::last_seen_in_directory.eq(Some(at))))
                        .execute(c)?;
                    if changed > 0 {
                        audit::record(c, event("account.reappeared").details(json!({ "subject": p.subject, "left_disabled": true })))?;
                    }
                }
                Action::Purge => {
                    stats.purged += 1;
                    purge_account(c, &p.account_id, purge, at)?;
                    audit::record(c, event("account.purged").details(json!({ "mode": match purge { PurgeMode::Anonymize => "anonymize", PurgeMode::Delete => "delete" } })))?;
                    crate::session::revocations::queue(c, &p.account_id)?;
                    revoke.push(p.account_id.clone());
                }
            }
        }
        record_run(c, connection, started, "applied", None, &stats)?;
        audit::record(
            c,
            Event::new("sweep.completed", Outcome::Success).actor("sweeper").connection(connection).details(json!({
                "seen": stats.seen, "missing": stats.missing, "disabled": stats.disabled,
                "reactivated": stats.reactivated, "purged": stats.purged,
            })),
        )?;
        Ok((stats, revoke))
    })
}

fn why_text(why: Absence) -> &'static str {
    match why {
        Absence::Gone => "gone from the directory",
        Absence::DisabledInDirectory => "disabled in the directory",
    }
}

fn purge_account(
    c: &mut DbConnection,
    account_id: &str,
    mode: PurgeMode,
    at: PrimitiveDateTime,
) -> Result<(), DbError> {
    match mode {
        PurgeMode::Delete => {
            diesel::delete(accounts::table.find(account_id)).execute(c)?;
        }
        PurgeMode::Anonymize => {
            // Keep the row so the audit trail's references still resolve; drop every personal
            // value and the identity link (a returning person starts a fresh account).
            diesel::delete(identities::table.filter(identities::account_id.eq(account_id)))
                .execute(c)?;
            diesel::delete(account_roles::table.filter(account_roles::account_id.eq(account_id)))
                .execute(c)?;
            diesel::update(accounts::table.find(account_id))
                .set((
                    accounts::username.eq(format!("purged-{account_id}")),
                    accounts::email.eq(None::<String>),
                    accounts::display_name.eq(None::<String>),
                    accounts::attributes.eq("{}"),
                    accounts::disabled_reason.eq("purged after the retention period"),
                    accounts::updated_at.eq(at),
                ))
                .execute(c)?;
        }
    }
    Ok(())
}
