//! The sweeper's storage: the lease that keeps sweeps of a connection exclusive, the local
//! identities it reconciles, and the one transaction that applies a plan.

use super::reconcile::{Absence, Action, LocalIdentity, LocalStatus, Plan};
use crate::audit::{self, Event, Outcome};
use crate::config::PurgeMode;
use crate::db::models::STATUS_ACTIVE;
use crate::db::schema::{accounts, identities, sweep_locks, sweep_runs};
use crate::db::{DbConnection, DbError, now};
use crate::lifecycle::{self, Applied, DisabledBy, Origin, Seen, Transition};
use diesel::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use time::PrimitiveDateTime;

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
            .get_result(c)
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
    i64,
    Option<PrimitiveDateTime>,
    Option<PrimitiveDateTime>,
    i32,
);

/// The lifecycle state of each local account as the sweep read it, by account id: every
/// change the sweep applies is compare-and-set against it (see `lifecycle`).
pub type Snapshot = HashMap<String, Seen>;

/// Every identity of the connection with what the reconciler needs of its account, and the
/// accounts' lifecycle state that the apply will compare against.
pub fn load_locals(
    c: &mut DbConnection,
    connection: &str,
) -> Result<(Vec<LocalIdentity>, Snapshot), DbError> {
    let rows: Vec<Row> = identities::table
        .inner_join(accounts::table)
        .filter(identities::connection.eq(connection))
        .select((
            identities::subject,
            accounts::id,
            accounts::status,
            accounts::disabled_by,
            accounts::version,
            accounts::disabled_at,
            identities::missing_since,
            identities::missing_count,
        ))
        .load(c)?;
    let mut snapshot = Snapshot::with_capacity(rows.len());
    let locals = rows
        .into_iter()
        .map(
            |(
                subject,
                account_id,
                status,
                by,
                version,
                disabled_at,
                missing_since,
                missing_count,
            )| {
                // Unknown disable time (legacy rows): counted from now, never from 1970, so
                // retention cannot purge it at once.
                let since = disabled_at.map_or(to_unix(now()), to_unix);
                let active = status == STATUS_ACTIVE;
                let disabled_by = DisabledBy::of_row(&status, by.as_deref());
                let status = match disabled_by {
                    None => LocalStatus::Active,
                    // Typed, never read from the reason: an admin's reason text cannot make
                    // the sweeper treat the hold as its own.
                    Some(DisabledBy::Directory) => LocalStatus::DisabledByDirectory { since },
                    Some(_) => LocalStatus::DisabledOther { since },
                };
                snapshot.insert(
                    account_id.clone(),
                    Seen {
                        active,
                        disabled_by,
                        version,
                    },
                );
                LocalIdentity {
                    subject,
                    account_id,
                    status,
                    missing_since: missing_since.map(to_unix),
                    missing_count,
                }
            },
        )
        .collect();
    Ok((locals, snapshot))
}

/// True when `holder` still holds the connection's lease, which stays locked (PostgreSQL)
/// until the caller's transaction ends: the fencing check inside the apply, so that a sweeper
/// whose lease expired during a long listing, and was taken over, changes nothing.
pub fn lease_held(c: &mut DbConnection, connection: &str, holder: &str) -> Result<bool, DbError> {
    let q = sweep_locks::table
        .filter(sweep_locks::connection.eq(connection))
        .filter(sweep_locks::holder.eq(holder))
        .filter(sweep_locks::expires_at.gt(now()))
        .select(sweep_locks::holder);
    let held = match c {
        DbConnection::Postgresql(pg) => q.for_update().get_result::<String>(pg).optional()?,
        DbConnection::Sqlite(lite) => q.get_result::<String>(lite).optional()?,
    };
    Ok(held.is_some())
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

/// When the newest run of the connection that was not a dry run started (any process).
pub fn last_run_started(
    c: &mut DbConnection,
    connection: &str,
) -> Result<Option<PrimitiveDateTime>, DbError> {
    Ok(sweep_runs::table
        .filter(sweep_runs::connection.eq(connection))
        .filter(sweep_runs::outcome.ne("dry-run"))
        .select(diesel::dsl::max(sweep_runs::started_at))
        .get_result::<Option<PrimitiveDateTime>>(c)?)
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
/// consistent state); returns the stats and the accounts whose sessions must end, or `None`
/// when the lease was lost (then nothing was written). Each account change is compare-and-set
/// against `snapshot`: an admin who disabled or enabled an account during the listing wins,
/// and the skip is audited.
/// Accounts whose sessions must end, with the lifecycle version (epoch) they reached.
pub type Revocations = Vec<(String, i64)>;

#[allow(clippy::too_many_arguments)]
pub fn apply(
    c: &mut DbConnection,
    connection: &str,
    holder: &str,
    plan: &Plan,
    snapshot: &Snapshot,
    purge: PurgeMode,
    quarantine: &crate::usernames::Quarantine,
    started: PrimitiveDateTime,
) -> Result<Option<(RunStats, Revocations)>, DbError> {
    c.write_transaction(|c| {
        if !lease_held(c, connection, holder)? {
            return Ok(None);
        }
        let at = now();
        let origin = Origin { actor: "sweeper", connection: Some(connection) };
        let mut skipped = 0i64;
        let mut stats = RunStats { seen: plan.seen as i64, ..Default::default() };
        let mut revoke = Vec::new();
        for p in &plan.actions {
            // Account row before identity row, the order a login locks them in (see
            // provisioning): the opposite order let a sweep and a login of the same person
            // deadlock on PostgreSQL, and the database then aborted one of them.
            if matches!(p.action, Action::Disable { .. } | Action::Reactivate | Action::Purge) {
                crate::db::lock_account_row(c, &p.account_id)?;
            }
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
                    let Some(seen) = snapshot.get(&p.account_id) else { continue };
                    let t = Transition::Disable { by: DisabledBy::Directory, reason: why_text(*why) };
                    let details = json!({
                        "subject": p.subject,
                        "missing_sweeps": missing_count,
                        "time_to_deprovision_seconds": waited,
                    });
                    match lifecycle::transition(c, &p.account_id, seen, t, origin, details)? {
                        Applied::Done { version } => revoke.push((p.account_id.clone(), version)),
                        Applied::Skipped { .. } => {
                            stats.disabled -= 1;
                            skipped += 1;
                        }
                    }
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
                    let Some(seen) = snapshot.get(&p.account_id) else { continue };
                    let details = json!({ "subject": p.subject, "reactivated": true });
                    if let Applied::Skipped { .. } = lifecycle::transition(c, &p.account_id, seen, Transition::Enable, origin, details)? {
                        stats.reactivated -= 1;
                        skipped += 1;
                    }
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
                    let Some(seen) = snapshot.get(&p.account_id) else { continue };
                    let t = Transition::Purge { mode: purge, quarantine };
                    let details = json!({ "mode": match purge { PurgeMode::Anonymize => "anonymize", PurgeMode::Delete => "delete" } });
                    match lifecycle::transition(c, &p.account_id, seen, t, origin, details)? {
                        Applied::Done { version } => {
                            stats.purged += 1;
                            revoke.push((p.account_id.clone(), version));
                        }
                        Applied::Skipped { .. } => skipped += 1,
                    }
                }
            }
        }
        record_run(c, connection, started, "applied", None, &stats)?;
        audit::record(
            c,
            Event::new("sweep.completed", Outcome::Success).actor("sweeper").connection(connection).details(json!({
                "seen": stats.seen, "missing": stats.missing, "disabled": stats.disabled,
                "reactivated": stats.reactivated, "purged": stats.purged,
                "skipped_changed_meanwhile": skipped,
            })),
        )?;
        Ok(Some((stats, revoke)))
    })
}

fn why_text(why: Absence) -> &'static str {
    match why {
        Absence::Gone => "gone from the directory",
        Absence::DisabledInDirectory => "disabled in the directory",
    }
}
