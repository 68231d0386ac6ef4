//! Operating three replicas: one sweeper across them, a rolling restart under load, and a
//! simultaneous first start on an empty database.

use super::cluster::{Cluster, Setup, oidc_cluster, oidc_connection};
use super::skip;
use crate::helpers::*;
use crate::sweeper::ldap::{Slapd, ldap_directory};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(QueryableByName, Debug)]
struct Run {
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    started: f64,
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_with_scheduled_sweepers_apply_one_sweep_per_interval() {
    if skip() {
        return;
    }
    let slapd = Slapd::start();
    slapd.add_users(&["alice", "bob"]).await;
    let db = TestDb::postgres();
    let mut c = Cluster::new(3).await;
    let op = Op::start(&c.base, &default_accounts(), &json!({}));
    let directory = ldap_directory(slapd.port, "")
        .replace("interval = \"1h\"", "interval = \"2s\"\njitter = \"500ms\"");
    let rest = format!(
        "{}\n[connection.directory]\n{directory}\n",
        oidc_connection(&op.issuer)
    );
    c.start(&Setup {
        db: &db.url,
        redis: &redis_url(),
        rest: &rest,
    })
    .await;
    // About four intervals; every replica wakes up at least three times in that span.
    tokio::time::sleep(Duration::from_millis(8_500)).await;

    let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
    let runs: Vec<Run> = diesel::sql_query(
        "SELECT outcome, EXTRACT(EPOCH FROM started_at)::float8 AS started FROM sweep_runs \
         ORDER BY started_at",
    )
    .load(&mut conn)
    .unwrap();
    let applied: Vec<f64> = runs
        .iter()
        .filter(|r| r.outcome == "applied")
        .map(|r| r.started)
        .collect();
    assert!(
        (2..=5).contains(&applied.len()),
        "expected one applied sweep per 2 s interval over 8.5 s: {runs:?}"
    );
    for pair in applied.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1.95,
            "two sweeps applied within one interval (replicas each ran their own): {runs:?}"
        );
    }
    assert!(
        runs.iter().all(|r| r.outcome == "applied"),
        "no sweep aborted: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_verify_load_through_nginx_loses_no_request() {
    if skip() {
        return;
    }
    let (_db, mut c, op) = oidc_cluster().await;
    let browser = Browser::new();
    let cb =
        oidc_login_until_callback(&browser, &c.base, &op.issuer, CONNECTION, "alice", "/w").await;
    assert_eq!(browser.get(&cb).await.status(), 302);

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (http, stop, url) = (
                browser.http.clone(),
                stop.clone(),
                format!("{}/auth/verify", c.base),
            );
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, Vec::new());
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(format!("status {}", r.status())),
                        Err(e) => failed.push(format!("error {e}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in &mut c.replicas {
        r.terminate();
        let status = r.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "SIGTERM is a clean stop: {status}");
        r.spawn();
        r.wait_ready(Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let (mut ok, mut failed) = (0, Vec::new());
    for t in load {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert_eq!(c.starts(), [2, 2, 2]);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rolling restart: {:?}\nnginx: {}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(10)],
        c.nginx.error_log()
    );
    assert!(ok > 200, "the load ran during the restart: {ok} requests");
    let served = c.nginx.served();
    assert!(
        served
            .iter()
            .filter(|s| s.path == "/auth/verify")
            .all(|s| s.status == 200 && s.method == "GET"),
        "nginx logged a failed verify"
    );
    // nginx retried on another replica only where a replica refused the connection (stopped,
    // not yet listening), never for a request a replica had accepted and then dropped.
    let errors = c.nginx.error_log();
    let dropped: Vec<&str> = errors
        .lines()
        .filter(|l| l.contains("[error]") && !l.contains("(111: Connection refused)"))
        .collect();
    // No request was lost (asserted above). A connection cut while a replica drains is
    // still seen about once in six runs on a loaded 2-core machine (nginx retried it, so no
    // request failed): reported here, and pinned straight at one replica, with no proxy to
    // retry, by `sigterm_no_longer_resets_queued_connections_or_drops_those_handed_to_a_worker`.
    if !dropped.is_empty() {
        eprintln!(
            "warning: nginx saw {} cut connection(s) during the rolling restart: {:?}",
            dropped.len(),
            &dropped[..dropped.len().min(5)]
        );
    }
    let retried = served.iter().filter(|s| s.tried.len() > 1).count();
    eprintln!("{ok} requests, all 200; {retried} retried by nginx on another replica");
}

#[derive(QueryableByName, Debug)]
struct Applied {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = BigInt)]
    times: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_starting_together_on_an_empty_database_migrate_it_exactly_once() {
    if skip() {
        return;
    }
    let db = TestDb::postgres();
    let mut c = Cluster::new(3).await;
    c.start(&Setup {
        db: &db.url,
        redis: &redis_url(),
        rest: "",
    })
    .await;
    for r in &c.replicas {
        let log = r.log();
        assert!(
            !log.contains("ERROR"),
            "replica {} logged an error:\n{log}",
            r.port
        );
    }

    let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
    let applied: Vec<Applied> = diesel::sql_query(
        "SELECT version, COUNT(*) AS times FROM __diesel_schema_migrations GROUP BY version",
    )
    .load(&mut conn)
    .unwrap();
    let shipped = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/postgresql"
    ))
    .unwrap()
    .count();
    assert_eq!(applied.len(), shipped, "{applied:?}");
    assert!(
        applied
            .iter()
            .all(|a| a.times == 1 && !a.version.is_empty()),
        "{applied:?}"
    );

    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        table_name: String,
    }
    let tables: Vec<String> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public'",
    )
    .load::<Table>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|t| t.table_name)
    .collect();
    for want in [
        "accounts",
        "identities",
        "account_roles",
        "audit_events",
        "sweep_runs",
        "sweep_locks",
        "session_revocations",
    ] {
        assert!(
            tables.iter().any(|t| t == want),
            "no table {want}: {tables:?}"
        );
    }
}

/// Straight at one replica, no proxy to hide anything by retrying: every request either gets
/// its whole answer or is refused before anything was sent.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_no_longer_resets_queued_connections_or_drops_those_handed_to_a_worker() {
    if skip() {
        return;
    }
    let db = TestDb::postgres();
    let mut c = Cluster::new(1).await;
    c.start(&Setup {
        db: &db.url,
        redis: &redis_url(),
        rest: "",
    })
    .await;
    let url = format!("{}/healthz", c.replicas[0].base());
    let gone = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (url, gone) = (url.clone(), gone.clone());
            tokio::spawn(async move {
                // A new connection per request, as nginx opens them by default.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let (mut ok, mut refused, mut dropped) = (0u32, 0u32, Vec::new());
                let deadline = Instant::now() + Duration::from_secs(30);
                while !gone.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match http.get(&url).send().await {
                        Ok(r) => match r.text().await {
                            Ok(body) if body == "ok" => ok += 1,
                            other => dropped.push(format!("{other:?}")),
                        },
                        Err(e) if e.is_connect() => refused += 1,
                        Err(e) => dropped.push(format!("{e:?}")),
                    }
                }
                (ok, refused, dropped)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let r = &mut c.replicas[0];
    r.terminate();
    let status = r.wait_exit(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    gone.store(true, Ordering::Relaxed);
    let (mut ok, mut refused, mut dropped) = (0, 0, Vec::new());
    for t in load {
        let (o, r, d) = t.await.unwrap();
        (ok, refused) = (ok + o, refused + r);
        dropped.extend(d);
    }
    assert!(status.success(), "{status}");
    eprintln!(
        "{ok} answered, {refused} refused before sending, {} cut",
        dropped.len()
    );
    assert!(ok > 20, "the load ran: {ok}");
    assert!(
        dropped.is_empty(),
        "{} requests were cut after they reached the replica ({ok} answered, {refused} \
         refused): {:?}",
        dropped.len(),
        &dropped[..dropped.len().min(3)]
    );
}
