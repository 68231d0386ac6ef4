//! Scripted browsers for the login benchmark: each runs the whole authorization code flow
//! against the bridge and the test IdP (tests/harness/oidc-provider).
//! Usage: login_driver BRIDGE_BASE OP_ISSUER CONNECTION USER_PREFIX COUNT CONCURRENCY
use std::time::Instant;

async fn one_login(base: &str, issuer: &str, connection: &str, user: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let loc = |r: &reqwest::Response| -> anyhow::Result<String> {
        let l = r
            .headers()
            .get("location")
            .ok_or_else(|| anyhow::anyhow!("no location ({})", r.status()))?;
        let l = l.to_str()?.to_string();
        Ok(if l.starts_with("http") {
            l
        } else {
            format!("{issuer}{l}")
        })
    };
    let r = http
        .get(format!("{base}/login?connection={connection}"))
        .send()
        .await?;
    let r = http.get(loc(&r)?).send().await?;
    let interaction = loc(&r)?;
    let r = http
        .post(format!("{interaction}/login"))
        .form(&[("login", user)])
        .send()
        .await?;
    let r = http.get(loc(&r)?).send().await?;
    let r = http.get(loc(&r)?).send().await?;
    anyhow::ensure!(r.status() == 302, "callback answered {}", r.status());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 6,
        "usage: login_driver BASE ISSUER CONNECTION USER_PREFIX COUNT CONCURRENCY"
    );
    let (count, conc): (usize, usize) = (a[4].parse()?, a[5].parse()?);
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (a, next) = (a.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                one_login(&a[0], &a[1], &a[2], &format!("{}{i}", a[3])).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("{count} logins in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}
