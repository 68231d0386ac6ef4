//! Single logout messages (SAML core 3.7): samael has the types but no helpers, and its
//! `LogoutRequest` reads `SessionIndex` as an attribute where the schema has elements, so the
//! messages are written and read here with quick-xml.

use super::SamlError;
use super::preflight::{self, ASSERTION_NS, PROTOCOL_NS};
use super::tree::{elements, is, ns, text};
use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
pub const STATUS_REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";

/// The NameID a session was established with, echoed in our LogoutRequest with its
/// qualifiers (core 3.7.1: the IdP matches the whole identifier, and Shibboleth and ADFS refuse
/// a LogoutRequest whose NameID lost its SPNameQualifier).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NameId {
    pub value: String,
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_qualifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_name_qualifier: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn write(f: impl FnOnce(&mut Writer<Vec<u8>>) -> std::io::Result<()>) -> String {
    let mut w = Writer::new(Vec::new());
    f(&mut w).expect("writing to memory does not fail");
    String::from_utf8(w.into_inner()).expect("quick-xml writes UTF-8")
}

fn text_element(
    w: &mut Writer<Vec<u8>>,
    name: &str,
    attrs: &[(&str, &str)],
    text: &str,
) -> std::io::Result<()> {
    let mut start = BytesStart::new(name);
    for (k, v) in attrs {
        start.push_attribute((*k, *v));
    }
    w.write_event(Event::Start(start))?;
    w.write_event(Event::Text(BytesText::new(text)))?;
    w.write_event(Event::End(BytesEnd::new(name)))?;
    Ok(())
}

/// The start tag of a protocol message, with the attributes every one carries.
fn message_root<'a>(name: &'a str, id: &str, destination: &str) -> BytesStart<'a> {
    let mut root = BytesStart::new(name);
    root.push_attribute(("xmlns:samlp", "urn:oasis:names:tc:SAML:2.0:protocol"));
    root.push_attribute(("xmlns:saml", "urn:oasis:names:tc:SAML:2.0:assertion"));
    root.push_attribute(("ID", id));
    root.push_attribute(("Version", "2.0"));
    root.push_attribute(("IssueInstant", now().as_str()));
    root.push_attribute(("Destination", destination));
    root
}

/// An SP-initiated `LogoutRequest` for the IdP's SLO endpoint.
pub fn logout_request_xml(
    id: &str,
    issuer: &str,
    destination: &str,
    name_id: &NameId,
    session_index: Option<&str>,
) -> String {
    write(|w| {
        w.write_event(Event::Start(message_root(
            "samlp:LogoutRequest",
            id,
            destination,
        )))?;
        text_element(w, "saml:Issuer", &[], issuer)?;
        let attrs: Vec<(&str, &str)> = [
            ("NameQualifier", &name_id.name_qualifier),
            ("SPNameQualifier", &name_id.sp_name_qualifier),
            ("Format", &name_id.format),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
        text_element(w, "saml:NameID", &attrs, &name_id.value)?;
        if let Some(si) = session_index {
            text_element(w, "samlp:SessionIndex", &[], si)?;
        }
        w.write_event(Event::End(BytesEnd::new("samlp:LogoutRequest")))?;
        Ok(())
    })
}

/// A `LogoutResponse` answering the IdP's `LogoutRequest`.
pub fn logout_response_xml(
    id: &str,
    issuer: &str,
    destination: &str,
    in_response_to: &str,
    status: &str,
) -> String {
    write(|w| {
        let mut root = message_root("samlp:LogoutResponse", id, destination);
        root.push_attribute(("InResponseTo", in_response_to));
        w.write_event(Event::Start(root))?;
        text_element(w, "saml:Issuer", &[], issuer)?;
        w.write_event(Event::Start(BytesStart::new("samlp:Status")))?;
        let mut code = BytesStart::new("samlp:StatusCode");
        code.push_attribute(("Value", status));
        w.write_event(Event::Empty(code))?;
        w.write_event(Event::End(BytesEnd::new("samlp:Status")))?;
        w.write_event(Event::End(BytesEnd::new("samlp:LogoutResponse")))?;
        Ok(())
    })
}

/// What we read of a received logout message (request or response).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogoutMessage {
    pub id: Option<String>,
    pub in_response_to: Option<String>,
    pub destination: Option<String>,
    pub issue_instant: Option<String>,
    pub not_on_or_after: Option<String>,
    pub issuer: Option<String>,
    pub name_id: Option<NameId>,
    pub session_indexes: Vec<String>,
    pub status: Option<String>,
}

/// Reads a `LogoutRequest` or `LogoutResponse` (`root`) after the preflight refusals, from
/// one tree of the message (the HTTP-Redirect signature covers all of it), by namespace and
/// local name.
pub fn parse(xml: &str, root: &'static str) -> Result<LogoutMessage, SamlError> {
    preflight::scan(xml, root)?;
    let bad = |m: &str| SamlError::Logout(m.to_string());
    let doc = super::tree::parse(xml).map_err(|_| bad("malformed XML"))?;
    let r = doc.root_element();
    let (saml, samlp) = (ns(ASSERTION_NS), ns(PROTOCOL_NS));
    if !is(&r, samlp, root) {
        return Err(bad("not the expected logout message"));
    }
    let one = |local: &str, in_ns: &str| -> Result<Option<roxmltree::Node<'_, '_>>, SamlError> {
        let mut it = elements(r).filter(|c| is(c, in_ns, local));
        match (it.next(), it.next()) {
            (first, None) => Ok(first),
            _ => Err(bad(&format!("more than one {local}"))),
        }
    };
    if one("EncryptedID", saml)?.is_some() {
        return Err(bad(
            "encrypted NameIDs in logout requests are not supported",
        ));
    }
    let attr = |name: &str| r.attribute(name).map(str::to_string);
    Ok(LogoutMessage {
        id: attr("ID"),
        in_response_to: attr("InResponseTo"),
        destination: attr("Destination"),
        status: one("Status", samlp)?
            .and_then(|st| super::tree::child(st, samlp, "StatusCode"))
            .and_then(|c| c.attribute("Value"))
            .map(str::to_string),
        issue_instant: attr("IssueInstant"),
        not_on_or_after: attr("NotOnOrAfter"),
        issuer: one("Issuer", saml)?.map(text),
        name_id: one("NameID", saml)?.map(super::assertion::name_id),
        session_indexes: elements(r)
            .filter(|c| is(c, samlp, "SessionIndex"))
            .map(text)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_logout_request_reads_back() {
        let n = NameId {
            value: "alice&bob@example.com".into(),
            format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
            name_qualifier: Some("https://idp.example.org".into()),
            sp_name_qualifier: Some("https://sp.example.com/metadata".into()),
        };
        let xml = logout_request_xml("id1", "https://sp", "https://idp/slo", &n, Some("s<1>"));
        let m = parse(&xml, "LogoutRequest").unwrap();
        assert_eq!(m.id.as_deref(), Some("id1"));
        assert_eq!(m.issuer.as_deref(), Some("https://sp"));
        assert_eq!(m.destination.as_deref(), Some("https://idp/slo"));
        assert_eq!(m.name_id, Some(n));
        assert_eq!(m.session_indexes, vec!["s<1>".to_string()]);
        assert!(m.issue_instant.is_some());
    }

    #[test]
    fn a_written_logout_response_reads_back() {
        let xml = logout_response_xml(
            "id2",
            "https://sp",
            "https://idp/slo",
            "req9",
            STATUS_SUCCESS,
        );
        let m = parse(&xml, "LogoutResponse").unwrap();
        assert_eq!(m.in_response_to.as_deref(), Some("req9"));
        assert_eq!(m.status.as_deref(), Some(STATUS_SUCCESS));
        assert!(parse(&xml, "LogoutRequest").is_err());
    }
}
