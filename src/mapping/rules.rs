//! The admin-facing shape of a claim mapping, as written under `[connection.mapping]`.
//! Parsed once at start into [`super::Mapping`]; nothing here touches claims.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Template for the local username. Default: `{preferred_username}`, falling back to `{email}`.
    pub username: Option<String>,
    /// Template for the email. Default: `{email}`.
    pub email: Option<String>,
    /// Template for the display name. Default: `{name}`.
    pub display_name: Option<String>,
    /// Extra account attributes: attribute name -> template.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Claims that must be present (and non-empty) for a login to be accepted.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// When non-empty, the email's domain must be one of these (case-insensitive).
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Refuse logins whose `email_verified` claim is present and false. Default: true.
    pub require_verified_email: Option<bool>,
    /// Treat every email the IdP sends as verified. Default: false for OIDC connections (only
    /// `email_verified = true` makes an email verified; an absent claim does not), true for SAML
    /// connections (SAML has no such flag: the IdP asserts the address). For IdPs that never
    /// send the claim (Entra ID sends it only as the optional claim `xms_edov`), state the trust
    /// here explicitly.
    pub trust_email: Option<bool>,
    /// Role rules, evaluated at every login; the union of matching rules is the claim-derived role set.
    #[serde(default)]
    pub roles: Vec<RoleRuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRuleConfig {
    /// The role granted when the rule matches.
    pub role: String,
    /// The claim to test (dotted path for nested objects, e.g. `realm_access.roles`).
    pub claim: String,
    /// Matches when the claim (or any element of it, for arrays) equals this value.
    pub equals: Option<String>,
    /// Matches when the claim (or any element) contains this substring.
    pub contains: Option<String>,
    /// Matches when the claim (or any element) fully matches this regular expression.
    pub matches: Option<String>,
}
