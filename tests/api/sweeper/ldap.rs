//! LDAP / Active Directory sweeps against a private slapd (tests/harness/ldap).

use super::fault_proxy::{CUT, FaultProxy, PASS};
use super::*;
use crate::helpers::*;
use jitbridge::sweeper::SweepOutcome;
use ldap3::{LdapConnAsync, Mod};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

pub struct Slapd {
    dir: PathBuf,
    pub port: u16,
}

const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PW: &str = "admin-secret";

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/ldap")
}

impl Slapd {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("jb-slapd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // A free port is only free until someone takes it: another test of this process (or
        // anything on the machine) can bind it between our probe and slapd's bind, which
        // failed a CI run once. Such a start is retried on another port.
        for attempt in 1.. {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let out = Command::new("bash")
                .arg(harness().join("start.sh"))
                .arg(&dir)
                .arg(port.to_string())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() && stdout.contains("ready") {
                return Self { dir, port };
            }
            let port_taken =
                stderr.contains("already listening") || stderr.contains("already in use");
            assert!(
                port_taken && attempt < 5,
                "slapd did not start: {stdout}{stderr}"
            );
        }
        unreachable!()
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url()).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN_DN, ADMIN_PW)
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }

    pub async fn add_users(&self, uids: &[&str]) {
        let mut ldap = self.admin().await;
        for uid in uids {
            let dn = format!("uid={uid},ou=people,dc=example,dc=org");
            let set = |v: &str| HashSet::from([v.to_string()]);
            ldap.add(
                &dn,
                vec![
                    (
                        "objectClass".to_string(),
                        HashSet::from(["inetOrgPerson".to_string(), "adUserLite".to_string()]),
                    ),
                    ("uid".to_string(), set(uid)),
                    ("cn".to_string(), set(uid)),
                    ("sn".to_string(), set(uid)),
                    ("mail".to_string(), set(&format!("{uid}@example.com"))),
                    ("userAccountControl".to_string(), set("512")),
                ],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        }
    }

    pub async fn delete_user(&self, uid: &str) {
        let mut ldap = self.admin().await;
        ldap.delete(&format!("uid={uid},ou=people,dc=example,dc=org"))
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    pub async fn set_uac(&self, uid: &str, value: &str) {
        let mut ldap = self.admin().await;
        ldap.modify(
            &format!("uid={uid},ou=people,dc=example,dc=org"),
            vec![Mod::Replace(
                "userAccountControl".to_string(),
                HashSet::from([value.to_string()]),
            )],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(harness().join("stop.sh"))
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn ldap_directory(port: u16, extra: &str) -> String {
    format!(
        r#"kind = "ldap"
url = "ldap://127.0.0.1:{port}"
bind_dn = "cn=sweeper,ou=services,dc=example,dc=org"
bind_password = "sweeper-secret"
base_dn = "ou=people,dc=example,dc=org"
filter = "(objectClass=inetOrgPerson)"
subject_attribute = "uid"
ad_user_account_control = true
page_size = 3
interval = "1h"
timeout = "5s"
{extra}"#
    )
}

const FILLERS: &[&str] = &[
    "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];

pub async fn app_with_ldap(slapd: &Slapd, extra: &str) -> TestApp {
    slapd.add_users(&["alice", "bob"]).await;
    slapd.add_users(FILLERS).await;
    spawn_app_with(Options {
        directory: Some(ldap_directory(slapd.port, extra)),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_removed_from_ldap_is_disabled_after_the_grace_and_their_session_stops_at_once() {
    let slapd = Slapd::start();
    let app = app_with_ldap(&slapd, "grace_sweeps = 2").await;
    let (alice, bob) = (Browser::new(), Browser::new());
    assert_eq!(app.login(&alice, "alice").await.status(), 302);
    assert_eq!(app.login(&bob, "bob").await.status(), 302);

    let first = sweep(&app, SweepOptions::default()).await;
    assert_eq!(first.outcome, SweepOutcome::Applied);
    assert_eq!(first.stats.seen, 10);
    assert_eq!(first.stats.disabled, 0);

    slapd.delete_user("alice").await;
    let marked = sweep(&app, SweepOptions::default()).await;
    assert_eq!(
        (marked.stats.missing, marked.stats.disabled),
        (1, 0),
        "within grace"
    );
    assert_eq!(status(&app, "alice").await, "active");
    assert_eq!(app.verify(&alice).await.status(), 200);

    let disabled = sweep(&app, SweepOptions::default()).await;
    assert_eq!(disabled.stats.disabled, 1);
    assert_eq!(status(&app, "alice").await, "disabled");
    assert_eq!(
        app.verify(&alice).await.status(),
        401,
        "the live session ended at once"
    );
    assert_eq!(app.verify(&bob).await.status(), 200);
    let r = app.login(&Browser::new(), "alice").await;
    assert_eq!(r.status(), 403, "and the next login is refused");

    let actions: Vec<String> = app
        .audit_events()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in ["account.missing", "account.disabled", "sweep.completed"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    let metrics = reqwest::get(format!("{}/metrics", app.operator))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("jitbridge_sweep_disabled_accounts{connection=\"test\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jitbridge_time_to_deprovision_seconds_count{connection=\"test\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_disabled_in_active_directory_is_disabled_here() {
    let slapd = Slapd::start();
    let app = app_with_ldap(&slapd, "grace_sweeps = 1").await;
    let bob = Browser::new();
    assert_eq!(app.login(&bob, "bob").await.status(), 302);
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    slapd.set_uac("bob", "514").await; // NORMAL_ACCOUNT | ACCOUNTDISABLE
    let r = sweep(&app, SweepOptions::default()).await;
    assert_eq!(r.stats.disabled, 1);
    assert_eq!(status(&app, "bob").await, "disabled");
    assert_eq!(status(&app, "alice").await, "active");
    assert_eq!(app.verify(&bob).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_returning_person_follows_the_reactivation_policy() {
    for (reactivate, expected) in [(true, "active"), (false, "disabled")] {
        let slapd = Slapd::start();
        let app = app_with_ldap(
            &slapd,
            &format!("grace_sweeps = 1\nreactivate = {reactivate}"),
        )
        .await;
        assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
        assert_eq!(app.login(&Browser::new(), "bob").await.status(), 302);
        slapd.delete_user("alice").await;
        assert_eq!(sweep(&app, SweepOptions::default()).await.stats.disabled, 1);
        slapd.add_users(&["alice"]).await;
        let back = sweep(&app, SweepOptions::default()).await;
        assert_eq!(back.stats.reactivated, i64::from(reactivate));
        assert_eq!(
            status(&app, "alice").await,
            expected,
            "reactivate = {reactivate}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let slapd = Slapd::start();
    let app = app_with_ldap(&slapd, "grace_sweeps = 1").await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    assert_eq!(app.login(&Browser::new(), "bob").await.status(), 302);
    slapd.delete_user("alice").await;
    let r = sweep(
        &app,
        SweepOptions {
            dry_run: true,
            force: false,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.outcome, SweepOutcome::DryRun);
    assert_eq!(r.plan.as_ref().unwrap().disables(), 1);
    assert_eq!(status(&app, "alice").await, "active");
    assert!(
        !app.audit_events()
            .await
            .iter()
            .any(|e| e.action == "account.disabled")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_failures_change_nothing() {
    let slapd = Slapd::start();
    let proxy = FaultProxy::start(slapd.port).await;
    let app = app_with_ldap(&slapd, "grace_sweeps = 1").await;
    for s in ["alice", "bob"] {
        assert_eq!(app.login(&Browser::new(), s).await.status(), 302);
    }
    slapd.delete_user("alice").await;
    let conn = app.state.config.connection(CONNECTION).unwrap().clone();
    let dir = conn.directory.clone().unwrap();
    let with = |f: &dyn Fn(&mut jitbridge::config::LdapConfig)| {
        let mut d = dir.clone();
        if let jitbridge::config::DirectorySourceConfig::Ldap(l) = &mut d.source {
            f(l);
        }
        Directory::open(&d).unwrap()
    };
    // Down: nothing listens there.
    let down = with(&|l| l.url = "ldap://127.0.0.1:1".into());
    // A wrong password.
    let bad_auth = with(&|l| l.bind_password = jitbridge::config::Secret::new("wrong"));
    // The connection drops mid-listing (after the bind and the first page).
    proxy.set(CUT, 900);
    let cut = with(&|l| l.url = format!("ldap://127.0.0.1:{}", proxy.port));
    // An empty answer: a base DN with nobody under it.
    let empty = with(&|l| l.base_dn = "ou=services,dc=example,dc=org".into());
    for (what, source) in [
        ("down", down),
        ("bad auth", bad_auth),
        ("cut", cut),
        ("empty", empty),
    ] {
        let r = sweep_with(&app, source, SweepOptions::default()).await;
        assert!(
            matches!(r.outcome, SweepOutcome::Aborted(_)),
            "{what}: {:?}",
            r.outcome
        );
        assert_eq!(
            status(&app, "alice").await,
            "active",
            "{what} changed something"
        );
    }
    proxy.set(PASS, u64::MAX);
    let events = app.audit_events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "sweep.aborted")
            .count(),
        4
    );
    assert!(!events.iter().any(|e| e.action == "account.missing"));
    // And the directory itself, reached normally, does the job.
    assert_eq!(sweep(&app, SweepOptions::default()).await.stats.disabled, 1);
}
