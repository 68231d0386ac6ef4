//! `[accounts]`: rules for every connection's accounts (today: how a freed username is held
//! back), and the username policy each connection applies at login (`update_username`).

use super::raw::Collector;
use super::{Secret, SecretSource};
use serde::Deserialize;
use std::time::Duration;

/// The default quarantine of a freed username.
pub const DEFAULT_USERNAME_QUARANTINE: Duration = Duration::from_secs(90 * 86400);
const MAX_USERNAME_QUARANTINE: Duration = Duration::from_secs(10 * 366 * 86400);
/// A shorter configured key would make the name hashes easy to reverse by dictionary.
const MIN_HASH_KEY_LEN: usize = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccounts {
    username_quarantine: Option<String>,
    username_hash_key: Option<SecretSource>,
}

#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub username_quarantine: UsernameQuarantine,
}

/// How long a username freed by a rename or a purge is kept from anyone but the account that
/// held it, and the key its stored hash is made with.
#[derive(Debug, Clone)]
pub struct UsernameQuarantine {
    /// Zero: no quarantine (nothing is held, and earlier holds are not checked).
    pub period: Duration,
    /// The HMAC key of the stored name hashes, shared by replicas. `None`: a key generated
    /// once and kept in the database (see `usernames`).
    pub hash_key: Option<Secret>,
}

/// The embedded default: 90 days, the generated key.
impl Default for UsernameQuarantine {
    fn default() -> Self {
        Self {
            period: DEFAULT_USERNAME_QUARANTINE,
            hash_key: None,
        }
    }
}

impl UsernameQuarantine {
    pub fn is_on(&self) -> bool {
        !self.period.is_zero()
    }
}

/// What a login does with a connection's usernames (the default: no renames, the default
/// quarantine).
#[derive(Debug, Clone, Default)]
pub struct UsernamePolicy {
    /// Follow the mapped username at every login (a rename). Off (the default): an account
    /// keeps the username it was created with.
    pub update: bool,
    pub quarantine: UsernameQuarantine,
}

pub(super) fn validate(c: &mut Collector, raw: RawAccounts) -> AccountsConfig {
    let period = match raw.username_quarantine.as_deref() {
        None => DEFAULT_USERNAME_QUARANTINE,
        Some(s) if matches!(s.trim(), "0" | "0s" | "0d") => Duration::ZERO,
        Some(s) => c.duration(
            "accounts.username_quarantine",
            Some(s),
            DEFAULT_USERNAME_QUARANTINE,
        ),
    };
    if period > MAX_USERNAME_QUARANTINE {
        c.push(
            "accounts.username_quarantine",
            raw.username_quarantine.as_deref(),
            "is longer than ten years",
            "write e.g. \"90d\" (the default) or \"1y\"; \"0\" turns the quarantine off",
        );
    }
    let hash_key = raw
        .username_hash_key
        .as_ref()
        .and_then(|s| c.secret("accounts.username_hash_key", s));
    if let Some(k) = &hash_key
        && k.expose().len() < MIN_HASH_KEY_LEN
    {
        c.push(
            "accounts.username_hash_key",
            None,
            format!("is shorter than {MIN_HASH_KEY_LEN} characters, so the stored name hashes could be reversed by trying names"),
            "generate one with `openssl rand -hex 32` and give every replica the same",
        );
    }
    AccountsConfig {
        username_quarantine: UsernameQuarantine { period, hash_key },
    }
}
