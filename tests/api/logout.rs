//! Sign-out: `GET /logout` only shows a confirmation page; the session ends on the `POST` from
//! that page (a token bound to the session, and an Origin of our own), and a logout that could
//! not end the session says so.

use crate::helpers::{Browser, Options, location, spawn_app_with};
use crate::private_redis::PrivateRedis;

/// The hidden `token` field of a sign-out confirmation page, if there is one.
pub fn logout_token(page: &str) -> Option<String> {
    let at = page.find("name=\"token\"")?;
    let rest = &page[at..];
    let v = rest.find("value=\"")? + "value=\"".len();
    let end = rest[v..].find('"')?;
    Some(rest[v..v + end].to_string())
}

/// Signs out as a person would: opens the confirmation page and presses its button.
pub async fn sign_out(base: &str, browser: &Browser) -> reqwest::Response {
    let page = browser.get(&format!("{base}/logout")).await;
    assert_eq!(page.status(), 200, "the confirmation page");
    let page = page.text().await.unwrap();
    let token = logout_token(&page).expect("the confirmation page carries a token");
    browser
        .http
        .post(format!("{base}/logout"))
        .header("Origin", base)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_get_logout_no_longer_ends_the_session() {
    let app = spawn_app_with(Options::default()).await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);

    // What an <img src> or a link on another site makes the browser send.
    let r = browser
        .http
        .get(format!("{}/logout", app.base))
        .header("Referer", "https://evil.example.net/page")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET /logout only asks for confirmation");
    // The form's answer redirects to the IdP, which `form-action` must allow; and the page
    // must not be `no-referrer`, under which browsers send `Origin: null` with the POST.
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    let idp = url::Url::parse(&app.op.issuer)
        .unwrap()
        .origin()
        .ascii_serialization();
    assert!(csp.contains(&format!("form-action 'self' {idp};")), "{csp}");
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<form method=\"post\" action=\"/logout\""),
        "{page}"
    );
    assert_eq!(
        app.verify(&browser).await.status(),
        200,
        "the session stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_post_without_token_or_with_a_foreign_origin_no_longer_ends_the_session() {
    let app = spawn_app_with(Options::default()).await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    let post = |origin: Option<&'static str>, referer: Option<&'static str>, token: String| {
        let mut r = browser.http.post(format!("{}/logout", app.base));
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        if let Some(o) = referer {
            r = r.header("Referer", o);
        }
        r.form(&[("token", token)]).send()
    };

    // A form on another site: it cannot read our page, so it has no token.
    let r = post(Some("https://evil.example.net"), None, String::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a cross-site POST without token");
    let r = browser
        .http
        .post(format!("{}/logout", app.base))
        .header("Origin", app.base.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a POST without a token at all");
    assert_eq!(
        app.verify(&browser).await.status(),
        200,
        "the session stays"
    );

    let page = browser.get(&format!("{}/logout", app.base)).await;
    let token = logout_token(&page.text().await.unwrap()).expect("a token on our page");
    let r = post(Some("https://evil.example.net"), None, token.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "our token, but a foreign Origin");
    assert!(r.text().await.unwrap().contains("Sign-out refused"));
    let r = post(None, Some("https://evil.example.net/x"), token.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no Origin, a foreign Referer");
    let r = post(None, None, token.clone()).await.unwrap();
    assert_eq!(r.status(), 403, "neither Origin nor Referer");
    let r = post(Some("null"), None, token.clone()).await.unwrap();
    assert_eq!(r.status(), 403, "an opaque Origin");
    let mut forged = token.clone();
    forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
    let r = browser
        .http
        .post(format!("{}/logout", app.base))
        .header("Origin", app.base.as_str())
        .form(&[("token", forged)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a token that is not this session's");
    assert_eq!(
        app.verify(&browser).await.status(),
        200,
        "the session stays"
    );
    // Repeats of a reason within a minute are counted in one event (audit::failures): write
    // the pending counts, then add them up.
    app.state
        .failures
        .flush_once(&app.state.db, i64::MAX / 2)
        .await
        .unwrap();
    let refused: u64 = app
        .audit_events()
        .await
        .into_iter()
        .map(|e| match e.action.as_str() {
            "logout.refused" => 1,
            a if a == jitbridge::audit::failures::REPEATED
                && e.details.contains("\"logout.refused\"") =>
            {
                serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            }
            _ => 0,
        })
        .sum();
    assert!(refused >= 6, "every refusal is audited ({refused})");

    // A token is bound to its session: bob's browser cannot use alice's.
    let other = Browser::new();
    assert_eq!(app.login(&other, "bob").await.status(), 302);
    let r = other
        .http
        .post(format!("{}/logout", app.base))
        .header("Origin", app.base.as_str())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "another session's token");
    assert_eq!(app.verify(&other).await.status(), 200, "bob stays");

    let r = browser
        .http
        .post(format!("{}/logout", app.base))
        .header("Referer", format!("{}/logout", app.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "our own page, our own origin (by Referer)");
    assert_eq!(app.verify(&browser).await.status(), 401, "signed out");
    assert_eq!(app.verify(&other).await.status(), 200, "bob stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_while_the_session_store_is_down_no_longer_claims_success() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app_with(Options {
        sessions: Some(redis.sessions_toml()),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);

    redis.stop();
    let r = browser.get(&format!("{}/logout", app.base)).await;
    assert_eq!(
        r.status(),
        503,
        "the store cannot be asked: no claim either way"
    );
    let page = r.text().await.unwrap();
    assert!(!page.contains("signed out"), "{page}");
    assert!(!page.contains("refused"), "no internal error text: {page}");

    redis.resume();
    let page = browser.get(&format!("{}/logout", app.base)).await;
    assert_eq!(page.status(), 200);
    let token = logout_token(&page.text().await.unwrap()).expect("a token");
    redis.stop();
    let r = browser
        .http
        .post(format!("{}/logout", app.base))
        .header("Origin", app.base.as_str())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "the session could not be ended");
    assert!(
        r.headers().get("location").is_none(),
        "not sent on as if signed out"
    );
    let page = r.text().await.unwrap();
    assert!(!page.contains("signed out"), "{page}");
    assert!(page.contains("still be active"), "{page}");
    assert!(!page.contains("refused"), "no internal error text: {page}");

    redis.resume();
    assert_eq!(
        app.verify(&browser).await.status(),
        200,
        "the session was not ended, and the page did not claim it was"
    );
    let r = sign_out(&app.base, &browser).await;
    assert_eq!(r.status(), 302, "{}", location(&r));
    assert_eq!(app.verify(&browser).await.status(), 401);
}
