//! Login state sealed in the browser's cookie: nothing stored for a login start, a login
//! accepted once, and every broken state (tampered, expired, under another key, replayed,
//! missing) refused with a 400 page, no session and its own reason in the audit trail.

use crate::helpers::*;
use jitbridge::session::sealed::{PendingLogin, Sealer, StateKey};
use reqwest::cookie::{CookieStore, Jar};
use std::sync::Arc;

const OTHER_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// A browser whose cookie jar the test can read.
struct JarBrowser {
    b: Browser,
    jar: Arc<Jar>,
}

impl JarBrowser {
    fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            b: Browser { http },
            jar,
        }
    }

    /// The login cookies this browser would send to the bridge: (name, value).
    fn login_cookies(&self, base: &str) -> Vec<(String, String)> {
        let url = url::Url::parse(base).unwrap();
        let Some(header) = self.jar.cookies(&url) else {
            return Vec::new();
        };
        header
            .to_str()
            .unwrap()
            .split("; ")
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| k.starts_with("jitbridge-login-"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn state_of(callback: &str) -> String {
    url::Url::parse(callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string()
}

/// Sends the callback with exactly this login cookie, from a browser without a jar.
async fn callback_with(cb: &str, name: &str, value: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(cb)
        .header("cookie", format!("{name}={value}"))
        .send()
        .await
        .unwrap()
}

/// The cookie's sealed login, opened with `key`, and the cookie's clear-text prefix.
fn open(value: &str, state: &str, key: &str) -> (String, PendingLogin) {
    let (prefix, sealed) = value.split_once('.').unwrap();
    let login = Sealer::new(vec![StateKey::parse(key).unwrap()])
        .open(state, sealed, jitbridge::session::unix_now())
        .unwrap();
    (prefix.to_string(), login)
}

fn reseal(prefix: &str, state: &str, key: &str, login: &PendingLogin) -> String {
    let sealed = Sealer::new(vec![StateKey::parse(key).unwrap()]).seal(state, login);
    format!("{prefix}.{sealed}")
}

async fn assert_refused(app: &TestApp, r: reqwest::Response, message: &str, reason: &str) {
    assert_eq!(r.status(), 400, "{reason}");
    assert!(!sets_session_cookie(&r), "{reason}: no session");
    let body = r.text().await.unwrap();
    assert!(body.contains(message), "{reason}: {body}");
    assert_eq!(app.account_count().await, 0, "{reason}: no account");
    assert_eq!(
        app.failure_reasons().await.first().map(String::as_str),
        Some(reason)
    );
}

/// Runs a login up to the callback; returns the callback URL and its login cookie.
async fn until_callback(app: &TestApp) -> (String, String, String) {
    let jb = JarBrowser::new();
    let cb = app.login_until_callback(&jb.b, "alice", "/after").await;
    let cookies = jb.login_cookies(&app.base);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let (name, value) = cookies.into_iter().next().unwrap();
    (cb, name, value)
}

/// The keys under `prefix`, but the near cache's probe key (one per server, whatever the
/// traffic: see `session::near_cache`).
async fn redis_keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    keys.into_iter()
        .filter(|k| !k.starts_with(&format!("{prefix}nc:")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_get_login_writes_to_the_session_store() {
    // Regression: every anonymous GET /login stored a pending login (`l:` keys in Redis, a map
    // in memory) for the login timeout, so a stranger's loop grew the store without bound.
    let prefix = format!("jbtest:{}:", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(Options {
        sessions: Some(format!(
            "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
            redis_url()
        )),
        ..Default::default()
    })
    .await;
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..50 {
        let r = stranger
            .get(format!("{}/login?connection={CONNECTION}&rd=/x", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert!(r.headers().get("set-cookie").is_some());
    }
    assert_eq!(redis_keys(&prefix).await, Vec::<String>::new());
    // A login that comes back writes its single-use marker (and its session), nothing else.
    let b = Browser::new();
    assert_eq!(app.login(&b, "alice").await.status(), 302);
    let keys = redis_keys(&prefix).await;
    assert_eq!(
        keys.iter().filter(|k| k.contains(":o:")).count(),
        1,
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| !k.contains(":l:")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_state_is_accepted_once() {
    let app = spawn_app().await;
    let (cb, name, value) = until_callback(&app).await;
    let r = callback_with(&cb, &name, &value).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/after");
    assert!(sets_session_cookie(&r));
    // The same callback with the same cookie (a copy kept by whoever saw both).
    let replay = callback_with(&cb, &name, &value).await;
    assert_eq!(replay.status(), 400);
    assert!(!sets_session_cookie(&replay));
    let body = replay.text().await.unwrap();
    assert!(body.contains("already used"), "{body}");
    assert_eq!(
        app.failure_reasons().await.first().map(String::as_str),
        Some("state_replayed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_sealed_state_is_refused() {
    let app = spawn_app().await;
    let (cb, name, value) = until_callback(&app).await;
    // One character of the ciphertext changed.
    let mut bytes = value.into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let r = callback_with(&cb, &name, &String::from_utf8(bytes).unwrap()).await;
    assert_refused(&app, r, "state was altered", "state_tampered").await;
    // A sealed state moved to another login's cookie name is refused too (bound to its state).
    let (cb2, name2, _) = until_callback(&app).await;
    let (_, _, value3) = until_callback(&app).await;
    let r = callback_with(&cb2, &name2, &value3).await;
    assert_refused(&app, r, "state was altered", "state_tampered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_sealed_state_is_refused() {
    let app = spawn_app().await;
    let (cb, name, value) = until_callback(&app).await;
    let st = state_of(&cb);
    let (prefix, mut login) = open(&value, &st, STATE_KEY);
    login.expires_at = jitbridge::session::unix_now() - 1;
    let r = callback_with(&cb, &name, &reseal(&prefix, &st, STATE_KEY, &login)).await;
    assert_refused(&app, r, "took too long", "state_expired").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_sealed_with_a_key_the_server_does_not_hold_is_refused() {
    let app = spawn_app().await;
    let (cb, name, value) = until_callback(&app).await;
    let st = state_of(&cb);
    let (prefix, login) = open(&value, &st, STATE_KEY);
    let r = callback_with(&cb, &name, &reseal(&prefix, &st, OTHER_KEY, &login)).await;
    assert_refused(&app, r, "configuration change", "state_key_unknown").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_key_rotation_logins_sealed_with_the_old_key_still_complete() {
    let app = spawn_app_with(Options {
        extra_server: Box::leak(
            format!("state_key = [\"{OTHER_KEY}\", \"{STATE_KEY}\"]").into_boxed_str(),
        ),
        ..Default::default()
    })
    .await;
    let (cb, name, value) = until_callback(&app).await;
    let st = state_of(&cb);
    // New logins are sealed with the first key...
    let (prefix, login) = open(&value, &st, OTHER_KEY);
    // ...and one started before the rotation (sealed with the second) is still opened.
    let r = callback_with(&cb, &name, &reseal(&prefix, &st, STATE_KEY, &login)).await;
    assert_eq!(r.status(), 302);
    assert!(sets_session_cookie(&r));
}

/// A login started in `jb` (another tab of it), through the IdP in a browser of its own (the
/// IdP would otherwise skip its form for the tabs after the first); returns the callback URL.
async fn tab(app: &TestApp, jb: &JarBrowser, rd: &str) -> String {
    let r =
        jb.b.get(&format!(
            "{}/login?connection={CONNECTION}&rd={}",
            app.base,
            urlencode(rd)
        ))
        .await;
    assert_eq!(r.status(), 302);
    crate::oidc_flow::oidc_login_at_the_idp(
        &Browser::new(),
        &app.base,
        &app.op.issuer,
        &location(&r),
        "alice",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_logins_in_one_browser_each_complete_and_at_most_four_are_kept() {
    let app = spawn_app().await;
    let jb = JarBrowser::new();
    let first = tab(&app, &jb, "/one").await;
    let second = tab(&app, &jb, "/two").await;
    assert_eq!(jb.login_cookies(&app.base).len(), 2);
    // Finished in the other order, as tabs do.
    let r = jb.b.get(&second).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/two".into()));
    let r = jb.b.get(&first).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/one".into()));
    assert!(jb.login_cookies(&app.base).is_empty());

    // Six starts: the two oldest are dropped from the browser.
    let mut callbacks = Vec::new();
    for i in 0..6 {
        callbacks.push(tab(&app, &jb, &format!("/tab{i}")).await);
    }
    assert_eq!(jb.login_cookies(&app.base).len(), 4);
    let r = jb.b.get(&callbacks[0]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        app.failure_reasons().await.first().map(String::as_str),
        Some("state_cookie_missing")
    );
    let r = jb.b.get(&callbacks[5]).await;
    assert_eq!((r.status().as_u16(), location(&r)), (302, "/tab5".into()));
}
