//! A sweep plans from a snapshot taken before a listing that can last minutes. Whatever an
//! admin does during the listing wins, and a sweeper that lost its lease changes nothing.
//! Each test changes the account between two pages of the listing.

use super::*;
use crate::helpers::*;
use jitbridge::directory::{DirectoryEntry, DirectoryError, MemorySource, Page};
use jitbridge::sweeper::SweepOutcome;
use jitbridge::sweeper::reconcile::Action;
use std::future::Future;
use std::pin::Pin;

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A listing that runs `hook` after its first page, as if an admin acted during a long listing.
struct During {
    inner: MemorySource,
    hook: Option<Hook>,
    pages: usize,
}

impl DirectorySource for During {
    async fn next_page(&mut self) -> Result<Option<Page>, DirectoryError> {
        if self.pages == 1
            && let Some(h) = self.hook.take()
        {
            h.await;
        }
        self.pages += 1;
        self.inner.next_page().await
    }
}

fn listing(active: &[&str], hook: Hook) -> During {
    let entries = active
        .iter()
        .map(|s| DirectoryEntry {
            subject: s.to_string(),
            active: true,
        })
        .collect();
    During {
        inner: MemorySource::new(entries, 1),
        hook: Some(hook),
        pages: 0,
    }
}

async fn app(extra: &str) -> TestApp {
    let policy = format!("grace_sweeps = 1\nmax_disable_fraction = 1.0\n{extra}");
    let app = spawn_app_with(Options {
        directory: Some(super::ldap::ldap_directory(UNUSED_PORT, &policy)),
        ..Default::default()
    })
    .await;
    for s in ["u0", "u1", "u2", "u3"] {
        provision(&app, s).await;
    }
    app
}

fn admin(app: &TestApp, username: &'static str, reason: Option<&'static str>) -> Hook {
    let db = app.state.db.clone();
    Box::pin(async move {
        db.run(move |c| {
            let done = jitbridge::accounts::set_disabled(c, username, reason, "admin:test");
            Ok::<_, jitbridge::db::DbError>(done.expect("the admin disable"))
        })
        .await
        .unwrap();
    })
}

/// A sweep whose listing lacks `username` disables it as the directory's; then its disable
/// is moved `days` into the past.
async fn directory_disabled(app: &TestApp, username: &'static str, days: i64) {
    let others: Vec<&str> = ["u0", "u1", "u2", "u3"]
        .into_iter()
        .filter(|u| *u != username)
        .collect();
    let r = sweep_with(
        app,
        listing(&others, Box::pin(async {})),
        SweepOptions::default(),
    )
    .await;
    assert_eq!(r.stats.disabled, 1, "{:?}", r.outcome);
    app.db(move |c| {
        use diesel::prelude::*;
        use jitbridge::db::schema::accounts;
        diesel::update(accounts::table.filter(accounts::username.eq(username)))
            .set(accounts::disabled_at.eq(Some(jitbridge::db::now() - time::Duration::days(days))))
            .execute(c)
            .unwrap();
    })
    .await;
}

fn planned(r: &SweepReport, want: fn(&jitbridge::sweeper::reconcile::Action) -> bool) -> usize {
    r.plan.as_ref().map_or(0, |p| p.count(want))
}

async fn reason(app: &TestApp, username: &'static str) -> Option<String> {
    use diesel::prelude::*;
    use jitbridge::db::schema::accounts;
    app.db(move |c| {
        accounts::table
            .filter(accounts::username.eq(username))
            .select(accounts::disabled_reason)
            .first::<Option<String>>(c)
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_never_reactivates_an_account_an_admin_disabled_during_the_listing() {
    let app = app("reactivate = true").await;
    directory_disabled(&app, "u1", 0).await;
    // u1 is listed again, so the plan reactivates it; meanwhile an admin disables it.
    let source = listing(
        &["u0", "u1", "u2", "u3"],
        admin(&app, "u1", Some("on hold")),
    );
    let r = sweep_with(&app, source, SweepOptions::default()).await;
    assert_eq!(r.outcome, SweepOutcome::Applied);
    assert_eq!(planned(&r, |a| matches!(a, Action::Reactivate)), 1);
    assert_eq!(status(&app, "u1").await, "disabled");
    assert_eq!(reason(&app, "u1").await.as_deref(), Some("on hold"));
    assert_eq!(r.stats.reactivated, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_never_relabels_an_admins_disable_during_the_listing_as_the_directorys() {
    let app = app("reactivate = true").await;
    // u2 is gone from the listing, so the plan disables it; meanwhile an admin disables it.
    let source = listing(&["u0", "u1", "u3"], admin(&app, "u2", Some("on hold")));
    let r = sweep_with(&app, source, SweepOptions::default()).await;
    assert_eq!(r.outcome, SweepOutcome::Applied);
    assert_eq!(planned(&r, |a| matches!(a, Action::Disable { .. })), 1);
    assert_eq!(status(&app, "u2").await, "disabled");
    // Relabelled as the directory's, the next sweep that lists u2 would reactivate it.
    assert_eq!(reason(&app, "u2").await.as_deref(), Some("on hold"));
    let again = listing(&["u0", "u1", "u2", "u3"], Box::pin(async {}));
    sweep_with(&app, again, SweepOptions::default()).await;
    assert_eq!(
        status(&app, "u2").await,
        "disabled",
        "an admin's hold stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_never_purges_an_account_an_admin_enabled_during_the_listing() {
    let app = app("retention = \"1d\"\nreactivate = false").await;
    directory_disabled(&app, "u3", 30).await;
    // u3 is past retention, so the plan purges it; meanwhile an admin enables it.
    let source = listing(&["u0", "u1", "u2"], admin(&app, "u3", None));
    let r = sweep_with(&app, source, SweepOptions::default()).await;
    assert_eq!(r.outcome, SweepOutcome::Applied);
    assert_eq!(planned(&r, |a| matches!(a, Action::Purge)), 1);
    assert_eq!(r.stats.purged, 0);
    assert_eq!(status(&app, "u3").await, "active");
}

/// Two sweepers: the first one's lease expires during its listing and a second takes it over.
/// The first must apply nothing, or both would.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweeper_whose_lease_was_taken_over_during_the_listing_changes_nothing() {
    let app = app("").await;
    let db = app.state.db.clone();
    let takeover: Hook = Box::pin(async move {
        db.run(|c| {
            use diesel::prelude::*;
            use jitbridge::db::schema::sweep_locks;
            diesel::update(sweep_locks::table)
                .set((
                    sweep_locks::holder.eq("another-sweeper"),
                    sweep_locks::expires_at.eq(jitbridge::db::now() + time::Duration::minutes(5)),
                ))
                .execute(c)
                .map_err(jitbridge::db::DbError::from)
        })
        .await
        .unwrap();
    });
    // u1 is gone: the plan disables it.
    let source = listing(&["u0", "u2", "u3"], takeover);
    let r = sweep_with(&app, source, SweepOptions::default()).await;
    let SweepOutcome::Aborted(why) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(why.contains("lease"), "{why}");
    assert_eq!(status(&app, "u1").await, "active");
}
