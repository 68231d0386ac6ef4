//! Each forged, replayed or malformed SAML response: a 4xx with a clear message, no account,
//! no session, and an audit event naming the reason.

use super::{IdpOptions, KeyPair, PostedResponse, SamlApp, SamlOptions, spawn};
use crate::helpers::{Browser, sets_session_cookie};
use serde_json::json;

/// Posts `p` and checks the refusal end to end.
pub(super) async fn refused(
    app: &SamlApp,
    browser: &Browser,
    p: &PostedResponse,
    reason: &str,
    message: &str,
) {
    let before = app.account_count().await;
    let r = app.post(browser, p).await;
    let status = r.status();
    assert!(!sets_session_cookie(&r), "no session for {reason}");
    let body = r.text().await.unwrap();
    assert!(status.is_client_error(), "{reason}: {status} {body}");
    assert!(body.contains(message), "{reason}: page says {body}");
    assert_eq!(app.account_count().await, before, "no account for {reason}");
    assert_eq!(app.verify(browser).await.status(), 401);
    let reasons = app.failure_reasons().await;
    assert_eq!(
        reasons.first().map(String::as_str),
        Some(reason),
        "{reasons:?}"
    );
}

fn strip_signatures(xml: &str) -> String {
    let re = regex::Regex::new(r"(?s)<(\w+:)?Signature[ >].*?</(\w+:)?Signature>").unwrap();
    re.replace_all(xml, "").into_owned()
}

fn assertion_of(xml: &str) -> String {
    let re = regex::Regex::new(r"(?s)<saml:Assertion .*</saml:Assertion>").unwrap();
    re.find(xml).unwrap().as_str().to_string()
}

/// A copy of the signed assertion with another id and another person, unsigned.
fn evil_assertion(xml: &str) -> String {
    strip_signatures(&assertion_of(xml))
        .replace("alice@example.com", "mallory@example.com")
        .replacen("ID=\"", "ID=\"evil", 1)
}

#[tokio::test]
async fn removed_or_missing_signatures_are_refused() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    let unsigned = p.with_xml(&strip_signatures(&p.xml()));
    refused(&app, &b, &unsigned, "saml_signature_missing", "not signed").await;

    // A connection that needs the assertion signed refuses a response signed only outside.
    let app = spawn(SamlOptions {
        saml_extra: "required_signature = \"assertion\"",
        ..Default::default()
    })
    .await;
    app.idp.configure(json!({ "sign": "response" })).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    refused(&app, &b, &p, "saml_signature_missing", "signed assertion").await;
}

#[tokio::test]
async fn a_changed_value_under_a_signature_is_refused() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    let forged = p.with_xml(&p.xml().replace("alice@example.com", "mallory@example.com"));
    refused(
        &app,
        &b,
        &forged,
        "saml_signature_invalid",
        "signature does not verify",
    )
    .await;
}

/// libxmlsec1 dereferences any Reference URI by default, before any signature is known good:
/// samael 0.0.22 connected to the URL below and held the request for two minutes. A signature
/// may only point into the document, so the response is refused at once and nothing is fetched.
#[tokio::test]
async fn a_signature_that_references_a_url_or_a_file_fetches_nothing() {
    let app = spawn(SamlOptions::default()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let signature_re =
        regex::Regex::new(r"(?s)<(\w+:)?Signature[ >].*?</(\w+:)?Signature>").unwrap();
    let uri_re = regex::Regex::new(r#"URI="[^"]*""#).unwrap();
    for uri in [
        format!("http://127.0.0.1:{port}/internal"),
        "file:///etc/hostname".into(),
    ] {
        let b = Browser::new();
        let p = app.login_until_post(&b, "alice", "/").await;
        let xml = p.xml();
        let signature = signature_re.find(&xml).unwrap().as_str().to_string();
        let remote = uri_re
            .replace(&signature, format!(r#"URI="{uri}""#).as_str())
            .into_owned();
        // The extra signature sits in the Response's Extensions, where no profile check looks.
        let forged = xml.replacen(
            "<samlp:Status>",
            &format!("<samlp:Extensions>{remote}</samlp:Extensions><samlp:Status>"),
            1,
        );
        assert_ne!(
            forged, xml,
            "the response has a Status to put the extension before"
        );
        let started = std::time::Instant::now();
        // A signature outside the message's and the assertion's own places is refused before
        // libxmlsec1 sees it; that libxmlsec1 itself fetches nothing is dsig's unit test
        // `a_reference_outside_the_document_is_never_fetched`.
        refused(
            &app,
            &b,
            &p.with_xml(&forged),
            "saml_misplaced_element",
            "outside its place",
        )
        .await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{uri}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "the bridge connected to a URL named in a response"
    );
}

#[tokio::test]
async fn every_signature_wrapping_shape_is_refused() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    let xml = p.xml();
    let signed = assertion_of(&xml);
    let evil = evil_assertion(&xml);
    // Each shape with the defence that refuses it first.
    let shapes = [
        // Extra assertion after / before the signed one.
        (
            xml.replace(&signed, &format!("{signed}{evil}")),
            "saml_assertion_count",
        ),
        (
            xml.replace(&signed, &format!("{evil}{signed}")),
            "saml_assertion_count",
        ),
        // The signed assertion hidden inside the evil one (wrapped assertion).
        (
            xml.replace(
                &signed,
                &evil.replace(
                    "</saml:Assertion>",
                    &format!("<saml:Advice>{signed}</saml:Advice></saml:Assertion>"),
                ),
            ),
            "saml_misplaced_element",
        ),
        // The signed response wrapped in a new one carrying the evil assertion.
        (
            format!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="evilresp" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><samlp:Extensions>{inner}</samlp:Extensions><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{evil}</samlp:Response>"#,
                inner = xml.trim_start_matches(|c| c != '<'),
            ),
            "saml_duplicated_element",
        ),
        // The signed assertion moved into the response's extensions, the evil one in its place.
        (
            xml.replace(
                &signed,
                &format!("<samlp:Extensions>{signed}</samlp:Extensions>{evil}"),
            ),
            "saml_misplaced_element",
        ),
    ];
    for (i, (shape, defence)) in shapes.iter().enumerate() {
        let b = Browser::new();
        let fresh = app.login_until_post(&b, "alice", "/").await;
        let forged = PostedResponse {
            saml_response: p.with_xml(shape).saml_response,
            relay_state: fresh.relay_state.clone(),
        };
        let before = app.account_count().await;
        let r = app.post(&b, &forged).await;
        assert!(r.status().is_client_error(), "shape {i}: {}", r.status());
        assert!(!sets_session_cookie(&r), "shape {i}");
        assert_eq!(app.account_count().await, before);
        let reason = app.failure_reasons().await.remove(0);
        assert_eq!(reason, *defence, "shape {i}");
    }
}

#[tokio::test]
async fn an_assertion_signed_by_another_key_is_refused() {
    let app = spawn(SamlOptions {
        saml_extra: "allow_idp_initiated = true",
        ..Default::default()
    })
    .await;
    let rogue_keys = KeyPair::generate(&app.dir, "rogue");
    // A second IdP that claims to be the first one but signs with its own key.
    let rogue = super::Idp::start(
        &app.base,
        IdpOptions {
            signing: &rogue_keys,
            entity_id: Some(&app.idp.entity_id),
            encrypt_to: None,
            sp_cert: Some(&app.sp.cert_path),
        },
    );
    let b = Browser::new();
    let p = super::unsolicited(&b, &rogue.base, "alice").await;
    refused(
        &app,
        &b,
        &p,
        "saml_signature_invalid",
        "signature does not verify",
    )
    .await;
}

#[tokio::test]
async fn a_comment_inside_the_name_id_is_refused() {
    let app = spawn(SamlOptions::default()).await;
    let mut alice = super::users()["alice"].clone();
    alice["nameId"] = json!("alice@example.com.evil.example");
    app.idp.set_user("alice", alice).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    // Canonicalization drops comments, so the signature still verifies over the forged text.
    let forged = p.with_xml(&p.xml().replace(
        "alice@example.com.evil.example</saml:NameID>",
        "alice@example.com<!---->.evil.example</saml:NameID>",
    ));
    assert_ne!(forged.xml(), p.xml());
    refused(&app, &b, &forged, "saml_split_text", "truncation").await;
}

#[tokio::test]
async fn a_replayed_response_is_refused() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    assert_eq!(app.post(&b, &p).await.status(), 303);
    let other = Browser::new();
    // Elsewhere the RelayState names no login this browser started.
    refused(
        &app,
        &other,
        &p,
        "state_cookie_missing",
        "not started in this browser",
    )
    .await;
    // In the browser that started it, the ACS cleared the sealed state (and the browser now
    // has a session, which `refused` would count against it).
    let again = app.post(&b, &p).await;
    assert_eq!(again.status(), 400);
    assert_eq!(
        app.failure_reasons().await.first().map(String::as_str),
        Some("state_cookie_missing")
    );
    // Without its RelayState it is an unsolicited response that answers a request.
    let bare = PostedResponse {
        relay_state: None,
        ..p.clone()
    };
    refused(&app, &other, &bare, "saml_in_response_to", "InResponseTo").await;
}

#[tokio::test]
async fn a_replayed_unsolicited_response_is_caught_by_the_assertion_cache() {
    let app = spawn(SamlOptions {
        saml_extra: "allow_idp_initiated = true",
        ..Default::default()
    })
    .await;
    let b = Browser::new();
    let p = super::unsolicited(&b, &app.idp.base, "alice").await;
    assert_eq!(app.post(&b, &p).await.status(), 303);
    let other = Browser::new();
    refused(&app, &other, &p, "saml_replayed", "already used").await;
}

#[tokio::test]
async fn an_unsolicited_response_is_refused_while_idp_initiated_login_is_off() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    let p = super::unsolicited(&b, &app.idp.base, "alice").await;
    refused(
        &app,
        &b,
        &p,
        "saml_unsolicited",
        "IdP-initiated login is off",
    )
    .await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_assertions_are_refused() {
    let app = spawn(SamlOptions::default()).await;
    app.idp
        .configure(json!({ "clock_offset_seconds": -3600 }))
        .await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    refused(&app, &b, &p, "saml_invalid", "expired").await;
    app.idp
        .configure(json!({ "clock_offset_seconds": 600 }))
        .await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    refused(&app, &b, &p, "saml_invalid", "not valid yet").await;
}

#[tokio::test]
async fn wrong_audience_recipient_destination_and_in_response_to_are_refused() {
    let app = spawn(SamlOptions::default()).await;
    let cases = [
        ("audience", "saml_audience", "Audience"),
        ("recipient", "saml_invalid", "Recipient"),
        ("destination", "saml_destination", "Destination"),
        ("in_response_to", "saml_in_response_to", "InResponseTo"),
        ("issuer", "saml_invalid", "Issuer"),
    ];
    for (field, reason, message) in cases {
        let value = match field {
            "in_response_to" => "id0123456789abcdef".to_string(),
            _ => "https://evil.example/saml".to_string(),
        };
        app.idp
            .configure(json!({ "overrides": { field: value } }))
            .await;
        let b = Browser::new();
        let p = app.login_until_post(&b, "alice", "/").await;
        refused(&app, &b, &p, reason, message).await;
        app.idp
            .configure(json!({ "overrides": { field: null } }))
            .await;
    }
}

#[tokio::test]
async fn doctype_external_entities_and_billion_laughs_are_refused_before_parsing() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    let xml = p.xml();
    let body = xml.trim_start_matches(|c| c != '<');
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>{}"#,
        body.replacen("alice@example.com", "&x;", 1)
    );
    refused(&app, &b, &p.with_xml(&xxe), "saml_doctype", "DOCTYPE").await;
    let mut lol = String::from(r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">"#);
    for i in 1..10 {
        let prev = format!("&lol{};", i - 1).repeat(10);
        lol.push_str(&format!(r#"<!ENTITY lol{i} "{prev}">"#));
    }
    lol.push_str("]>");
    lol.push_str(&body.replacen("alice@example.com", "&lol9;", 1));
    let b = Browser::new();
    let fresh = app.login_until_post(&b, "alice", "/").await;
    refused(&app, &b, &fresh.with_xml(&lol), "saml_doctype", "DOCTYPE").await;
}

#[tokio::test]
async fn sha1_signatures_are_refused_by_default() {
    let app = spawn(SamlOptions::default()).await;
    app.idp
        .configure(json!({ "signature_algorithm": "rsa-sha1", "digest_algorithm": "sha1" }))
        .await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    refused(&app, &b, &p, "saml_signature_invalid", "refused algorithm").await;
}

/// The verification slot was taken before the POST body was read, so a stranger who opened as
/// many ACS requests as there are slots and sent their bodies slowly (or never) held them all:
/// every real login got 503 for as long as the connections stayed open. A slot is taken once
/// the body is in.
#[tokio::test]
async fn slow_acs_bodies_hold_no_verification_slot() {
    use tokio::io::AsyncWriteExt;
    let app = spawn(SamlOptions::default()).await;
    let slots = app.state.saml[super::CONNECTION].verify_slots().clone();
    let addr = app.base.trim_start_matches("http://").to_string();
    let path = format!("/saml/{}/acs", super::CONNECTION);
    let mut slow = Vec::new();
    for _ in 0..slots.available_permits() + 2 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200000\r\n\r\nSAMLResponse=PHNhbWxw"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        slow.push(c);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    let r = app.post(&b, &p).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    drop(slow);
}

/// Verification is CPU work that any stranger can ask for: with every slot taken, the ACS
/// answers 503 with Retry-After at once, touching neither the pending login nor the session
/// store, and the same response goes through once a slot is free.
#[tokio::test]
async fn when_every_verification_slot_is_taken_the_acs_answers_503_and_the_login_can_retry() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    let slots = app.state.saml[super::CONNECTION].verify_slots().clone();
    let all = slots.available_permits() as u32;
    assert!(all >= 1);
    let held = slots.clone().acquire_many_owned(all).await.unwrap();
    let r = app.post(&b, &p).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(!sets_session_cookie(&r));
    assert_eq!(
        app.failure_reasons().await.first().map(String::as_str),
        Some("saml_busy")
    );
    drop(held);
    let r = app.post(&b, &p).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
}
