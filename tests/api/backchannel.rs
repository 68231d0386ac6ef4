//! OpenID Connect Back-Channel Logout with the real oidc-provider: the provider's own logout
//! token ends the session at once; a replayed or forged token is refused.

use crate::helpers::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Stands where the provider posts logout tokens, so the test can deliver (and replay) them.
async fn capture_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let data = web::Data::from(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/bcl",
        listener.local_addr().unwrap().port()
    );
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/bcl",
            web::post().to(
                |seen: web::Data<Mutex<Vec<String>>>,
                 form: web::Form<std::collections::HashMap<String, String>>| async move {
                    if let Some(t) = form.get("logout_token") {
                        seen.lock().unwrap().push(t.clone());
                    }
                    HttpResponse::Ok().finish()
                },
            ),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, seen)
}

/// Logs out at the provider (its end-session confirmation form), which sends the logout token.
async fn logout_at_provider(app: &TestApp, browser: &Browser) {
    let r = browser
        .get(&format!(
            "{}/session/end?client_id={CLIENT_ID}",
            app.op.issuer
        ))
        .await;
    let page = r.text().await.unwrap();
    let xsrf = page
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .expect("a confirmation form")
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = browser
        .http
        .post(format!("{}/session/end/confirm", app.op.issuer))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_redirection() || r.status().is_success(),
        "{}",
        r.status()
    );
}

async fn deliver(app: &TestApp, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/backchannel-logout/{CONNECTION}", app.base))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_providers_logout_token_ends_the_session_and_cannot_be_replayed_or_forged() {
    let (capture, tokens) = capture_server().await;
    let app = spawn_app_with(Options {
        client_extra: json!({ "backchannel_logout_uri": capture, "backchannel_logout_session_required": true }),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    let bystander = Browser::new();
    assert_eq!(app.login(&bystander, "bob").await.status(), 302);
    assert_eq!(app.verify(&browser).await.status(), 200);

    logout_at_provider(&app, &browser).await;
    let token = {
        let mut waited = 0;
        loop {
            if let Some(t) = tokens.lock().unwrap().first().cloned() {
                break t;
            }
            assert!(waited < 50, "the provider sent no logout token");
            waited += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };

    // A forged copy (payload changed, signature kept) is refused and ends nothing.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: serde_json::Value =
        serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    payload["sid"] = json!("someone-elses-session");
    parts[1] = b64.encode(payload.to_string());
    let forged = deliver(&app, &parts.join(".")).await;
    assert_eq!(forged.status(), 400);
    assert_eq!(
        forged.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    assert_eq!(app.verify(&browser).await.status(), 200);

    let r = deliver(&app, &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        app.verify(&browser).await.status(),
        401,
        "alice's session ended"
    );
    assert_eq!(
        app.verify(&bystander).await.status(),
        200,
        "bob's session is untouched"
    );

    let replay = deliver(&app, &token).await;
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("already used"));

    let outcomes: Vec<_> = app
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == "logout.backchannel")
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["failure", "success", "failure"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_without_a_token_or_for_an_unknown_connection_is_refused() {
    let app = spawn_app().await;
    let r = reqwest::Client::new()
        .post(format!("{}/backchannel-logout/{CONNECTION}", app.base))
        .form(&[("nothing", "here")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::Client::new()
        .post(format!("{}/backchannel-logout/nope", app.base))
        .form(&[("logout_token", "x.y.z")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = deliver(&app, "not-a-jwt").await;
    assert_eq!(r.status(), 400);
}

/// ID tokens and logout tokens were checked against two key caches: the ID-token refetch
/// (unknown `kid`) replaced one, while logout tokens kept the set fetched on their first use.
/// A key the provider withdrew, and that the bridge had already seen withdrawn, still verified
/// logout tokens. One key set now serves both, replaced as a whole by every fetch.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_withdrawn_after_an_id_token_refetch_is_no_longer_trusted_by_logout_tokens() {
    let app = spawn_app().await;
    let logout_token = |sub: &str| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({
            "iss": app.op.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
            "jti": uuid::Uuid::new_v4().to_string(), "sub": sub,
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        })
    };
    // The provider rotates to k2: the ID token names a kid the bridge has not seen, so it
    // refetches the keys, and logout tokens signed by k2 are trusted too.
    app.op.tamper("rotated").await;
    let (alice, bob) = (Browser::new(), Browser::new());
    assert_eq!(app.login(&alice, "alice").await.status(), 302);
    assert_eq!(app.login(&bob, "bob").await.status(), 302);
    let r = deliver(&app, &app.op.sign("k2", logout_token("alice")).await).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(app.verify(&alice).await.status(), 401);

    // k2 is withdrawn; a login whose ID token names an unknown key makes the bridge refetch
    // (the test config allows one refetch a second), and it sees k2 gone.
    app.op.withdraw_rotated_key().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.op.tamper("unknown_kid").await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 400);

    // A logout token signed by the withdrawn key is no longer trusted, and ends nothing.
    let r = deliver(&app, &app.op.sign("k2", logout_token("bob")).await).await;
    assert_eq!(r.status(), 400, "a withdrawn key verified a logout token");
    assert!(
        r.text().await.unwrap().contains("does not publish"),
        "refused for the unknown key"
    );
    assert_eq!(
        app.verify(&bob).await.status(),
        200,
        "bob's session is untouched"
    );
}

/// The reasons of refused back-channel logouts, in order.
async fn refusal_reasons(app: &TestApp) -> Vec<String> {
    app.audit_events()
        .await
        .into_iter()
        .filter(|e| e.action == "logout.backchannel" && e.outcome == "failure")
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// A logout token was accepted until its `exp`, however far ahead, and its replay marker was
/// kept a day at most: a token captured once (a log, a proxy) ended the person's sessions again
/// once the marker was gone. Its `iat` now bounds its life (`logout_token_max_age`, 5 minutes,
/// plus the clock skew), and the marker outlives that.
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_issued_long_ago_is_refused_so_it_cannot_outlive_its_replay_marker() {
    let app = spawn_app().await;
    let alice = Browser::new();
    assert_eq!(app.login(&alice, "alice").await.status(), 302);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = |iat: i64| {
        json!({
            "iss": app.op.issuer, "aud": CLIENT_ID, "iat": iat, "exp": now + 365 * 86_400,
            "jti": uuid::Uuid::new_v4().to_string(), "sub": "alice",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        })
    };
    let old = app.op.sign("k1", token(now - 2 * 86_400)).await;
    let r = deliver(&app, &old).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("too long ago"));
    assert_eq!(
        app.verify(&alice).await.status(),
        200,
        "alice's session is untouched"
    );
    assert_eq!(refusal_reasons(&app).await, ["logout_token_too_old"]);
    // One issued now ends the session.
    let fresh = app.op.sign("k1", token(now)).await;
    assert_eq!(deliver(&app, &fresh).await.status(), 200);
    assert_eq!(app.verify(&alice).await.status(), 401);
}

/// `nbf` was not checked: a logout token the provider signed for later ended the sessions at
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_not_valid_yet_is_refused() {
    let app = spawn_app().await;
    let alice = Browser::new();
    assert_eq!(app.login(&alice, "alice").await.status(), 302);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = app
        .op
        .sign(
            "k1",
            json!({
                "iss": app.op.issuer, "aud": CLIENT_ID, "iat": now, "nbf": now + 3600,
                "exp": now + 7200, "jti": uuid::Uuid::new_v4().to_string(), "sub": "alice",
                "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
            }),
        )
        .await;
    let r = deliver(&app, &token).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid yet (nbf)"));
    assert_eq!(app.verify(&alice).await.status(), 200, "nothing ended");
    assert_eq!(refusal_reasons(&app).await, ["logout_token_invalid"]);
    let why = app
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.action == "logout.backchannel")
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["why"].clone());
    assert_eq!(
        why,
        Some(json!("the logout token is invalid: not valid yet (nbf)"))
    );
}
