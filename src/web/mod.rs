//! The HTTP surface: login and callback, logout, forward-auth, health on the public listener;
//! metrics and readiness on the operator listener ([`operator`]). Handlers are thin: they parse
//! input, call the protocol adapter and the login service ([`crate::login`]: mapping ->
//! provisioning -> session), and render.

mod assertion;
mod backchannel;
mod cookies;
pub mod errors;
mod forward_auth;
mod login;
mod logout;
mod metrics;
mod operator;
mod pending;
pub mod ratelimit;
pub mod redirect;
mod saml;
mod shutdown;

use crate::config::{Config, SessionStoreKind};
use crate::db::Db;
use crate::idp::oidc::OidcProvider;
use crate::idp::saml::SamlProvider;
use crate::session::{SessionId, SessionRecord, SessionStore, Timeouts};
use actix_web::dev::Server;
use actix_web::middleware::DefaultHeaders;
use actix_web::web::{self, ServiceConfig};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use askama::Template;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

pub use assertion::{header_for as assertion_header, request_host};
pub use forward_auth::current_session;

/// Everything a handler needs, shared by all workers.
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub sessions: SessionStore,
    /// OIDC connections by name.
    pub providers: BTreeMap<String, Arc<OidcProvider>>,
    /// SAML connections by name.
    pub saml: BTreeMap<String, Arc<SamlProvider>>,
    /// Refused logins, aggregated per reason, connection and minute (see `audit::failures`).
    pub failures: Arc<crate::audit::failures::FailureAggregator>,
    /// The database's generated username-hash key, once a login read it.
    pub username_key: Arc<crate::usernames::GeneratedKey>,
    /// Set once a stop was requested (SIGTERM): `/readyz` answers 503 from then on.
    pub stopping: shutdown::Stopping,
    /// Signs the identity assertion of `/auth/verify` and publishes its keys.
    pub assertions: Arc<crate::assertion::Assertions>,
    /// Per-address rate limits of the login endpoints.
    pub limits: Arc<ratelimit::RateLimits>,
    /// Seals and opens the login state kept in browsers' cookies.
    pub sealer: crate::session::sealed::Sealer,
}

impl AppState {
    /// What the login service works with.
    pub fn login(&self) -> crate::login::Context<'_> {
        crate::login::Context {
            config: &self.config,
            db: &self.db,
            sessions: &self.sessions,
            failures: &self.failures,
            username_key: &self.username_key,
        }
    }
}

/// Extra routes mounted next to the bridge's own (the demo's sample app).
pub type ExtraRoutes = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// Sockets bound by the caller (tests bind port 0); a listener left `None` is bound to its
/// configured address (`server.listen`, `server.operator_listen`).
#[derive(Default)]
pub struct Listeners {
    pub public: Option<TcpListener>,
    pub operator: Option<TcpListener>,
}

fn bind(
    given: Option<TcpListener>,
    addr: std::net::SocketAddr,
    key: &str,
) -> anyhow::Result<TcpListener> {
    match given {
        Some(l) => Ok(l),
        None => TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({key})")),
    }
}

pub struct Application {
    port: u16,
    operator_port: u16,
    server: Server,
    operator: Server,
    state: web::Data<AppState>,
    listener_fd: Option<i32>,
}

impl Application {
    /// Connects storage, runs migrations, prepares the providers and binds both listeners.
    pub async fn build(
        config: Config,
        listeners: Listeners,
        extra: Option<ExtraRoutes>,
    ) -> anyhow::Result<Self> {
        let listener = bind(listeners.public, config.server.listen, "server.listen")?;
        let operator_listener = bind(
            listeners.operator,
            config.server.operator_listen,
            "server.operator_listen",
        )?;
        let port = listener.local_addr()?.port();
        let operator_port = operator_listener.local_addr()?.port();
        #[cfg(unix)]
        let listener_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&listener));
        #[cfg(not(unix))]
        let listener_fd = None;
        let state = web::Data::new(build_state(config).await?);
        let workers = state.config.server.workers;
        let data = state.clone();
        let server = HttpServer::new(move || {
            let extra = extra.clone();
            App::new()
                .app_data(data.clone())
                .configure(forward_auth_routes)
                .service(
                    web::scope("")
                        .wrap(security_headers())
                        .configure(routes)
                        .configure(move |cfg| {
                            if let Some(extra) = &extra {
                                extra(cfg)
                            }
                        })
                        .default_service(web::to(not_found)),
                )
        })
        .workers(workers)
        // Signals are ours (see shutdown.rs): actix's handling dropped queued connections.
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        let data = state.clone();
        let operator = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(security_headers())
                .configure(operator::routes)
        })
        .workers(1)
        .listen(operator_listener)?
        .run();
        Ok(Self {
            port,
            operator_port,
            server,
            operator,
            state,
            listener_fd,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operator listener's port (`/metrics`, `/readyz`).
    pub fn operator_port(&self) -> u16 {
        self.operator_port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or SIGINT, then stops without dropping queued requests; the
    /// operator listener stops with it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tokio::spawn(shutdown::on_signal(
            self.server.handle(),
            self.listener_fd,
            self.state.stopping.clone(),
        ));
        tokio::try_join!(self.server, self.operator).map(|_| ())
    }
}

/// Storage, sessions and providers, checked live so that a bad URL fails at start.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    // Before any token is checked (`main` does it first; tests and examples start here).
    crate::jose::install();
    let db_url = config.database.url.clone();
    let pool_size = config.database.pool_size;
    let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Db> {
        let db =
            Db::connect(&db_url, pool_size).context("cannot open the database (database.url)")?;
        db.migrate().context("cannot migrate the database")?;
        Ok(db)
    })
    .await??;

    let timeouts = Timeouts {
        idle: config.sessions.idle_timeout,
        absolute: config.sessions.absolute_timeout,
    };
    let sessions = match config.sessions.store {
        SessionStoreKind::Memory => SessionStore::memory(timeouts),
        SessionStoreKind::Redis => {
            let url = config
                .sessions
                .redis_url
                .as_ref()
                .context("sessions.redis_url is missing")?;
            SessionStore::redis(url.expose(), &config.sessions.key_prefix, timeouts)
                .await
                .context("cannot use the Redis at sessions.redis_url")?
                .with_near_cache(config.sessions.near_cache_entries)
        }
    };
    if let SessionStore::Memory(store) = &sessions {
        let store = Arc::downgrade(store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match store.upgrade() {
                    Some(s) => {
                        s.purge_expired();
                    }
                    None => break,
                }
            }
        });
    }

    let limits = Arc::new(ratelimit::RateLimits::new(
        &config.server.rate_limits,
        &config.server.trusted_proxies,
    ));
    tokio::spawn(limits.clone().sweep_until_stopped());
    if config.server.state_key_ephemeral {
        tracing::info!(
            "no server.state_key configured: logins are sealed with a key of this process \
             (logins under way when it restarts must start again)"
        );
    }
    let sealer = crate::session::sealed::Sealer::new(config.server.state_keys.clone());

    let failures = Arc::new(crate::audit::failures::FailureAggregator::default());
    tokio::spawn(failures.clone().flush_until_stopped(db.clone()));
    tokio::spawn(crate::session::revocations::follow_until_stopped(
        db.clone(),
        sessions.clone(),
        config.sessions.revocation_window,
    ));
    tokio::spawn(crate::sweeper::run_until_stopped(
        db.clone(),
        sessions.clone(),
        config.connections.clone(),
    ));

    let http = crate::http_client()?;
    let providers: BTreeMap<_, _> = config
        .connections
        .iter()
        .filter(|c| c.oidc().is_some())
        .map(|c| {
            (
                c.name.clone(),
                Arc::new(OidcProvider::new(
                    c,
                    &config.server.public_url,
                    http.clone(),
                )),
            )
        })
        .collect();
    for p in providers.values() {
        tokio::spawn(p.clone().refresh_keys_until_stopped());
    }
    let mut saml = BTreeMap::new();
    let verify_slots = Arc::new(crate::idp::saml::VerifySlots::new(
        config.server.max_saml_verifications,
    ));
    for c in config.connections.iter().filter(|c| c.saml().is_some()) {
        let p = Arc::new(
            SamlProvider::new(c, http.clone(), verify_slots.clone())
                .with_context(|| format!("cannot prepare the SAML connection {}", c.name))?,
        );
        // A metadata file that cannot be used is a configuration error; a URL that is down is
        // retried on schedule and at the next login.
        if let Err(e) = p.refresh_metadata().await {
            match &c.saml().expect("filtered").idp_metadata {
                crate::config::MetadataSource::File(_) => {
                    return Err(e.context(format!(
                        "connection[{}].saml.idp_metadata_file is unusable",
                        c.name
                    )));
                }
                crate::config::MetadataSource::Url(_) => {
                    tracing::warn!(connection = %c.name, error = format!("{e:#}"), "IdP metadata not available at start; will retry");
                }
            }
        }
        tokio::spawn(p.clone().refresh_until_stopped());
        saml.insert(c.name.clone(), p);
    }
    if providers.is_empty() && saml.is_empty() {
        tracing::warn!("no [[connection]] is configured: nobody can log in until one is added");
    }
    // Discover every provider now; one that is down is retried at its next login.
    let attempts = providers.values().map(|p| {
        let p = p.clone();
        async move { (p.ensure_discovered().await, p) }
    });
    for (result, p) in futures_join_all(attempts).await {
        if let Err(e) = result {
            tracing::warn!(redirect_uri = %p.redirect_uri(), error = %crate::cause_chain(&e), "provider not reachable at start; will retry");
        }
    }
    let assertions = Arc::new(crate::assertion::Assertions::new(
        &config.server.public_url,
        &config.assertion,
        &config.apps,
    ));
    Ok(AppState {
        assertions,
        config: Arc::new(config),
        db,
        sessions,
        providers,
        saml,
        failures,
        username_key: Default::default(),
        stopping: Default::default(),
        limits,
        sealer,
    })
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        // The callback URL carries the authorization code: never leak it in a Referer.
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
}

/// Forward-auth, the hot path of every protected request: first (the router tries routes in
/// order, and a pattern with a variable segment costs a regex match on every request that
/// passes it) and outside the security-header middleware. Its answers go to a proxy, which
/// keeps none of their headers but the identity ones, and never render in a browser (an empty
/// 200 or a short text/plain refusal that carries `nosniff` itself); the middleware cost a
/// fifth of the route's CPU.
pub fn forward_auth_routes(cfg: &mut ServiceConfig) {
    cfg.route("/auth/verify", web::get().to(forward_auth::verify))
        // Envoy's ext_authz appends the original path to its `path_prefix`.
        .route(
            "/auth/verify/{tail:.*}",
            web::get().to(forward_auth::verify),
        );
}

/// Every other route, behind the security headers.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/login", web::get().to(login::start))
        .route("/callback/{connection}", web::get().to(login::callback))
        .route("/logout", web::get().to(logout::page))
        .route("/logout", web::post().to(logout::confirm))
        .route("/logged-out", web::get().to(logout::after_idp))
        .route("/.well-known/jwks.json", web::get().to(assertion::jwks))
        .route(
            "/backchannel-logout/{connection}",
            web::post().to(backchannel::logout),
        )
        .route("/saml/{connection}/metadata", web::get().to(saml::metadata))
        .route("/saml/{connection}/acs", web::post().to(saml::acs))
        .route("/saml/{connection}/slo", web::get().to(saml::slo))
        // Static on purpose: a load balancer learns that the process answers, nobody learns
        // anything else. Readiness and metrics are on the operator listener.
        .route("/healthz", web::get().to(healthz));
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    who: Option<SessionRecord>,
}

async fn home(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let who = current_session(&req, &state)
        .await
        .ok()
        .flatten()
        .map(|(_, r)| r);
    errors::html_page(actix_web::http::StatusCode::OK, &HomePage { who })
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("not found")
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The session id in the request's cookie, if it is well-formed and the only one of its name.
///
/// The bridge sets one session cookie, with `Path=/`. A second one of that name was set by
/// someone else: with `server.cookie_domain`, any sibling host can set a domain cookie, and a
/// longer `Path` makes browsers send it first, so reading the first would let that host choose
/// whose session a person browses in (cookie tossing). Two of them are no session.
pub fn session_id(req: &HttpRequest, cookie_name: &str) -> Option<SessionId> {
    // Parsed without building and storing the whole jar: this runs on every `/auth/verify`.
    let mut found = req
        .headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|h| std::str::from_utf8(h.as_bytes()).ok())
        .flat_map(|s| s.split(';').map(str::trim).filter(|c| !c.is_empty()))
        .filter_map(|c| actix_web::cookie::Cookie::parse_encoded(c).ok())
        .filter(|c| c.name() == cookie_name);
    let first = found.next()?;
    if found.next().is_some() {
        tracing::warn!(
            "two session cookies of the bridge's name: treated as no session (another host may have set one)"
        );
        return None;
    }
    SessionId::parse(first.value())
}
