//! LDAP search references (RFC 4511 §4.5.3) a listing may ignore.
//!
//! A reference means "part of what you asked for is on another server": a listing that drops
//! it makes everyone over there look gone. jitbridge does not chase references (that would
//! send the bind password to a host a referral names), so every reference fails the listing as
//! incomplete unless it matches one of `ignore_references`. Active Directory answers a subtree
//! search from the domain root with references to its application partitions, which hold no
//! people; those are the defaults.

use crate::wildcard::matches as glob;

/// AD's DomainDnsZones, ForestDnsZones and Configuration partitions.
pub const DEFAULT_IGNORED: &[&str] = &[
    "ldap://*/DC=DomainDnsZones,*",
    "ldap://*/DC=ForestDnsZones,*",
    "ldap://*/CN=Configuration,*",
];

/// Whether `url` matches one of the patterns: `*` stands for any run of characters, anything
/// else is literal, ASCII case-insensitively, against the whole URL with %-escapes decoded
/// (`DC%3DDomainDnsZones` and `DC=DomainDnsZones` are the same reference).
pub fn ignorable(url: &str, patterns: &[String]) -> bool {
    let url = percent_decode(url);
    patterns.iter().any(|p| glob(p.as_bytes(), url.as_bytes()))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        DEFAULT_IGNORED.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ads_application_partitions_are_ignored_by_default() {
        for url in [
            "ldap://DomainDnsZones.corp.example.com/DC=DomainDnsZones,DC=corp,DC=example,DC=com",
            "ldap://ForestDnsZones.corp.example.com/DC=ForestDnsZones,DC=corp,DC=example,DC=com",
            "ldap://corp.example.com/CN=Configuration,DC=corp,DC=example,DC=com",
            "ldap://corp.example.com/cn%3Dconfiguration,dc=corp,dc=example,dc=com",
        ] {
            assert!(ignorable(url, &defaults()), "{url}");
        }
    }

    #[test]
    fn a_child_domain_is_not_ignored() {
        for url in [
            "ldap://emea.corp.example.com/DC=emea,DC=corp,DC=example,DC=com",
            "ldap://child.example.org/ou=people,dc=child,dc=example,dc=org",
            // A child domain whose name merely contains a partition's name.
            "ldap://DomainDnsZones.example.com/DC=emea,DC=example,DC=com",
        ] {
            assert!(!ignorable(url, &defaults()), "{url}");
        }
    }

    #[test]
    fn patterns_are_prefixes_with_a_star_and_match_case_insensitively() {
        let p = vec!["LDAP://legacy.example.org/*".to_string()];
        assert!(ignorable(
            "ldap://legacy.example.org/ou=old,dc=example,dc=org",
            &p
        ));
        assert!(!ignorable("ldap://legacy.example.org.evil/ou=x", &p));
        assert!(!ignorable("ldap://legacy.example.org", &p));
        assert!(glob(b"a*b*c", b"aXXbYYc") && !glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"**", b"") && glob(b"x", b"X") && !glob(b"", b"x"));
    }
}
