//! Rate limits per client address on the endpoints strangers reach: a 429 page with
//! Retry-After, audited once per reason and minute (the rest counted), and the client address
//! taken from X-Forwarded-For only when the peer is a trusted proxy.

use crate::helpers::*;
use serde_json::Value;

const TIGHT: &str = r#"
[server.rate_limits]
login = { burst = 2, per_second = 0.01 }
callback = { burst = 2, per_second = 0.01 }
acs = { burst = 2, per_second = 0.01 }
slo = { burst = 2, per_second = 0.01 }
"#;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An app with the tight limits above.
async fn tight_app() -> TestApp {
    spawn_app_with(Options {
        extra_server: TIGHT,
        ..Default::default()
    })
    .await
}

async fn callback(http: &reqwest::Client, app: &TestApp, query: &str) -> reqwest::Response {
    http.get(format!("{}/callback/{CONNECTION}?{query}", app.base))
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &TestApp, xff: Option<&str>) -> u16 {
    let mut r = client().get(format!("{}/login?connection={CONNECTION}", app.base));
    if let Some(x) = xff {
        r = r.header("x-forwarded-for", x);
    }
    r.send().await.unwrap().status().as_u16()
}

/// `login.failed` rows with this reason, and the counts of its `refusals.repeated` rows.
async fn audit_rows(app: &TestApp, reason: &str) -> (usize, Vec<u64>) {
    app.failure_reasons().await; // flushes the aggregated counts
    let mut first = 0;
    let mut repeats = Vec::new();
    for e in app.audit_events().await {
        let d: Value = serde_json::from_str(&e.details).unwrap();
        if d["reason"] != reason {
            continue;
        }
        match e.action.as_str() {
            "login.failed" => first += 1,
            jitbridge::audit::failures::REPEATED => repeats.push(d["count"].as_u64().unwrap()),
            _ => {}
        }
    }
    (first, repeats)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_login_limit_people_get_a_429_page_with_retry_after_audited_once() {
    let app = tight_app().await;
    assert_eq!(login_from(&app, None).await, 302);
    assert_eq!(login_from(&app, None).await, 302);
    let r = client()
        .get(format!("{}/login?connection={CONNECTION}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One request per 100 s refills: the wait is told in whole seconds.
    assert!((90..=100).contains(&retry), "{retry}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no login state for a refused start"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("Too many requests"), "{body}");
    assert!(body.contains("please wait"), "{body}");
    for _ in 0..20 {
        assert_eq!(login_from(&app, None).await, 429);
    }
    assert_eq!(
        app.failure_reasons().await.first().map(String::as_str),
        Some("rate_limited_login")
    );
    // One row in full, the other twenty as one count: never a row per request.
    assert_eq!(audit_rows(&app, "rate_limited_login").await, (1, vec![20]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callback_and_the_acs_have_limits_of_their_own() {
    let app = tight_app().await;
    let http = client();
    for expected in [400, 400, 429] {
        let r = callback(&http, &app, "code=x").await;
        assert_eq!(r.status().as_u16(), expected);
    }
    // The limit is checked before the body is read or the connection looked up.
    for expected in [404, 404, 429] {
        let r = http
            .post(format!("{}/saml/{CONNECTION}/acs", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("SAMLResponse=junk")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), expected);
        if expected == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    let reasons = app.failure_reasons().await;
    assert!(
        reasons.contains(&"rate_limited_callback".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"rate_limited_acs".to_string()),
        "{reasons:?}"
    );
    // /login is another class: still open.
    assert_eq!(login_from(&app, None).await, 302);
}

/// Regression: a callback refused by the rate limit also removed the login's cookie, so the
/// person's retry after the wait could not finish the login it had started.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_callback_keeps_the_login_cookie() {
    let app = tight_app().await;
    let http = client();
    for expected in [400, 400, 429] {
        let r = callback(&http, &app, "code=x&state=some-state").await;
        assert_eq!(r.status().as_u16(), expected);
        let clears_login = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("-login-"));
        // A callback that looked at its login ends it (used or refused), a 429 does not.
        assert_eq!(clears_login, expected != 429, "status {expected}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_is_ignored_from_a_peer_that_is_not_a_trusted_proxy() {
    let app = tight_app().await;
    // Each request claims another client; all come from the same peer and share its bucket.
    assert_eq!(login_from(&app, Some("198.51.100.1")).await, 302);
    assert_eq!(login_from(&app, Some("198.51.100.2")).await, 302);
    assert_eq!(login_from(&app, Some("198.51.100.3")).await, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_is_honoured_from_a_trusted_proxy_right_most_untrusted_first() {
    let app = spawn_app_with(Options {
        extra_server: Box::leak(
            format!("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n{TIGHT}").into_boxed_str(),
        ),
        ..Default::default()
    })
    .await;
    // The peer (127.0.0.1) is a trusted proxy: each client has its own bucket.
    assert_eq!(login_from(&app, Some("198.51.100.1")).await, 302);
    assert_eq!(login_from(&app, Some("198.51.100.1")).await, 302);
    assert_eq!(login_from(&app, Some("198.51.100.2")).await, 302);
    assert_eq!(login_from(&app, Some("198.51.100.1")).await, 429);
    // A client that writes its own X-Forwarded-For gains nothing: the right-most untrusted
    // entry (what our proxy appended: the address it was connected from) is the client.
    assert_eq!(
        login_from(&app, Some("203.0.113.77, 198.51.100.1")).await,
        429
    );
    // Trusted hops (an inner proxy) are skipped.
    assert_eq!(
        login_from(&app, Some("203.0.113.77, 198.51.100.1, 10.1.2.3")).await,
        429
    );
    assert_eq!(login_from(&app, Some("198.51.100.2, 10.1.2.3")).await, 302);
    assert_eq!(login_from(&app, Some("198.51.100.2")).await, 429);
}
