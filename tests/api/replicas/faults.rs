//! Faults: the real Redis or PostgreSQL server process stopped and started again under a
//! running replica (private servers on free ports), and a Redis that could evict our keys.

use super::cluster::{Cluster, Setup, oidc_connection};
use super::servers::{PrivatePostgres, PrivateRedis};
use super::skip;
use crate::helpers::*;
use crate::sweeper::ldap::{Slapd, ldap_directory};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn login(c: &Cluster, op: &Op, who: &str) -> (Browser, reqwest::Response) {
    let b = Browser::new();
    let cb = oidc_login_until_callback(&b, &c.base, &op.issuer, CONNECTION, who, "/w").await;
    let r = b.get(&cb).await;
    (b, r)
}

async fn readyz(c: &Cluster) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", c.replicas[0].operator()))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A clear error page: HTML, the given status, a sentence a person can act on.
async fn assert_clear_error_page(r: reqwest::Response, status: u16) {
    assert_eq!(r.status(), status);
    let html = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(html, "not an HTML page: {body}");
    assert!(
        body.contains("temporarily unavailable; please try again"),
        "{body}"
    );
}

/// Polls `check` (bounded by `within`) until it holds; returns how long that took.
async fn within<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {within:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_stopped_verify_fails_closed_logins_get_a_clear_page_and_readyz_says_why_then_all_recovers()
 {
    if skip() {
        return;
    }
    let mut redis = PrivateRedis::start(&[]).await;
    let db = TestDb::postgres();
    let mut c = Cluster::new(1).await;
    let op = Op::start(&c.base, &default_accounts(), &json!({}));
    let rest = oidc_connection(&op.issuer);
    c.start(&Setup {
        db: &db.url,
        redis: &redis.url(),
        rest: &rest,
    })
    .await;
    let (alice, r) = login(&c, &op, "alice").await;
    assert_eq!(r.status(), 302);
    let verify = format!("{}/auth/verify", c.base);
    assert_eq!(alice.get(&verify).await.status(), 200);

    redis.stop().await;
    for _ in 0..5 {
        let s = alice.get(&verify).await.status();
        assert_eq!(
            s, 503,
            "verify without its store must fail closed, never 200"
        );
    }
    // Starting a login needs no store (its state is sealed in the browser's cookie); its
    // end does (the replay marker, the session): there the person gets the clear page.
    let (_, r) = login(&c, &op, "bob").await;
    assert_clear_error_page(r, 503).await;
    let (status, body) = readyz(&c).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "ok", "{body}");
    assert!(
        body["sessions"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );

    redis.restart().await;
    let took = within(Duration::from_secs(15), "verify recovering", || async {
        alice.get(&verify).await.status() == 200
    })
    .await;
    eprintln!("verify recovered {took:?} after Redis came back");
    assert_eq!(readyz(&c).await.0, 200);
    let (bob, r) = login(&c, &op, "bob").await;
    assert_eq!(r.status(), 302, "a login works again without a restart");
    assert_eq!(bob.get(&verify).await.status(), 200);
    assert!(c.replicas[0].exited().is_none(), "the replica kept running");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_postgres_stopped_sessions_keep_working_from_redis_logins_get_a_clear_page_and_sweeps_change_nothing()
 {
    if skip() {
        return;
    }
    let pg = PrivatePostgres::start();
    let slapd = Slapd::start();
    slapd.add_users(&["alice", "bob"]).await;
    let mut c = Cluster::new(1).await;
    let op = Op::start(&c.base, &default_accounts(), &json!({}));
    let rest = format!(
        "{}\n[connection.directory]\n{}\n",
        oidc_connection(&op.issuer),
        ldap_directory(slapd.port, "")
    );
    c.start(&Setup {
        db: &pg.url(),
        redis: &redis_url(),
        rest: &rest,
    })
    .await;
    let (alice, r) = login(&c, &op, "alice").await;
    assert_eq!(r.status(), 302);
    let verify = format!("{}/auth/verify", c.base);

    pg.stop();
    for _ in 0..5 {
        assert_eq!(
            alice.get(&verify).await.status(),
            200,
            "a live session is served from Redis alone"
        );
    }
    // The first caller waits out one pool timeout; after that the outage is known and every
    // caller gets its answer at once (it took two full timeouts, past the proxy's, before).
    let first = Instant::now();
    let (_, r) = login(&c, &op, "bob").await;
    assert_clear_error_page(r, 503).await;
    let first = first.elapsed();
    assert!(
        first < Duration::from_secs(15),
        "the error page took {first:?}"
    );
    let again = Instant::now();
    let (_, r) = login(&c, &op, "bob").await;
    assert_clear_error_page(r, 503).await;
    let again = again.elapsed();
    assert!(
        again < Duration::from_secs(3),
        "the next error page took {again:?}"
    );
    let sweep = c.cli(&["sweep"]);
    assert!(
        !sweep.status.success(),
        "a sweep without its database fails"
    );
    let err = String::from_utf8_lossy(&sweep.stderr);
    assert!(err.contains("database"), "{err}");
    let probe = Instant::now();
    let (status, body) = readyz(&c).await;
    assert!(
        probe.elapsed() < Duration::from_secs(2),
        "{:?}",
        probe.elapsed()
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["sessions"], "ok", "{body}");
    assert_ne!(body["database"], "ok", "{body}");

    pg.restart();
    let took = within(Duration::from_secs(30), "readyz recovering", || async {
        readyz(&c).await.0 == 200
    })
    .await;
    eprintln!("ready again {took:?} after PostgreSQL came back");
    let runs = c.cli(&["audit", "-n", "100"]);
    let audit = String::from_utf8_lossy(&runs.stdout);
    assert!(
        !audit.contains("sweep."),
        "the failed sweep changed nothing: {audit}"
    );
    let (bob, r) = login(&c, &op, "bob").await;
    assert_eq!(r.status(), 302, "a login works again without a restart");
    assert_eq!(bob.get(&verify).await.status(), 200);
    assert_eq!(alice.get(&verify).await.status(), 200);
    let sweep = c.cli(&["sweep"]);
    assert!(
        sweep.status.success(),
        "{}",
        String::from_utf8_lossy(&sweep.stderr)
    );
    assert!(c.replicas[0].exited().is_none(), "the replica kept running");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_may_evict_keys_is_refused_at_start_naming_the_setting_and_the_fix() {
    if skip() {
        return;
    }
    let redis = PrivateRedis::start(&["--maxmemory-policy", "allkeys-lru"]).await;
    let db = TestDb::postgres();
    let mut c = Cluster::new(1).await;
    c.configure(&Setup {
        db: &db.url,
        redis: &redis.url(),
        rest: "",
    });
    for policy in ["allkeys-lru", "volatile-ttl"] {
        redis.cli(&["CONFIG", "SET", "maxmemory-policy", policy]);
        let r = &mut c.replicas[0];
        r.spawn();
        let status = r.wait_exit(Duration::from_secs(30)).await;
        assert!(!status.success(), "started on a Redis with {policy}");
        let log = r.log();
        assert!(
            log.contains(&format!("maxmemory-policy is \"{policy}\""))
                && log.contains("fix: set `maxmemory-policy noeviction`"),
            "{log}"
        );
    }
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    c.replicas[0].spawn();
    c.replicas[0].wait_ready(Duration::from_secs(30)).await;
}
