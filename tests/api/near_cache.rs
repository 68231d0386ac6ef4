//! The near cache of Redis sessions (`session::near_cache`): what another server, a cut or a
//! frozen connection does to sessions a server holds in memory. Each test has its own key
//! prefix on the shared Redis, or a private Redis where it freezes the server.

use crate::private_redis::PrivateRedis;
use crate::session_store::{record, snapshot, timeouts};
use jitbridge::session::{SessionId, SessionStore};
use std::time::{Duration, Instant};

/// The longest a change may take to reach a server's near cache here: its staleness bound
/// (1 s) is the worst case of a lost invalidation; a delivered one takes milliseconds.
const REACHES_WITHIN: Duration = Duration::from_secs(1);

/// Waits until the store's near cache serves (its tracking connection is proven).
pub async fn serving(store: SessionStore) -> SessionStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.near_cache_stats().is_some_and(|s| s.serving) {
        assert!(
            Instant::now() < deadline,
            "the near cache did not start serving"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
}

fn prefix() -> String {
    format!("jbtest:{}:", uuid::Uuid::new_v4().simple())
}

/// A server with a near cache, and another server (or a CLI) without one, on one Redis.
async fn two_servers(url: &str) -> (SessionStore, SessionStore) {
    two_servers_at(url, &prefix(), 600).await
}

async fn two_servers_at(url: &str, prefix: &str, idle: u64) -> (SessionStore, SessionStore) {
    let cached = SessionStore::redis(url, prefix, timeouts(idle))
        .await
        .unwrap()
        .with_near_cache(100);
    let other = SessionStore::redis(url, prefix, timeouts(idle))
        .await
        .unwrap();
    (serving(cached).await, other)
}

/// Reads the session until it is served from memory.
async fn warm(s: &SessionStore, id: &SessionId) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = s.near_cache_stats().unwrap().hits;
        assert!(s.get(id).await.unwrap().is_some(), "the session is live");
        if s.near_cache_stats().unwrap().hits > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the session is never served from the near cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the cached server until `gone` says the change reached it; returns how long it took.
async fn until_seen(
    s: &SessionStore,
    id: &SessionId,
    gone: impl Fn(Option<jitbridge::session::SessionRecord>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if gone(s.get(id).await.unwrap()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < REACHES_WITHIN,
            "the change did not reach the near cache within {REACHES_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_cached_session_is_served_from_memory_as_stored() {
    let (cached, _) = two_servers(&crate::helpers::redis_url()).await;
    let stored = record("n1");
    let id = cached.create(stored.clone()).await.unwrap();
    warm(&cached, &id).await;
    assert_eq!(cached.get(&id).await.unwrap(), Some(stored));
}

/// Each way another server (or the CLI) ends a session or changes its account reaches a
/// server that holds the session in memory, without any wait of its own.
#[tokio::test]
async fn what_another_server_ends_or_changes_reaches_a_cached_session_at_once() {
    let url = crate::helpers::redis_url();
    let mut took = vec![];

    // A disable (the epoch moves past the session).
    let (cached, other) = two_servers(&url).await;
    let id = cached.create(record("d1")).await.unwrap();
    warm(&cached, &id).await;
    other.revoke_account("d1", Some(1)).await.unwrap();
    took.push(("disable", until_seen(&cached, &id, |r| r.is_none()).await));

    // A logout on another server.
    let id = cached.create(record("d2")).await.unwrap();
    warm(&cached, &id).await;
    other.delete(&id).await.unwrap();
    took.push(("logout", until_seen(&cached, &id, |r| r.is_none()).await));

    // A back-channel logout of the IdP session.
    let id = cached.create(record("d3")).await.unwrap();
    warm(&cached, &id).await;
    other.revoke_idp_session("c", "sid-1").await.unwrap();
    took.push((
        "idp logout",
        until_seen(&cached, &id, |r| r.is_none()).await,
    ));

    // A disabled snapshot.
    let id = cached.create(record("d4")).await.unwrap();
    warm(&cached, &id).await;
    other
        .put_account(&snapshot("d4", 1, false, &[("r", None)]))
        .await
        .unwrap();
    took.push((
        "disabled snapshot",
        until_seen(&cached, &id, |r| r.is_none()).await,
    ));

    // A role change.
    let id = cached.create(record("d5")).await.unwrap();
    warm(&cached, &id).await;
    other
        .put_account(&snapshot("d5", 1, true, &[("other", None)]))
        .await
        .unwrap();
    took.push((
        "role change",
        until_seen(&cached, &id, |r| {
            r.is_some_and(|r| r.account.roles == vec!["other".to_string()])
        })
        .await,
    ));
    println!("near cache: a change made by another server reached it after {took:?}");
}

/// The race redis-rs' own client-side cache loses: a revocation whose invalidation crosses
/// the read that fills the cache. Whatever the interleaving, the session ends for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_racing_the_read_that_fills_the_cache_is_never_lost() {
    let (cached, other) = two_servers(&crate::helpers::redis_url()).await;
    let before = cached.near_cache_stats().unwrap();
    for i in 0..200 {
        let account = format!("race-{i}");
        let id = cached.create(record(&account)).await.unwrap();
        let reader = {
            let cached = cached.clone();
            let id = id.clone();
            tokio::spawn(async move { cached.get(&id).await.map(|r| r.is_some()) })
        };
        if i % 2 == 0 {
            tokio::task::yield_now().await;
        }
        other.revoke_account(&account, Some(1)).await.unwrap();
        reader.await.unwrap().unwrap();
        until_seen(&cached, &id, |r| r.is_none()).await;
        // And it stays ended: no late fill brings it back.
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(cached.get(&id).await.unwrap().is_none(), "round {i}");
    }
    let after = cached.near_cache_stats().unwrap();
    assert!(
        after.fills >= before.fills + 200,
        "the racing reads went through the near cache: {before:?} -> {after:?}"
    );
}

/// A cut tracking connection loses the invalidations sent while it is down: the cache must
/// forget everything it held, not serve it again once a new connection is proven.
#[tokio::test]
async fn a_cut_tracking_connection_empties_the_near_cache_before_it_serves_again() {
    use redis::AsyncCommands;
    // A private server: killing the tracking connections of the shared one would cut other
    // tests' too.
    let redis = PrivateRedis::start();
    let url = redis.url();
    let prefix = prefix();
    let (cached, _) = two_servers_at(&url, &prefix, 600).await;
    let id = cached.create(record("cut")).await.unwrap();
    warm(&cached, &id).await;

    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let connections = cached.near_cache_stats().unwrap().connections;
    // Tracking clients show the `t` flag: cut them, as a network cut would.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .unwrap();
    let tracking: Vec<&str> = clients
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.starts_with("flags=") && f.contains('t'))
        })
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert!(!tracking.is_empty(), "no tracking connection in {clients}");
    for client in tracking {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(client)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    // While it is down, the session ends behind its back (no invalidation can reach it).
    let key = format!("{prefix}s:{}", id.store_key());
    let _: () = admin.del(&key).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cached.near_cache_stats().unwrap().connections <= connections {
        assert!(Instant::now() < deadline, "the cut was never noticed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cached = serving(cached).await;
    assert!(
        cached.get(&id).await.unwrap().is_none(),
        "the cache served what it held before the cut"
    );
    // And it caches again on the new connection.
    let id = cached.create(record("cut2")).await.unwrap();
    warm(&cached, &id).await;
}

/// A frozen Redis (a partition: the connection stays open, nothing arrives) sends no
/// invalidation and answers no heartbeat: the cache stops serving within its bound, so what
/// it holds is never served unchecked for longer.
#[tokio::test]
async fn a_frozen_redis_stops_the_near_cache_within_its_staleness_bound() {
    let redis = PrivateRedis::start();
    let (cached, _) = two_servers(&redis.url()).await;
    let id = cached.create(record("frozen")).await.unwrap();
    warm(&cached, &id).await;
    redis.freeze();
    tokio::time::sleep(REACHES_WITHIN + Duration::from_millis(300)).await;
    let stats = cached.near_cache_stats().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), cached.get(&id)).await;
    redis.thaw();
    assert!(!stats.serving, "still serving with a frozen Redis");
    assert!(
        !matches!(answer, Ok(Ok(Some(_)))),
        "a session was served from memory while Redis could not vouch for it"
    );
    // Back: served from memory again once proven.
    let cached = serving(cached).await;
    warm(&cached, &id).await;
}

/// Regression (review of the near cache): its renewals went over the tracking connection, and
/// Redis stops watching a key for the client that modifies it (NOLOOP or not) without telling
/// it, so after the first renewal a logout on another server, an IdP logout or a revocation
/// of the subject's sessions never reached the cache: the session was served until the next
/// renewal, or once at any later time before its idle deadline.
#[tokio::test]
async fn a_logout_elsewhere_after_this_server_renewed_the_session_still_reaches_it() {
    // An idle timeout of 20 s renews every 2 s.
    let prefix = prefix();
    let (cached, other) = two_servers_at(&crate::helpers::redis_url(), &prefix, 20).await;
    let mut ids = vec![];
    for account in ["renew-logout", "renew-idp", "renew-subject"] {
        let mut r = record(account);
        r.idp_session = Some(format!("sid-{account}"));
        let id = cached.create(r).await.unwrap();
        warm(&cached, &id).await;
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut admin = redis::Client::open(crate::helpers::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for id in &ids {
        // This use renews; the next ones are served from memory again.
        assert!(cached.get(id).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let pttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}s:{}", id.store_key()))
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(
            pttl > 19_000,
            "the use renewed the session (PTTL {pttl} ms)"
        );
        warm(&cached, id).await;
    }
    other.delete(&ids[0]).await.unwrap();
    until_seen(&cached, &ids[0], |r| r.is_none()).await;
    other
        .revoke_idp_session("c", "sid-renew-idp")
        .await
        .unwrap();
    until_seen(&cached, &ids[1], |r| r.is_none()).await;
    assert!(cached.get(&ids[2]).await.unwrap().is_some(), "only its own");
    other.revoke_account("renew-subject", None).await.unwrap();
    until_seen(&cached, &ids[2], |r| r.is_none()).await;
}

/// A stranger's random cookies name no session: the cache must not ask Redis to watch those
/// keys (Redis tracks even keys that do not exist, in a table that counts against its memory).
#[tokio::test]
async fn random_cookies_are_not_watched_by_redis() {
    let redis = PrivateRedis::start();
    let (cached, _) = two_servers_at(&redis.url(), &prefix(), 600).await;
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let tracked = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("tracking_total_keys:"))
            .expect("INFO stats reports tracking_total_keys")
            .trim()
            .parse()
            .unwrap()
    };
    let info = || redis::cmd("INFO").arg("stats").to_owned();
    let before = tracked(info().query_async(&mut admin).await.unwrap());
    for _ in 0..200 {
        assert!(cached.get(&SessionId::generate()).await.unwrap().is_none());
    }
    let id = cached.create(record("real")).await.unwrap();
    warm(&cached, &id).await;
    let after = tracked(info().query_async(&mut admin).await.unwrap());
    // The real session's record, epoch and snapshot keys, and the probe key, at most.
    assert!(
        after <= before + 4,
        "Redis watches {} more keys after 200 random cookies",
        after - before
    );
}

/// This server's own revocations are seen by its very next request, whenever Redis'
/// invalidation arrives: a logout, a disable, and an IdP logout whose sessions only Redis can
/// name (a barrier then waits for the invalidations).
#[tokio::test]
async fn what_this_server_ends_is_refused_by_its_very_next_request() {
    let (cached, _) = two_servers(&crate::helpers::redis_url()).await;
    for (n, end) in ["logout", "disable", "idp logout"].into_iter().enumerate() {
        let mut r = record(&format!("self-{n}"));
        r.idp_session = Some(format!("sid-self-{n}"));
        let id = cached.create(r).await.unwrap();
        warm(&cached, &id).await;
        match end {
            "logout" => cached.delete(&id).await.unwrap(),
            "disable" => {
                cached
                    .revoke_account(&format!("self-{n}"), Some(1))
                    .await
                    .unwrap();
            }
            _ => {
                cached
                    .revoke_idp_session("c", &format!("sid-self-{n}"))
                    .await
                    .unwrap();
            }
        }
        assert!(cached.get(&id).await.unwrap().is_none(), "{end}");
    }
}
