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

pub(super) fn build(cfg: &SamlConfig, a: &Assertion) -> Result<VerifiedResponse, SamlError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let v = build(&cfg(SamlSubject::NameId), &a).unwrap();
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
        let by_attr = build(&cfg(SamlSubject::Attribute("objectGUID".into())), &a).unwrap();
        assert_eq!(by_attr.subject, "g-1");
        assert!(build(&cfg(SamlSubject::Attribute("groups".into())), &a).is_err());
        assert!(build(&cfg(SamlSubject::Attribute("missing".into())), &a).is_err());
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
            let n = build(&cfg(SamlSubject::NameId), &read(xml))
                .unwrap()
                .name_id
                .unwrap();
            (n.name_qualifier, n.sp_name_qualifier)
        };
        let xml = ASSERTION.replace(
            r#"<saml:NameID Format="FMT">"#,
            r#"<saml:NameID Format="FMT" NameQualifier="https://idp" SPNameQualifier="https://sp">"#,
        );
        assert_eq!(
            qualifiers(&xml),
            (Some("https://idp".into()), Some("https://sp".into()))
        );
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
            let e = build(&strict, &a).unwrap_err();
            assert!(e.to_string().contains("not persistent"), "{format}: {e}");
            assert!(build(&cfg(SamlSubject::NameId), &a).is_ok(), "opted in");
        }
        let no_format = read(&ASSERTION.replace(r#" Format="FMT""#, ""));
        assert!(build(&strict, &no_format).is_err());
        let persistent = read(&ASSERTION.replace("FMT", PERSISTENT));
        assert_eq!(
            build(&strict, &persistent).unwrap().subject,
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
        assert_eq!(build(&by_attr, &email_format).unwrap().subject, "g-1");
    }

    #[test]
    fn a_transient_name_id_cannot_identify_an_account() {
        let a = read(&ASSERTION.replace("FMT", TRANSIENT));
        let e = build(&cfg(SamlSubject::NameId), &a).unwrap_err();
        assert!(e.to_string().contains("transient"), "{e}");
    }
}
