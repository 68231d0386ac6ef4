//! The configuration as written (TOML + env), and its validation into [`super::Config`].

use super::*;
use crate::mapping::MappingConfig;
use openidconnect::JwsSigningAlgorithm;
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    accounts: super::accounts::RawAccounts,
    #[serde(default)]
    connection: Vec<RawConnection>,
    #[serde(default)]
    assertion: super::assertion::RawAssertion,
    #[serde(default)]
    app: Vec<super::assertion::RawApp>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    operator_listen: Option<String>,
    public_url: Option<String>,
    workers: Option<usize>,
    max_concurrent_saml_verifications: Option<usize>,
    #[serde(default)]
    allowed_redirect_hosts: Vec<String>,
    cookie_domain: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    rate_limits: Option<super::limits::RawRateLimits>,
    state_key: Option<super::limits::RawStateKeys>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<SecretSource>,
    pool_size: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    store: Option<String>,
    redis_url: Option<SecretSource>,
    key_prefix: Option<String>,
    idle_timeout: Option<String>,
    absolute_timeout: Option<String>,
    login_timeout: Option<String>,
    revocation_window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    name: String,
    kind: String,
    display_name: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretSource>,
    scopes: Option<Vec<String>>,
    allowed_algs: Option<Vec<String>>,
    clock_skew: Option<String>,
    userinfo: Option<bool>,
    jwks_refresh_min_interval: Option<String>,
    jwks_refresh_interval: Option<String>,
    jwks_max_stale: Option<String>,
    update_username: Option<bool>,
    #[serde(default)]
    mapping: MappingConfig,
    directory: Option<RawDirectory>,
    saml: Option<super::saml::RawSaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    kind: String,
    // LDAP
    url: Option<String>,
    starttls: Option<bool>,
    bind_dn: Option<String>,
    bind_password: Option<SecretSource>,
    base_dn: Option<String>,
    filter: Option<String>,
    subject_attribute: Option<String>,
    ad_user_account_control: Option<bool>,
    disabled_attribute: Option<String>,
    disabled_value: Option<String>,
    ignore_references: Option<Vec<String>>,
    // SCIM
    base_url: Option<String>,
    token: Option<SecretSource>,
    // Both
    page_size: Option<u32>,
    interval: Option<String>,
    jitter: Option<String>,
    timeout: Option<String>,
    grace_sweeps: Option<u32>,
    grace_period: Option<String>,
    max_disable_fraction: Option<f64>,
    max_disable_count: Option<u64>,
    max_entries_without_subject: Option<u64>,
    max_entries_without_subject_fraction: Option<f64>,
    max_purge_fraction: Option<f64>,
    max_purge_count: Option<u64>,
    reactivate: Option<bool>,
    retention: Option<String>,
    purge: Option<String>,
}

const DEFAULT_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Applies `JITBRIDGE_<SECTION>__<KEY>=value` overrides to the parsed file.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut vars: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_OVERRIDES.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let rest = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = rest.split_once("__") else {
            problems.push(Problem {
                key: var.clone(),
                value: None,
                message: "is not a known jitbridge variable".into(),
                fix: "use JITBRIDGE_<SECTION>__<KEY> (e.g. JITBRIDGE_DATABASE__URL), or unset it"
                    .into(),
            });
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !matches!(section.as_str(), "server" | "database" | "sessions") {
            problems.push(Problem {
                key: var.clone(),
                value: None,
                message: format!("names the section `{section}`, which cannot be set from the environment"),
                fix: "only [server], [database] and [sessions] keys have overrides; connection secrets use `{ env = \"VAR\" }` in the file".into(),
            });
            continue;
        }
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let Some(t) = entry.as_table_mut() else {
            continue; // the file itself is malformed; deserialization reports it
        };
        let v = match value.parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => toml::Value::String(value),
        };
        t.insert(key.to_ascii_lowercase(), v);
    }
    problems
}

pub(super) struct Collector(Vec<Problem>);

impl Collector {
    pub(super) fn push(
        &mut self,
        key: impl Into<String>,
        value: Option<&str>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Problem {
            key: key.into(),
            value: value.map(str::to_string),
            message: message.into(),
            fix: fix.into(),
        });
    }

    pub(super) fn duration(&mut self, key: &str, v: Option<&str>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    self.push(
                        key,
                        Some(s),
                        "is not a positive duration",
                        "write e.g. \"30s\", \"15m\" or \"8h\"",
                    );
                    default
                }
            },
        }
    }

    pub(super) fn secret(&mut self, key: &str, v: &SecretSource) -> Option<Secret> {
        match v.resolve() {
            Ok(s) => Some(s),
            Err(e) => {
                self.push(
                    key,
                    None,
                    format!("cannot be read: {e}"),
                    "set the variable or file it names, or write the value",
                );
                None
            }
        }
    }
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, Vec<Problem>> {
        let mut c = Collector(Vec::new());

        // [server]
        let listen_src = self.server.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen_src.parse().unwrap_or_else(|_| {
            c.push(
                "server.listen",
                Some(listen_src),
                "is not an address:port",
                "write e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let operator_src = self
            .server
            .operator_listen
            .as_deref()
            .unwrap_or("127.0.0.1:9090");
        let operator_listen: SocketAddr = match operator_src.parse::<SocketAddr>() {
            Ok(a) if a == listen && a.port() != 0 => {
                c.push(
                    "server.operator_listen",
                    Some(operator_src),
                    "is the same address as server.listen",
                    "give the operator listener its own port, e.g. \"127.0.0.1:9090\"",
                );
                a
            }
            Ok(a) => a,
            Err(_) => {
                c.push(
                    "server.operator_listen",
                    Some(operator_src),
                    "is not an address:port",
                    "write e.g. \"127.0.0.1:9090\" (loopback, the default) or \"0.0.0.0:9090\" in a pod whose port is not exposed publicly",
                );
                SocketAddr::from(([127, 0, 0, 1], 9090))
            }
        };
        let default_public = format!("http://{listen}");
        let public_src = self.server.public_url.as_deref().unwrap_or(&default_public);
        let public_url = match Url::parse(public_src) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.scheme() == "http" && !is_loopback(&u) {
                    c.push("server.public_url", Some(public_src), "uses plain http on a non-loopback host, so session cookies would travel in clear text", "serve jitbridge behind TLS and write the https URL");
                }
                if u.query().is_some() || u.fragment().is_some() {
                    c.push(
                        "server.public_url",
                        Some(public_src),
                        "must not have a query or fragment",
                        "write the base URL only, e.g. https://sso.example.com",
                    );
                }
                u
            }
            _ => {
                c.push(
                    "server.public_url",
                    Some(public_src),
                    "is not an http(s) URL",
                    "write the URL browsers use to reach jitbridge, e.g. https://sso.example.com",
                );
                Url::parse(&default_public).expect("valid default URL")
            }
        };
        let secure = public_url.scheme() == "https";
        let domain = self.server.cookie_domain.filter(|d| !d.is_empty());
        let cookie_name = match (secure, &domain) {
            (true, None) => "__Host-jitbridge",
            (true, Some(_)) => "__Secure-jitbridge",
            (false, _) => "jitbridge",
        };
        let workers = self
            .server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        // Each SAML verification (and decryption) costs a millisecond or more of CPU on the
        // blocking pool: a bound keeps a flood of junk POSTs from queueing without end.
        let max_saml_verifications = self
            .server
            .max_concurrent_saml_verifications
            .unwrap_or(2 * workers.max(1));
        if max_saml_verifications == 0 {
            c.push(
                "server.max_concurrent_saml_verifications",
                Some("0"),
                "must be at least 1",
                "remove the key for the default (twice the worker count)",
            );
        }
        let allowed_redirect_hosts = self
            .server
            .allowed_redirect_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let trusted_proxies = super::limits::trusted_proxies(&mut c, &self.server.trusted_proxies);
        let rate_limits = super::limits::rate_limits(&mut c, self.server.rate_limits);

        // [database]
        let db_url = match &self.database.url {
            Some(src) => c.secret("database.url", src),
            None => Some(Secret::new("sqlite://jitbridge.db")),
        };
        if let Some(u) = &db_url {
            let u = u.expose();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                c.push(
                    "database.url",
                    None,
                    "has an unsupported scheme",
                    "use sqlite://FILE or postgres://USER@HOST/DB",
                );
            }
        }
        let pool_size = self.database.pool_size.unwrap_or(8);
        if pool_size == 0 {
            c.push(
                "database.pool_size",
                Some("0"),
                "must be at least 1",
                "remove the key for the default of 8",
            );
        }

        // [sessions]
        let store = match self.sessions.store.as_deref().unwrap_or("memory") {
            "memory" => SessionStoreKind::Memory,
            "redis" => SessionStoreKind::Redis,
            other => {
                c.push(
                    "sessions.store",
                    Some(other),
                    "is not a session store",
                    "write \"memory\" (one process) or \"redis\" (shared by replicas)",
                );
                SessionStoreKind::Memory
            }
        };
        let redis_url = self
            .sessions
            .redis_url
            .as_ref()
            .and_then(|s| c.secret("sessions.redis_url", s));
        if store == SessionStoreKind::Redis
            && redis_url.is_none()
            && self.sessions.redis_url.is_none()
        {
            c.push(
                "sessions.redis_url",
                None,
                "is required when sessions.store = \"redis\"",
                "set it to e.g. redis://127.0.0.1:6379",
            );
        }
        let idle_timeout = c.duration(
            "sessions.idle_timeout",
            self.sessions.idle_timeout.as_deref(),
            Duration::from_secs(8 * 3600),
        );
        let absolute_timeout = c.duration(
            "sessions.absolute_timeout",
            self.sessions.absolute_timeout.as_deref(),
            Duration::from_secs(24 * 3600),
        );
        if idle_timeout > absolute_timeout {
            c.push(
                "sessions.idle_timeout",
                self.sessions.idle_timeout.as_deref(),
                "is longer than sessions.absolute_timeout",
                "make it shorter than or equal to the absolute timeout",
            );
        }
        let login_timeout = c.duration(
            "sessions.login_timeout",
            self.sessions.login_timeout.as_deref(),
            Duration::from_secs(600),
        );
        // Longer than any transaction that queues revocations (a sweep applies its plan in one
        // transaction), plus clock differences between hosts.
        let revocation_window = c.duration(
            "sessions.revocation_window",
            self.sessions.revocation_window.as_deref(),
            Duration::from_secs(15 * 60),
        );
        if revocation_window < Duration::from_secs(60) {
            c.push(
                "sessions.revocation_window",
                self.sessions.revocation_window.as_deref(),
                "is shorter than a minute, so a revocation committed by a slow transaction could be skipped",
                "remove the key for the 15m default, or set at least \"1m\"",
            );
        }

        let accounts = super::accounts::validate(&mut c, self.accounts);
        let (state_keys, state_key_ephemeral) =
            super::limits::state_keys(&mut c, self.server.state_key.as_ref(), store);

        // [[connection]]
        let mut names = BTreeSet::new();
        let mut connections = Vec::new();
        for (i, rc) in self.connection.into_iter().enumerate() {
            let key = if rc.name.is_empty() {
                format!("connection[{i}]")
            } else {
                format!("connection[{}]", rc.name)
            };
            let name_ok = !rc.name.is_empty()
                && rc.name.len() <= 64
                && rc.name.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_'
                });
            if !name_ok {
                c.push(
                    format!("{key}.name"),
                    Some(&rc.name),
                    "must be 1-64 characters of a-z, 0-9, - and _",
                    "rename the connection (it appears in URLs and identifies its accounts)",
                );
            } else if !names.insert(rc.name.clone()) {
                c.push(
                    format!("{key}.name"),
                    Some(&rc.name),
                    "is used by two connections",
                    "give each connection its own name",
                );
            }
            let usernames = UsernamePolicy {
                update: rc.update_username.unwrap_or(false),
                quarantine: accounts.username_quarantine.clone(),
            };
            if let Some(conn) = validate_connection(&mut c, &key, rc, &public_url, usernames) {
                connections.push(conn);
            }
        }

        let (assertion, apps) = super::assertion::validate(&mut c, self.assertion, self.app);

        if !c.0.is_empty() {
            return Err(c.0);
        }
        Ok(Config {
            server: ServerConfig {
                listen,
                operator_listen,
                public_url,
                workers,
                max_saml_verifications,
                allowed_redirect_hosts,
                trusted_proxies,
                rate_limits,
                state_keys,
                state_key_ephemeral,
                cookie: CookieConfig {
                    name: cookie_name.into(),
                    domain,
                    secure,
                },
            },
            database: DatabaseConfig {
                url: db_url.expect("checked"),
                pool_size,
            },
            sessions: SessionsConfig {
                store,
                redis_url,
                key_prefix: self
                    .sessions
                    .key_prefix
                    .unwrap_or_else(|| "jitbridge:".into()),
                idle_timeout,
                absolute_timeout,
                login_timeout,
                revocation_window,
            },
            accounts,
            connections,
            assertion,
            apps,
        })
    }
}

fn validate_connection(
    c: &mut Collector,
    key: &str,
    rc: RawConnection,
    public_url: &Url,
    usernames: UsernamePolicy,
) -> Option<ConnectionConfig> {
    let clock_skew = c.duration(
        &format!("{key}.clock_skew"),
        rc.clock_skew.as_deref(),
        Duration::from_secs(60),
    );
    if clock_skew > Duration::from_secs(300) {
        c.push(
            format!("{key}.clock_skew"),
            rc.clock_skew.as_deref(),
            "is more than 5 minutes",
            "fix the clocks (NTP) instead; a few seconds to a minute is enough",
        );
    }
    let mut mapping_cfg = rc.mapping.clone();
    let protocol = match rc.kind.as_str() {
        "oidc" => {
            if rc.saml.is_some() {
                c.push(
                    format!("{key}.saml"),
                    None,
                    "is a SAML section in an OIDC connection",
                    "remove it, or set kind = \"saml\"",
                );
            }
            validate_oidc(c, key, &rc, clock_skew).map(Protocol::Oidc)
        }
        "saml" => {
            for (field, set) in [
                ("issuer", rc.issuer.is_some()),
                ("client_id", rc.client_id.is_some()),
                ("client_secret", rc.client_secret.is_some()),
                ("scopes", rc.scopes.is_some()),
                ("allowed_algs", rc.allowed_algs.is_some()),
                ("userinfo", rc.userinfo.is_some()),
                (
                    "jwks_refresh_min_interval",
                    rc.jwks_refresh_min_interval.is_some(),
                ),
                ("jwks_refresh_interval", rc.jwks_refresh_interval.is_some()),
                ("jwks_max_stale", rc.jwks_max_stale.is_some()),
            ] {
                if set {
                    c.push(
                        format!("{key}.{field}"),
                        None,
                        "is an OIDC setting in a SAML connection",
                        "remove it; SAML settings go in the [connection.saml] table",
                    );
                }
            }
            // A person's NameID is the natural username when nothing else is mapped.
            if mapping_cfg.username.is_none() {
                mapping_cfg.username = Some("{name_id}".into());
            }
            // SAML has no email_verified flag: the IdP asserts the address.
            if mapping_cfg.trust_email.is_none() {
                mapping_cfg.trust_email = Some(true);
            }
            super::saml::validate(
                c,
                &format!("{key}.saml"),
                &rc.name,
                rc.saml.unwrap_or_default(),
                clock_skew,
                public_url,
            )
            .map(|s| Protocol::Saml(Box::new(s)))
        }
        other => {
            c.push(
                format!("{key}.kind"),
                Some(other),
                "is not a supported connection kind",
                "write \"oidc\" or \"saml\"",
            );
            None
        }
    };
    let mapping = match Mapping::compile(&mapping_cfg) {
        Ok(m) => Some(m),
        Err(errs) => {
            for (k, e) in errs {
                c.push(
                    format!("{key}.mapping.{k}"),
                    None,
                    e,
                    "see the mapping reference in README.md",
                );
            }
            None
        }
    };
    let directory = match rc.directory {
        Some(d) => validate_directory(c, &format!("{key}.directory"), d),
        None => None,
    };
    Some(ConnectionConfig {
        directory,
        display_name: rc.display_name.unwrap_or_else(|| rc.name.clone()),
        name: rc.name,
        protocol: protocol?,
        mapping: std::sync::Arc::new(mapping?),
        usernames,
    })
}

fn validate_oidc(
    c: &mut Collector,
    key: &str,
    rc: &RawConnection,
    clock_skew: Duration,
) -> Option<OidcConfig> {
    let issuer = match rc.issuer.as_deref().map(Url::parse) {
        Some(Ok(u)) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {
            rc.issuer.clone()
        }
        Some(Ok(_)) | Some(Err(_)) => {
            c.push(
                format!("{key}.issuer"),
                rc.issuer.as_deref(),
                "must be an https URL (plain http only on loopback)",
                "write the issuer exactly as the provider's discovery document states it",
            );
            None
        }
        None => {
            c.push(
                format!("{key}.issuer"),
                None,
                "is missing",
                "write the provider's issuer URL, e.g. https://login.example.com/realms/main",
            );
            None
        }
    };
    let client_id = rc.client_id.clone().filter(|s| !s.is_empty());
    if client_id.is_none() {
        c.push(
            format!("{key}.client_id"),
            None,
            "is missing",
            "write the client id registered at the provider",
        );
    }
    let client_secret = rc
        .client_secret
        .as_ref()
        .and_then(|s| c.secret(&format!("{key}.client_secret"), s));
    let mut allowed_algs = Vec::new();
    let alg_names = rc
        .allowed_algs
        .clone()
        .unwrap_or_else(|| DEFAULT_ALGS.iter().map(|s| s.to_string()).collect());
    for a in &alg_names {
        let parsed: Option<CoreJwsSigningAlgorithm> =
            serde_json::from_value(serde_json::Value::String(a.clone())).ok();
        match parsed {
            None | Some(CoreJwsSigningAlgorithm::None) => c.push(format!("{key}.allowed_algs"), Some(a), "is not an acceptable ID token signing algorithm", "use asymmetric algorithms such as RS256, PS256, ES256 or EdDSA (never \"none\")"),
            Some(alg) if alg.uses_shared_secret() && client_secret.is_none() => c.push(format!("{key}.allowed_algs"), Some(a), "is an HMAC algorithm, which needs a client_secret", "remove it, or configure the client secret (HMAC keys are never derived from public keys)"),
            Some(alg) => allowed_algs.push(alg),
        }
    }
    if alg_names.is_empty() {
        c.push(
            format!("{key}.allowed_algs"),
            None,
            "is empty",
            "remove the key for the safe default list",
        );
    }
    let mut scopes = rc
        .scopes
        .clone()
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let jwks_refresh_min_interval = c.duration(
        &format!("{key}.jwks_refresh_min_interval"),
        rc.jwks_refresh_min_interval.as_deref(),
        Duration::from_secs(30),
    );
    let jwks_refresh_interval = c.duration(
        &format!("{key}.jwks_refresh_interval"),
        rc.jwks_refresh_interval.as_deref(),
        Duration::from_secs(3600),
    );
    let jwks_max_stale = c.duration(
        &format!("{key}.jwks_max_stale"),
        rc.jwks_max_stale.as_deref(),
        Duration::from_secs(24 * 3600),
    );
    Some(OidcConfig {
        issuer: issuer?,
        client_id: client_id?,
        client_secret,
        scopes,
        allowed_algs,
        clock_skew,
        use_userinfo: rc.userinfo.unwrap_or(true),
        jwks_refresh_min_interval,
        jwks_refresh_interval,
        jwks_max_stale,
    })
}

fn validate_directory(c: &mut Collector, key: &str, d: RawDirectory) -> Option<DirectoryConfig> {
    let required =
        |c: &mut Collector, name: &str, v: Option<String>, fix: &str| -> Option<String> {
            match v.filter(|s| !s.trim().is_empty()) {
                Some(v) => Some(v),
                None => {
                    c.push(
                        format!("{key}.{name}"),
                        None,
                        format!("is required for a {} directory", d.kind),
                        fix,
                    );
                    None
                }
            }
        };
    let source = match d.kind.as_str() {
        "ldap" => {
            let url = required(
                c,
                "url",
                d.url.clone(),
                "write e.g. \"ldaps://ldap.example.com:636\"",
            );
            if let Some(u) = &url
                && !(u.starts_with("ldap://") || u.starts_with("ldaps://"))
            {
                c.push(
                    format!("{key}.url"),
                    Some(u),
                    "is not an LDAP URL",
                    "use ldap://HOST:389 (with starttls = true) or ldaps://HOST:636",
                );
            }
            let bind_dn = required(
                c,
                "bind_dn",
                d.bind_dn.clone(),
                "write the DN of a read-only service account",
            );
            let bind_password = match &d.bind_password {
                Some(s) => c.secret(&format!("{key}.bind_password"), s),
                None => {
                    c.push(
                        format!("{key}.bind_password"),
                        None,
                        "is required for an ldap directory",
                        "write { env = \"VAR\" } or { file = \"/path\" }",
                    );
                    None
                }
            };
            let base_dn = required(
                c,
                "base_dn",
                d.base_dn.clone(),
                "write the DN under which people are, e.g. \"ou=people,dc=example,dc=org\"",
            );
            let subject_attribute = required(
                c,
                "subject_attribute",
                d.subject_attribute.clone(),
                "write the attribute that equals the IdP's subject (entryUUID, objectGUID, uid, mail...)",
            );
            let disabled_attribute = match (d.disabled_attribute.clone(), d.disabled_value.clone())
            {
                (Some(a), Some(v)) => Some((a, v)),
                (None, None) => None,
                _ => {
                    c.push(
                        format!("{key}.disabled_attribute"),
                        None,
                        "and disabled_value go together",
                        "set both, or neither",
                    );
                    None
                }
            };
            Some(DirectorySourceConfig::Ldap(LdapConfig {
                url: url?,
                starttls: d.starttls.unwrap_or(false),
                bind_dn: bind_dn?,
                bind_password: bind_password?,
                base_dn: base_dn?,
                filter: d
                    .filter
                    .clone()
                    .unwrap_or_else(|| "(objectClass=person)".into()),
                subject_attribute: subject_attribute?,
                ad_user_account_control: d.ad_user_account_control.unwrap_or(false),
                disabled_attribute,
                ignore_references: super::directory::ignore_references(
                    c,
                    key,
                    d.ignore_references.clone(),
                ),
            }))
        }
        "scim" => {
            let base = required(
                c,
                "base_url",
                d.base_url.clone(),
                "write the SCIM base URL, e.g. https://idp.example.com/scim/v2",
            );
            let base_url = base.and_then(|b| match Url::parse(b.trim_end_matches('/')) {
                Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {
                    Some(u)
                }
                _ => {
                    c.push(
                        format!("{key}.base_url"),
                        Some(&b),
                        "must be an https URL (plain http only on loopback)",
                        "write the https base URL of the SCIM service",
                    );
                    None
                }
            });
            let token = match &d.token {
                Some(s) => c.secret(&format!("{key}.token"), s),
                None => {
                    c.push(
                        format!("{key}.token"),
                        None,
                        "is required for a scim directory",
                        "write { env = \"VAR\" } or { file = \"/path\" } holding the bearer token",
                    );
                    None
                }
            };
            let subject_attribute = match d.subject_attribute.as_deref().unwrap_or("id") {
                "id" => Some(ScimSubject::Id),
                "externalId" => Some(ScimSubject::ExternalId),
                "userName" => Some(ScimSubject::UserName),
                other => {
                    c.push(
                        format!("{key}.subject_attribute"),
                        Some(other),
                        "is not a SCIM user identifier",
                        "write \"id\", \"externalId\" or \"userName\"",
                    );
                    None
                }
            };
            Some(DirectorySourceConfig::Scim(ScimConfig {
                base_url: base_url?,
                token: token?,
                subject_attribute: subject_attribute?,
            }))
        }
        other => {
            c.push(
                format!("{key}.kind"),
                Some(other),
                "is not a directory kind",
                "write \"ldap\" or \"scim\"",
            );
            None
        }
    };
    let fraction = super::directory::fraction(
        c,
        &format!("{key}.max_disable_fraction"),
        d.max_disable_fraction,
        0.10,
    );
    let purge = match d.purge.as_deref().unwrap_or("anonymize") {
        "anonymize" => PurgeMode::Anonymize,
        "delete" => PurgeMode::Delete,
        other => {
            c.push(
                format!("{key}.purge"),
                Some(other),
                "is not a purge mode",
                "write \"anonymize\" or \"delete\"",
            );
            PurgeMode::Anonymize
        }
    };
    let grace_sweeps = d.grace_sweeps.unwrap_or(2);
    if grace_sweeps == 0 {
        c.push(
            format!("{key}.grace_sweeps"),
            Some("0"),
            "must be at least 1",
            "write 1 to disable at the first sweep that misses an account",
        );
    }
    let page_size = d.page_size.unwrap_or(500);
    if page_size == 0 || page_size > 10_000 {
        c.push(
            format!("{key}.page_size"),
            Some(&page_size.to_string()),
            "must be between 1 and 10000",
            "remove the key for the default of 500",
        );
    }
    let policy = SweepPolicy {
        grace_sweeps,
        grace_period: match d.grace_period.as_deref() {
            Some("0") | Some("0s") => Duration::ZERO,
            other => c.duration(&format!("{key}.grace_period"), other, Duration::ZERO),
        },
        max_disable_fraction: fraction,
        max_disable_count: d.max_disable_count,
        without_subject: super::directory::without_subject(
            c,
            key,
            d.max_entries_without_subject,
            d.max_entries_without_subject_fraction,
        ),
        max_purge_fraction: super::directory::fraction(
            c,
            &format!("{key}.max_purge_fraction"),
            d.max_purge_fraction,
            super::directory::DEFAULT_MAX_PURGE_FRACTION,
        ),
        max_purge_count: d
            .max_purge_count
            .unwrap_or(super::directory::DEFAULT_MAX_PURGE_COUNT),
        reactivate: d.reactivate.unwrap_or(false),
        retention: d.retention.as_deref().map(|r| {
            c.duration(
                &format!("{key}.retention"),
                Some(r),
                Duration::from_secs(90 * 86400),
            )
        }),
        purge,
    };
    Some(DirectoryConfig {
        source: source?,
        policy,
        interval: c.duration(
            &format!("{key}.interval"),
            d.interval.as_deref(),
            Duration::from_secs(900),
        ),
        jitter: match d.jitter.as_deref() {
            Some("0") | Some("0s") => Duration::ZERO,
            other => c.duration(&format!("{key}.jitter"), other, Duration::from_secs(60)),
        },
        timeout: c.duration(
            &format!("{key}.timeout"),
            d.timeout.as_deref(),
            Duration::from_secs(30),
        ),
        page_size,
    })
}
