//! The verified assertion, read once from the one tree of the bytes its signature (or the
//! Response's) covers, by namespace and local name: issuer, subject with its NameID and
//! qualifiers, confirmations, conditions, authentication statements and attributes.
//!
//! This replaces samael's schema types (whose serde reading matched elements by local name
//! whatever their namespace, dropped the NameID's qualifiers and could not read an attribute
//! value holding XML) and the two walkers that patched those gaps: one reader, one rule.
//! What the schema allows once appears at most once here; a second `Subject`, `Conditions` or
//! `Issuer` is refused rather than one of them chosen.

use super::SamlError;
use super::logout::NameId;
use super::preflight::ASSERTION_NS;
use super::tree::{elements, is, ns, text};
use chrono::{DateTime, NaiveDateTime, Utc};
use roxmltree::Node;

/// A `saml:Assertion` as the checks and the login read it.
#[derive(Debug, Clone, Default)]
pub(super) struct Assertion {
    pub id: String,
    pub version: String,
    pub issue_instant: Option<DateTime<Utc>>,
    pub issuer: Option<String>,
    pub subject: Option<Subject>,
    pub conditions: Option<Conditions>,
    pub authn_statements: Vec<AuthnStatement>,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Subject {
    pub name_id: Option<NameId>,
    pub confirmations: Vec<Confirmation>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Confirmation {
    pub method: Option<String>,
    pub data: Option<ConfirmationData>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct ConfirmationData {
    pub not_before: Option<DateTime<Utc>>,
    pub not_on_or_after: Option<DateTime<Utc>>,
    pub recipient: Option<String>,
    pub in_response_to: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Conditions {
    pub not_before: Option<DateTime<Utc>>,
    pub not_on_or_after: Option<DateTime<Utc>>,
    /// The audiences of each `AudienceRestriction`.
    pub audience_restrictions: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct AuthnStatement {
    pub session_index: Option<String>,
    pub session_not_on_or_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Attribute {
    pub name: String,
    pub friendly_name: Option<String>,
    /// Non-empty values, as text (see [`value_text`]).
    pub values: Vec<String>,
}

fn invalid(what: &str) -> SamlError {
    SamlError::Invalid(format!("it cannot be read ({what})"))
}

/// An xs:dateTime (SAML core 1.3.3: UTC). A value without a zone is read as UTC.
fn instant(n: Node<'_, '_>, name: &str) -> Result<Option<DateTime<Utc>>, SamlError> {
    let Some(raw) = n.attribute(name) else {
        return Ok(None);
    };
    let raw = raw.trim();
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map(Some)
        .map_err(|_| invalid(&format!("{name} is not a time")))
}

/// The `saml:` children named `local`, at most one of them.
fn at_most_one<'a, 'i>(
    parent: Node<'a, 'i>,
    local: &'static str,
) -> Result<Option<Node<'a, 'i>>, SamlError> {
    let saml = ns(ASSERTION_NS);
    let mut found = elements(parent).filter(|c| is(c, saml, local));
    let first = found.next();
    if found.next().is_some() {
        return Err(SamlError::NotOne(local));
    }
    Ok(first)
}

fn children<'a, 'i>(
    parent: Node<'a, 'i>,
    local: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    elements(parent).filter(move |c| is(c, ns(ASSERTION_NS), local))
}

/// A `saml:NameID` with its format and qualifiers.
pub(super) fn name_id(n: Node<'_, '_>) -> NameId {
    NameId {
        value: text(n),
        format: n.attribute("Format").map(str::to_string),
        name_qualifier: n.attribute("NameQualifier").map(str::to_string),
        sp_name_qualifier: n.attribute("SPNameQualifier").map(str::to_string),
    }
}

/// An AttributeValue as text: a single `saml:NameID` (eduPersonTargetedID) as
/// `NameQualifier!SPNameQualifier!value`, the form Shibboleth gives it; anything else as its
/// text content.
fn value_text(v: Node<'_, '_>) -> String {
    let mut inner = elements(v);
    if let (Some(only), None) = (inner.next(), inner.next())
        && is(&only, ns(ASSERTION_NS), "NameID")
    {
        let n = name_id(only);
        return format!(
            "{}!{}!{}",
            n.name_qualifier.unwrap_or_default(),
            n.sp_name_qualifier.unwrap_or_default(),
            n.value
        );
    }
    text(v)
}

impl Assertion {
    /// Reads `node`, which must be a `saml:Assertion` of verified content.
    pub(super) fn read(node: Node<'_, '_>) -> Result<Self, SamlError> {
        if !is(&node, ns(ASSERTION_NS), "Assertion") {
            return Err(invalid("not an assertion"));
        }
        let mut a = Assertion {
            id: node.attribute("ID").unwrap_or_default().to_string(),
            version: node.attribute("Version").unwrap_or_default().to_string(),
            issue_instant: instant(node, "IssueInstant")?,
            issuer: at_most_one(node, "Issuer")?.map(text),
            ..Default::default()
        };
        if let Some(s) = at_most_one(node, "Subject")? {
            let mut subject = Subject {
                name_id: at_most_one(s, "NameID")?.map(name_id),
                ..Default::default()
            };
            for c in children(s, "SubjectConfirmation") {
                let data = match at_most_one(c, "SubjectConfirmationData")? {
                    Some(d) => Some(ConfirmationData {
                        not_before: instant(d, "NotBefore")?,
                        not_on_or_after: instant(d, "NotOnOrAfter")?,
                        recipient: d.attribute("Recipient").map(str::to_string),
                        in_response_to: d.attribute("InResponseTo").map(str::to_string),
                    }),
                    None => None,
                };
                subject.confirmations.push(Confirmation {
                    method: c.attribute("Method").map(str::to_string),
                    data,
                });
            }
            a.subject = Some(subject);
        }
        if let Some(c) = at_most_one(node, "Conditions")? {
            a.conditions = Some(Conditions {
                not_before: instant(c, "NotBefore")?,
                not_on_or_after: instant(c, "NotOnOrAfter")?,
                audience_restrictions: children(c, "AudienceRestriction")
                    .map(|r| children(r, "Audience").map(text).collect())
                    .collect(),
            });
        }
        for s in children(node, "AuthnStatement") {
            a.authn_statements.push(AuthnStatement {
                session_index: s.attribute("SessionIndex").map(str::to_string),
                session_not_on_or_after: instant(s, "SessionNotOnOrAfter")?,
            });
        }
        for st in children(node, "AttributeStatement") {
            for attr in children(st, "Attribute") {
                a.attributes.push(Attribute {
                    name: attr.attribute("Name").unwrap_or_default().to_string(),
                    friendly_name: attr.attribute("FriendlyName").map(str::to_string),
                    values: children(attr, "AttributeValue")
                        .map(value_text)
                        .filter(|v| !v.is_empty())
                        .collect(),
                });
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer> idp </saml:Issuer><saml:Subject><saml:NameID Format="F" NameQualifier="nq" SPNameQualifier="spnq">alice</saml:NameID><saml:SubjectConfirmation Method="m"><saml:SubjectConfirmationData NotOnOrAfter="2026-01-01T00:05:00.123Z" Recipient="r" InResponseTo="q"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="2026-01-01T00:00:00" NotOnOrAfter="2026-01-01T00:05:00Z"><saml:AudienceRestriction><saml:Audience>sp</saml:Audience><saml:Audience>other</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="2026-01-01T00:00:00Z" SessionIndex="s1"/><saml:AttributeStatement><saml:Attribute Name="n" FriendlyName="f"><saml:AttributeValue>x &amp; y</saml:AttributeValue><saml:AttributeValue/></saml:Attribute></saml:AttributeStatement></saml:Assertion>"#;

    fn read(xml: &str) -> Result<Assertion, SamlError> {
        let doc = super::super::tree::parse(xml).unwrap();
        Assertion::read(doc.root_element())
    }

    #[test]
    fn every_part_the_login_uses_is_read_by_namespace_and_local_name() {
        let a = read(A).unwrap();
        assert_eq!((a.id.as_str(), a.version.as_str()), ("a1", "2.0"));
        assert_eq!(a.issuer.as_deref(), Some("idp"));
        let s = a.subject.unwrap();
        let n = s.name_id.unwrap();
        assert_eq!(n.value, "alice");
        assert_eq!(n.name_qualifier.as_deref(), Some("nq"));
        assert_eq!(n.sp_name_qualifier.as_deref(), Some("spnq"));
        let d = s.confirmations[0].data.clone().unwrap();
        assert_eq!(d.recipient.as_deref(), Some("r"));
        assert_eq!(d.not_on_or_after.unwrap().timestamp_subsec_millis(), 123);
        let c = a.conditions.unwrap();
        assert_eq!(c.audience_restrictions, vec![vec!["sp", "other"]]);
        assert!(c.not_before.is_some(), "a time without a zone is UTC");
        assert_eq!(a.authn_statements[0].session_index.as_deref(), Some("s1"));
        assert_eq!(a.attributes[0].values, vec!["x & y"]);
    }

    /// samael's schema matched by local name: an element of another namespace named like a
    /// SAML one was read as the SAML one. Here it is not there at all.
    #[test]
    fn an_element_of_another_namespace_is_not_read_as_the_saml_element() {
        let decoy = A.replace(
            "<saml:Subject>",
            r#"<x:Subject xmlns:x="urn:evil"><x:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">root</x:NameID></x:Subject><saml:Subject>"#,
        );
        let a = read(&decoy).unwrap();
        assert_eq!(a.subject.unwrap().name_id.unwrap().value, "alice");
        let only_foreign = A
            .replace("saml:Subject", "x:Subject")
            .replace("<x:Subject>", r#"<x:Subject xmlns:x="urn:evil">"#);
        assert!(read(&only_foreign).unwrap().subject.is_none());
    }

    #[test]
    fn a_second_subject_conditions_or_issuer_is_refused_rather_than_one_chosen() {
        for (from, to) in [
            (
                "<saml:Subject>",
                "<saml:Subject><saml:NameID>x</saml:NameID></saml:Subject><saml:Subject>",
            ),
            ("<saml:Conditions ", "<saml:Conditions/><saml:Conditions "),
            ("<saml:Issuer>", "<saml:Issuer>x</saml:Issuer><saml:Issuer>"),
        ] {
            let e = read(&A.replace(from, to)).unwrap_err();
            assert!(matches!(e, SamlError::NotOne(_)), "{from}: {e}");
        }
    }

    #[test]
    fn a_time_that_is_not_a_time_makes_the_assertion_unreadable() {
        let e = read(&A.replace("2026-01-01T00:05:00Z", "soon")).unwrap_err();
        assert!(e.to_string().contains("NotOnOrAfter"), "{e}");
    }

    #[test]
    fn an_attribute_value_holding_a_name_id_is_read_as_qualified_text() {
        let xml = A.replace(
            "<saml:AttributeValue>x &amp; y</saml:AttributeValue>",
            r#"<saml:AttributeValue><saml:NameID NameQualifier="https://idp" SPNameQualifier="https://sp">x&amp;1</saml:NameID></saml:AttributeValue><saml:AttributeValue><b>bold</b> text</saml:AttributeValue>"#,
        );
        let a = read(&xml).unwrap();
        assert_eq!(
            a.attributes[0].values,
            vec!["https://idp!https://sp!x&1", "bold text"]
        );
    }
}
