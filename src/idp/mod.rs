//! Protocol adapters. Each one owns everything protocol-specific (discovery, PKCE, state,
//! nonce, signatures, key rotation) and hands on a [`NormalizedLogin`]; nothing after it knows
//! which protocol the login came from.

pub mod oidc;
pub mod saml;

use crate::mapping::Claims;

/// A verified login, protocol-neutral.
#[derive(Debug, Clone)]
pub struct NormalizedLogin {
    pub connection: String,
    pub subject: String,
    /// Verified claims; unmapped ones are dropped by the mapping and never stored or logged.
    pub claims: Claims,
    /// The IdP's session id (OIDC `sid`, SAML SessionIndex), for IdP-initiated logout.
    pub idp_session: Option<String>,
    /// How the IdP names the person in its logout messages, when it does (SAML: the NameID).
    pub idp_principal: Option<IdpPrincipal>,
    /// Unix seconds after which the IdP wants the session over (SAML SessionNotOnOrAfter).
    pub session_ends_at: Option<i64>,
    /// What makes this response unique, to be recorded once (a replay is refused), when the
    /// protocol has no single-use mechanism of its own (SAML; OIDC's code and state are
    /// single use already).
    pub single_use: Option<SingleUse>,
}

/// The person as the IdP names them in logout messages, opaque after the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpPrincipal {
    /// The adapter's canonical form: two logins name the same principal exactly when their
    /// keys are equal, and a logout message from the IdP yields the same key (SAML:
    /// [`saml::slo::principal`]). The session store builds its logout index keys from it.
    pub key: String,
    /// What the adapter needs back to ask the IdP to end its session (SAML: the NameID with
    /// its Format and qualifiers, echoed in our LogoutRequest), kept with the session as is.
    pub logout_ref: serde_json::Value,
}

/// A key to record once in the store that replicas share, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleUse {
    pub key: String,
    pub ttl: std::time::Duration,
}

/// Why the adapter refused a login response. Messages are safe to show and to log: they name
/// what failed, never token contents.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("the identity provider reported an error: {code}")]
    ProviderError { code: String },
    #[error("the response carries no authorization code")]
    MissingCode,
    #[error("the `iss` response parameter is missing, but the provider promises it (RFC 9207)")]
    IssuerParamMissing,
    #[error("the `iss` response parameter names another issuer (possible mix-up attack)")]
    IssuerParamMismatch,
    #[error("the identity provider refused the authorization code ({code})")]
    CodeRejected { code: String },
    #[error("the token response carries no ID token")]
    IdTokenMissing,
    #[error("the ID token is invalid: {0}")]
    IdTokenInvalid(String),
    #[error("the userinfo response is invalid: {0}")]
    UserinfoInvalid(String),
    #[error("the identity provider is unreachable or answered badly: {what}")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: Option<BoxError>,
    },
}

/// An underlying error kept as a source, whatever its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl AdapterError {
    /// The provider could not be used; `cause` is kept as the error's source for the log.
    pub fn unavailable(what: &'static str, cause: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            what,
            cause: Some(cause.into()),
        }
    }
}
