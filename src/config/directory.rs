//! `[connection.directory]`: where the sweeper checks that a connection's people still exist.
//! Its `kind` picks the source, LDAP or SCIM, and the only source keys it may hold; the keys of
//! the sweep itself (paging, schedule, grace, the safety gates, purging) are shared by both.

use super::raw::{Collector, is_loopback};
use super::table::{self, Kind, from_table, keys_of};
use super::{
    DirectoryConfig, DirectorySourceConfig, LdapConfig, PurgeMode, ScimConfig, ScimSubject,
    SecretSource, SweepPolicy, Tolerance,
};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// The keys of every directory: how a sweep lists, when it runs, and what it may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    page_size: Option<u32>,
    interval: Option<String>,
    jitter: Option<String>,
    timeout: Option<String>,
    grace_sweeps: Option<u32>,
    grace_period: Option<String>,
    max_disable_fraction: Option<f64>,
    max_disable_count: Option<u64>,
    max_entries_without_subject: Option<u64>,
    max_entries_without_subject_fraction: Option<f64>,
    max_purge_fraction: Option<f64>,
    max_purge_count: Option<u64>,
    reactivate: Option<bool>,
    retention: Option<String>,
    purge: Option<String>,
}

/// `kind = "ldap"`: the keys only an LDAP directory takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdap {
    url: Option<String>,
    starttls: Option<bool>,
    bind_dn: Option<String>,
    bind_password: Option<SecretSource>,
    base_dn: Option<String>,
    filter: Option<String>,
    subject_attribute: Option<String>,
    ad_user_account_control: Option<bool>,
    disabled_attribute: Option<String>,
    disabled_value: Option<String>,
    ignore_references: Option<Vec<String>>,
}

/// `kind = "scim"`: the keys only a SCIM directory takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScim {
    base_url: Option<String>,
    token: Option<SecretSource>,
    subject_attribute: Option<String>,
}

enum RawSource {
    Ldap(RawLdap),
    Scim(RawScim),
}

const KINDS: &[Kind<RawSource>] = &[
    Kind {
        name: "ldap",
        noun: "an LDAP",
        note: None,
        keys: keys_of::<RawLdap>,
        read: |c, key, t| from_table(c, key, t).map(RawSource::Ldap),
    },
    Kind {
        name: "scim",
        noun: "a SCIM",
        note: None,
        keys: keys_of::<RawScim>,
        read: |c, key, t| from_table(c, key, t).map(RawSource::Scim),
    },
];

/// Validates the `[connection.directory]` table at `key`.
pub(super) fn validate(
    c: &mut Collector,
    key: &str,
    table: toml::Table,
) -> Option<DirectoryConfig> {
    let (shared, source) =
        table::read_tagged(c, key, "directory", table, keys_of::<RawSweep>(), KINDS);
    let source = match source {
        Some(RawSource::Ldap(l)) => ldap(c, key, l).map(DirectorySourceConfig::Ldap),
        Some(RawSource::Scim(s)) => scim(c, key, s).map(DirectorySourceConfig::Scim),
        None => None,
    };
    let d: RawSweep = from_table(c, key, shared)?;
    let disable_fraction = fraction(
        c,
        &format!("{key}.max_disable_fraction"),
        d.max_disable_fraction,
        0.10,
    );
    let purge = match d.purge.as_deref().unwrap_or("anonymize") {
        "anonymize" => PurgeMode::Anonymize,
        "delete" => PurgeMode::Delete,
        other => {
            c.push(
                format!("{key}.purge"),
                Some(other),
                "is not a purge mode",
                "write \"anonymize\" or \"delete\"",
            );
            PurgeMode::Anonymize
        }
    };
    let grace_sweeps = d.grace_sweeps.unwrap_or(2);
    if grace_sweeps == 0 {
        c.push(
            format!("{key}.grace_sweeps"),
            Some("0"),
            "must be at least 1",
            "write 1 to disable at the first sweep that misses an account",
        );
    }
    let page_size = d.page_size.unwrap_or(500);
    if page_size == 0 || page_size > 10_000 {
        c.push(
            format!("{key}.page_size"),
            Some(&page_size.to_string()),
            "must be between 1 and 10000",
            "remove the key for the default of 500",
        );
    }
    let policy = SweepPolicy {
        grace_sweeps,
        grace_period: match d.grace_period.as_deref() {
            Some("0") | Some("0s") => Duration::ZERO,
            other => c.duration(&format!("{key}.grace_period"), other, Duration::ZERO),
        },
        max_disable_fraction: disable_fraction,
        max_disable_count: d.max_disable_count,
        without_subject: without_subject(
            c,
            key,
            d.max_entries_without_subject,
            d.max_entries_without_subject_fraction,
        ),
        max_purge_fraction: fraction(
            c,
            &format!("{key}.max_purge_fraction"),
            d.max_purge_fraction,
            DEFAULT_MAX_PURGE_FRACTION,
        ),
        max_purge_count: d.max_purge_count.unwrap_or(DEFAULT_MAX_PURGE_COUNT),
        reactivate: d.reactivate.unwrap_or(false),
        retention: d.retention.as_deref().map(|r| {
            c.duration(
                &format!("{key}.retention"),
                Some(r),
                Duration::from_secs(90 * 86400),
            )
        }),
        purge,
    };
    Some(DirectoryConfig {
        source: source?,
        policy,
        interval: c.duration(
            &format!("{key}.interval"),
            d.interval.as_deref(),
            Duration::from_secs(900),
        ),
        jitter: match d.jitter.as_deref() {
            Some("0") | Some("0s") => Duration::ZERO,
            other => c.duration(&format!("{key}.jitter"), other, Duration::from_secs(60)),
        },
        timeout: c.duration(
            &format!("{key}.timeout"),
            d.timeout.as_deref(),
            Duration::from_secs(30),
        ),
        page_size,
    })
}

fn ldap(c: &mut Collector, key: &str, d: RawLdap) -> Option<LdapConfig> {
    let url = required(
        c,
        key,
        "an ldap",
        "url",
        d.url,
        "write e.g. \"ldaps://ldap.example.com:636\"",
    );
    if let Some(u) = &url
        && !(u.starts_with("ldap://") || u.starts_with("ldaps://"))
    {
        c.push(
            format!("{key}.url"),
            Some(u),
            "is not an LDAP URL",
            "use ldap://HOST:389 (with starttls = true) or ldaps://HOST:636",
        );
    }
    let bind_dn = required(
        c,
        key,
        "an ldap",
        "bind_dn",
        d.bind_dn,
        "write the DN of a read-only service account",
    );
    let bind_password = match &d.bind_password {
        Some(s) => c.secret(&format!("{key}.bind_password"), s),
        None => {
            c.push(
                format!("{key}.bind_password"),
                None,
                "is required for an ldap directory",
                "write { env = \"VAR\" } or { file = \"/path\" }",
            );
            None
        }
    };
    let base_dn = required(
        c,
        key,
        "an ldap",
        "base_dn",
        d.base_dn,
        "write the DN under which people are, e.g. \"ou=people,dc=example,dc=org\"",
    );
    let subject_attribute = required(
        c,
        key,
        "an ldap",
        "subject_attribute",
        d.subject_attribute,
        "write the attribute that equals the IdP's subject (entryUUID, objectGUID, uid, mail...)",
    );
    let disabled_attribute = match (d.disabled_attribute, d.disabled_value) {
        (Some(a), Some(v)) => Some((a, v)),
        (None, None) => None,
        _ => {
            c.push(
                format!("{key}.disabled_attribute"),
                None,
                "and disabled_value go together",
                "set both, or neither",
            );
            None
        }
    };
    Some(LdapConfig {
        url: url?,
        starttls: d.starttls.unwrap_or(false),
        bind_dn: bind_dn?,
        bind_password: bind_password?,
        base_dn: base_dn?,
        filter: d.filter.unwrap_or_else(|| "(objectClass=person)".into()),
        subject_attribute: subject_attribute?,
        ad_user_account_control: d.ad_user_account_control.unwrap_or(false),
        disabled_attribute,
        ignore_references: ignore_references(c, key, d.ignore_references),
    })
}

fn scim(c: &mut Collector, key: &str, d: RawScim) -> Option<ScimConfig> {
    let base = required(
        c,
        key,
        "a scim",
        "base_url",
        d.base_url,
        "write the SCIM base URL, e.g. https://idp.example.com/scim/v2",
    );
    let base_url = base.and_then(|b| match Url::parse(b.trim_end_matches('/')) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => Some(u),
        _ => {
            c.push(
                format!("{key}.base_url"),
                Some(&b),
                "must be an https URL (plain http only on loopback)",
                "write the https base URL of the SCIM service",
            );
            None
        }
    });
    let token = match &d.token {
        Some(s) => c.secret(&format!("{key}.token"), s),
        None => {
            c.push(
                format!("{key}.token"),
                None,
                "is required for a scim directory",
                "write { env = \"VAR\" } or { file = \"/path\" } holding the bearer token",
            );
            None
        }
    };
    let subject_attribute = match d.subject_attribute.as_deref().unwrap_or("id") {
        "id" => Some(ScimSubject::Id),
        "externalId" => Some(ScimSubject::ExternalId),
        "userName" => Some(ScimSubject::UserName),
        other => {
            c.push(
                format!("{key}.subject_attribute"),
                Some(other),
                "is not a SCIM user identifier",
                "write \"id\", \"externalId\" or \"userName\"",
            );
            None
        }
    };
    Some(ScimConfig {
        base_url: base_url?,
        token: token?,
        subject_attribute: subject_attribute?,
    })
}

/// A key a source cannot do without; `None` (and a problem) when absent or blank.
fn required(
    c: &mut Collector,
    key: &str,
    noun: &str,
    name: &str,
    v: Option<String>,
    fix: &str,
) -> Option<String> {
    match v.filter(|s| !s.trim().is_empty()) {
        Some(v) => Some(v),
        None => {
            c.push(
                format!("{key}.{name}"),
                None,
                format!("is required for {noun} directory"),
                fix,
            );
            None
        }
    }
}

/// Purging is irreversible: at most this fraction of the connection's accounts per sweep. A
/// purge batch is normally the disable batch of one retention period ago, which passed the
/// disable gate (a fraction of the active accounts, so of fewer), so ordinary purges pass.
const DEFAULT_MAX_PURGE_FRACTION: f64 = 0.10;
/// And at most this many, whatever the directory's size.
const DEFAULT_MAX_PURGE_COUNT: u64 = 100;

fn fraction(c: &mut Collector, key: &str, v: Option<f64>, default: f64) -> f64 {
    let f = v.unwrap_or(default);
    if !(0.0..=1.0).contains(&f) {
        c.push(
            key,
            Some(&f.to_string()),
            "must be between 0 and 1",
            "write e.g. 0.1 for 10%",
        );
    }
    f
}

/// `ignore_references`: absent means AD's application partitions; `[]` ignores none.
fn ignore_references(c: &mut Collector, key: &str, v: Option<Vec<String>>) -> Vec<String> {
    let Some(patterns) = v else {
        return crate::directory::DEFAULT_IGNORED_REFERENCES
            .iter()
            .map(|s| s.to_string())
            .collect();
    };
    for p in &patterns {
        if p.trim().is_empty() {
            c.push(
                format!("{key}.ignore_references"),
                Some(p),
                "contains an empty pattern",
                "remove it; write URL prefixes ending in * such as \"ldap://legacy.example.org/*\"",
            );
        } else if p.chars().all(|ch| ch == '*') {
            c.push(
                format!("{key}.ignore_references"),
                Some(p),
                "would ignore every search reference, so people in a referred-to domain would look gone",
                "list only the references that hold nobody, e.g. \"ldap://*/DC=DomainDnsZones,*\"",
            );
        }
    }
    patterns
}

/// `max_entries_without_subject` and `…_fraction`: with neither, one such entry stops a sweep.
fn without_subject(
    c: &mut Collector,
    key: &str,
    count: Option<u64>,
    fraction: Option<f64>,
) -> Tolerance {
    if let Some(f) = fraction
        && !(0.0..=1.0).contains(&f)
    {
        c.push(
            format!("{key}.max_entries_without_subject_fraction"),
            Some(&f.to_string()),
            "must be between 0 and 1",
            "write e.g. 0.001 for one entry in a thousand, or remove it",
        );
    }
    Tolerance { count, fraction }
}
