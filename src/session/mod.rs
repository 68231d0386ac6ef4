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
mod redis_store;
pub mod revocations;
pub mod sealed;
pub mod snapshot;

pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use sealed::{PendingLogin, PendingProtocol};
pub use snapshot::AccountState;

use crate::idp::saml::logout::NameId;
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
    /// The SAML NameID the session was established with, echoed in our LogoutRequest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id: Option<NameId>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the absolute end, whatever the activity.
    pub expires_at: i64,
}

impl SessionRecord {
    /// The index keys an IdP can end this session by: an OIDC session by its `sid`; a SAML
    /// session (it has a NameID) by its NameID, and by SessionIndex and NameID together, as a
    /// LogoutRequest names them.
    pub fn idp_keys(&self) -> Vec<String> {
        let c = &self.connection;
        match (&self.name_id, self.idp_session.as_deref()) {
            (None, sid) => sid.map(|sid| idp_key(c, sid)).into_iter().collect(),
            (Some(n), None) => vec![name_id_key(c, n)],
            (Some(n), Some(sid)) => {
                vec![name_id_key(c, n), saml_session_key(c, sid, n)]
            }
        }
    }
}

fn idp_key(connection: &str, sid: &str) -> String {
    hash_key(&format!("{connection}\u{0}{sid}"))
}

/// A NameID as SAML compares identifiers (core 2.2.3): its value with its NameQualifier and
/// SPNameQualifier, where an absent qualifier matches only an absent one (never an empty
/// one, never any).
fn name_id_identity(n: &NameId) -> String {
    let q = |v: &Option<String>| match v {
        None => "\u{1}".to_string(),
        Some(s) => format!("\u{2}{s}"),
    };
    format!(
        "{}\u{0}{}\u{0}{}",
        q(&n.name_qualifier),
        q(&n.sp_name_qualifier),
        n.value
    )
}

/// Distinct from every [`idp_key`]: a NameID value can never be taken for a session id.
fn name_id_key(connection: &str, name_id: &NameId) -> String {
    hash_key(&format!(
        "{connection}\u{0}\u{1}name-id\u{0}{}",
        name_id_identity(name_id)
    ))
}

/// A SAML session as a LogoutRequest names it: SessionIndex and NameID together.
fn saml_session_key(connection: &str, session_index: &str, name_id: &NameId) -> String {
    hash_key(&format!(
        "{connection}\u{0}\u{2}saml-session\u{0}{session_index}\u{0}{}",
        name_id_identity(name_id)
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

    /// Ends the sessions of the connection established with this SAML SessionIndex and this
    /// NameID (a LogoutRequest names both, core 3.7.3.2); returns how many there were.
    pub async fn revoke_saml_session(
        &self,
        connection: &str,
        session_index: &str,
        name_id: &NameId,
    ) -> Result<usize, SessionError> {
        let key = saml_session_key(connection, session_index, name_id);
        dispatch!(self, s => s.revoke_idp_session(&key).await)
    }

    /// Ends every session of the connection that was established with this SAML NameID;
    /// returns how many there were.
    pub async fn revoke_name_id(
        &self,
        connection: &str,
        name_id: &NameId,
    ) -> Result<usize, SessionError> {
        dispatch!(self, s => s.revoke_idp_session(&name_id_key(connection, name_id)).await)
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
