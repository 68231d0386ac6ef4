use crate::helpers::*;
use diesel::prelude::*;
use jitbridge::db::models::Account;
use jitbridge::db::schema::{account_roles, accounts};
use serde_json::json;

async fn account(app: &TestApp, username: &'static str) -> Account {
    app.db(move |c| {
        accounts::table
            .filter(accounts::username.eq(username))
            .select(Account::as_select())
            .first(c)
            .unwrap()
    })
    .await
}

async fn claim_roles(app: &TestApp, id: String) -> Vec<String> {
    app.db(move |c| {
        account_roles::table
            .filter(account_roles::account_id.eq(id))
            .order(account_roles::role)
            .select(account_roles::role)
            .load::<String>(c)
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn first_login_creates_the_account_with_mapped_attributes_and_roles() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let r = app.login(&browser, "alice").await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/welcome");
    assert!(sets_session_cookie(&r));

    let a = account(&app, "alice").await;
    assert_eq!(a.email.as_deref(), Some("alice@example.com"));
    assert_eq!(a.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(a.status, "active");
    assert!(a.last_login_at.is_some());
    let attrs: serde_json::Value = serde_json::from_str(&a.attributes).unwrap();
    assert_eq!(attrs, json!({ "department": "R&D" }));
    assert_eq!(claim_roles(&app, a.id.clone()).await, ["admin", "staff"]);

    let actions: Vec<_> = app
        .audit_events()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"account.created".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"login.succeeded".to_string()),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_login_with_changed_claims_updates_attributes_and_removes_roles() {
    let app = spawn_app().await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    let before = account(&app, "alice").await;

    app.op
        .set_account(
            "alice",
            json!({"preferred_username": "alice", "email": "alice@example.com", "email_verified": true,
                   "given_name": "Alice", "family_name": "Hargreaves", "department": "Sales",
                   "groups": ["staff"]}),
        )
        .await;
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);

    let after = account(&app, "alice").await;
    assert_eq!(after.id, before.id, "same account, not a second one");
    assert_eq!(app.account_count().await, 1);
    assert_eq!(after.display_name.as_deref(), Some("Alice Hargreaves"));
    assert_eq!(after.attributes, r#"{"department":"Sales"}"#);
    assert_eq!(
        claim_roles(&app, after.id.clone()).await,
        ["staff"],
        "admin was removed at the IdP"
    );
    let verify = app.verify(&browser).await;
    assert_eq!(verify.headers()["x-auth-request-groups"], "staff");

    let updated = app
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.action == "account.updated")
        .expect("an account.updated event");
    let d: serde_json::Value = serde_json::from_str(&updated.details).unwrap();
    assert_eq!(d["changed_fields"], json!(["display_name", "attributes"]));
    assert_eq!(d["roles_removed"], json!(["admin"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_answers_200_with_identity_headers_then_401_after_logout() {
    let app = spawn_app().await;
    let browser = Browser::new();
    assert_eq!(app.verify(&browser).await.status(), 401, "no session yet");
    assert_eq!(app.login(&browser, "alice").await.status(), 302);

    let r = app.verify(&browser).await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-auth-request-user"], "alice");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-preferred-username"], "alice");
    assert_eq!(h["x-auth-request-groups"], "admin,staff");

    let out = crate::logout::sign_out(&app.base, &browser).await;
    assert_eq!(out.status(), 302);
    assert!(
        location(&out).starts_with(&format!("{}/session/end", app.op.issuer)),
        "RP-initiated logout at the IdP: {}",
        location(&out)
    );
    assert!(location(&out).contains("post_logout_redirect_uri="));
    assert_eq!(app.verify(&browser).await.status(), 401);
    assert!(
        app.audit_events()
            .await
            .iter()
            .any(|e| e.action == "logout")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_refuses_sessions_without_an_allowed_role() {
    let app = spawn_app().await;
    let bob = Browser::new();
    assert_eq!(app.login(&bob, "bob").await.status(), 302);
    let ok = bob
        .get(&format!("{}/auth/verify?allowed_roles=staff", app.base))
        .await;
    assert_eq!(ok.status(), 200);
    let no = bob
        .get(&format!(
            "{}/auth/verify?allowed_roles=admin,auditor",
            app.base
        ))
        .await;
    assert_eq!(no.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_account_is_refused_and_gets_no_session() {
    let app = spawn_app().await;
    let first = Browser::new();
    assert_eq!(app.login(&first, "alice").await.status(), 302);
    app.db(|c| {
        jitbridge::accounts::set_disabled(c, "alice", Some("left the company"), "test").unwrap()
    })
    .await;

    let browser = Browser::new();
    let r = app.login(&browser, "alice").await;
    assert_eq!(r.status(), 403);
    assert!(!sets_session_cookie(&r));
    assert!(r.text().await.unwrap().contains("your account is disabled"));
    assert_eq!(app.verify(&browser).await.status(), 401);
    assert_eq!(app.failure_reasons().await, ["account_disabled"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unmapped_claims_are_never_stored() {
    let mut accounts = default_accounts();
    accounts["alice"]["department"] = json!("DEPT-SECRET-VALUE");
    let app = spawn_app_with(Options {
        // department is not mapped here: it must be dropped
        mapping: "[connection.mapping]\nusername = \"preferred_username\"",
        accounts,
        ..Default::default()
    })
    .await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    let a = account(&app, "alice").await;
    assert_eq!(a.attributes, "{}");
    let everything = format!("{a:?}{:?}", app.audit_events().await);
    assert!(!everything.contains("DEPT-SECRET-VALUE"));
    assert!(
        !everything.contains("Liddell"),
        "unmapped family_name leaked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_rotates_its_signing_key_is_followed() {
    let app = spawn_app().await;
    app.op.tamper("rotated").await;
    let r = app.login(&Browser::new(), "alice").await;
    assert_eq!(r.status(), 302, "the JWKS is refetched on an unknown kid");
    assert_eq!(app.account_count().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rd_is_honoured_after_login() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let cb = app
        .login_until_callback(&browser, "bob", "/app/page?x=1")
        .await;
    let r = browser.get(&cb).await;
    assert_eq!(location(&r), "/app/page?x=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_reports_database_sessions_and_connections() {
    let app = spawn_app().await;
    let r = Browser::new()
        .get(&format!("{}/readyz", app.operator))
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["connections"]["test"], "ready");
    assert_eq!(body["database"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_connections_side_by_side_keep_separate_identities() {
    let app = spawn_app_with(Options {
        second_connection: true,
        ..Default::default()
    })
    .await;
    let chooser = Browser::new()
        .get(&format!("{}/login?rd=/x", app.base))
        .await;
    assert_eq!(chooser.status(), 200);
    let page = chooser.text().await.unwrap();
    assert!(
        page.contains("/login?connection=test&#38;rd=%2Fx"),
        "{page}"
    );
    assert!(
        page.contains("/login?connection=other&#38;rd=%2Fx"),
        "{page}"
    );
    assert!(page.contains("Other directory"));

    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    let b = Browser::new();
    let cb = app
        .login_until_callback_via(&b, SECOND_CONNECTION, "alice", "/")
        .await;
    assert!(cb.contains("/callback/other?"), "{cb}");
    assert_eq!(b.get(&cb).await.status(), 302);
    assert_eq!(
        app.verify(&b).await.headers()["x-auth-request-user"],
        "alice@other"
    );
    // The same subject at two connections is two identities, never merged implicitly.
    assert_eq!(app.account_count().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_login_ends_the_browsers_previous_session() {
    let app = spawn_app().await;
    let b = Browser::new();
    let first = app.login(&b, "alice").await;
    let old = first
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("jitbridge=") && !v.starts_with("jitbridge=;"))
        .map(|v| v.split(';').next().unwrap().to_string())
        .unwrap();
    // Log in again in the same browser: the IdP still has its session, so it answers at once.
    let mut r = b
        .get(&format!("{}/login?connection={CONNECTION}", app.base))
        .await;
    while !location(&r).starts_with(&format!("{}/callback/", app.base)) {
        r = b.get(&absolute(&app.op.issuer, &location(&r))).await;
    }
    assert_eq!(b.get(&location(&r)).await.status(), 302);
    assert_eq!(app.verify(&b).await.status(), 200, "the new session works");
    let stale = reqwest::Client::new()
        .get(format!("{}/auth/verify", app.base))
        .header("Cookie", old)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401, "the previous session id is dead");
}

/// Apps keyed their users by `X-Auth-Request-User`, a username that can change and, once
/// freed, be given to someone else. `X-Auth-Request-Subject` is the account id the bridge
/// minted: the same at every login of the person, never derived from their email.
#[tokio::test(flavor = "multi_thread")]
async fn a_stable_subject_header_names_the_account_at_every_login() {
    let app = spawn_app().await;
    let first = Browser::new();
    assert_eq!(app.login(&first, "alice").await.status(), 302);
    let id: String = app
        .db(|c| {
            use diesel::prelude::*;
            use jitbridge::db::schema::accounts;
            accounts::table
                .filter(accounts::username.eq("alice"))
                .select(accounts::id)
                .first(c)
                .unwrap()
        })
        .await;
    let subject = |r: &reqwest::Response| {
        r.headers()
            .get("x-auth-request-subject")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let r = app.verify(&first).await;
    assert_eq!(subject(&r).as_deref(), Some(id.as_str()));
    assert!(!id.contains('@'));
    let second = Browser::new();
    assert_eq!(app.login(&second, "alice").await.status(), 302);
    assert_eq!(
        subject(&app.verify(&second).await).as_deref(),
        Some(id.as_str())
    );
}

/// The JWKS was read at discovery and again only on an unknown `kid`, so a key the provider
/// withdrew (compromised, rotated out) stayed trusted for as long as the process ran. The
/// scheduled refresh replaces the key set, and tokens signed by the withdrawn key are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_provider_withdrew_is_not_trusted_after_the_scheduled_refresh() {
    let app = spawn_app().await;
    app.op.tamper("rotated").await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
    app.op.withdraw_rotated_key().await;
    let provider = app.state.providers[CONNECTION].clone();
    let next = provider.refresh_keys_once().await.unwrap();
    assert!(next >= std::time::Duration::from_secs(300), "{next:?}");
    let r = app.login(&Browser::new(), "alice").await;
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap());
    let reason = app.failure_reasons().await.remove(0);
    assert_eq!(reason, "id_token_invalid");
    // Back to the published key: logins work again.
    app.op.tamper("none").await;
    assert_eq!(app.login(&Browser::new(), "alice").await.status(), 302);
}

/// Envoy's ext_authz asks `/auth/verify` followed by the original request's path.
#[tokio::test(flavor = "multi_thread")]
async fn verify_answers_with_a_path_suffix_as_envoy_asks() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let suffixed = format!("{}/auth/verify/app/page?x=1", app.base);
    assert_eq!(browser.get(&suffixed).await.status(), 401, "no session yet");
    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    let r = browser.get(&suffixed).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-request-user"], "alice");
}

/// Forward-auth answers left the security-header middleware (proxies keep none of their
/// headers, and it cost a fifth of the route's CPU); every page, a 404 and an error page
/// still carry the headers, and a verify refusal still says `nosniff`. A refusal had lost
/// `X-Frame-Options` and `frame-ancestors` with the middleware: it carries them itself.
#[tokio::test(flavor = "multi_thread")]
async fn pages_keep_their_security_headers_after_forward_auth_left_the_middleware() {
    let app = spawn_app().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/no-such-page", "/login?connection=nope", "/logout"] {
        let r = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
    }
    let r = http
        .get(format!("{}/auth/verify", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap());
    assert_eq!(header("x-frame-options"), Some("DENY"));
    assert!(
        header("content-security-policy").is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{:?}",
        header("content-security-policy")
    );
}

/// `/auth/verify` read the first session cookie of the bridge's name. With
/// `server.cookie_domain` any sibling host can set a domain cookie of that name, and a longer
/// Path puts it first: that host chose whose session the person browsed in (cookie tossing).
/// Two session cookies are no session.
#[tokio::test(flavor = "multi_thread")]
async fn two_session_cookies_of_the_name_are_no_session() {
    let app = spawn_app().await;
    let (alice, mallory) = (Browser::new(), Browser::new());
    let cookie_of = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with("jitbridge=") && !v.starts_with("jitbridge=;"))
            .map(|v| v.split(';').next().unwrap().to_string())
            .expect("a session cookie")
    };
    let a = cookie_of(&app.login(&alice, "alice").await);
    let m = cookie_of(&app.login(&mallory, "bob").await);
    let verify = |cookie: String| {
        let url = format!("{}/auth/verify", app.base);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("Cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(verify(a.clone()).await.status(), 200);
    assert_eq!(
        verify(format!("{m}; {a}")).await.status(),
        401,
        "tossed first"
    );
    assert_eq!(verify(format!("{a}; {m}")).await.status(), 401);
}
