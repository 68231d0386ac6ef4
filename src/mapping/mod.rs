//! Claim mapping: claims in, [`Profile`] out, or a [`Refusal`] with a reason.
//!
//! Pure by design (no I/O, no actix, no diesel) so that it is unit- and property-tested, and so
//! that a dry run can show an admin what a mapping would do. Only what the mapping names leaves
//! this module: every other claim is dropped here and is never stored or logged.

mod rules;
mod template;

pub use rules::{MappingConfig, RoleRuleConfig};
pub use template::Template;

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Claims as the protocol adapter hands them over (already verified).
pub type Claims = Map<String, Value>;

/// Protocol bookkeeping claims that are consumed by the adapter and are never account data.
const PROTOCOL_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "azp",
    "at_hash",
    "c_hash",
    "auth_time",
    "acr",
    "amr",
    "sid",
    "jti",
];

const MAX_FIELD_LEN: usize = 1024;

/// An email address the identity provider vouches for. Only the mapping makes one from claims
/// (when `email_verified` is true, or the connection trusts the IdP's emails), so an unverified
/// address cannot reach the domain gate, the database or an app's header by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEmail(String);

impl VerifiedEmail {
    /// For callers that verified the address themselves (imports, tests); never for claims.
    pub fn assume_verified(address: impl Into<String>) -> Self {
        Self(address.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit('@').next().unwrap_or_default()
    }
}

/// The outcome of a successful mapping: exactly what may be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub username: String,
    /// Only a verified address: an unverified one is dropped (never stored or sent to apps).
    pub email: Option<VerifiedEmail>,
    pub display_name: Option<String>,
    pub attributes: BTreeMap<String, Value>,
    pub roles: BTreeSet<String>,
    /// Names (never values) of the claims that were not mapped and were dropped.
    pub dropped_claims: Vec<String>,
}

/// Why a login was refused by the mapping. Messages name claims, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the identity provider did not send the required claim `{0}`")]
    MissingClaim(String),
    #[error("no username could be derived from the claims (check the `username` mapping)")]
    NoUsername,
    #[error("the derived {field} is not acceptable: {why}")]
    InvalidField {
        field: &'static str,
        why: &'static str,
    },
    #[error("the email address is not verified by the identity provider")]
    EmailNotVerified,
    #[error("email addresses of this domain are not allowed on this connection")]
    EmailDomainNotAllowed,
}

#[derive(Debug)]
enum Matcher {
    Equals(String),
    Contains(String),
    Matches(Regex),
}

#[derive(Debug)]
struct RoleRule {
    role: String,
    claim: String,
    matcher: Matcher,
}

/// A compiled mapping, ready to apply.
#[derive(Debug)]
pub struct Mapping {
    username: Vec<Template>,
    email: Template,
    display_name: Template,
    attributes: BTreeMap<String, Template>,
    required_claims: Vec<String>,
    allowed_email_domains: Vec<String>,
    require_verified_email: bool,
    trust_email: bool,
    roles: Vec<RoleRule>,
    referenced: BTreeSet<String>,
}

impl Mapping {
    /// Compiles the admin's mapping. Errors are `(key, problem)` pairs relative to the mapping table.
    pub fn compile(cfg: &MappingConfig) -> Result<Self, Vec<(String, String)>> {
        let errors = std::cell::RefCell::new(Vec::new());
        let tpl = |key: &str, src: &str| match Template::parse(src) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.borrow_mut().push((key.to_string(), e));
                None
            }
        };
        let username = match &cfg.username {
            Some(s) => tpl("username", s).into_iter().collect(),
            None => vec![
                Template::parse("preferred_username").expect("static template"),
                Template::parse("email").expect("static template"),
            ],
        };
        let email = tpl("email", cfg.email.as_deref().unwrap_or("email"));
        let display_name = tpl(
            "display_name",
            cfg.display_name.as_deref().unwrap_or("name"),
        );
        let mut attributes = BTreeMap::new();
        for (name, src) in &cfg.attributes {
            if matches!(name.as_str(), "username" | "email" | "display_name") {
                errors.borrow_mut().push((
                    format!("attributes.{name}"),
                    "is a built-in field; set it with the top-level key instead".into(),
                ));
            }
            if let Some(t) = tpl(&format!("attributes.{name}"), src) {
                attributes.insert(name.clone(), t);
            }
        }
        let mut roles = Vec::new();
        for (i, r) in cfg.roles.iter().enumerate() {
            let key = format!("roles[{i}]");
            let matcher = match (&r.equals, &r.contains, &r.matches) {
                (Some(v), None, None) => Some(Matcher::Equals(v.clone())),
                (None, Some(v), None) => Some(Matcher::Contains(v.clone())),
                (None, None, Some(v)) => match Regex::new(&format!("^(?:{v})$")) {
                    Ok(re) => Some(Matcher::Matches(re)),
                    Err(e) => {
                        errors
                            .borrow_mut()
                            .push((format!("{key}.matches"), format!("invalid regex: {e}")));
                        None
                    }
                },
                _ => {
                    errors.borrow_mut().push((
                        key.clone(),
                        "needs exactly one of `equals`, `contains` or `matches`".into(),
                    ));
                    None
                }
            };
            let role = match RoleName::parse(&r.role) {
                Ok(role) => Some(role),
                Err(why) => {
                    errors
                        .borrow_mut()
                        .push((format!("{key}.role"), why.into()));
                    None
                }
            };
            if let (Some(matcher), Some(role)) = (matcher, role) {
                roles.push(RoleRule {
                    role: role.0,
                    claim: r.claim.clone(),
                    matcher,
                });
            }
        }
        let errors = errors.into_inner();
        if !errors.is_empty() {
            return Err(errors);
        }
        let (email, display_name) = (email.expect("checked"), display_name.expect("checked"));
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        for t in username
            .iter()
            .chain([&email, &display_name])
            .chain(attributes.values())
        {
            referenced.extend(t.claim_roots());
        }
        referenced.extend(cfg.required_claims.iter().map(|c| root(c).to_string()));
        referenced.extend(roles.iter().map(|r| root(&r.claim).to_string()));
        referenced.insert("email_verified".into());
        Ok(Self {
            username,
            email,
            display_name,
            attributes,
            required_claims: cfg.required_claims.clone(),
            allowed_email_domains: cfg
                .allowed_email_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            require_verified_email: cfg.require_verified_email.unwrap_or(true),
            trust_email: cfg.trust_email.unwrap_or(false),
            roles,
            referenced,
        })
    }

    /// Whether an email sent without `email_verified` counts as verified (`trust_email`).
    pub fn trusts_email(&self) -> bool {
        self.trust_email
    }

    /// Whether a login whose `email_verified` is false is refused (`require_verified_email`).
    pub fn requires_verified_email(&self) -> bool {
        self.require_verified_email
    }

    /// Applies the mapping to verified claims.
    pub fn apply(&self, claims: &Claims) -> Result<Profile, Refusal> {
        for name in &self.required_claims {
            if lookup(claims, name).is_none_or(is_empty) {
                return Err(Refusal::MissingClaim(name.clone()));
            }
        }
        let username = self
            .username
            .iter()
            .find_map(|t| t.render(claims))
            .ok_or(Refusal::NoUsername)?;
        let username = check_field("username", username)?;
        let asserted = match self.email.render(claims) {
            Some(e) => Some(normalize_email(&check_field("email", e)?)?),
            None => None,
        };
        // OIDC Core 5.1: `email_verified` is a boolean; "true" as a string (some userinfo
        // endpoints) says the same. Absent is not verified.
        let flag = match claims.get("email_verified") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) if s == "true" => Some(true),
            Some(Value::String(s)) if s == "false" => Some(false),
            _ => None,
        };
        let email = match asserted {
            Some(_) if flag == Some(false) && self.require_verified_email => {
                return Err(Refusal::EmailNotVerified);
            }
            // Trust never overrides an explicit `false`.
            Some(address) if flag == Some(true) || (self.trust_email && flag.is_none()) => {
                Some(VerifiedEmail(address))
            }
            // Unverified: dropped. A domain gate cannot be passed with it.
            Some(_) if !self.allowed_email_domains.is_empty() => {
                return Err(Refusal::EmailNotVerified);
            }
            Some(_) => None,
            None if !self.allowed_email_domains.is_empty() => {
                return Err(Refusal::MissingClaim("email".into()));
            }
            None => None,
        };
        if let Some(email) = &email
            && !self.allowed_email_domains.is_empty()
            && !self
                .allowed_email_domains
                .iter()
                .any(|d| d == email.domain())
        {
            return Err(Refusal::EmailDomainNotAllowed);
        }
        let display_name = match self.display_name.render(claims) {
            Some(d) => Some(check_field("display name", d)?),
            None => None,
        };
        let attributes = self
            .attributes
            .iter()
            .filter_map(|(name, t)| t.render_value(claims).map(|v| (name.clone(), v)))
            .collect();
        let roles = self
            .roles
            .iter()
            .filter(|r| lookup(claims, &r.claim).is_some_and(|v| r.matcher.matches_value(v)))
            .map(|r| r.role.clone())
            .collect();
        let dropped_claims = claims
            .keys()
            .filter(|k| !self.referenced.contains(*k) && !PROTOCOL_CLAIMS.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(Profile {
            username,
            email,
            display_name,
            attributes,
            roles,
            dropped_claims,
        })
    }
}

impl Matcher {
    fn matches_value(&self, v: &Value) -> bool {
        match v {
            Value::Array(items) => items.iter().any(|i| self.matches_value(i)),
            Value::String(s) => self.matches_str(s),
            Value::Number(n) => self.matches_str(&n.to_string()),
            Value::Bool(b) => self.matches_str(if *b { "true" } else { "false" }),
            Value::Null | Value::Object(_) => false,
        }
    }

    fn matches_str(&self, s: &str) -> bool {
        match self {
            Self::Equals(v) => s == v,
            Self::Contains(v) => s.contains(v.as_str()),
            Self::Matches(re) => re.is_match(s),
        }
    }
}

fn root(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// A role name as apps receive it: the groups header joins roles with commas, so a name with a
/// comma would read as two roles (one of them chosen by whoever names the role), and control
/// characters or spaces at the ends would change the header or look like another role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("must not be empty");
        }
        if s.trim() != s {
            return Err("must not start or end with a space (remove it)");
        }
        if s.contains(',') {
            return Err("must not contain a comma: the groups header joins roles with commas");
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        if s.len() > Self::MAX_LEN {
            return Err("must be at most 128 bytes long");
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Looks a claim up by dotted path (`realm_access.roles`). A claim whose own name contains a dot
/// (some IdPs send URIs as names) is found first by its full name.
pub(crate) fn lookup<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn check_field(field: &'static str, v: String) -> Result<String, Refusal> {
    let v = v.trim().to_string();
    if v.is_empty() {
        return Err(Refusal::InvalidField {
            field,
            why: "it is empty",
        });
    }
    if v.len() > MAX_FIELD_LEN {
        return Err(Refusal::InvalidField {
            field,
            why: "it is too long",
        });
    }
    if v.chars().any(char::is_control) {
        return Err(Refusal::InvalidField {
            field,
            why: "it contains control characters",
        });
    }
    Ok(v)
}

fn normalize_email(e: &str) -> Result<String, Refusal> {
    let bad = Refusal::InvalidField {
        field: "email",
        why: "it is not an email address",
    };
    let (local, domain) = e.rsplit_once('@').ok_or(bad.clone())?;
    if local.is_empty()
        || domain.is_empty()
        || !domain.contains('.')
        || e.contains(char::is_whitespace)
    {
        return Err(bad);
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests;
