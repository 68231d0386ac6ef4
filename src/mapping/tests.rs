use super::*;
use proptest::prelude::*;
use serde_json::json;

fn claims(v: Value) -> Claims {
    v.as_object().unwrap().clone()
}

fn mapping(toml_src: &str) -> Mapping {
    let cfg: MappingConfig = toml::from_str(toml_src).unwrap();
    Mapping::compile(&cfg).unwrap()
}

const ROLES: &str = r#"
display_name = "{given_name} {family_name}"
[attributes]
department = "department"
[[roles]]
role = "admin"
claim = "groups"
equals = "admins"
[[roles]]
role = "engineer"
claim = "groups"
matches = "eng-.*"
[[roles]]
role = "realm-viewer"
claim = "realm_access.roles"
contains = "view"
"#;

#[test]
fn maps_fields_roles_and_attributes_from_claims() {
    let m = mapping(ROLES);
    let p = m
        .apply(&claims(json!({
            "sub": "u1", "preferred_username": "ada", "email": "Ada@Example.COM", "email_verified": true,
            "given_name": "Ada", "family_name": "Lovelace", "department": "R&D",
            "groups": ["admins", "eng-core", "other"],
            "realm_access": {"roles": ["viewers"]},
            "phone_number": "+44 1234", "address": {"street": "x"}
        })))
        .unwrap();
    assert_eq!(p.username, "ada");
    assert_eq!(
        p.email.as_ref().map(VerifiedEmail::as_str),
        Some("Ada@example.com")
    );
    assert_eq!(p.display_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(p.attributes.get("department"), Some(&json!("R&D")));
    let roles: Vec<_> = p.roles.iter().map(String::as_str).collect();
    assert_eq!(roles, ["admin", "engineer", "realm-viewer"]);
    assert_eq!(p.dropped_claims, ["address", "phone_number"]);
}

#[test]
fn regex_rules_match_whole_values_only() {
    let m = mapping(ROLES);
    let p = m
        .apply(&claims(
            json!({"preferred_username": "x", "groups": ["not-eng-x"]}),
        ))
        .unwrap();
    assert!(p.roles.is_empty());
}

#[test]
fn a_role_removed_at_the_idp_is_not_derived_again() {
    let m = mapping(ROLES);
    let with = m
        .apply(&claims(
            json!({"preferred_username": "x", "groups": ["admins"]}),
        ))
        .unwrap();
    let without = m
        .apply(&claims(json!({"preferred_username": "x", "groups": []})))
        .unwrap();
    assert!(with.roles.contains("admin"));
    assert!(without.roles.is_empty());
}

#[test]
fn username_falls_back_to_email_when_no_preferred_username() {
    let m = mapping("");
    let p = m
        .apply(&claims(json!({"email": "bob@example.org"})))
        .unwrap();
    assert_eq!(p.username, "bob@example.org");
}

#[test]
fn missing_required_claim_is_refused_by_name() {
    let m = mapping(r#"required_claims = ["email"]"#);
    let err = m
        .apply(&claims(json!({"preferred_username": "x"})))
        .unwrap_err();
    assert_eq!(err, Refusal::MissingClaim("email".into()));
}

#[test]
fn email_domain_allow_list_is_enforced_case_insensitively() {
    let m = mapping(r#"allowed_email_domains = ["Example.com"]"#);
    assert!(
        m.apply(&claims(
            json!({"email": "a@EXAMPLE.com", "email_verified": true})
        ))
        .is_ok()
    );
    assert_eq!(
        m.apply(&claims(
            json!({"email": "a@example.com.evil.org", "email_verified": true})
        ))
        .unwrap_err(),
        Refusal::EmailDomainNotAllowed
    );
    assert_eq!(
        m.apply(&claims(json!({"preferred_username": "a"})))
            .unwrap_err(),
        Refusal::MissingClaim("email".into())
    );
}

#[test]
fn unverified_email_is_refused_by_default() {
    let m = mapping("");
    assert_eq!(
        m.apply(&claims(
            json!({"email": "a@b.org", "email_verified": false})
        ))
        .unwrap_err(),
        Refusal::EmailNotVerified
    );
}

#[test]
fn compile_errors_name_the_key() {
    let cfg: MappingConfig = toml::from_str(
        r#"
username = "{oops"
[[roles]]
role = "r"
claim = "groups"
matches = "("
[[roles]]
role = "r2"
claim = "groups"
"#,
    )
    .unwrap();
    let errs = Mapping::compile(&cfg).unwrap_err();
    let keys: Vec<_> = errs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["username", "roles[0].matches", "roles[1]"]);
    assert!(Template::parse("{a b}").is_err());
    assert!(Template::parse("x }").is_err());
    assert!(Template::parse("{}").is_err());
}

#[test]
fn templates_collapse_whitespace_and_skip_missing_parts() {
    let t = Template::parse("{given_name} {family_name}").unwrap();
    assert_eq!(
        t.render(&claims(json!({"given_name": "Ada"}))).as_deref(),
        Some("Ada")
    );
    assert_eq!(t.render(&claims(json!({}))), None);
    let lit = Template::parse("{{{x}}}").unwrap();
    assert_eq!(lit.render(&claims(json!({"x": 1}))).as_deref(), Some("{1}"));
}

proptest! {
    /// Data minimisation: whatever the IdP sends, the profile holds only values reachable from
    /// mapped claims, and every unmapped claim name is reported as dropped.
    #[test]
    fn unmapped_claims_never_reach_the_profile(
        extra in proptest::collection::btree_map("[a-z]{3,8}_x", "[A-Za-z0-9]{12,20}", 0..8),
        user in "[a-z]{3,10}",
    ) {
        let m = mapping(ROLES);
        let mut c = claims(json!({"preferred_username": user}));
        for (k, v) in &extra { c.insert(k.clone(), Value::String(format!("SECRET{v}"))); }
        let p = m.apply(&c).unwrap();
        let dump = format!("{:?}{:?}{:?}{:?}", p.username, p.email, p.display_name, p.attributes);
        prop_assert!(!dump.contains("SECRET"));
        for k in extra.keys() { prop_assert!(p.dropped_claims.contains(k)); }
    }

    /// Mapping is a pure function: the same claims always give the same profile.
    #[test]
    fn mapping_is_deterministic(groups in proptest::collection::vec("[a-z-]{1,12}", 0..20)) {
        let m = mapping(ROLES);
        let c = claims(json!({"preferred_username": "u", "groups": groups}));
        prop_assert_eq!(m.apply(&c), m.apply(&c));
    }
}

/// The groups header joins roles with commas: a role named `admin,billing` was sent to apps
/// as two roles, and one with a trailing space or a control character as a role no rule
/// names. Such names are refused when the mapping is compiled, naming the key.
#[test]
fn role_names_with_commas_control_characters_or_spaces_at_the_ends_are_refused() {
    for bad in [
        "admin,billing",
        " admin",
        "admin ",
        "ad\nmin",
        "a\u{7f}",
        "",
    ] {
        let cfg: MappingConfig = toml::from_str(&format!(
            "[[roles]]\nrole = {}\nclaim = \"groups\"\nequals = \"x\"\n",
            toml::Value::String(bad.into())
        ))
        .unwrap();
        let errors = Mapping::compile(&cfg).unwrap_err();
        assert!(
            errors.iter().any(|(k, _)| k == "roles[0].role"),
            "{bad:?}: {errors:?}"
        );
    }
    assert_eq!(
        RoleName::parse("team:billing admins").unwrap().as_str(),
        "team:billing admins"
    );
}

proptest! {
    /// Whatever a parsed role name is, the groups header keeps it as one role.
    #[test]
    fn a_parsed_role_name_survives_the_groups_header(s in "\\PC{0,40}") {
        if let Ok(r) = RoleName::parse(&s) {
            let header = [r.as_str(), "other"].join(",");
            let parts: Vec<&str> = header.split(',').collect();
            prop_assert_eq!(parts.len(), 2);
            prop_assert_eq!(parts[0], s.as_str());
            prop_assert_eq!(parts[0].trim(), parts[0]);
        }
    }
}

/// An absent `email_verified` passed for verified: the address was stored, sent to apps and
/// let through `allowed_email_domains`, so anyone who could set an address at a lax IdP got
/// past the domain gate. Absent is not verified: the address is dropped, and the gate refuses.
#[test]
fn an_email_without_email_verified_is_not_stored_and_cannot_pass_the_domain_gate() {
    let open = mapping("");
    let p = open
        .apply(&claims(
            json!({"preferred_username": "a", "email": "a@corp.example"}),
        ))
        .unwrap();
    assert_eq!(p.email, None, "an unverified email is dropped");
    let gated = mapping(r#"allowed_email_domains = ["corp.example"]"#);
    assert_eq!(
        gated
            .apply(&claims(
                json!({"preferred_username": "a", "email": "a@corp.example"})
            ))
            .unwrap_err(),
        Refusal::EmailNotVerified
    );
    for flag in [json!(true), json!("true")] {
        let p = gated
            .apply(&claims(
                json!({"preferred_username": "a", "email": "a@corp.example", "email_verified": flag}),
            ))
            .unwrap();
        assert_eq!(p.email.unwrap().as_str(), "a@corp.example");
    }
}

/// IdPs that never send the flag (SAML, Entra ID without `xms_edov`): trust is stated per
/// connection.
#[test]
fn trust_email_makes_the_idps_address_verified() {
    let trusted = mapping("trust_email = true\nallowed_email_domains = [\"corp.example\"]");
    let p = trusted
        .apply(&claims(
            json!({"preferred_username": "a", "email": "a@corp.example"}),
        ))
        .unwrap();
    assert_eq!(p.email.unwrap().as_str(), "a@corp.example");
    // An explicit false still refuses.
    assert_eq!(
        trusted
            .apply(&claims(
                json!({"preferred_username": "a", "email": "a@corp.example", "email_verified": false})
            ))
            .unwrap_err(),
        Refusal::EmailNotVerified
    );
}
