//! Scripted browsers for the SAML login benchmark: each runs a whole SP-initiated login
//! against the bridge and the test IdP (tests/harness/saml-idp): `/login` at the bridge
//! (signed AuthnRequest, HTTP-Redirect), the IdP's `login=` shortcut (the auto-post form),
//! and the POST of the form to the bridge's ACS URL, which must answer 303 with a session.
//! Usage: saml_login_driver BRIDGE_BASE CONNECTION USER_PREFIX COUNT CONCURRENCY
use std::time::Instant;

fn html_unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

struct Form {
    saml_response: regex::Regex,
    relay_state: regex::Regex,
}

impl Form {
    fn new() -> Self {
        let input = |name: &str| {
            regex::Regex::new(&format!(r#"(?s)name="{name}"\s+value="([^"]*)""#)).unwrap()
        };
        Self {
            saml_response: input("SAMLResponse"),
            relay_state: input("RelayState"),
        }
    }
}

async fn one_login(base: &str, connection: &str, user: &str, form: &Form) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = http
        .get(format!("{base}/login?connection={connection}"))
        .send()
        .await?;
    anyhow::ensure!(r.status() == 302, "/login answered {}", r.status());
    let to_idp = r
        .headers()
        .get("location")
        .ok_or_else(|| anyhow::anyhow!("/login: no location"))?
        .to_str()?
        .to_string();
    // Users have no password at the IdP, so any password is accepted.
    let r = http
        .get(format!("{to_idp}&login={user}&password=x"))
        .send()
        .await?;
    let status = r.status();
    let html = r.text().await?;
    anyhow::ensure!(status == 200, "IdP answered {status}: {html}");
    let saml_response = form
        .saml_response
        .captures(&html)
        .map(|c| html_unescape(&c[1]))
        .ok_or_else(|| anyhow::anyhow!("no SAMLResponse in the IdP's page: {html}"))?;
    let mut fields = vec![("SAMLResponse", saml_response)];
    if let Some(rs) = form
        .relay_state
        .captures(&html)
        .map(|c| html_unescape(&c[1]))
        && !rs.is_empty()
    {
        fields.push(("RelayState", rs));
    }
    let r = http
        .post(format!("{base}/saml/{connection}/acs"))
        .form(&fields)
        .send()
        .await?;
    let status = r.status();
    anyhow::ensure!(
        status == 303 && r.headers().contains_key("set-cookie"),
        "ACS answered {status}: {}",
        r.text().await.unwrap_or_default()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 5,
        "usage: saml_login_driver BASE CONNECTION USER_PREFIX COUNT CONCURRENCY"
    );
    let (count, conc): (usize, usize) = (a[3].parse()?, a[4].parse()?);
    let form = std::sync::Arc::new(Form::new());
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (a, next, form) = (a.clone(), next.clone(), form.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                one_login(&a[0], &a[1], &format!("{}{i}", a[2]), &form).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("{count} logins in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}
