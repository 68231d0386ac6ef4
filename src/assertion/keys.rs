//! Signing keys of the identity assertion: a PKCS#8 PEM private key per `kid`, P-256 (ES256)
//! or Ed25519 (EdDSA), and the public JWK that `/.well-known/jwks.json` publishes for it.
//!
//! The PEM is read once, at start: openssl tells the key's type and gives the public key,
//! jsonwebtoken signs. A key is only accepted after a token it signed verifies against the JWK
//! we publish for it, so a published key that does not match the signing one cannot ship.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use openssl::pkey::{Id, PKey};
use std::fmt;

/// Why a configured key cannot be used. Never contains key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("is encrypted (a passphrase-protected PEM)")]
    Encrypted,
    #[error("is a SEC1 \"EC PRIVATE KEY\", not PKCS#8")]
    Sec1,
    #[error("is not a PEM \"PRIVATE KEY\" (PKCS#8)")]
    NotPkcs8,
    #[error("cannot be parsed as a private key")]
    Unparsable,
    #[error("is an elliptic-curve key on another curve than P-256")]
    WrongCurve,
    #[error("is a key of a type that cannot sign assertions (only P-256 and Ed25519)")]
    WrongType,
    #[error("is a {actual} key, but alg = {wanted:?} was asked for")]
    AlgMismatch {
        wanted: String,
        actual: &'static str,
    },
    #[error("failed its self-test (a token it signed did not verify with its public key)")]
    SelfTest,
}

impl KeyError {
    /// How to fix it, for the configuration's problem list.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Encrypted => {
                "decrypt it: openssl pkcs8 -topk8 -nocrypt -in encrypted.pem -out key.pem (and keep the file readable by jitbridge only)"
            }
            Self::Sec1 => "convert it: openssl pkcs8 -topk8 -nocrypt -in ec.pem -out key.pem",
            Self::NotPkcs8 | Self::Unparsable | Self::WrongCurve | Self::WrongType => {
                "generate one: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem (ES256), or openssl genpkey -algorithm ed25519 -out key.pem (EdDSA)"
            }
            Self::AlgMismatch { .. } => {
                "remove alg (it follows from the key), or configure a key of that type"
            }
            Self::SelfTest => "generate a new key (see README, signed identity assertion)",
        }
    }
}

/// The algorithms a key may sign with, by their JOSE names.
pub const ALGORITHMS: &[&str] = &["ES256", "EdDSA"];

/// One key: its id, algorithm, private half (for signing) and public JWK (for publishing).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public: Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key; `want_alg`, when given, must be the one the key implies.
    pub fn from_pem(kid: &str, pem: &str, want_alg: Option<&str>) -> Result<Self, KeyError> {
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyError::Encrypted);
        }
        if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            return Err(KeyError::Sec1);
        }
        if !pem.contains("-----BEGIN PRIVATE KEY-----") {
            return Err(KeyError::NotPkcs8);
        }
        // A file's trailing newline was trimmed with the secret; PEM readers like it back.
        let pem = format!("{}\n", pem.trim_end());
        let pkey = PKey::private_key_from_pem(pem.as_bytes()).map_err(|_| KeyError::Unparsable)?;
        let (alg, params, encoding) = match pkey.id() {
            Id::EC => {
                let ec = pkey.ec_key().map_err(|_| KeyError::Unparsable)?;
                let group = ec.group();
                if group.curve_name() != Some(openssl::nid::Nid::X9_62_PRIME256V1) {
                    return Err(KeyError::WrongCurve);
                }
                let (x, y) = ec_coordinates(&ec).ok_or(KeyError::Unparsable)?;
                let params = AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: URL_SAFE_NO_PAD.encode(y),
                });
                let enc =
                    EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| KeyError::Unparsable)?;
                (Algorithm::ES256, params, enc)
            }
            Id::ED25519 => {
                let x = pkey.raw_public_key().map_err(|_| KeyError::Unparsable)?;
                let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: URL_SAFE_NO_PAD.encode(x),
                });
                let enc =
                    EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| KeyError::Unparsable)?;
                (Algorithm::EdDSA, params, enc)
            }
            _ => return Err(KeyError::WrongType),
        };
        let actual = alg_name(alg);
        if let Some(wanted) = want_alg
            && wanted != actual
        {
            return Err(KeyError::AlgMismatch {
                wanted: wanted.to_string(),
                actual,
            });
        }
        let public = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(match alg {
                    Algorithm::EdDSA => KeyAlgorithm::EdDSA,
                    _ => KeyAlgorithm::ES256,
                }),
                key_id: Some(kid.to_string()),
                ..Default::default()
            },
            algorithm: params,
        };
        let key = Self {
            kid: kid.to_string(),
            alg,
            encoding,
            public,
        };
        key.self_test()?;
        Ok(key)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> &'static str {
        alg_name(self.alg)
    }

    /// The public JWK: kty, crv, x (and y), kid, alg, use = sig. No private part.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// Signs `claims` as a compact JWS with this key's `kid` in the header.
    pub fn sign<T: serde::Serialize>(
        &self,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    fn self_test(&self) -> Result<(), KeyError> {
        let claims = serde_json::json!({ "self_test": self.kid });
        let token = self.sign(&claims).map_err(|_| KeyError::SelfTest)?;
        let decoding = DecodingKey::from_jwk(&self.public).map_err(|_| KeyError::SelfTest)?;
        let mut v = Validation::new(self.alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &v)
            .map(drop)
            .map_err(|_| KeyError::SelfTest)
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDSA => "EdDSA",
        _ => "ES256",
    }
}

/// The affine coordinates of a P-256 public key, 32 bytes each (RFC 7518 §6.2.1.2).
fn ec_coordinates(ec: &openssl::ec::EcKey<openssl::pkey::Private>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut ctx = openssl::bn::BigNumContext::new().ok()?;
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().ok()?,
        openssl::bn::BigNum::new().ok()?,
    );
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
        .ok()?;
    Some((x.to_vec_padded(32).ok()?, y.to_vec_padded(32).ok()?))
}

/// A fresh P-256 key as PKCS#8 PEM, for the demo and tests (never for `serve`: a key that
/// changes at every start makes every app refetch the JWKS, and replicas would disagree).
pub fn generate_p256_pem() -> anyhow::Result<String> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
    Ok(String::from_utf8(key.private_key_to_pem_pkcs8()?)?)
}

/// A fresh Ed25519 key as PKCS#8 PEM (tests).
pub fn generate_ed25519_pem() -> anyhow::Result<String> {
    let key = PKey::generate_ed25519()?;
    Ok(String::from_utf8(key.private_key_to_pem_pkcs8()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p256_key_publishes_its_public_half_only_and_verifies() {
        let pem = generate_p256_pem().unwrap();
        let k = SigningKey::from_pem("k1", &pem, None).unwrap();
        assert_eq!(k.alg(), "ES256");
        let jwk = serde_json::to_value(k.public_jwk()).unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["kid"], "k1");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert_eq!(jwk["y"].as_str().unwrap().len(), 43);
        assert!(jwk.get("d").is_none(), "{jwk}");
        let token = k.sign(&serde_json::json!({"a": 1})).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.alg, Algorithm::ES256);
    }

    #[test]
    fn an_ed25519_key_signs_eddsa() {
        let pem = generate_ed25519_pem().unwrap();
        let k = SigningKey::from_pem("ed", &pem, Some("EdDSA")).unwrap();
        let jwk = serde_json::to_value(k.public_jwk()).unwrap();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert!(jwk.get("d").is_none() && jwk.get("y").is_none(), "{jwk}");
    }

    #[test]
    fn unusable_keys_are_refused_with_a_reason() {
        let p256 = generate_p256_pem().unwrap();
        assert_eq!(
            SigningKey::from_pem("k", &p256, Some("EdDSA")).unwrap_err(),
            KeyError::AlgMismatch {
                wanted: "EdDSA".into(),
                actual: "ES256"
            }
        );
        assert_eq!(
            SigningKey::from_pem("k", "not a key", None).unwrap_err(),
            KeyError::NotPkcs8
        );
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            SigningKey::from_pem("k", garbage, None).unwrap_err(),
            KeyError::Unparsable
        );
        let ec = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap();
        let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
        assert_eq!(
            SigningKey::from_pem("k", &sec1, None).unwrap_err(),
            KeyError::Sec1
        );
        let p384 = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
        let p384 = PKey::from_ec_key(openssl::ec::EcKey::generate(&p384).unwrap()).unwrap();
        let p384 = String::from_utf8(p384.private_key_to_pem_pkcs8().unwrap()).unwrap();
        assert_eq!(
            SigningKey::from_pem("k", &p384, None).unwrap_err(),
            KeyError::WrongCurve
        );
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let rsa = String::from_utf8(rsa.private_key_to_pem_pkcs8().unwrap()).unwrap();
        assert_eq!(
            SigningKey::from_pem("k", &rsa, None).unwrap_err(),
            KeyError::WrongType
        );
    }

    #[test]
    fn debug_output_never_contains_the_private_key() {
        let pem = generate_p256_pem().unwrap();
        let k = SigningKey::from_pem("k1", &pem, None).unwrap();
        let d = format!("{k:?}");
        assert!(d.contains("k1") && d.contains("[redacted]"), "{d}");
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!d.contains(&body));
    }
}
