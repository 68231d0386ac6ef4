//! The signed identity assertion of `/auth/verify`, checked the way an app would check it: by
//! PyJWT (an independent JOSE implementation, `tests/harness/jwt`) against the keys the bridge
//! publishes at `/.well-known/jwks.json`.

use crate::helpers::{
    Browser, DEFAULT_MAPPING, Options, TestApp, default_accounts, spawn_app_with,
};
use jitbridge::assertion::keys::{generate_ed25519_pem, generate_p256_pem};
use jitbridge::session::SessionId;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const WIKI: &str = "wiki.example.test";
const FINANCE: &str = "finance.example.test";
const WIKI_AUD: &str = "https://wiki.example.test";
const ALL: &str = "all.example.test";
const ALL_AUD: &str = "all-roles";
const GROUPS: usize = 300;

/// Two keys, the new one (P-256) first: it signs; the old one (Ed25519) is still published.
fn assertion_toml() -> String {
    let (new, old) = (
        generate_p256_pem().unwrap(),
        generate_ed25519_pem().unwrap(),
    );
    format!(
        r#"
[assertion]
keys = [
  {{ kid = "2026-12", private_key = '''{new}''' }},
  {{ kid = "2026-06", private_key = '''{old}''' }},
]
[[app]]
host = "Wiki.Example.Test"
audience = "{WIKI_AUD}"
roles = ["admin", "wiki-*"]
[[app]]
host = "{ALL}"
audience = "{ALL_AUD}"
[[app]]
host = "{FINANCE}"
audience = "https://finance.example.test"
allowed_roles = ["finance"]
"#
    )
}

/// The default mapping plus one role per group `g0000`..: carol has hundreds of them.
fn mapping_with_many_groups() -> &'static str {
    let mut m = DEFAULT_MAPPING.to_string();
    for i in 0..GROUPS {
        m.push_str(&format!(
            "[[connection.mapping.roles]]\nrole = \"team-{i:04}-members\"\nclaim = \"groups\"\nequals = \"g{i:04}\"\n"
        ));
    }
    m.push_str("[[connection.mapping.roles]]\nrole = \"wiki-editor\"\nclaim = \"groups\"\nequals = \"g0007\"\n");
    m.leak()
}

async fn spawn() -> TestApp {
    let mut accounts = default_accounts();
    let groups: Vec<String> = (0..GROUPS).map(|i| format!("g{i:04}")).collect();
    accounts["carol"] = json!({
        "preferred_username": "carol", "email": "carol@example.com", "email_verified": true,
        "given_name": "Carol", "family_name": "Many", "groups": groups,
    });
    spawn_app_with(Options {
        mapping: mapping_with_many_groups(),
        accounts,
        extra_toml: assertion_toml(),
        ..Default::default()
    })
    .await
}

/// Logs in and returns the browser with the session's id (from the callback's cookie).
async fn login(app: &TestApp, user: &str) -> (Browser, SessionId) {
    let b = Browser::new();
    let cb = app.login_until_callback(&b, user, "/welcome").await;
    let r = b.get(&cb).await;
    assert_eq!(r.status(), 302, "{user} logs in");
    let id = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("jitbridge="))
        .find_map(|v| SessionId::parse(v.split(';').next()?))
        .expect("a session cookie");
    (b, id)
}

/// `/auth/verify` for `host` (as the proxy sends it in X-Forwarded-Host); the assertion, if any.
async fn verify(app: &TestApp, b: &Browser, host: &str) -> (reqwest::Response, Option<String>) {
    let r = b
        .http
        .get(format!("{}/auth/verify", app.base))
        .header("X-Forwarded-Host", host)
        .send()
        .await
        .unwrap();
    assert!([200, 403].contains(&r.status().as_u16()), "{}", r.status());
    let token = r
        .headers()
        .get("x-jitbridge-assertion")
        .map(|v| v.to_str().unwrap().to_string());
    (r, token)
}

/// PyJWT's verdict on `token` for `audience`, with the keys fetched from the bridge.
async fn pyjwt(app: &TestApp, token: &str, audience: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/jwt");
    let args = [
        format!("{}/.well-known/jwks.json", app.base),
        app.base.clone(),
        audience.to_string(),
    ];
    let token = token.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(dir.join(".venv/bin/python"))
            .arg(dir.join("verify.py"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the JWT harness is set up (tests/harness/jwt/setup.sh)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(token.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("verify.py: {line:?}"));
    assert_eq!(v["ok"].as_bool() == Some(true), out.status.success(), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_verifies_the_assertion_with_pyjwt_against_the_published_keys() {
    let app = spawn().await;
    let (b, _) = login(&app, "alice").await;
    let (r, token) = verify(&app, &b, "WIKI.example.test").await;
    let subject = r.headers()["x-auth-request-subject"]
        .to_str()
        .unwrap()
        .to_string();
    let token = token.expect("an assertion for a configured app");

    let v = pyjwt(&app, &token, WIKI_AUD).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["kid"], "2026-12", "the first key signs");
    assert_eq!(v["alg"], "ES256");
    let c = &v["claims"];
    assert_eq!(c["iss"], app.base.as_str());
    assert_eq!(c["aud"], WIKI_AUD);
    assert_eq!(
        c["sub"],
        subject.as_str(),
        "the same stable subject as the header"
    );
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["preferred_username"], "alice");
    assert_eq!(
        c["roles"],
        json!(["admin"]),
        "staff is filtered out for the wiki"
    );
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);

    // The app next door does not accept it: the audience is the wiki's.
    let v = pyjwt(&app, &token, ALL_AUD).await;
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("InvalidAudienceError"),
        "{v}"
    );
    // Nor does anyone accept a token whose signature is not ours.
    let mut forged = token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let v = pyjwt(&app, &forged, WIKI_AUD).await;
    assert_eq!(v["ok"], false, "{v}");

    // The other app gets all roles, under its own audience.
    let (_, all) = verify(&app, &b, ALL).await;
    let v = pyjwt(&app, &all.unwrap(), ALL_AUD).await;
    assert_eq!(v["claims"]["roles"], json!(["admin", "staff"]), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn both_keys_are_published_without_their_private_parts() {
    let app = spawn().await;
    let r = reqwest::get(format!("{}/.well-known/jwks.json", app.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let kids: Vec<_> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["2026-12", "2026-06"]);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[1]["kty"], "OKP");
    assert_eq!(keys[1]["crv"], "Ed25519");
    assert_eq!(keys[1]["alg"], "EdDSA");
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none(), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_cached_per_session_and_a_role_change_signs_a_new_one() {
    let app = spawn().await;
    let (b, _) = login(&app, "alice").await;
    let (_, t1) = verify(&app, &b, WIKI).await;
    let (_, t2) = verify(&app, &b, WIKI).await;
    assert_eq!(t1, t2, "two verifies in a row reuse the signed token");
    let t1 = t1.unwrap();
    // Another session of the same person has its own token (and its own sid).
    let (b2, _) = login(&app, "alice").await;
    let (_, other) = verify(&app, &b2, WIKI).await;
    let other = other.unwrap();
    assert_ne!(other, t1);
    let sid1 = pyjwt(&app, &t1, WIKI_AUD).await["claims"]["sid"].clone();
    assert!(sid1.as_str().is_some_and(|s| s.len() == 32), "{sid1}");
    assert_ne!(pyjwt(&app, &other, WIKI_AUD).await["claims"]["sid"], sid1);

    // The roles of a live session change (an admin's grant, then its removal, through the
    // apply path and the account snapshot that /auth/verify reads): the same session and app
    // get a new token at once, and the old one is not served again.
    let role = jitbridge::mapping::RoleName::parse("wiki-editor").unwrap();
    let app = &app;
    let change = |grant: bool| {
        let role = role.clone();
        async move {
            let state = app
                .db(move |c| {
                    let change = if grant {
                        jitbridge::lifecycle::roles::RoleChange::Grant {
                            role: &role,
                            until: None,
                            reason: "test",
                        }
                    } else {
                        jitbridge::lifecycle::roles::RoleChange::Remove {
                            role: &role,
                            reason: "test",
                        }
                    };
                    jitbridge::accounts::change_role(c, "alice", change, "test").unwrap()
                })
                .await;
            app.state.sessions.put_account(&state).await.unwrap();
        }
    };
    change(true).await;
    let (_, t3) = verify(app, &b, WIKI).await;
    let t3 = t3.unwrap();
    assert_ne!(t3, t1);
    let v = pyjwt(app, &t3, WIKI_AUD).await;
    assert_eq!(v["claims"]["roles"], json!(["admin", "wiki-editor"]), "{v}");
    assert_eq!(v["claims"]["sid"], sid1, "the same session");
    change(false).await;
    let (_, t4) = verify(app, &b, WIKI).await;
    let t4 = t4.unwrap();
    assert_ne!(t4, t3, "the token with the removed role is served again");
    assert_eq!(
        pyjwt(app, &t4, WIKI_AUD).await["claims"]["roles"],
        json!(["admin"])
    );
}

/// Regression (end to end, on every store): a temporary grant's end reaches the token through
/// the account snapshot /auth/verify reads; the token expired with the lifetime instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_temporary_grant_ends_the_assertion_that_carries_it() {
    let app = spawn().await;
    let (b, _) = login(&app, "alice").await;
    let until = jitbridge::db::now() + time::Duration::seconds(90);
    let state = app
        .db(move |c| {
            let role = jitbridge::mapping::RoleName::parse("wiki-editor").unwrap();
            let change = jitbridge::lifecycle::roles::RoleChange::Grant {
                role: &role,
                until: Some(until),
                reason: "test",
            };
            jitbridge::accounts::change_role(c, "alice", change, "test").unwrap()
        })
        .await;
    app.state.sessions.put_account(&state).await.unwrap();
    let (_, t) = verify(&app, &b, WIKI).await;
    let v = pyjwt(&app, &t.unwrap(), WIKI_AUD).await;
    assert_eq!(v["claims"]["roles"], json!(["admin", "wiki-editor"]), "{v}");
    let end = until.assume_utc().unix_timestamp();
    assert_eq!(v["claims"]["exp"], end, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_without_an_app_gets_the_identity_headers_but_no_assertion() {
    let app = spawn().await;
    let (b, _) = login(&app, "alice").await;
    for host in [
        "other.example.test",
        "wiki.example.test.evil",
        "example.test",
    ] {
        let (r, token) = verify(&app, &b, host).await;
        assert!(token.is_none(), "{host}");
        assert_eq!(r.headers()["x-auth-request-user"], "alice");
    }
    // Without X-Forwarded-Host the Host header decides: here, the bridge's own address.
    let r = app.verify(&b).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-jitbridge-assertion").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_groups_are_filtered_first_and_an_oversized_token_is_omitted() {
    let app = spawn().await;
    let (b, _) = login(&app, "carol").await;
    // All roles for this app: far over 4096 bytes, so no assertion; the headers stay.
    let (r, token) = verify(&app, &b, ALL).await;
    assert!(
        token.is_none(),
        "an oversized assertion is omitted, never cut"
    );
    let groups = r.headers()["x-auth-request-groups"].to_str().unwrap();
    assert_eq!(groups.split(',').count(), GROUPS + 1);
    assert_eq!(r.headers()["x-auth-request-user"], "carol");
    // The wiki's filter keeps one of them: a small token that verifies.
    let (_, token) = verify(&app, &b, WIKI).await;
    let token = token.expect("the filtered assertion fits");
    assert!(token.len() < 1024, "{}", token.len());
    let v = pyjwt(&app, &token, WIKI_AUD).await;
    assert_eq!(v["claims"]["roles"], json!(["wiki-editor"]), "{v}");
    assert_eq!(v["claims"]["preferred_username"], "carol");
}

/// Regression (review): anyone with a session could ask `/auth/verify` for any app's host
/// (the Host and the `?allowed_roles` query are the caller's to choose) and get a signed
/// assertion for an app whose proxy requires a role the person lacks. An app's own
/// `allowed_roles` now gates the answer and the signature.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_without_the_apps_role_gets_no_assertion_for_it_whatever_the_query() {
    let app = spawn().await;
    let (b, _) = login(&app, "alice").await;
    let (r, token) = verify(&app, &b, FINANCE).await;
    assert_eq!(
        r.status(),
        403,
        "a session without the app's role was let in"
    );
    assert_eq!(
        token, None,
        "an assertion was signed for an app the person may not use"
    );
    let state = app
        .db(|c| {
            let role = jitbridge::mapping::RoleName::parse("finance").unwrap();
            let change = jitbridge::lifecycle::roles::RoleChange::Grant {
                role: &role,
                until: None,
                reason: "test",
            };
            jitbridge::accounts::change_role(c, "alice", change, "test").unwrap()
        })
        .await;
    app.state.sessions.put_account(&state).await.unwrap();
    let (r, token) = verify(&app, &b, FINANCE).await;
    assert_eq!(r.status(), 200);
    assert!(token.is_some());
}
