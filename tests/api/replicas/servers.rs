//! Private Redis and PostgreSQL servers on free loopback ports, for the tests that stop one.
//! The shared servers (5432, 6379) are never stopped or reconfigured.

use super::cluster::{TempDir, free_port};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `redis-server`: no persistence, except that [`PrivateRedis::stop`] saves a
/// snapshot first, so that a restart brings back the same data (an operator's restart).
pub struct PrivateRedis {
    pub port: u16,
    dir: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start(extra: &[&str]) -> Self {
        let mut r = Self {
            port: free_port(),
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and directory; waits (bounded) for PONG.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none());
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..100 {
            if self.cli(&["PING"]).contains("PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private redis-server on {port} did not answer");
    }

    /// Stops the server process (SHUTDOWN SAVE) and waits (bounded) for it to exit.
    pub async fn stop(&mut self) {
        let _ = self.cli(&["SHUTDOWN", "SAVE"]);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not stop");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A private PostgreSQL cluster (initdb, trust auth, fsync off) in a temporary directory,
/// run by the `postgres` user when the tests run as root (PostgreSQL refuses root).
pub struct PrivatePostgres {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect("a PostgreSQL server is installed")
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let dir = TempDir::new("pg");
        let pg = Self {
            port: free_port(),
            dir,
            bin: pg_bin(),
        };
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&pg.dir.0)
                .status()
                .unwrap();
            assert!(ok.success(), "chown to postgres failed");
        }
        let data = pg.data();
        let mut initdb = pg.as_postgres(&pg.bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    fn as_postgres(&self, program: &std::path::Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.0.display()
        );
        let out = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.0.join("log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.0.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: open connections are cut) and waits for it.
    pub fn stop(&self) {
        let out = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "30", "-m", "fast", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop failed");
    }

    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// The `postgres` database of this private cluster.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "10", "-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
