//! Benchmark (issue 9): the time from a disable to its refusal on every replica, as a
//! distribution over many disables. Not a test: it asserts only that every disable was refused
//! everywhere, and prints the figures. Run it with
//! `JB_TEST_REPLICAS=1 cargo test --release --test api replicas::bench -- --ignored --nocapture`
//! (`JB_BENCH_DISABLES` sets the count, default 1000; add `--test-threads=1`).
//!
//! Three real replicas on PostgreSQL and Redis. Each account gets a session in the shared
//! Redis; then, one account at a time, a disable goes through the path `accounts disable` takes
//! (the lifecycle transition, its commit, the Redis revocation), and one poller per replica
//! asks that replica's `/auth/verify` with the session's cookie until it answers 401. The
//! figure for a disable is the time from its start to the last replica's first 401. A sample
//! of disables also runs the real CLI process (its start-up included). Pollers ask every 2 ms
//! (the figures' resolution; 10 ms in the second benchmark). The second benchmark does the same with in-process sessions,
//! where a disable made by another process reaches the server through its follower.

use super::cluster::oidc_cluster;
use super::skip;
use crate::direct::{profile, session_of};
use crate::helpers::*;
use jitbridge::provisioning::{LoginKey, provision};
use jitbridge::session::{SessionId, SessionStore, Timeouts};
use std::time::{Duration, Instant};

/// `n` accounts with one session each, as logins leave them (account snapshot included);
/// returns each username with its session id.
async fn seed(lib: &jitbridge::db::Db, store: &SessionStore, n: usize) -> Vec<(String, SessionId)> {
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("user{i}");
        let subject = format!("subject-{i}");
        let key = LoginKey {
            connection: CONNECTION,
            subject: &subject,
            request_id: None,
        };
        let p = provision(
            &mut lib.get().unwrap(),
            key,
            &profile(&username),
            &Default::default(),
        )
        .unwrap();
        store.put_account(&p.state).await.unwrap();
        let id = store.create(session_of(p.account, &subject)).await.unwrap();
        sessions.push((username, id));
    }
    sessions
}

async fn refused_everywhere(
    http: &reqwest::Client,
    replicas: &[String],
    cookie: &str,
    start: Instant,
    every: Duration,
) -> Duration {
    let polls = replicas.iter().map(|base| {
        let (http, url, cookie) = (
            http.clone(),
            format!("{base}/auth/verify"),
            cookie.to_string(),
        );
        async move {
            loop {
                let r = http
                    .get(&url)
                    .header("Cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    401 => return start.elapsed(),
                    200 => {}
                    s => panic!("{url}: unexpected {s}"),
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{url}: never refused"
                );
                // The figures' resolution; it leaves the cores to the servers.
                tokio::time::sleep(every).await;
            }
        }
    });
    futures_max(polls).await
}

async fn futures_max(
    polls: impl Iterator<Item = impl Future<Output = Duration> + Send + 'static>,
) -> Duration {
    let tasks: Vec<_> = polls.map(tokio::spawn).collect();
    let mut max = Duration::ZERO;
    for t in tasks {
        max = max.max(t.await.unwrap());
    }
    max
}

fn quantiles(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        ms(q(0.5)),
        ms(q(0.9)),
        ms(q(0.99)),
        ms(*v.last().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_disable_to_refusal_on_every_replica() {
    if skip() {
        return;
    }
    let n: usize = std::env::var("JB_BENCH_DISABLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (db, c, _op) = oidc_cluster().await;
    let lib = jitbridge::db::Db::connect(&jitbridge::config::Secret::new(&db.url), 4).unwrap();
    let timeouts = Timeouts {
        idle: Duration::from_secs(3600),
        absolute: Duration::from_secs(3600),
    };
    let store = SessionStore::redis(&redis_url(), &c.prefix, timeouts)
        .await
        .unwrap();
    let replicas: Vec<String> = c.replicas.iter().map(|r| r.base()).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .unwrap();

    // Accounts and sessions as logins would leave them.
    let sessions = seed(&lib, &store, n).await;
    for (_, id) in sessions.iter().take(3) {
        let cookie = format!("jitbridge={}", id.as_str());
        for base in &replicas {
            let r = http
                .get(format!("{base}/auth/verify"))
                .header("Cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "{base}: the session is live before the disable"
            );
        }
    }

    let cli_sample = (n / 20).max(1);
    let mut library = Vec::with_capacity(n);
    let mut cli = Vec::with_capacity(cli_sample);
    for (i, (username, id)) in sessions.iter().enumerate() {
        let cookie = format!("jitbridge={}", id.as_str());
        let start = Instant::now();
        if i < cli_sample {
            let out = c.cli(&["accounts", "disable", username, "--reason", "bench"]);
            assert!(out.status.success(), "{out:?}");
            cli.push(
                refused_everywhere(&http, &replicas, &cookie, start, Duration::from_millis(2))
                    .await,
            );
        } else {
            let acc = jitbridge::accounts::set_disabled(
                &mut lib.get().unwrap(),
                username,
                Some("bench"),
                "bench",
            )
            .unwrap();
            store
                .revoke_account(&acc.id, Some(acc.version))
                .await
                .unwrap();
            library.push(
                refused_everywhere(&http, &replicas, &cookie, start, Duration::from_millis(2))
                    .await,
            );
        }
    }
    println!(
        "disable -> 401 on all {} replicas (PostgreSQL + Redis):",
        replicas.len()
    );
    quantiles("  CLI process (start-up included)", cli);
    quantiles("  apply path as the CLI runs it", library);
}

/// The same with in-process sessions: one server, disables made from another database
/// connection (as `accounts disable` in another process makes them, unable to reach the
/// server's memory), so each reaches the server through its revocation-log follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn bench_disable_to_refusal_with_in_process_sessions() {
    if skip() {
        return;
    }
    let n: usize = std::env::var("JB_BENCH_DISABLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let app = spawn_app_with(Options {
        sessions: Some("store = \"memory\"".into()),
        ..Default::default()
    })
    .await;
    let lib =
        jitbridge::db::Db::connect(&jitbridge::config::Secret::new(&app.test_db.url), 4).unwrap();
    let sessions = seed(&lib, &app.state.sessions, n).await;
    let http = reqwest::Client::new();
    let replicas = vec![app.base.clone()];
    // Disables start every 20 ms, each measured by its own poller, so the figure is the
    // follower's delay and not a queue of disables.
    let mut polls = Vec::with_capacity(n);
    for (username, id) in sessions {
        let cookie = format!("jitbridge={}", id.as_str());
        let start = Instant::now();
        let db = lib.clone();
        tokio::task::spawn_blocking(move || {
            jitbridge::accounts::set_disabled(
                &mut db.get().unwrap(),
                &username,
                Some("bench"),
                "bench",
            )
            .unwrap()
        })
        .await
        .unwrap();
        let (http, replicas) = (http.clone(), replicas.clone());
        polls.push(tokio::spawn(async move {
            refused_everywhere(&http, &replicas, &cookie, start, Duration::from_millis(2)).await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut figures = Vec::with_capacity(n);
    for p in polls {
        figures.push(p.await.unwrap());
    }
    println!(
        "disable -> 401 with in-process sessions (follower polls four times a second; {}):",
        if uses_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    quantiles("  disable from another connection", figures);
}
