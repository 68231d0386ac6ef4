//! Every malformed, forged, replayed or expired input: a 4xx with a clear message, no account,
//! no session, and an audit event with the reason.

use crate::helpers::*;
use serde_json::json;

async fn assert_refused(
    app: &TestApp,
    r: reqwest::Response,
    status: u16,
    message: &str,
    reason: &str,
    accounts: i64,
) {
    assert_eq!(r.status().as_u16(), status, "status for {reason}");
    assert!(
        !sets_session_cookie(&r),
        "{reason}: a session cookie was set"
    );
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        ct.starts_with("text/html"),
        "{reason}: people get an HTML page, got {ct}"
    );
    let body = r.text().await.unwrap();
    assert!(
        body.contains(message),
        "{reason}: page lacks {message:?}:\n{body}"
    );
    assert_eq!(app.account_count().await, accounts, "{reason}: accounts");
    assert_eq!(
        app.failure_reasons().await.first().map(String::as_str),
        Some(reason),
        "audit reason"
    );
}

/// The IdP forges the ID token (`mode`); the bridge must refuse it.
async fn forged_id_token_is_refused(mode: &str, message: &str, reason: &str) {
    let app = spawn_app().await;
    app.op.tamper(mode).await;
    let browser = Browser::new();
    let r = app.login(&browser, "alice").await;
    assert_refused(&app, r, 400, message, reason, 0).await;
    assert_eq!(app.verify(&browser).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_with_wrong_issuer_is_refused() {
    forged_id_token_is_refused(
        "wrong_iss",
        "the ID token is invalid: wrong issuer",
        "id_token_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_with_wrong_audience_is_refused() {
    forged_id_token_is_refused(
        "wrong_aud",
        "the ID token is invalid: wrong audience",
        "id_token_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_for_another_authorized_party_is_refused() {
    forged_id_token_is_refused(
        "wrong_azp",
        "the ID token is invalid: wrong audience",
        "id_token_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_id_token_is_refused() {
    forged_id_token_is_refused(
        "expired",
        "the ID token is invalid: expired",
        "id_token_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_issued_in_the_future_is_refused() {
    forged_id_token_is_refused("future_iat", "issued in the future", "id_token_invalid").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_with_wrong_nonce_is_refused() {
    forged_id_token_is_refused("wrong_nonce", "wrong or missing nonce", "id_token_invalid").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_without_nonce_is_refused() {
    forged_id_token_is_refused("no_nonce", "wrong or missing nonce", "id_token_invalid").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_id_token_alg_none_is_refused() {
    forged_id_token_is_refused("alg_none", "the ID token is invalid", "id_token_invalid").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_id_token_keyed_with_the_providers_public_key_is_refused() {
    forged_id_token_is_refused(
        "hs256_pubkey",
        "the ID token is invalid: signature refused",
        "id_token_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_signed_by_a_foreign_key_under_the_providers_kid_is_refused() {
    forged_id_token_is_refused(
        "foreign_key",
        "the ID token is invalid: signature refused",
        "id_token_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_signed_by_an_unpublished_key_is_refused_after_a_jwks_refetch() {
    forged_id_token_is_refused(
        "unknown_kid",
        "signed by a key the provider does not publish",
        "id_token_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_about_another_subject_is_refused() {
    forged_id_token_is_refused(
        "sub_mismatch_userinfo",
        "the userinfo response is invalid",
        "userinfo_invalid",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_response_from_another_issuer_is_refused_rfc9207() {
    forged_id_token_is_refused(
        "bad_iss_param",
        "names another issuer",
        "iss_param_mismatch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_response_without_the_promised_iss_is_refused_rfc9207() {
    forged_id_token_is_refused(
        "missing_iss_param",
        "the `iss` response parameter is missing",
        "iss_param_missing",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_without_state_is_refused() {
    let app = spawn_app().await;
    let r = Browser::new()
        .get(&format!("{}/callback/{CONNECTION}?code=abc", app.base))
        .await;
    assert_refused(&app, r, 400, "has no state parameter", "state_missing", 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_with_a_forged_state_is_refused() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let cb = app.login_until_callback(&browser, "alice", "/").await;
    let forged = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "state" {
                    "forged-state".to_string()
                } else {
                    v.to_string()
                },
            )
        })
        .collect();
    let mut forged = forged.clone();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    // This browser holds no sealed state for a made-up state.
    let r = browser.get(forged.as_str()).await;
    assert_refused(
        &app,
        r,
        400,
        "not started in this browser",
        "state_cookie_missing",
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_callback_is_refused() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let cb = app.login_until_callback(&browser, "alice", "/").await;
    assert_eq!(browser.get(&cb).await.status(), 302);
    // Elsewhere, without the sealed state (replays with it: tests/api/login_state.rs).
    let replay = Browser::new().get(&cb).await;
    assert_refused(
        &app,
        replay,
        400,
        "not started in this browser",
        "state_cookie_missing",
        1,
    )
    .await;
    // In the same browser, whose cookie the first callback cleared.
    let again = browser.get(&cb).await;
    assert_refused(
        &app,
        again,
        400,
        "not started in this browser",
        "state_cookie_missing",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_authorization_code_is_refused_by_the_provider() {
    let app = spawn_app().await;
    // A first login uses its code.
    let first = Browser::new();
    let used = app.login_until_callback(&first, "alice", "/").await;
    assert_eq!(first.get(&used).await.status(), 302);
    let used_code = url::Url::parse(&used)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    // An attacker starts their own login and pastes the old code into their callback.
    let attacker = Browser::new();
    let cb = app.login_until_callback(&attacker, "bob", "/").await;
    let mut u = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "code" {
                    used_code.clone()
                } else {
                    v.to_string()
                },
            )
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let r = attacker.get(u.as_str()).await;
    assert_refused(
        &app,
        r,
        400,
        "refused the authorization code (invalid_grant)",
        "code_rejected",
        1,
    )
    .await;
    assert_eq!(app.verify(&attacker).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_finished_in_another_browser_is_refused_login_csrf() {
    let app = spawn_app().await;
    let victim_started = Browser::new();
    let cb = app
        .login_until_callback(&victim_started, "alice", "/")
        .await;
    let other = Browser::new();
    let r = other.get(&cb).await;
    assert_refused(
        &app,
        r,
        400,
        "not started in this browser",
        "state_cookie_missing",
        0,
    )
    .await;
    // The refused attempt did not use the login up: the browser that started it (and holds
    // its sealed state) finishes it.
    let r = victim_started.get(&cb).await;
    assert_eq!(r.status(), 302);
    assert!(sets_session_cookie(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_error_response_is_shown_without_echoing_free_text() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let r = browser
        .get(&format!("{}/login?connection={CONNECTION}", app.base))
        .await;
    let authorize = url::Url::parse(&location(&r)).unwrap();
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let r = browser
        .get(&format!(
            "{}/callback/{CONNECTION}?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={state}&iss={}",
            app.base,
            urlencode(&app.op.issuer)
        ))
        .await;
    let body_check = "reported an error: access_denied";
    assert_refused(&app, r, 400, body_check, "provider_error", 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_redirects_in_rd_are_refused() {
    let app = spawn_app().await;
    for rd in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let r = Browser::new()
            .get(&format!(
                "{}/login?connection={CONNECTION}&rd={}",
                app.base,
                urlencode(rd)
            ))
            .await;
        assert_refused(
            &app,
            r,
            400,
            "the redirect target (rd) is not allowed",
            "redirect_refused",
            0,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_connection_is_refused() {
    let app = spawn_app().await;
    let r = Browser::new()
        .get(&format!("{}/login?connection=nope", app.base))
        .await;
    assert_refused(
        &app,
        r,
        404,
        "there is no connection named like this",
        "unknown_connection",
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_refused_by_the_mapping_creates_nothing() {
    let mut accounts = default_accounts();
    accounts["mallory"] =
        json!({"preferred_username": "mallory", "email": "m@evil.example", "email_verified": true});
    let app = spawn_app_with(Options {
        accounts,
        ..Default::default()
    })
    .await;
    let r = app.login(&Browser::new(), "mallory").await;
    assert_refused(
        &app,
        r,
        403,
        "email addresses of this domain are not allowed",
        "mapping_refused",
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_subject_cannot_take_over_an_existing_username() {
    let mut accounts = default_accounts();
    accounts["impostor"] =
        json!({"preferred_username": "alice", "email": "imp@example.com", "email_verified": true});
    let app = spawn_app_with(Options {
        accounts,
        ..Default::default()
    })
    .await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    let r = app.login(&Browser::new(), "impostor").await;
    assert_refused(
        &app,
        r,
        403,
        "already used by another account",
        "username_taken",
        1,
    )
    .await;
}

/// Every junk request wrote one audit row, so a stranger could grow the trail (and the
/// database) without bound. Now the first refusal of each reason and minute is written in
/// full and the rest become one counted event when the minute is over.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_junk_callbacks_writes_a_bounded_number_of_audit_rows() {
    // From one address the rate limit would refuse most of them (tests/api/rate_limits.rs):
    // here every one reaches the callback.
    let app = spawn_app_with(Options {
        extra_server: "[server.rate_limits]\nenabled = false",
        ..Default::default()
    })
    .await;
    let b = Browser::new();
    let junk = 300;
    for i in 0..junk {
        let r = b
            .get(&format!(
                "{}/callback/{CONNECTION}?state=junk{i}&code=x",
                app.base
            ))
            .await;
        assert_eq!(r.status(), 400);
    }
    // A connection name that is not configured is not a bucket of its own.
    for i in 0..50 {
        b.get(&format!("{}/login?connection=nope{i}", app.base))
            .await;
    }
    let events = app.audit_events().await;
    let failed = events.iter().filter(|e| e.action == "login.failed").count();
    assert!(
        failed <= 2 * 2,
        "{failed} rows for {} junk requests (two reasons, at most two minutes)",
        junk + 50
    );
    // The minute ends: one counted event per bucket that repeated.
    let later = jitbridge::session::unix_now() + 120;
    let written = app
        .state
        .failures
        .flush_once(&app.state.db, later)
        .await
        .unwrap();
    assert!((1..=4).contains(&written), "{written}");
    let repeated: u64 = app
        .audit_events()
        .await
        .iter()
        .filter(|e| e.action == jitbridge::audit::failures::REPEATED)
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        repeated as usize + failed,
        junk + 50,
        "every refusal is counted"
    );
}

/// Regression (review): a hostile page could fire many parallel `fetch('/login?…')` with
/// credentials; each answer left a sealed-state cookie (several kilobytes with a long `rd`),
/// enough to push the browser's cookie header for the bridge's host past proxies' limits. A
/// login now starts only from a navigation.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_started_by_a_script_or_subresource_is_refused_and_sets_no_cookie() {
    let app = spawn_app().await;
    let browser = Browser::new();
    for mode in ["no-cors", "cors", "same-origin"] {
        let r = browser
            .http
            .get(format!("{}/login?rd=/x", app.base))
            .header("Sec-Fetch-Mode", mode)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{mode}");
        assert!(
            r.headers().get("set-cookie").is_none(),
            "{mode}: a cookie was set"
        );
    }
    assert!(
        app.failure_reasons()
            .await
            .contains(&"login_not_navigation".to_string())
    );
    let r = browser
        .http
        .get(format!("{}/login?rd=/x", app.base))
        .header("Sec-Fetch-Mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "a navigation starts the login");
}
