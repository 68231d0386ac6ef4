//! `[assertion]` (the keys and bounds of the signed identity assertion) and `[[app]]` (the
//! apps behind the proxy: which host is which audience, and which roles each one gets).

use super::SecretSource;
use super::raw::Collector;
use crate::assertion::keys::{ALGORITHMS, SigningKey};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AssertionConfig {
    /// The first signs; all are published. Empty: no assertion, an empty JWK set.
    pub keys: Vec<SigningKey>,
    pub lifetime: Duration,
    /// A token larger than this is not sent (the identity headers still are).
    pub max_header_bytes: usize,
    /// Bound on the signed tokens kept (per session and audience).
    pub cache_entries: usize,
}

impl Default for AssertionConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            lifetime: DEFAULT_LIFETIME,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }
}

/// An app behind the proxy, recognised by the host its requests carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// Lowercase; compared exactly (a port is part of it) with X-Forwarded-Host, else Host.
    pub host: String,
    /// The assertion's `aud`.
    pub audience: String,
    /// Role names or `*` patterns; only matching roles go into the assertion. `None`: all.
    pub roles: Option<Vec<String>>,
}

const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Proxies keep an answer's headers in a bounded buffer (nginx: one `proxy_buffer_size`, 4k or
/// 8k by default, which the README's example raises to 16k), shared with the identity headers.
const DEFAULT_MAX_HEADER_BYTES: usize = 4096;
const DEFAULT_CACHE_ENTRIES: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssertion {
    #[serde(default)]
    keys: Vec<RawKey>,
    lifetime: Option<String>,
    max_header_bytes: Option<usize>,
    cache_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: Option<String>,
    private_key: Option<SecretSource>,
    alg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    host: Option<String>,
    audience: Option<String>,
    roles: Option<Vec<String>>,
}

pub(super) fn validate(
    c: &mut Collector,
    raw: RawAssertion,
    raw_apps: Vec<RawApp>,
) -> (AssertionConfig, Vec<AppConfig>) {
    let mut keys = Vec::new();
    let mut kids = BTreeSet::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let key = match k.kid.as_deref().filter(|s| !s.is_empty()) {
            Some(kid) => format!("assertion.keys[{kid}]"),
            None => format!("assertion.keys[{i}]"),
        };
        let Some(kid) = k.kid.filter(|s| !s.is_empty()) else {
            c.push(
                format!("{key}.kid"),
                None,
                "is missing",
                "give every key an id, e.g. kid = \"2026-12\" (apps pick the key by it)",
            );
            continue;
        };
        if kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
            c.push(
                format!("{key}.kid"),
                Some(&kid),
                "must be 1-64 printable ASCII characters without spaces",
                "use e.g. the month the key was made: \"2026-12\"",
            );
        } else if !kids.insert(kid.clone()) {
            c.push(
                format!("{key}.kid"),
                Some(&kid),
                "is used by two keys",
                "give each key its own kid (apps pick the key by it)",
            );
        }
        if let Some(alg) = k.alg.as_deref()
            && !ALGORITHMS.contains(&alg)
        {
            c.push(
                format!("{key}.alg"),
                Some(alg),
                "is not an assertion signing algorithm",
                "write \"ES256\" (a P-256 key) or \"EdDSA\" (an Ed25519 key), or remove it: it follows from the key",
            );
            continue;
        }
        let Some(src) = &k.private_key else {
            c.push(
                format!("{key}.private_key"),
                None,
                "is missing",
                "write { file = \"/etc/jitbridge/assertion-KID.pem\" } holding a PKCS#8 PEM private key (see README)",
            );
            continue;
        };
        let Some(pem) = c.secret(&format!("{key}.private_key"), src) else {
            continue;
        };
        match SigningKey::from_pem(&kid, pem.expose(), k.alg.as_deref()) {
            Ok(sk) => keys.push(sk),
            Err(e) => c.push(format!("{key}.private_key"), None, e.to_string(), e.fix()),
        }
    }

    let lifetime = c.duration(
        "assertion.lifetime",
        raw.lifetime.as_deref(),
        DEFAULT_LIFETIME,
    );
    if !(Duration::from_secs(60)..=Duration::from_secs(3600)).contains(&lifetime) {
        c.push(
            "assertion.lifetime",
            raw.lifetime.as_deref(),
            "must be between 1m and 1h (an app accepts a token until it expires, also after the session ended)",
            "remove the key for the 5m default",
        );
    }
    let max_header_bytes = raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if !(1024..=65536).contains(&max_header_bytes) {
        c.push(
            "assertion.max_header_bytes",
            Some(&max_header_bytes.to_string()),
            "must be between 1024 and 65536",
            "remove the key for the 4096 default (raise nginx's proxy_buffer_size with it)",
        );
    }
    let cache_entries = raw.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
    if !(2..=1_000_000).contains(&cache_entries) {
        c.push(
            "assertion.cache_entries",
            Some(&cache_entries.to_string()),
            "must be between 2 and 1000000",
            "remove the key for the default of 10000",
        );
    }

    let mut apps = Vec::new();
    let mut hosts = BTreeSet::new();
    for (i, a) in raw_apps.into_iter().enumerate() {
        let host = a.host.as_deref().map(|h| h.trim().to_ascii_lowercase());
        let key = match host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => format!("app[{h}]"),
            None => format!("app[{i}]"),
        };
        let host = match host.filter(|h| !h.is_empty()) {
            None => {
                c.push(
                    format!("{key}.host"),
                    None,
                    "is missing",
                    "write the host the app is served on, as the proxy sends it in X-Forwarded-Host (or Host), e.g. \"app.example.com\"",
                );
                None
            }
            Some(h) if h.contains('/') || h.contains(',') || h.chars().any(char::is_whitespace) => {
                c.push(
                    format!("{key}.host"),
                    Some(&h),
                    "is not a host name (a scheme, path, list or space)",
                    "write the host only, e.g. \"app.example.com\" (with \":port\" when requests carry one)",
                );
                None
            }
            Some(h) if !hosts.insert(h.clone()) => {
                c.push(
                    format!("{key}.host"),
                    Some(&h),
                    "is configured for two apps",
                    "give each host one [[app]] entry",
                );
                None
            }
            Some(h) => Some(h),
        };
        let audience = a.audience.filter(|s| !s.trim().is_empty());
        if audience.is_none() {
            c.push(
                format!("{key}.audience"),
                None,
                "is missing",
                "write the audience the app checks in the assertion's aud, e.g. \"https://app.example.com\"",
            );
        }
        if let Some(roles) = &a.roles
            && roles.iter().any(|r| r.trim().is_empty())
        {
            c.push(
                format!("{key}.roles"),
                None,
                "has an empty entry",
                "list role names or patterns with * (e.g. \"app-*\"); remove the key for all roles",
            );
        }
        if let (Some(host), Some(audience)) = (host, audience) {
            apps.push(AppConfig {
                host,
                audience,
                roles: a.roles,
            });
        }
    }
    (
        AssertionConfig {
            keys,
            lifetime,
            max_header_bytes,
            cache_entries,
        },
        apps,
    )
}
