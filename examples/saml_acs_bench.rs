//! In-process figures for the SAML ACS path, stage by stage, without HTTP or an IdP process:
//! responses shaped like the ones the samlp test IdP sends (Response and Assertion both
//! signed, RSA-SHA256, exclusive c14n, three attributes) are signed here with a fresh key, then
//! timed through `verify_response_with` (decode, preflight, signature checks, samael's parse
//! and checks, claims), the connection's mapping, the provisioning transaction and the session
//! store. Each stage's figure is the median of the per-login thread CPU time, so the database
//! server's own work is not counted (the bridge's is). Signing is not timed.
//!
//! Usage: saml_acs_bench DATABASE_URL [LOGINS] [encrypt]
//!   e.g. saml_acs_bench sqlite:///tmp/acs.db 300
//!        saml_acs_bench postgres://postgres@127.0.0.1:5432/jb_acs_bench 300 encrypt
//! The database must be empty or hold only earlier runs of this bench (it is migrated here).
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jitbridge::config::Config;
use jitbridge::idp::saml::{IdpView, verify_response_with};
use jitbridge::provisioning::{LoginKey, provision};
use jitbridge::session::{SessionRecord, SessionStore, Timeouts};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use samael::crypto::{Crypto, CryptoProvider};
use std::time::Duration;

const IDP: &str = "https://idp.example.com/metadata";
const SIG: &str = r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#@REF@"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue></ds:Signature>"##;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn keypair(cn: &str) -> (PKey<Private>, X509) {
    use openssl::{asn1::Asn1Time, bn::BigNum, hash::MessageDigest, rsa::Rsa, x509::X509Name};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
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

fn metadata(cert: &X509) -> String {
    let der = STANDARD.encode(cert.to_der().unwrap());
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn strip_decl(s: String) -> String {
    match s
        .strip_prefix("<?xml")
        .and_then(|r| r.find("?>").map(|i| r[i + 2..].to_string()))
    {
        Some(rest) => rest.trim_start().to_string(),
        None => s,
    }
}

/// The assertion (signed) of login `i`, as samlp builds it.
fn assertion(i: usize, acs: &str, sp: &str, request: &str, key: &[u8]) -> String {
    let now = chrono::Utc::now();
    let (t, later) = (at(now), at(now + chrono::Duration::minutes(5)));
    let id = format!("_a{}", jitbridge::idp::saml::new_message_id());
    let sig = SIG.replace("@REF@", &id);
    let admins = if i % 2 == 1 {
        "<saml:AttributeValue>admins</saml:AttributeValue>"
    } else {
        ""
    };
    let xml = format!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Version="2.0" ID="{id}" IssueInstant="{t}"><saml:Issuer>{IDP}</saml:Issuer>{sig}<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">u{i}@example.com</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{later}" Recipient="{acs}" InResponseTo="{request}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{t}" NotOnOrAfter="{later}"><saml:AudienceRestriction><saml:Audience>{sp}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AttributeStatement xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><saml:Attribute Name="email" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">u{i}@example.com</saml:AttributeValue></saml:Attribute><saml:Attribute Name="givenName" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">User</saml:AttributeValue></saml:Attribute><saml:Attribute Name="sn" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue xsi:type="xs:string">{i}</saml:AttributeValue></saml:Attribute><saml:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic"><saml:AttributeValue>staff</saml:AttributeValue>{admins}</saml:Attribute></saml:AttributeStatement><saml:AuthnStatement AuthnInstant="{t}" SessionIndex="_s{i}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement></saml:Assertion>"#
    );
    strip_decl(Crypto::sign_xml(xml.as_bytes(), key).expect("sign the assertion"))
}

/// AES-256-GCM content, RSA-OAEP (SHA-1 MGF1) key transport: the samlp harness defaults.
fn encrypt(assertion: &str, to: &X509) -> String {
    use openssl::symm::Cipher;
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    openssl::rand::rand_bytes(&mut key).unwrap();
    openssl::rand::rand_bytes(&mut iv).unwrap();
    let mut tag = [0u8; 16];
    let ct = openssl::symm::encrypt_aead(
        Cipher::aes_256_gcm(),
        &key,
        Some(&iv),
        &[],
        assertion.as_bytes(),
        &mut tag,
    )
    .unwrap();
    let data = [iv.as_slice(), &ct, &tag].concat();
    let rsa = to.public_key().unwrap().rsa().unwrap();
    let mut wrapped = vec![0; rsa.size() as usize];
    let n = rsa
        .public_encrypt(&key, &mut wrapped, openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    wrapped.truncate(n);
    let xenc = "http://www.w3.org/2001/04/xmlenc#";
    format!(
        r#"<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData xmlns:xenc="{xenc}" Type="{xenc}Element"><xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><e:EncryptedKey xmlns:e="{xenc}"><e:EncryptionMethod Algorithm="{xenc}rsa-oaep-mgf1p"><DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></e:EncryptionMethod><e:CipherData><e:CipherValue>{}</e:CipherValue></e:CipherData></e:EncryptedKey></KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>"#,
        STANDARD.encode(&wrapped),
        STANDARD.encode(&data)
    )
}

/// The whole signed Response of login `i`, base64 as POSTed.
fn response(
    i: usize,
    cfg: &jitbridge::config::SamlConfig,
    request: &str,
    idp_key: &[u8],
    enc: Option<&X509>,
) -> String {
    let (acs, sp) = (cfg.acs_url.as_str(), cfg.entity_id.as_str());
    let a = assertion(i, acs, sp, request, idp_key);
    let a = match enc {
        Some(cert) => encrypt(&a, cert),
        None => a,
    };
    let id = format!("_r{}", jitbridge::idp::saml::new_message_id());
    let t = at(chrono::Utc::now());
    let sig = SIG.replace("@REF@", &id);
    let xml = format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="{id}" InResponseTo="{request}" Version="2.0" IssueInstant="{t}" Destination="{acs}"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">{IDP}</saml:Issuer>{sig}<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{a}</samlp:Response>"#
    );
    STANDARD.encode(strip_decl(
        Crypto::sign_xml(xml.as_bytes(), idp_key).expect("sign the response"),
    ))
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: saml_acs_bench DATABASE_URL [LOGINS] [encrypt]"))?;
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(300);
    let encrypted = args.get(3).is_some_and(|s| s == "encrypt");

    let (idp_key, idp_cert) = keypair("idp");
    let (sp_key, sp_cert) = keypair("sp");
    let dir = tempfile_dir();
    let md_path = format!("{dir}/idp.xml");
    std::fs::write(&md_path, metadata(&idp_cert))?;
    let pem = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let toml = format!(
        r#"[server]
public_url = "https://sp.example.com"
[database]
url = "{url}"
[[connection]]
name = "bench"
kind = "saml"
[connection.saml]
idp_metadata_file = "{md_path}"
sp_private_key = '''{}'''
sp_certificate = '''{}'''
[connection.mapping]
username = "{{name_id}}"
email = "{{email}}"
display_name = "{{givenName}} {{sn}}"
[[connection.mapping.roles]]
role = "admin"
claim = "groups"
equals = "admins"
[[connection.mapping.roles]]
role = "staff"
claim = "groups"
equals = "staff"
"#,
        pem(sp_key.private_key_to_pem_pkcs8()?),
        pem(sp_cert.to_pem()?)
    );
    let config = Config::from_toml_and_env("bench", &toml, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn = &config.connections[0];
    let cfg = conn.saml().expect("a SAML connection");
    let idp = IdpView::parse(&std::fs::read_to_string(&md_path)?, cfg, Some(&sp_key))?;
    let db = jitbridge::db::Db::connect(&config.database.url, 2)?;
    db.migrate()?;
    let mut dbc = db.get()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sessions = SessionStore::memory(Timeouts {
        idle: Duration::from_secs(3600),
        absolute: Duration::from_secs(8 * 3600),
    });
    let idp_der = idp_key.private_key_to_der()?;
    let run_tag = jitbridge::idp::saml::new_message_id();

    println!(
        "SAML ACS in-process, {n} logins per phase, {} assertion, backend {}; medians of thread CPU ms per login",
        if encrypted {
            "signed+encrypted"
        } else {
            "signed"
        },
        format!("{:?}", db.backend()).to_lowercase()
    );
    println!(
        "{:22} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "phase", "verify", "mapping", "provision", "session", "total"
    );
    for phase in ["first login (create)", "repeat login (update)"] {
        let mut stages: [Vec<Duration>; 5] = Default::default();
        for i in 0..n {
            let request = format!("_req{i}");
            let posted = response(i, cfg, &request, &idp_der, encrypted.then_some(&sp_cert));
            let t0 = thread_cpu();
            let verified = verify_response_with(cfg, &idp, Some(&sp_key), &posted, Some(&request))
                .map_err(|e| anyhow::anyhow!("login {i} refused: {e}"))?;
            let t1 = thread_cpu();
            let profile = conn
                .mapping
                .apply(&verified.claims)
                .map_err(|e| anyhow::anyhow!("login {i}: mapping refused: {e:?}"))?;
            let t2 = thread_cpu();
            let subject = format!("{run_tag}-{}", verified.subject);
            let p = provision(
                &mut dbc,
                LoginKey {
                    connection: "bench",
                    subject: &subject,
                    request_id: Some("bench"),
                },
                &profile,
                &Default::default(),
            )?;
            let t3 = thread_cpu();
            let principal = verified
                .name_id
                .as_ref()
                .map(jitbridge::idp::saml::slo::principal);
            rt.block_on(sessions.create(SessionRecord {
                account: p.account,
                connection: "bench".into(),
                subject,
                idp_session: verified.session_index,
                idp_principal: principal.as_ref().map(|p| p.key.clone()),
                idp_logout_ref: principal.map(|p| p.logout_ref),
                created_at: 0,
                expires_at: i64::MAX,
            }))?;
            let t4 = thread_cpu();
            for (k, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]
                .into_iter()
                .enumerate()
            {
                stages[k].push(d);
            }
        }
        let m: Vec<f64> = stages.iter_mut().map(|v| median(v)).collect();
        println!(
            "{phase:22} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            m[0], m[1], m[2], m[3], m[4]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> String {
    let d = std::env::temp_dir().join(format!("jb-acs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.display().to_string()
}
