//! ID token validation (OIDC Core 3.1.3.7) on the shared JWT stack and key set: what
//! [`super::jwt::verify`] checks for every token, then the nonce and `at_hash`.

use super::jwt::{self, Expect, JwtError};
use super::*;

impl OidcProvider {
    /// The ID token's claims, or why it is refused. `UnknownKey` lets the caller refetch the
    /// key set once and try again.
    pub(super) fn verify_id_token(
        &self,
        d: &Discovered,
        token: &TokenResponseX,
        nonce: &str,
    ) -> Result<Claims, IdTokenFailure> {
        // The compact form exactly as received: openidconnect keeps the signing input verbatim.
        let raw = token.id_token().ok_or(IdTokenFailure::Missing)?.to_string();
        let secret = self
            .cfg
            .client_secret
            .as_ref()
            .map(|s| s.expose().as_bytes());
        let expect = Expect {
            issuer: d.metadata.issuer().as_str(),
            client_id: &self.cfg.client_id,
            allowed_algs: &self.cfg.allowed_algs,
            leeway_secs: self.cfg.clock_skew.as_secs(),
            hmac_secret: secret,
            required: &["sub"],
        };
        let verified = jwt::verify(&raw, &d.keys, &expect).map_err(|e| match e {
            JwtError::UnknownKey => IdTokenFailure::UnknownKey,
            JwtError::BadSignature | JwtError::AlgorithmNotAllowed | JwtError::KeyMismatch => {
                IdTokenFailure::Invalid(format!("signature refused: {e}"))
            }
            other => IdTokenFailure::Invalid(other.to_string()),
        })?;
        let claims = verified.claims;
        // Item 11: the nonce this browser's login was started with.
        let nonce_ok = claims
            .get("nonce")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|n| n == nonce);
        if !nonce_ok {
            return Err(IdTokenFailure::Invalid("wrong or missing nonce".into()));
        }
        // at_hash binds the access token to this ID token (checked whenever present).
        if let Some(expected) = claims.get("at_hash") {
            let actual = access_token_hash(
                token.access_token(),
                verified.header.alg,
                verified.key.as_ref(),
                secret,
            )
            .ok_or_else(|| IdTokenFailure::Invalid("at_hash cannot be computed".into()))?;
            if expected.as_str() != Some(actual.as_str()) {
                return Err(IdTokenFailure::Invalid(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        Ok(claims)
    }
}

/// `at_hash` of the access token for the ID token's algorithm and key, computed by
/// openidconnect (the hash depends on the algorithm, and for EdDSA on the key's curve).
fn access_token_hash(
    access_token: &openidconnect::AccessToken,
    alg: jsonwebtoken::Algorithm,
    key: Option<&jsonwebtoken::jwk::Jwk>,
    secret: Option<&[u8]>,
) -> Option<String> {
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(serde_json::to_value(alg).ok()?).ok()?;
    let key = match key {
        Some(jwk) => serde_json::from_value(serde_json::to_value(jwk).ok()?).ok()?,
        None => {
            use openidconnect::JsonWebKey;
            CoreJsonWebKey::new_symmetric(secret?.to_vec())
        }
    };
    AccessTokenHash::from_token(access_token, &alg, &key)
        .ok()
        .map(|h| h.to_string())
}
