//! Redis session store: shared by every replica, so a revocation reaches all of them at once.
//!
//! Layout under the configured prefix:
//! - `s:<sha256(id)>`   the session record (JSON, ending in `"v":<RECORD_VERSION>`); its TTL is
//!   the idle timeout, renewed on use
//! - `a:<account id>`  set of the account's session keys, for revoke-all
//! - `o:<sha256(key)>`  replay markers (SET NX EX)
//! - `i:<sha256(connection, sid)>` set of session keys of one IdP session (back-channel logout)
//! - `e:<account id>`  the account's epoch: sessions made at an older lifecycle version are
//!   refused (kept for the absolute timeout)
//! - `k:<account id>`  the account's snapshot, `<revision> <json>` (see `session::snapshot`),
//!   kept for the absolute timeout; replaced only by a snapshot of a revision at least as high

use super::near_cache::{Found, Lookup, NearCache};
use super::{AccountState, SessionError, SessionRecord, Timeouts, unix_now};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::num::NonZeroUsize;
use std::time::Duration;

/// The stored record's format. A release that changes what a field means, or drops one, bumps
/// it; a record of a newer format than the reader's is no session for that reader (401, a new
/// login), never misread and never an outage. Added fields need no bump (readers ignore them).
/// Records written before versions existed (no `"v"`) are format 0, read as format 1.
pub(super) const RECORD_VERSION: u32 = 1;

/// A record as stored: its fields, then its format last (the get script reads the account id
/// from the record's start).
#[derive(serde::Serialize)]
struct Stored<'a> {
    #[serde(flatten)]
    record: &'a SessionRecord,
    v: u32,
}

/// The format a stored record states: the number in its trailing `,"v":N}`, 0 without one.
fn record_version(raw: &str) -> Option<u32> {
    match raw.strip_suffix('}').and_then(|r| r.rsplit_once(",\"v\":")) {
        Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok(),
        _ => Some(0),
    }
}

/// See [`RedisStore::keep_account_keys`].
const KEY_MARGIN: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    info: std::sync::Arc<redis::ConnectionInfo>,
    prefix: String,
    timeouts: Timeouts,
    /// Sessions this server served, kept current by Redis (see `session::near_cache`).
    near: Option<NearCache>,
}

/// A key of the layout above: `<prefix><kind>:<k>` (the near cache reads keys back by it).
pub(super) fn store_key(prefix: &str, kind: &str, k: &str) -> String {
    format!("{prefix}{kind}:{k}")
}

/// What a stored record is to this release.
enum Parsed {
    Record(Box<SessionRecord>),
    /// Of a newer format (a newer release wrote it during a rolling upgrade).
    Newer(Option<u32>),
    Unreadable,
}

fn parse_record(raw: &str) -> Parsed {
    match record_version(raw) {
        Some(v) if v <= RECORD_VERSION => match serde_json::from_str::<SessionRecord>(raw) {
            Ok(record) => Parsed::Record(Box::new(record)),
            Err(_) => Parsed::Unreadable,
        },
        newer => Parsed::Newer(newer),
    }
}

fn unavailable(e: redis::RedisError) -> SessionError {
    SessionError::Unavailable(e)
}

impl RedisStore {
    pub async fn connect(
        url: &str,
        prefix: &str,
        timeouts: Timeouts,
    ) -> Result<Self, SessionError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let store = Self {
            conn,
            info: std::sync::Arc::new(client.get_connection_info().clone()),
            prefix: prefix.to_string(),
            timeouts,
            near: None,
        };
        store.ping().await?;
        store.refuse_eviction().await?;
        Ok(store)
    }

    /// Refuses a server whose `maxmemory-policy` may evict our keys. Every key we write has a
    /// TTL, so the `volatile-*` policies are as unsafe as the `allkeys-*` ones: only
    /// `noeviction` is. A server that does not answer CONFIG (disabled or renamed, as managed
    /// services do) is accepted with a warning: the operator must check the policy there.
    async fn refuse_eviction(&self) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        let answer: Result<std::collections::HashMap<String, String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        match answer {
            Ok(values) => match values.get("maxmemory-policy") {
                Some(p) if eviction_is_safe(p) => Ok(()),
                Some(p) => Err(SessionError::EvictionPolicy(p.clone())),
                None => {
                    tracing::warn!(
                        "Redis did not report maxmemory-policy; make sure it is noeviction"
                    );
                    Ok(())
                }
            },
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                Err(unavailable(e))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read Redis maxmemory-policy (CONFIG disabled or renamed?); make sure it is noeviction");
                Ok(())
            }
        }
    }

    pub(super) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Keeps up to `entries` sessions (and as many accounts) of those this server serves in
    /// memory, current through Redis' invalidation messages (see `session::near_cache`); 0
    /// turns it off. Needs a Tokio runtime; for servers, not for one-shot commands.
    pub fn with_near_cache(mut self, entries: usize) -> Self {
        self.near = NonZeroUsize::new(entries).map(|n| {
            NearCache::start(
                (*self.info).clone(),
                self.conn.clone(),
                &self.prefix,
                self.timeouts,
                n,
            )
        });
        self
    }

    /// After a write of this server that ends sessions it cannot name (an IdP session's): its
    /// next requests must see it, whatever the near cache held.
    async fn settle(&self) {
        if let Some(near) = &self.near {
            near.barrier().await;
        }
    }

    /// How long an account's epoch and snapshot are kept: longer than any session of the
    /// account can live (the absolute timeout), with a margin for the clocks of the replicas
    /// that stamped the sessions' ends.
    fn keep_account_keys(&self) -> u64 {
        self.timeouts.absolute.as_secs().max(1) + KEY_MARGIN.as_secs()
    }

    fn key(&self, kind: &str, k: &str) -> String {
        store_key(&self.prefix, kind, k)
    }

    pub(super) async fn insert(
        &self,
        key: &str,
        record: &SessionRecord,
    ) -> Result<(), SessionError> {
        let json = serde_json::to_string(&Stored {
            record,
            v: RECORD_VERSION,
        })
        .expect("session record serializes");
        let idle = self.timeouts.idle.as_secs().max(1);
        let absolute = self.timeouts.absolute.as_secs().max(1) as i64;
        let account_key = self.key("a", &record.account.id);
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set_ex(self.key("s", key), json, idle)
            .ignore()
            .sadd(&account_key, key)
            .ignore()
            .expire(&account_key, absolute)
            .ignore();
        for idp in record.idp_keys() {
            let idp_key = self.key("i", &idp);
            pipe.sadd(&idp_key, key)
                .ignore()
                .expire(&idp_key, absolute)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    pub(super) async fn get(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<(SessionRecord, Option<std::sync::Arc<AccountState>>)>, SessionError> {
        let found = match &self.near {
            Some(near) => {
                let parse = |raw: &str| match parse_record(raw) {
                    Parsed::Record(r) => Some(*r),
                    _ => None,
                };
                match near.get(key, parse).await {
                    Ok(Lookup::Found(found)) => Some(*found),
                    Ok(Lookup::Gone) => return Ok(None),
                    Ok(Lookup::Raw(raw)) => self.judge_unusable(key, parse_record(&raw)).await?,
                    // A failed read over the tracking connection is the direct read's to
                    // judge (it retries, and says whether Redis is down).
                    Ok(Lookup::Unusable) | Err(_) => self.read(key).await?,
                }
            }
            None => self.read(key).await?,
        };
        let Some(Found {
            record,
            epoch,
            state,
        }) = found
        else {
            return Ok(None);
        };
        let outdated = epoch.is_some_and(|e| e > record.account.version);
        if outdated || now >= record.expires_at {
            self.delete(key).await?;
            return Ok(None);
        }
        Ok(Some((record, state)))
    }

    /// Reads the record with its account's epoch and snapshot from Redis, in one round trip.
    async fn read(&self, key: &str) -> Result<Option<Found>, SessionError> {
        let mut conn = self.conn.clone();
        // One round trip: the record, its account's epoch and snapshot, read together (a
        // script runs atomically). The script only finds the account id; the checks are here.
        let found: Option<(String, String, String, String)> = get_script()
            .key(self.key("s", key))
            .arg(self.key("e", ""))
            .arg(self.key("k", ""))
            .arg(self.timeouts.idle.as_secs().max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some((raw, id, epoch, state)) = found else {
            return Ok(None);
        };
        let record = match parse_record(&raw) {
            Parsed::Record(record) => *record,
            unusable => return self.judge_unusable(key, unusable).await,
        };
        if id != record.account.id {
            // The script read another account's epoch and snapshot: never serve that.
            tracing::error!("session record names another account than its script read; refused");
            return Ok(None);
        }
        let epoch = match epoch.as_str() {
            "" => None,
            e => Some(e.parse::<i64>().map_err(|_| SessionError::Corrupt)?),
        };
        Ok(Some(Found {
            record,
            epoch,
            state: AccountState::decode(&state).map(std::sync::Arc::new),
        }))
    }

    /// A record this release cannot read is no session (a new login), not an outage: one bad
    /// record must not turn this browser's every request into a 503.
    async fn judge_unusable(
        &self,
        key: &str,
        parsed: Parsed,
    ) -> Result<Option<Found>, SessionError> {
        match parsed {
            // Readable after all (a caller's mistake): still no session from this path.
            Parsed::Record(_) => {}
            Parsed::Newer(format) => {
                // A newer release's (rolling upgrade): left for it.
                tracing::info!(
                    ?format,
                    "session record of a newer format; treated as no session"
                );
            }
            Parsed::Unreadable => {
                tracing::warn!("unreadable session record; deleted, the browser logs in again");
                self.delete(key).await?;
            }
        }
        Ok(None)
    }

    pub(super) async fn put_account(&self, state: &AccountState) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let stored: Result<i64, _> = put_account_script()
            .key(self.key("k", &state.id))
            .arg(state.revision)
            .arg(state.encode())
            .arg(self.keep_account_keys())
            .invoke_async(&mut conn)
            .await;
        self.account_changed(&state.id).await;
        Ok(stored.map_err(unavailable)? == 1)
    }

    pub(super) async fn drop_account(&self, account_id: &str) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        let dropped: Result<(), _> = conn.del(self.key("k", account_id)).await;
        self.account_changed(account_id).await;
        dropped.map_err(unavailable)
    }

    /// What the near cache did so far; `None` without one.
    pub fn near_cache_stats(&self) -> Option<super::NearCacheStats> {
        self.near.as_ref().map(NearCache::stats)
    }

    /// After this server changed the account's epoch or snapshot (or tried to): its own next
    /// requests see the change (the eviction also spoils reads in flight), whenever Redis'
    /// invalidation arrives.
    async fn account_changed(&self, account_id: &str) {
        if let Some(near) = &self.near {
            near.evict_account(account_id);
        }
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), SessionError> {
        let ended = self.delete_record(key).await;
        if let Some(near) = &self.near {
            near.evict_session(key);
        }
        ended
    }

    async fn delete_record(&self, key: &str) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = redis::cmd("GETDEL")
            .arg(self.key("s", key))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if let Some(record) = raw.and_then(|r| serde_json::from_str::<SessionRecord>(&r).ok()) {
            let _: () = conn
                .srem(self.key("a", &record.account.id), key)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Ends the account's sessions and drops its index in one script: Redis runs a script
    /// atomically, so a session inserted concurrently is either ended here or inserted after,
    /// with its index entry intact for the next revocation. (Reading the index, then deleting
    /// it in a second step, dropped the entry of a session inserted in between, which then
    /// survived every revocation.)
    pub(super) async fn revoke_account(
        &self,
        account_id: &str,
        epoch: Option<i64>,
    ) -> Result<usize, SessionError> {
        let mut conn = self.conn.clone();
        let n: Result<usize, _> = revoke_script()
            .key(self.key("a", account_id))
            .arg(self.key("s", ""))
            .arg("")
            .arg(self.key("e", account_id))
            .arg(epoch.map_or(String::new(), |e| e.to_string()))
            .arg(self.keep_account_keys())
            .invoke_async(&mut conn)
            .await;
        self.account_changed(account_id).await;
        n.map_err(unavailable)
    }

    /// Like [`Self::revoke_account`] for the index of one IdP session: atomic, and each ended
    /// session also leaves its account's index.
    pub(super) async fn revoke_idp_session(&self, idp_key: &str) -> Result<usize, SessionError> {
        let mut conn = self.conn.clone();
        let n: Result<usize, _> = revoke_script()
            .key(self.key("i", idp_key))
            .arg(self.key("s", ""))
            .arg(self.key("a", ""))
            .arg("")
            .arg("")
            .arg("1")
            .invoke_async(&mut conn)
            .await;
        // The ended sessions are known only to Redis: its invalidations evict them here.
        self.settle().await;
        n.map_err(unavailable)
    }

    pub(super) async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key("o", key))
            .arg(unix_now())
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    pub(super) async fn was_used(&self, key: &str) -> Result<bool, SessionError> {
        let mut conn = self.conn.clone();
        conn.exists(self.key("o", key)).await.map_err(unavailable)
    }

    pub(super) async fn ping(&self) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// Whether a `maxmemory-policy` never evicts keys: only `noeviction` (writes fail instead,
/// which fails closed).
fn eviction_is_safe(policy: &str) -> bool {
    policy.eq_ignore_ascii_case("noeviction")
}

/// KEYS[1]: an index set of session keys. ARGV[1]: the prefix of session records; ARGV[2]: the
/// prefix of account indexes, or empty when KEYS[1] is the account index itself; ARGV[3]: the
/// account's epoch key and ARGV[4] the epoch (both empty for none), ARGV[5] how long to keep
/// it (the absolute timeout). Raises the stored epoch (never lowers it), then deletes every
/// indexed session older than the epoch (all of them without one), removing it from its
/// account's index, and drops the index once it is empty; returns how many sessions were live.
/// The record and account keys are derived rather than passed in KEYS: they are only known
/// inside the script, which is what makes it atomic (single Redis node or Sentinel; a Cluster
/// would need all keys in one hash slot).
const REVOKE_LUA: &str = r"
local epoch = tonumber(ARGV[4])
if epoch then
  local current = tonumber(redis.call('GET', ARGV[3]))
  if (not current) or current < epoch then current = epoch end
  redis.call('SET', ARGV[3], current, 'EX', ARGV[5])
  epoch = current
end
local members = redis.call('SMEMBERS', KEYS[1])
local ended = 0
for _, k in ipairs(members) do
  local record = ARGV[1] .. k
  local raw = redis.call('GET', record)
  local decoded = nil
  if raw then
    local ok, d = pcall(cjson.decode, raw)
    if ok and type(d) == 'table' and type(d.account) == 'table' then decoded = d end
  end
  local version = decoded and tonumber(decoded.account.version) or 0
  if (not epoch) or version < epoch then
    if ARGV[2] ~= '' and decoded and type(decoded.account.id) == 'string' then
      redis.call('SREM', ARGV[2] .. decoded.account.id, k)
    end
    ended = ended + redis.call('DEL', record)
    redis.call('SREM', KEYS[1], k)
  end
end
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return ended
";

/// KEYS[1]: a session record. ARGV[1]: the prefix of account epochs, ARGV[2] of account
/// snapshots; ARGV[3]: the idle timeout. Returns the record with its account's epoch and
/// snapshot (empty strings when there are none), preceded by the account id it used, and
/// pushes the record's idle expiry forward;
/// nil when there is no record or it names no account. The account id is found with a pattern
/// on the start of the record, which serde writes as `{"account":{"id":"...`; JSON is decoded
/// here only for a record that does not start that way. Whoever reads the answer checks the
/// epoch and the snapshot (a refused session is deleted then).
const GET_LUA: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local id = string.match(raw, '^{"account":{"id":"([^"\\]+)"')
if not id then
  local ok, d = pcall(cjson.decode, raw)
  if not (ok and type(d) == 'table' and type(d.account) == 'table'
      and type(d.account.id) == 'string') then
    -- Unreadable: no epoch can be checked, so it is no session (never served unchecked).
    return nil
  end
  id = d.account.id
end
local found = redis.call('MGET', ARGV[1] .. id, ARGV[2] .. id)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {raw, id, found[1] or '', found[2] or ''}
"#;

/// KEYS[1]: an account snapshot. ARGV[1]: the new snapshot's revision, ARGV[2] its stored
/// form (which starts with the revision), ARGV[3] how long to keep it. Stores it unless the
/// key holds a higher revision; returns 1 when stored, 0 when not.
const PUT_ACCOUNT_LUA: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  local revision = tonumber(string.match(held, '^(-?%d+) '))
  if revision and revision > tonumber(ARGV[1]) then
    -- The newer snapshot must outlive the sessions made now too.
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
";

fn put_account_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(PUT_ACCOUNT_LUA))
}

fn get_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(GET_LUA))
}

fn revoke_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(REVOKE_LUA))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_noeviction_is_a_safe_maxmemory_policy() {
        assert!(super::eviction_is_safe("noeviction"));
        for p in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert!(!super::eviction_is_safe(p), "{p}");
        }
    }
}
