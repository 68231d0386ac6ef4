//! `[sessions]`: the session store (in-process or Redis) and how long sessions and started
//! logins last.

use super::raw::Collector;
use super::{SecretSource, SessionStoreKind, SessionsConfig};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    store: Option<String>,
    redis_url: Option<SecretSource>,
    key_prefix: Option<String>,
    idle_timeout: Option<String>,
    absolute_timeout: Option<String>,
    login_timeout: Option<String>,
    revocation_window: Option<String>,
    near_cache_entries: Option<usize>,
}

pub(super) fn validate(c: &mut Collector, raw: RawSessions) -> SessionsConfig {
    let store = match raw.store.as_deref().unwrap_or("memory") {
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
    let redis_url = raw
        .redis_url
        .as_ref()
        .and_then(|s| c.secret("sessions.redis_url", s));
    if store == SessionStoreKind::Redis && redis_url.is_none() && raw.redis_url.is_none() {
        c.push(
            "sessions.redis_url",
            None,
            "is required when sessions.store = \"redis\"",
            "set it to e.g. redis://127.0.0.1:6379",
        );
    }
    let idle_timeout = c.duration(
        "sessions.idle_timeout",
        raw.idle_timeout.as_deref(),
        Duration::from_secs(8 * 3600),
    );
    let absolute_timeout = c.duration(
        "sessions.absolute_timeout",
        raw.absolute_timeout.as_deref(),
        Duration::from_secs(24 * 3600),
    );
    if idle_timeout > absolute_timeout {
        c.push(
            "sessions.idle_timeout",
            raw.idle_timeout.as_deref(),
            "is longer than sessions.absolute_timeout",
            "make it shorter than or equal to the absolute timeout",
        );
    }
    let login_timeout = c.duration(
        "sessions.login_timeout",
        raw.login_timeout.as_deref(),
        Duration::from_secs(600),
    );
    // Longer than any transaction that queues revocations (a sweep applies its plan in one
    // transaction), plus clock differences between hosts.
    let revocation_window = c.duration(
        "sessions.revocation_window",
        raw.revocation_window.as_deref(),
        Duration::from_secs(15 * 60),
    );
    if revocation_window < Duration::from_secs(60) {
        c.push(
            "sessions.revocation_window",
            raw.revocation_window.as_deref(),
            "is shorter than a minute, so a revocation committed by a slow transaction could be skipped",
            "remove the key for the 15m default, or set at least \"1m\"",
        );
    }
    let near_cache_entries = raw.near_cache_entries.unwrap_or(DEFAULT_NEAR_CACHE_ENTRIES);
    if near_cache_entries > MAX_NEAR_CACHE_ENTRIES {
        c.push(
            "sessions.near_cache_entries",
            Some(&near_cache_entries.to_string()),
            "is more than a server can hold (its maps are allocated at start)",
            "set at most 10000000, or 0 to turn the near cache off",
        );
    }
    SessionsConfig {
        store,
        redis_url,
        key_prefix: raw.key_prefix.unwrap_or_else(|| "jitbridge:".into()),
        idle_timeout,
        absolute_timeout,
        login_timeout,
        revocation_window,
        near_cache_entries,
    }
}

/// Enough for the sessions active on one server at once in most organisations; each entry is
/// one session record (about a kilobyte with a few dozen roles).
const DEFAULT_NEAR_CACHE_ENTRIES: usize = 50_000;
const MAX_NEAR_CACHE_ENTRIES: usize = 10_000_000;
