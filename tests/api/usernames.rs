//! Usernames: immutable unless a connection sets `update_username`, and a name freed by a
//! rename or a purge held back from anyone but its account for `accounts.username_quarantine`.

use crate::helpers::*;
use crate::sweeper::ldap::ldap_directory;
use crate::sweeper::{UNUSED_PORT, listing, sweep_with};
use diesel::prelude::*;
use jitbridge::db::schema::{accounts, generated_keys, username_quarantine};
use jitbridge::sweeper::SweepOptions;
use serde_json::{Value, json};

async fn username_of(app: &TestApp, id: String) -> Option<String> {
    app.db(move |c| {
        accounts::table
            .find(id)
            .select(accounts::username)
            .first::<String>(c)
            .optional()
            .unwrap()
    })
    .await
}

async fn id_of(app: &TestApp, username: &'static str) -> String {
    app.db(move |c| {
        accounts::table
            .filter(accounts::username.eq(username))
            .select(accounts::id)
            .first::<String>(c)
            .unwrap()
    })
    .await
}

/// Every stored hold, as text (hash, account, until).
async fn holds(app: &TestApp) -> Vec<String> {
    app.db(|c| {
        username_quarantine::table
            .select((
                username_quarantine::name_hash,
                username_quarantine::account_id,
            ))
            .load::<(String, String)>(c)
            .unwrap()
            .into_iter()
            .map(|(h, a)| format!("{h} {a}"))
            .collect()
    })
    .await
}

fn person(username: &str) -> Value {
    json!({
        "preferred_username": username, "email": format!("{}@example.com", username.replace('.', "-")),
        "email_verified": true, "given_name": "Some", "family_name": "One", "groups": ["staff"]
    })
}

fn with_update_username() -> &'static str {
    Box::leak(format!("update_username = true\n{DEFAULT_MAPPING}").into_boxed_str())
}

/// Regression: every login overwrote the account's username with the mapped one, so a
/// changed `preferred_username` at the IdP renamed the account (and freed the old name for
/// anyone). Now the account keeps the name it was created with; the rest of the profile
/// still follows the IdP.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_with_a_changed_preferred_username_no_longer_renames_the_account() {
    let app = spawn_app().await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    let id = id_of(&app, "alice").await;
    let mut claims = default_accounts()["alice"].clone();
    claims["preferred_username"] = json!("alice.renamed");
    claims["family_name"] = json!("Hargreaves");
    app.op.set_account("alice", claims).await;
    let b = Browser::new();
    assert_eq!(app.login(&b, "alice").await.status(), 302);
    assert_eq!(
        username_of(&app, id.clone()).await.as_deref(),
        Some("alice")
    );
    assert_eq!(app.account_count().await, 1);
    let v = app.verify(&b).await;
    assert_eq!(v.headers()["x-auth-request-user"], "alice");
    let updated = app
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.action == "account.updated")
        .expect("the display name still follows the IdP");
    let d: Value = serde_json::from_str(&updated.details).unwrap();
    assert_eq!(d["changed_fields"], json!(["display_name"]));
    assert!(holds(&app).await.is_empty(), "nothing was freed");
}

/// With `update_username = true` a login renames the account; the name it gave up is held for
/// it: another account's rename and a new account are refused it, and the account itself
/// gets it back. With a configured key nothing is generated in the database.
#[tokio::test(flavor = "multi_thread")]
async fn with_update_username_a_rename_holds_the_old_name_for_the_same_account_only() {
    let mut people = default_accounts();
    people["carol"] = person("carol");
    let app = spawn_app_with(Options {
        mapping: with_update_username(),
        accounts: people,
        extra_server: "[accounts]\nusername_hash_key = \"test-key-0123456789abcdef0123456789\"",
        ..Default::default()
    })
    .await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    assert_eq!(app.login(&Browser::new(), "bob").await.status(), 302);
    let alice = id_of(&app, "alice").await;
    let mut claims = default_accounts()["alice"].clone();
    claims["preferred_username"] = json!("alice.renamed");
    app.op.set_account("alice", claims.clone()).await;
    let b = Browser::new();
    assert_eq!(app.login(&b, "alice").await.status(), 302);
    assert_eq!(
        app.verify(&b).await.headers()["x-auth-request-user"],
        "alice.renamed"
    );
    let held = holds(&app).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].ends_with(&alice));
    assert!(
        !held[0].contains("alice"),
        "the name is stored in clear: {held:?}"
    );
    let generated: i64 = app
        .db(|c| generated_keys::table.count().get_result(c).unwrap())
        .await;
    assert_eq!(generated, 0, "a configured key generates none");

    // bob renamed to alice's old name, and carol's first login as it: both refused.
    let mut bob = default_accounts()["bob"].clone();
    bob["preferred_username"] = json!("alice");
    app.op.set_account("bob", bob).await;
    app.op.set_account("carol", person("alice")).await;
    for who in ["bob", "carol"] {
        let b = Browser::new();
        let r = app.login(&b, who).await;
        assert_eq!(r.status(), 403, "{who}");
        assert!(!sets_session_cookie(&r));
        let page = r.text().await.unwrap();
        assert!(
            page.contains("jitbridge accounts release-username"),
            "{page}"
        );
        assert_eq!(app.failure_reasons().await[0], "username_quarantined");
    }
    assert_eq!(app.account_count().await, 2, "carol got no account");

    // alice takes her own name back: allowed, and the name she leaves is held in turn.
    claims["preferred_username"] = json!("alice");
    app.op.set_account("alice", claims).await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    assert_eq!(
        username_of(&app, alice.clone()).await.as_deref(),
        Some("alice")
    );
    assert_eq!(holds(&app).await.len(), 1);
}

/// Logs in `leaver` (username `shared.name`) and bob, then lets the sweeper disable and purge
/// the leaver; returns the app and the leaver's account id.
async fn app_with_a_purged_account(purge: &str) -> (TestApp, String) {
    let mut people = default_accounts();
    people["leaver"] = person("shared.name");
    people["newcomer"] = person("shared.name");
    let app = spawn_app_with(Options {
        accounts: people,
        directory: Some(ldap_directory(
            UNUSED_PORT,
            &format!(
                "grace_sweeps = 1\nmax_disable_fraction = 1.0\nmax_purge_fraction = 1.0\nretention = \"1d\"\npurge = \"{purge}\""
            ),
        )),
        ..Default::default()
    })
    .await;
    assert_eq!(app.login(&Browser::new(), "leaver").await.status(), 302);
    assert_eq!(app.login(&Browser::new(), "bob").await.status(), 302);
    let leaver = id_of(&app, "shared.name").await;
    let r = sweep_with(&app, listing(&["bob"]), SweepOptions::default()).await;
    assert_eq!(r.stats.disabled, 1, "{:?}", r.plan);
    let id = leaver.clone();
    app.db(move |c| {
        diesel::update(accounts::table.find(id))
            .set(accounts::disabled_at.eq(Some(jitbridge::db::now() - time::Duration::days(2))))
            .execute(c)
            .unwrap()
    })
    .await;
    let r = sweep_with(&app, listing(&["bob"]), SweepOptions::default()).await;
    assert_eq!(r.stats.purged, 1, "{:?}", r.plan);
    (app, leaver)
}

fn release_username(app: &TestApp, name: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_jitbridge"))
        .env_remove("JITBRIDGE_CONFIG")
        .args(["accounts", "release-username", name])
        .env("JITBRIDGE_DATABASE__URL", &app.test_db.url)
        .output()
        .unwrap()
}

/// Regression: a purge (here: anonymize) freed the username, and the next person whose login
/// mapped to it got it, so applications keyed by username gave them the purged person's data.
/// Now the name is held (as a keyed hash only) and the login refused with a page naming the
/// release command, until an administrator runs it.
#[tokio::test(flavor = "multi_thread")]
async fn a_purged_accounts_username_is_no_longer_given_to_the_next_person_who_asks_for_it() {
    let (app, leaver) = app_with_a_purged_account("anonymize").await;
    let b = Browser::new();
    let r = app.login(&b, "newcomer").await;
    assert_eq!(r.status(), 403);
    assert!(!sets_session_cookie(&r));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("jitbridge accounts release-username"),
        "{page}"
    );
    assert_eq!(app.failure_reasons().await[0], "username_quarantined");
    let refused = app
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.action == "login.failed")
        .unwrap();
    assert_eq!(refused.account_id.as_deref(), Some(leaver.as_str()));

    // Nowhere in clear: not in the holds, not in the accounts, not in the audit trail.
    let held = holds(&app).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].ends_with(&leaver));
    let everything = format!(
        "{held:?}{:?}{:?}",
        app.db(|c| accounts::table
            .select(accounts::username)
            .load::<String>(c)
            .unwrap())
            .await,
        app.audit_events().await
    );
    assert!(!everything.contains("shared.name"), "{everything}");

    let out = release_username(&app, "Shared.Name");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&leaver),
        "{out:?}"
    );
    assert!(
        app.audit_events()
            .await
            .iter()
            .any(|e| e.action == "username.released" && e.account_id.as_deref() == Some(&leaver))
    );
    assert!(holds(&app).await.is_empty());
    let again = release_username(&app, "shared.name");
    assert!(
        !again.status.success(),
        "nothing left to release: {again:?}"
    );

    let b = Browser::new();
    assert_eq!(app.login(&b, "newcomer").await.status(), 302);
    assert_eq!(
        app.verify(&b).await.headers()["x-auth-request-user"],
        "shared.name"
    );
    assert_ne!(id_of(&app, "shared.name").await, leaver, "a new account");
}

/// The same with `purge = "delete"`, where the account row is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_accounts_username_is_no_longer_given_to_the_next_person_who_asks_for_it() {
    let (app, leaver) = app_with_a_purged_account("delete").await;
    assert_eq!(username_of(&app, leaver.clone()).await, None, "deleted");
    let r = app.login(&Browser::new(), "newcomer").await;
    assert_eq!(r.status(), 403);
    assert_eq!(app.failure_reasons().await[0], "username_quarantined");
    assert_eq!(app.account_count().await, 1, "bob only");
}
