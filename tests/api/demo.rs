//! `jitbridge demo`, clicked through as a person would (scripted): the sample page sends you to
//! log in, you pick a seeded user at the development provider, you land back on the page.

use crate::helpers::{Browser, absolute, location};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Demo(std::process::Child, std::path::PathBuf);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", self.1.display()));
        }
    }
}

fn start_demo() -> (Demo, String) {
    let db = std::env::temp_dir().join(format!("jb-demo-{}.db", uuid::Uuid::new_v4().simple()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_jitbridge"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--provider-port",
            "0",
            "--database",
        ])
        .arg(&db)
        .env_remove("JITBRIDGE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let url = loop {
        let line = lines.next().expect("the demo prints where to go").unwrap();
        banner.push_str(&line);
        if let Some(rest) = line.strip_prefix("Open ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(banner.contains("FOR DEVELOPMENT ONLY"), "{banner}");
    // Keep reading: closing the pipe would make the demo's next println fail.
    std::thread::spawn(move || lines.for_each(drop));
    (Demo(child, db), url)
}

async fn pick_user(b: &Browser, app_url: &str, user: &str) -> reqwest::Response {
    let base = app_url.trim_end_matches("/demo/app");
    let r = b.get(app_url).await;
    assert_eq!(location(&r), "/login?rd=/demo/app");
    let r = b.get(&absolute(base, &location(&r))).await;
    let authorize = location(&r);
    let page = b.get(&authorize).await.text().await.unwrap();
    assert!(page.contains("Development only"));
    let request = page
        .split("name=\"request\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let provider = authorize.split("/authorize").next().unwrap();
    let r = b
        .http
        .post(format!("{provider}/authorize"))
        .form(&[("request", request.as_str()), ("user", user)])
        .send()
        .await
        .unwrap();
    b.get(&location(&r)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_logs_a_seeded_user_into_the_sample_app() {
    let (_demo, url) = start_demo();
    let b = Browser::new();
    let r = pick_user(&b, &url, "alice").await;
    assert_eq!(location(&r), "/demo/app");
    let page = b.get(&url).await.text().await.unwrap();
    assert!(page.contains("<dd>alice@example.com</dd>"), "{page}");
    assert!(page.contains("<dd>admin,staff</dd>"), "{page}");
    // The demo signs assertions with a key made at start, published at the JWKS endpoint.
    assert!(
        page.contains("<code>X-Jitbridge-Assertion</code></dt><dd>eyJ"),
        "{page}"
    );
    let base = url.trim_end_matches("/demo/app");
    let jwks: serde_json::Value = b
        .get(&format!("{base}/.well-known/jwks.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "demo-ephemeral", "{jwks}");

    let mallory = Browser::new();
    let r = pick_user(&mallory, &url, "mallory").await;
    assert_eq!(r.status(), 403, "the demo mapping only allows example.com");
}
