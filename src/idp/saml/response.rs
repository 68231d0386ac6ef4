//! Validation of a POSTed `samlp:Response` at the ACS.

use super::assertion::Assertion;
use super::profile::build;
use super::tree::parse as parse_tree;
use super::tree::{elements, is, ns};
use super::validate::{self, Expect};
use super::{IdpView, SamlError, preflight};
use crate::config::{RequiredSignature, SamlConfig};
use crate::idp::{NormalizedLogin, SingleUse};
use crate::mapping::Claims;
use openssl::pkey::{PKey, Private};

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// A response that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedResponse {
    pub subject: String,
    /// Attributes by Name and by FriendlyName, plus `name_id` and `name_id_format`.
    pub claims: Claims,
    pub name_id: Option<super::logout::NameId>,
    pub session_index: Option<String>,
    /// The assertion's id, for the replay cache.
    pub assertion_id: String,
    /// Unix seconds until which the assertion could be replayed (for the replay cache's TTL).
    pub valid_until: i64,
    /// Unix seconds: SessionNotOnOrAfter, which caps our session.
    pub session_not_on_or_after: Option<i64>,
}

impl VerifiedResponse {
    /// The protocol-neutral login of connection `connection`: the NameID becomes the
    /// session's [`crate::idp::IdpPrincipal`] ([`super::slo::principal`]), and the assertion
    /// ID a single-use key kept until the assertion expires, so that the login service
    /// refuses a second use on any replica.
    pub fn into_login(self, connection: &str) -> NormalizedLogin {
        let ttl = (self.valid_until - crate::session::unix_now()).clamp(60, 7 * 86_400) as u64;
        NormalizedLogin {
            connection: connection.to_string(),
            subject: self.subject,
            claims: self.claims,
            idp_session: self.session_index,
            idp_principal: self.name_id.as_ref().map(super::slo::principal),
            session_ends_at: self.session_not_on_or_after,
            single_use: Some(SingleUse {
                key: assertion_replay_key(connection, &self.assertion_id),
                ttl: std::time::Duration::from_secs(ttl),
            }),
        }
    }
}

/// The replay key of an assertion: its ID within the connection. Its bytes are those of the
/// first release (replicas of two releases share the replay cache during an upgrade).
fn assertion_replay_key(connection: &str, assertion_id: &str) -> String {
    format!("saml-assertion\u{0}{connection}\u{0}{assertion_id}")
}

pub(super) fn verify(
    cfg: &SamlConfig,
    idp: &IdpView,
    sp_key: Option<&PKey<Private>>,
    encoded: &str,
    expected_request: Option<&str>,
) -> Result<VerifiedResponse, SamlError> {
    let xml = preflight::decode_post(encoded, cfg.max_response_bytes)?;
    let shape = preflight::scan(&xml, "Response")?;

    // Refusals on the untrusted view are safe: they can only turn a response away.
    if let Some(status) = &shape.status
        && status != STATUS_SUCCESS
    {
        return Err(SamlError::Status(short_status(status)));
    }
    if shape.status.is_none() {
        return Err(SamlError::Invalid("the response has no Status".into()));
    }
    if let Some(d) = &shape.destination
        && d != cfg.acs_url.as_str()
    {
        return Err(SamlError::Destination);
    }
    match (expected_request, &shape.in_response_to) {
        (Some(id), Some(irt)) if irt != id => return Err(SamlError::InResponseTo),
        // It answers a request, but not one this browser has outstanding.
        (None, Some(_)) => return Err(SamlError::InResponseTo),
        (None, None) if !cfg.allow_idp_initiated => return Err(SamlError::Unsolicited),
        _ => {}
    }
    let response_signed = shape.response_signed();
    let algorithms = &cfg.signature_algorithms;
    let reduce = |doc: &str| {
        idp.keys
            .reduce(doc, algorithms)
            .map_err(|_| SamlError::BadSignature)
    };
    let expect = Expect {
        cfg,
        idp_entity_id: &idp.entity_id,
        request_id: expected_request,
        now: chrono::Utc::now(),
    };

    // Verify first, then read only what the signatures cover. With a signed Response that is
    // its pre-digest bytes (an assertion encrypted to us is decrypted from those bytes, never
    // from the received document); with an unsigned one it is the assertion's own pre-digest
    // bytes, after decryption when it is encrypted (ADFS and Entra ID sign only inside).
    let (assertion_doc, seen_id) = if response_signed {
        if !shape.encrypted {
            // Refused before any signature work when the policy cannot be met.
            require_signatures(cfg, true, shape.assertion_signed())?;
        }
        let verified = reduce(&xml)?;
        if !preflight::root_is_protocol_response(&verified) {
            return Err(SamlError::BadSignature);
        }
        let tree = parse_tree(&verified)?;
        validate::response(tree.root_element(), &expect)?;
        match carried(tree.root_element())? {
            Carried::Encrypted(enc) => {
                let key = sp_key.ok_or_else(no_sp_key)?;
                // The Response signature covers the ciphertext, so AES-CBC is no oracle here.
                let plain = super::decrypt::decrypt_assertion(enc, key, true)?;
                let inner = preflight::scan_assertion(&plain).map_err(plaintext_unreadable)?;
                require_signatures(cfg, true, inner.assertion_signed())?;
                let doc = if inner.assertion_signed() {
                    reduce(&plain)?
                } else {
                    plain
                };
                (doc, inner.assertion_id)
            }
            Carried::Plain(a) => {
                // The policy was checked on the received view; the verified one must agree.
                require_signatures(cfg, true, shape.assertion_signed())?;
                let a = Assertion::read(a)?;
                return finish(cfg, &expect, a, shape.assertion_id.as_deref());
            }
        }
    } else if shape.encrypted {
        // A connection that needs the Response signed refuses before any RSA operation.
        require_signatures(cfg, false, true)?;
        let key = sp_key.ok_or_else(no_sp_key)?;
        let tree = parse_tree(&xml)?;
        let Carried::Encrypted(enc) = carried(tree.root_element())? else {
            return Err(more_than_one_assertion());
        };
        let plain = super::decrypt::decrypt_assertion(enc, key, cfg.allow_unsigned_cbc)?;
        let inner = preflight::scan_assertion(&plain).map_err(plaintext_unreadable)?;
        require_signatures(cfg, false, inner.assertion_signed())?;
        (reduce(&plain)?, inner.assertion_id)
    } else {
        require_signatures(cfg, false, shape.assertion_signed())?;
        (reduce(&xml)?, shape.assertion_id.clone())
    };
    if !preflight::root_is(&assertion_doc, preflight::ASSERTION_NS, b"Assertion") {
        return Err(SamlError::BadSignature);
    }
    let tree = parse_tree(&assertion_doc)?;
    finish(
        cfg,
        &expect,
        Assertion::read(tree.root_element())?,
        seen_id.as_deref(),
    )
}

/// The assertion a Response carries, taken from the one tree (verified bytes, or for an
/// unsigned Response the received message): its one `saml:Assertion` or
/// `saml:EncryptedAssertion` child, by namespace and local name. A login response carries
/// exactly one (the browser SSO profile, 4.1.4.2); elements of other namespaces or other
/// places are not assertions and are never read.
enum Carried<'a, 'i> {
    Plain(roxmltree::Node<'a, 'i>),
    Encrypted(roxmltree::Node<'a, 'i>),
}

fn carried<'a, 'i>(root: roxmltree::Node<'a, 'i>) -> Result<Carried<'a, 'i>, SamlError> {
    let saml = ns(preflight::ASSERTION_NS);
    let mut found = elements(root).filter_map(|c| {
        if is(&c, saml, "Assertion") {
            Some(Carried::Plain(c))
        } else if is(&c, saml, "EncryptedAssertion") {
            Some(Carried::Encrypted(c))
        } else {
            None
        }
    });
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(SamlError::NotOne("no assertion")),
        (Some(_), Some(_)) => Err(more_than_one_assertion()),
    }
}

fn more_than_one_assertion() -> SamlError {
    SamlError::NotOne("more than one assertion")
}

fn no_sp_key() -> SamlError {
    SamlError::Invalid("the assertion is encrypted, but no sp_private_key is configured".into())
}

/// A decrypted plaintext that the preflight refuses is one more decryption failure to the
/// sender (no oracle on the plaintext's shape); the audit trail keeps the step.
fn plaintext_unreadable(e: preflight::PreflightError) -> SamlError {
    tracing::info!(step = e.reason(), "decrypted assertion refused");
    SamlError::Decryption(super::decrypt::Failure::Plaintext)
}

/// The checks on the verified assertion, and the values the login goes on with.
fn finish(
    cfg: &SamlConfig,
    expect: &Expect<'_>,
    assertion: Assertion,
    seen_id: Option<&str>,
) -> Result<VerifiedResponse, SamlError> {
    // The assertion processed must be the one the scan saw (and judged signed).
    if seen_id != Some(assertion.id.as_str()) {
        return Err(SamlError::Invalid(
            "the processed assertion is not the signed one".into(),
        ));
    }
    validate::assertion(&assertion, expect)?;
    build(cfg, expect.idp_entity_id, &assertion)
}

fn require_signatures(
    cfg: &SamlConfig,
    response_signed: bool,
    assertion_signed: bool,
) -> Result<(), SamlError> {
    let ok = match cfg.required_signature {
        RequiredSignature::Either => response_signed || assertion_signed,
        RequiredSignature::Response => response_signed,
        RequiredSignature::Assertion => assertion_signed,
        RequiredSignature::Both => response_signed && assertion_signed,
    };
    if ok {
        return Ok(());
    }
    Err(SamlError::SignatureRequired(match cfg.required_signature {
        RequiredSignature::Either => "a signed response or assertion",
        RequiredSignature::Response => "a signed response",
        RequiredSignature::Assertion => "a signed assertion",
        RequiredSignature::Both => "a signed response and a signed assertion",
    }))
}

pub(super) fn unreadable(e: impl std::fmt::Display) -> SamlError {
    SamlError::Invalid(format!("it cannot be read ({e})"))
}

pub(super) fn short_status(s: &str) -> String {
    let tail = s.rsplit(':').next().unwrap_or(s);
    tail.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which assertion the ACS goes on with, for a (verified) Response with these children.
    /// The preflight refuses most of these shapes before anything is verified; this is the
    /// layer behind it, proven on its own.
    fn pick(children: &str) -> Result<String, SamlError> {
        let xml = format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">{children}</samlp:Response>"#
        );
        let doc = parse_tree(&xml).unwrap();
        Ok(match carried(doc.root_element())? {
            Carried::Plain(n) => format!("plain {}", n.attribute("ID").unwrap_or("")),
            Carried::Encrypted(n) => format!("encrypted {}", n.attribute("Id").unwrap_or("")),
        })
    }

    #[test]
    fn the_assertion_is_the_one_saml_child_of_the_response_whatever_lies_around_it() {
        let genuine = r#"<saml:Assertion ID="genuine"/>"#;
        let sealed = r#"<saml:EncryptedAssertion Id="genuine"/>"#;
        let decoys = [
            r#"<x:EncryptedAssertion xmlns:x="urn:example:decoy" Id="decoy"/>"#,
            r#"<EncryptedAssertion xmlns="" Id="decoy"/>"#,
            r#"<x:Assertion xmlns:x="urn:example:decoy" ID="decoy"/>"#,
            r#"<Assertion ID="decoy"/>"#,
            r#"<samlp:Extensions><saml:EncryptedAssertion Id="decoy"/></samlp:Extensions>"#,
            r#"<samlp:Status><saml:Assertion ID="decoy"/></samlp:Status>"#,
        ];
        for d in decoys {
            for (real, want) in [(genuine, "plain genuine"), (sealed, "encrypted genuine")] {
                assert_eq!(pick(&format!("{d}{real}")).unwrap(), want, "before: {d}");
                assert_eq!(pick(&format!("{real}{d}")).unwrap(), want, "after: {d}");
            }
            // A decoy alone is no assertion at all.
            assert!(
                matches!(pick(d), Err(SamlError::NotOne("no assertion"))),
                "{d}"
            );
        }
        for two in [
            format!("{genuine}{genuine}"),
            format!("{genuine}{sealed}"),
            format!("{sealed}{genuine}"),
            format!("{sealed}{sealed}"),
        ] {
            let e = pick(&two).unwrap_err();
            assert!(
                matches!(e, SamlError::NotOne("more than one assertion")),
                "{two}: {e}"
            );
        }
    }

    /// A replica of the previous release shares the replay cache: the key keeps its bytes.
    #[test]
    fn a_verified_response_becomes_a_login_with_the_first_release_replay_key() {
        let n = super::super::logout::NameId {
            value: "alice".into(),
            ..Default::default()
        };
        let login = VerifiedResponse {
            subject: "alice".into(),
            claims: Claims::new(),
            name_id: Some(n.clone()),
            session_index: Some("s-1".into()),
            assertion_id: "_a1".into(),
            valid_until: crate::session::unix_now() + 300,
            session_not_on_or_after: Some(7),
        }
        .into_login("c");
        let once = login.single_use.unwrap();
        assert_eq!(once.key, "saml-assertion\u{0}c\u{0}_a1");
        assert!((299..=300).contains(&once.ttl.as_secs()), "{:?}", once.ttl);
        assert_eq!(login.idp_principal, Some(super::super::slo::principal(&n)));
        assert_eq!(login.idp_session.as_deref(), Some("s-1"));
        assert_eq!(login.session_ends_at, Some(7));
    }
}
