//! Gates on what a sweep may do beyond disabling: marking missing and purging.

use super::ldap::ldap_directory;
use super::*;
use crate::helpers::*;
use diesel::prelude::*;
use jitbridge::db::schema::accounts;
use jitbridge::sweeper::SweepOutcome;

/// The account's status, or None once it is purged (deleted or anonymized).
async fn status_or_purged(app: &TestApp, username: &'static str) -> Option<String> {
    app.db(move |c| {
        accounts::table
            .filter(accounts::username.eq(username))
            .select(accounts::status)
            .first::<String>(c)
            .optional()
            .unwrap()
    })
    .await
}

async fn disabled_days_ago(app: &TestApp, username: &'static str, days: i64) {
    app.db(move |c| {
        diesel::update(accounts::table.filter(accounts::username.eq(username)))
            .set(accounts::disabled_at.eq(Some(jitbridge::db::now() - time::Duration::days(days))))
            .execute(c)
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_missing_half_the_people_marked_them_all_missing_without_any_gate() {
    let app = spawn_app_with(Options {
        directory: Some(ldap_directory(UNUSED_PORT, "grace_sweeps = 2")),
        ..Default::default()
    })
    .await;
    let ten = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"];
    for s in ten {
        provision(&app, s).await;
    }
    let r = sweep_with(&app, listing(&ten[..5]), SweepOptions::default()).await;
    assert!(
        matches!(r.outcome, SweepOutcome::Aborted(_)),
        "{:?} {:?}",
        r.outcome,
        r.stats
    );
    assert!(
        !app.audit_events()
            .await
            .iter()
            .any(|e| e.action == "account.missing"),
        "accounts were marked missing past the gate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_an_admin_disabled_was_purged_although_the_directory_lists_it_as_active() {
    let app = spawn_app_with(Options {
        directory: Some(ldap_directory(
            UNUSED_PORT,
            "grace_sweeps = 1\nmax_disable_fraction = 0.5\nretention = \"1d\"",
        )),
        ..Default::default()
    })
    .await;
    for s in ["alice", "bob", "carol", "dave"] {
        provision(&app, s).await;
    }
    // An admin's hold on alice (on leave), long ago; the directory still lists her as active.
    app.db(|c| {
        jitbridge::accounts::set_disabled(c, "alice", Some("on leave"), "admin").unwrap();
    })
    .await;
    disabled_days_ago(&app, "alice", 30).await;
    // carol left: the sweeper disables her, and purges her once retention has passed.
    let r = sweep_with(
        &app,
        listing(&["alice", "bob", "dave"]),
        SweepOptions::default(),
    )
    .await;
    assert_eq!(r.stats.disabled, 1, "{:?}", r.plan);
    disabled_days_ago(&app, "carol", 2).await;
    let r = sweep_with(
        &app,
        listing(&["alice", "bob", "dave"]),
        SweepOptions::default(),
    )
    .await;
    assert_eq!(r.outcome, SweepOutcome::Applied, "{:?}", r.plan);
    assert_eq!(
        status_or_purged(&app, "carol").await,
        None,
        "carol is purged"
    );
    assert_eq!(
        status_or_purged(&app, "alice").await.as_deref(),
        Some("disabled"),
        "the admin's hold on alice is not the sweeper's to purge"
    );
}
