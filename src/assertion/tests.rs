use super::*;
use crate::config::Config;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

const NOW: i64 = 1_800_000_000;

fn config(extra: &str) -> Result<Config, crate::config::ConfigError> {
    let text = format!("[server]\npublic_url = \"https://sso.example.com/\"\n{extra}");
    Config::from_toml_and_env("test", &text, std::iter::empty())
}

fn keys_toml(keys: &[(&str, &str)]) -> String {
    let mut s = String::from("[assertion]\nkeys = [\n");
    for (kid, pem) in keys {
        s.push_str(&format!(
            "  {{ kid = \"{kid}\", private_key = '''{pem}''' }},\n"
        ));
    }
    s.push_str("]\n");
    s
}

const APPS: &str = r#"
[[app]]
host = "Wiki.Example.com"
audience = "https://wiki.example.com"
roles = ["wiki-*", "admin"]
[[app]]
host = "all.example.com:8443"
audience = "all-roles"
"#;

fn service(keys: &[(&str, &str)], more: &str) -> Assertions {
    let cfg = config(&format!("{}{APPS}{more}", keys_toml(keys))).unwrap_or_else(|e| panic!("{e}"));
    Assertions::new(&cfg.server.public_url, &cfg.assertion, &cfg.apps)
}

fn one_key() -> (Assertions, JwkSet) {
    let pem = keys::generate_p256_pem().unwrap();
    let s = service(&[("k1", &pem)], "");
    let set = serde_json::from_str(&s.jwks_json()).unwrap();
    (s, set)
}

fn alice() -> AccountSnapshot {
    AccountSnapshot {
        id: "acc-0001".into(),
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        display_name: Some("Alice".into()),
        roles: vec!["admin".into(), "staff".into(), "wiki-editor".into()],
        version: 1,
        revision: Some(1),
        role_ends: Vec::new(),
    }
}

fn decode(token: &str, set: &JwkSet, aud: &str) -> serde_json::Value {
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&["https://sso.example.com"]);
    // The tokens are made at NOW, in the future of the test run's clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .unwrap()
        .claims
}

#[test]
fn the_claims_carry_the_identity_for_the_hosts_app() {
    let (s, set) = one_key();
    let t = s
        .for_request_at(Some("wiki.example.COM"), "store-key-1", &alice(), NOW)
        .expect("an assertion");
    let c = decode(&t, &set, "https://wiki.example.com");
    assert_eq!(c["iss"], "https://sso.example.com");
    assert_eq!(c["aud"], "https://wiki.example.com");
    assert_eq!(c["sub"], "acc-0001");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["preferred_username"], "alice");
    assert_eq!(c["roles"], serde_json::json!(["admin", "wiki-editor"]));
    assert_eq!(c["iat"], NOW);
    assert_eq!(c["nbf"], NOW);
    assert_eq!(c["exp"], NOW + 300);
    assert_eq!(c["jti"].as_str().unwrap().len(), 32);
    let sid = c["sid"].as_str().unwrap();
    assert_eq!(sid, session_reference("store-key-1"));
    assert!(!sid.contains("store-key-1") && sid.len() == 32);
    assert!(c.get("name").is_none() && c.get("display_name").is_none());
}

#[test]
fn an_account_without_email_gets_no_email_claim_and_an_app_without_filter_all_roles() {
    let (s, set) = one_key();
    let mut a = alice();
    a.email = None;
    let t = s
        .for_request_at(Some("all.example.com:8443"), "k", &a, NOW)
        .unwrap();
    let c = decode(&t, &set, "all-roles");
    assert!(c.get("email").is_none(), "{c}");
    assert_eq!(
        c["roles"],
        serde_json::json!(["admin", "staff", "wiki-editor"])
    );
}

#[test]
fn a_host_without_an_app_gets_no_assertion() {
    let (s, _) = one_key();
    for host in [
        None,
        Some("other.example.com"),
        Some("all.example.com"),
        Some(""),
    ] {
        assert!(
            s.for_request_at(host, "k", &alice(), NOW).is_none(),
            "{host:?}"
        );
    }
}

#[test]
fn roles_are_filtered_by_name_and_pattern() {
    let roles: Vec<String> = ["admin", "wiki-editor", "wiki-", "staff", "mywiki-x"]
        .map(String::from)
        .into();
    let f = vec!["wiki-*".to_string(), "admin".to_string()];
    assert_eq!(
        filter_roles(&roles, Some(&f)),
        ["admin", "wiki-editor", "wiki-"]
    );
    assert_eq!(filter_roles(&roles, None).len(), 5);
    assert!(filter_roles(&roles, Some(&[])).is_empty());
}

#[test]
fn a_token_is_reused_until_half_its_lifetime_has_passed() {
    let (s, _) = one_key();
    let host = Some("wiki.example.com");
    let t1 = s.for_request_at(host, "k", &alice(), NOW).unwrap();
    let t2 = s.for_request_at(host, "k", &alice(), NOW + 149).unwrap();
    assert_eq!(t1, t2);
    let t3 = s.for_request_at(host, "k", &alice(), NOW + 150).unwrap();
    assert_ne!(t1, t3, "re-signed when half of the 5 minutes remain");
    // Another session, or another app, never shares a token.
    assert_ne!(
        s.for_request_at(host, "k2", &alice(), NOW + 150).unwrap(),
        t3
    );
}

/// Regression: the token's `exp` was the lifetime whatever the roles, so an app went on trusting
/// a temporary role for up to the lifetime after its grant ended.
#[test]
fn an_assertion_never_outlives_a_temporary_role_it_carries() {
    let (s, set) = one_key();
    let host = Some("wiki.example.com");
    let mut a = alice();
    a.role_ends = vec![("wiki-editor".into(), NOW + 60)];
    let t = s.for_request_at(host, "k", &a, NOW).unwrap();
    let c = decode(&t, &set, "https://wiki.example.com");
    assert_eq!(c["roles"], serde_json::json!(["admin", "wiki-editor"]));
    assert_eq!(c["exp"], NOW + 60, "capped by the grant's end");
    // Re-signed before it expires, half-way to the cap.
    assert_eq!(s.for_request_at(host, "k", &a, NOW + 29).unwrap(), t);
    assert_ne!(s.for_request_at(host, "k", &a, NOW + 30).unwrap(), t);
    // The grant extended: a new token, with the new end.
    a.role_ends = vec![("wiki-editor".into(), NOW + 120)];
    let t2 = s.for_request_at(host, "k", &a, NOW + 31).unwrap();
    assert_eq!(
        decode(&t2, &set, "https://wiki.example.com")["exp"],
        NOW + 120
    );
    // A role the app does not get does not cap its token.
    let mut b = alice();
    b.role_ends = vec![("staff".into(), NOW + 10)];
    let t3 = s.for_request_at(host, "k3", &b, NOW).unwrap();
    assert_eq!(
        decode(&t3, &set, "https://wiki.example.com")["exp"],
        NOW + 300
    );
}

/// A token is not signed with a role whose grant ended in the moment since the session was
/// read; and an app that admits only some roles gets tokens that end with the admission.
#[test]
fn an_ended_role_is_not_signed_and_an_admission_by_a_grant_ends_the_token_with_it() {
    let pem = keys::generate_p256_pem().unwrap();
    let gated = "[[app]]\nhost = \"ops.example.com\"\naudience = \"ops\"\nroles = [\"staff\"]\nallowed_roles = [\"oncall\", \"admin\"]\n";
    let s = service(&[("k1", &pem)], gated);
    let set: JwkSet = serde_json::from_str(&s.jwks_json()).unwrap();
    let mut a = alice();
    a.role_ends = vec![("wiki-editor".into(), NOW)];
    let t = s
        .for_request_at(Some("wiki.example.com"), "k", &a, NOW)
        .unwrap();
    let c = decode(&t, &set, "https://wiki.example.com");
    assert_eq!(c["roles"], serde_json::json!(["admin"]));
    assert_eq!(c["exp"], NOW + 300);
    // Admitted by a temporary oncall grant only: the token (which carries staff) ends with it.
    let mut b = alice();
    b.roles = vec!["oncall".into(), "staff".into()];
    b.role_ends = vec![("oncall".into(), NOW + 90)];
    let t = s
        .for_request_at(Some("ops.example.com"), "k", &b, NOW)
        .unwrap();
    let c = decode(&t, &set, "ops");
    assert_eq!(c["roles"], serde_json::json!(["staff"]));
    assert_eq!(c["exp"], NOW + 90);
    // Also admitted by a lasting admin role: the grant no longer limits it.
    b.roles.push("admin".into());
    let t = s
        .for_request_at(Some("ops.example.com"), "k2", &b, NOW)
        .unwrap();
    assert_eq!(decode(&t, &set, "ops")["exp"], NOW + 300);
}

#[test]
fn a_change_of_roles_or_identity_signs_a_new_token() {
    let (s, set) = one_key();
    let host = Some("wiki.example.com");
    let t1 = s.for_request_at(host, "k", &alice(), NOW).unwrap();
    let mut a = alice();
    a.roles.retain(|r| r != "admin");
    let t2 = s.for_request_at(host, "k", &a, NOW + 1).unwrap();
    assert_ne!(t1, t2);
    let c = decode(&t2, &set, "https://wiki.example.com");
    assert_eq!(c["roles"], serde_json::json!(["wiki-editor"]));
    // A role the app does not get changes nothing it sees: the token stays.
    a.roles.push("staff-2".into());
    assert_eq!(s.for_request_at(host, "k", &a, NOW + 2).unwrap(), t2);
    a.username = "alice2".into();
    assert_ne!(s.for_request_at(host, "k", &a, NOW + 3).unwrap(), t2);
    let mut b = alice();
    b.email = None;
    let t_no_mail = s.for_request_at(host, "k", &b, NOW + 4).unwrap();
    b.email = Some(String::new());
    assert_ne!(s.for_request_at(host, "k", &b, NOW + 5).unwrap(), t_no_mail);
}

#[test]
fn an_oversized_token_is_omitted_and_a_filter_brings_it_back() {
    let (s, _) = one_key();
    let mut a = alice();
    a.roles = (0..300).map(|i| format!("group-number-{i:04}")).collect();
    assert!(
        s.for_request_at(Some("all.example.com:8443"), "k", &a, NOW)
            .is_none(),
        "300 roles do not fit in 4096 bytes"
    );
    // Remembered, not re-signed at every request; still omitted.
    assert!(
        s.for_request_at(Some("all.example.com:8443"), "k", &a, NOW + 1)
            .is_none()
    );
    a.roles.push("wiki-editor".into());
    let t = s
        .for_request_at(Some("wiki.example.com"), "k", &a, NOW)
        .unwrap();
    assert!(t.len() < 1024);
}

#[test]
fn the_size_bound_is_configurable() {
    let pem = keys::generate_p256_pem().unwrap();
    let s = service(&[("k1", &pem)], "");
    assert_eq!(s.max_bytes, 4096, "the default");
    let cfg = config(&format!(
        "{}max_header_bytes = 1024\n{APPS}",
        keys_toml(&[("k1", &pem)])
    ))
    .unwrap();
    let small = Assertions::new(&cfg.server.public_url, &cfg.assertion, &cfg.apps);
    let mut a = alice();
    a.roles = (0..40).map(|i| format!("group-number-{i:04}")).collect();
    let host = Some("all.example.com:8443");
    let t = s.for_request_at(host, "k", &a, NOW).unwrap();
    assert!(t.len() > 1024 && t.len() <= 4096, "{}", t.len());
    assert!(small.for_request_at(host, "k", &a, NOW).is_none());
}

#[test]
fn the_first_key_signs_and_every_key_is_published() {
    let (new, old) = (
        keys::generate_p256_pem().unwrap(),
        keys::generate_ed25519_pem().unwrap(),
    );
    let s = service(&[("2026-12", &new), ("2026-06", &old)], "");
    let set: JwkSet = serde_json::from_str(&s.jwks_json()).unwrap();
    let kids: Vec<_> = set
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(kids, ["2026-12", "2026-06"]);
    let t = s
        .for_request_at(Some("wiki.example.com"), "k", &alice(), NOW)
        .unwrap();
    let h = jsonwebtoken::decode_header(&*t).unwrap();
    assert_eq!(h.kid.as_deref(), Some("2026-12"));
    assert_eq!(h.alg, jsonwebtoken::Algorithm::ES256);
    let raw: serde_json::Value = serde_json::from_str(&s.jwks_json()).unwrap();
    for k in raw["keys"].as_array().unwrap() {
        assert!(k.get("d").is_none(), "no private part: {k}");
        assert_eq!(k["use"], "sig");
    }
}

#[test]
fn an_ed25519_first_key_signs_eddsa() {
    let pem = keys::generate_ed25519_pem().unwrap();
    let s = service(&[("ed", &pem)], "");
    let t = s
        .for_request_at(Some("wiki.example.com"), "k", &alice(), NOW)
        .unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&*t).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
}

#[test]
fn without_keys_there_is_no_assertion_and_an_empty_key_set() {
    let cfg = config(APPS).unwrap();
    let s = Assertions::new(&cfg.server.public_url, &cfg.assertion, &cfg.apps);
    assert_eq!(&*s.jwks_json(), r#"{"keys":[]}"#);
    assert!(
        s.for_request_at(Some("wiki.example.com"), "k", &alice(), NOW)
            .is_none()
    );
    assert!(
        Config::from_toml_and_env("defaults", "", std::iter::empty())
            .unwrap()
            .assertion
            .keys
            .is_empty()
    );
}

fn problems(extra: &str) -> Vec<String> {
    config(extra)
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn configuration_errors_name_the_key_and_the_fix() {
    let pem = keys::generate_p256_pem().unwrap();
    let p = problems(&keys_toml(&[("k1", "not a pem"), ("k1", &pem)]));
    assert!(
        p.iter().any(
            |p| p.starts_with("assertion.keys[k1].private_key: is not a PEM")
                && p.contains("openssl genpkey")
        ),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("assertion.keys[k1].kid = \"k1\": is used by two keys")),
        "{p:?}"
    );
    let p = problems(
        "[assertion]\nkeys = [{ kid = \"k\", private_key = { file = \"/nonexistent/k.pem\" } }]\n",
    );
    assert!(
        p.iter().any(
            |p| p.starts_with("assertion.keys[k].private_key: cannot be read")
                && p.contains("/nonexistent/k.pem")
        ),
        "{p:?}"
    );
    let p = problems(&format!("{}lifetime = \"2h\"\n", keys_toml(&[("k", &pem)])));
    assert!(
        p.iter()
            .any(|p| p.starts_with("assertion.lifetime = \"2h\"")),
        "{p:?}"
    );
    let p = problems("[[app]]\nhost = \"https://a.example.com/\"\n[[app]]\naudience = \"x\"\n");
    assert!(
        p.iter()
            .any(|p| p.contains("app[https://a.example.com/].host")
                && p.contains("is not a host name")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("app[https://a.example.com/].audience: is missing")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.starts_with("app[1].host: is missing")),
        "{p:?}"
    );
    let p = problems(
        "[[app]]\nhost = \"a\"\naudience = \"x\"\n[[app]]\nhost = \"A\"\naudience = \"y\"\n",
    );
    assert!(
        p.iter().any(|p| p.contains("is configured for two apps")),
        "{p:?}"
    );
    let p = problems(&format!(
        "{}\n[[app]]\nhost = \"a\"\naudience = \"x\"\nroles = [\"\"]\n",
        keys_toml(&[("k", &pem)])
    ));
    assert!(
        p.iter()
            .any(|p| p.starts_with("app[a].roles: has an empty entry")),
        "{p:?}"
    );
}

#[test]
fn the_configuration_dump_never_shows_a_private_key() {
    let pem = keys::generate_p256_pem().unwrap();
    let cfg = config(&keys_toml(&[("k1", &pem)])).unwrap();
    let dump = format!("{cfg:#?}");
    let body: String = pem.lines().nth(1).unwrap().chars().take(24).collect();
    assert!(dump.contains("k1") && !dump.contains(&body));
}
