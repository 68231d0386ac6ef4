//! The revocation log, an outbox of account changes: written in the same transaction as the
//! change (a disable, a purge, an enable, a grant or its removal), and followed by every serving
//! process, which delivers the account's snapshot to its session store (see
//! `session::snapshot`) and, for a disable or a purge, ends the sessions made before it.
//!
//! Whoever commits a change delivers it directly as well (to Redis, where every replica sees it
//! at once); the log is what makes delivery certain: a process that dies between its commit and
//! its delivery, or in-process sessions in another process, are reached by the followers.
//!
//! With Redis sessions, whoever disables an account also revokes in Redis directly and every
//! replica sees it at once. With in-process sessions, the process that holds them may not be the
//! one that disabled the account (a CLI sweep, another admin command), so each server polls this
//! log four times a second and revokes locally.
//!
//! The follower must not skip an entry. Following `id > last` did: on PostgreSQL an id is taken
//! when the row is inserted and becomes visible when its transaction commits, so a long
//! transaction's id can appear after a later id was already seen. Instead each poll re-reads
//! every entry written in the last `window` (comfortably longer than the longest transaction
//! that queues revocations, plus the clock difference between hosts) and everything above the
//! highest id seen, and applies each id once.

use super::SessionStore;
use crate::db::schema::session_revocations;
use crate::db::{Db, DbConnection, DbError};
use diesel::prelude::*;
use std::collections::HashMap;
use std::time::Duration;
use time::PrimitiveDateTime;

/// How often the log is read: a disable made elsewhere reaches in-process sessions within about
/// this (plus one query), well inside the second the issue allows. One indexed query per poll.
const POLL: Duration = Duration::from_millis(250);
/// Every this many polls (a minute), the window's entries are delivered again (see
/// [`Follower::replay_window`]).
const REPLAY_EVERY: u64 = 240;
/// Rows per query; a poll pages through the window in id order.
const PAGE: i64 = 1000;

/// What an entry asks every process to do, besides delivering the account's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// End every session made before the account reached lifecycle version `epoch` (see
    /// `session::SessionStore::revoke_account`): a disable or a purge.
    Revoke { epoch: i64 },
    /// Nothing more: the account's identity, roles or status changed (an enable, a grant, a
    /// login that changed them), at lifecycle version `version`. The version is stored as the
    /// entry's epoch for followers of earlier versions (a rolling upgrade), which read every
    /// entry as a revocation: ending the sessions older than the current version ends nothing
    /// that the account's last disable did not already end.
    Snapshot { version: i64 },
}

/// Queues an account change for every process (see the module documentation).
pub fn queue(c: &mut DbConnection, account_id: &str, what: Queued) -> Result<(), DbError> {
    let (epoch, revoke) = match what {
        Queued::Revoke { epoch } => (epoch, true),
        Queued::Snapshot { version } => (version, false),
    };
    diesel::insert_into(session_revocations::table)
        .values((
            session_revocations::account_id.eq(account_id),
            session_revocations::at.eq(crate::db::now()),
            session_revocations::epoch.eq(epoch),
            session_revocations::revoke.eq(revoke),
        ))
        .execute(c)?;
    Ok(())
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollOutcome {
    /// Entries newly applied (their snapshots delivered, their sessions revoked).
    pub applied: usize,
    /// Sessions those entries ended.
    pub sessions: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot read the revocation log")]
    Db(#[from] DbError),
    #[error("the session store is unavailable while revoking")]
    Sessions(#[from] super::SessionError),
}

/// The follower's memory: which entries it has applied.
#[derive(Debug)]
pub struct Follower {
    window: time::Duration,
    /// Highest id seen: entries above it are read whatever their time (a follower that could
    /// not reach the database for longer than the window still catches up).
    max_seen: i64,
    /// Applied ids with their time and whether applying them again is harmless, forgotten once
    /// they are outside the window: they are at or below `max_seen` too, so no poll reads them
    /// again.
    applied: HashMap<i64, (PrimitiveDateTime, bool)>,
}

impl Follower {
    /// A follower whose first poll applies everything the log still holds (entries are kept
    /// for as long as a session can live). Skipping what was there at start lost revocations
    /// whose committing process died before revoking in Redis (a sweeper killed after its
    /// commit), since Redis sessions outlive the process; with epochs, a replay ends only
    /// sessions older than the revocation, so replaying is harmless.
    pub fn start(_c: &mut DbConnection, window: Duration) -> Result<Self, DbError> {
        Ok(Self {
            window: time::Duration::seconds(window.as_secs() as i64),
            max_seen: 0,
            applied: HashMap::new(),
        })
    }

    fn mark(&mut self, id: i64, at: PrimitiveDateTime, replayable: bool) {
        self.applied.insert(id, (at, replayable));
        self.max_seen = self.max_seen.max(id);
    }

    /// Reads the log once and revokes what it has not applied yet. An entry whose revocation
    /// fails stays unapplied and is retried at the next poll.
    pub async fn poll_once(
        &mut self,
        db: &Db,
        sessions: &SessionStore,
    ) -> Result<PollOutcome, FollowError> {
        let (since, max_seen) = (crate::db::now() - self.window, self.max_seen);
        let rows = db.run(move |c| read(c, since, max_seen)).await?;
        let fresh: Vec<Row> = rows
            .into_iter()
            .filter(|r| !self.applied.contains_key(&r.0))
            .collect();
        // Each changed account's snapshot once, read now (after every listed commit), so it is
        // at least as new as any entry's change; the store keeps the newest it is given.
        let accounts: std::collections::BTreeSet<String> =
            fresh.iter().map(|r| r.1.clone()).collect();
        let accounts: Vec<String> = accounts.into_iter().collect();
        let states = db
            .run(move |c| {
                accounts
                    .into_iter()
                    .map(|a| super::snapshot::load(c, &a).map(|s| (a, s)))
                    .collect::<Result<Vec<_>, DbError>>()
            })
            .await?;
        for (account, state) in &states {
            match state {
                Some(state) => {
                    sessions.put_account(state).await?;
                }
                // Purged: no personal value of it stays in the store, and no late delivery of
                // an older snapshot can bring one back (the tombstone's revision is the highest).
                None => {
                    sessions
                        .put_account(&super::AccountState::tombstone(account))
                        .await?;
                }
            }
        }
        let mut outcome = PollOutcome::default();
        for (id, account, at, epoch, revoke) in fresh {
            if revoke {
                // Epoch 0: a row queued by a version before epochs (a rolling upgrade), which
                // meant "end every session".
                let epoch = (epoch > 0).then_some(epoch);
                let n = sessions.revoke_account(&account, epoch).await?;
                if n > 0 {
                    tracing::info!(account = %account, sessions = n, "sessions revoked");
                }
                outcome.sessions += n;
            }
            // Every entry but a legacy "end every session" is harmless to apply again.
            self.mark(id, at, !(revoke && epoch == 0));
            outcome.applied += 1;
        }
        // Out of the window and at or below `max_seen` (every applied id is): no poll reads
        // these again.
        let since = crate::db::now() - self.window;
        self.applied.retain(|_, (at, _)| *at >= since);
        Ok(outcome)
    }

    /// Makes the next poll apply again every entry of the window that is harmless to replay:
    /// it delivers the snapshots and epochs anew, which repairs a store that lost writes (a
    /// Redis failover that dropped the last acknowledged ones, a delivery that timed out).
    pub fn replay_window(&mut self) {
        self.applied.retain(|_, (_, replayable)| !*replayable);
    }
}

type Row = (i64, String, PrimitiveDateTime, i64, bool);

/// Every entry written since `since` or with an id above `max_seen`, in id order.
fn read(
    c: &mut DbConnection,
    since: PrimitiveDateTime,
    max_seen: i64,
) -> Result<Vec<Row>, DbError> {
    let mut out = Vec::new();
    let mut after = i64::MIN;
    loop {
        let page: Vec<Row> = session_revocations::table
            .filter(
                session_revocations::at
                    .ge(since)
                    .or(session_revocations::id.gt(max_seen)),
            )
            .filter(session_revocations::id.gt(after))
            .order(session_revocations::id)
            .select((
                session_revocations::id,
                session_revocations::account_id,
                session_revocations::at,
                session_revocations::epoch,
                session_revocations::revoke,
            ))
            .limit(PAGE)
            .load(c)?;
        let full = page.len() as i64 == PAGE;
        after = page.last().map_or(after, |r| r.0);
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Follows the log until the process stops. Entries older than the absolute session timeout
/// (and the window) can no longer match a live session and are deleted.
pub async fn follow_until_stopped(db: Db, sessions: SessionStore, window: Duration) {
    let mut follower = loop {
        match db.run(move |c| Follower::start(c, window)).await {
            Ok(f) => break f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the revocation log; retrying");
                tokio::time::sleep(POLL).await;
            }
        }
    };
    let keep = sessions.timeouts().absolute.max(window);
    let keep = time::Duration::seconds(keep.as_secs() as i64);
    let mut ticks = 0u64;
    loop {
        tokio::time::sleep(POLL).await;
        ticks += 1;
        if ticks.is_multiple_of(REPLAY_EVERY) {
            follower.replay_window();
        }
        if let Err(e) = follower.poll_once(&db, &sessions).await {
            tracing::warn!(error = %e, "revocation log poll failed; retrying");
        }
        if ticks.is_multiple_of(2400) {
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
