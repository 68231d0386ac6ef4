//! SAML 2.0 against a real third-party IdP: Auth0's npm `samlp` (tests/harness/saml-idp),
//! started on loopback for each test, with keys generated per test.

mod attacks;
mod decoys;
mod login;
mod logout;
mod metadata;
mod resigned;

use crate::helpers::{Browser, TestDb, init_tracing, sessions_toml};
use jitbridge::config::Config;
use jitbridge::web::{AppState, Application, Listeners};
use openssl::pkey::PKey;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const CONNECTION: &str = "corp";

pub const MAPPING: &str = r#"
[connection.mapping]
username = "{name_id}"
email = "{email}"
display_name = "{givenName} {sn}"
[connection.mapping.attributes]
department = "department"
[[connection.mapping.roles]]
role = "admin"
claim = "groups"
equals = "admins"
[[connection.mapping.roles]]
role = "staff"
claim = "groups"
equals = "staff"
"#;

/// A key pair and a self-signed certificate, written as PEM files.
pub struct KeyPair {
    pub key_path: PathBuf,
    pub cert_path: PathBuf,
}

impl KeyPair {
    pub fn generate(dir: &Path, name: &str) -> Self {
        use openssl::x509::{X509Builder, X509NameBuilder};
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", name).unwrap();
        let n = n.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&key).unwrap();
        let serial = openssl::bn::BigNum::from_u32(1)
            .unwrap()
            .to_asn1_integer()
            .unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = b.build();
        let key_path = dir.join(format!("{name}.key"));
        let cert_path = dir.join(format!("{name}.crt"));
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
        Self {
            key_path,
            cert_path,
        }
    }
}

/// The samlp test IdP, as a child process.
pub struct Idp {
    child: Child,
    pub base: String,
    pub entity_id: String,
    http: reqwest::Client,
}

pub struct IdpOptions<'a> {
    pub signing: &'a KeyPair,
    pub entity_id: Option<&'a str>,
    pub encrypt_to: Option<&'a Path>,
    pub sp_cert: Option<&'a Path>,
}

impl Idp {
    pub fn start(bridge_base: &str, o: IdpOptions<'_>) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/saml-idp");
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .arg("0")
            .current_dir(&dir)
            .env("SAML_IDP_KEY", &o.signing.key_path)
            .env("SAML_IDP_CERT", &o.signing.cert_path)
            .env(
                "SAML_SP_ENTITY_ID",
                format!("{bridge_base}/saml/{CONNECTION}/metadata"),
            )
            .env(
                "SAML_SP_ACS_URL",
                format!("{bridge_base}/saml/{CONNECTION}/acs"),
            )
            .env(
                "SAML_SP_SLO_URL",
                format!("{bridge_base}/saml/{CONNECTION}/slo"),
            )
            .env("SAML_IDP_USERS", users().to_string())
            // Persistent NameIDs, as the bridge requires of an account key by default.
            .env(
                "SAML_IDP_NAMEID_FORMAT",
                "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(e) = o.entity_id {
            cmd.env("SAML_IDP_ENTITY_ID", e);
        }
        if let Some(c) = o.encrypt_to {
            cmd.env("SAML_SP_ENCRYPTION_CERT", c);
        }
        if let Some(c) = o.sp_cert {
            cmd.env("SAML_SP_CERT", c);
        }
        let mut child = cmd
            .spawn()
            .expect("node runs tests/harness/saml-idp/server.mjs (run setup.sh there)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the IdP prints its ready line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the IdP did not start: {line:?}"));
        Self {
            child,
            base: ready["base_url"].as_str().unwrap().to_string(),
            entity_id: ready["entity_id"].as_str().unwrap().to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn configure(&self, body: Value) {
        let r = self
            .http
            .put(format!("{}/__admin/config", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "IdP refused {body}: {}",
            r.text().await.unwrap()
        );
    }

    pub async fn set_user(&self, login: &str, user: Value) {
        let r = self
            .http
            .put(format!("{}/__admin/users/{login}", self.base))
            .json(&user)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn users() -> Value {
    json!({
        "alice": {
            "nameId": "alice@example.com", "password": "alice-pw",
            "attributes": {
                "email": "alice@example.com", "givenName": "Alice", "sn": "Liddell",
                "department": "R&D", "mobile": "+1 555 0100", "groups": ["staff", "admins"]
            }
        },
        "bob": {
            "nameId": "bob@example.com", "password": "bob-pw",
            "attributes": {
                "email": "bob@example.com", "givenName": "Bob", "sn": "Builder",
                "groups": ["staff"]
            }
        }
    })
}

pub struct SamlApp {
    pub base: String,
    pub state: actix_web::web::Data<AppState>,
    pub idp: Idp,
    pub sp: KeyPair,
    pub dir: PathBuf,
    _db: TestDb,
}

/// Rewrites the IdP's metadata before the bridge reads it.
pub type MetadataEdit = Box<dyn Fn(&str) -> String>;

#[derive(Default)]
pub struct SamlOptions {
    /// Extra lines for `[connection.saml]`.
    pub saml_extra: &'static str,
    /// The IdP encrypts assertions to the SP's certificate.
    pub encrypt: bool,
    /// Use a metadata file: the IdP's metadata passed through this function.
    pub metadata_file: Option<MetadataEdit>,
}

pub async fn spawn(opts: SamlOptions) -> SamlApp {
    try_spawn(opts).await.unwrap_or_else(|e| panic!("{e:#}"))
}

pub async fn try_spawn(opts: SamlOptions) -> anyhow::Result<SamlApp> {
    init_tracing();
    let dir = std::env::temp_dir().join(format!("jbsaml-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let idp_keys = KeyPair::generate(&dir, "idp");
    let sp = KeyPair::generate(&dir, "sp");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let idp = Idp::start(
        &base,
        IdpOptions {
            signing: &idp_keys,
            entity_id: None,
            encrypt_to: opts.encrypt.then_some(sp.cert_path.as_path()),
            sp_cert: Some(&sp.cert_path),
        },
    );
    let metadata = match &opts.metadata_file {
        Some(f) => {
            let xml = reqwest::get(format!("{}/metadata", idp.base))
                .await?
                .text()
                .await?;
            let path = dir.join("idp-metadata.xml");
            std::fs::write(&path, f(&xml))?;
            format!("idp_metadata_file = \"{}\"", path.display())
        }
        None => format!("idp_metadata_url = \"{}/metadata\"", idp.base),
    };
    let db = TestDb::new();
    let toml = format!(
        r#"
[server]
public_url = "{base}"
workers = 2
state_key = "{state_key}"
[database]
url = "{db}"
pool_size = 8
[sessions]
{sessions}
[[connection]]
name = "{CONNECTION}"
kind = "saml"
display_name = "Corp SAML"
clock_skew = "2s"
[connection.saml]
{metadata}
sp_private_key = {{ file = "{key}" }}
sp_certificate = {{ file = "{cert}" }}
{extra}
{MAPPING}
"#,
        db = db.url,
        sessions = sessions_toml(),
        state_key = crate::helpers::STATE_KEY,
        key = sp.key_path.display(),
        cert = sp.cert_path.display(),
        extra = opts.saml_extra,
    );
    let config = Config::from_toml_and_env("test", &toml, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let app = Application::build(
        config,
        Listeners {
            public: Some(listener),
            operator: Some(TcpListener::bind("127.0.0.1:0").unwrap()),
        },
        None,
    )
    .await?;
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    Ok(SamlApp {
        base,
        state,
        idp,
        sp,
        dir,
        _db: db,
    })
}

impl Drop for SamlApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The IdP's auto-post form, as a browser would submit it.
#[derive(Debug, Clone)]
pub struct PostedResponse {
    pub saml_response: String,
    pub relay_state: Option<String>,
}

fn html_unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn hidden_input(html: &str, name: &str) -> Option<String> {
    let re = regex::Regex::new(&format!(r#"(?s)name="{name}"\s+value="([^"]*)""#)).unwrap();
    re.captures(html).map(|c| html_unescape(&c[1]))
}

/// An IdP-initiated (unsolicited) response from the IdP at `idp_base` for `user`.
pub async fn unsolicited(browser: &Browser, idp_base: &str, user: &str) -> PostedResponse {
    let html = browser
        .get(&format!(
            "{idp_base}/saml/sso/init?login={user}&password={user}-pw"
        ))
        .await
        .text()
        .await
        .unwrap();
    parse_auto_post(&html)
}

pub fn parse_auto_post(html: &str) -> PostedResponse {
    PostedResponse {
        saml_response: hidden_input(html, "SAMLResponse")
            .unwrap_or_else(|| panic!("no SAMLResponse in the IdP's page: {html}")),
        relay_state: hidden_input(html, "RelayState").filter(|r| !r.is_empty()),
    }
}

impl PostedResponse {
    pub fn xml(&self) -> String {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&self.saml_response)
                .unwrap(),
        )
        .unwrap()
    }

    pub fn with_xml(&self, xml: &str) -> Self {
        use base64::Engine;
        Self {
            saml_response: base64::engine::general_purpose::STANDARD.encode(xml),
            relay_state: self.relay_state.clone(),
        }
    }
}

impl SamlApp {
    pub fn acs(&self) -> String {
        format!("{}/saml/{CONNECTION}/acs", self.base)
    }

    /// `/login` at the bridge, then the IdP (user chosen with `login=`), up to the auto-post
    /// form, which is returned instead of submitted.
    pub async fn login_until_post(
        &self,
        browser: &Browser,
        user: &str,
        rd: &str,
    ) -> PostedResponse {
        let r = browser
            .get(&format!(
                "{}/login?connection={CONNECTION}&rd={}",
                self.base,
                crate::helpers::urlencode(rd)
            ))
            .await;
        assert_eq!(r.status(), 302, "login start: {}", r.text().await.unwrap());
        let to_idp = crate::helpers::location(&r);
        assert!(to_idp.starts_with(&self.idp.base), "{to_idp}");
        let r = browser
            .get(&format!("{to_idp}&login={user}&password={user}-pw"))
            .await;
        let status = r.status();
        let html = r.text().await.unwrap();
        assert_eq!(status, 200, "IdP answered: {html}");
        parse_auto_post(&html)
    }

    pub async fn post(&self, browser: &Browser, p: &PostedResponse) -> reqwest::Response {
        let mut form = vec![("SAMLResponse", p.saml_response.clone())];
        if let Some(r) = &p.relay_state {
            form.push(("RelayState", r.clone()));
        }
        browser
            .http
            .post(self.acs())
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, browser: &Browser, user: &str) -> reqwest::Response {
        let p = self.login_until_post(browser, user, "/welcome").await;
        self.post(browser, &p).await
    }

    pub async fn verify(&self, browser: &Browser) -> reqwest::Response {
        browser.get(&format!("{}/auth/verify", self.base)).await
    }

    pub async fn account_count(&self) -> i64 {
        crate::helpers::account_count(&self.state).await
    }

    pub async fn failure_reasons(&self) -> Vec<String> {
        crate::helpers::failure_reasons(&self.state).await
    }

    pub async fn audit_events(&self) -> Vec<jitbridge::db::models::AuditEvent> {
        crate::helpers::audit_events(&self.state).await
    }
}
