//! `[server]` keys that bound what strangers can make the bridge do or keep: rate limits per
//! client address (`[server.rate_limits]`), the proxies whose `X-Forwarded-For` is believed
//! (`server.trusted_proxies`), and the keys that seal login state into the browser's cookie
//! (`server.state_key`).

use super::raw::Collector;
use super::{SecretSource, SessionStoreKind};
use crate::session::sealed::{MAX_KEYS, StateKey};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// Requests per client address for one class of endpoints: a bucket of `burst` requests that
/// refills at `per_second` (GCRA).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: u32,
    pub per_second: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitsConfig {
    pub enabled: bool,
    /// `GET /login`.
    pub login: Rate,
    /// `GET /callback/{connection}` (OIDC).
    pub callback: Rate,
    /// `POST /saml/{connection}/acs`.
    pub acs: Rate,
    /// `GET /saml/{connection}/slo`.
    pub slo: Rate,
    /// Client addresses tracked at once per class; past it, new addresses share one bucket.
    pub max_addresses: usize,
}

/// The defaults. An office behind one NAT address is the heaviest honest client: 5 logins a
/// second sustained is 18,000 an hour (ten thousand people arriving within one hour stay
/// well below it), and a burst of 60 absorbs the morning rush and a tab restore that sends
/// a dozen protected apps to `/login` at once. A single address that floods gets 5 a second,
/// which costs the bridge nothing it notices. A flood from many addresses is not stopped by
/// this (see README): what bounds it is that a login start keeps nothing server-side.
pub const DEFAULT_LOGIN: Rate = Rate {
    burst: 60,
    per_second: 5.0,
};
/// IdP answers come once per login, so the login figure bounds them too; a junk ACS POST
/// costs an XML parse and a signature check (also bounded by
/// `max_concurrent_saml_verifications`).
pub const DEFAULT_CALLBACK: Rate = DEFAULT_LOGIN;
pub const DEFAULT_ACS: Rate = DEFAULT_LOGIN;
/// Logouts are rarer than logins.
pub const DEFAULT_SLO: Rate = Rate {
    burst: 30,
    per_second: 2.0,
};
/// About 4 MB per class at most (a key and a 64-bit time per address, plus the map's slack).
pub const DEFAULT_MAX_ADDRESSES: usize = 65_536;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimits {
    enabled: Option<bool>,
    login: Option<RawRate>,
    callback: Option<RawRate>,
    acs: Option<RawRate>,
    slo: Option<RawRate>,
    max_addresses: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    burst: u32,
    per_second: f64,
}

/// `state_key = "..."` or `state_key = ["new", "old"]`, each a literal, `{ env }` or `{ file }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawStateKeys {
    One(SecretSource),
    Many(Vec<SecretSource>),
}

pub(super) fn rate_limits(c: &mut Collector, raw: Option<RawRateLimits>) -> RateLimitsConfig {
    let raw = raw.unwrap_or_default();
    let mut rate = |name: &str, r: Option<RawRate>, default: Rate| -> Rate {
        let Some(r) = r else { return default };
        let key = format!("server.rate_limits.{name}");
        let ok = r.burst >= 1
            && r.per_second.is_finite()
            && r.per_second >= 0.001
            && r.per_second <= 1_000_000.0;
        if !ok {
            c.push(
                key,
                Some(&format!("{{ burst = {}, per_second = {} }}", r.burst, r.per_second)),
                "needs a burst of at least 1 and a per_second between 0.001 and 1000000",
                format!(
                    "write e.g. {{ burst = {}, per_second = {} }}, or remove the key for that default",
                    default.burst, default.per_second
                ),
            );
            return default;
        }
        Rate {
            burst: r.burst,
            per_second: r.per_second,
        }
    };
    let login = rate("login", raw.login, DEFAULT_LOGIN);
    let callback = rate("callback", raw.callback, DEFAULT_CALLBACK);
    let acs = rate("acs", raw.acs, DEFAULT_ACS);
    let slo = rate("slo", raw.slo, DEFAULT_SLO);
    let max_addresses = raw.max_addresses.unwrap_or(DEFAULT_MAX_ADDRESSES);
    if !(16..=10_000_000).contains(&max_addresses) {
        c.push(
            "server.rate_limits.max_addresses",
            Some(&max_addresses.to_string()),
            "must be between 16 and 10000000",
            format!("remove the key for the default of {DEFAULT_MAX_ADDRESSES}"),
        );
    }
    RateLimitsConfig {
        enabled: raw.enabled.unwrap_or(true),
        login,
        callback,
        acs,
        slo,
        max_addresses: max_addresses.clamp(16, 10_000_000),
    }
}

pub(super) fn trusted_proxies(c: &mut Collector, raw: &[String]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let t = entry.trim();
        let parsed = t
            .parse::<IpNet>()
            .or_else(|_| t.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => out.push(net.trunc()),
            Err(_) => c.push(
                format!("server.trusted_proxies[{i}]"),
                Some(entry),
                "is not an IP address or CIDR range",
                "write the address of the reverse proxy in front of jitbridge, e.g. \"10.0.0.5\" or \"10.0.0.0/24\"",
            ),
        }
    }
    out
}

/// The keys that seal login state, the first one sealing. With none configured, one process
/// with in-process sessions gets a random key of its own (logins do not survive a restart,
/// as they did not before); with Redis sessions (replicas) a key is required, since a login
/// started on one replica must be opened by another.
pub(super) fn state_keys(
    c: &mut Collector,
    raw: Option<&RawStateKeys>,
    store: SessionStoreKind,
) -> (Vec<StateKey>, bool) {
    const FIX: &str = "generate one with `openssl rand -hex 32`, give every replica the same \
        value, e.g. state_key = { env = \"STATE_KEY_SECRET\" } or { file = \"/etc/jitbridge/state.key\" }";
    let sources: Vec<(String, &SecretSource)> = match raw {
        None => Vec::new(),
        Some(RawStateKeys::One(s)) => vec![("server.state_key".to_string(), s)],
        Some(RawStateKeys::Many(v)) => v
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("server.state_key[{i}]"), s))
            .collect(),
    };
    if matches!(raw, Some(RawStateKeys::Many(v)) if v.is_empty()) {
        c.push(
            "server.state_key",
            Some("[]"),
            "is an empty list",
            format!("write at least one key (the first seals, all open); {FIX}"),
        );
    }
    if sources.len() > MAX_KEYS {
        c.push(
            "server.state_key",
            None,
            format!("lists {} keys, more than {MAX_KEYS}", sources.len()),
            "keep the key that seals and the ones retired within the last login timeout",
        );
    }
    let mut keys = Vec::new();
    for (key, src) in sources {
        let Some(secret) = c.secret(&key, src) else {
            continue;
        };
        match StateKey::parse(secret.expose()) {
            Ok(k) => keys.push(k),
            Err(why) => c.push(key, None, format!("{why}; it must be 32 random bytes"), FIX),
        }
    }
    if raw.is_some() {
        return (keys, false);
    }
    match store {
        SessionStoreKind::Redis => {
            c.push(
                "server.state_key",
                None,
                "is required when sessions.store = \"redis\": replicas seal and open each other's login state with it",
                FIX,
            );
            (keys, false)
        }
        SessionStoreKind::Memory => (vec![StateKey::generate()], true),
    }
}
