//! Redis session store: shared by every replica, so a revocation reaches all of them at once.
//!
//! Layout under the configured prefix:
//! - `s:<sha256(id)>`   the session record (JSON); its TTL is the idle timeout, renewed on use
//! - `a:<account id>`  set of the account's session keys, for revoke-all
//! - `l:<sha256(state)>` a pending login, taken with GETDEL (single use)
//! - `o:<sha256(key)>`  replay markers (SET NX EX)
//! - `i:<sha256(connection, sid)>` set of session keys of one IdP session (back-channel logout)

use super::{PendingLogin, SessionError, SessionRecord, Timeouts, unix_now};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::time::Duration;

#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeouts: Timeouts,
}

fn unavailable(e: redis::RedisError) -> SessionError {
    SessionError::Unavailable(e.to_string())
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
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        let store = Self {
            conn,
            prefix: prefix.to_string(),
            timeouts,
        };
        store.ping().await?;
        Ok(store)
    }

    pub(super) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn key(&self, kind: &str, k: &str) -> String {
        format!("{}{kind}:{k}", self.prefix)
    }

    pub(super) async fn insert(
        &self,
        key: &str,
        record: &SessionRecord,
    ) -> Result<(), SessionError> {
        let json = serde_json::to_string(record).expect("session record serializes");
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
    ) -> Result<Option<SessionRecord>, SessionError> {
        let mut conn = self.conn.clone();
        // One round trip: read the record and push its idle expiry forward.
        let raw: Option<String> = conn
            .get_ex(
                self.key("s", key),
                redis::Expiry::EX(self.timeouts.idle.as_secs().max(1)),
            )
            .await
            .map_err(unavailable)?;
        let Some(raw) = raw else { return Ok(None) };
        let record: SessionRecord =
            serde_json::from_str(&raw).map_err(|_| SessionError::Corrupt)?;
        if now >= record.expires_at {
            self.delete(key).await?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), SessionError> {
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

    pub(super) async fn revoke_account(&self, account_id: &str) -> Result<usize, SessionError> {
        let mut conn = self.conn.clone();
        let account_key = self.key("a", account_id);
        let keys: Vec<String> = conn.smembers(&account_key).await.map_err(unavailable)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for k in &keys {
            pipe.del(self.key("s", k)).ignore();
        }
        pipe.del(&account_key).ignore();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(keys.len())
    }

    pub(super) async fn revoke_idp_session(&self, idp_key: &str) -> Result<usize, SessionError> {
        let mut conn = self.conn.clone();
        let set = self.key("i", idp_key);
        let keys: Vec<String> = conn.smembers(&set).await.map_err(unavailable)?;
        let mut n = 0;
        for k in &keys {
            if conn
                .exists::<_, bool>(self.key("s", k))
                .await
                .map_err(unavailable)?
            {
                n += 1;
            }
            self.delete(k).await?;
        }
        let _: () = conn.del(&set).await.map_err(unavailable)?;
        Ok(n)
    }

    pub(super) async fn put_login(
        &self,
        key: &str,
        login: &PendingLogin,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        let json = serde_json::to_string(login).expect("login state serializes");
        let mut conn = self.conn.clone();
        conn.set_ex(self.key("l", key), json, ttl.as_secs().max(1))
            .await
            .map_err(unavailable)
    }

    pub(super) async fn take_login(&self, key: &str) -> Result<Option<PendingLogin>, SessionError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = redis::cmd("GETDEL")
            .arg(self.key("l", key))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        raw.map(|r| serde_json::from_str(&r).map_err(|_| SessionError::Corrupt))
            .transpose()
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

    pub(super) async fn ping(&self) -> Result<(), SessionError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
