//! Configuration: embedded defaults, then one TOML file, then `JITBRIDGE_<SECTION>__<KEY>`
//! environment overrides; secrets come from the file, an environment variable or a file.
//!
//! Everything is validated once at start, every problem is collected, and each one names the
//! key, the bad value (never a secret) and the fix. After [`Config::load`] the rest of the
//! program only sees parsed, valid values.

mod accounts;
mod assertion;
mod connection;
mod database;
mod directory;
mod limits;
mod oidc;
mod raw;
mod report;
mod saml;
mod secret;
mod server;
mod sessions;
mod table;

pub use accounts::{AccountsConfig, UsernamePolicy, UsernameQuarantine};
pub use assertion::{AppConfig, AssertionConfig};
pub use limits::{Rate, RateLimitsConfig};
pub use oidc::is_hmac;
pub use report::{Report, report};
pub use saml::{MetadataSource, RequiredSignature, SamlConfig, SamlSubject};
pub use secret::{Secret, SecretSource};

use crate::mapping::Mapping;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use url::Url;

/// The environment variable naming the config file (same as `--config`).
pub const CONFIG_ENV: &str = "JITBRIDGE_CONFIG";
const ENV_PREFIX: &str = "JITBRIDGE_";
/// Variables with the prefix that are not config overrides.
const ENV_NOT_OVERRIDES: &[&str] = &["JITBRIDGE_CONFIG", "JITBRIDGE_LOG", "JITBRIDGE_LOG_FORMAT"];

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub sessions: SessionsConfig,
    pub accounts: AccountsConfig,
    pub connections: Vec<ConnectionConfig>,
    /// The signed identity assertion of `/auth/verify` (keys, lifetime, bounds).
    pub assertion: AssertionConfig,
    /// The apps behind the proxy (`[[app]]`), by host.
    pub apps: Vec<AppConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The operator listener (`/metrics`, `/readyz`); loopback unless configured.
    pub operator_listen: SocketAddr,
    pub public_url: Url,
    pub workers: usize,
    /// SAML responses verified at once; more are answered 503 with Retry-After.
    pub max_saml_verifications: usize,
    /// Host names (besides the public URL's) that `rd` may redirect to after login.
    pub allowed_redirect_hosts: Vec<String>,
    /// Peers whose `X-Forwarded-For` names the client (for rate limits).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub rate_limits: RateLimitsConfig,
    /// Keys that seal login state into the browser's cookie; the first seals, all open.
    pub state_keys: Vec<crate::session::sealed::StateKey>,
    /// No key was configured: this process drew its own (in-process sessions only).
    pub state_key_ephemeral: bool,
    pub cookie: CookieConfig,
}

#[derive(Debug, Clone)]
pub struct CookieConfig {
    pub name: String,
    pub domain: Option<String>,
    pub secure: bool,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub pool_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone)]
pub struct SessionsConfig {
    pub store: SessionStoreKind,
    pub redis_url: Option<Secret>,
    pub key_prefix: String,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    /// How long a started login (state, nonce, PKCE verifier) stays valid.
    pub login_timeout: Duration,
    /// How far back the revocation-log follower re-reads (see `session::revocations`).
    pub revocation_window: Duration,
    /// How many Redis sessions (and accounts) a server keeps in its near cache; 0 for none.
    pub near_cache_entries: usize,
}

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub name: String,
    pub display_name: String,
    pub protocol: Protocol,
    pub mapping: std::sync::Arc<Mapping>,
    /// Where the sweeper checks that this connection's people still exist.
    pub directory: Option<DirectoryConfig>,
    /// Whether logins rename accounts, and how freed names are held (`[accounts]`).
    pub usernames: UsernamePolicy,
}

/// The protocol a connection speaks, with its settings.
#[derive(Debug, Clone)]
pub enum Protocol {
    Oidc(OidcConfig),
    Saml(Box<SamlConfig>),
}

impl ConnectionConfig {
    pub fn oidc(&self) -> Option<&OidcConfig> {
        match &self.protocol {
            Protocol::Oidc(o) => Some(o),
            Protocol::Saml(_) => None,
        }
    }

    pub fn saml(&self) -> Option<&SamlConfig> {
        match &self.protocol {
            Protocol::Saml(s) => Some(s),
            Protocol::Oidc(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    pub source: DirectorySourceConfig,
    pub policy: SweepPolicy,
    /// Time between two background sweeps, plus up to `jitter` so replicas do not align.
    pub interval: Duration,
    pub jitter: Duration,
    /// Bound on each directory request (a bind, a page).
    pub timeout: Duration,
    pub page_size: u32,
}

#[derive(Debug, Clone)]
pub enum DirectorySourceConfig {
    Ldap(LdapConfig),
    Scim(ScimConfig),
}

#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    pub starttls: bool,
    pub bind_dn: String,
    pub bind_password: Secret,
    pub base_dn: String,
    pub filter: String,
    /// The attribute whose value equals the connection's subject (entryUUID, objectGUID, uid, mail...).
    pub subject_attribute: String,
    /// Active Directory: the entry is disabled when bit 2 of userAccountControl is set.
    pub ad_user_account_control: bool,
    /// Otherwise: the entry is disabled when this attribute has this value (case-insensitive).
    pub disabled_attribute: Option<(String, String)>,
    /// Search references (referrals) that hold nobody and may be left out of a listing; any
    /// other reference makes the listing incomplete. Patterns with `*` (see `directory`).
    pub ignore_references: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimSubject {
    Id,
    ExternalId,
    UserName,
}

#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// The SCIM service's base URL; users are listed at `<base_url>/Users`.
    pub base_url: Url,
    pub token: Secret,
    pub subject_attribute: ScimSubject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeMode {
    /// Keep the account row (for the audit trail's references) with personal data removed.
    Anonymize,
    /// Delete the account and its identities and roles.
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepPolicy {
    /// Consecutive successful sweeps an account must be missing from before it is disabled.
    pub grace_sweeps: u32,
    /// And for at least this long since it was first seen missing.
    pub grace_period: Duration,
    /// A sweep that would disable more than this fraction of the active accounts stops.
    pub max_disable_fraction: f64,
    /// Or more than this many. Both also bound accounts marked missing (within grace) plus
    /// disabled in one sweep: a listing that lost many people must not start their grace.
    pub max_disable_count: Option<u64>,
    /// How many listed entries may lack the subject attribute before a sweep stops.
    pub without_subject: Tolerance,
    /// A sweep that would purge more than this fraction of the connection's accounts, or more
    /// than `max_purge_count`, purges none of them (the rest of the sweep goes ahead).
    pub max_purge_fraction: f64,
    pub max_purge_count: u64,
    /// Reactivate accounts the sweeper disabled when they reappear (otherwise they stay disabled).
    pub reactivate: bool,
    /// Accounts disabled for longer than this are purged.
    pub retention: Option<Duration>,
    pub purge: PurgeMode,
}

/// A bound given as a count, a fraction of the whole, or both (then both must hold); with
/// neither, nothing is tolerated.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tolerance {
    pub count: Option<u64>,
    pub fraction: Option<f64>,
}

impl Tolerance {
    pub fn allows(&self, n: u64, of: u64) -> bool {
        if self.count.is_none() && self.fraction.is_none() {
            return n == 0;
        }
        self.count.is_none_or(|c| n <= c) && self.fraction.is_none_or(|f| n as f64 <= f * of as f64)
    }
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as the provider writes it (compared as a string: `https://x` is not `https://x/`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    /// The ID token and logout token algorithms, in the one JWT stack's terms.
    pub allowed_algs: Vec<jsonwebtoken::Algorithm>,
    pub clock_skew: Duration,
    pub use_userinfo: bool,
    /// Minimum time between two JWKS refetches triggered by an unknown `kid`.
    pub jwks_refresh_min_interval: Duration,
    /// How often discovery and the JWKS are refreshed when the provider's Cache-Control
    /// names no max-age (which, when present, is used within 5 min .. 24 h).
    pub jwks_refresh_interval: Duration,
    /// How long the last good keys stay trusted while refreshes fail; past it, logins and
    /// logout tokens fail closed.
    pub jwks_max_stale: Duration,
    /// A back-channel logout token issued longer ago than this (plus `clock_skew`) is refused,
    /// and the replay marker of its `jti` is kept for that long.
    pub logout_token_max_age: Duration,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub value: Option<String>,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} = {v:?}: {}", self.key, self.message)?,
            None => write!(f, "{}: {}", self.key, self.message)?,
        }
        write!(f, " (fix: {})", self.fix)
    }
}

/// Every problem found, so an operator fixes them all in one go.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the configuration ({}) has {n} problem{}:",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Loads from the given file (or `JITBRIDGE_CONFIG`, or embedded defaults) plus the process
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env_file = std::env::var(CONFIG_ENV).ok().filter(|s| !s.is_empty());
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env_file.map(Into::into));
        let (name, text) = match &file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(t) => (path.display().to_string(), t),
                Err(e) => {
                    return Err(ConfigError {
                        source_name: path.display().to_string(),
                        problems: vec![Problem {
                            key: "--config".into(),
                            value: Some(path.display().to_string()),
                            message: format!("cannot read the file: {e}"),
                            fix: "pass the path of a readable TOML file, or none for the embedded defaults".into(),
                        }],
                    });
                }
            },
            None => ("embedded defaults".to_string(), String::new()),
        };
        Self::from_toml_and_env(&name, &text, std::env::vars())
    }

    /// The testable core of [`Config::load`].
    pub fn from_toml_and_env(
        source_name: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            source_name: source_name.to_string(),
            problems,
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            fail(vec![Problem {
                key: "(file)".into(),
                value: None,
                message: format!("is not valid TOML: {}", e.message()),
                fix: format!(
                    "correct the syntax{}",
                    e.span()
                        .map(|s| format!(" near byte {}", s.start))
                        .unwrap_or_default()
                ),
            }])
        })?;
        let mut problems = raw::apply_env(&mut table, env);
        let raw: raw::RawConfig = match toml::Value::Table(table).try_into() {
            Ok(r) => r,
            Err(e) => {
                problems.push(table::serde_problem("", &e));
                return Err(fail(problems));
            }
        };
        match raw.validate() {
            Ok(cfg) if problems.is_empty() => Ok(cfg),
            Ok(_) => Err(fail(problems)),
            Err(mut more) => {
                problems.append(&mut more);
                Err(fail(problems))
            }
        }
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests;
