//! The verified assertion as the login goes on with it: subject (with the account-key rules),
//! NameID and its qualifiers, attributes by Name and FriendlyName, session index and times.
//! Everything here reads content the signatures cover.

use super::SamlError;
use super::assertion::Assertion;
use super::response::VerifiedResponse;
use crate::config::{SamlConfig, SamlSubject};
use crate::mapping::Claims;
use serde_json::Value;

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

/// The login's values from the verified assertion `a` of the IdP `idp_entity_id` (its
/// entityID as the metadata gives it).
pub(super) fn build(
    cfg: &SamlConfig,
    idp_entity_id: &str,
    a: &Assertion,
) -> Result<VerifiedResponse, SamlError> {
    let mut claims = Claims::new();
    for attr in &a.attributes {
        let values: Vec<Value> = attr.values.iter().cloned().map(Value::String).collect();
        if values.is_empty() {
            continue;
        }
        let v = if values.len() == 1 {
            values[0].clone()
        } else {
            Value::Array(values)
        };
        for key in [Some(&attr.name), attr.friendly_name.as_ref()]
            .into_iter()
            .flatten()
        {
            if !key.is_empty() && !claims.contains_key(key) {
                claims.insert(key.clone(), v.clone());
            }
        }
    }
    let name_id = a
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .filter(|n| !n.value.is_empty())
        .cloned();
    if let Some(n) = &name_id {
        claims.insert("name_id".into(), Value::String(n.value.clone()));
        if let Some(f) = &n.format {
            claims.insert("name_id_format".into(), Value::String(f.clone()));
        }
    }
    let subject = match &cfg.subject {
        SamlSubject::NameId => {
            let n = name_id
                .as_ref()
                .ok_or_else(|| SamlError::Subject("the assertion has no NameID".into()))?;
            match n.format.as_deref() {
                Some(TRANSIENT) => {
                    return Err(SamlError::Subject(
                        "the NameID is transient (new at every login); ask the IdP for a persistent NameID or set subject_attribute".into(),
                    ));
                }
                Some(PERSISTENT) => {}
                // An email address or an unspecified value can change, or be given to another
                // person later, who would then inherit the account (SAML core 8.3.7 makes only
                // persistent identifiers stable and never reassigned).
                _ if cfg.allow_unstable_name_id => {}
                _ => {
                    return Err(SamlError::Subject(
                        "the NameID is not persistent (an email address or unspecified value can change or be reassigned); ask the IdP for a persistent NameID, set subject_attribute, or set allow_unstable_name_id = true".into(),
                    ));
                }
            }
            qualifiers_accepted(cfg, idp_entity_id, n)?;
            n.value.clone()
        }
        SamlSubject::Attribute(name) => match claims.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(_) => {
                return Err(SamlError::Subject(format!(
                    "the attribute `{name}` must have exactly one value"
                )));
            }
            None => {
                return Err(SamlError::Subject(format!(
                    "the attribute `{name}` is missing"
                )));
            }
        },
    };
    if subject.len() > 512 {
        return Err(SamlError::Subject(
            "the subject is longer than 512 characters".into(),
        ));
    }
    let session = a.authn_statements.first();
    let session_index = session.and_then(|s| s.session_index.clone());
    // The IdP's earliest end over every AuthnStatement caps our session (not the first's).
    let session_not_on_or_after = a
        .authn_statements
        .iter()
        .filter_map(|s| s.session_not_on_or_after)
        .map(|t| t.timestamp())
        .min();
    let conditions_end = a.conditions.as_ref().and_then(|c| c.not_on_or_after);
    let confirmation_end = a
        .subject
        .as_ref()
        .map(|s| s.confirmations.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.data.as_ref()?.not_on_or_after)
        .max();
    let skew = cfg.clock_skew.as_secs() as i64;
    let valid_until = [conditions_end, confirmation_end]
        .into_iter()
        .flatten()
        .map(|t| t.timestamp())
        .max()
        .unwrap_or_else(|| chrono::Utc::now().timestamp() + 300)
        + skew;
    Ok(VerifiedResponse {
        subject,
        claims,
        name_id,
        session_index,
        assertion_id: a.id.clone(),
        valid_until,
        session_not_on_or_after,
    })
}

/// With the NameID as the account key, the subject is the NameID's value alone: so are the
/// subjects stored since the first release, and a LogoutRequest without SessionIndex ends
/// every session of that subject (`slo::CheckedLogoutRequest::target`). SAML core 8.3.7 makes
/// a persistent NameID unique only together with its NameQualifier (the IdP that issued it)
/// and SPNameQualifier (the SP or affiliation it was issued for): `alice` of one namespace is
/// not `alice` of another. So a qualifier that is present must name this connection's IdP
/// (its entityID, or one listed in `accepted_name_qualifiers`) and us (our entityID, or an
/// affiliation listed in `accepted_sp_name_qualifiers`); an absent one is read as the same,
/// since core 8.3.7 omits a qualifier that the issuer or the recipient implies. Every NameID
/// that keys an account of a connection then comes from one namespace, its value alone is
/// unambiguous, and no stored subject has to change. A listed qualifier is the operator's word
/// that it names the same namespace (the IdP under another entityID; an affiliation we are in).
///
/// With `subject_attribute` the NameID keys no account, and sessions are indexed by the NameID
/// with its qualifiers (`slo::principal`): nothing is ambiguous, and nothing is checked here.
fn qualifiers_accepted(
    cfg: &SamlConfig,
    idp_entity_id: &str,
    n: &super::logout::NameId,
) -> Result<(), SamlError> {
    let accepted = |q: Option<&str>, ours: &str, listed: &[String]| {
        q.is_none_or(|q| q == ours || listed.iter().any(|l| l == q))
    };
    // The qualifier is an entityID, not personal data: the operator needs it to list it.
    let refused = |which: &str, q: Option<&str>| {
        let q: String = q.unwrap_or_default().chars().take(256).collect();
        tracing::info!(qualifier = %q, "the subject NameID's {which} is not accepted");
    };
    let nq = n.name_qualifier.as_deref();
    if !accepted(nq, idp_entity_id, &cfg.accepted_name_qualifiers) {
        refused("NameQualifier", nq);
        return Err(SamlError::NameQualifier);
    }
    let spnq = n.sp_name_qualifier.as_deref();
    if !accepted(spnq, &cfg.entity_id, &cfg.accepted_sp_name_qualifiers) {
        refused("SPNameQualifier", spnq);
        return Err(SamlError::SpNameQualifier);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IdP's entityID, and ours (`test_config`'s).
    const IDP: &str = "https://idp.example.org";
    const SP: &str = "https://sp.example.com/saml/c/metadata";

    fn cfg(subject: SamlSubject) -> SamlConfig {
        let mut s = super::super::test_config("allow_unstable_name_id = true");
        s.subject = subject;
        s
    }

    fn read(xml: &str) -> Assertion {
        let doc = super::super::tree::parse(xml).unwrap();
        Assertion::read(doc.root_element()).unwrap()
    }

    const ASSERTION: &str = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>idp</saml:Issuer><saml:Subject><saml:NameID Format="FMT">alice@example.com</saml:NameID></saml:Subject><saml:AuthnStatement AuthnInstant="2026-01-01T00:00:00Z" SessionIndex="s1"/><saml:AttributeStatement><saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3" FriendlyName="mail"><saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute><saml:Attribute Name="groups"><saml:AttributeValue>a</saml:AttributeValue><saml:AttributeValue>b</saml:AttributeValue></saml:Attribute><saml:Attribute Name="objectGUID"><saml:AttributeValue>g-1</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>"#;

    #[test]
    fn attributes_are_reachable_by_name_and_friendly_name_and_lists_stay_lists() {
        let a = read(ASSERTION);
        let v = build(&cfg(SamlSubject::NameId), IDP, &a).unwrap();
        assert_eq!(v.subject, "alice@example.com");
        assert_eq!(v.claims["mail"], "alice@example.com");
        assert_eq!(
            v.claims["urn:oid:0.9.2342.19200300.100.1.3"],
            "alice@example.com"
        );
        assert_eq!(v.claims["groups"], serde_json::json!(["a", "b"]));
        assert_eq!(v.claims["name_id"], "alice@example.com");
        assert_eq!(v.claims["name_id_format"], "FMT");
        assert_eq!(v.session_index.as_deref(), Some("s1"));
        let by_attr = build(&cfg(SamlSubject::Attribute("objectGUID".into())), IDP, &a).unwrap();
        assert_eq!(by_attr.subject, "g-1");
        assert!(build(&cfg(SamlSubject::Attribute("groups".into())), IDP, &a).is_err());
        assert!(build(&cfg(SamlSubject::Attribute("missing".into())), IDP, &a).is_err());
    }

    #[test]
    fn an_attribute_value_holding_a_name_id_becomes_text_instead_of_failing_the_login() {
        let xml = ASSERTION.replace(
            r#"<saml:Attribute Name="objectGUID">"#,
            r#"<saml:Attribute Name="urn:oid:1.3.6.1.4.1.5923.1.1.1.10" FriendlyName="eduPersonTargetedID"><saml:AttributeValue><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" NameQualifier="https://idp.example.org" SPNameQualifier="https://sp.example.com">x&amp;1</saml:NameID></saml:AttributeValue></saml:Attribute><saml:Attribute Name="note"><saml:AttributeValue><b>bold</b> text</saml:AttributeValue></saml:Attribute><saml:Attribute Name="objectGUID">"#,
        );
        let a = read(&xml);
        let v = build(
            &cfg(SamlSubject::Attribute("eduPersonTargetedID".into())),
            IDP,
            &a,
        )
        .unwrap();
        assert_eq!(
            v.subject,
            "https://idp.example.org!https://sp.example.com!x&1"
        );
        assert_eq!(v.claims["note"], "bold text");
        // The plain values are untouched.
        assert_eq!(v.claims["groups"], serde_json::json!(["a", "b"]));
        assert_eq!(v.claims["objectGUID"], "g-1");
    }

    #[test]
    fn the_subject_name_id_qualifiers_are_read_from_the_subject_only() {
        let qualifiers = |xml: &str| {
            let n = build(&cfg(SamlSubject::NameId), IDP, &read(xml))
                .unwrap()
                .name_id
                .unwrap();
            (n.name_qualifier, n.sp_name_qualifier)
        };
        let xml = ASSERTION.replace(
            r#"<saml:NameID Format="FMT">"#,
            &format!(r#"<saml:NameID Format="FMT" NameQualifier="{IDP}" SPNameQualifier="{SP}">"#),
        );
        assert_eq!(qualifiers(&xml), (Some(IDP.into()), Some(SP.into())));
        assert_eq!(qualifiers(ASSERTION), (None, None));
        // A NameID elsewhere (an attribute value) is not the subject's.
        let elsewhere = ASSERTION.replace(
            r#"<saml:AttributeValue>g-1</saml:AttributeValue>"#,
            r#"<saml:AttributeValue><saml:NameID NameQualifier="x">g</saml:NameID></saml:AttributeValue>"#,
        );
        assert_eq!(qualifiers(&elsewhere), (None, None));
    }

    /// An emailAddress or unspecified NameID keyed the account by default: such a value can
    /// change, or be given to another person, who then inherited the account.
    #[test]
    fn an_email_or_unspecified_name_id_is_not_an_account_key_without_opt_in() {
        let strict = {
            let mut s = super::super::test_config("");
            s.subject = SamlSubject::NameId;
            s
        };
        for format in [
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        ] {
            let a = read(&ASSERTION.replace("FMT", format));
            let e = build(&strict, IDP, &a).unwrap_err();
            assert!(e.to_string().contains("not persistent"), "{format}: {e}");
            assert!(
                build(&cfg(SamlSubject::NameId), IDP, &a).is_ok(),
                "opted in"
            );
        }
        let no_format = read(&ASSERTION.replace(r#" Format="FMT""#, ""));
        assert!(build(&strict, IDP, &no_format).is_err());
        let persistent = read(&ASSERTION.replace("FMT", PERSISTENT));
        assert_eq!(
            build(&strict, IDP, &persistent).unwrap().subject,
            "alice@example.com"
        );
        // A subject attribute is the operator's own choice of a stable key.
        let by_attr = {
            let mut s = super::super::test_config("");
            s.subject = SamlSubject::Attribute("objectGUID".into());
            s
        };
        let email_format = read(&ASSERTION.replace(
            "FMT",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        ));
        assert_eq!(build(&by_attr, IDP, &email_format).unwrap().subject, "g-1");
    }

    #[test]
    fn a_transient_name_id_cannot_identify_an_account() {
        let a = read(&ASSERTION.replace("FMT", TRANSIENT));
        let e = build(&cfg(SamlSubject::NameId), IDP, &a).unwrap_err();
        assert!(e.to_string().contains("transient"), "{e}");
    }

    fn qualified(nq: Option<&str>, spnq: Option<&str>) -> Assertion {
        let attr = |name: &str, v: Option<&str>| {
            v.map(|v| format!(r#" {name}="{v}""#)).unwrap_or_default()
        };
        read(&ASSERTION.replace(
            r#"<saml:NameID Format="FMT">"#,
            &format!(
                r#"<saml:NameID Format="{PERSISTENT}"{}{}>"#,
                attr("NameQualifier", nq),
                attr("SPNameQualifier", spnq)
            ),
        ))
    }

    /// The account key was the NameID's value alone, whatever its qualifiers: `alice` of
    /// another identity provider's namespace, or issued for another service provider, logged
    /// in to (and a LogoutRequest for it ended the sessions of) the `alice` of ours.
    #[test]
    fn a_name_id_qualified_by_another_namespace_keys_no_account() {
        let strict = cfg(SamlSubject::NameId);
        for (nq, spnq) in [
            (None, None),
            (Some(IDP), None),
            (None, Some(SP)),
            (Some(IDP), Some(SP)),
        ] {
            let v = build(&strict, IDP, &qualified(nq, spnq));
            assert_eq!(v.unwrap().subject, "alice@example.com", "{nq:?} {spnq:?}");
        }
        for nq in ["https://other-idp.example", "", "https://idp.example.org/"] {
            let e = build(&strict, IDP, &qualified(Some(nq), Some(SP))).unwrap_err();
            assert!(matches!(e, SamlError::NameQualifier), "{nq:?}: {e}");
        }
        for spnq in ["https://other-sp.example", ""] {
            let e = build(&strict, IDP, &qualified(Some(IDP), Some(spnq))).unwrap_err();
            assert!(matches!(e, SamlError::SpNameQualifier), "{spnq:?}: {e}");
        }
        // A subject attribute keys the account; the NameID is only the logout principal,
        // which keeps its qualifiers.
        let by_attr = cfg(SamlSubject::Attribute("objectGUID".into()));
        let foreign = qualified(Some("https://other-idp.example"), Some("https://other-sp"));
        assert_eq!(build(&by_attr, IDP, &foreign).unwrap().subject, "g-1");
    }

    #[test]
    fn a_listed_qualifier_is_accepted_and_only_a_listed_one() {
        let mut listed = cfg(SamlSubject::NameId);
        listed.accepted_name_qualifiers = vec!["https://idp-old.example".into()];
        listed.accepted_sp_name_qualifiers = vec!["urn:example:affiliation".into()];
        let a = qualified(
            Some("https://idp-old.example"),
            Some("urn:example:affiliation"),
        );
        assert_eq!(
            build(&listed, IDP, &a).unwrap().subject,
            "alice@example.com"
        );
        let still_ours = qualified(Some(IDP), Some(SP));
        assert!(build(&listed, IDP, &still_ours).is_ok());
        let other = qualified(Some("https://idp-other.example"), None);
        assert!(matches!(
            build(&listed, IDP, &other),
            Err(SamlError::NameQualifier)
        ));
        // A NameQualifier value is not an SPNameQualifier, nor the reverse.
        let swapped = qualified(Some("urn:example:affiliation"), None);
        assert!(matches!(
            build(&listed, IDP, &swapped),
            Err(SamlError::NameQualifier)
        ));
    }
}
