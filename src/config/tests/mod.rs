use super::*;

mod kinds;
mod protocol_keys;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_and_env(
        "test.toml",
        text,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

const OIDC: &str = r#"
[[connection]]
name = "corp"
kind = "oidc"
issuer = "https://login.example.com"
client_id = "jitbridge"
client_secret = "s3cret"
"#;

const KEY_A: &str = "6f1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff0";
const KEY_B: &str = "0ff0eeddccbbaa99887766554433221100f0e1d2c3b4a5968778695a4b3c2d1e";

#[test]
fn no_file_gives_the_embedded_defaults() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.operator_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.server.public_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(c.database.url.expose(), "sqlite://jitbridge.db");
    assert_eq!(c.sessions.store, SessionStoreKind::Memory);
    assert!(!c.server.cookie.secure);
    assert_eq!(c.server.cookie.name, "jitbridge");
}

#[test]
fn https_public_url_gives_a_host_prefixed_secure_cookie() {
    let c = load("[server]\npublic_url = \"https://sso.example.com\"", &[]).unwrap();
    assert!(c.server.cookie.secure);
    assert_eq!(c.server.cookie.name, "__Host-jitbridge");
    let c = load(
        "[server]\npublic_url = \"https://sso.example.com\"\ncookie_domain = \"example.com\"",
        &[],
    )
    .unwrap();
    assert_eq!(c.server.cookie.name, "__Secure-jitbridge");
}

#[test]
fn environment_overrides_the_file() {
    let c = load(
        "[database]\nurl = \"sqlite://a.db\"",
        &[
            (
                "JITBRIDGE_DATABASE__URL",
                "postgres://postgres@127.0.0.1/test",
            ),
            ("JITBRIDGE_DATABASE__POOL_SIZE", "3"),
            ("JITBRIDGE_SESSIONS__STORE", "redis"),
            ("JITBRIDGE_SESSIONS__REDIS_URL", "redis://127.0.0.1:6379"),
            ("JITBRIDGE_SERVER__STATE_KEY", KEY_A),
            ("JITBRIDGE_LOG", "debug"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.database.url.expose(),
        "postgres://postgres@127.0.0.1/test"
    );
    assert_eq!(c.database.pool_size, 3);
    assert_eq!(c.sessions.store, SessionStoreKind::Redis);
}

#[test]
fn the_operator_listener_is_configurable_and_checked() {
    let c = load("", &[("JITBRIDGE_SERVER__OPERATOR_LISTEN", "0.0.0.0:9100")]).unwrap();
    assert_eq!(c.server.operator_listen.to_string(), "0.0.0.0:9100");
    let err = load("[server]\noperator_listen = \"9090\"", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.operator_listen"), "{err}");
    assert!(err.contains("0.0.0.0:9090"), "names the fix: {err}");
    let err = load(
        "[server]\nlisten = \"127.0.0.1:9000\"\noperator_listen = \"127.0.0.1:9000\"",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("same address as server.listen"), "{err}");
}

#[test]
fn unknown_environment_variables_are_named() {
    let err = load(
        "",
        &[("JITBRIDGE_DATABSE__URL", "x"), ("JITBRIDGE_FOO", "y")],
    )
    .unwrap_err();
    let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["JITBRIDGE_DATABSE__URL", "JITBRIDGE_FOO"]);
}

#[test]
fn every_problem_is_reported_with_key_value_and_fix() {
    let err = load(
        r#"
[server]
listen = "nope"
[sessions]
store = "memcached"
idle_timeout = "forever"
[[connection]]
name = "Bad Name"
kind = "oidc"
issuer = "http://idp.example.com"
client_id = "x"
allowed_algs = ["none", "HS256", "ES512"]
"#,
        &[],
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "server.listen = \"nope\"",
        "sessions.store = \"memcached\"",
        "sessions.idle_timeout = \"forever\"",
        "connection[Bad Name].name",
        "connection[Bad Name].issuer = \"http://idp.example.com\"",
        "allowed_algs = \"none\"",
        "allowed_algs = \"HS256\"",
        // Not implemented by the JWT stack: refused here rather than never matching a token.
        "allowed_algs = \"ES512\"",
        "fix:",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn unknown_keys_in_the_file_are_refused() {
    let err = load("[server]\nlisten_addr = \"127.0.0.1:1\"", &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("server.listen_addr: is not a known setting"),
        "{err}"
    );
    assert!(
        err.to_string().contains("`listen`"),
        "lists the keys: {err}"
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let c = load(OIDC, &[]).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
    let err = load(
        &OIDC.replace(
            "client_secret = \"s3cret\"",
            "client_secret = { env = \"JB_NOPE_UNSET\" }",
        ),
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("JB_NOPE_UNSET"));
}

#[test]
fn mapping_errors_are_prefixed_with_the_connection() {
    let err = load(
        &format!("{OIDC}\n[connection.mapping]\nusername = \"{{a b}}\""),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("connection[corp].mapping.username"),
        "{err}"
    );
}

const SAML: &str = r#"
[server]
public_url = "https://sso.example.com"
[[connection]]
name = "corp"
kind = "saml"
[connection.saml]
idp_metadata_url = "https://idp.example.com/metadata"
"#;

#[test]
fn a_saml_connection_gets_its_endpoints_from_the_public_url() {
    let c = load(SAML, &[]).unwrap();
    let s = c.connections[0].saml().unwrap();
    assert_eq!(s.entity_id, "https://sso.example.com/saml/corp/metadata");
    assert_eq!(s.acs_url.as_str(), "https://sso.example.com/saml/corp/acs");
    assert_eq!(s.slo_url.as_str(), "https://sso.example.com/saml/corp/slo");
    assert_eq!(s.required_signature, RequiredSignature::Either);
    assert!(!s.allow_idp_initiated);
    assert!(!s.sign_requests, "nothing to sign with");
    assert_eq!(s.subject, SamlSubject::NameId);
}

#[test]
fn saml_mistakes_name_the_key_and_the_fix() {
    let bad = format!(
        "{SAML}signature_algorithms = [\"rsa-sha1\"]\nrequired_signature = \"maybe\"\nsign_requests = true\nidp_metadata_file = \"/x\"\n"
    )
    .replace("kind = \"saml\"", "kind = \"saml\"\nclient_id = \"x\"");
    let err = load(&bad, &[]).unwrap_err().to_string();
    for needle in [
        "connection[corp].saml.signature_algorithms = \"rsa-sha1\"",
        "SHA-1",
        "connection[corp].saml.required_signature = \"maybe\"",
        "connection[corp].saml.sign_requests",
        "connection[corp].saml.idp_metadata_url",
        "keep exactly one",
        "connection[corp].client_id",
        "OIDC setting",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let err = load(
        &SAML.replace(
            "idp_metadata_url = \"https://idp.example.com/metadata\"",
            "idp_metadata_url = \"http://idp.example.com/m\"",
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("must be an https URL"), "{err}");
    let err = load(
        &format!("{SAML}idp_metadata_certificate = \"not a certificate\"\nidp_entity_id = \"\"\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "connection[corp].saml.idp_metadata_certificate",
        "holds no PEM certificate",
        "connection[corp].saml.idp_entity_id",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

const LDAP_DIRECTORY: &str = r#"
[connection.directory]
kind = "ldap"
url = "ldaps://ldap.example.com"
bind_dn = "cn=sweeper"
bind_password = "x"
base_dn = "ou=people,dc=example,dc=com"
subject_attribute = "objectGUID"
"#;

#[test]
fn directory_listing_and_purge_keys_have_safe_defaults_and_named_errors() {
    let c = load(&format!("{OIDC}{LDAP_DIRECTORY}"), &[]).unwrap();
    let d = c.connections[0].directory.as_ref().unwrap();
    assert_eq!(d.policy.without_subject, Tolerance::default());
    assert!(!d.policy.without_subject.allows(1, 1000));
    assert_eq!(
        (d.policy.max_purge_fraction, d.policy.max_purge_count),
        (0.1, 100)
    );
    let DirectorySourceConfig::Ldap(l) = &d.source else {
        panic!()
    };
    assert_eq!(l.ignore_references.len(), 3);
    let bad = format!(
        "{OIDC}{LDAP_DIRECTORY}ignore_references = [\"*\"]\nmax_entries_without_subject_fraction = 2.0\nmax_purge_fraction = -1.0\n"
    );
    let e = load(&bad, &[]).unwrap_err().to_string();
    for key in [
        "connection[corp].directory.ignore_references",
        "connection[corp].directory.max_entries_without_subject_fraction",
        "connection[corp].directory.max_purge_fraction",
    ] {
        assert!(e.contains(key), "{key} not named in: {e}");
    }
    assert!(e.contains("would ignore every search reference"), "{e}");
}

#[test]
fn redis_sessions_need_a_state_key_and_say_how_to_make_one() {
    let redis = "[sessions]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"";
    let err = load(redis, &[]).unwrap_err().to_string();
    assert!(err.contains("server.state_key"), "{err}");
    assert!(err.contains("openssl rand -hex 32"), "{err}");
    let c = load(&format!("[server]\nstate_key = \"{KEY_A}\"\n{redis}"), &[]).unwrap();
    assert_eq!(c.server.state_keys.len(), 1);
    assert!(!c.server.state_key_ephemeral);
}

#[test]
fn in_process_sessions_without_a_state_key_get_one_of_their_own() {
    let c = load("", &[]).unwrap();
    assert!(c.server.state_key_ephemeral);
    assert_eq!(c.server.state_keys.len(), 1);
}

#[test]
fn state_keys_rotate_as_a_list_and_bad_ones_are_named_without_their_value() {
    let c = load(
        &format!("[server]\nstate_key = [\"{KEY_B}\", {{ env = \"JB_TEST_OLD_STATE_KEY\" }}]"),
        &[],
    );
    let err = c.unwrap_err().to_string();
    assert!(err.contains("server.state_key[1]"), "{err}");
    assert!(err.contains("JB_TEST_OLD_STATE_KEY"), "{err}");
    let c = load(
        &format!("[server]\nstate_key = [\"{KEY_B}\", \"{KEY_A}\"]"),
        &[],
    )
    .unwrap();
    assert_eq!(c.server.state_keys.len(), 2);
    let err = load("[server]\nstate_key = \"not-a-key-hunter2\"", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.state_key:"), "{err}");
    assert!(err.contains("32 random bytes"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(
        !format!(
            "{:?}",
            load(&format!("[server]\nstate_key = \"{KEY_A}\""), &[]).unwrap()
        )
        .contains(KEY_A)
    );
}

#[test]
fn rate_limits_and_trusted_proxies_are_checked() {
    let c = load(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"::1\"]\n[server.rate_limits]\nlogin = { burst = 3, per_second = 0.5 }",
        &[],
    )
    .unwrap();
    assert_eq!(c.server.trusted_proxies.len(), 3);
    assert_eq!(
        c.server.rate_limits.login,
        Rate {
            burst: 3,
            per_second: 0.5
        }
    );
    assert_eq!(c.server.rate_limits.acs, limits::DEFAULT_ACS);
    assert!(c.server.rate_limits.enabled);
    let err = load(
        "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n[server.rate_limits]\nacs = { burst = 0, per_second = 1 }\nmax_addresses = 1",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.trusted_proxies[0]"), "{err}");
    assert!(err.contains("server.rate_limits.acs"), "{err}");
    assert!(err.contains("server.rate_limits.max_addresses"), "{err}");
    let err = load(
        "[server.rate_limits]\nloginn = { burst = 1, per_second = 1 }",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("loginn"), "{err}");
}

#[test]
fn usernames_are_immutable_by_default_and_a_freed_name_is_held_for_90_days() {
    let c = load(OIDC, &[]).unwrap();
    let u = &c.connections[0].usernames;
    assert!(!u.update);
    assert_eq!(u.quarantine.period, Duration::from_secs(90 * 86400));
    assert!(u.quarantine.hash_key.is_none());
    let c = load(
        &format!(
            "[accounts]\nusername_quarantine = \"30d\"\nusername_hash_key = \"{}\"\n{OIDC}update_username = true\n",
            "k".repeat(32)
        ),
        &[],
    )
    .unwrap();
    let u = &c.connections[0].usernames;
    assert!(u.update);
    assert_eq!(u.quarantine.period, Duration::from_secs(30 * 86400));
    assert_eq!(u.quarantine.hash_key.as_ref().unwrap().expose().len(), 32);
}

#[test]
fn a_zero_quarantine_turns_it_off_and_a_short_or_bad_setting_is_named() {
    let c = load("[accounts]\nusername_quarantine = \"0\"", &[]).unwrap();
    assert!(!c.accounts.username_quarantine.is_on());
    let e = load(
        "[accounts]\nusername_quarantine = \"soon\"\nusername_hash_key = \"short\"",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("accounts.username_quarantine = \"soon\""), "{e}");
    assert!(
        e.contains("accounts.username_hash_key: is shorter than 32"),
        "{e}"
    );
    assert!(!e.contains("short\""), "the key is never shown: {e}");
}

#[test]
fn the_report_gives_each_connections_email_trust_and_warns_of_risky_opt_ins() {
    let saml = "[[connection]]\nname = \"adfs\"\nkind = \"saml\"\n[connection.saml]\nidp_metadata_file = \"/etc/idp.xml\"\nallow_unstable_name_id = true\nallow_unsigned_cbc = true\naccepted_name_qualifiers = [\"https://old-idp.example.com\"]\naccepted_sp_name_qualifiers = [\"urn:example:affiliation\"]\n";
    let c = load(
        &format!("{OIDC}[connection.mapping]\ntrust_email = true\n{saml}"),
        &[],
    )
    .unwrap();
    let out = report(&c).to_string();
    for want in [
        "connection corp (oidc",
        "email_verified = true or no email_verified at all",
        "connection adfs (saml",
        "the address the IdP asserts is trusted",
        "username: kept as the account was created (update_username = false",
        "6 warnings:",
        "connection[corp].mapping.trust_email = \"true\"",
        "connection[adfs].saml.allow_unstable_name_id = \"true\"",
        "connection[adfs].saml.allow_unsigned_cbc = \"true\"",
        "connection[adfs].saml.accepted_name_qualifiers = \"https://old-idp.example.com\"",
        "connection[adfs].saml.accepted_sp_name_qualifiers = \"urn:example:affiliation\"",
        "accounts.username_hash_key: is not set",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    assert!(!out.contains("s3cret"), "{out}");
    let plain = report(
        &load(
            &format!(
                "{OIDC}[accounts]\nusername_hash_key = \"{}\"\n",
                "k".repeat(40)
            ),
            &[],
        )
        .unwrap(),
    )
    .to_string();
    assert!(
        plain.contains("verified only when the provider sends email_verified = true"),
        "{plain}"
    );
    assert!(plain.contains("no warnings"), "{plain}");
}
