//! The deprovisioning sweeper: disables local accounts whose people are gone from the IdP's
//! directory, and ends their sessions at once.
//!
//! One sweep = lease -> local identities -> stream the listing into the reconciler -> plan ->
//! safety gates -> apply (one transaction) -> revoke sessions. Found, not found and error are
//! three different outcomes: any listing error aborts the sweep with no change at all.
//! `sweep_once` is what the CLI and the tests call; `run_until_stopped` schedules it inside
//! `serve`.

pub mod reconcile;
pub mod store;

use crate::config::{ConnectionConfig, DirectoryConfig};
use crate::db::{Db, DbError, now};
use crate::directory::{DirectoryError, DirectorySource};
use crate::session::SessionStore;
use reconcile::{Listing, Plan, Reconciler};
use serde_json::json;
use std::time::{Duration, Instant};
use store::RunStats;

/// How long a lease lasts without renewal; a sweeper killed mid-run blocks the next one at
/// most this long.
const LEASE: time::Duration = time::Duration::seconds(120);
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default)]
pub struct SweepOptions {
    /// Compute and report the plan; change nothing.
    pub dry_run: bool,
    /// Pass the mass-disable gate (never the empty-listing gate).
    pub force: bool,
    /// Pass the purge cap.
    pub force_purge: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepOutcome {
    Applied,
    DryRun,
    Aborted(String),
    /// Another sweeper holds the connection's lease.
    Busy {
        holder: String,
    },
    /// A scheduled sweep found that some process (another replica, the CLI) swept the
    /// connection less than an interval ago, so it left it alone.
    NotDue,
}

#[derive(Debug, Clone)]
pub struct SweepReport {
    pub connection: String,
    pub outcome: SweepOutcome,
    pub plan: Option<Plan>,
    pub stats: RunStats,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("connection {0:?} has no [connection.directory]")]
    NoDirectory(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One sweep of one connection.
pub async fn sweep_once<S: DirectorySource>(
    db: &Db,
    sessions: Option<&SessionStore>,
    connection: &ConnectionConfig,
    source: S,
    opts: SweepOptions,
) -> Result<SweepReport, SweepError> {
    sweep_leased(db, sessions, connection, source, opts, None).await
}

/// The scheduled sweep inside `serve`: like [`sweep_once`], except that, checked under the
/// lease, a connection whose last run (applied or aborted, by any process) started less than
/// `interval` ago is left alone ([`SweepOutcome::NotDue`]). The lease alone only kept
/// replicas from sweeping at the same moment: each of N replicas still applied its own sweep
/// every interval, N times the directory load and N runs per interval.
pub async fn sweep_if_due<S: DirectorySource>(
    db: &Db,
    sessions: Option<&SessionStore>,
    connection: &ConnectionConfig,
    source: S,
    interval: Duration,
) -> Result<SweepReport, SweepError> {
    let opts = SweepOptions::default();
    sweep_leased(db, sessions, connection, source, opts, Some(interval)).await
}

#[tracing::instrument(skip_all, fields(connection = %connection.name, dry_run = opts.dry_run))]
async fn sweep_leased<S: DirectorySource>(
    db: &Db,
    sessions: Option<&SessionStore>,
    connection: &ConnectionConfig,
    mut source: S,
    opts: SweepOptions,
    due_every: Option<Duration>,
) -> Result<SweepReport, SweepError> {
    let dir: DirectoryConfig = connection
        .directory
        .clone()
        .ok_or_else(|| SweepError::NoDirectory(connection.name.clone()))?;
    let name = connection.name.clone();
    let started = now();
    let clock = Instant::now();
    let holder = format!(
        "{}:{}:{}",
        hostname(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let report = |outcome, plan, stats| SweepReport {
        connection: name.clone(),
        outcome,
        plan,
        stats,
        duration: clock.elapsed(),
    };

    let (n, h) = (name.clone(), holder.clone());
    if let Err(other) = db
        .run(move |c| store::acquire_lease(c, &n, &h, LEASE))
        .await?
    {
        tracing::info!(holder = %other, "another sweeper is running; skipping");
        return Ok(report(
            SweepOutcome::Busy { holder: other },
            None,
            RunStats::default(),
        ));
    }
    if let Some(interval) = due_every {
        let n = name.clone();
        let last = db.run(move |c| store::last_run_started(c, &n)).await?;
        let interval = time::Duration::try_from(interval).unwrap_or(time::Duration::MAX);
        if last.is_some_and(|t| started - t < interval) {
            let (n, h) = (name.clone(), holder.clone());
            db.run(move |c| store::release_lease(c, &n, &h)).await?;
            tracing::debug!("swept less than an interval ago (by another process); skipping");
            return Ok(report(SweepOutcome::NotDue, None, RunStats::default()));
        }
    }
    let result = sweep_locked(
        db,
        sessions,
        &name,
        &dir,
        &connection.usernames.quarantine,
        &mut source,
        opts,
        &holder,
        started,
    )
    .await;
    let (n, h) = (name.clone(), holder.clone());
    db.run(move |c| store::release_lease(c, &n, &h)).await?;
    let (outcome, plan, stats) = result?;
    let r = report(outcome, plan, stats);
    tracing::info!(outcome = ?r.outcome, seen = r.stats.seen, disabled = r.stats.disabled, ms = r.duration.as_millis() as u64, "sweep finished");
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
async fn sweep_locked<S: DirectorySource>(
    db: &Db,
    sessions: Option<&SessionStore>,
    name: &str,
    dir: &DirectoryConfig,
    usernames: &crate::config::UsernameQuarantine,
    source: &mut S,
    opts: SweepOptions,
    holder: &str,
    started: time::PrimitiveDateTime,
) -> Result<(SweepOutcome, Option<Plan>, RunStats), SweepError> {
    let n = name.to_string();
    let (locals, snapshot) = db.run(move |c| store::load_locals(c, &n)).await?;
    let mut reconciler = Reconciler::new(locals);
    let mut renewed = Instant::now();
    // However the listing ends, the reconciler decides: an incomplete one plans nothing.
    let listing = loop {
        match source.next_page().await {
            Ok(Some(page)) => {
                for e in &page.entries {
                    reconciler.observe(&e.subject, e.active);
                }
                reconciler.observe_without_subject(page.without_subject);
            }
            Ok(None) => break Listing::Complete,
            Err(e) => break Listing::Incomplete(listing_reason(&e)),
        }
        if renewed.elapsed() > LEASE_RENEW_EVERY {
            let (n, h) = (name.to_string(), holder.to_string());
            if let Err(other) = db
                .run(move |c| store::acquire_lease(c, &n, &h, LEASE))
                .await?
            {
                // Another sweeper took over (our lease expired): it owns the connection now.
                let why = format!("the lease was lost to {other} during the listing");
                return abort(db, name, started, why, opts).await;
            }
            renewed = Instant::now();
        }
    };
    let plan = reconciler.finish(
        listing,
        &dir.policy,
        crate::session::unix_now(),
        reconcile::Force {
            disables: opts.force,
            purges: opts.force_purge,
        },
    );
    if let Some(reason) = plan.abort.clone() {
        let (outcome, _, stats) = abort(db, name, started, reason, opts).await?;
        return Ok((outcome, Some(plan), stats));
    }
    notes(db, name, &plan, opts).await?;
    if opts.dry_run {
        let stats = RunStats {
            seen: plan.seen as i64,
            missing: plan.count(|a| {
                matches!(
                    a,
                    reconcile::Action::MarkMissing { .. } | reconcile::Action::Disable { .. }
                )
            }) as i64,
            disabled: plan.disables() as i64,
            reactivated: plan.count(|a| matches!(a, reconcile::Action::Reactivate)) as i64,
            purged: plan.count(|a| matches!(a, reconcile::Action::Purge)) as i64,
            deprovision_seconds_sum: 0,
        };
        let (n, s) = (name.to_string(), stats.clone());
        db.run(move |c| store::record_run(c, &n, started, "dry-run", None, &s))
            .await?;
        return Ok((SweepOutcome::DryRun, Some(plan), stats));
    }
    let (n, h, p, purge) = (
        name.to_string(),
        holder.to_string(),
        plan.clone(),
        dir.policy.purge,
    );
    let names = usernames.clone();
    let applied = db
        .run(move |c| {
            // Purges free usernames: held back in the same transaction (keys resolved first).
            let quarantine = crate::usernames::Quarantine::open(c, &names)?;
            store::apply(c, &n, &h, &p, &snapshot, purge, &quarantine, started)
        })
        .await?;
    let Some((stats, revoke)) = applied else {
        let why = "the lease was lost before the plan was applied".to_string();
        let (outcome, _, stats) = abort(db, name, started, why, opts).await?;
        return Ok((outcome, Some(plan), stats));
    };
    if let Some(sessions) = sessions {
        for (account, epoch) in &revoke {
            if let Err(e) = sessions.revoke_account(account, Some(*epoch)).await {
                // The revocation log written in the same transaction still reaches every process.
                tracing::error!(error = %e, "could not revoke sessions directly; the revocation log will");
            }
        }
    }
    Ok((SweepOutcome::Applied, Some(plan), stats))
}

/// What a sweep that goes ahead must still say: tolerated entries without a subject, purges
/// held back by the purge cap. Logged and audited before the plan is applied.
async fn notes(db: &Db, name: &str, plan: &Plan, opts: SweepOptions) -> Result<(), SweepError> {
    let mut events = Vec::new();
    if plan.without_subject > 0 {
        tracing::warn!(
            count = plan.without_subject,
            listed = plan.seen + plan.without_subject,
            "listed entries without the subject attribute (within max_entries_without_subject)"
        );
        events.push((
            "sweep.entries_without_subject",
            json!({ "count": plan.without_subject, "listed": plan.seen + plan.without_subject, "dry_run": opts.dry_run }),
        ));
    }
    if let Some(reason) = &plan.purges_held {
        tracing::warn!(reason = %reason, "purges held back");
        events.push((
            "sweep.purges_held",
            json!({ "reason": reason, "dry_run": opts.dry_run }),
        ));
    }
    if events.is_empty() {
        return Ok(());
    }
    let n = name.to_string();
    db.run(move |c| {
        c.write_transaction(|c| {
            for (action, details) in events {
                crate::audit::record(
                    c,
                    crate::audit::Event::new(action, crate::audit::Outcome::Success)
                        .actor("sweeper")
                        .connection(&n)
                        .details(details),
                )?;
            }
            Ok::<_, DbError>(())
        })
    })
    .await?;
    Ok(())
}

fn listing_reason(e: &DirectoryError) -> String {
    format!("the directory listing failed, so nothing was changed: {e}")
}

async fn abort(
    db: &Db,
    name: &str,
    started: time::PrimitiveDateTime,
    reason: String,
    opts: SweepOptions,
) -> Result<(SweepOutcome, Option<Plan>, RunStats), SweepError> {
    tracing::warn!(reason = %reason, "sweep aborted");
    let (n, r) = (name.to_string(), reason.clone());
    db.run(move |c| {
        c.write_transaction(|c| {
            store::record_run(c, &n, started, "aborted", Some(&r), &RunStats::default())?;
            crate::audit::record(
                c,
                crate::audit::Event::new("sweep.aborted", crate::audit::Outcome::Failure)
                    .actor("sweeper")
                    .connection(&n)
                    .details(json!({ "reason": r, "dry_run": opts.dry_run })),
            )
        })
    })
    .await?;
    Ok((SweepOutcome::Aborted(reason), None, RunStats::default()))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The background job inside `serve`: sweeps every connection that has a directory, each on
/// its own schedule (interval plus random jitter so replicas do not align).
pub async fn run_until_stopped(db: Db, sessions: SessionStore, connections: Vec<ConnectionConfig>) {
    let tasks: Vec<_> = connections
        .into_iter()
        .filter(|c| c.directory.is_some())
        .map(|conn| {
            let (db, sessions) = (db.clone(), sessions.clone());
            tokio::spawn(async move {
                let dir = conn.directory.clone().expect("filtered");
                loop {
                    let jitter = if dir.jitter.is_zero() { Duration::ZERO } else { Duration::from_millis(rand::random_range(0..dir.jitter.as_millis() as u64)) };
                    tokio::time::sleep(dir.interval + jitter).await;
                    let source = match crate::directory::Directory::open(&dir) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(connection = %conn.name, error = %e, "cannot open the directory");
                            continue;
                        }
                    };
                    // Each sweep in a task of its own: a panic inside a directory client (ldap3
                    // expects a well-formed entry) ended this loop for good, and with it the
                    // connection's deprovisioning. Now it is one failed sweep.
                    let (d, s, c, every) = (db.clone(), sessions.clone(), conn.clone(), dir.interval);
                    let run = tokio::spawn(async move { sweep_if_due(&d, Some(&s), &c, source, every).await });
                    match run.await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(connection = %conn.name, error = %e, "sweep failed"),
                        Err(e) => tracing::error!(connection = %conn.name, error = %e, "sweep panicked; the next one runs on schedule"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}
