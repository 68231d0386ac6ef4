//! `[server]`: the listeners, the public URL and the session cookie it implies, the bounds on
//! concurrent work, redirects, proxies and rate limits.

use super::raw::{Collector, is_loopback};
use super::{CookieConfig, ServerConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use url::Url;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
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
    /// Read with `[sessions]` known (see [`RawServer::take_state_key`]).
    state_key: Option<super::limits::RawStateKeys>,
}

impl RawServer {
    /// `state_key`, whose rules depend on the session store: the caller reads it once
    /// `[sessions]` is known, into [`ServerConfig::state_keys`].
    pub(super) fn take_state_key(&mut self) -> Option<super::limits::RawStateKeys> {
        self.state_key.take()
    }
}

/// Validates `[server]`; `state_keys` are left empty for the caller (see `take_state_key`).
pub(super) fn validate(c: &mut Collector, raw: RawServer) -> ServerConfig {
    let listen_src = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen: SocketAddr = listen_src.parse().unwrap_or_else(|_| {
        c.push(
            "server.listen",
            Some(listen_src),
            "is not an address:port",
            "write e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let operator_src = raw.operator_listen.as_deref().unwrap_or("127.0.0.1:9090");
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
    let public_src = raw.public_url.as_deref().unwrap_or(&default_public);
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
    let domain = raw.cookie_domain.filter(|d| !d.is_empty());
    let cookie_name = match (secure, &domain) {
        (true, None) => "__Host-jitbridge",
        (true, Some(_)) => "__Secure-jitbridge",
        (false, _) => "jitbridge",
    };
    let workers = raw
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    // Each SAML verification (and decryption) costs a millisecond or more of CPU on the
    // blocking pool: a bound keeps a flood of junk POSTs from queueing without end.
    let max_saml_verifications = raw
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
    let allowed_redirect_hosts = raw
        .allowed_redirect_hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let trusted_proxies = super::limits::trusted_proxies(c, &raw.trusted_proxies);
    let rate_limits = super::limits::rate_limits(c, raw.rate_limits);
    ServerConfig {
        listen,
        operator_listen,
        public_url,
        workers,
        max_saml_verifications,
        allowed_redirect_hosts,
        trusted_proxies,
        rate_limits,
        state_keys: Vec::new(),
        state_key_ephemeral: false,
        cookie: CookieConfig {
            name: cookie_name.into(),
            domain,
            secure,
        },
    }
}
