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
    /// SAML: the NameID, echoed when we ask the IdP to end its session.
    pub name_id: Option<saml::logout::NameId>,
    /// Unix seconds after which the IdP wants the session over (SAML SessionNotOnOrAfter).
    pub session_ends_at: Option<i64>,
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
