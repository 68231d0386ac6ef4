//! `[database]`: where accounts, mappings and the audit trail live.

use super::raw::Collector;
use super::{DatabaseConfig, Secret, SecretSource};
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    url: Option<SecretSource>,
    pool_size: Option<u32>,
}

/// Validates `[database]`; `None` when its URL cannot be read.
pub(super) fn validate(c: &mut Collector, raw: RawDatabase) -> Option<DatabaseConfig> {
    let db_url = match &raw.url {
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
    let pool_size = raw.pool_size.unwrap_or(8);
    if pool_size == 0 {
        c.push(
            "database.pool_size",
            Some("0"),
            "must be at least 1",
            "remove the key for the default of 8",
        );
    }
    Some(DatabaseConfig {
        url: db_url?,
        pool_size,
    })
}
