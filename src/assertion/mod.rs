//! The signed identity assertion: a short-lived JWT that `/auth/verify` hands to the proxy in
//! `X-Jitbridge-Assertion`, so that an app can verify who the user is (against the keys at
//! `/.well-known/jwks.json`) instead of trusting whoever can reach it to send honest headers.
//!
//! Which app a request is for comes from its host (`[[app]]`): the token's `aud` is that app's
//! audience and its `roles` are the session's roles filtered for it. A host that matches no app
//! gets no assertion. The first configured key signs; every configured key is published, which
//! is how keys rotate without downtime. Tokens are cached per session and audience (see
//! [`cache`]) and never larger than `assertion.max_header_bytes`: a token that would be is
//! omitted with a warning, never cut.
//!
//! Pure apart from the clock and the random `jti`: no actix, no store; the web layer passes the
//! host, the session's store key and the same account values the identity headers carry.

pub mod cache;
pub mod keys;

use crate::config::{AppConfig, AssertionConfig};
use crate::provisioning::AccountSnapshot;
use cache::{Cache, Cached, digest};
use keys::SigningKey;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The response header that carries the assertion.
pub const HEADER: &str = "x-jitbridge-assertion";

/// The claims of an assertion. `email` only when the account has one (the session holds
/// verified addresses only).
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    pub preferred_username: &'a str,
    pub roles: Vec<&'a str>,
    pub sid: &'a str,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

/// Issues assertions for one configuration; shared by all workers.
pub struct Assertions {
    issuer: String,
    keys: Vec<SigningKey>,
    apps: Vec<AppConfig>,
    lifetime: Duration,
    max_bytes: usize,
    cache: Cache,
    jwks: Arc<str>,
}

impl Assertions {
    /// `issuer` is `server.public_url`; it is written without a trailing slash.
    pub fn new(issuer: &url::Url, config: &AssertionConfig, apps: &[AppConfig]) -> Self {
        let set = jsonwebtoken::jwk::JwkSet {
            keys: config.keys.iter().map(|k| k.public_jwk().clone()).collect(),
        };
        let jwks = serde_json::to_string(&set).expect("a JWK set serializes");
        if config.keys.is_empty() && !apps.is_empty() {
            tracing::warn!(
                "[[app]] entries are configured but [assertion] has no keys: no identity assertion is signed"
            );
        }
        Self {
            issuer: issuer.as_str().trim_end_matches('/').to_string(),
            keys: config.keys.clone(),
            apps: apps.to_vec(),
            lifetime: config.lifetime,
            max_bytes: config.max_header_bytes,
            cache: Cache::new(config.cache_entries),
            jwks: Arc::from(jwks),
        }
    }

    /// The JWK set (public keys only), as served at `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> Arc<str> {
        self.jwks.clone()
    }

    /// The app configured for `host` (exact, ASCII case-insensitive), if any.
    pub fn app_for_host(&self, host: &str) -> Option<&AppConfig> {
        let host = host.trim();
        self.apps.iter().find(|a| a.host.eq_ignore_ascii_case(host))
    }

    /// The assertion for a request to `host` in the session stored under `session_key`, or
    /// `None`: no key, no app for the host, or a token larger than the bound.
    pub fn for_request(
        &self,
        host: Option<&str>,
        session_key: &str,
        account: &AccountSnapshot,
    ) -> Option<Arc<str>> {
        self.for_request_at(host, session_key, account, crate::session::unix_now())
    }

    /// [`Assertions::for_request`] at a given time (unix seconds), for tests.
    pub fn for_request_at(
        &self,
        host: Option<&str>,
        session_key: &str,
        account: &AccountSnapshot,
        now: i64,
    ) -> Option<Arc<str>> {
        let Some(app) = host.and_then(|h| self.app_for_host(h)) else {
            tracing::debug!(host = ?host, "no [[app]] is configured for this host: no identity assertion");
            return None;
        };
        self.for_app_at(app, session_key, account, now)
    }

    /// The assertion for `app` (already found for the request's host).
    pub fn for_app(
        &self,
        app: &AppConfig,
        session_key: &str,
        account: &AccountSnapshot,
    ) -> Option<Arc<str>> {
        self.for_app_at(app, session_key, account, crate::session::unix_now())
    }

    fn for_app_at(
        &self,
        app: &AppConfig,
        session_key: &str,
        account: &AccountSnapshot,
        now: i64,
    ) -> Option<Arc<str>> {
        let key = self.keys.first()?;
        let mut roles = filter_roles(&account.roles, app.roles.as_deref());
        let ends = !account.role_ends.is_empty();
        if ends {
            // A grant that ended since the session was read (a moment ago) is not sent.
            roles.retain(|r| account.role_end(r).is_none_or(|end| end > now));
        }
        let cap = if ends {
            ends_of(app, account, &roles)
        } else {
            None
        };
        let fingerprint = fingerprint(key, app, account, &roles, cap);
        let cache_key = Cache::key(session_key, &app.audience);
        if let Some(hit) = self.cache.get(&cache_key, &fingerprint, now) {
            return match hit {
                Cached::Token(t) => Some(t),
                Cached::Oversized => None,
            };
        }
        let sid = session_reference(session_key);
        let exp = (now + self.lifetime.as_secs() as i64).min(cap.unwrap_or(i64::MAX));
        let claims = Claims {
            iss: &self.issuer,
            aud: &app.audience,
            sub: &account.id,
            email: account.email.as_deref(),
            preferred_username: &account.username,
            roles,
            sid: &sid,
            iat: now,
            nbf: now,
            exp,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let value = match key.sign(&claims) {
            Ok(t) if t.len() <= self.max_bytes => Cached::Token(Arc::from(t)),
            Ok(t) => {
                tracing::warn!(
                    audience = %app.audience,
                    account = %account.id,
                    roles = claims.roles.len(),
                    bytes = t.len(),
                    max_header_bytes = self.max_bytes,
                    "identity assertion omitted: larger than assertion.max_header_bytes (narrow the app's roles filter); the identity headers are sent"
                );
                Cached::Oversized
            }
            Err(e) => {
                // Keys passed a self-test at start; this is not expected. Not cached.
                tracing::error!(kid = key.kid(), error = %e, "cannot sign an identity assertion");
                return None;
            }
        };
        // Re-signed once less than half of the lifetime remains, so an app never receives a
        // token that is about to expire.
        let refresh_at = now + ((exp - now) / 2).max(1);
        self.cache
            .put(cache_key, fingerprint, value.clone(), refresh_at);
        match value {
            Cached::Token(t) => Some(t),
            Cached::Oversized => None,
        }
    }
}

/// When the token must expire at the latest because of temporary grants (`None`: they do not
/// limit it): at the end of a role it carries (the app would go on trusting the role after the
/// grant ended), and when the app admits only some roles (`allowed_roles`), at the last end of
/// the roles that admit the session (the session would go on reaching the app).
fn ends_of(app: &AppConfig, account: &AccountSnapshot, carried: &[&str]) -> Option<i64> {
    let carried_end = carried.iter().filter_map(|r| account.role_end(r)).min();
    let admission_end = app.allowed_roles.as_deref().and_then(|allowed| {
        // (None admitting: the check that admitted the request decides, not this.)
        let mut last: Option<Option<i64>> = None;
        for r in filter_roles(&account.roles, Some(allowed)) {
            last = Some(match (last, account.role_end(r)) {
                (Some(None), _) | (_, None) => None, // a role that does not end admits for good
                (Some(Some(l)), Some(end)) => Some(l.max(end)),
                (None, Some(end)) => Some(end),
            });
        }
        last.flatten()
    });
    match (carried_end, admission_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The session's roles an app gets: all without a filter, else those matching one of its
/// patterns (see [`crate::wildcard`]), in the session's order.
/// Whether a session with `roles` may use `app` (its `allowed_roles`; none: every session).
pub fn admits(app: &crate::config::AppConfig, roles: &[String]) -> bool {
    app.allowed_roles
        .as_deref()
        .is_none_or(|allowed| !filter_roles(roles, Some(allowed)).is_empty())
}

pub fn filter_roles<'a>(roles: &'a [String], filter: Option<&[String]>) -> Vec<&'a str> {
    roles
        .iter()
        .filter(|r| {
            filter.is_none_or(|f| {
                f.iter()
                    .any(|p| crate::wildcard::matches(p.as_bytes(), r.as_bytes()))
            })
        })
        .map(String::as_str)
        .collect()
}

/// Everything that goes into a token besides the times and the `jti`: when any of it changes
/// (roles granted or revoked in a live session, a renamed user), the cached token is not used.
fn fingerprint(
    key: &SigningKey,
    app: &AppConfig,
    a: &AccountSnapshot,
    roles: &[&str],
    cap: Option<i64>,
) -> [u8; 32] {
    let email_marker: &[u8] = if a.email.is_some() { b"1" } else { b"0" };
    // The cap is the token's `exp` when it is sooner: a grant shortened or extended is a new
    // token.
    let cap = cap.unwrap_or(i64::MAX).to_be_bytes();
    let head = [
        key.kid().as_bytes(),
        app.audience.as_bytes(),
        a.id.as_bytes(),
        a.username.as_bytes(),
        email_marker,
        a.email.as_deref().unwrap_or_default().as_bytes(),
        cap.as_slice(),
    ];
    digest(head.into_iter().chain(roles.iter().map(|r| r.as_bytes())))
}

/// `sid`: a non-secret reference to the session, the same for all its tokens. A hash of the
/// store key (itself a hash of the cookie value), so it leads neither to the cookie nor to the
/// store's key name.
pub fn session_reference(session_key: &str) -> String {
    let d = digest([
        b"jitbridge assertion sid".as_slice(),
        session_key.as_bytes(),
    ]);
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
