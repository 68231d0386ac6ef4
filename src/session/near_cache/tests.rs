use super::*;
use crate::provisioning::AccountSnapshot;
use redis::{PushInfo, PushKind, Value};

/// A cache whose current tracking connection is id 7 (no real connection: reads are
/// simulated by registering keys, pushes by calling `on_push`).
fn shared() -> Shared {
    let s = Shared::new(
        "p:",
        Timeouts {
            idle: Duration::from_secs(600),
            absolute: Duration::from_secs(3600),
        },
        NonZeroUsize::new(16).unwrap(),
        None,
    );
    s.lock().current = 7;
    s
}

fn session(account: &str) -> CachedSession {
    CachedSession {
        record: Arc::new(SessionRecord {
            account: AccountSnapshot {
                id: account.into(),
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
            idp_session: None,
            idp_principal: None,
            idp_logout_ref: None,
            created_at: 0,
            expires_at: i64::MAX,
        }),
        idle_deadline: Instant::now() + Duration::from_secs(60),
        renewed_ms: AtomicU64::new(0),
        read_again_at: Instant::now() + Duration::from_secs(60),
    }
}

fn account() -> CachedAccount {
    CachedAccount {
        epoch: None,
        state: None,
        read_again_at: Instant::now() + Duration::from_secs(60),
    }
}

fn invalidation(keys: &[&str]) -> PushInfo {
    PushInfo {
        kind: PushKind::Invalidate,
        data: vec![Value::Array(
            keys.iter()
                .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                .collect(),
        )],
    }
}

fn invalidate(s: &Shared, keys: &[&str]) {
    s.on_push(7, invalidation(keys));
}

/// A read whose keys every later step needs: registered as `fill` does.
fn read<'a>(s: &'a Shared, key: &str, account: &str) -> Registration<'a> {
    let mut r = s.register(7);
    r.add(s.key("s", key));
    r.add(s.key("e", account));
    r.add(s.key("k", account));
    r
}

fn cached(s: &Shared, key: &str, account: &str) -> (bool, bool) {
    let mut state = s.lock();
    (
        state.sessions.get(key).is_some(),
        state.accounts.get(account).is_some(),
    )
}

#[test]
fn a_read_no_invalidation_crossed_is_cached() {
    let s = shared();
    let r = read(&s, "k1", "a1");
    s.keep(&r, "k1", session("a1"), account());
    drop(r);
    assert_eq!(cached(&s, "k1", "a1"), (true, true));
    assert!(s.lock().reads.is_empty(), "registrations are released");
}

/// redis-rs' cache-aio bug, which this module exists to avoid: the invalidation of a key
/// arrives after the read's reply but before the reply is cached; caching it anyway keeps
/// the revoked state until the entry's TTL.
#[test]
fn an_invalidation_between_a_reply_and_its_insert_keeps_the_reply_out_of_the_cache() {
    let s = shared();
    let r = read(&s, "k1", "a1");
    invalidate(&s, &["p:s:k1"]);
    s.keep(&r, "k1", session("a1"), account());
    assert_eq!(cached(&s, "k1", "a1"), (false, true), "the session only");

    let s = shared();
    let r = read(&s, "k1", "a1");
    invalidate(&s, &["p:e:a1"]);
    s.keep(&r, "k1", session("a1"), account());
    assert_eq!(cached(&s, "k1", "a1"), (true, false), "the account only");

    let s = shared();
    let r = read(&s, "k1", "a1");
    invalidate(&s, &["p:k:a1"]);
    s.keep(&r, "k1", session("a1"), account());
    assert_eq!(cached(&s, "k1", "a1"), (true, false), "a snapshot change");
}

#[test]
fn a_flush_during_a_read_keeps_it_out_and_empties_the_cache() {
    let s = shared();
    let first = read(&s, "k0", "a0");
    s.keep(&first, "k0", session("a0"), account());
    drop(first);
    let r = read(&s, "k1", "a1");
    // FLUSHALL: Redis sends a null instead of keys.
    s.on_push(
        7,
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        },
    );
    s.keep(&r, "k1", session("a1"), account());
    drop(r);
    assert_eq!(cached(&s, "k1", "a1"), (false, false));
    assert_eq!(cached(&s, "k0", "a0"), (false, false), "emptied");

    // The disconnection of a connection that is no longer the current one (replaced after a
    // failed probe) changes nothing; that of the current one empties the cache.
    let r = read(&s, "k2", "a2");
    s.keep(&r, "k2", session("a2"), account());
    drop(r);
    let disconnected = || PushInfo {
        kind: PushKind::Disconnection,
        data: vec![],
    };
    s.on_push(6, disconnected());
    assert_eq!(cached(&s, "k2", "a2"), (true, true), "an old connection's");
    s.on_push(7, disconnected());
    assert_eq!(cached(&s, "k2", "a2"), (false, false), "the current one's");
    assert_eq!(s.lock().current, 0, "no connection vouches any more");
}

/// A read made over a connection that was replaced while it ran (its keys are watched only
/// there, and nothing will ever tell the cache about them) is never cached.
#[test]
fn a_read_over_a_replaced_connection_is_not_cached() {
    let s = shared();
    let r = read(&s, "k1", "a1");
    // Replaced without a flush in between (the check must be the connection's own).
    s.lock().current = 8;
    s.keep(&r, "k1", session("a1"), account());
    drop(r);
    assert_eq!(cached(&s, "k1", "a1"), (false, false));
}

/// The probe key's invalidation counts as a probe's return only on the current connection,
/// and never evicts or counts as a session's.
#[test]
fn a_probe_returns_only_over_the_current_connection() {
    let s = shared();
    let probe = s.probe_key.clone();
    s.on_push(6, invalidation(&[&probe]));
    assert_eq!(s.lock().probes_seen, 0, "an old connection's");
    s.on_push(7, invalidation(&[&probe]));
    assert_eq!(s.lock().probes_seen, 1);
}

#[test]
fn an_invalidation_evicts_the_session_or_its_account_and_other_prefixes_nothing() {
    let s = shared();
    let r = read(&s, "k1", "a1");
    s.keep(&r, "k1", session("a1"), account());
    drop(r);
    invalidate(&s, &["other:s:k1", "p:o:k1"]);
    assert_eq!(cached(&s, "k1", "a1"), (true, true));
    invalidate(&s, &["p:s:k1"]);
    assert_eq!(cached(&s, "k1", "a1"), (false, true));
    invalidate(&s, &["p:k:a1"]);
    assert_eq!(cached(&s, "k1", "a1"), (false, false));
}

#[test]
fn nothing_is_served_without_a_recent_probe() {
    let s = shared();
    let now = s.millis(Instant::now()) + 10_000;
    assert!(!s.is_proven(&s.read(), now), "never proven");
    s.lock().proven_ms = now - 999;
    assert!(s.is_proven(&s.read(), now), "a probe written 999 ms ago");
    s.lock().proven_ms = now - 1000;
    assert!(!s.is_proven(&s.read(), now), "a probe written a second ago");
    s.lock().proven_ms = now - 10;
    s.lose(7);
    assert!(!s.is_proven(&s.read(), now), "the connection was lost");
}
