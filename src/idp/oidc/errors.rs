//! Why an ID token was refused, in words an operator can act on.

use super::*;

pub(super) enum IdTokenFailure {
    Missing,
    UnknownKey,
    Invalid(String),
    /// The keys could not be fetched or are out of date.
    Unavailable(AdapterError),
}

impl IdTokenFailure {
    pub(super) fn into_adapter(self) -> AdapterError {
        match self {
            Self::Missing => AdapterError::IdTokenMissing,
            Self::UnknownKey => {
                AdapterError::IdTokenInvalid("signed by a key the provider does not publish".into())
            }
            Self::Invalid(why) => AdapterError::IdTokenInvalid(why),
            Self::Unavailable(e) => e,
        }
    }
}

/// A short reason that names what failed without echoing token contents.
pub(super) fn describe_claims_error(e: &openidconnect::ClaimsVerificationError) -> String {
    use openidconnect::ClaimsVerificationError as C;
    match e {
        C::Expired(_) => "expired".into(),
        C::InvalidAudience(_) => "wrong audience".into(),
        C::InvalidIssuer(_) => "wrong issuer".into(),
        C::InvalidNonce(_) => "wrong or missing nonce".into(),
        C::InvalidSubject(_) => "subject does not match the ID token".into(),
        C::InvalidAuthContext(_) | C::InvalidAuthTime(_) => "authentication context refused".into(),
        C::SignatureVerification(s) => format!("signature refused: {s}"),
        C::Unsupported(why) => format!("unsupported: {why}"),
        C::Other(why) => why.clone(),
        _ => "claims verification failed".into(),
    }
}
