//! Assertions of shapes samlp never writes (two AuthnStatements, a qualified NameID), made from
//! a real response of the test IdP: the assertion is edited, then signed again with the IdP's
//! own key, so that the bridge sees an assertion its IdP genuinely signed.

use super::{PostedResponse, SamlApp, SamlOptions, spawn};
use crate::helpers::Browser;
use samael::crypto::{Crypto, CryptoProvider};
use serde_json::json;

/// A SAML app whose IdP signs the assertion only, so that [`resign`] has one signature to
/// redo.
pub(super) async fn resigning_app(opts: SamlOptions) -> SamlApp {
    let app = spawn(opts).await;
    app.idp.configure(json!({ "sign": "assertion" })).await;
    app
}

/// `p` with its XML passed through `edit` and its assertion signed again by the IdP's key.
pub(super) fn resign(
    app: &SamlApp,
    p: &PostedResponse,
    edit: impl FnOnce(&str) -> String,
) -> PostedResponse {
    let xml = edit(&p.xml());
    assert_ne!(xml, p.xml(), "the edit changed nothing");
    // The IdP's signature, emptied, is the template libxmlsec1 signs again.
    let values = regex::Regex::new(
        r"(?s)<((?:\w+:)?(?:DigestValue|SignatureValue))>[^<]*</((?:\w+:)?(?:DigestValue|SignatureValue))>",
    )
    .unwrap();
    let template = values.replace_all(&xml, "<$1></$2>").into_owned();
    let pem = std::fs::read(app.dir.join("idp.key")).unwrap();
    let der = openssl::pkey::PKey::private_key_from_pem(&pem)
        .unwrap()
        .private_key_to_der()
        .unwrap();
    let signed = Crypto::sign_xml(template.as_bytes(), &der).expect("the IdP's key signs");
    p.with_xml(&signed)
}

/// The session record a successful ACS answer set the cookie of.
pub(super) async fn session_of(
    app: &SamlApp,
    r: &reqwest::Response,
) -> jitbridge::session::SessionRecord {
    let id = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("jitbridge="))
        .and_then(|v| v.split(';').next())
        .and_then(jitbridge::session::SessionId::parse)
        .expect("a session cookie");
    app.state
        .sessions
        .get(&id)
        .await
        .unwrap()
        .expect("the session exists")
}

/// The session took its end from the first AuthnStatement's SessionNotOnOrAfter only: an
/// assertion whose second statement says the IdP's session ends sooner gave a session that
/// outlived the IdP's (fixed in f1adfdd: the earliest over every statement caps it).
#[tokio::test]
async fn a_later_authn_statement_cannot_extend_the_session_past_an_earlier_session_not_on_or_after()
{
    let app = resigning_app(SamlOptions::default()).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    let at = |minutes: i64| {
        let t = chrono::Utc::now() + chrono::Duration::minutes(minutes);
        (t.format("%Y-%m-%dT%H:%M:%SZ").to_string(), t.timestamp())
    };
    let ((late, _), (early, early_ts)) = (at(120), at(20));
    let forged = resign(&app, &p, |xml| {
        // samlp writes one AuthnStatement: it ends late, and a second one ends early.
        let statement = regex::Regex::new(r"(?s)<saml:AuthnStatement .*?</saml:AuthnStatement>")
            .unwrap()
            .find(xml)
            .expect("an AuthnStatement")
            .as_str()
            .to_string();
        let ending = |end: &str| {
            statement.replacen(
                "<saml:AuthnStatement ",
                &format!(r#"<saml:AuthnStatement SessionNotOnOrAfter="{end}" "#),
                1,
            )
        };
        xml.replacen(
            &statement,
            &format!("{}{}", ending(&late), ending(&early)),
            1,
        )
    });
    let r = app.post(&b, &forged).await;
    assert_eq!(r.status(), 303, "the re-signed assertion is accepted");
    let session = session_of(&app, &r).await;
    assert_eq!(
        session.expires_at, early_ts,
        "the session ends at the earlier SessionNotOnOrAfter"
    );
}

/// The response of a fresh login of alice, her NameID carrying `qualifiers` (attributes), signed
/// again by the IdP.
async fn qualified(app: &SamlApp, b: &Browser, qualifiers: &str) -> PostedResponse {
    let p = app.login_until_post(b, "alice", "/").await;
    resign(app, &p, |xml| {
        xml.replacen("<saml:NameID ", &format!("<saml:NameID {qualifiers} "), 1)
    })
}

/// The account key is the NameID's value alone: a NameID of the same value that another
/// identity provider qualifies (SAML core 8.3.7: unique only with its qualifiers) logged in as
/// the account of this IdP's person, and a LogoutRequest naming it ended that account's
/// sessions.
#[tokio::test]
async fn a_name_id_qualified_by_another_identity_provider_is_not_taken_for_ours() {
    let app = resigning_app(SamlOptions::default()).await;
    let b = Browser::new();
    assert_eq!(app.login(&b, "alice").await.status(), 303);
    let b = Browser::new();
    let forged = qualified(&app, &b, r#"NameQualifier="https://other-idp.example""#).await;
    super::attacks::refused(&app, &b, &forged, "saml_name_qualifier", "NameQualifier").await;
    // The IdP's own entityID, and ours, qualify it as before.
    let b = Browser::new();
    let own = format!(
        r#"NameQualifier="{}" SPNameQualifier="{}/saml/{}/metadata""#,
        app.idp.entity_id,
        app.base,
        super::CONNECTION
    );
    let r = app.post(&b, &qualified(&app, &b, &own).await).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(app.account_count().await, 1);
}

/// The same for a NameID the IdP issued for another service provider (SPNameQualifier): it is
/// that provider's identifier of the person, not ours.
#[tokio::test]
async fn a_name_id_issued_for_another_service_provider_is_not_taken_for_ours() {
    let app = resigning_app(SamlOptions::default()).await;
    let b = Browser::new();
    let forged = qualified(&app, &b, r#"SPNameQualifier="https://other-sp.example""#).await;
    super::attacks::refused(
        &app,
        &b,
        &forged,
        "saml_sp_name_qualifier",
        "SPNameQualifier",
    )
    .await;
}

/// An IdP known under another entityID, or an affiliation we belong to, is admitted once the
/// connection lists it.
#[tokio::test]
async fn a_listed_name_qualifier_and_affiliation_are_admitted() {
    let app = resigning_app(SamlOptions {
        saml_extra: "accepted_name_qualifiers = [\"https://idp-old.example\"]\naccepted_sp_name_qualifiers = [\"urn:example:affiliation\"]",
        ..Default::default()
    })
    .await;
    let b = Browser::new();
    let listed =
        r#"NameQualifier="https://idp-old.example" SPNameQualifier="urn:example:affiliation""#;
    let r = app.post(&b, &qualified(&app, &b, listed).await).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(app.verify(&b).await.status(), 200);
    let b = Browser::new();
    let unlisted = qualified(&app, &b, r#"NameQualifier="https://idp-other.example""#).await;
    super::attacks::refused(&app, &b, &unlisted, "saml_name_qualifier", "NameQualifier").await;
}
