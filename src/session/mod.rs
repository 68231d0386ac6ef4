//! Sessions: an opaque random id in the cookie; the record lives server-side, in-process by
//! default or in Redis so that replicas share it.
//!
//! The store never sees the cookie value itself: it is keyed by SHA-256 of the id, so a dump of
//! Redis (or of memory) does not hand out live cookies. The same store keeps "seen once"
//! markers for replay caches (assertion ids, used login states). Login state itself (nonce,
//! PKCE verifier, SAML request id) is sealed into the browser's cookie ([`sealed`]), so an
//! anonymous `/login` writes nothing here, and a login started on one replica finishes on
//! another through the shared key.

mod memory;
mod near_cache;
mod redis_store;
pub mod revocations;
pub mod sealed;
pub mod snapshot;

pub use memory::MemoryStore;
pub use near_cache::NearCacheStats;
pub use redis_store::RedisStore;
pub use sealed::{PendingLogin, PendingProtocol};
pub use snapshot::AccountState;

use crate::provisioning::AccountSnapshot;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Bytes of randomness in a session id (256 bits, from the OS CSPRNG).
const ID_BYTES: usize = 32;

/// A session id as it travels in the cookie. Not `Debug`-printable on purpose.
#[derive(Clone)]
pub struct SessionId(String, std::sync::OnceLock<String>);

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for SessionId {}

impl SessionId {
    fn new(secret: String) -> Self {
        Self(secret, std::sync::OnceLock::new())
    }

    pub fn generate() -> Self {
        Self::new(random_token())
    }

    /// Accepts only what [`SessionId::generate`] could have produced, so junk never reaches the store.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self::new(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key under which the store keeps this session (hashed once per id: `/auth/verify`
    /// needs it for the store and for the assertion cache).
    pub fn store_key(&self) -> &str {
        self.1.get_or_init(|| hash_key(&self.0))
    }
}

/// 256 random bits, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; ID_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator is available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256, for keys derived from secrets (session ids, login state).
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What the server keeps for a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub account: AccountSnapshot,
    pub connection: String,
    pub subject: String,
    /// The IdP's session id (OIDC `sid`, SAML SessionIndex), for IdP-initiated logout.
    pub idp_session: Option<String>,
    /// How the IdP names the person in logout messages, in the adapter's canonical form
    /// ([`crate::idp::IdpPrincipal::key`]), opaque here: the index keys of IdP-initiated
    /// logout are built from it when the session is stored. Absent in records of releases
    /// before it existed, whose index keys were built at their insert and are never rebuilt
    /// from a record read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_principal: Option<String>,
    /// What the adapter needs back to ask the IdP to end its session
    /// ([`crate::idp::IdpPrincipal::logout_ref`]), opaque here. Stored under its first name
    /// and in its first shape (`name_id`: the SAML NameID object), so that a record written by
    /// either release reads in both during a rolling upgrade.
    #[serde(default, rename = "name_id", skip_serializing_if = "Option::is_none")]
    pub idp_logout_ref: Option<serde_json::Value>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the absolute end, whatever the activity.
    pub expires_at: i64,
}

impl SessionRecord {
    /// The index keys an IdP can end this session by: a session without a principal (OIDC)
    /// by its IdP session id (`sid`); one with a principal (SAML: its NameID) by the
    /// principal, and by IdP session id (SessionIndex) and principal together, as a
    /// LogoutRequest names them.
    pub fn idp_keys(&self) -> Vec<String> {
        let c = &self.connection;
        match (self.idp_principal.as_deref(), self.idp_session.as_deref()) {
            (None, sid) => sid.map(|sid| idp_key(c, sid)).into_iter().collect(),
            (Some(p), None) => vec![principal_key(c, p)],
            (Some(p), Some(sid)) => {
                vec![principal_key(c, p), principal_session_key(c, sid, p)]
            }
        }
    }
}

fn idp_key(connection: &str, sid: &str) -> String {
    hash_key(&format!("{connection}\u{0}{sid}"))
}

// The labels in the two keys below are those of the first release, which had only SAML
// principals (NameIDs): sessions in Redis are indexed under these bytes, so they stay.

/// Distinct from every [`idp_key`]: a principal can never be taken for a session id.
fn principal_key(connection: &str, principal: &str) -> String {
    hash_key(&format!("{connection}\u{0}\u{1}name-id\u{0}{principal}"))
}

/// An IdP session as a LogoutRequest names it: its id (SessionIndex) and the principal
/// together.
fn principal_session_key(connection: &str, session_index: &str, principal: &str) -> String {
    hash_key(&format!(
        "{connection}\u{0}\u{2}saml-session\u{0}{session_index}\u{0}{principal}"
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session store is unavailable")]
    Unavailable(#[source] redis::RedisError),
    #[error("a stored session record is unreadable")]
    Corrupt,
    /// Redis may evict keys under memory pressure: an evicted epoch or account snapshot would
    /// let a disabled account's session through, an evicted index would hide sessions from
    /// revocation. Refused at start.
    #[error(
        "Redis maxmemory-policy is {0:?}, which lets Redis evict session, index and account \
         epoch keys under memory pressure (a disabled account could get back in); fix: set \
         `maxmemory-policy noeviction` in redis.conf (or CONFIG SET maxmemory-policy \
         noeviction) and size maxmemory for the sessions"
    )]
    EvictionPolicy(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub absolute: Duration,
}

/// The session store; one variant per backend. An enum rather than a trait object keeps the
/// forward-auth hot path free of boxing and dynamic dispatch.
#[derive(Clone)]
pub enum SessionStore {
    Memory(std::sync::Arc<MemoryStore>),
    Redis(RedisStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            SessionStore::Memory($s) => $e,
            SessionStore::Redis($s) => $e,
        }
    };
}

impl SessionStore {
    pub fn memory(timeouts: Timeouts) -> Self {
        Self::Memory(std::sync::Arc::new(MemoryStore::new(timeouts)))
    }

    pub async fn redis(url: &str, prefix: &str, timeouts: Timeouts) -> Result<Self, SessionError> {
        Ok(Self::Redis(
            RedisStore::connect(url, prefix, timeouts).await?,
        ))
    }

    pub fn timeouts(&self) -> Timeouts {
        dispatch!(self, s => s.timeouts())
    }

    /// For a server: keeps up to `entries` of the Redis sessions it serves in memory, kept
    /// current by Redis (see [`RedisStore::with_near_cache`]). The in-process store is one
    /// already.
    pub fn with_near_cache(self, entries: usize) -> Self {
        match self {
            Self::Redis(s) => Self::Redis(s.with_near_cache(entries)),
            memory => memory,
        }
    }

    /// What the near cache did so far; `None` without one.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        match self {
            Self::Redis(s) => s.near_cache_stats(),
            Self::Memory(_) => None,
        }
    }

    /// Stores a new session and returns its id (for the cookie).
    pub async fn create(&self, record: SessionRecord) -> Result<SessionId, SessionError> {
        let id = SessionId::generate();
        dispatch!(self, s => s.insert(id.store_key(), &record).await)?;
        Ok(id)
    }

    /// The live session for this id, refreshing its idle timer; `None` when unknown, expired,
    /// older than its account's epoch, or of an account whose snapshot says it is disabled.
    /// The session's account copy is brought up to date from the account's snapshot (read in
    /// the same round trip): its identity and the roles that count now.
    pub async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>, SessionError> {
        let now = unix_now();
        let key = id.store_key();
        let Some((mut record, state)) = dispatch!(self, s => s.get(key, now).await)? else {
            return Ok(None);
        };
        match snapshot::judge(&record.account, state.as_deref()) {
            snapshot::Verdict::Apply => {
                if let Some(state) = state {
                    state.apply_to(&mut record.account, now);
                }
                Ok(Some(record))
            }
            snapshot::Verdict::Refuse(why) => {
                tracing::debug!(why, "session refused by its account snapshot");
                // Ended for good: a later snapshot (a re-enable) must not bring it back, and
                // its record should not linger.
                dispatch!(self, s => s.delete(key).await)?;
                Ok(None)
            }
        }
    }

    /// Forgets the account's snapshot (the account is gone: a purge deleted it), so that no
    /// personal value of it stays in the store. Its epoch stays.
    pub async fn drop_account(&self, account_id: &str) -> Result<(), SessionError> {
        dispatch!(self, s => s.drop_account(account_id).await)
    }

    /// Stores the account's snapshot unless the store holds a newer one (a higher revision);
    /// returns whether it was stored. Kept for as long as a session can live.
    pub async fn put_account(&self, state: &AccountState) -> Result<bool, SessionError> {
        dispatch!(self, s => s.put_account(state).await)
    }

    pub async fn delete(&self, id: &SessionId) -> Result<(), SessionError> {
        dispatch!(self, s => s.delete(id.store_key()).await)
    }

    /// Ends every session of the account; returns how many there were.
    ///
    /// With `Some(epoch)` (a disable or purge that brought the account to lifecycle version
    /// `epoch`), the store also remembers the epoch for the account, for as long as a session
    /// can live: a session made at an older version is refused from then on, even one created
    /// after this revocation ran (a login that provisioned just before the disable committed
    /// and stored its session just after the revocation). Sessions at `epoch` or later (made
    /// after a re-enable) are left alone, so applying the same revocation twice is harmless.
    /// `None` ends the current sessions only (the IdP ended them; new logins are welcome).
    pub async fn revoke_account(
        &self,
        account_id: &str,
        epoch: Option<i64>,
    ) -> Result<usize, SessionError> {
        dispatch!(self, s => s.revoke_account(account_id, epoch).await)
    }

    /// Ends every session that belongs to the IdP session `sid` of the connection (back-channel
    /// logout); returns how many there were.
    pub async fn revoke_idp_session(
        &self,
        connection: &str,
        sid: &str,
    ) -> Result<usize, SessionError> {
        dispatch!(self, s => s.revoke_idp_session(&idp_key(connection, sid)).await)
    }

    /// Ends the sessions of the connection established with this IdP session id and this
    /// principal (a SAML LogoutRequest names a SessionIndex and a NameID, core 3.7.3.2);
    /// returns how many there were.
    pub async fn revoke_principal_session(
        &self,
        connection: &str,
        session_index: &str,
        principal: &str,
    ) -> Result<usize, SessionError> {
        let key = principal_session_key(connection, session_index, principal);
        dispatch!(self, s => s.revoke_idp_session(&key).await)
    }

    /// Ends every session of the connection that was established with this principal;
    /// returns how many there were.
    pub async fn revoke_principal(
        &self,
        connection: &str,
        principal: &str,
    ) -> Result<usize, SessionError> {
        dispatch!(self, s => s.revoke_idp_session(&principal_key(connection, principal)).await)
    }

    /// Records `key` for `ttl`; false when it was already recorded (a replay).
    pub async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, SessionError> {
        dispatch!(self, s => s.first_use(&hash_key(key), ttl).await)
    }

    /// Whether `key` is recorded (see [`Self::first_use`]), without recording it: for a check
    /// whose mark must wait until the work it guards succeeded.
    pub async fn was_used(&self, key: &str) -> Result<bool, SessionError> {
        dispatch!(self, s => s.was_used(&hash_key(key)).await)
    }

    /// A live round trip, for `/readyz` and start-up validation.
    pub async fn ping(&self) -> Result<(), SessionError> {
        dispatch!(self, s => s.ping().await)
    }
}

pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(principal: Option<&str>, sid: Option<&str>) -> SessionRecord {
        SessionRecord {
            account: AccountSnapshot {
                id: "a1".into(),
                username: "u".into(),
                email: None,
                display_name: None,
                roles: vec![],
                version: 0,
                revision: None,
                role_ends: Vec::new(),
            },
            connection: "c".into(),
            subject: "s".into(),
            idp_session: sid.map(str::to_string),
            idp_principal: principal.map(str::to_string),
            idp_logout_ref: None,
            created_at: 0,
            expires_at: 1,
        }
    }

    /// The index keys live in Redis (and replicas of two releases share them during a rolling
    /// upgrade): their bytes are pinned, so that a session made by one release is found by a
    /// logout handled by another. The principals are SAML NameIDs as
    /// `idp::saml::slo::principal` writes them (its tests pin that side).
    #[test]
    fn the_index_keys_of_a_session_are_those_of_the_first_release() {
        assert_eq!(
            record(None, Some("sid-1")).idp_keys(),
            ["30c88a871ae4d639d6509444f92f3cd630b39465fa5ecbd4414a2997c674185e"]
        );
        assert!(record(None, None).idp_keys().is_empty());
        let plain = "\u{1}\u{0}\u{1}\u{0}alice@example.com";
        assert_eq!(
            record(Some(plain), None).idp_keys(),
            ["5b30b11e741551a5c4393c51296306dd685457adad9fcb0162a4e2f46e5a416a"]
        );
        assert_eq!(
            record(Some(plain), Some("s-1")).idp_keys(),
            [
                "5b30b11e741551a5c4393c51296306dd685457adad9fcb0162a4e2f46e5a416a",
                "3ed4080d743f437a1cb38bcfb163c2fc1154cb7cb91ec4dd36f767f08ce2f871"
            ]
        );
        let qualified = "\u{2}https://idp.example.org\u{0}\u{2}https://sp.example.com/metadata\u{0}alice@example.com";
        assert_eq!(
            record(Some(qualified), Some("s-1")).idp_keys(),
            [
                "24dc6cc3d52a222602d961758ca39d2360f629d56084c02d0e56fafbfbf412cb",
                "5f332c37b4ab5ca6c2d66ee3f759f012f69a8255fa5e169afc005dfbc5b26597"
            ]
        );
        assert_eq!(
            record(Some("\u{2}\u{0}\u{1}\u{0}bob"), Some("s-1")).idp_keys(),
            [
                "834e29cd3d2b82ced0ef6e5ca087e3e04e61bda1fb5005c762f75d5ad58b0b15",
                "6311d058358008ce80880e6a3039dcee13aa7b43cb5aaf924fc1b441dd1f438c"
            ]
        );
    }

    /// A record written by the first release reads back (a Redis full of live sessions during
    /// an upgrade), and one written now keeps the first release's fields and shapes, so that
    /// release reads it too.
    #[test]
    fn a_session_record_of_the_first_release_reads_back_and_keeps_its_shape() {
        let name_id = r#"{"value":"alice@example.com","format":"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress","name_qualifier":"https://idp.example.org"}"#;
        let old = format!(
            r#"{{"account":{{"id":"a1","username":"u","email":null,"display_name":null,"roles":[],"version":0}},"connection":"c","subject":"s","idp_session":"s-1","name_id":{name_id},"created_at":0,"expires_at":1}}"#
        );
        let r: SessionRecord = serde_json::from_str(&old).unwrap();
        assert_eq!(r.idp_session.as_deref(), Some("s-1"));
        assert_eq!(r.idp_principal, None);
        let name_id: serde_json::Value = serde_json::from_str(name_id).unwrap();
        assert_eq!(r.idp_logout_ref.as_ref(), Some(&name_id));

        let now = SessionRecord {
            idp_principal: Some("p".into()),
            idp_logout_ref: Some(name_id.clone()),
            ..record(None, Some("s-1"))
        };
        let json: serde_json::Value = serde_json::to_value(&now).unwrap();
        assert_eq!(json["name_id"], name_id);
        assert_eq!(json["idp_principal"], "p");
        let oidc = serde_json::to_value(record(None, Some("s-1"))).unwrap();
        assert!(oidc.get("name_id").is_none() && oidc.get("idp_principal").is_none());
    }
}
