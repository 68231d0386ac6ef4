//! `[[connection]]`: the keys every connection has (name, display name, clock skew, username
//! updates, mapping, directory), and its `kind`, which picks the protocol and the only other keys
//! it may hold: an OIDC connection's settings beside `kind` (see `oidc`), a SAML connection's in
//! `[connection.saml]` (see `saml`).

use super::raw::Collector;
use super::table::{self, Kind, from_table, keys_of};
use super::*;
use crate::mapping::MappingConfig;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The keys of every connection, whatever its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    name: String,
    display_name: Option<String>,
    update_username: Option<bool>,
    /// Shared by both protocols (ID token times, assertion conditions).
    clock_skew: Option<String>,
    #[serde(default)]
    mapping: MappingConfig,
    /// Read by `directory::validate`, which knows its key and reads its own `kind`.
    directory: Option<toml::Table>,
}

/// The keys of one kind of connection, chosen by `kind`.
enum RawProtocol {
    Oidc(super::oidc::RawOidc),
    Saml(super::saml::RawSamlConnection),
}

const KINDS: &[Kind<RawProtocol>] = &[
    Kind {
        name: "oidc",
        noun: "an OIDC",
        note: None,
        keys: keys_of::<super::oidc::RawOidc>,
        read: |c, key, t| from_table(c, key, t).map(RawProtocol::Oidc),
    },
    Kind {
        name: "saml",
        noun: "a SAML",
        note: Some("a SAML connection's settings go in its [connection.saml] table"),
        keys: keys_of::<super::saml::RawSamlConnection>,
        read: |c, key, t| from_table(c, key, t).map(RawProtocol::Saml),
    },
];

/// Validates every `[[connection]]` (by the key `connection[NAME]`, or `connection[INDEX]`
/// when it has no name): each name once, each connection's own keys.
pub(super) fn validate(
    c: &mut Collector,
    tables: Vec<toml::Table>,
    public_url: &Url,
    quarantine: &UsernameQuarantine,
) -> Vec<ConnectionConfig> {
    let mut names = BTreeSet::new();
    let mut connections = Vec::new();
    for (i, table) in tables.into_iter().enumerate() {
        let key = match table.get("name").and_then(toml::Value::as_str) {
            Some(name) if !name.is_empty() => format!("connection[{name}]"),
            _ => format!("connection[{i}]"),
        };
        let common = keys_of::<RawConnection>();
        let (shared, protocol) = table::read_tagged(c, &key, "connection", table, common, KINDS);
        let Some(rc) = from_table::<RawConnection>(c, &key, shared) else {
            continue;
        };
        let name_ok = !rc.name.is_empty()
            && rc.name.len() <= 64
            && rc
                .name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
        if !name_ok {
            c.push(
                format!("{key}.name"),
                Some(&rc.name),
                "must be 1-64 characters of a-z, 0-9, - and _",
                "rename the connection (it appears in URLs and identifies its accounts)",
            );
        } else if !names.insert(rc.name.clone()) {
            c.push(
                format!("{key}.name"),
                Some(&rc.name),
                "is used by two connections",
                "give each connection its own name",
            );
        }
        let usernames = UsernamePolicy {
            update: rc.update_username.unwrap_or(false),
            quarantine: quarantine.clone(),
        };
        if let Some(conn) = validate_one(c, &key, rc, protocol, public_url, usernames) {
            connections.push(conn);
        }
    }
    connections
}

/// One connection; `protocol` is `None` when its kind was missing or unknown (already a
/// problem), and the shared keys are still checked.
fn validate_one(
    c: &mut Collector,
    key: &str,
    rc: RawConnection,
    protocol: Option<RawProtocol>,
    public_url: &Url,
    usernames: UsernamePolicy,
) -> Option<ConnectionConfig> {
    let clock_skew = c.duration(
        &format!("{key}.clock_skew"),
        rc.clock_skew.as_deref(),
        Duration::from_secs(60),
    );
    if clock_skew > Duration::from_secs(300) {
        c.push(
            format!("{key}.clock_skew"),
            rc.clock_skew.as_deref(),
            "is more than 5 minutes",
            "fix the clocks (NTP) instead; a few seconds to a minute is enough",
        );
    }
    let mut mapping_cfg = rc.mapping;
    let protocol = match protocol {
        Some(RawProtocol::Oidc(o)) => {
            super::oidc::validate(c, key, &o, clock_skew).map(Protocol::Oidc)
        }
        Some(RawProtocol::Saml(s)) => {
            // A person's NameID is the natural username when nothing else is mapped.
            if mapping_cfg.username.is_none() {
                mapping_cfg.username = Some("{name_id}".into());
            }
            // SAML has no email_verified flag: the IdP asserts the address.
            if mapping_cfg.trust_email.is_none() {
                mapping_cfg.trust_email = Some(true);
            }
            super::saml::validate(
                c,
                &format!("{key}.saml"),
                &rc.name,
                s.saml,
                clock_skew,
                public_url,
            )
            .map(|s| Protocol::Saml(Box::new(s)))
        }
        None => None,
    };
    let mapping = match Mapping::compile(&mapping_cfg) {
        Ok(m) => Some(m),
        Err(errs) => {
            for (k, e) in errs {
                c.push(
                    format!("{key}.mapping.{k}"),
                    None,
                    e,
                    "see the mapping reference in README.md",
                );
            }
            None
        }
    };
    let directory = match rc.directory {
        Some(d) => super::directory::validate(c, &format!("{key}.directory"), d),
        None => None,
    };
    Some(ConnectionConfig {
        directory,
        display_name: rc.display_name.unwrap_or_else(|| rc.name.clone()),
        name: rc.name,
        protocol: protocol?,
        mapping: std::sync::Arc::new(mapping?),
        usernames,
    })
}
