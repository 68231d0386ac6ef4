//! Single logout over the HTTP-Redirect binding, both directions.

use super::{SamlOptions, spawn};
use crate::helpers::{Browser, location};

#[tokio::test]
async fn sp_initiated_logout_ends_the_session_here_and_at_the_idp() {
    let app = spawn(SamlOptions::default()).await;
    let b = Browser::new();
    assert_eq!(app.login(&b, "alice").await.status(), 303);
    assert_eq!(app.verify(&b).await.status(), 200);

    let r = crate::logout::sign_out(&app.base, &b).await;
    assert_eq!(r.status(), 302);
    let to_idp = location(&r);
    assert!(
        to_idp.starts_with(&format!("{}/saml/slo?SAMLRequest=", app.idp.base)),
        "{to_idp}"
    );
    assert!(
        to_idp.contains("&Signature="),
        "our LogoutRequest is signed"
    );
    assert_eq!(
        app.verify(&b).await.status(),
        401,
        "local session ends at once"
    );

    // The IdP checks our signature, ends its session and answers with a LogoutResponse.
    let r = b.get(&to_idp).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let back = location(&r);
    assert!(
        back.starts_with(&format!("{}/saml/corp/slo?SAMLResponse=", app.base)),
        "{back}"
    );
    let r = b.get(&back).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
    let idp_sessions: serde_json::Value =
        reqwest::get(format!("{}/__admin/sessions", app.idp.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(idp_sessions.as_array().unwrap().len(), 0, "{idp_sessions}");
}

#[tokio::test]
async fn idp_initiated_logout_revokes_the_matching_session_and_answers() {
    let app = spawn(SamlOptions::default()).await;
    let alice = Browser::new();
    let bob = Browser::new();
    assert_eq!(app.login(&alice, "alice").await.status(), 303);
    assert_eq!(app.login(&bob, "bob").await.status(), 303);

    // The IdP sends a signed LogoutRequest for alice's session through a browser.
    let idp_browser = Browser::new();
    let r = idp_browser
        .get(&format!(
            "{}/saml/slo/init?nameId=alice@example.com",
            app.idp.base
        ))
        .await;
    assert_eq!(r.status(), 302);
    let to_sp = location(&r);
    assert!(to_sp.contains("/saml/corp/slo?SAMLRequest="), "{to_sp}");
    let r = idp_browser.get(&to_sp).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let answer = location(&r);
    assert!(answer.starts_with(&format!("{}/saml/slo?SAMLResponse=", app.idp.base)));
    assert!(answer.contains("&Signature="));
    assert_eq!(
        idp_browser.get(&answer).await.status(),
        200,
        "the IdP accepts our answer"
    );

    assert_eq!(
        app.verify(&alice).await.status(),
        401,
        "alice is logged out"
    );
    assert_eq!(app.verify(&bob).await.status(), 200, "bob is not");

    // The same LogoutRequest again is a replay.
    let r = idp_browser.get(&to_sp).await;
    assert_eq!(r.status(), 400);
    // An unsigned LogoutRequest is refused.
    let unsigned = to_sp.split("&SigAlg=").next().unwrap().to_string();
    let r = idp_browser.get(&unsigned).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("signed"));
    assert_eq!(app.verify(&bob).await.status(), 200);
}

/// Bindings 3.4.5.2: a signed LogoutRequest names its Destination. One without it was
/// accepted, so a LogoutRequest the IdP signed for another SP that shares our NameIDs would
/// end sessions here.
#[tokio::test]
async fn an_idp_logout_request_without_destination_is_refused() {
    use base64::Engine;
    use std::io::Read;
    let app = spawn(SamlOptions::default()).await;
    let alice = Browser::new();
    assert_eq!(app.login(&alice, "alice").await.status(), 303);
    let idp_browser = Browser::new();
    let r = idp_browser
        .get(&format!(
            "{}/saml/slo/init?nameId=alice@example.com",
            app.idp.base
        ))
        .await;
    let to_sp = url::Url::parse(&location(&r)).unwrap();
    let encoded = to_sp
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .unwrap()
        .1
        .into_owned();
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(deflated.as_slice())
        .read_to_string(&mut xml)
        .unwrap();
    let re = regex::Regex::new(r#" Destination="[^"]*""#).unwrap();
    let without = re.replace(&xml, "").into_owned();
    assert_ne!(without, xml, "the IdP's request names a Destination");
    let key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(app.dir.join("idp.key")).unwrap())
            .unwrap();
    let slo = url::Url::parse(&format!("{}/saml/corp/slo", app.base)).unwrap();
    let forged =
        jitbridge::idp::saml::redirect::encode(&slo, "SAMLRequest", &without, None, Some(&key))
            .unwrap();
    let r = idp_browser.get(forged.as_str()).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Destination"));
    assert_eq!(app.verify(&alice).await.status(), 200, "alice stays in");
    // The same request with its Destination, signed the same way, ends the session: the
    // refusal above was the missing Destination, not the re-signing.
    let with = jitbridge::idp::saml::redirect::encode(&slo, "SAMLRequest", &xml, None, Some(&key))
        .unwrap();
    let r = idp_browser.get(with.as_str()).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    assert_eq!(app.verify(&alice).await.status(), 401);
}
