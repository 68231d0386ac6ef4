//! Username quarantine: a username freed by a rename or a purge is held back, for
//! `accounts.username_quarantine`, from anyone but the account that held it, so that an
//! application that keys its users by username never takes a newcomer for the person who had
//! the name before.
//!
//! Only a keyed hash of the name is stored (HMAC-SHA256 of the lowercased name, so `Alice` and
//! `alice` are one name here), never the name. The key is `accounts.username_hash_key`,
//! shared by replicas, or, without one, a key generated once and kept in the database (then a
//! dump of the database lets anyone test guessed names; `check-config` warns). A generated key
//! is still checked after a key is configured, so holds made under it last until they end.
//!
//! Holds are written in the transaction that frees the name (provisioning's rename, the
//! lifecycle's purge) and checked in the transaction that would take it (provisioning), so a
//! name is never both free of its account and free of its hold.

use crate::config::UsernameQuarantine;
use crate::db::schema::{generated_keys, username_quarantine};
use crate::db::{DbConnection, DbError, now};
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;
use time::PrimitiveDateTime;

/// The name of the generated key in `generated_keys`.
const GENERATED_KEY: &str = "username_hash";

/// The database's generated key once read, for [`Quarantine::open_cached`]: one per database
/// (a server's state holds one).
#[derive(Default)]
pub struct GeneratedKey(std::sync::OnceLock<Vec<u8>>);

/// A name held for an account.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = username_quarantine)]
pub struct Hold {
    pub name_hash: String,
    pub account_id: String,
    #[diesel(column_name = held_until)]
    pub until: PrimitiveDateTime,
}

/// The quarantine with its keys resolved, for use inside a transaction.
#[derive(Clone)]
pub struct Quarantine {
    period: Duration,
    /// New holds are made with the first; every one is checked.
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quarantine")
            .field("period", &self.period)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Quarantine {
    /// No quarantine: nothing is held, nothing is checked.
    pub fn off() -> Self {
        Self {
            period: Duration::ZERO,
            keys: Vec::new(),
        }
    }

    /// Resolves the keys. Call it outside a transaction: without a configured key, the first
    /// use generates the database's key (a concurrent first use is settled by reading theirs).
    pub fn open(c: &mut DbConnection, cfg: &UsernameQuarantine) -> Result<Self, DbError> {
        Self::open_with(c, cfg, None)
    }

    /// [`Quarantine::open`] that reads the database's generated key only until it is known
    /// (`known` keeps it for the process: once generated, the key never changes), so a login
    /// costs no extra query.
    pub fn open_cached(
        c: &mut DbConnection,
        cfg: &UsernameQuarantine,
        known: &GeneratedKey,
    ) -> Result<Self, DbError> {
        Self::open_with(c, cfg, Some(known))
    }

    fn open_with(
        c: &mut DbConnection,
        cfg: &UsernameQuarantine,
        known: Option<&GeneratedKey>,
    ) -> Result<Self, DbError> {
        if !cfg.is_on() {
            return Ok(Self::off());
        }
        Ok(Self {
            period: cfg.period,
            keys: keys(c, cfg, true, known)?,
        })
    }

    fn hashes(&self, name: &str) -> Vec<String> {
        self.keys.iter().map(|k| name_hash(k, name)).collect()
    }

    /// Whether `account` (`None`: an account not created yet) may take `name`: a hold of
    /// another account that has not ended is returned and nothing changes; otherwise any hold
    /// of the name (the account's own, or one that ended) is removed.
    pub fn take(
        &self,
        c: &mut DbConnection,
        name: &str,
        account: Option<&str>,
        at: PrimitiveDateTime,
    ) -> Result<Option<Hold>, DbError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let hashes = self.hashes(name);
        let holds: Vec<Hold> = username_quarantine::table
            .filter(username_quarantine::name_hash.eq_any(&hashes))
            .select(Hold::as_select())
            .load(c)?;
        if holds.is_empty() {
            return Ok(None); // the usual case: nothing to remove either
        }
        if let Some(h) = holds
            .into_iter()
            .find(|h| h.until > at && Some(h.account_id.as_str()) != account)
        {
            return Ok(Some(h));
        }
        diesel::delete(
            username_quarantine::table.filter(username_quarantine::name_hash.eq_any(&hashes)),
        )
        .execute(c)?;
        Ok(None)
    }

    /// Holds `name`, which `account` gives up, for the quarantine period (a hold of the name
    /// made earlier is replaced). Holds that ended are removed on the way.
    pub fn hold(
        &self,
        c: &mut DbConnection,
        name: &str,
        account: &str,
        at: PrimitiveDateTime,
    ) -> Result<(), DbError> {
        let Some(key) = self.keys.first() else {
            return Ok(());
        };
        // The period is bounded by the configuration's validation.
        let until = time::Duration::try_from(self.period)
            .ok()
            .and_then(|d| at.checked_add(d))
            .unwrap_or(PrimitiveDateTime::MAX);
        diesel::delete(username_quarantine::table.filter(username_quarantine::held_until.le(at)))
            .execute(c)?;
        diesel::delete(
            username_quarantine::table
                .filter(username_quarantine::name_hash.eq_any(self.hashes(name))),
        )
        .execute(c)?;
        diesel::insert_into(username_quarantine::table)
            .values((
                username_quarantine::name_hash.eq(name_hash(key, name)),
                username_quarantine::account_id.eq(account),
                username_quarantine::held_until.eq(until),
                username_quarantine::created_at.eq(at),
            ))
            .execute(c)?;
        Ok(())
    }
}

/// Removes every hold of `name` (ended or not, whatever the period says now); returns them.
/// Generates no key: without one there is nothing to release.
pub fn release(
    c: &mut DbConnection,
    cfg: &UsernameQuarantine,
    name: &str,
) -> Result<Vec<Hold>, DbError> {
    let hashes: Vec<String> = keys(c, cfg, false, None)?
        .iter()
        .map(|k| name_hash(k, name))
        .collect();
    let target =
        || username_quarantine::table.filter(username_quarantine::name_hash.eq_any(&hashes));
    let holds = target().select(Hold::as_select()).load(c)?;
    diesel::delete(target()).execute(c)?;
    Ok(holds)
}

/// The configured key first, then the generated one if there is one (created when `create`
/// and nothing else is there). `known`: the generated key as this process last read it, kept
/// there once read (a configured key alone is read again, since an older release sharing the
/// database may still generate one).
fn keys(
    c: &mut DbConnection,
    cfg: &UsernameQuarantine,
    create: bool,
    known: Option<&GeneratedKey>,
) -> Result<Vec<Vec<u8>>, DbError> {
    let mut keys = Vec::with_capacity(2);
    if let Some(k) = &cfg.hash_key {
        keys.push(k.expose().as_bytes().to_vec());
    }
    if let Some(g) = known.and_then(|k| k.0.get()) {
        keys.push(g.clone());
        return Ok(keys);
    }
    let generated = match read_generated(c)? {
        Some(g) => g,
        None if keys.is_empty() && create => generate(c)?,
        None => return Ok(keys),
    };
    let generated = generated.into_bytes();
    keys.push(match known {
        Some(k) => k.0.get_or_init(|| generated).clone(),
        None => generated,
    });
    Ok(keys)
}

fn read_generated(c: &mut DbConnection) -> Result<Option<String>, DbError> {
    Ok(generated_keys::table
        .find(GENERATED_KEY)
        .select(generated_keys::value)
        .get_result(c)
        .optional()?)
}

fn generate(c: &mut DbConnection) -> Result<String, DbError> {
    let bytes: [u8; 32] = rand::random();
    let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let inserted = diesel::insert_into(generated_keys::table)
        .values((
            generated_keys::name.eq(GENERATED_KEY),
            generated_keys::value.eq(&value),
            generated_keys::created_at.eq(now()),
        ))
        .execute(c);
    match inserted {
        Ok(_) => {
            tracing::warn!(
                "generated the username hash key and stored it in the database; configure accounts.username_hash_key instead"
            );
            Ok(value)
        }
        Err(e) => {
            let e = DbError::from(e);
            if !e.is_unique_violation() {
                return Err(e);
            }
            // Another process generated it first: use theirs.
            read_generated(c)?.ok_or(e)
        }
    }
}

/// HMAC-SHA256 of the lowercased name, hex.
fn name_hash(key: &[u8], name: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(b"jitbridge username\0");
    mac.update(name.to_lowercase().as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_keyed_and_ignores_case_and_never_contains_the_name() {
        let h = name_hash(b"k1", "Alice");
        assert_eq!(h, name_hash(b"k1", "alice"));
        assert_ne!(h, name_hash(b"k2", "alice"));
        assert_ne!(h, name_hash(b"k1", "alice2"));
        assert_eq!(h.len(), 64);
        assert!(!h.contains("alice"));
    }
}
