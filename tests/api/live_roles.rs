//! Roles in live sessions follow the account: an admin's grant or removal and the end of a
//! temporary grant reach sessions that already exist (through the account snapshot), on every
//! server, without a new login.

use crate::helpers::*;
use diesel::prelude::*;
use jitbridge::db::models::AccountRole;
use jitbridge::db::schema::{account_roles, accounts};
use std::time::{Duration, Instant};

async fn account_id(app: &TestApp, username: &'static str) -> String {
    app.db(move |c| {
        accounts::table
            .filter(accounts::username.eq(username))
            .select(accounts::id)
            .first(c)
            .unwrap()
    })
    .await
}

async fn groups(app: &TestApp, browser: &Browser) -> Vec<String> {
    let r = app.verify(browser).await;
    assert_eq!(r.status(), 200, "the session lives on");
    r.headers()["x-auth-request-groups"]
        .to_str()
        .unwrap()
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// Regression: the roles of a live session were the login's copy, so a temporary grant stayed
/// effective after its end, for as long as the session lived (up to `absolute_timeout`).
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_temporary_grant_no_longer_counts_in_a_live_session() {
    let app = spawn_app().await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    let id = account_id(&app, "alice").await;
    let until = jitbridge::db::now() + time::Duration::seconds(3);
    app.db(move |c| {
        diesel::insert_into(account_roles::table)
            .values(AccountRole {
                account_id: id,
                role: "oncall".into(),
                source: "temporary".into(),
                granted_at: jitbridge::db::now(),
                expires_at: Some(until),
            })
            .execute(c)
            .unwrap()
    })
    .await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    assert!(groups(&app, &browser).await.contains(&"oncall".to_string()));
    let end = until.assume_utc().unix_timestamp();
    while jitbridge::session::unix_now() <= end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = groups(&app, &browser).await;
    assert!(
        !now.contains(&"oncall".to_string()),
        "the ended grant still counts: {now:?}"
    );
}

fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let sessions = &app.state.config.sessions;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_jitbridge"));
    c.env_remove("JITBRIDGE_CONFIG")
        .env("JITBRIDGE_DATABASE__URL", &app.test_db.url)
        .arg("accounts")
        .args(args);
    if uses_redis() {
        c.env("JITBRIDGE_SESSIONS__STORE", "redis")
            .env("JITBRIDGE_SESSIONS__REDIS_URL", redis_url())
            .env("JITBRIDGE_SESSIONS__KEY_PREFIX", &sessions.key_prefix)
            .env("JITBRIDGE_SERVER__STATE_KEY", STATE_KEY);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Polls verify until `done(groups)`, at most `limit`; returns how long it took.
async fn until(
    app: &TestApp,
    browser: &Browser,
    limit: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let g = groups(app, browser).await;
        if done(&g) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not reached within {limit:?}: {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An administrator's grant and its removal, made by the CLI in another process (with
/// in-process sessions it cannot reach the server's store: the server's follower delivers the
/// snapshot; with Redis the CLI writes it), reach a live session without a new login.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_granted_or_removed_with_the_cli_reaches_live_sessions_within_a_second() {
    let app = spawn_app().await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    assert!(!groups(&app, &browser).await.contains(&"oncall".to_string()));

    let out = cli(&app, &["grant", "alice", "oncall", "--for", "1h"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("granted oncall to alice until"));
    let has = |g: &[String]| g.contains(&"oncall".to_string());
    if uses_redis() {
        // The CLI wrote the snapshot itself: the very next check sees it.
        assert!(
            has(&groups(&app, &browser).await),
            "the CLI did not write the snapshot"
        );
        cli(&app, &["remove-role", "alice", "oncall"]);
        assert!(
            !has(&groups(&app, &browser).await),
            "the removal is not seen at once"
        );
    } else {
        // Another process: the server's follower delivers it, within a second.
        let limit = Duration::from_secs(1);
        let granted = until(&app, &browser, limit, has).await;
        cli(&app, &["remove-role", "alice", "oncall"]);
        let removed = until(&app, &browser, limit, |g| !has(g)).await;
        println!("grant reached the live session in {granted:?}, the removal in {removed:?}");
    }

    // Both are on the audit trail, with who did it.
    let events = app.audit_events().await;
    for action in ["role.granted", "role.removed"] {
        let e = events.iter().find(|e| e.action == action).expect(action);
        assert!(e.actor.starts_with("cli:"), "{}", e.actor);
    }
}

/// A role from the IdP's claims is not the admin's to remove (the next login would bring it
/// back): the CLI says so and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn removing_a_claim_role_with_the_cli_is_refused_with_the_fix() {
    let app = spawn_app().await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_jitbridge"));
    let out = c
        .env_remove("JITBRIDGE_CONFIG")
        .env("JITBRIDGE_DATABASE__URL", &app.test_db.url)
        .args(["accounts", "remove-role", "alice", "staff"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("claims") && err.contains("mapping"), "{err}");
    assert!(groups(&app, &browser).await.contains(&"staff".to_string()));
}
