//! The one JWT stack for what the provider signs, ID tokens and logout tokens alike
//! (`jsonwebtoken`): the algorithm from the connection's allow-list, the key from the provider's
//! one key set by `kid` and algorithm, then signature, issuer, audience and time window.
//! What is particular to each token (nonce, events, ...) is checked by its own module.

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Why a token was refused; each token type words it for its own audience.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("malformed")]
    Malformed,
    #[error("the algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("signed by a key the provider does not publish")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("issued in the future")]
    IssuedInTheFuture,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    /// RFC 7515 4.1.11: `crit` lists extensions the recipient must understand; we know none.
    #[error("the header lists critical extensions (crit), which are not understood")]
    CriticalExtension,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing {0}")]
    Missing(String),
    #[error("algorithm does not match the key")]
    KeyMismatch,
    #[error("not a valid signed token")]
    Invalid,
}

/// What every token from this provider must satisfy.
pub(crate) struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub allowed_algs: &'a [Algorithm],
    pub leeway_secs: u64,
    /// The client secret, for HMAC-signed tokens when an HS algorithm is allowed; `None` for
    /// tokens that must be signed by the provider's published keys (logout tokens).
    pub hmac_secret: Option<&'a [u8]>,
    /// Claims that must be present besides `iss`, `aud`, `exp` and `iat`.
    pub required: &'a [&'a str],
}

/// A token whose signature, issuer, audience and time window held.
pub(crate) struct Verified {
    pub header: Header,
    pub claims: Map<String, Value>,
    /// The published key that verified it (`None` for HMAC with the client secret).
    pub key: Option<Jwk>,
    /// `iat` and `exp`, in Unix seconds (both required and checked against the leeway).
    pub iat: i64,
    pub exp: i64,
}

/// A NumericDate claim in whole seconds (RFC 7519 section 2 allows fractions).
fn seconds(claims: &Map<String, Value>, name: &str) -> Result<i64, JwtError> {
    claims
        .get(name)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        .ok_or_else(|| JwtError::Missing(name.into()))
}

/// The provider's JWKS, keeping every key this stack can use: a key of another type or
/// algorithm (an encryption key, a curve we do not implement) is skipped rather than making
/// the whole set unreadable.
pub(crate) fn parse_key_set(bytes: &[u8]) -> Result<JwkSet, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<Value>,
    }
    let raw: Raw = serde_json::from_slice(bytes)?;
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .collect();
    Ok(JwkSet { keys })
}

/// Whether `jwk` may verify a signature made with `alg`: a signing key (RFC 7517 4.2) of the
/// algorithm's type and curve, whose own `alg`, when stated, is `alg`. Symmetric keys from the
/// JWKS never fit: a published HMAC key would let anyone sign.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    use Algorithm as A;
    let use_ok = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let alg_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::UNKNOWN_ALGORITHM) => false,
        Some(ka) => ka.to_string() == format!("{alg:?}"),
    };
    let type_ok = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), A::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), A::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), A::EdDSA) => p.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    use_ok && alg_ok && type_ok
}

/// The key named by `kid`, or without a `kid` the one key that fits (OIDC Core 10.1: with
/// several candidates and no `kid`, nothing is guessed).
fn pick_key<'k>(keys: &'k JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<&'k Jwk> {
    let mut fitting = keys
        .keys
        .iter()
        .filter(|k| fits(k, alg))
        .filter(|k| kid.is_none_or(|kid| k.common.key_id.as_deref() == Some(kid)));
    let first = fitting.next()?;
    fitting.next().is_none().then_some(first)
}

/// The token's header, for the caller's own header checks before the signature is.
pub(crate) fn header(token: &str) -> Result<Header, JwtError> {
    jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)
}

/// Verifies `token` against the provider's key set: no critical header extension, algorithm,
/// key, signature, `iss`, `aud` (the client, and no audience besides it: OIDC Core 3.1.3.7
/// item 3), `azp` when present, `exp`, `iat` and, when present, `nbf` (none outside the leeway).
pub(crate) fn verify(
    token: &str,
    keys: &JwkSet,
    expect: &Expect<'_>,
) -> Result<Verified, JwtError> {
    let header = header(token)?;
    // RFC 7515 4.1.11: a token whose `crit` names an extension the recipient does not
    // understand is invalid. We understand none, so any `crit` (even empty, which the RFC
    // forbids) refuses the token rather than have its extension ignored.
    if header.crit.is_some() {
        return Err(JwtError::CriticalExtension);
    }
    let alg = header.alg;
    if !expect.allowed_algs.contains(&alg) {
        return Err(JwtError::AlgorithmNotAllowed);
    }
    let (key, jwk) = if crate::config::is_hmac(alg) {
        let secret = expect.hmac_secret.ok_or(JwtError::AlgorithmNotAllowed)?;
        (DecodingKey::from_secret(secret), None)
    } else {
        let jwk = pick_key(keys, header.kid.as_deref(), alg).ok_or(JwtError::UnknownKey)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| JwtError::UnknownKey)?;
        (key, Some(jwk.clone()))
    };
    let mut v = Validation::new(alg);
    v.set_issuer(&[expect.issuer]);
    v.set_audience(&[expect.client_id]);
    let mut required = vec!["iss", "aud", "exp", "iat"];
    required.extend_from_slice(expect.required);
    v.set_required_spec_claims(&required);
    v.leeway = expect.leeway_secs;
    // Checked when present (RFC 7519 4.1.5), with the same leeway; not required.
    v.validate_nbf = true;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => JwtError::BadSignature,
                K::ExpiredSignature => JwtError::Expired,
                K::ImmatureSignature => JwtError::NotYetValid,
                K::InvalidIssuer => JwtError::WrongIssuer,
                K::InvalidAudience => JwtError::WrongAudience,
                K::MissingRequiredClaim(c) => JwtError::Missing(c.clone()),
                K::InvalidAlgorithm => JwtError::KeyMismatch,
                _ => JwtError::Invalid,
            }
        })?
        .claims;
    // jsonwebtoken accepts any audience list that names us; an extra audience is a party the
    // token also speaks for, which we do not trust.
    let only_us = match claims.get("aud") {
        Some(Value::String(a)) => a == expect.client_id,
        Some(Value::Array(list)) => {
            !list.is_empty() && list.iter().all(|a| a.as_str() == Some(expect.client_id))
        }
        _ => false,
    };
    let azp_ok = claims
        .get("azp")
        .is_none_or(|azp| azp.as_str() == Some(expect.client_id));
    if !only_us || !azp_ok {
        return Err(JwtError::WrongAudience);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (iat, exp) = (seconds(&claims, "iat")?, seconds(&claims, "exp")?);
    if iat > now.saturating_add(expect.leeway_secs as i64) {
        return Err(JwtError::IssuedInTheFuture);
    }
    Ok(Verified {
        header,
        claims,
        key: jwk,
        iat,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, encode};
    use serde_json::json;

    fn rsa_key(kid: &str, extra: Value) -> (EncodingKey, Value) {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let b64 = |b: &openssl::bn::BigNumRef| URL_SAFE_NO_PAD.encode(b.to_vec());
        let mut jwk = json!({ "kty": "RSA", "kid": kid, "n": b64(rsa.n()), "e": b64(rsa.e()) });
        jwk.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let pem = rsa.private_key_to_pem().unwrap();
        (EncodingKey::from_rsa_pem(&pem).unwrap(), jwk)
    }

    fn set(keys: &[&Value]) -> JwkSet {
        parse_key_set(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://op.example",
            client_id: "rp",
            allowed_algs: &[Algorithm::RS256, Algorithm::HS256],
            leeway_secs: 30,
            hmac_secret: None,
            required: &[],
        }
    }

    fn claims() -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({ "iss": "https://op.example", "aud": "rp", "iat": now, "exp": now + 60 })
    }

    fn sign(key: &EncodingKey, kid: Option<&str>, c: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = kid.map(str::to_string);
        encode(&h, c, key).unwrap()
    }

    #[test]
    fn keys_this_stack_cannot_use_are_skipped_not_fatal() {
        let (_, good) = rsa_key("k1", json!({}));
        let set = set(&[
            &json!({ "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" }),
            &json!({ "kty": "weird", "kid": "w" }),
            &good,
        ]);
        assert!(set.find("k1").is_some());
        assert!(set.find("w").is_none());
    }

    #[test]
    fn only_a_signing_key_of_the_tokens_algorithm_verifies_it() {
        let (enc_key, enc) = rsa_key("k1", json!({ "use": "enc" }));
        let token = sign(&enc_key, Some("k1"), &claims());
        assert_eq!(
            verify(&token, &set(&[&enc]), &expect()).err(),
            Some(JwtError::UnknownKey),
            "an encryption key is not a signing key"
        );
        let (ps_key, ps) = rsa_key("k1", json!({ "alg": "PS256" }));
        let token = sign(&ps_key, Some("k1"), &claims());
        assert_eq!(
            verify(&token, &set(&[&ps]), &expect()).err(),
            Some(JwtError::UnknownKey),
            "a key published for PS256 does not verify RS256"
        );
        let (sig_key, sig) = rsa_key("k1", json!({ "use": "sig", "alg": "RS256" }));
        let token = sign(&sig_key, Some("k1"), &claims());
        assert!(verify(&token, &set(&[&sig]), &expect()).is_ok());
    }

    #[test]
    fn without_a_kid_only_an_unambiguous_key_is_used() {
        let (k1, j1) = rsa_key("k1", json!({}));
        let (_, j2) = rsa_key("k2", json!({}));
        let token = sign(&k1, None, &claims());
        assert!(verify(&token, &set(&[&j1]), &expect()).is_ok());
        assert_eq!(
            verify(&token, &set(&[&j1, &j2]), &expect()).err(),
            Some(JwtError::UnknownKey)
        );
    }

    #[test]
    fn a_published_symmetric_key_never_verifies_an_hmac_token() {
        let secret = b"published-secret-published-secret";
        let oct = json!({ "kty": "oct", "kid": "h", "k": URL_SAFE_NO_PAD.encode(secret) });
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("h".into());
        let token = encode(&h, &claims(), &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(
            verify(&token, &set(&[&oct]), &expect()).err(),
            Some(JwtError::AlgorithmNotAllowed),
            "without a client secret HMAC is refused"
        );
        let with_secret = Expect {
            hmac_secret: Some(b"the-client-secret"),
            ..expect()
        };
        assert_eq!(
            verify(&token, &set(&[&oct]), &with_secret).err(),
            Some(JwtError::BadSignature),
            "only the client secret keys an HMAC"
        );
    }

    #[test]
    fn an_audience_besides_the_client_or_another_azp_is_refused() {
        let (k, j) = rsa_key("k1", json!({}));
        for (aud, azp) in [
            (json!(["rp", "other"]), None),
            (json!(["rp"]), Some("other")),
            (json!([]), None),
        ] {
            let mut c = claims();
            c["aud"] = aud.clone();
            if let Some(azp) = azp {
                c["azp"] = json!(azp);
            }
            assert_eq!(
                verify(&sign(&k, Some("k1"), &c), &set(&[&j]), &expect()).err(),
                Some(JwtError::WrongAudience),
                "{aud} {azp:?}"
            );
        }
        let mut c = claims();
        c["aud"] = json!(["rp"]);
        c["azp"] = json!("rp");
        assert!(verify(&sign(&k, Some("k1"), &c), &set(&[&j]), &expect()).is_ok());
    }

    /// RFC 7515 4.1.11: a token naming critical header extensions must be refused by a
    /// recipient that does not understand them. The stack verified such a token as if `crit`
    /// were not there, and with it whatever the extension was meant to change.
    #[test]
    fn a_token_with_a_critical_header_extension_is_refused() {
        let (k, j) = rsa_key("k1", json!({}));
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("k1".into());
        assert!(verify(&encode(&h, &claims(), &k).unwrap(), &set(&[&j]), &expect()).is_ok());
        for crit in [
            vec!["exp".to_string()],
            vec!["urn:example:ext".into()],
            vec![],
        ] {
            let mut h = h.clone();
            h.crit = Some(crit.clone());
            h.extras.insert("urn:example:ext".into(), "1".into());
            let token = encode(&h, &claims(), &k).unwrap();
            assert_eq!(
                verify(&token, &set(&[&j]), &expect()).err(),
                Some(JwtError::CriticalExtension),
                "{crit:?}"
            );
        }
    }

    /// `nbf` was never checked: a token the provider signed for later was good at once.
    #[test]
    fn a_token_not_valid_yet_is_refused_beyond_the_leeway() {
        let (k, j) = rsa_key("k1", json!({}));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let with_nbf = |nbf: Value| {
            let mut c = claims();
            c["nbf"] = nbf;
            verify(&sign(&k, Some("k1"), &c), &set(&[&j]), &expect())
        };
        assert_eq!(
            with_nbf(json!(now + 3600)).err(),
            Some(JwtError::NotYetValid)
        );
        assert_eq!(with_nbf(json!(now + 60)).err(), Some(JwtError::NotYetValid));
        assert!(
            with_nbf(json!(now + 10)).is_ok(),
            "within the leeway (30 s)"
        );
        assert!(with_nbf(json!(now - 10)).is_ok());
        assert_eq!(
            with_nbf(json!("soon")).err(),
            Some(JwtError::Invalid),
            "an nbf that is not a time"
        );
        assert!(
            verify(&sign(&k, Some("k1"), &claims()), &set(&[&j]), &expect()).is_ok(),
            "nbf is not required"
        );
    }
}
