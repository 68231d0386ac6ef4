//! Bounds on a connection's protocol keys: NameID qualifiers (SAML), the JWKS refetch
//! interval and the age of a logout token (OIDC).

use super::*;

#[test]
fn name_id_qualifiers_are_listed_per_connection_and_an_empty_one_is_named() {
    let s = load(SAML, &[]).unwrap().connections[0]
        .saml()
        .unwrap()
        .clone();
    assert!(s.accepted_name_qualifiers.is_empty() && s.accepted_sp_name_qualifiers.is_empty());
    let listed = format!(
        "{SAML}accepted_name_qualifiers = [\"https://idp-old.example.com\"]\naccepted_sp_name_qualifiers = [\"urn:example:affiliation\"]\n"
    );
    let c = load(&listed, &[]).unwrap();
    let s = c.connections[0].saml().unwrap();
    assert_eq!(s.accepted_name_qualifiers, ["https://idp-old.example.com"]);
    assert_eq!(s.accepted_sp_name_qualifiers, ["urn:example:affiliation"]);
    let err = load(
        &format!(
            "{SAML}accepted_name_qualifiers = [\"\"]\naccepted_sp_name_qualifiers = [\" x\"]\n"
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "connection[corp].saml.accepted_name_qualifiers = \"\"",
        "connection[corp].saml.accepted_sp_name_qualifiers = \" x\"",
        "remove the entry",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// `jwks_refresh_min_interval` had no floor: a few milliseconds let every token that names an
/// unknown kid (anyone can post a logout token) make the bridge fetch the provider's JWKS.
#[test]
fn jwks_refresh_min_interval_has_a_floor_of_one_second() {
    for bad in ["0s", "0", "500ms", "999ms"] {
        let err = load(
            &format!("{OIDC}jwks_refresh_min_interval = \"{bad}\"\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "connection[corp].jwks_refresh_min_interval = \"{bad}\""
            )),
            "{bad}: {err}"
        );
    }
    let c = load(&format!("{OIDC}jwks_refresh_min_interval = \"1s\"\n"), &[]).unwrap();
    let o = c.connections[0].oidc().unwrap();
    assert_eq!(
        o.jwks_refresh_min_interval,
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn a_logout_token_lives_five_minutes_by_default_and_at_most_an_hour() {
    let c = load(OIDC, &[]).unwrap();
    let o = c.connections[0].oidc().unwrap();
    assert_eq!(o.logout_token_max_age, std::time::Duration::from_secs(300));
    let c = load(&format!("{OIDC}logout_token_max_age = \"30m\"\n"), &[]).unwrap();
    let o = c.connections[0].oidc().unwrap();
    assert_eq!(o.logout_token_max_age, std::time::Duration::from_secs(1800));
    for bad in ["2h", "0s"] {
        let err = load(&format!("{OIDC}logout_token_max_age = \"{bad}\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "connection[corp].logout_token_max_age = \"{bad}\""
            )),
            "{err}"
        );
    }
}
