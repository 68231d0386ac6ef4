//! SCIM 2.0 sweeps against the real PyPI `scim2-server` (tests/harness/scim).

use super::fault_proxy::{CUT, FaultProxy, HTTP_500, PASS};
use super::*;
use crate::helpers::*;
use jitbridge::sweeper::SweepOutcome;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const TOKEN: &str = "scim-test-token-0123456789";

pub struct Scim {
    child: Child,
    pub port: u16,
    pub base: String,
    http: reqwest::Client,
}

impl Scim {
    pub fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/scim");
        let mut child = Command::new(dir.join(".venv/bin/python"))
            .arg(dir.join("server.py"))
            .arg("0")
            .env("SCIM_TOKEN", TOKEN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the SCIM harness is set up (tests/harness/scim/setup.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("scim2-server did not start: {line:?}"))
            .to_string();
        let port = url::Url::parse(&base).unwrap().port().unwrap();
        Self {
            child,
            port,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn add(&self, user_name: &str) -> String {
        let r = self
            .http
            .post(format!("{}/Users", self.base))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name, "externalId": format!("ext-{user_name}"), "active": true
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn deactivate(&self, id: &str) {
        let r = self
            .http
            .patch(format!("{}/Users/{id}", self.base))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": "active", "value": false }]
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    pub async fn delete(&self, id: &str) {
        let r = self
            .http
            .delete(format!("{}/Users/{id}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

impl Drop for Scim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scim_directory(base: &str, token: &str, extra: &str) -> String {
    format!(
        "kind = \"scim\"\nbase_url = \"{base}\"\ntoken = \"{token}\"\nsubject_attribute = \"userName\"\npage_size = 2\ntimeout = \"5s\"\ninterval = \"1h\"\n{extra}"
    )
}

const FILLERS: &[&str] = &["carol", "dave", "erin", "frank"];

#[tokio::test(flavor = "multi_thread")]
async fn scim_inactive_and_deleted_users_are_disabled_and_lose_their_sessions() {
    let scim = Scim::start();
    let alice_id = scim.add("alice").await;
    let bob_id = scim.add("bob").await;
    for f in FILLERS {
        scim.add(f).await;
    }
    let app = spawn_app_with(Options {
        directory: Some(scim_directory(
            &scim.base,
            TOKEN,
            "grace_sweeps = 1\nmax_disable_fraction = 1.0",
        )),
        ..Default::default()
    })
    .await;
    let (alice, bob) = (Browser::new(), Browser::new());
    assert_eq!(app.login(&alice, "alice").await.status(), 302);
    assert_eq!(app.login(&bob, "bob").await.status(), 302);
    provision(&app, "carol").await;

    let clean = sweep(&app, SweepOptions::default()).await;
    assert_eq!(
        (clean.outcome, clean.stats.seen, clean.stats.disabled),
        (SweepOutcome::Applied, 6, 0)
    );

    scim.deactivate(&alice_id).await;
    scim.delete(&bob_id).await;
    let r = sweep(&app, SweepOptions::default()).await;
    assert_eq!(r.stats.disabled, 2, "{:?}", r.plan);
    assert_eq!(status(&app, "alice").await, "disabled");
    assert_eq!(status(&app, "bob").await, "disabled");
    assert_eq!(status(&app, "carol").await, "active");
    assert_eq!(app.verify(&alice).await.status(), 401);
    assert_eq!(app.verify(&bob).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_failures_and_empty_listings_change_nothing() {
    let scim = Scim::start();
    let proxy = FaultProxy::start(scim.port).await;
    let via_proxy = scim
        .base
        .replace(&format!(":{}", scim.port), &format!(":{}", proxy.port));
    for u in ["alice", "bob"].iter().chain(FILLERS) {
        scim.add(u).await;
    }
    let app = spawn_app_with(Options {
        directory: Some(scim_directory(
            &via_proxy,
            TOKEN,
            "grace_sweeps = 1\nmax_disable_fraction = 1.0",
        )),
        ..Default::default()
    })
    .await;
    for u in ["alice", "bob", "zoe"] {
        provision(&app, u).await; // zoe is not in the directory: the only one a sweep may disable
    }
    let conn = app.state.config.connection(CONNECTION).unwrap().clone();
    let mut dir = conn.directory.clone().unwrap();
    let cases: Vec<(&str, u8, u64, Option<&str>)> = vec![
        ("answers 500", HTTP_500, 0, None),
        ("drops the connection mid-listing", CUT, 400, None),
        ("refuses the token", PASS, u64::MAX, Some("wrong-token")),
    ];
    for (what, mode, cut, token) in cases {
        proxy.set(mode, cut);
        if let jitbridge::config::DirectorySourceConfig::Scim(s) = &mut dir.source {
            s.token = jitbridge::config::Secret::new(token.unwrap_or(TOKEN));
        }
        let r = sweep_with(
            &app,
            Directory::open(&dir).unwrap(),
            SweepOptions::default(),
        )
        .await;
        assert!(
            matches!(r.outcome, SweepOutcome::Aborted(_)),
            "{what}: {:?} {:?}",
            r.outcome,
            r.stats
        );
        assert_eq!(
            status(&app, "zoe").await,
            "active",
            "{what} changed something"
        );
    }
    proxy.set(PASS, u64::MAX);

    // An empty directory: never read as "everyone left".
    let empty = Scim::start();
    if let jitbridge::config::DirectorySourceConfig::Scim(s) = &mut dir.source {
        s.base_url = url::Url::parse(&empty.base).unwrap();
        s.token = jitbridge::config::Secret::new(TOKEN);
    }
    let r = sweep_with(
        &app,
        Directory::open(&dir).unwrap(),
        SweepOptions {
            dry_run: false,
            force: true,
            ..Default::default()
        },
    )
    .await;
    let SweepOutcome::Aborted(reason) = r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(reason.contains("listed nobody"), "{reason}");
    assert_eq!(status(&app, "alice").await, "active");

    // Through the healthy proxy, the real listing disables zoe only.
    let ok = sweep(&app, SweepOptions::default()).await;
    assert_eq!(ok.stats.disabled, 1);
    assert_eq!(status(&app, "zoe").await, "disabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_sweeper_inside_serve_disables_leavers_on_its_schedule() {
    let scim = Scim::start();
    for u in ["alice", "bob", "carol"] {
        scim.add(u).await;
    }
    let mut directory = scim_directory(
        &scim.base,
        TOKEN,
        "grace_sweeps = 1\nmax_disable_fraction = 1.0\njitter = \"0s\"",
    );
    directory = directory.replace("interval = \"1h\"", "interval = \"1s\"");
    let app = spawn_app_with(Options {
        directory: Some(directory),
        ..Default::default()
    })
    .await;
    let alice = Browser::new();
    assert_eq!(app.login(&alice, "alice").await.status(), 302);
    provision(&app, "zoe").await;
    let mut waited = 0;
    while status(&app, "zoe").await == "active" {
        assert!(waited < 100, "no background sweep happened");
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status(&app, "alice").await, "active");
    assert_eq!(app.verify(&alice).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_command_prints_the_plan_in_dry_run_and_applies_it_otherwise() {
    let scim = Scim::start();
    for u in ["alice", "bob", "carol"] {
        scim.add(u).await;
    }
    let app = spawn_app_with(Options {
        directory: Some(scim_directory(
            &scim.base,
            TOKEN,
            "grace_sweeps = 1\nmax_disable_fraction = 1.0",
        )),
        ..Default::default()
    })
    .await;
    for u in ["alice", "zoe"] {
        provision(&app, u).await;
    }
    let db_url = app.state.config.database.url.expose().to_string();
    let config =
        std::env::temp_dir().join(format!("jb-sweep-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{db_url}\"\n[[connection]]\nname = \"{CONNECTION}\"\nkind = \"oidc\"\nissuer = \"http://127.0.0.1:1\"\nclient_id = \"x\"\n[connection.directory]\n{}\n",
            scim_directory(&scim.base, TOKEN, "grace_sweeps = 1\nmax_disable_fraction = 1.0")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jitbridge"))
            .arg("--config")
            .arg(&config)
            .arg("sweep")
            .args(args)
            .env_remove("JITBRIDGE_CONFIG")
            .env("JITBRIDGE_LOG", "error")
            .output()
            .unwrap()
    };
    let dry = run(&["--dry-run"]);
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        out.contains("DryRun") && out.contains("zoe") && out.contains("DISABLE"),
        "{out}"
    );
    assert_eq!(status(&app, "zoe").await, "active");
    let real = run(&[]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert_eq!(status(&app, "zoe").await, "disabled");
    std::fs::remove_file(config).unwrap();
}
