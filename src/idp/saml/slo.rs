//! Single logout, the adapter's side: what a received LogoutRequest must satisfy before it
//! ends anything (signature, issuer, Destination, time window, ID, NameID), its replay key,
//! and the NameID in the protocol-neutral form that sessions are indexed by
//! ([`principal`]). The web handler parses the HTTP request, calls these checks, ends the
//! sessions through the lifecycle apply path and renders the answer; the messages themselves
//! are written and read in [`super::logout`].

use super::logout::{self, NameId};
use super::redirect::RedirectMessage;
use super::{IdpView, SamlError};
use crate::config::{SamlConfig, SamlSubject};
use crate::idp::IdpPrincipal;
use serde::Deserialize;

/// A NameID as sessions are indexed by it: the key is the NameID as SAML compares
/// identifiers (core 2.2.3), its value with its NameQualifier and SPNameQualifier, where an
/// absent qualifier matches only an absent one (never an empty one, never any); the Format is
/// not part of it. The logout reference is the whole NameID, echoed in our LogoutRequest.
///
/// The key's bytes are those the first release built its index keys from (sessions in Redis
/// are indexed by them): they must not change.
pub fn principal(n: &NameId) -> IdpPrincipal {
    IdpPrincipal {
        key: principal_key(n),
        logout_ref: serde_json::to_value(n).expect("a NameID serializes"),
    }
}

fn principal_key(n: &NameId) -> String {
    let q = |v: &Option<String>| match v {
        None => "\u{1}".to_string(),
        Some(s) => format!("\u{2}{s}"),
    };
    format!(
        "{}\u{0}{}\u{0}{}",
        q(&n.name_qualifier),
        q(&n.sp_name_qualifier),
        n.value
    )
}

/// The NameID of a session's logout reference ([`IdpPrincipal::logout_ref`]), for our
/// LogoutRequest; `None` when the reference is not one (not a SAML session).
pub fn name_id_of(logout_ref: &serde_json::Value) -> Option<NameId> {
    NameId::deserialize(logout_ref).ok()
}

/// A LogoutRequest from the IdP that passed every check but the replay check, which needs
/// the store (see [`Self::replay_key`]) and is made before [`Self::target`].
#[derive(Debug)]
pub struct CheckedLogoutRequest {
    /// Its ID, which our LogoutResponse answers (InResponseTo).
    pub id: String,
    /// Recorded once the sessions ended (a failure must leave the IdP's retry of the same
    /// request welcome); a request whose key is recorded is a replay.
    pub replay_key: String,
    name_id: Option<NameId>,
    session_indexes: Vec<String>,
}

/// The sessions a LogoutRequest names, in protocol-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutTarget {
    /// The NameID's [`principal`] key.
    pub principal: String,
    /// The connection's subject, when the NameID is it: without SessionIndex, every session
    /// of its account ends too.
    pub subject: Option<String>,
    /// The IdP sessions to end; none means every session of the principal.
    pub session_indexes: Vec<String>,
}

fn bad(m: &str) -> SamlError {
    SamlError::Logout(m.to_string())
}

/// Checks a LogoutRequest that came over HTTP-Redirect (`xml` is its decoded payload) for
/// connection `connection`: it ends sessions, so it must be signed by the IdP (SAML profiles
/// 4.4.4.1), issued by it, sent to our SLO endpoint, recent and not expired, and have an ID.
pub fn check_logout_request(
    cfg: &SamlConfig,
    idp: &IdpView,
    connection: &str,
    msg: &RedirectMessage,
    xml: &str,
) -> Result<CheckedLogoutRequest, SamlError> {
    msg.verify(&idp.certs, &cfg.signature_algorithms)?;
    let lr = logout::parse(xml, "LogoutRequest")?;
    if lr.issuer.as_deref() != Some(idp.entity_id.as_str()) {
        return Err(bad("it was issued by another identity provider"));
    }
    // A signed message names where it was sent (bindings 3.4.5.2): without it, a LogoutRequest
    // the IdP signed for another SP (which may share our NameIDs) would end sessions here.
    match lr.destination.as_deref() {
        Some(d) if d == cfg.slo_url.as_str() => {}
        Some(_) => return Err(bad("it was sent to another endpoint (Destination)")),
        None => return Err(bad("it names no Destination, which a signed message must")),
    }
    let now = chrono::Utc::now();
    let skew = chrono::Duration::from_std(cfg.clock_skew).unwrap_or_default();
    let parse_time =
        |t: &str| chrono::DateTime::parse_from_rfc3339(t).map(|d| d.with_timezone(&chrono::Utc));
    match lr.issue_instant.as_deref().map(parse_time) {
        Some(Ok(t)) if t - skew <= now && t + chrono::Duration::minutes(5) + skew >= now => {}
        _ => {
            return Err(bad(
                "its IssueInstant is missing or outside the accepted window",
            ));
        }
    }
    if let Some(end) = lr.not_on_or_after.as_deref() {
        match parse_time(end) {
            Ok(t) if t + skew > now => {}
            _ => return Err(bad("it has expired (NotOnOrAfter)")),
        }
    }
    let id = lr
        .id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("it has no ID"))?;
    Ok(CheckedLogoutRequest {
        replay_key: logout_replay_key(connection, &id),
        id,
        name_id: lr.name_id,
        session_indexes: lr.session_indexes,
    })
}

/// The replay key of a LogoutRequest: its ID within the connection.
fn logout_replay_key(connection: &str, id: &str) -> String {
    format!("saml-logout\u{0}{connection}\u{0}{id}")
}

impl CheckedLogoutRequest {
    /// The sessions the request names. SessionIndex names the IdP sessions to end; without
    /// one, every session established with the NameID (and, when the NameID is the subject,
    /// every session of its account). A request without a NameID is refused here, after the
    /// replay check, so that a replay is reported as one.
    pub fn target(&self, cfg: &SamlConfig) -> Result<LogoutTarget, SamlError> {
        let name_id = self
            .name_id
            .as_ref()
            .ok_or_else(|| bad("it names no NameID"))?;
        let subject = match &cfg.subject {
            SamlSubject::NameId => Some(name_id.value.clone()),
            SamlSubject::Attribute(_) => None,
        };
        Ok(LogoutTarget {
            principal: principal_key(name_id),
            subject,
            session_indexes: self.session_indexes.clone(),
        })
    }
}

impl CheckedLogoutRequest {
    /// Our LogoutResponse to the request with `status`, and the IdP's SLO endpoint it goes
    /// to (refused when the IdP's metadata names none).
    pub fn answer(
        &self,
        cfg: &SamlConfig,
        idp: &IdpView,
        status: &str,
    ) -> Result<(url::Url, String), SamlError> {
        let dest = idp
            .slo_redirect
            .clone()
            .ok_or_else(|| bad("the IdP metadata has no SingleLogoutService to answer to"))?;
        let xml = logout::logout_response_xml(
            &super::new_message_id(),
            &cfg.entity_id,
            dest.as_str(),
            &self.id,
            status,
        );
        Ok((dest, xml))
    }
}

/// Our LogoutRequest for a session the SP ended, `(its ID, its XML)`, or `None` when the
/// session's logout reference holds no NameID.
pub fn logout_request(
    cfg: &SamlConfig,
    destination: &str,
    logout_ref: &serde_json::Value,
    session_index: Option<&str>,
) -> Option<(String, String)> {
    let name_id = name_id_of(logout_ref)?;
    let id = super::new_message_id();
    let xml = logout::logout_request_xml(&id, &cfg.entity_id, destination, &name_id, session_index);
    Some((id, xml))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_id(nq: Option<&str>, spnq: Option<&str>, value: &str) -> NameId {
        NameId {
            value: value.into(),
            format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
            name_qualifier: nq.map(str::to_string),
            sp_name_qualifier: spnq.map(str::to_string),
        }
    }

    /// The session store's test pins the index keys built from these strings: together they
    /// pin the bytes the first release indexed SAML sessions by.
    #[test]
    fn a_name_id_principal_is_the_first_release_identity_string() {
        assert_eq!(
            principal(&name_id(None, None, "alice@example.com")).key,
            "\u{1}\u{0}\u{1}\u{0}alice@example.com"
        );
        assert_eq!(
            principal(&name_id(
                Some("https://idp.example.org"),
                Some("https://sp.example.com/metadata"),
                "alice@example.com"
            ))
            .key,
            "\u{2}https://idp.example.org\u{0}\u{2}https://sp.example.com/metadata\u{0}alice@example.com"
        );
        assert_eq!(
            principal(&name_id(Some(""), None, "bob")).key,
            "\u{2}\u{0}\u{1}\u{0}bob"
        );
        // The Format is not part of the identifier.
        let mut other_format = name_id(None, None, "alice@example.com");
        other_format.format = None;
        assert_eq!(
            principal(&other_format).key,
            principal(&name_id(None, None, "alice@example.com")).key
        );
    }

    /// The logout reference is the NameID in the shape the first release stored it in
    /// (`name_id` of a session record), and it reads back whole.
    #[test]
    fn a_logout_reference_is_the_stored_name_id_and_reads_back() {
        let n = name_id(Some("https://idp"), None, "alice");
        let p = principal(&n);
        assert_eq!(
            p.logout_ref,
            serde_json::json!({
                "value": "alice",
                "format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                "name_qualifier": "https://idp",
            })
        );
        assert_eq!(name_id_of(&p.logout_ref), Some(n));
        assert_eq!(name_id_of(&serde_json::json!("x")), None);
    }

    #[test]
    fn the_logout_replay_key_is_that_of_the_first_release() {
        assert_eq!(logout_replay_key("c", "id1"), "saml-logout\u{0}c\u{0}id1");
    }
}
