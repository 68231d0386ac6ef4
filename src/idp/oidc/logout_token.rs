//! OpenID Connect Back-Channel Logout 1.0 logout tokens (sections 2.4 and 2.6), verified by
//! the same JWT stack and key set as ID tokens (openidconnect has no logout-token support).

use super::jwt::{self, Expect, JwtError};
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a valid logout token asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    /// Unix seconds; the replay marker for `jti` is kept until then.
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    #[error("the logout token is malformed")]
    Malformed,
    #[error("the logout token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the logout token is signed by a key the provider does not publish")]
    UnknownKey,
    #[error("the logout token is invalid: {0}")]
    Invalid(String),
}

impl From<JwtError> for LogoutTokenError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::Malformed => Self::Malformed,
            JwtError::AlgorithmNotAllowed => Self::AlgorithmNotAllowed,
            JwtError::UnknownKey => Self::UnknownKey,
            other => Self::Invalid(other.to_string()),
        }
    }
}

/// Verifies a logout token. `expect.hmac_secret` must be `None`: the back-channel has no
/// client secret to key an HMAC, so an HS token is refused whatever the allow-list says.
pub(super) fn verify(
    token: &str,
    keys: &JwkSet,
    expect: &Expect<'_>,
) -> Result<LogoutRequest, LogoutTokenError> {
    debug_assert!(expect.hmac_secret.is_none());
    if let Some(typ) = &jwt::header(token)?.typ
        && !(typ.eq_ignore_ascii_case("logout+jwt") || typ.eq_ignore_ascii_case("JWT"))
    {
        return Err(LogoutTokenError::Invalid(format!(
            "typ {typ} is not a logout token"
        )));
    }
    let claims = jwt::verify(token, keys, expect)?.claims;
    let events_ok = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(EVENT))
        .is_some_and(Value::is_object);
    if !events_ok {
        return Err(LogoutTokenError::Invalid(
            "the events claim lacks the back-channel logout event".into(),
        ));
    }
    if claims.get("nonce").is_some() {
        // Section 2.6: a nonce means this is an ID token presented as a logout token.
        return Err(LogoutTokenError::Invalid(
            "a logout token must not contain a nonce".into(),
        ));
    }
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (sub, sid) = (text("sub"), text("sid"));
    if sub.is_none() && sid.is_none() {
        return Err(LogoutTokenError::Invalid("neither sub nor sid".into()));
    }
    let jti = text("jti").ok_or_else(|| LogoutTokenError::Invalid("no jti".into()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp_at = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or(now + 300);
    Ok(LogoutRequest {
        sub,
        sid,
        jti,
        exp: exp_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    struct Key {
        pem: Vec<u8>,
        public_pem: Vec<u8>,
        jwks: JwkSet,
    }

    fn key(kid: &str) -> Key {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let b64 = |b: &openssl::bn::BigNumRef| URL_SAFE_NO_PAD.encode(b.to_vec());
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(rsa.n()), "e": b64(rsa.e())
        }]}))
        .unwrap();
        Key {
            pem: rsa.private_key_to_pem().unwrap(),
            public_pem: rsa.public_key_to_pem().unwrap(),
            jwks,
        }
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://op.example",
            client_id: "rp",
            allowed_algs: &[Algorithm::RS256, Algorithm::ES256],
            leeway_secs: 30,
            hmac_secret: None,
            required: &[],
        }
    }

    fn claims() -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({
            "iss": "https://op.example", "aud": "rp", "iat": now, "exp": now + 120, "jti": "j1",
            "sid": "s1", "events": { EVENT: {} }
        })
    }

    fn sign(k: &Key, kid: &str, c: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        h.typ = Some("logout+jwt".into());
        encode(&h, c, &EncodingKey::from_rsa_pem(&k.pem).unwrap()).unwrap()
    }

    fn refused(c: Value) -> LogoutTokenError {
        let k = key("k1");
        verify(&sign(&k, "k1", &c), &k.jwks, &expect()).unwrap_err()
    }

    #[test]
    fn a_valid_logout_token_is_accepted() {
        let k = key("k1");
        let r = verify(&sign(&k, "k1", &claims()), &k.jwks, &expect()).unwrap();
        assert_eq!(
            (r.sid.as_deref(), r.sub, r.jti.as_str()),
            (Some("s1"), None, "j1")
        );
    }

    #[test]
    fn wrong_issuer_audience_and_expiry_are_refused() {
        let mut c = claims();
        c["iss"] = json!("https://evil.example");
        assert_eq!(refused(c), LogoutTokenError::Invalid("wrong issuer".into()));
        let mut c = claims();
        c["aud"] = json!("other-rp");
        assert_eq!(
            refused(c),
            LogoutTokenError::Invalid("wrong audience".into())
        );
        let mut c = claims();
        c["exp"] = json!(1000);
        assert_eq!(refused(c), LogoutTokenError::Invalid("expired".into()));
        let mut c = claims();
        c["iat"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() + 3600);
        assert_eq!(
            refused(c),
            LogoutTokenError::Invalid("issued in the future".into())
        );
    }

    #[test]
    fn tokens_that_are_not_logout_tokens_are_refused() {
        let mut c = claims();
        c["events"] = json!({ "http://schemas.openid.net/event/other": {} });
        assert!(matches!(refused(c), LogoutTokenError::Invalid(m) if m.contains("events")));
        let mut c = claims();
        c["nonce"] = json!("n");
        assert!(matches!(refused(c), LogoutTokenError::Invalid(m) if m.contains("nonce")));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("sid");
        assert!(
            matches!(refused(c), LogoutTokenError::Invalid(m) if m.contains("neither sub nor sid"))
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("jti");
        assert!(matches!(refused(c), LogoutTokenError::Invalid(m) if m.contains("jti")));
    }

    #[test]
    fn forged_signatures_are_refused() {
        let k = key("k1");
        let other = key("k1");
        // Signed by another key under the right kid.
        let forged = sign(&other, "k1", &claims());
        assert_eq!(
            verify(&forged, &k.jwks, &expect()).unwrap_err(),
            LogoutTokenError::Invalid("bad signature".into())
        );
        // An unknown kid.
        assert_eq!(
            verify(&sign(&k, "k9", &claims()), &k.jwks, &expect()).unwrap_err(),
            LogoutTokenError::UnknownKey
        );
        // alg none.
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#)
        );
        assert!(verify(&none, &k.jwks, &expect()).is_err());
        // HS256 keyed with the public key (algorithm confusion).
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let confused = encode(&h, &claims(), &EncodingKey::from_secret(&k.public_pem)).unwrap();
        assert_eq!(
            verify(&confused, &k.jwks, &expect()).unwrap_err(),
            LogoutTokenError::AlgorithmNotAllowed
        );
    }
}
