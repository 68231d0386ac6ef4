//! Decoy encrypted assertions: the authentication bypass of the first release and its class.
//!
//! A Response genuinely signed by the IdP, whose assertion is encrypted to us, could carry a
//! second element named `EncryptedAssertion` (any namespace, or none) where the signature does
//! not reach: inside the signature's own `KeyInfo` or a `ds:Object`, in the `Extensions` of an
//! unsigned message, after the genuine element. The ACS decrypted the first element with that
//! local name in the raw document and spliced its plaintext into the verified Response: anyone
//! able to log in at the IdP as themselves logged in here as anyone. Our certificate is public,
//! so anyone can encrypt to it; the tests below do what such an attacker does.
//!
//! Each test asserts which defence refused the decoy (the audit reason), and none of them may
//! end in a session: on the first release, every decoy placed before the genuine element
//! logged in as mallory.

use super::attacks::refused;
use super::{PostedResponse, SamlApp, SamlOptions, spawn};
use crate::helpers::Browser;
use base64::Engine;
use openssl::symm::Cipher;
use serde_json::json;

const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// `plaintext` encrypted to the certificate at `cert` (AES-256-GCM, RSA-OAEP), as an
/// `EncryptedAssertion` element named `name` (a prefixed name with its namespace declared in
/// `decl`, or a bare name).
fn encrypted_element(cert: &std::path::Path, plaintext: &str, name: &str, decl: &str) -> String {
    let cert = openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let rsa = cert.public_key().unwrap();
    let cipher = Cipher::aes_256_gcm();
    let mut key = vec![0; cipher.key_len()];
    openssl::rand::rand_bytes(&mut key).unwrap();
    let mut iv = [0u8; 12];
    openssl::rand::rand_bytes(&mut iv).unwrap();
    let mut tag = [0u8; 16];
    let ct =
        openssl::symm::encrypt_aead(cipher, &key, Some(&iv), &[], plaintext.as_bytes(), &mut tag)
            .unwrap();
    let data = [iv.as_slice(), &ct, &tag].concat();
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&rsa).unwrap();
    ctx.encrypt_init().unwrap();
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    let mut wrapped = Vec::new();
    ctx.encrypt_to_vec(&key, &mut wrapped).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        r#"<{name}{decl}><xenc:EncryptedData xmlns:xenc="{XENC}" Type="{XENC}Element"><xenc:EncryptionMethod Algorithm="{XENC11}aes256-gcm"/><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="{XENC}rsa-oaep-mgf1p"/><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></{name}>"#,
        b64(&wrapped),
        b64(&data)
    )
}

fn assertion_of(xml: &str) -> String {
    let re = regex::Regex::new(r"(?s)<(\w+:)?Assertion[ >].*</(\w+:)?Assertion>").unwrap();
    re.find(xml)
        .expect("a plain assertion")
        .as_str()
        .to_string()
}

fn attr<'a>(xml: &'a str, name: &str) -> &'a str {
    let re = regex::Regex::new(&format!(r#"{name}="([^"]*)""#)).unwrap();
    re.captures(xml).unwrap().get(1).unwrap().as_str()
}

/// The names a decoy can take: a foreign namespace (the bypass), no namespace, the SAML one.
fn decoy_names() -> [(&'static str, String); 3] {
    [
        (
            "x:EncryptedAssertion",
            r#" xmlns:x="urn:example:decoy""#.into(),
        ),
        ("EncryptedAssertion", r#" xmlns="""#.into()),
        (
            "saml:EncryptedAssertion",
            format!(r#" xmlns:saml="{SAML_NS}""#),
        ),
    ]
}

/// The defence that must refuse a decoy named `name`: a second SAML `EncryptedAssertion` as a
/// child of the Response is a second assertion; anything else is an element out of place.
fn defence(name: &str, sibling_of_genuine: bool) -> &'static str {
    if sibling_of_genuine && name == "saml:EncryptedAssertion" {
        "saml_assertion_count"
    } else {
        "saml_misplaced_element"
    }
}

/// A genuine login of alice as the IdP answers it now, not submitted.
async fn genuine(app: &SamlApp) -> (Browser, PostedResponse) {
    let b = Browser::new();
    let p = app.login_until_post(&b, "alice", "/").await;
    (b, p)
}

/// The attacker's assertion: a plain assertion the IdP issued to alice before, answering the
/// request of `target`, naming mallory with the admin group.
fn mallory_for(target: &str, template: &str) -> String {
    template
        .replace(attr(template, "InResponseTo"), attr(target, "InResponseTo"))
        .replace("alice@example.com", "mallory@example.com")
        .replacen(" ID=\"", " ID=\"mallory", 1)
}

/// A plain, unsigned assertion issued to alice (the template of the attacker's assertion).
async fn plain_template(app: &SamlApp) -> String {
    app.idp
        .configure(json!({ "encrypt": false, "sign": "response" }))
        .await;
    let (_, p) = genuine(app).await;
    assertion_of(&p.xml())
}

/// `xml` with `what` inserted after the first match of the regex `open`.
fn insert_after(xml: &str, open: &str, what: &str) -> String {
    let re = regex::Regex::new(open).unwrap();
    let m = re.find(xml).unwrap_or_else(|| panic!("{open} in {xml}"));
    format!("{}{what}{}", &xml[..m.end()], &xml[m.end()..])
}

/// `xml` with `what` inserted before the first match of the regex `at`.
fn insert_before(xml: &str, at: &str, what: &str) -> String {
    let re = regex::Regex::new(at).unwrap();
    let m = re.find(xml).unwrap_or_else(|| panic!("{at} in {xml}"));
    format!("{}{what}{}", &xml[..m.start()], &xml[m.start()..])
}

async fn encrypted_app(extra: &'static str) -> SamlApp {
    spawn(SamlOptions {
        encrypt: true,
        saml_extra: extra,
        ..Default::default()
    })
    .await
}

/// The bypass itself: a decoy in the Response signature's KeyInfo, before the genuine element.
#[tokio::test]
async fn a_decoy_encrypted_assertion_in_the_signature_key_info_does_not_log_in_as_someone_else() {
    for required in ["", "required_signature = \"response\""] {
        let app = encrypted_app(required).await;
        let template = plain_template(&app).await;
        app.idp
            .configure(json!({ "encrypt": true, "sign": "response" }))
            .await;
        for (name, decl) in decoy_names() {
            for place in [r"<(\w+:)?KeyInfo[^>]*>", r"</(\w+:)?X509Data>"] {
                let (b, p) = genuine(&app).await;
                let xml = p.xml();
                let evil = mallory_for(&xml, &template);
                let decoy = encrypted_element(&app.sp.cert_path, &evil, name, &decl);
                let forged = insert_after(&xml, place, &decoy);
                assert_ne!(forged, xml);
                refused(
                    &app,
                    &b,
                    &p.with_xml(&forged),
                    "saml_misplaced_element",
                    "refused",
                )
                .await;
            }
        }
        assert_eq!(app.account_count().await, 0, "{required}");
    }
}

/// A `ds:Object` in the Response's signature, and a decoy after the genuine element (a
/// sibling, or inside the genuine `EncryptedAssertion` next to its `EncryptedData`).
#[tokio::test]
async fn decoys_in_a_signature_object_or_after_the_genuine_element_are_refused() {
    let app = encrypted_app("").await;
    let template = plain_template(&app).await;
    app.idp
        .configure(json!({ "encrypt": true, "sign": "response" }))
        .await;
    for (name, decl) in decoy_names() {
        for shape in 0..3 {
            let (b, p) = genuine(&app).await;
            let xml = p.xml();
            let evil = mallory_for(&xml, &template);
            let decoy = encrypted_element(&app.sp.cert_path, &evil, name, &decl);
            let object = format!(
                r#"<ds:Object xmlns:ds="http://www.w3.org/2000/09/xmldsig#">{decoy}</ds:Object>"#
            );
            let shapes = [
                (insert_before(&xml, r"</(\w+:)?Signature>", &object), false),
                (
                    insert_after(&xml, r"</(\w+:)?EncryptedAssertion>", &decoy),
                    true,
                ),
                (
                    insert_after(&xml, r"<(\w+:)?EncryptedAssertion[^>]*>", &decoy),
                    false,
                ),
            ];
            let (forged, sibling) = &shapes[shape];
            let reason = defence(name, *sibling);
            refused(&app, &b, &p.with_xml(forged), reason, "refused").await;
        }
    }
    assert_eq!(app.account_count().await, 0);
}

/// ADFS and Entra ID sign only the assertion inside the encryption: then nothing outside the
/// genuine `EncryptedAssertion` is signed, and a decoy in the Response's `Extensions` (before
/// it) or after it must not be what is decrypted.
#[tokio::test]
async fn decoys_around_an_unsigned_response_are_refused() {
    let app = encrypted_app("").await;
    let template = plain_template(&app).await;
    app.idp
        .configure(json!({ "encrypt": true, "sign": "assertion" }))
        .await;
    for (name, decl) in decoy_names() {
        for shape in 0..2 {
            let (b, p) = genuine(&app).await;
            let xml = p.xml();
            let evil = mallory_for(&xml, &template);
            let decoy = encrypted_element(&app.sp.cert_path, &evil, name, &decl);
            let shapes = [
                (
                    insert_before(
                        &xml,
                        r"<(\w+:)?Status>",
                        &format!("<samlp:Extensions>{decoy}</samlp:Extensions>"),
                    ),
                    false,
                ),
                (
                    insert_after(&xml, r"</(\w+:)?EncryptedAssertion>", &decoy),
                    true,
                ),
            ];
            let (forged, sibling) = &shapes[shape];
            let reason = defence(name, *sibling);
            refused(&app, &b, &p.with_xml(forged), reason, "refused").await;
        }
    }
    assert_eq!(app.account_count().await, 0);
}

/// A second genuine-looking `EncryptedAssertion` in the SAML namespace as a sibling is caught
/// by the count, and so are extra `EncryptedKey` elements, before any RSA operation.
#[tokio::test]
async fn extra_encrypted_keys_and_a_second_encrypted_data_are_refused_before_any_rsa_work() {
    let app = encrypted_app("").await;
    app.idp
        .configure(json!({ "encrypt": true, "sign": "response" }))
        .await;
    let (b, p) = genuine(&app).await;
    let xml = p.xml();
    let key_re =
        regex::Regex::new(r"(?s)<(\w+:)?EncryptedKey[ >].*?</(\w+:)?EncryptedKey>").unwrap();
    let key = key_re
        .find(&xml)
        .expect("an EncryptedKey")
        .as_str()
        .to_string();
    // Three keys where two are the most a SAML IdP sends (one per recipient certificate).
    let many = xml.replacen(&key, &key.repeat(3), 1);
    refused(
        &app,
        &b,
        &p.with_xml(&many),
        "saml_encryption_bounds",
        "refused",
    )
    .await;
    let data_re =
        regex::Regex::new(r"(?s)<(\w+:)?EncryptedData[ >].*?</(\w+:)?EncryptedData>").unwrap();
    let data = data_re.find(&xml).unwrap().as_str().to_string();
    let (b, p) = genuine(&app).await;
    let xml = p.xml();
    let data2 = data_re.find(&xml).unwrap().as_str().to_string();
    let twice = xml.replacen(&data2, &format!("{data2}{data}"), 1);
    refused(
        &app,
        &b,
        &p.with_xml(&twice),
        "saml_encryption_bounds",
        "refused",
    )
    .await;
}

/// The workaround the advisory gives for older versions: a connection that requires the
/// assertion's own signature processes only an assertion the IdP signed, so a decoy's
/// plaintext (which nobody but the IdP can sign) is refused there too.
#[tokio::test]
async fn with_required_signature_assertion_a_decoy_gets_no_session_either() {
    for required in [
        "required_signature = \"assertion\"",
        "required_signature = \"both\"",
    ] {
        let app = encrypted_app(required).await;
        let template = plain_template(&app).await;
        app.idp
            .configure(json!({ "encrypt": true, "sign": "both" }))
            .await;
        for (name, decl) in decoy_names() {
            let (b, p) = genuine(&app).await;
            let xml = p.xml();
            let evil = mallory_for(&xml, &template);
            let decoy = encrypted_element(&app.sp.cert_path, &evil, name, &decl);
            let forged = insert_after(&xml, r"<(\w+:)?KeyInfo[^>]*>", &decoy);
            refused(
                &app,
                &b,
                &p.with_xml(&forged),
                "saml_misplaced_element",
                "refused",
            )
            .await;
        }
        assert_eq!(app.account_count().await, 0, "{required}");
    }
}
