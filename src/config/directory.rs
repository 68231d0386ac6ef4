//! Directory settings that say when a listing is complete enough to act on, and how much one
//! sweep may purge (the rest of `[connection.directory]` is read in `raw`).

use super::Tolerance;
use super::raw::Collector;

/// Purging is irreversible: at most this fraction of the connection's accounts per sweep. A
/// purge batch is normally the disable batch of one retention period ago, which passed the
/// disable gate (a fraction of the active accounts, so of fewer), so ordinary purges pass.
pub(super) const DEFAULT_MAX_PURGE_FRACTION: f64 = 0.10;
/// And at most this many, whatever the directory's size.
pub(super) const DEFAULT_MAX_PURGE_COUNT: u64 = 100;

pub(super) fn fraction(c: &mut Collector, key: &str, v: Option<f64>, default: f64) -> f64 {
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
pub(super) fn ignore_references(
    c: &mut Collector,
    key: &str,
    v: Option<Vec<String>>,
) -> Vec<String> {
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
pub(super) fn without_subject(
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
