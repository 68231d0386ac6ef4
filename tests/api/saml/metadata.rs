//! IdP metadata: refusing an IdP without a signing certificate, key rollover, keeping the last
//! good copy.

use super::{IdpOptions, KeyPair, SamlOptions, spawn, try_spawn};
use crate::helpers::Browser;

fn strip_key_descriptors(xml: &str) -> String {
    let re = regex::Regex::new(r"(?s)<(\w+:)?KeyDescriptor.*?</(\w+:)?KeyDescriptor>").unwrap();
    re.replace_all(xml, "").into_owned()
}

#[tokio::test]
async fn an_idp_whose_metadata_has_no_signing_certificate_is_refused_at_start() {
    let err = try_spawn(SamlOptions {
        metadata_file: Some(Box::new(strip_key_descriptors)),
        ..Default::default()
    })
    .await
    .err()
    .expect("the bridge must not start");
    let msg = format!("{err:#}");
    assert!(msg.contains("idp_metadata_file"), "{msg}");
    assert!(msg.contains("no signing certificate"), "{msg}");
}

#[tokio::test]
async fn during_a_key_rollover_both_signing_certificates_are_accepted() {
    let dir = std::env::temp_dir().join(format!("jbroll-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let next = KeyPair::generate(&dir, "next");
    let next_b64: String = std::fs::read_to_string(&next.cert_path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let app = spawn(SamlOptions {
        saml_extra: "allow_idp_initiated = true",
        metadata_file: Some(Box::new(move |xml: &str| {
            // A second signing KeyDescriptor, as an IdP publishes before switching keys.
            let re =
                regex::Regex::new(r"(?s)<(\w+:)?KeyDescriptor.*?</(\w+:)?KeyDescriptor>").unwrap();
            let current = re.find(xml).unwrap().as_str().to_string();
            let cert_re = regex::Regex::new(r"(?s)(<(\w+:)?X509Certificate>).*?(</)").unwrap();
            let upcoming = cert_re
                .replace(&current, format!("${{1}}{next_b64}${{3}}"))
                .into_owned();
            xml.replacen(&current, &format!("{current}{upcoming}"), 1)
        })),
        ..Default::default()
    })
    .await;
    // The current key works.
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 303);
    // So does the next one, used by an IdP that has switched.
    let switched = super::Idp::start(
        &app.base,
        IdpOptions {
            signing: &next,
            entity_id: Some(&app.idp.entity_id),
            encrypt_to: None,
            sp_cert: Some(&app.sp.cert_path),
        },
    );
    let b = Browser::new();
    let p = super::unsolicited(&b, &switched.base, "bob").await;
    let r = app.post(&b, &p).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failed_metadata_refresh_keeps_the_last_good_copy() {
    let app = spawn(SamlOptions {
        metadata_file: Some(Box::new(|xml: &str| xml.to_string())),
        ..Default::default()
    })
    .await;
    std::fs::write(app.dir.join("idp-metadata.xml"), "<garbage/>").unwrap();
    let p = app.state.saml.get(super::CONNECTION).unwrap();
    assert!(p.refresh_metadata().await.is_err());
    assert!(p.has_metadata());
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 303);
}
