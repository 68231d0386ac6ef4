//! Signed assertions kept per (session, audience), so that `/auth/verify` signs once per
//! half-lifetime instead of at every request.
//!
//! An entry is only reused for the same fingerprint of what went into the token (identity,
//! filtered roles, key): a session whose roles or identity changed gets a new token at once.
//! The map is bounded with two generations: inserts go to the current one; when it is full it
//! becomes the previous one (the older previous is dropped) and a hit there moves the entry
//! back. At most `2 x capacity` entries, O(1) per request, no scan and no clock thread.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// SHA-256 of the parts, each length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// What was decided for one fingerprint: a token, or "too large, omitted" (remembered so that
/// an oversized session is not re-signed and re-logged at every request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    Token(Arc<str>),
    Oversized,
}

#[derive(Debug, Clone)]
struct Entry {
    fingerprint: [u8; 32],
    value: Cached,
    /// Unix seconds after which the entry is signed again.
    refresh_at: i64,
}

#[derive(Default)]
struct Generations {
    current: HashMap<[u8; 32], Entry>,
    previous: HashMap<[u8; 32], Entry>,
}

pub struct Cache {
    capacity: usize,
    inner: Mutex<Generations>,
}

impl Cache {
    /// Keeps at most `max_entries` (at least 2), in two generations of half that.
    pub fn new(max_entries: usize) -> Self {
        Self {
            capacity: (max_entries / 2).max(1),
            inner: Mutex::default(),
        }
    }

    /// The cache key of a session and an audience.
    pub fn key(session_key: &str, audience: &str) -> [u8; 32] {
        digest([session_key.as_bytes(), audience.as_bytes()])
    }

    /// The value for `key`, if it was made for `fingerprint` and is not due for refresh.
    pub fn get(&self, key: &[u8; 32], fingerprint: &[u8; 32], now: i64) -> Option<Cached> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |e: &Entry| e.fingerprint == *fingerprint && now < e.refresh_at;
        if let Some(e) = g.current.get(key) {
            return fresh(e).then(|| e.value.clone());
        }
        let e = g.previous.remove(key)?;
        if !fresh(&e) {
            return None;
        }
        let value = e.value.clone();
        self.insert_locked(&mut g, *key, e);
        Some(value)
    }

    pub fn put(&self, key: [u8; 32], fingerprint: [u8; 32], value: Cached, refresh_at: i64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Entry {
            fingerprint,
            value,
            refresh_at,
        };
        self.insert_locked(&mut g, key, entry);
    }

    fn insert_locked(&self, g: &mut Generations, key: [u8; 32], entry: Entry) {
        if g.current.len() >= self.capacity && !g.current.contains_key(&key) {
            g.previous = std::mem::take(&mut g.current);
        }
        g.previous.remove(&key);
        g.current.insert(key, entry);
    }

    /// Entries held, over both generations.
    pub fn len(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.current.len() + g.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Cached {
        Cached::Token(Arc::from(s))
    }

    #[test]
    fn an_entry_is_reused_for_the_same_fingerprint_until_its_refresh_time() {
        let c = Cache::new(10);
        let (k, fp) = (Cache::key("s1", "app"), digest([b"alice".as_slice()]));
        c.put(k, fp, token("t1"), 100);
        assert_eq!(c.get(&k, &fp, 99), Some(token("t1")));
        assert_eq!(c.get(&k, &fp, 100), None, "due for refresh");
        let other = digest([b"alice".as_slice(), b"admin".as_slice()]);
        assert_eq!(c.get(&k, &other, 50), None, "another fingerprint");
        assert_eq!(c.get(&Cache::key("s2", "app"), &fp, 50), None);
        assert_eq!(c.get(&Cache::key("s1", "other-app"), &fp, 50), None);
    }

    #[test]
    fn a_new_fingerprint_replaces_the_sessions_entry() {
        let c = Cache::new(10);
        let k = Cache::key("s1", "app");
        let (a, b) = (digest([b"a".as_slice()]), digest([b"b".as_slice()]));
        c.put(k, a, token("ta"), 100);
        c.put(k, b, token("tb"), 100);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&k, &a, 0), None);
        assert_eq!(c.get(&k, &b, 0), Some(token("tb")));
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let c = Cache::new(100);
        let fp = digest([b"x".as_slice()]);
        for i in 0..10_000 {
            c.put(
                Cache::key(&i.to_string(), "app"),
                fp,
                Cached::Oversized,
                100,
            );
            assert!(c.len() <= 100, "{} entries after {i}", c.len());
        }
        // The most recent ones are still there; the oldest are gone.
        assert!(c.get(&Cache::key("9999", "app"), &fp, 0).is_some());
        assert!(c.get(&Cache::key("0", "app"), &fp, 0).is_none());
    }

    #[test]
    fn a_hit_in_the_previous_generation_survives_the_next_turnover() {
        let c = Cache::new(4); // two per generation
        let fp = digest([b"x".as_slice()]);
        let k = |s: &str| Cache::key(s, "app");
        c.put(k("hot"), fp, token("hot"), 100);
        c.put(k("a"), fp, token("a"), 100);
        c.put(k("b"), fp, token("b"), 100); // turnover: hot, a are previous
        assert_eq!(c.get(&k("hot"), &fp, 0), Some(token("hot"))); // moved back
        c.put(k("c"), fp, token("c"), 100); // turnover: b, hot previous
        assert_eq!(c.get(&k("hot"), &fp, 0), Some(token("hot")));
        assert_eq!(c.get(&k("a"), &fp, 0), None);
    }

    #[test]
    fn length_prefixes_keep_the_parts_apart() {
        assert_ne!(
            digest([b"ab".as_slice(), b"c".as_slice()]),
            digest([b"a".as_slice(), b"bc".as_slice()])
        );
    }
}
