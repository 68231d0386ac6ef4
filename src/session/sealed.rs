//! Login state sealed for the browser: what a login needs between `/login` and the IdP's
//! answer (connection, nonce and PKCE verifier or SAML request id, where to go afterwards,
//! expiry) travels in the browser's own cookie, encrypted and authenticated, instead of in the
//! session store. An anonymous `GET /login` then costs no store write and no memory here: a
//! stranger's flood of login starts leaves nothing behind (the store is written only by a
//! login that comes back with a valid sealed state, to mark it used).
//!
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`): its 192-bit nonces are drawn at random,
//! so replicas sharing a key need no counter between them. A sealed value is, base64url:
//! `version (1) | key id (4) | nonce (24) | ciphertext + tag`. The associated data binds it
//! to the login's `state` parameter (its SHA-256), the version and the key id, so a sealed
//! value cannot be moved to another state. The key id (a hash of the key, not the key) tells
//! an unknown or retired key from tampering; the first key seals, every key opens (rotation).
//!
//! Pure: no actix, no store. Single use is the caller's (the store's `first_use` marker).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// A sealed value longer than this is refused unread (a cookie holds at most 4096 bytes).
pub const MAX_SEALED_LEN: usize = 4096;
/// Keys accepted at once: the one that seals and those being retired.
pub const MAX_KEYS: usize = 8;

/// A login between `/login` and the callback (OIDC) or the ACS (SAML), or a SAML logout
/// between our LogoutRequest and the IdP's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub connection: String,
    pub protocol: PendingProtocol,
    /// Where to send the browser afterwards (already validated).
    pub return_to: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the login is refused from then on (`sessions.login_timeout` after start).
    pub expires_at: i64,
}

/// What the adapter must check when the IdP answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PendingProtocol {
    Oidc {
        nonce: String,
        pkce_verifier: String,
    },
    /// The id of our AuthnRequest, which the response's InResponseTo must name.
    Saml { request_id: String },
    /// The id of our LogoutRequest, which the IdP's LogoutResponse must name.
    SamlLogout { request_id: String },
}

/// A 256-bit state key. Not printable.
#[derive(Clone, PartialEq, Eq)]
pub struct StateKey([u8; 32]);

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey([redacted])")
    }
}

impl StateKey {
    /// A fresh random key (for a single process that has none configured).
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut k)
            .expect("the operating system's random number generator is available");
        Self(k)
    }

    /// 32 bytes written as 64 hex digits or as base64 (standard or URL-safe, padded or not).
    /// The error says what is wrong, never the value.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("hex digits"))
                .collect::<Vec<u8>>()
        } else {
            let unpadded = t.trim_end_matches('=');
            URL_SAFE_NO_PAD
                .decode(unpadded)
                .or_else(|_| STANDARD.decode(t))
                .map_err(|_| "is neither 64 hex digits nor base64")?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "does not hold exactly 32 bytes (256 bits)")?;
        if key.iter().all(|b| *b == key[0]) {
            return Err("is one byte repeated, not a random key");
        }
        Ok(Self(key))
    }

    fn id(&self) -> [u8; KEY_ID_LEN] {
        let d = Sha256::new()
            .chain_update(b"jitbridge state key id\0")
            .chain_update(self.0)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&d[..KEY_ID_LEN]);
        id
    }
}

/// Why a sealed state was refused. Each has its own reason code in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not something we sealed, or changed since (bad encoding, length, tag, or contents).
    #[error("the sealed login state was altered or is not ours")]
    Tampered,
    /// Sealed under a key that none of the configured keys matches (retired, or another
    /// deployment's).
    #[error("the sealed login state was sealed with a key this server does not hold")]
    UnknownKey,
    #[error("the login took longer than the login timeout")]
    Expired,
}

/// Seals with the first key, opens with any.
#[derive(Clone)]
pub struct Sealer {
    keys: Vec<(StateKey, [u8; KEY_ID_LEN])>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

fn aad(state: &str, version: u8, key_id: &[u8; KEY_ID_LEN]) -> Vec<u8> {
    let mut a = b"jitbridge login state\0".to_vec();
    a.push(version);
    a.extend_from_slice(key_id);
    a.extend_from_slice(&Sha256::digest(state.as_bytes()));
    a
}

impl Sealer {
    /// `keys` must not be empty; the first one seals.
    pub fn new(keys: Vec<StateKey>) -> Self {
        assert!(!keys.is_empty(), "a sealer needs a key");
        Self {
            keys: keys
                .into_iter()
                .map(|k| {
                    let id = k.id();
                    (k, id)
                })
                .collect(),
        }
    }

    /// The login sealed for the login whose `state` parameter (OIDC state, SAML RelayState)
    /// is `state`.
    pub fn seal(&self, state: &str, login: &PendingLogin) -> String {
        let (key, id) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .expect("the operating system's random number generator is available");
        let plain = serde_json::to_vec(login).expect("login state serializes");
        let aad = aad(state, VERSION, id);
        let ct = XChaCha20Poly1305::new(&key.0.into())
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .expect("a login state is far below the AEAD's length limit");
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The login sealed for `state`, if it is ours, untouched and not expired at `now`.
    pub fn open(&self, state: &str, sealed: &str, now: i64) -> Result<PendingLogin, OpenError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(OpenError::Tampered);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| OpenError::Tampered)?;
        if raw.len() < HEADER_LEN + TAG_LEN || raw[0] != VERSION {
            return Err(OpenError::Tampered);
        }
        let id: [u8; KEY_ID_LEN] = raw[1..1 + KEY_ID_LEN].try_into().expect("length checked");
        let nonce: [u8; NONCE_LEN] = raw[1 + KEY_ID_LEN..HEADER_LEN]
            .try_into()
            .expect("length checked");
        let (key, _) = self
            .keys
            .iter()
            .find(|(_, kid)| *kid == id)
            .ok_or(OpenError::UnknownKey)?;
        let aad = aad(state, VERSION, &id);
        let plain = XChaCha20Poly1305::new(&key.0.into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &raw[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Tampered)?;
        let login: PendingLogin =
            serde_json::from_slice(&plain).map_err(|_| OpenError::Tampered)?;
        if now >= login.expires_at {
            return Err(OpenError::Expired);
        }
        Ok(login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(expires_at: i64) -> PendingLogin {
        PendingLogin {
            connection: "corp".into(),
            protocol: PendingProtocol::Oidc {
                nonce: "n".repeat(43),
                pkce_verifier: "v".repeat(43),
            },
            return_to: "/app".into(),
            created_at: 1_000,
            expires_at,
        }
    }

    fn key(b: u8) -> StateKey {
        let mut k = [b; 32];
        k[0] = b.wrapping_add(1);
        StateKey(k)
    }

    #[test]
    fn a_sealed_login_opens_for_its_state_until_it_expires() {
        let s = Sealer::new(vec![key(1)]);
        let sealed = s.seal("state-a", &login(1_600));
        assert_eq!(s.open("state-a", &sealed, 1_599), Ok(login(1_600)));
        assert_eq!(s.open("state-a", &sealed, 1_600), Err(OpenError::Expired));
        assert_eq!(s.open("state-b", &sealed, 1_001), Err(OpenError::Tampered));
    }

    #[test]
    fn nothing_of_the_login_is_readable_in_the_sealed_value() {
        let s = Sealer::new(vec![key(1)]);
        let sealed = s.seal("st", &login(2_000));
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("corp") && !text.contains("nnnn") && !text.contains("/app"));
        assert!(sealed.len() < 1024, "{}", sealed.len());
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let s = Sealer::new(vec![key(1)]);
        let raw = URL_SAFE_NO_PAD.decode(s.seal("st", &login(2_000))).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x01;
            let r = s.open("st", &URL_SAFE_NO_PAD.encode(&t), 1_001);
            // A flipped key id names no key we hold; anything else fails the tag.
            let want = if (1..1 + KEY_ID_LEN).contains(&i) {
                OpenError::UnknownKey
            } else {
                OpenError::Tampered
            };
            assert_eq!(r, Err(want), "byte {i}");
        }
        assert_eq!(s.open("st", "", 1_001), Err(OpenError::Tampered));
        assert_eq!(s.open("st", "%%%", 1_001), Err(OpenError::Tampered));
        let long = "A".repeat(MAX_SEALED_LEN + 1);
        assert_eq!(s.open("st", &long, 1_001), Err(OpenError::Tampered));
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = Sealer::new(vec![key(1)]);
        let rotated = Sealer::new(vec![key(2), key(1)]);
        let by_old = old.seal("st", &login(2_000));
        assert!(rotated.open("st", &by_old, 1_001).is_ok());
        let by_new = rotated.seal("st", &login(2_000));
        assert_eq!(old.open("st", &by_new, 1_001), Err(OpenError::UnknownKey));
        let other = Sealer::new(vec![key(3)]);
        assert_eq!(other.open("st", &by_old, 1_001), Err(OpenError::UnknownKey));
    }

    #[test]
    fn keys_are_32_bytes_of_hex_or_base64_and_never_printed() {
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let k = StateKey::parse(hex).unwrap();
        let b64 = STANDARD.encode(k.0);
        assert_eq!(StateKey::parse(&b64).unwrap(), k);
        assert_eq!(StateKey::parse(&URL_SAFE_NO_PAD.encode(k.0)).unwrap(), k);
        assert!(StateKey::parse("short").is_err());
        assert!(StateKey::parse(&STANDARD.encode([7u8; 16])).is_err());
        assert!(StateKey::parse(&"0".repeat(64)).is_err());
        assert!(!format!("{k:?}").contains("0123"));
        assert_ne!(StateKey::generate(), StateKey::generate());
    }
}
