//! Logins that start on one replica and finish on another, and a disable that every replica
//! refuses at once.

use super::cluster::{Cluster, Setup, oidc_cluster};
use super::skip;
use crate::helpers::*;
use crate::saml::{self, Idp, IdpOptions, KeyPair};

/// nginx's record of which replica served the first request whose path starts with `path`
/// (nginx writes the line after the response has gone out, so it may come a moment later).
async fn served_by(c: &Cluster, path: &str) -> String {
    for _ in 0..100 {
        if let Some(s) = c
            .nginx
            .served()
            .into_iter()
            .find(|s| s.path.starts_with(path))
        {
            return s.upstream;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("nginx served no {path}: {:?}", c.nginx.served())
}

async fn verify_on_each_replica(c: &Cluster, browser: &Browser) -> Vec<u16> {
    let mut statuses = Vec::new();
    for r in &c.replicas {
        let v = browser.get(&format!("{}/auth/verify", r.base())).await;
        statuses.push(v.status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oidc_login_started_on_one_replica_finishes_on_another() {
    if skip() {
        return;
    }
    let (_db, c, op) = oidc_cluster().await;
    let browser = Browser::new();
    let cb =
        oidc_login_until_callback(&browser, &c.base, &op.issuer, CONNECTION, "alice", "/w").await;
    let r = browser.get(&cb).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    assert!(sets_session_cookie(&r));

    let (login, callback) = (
        served_by(&c, "/login").await,
        served_by(&c, "/callback/").await,
    );
    assert_ne!(
        login, callback,
        "nginx sent /login and /callback to one replica"
    );
    assert_eq!(verify_on_each_replica(&c, &browser).await, [200, 200, 200]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saml_login_started_on_one_replica_is_consumed_at_the_acs_of_another() {
    if skip() {
        return;
    }
    let db = TestDb::postgres();
    let mut c = Cluster::new(3).await;
    let keys = super::cluster::TempDir::new("saml-keys");
    let idp_keys = KeyPair::generate(&keys.0, "idp");
    let sp = KeyPair::generate(&keys.0, "sp");
    let idp = Idp::start(
        &c.base,
        IdpOptions {
            signing: &idp_keys,
            entity_id: None,
            encrypt_to: None,
            sp_cert: Some(&sp.cert_path),
        },
    );
    let rest = format!(
        r#"
[[connection]]
name = "{name}"
kind = "saml"
clock_skew = "2s"
[connection.saml]
idp_metadata_url = "{idp}/metadata"
sp_private_key = {{ file = "{key}" }}
sp_certificate = {{ file = "{cert}" }}
{mapping}
"#,
        name = saml::CONNECTION,
        idp = idp.base,
        key = sp.key_path.display(),
        cert = sp.cert_path.display(),
        mapping = saml::MAPPING,
    );
    c.start(&Setup {
        db: &db.url,
        redis: &redis_url(),
        rest: &rest,
    })
    .await;

    let browser = Browser::new();
    let r = browser
        .get(&format!(
            "{}/login?connection={}&rd=/w",
            c.base,
            saml::CONNECTION
        ))
        .await;
    assert_eq!(r.status(), 302);
    let to_idp = location(&r);
    assert!(to_idp.starts_with(&idp.base), "{to_idp}");
    let html = browser
        .get(&format!("{to_idp}&login=alice&password=alice-pw"))
        .await
        .text()
        .await
        .unwrap();
    let posted = saml::parse_auto_post(&html);
    let mut form = vec![("SAMLResponse", posted.saml_response.clone())];
    if let Some(relay) = &posted.relay_state {
        form.push(("RelayState", relay.clone()));
    }
    let acs = format!("{}/saml/{}/acs", c.base, saml::CONNECTION);
    let r = browser.http.post(&acs).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert!(sets_session_cookie(&r));

    let (login, consumed) = (served_by(&c, "/login").await, served_by(&c, "/saml/").await);
    assert_ne!(
        login, consumed,
        "nginx sent /login and the ACS to one replica"
    );
    assert_eq!(verify_on_each_replica(&c, &browser).await, [200, 200, 200]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disable_from_the_cli_is_refused_by_every_replica_at_its_next_verify() {
    if skip() {
        return;
    }
    let (_db, c, op) = oidc_cluster().await;
    let (alice, bob) = (Browser::new(), Browser::new());
    for (b, who) in [(&alice, "alice"), (&bob, "bob")] {
        let cb = oidc_login_until_callback(b, &c.base, &op.issuer, CONNECTION, who, "/w").await;
        assert_eq!(b.get(&cb).await.status(), 302);
    }
    assert_eq!(verify_on_each_replica(&c, &alice).await, [200, 200, 200]);

    let out = c.cli(&["accounts", "disable", "alice", "--reason", "left"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        verify_on_each_replica(&c, &alice).await,
        [401, 401, 401],
        "a replica still let a disabled account in"
    );
    let through_nginx = alice.get(&format!("{}/auth/verify", c.base)).await;
    assert_eq!(through_nginx.status(), 401);
    assert_eq!(
        verify_on_each_replica(&c, &bob).await,
        [200, 200, 200],
        "only alice was disabled"
    );
}

/// The groups header each replica sends for the browser's session.
async fn groups_on_each_replica(c: &Cluster, browser: &Browser) -> Vec<String> {
    let mut out = Vec::new();
    for r in &c.replicas {
        let v = browser.get(&format!("{}/auth/verify", r.base())).await;
        assert_eq!(v.status(), 200, "{}", r.base());
        out.push(
            v.headers()["x-auth-request-groups"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    out
}

/// An administrator's grant and its removal reach the live session on every replica at its
/// next check, without a new login (the account snapshot in the shared Redis).
#[tokio::test(flavor = "multi_thread")]
async fn a_role_granted_and_removed_with_the_cli_reaches_every_replica_at_its_next_verify() {
    if skip() {
        return;
    }
    let (_db, c, op) = oidc_cluster().await;
    let alice = Browser::new();
    let cb =
        oidc_login_until_callback(&alice, &c.base, &op.issuer, CONNECTION, "alice", "/w").await;
    assert_eq!(alice.get(&cb).await.status(), 302);
    assert_eq!(groups_on_each_replica(&c, &alice).await, ["admin,staff"; 3]);

    let out = c.cli(&["accounts", "grant", "alice", "oncall", "--for", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        groups_on_each_replica(&c, &alice).await,
        ["admin,oncall,staff"; 3]
    );

    let out = c.cli(&["accounts", "remove-role", "alice", "oncall"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        groups_on_each_replica(&c, &alice).await,
        ["admin,staff"; 3],
        "a replica still grants the removed role"
    );
}
