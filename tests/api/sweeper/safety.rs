//! The safety gates: mass removals stop, sweeps are exclusive, a killed sweep changes nothing.

use super::ldap::{Slapd, ldap_directory};
use super::*;
use crate::helpers::*;
use jitbridge::directory::{DirectoryError, MemorySource, Page};
use jitbridge::sweeper::SweepOutcome;
use std::time::Duration;

/// A listing that takes its time, so that two sweeps overlap and one can be killed mid-way.
struct Slow(MemorySource);

impl DirectorySource for Slow {
    async fn next_page(&mut self) -> Result<Option<Page>, DirectoryError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.next_page().await
    }
}

const TEN: &[&str] = &["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"];

#[tokio::test(flavor = "multi_thread")]
async fn a_mass_removal_above_the_threshold_stops_before_any_change_until_forced() {
    let slapd = Slapd::start();
    slapd.add_users(TEN).await;
    let app = spawn_app_with(Options {
        directory: Some(ldap_directory(slapd.port, "grace_sweeps = 1")),
        ..Default::default()
    })
    .await;
    for s in TEN {
        provision(&app, s).await;
    }
    for s in &TEN[..5] {
        slapd.delete_user(s).await;
    }
    let r = sweep(&app, SweepOptions::default()).await;
    let SweepOutcome::Aborted(reason) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(reason.contains("would disable 5 of 10"), "{reason}");
    assert_eq!(status(&app, "u0").await, "active");
    let aborted = app
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.action == "sweep.aborted")
        .unwrap();
    assert!(aborted.details.contains("max_disable_fraction"));

    let forced = sweep(
        &app,
        SweepOptions {
            dry_run: false,
            force: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(forced.outcome, SweepOutcome::Applied);
    assert_eq!(forced.stats.disabled, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sweepers_started_together_do_not_both_run() {
    let app = spawn_app_with(Options {
        directory: Some(ldap_directory(UNUSED_PORT, "")),
        ..Default::default()
    })
    .await;
    for s in TEN {
        provision(&app, s).await;
    }
    let (a, b) = tokio::join!(
        sweep_with(&app, Slow(listing(TEN)), SweepOptions::default()),
        sweep_with(&app, Slow(listing(TEN)), SweepOptions::default()),
    );
    let outcomes = [a.outcome, b.outcome];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == SweepOutcome::Applied)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, SweepOutcome::Busy { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweeper_killed_mid_run_leaves_a_consistent_state_that_the_next_run_completes() {
    use diesel::prelude::*;
    use jitbridge::db::schema::sweep_locks;
    let app = spawn_app_with(Options {
        directory: Some(ldap_directory(
            UNUSED_PORT,
            "grace_sweeps = 1\nmax_disable_fraction = 0.5",
        )),
        ..Default::default()
    })
    .await;
    for s in TEN {
        provision(&app, s).await;
    }
    let without_u9: Vec<&str> = TEN[..9].to_vec();
    let conn = app.state.config.connection(CONNECTION).unwrap().clone();
    let (db, sessions) = (app.state.db.clone(), app.state.sessions.clone());
    let l = without_u9.clone();
    let killed = tokio::spawn(async move {
        jitbridge::sweeper::sweep_once(
            &db,
            Some(&sessions),
            &conn,
            Slow(listing(&l)),
            SweepOptions::default(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    killed.abort();
    let _ = killed.await;
    assert_eq!(
        status(&app, "u9").await,
        "active",
        "nothing applied by the killed sweep"
    );
    // Its lease is still held: a sweep now is refused...
    let busy = sweep_with(&app, listing(&without_u9), SweepOptions::default()).await;
    assert!(
        matches!(busy.outcome, SweepOutcome::Busy { .. }),
        "{:?}",
        busy.outcome
    );
    // ...until the lease expires (as it does two minutes after a crash); then the next run completes.
    app.db(|c| {
        diesel::update(sweep_locks::table)
            .set(sweep_locks::expires_at.eq(jitbridge::db::now() - time::Duration::seconds(1)))
            .execute(c)
            .unwrap()
    })
    .await;
    let next = sweep_with(&app, listing(&without_u9), SweepOptions::default()).await;
    assert_eq!(next.outcome, SweepOutcome::Applied);
    assert_eq!(status(&app, "u9").await, "disabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_run_by_another_process_reaches_in_process_sessions_through_the_revocation_log() {
    let app = spawn_app_with(Options {
        directory: Some(ldap_directory(UNUSED_PORT, "grace_sweeps = 1")),
        ..Default::default()
    })
    .await;
    let alice = Browser::new();
    assert_eq!(app.login(&alice, "alice").await.status(), 302);
    assert_eq!(app.login(&Browser::new(), "bob").await.status(), 302);
    // As the CLI does with in-process sessions: no direct access to the server's store.
    let conn = app.state.config.connection(CONNECTION).unwrap().clone();
    let r = jitbridge::sweeper::sweep_once(
        &app.state.db,
        None,
        &conn,
        listing(&["bob"]),
        SweepOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.stats.disabled, 1);
    let mut waited = 0;
    while app.verify(&alice).await.status() == 200 {
        assert!(waited < 30, "the server never applied the revocation");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
