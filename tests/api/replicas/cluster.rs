//! Several real `jitbridge serve` processes (the built binary) on one database and one Redis,
//! behind a private nginx that balances round-robin without stickiness and logs which
//! upstream served each request.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary directory, removed with its value.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let d = std::env::temp_dir().join(format!("jb-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `jitbridge serve` process.
pub struct Replica {
    pub port: u16,
    /// The operator listener (`/readyz`, `/metrics`).
    pub operator_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Replica {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn operator(&self) -> String {
        format!("http://127.0.0.1:{}", self.operator_port)
    }

    /// Starts the process (its log goes to a file of its own, appended across restarts).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "replica {} already runs", self.port);
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_jitbridge"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_remove("JITBRIDGE_CONFIG")
            .env("JITBRIDGE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the jitbridge binary runs");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until `/readyz` answers 200; panics with the log if the process exits.
    pub async fn wait_ready(&mut self, within: Duration) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "replica {} exited with {status} while starting:\n{}",
                    self.port,
                    self.log()
                );
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.operator())).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "replica {} not ready within {within:?}:\n{}",
            self.port,
            self.log()
        );
    }

    /// SIGTERM: actix stops accepting and drains what it has.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on the id of a child we own and have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    }

    /// Waits (bounded) for the process to exit; returns its status.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} did not exit within {within:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process's exit status if it has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One line of nginx's access log: which upstream served which request.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The upstream that answered (the last one tried, after any retries).
    pub upstream: String,
    /// Every upstream tried, in order.
    pub tried: Vec<String>,
}

/// A private nginx: its own config, pid, logs and temp paths in `dir`, one process (so that
/// killing it leaves no orphaned worker), round-robin over the replicas, no stickiness.
pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    pub async fn start(dir: &Path, upstreams: &[String]) -> Self {
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("        server {u} max_fails=0;\n"))
            .collect();
        let conf = format!(
            r#"
worker_processes 1;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 512; }}
http {{
    log_format jb '$request_method $uri $status "$upstream_addr"';
    access_log {d}/access.log jb;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    upstream jitbridge {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://jitbridge;
            proxy_set_header Host $http_host;
            # A replica that refuses or resets the connection (stopping, starting) is skipped.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            proxy_read_timeout 20s;
        }}
    }}
}}
"#,
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/test installs nginx-light)");
        // Owned at once, so that its Drop stops nginx on every path below.
        let nginx = Self {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not listen: {}", nginx.error_log());
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn served(&self) -> Vec<Served> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(4, ' ');
                let (method, path, status) = (parts.next()?, parts.next()?, parts.next()?);
                let tried: Vec<String> = parts
                    .next()?
                    .trim_matches('"')
                    .split(", ")
                    .map(str::to_string)
                    .collect();
                Some(Served {
                    method: method.into(),
                    path: path.into(),
                    status: status.parse().ok()?,
                    upstream: tried.last()?.clone(),
                    tried,
                })
            })
            .collect()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three replicas on a fresh PostgreSQL database and the shared Redis, with one OIDC
/// connection to a fresh oidc-provider. Keep all three alive for the test.
pub async fn oidc_cluster() -> (crate::helpers::TestDb, Cluster, crate::helpers::Op) {
    use crate::helpers::{Op, TestDb, default_accounts, redis_url};
    let db = TestDb::postgres();
    let mut c = Cluster::new(3).await;
    let op = Op::start(&c.base, &default_accounts(), &serde_json::json!({}));
    let rest = oidc_connection(&op.issuer);
    c.start(&Setup {
        db: &db.url,
        redis: &redis_url(),
        rest: &rest,
    })
    .await;
    (db, c, op)
}

/// What the replicas share: the database, Redis and the `[[connection]]` tables.
pub struct Setup<'a> {
    pub db: &'a str,
    pub redis: &'a str,
    /// TOML appended after `[sessions]`: connections, extra tables.
    pub rest: &'a str,
}

/// `n` replicas behind nginx. Ports are chosen and nginx runs before the replicas start, so
/// that the IdPs can be told the public URL (nginx's) first.
pub struct Cluster {
    pub nginx: Nginx,
    pub replicas: Vec<Replica>,
    pub base: String,
    /// The Redis key prefix every replica (and the CLI) uses.
    pub prefix: String,
    _dir: TempDir,
}

impl Cluster {
    pub async fn new(n: usize) -> Self {
        let dir = TempDir::new("replicas");
        let replicas: Vec<Replica> = (0..n)
            .map(|i| Replica {
                port: free_port(),
                operator_port: free_port(),
                config: dir.0.join(format!("replica-{i}.toml")),
                log: dir.0.join(format!("replica-{i}.log")),
                child: None,
                starts: 0,
            })
            .collect();
        let upstreams: Vec<String> = replicas.iter().map(Replica::addr).collect();
        let nginx = Nginx::start(&dir.0, &upstreams).await;
        Self {
            base: nginx.base(),
            nginx,
            replicas,
            prefix: format!("jbrep:{}:", uuid::Uuid::new_v4().simple()),
            _dir: dir,
        }
    }

    /// Writes each replica's configuration and starts them all at once, then waits until
    /// every one is ready.
    pub async fn start(&mut self, s: &Setup<'_>) {
        self.configure(s);
        for r in &mut self.replicas {
            r.spawn();
        }
        for r in &mut self.replicas {
            r.wait_ready(Duration::from_secs(60)).await;
        }
    }

    pub fn configure(&self, s: &Setup<'_>) {
        let prefix = &self.prefix;
        for r in &self.replicas {
            let toml = format!(
                r#"
[server]
listen = "{listen}"
operator_listen = "127.0.0.1:{operator}"
public_url = "{public}"
workers = 2
state_key = "{state_key}"
[database]
url = "{db}"
pool_size = 4
[sessions]
store = "redis"
redis_url = "{redis}"
key_prefix = "{prefix}"
{rest}
"#,
                listen = r.addr(),
                operator = r.operator_port,
                public = self.base,
                db = s.db,
                redis = s.redis,
                rest = s.rest,
                // Shared by every replica: a login sealed by one is opened by another.
                state_key = crate::helpers::STATE_KEY,
            );
            std::fs::write(&r.config, toml).unwrap();
        }
    }

    /// The CLI with the first replica's configuration (the same database and Redis).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_jitbridge"))
            .arg("--config")
            .arg(&self.replicas[0].config)
            .args(args)
            .env_remove("JITBRIDGE_CONFIG")
            .output()
            .unwrap()
    }

    /// How many times each replica was started (restarts included).
    pub fn starts(&self) -> Vec<u32> {
        self.replicas.iter().map(|r| r.starts).collect()
    }
}

/// The `[[connection]]` for the npm oidc-provider at `issuer` (the helpers' client).
pub fn oidc_connection(issuer: &str) -> String {
    format!(
        r#"
[[connection]]
name = "{name}"
kind = "oidc"
issuer = "{issuer}"
client_id = "{id}"
client_secret = "{secret}"
scopes = ["openid", "email", "profile", "groups"]
{mapping}
"#,
        name = crate::helpers::CONNECTION,
        id = crate::helpers::CLIENT_ID,
        secret = crate::helpers::CLIENT_SECRET,
        mapping = crate::helpers::DEFAULT_MAPPING,
    )
}
