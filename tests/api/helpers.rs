//! Test harness: the real bridge on port 0 with a fresh database, against the real npm
//! `oidc-provider` started per test, driven by a scripted cookie-jar "browser".
//!
//! Backends come from the environment so that the same suite runs on every combination:
//! `JB_TEST_DB` = `sqlite` (default) | `postgres`, `JB_TEST_SESSIONS` =
//! `memory` (default) | `redis`. `JB_TEST_PG` and `JB_TEST_REDIS` override the
//! server URLs (defaults: the services on this machine's loopback).

use diesel::{Connection, RunQueryDsl};
use jitbridge::config::Config;
use jitbridge::web::{AppState, Application, Listeners};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use crate::oidc_flow::oidc_login_until_callback;

pub const CONNECTION: &str = "test";
pub const CLIENT_ID: &str = "jitbridge-test";
pub const CLIENT_SECRET: &str = "jitbridge-test-secret-0123456789";
/// The suite's `server.state_key` (Redis sessions require one; replicas share it).
pub const STATE_KEY: &str = "5e0c1b2a39485766a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2";

/// The `state_key` line of `[server]`, unless the test's own server keys set one.
pub fn state_key_toml(extra_server: &str) -> String {
    if extra_server.contains("state_key") {
        String::new()
    } else {
        format!("state_key = \"{STATE_KEY}\"")
    }
}

pub fn pg_base() -> String {
    std::env::var("JB_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("JB_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn uses_postgres() -> bool {
    std::env::var("JB_TEST_DB").is_ok_and(|v| v == "postgres")
}

pub fn uses_redis() -> bool {
    std::env::var("JB_TEST_SESSIONS").is_ok_and(|v| v == "redis")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
}

/// A database for one test, dropped with it.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    sqlite_path: Option<PathBuf>,
}

impl TestDb {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if uses_postgres() {
            Self::postgres()
        } else {
            let path = std::env::temp_dir().join(format!("jbtest_{id}.db"));
            Self {
                url: format!("sqlite://{}", path.display()),
                pg_name: None,
                sqlite_path: Some(path),
            }
        }
    }
}

impl TestDb {
    /// A fresh PostgreSQL database on the shared server, whatever `JB_TEST_DB` says.
    pub fn postgres() -> Self {
        let name = format!("jbtest_{}", uuid::Uuid::new_v4().simple());
        let mut admin = diesel::PgConnection::establish(&format!("{}/test", pg_base()))
            .expect("PostgreSQL is reachable (JB_TEST_PG)");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap();
        Self {
            url: format!("{}/{name}", pg_base()),
            pg_name: Some(name),
            sqlite_path: None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name
            && let Ok(mut admin) = diesel::PgConnection::establish(&format!("{}/test", pg_base()))
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
        if let Some(p) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
    }
}

/// The real `oidc-provider`, one process per test (its tamper mode is process-wide).
pub struct Op {
    child: Child,
    pub issuer: String,
    http: reqwest::Client,
}

pub fn default_accounts() -> Value {
    json!({
        "alice": {
            "preferred_username": "alice", "email": "alice@example.com", "email_verified": true,
            "given_name": "Alice", "family_name": "Liddell", "department": "R&D",
            "groups": ["staff", "admins"]
        },
        "bob": {
            "preferred_username": "bob", "email": "bob@example.com", "email_verified": true,
            "given_name": "Bob", "family_name": "Builder", "groups": ["staff"]
        }
    })
}

impl Op {
    pub fn start(bridge_base: &str, accounts: &Value, client_extra: &Value) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/oidc-provider");
        let clients = json!([{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{bridge_base}/callback/{CONNECTION}")],
            "post_logout_redirect_uris": [format!("{bridge_base}/logged-out")],
        }, {
            "client_id": "jitbridge-other",
            "client_secret": "jitbridge-other-secret-0123456789",
            "redirect_uris": [format!("{bridge_base}/callback/{SECOND_CONNECTION}")],
        }]);
        let mut clients = clients;
        for (k, v) in client_extra.as_object().into_iter().flatten() {
            clients[0][k] = v.clone();
        }
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .env("OP_PORT", "0")
            .env("OP_CLIENTS", clients.to_string())
            .env("OP_ACCOUNTS", accounts.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs tests/harness/oidc-provider/server.mjs (run `npm ci` there)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("oidc-provider prints its ready line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("oidc-provider did not start: {line:?}"));
        Self {
            child,
            issuer: ready["issuer"].as_str().unwrap().to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn set_account(&self, id: &str, claims: Value) {
        let r = self
            .http
            .put(format!("{}/__admin/accounts/{id}", self.issuer))
            .json(&claims)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    pub async fn tamper(&self, mode: &str) {
        let r = self
            .http
            .put(format!("{}/__admin/tamper", self.issuer))
            .json(&json!({ "mode": mode }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "tamper mode {mode} refused");
    }

    /// A compact JWS of `payload` signed by the provider's key `kid` (k1, e1 or k2).
    pub async fn sign(&self, kid: &str, payload: Value) -> String {
        let r = self
            .http
            .post(format!("{}/__admin/sign", self.issuer))
            .json(&json!({ "kid": kid, "payload": payload }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "signing with {kid} refused");
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Keeps signing ID tokens with the rotated key (k2) but stops publishing it.
    pub async fn withdraw_rotated_key(&self) {
        let r = self
            .http
            .put(format!("{}/__admin/tamper", self.issuer))
            .json(&json!({ "mode": "rotated", "withdraw_k2": true }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TestApp {
    pub base: String,
    /// The operator listener (`/metrics`, `/readyz`).
    pub operator: String,
    pub state: actix_web::web::Data<AppState>,
    pub op: Op,
    /// The test database (its URL, for a CLI run against the same data).
    pub test_db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Before the test database goes (a field, dropped after this): the app's background
        // tasks (revocation follower, sweeper) must not wait out the pool's acquire timeout
        // against a dropped PostgreSQL database, which held every such test for 10 s.
        self.state.db.shut();
    }
}

pub struct Options {
    pub mapping: &'static str,
    pub accounts: Value,
    pub extra_server: &'static str,
    /// Adds a second connection, `other`, to the same provider with its own client.
    pub second_connection: bool,
    /// Extra client metadata for the main connection's client at the provider.
    pub client_extra: Value,
    /// Body of the main connection's `[connection.directory]` table, if any.
    pub directory: Option<String>,
    /// Body of `[sessions]` instead of the suite's (e.g. a private Redis).
    pub sessions: Option<String>,
    /// Top-level tables appended to the file (e.g. `[assertion]`, `[[app]]`).
    pub extra_toml: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mapping: DEFAULT_MAPPING,
            accounts: default_accounts(),
            extra_server: "",
            second_connection: false,
            client_extra: json!({}),
            directory: None,
            sessions: None,
            extra_toml: String::new(),
        }
    }
}

pub const SECOND_CONNECTION: &str = "other";

const SECOND_CONNECTION_TOML: &str = r#"
[[connection]]
name = "other"
display_name = "Other directory"
kind = "oidc"
issuer = "{issuer}"
client_id = "jitbridge-other"
client_secret = "jitbridge-other-secret-0123456789"
scopes = ["openid", "email", "profile", "groups"]
[connection.mapping]
username = "{preferred_username}@other"
"#;

pub const DEFAULT_MAPPING: &str = r#"
[connection.mapping]
username = "preferred_username"
display_name = "{given_name} {family_name}"
required_claims = ["email"]
allowed_email_domains = ["example.com"]
[connection.mapping.attributes]
department = "department"
[[connection.mapping.roles]]
role = "admin"
claim = "groups"
equals = "admins"
[[connection.mapping.roles]]
role = "staff"
claim = "groups"
equals = "staff"
"#;

/// The body of `[sessions]` for this run of the suite (in-process, or Redis with its own prefix).
pub fn sessions_toml() -> String {
    if uses_redis() {
        format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"jbtest:{}:\"",
            redis_url(),
            uuid::Uuid::new_v4().simple()
        )
    } else {
        "store = \"memory\"".to_string()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(opts: Options) -> TestApp {
    init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let op = Op::start(&base, &opts.accounts, &opts.client_extra);
    let db = TestDb::new();
    let sessions = opts.sessions.clone().unwrap_or_else(sessions_toml);
    let toml = format!(
        r#"
[server]
public_url = "{base}"
workers = 2
{state_key}
{extra_server}
[database]
url = "{db}"
pool_size = 8
[sessions]
{sessions}
[[connection]]
name = "{CONNECTION}"
kind = "oidc"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "email", "profile", "groups"]
jwks_refresh_min_interval = "1s"
{mapping}
"#,
        extra_server = opts.extra_server,
        state_key = state_key_toml(opts.extra_server),
        db = db.url,
        issuer = op.issuer,
        mapping = opts.mapping,
    );
    let toml = match &opts.directory {
        Some(d) => format!("{toml}\n[connection.directory]\n{d}\n"),
        None => toml,
    };
    let toml = if opts.second_connection {
        toml + &SECOND_CONNECTION_TOML.replace("{issuer}", &op.issuer)
    } else {
        toml
    };
    let toml = format!("{toml}\n{}\n", opts.extra_toml);
    let config = Config::from_toml_and_env("test", &toml, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let operator = TcpListener::bind("127.0.0.1:0").unwrap();
    let listeners = Listeners {
        public: Some(listener),
        operator: Some(operator),
    };
    let app = Application::build(config, listeners, None)
        .await
        .expect("the app builds");
    let state = app.state();
    let operator = format!("http://127.0.0.1:{}", app.operator_port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        operator,
        state,
        op,
        test_db: db,
    }
}

/// A browser: its own cookie jar, no automatic redirects (each hop is checked).
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on a {} response", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

impl TestApp {
    /// Runs the login up to the moment the IdP sends the browser back; returns the callback URL.
    pub async fn login_until_callback(&self, browser: &Browser, user: &str, rd: &str) -> String {
        self.login_until_callback_via(browser, CONNECTION, user, rd)
            .await
    }

    pub async fn login_until_callback_via(
        &self,
        browser: &Browser,
        connection: &str,
        user: &str,
        rd: &str,
    ) -> String {
        oidc_login_until_callback(browser, &self.base, &self.op.issuer, connection, user, rd).await
    }

    /// A whole login; returns the callback's response.
    pub async fn login(&self, browser: &Browser, user: &str) -> reqwest::Response {
        let cb = self.login_until_callback(browser, user, "/welcome").await;
        browser.get(&cb).await
    }

    pub async fn verify(&self, browser: &Browser) -> reqwest::Response {
        browser.get(&format!("{}/auth/verify", self.base)).await
    }

    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut jitbridge::db::DbConnection) -> T + Send + 'static,
    ) -> T {
        db_run(&self.state, f).await
    }

    pub async fn account_count(&self) -> i64 {
        account_count(&self.state).await
    }

    pub async fn audit_events(&self) -> Vec<jitbridge::db::models::AuditEvent> {
        audit_events(&self.state).await
    }

    /// The reason codes of `login.failed` events, newest first.
    pub async fn failure_reasons(&self) -> Vec<String> {
        failure_reasons(&self.state).await
    }
}

/// Runs `f` on a pooled connection of the app's database.
pub async fn db_run<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut jitbridge::db::DbConnection) -> T + Send + 'static,
) -> T {
    state
        .db
        .run(move |c| Ok::<_, jitbridge::db::DbError>(f(c)))
        .await
        .unwrap()
}

pub async fn account_count(state: &AppState) -> i64 {
    use diesel::QueryDsl;
    use jitbridge::db::schema::accounts::dsl::*;
    db_run(state, |c| accounts.count().get_result::<i64>(c).unwrap()).await
}

pub async fn audit_events(state: &AppState) -> Vec<jitbridge::db::models::AuditEvent> {
    db_run(state, |c| jitbridge::audit::recent(c, 1000).unwrap()).await
}

/// The reason codes of `login.failed` events, newest first.
/// The reasons of refused logins, newest first. Repeats within a minute are aggregated
/// (audit::failures): the pending counts are written first, as if their minutes had ended, so
/// that each refusal a test makes is visible as the newest one.
pub async fn failure_reasons(state: &AppState) -> Vec<String> {
    state
        .failures
        .flush_once(&state.db, i64::MAX / 2)
        .await
        .unwrap();
    audit_events(state)
        .await
        .into_iter()
        .filter(|e| {
            e.action == "login.failed"
                || (e.action == jitbridge::audit::failures::REPEATED
                    && e.details.contains("\"login.failed\""))
        })
        .map(|e| {
            serde_json::from_str::<Value>(&e.details).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

pub fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Whether the response sets a non-empty session cookie.
pub fn sets_session_cookie(r: &reqwest::Response) -> bool {
    r.headers().get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap_or_default();
        v.starts_with("jitbridge=") && !v.starts_with("jitbridge=;")
    })
}
