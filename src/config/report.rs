//! What `jitbridge check-config` prints about a valid configuration: for every connection the
//! effective email trust and username rules, then every risky opt-in as a warning that names
//! the key and what to do. Warnings never make the configuration invalid; secrets are never
//! printed.

use super::*;

/// The summary and the warnings of a valid configuration.
#[derive(Debug, Clone)]
pub struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<Problem>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        match self.warnings.len() {
            0 => writeln!(f, "\nno warnings"),
            n => {
                writeln!(f, "\n{n} warning{}:", if n == 1 { "" } else { "s" })?;
                for w in &self.warnings {
                    writeln!(f, "  - {w}")?;
                }
                Ok(())
            }
        }
    }
}

fn warn(out: &mut Vec<Problem>, key: String, value: Option<&str>, message: &str, fix: &str) {
    out.push(Problem {
        key,
        value: value.map(str::to_string),
        message: message.into(),
        fix: fix.into(),
    });
}

pub fn report(cfg: &Config) -> Report {
    let mut lines = vec!["the configuration is valid".to_string()];
    let mut w = Vec::new();
    for c in &cfg.connections {
        let key = format!("connection[{}]", c.name);
        let trusts = c.mapping.trusts_email();
        lines.push(String::new());
        match &c.protocol {
            Protocol::Oidc(o) => {
                lines.push(format!(
                    "connection {} (oidc, issuer {}):",
                    c.name, o.issuer
                ));
                lines.push(if trusts {
                    "  email: verified when the provider sends email_verified = true or no email_verified at all, never when it sends false (mapping.trust_email = true)".into()
                } else {
                    "  email: verified only when the provider sends email_verified = true (mapping.trust_email = false, the default)".into()
                });
                lines.push(if c.mapping.requires_verified_email() {
                    "  a login whose email_verified is false is refused (mapping.require_verified_email = true, the default)".into()
                } else {
                    "  a login whose email_verified is false is accepted without its email (mapping.require_verified_email = false)".into()
                });
                oidc_warnings(&mut w, &key, o, trusts);
            }
            Protocol::Saml(s) => {
                lines.push(format!(
                    "connection {} (saml, entity id {}):",
                    c.name, s.entity_id
                ));
                lines.push(if trusts {
                    "  email: the address the IdP asserts is trusted as verified (mapping.trust_email = true, the default for SAML, which has no email_verified)".into()
                } else {
                    "  email: never verified, so neither stored nor sent to applications (mapping.trust_email = false)".into()
                });
                lines.push(format!(
                    "  signatures required: {} (saml.required_signature)",
                    match s.required_signature {
                        RequiredSignature::Either => "the response's or the assertion's",
                        RequiredSignature::Response => "the response's",
                        RequiredSignature::Assertion => "the assertion's",
                        RequiredSignature::Both => "the response's and the assertion's",
                    }
                ));
                saml_warnings(&mut w, &format!("{key}.saml"), s);
            }
        }
        lines.push(if c.usernames.update {
            "  username: follows the identity provider at every login (update_username = true)"
                .into()
        } else {
            "  username: kept as the account was created (update_username = false, the default)"
                .into()
        });
    }
    let q = &cfg.accounts.username_quarantine;
    lines.push(String::new());
    lines.push(if q.is_on() {
        format!(
            "accounts: a username freed by a rename or a purge is held for its account for {} (accounts.username_quarantine), stored as a hash keyed by {}",
            humantime::format_duration(q.period),
            if q.hash_key.is_some() {
                "accounts.username_hash_key"
            } else {
                "a key generated in the database"
            }
        )
    } else {
        "accounts: a freed username goes to the next person who asks for it (accounts.username_quarantine = \"0\")".into()
    });
    if !q.is_on() {
        warn(
            &mut w,
            "accounts.username_quarantine".into(),
            Some("0"),
            "turns the quarantine off: a username freed by a rename or a purge goes to the next person whose login maps to it, and an application that keys its users by username gives them the previous holder's data",
            "remove it for the 90d default, or set a period longer than your applications keep data",
        );
    } else if q.hash_key.is_none() {
        warn(
            &mut w,
            "accounts.username_hash_key".into(),
            None,
            "is not set: quarantined usernames are hashed with a key generated and kept in the database, so whoever gets a dump of the database can find the names by hashing guesses",
            "set it to a secret every replica shares, e.g. { file = \"/etc/jitbridge/username-hash.key\" } holding `openssl rand -hex 32` (holds made with the generated key keep working)",
        );
    }
    server_warnings(&mut w, &cfg.server);
    Report { lines, warnings: w }
}

fn oidc_warnings(w: &mut Vec<Problem>, key: &str, o: &OidcConfig, trusts: bool) {
    if trusts {
        warn(
            w,
            format!("{key}.mapping.trust_email"),
            Some("true"),
            "an email the provider sends without email_verified counts as verified: it passes allowed_email_domains and reaches applications in X-Auth-Request-Email (an explicit false still does not)",
            "keep it only if this provider verifies every address it sends (e.g. Entra ID, which sends no email_verified); otherwise remove it",
        );
    }
    for alg in o.allowed_algs.iter().filter(|a| super::oidc::is_hmac(**a)) {
        let name = format!("{alg:?}");
        warn(
            w,
            format!("{key}.allowed_algs"),
            Some(&name),
            "is an HMAC algorithm: ID tokens signed with the client secret can be made by anyone who knows it, not only the provider",
            "remove it and let the provider sign with its asymmetric keys (RS256, PS256, ES256, EdDSA)",
        );
    }
}

fn saml_warnings(w: &mut Vec<Problem>, key: &str, s: &SamlConfig) {
    if s.allow_unstable_name_id {
        warn(
            w,
            format!("{key}.allow_unstable_name_id"),
            Some("true"),
            "accounts are keyed by an emailAddress or unspecified NameID, which can change or be given to someone else, who then logs in to the previous holder's account",
            "ask the IdP for a persistent NameID, or set subject_attribute to an immutable attribute (objectGUID, objectidentifier); then remove it",
        );
    }
    if s.allow_unsigned_cbc {
        warn(
            w,
            format!("{key}.allow_unsigned_cbc"),
            Some("true"),
            "AES-CBC assertions are decrypted without a response signature over the ciphertext: a padding oracle that lets a stranger read encrypted assertions",
            "have the IdP sign the response (ADFS: -SamlResponseSignature MessageAndAssertion; Entra ID: \"Sign SAML response and assertion\") or encrypt with AES-GCM; then remove it",
        );
    }
    for q in &s.accepted_name_qualifiers {
        warn(
            w,
            format!("{key}.accepted_name_qualifiers"),
            Some(q),
            "NameIDs qualified by this issuer key the accounts of this connection as if this IdP had issued them: the same NameID value from that issuer logs in to the same account",
            "keep it only if it names this IdP under another entityID (a renamed or migrated IdP); otherwise remove it",
        );
    }
    for q in &s.accepted_sp_name_qualifiers {
        warn(
            w,
            format!("{key}.accepted_sp_name_qualifiers"),
            Some(q),
            "NameIDs issued for this SP or affiliation key the accounts of this connection: every member of it is given the same identifiers",
            "keep it only if jitbridge is a member of this affiliation at the IdP; otherwise remove it",
        );
    }
    if s.allow_idp_initiated {
        warn(
            w,
            format!("{key}.allow_idp_initiated"),
            Some("true"),
            "unsolicited responses are accepted: nothing ties them to a login this browser started, so someone can log a person's browser in to their own account",
            "remove it unless people must start logins from the IdP's portal",
        );
    }
}

fn server_warnings(w: &mut Vec<Problem>, s: &ServerConfig) {
    if let Some(d) = &s.cookie.domain {
        warn(
            w,
            "server.cookie_domain".into(),
            Some(d),
            "sends the session cookie to every host under this domain, so any application there can act with the sessions of the people who visit it",
            "keep it only if you run every host under the domain; otherwise remove it and serve the bridge under each application's host",
        );
    }
    if !s.operator_listen.ip().is_loopback() {
        warn(
            w,
            "server.operator_listen".into(),
            Some(&s.operator_listen.to_string()),
            "serves /metrics and /readyz beyond this host",
            "make sure the port is reachable only by your monitoring (a pod port that is not exposed, a firewall)",
        );
    }
}
