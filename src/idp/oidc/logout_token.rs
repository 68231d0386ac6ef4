//! OpenID Connect Back-Channel Logout 1.0 logout tokens (sections 2.4 and 2.6), verified by
//! the same JWT stack and key set as ID tokens (openidconnect has no logout-token support).

use super::jwt::{self, Expect, JwtError};
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;
use std::time::Duration;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a valid logout token asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    /// Unix seconds: the last moment this token could still be accepted (its `exp`, or its
    /// `iat` plus the connection's `logout_token_max_age` when that is earlier, plus the
    /// leeway). The replay marker of `jti` must outlive it ([`Self::replay_ttl`]).
    pub accept_until: i64,
}

impl LogoutRequest {
    /// How long the replay marker of `jti` is kept from `now`: until the token could no
    /// longer be accepted, plus a minute for the clocks of replicas. Bounded, since the
    /// token's age is: at most `logout_token_max_age` plus twice the leeway and the minute.
    pub fn replay_ttl(&self, now: i64) -> Duration {
        Duration::from_secs((self.accept_until - now).max(0) as u64 + 60)
    }
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
    /// Its `iat` is older than `logout_token_max_age` (plus the leeway).
    #[error("the logout token was issued too long ago (iat); a logout token is sent at once")]
    TooOld,
    #[error("the logout token is issued in the future (iat); check the clocks")]
    IssuedInTheFuture,
}

impl LogoutTokenError {
    /// The stable reason code of the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooOld => "logout_token_too_old",
            Self::IssuedInTheFuture => "logout_token_issued_in_the_future",
            Self::Malformed | Self::AlgorithmNotAllowed | Self::UnknownKey | Self::Invalid(_) => {
                "logout_token_invalid"
            }
        }
    }
}

impl From<JwtError> for LogoutTokenError {
    fn from(e: JwtError) -> Self {
        match e {
            JwtError::Malformed => Self::Malformed,
            JwtError::AlgorithmNotAllowed => Self::AlgorithmNotAllowed,
            JwtError::UnknownKey => Self::UnknownKey,
            JwtError::IssuedInTheFuture => Self::IssuedInTheFuture,
            other => Self::Invalid(other.to_string()),
        }
    }
}

/// Verifies a logout token issued at most `max_age` ago (plus the leeway). `expect.hmac_secret`
/// must be `None`: the back-channel has no client secret to key an HMAC, so an HS token is
/// refused whatever the allow-list says.
pub(super) fn verify(
    token: &str,
    keys: &JwkSet,
    expect: &Expect<'_>,
    max_age: Duration,
) -> Result<LogoutRequest, LogoutTokenError> {
    debug_assert!(expect.hmac_secret.is_none());
    if let Some(typ) = &jwt::header(token)?.typ
        && !(typ.eq_ignore_ascii_case("logout+jwt") || typ.eq_ignore_ascii_case("JWT"))
    {
        return Err(LogoutTokenError::Invalid(format!(
            "typ {typ} is not a logout token"
        )));
    }
    let verified = jwt::verify(token, keys, expect)?;
    // Section 2.6 checks iat as for ID tokens, where OIDC Core 3.1.3.7 lets the RP refuse one
    // issued too long ago. Without a bound a captured token stayed good until its exp, however
    // far ahead, and so outlived its replay marker: it could end the person's sessions again.
    let leeway = expect.leeway_secs as i64;
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let newest_refused = time::OffsetDateTime::now_utc().unix_timestamp() - leeway;
    if verified.iat.saturating_add(max_age) < newest_refused {
        return Err(LogoutTokenError::TooOld);
    }
    let accept_until = verified
        .exp
        .min(verified.iat.saturating_add(max_age))
        .saturating_add(leeway);
    let claims = verified.claims;
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
    Ok(LogoutRequest {
        sub,
        sid,
        jti,
        accept_until,
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

    const MAX_AGE: Duration = Duration::from_secs(300);

    fn refused(c: Value) -> LogoutTokenError {
        let k = key("k1");
        verify(&sign(&k, "k1", &c), &k.jwks, &expect(), MAX_AGE).unwrap_err()
    }

    #[test]
    fn a_valid_logout_token_is_accepted() {
        let k = key("k1");
        let r = verify(&sign(&k, "k1", &claims()), &k.jwks, &expect(), MAX_AGE).unwrap();
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
        assert_eq!(refused(c), LogoutTokenError::IssuedInTheFuture);
    }

    /// A logout token stayed good until its `exp`, however far ahead, while its replay marker
    /// was kept a day at most: captured once, it could be replayed the day after.
    #[test]
    fn a_logout_token_issued_long_ago_is_refused_and_its_replay_marker_outlives_its_acceptance() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let year = 365 * 86_400;
        let mut c = claims();
        c["iat"] = json!(now - 2 * 86_400);
        c["exp"] = json!(now + year);
        assert_eq!(refused(c), LogoutTokenError::TooOld);
        // Within max_age plus the leeway (30 s) it is accepted; the marker outlives the moment
        // it would be refused, however far its exp.
        let k = key("k1");
        for (age, exp) in [(0, 120), (MAX_AGE.as_secs() as i64 + 20, year), (0, year)] {
            let mut c = claims();
            c["iat"] = json!(now - age);
            c["exp"] = json!(now + exp);
            let r = verify(&sign(&k, "k1", &c), &k.jwks, &expect(), MAX_AGE).unwrap();
            let refused_from = (now - age + MAX_AGE.as_secs() as i64 + 30).min(now + exp + 30);
            assert_eq!(r.accept_until, refused_from, "age {age}, exp {exp}");
            let ttl = r.replay_ttl(now).as_secs() as i64;
            assert!(now + ttl > refused_from, "age {age}, exp {exp}: ttl {ttl}");
            assert!(
                ttl <= MAX_AGE.as_secs() as i64 + 2 * 30 + 60,
                "bounded: {ttl}"
            );
        }
        let mut c = claims();
        c["iat"] = json!(now - MAX_AGE.as_secs() as i64 - 40);
        assert_eq!(
            refused(c),
            LogoutTokenError::TooOld,
            "past max_age and leeway"
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
            verify(&forged, &k.jwks, &expect(), MAX_AGE).unwrap_err(),
            LogoutTokenError::Invalid("bad signature".into())
        );
        // An unknown kid.
        assert_eq!(
            verify(&sign(&k, "k9", &claims()), &k.jwks, &expect(), MAX_AGE).unwrap_err(),
            LogoutTokenError::UnknownKey
        );
        // alg none.
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#)
        );
        assert!(verify(&none, &k.jwks, &expect(), MAX_AGE).is_err());
        // HS256 keyed with the public key (algorithm confusion).
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let confused = encode(&h, &claims(), &EncodingKey::from_secret(&k.public_pem)).unwrap();
        assert_eq!(
            verify(&confused, &k.jwks, &expect(), MAX_AGE).unwrap_err(),
            LogoutTokenError::AlgorithmNotAllowed
        );
    }
}
