//! Sweeper benchmark: N local accounts (created with one SQL statement) reconciled against a
//! directory listing, reporting wall time and the process's peak memory.
//! Usage: sweep_bench N memory
//!        sweep_bench N ldap ldap://127.0.0.1:PORT   (slapd loaded with uid=user000000.. entries)
//! The in-memory listing is generated page by page (nothing stored), so the figure is the
//! sweeper's own cost. One listed subject in 200 is missing, so the plan is not empty.
use jitbridge::config::Config;
use jitbridge::db::Db;
use jitbridge::directory::{Directory, DirectoryEntry, DirectoryError, DirectorySource, Page};
use jitbridge::sweeper::{self, SweepOptions};
use std::time::Instant;

struct Generated {
    next: usize,
    n: usize,
}

impl DirectorySource for Generated {
    async fn next_page(&mut self) -> Result<Option<Page>, DirectoryError> {
        if self.next >= self.n {
            return Ok(None);
        }
        let end = (self.next + 1000).min(self.n);
        let page = (self.next..end)
            .filter(|i| i % 200 != 7)
            .map(|i| DirectoryEntry {
                subject: format!("user{i:06}"),
                active: true,
            })
            .collect::<Vec<_>>();
        self.next = end;
        Ok(Some(page.into()))
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mode = args.get(1).map(String::as_str).unwrap_or("memory");
    let ldap_url = args.get(2).cloned().unwrap_or_default();
    let db_path = std::env::temp_dir().join(format!("jb-sweep-bench-{}.db", std::process::id()));
    let toml = format!(
        r#"[database]
url = "sqlite://{db}"
[[connection]]
name = "bench"
kind = "oidc"
issuer = "http://127.0.0.1:1"
client_id = "bench"
[connection.directory]
kind = "ldap"
url = "{url}"
bind_dn = "cn=sweeper,ou=services,dc=example,dc=org"
bind_password = "sweeper-secret"
base_dn = "ou=people,dc=example,dc=org"
filter = "(objectClass=inetOrgPerson)"
subject_attribute = "uid"
page_size = 1000
timeout = "60s"
"#,
        db = db_path.display(),
        url = if ldap_url.is_empty() {
            "ldap://127.0.0.1:1"
        } else {
            &ldap_url
        },
    );
    let config = Config::from_toml_and_env("bench", &toml, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = Db::connect(&config.database.url, 2)?;
    db.migrate()?;
    let t = Instant::now();
    {
        use diesel::RunQueryDsl;
        let mut c = db.get()?;
        let seq = format!(
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {})",
            n - 1
        );
        diesel::sql_query(format!(
            "{seq} INSERT INTO accounts (id, username, email, attributes, status, created_at, updated_at) \
             SELECT 'acc-' || i, 'user' || printf('%06d', i), 'user' || i || '@example.org', '{{}}', 'active', \
             datetime('now'), datetime('now') FROM seq"
        ))
        .execute(&mut *c)?;
        diesel::sql_query(format!(
            "{seq} INSERT INTO identities (connection, subject, account_id, created_at, missing_count) \
             SELECT 'bench', 'user' || printf('%06d', i), 'acc-' || i, datetime('now'), 0 FROM seq"
        ))
        .execute(&mut *c)?;
    }
    eprintln!(
        "created {n} local accounts in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let before = peak_rss_mib();
    let conn = config.connections[0].clone();
    let t = Instant::now();
    let report = match mode {
        "ldap" => {
            sweeper::sweep_once(
                &db,
                None,
                &conn,
                Directory::open(conn.directory.as_ref().unwrap())?,
                SweepOptions::default(),
            )
            .await?
        }
        _ => {
            sweeper::sweep_once(
                &db,
                None,
                &conn,
                Generated { next: 0, n },
                SweepOptions::default(),
            )
            .await?
        }
    };
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{mode}: {n} local accounts, {} listed, outcome {:?}, marked missing {}, disabled {}, wall {wall:.2}s, peak RSS {:.0} MiB (before the sweep {before:.0} MiB)",
        report.stats.seen,
        report.outcome,
        report.stats.missing,
        report.stats.disabled,
        peak_rss_mib()
    );
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", db_path.display()));
    }
    Ok(())
}
