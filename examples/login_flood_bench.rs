//! What a stranger's flood leaves behind: a real `jitbridge serve` (Redis sessions, SQLite,
//! one OIDC and one SAML connection) takes N anonymous `GET /login` (half per connection)
//! and N junk `POST /saml/{c}/acs`, each from its own client address (X-Forwarded-For from a
//! trusted loopback proxy, addresses of 198.18.0.0/15, the benchmarking range; the traffic
//! itself only goes to loopback), then a short burst from one address to show the 429s.
//! Printed before and after: the bridge's RSS (/proc/PID/status), Redis `used_memory` and the
//! keys under the bridge's prefix, and the audit rows. Not a timed test.
//!
//! Usage: login_flood_bench [N] [CONCURRENCY]   (defaults 100000, 32)
//!   JB_BENCH_BIN   the jitbridge binary (default: ../jitbridge next to this example)
//!   JB_BENCH_REDIS Redis URL (default redis://127.0.0.1:6379)
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn keypair() -> (
    openssl::pkey::PKey<openssl::pkey::Private>,
    openssl::x509::X509,
) {
    use openssl::{asn1::Asn1Time, bn::BigNum, hash::MessageDigest, rsa::Rsa, x509::X509Name};
    let key = openssl::pkey::PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("CN", "bench-idp").unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}

const IDP: &str = "https://idp.example.com/metadata";

fn saml_metadata(cert: &openssl::x509::X509) -> String {
    let der = STANDARD.encode(cert.to_der().unwrap());
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

/// Just enough of an OpenID provider for `/login` to redirect to it: discovery and a JWKS.
async fn discovery_server(key: &openssl::pkey::PKey<openssl::pkey::Private>) -> String {
    let rsa = key.rsa().unwrap();
    let jwks = serde_json::json!({ "keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
        "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
        "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
    }]});
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let doc = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
    });
    let server = actix_web::HttpServer::new(move || {
        let (doc, jwks) = (doc.clone(), jwks.clone());
        actix_web::App::new()
            .route(
                "/.well-known/openid-configuration",
                actix_web::web::get().to(move || {
                    std::future::ready(actix_web::HttpResponse::Ok().json(doc.clone()))
                }),
            )
            .route(
                "/jwks",
                actix_web::web::get().to(move || {
                    std::future::ready(actix_web::HttpResponse::Ok().json(jwks.clone()))
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    issuer
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn audit_rows(db: &str) -> i64 {
    let mut c = diesel::SqliteConnection::establish(db).unwrap();
    diesel::sql_query("SELECT COUNT(*) AS n FROM audit_events")
        .get_result::<Count>(&mut c)
        .map(|c| c.n)
        .unwrap_or(-1)
}

async fn redis_figures(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(redis)
        .await
        .unwrap();
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut cursor = 0u64;
    let mut keys = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .unwrap();
        keys += batch.len() as u64;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    (used, keys)
}

struct Figures {
    rss_kib: u64,
    redis_used: u64,
    redis_keys: u64,
    audit_rows: i64,
}

async fn figures(
    pid: u32,
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    db: &str,
) -> Figures {
    let (redis_used, redis_keys) = redis_figures(redis, prefix).await;
    Figures {
        rss_kib: rss_kib(pid),
        redis_used,
        redis_keys,
        audit_rows: audit_rows(db),
    }
}

fn print(label: &str, f: &Figures) {
    println!(
        "{label:<28} bridge RSS {:>8} KiB   redis used_memory {:>10} B   redis keys (prefix) {:>6}   audit rows {:>5}",
        f.rss_kib, f.redis_used, f.redis_keys, f.audit_rows
    );
}

/// Sends `n` requests, `concurrency` at a time; request `i` comes from 198.18.0.0 + `i`
/// (or from `single` when given). Returns the status counts and the rate.
async fn flood(
    http: &reqwest::Client,
    n: usize,
    concurrency: usize,
    single: Option<&str>,
    make: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> (BTreeMap<u16, usize>, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, make) = (http.clone(), next.clone(), make.clone());
        let single = single.map(str::to_string);
        tasks.push(tokio::spawn(async move {
            let mut counts = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break counts;
                }
                let addr = single.clone().unwrap_or_else(|| {
                    let a = 0xC612_0000u32 + i as u32; // 198.18.0.0/15
                    std::net::Ipv4Addr::from(a).to_string()
                });
                let status = match make(&http, i).header("x-forwarded-for", addr).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                *counts.entry(status).or_insert(0) += 1;
            }
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *all.entry(k).or_insert(0) += v;
        }
    }
    (all, n as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let concurrency: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let bin = std::env::var("JB_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|_| {
            let me = std::env::current_exe().unwrap();
            me.parent().unwrap().parent().unwrap().join("jitbridge")
        });
    let redis_url =
        std::env::var("JB_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let dir = std::env::temp_dir().join(format!("jb-flood-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let (key, cert) = keypair();
    let md = dir.join("idp.xml");
    std::fs::write(&md, saml_metadata(&cert))?;
    let issuer = discovery_server(&key).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let prefix = format!("jbflood:{}:", uuid::Uuid::new_v4().simple());
    let db_path = dir.join("bridge.db");
    let mut state_key = [0u8; 32];
    openssl::rand::rand_bytes(&mut state_key)?;
    let state_key: String = state_key.iter().map(|b| format!("{b:02x}")).collect();
    let config = dir.join("jitbridge.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
operator_listen = "127.0.0.1:0"
public_url = "{base}"
workers = 2
state_key = "{state_key}"
# The bench is the proxy: each request names its own client.
trusted_proxies = ["127.0.0.1"]
[database]
url = "sqlite://{db}"
[sessions]
store = "redis"
redis_url = "{redis_url}"
key_prefix = "{prefix}"
[[connection]]
name = "corp"
kind = "oidc"
issuer = "{issuer}"
client_id = "bench"
client_secret = "bench-secret-0123456789"
[[connection]]
name = "saml"
kind = "saml"
[connection.saml]
idp_metadata_file = "{md}"
"#,
            db = db_path.display(),
            md = md.display(),
        ),
    )?;
    let mut child = Command::new(&bin)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("JITBRIDGE_LOG", "error")
        .env_remove("JITBRIDGE_CONFIG")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {} (JB_BENCH_BIN): {e}", bin.display()))?;
    let pid = child.id();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let t0 = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "the bridge did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut redis = redis::Client::open(redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let db = db_path.display().to_string();
    let before = figures(pid, &mut redis, &prefix, &db).await;
    println!(
        "login flood: {n} anonymous GET /login and {n} junk ACS POSTs, {concurrency} at a time, against jitbridge serve (pid {pid}, Redis sessions)"
    );
    print("before", &before);

    let b = base.clone();
    let (counts, rate) = flood(&http, n, concurrency, None, move |h, i| {
        let c = if i % 2 == 0 { "corp" } else { "saml" };
        h.get(format!("{b}/login?connection={c}&rd=/app/{i}"))
    })
    .await;
    println!("GET /login, distinct addresses:   {counts:?} at {rate:.0} req/s");
    print(
        "after GET /login",
        &figures(pid, &mut redis, &prefix, &db).await,
    );

    let junk = format!(
        "SAMLResponse={}&RelayState=junk",
        url::form_urlencoded::byte_serialize(
            STANDARD
                .encode(r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" Version="2.0"/>"#)
                .as_bytes()
        )
        .collect::<String>()
    );
    let b = base.clone();
    let (counts, rate) = flood(&http, n, concurrency, None, move |h, _| {
        h.post(format!("{b}/saml/saml/acs"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(junk.clone())
    })
    .await;
    println!("POST junk ACS, distinct addresses: {counts:?} at {rate:.0} req/s");
    print(
        "after junk ACS",
        &figures(pid, &mut redis, &prefix, &db).await,
    );

    let b = base.clone();
    let (counts, _) = flood(
        &http,
        2_000,
        concurrency,
        Some("203.0.113.7"),
        move |h, _| h.get(format!("{b}/login?connection=corp")),
    )
    .await;
    println!("GET /login, one address:           {counts:?}");

    // The aggregated refusals of a minute are written once it is over (flushed every 10 s).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let wait = 60 - now % 60 + 12;
    println!("waiting {wait} s for the minute's aggregated audit rows");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    print(
        "after (aggregates flushed)",
        &figures(pid, &mut redis, &prefix, &db).await,
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
