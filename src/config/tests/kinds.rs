//! Each kind of connection and directory takes only its own keys, and says so by name.

use super::*;

const SCIM_DIRECTORY: &str = r#"
[connection.directory]
kind = "scim"
base_url = "https://idp.example.com/scim/v2"
token = "t0ken"
"#;

/// The problem about `key`, which must be there.
fn problem<'a>(err: &'a ConfigError, key: &str) -> &'a Problem {
    err.problems
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no problem about {key} in:\n{err}"))
}

#[test]
fn a_scim_directory_refuses_ldap_keys_by_name() {
    assert!(load(&format!("{OIDC}{SCIM_DIRECTORY}"), &[]).is_ok());
    let err = load(
        &format!("{OIDC}{SCIM_DIRECTORY}bind_dn = \"cn=sweeper\"\nstarttls = true\n"),
        &[],
    )
    .unwrap_err();
    for key in ["bind_dn", "starttls"] {
        let p = problem(&err, &format!("connection[corp].directory.{key}"));
        assert_eq!(
            p.message, "is an LDAP setting, which a SCIM directory does not take",
            "{err}"
        );
        assert!(p.fix.contains("kind = \"ldap\""), "{err}");
    }
    assert_eq!(err.problems.len(), 2, "{err}");
}

#[test]
fn an_ldap_directory_refuses_scim_keys_by_name() {
    let err = load(
        &format!(
            "{OIDC}{LDAP_DIRECTORY}token = {{ env = \"SCIM_TOKEN\" }}\nbase_url = \"https://x\"\n"
        ),
        &[],
    )
    .unwrap_err();
    for key in ["token", "base_url"] {
        let p = problem(&err, &format!("connection[corp].directory.{key}"));
        assert_eq!(
            p.message, "is a SCIM setting, which an LDAP directory does not take",
            "{err}"
        );
        assert!(p.fix.contains("kind = \"scim\""), "{err}");
    }
}

#[test]
fn an_oidc_connection_refuses_a_saml_table() {
    let err = load(
        &format!("{OIDC}[connection.saml]\nidp_metadata_file = \"/x\"\n"),
        &[],
    )
    .unwrap_err();
    let p = problem(&err, "connection[corp].saml");
    assert_eq!(
        p.message, "is a SAML setting, which an OIDC connection does not take",
        "{err}"
    );
    assert!(p.fix.contains("kind = \"saml\""), "{err}");
}

#[test]
fn a_saml_connection_refuses_oidc_keys_by_name() {
    let bad = SAML.replace(
        "kind = \"saml\"",
        "kind = \"saml\"\nissuer = \"https://idp.example.com\"\nclient_id = \"x\"",
    );
    let err = load(&bad, &[]).unwrap_err();
    for key in ["issuer", "client_id"] {
        let p = problem(&err, &format!("connection[corp].{key}"));
        assert_eq!(
            p.message, "is an OIDC setting, which a SAML connection does not take",
            "{err}"
        );
        assert!(p.fix.contains("kind = \"oidc\""), "{err}");
        assert!(p.fix.contains("[connection.saml]"), "{err}");
    }
    assert_eq!(err.problems.len(), 2, "{err}");
}

#[test]
fn an_unknown_or_missing_kind_is_named_with_the_choices() {
    let err = load(&OIDC.replace("kind = \"oidc\"", "kind = \"ldap\""), &[]).unwrap_err();
    let p = problem(&err, "connection[corp].kind");
    assert_eq!(p.value.as_deref(), Some("ldap"));
    assert_eq!(p.fix, "write \"oidc\" or \"saml\"");
    let err = load(
        &format!("{OIDC}{}", SCIM_DIRECTORY.replace("\"scim\"", "\"ad\"")),
        &[],
    )
    .unwrap_err();
    let p = problem(&err, "connection[corp].directory.kind");
    assert_eq!(p.value.as_deref(), Some("ad"));
    assert_eq!(p.message, "is not a directory kind");
    assert_eq!(p.fix, "write \"ldap\" or \"scim\"");
    assert_eq!(
        err.problems.len(),
        1,
        "keys of a known kind are not judged: {err}"
    );
    let err = load(&OIDC.replace("kind = \"oidc\"\n", ""), &[]).unwrap_err();
    assert_eq!(problem(&err, "connection[corp].kind").message, "is missing");
}

#[test]
fn a_key_of_no_kind_is_named_with_the_keys_its_table_takes() {
    let err = load(
        &format!("{OIDC}client_secrets = \"x\"\n{SCIM_DIRECTORY}tokne = \"y\"\n"),
        &[],
    )
    .unwrap_err();
    let p = problem(&err, "connection[corp].client_secrets");
    assert_eq!(p.message, "is not a setting of an OIDC connection");
    assert!(p.fix.contains("client_secret,"), "{err}");
    assert!(p.fix.contains("display_name"), "shared keys too: {err}");
    let p = problem(&err, "connection[corp].directory.tokne");
    assert!(p.fix.contains("token"), "{err}");
    assert!(p.fix.contains("max_purge_count"), "{err}");
    let err = load(
        &SAML.replace(
            "kind = \"saml\"",
            "kind = \"saml\"\nidp_metadata_file = \"/x\"",
        ),
        &[],
    )
    .unwrap_err();
    let p = problem(&err, "connection[corp].idp_metadata_file");
    assert!(p.fix.contains("[connection.saml]"), "{err}");
}

#[test]
fn a_wrong_type_names_its_key_and_other_connections_are_still_checked() {
    let err = load(
        &format!(
            "[server]\nlisten = \"nope\"\n{OIDC}scopes = \"openid\"\n{SCIM_DIRECTORY}page_size = \"big\"\n[[connection]]\nname = \"other\"\nkind = \"saml\"\n[connection.saml]\nidp_metadata_urll = \"https://x\"\n"
        ),
        &[],
    )
    .unwrap_err();
    for key in [
        "server.listen",
        "connection[corp].scopes",
        "connection[corp].directory.page_size",
        "connection[other].saml.idp_metadata_urll",
    ] {
        problem(&err, key);
    }
    let err = load("[[connection]]\nkind = \"oidc\"\n", &[]).unwrap_err();
    assert_eq!(problem(&err, "connection[0].name").message, "is missing");
}

#[test]
fn the_keys_of_a_struct_are_serdes_own_list() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Two {
        first: Option<u32>,
        #[serde(rename = "second_key", default)]
        second: String,
    }
    assert_eq!(table::keys_of::<Two>(), ["first", "second_key"]);
}
