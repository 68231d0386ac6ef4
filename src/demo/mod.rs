//! `jitbridge demo`: the bridge on its embedded defaults (SQLite, in-process sessions) wired to
//! a development-only OpenID provider, with a sample protected page, so a person can click
//! through a real login within a minute. Nothing here is used by `serve`.

mod provider;

use crate::config::Config;
use crate::web::{self, AppState, current_session};
use actix_web::{HttpRequest, HttpResponse, HttpServer, web as aw};
use anyhow::Context;
use askama::Template;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

pub use provider::{DemoUser, seeded_users};

const BANNER: &str = "\
=====================================================================
 jitbridge DEMO - FOR DEVELOPMENT ONLY
 A built-in test identity provider with made-up users is running.
 Never expose this to a network; use `jitbridge serve` in production.
=====================================================================";

pub async fn run(
    listen: SocketAddr,
    provider_port: u16,
    database: PathBuf,
) -> anyhow::Result<ExitCode> {
    let op_listener = TcpListener::bind(("127.0.0.1", provider_port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{provider_port} (--provider-port)"))?;
    let issuer = format!("http://127.0.0.1:{}", op_listener.local_addr()?.port());
    let bridge_listener = TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
    let bridge_addr = bridge_listener.local_addr()?;
    let public = format!("http://{bridge_addr}");
    let op = aw::Data::new(provider::DevProvider::new(
        issuer.clone(),
        format!("{public}/callback/demo"),
        format!("{public}/logged-out"),
    )?);
    let op_data = op.clone();
    let op_server = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(op_data.clone())
            .configure(provider::routes)
    })
    .workers(1)
    .listen(op_listener)?
    .run();
    tokio::spawn(op_server);

    let config = demo_config(
        &public,
        &issuer,
        &op.client_id,
        &op.client_secret,
        &database,
    )?;
    let config = with_ephemeral_assertion_key(config, bridge_addr)?;
    let extra: web::ExtraRoutes = Arc::new(|cfg| {
        cfg.route("/demo/app", aw::get().to(sample_app));
    });
    let app = web::Application::build(
        config,
        web::Listeners {
            public: Some(bridge_listener),
            // Any free loopback port: a demo must not collide with a bridge already running.
            operator: Some(std::net::TcpListener::bind("127.0.0.1:0")?),
        },
        Some(extra),
    )
    .await?;
    println!("{BANNER}");
    println!(
        "Open {public}/demo/app and sign in as alice, bob or mallory (mallory is refused: wrong email domain)."
    );
    println!("Accounts are stored in {}.", database.display());
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

fn demo_config(
    public: &str,
    issuer: &str,
    client_id: &str,
    secret: &str,
    database: &std::path::Path,
) -> anyhow::Result<Config> {
    let text = format!(
        r#"
[server]
public_url = "{public}"
workers = 2
[database]
url = "sqlite://{db}"
[[connection]]
name = "demo"
display_name = "Demo identity provider (development only)"
kind = "oidc"
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "{secret}"
[connection.mapping]
username = "preferred_username"
display_name = "{{given_name}} {{family_name}}"
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
"#,
        db = database.display()
    );
    Config::from_toml_and_env("demo", &text, std::iter::empty()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The demo signs identity assertions with a key made at start (kept in memory only, new at
/// every start) for the sample app on the bridge's own address. `serve` never does this: a
/// key that changes at every start would make every app refetch the keys, and replicas would
/// each sign with their own.
fn with_ephemeral_assertion_key(mut config: Config, addr: SocketAddr) -> anyhow::Result<Config> {
    let pem = crate::assertion::keys::generate_p256_pem()?;
    let key = crate::assertion::keys::SigningKey::from_pem("demo-ephemeral", &pem, None)
        .map_err(|e| anyhow::anyhow!("the demo's assertion key {e}"))?;
    config.assertion.keys = vec![key];
    let audience = format!("http://{addr}/demo/app");
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{}", addr.port()));
    }
    config.apps = hosts
        .into_iter()
        .map(|host| crate::config::AppConfig {
            host,
            audience: audience.clone(),
            roles: None,
            allowed_roles: None,
        })
        .collect();
    Ok(config)
}

#[derive(Template)]
#[template(path = "demo_app.html")]
struct SampleApp {
    headers: Vec<(&'static str, String)>,
}

/// What an application behind `auth_request` would see; no session sends the browser to log in.
async fn sample_app(req: HttpRequest, state: aw::Data<AppState>) -> HttpResponse {
    match current_session(&req, &state).await {
        Ok(Some((id, s))) => {
            let a = &s.account;
            let mut headers = vec![
                ("X-Auth-Request-Subject", a.id.clone()),
                ("X-Auth-Request-User", a.username.clone()),
                ("X-Auth-Request-Email", a.email.clone().unwrap_or_default()),
                ("X-Auth-Request-Preferred-Username", a.username.clone()),
                ("X-Auth-Request-Groups", a.roles.join(",")),
            ];
            // What /auth/verify would add for this host (keys at /.well-known/jwks.json).
            let app = web::request_host(&req).and_then(|h| state.assertions.app_for_host(h));
            if let Some(token) = web::assertion_header(app, &state, &id, a) {
                let token = token.to_str().unwrap_or_default().to_string();
                headers.push(("X-Jitbridge-Assertion", token));
            }
            web::errors::html_page(actix_web::http::StatusCode::OK, &SampleApp { headers })
        }
        _ => HttpResponse::Found()
            .insert_header(("Location", "/login?rd=/demo/app"))
            .finish(),
    }
}
