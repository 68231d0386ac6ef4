//! The checks SAML core and the Web Browser SSO profile ask of a verified Response and its
//! Assertion, run on the one tree of exactly the content the signatures cover (the Response
//! root as a node, the assertion as [`super::assertion::Assertion`] read from it).
//!
//! These were samael's `ServiceProvider` checks plus what it left to its callers (a required
//! AudienceRestriction, IssueInstant not in the future, SessionNotOnOrAfter); they live here
//! since the signature check moved to [`super::dsig`], and are stricter where samael was lax:
//! a signed Response must carry our Destination (bindings 3.5.5.2), and an unsolicited
//! assertion must not claim to answer a request (profiles 4.1.4.2).

use super::SamlError;
use super::assertion::Assertion;
use super::preflight::{ASSERTION_NS, PROTOCOL_NS};
use super::tree::{child, ns};
use crate::config::SamlConfig;
use chrono::{DateTime, Duration, Utc};

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// How long after its IssueInstant a message is still accepted (plus the clock skew).
const MAX_ISSUE_DELAY: Duration = Duration::seconds(90);

/// What a check compares against: our endpoints, the IdP, the outstanding request, the time.
pub(super) struct Expect<'a> {
    pub cfg: &'a SamlConfig,
    pub idp_entity_id: &'a str,
    /// The id of our AuthnRequest; `None` for an unsolicited response.
    pub request_id: Option<&'a str>,
    pub now: DateTime<Utc>,
}

impl Expect<'_> {
    fn skew(&self) -> Duration {
        Duration::from_std(self.cfg.clock_skew).unwrap_or_default()
    }

    fn issued_recently(&self, at: DateTime<Utc>) -> Result<(), SamlError> {
        if at > self.now + self.skew() {
            return Err(SamlError::Invalid(
                "it is not valid yet (IssueInstant)".into(),
            ));
        }
        if at + MAX_ISSUE_DELAY + self.skew() < self.now {
            return Err(SamlError::Invalid("it has expired (IssueInstant)".into()));
        }
        Ok(())
    }

    fn issuer(&self, value: Option<&str>) -> Result<(), SamlError> {
        if value.map(str::trim) != Some(self.idp_entity_id) {
            return Err(SamlError::Invalid(
                "it was issued by another identity provider (Issuer)".into(),
            ));
        }
        Ok(())
    }
}

/// The protocol message around the assertion, when its signature covers it: the root of the
/// tree of its verified bytes, read by namespace and local name.
pub(super) fn response(r: roxmltree::Node<'_, '_>, e: &Expect<'_>) -> Result<(), SamlError> {
    if r.attribute("Version") != Some("2.0") {
        return Err(SamlError::Version);
    }
    if r.attribute("Destination") != Some(e.cfg.acs_url.as_str()) {
        return Err(SamlError::Destination);
    }
    match (e.request_id, r.attribute("InResponseTo")) {
        (Some(want), Some(got)) if want == got => {}
        (None, None) => {}
        _ => return Err(SamlError::InResponseTo),
    }
    let issued = r
        .attribute("IssueInstant")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| SamlError::Invalid("it has no valid IssueInstant".into()))?;
    e.issued_recently(issued.with_timezone(&Utc))?;
    let (saml, samlp) = (ns(ASSERTION_NS), ns(PROTOCOL_NS));
    if let Some(issuer) = child(r, saml, "Issuer") {
        e.issuer(issuer.text())?;
    }
    let status = child(r, samlp, "Status")
        .and_then(|s| child(s, samlp, "StatusCode"))
        .and_then(|c| c.attribute("Value"));
    match status {
        Some(STATUS_SUCCESS) => Ok(()),
        Some(other) => Err(SamlError::Status(super::response::short_status(other))),
        None => Err(SamlError::Invalid("the response has no Status".into())),
    }
}

/// The assertion: issuer, time windows, audience, bearer confirmation, IdP session.
pub(super) fn assertion(a: &Assertion, e: &Expect<'_>) -> Result<(), SamlError> {
    if a.version != "2.0" {
        return Err(SamlError::Version);
    }
    // The browser SSO profile (4.1.4.2): a login assertion says that someone authenticated.
    if a.authn_statements.is_empty() {
        return Err(SamlError::NoAuthnStatement);
    }
    let issued = a
        .issue_instant
        .ok_or_else(|| SamlError::Invalid("it has no valid IssueInstant".into()))?;
    e.issued_recently(issued)?;
    e.issuer(a.issuer.as_deref())?;
    let (now, skew) = (e.now, e.skew());
    let conditions = a.conditions.as_ref().ok_or(SamlError::Audience)?;
    if conditions.not_before.is_some_and(|t| now < t - skew) {
        return Err(SamlError::Invalid("it is not valid yet".into()));
    }
    if conditions.not_on_or_after.is_some_and(|t| t + skew <= now) {
        return Err(SamlError::Invalid("it has expired".into()));
    }
    // An AudienceRestriction is required, and each one present must name us (core 2.5.1.4).
    let restrictions = &conditions.audience_restrictions;
    if restrictions.is_empty()
        || !restrictions
            .iter()
            .all(|r| r.iter().any(|aud| aud == &e.cfg.entity_id))
    {
        return Err(SamlError::Audience);
    }
    bearer_confirmation(a, e)?;
    for st in &a.authn_statements {
        if st
            .session_not_on_or_after
            .is_some_and(|end| end + skew <= now)
        {
            return Err(SamlError::SessionEnded);
        }
    }
    Ok(())
}

/// At least one bearer SubjectConfirmation must hold entirely (profiles 4.1.4.2); when none
/// does, the first reason is reported.
fn bearer_confirmation(a: &Assertion, e: &Expect<'_>) -> Result<(), SamlError> {
    let (now, skew) = (e.now, e.skew());
    let bearers = a
        .subject
        .as_ref()
        .map(|s| s.confirmations.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.method.as_deref() == Some(BEARER));
    let mut first = None;
    for c in bearers {
        let outcome = (|| {
            let d = c.data.as_ref().ok_or_else(no_bearer)?;
            if d.not_before.is_some_and(|t| now < t - skew) {
                return Err(SamlError::Invalid("it is not valid yet".into()));
            }
            match d.not_on_or_after {
                Some(t) if t + skew > now => {}
                Some(_) => return Err(SamlError::Invalid("it has expired".into())),
                None => return Err(no_bearer()),
            }
            if d.recipient.as_deref() != Some(e.cfg.acs_url.as_str()) {
                return Err(SamlError::Invalid(
                    "it was meant for another endpoint (Recipient)".into(),
                ));
            }
            if d.in_response_to.as_deref() != e.request_id {
                return Err(SamlError::InResponseTo);
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => return Ok(()),
            Err(err) => {
                first.get_or_insert(err);
            }
        }
    }
    Err(first.unwrap_or_else(no_bearer))
}

fn no_bearer() -> SamlError {
    SamlError::Invalid("it has no usable bearer SubjectConfirmation".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDP: &str = "https://idp.example.com";

    fn cfg() -> SamlConfig {
        super::super::test_config("")
    }

    fn at(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// An assertion as an IdP sends it to `cfg()`, answering `_req` unless `irt` says otherwise.
    fn assertion_xml(cfg: &SamlConfig, irt: Option<&str>, recipient: &str) -> String {
        let now = Utc::now();
        let (t, later) = (at(now), at(now + Duration::minutes(5)));
        let irt = irt
            .map(|i| format!(r#" InResponseTo="{i}""#))
            .unwrap_or_default();
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a" Version="2.0" IssueInstant="{t}"><saml:Issuer>{IDP}</saml:Issuer><saml:Subject><saml:NameID>alice</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{later}" Recipient="{recipient}"{irt}/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{t}" NotOnOrAfter="{later}"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{t}" SessionIndex="s1"/></saml:Assertion>"#,
            aud = cfg.entity_id
        )
    }

    fn parse(xml: &str) -> Assertion {
        let doc = super::super::tree::parse(xml).unwrap();
        Assertion::read(doc.root_element()).unwrap()
    }

    fn expect<'a>(cfg: &'a SamlConfig, request_id: Option<&'a str>) -> Expect<'a> {
        Expect {
            cfg,
            idp_entity_id: IDP,
            request_id,
            now: Utc::now(),
        }
    }

    #[test]
    fn an_assertion_answering_our_request_passes_and_the_checks_can_fail() {
        let cfg = cfg();
        let acs = cfg.acs_url.to_string();
        let ok = parse(&assertion_xml(&cfg, Some("_req"), &acs));
        assertion(&ok, &expect(&cfg, Some("_req"))).unwrap();
        let e = assertion(&ok, &expect(&cfg, Some("_other"))).unwrap_err();
        assert!(matches!(e, SamlError::InResponseTo), "{e}");
        let elsewhere = parse(&assertion_xml(
            &cfg,
            Some("_req"),
            "https://evil.example/acs",
        ));
        let e = assertion(&elsewhere, &expect(&cfg, Some("_req"))).unwrap_err();
        assert!(e.to_string().contains("Recipient"), "{e}");
        let mut late = expect(&cfg, Some("_req"));
        late.now += Duration::minutes(30);
        let e = assertion(&ok, &late).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        let mut early = expect(&cfg, Some("_req"));
        early.now -= Duration::minutes(30);
        let e = assertion(&ok, &early).unwrap_err();
        assert!(e.to_string().contains("not valid yet"), "{e}");
    }

    /// An assertion that does not say anyone authenticated (attribute or authorization
    /// statements only) or is not SAML 2.0 is no login.
    #[test]
    fn an_assertion_without_an_authn_statement_or_of_another_version_is_refused() {
        let cfg = cfg();
        let acs = cfg.acs_url.to_string();
        let xml = assertion_xml(&cfg, Some("_req"), &acs);
        let re = regex::Regex::new(r"<saml:AuthnStatement [^>]*/>").unwrap();
        let bare = parse(&re.replace(&xml, ""));
        let e = assertion(&bare, &expect(&cfg, Some("_req"))).unwrap_err();
        assert!(matches!(e, SamlError::NoAuthnStatement), "{e}");
        let old = parse(&xml.replace("Version=\"2.0\"", "Version=\"2.1\""));
        let e = assertion(&old, &expect(&cfg, Some("_req"))).unwrap_err();
        assert!(matches!(e, SamlError::Version), "{e}");
    }

    /// An unsolicited assertion that names a request answers somebody else's login.
    #[test]
    fn an_unsolicited_assertion_must_not_claim_to_answer_a_request() {
        let cfg = cfg();
        let acs = cfg.acs_url.to_string();
        let unsolicited = parse(&assertion_xml(&cfg, None, &acs));
        assertion(&unsolicited, &expect(&cfg, None)).unwrap();
        let claims = parse(&assertion_xml(&cfg, Some("_req"), &acs));
        let e = assertion(&claims, &expect(&cfg, None)).unwrap_err();
        assert!(matches!(e, SamlError::InResponseTo), "{e}");
    }

    /// Bindings 3.5.5.2: a signed message names where it was sent.
    #[test]
    fn a_signed_response_without_our_destination_is_refused() {
        let cfg = cfg();
        let r = |dest: &str| -> String {
            format!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" Version="2.0" IssueInstant="{}" InResponseTo="_req"{dest}><samlp:Status><samlp:StatusCode Value="{STATUS_SUCCESS}"/></samlp:Status></samlp:Response>"#,
                at(Utc::now())
            )
        };
        let check = |xml: &str, req: Option<&str>| {
            let doc = roxmltree::Document::parse(xml).unwrap();
            response(doc.root_element(), &expect(&cfg, req))
        };
        let ok = r(&format!(r#" Destination="{}""#, cfg.acs_url));
        check(&ok, Some("_req")).unwrap();
        for bad in ["", r#" Destination="https://evil.example/acs""#] {
            let e = check(&r(bad), Some("_req")).unwrap_err();
            assert!(matches!(e, SamlError::Destination), "{bad}: {e}");
        }
        let e = check(&ok, None).unwrap_err();
        assert!(matches!(e, SamlError::InResponseTo), "{e}");
        // SAML core 3.2.2: only Version 2.0 is ours.
        let e = check(
            &ok.replace("Version=\"2.0\"", "Version=\"1.1\""),
            Some("_req"),
        )
        .unwrap_err();
        assert!(matches!(e, SamlError::Version), "{e}");
    }
}
