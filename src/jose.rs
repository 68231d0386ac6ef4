//! The crypto behind `jsonwebtoken` in this process: RSA signatures (`RS*`, `PS*`) are verified
//! by OpenSSL, which the bridge links already (TLS, and libxmlsec1 for SAML); everything else
//! (signing our assertions, EC, EdDSA, HMAC, JWK utilities) stays with jsonwebtoken's
//! RustCrypto provider.
//!
//! Why: the RS256 check of an ID token was the largest single cost of an OIDC login (about a
//! tenth of the bridge's CPU per login) with RustCrypto's `rsa`, whose big-number code is
//! several times slower than OpenSSL's. The checks are the same: PKCS #1 v1.5 with the
//! algorithm's digest, or PSS with MGF1 of that digest and a salt as long as the digest
//! (RFC 7518 3.3, 3.5), and keys of 2048 bits or more (RFC 7518 3.3), at most 8192.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::RsaPssSaltlen;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// RFC 7518 3.3: "A key of size 2048 bits or larger MUST be used with these algorithms."
const MIN_RSA_BITS: u32 = 2048;
/// Bounds the work of one verification (the cost grows with the square of the modulus).
const MAX_RSA_BITS: u32 = 8192;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: rust_crypto::DEFAULT_PROVIDER
            .jwk_utils
            .extract_rsa_public_key_components,
        extract_ec_public_key_coordinates: rust_crypto::DEFAULT_PROVIDER
            .jwk_utils
            .extract_ec_public_key_coordinates,
        compute_digest: rust_crypto::DEFAULT_PROVIDER.jwk_utils.compute_digest,
    },
};

/// Makes this module's provider the process's, before any token is checked. Idempotent.
pub fn install() {
    // `Err` means a provider is installed already: ours, by an earlier call (nothing else in
    // the process installs one).
    let _ = PROVIDER.install_default();
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let (digest, pss) = match alg {
        Algorithm::RS256 => (MessageDigest::sha256(), false),
        Algorithm::RS384 => (MessageDigest::sha384(), false),
        Algorithm::RS512 => (MessageDigest::sha512(), false),
        Algorithm::PS256 => (MessageDigest::sha256(), true),
        Algorithm::PS384 => (MessageDigest::sha384(), true),
        Algorithm::PS512 => (MessageDigest::sha512(), true),
        _ => return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    };
    if key.family() != AlgorithmFamily::Rsa {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RsaVerifier {
        alg: *alg,
        key: rsa_key(key)?,
        digest,
        pss,
    }))
}

/// Public keys already converted, by a digest of their bytes: jsonwebtoken asks for a
/// verifier per token, and building OpenSSL's key each time (big numbers, the provider's
/// import, the Montgomery set-up on first use) cost several times the RSA operation itself. A
/// provider publishes a handful of keys; the cache is emptied when it reaches
/// [`KEY_CACHE_ENTRIES`], and an entry is a digest and a key of at most 8192 bits, so a
/// stream of strange keys (zero-padded to the JWKS size cap) cannot grow it.
static KEY_CACHE: LazyLock<Mutex<HashMap<[u8; 32], PKey<Public>>>> =
    LazyLock::new(Default::default);
const KEY_CACHE_ENTRIES: usize = 64;

/// The cache key: SHA-256 over the kind and the key's bytes, leading zeros of `n` and `e`
/// removed (they are the same number to OpenSSL), each length-prefixed.
fn key_id(key: &DecodingKey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut part = |p: &[u8]| {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    };
    let unpadded = |b: &'_ [u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            part(b"rsa components");
            part(&unpadded(n));
            part(&unpadded(e));
        }
        DecodingKeyKind::SecretOrDer(der) => {
            part(b"rsa pkcs1 der");
            part(der);
        }
    }
    h.finalize().into()
}

fn rsa_key(key: &DecodingKey) -> Result<PKey<Public>, Error> {
    let id = key_id(key);
    let cache = || KEY_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = cache().get(&id) {
        return Ok(k.clone());
    }
    let rsa = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Rsa::from_public_components(
            openssl::bn::BigNum::from_slice(n).map_err(invalid_key)?,
            openssl::bn::BigNum::from_slice(e).map_err(invalid_key)?,
        ),
        DecodingKeyKind::SecretOrDer(der) => Rsa::public_key_from_der_pkcs1(der),
    }
    .map_err(invalid_key)?;
    let bits = rsa.n().num_bits().max(0) as u32;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(ErrorKind::InvalidRsaKey(format!("{bits}-bit modulus")).into());
    }
    let pkey = PKey::from_rsa(rsa).map_err(invalid_key)?;
    let mut c = cache();
    if c.len() >= KEY_CACHE_ENTRIES {
        c.clear();
    }
    c.insert(id, pkey.clone());
    Ok(pkey)
}

fn invalid_key(e: openssl::error::ErrorStack) -> Error {
    ErrorKind::InvalidRsaKey(e.to_string()).into()
}

struct RsaVerifier {
    alg: Algorithm,
    key: PKey<Public>,
    digest: MessageDigest,
    pss: bool,
}

impl RsaVerifier {
    fn check(&self, msg: &[u8], sig: &[u8]) -> Result<bool, openssl::error::ErrorStack> {
        let mut v = openssl::sign::Verifier::new(self.digest, &self.key)?;
        if self.pss {
            v.set_rsa_padding(Padding::PKCS1_PSS)?;
            v.set_rsa_mgf1_md(self.digest)?;
            v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
        } else {
            v.set_rsa_padding(Padding::PKCS1)?;
        }
        v.verify_oneshot(sig, msg)
    }
}

impl Verifier<Vec<u8>> for RsaVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        match self.check(msg, sig) {
            Ok(true) => Ok(()),
            // A bad signature and a malformed one are the same to the caller: refused.
            _ => Err(signature::Error::new()),
        }
    }
}

impl JwtVerifier for RsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn keypair(bits: u32) -> (EncodingKey, DecodingKey) {
        let rsa = Rsa::generate(bits).unwrap();
        let private = EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap());
        let public = DecodingKey::from_rsa_raw_components(&rsa.n().to_vec(), &rsa.e().to_vec());
        (private, public)
    }

    /// The signing input and signature of a token jsonwebtoken's RustCrypto signer made.
    fn signed(alg: Algorithm, key: &EncodingKey) -> (Vec<u8>, Vec<u8>) {
        let claims = serde_json::json!({"sub": "s"});
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        (input.as_bytes().to_vec(), sig)
    }

    const RSA_ALGS: [Algorithm; 6] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    /// Signatures RustCrypto made verify with OpenSSL; a changed input or signature, another
    /// key, or the other padding of the same digest does not.
    #[test]
    fn openssl_verifies_every_rsa_algorithm_and_refuses_what_does_not_match() {
        let (private, public) = keypair(2048);
        let (_, other) = keypair(2048);
        for alg in RSA_ALGS {
            let (input, sig) = signed(alg, &private);
            let v = new_verifier(&alg, &public).unwrap();
            assert!(v.verify(&input, &sig).is_ok(), "{alg:?}");
            assert_eq!(v.algorithm(), alg);
            let mut changed = input.clone();
            changed[3] ^= 1;
            assert!(v.verify(&changed, &sig).is_err(), "{alg:?}: changed input");
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(
                v.verify(&input, &bad).is_err(),
                "{alg:?}: changed signature"
            );
            assert!(
                v.verify(&input, &sig[1..].to_vec()).is_err(),
                "{alg:?}: short"
            );
            let v = new_verifier(&alg, &other).unwrap();
            assert!(v.verify(&input, &sig).is_err(), "{alg:?}: another key");
        }
        for (pkcs1, pss) in [
            (Algorithm::RS256, Algorithm::PS256),
            (Algorithm::RS512, Algorithm::PS512),
        ] {
            let (input, sig) = signed(pss, &private);
            let v = new_verifier(&pkcs1, &public).unwrap();
            assert!(
                v.verify(&input, &sig).is_err(),
                "a {pss:?} signature as {pkcs1:?}"
            );
            let (input, sig) = signed(pkcs1, &private);
            let v = new_verifier(&pss, &public).unwrap();
            assert!(
                v.verify(&input, &sig).is_err(),
                "a {pkcs1:?} signature as {pss:?}"
            );
        }
    }

    #[test]
    fn an_rsa_key_outside_2048_to_8192_bits_or_of_another_family_is_refused() {
        let (_, small) = keypair(1024);
        for alg in RSA_ALGS {
            assert!(new_verifier(&alg, &small).is_err(), "{alg:?}");
        }
        let hmac = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        assert!(new_verifier(&Algorithm::RS256, &hmac).is_err());
    }

    /// Tokens of many different keys (a provider rotating, a stranger's JWKS) leave at most
    /// KEY_CACHE_ENTRIES keys in memory, and each still verifies only its own signatures.
    #[test]
    fn the_converted_key_cache_stays_bounded_and_keeps_keys_apart() {
        let (private, public) = keypair(2048);
        let (input, sig) = signed(Algorithm::RS256, &private);
        for i in 0..(KEY_CACHE_ENTRIES * 2) {
            // Odd 2048-bit moduli that are not the key's: none verifies its signature.
            let mut n = vec![0xc5u8; 256];
            n[..8].copy_from_slice(&(i as u64).to_be_bytes());
            n[0] |= 0x80;
            n[255] |= 1;
            let k = DecodingKey::from_rsa_raw_components(&n, &[1, 0, 1]);
            let v = new_verifier(&Algorithm::RS256, &k).unwrap();
            assert!(v.verify(&input, &sig).is_err(), "modulus {i}");
            assert!(KEY_CACHE.lock().unwrap().len() <= KEY_CACHE_ENTRIES);
        }
        let v = new_verifier(&Algorithm::RS256, &public).unwrap();
        assert!(v.verify(&input, &sig).is_ok());
        let v = new_verifier(&Algorithm::RS256, &public).unwrap();
        assert!(v.verify(&input, &sig).is_ok(), "from the cache");
        // The same modulus with another exponent is another key.
        let rsa = Rsa::generate(2048).unwrap();
        let n = rsa.n().to_vec();
        let a = DecodingKey::from_rsa_raw_components(&n, &[1, 0, 1]);
        let b = DecodingKey::from_rsa_raw_components(&n, &[3]);
        assert_ne!(key_id(&a), key_id(&b));
        // Leading zeros name the same key; a refused key is not kept.
        let padded =
            DecodingKey::from_rsa_raw_components(&[&[0u8, 0][..], &n].concat(), &[0, 1, 0, 1]);
        assert_eq!(key_id(&a), key_id(&padded));
        let (_, small) = keypair(1024);
        assert!(new_verifier(&Algorithm::RS256, &small).is_err());
        assert!(!KEY_CACHE.lock().unwrap().contains_key(&key_id(&small)));
    }

    #[test]
    fn other_algorithms_stay_with_rustcrypto() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let key = EncodingKey::from_secret(secret);
        let (input, sig) = signed(Algorithm::HS256, &key);
        let v = new_verifier(&Algorithm::HS256, &DecodingKey::from_secret(secret)).unwrap();
        assert!(v.verify(&input, &sig).is_ok());
    }
}
