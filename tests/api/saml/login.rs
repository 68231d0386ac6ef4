//! SP-initiated SAML login through the shared JIT pipeline.

use super::{CONNECTION, SamlOptions, spawn, users};
use crate::helpers::{Browser, location, sets_session_cookie};
use serde_json::json;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn first_saml_login_creates_the_account_and_a_second_login_updates_it() {
    let app = spawn(SamlOptions::default()).await;
    let browser = Browser::new();
    let r = app.login(&browser, "alice").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(location(&r), "/welcome");
    assert!(sets_session_cookie(&r));
    assert_eq!(app.account_count().await, 1);

    let v = app.verify(&browser).await;
    assert_eq!(v.status(), 200);
    assert_eq!(header(&v, "x-auth-request-user"), "alice@example.com");
    assert_eq!(header(&v, "x-auth-request-email"), "alice@example.com");
    assert_eq!(header(&v, "x-auth-request-groups"), "admin,staff");

    // The IdP drops alice from `admins` and changes her name: the next login follows.
    let mut alice = users()["alice"].clone();
    alice["attributes"]["groups"] = json!(["staff"]);
    alice["attributes"]["sn"] = json!("Pleasance");
    app.idp.set_user("alice", alice).await;
    let again = Browser::new();
    let r = app.login(&again, "alice").await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.account_count().await, 1, "still one account");
    let v = app.verify(&again).await;
    assert_eq!(header(&v, "x-auth-request-groups"), "staff");
    let name: Option<String> = crate::helpers::db_run(&app.state, |c| {
        use diesel::prelude::*;
        use jitbridge::db::schema::accounts::dsl::*;
        accounts.select(display_name).first(c).unwrap()
    })
    .await;
    assert_eq!(name.as_deref(), Some("Alice Pleasance"));

    // Only mapped attributes are stored: `mobile` was sent but never mapped.
    let stored: String = crate::helpers::db_run(&app.state, |c| {
        use diesel::prelude::*;
        use jitbridge::db::schema::accounts::dsl::*;
        accounts.select(attributes).first(c).unwrap()
    })
    .await;
    assert!(stored.contains("R&D"), "{stored}");
    assert!(!stored.contains("555"), "{stored}");
    let audit = app.audit_events().await;
    assert!(
        audit.iter().all(|e| !e.details.contains("555")),
        "unmapped values never reach the audit trail"
    );
}

#[tokio::test]
async fn encrypted_assertions_are_decrypted_with_the_sp_key() {
    let app = spawn(SamlOptions {
        encrypt: true,
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    let posted = app.login_until_post(&browser, "bob", "/").await;
    assert!(posted.xml().contains("EncryptedAssertion"));
    let r = app.post(&browser, &posted).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let v = app.verify(&browser).await;
    assert_eq!(header(&v, "x-auth-request-user"), "bob@example.com");
}

#[tokio::test]
async fn assertions_signed_only_inside_the_encryption_are_accepted_when_the_assertion_must_be_signed()
 {
    let app = spawn(SamlOptions {
        encrypt: true,
        saml_extra: "required_signature = \"assertion\"",
        ..Default::default()
    })
    .await;
    app.idp.configure(json!({ "sign": "assertion" })).await;
    let browser = Browser::new();
    let r = app.login(&browser, "alice").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn the_sp_metadata_names_our_endpoints_and_certificate() {
    let app = spawn(SamlOptions::default()).await;
    let r = reqwest::get(format!("{}/saml/{CONNECTION}/metadata", app.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    assert!(xml.contains(&format!(
        "entityID=\"{}/saml/{CONNECTION}/metadata\"",
        app.base
    )));
    assert!(xml.contains(&format!("{}/saml/{CONNECTION}/acs", app.base)));
    assert!(xml.contains(&format!("{}/saml/{CONNECTION}/slo", app.base)));
    assert!(xml.contains("use=\"encryption\""));
    assert!(xml.contains("AuthnRequestsSigned=\"true\""));
    let pem = std::fs::read_to_string(&app.sp.cert_path).unwrap();
    let der = openssl::x509::X509::from_pem(pem.as_bytes())
        .unwrap()
        .to_der()
        .unwrap();
    use base64::Engine;
    assert!(xml.contains(&base64::engine::general_purpose::STANDARD.encode(der)));
}

#[tokio::test]
async fn a_person_who_is_disabled_is_refused_at_the_acs() {
    let app = spawn(SamlOptions::default()).await;
    let r = app.login(&Browser::new(), "bob").await;
    assert_eq!(r.status(), 303);
    crate::helpers::db_run(&app.state, |c| {
        use diesel::prelude::*;
        use jitbridge::db::schema::accounts::dsl::*;
        diesel::update(accounts)
            .set(status.eq("disabled"))
            .execute(c)
            .unwrap();
    })
    .await;
    let browser = Browser::new();
    let r = app.login(&browser, "bob").await;
    assert_eq!(r.status(), 403);
    assert!(!sets_session_cookie(&r));
    assert_eq!(app.verify(&browser).await.status(), 401);
}
