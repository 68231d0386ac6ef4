//! The verified assertion as the login goes on with it: subject (with the account-key rules),
//! NameID and its qualifiers, attributes by Name and FriendlyName, session index and times.
//! Everything here reads content the signatures cover.

use super::SamlError;
use super::preflight;
use super::response::{VerifiedResponse, unreadable};
use crate::config::{SamlConfig, SamlSubject};
use crate::mapping::Claims;
use samael::schema::Assertion;
use serde_json::Value;

const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

/// NameQualifier and SPNameQualifier of the assertion's `Subject/NameID` in verified content.
pub(super) fn subject_name_id_qualifiers(xml: &str) -> (Option<String>, Option<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::reader::NsReader::from_str(xml);
    let mut parent_is_subject = Vec::new();
    loop {
        let (ns, ev) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(_) => return (None, None),
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let saml = preflight::is(&ns, preflight::ASSERTION_NS);
                let local = e.local_name();
                if saml && local.as_ref() == b"NameID" && parent_is_subject.last() == Some(&true) {
                    return (
                        preflight::attr(e, b"NameQualifier"),
                        preflight::attr(e, b"SPNameQualifier"),
                    );
                }
                if matches!(ev, Event::Start(_)) {
                    parent_is_subject.push(saml && local.as_ref() == b"Subject");
                }
            }
            Event::End(_) => {
                parent_is_subject.pop();
            }
            Event::Eof => return (None, None),
            _ => {}
        }
    }
}

/// Parses verified content with samael's schema. That schema reads an AttributeValue as text
/// only, so a value holding XML, such as eduPersonTargetedID's NameID (eduPerson; SAML V2.0
/// attribute profiles), would make the whole assertion unreadable: on that failure such values
/// are turned into text ([`flatten_xml_attribute_values`]) and the content is parsed again.
pub(super) fn parse_verified<T>(doc: &str) -> Result<T, SamlError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match doc.parse::<T>() {
        Ok(v) => Ok(v),
        Err(first) => match flatten_xml_attribute_values(doc) {
            Some(flat) => flat.parse::<T>().map_err(unreadable),
            None => Err(unreadable(first)),
        },
    }
}

/// The document with every AttributeValue that holds elements replaced by text: a single
/// `saml:NameID` as `NameQualifier!SPNameQualifier!value` (the form Shibboleth gives
/// eduPersonTargetedID), anything else as its text content. `None` when no value holds
/// elements (or the document cannot be read), so that the original error stands.
fn flatten_xml_attribute_values(xml: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::reader::NsReader::from_str(xml);
    // (content start, nesting depth of the value, elements seen, NameID seen, text)
    struct Value {
        start: usize,
        depth: usize,
        elements: usize,
        name_id: Option<String>,
        text: String,
    }
    let is_saml =
        |ns: &quick_xml::name::ResolveResult<'_>| preflight::is(ns, preflight::ASSERTION_NS);
    let mut depth = 0usize;
    let mut current: Option<Value> = None;
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let (ns, ev) = reader.read_resolved_event().ok()?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                if let Some(v) = current.as_mut() {
                    v.elements += 1;
                    if v.elements == 1 && is_saml(&ns) && e.local_name().as_ref() == b"NameID" {
                        let q = |n: &[u8]| preflight::attr(e, n).unwrap_or_default();
                        v.name_id = Some(format!(
                            "{}!{}!",
                            q(b"NameQualifier"),
                            q(b"SPNameQualifier")
                        ));
                    }
                } else if !empty && is_saml(&ns) && e.local_name().as_ref() == b"AttributeValue" {
                    current = Some(Value {
                        start: reader.buffer_position() as usize,
                        depth,
                        elements: 0,
                        name_id: None,
                        text: String::new(),
                    });
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                if current.as_ref().is_some_and(|v| v.depth == depth) {
                    let v = current.take()?;
                    if v.elements > 0 {
                        let text = match (v.elements, v.name_id) {
                            (1, Some(prefix)) => format!("{prefix}{}", v.text.trim()),
                            _ => v.text.trim().to_string(),
                        };
                        edits.push((v.start, before, text));
                    }
                }
            }
            Event::Text(ref t) => {
                if let Some(v) = current.as_mut() {
                    v.text
                        .push_str(&t.xml_content(quick_xml::XmlVersion::Implicit1_0).ok()?);
                }
            }
            Event::GeneralRef(ref r) => {
                if let Some(v) = current.as_mut() {
                    let c = r
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .map(String::from)
                        .or_else(|| {
                            quick_xml::escape::resolve_predefined_entity(&r.decode().ok()?)
                                .map(str::to_string)
                        })?;
                    v.text.push_str(&c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(xml.len());
    let mut at = 0;
    for (s, e, text) in edits {
        out.push_str(&xml[at..s]);
        out.push_str(&quick_xml::escape::escape(&text));
        at = e;
    }
    out.push_str(&xml[at..]);
    Some(out)
}

pub(super) fn build(cfg: &SamlConfig, a: &Assertion) -> Result<VerifiedResponse, SamlError> {
    let mut claims = Claims::new();
    for st in a.attribute_statements.iter().flatten() {
        for attr in &st.attributes {
            let values: Vec<Value> = attr
                .values
                .iter()
                .filter_map(|v| v.value.clone())
                .map(Value::String)
                .collect();
            if values.is_empty() {
                continue;
            }
            let v = if values.len() == 1 {
                values[0].clone()
            } else {
                Value::Array(values)
            };
            for key in [&attr.name, &attr.friendly_name].into_iter().flatten() {
                if !key.is_empty() && !claims.contains_key(key) {
                    claims.insert(key.clone(), v.clone());
                }
            }
        }
    }
    let name_id = a
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .filter(|n| !n.value.trim().is_empty())
        .map(|n| super::logout::NameId {
            value: n.value.trim().to_string(),
            format: n.format.clone(),
            ..Default::default()
        });
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
    let session = a.authn_statements.iter().flatten().next();
    let session_index = session.and_then(|s| s.session_index.clone());
    let session_not_on_or_after = session
        .and_then(|s| s.session_not_on_or_after)
        .map(|t| t.timestamp());
    let conditions_end = a.conditions.as_ref().and_then(|c| c.not_on_or_after);
    let confirmation_end = a
        .subject
        .as_ref()
        .and_then(|s| s.subject_confirmations.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.subject_confirmation_data.as_ref()?.not_on_or_after)
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

    const ASSERTION: &str = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>idp</saml:Issuer><saml:Subject><saml:NameID Format="FMT">alice@example.com</saml:NameID></saml:Subject><saml:AuthnStatement AuthnInstant="2026-01-01T00:00:00Z" SessionIndex="s1"/><saml:AttributeStatement><saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3" FriendlyName="mail"><saml:AttributeValue>alice@example.com</saml:AttributeValue></saml:Attribute><saml:Attribute Name="groups"><saml:AttributeValue>a</saml:AttributeValue><saml:AttributeValue>b</saml:AttributeValue></saml:Attribute><saml:Attribute Name="objectGUID"><saml:AttributeValue>g-1</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>"#;

    #[test]
    fn attributes_are_reachable_by_name_and_friendly_name_and_lists_stay_lists() {
        let a: Assertion = ASSERTION.parse().unwrap();
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
        assert!(
            xml.parse::<Assertion>().is_err(),
            "samael alone cannot read it"
        );
        let a: Assertion = parse_verified(&xml).unwrap();
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
        assert!(flatten_xml_attribute_values(ASSERTION).is_none());
    }

    #[test]
    fn the_subject_name_id_qualifiers_are_read_from_the_subject_only() {
        let xml = ASSERTION.replace(
            r#"<saml:NameID Format="FMT">"#,
            r#"<saml:NameID Format="FMT" NameQualifier="https://idp" SPNameQualifier="https://sp">"#,
        );
        assert_eq!(
            subject_name_id_qualifiers(&xml),
            (Some("https://idp".into()), Some("https://sp".into()))
        );
        assert_eq!(subject_name_id_qualifiers(ASSERTION), (None, None));
        // A NameID elsewhere (an attribute value) is not the subject's.
        let elsewhere = ASSERTION.replace(
            r#"<saml:AttributeValue>g-1</saml:AttributeValue>"#,
            r#"<saml:AttributeValue><saml:NameID NameQualifier="x">g</saml:NameID></saml:AttributeValue>"#,
        );
        assert_eq!(subject_name_id_qualifiers(&elsewhere), (None, None));
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
            let a: Assertion = ASSERTION.replace("FMT", format).parse().unwrap();
            let e = build(&strict, &a).unwrap_err();
            assert!(e.to_string().contains("not persistent"), "{format}: {e}");
            assert!(build(&cfg(SamlSubject::NameId), &a).is_ok(), "opted in");
        }
        let no_format: Assertion = ASSERTION.replace(r#" Format="FMT""#, "").parse().unwrap();
        assert!(build(&strict, &no_format).is_err());
        let persistent: Assertion = ASSERTION.replace("FMT", PERSISTENT).parse().unwrap();
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
        let email_format: Assertion = ASSERTION
            .replace(
                "FMT",
                "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            )
            .parse()
            .unwrap();
        assert_eq!(build(&by_attr, &email_format).unwrap().subject, "g-1");
    }

    #[test]
    fn a_transient_name_id_cannot_identify_an_account() {
        let a: Assertion = ASSERTION.replace("FMT", TRANSIENT).parse().unwrap();
        let e = build(&cfg(SamlSubject::NameId), &a).unwrap_err();
        assert!(e.to_string().contains("transient"), "{e}");
    }
}
