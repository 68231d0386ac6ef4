//! The bridge as `serve` builds it (real config, real Application, real session store), with
//! one session created through the store so the benchmark needs no IdP. Prints the cookie
//! header on stdout, then serves. Usage: verify_server PORT memory|redis [assert]; with
//! `assert`, the host the benchmark asks for is an `[[app]]`, so every answer carries the
//! signed identity assertion (cached per session, as in production).
use jitbridge::config::Config;
use jitbridge::provisioning::AccountSnapshot;
use jitbridge::session::snapshot::Role;
use jitbridge::session::{AccountState, SessionRecord, unix_now};
use jitbridge::web::Application;
use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(18091);
    let store = args.next().unwrap_or_else(|| "memory".into());
    let assertion = if args.next().as_deref() == Some("assert") {
        let pem = jitbridge::assertion::keys::generate_p256_pem()?;
        format!(
            "[assertion]\nkeys = [{{ kid = \"bench\", private_key = '''{pem}''' }}]\n[[app]]\nhost = \"127.0.0.1:{port}\"\naudience = \"https://bench.example\"\n"
        )
    } else {
        String::new()
    };
    let db = std::env::temp_dir().join(format!("jb-bench-{port}.db"));
    let redis = std::env::var("JB_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\noperator_listen = \"127.0.0.1:0\"\nworkers = 2\nstate_key = \"{key}\"\n[database]\nurl = \"sqlite://{}\"\n[sessions]\nstore = \"{store}\"\nredis_url = \"{redis}\"\nkey_prefix = \"jbbench:{port}:\"\n{assertion}",
        db.display(),
        // A bench-only key: Redis sessions need one (replicas share it).
        key = "3b1f0c9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c",
    );
    let config = Config::from_toml_and_env("bench", &toml, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cookie = config.server.cookie.name.clone();
    let app = Application::build(config, Default::default(), None).await?;
    let state = app.state();
    let record = SessionRecord {
        account: AccountSnapshot {
            id: "bench-account".into(),
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            display_name: Some("Alice Liddell".into()),
            roles: vec!["admin".into(), "staff".into()],
            version: 0,
            revision: Some(1),
            role_ends: Vec::new(),
        },
        connection: "bench".into(),
        subject: "alice".into(),
        idp_session: None,
        idp_principal: None,
        idp_logout_ref: None,
        created_at: unix_now(),
        expires_at: unix_now() + 3600,
    };
    // The account snapshot every check reads beside the session, as a login writes it.
    let role = |name: &str| Role {
        name: name.into(),
        until: None,
    };
    state
        .sessions
        .put_account(&AccountState {
            id: "bench-account".into(),
            revision: 1,
            active: true,
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            display_name: Some("Alice Liddell".into()),
            roles: vec![role("admin"), role("staff")],
        })
        .await?;
    let id = state.sessions.create(record).await?;
    println!("Cookie: {cookie}={}", id.as_str());
    std::io::stdout().flush()?;
    app.run_until_stopped().await?;
    Ok(())
}
