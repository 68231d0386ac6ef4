//! An OpenID Connect connection (`kind = "oidc"`): its keys, written beside `kind` in the
//! `[[connection]]` table, and their validation.

use super::raw::{Collector, is_loopback};
use super::{OidcConfig, SecretSource};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// The keys only an OIDC connection takes (the shared ones are in `connection`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretSource>,
    scopes: Option<Vec<String>>,
    allowed_algs: Option<Vec<String>>,
    userinfo: Option<bool>,
    jwks_refresh_min_interval: Option<String>,
    jwks_refresh_interval: Option<String>,
    jwks_max_stale: Option<String>,
    logout_token_max_age: Option<String>,
}

const DEFAULT_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

pub(super) fn validate(
    c: &mut Collector,
    key: &str,
    rc: &RawOidc,
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
        // Only what the JWT stack implements: "none" and ES512 are not among them.
        let parsed: Option<jsonwebtoken::Algorithm> = a.parse().ok();
        match parsed {
            None => c.push(format!("{key}.allowed_algs"), Some(a), "is not an acceptable ID token signing algorithm", "use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA (never \"none\"), or HS256/HS384/HS512 with a client_secret"),
            Some(alg) if is_hmac(alg) && client_secret.is_none() => c.push(format!("{key}.allowed_algs"), Some(a), "is an HMAC algorithm, which needs a client_secret", "remove it, or configure the client secret (HMAC keys are never derived from public keys)"),
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
    // Anyone can post a logout token naming an unknown kid, and each may cost a fetch of the
    // provider's JWKS: this interval is the only bound on the fetches a stranger causes.
    if jwks_refresh_min_interval < Duration::from_secs(1) {
        c.push(
            format!("{key}.jwks_refresh_min_interval"),
            rc.jwks_refresh_min_interval.as_deref(),
            "is shorter than a second, so every token naming an unknown key could make the bridge fetch the provider's keys",
            "remove the key for the 30s default, or set at least \"1s\"",
        );
    }
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
    let logout_token_max_age = c.duration(
        &format!("{key}.logout_token_max_age"),
        rc.logout_token_max_age.as_deref(),
        Duration::from_secs(300),
    );
    if logout_token_max_age > Duration::from_secs(3600) {
        c.push(
            format!("{key}.logout_token_max_age"),
            rc.logout_token_max_age.as_deref(),
            "is more than an hour",
            "a provider sends a logout token at once; remove the key for the 5m default, or set at most \"1h\"",
        );
    }
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
        logout_token_max_age,
    })
}

/// HMAC algorithms, keyed by the client secret rather than by a published key.
pub fn is_hmac(alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::Algorithm as A;
    matches!(alg, A::HS256 | A::HS384 | A::HS512)
}
