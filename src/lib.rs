//! jitbridge: an SSO bridge. OIDC (and soon SAML) relying party that provisions local accounts
//! just in time at login, keeps sessions that applications trust through forward-auth, and
//! (soon) deprovisions accounts that are gone from the IdP's directory.

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
pub mod lifecycle;
pub mod mapping;
pub mod provisioning;
pub mod session;
pub mod sweeper;
pub mod telemetry;
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
