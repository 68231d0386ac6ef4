//! jitbridge: an SSO bridge. OIDC and SAML relying party that provisions local accounts just in
//! time at login, keeps sessions that applications trust through forward-auth, and deprovisions
//! accounts that are gone from the IdP's directory.

pub mod accounts;
pub mod assertion;
pub mod audit;
pub mod cli;
mod commands;
pub mod config;
pub mod db;
pub mod demo;
pub mod directory;
pub mod idp;
pub mod jose;
pub mod lifecycle;
pub mod login;
pub mod mapping;
pub mod provisioning;
pub mod session;
pub mod sweeper;
pub mod telemetry;
pub mod usernames;
pub mod web;
pub mod wildcard;

pub use commands::run;

/// The HTTP client for calls to identity providers: no redirects followed (a provider endpoint
/// that redirects is misconfigured, and following could be steered elsewhere), bounded timeouts.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .user_agent(concat!("jitbridge/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A peer's answer body was larger than we read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the answer was cut")]
    Cut(#[source] reqwest::Error),
}

impl BodyError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Cut(e) if e.is_timeout())
    }
}

/// The error and its causes, outermost first: `a: b: c` (for the one log line at a boundary).
pub fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Reads a response body of at most `limit` bytes, refusing a larger one as soon as it is
/// announced or received (a broken or hostile peer must not make us buffer without bound).
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Cut)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
