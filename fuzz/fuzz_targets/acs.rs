//! Fuzzes the SAML input paths of jitbridge: the ACS (`verify_response_with`), the preflight
//! scan, HTTP-Redirect decoding, logout messages, redirect query strings and IdP metadata.
//!
//! Input layout: `data[0]` selects the mode, `data[1]` carries flags, the rest is the body.
//! An input that starts with `<` is a whole SAML Response XML in mode `X` with flags 0, so
//! plain XML files work as seeds. Modes (other bytes map onto them by `data[0] % 10`):
//!
//! - `X` raw XML, base64-encoded here and posted to the ACS
//! - `B` raw base64 text (the form value as POSTed) to the ACS
//! - `S` XML template: placeholders filled, `ds:Signature` templates signed with the test IdP
//!   key (assertion first, then response), then posted to the ACS, so that fuzzed content gets
//!   past the signature check
//! - `E` like `S`, but the `saml:Assertion` is signed (if it has a template), then encrypted to
//!   the SP certificate, then the response is signed (if it has a template)
//! - `P` `preflight::scan` with root Response / LogoutRequest / LogoutResponse
//! - `D` `preflight::decode_redirect`, then `logout::parse` of what it decoded
//! - `L` `logout::parse` with root LogoutRequest / LogoutResponse
//! - `R` `RedirectMessage::parse` of a query string, then verify, decode and parse, as the
//!   SLO endpoint does
//! - `Q` a logout XML sent through `redirect::encode` signed with the IdP key, then as `R`
//! - `M` `IdpView::parse` of IdP metadata
//!
//! Flags (`data[1]`): bits 0-1 required_signature (either, response, assertion, both); bit 2
//! unsolicited (expected_request None instead of `_req1`); bit 3 no SP key; bits 4-5 content
//! cipher for `E` (aes128-cbc, aes256-cbc, aes128-gcm, aes256-gcm); bit 6 key transport for
//! `E` (rsa-oaep-mgf1p/SHA-1, xmlenc11 rsa-oaep/SHA-256); bit 7 subject_attribute = "uid".
//!
//! Placeholders in `S`/`E`/`Q` bodies: `@NOW@`, `@LATER@` (now + 10 min), `@PAST@` (now - 1 h),
//! `@ACS@`, `@SP@` (our entityID), `@IDP@` (the IdP entityID), `@SLO@` (our SLO URL). In
//! `S`/`E` bodies, `<!--enc-->XML<!--/enc-->` is replaced by an `xenc:EncryptedData` of XML to
//! the SP certificate (before any signing), for encrypted decoys inside any wrapper element.
//!
//! Oracle: every response the ACS accepts, whatever the mode (`X`, `B`, `S`, `E`), plain or
//! encrypted, is decoded again here and checked: its subject, assertion ID, session index and
//! claims must come from one `saml:Assertion` that the IdP's signatures cover, as samael's
//! verifier sees them, after decrypting (with the SP key) every `EncryptedAssertion` of the
//! signed content and of the received document (see `check_accepted`).
//!
//! `JITBRIDGE_FUZZ_WRITE_SEEDS=DIR` makes the target write, for every `S*`/`E*` seed in DIR,
//! the signed (and encrypted) document with far-future timestamps as `X`, `B` and plain XML
//! seeds (`signed-*`) before the first input (run it with `-runs=0`). See fuzz/README.md.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jitbridge::config::{Config, SamlConfig};
use jitbridge::idp::saml::redirect::RedirectMessage;
use jitbridge::idp::saml::{IdpView, decrypt, logout, preflight, redirect, verify_response_with};
use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::X509;
use samael::crypto::{Crypto, CryptoProvider, ReduceMode};
use std::sync::OnceLock;

const IDP_KEY: &str = include_str!("../keys/idp.key");
const IDP_CRT: &str = include_str!("../keys/idp.crt");
const SP_KEY: &str = include_str!("../keys/sp.key");
const SP_CRT: &str = include_str!("../keys/sp.crt");
const IDP_ENTITY: &str = "https://idp.example.com/metadata";
const REQUEST_ID: &str = "_req1";
const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";

struct Variant {
    cfg: SamlConfig,
    idp: IdpView,
}

struct Env {
    /// Indexed by flags bits 0-1 and bit 7.
    variants: Vec<Variant>,
    sp_key: PKey<Private>,
    sp_pub: PKey<Public>,
    idp_key: PKey<Private>,
    idp_key_der: Vec<u8>,
}

fn metadata_xml() -> String {
    let cert = X509::from_pem(IDP_CRT.as_bytes()).expect("idp.crt");
    let der = STANDARD.encode(cert.to_der().expect("der"));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP_ENTITY}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="false">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/slo"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"#
    )
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let metadata = metadata_xml();
        let path = std::env::temp_dir().join(format!(
            "jitbridge-fuzz-idp-metadata-{}.xml",
            std::process::id()
        ));
        std::fs::write(&path, &metadata).expect("write the metadata file");
        let sp_key = PKey::private_key_from_pem(SP_KEY.as_bytes()).expect("sp.key");
        let idp_key = PKey::private_key_from_pem(IDP_KEY.as_bytes()).expect("idp.key");
        let sp_pub = X509::from_pem(SP_CRT.as_bytes())
            .expect("sp.crt")
            .public_key()
            .expect("sp public key");
        let mut variants = Vec::new();
        for subject_attr in [false, true] {
            for required in ["either", "response", "assertion", "both"] {
                let toml = format!(
                    "[server]\npublic_url = \"https://sp.example.com\"\n\n[[connection]]\nname = \"fuzz\"\nkind = \"saml\"\n\n[connection.saml]\nidp_metadata_file = \"{}\"\nsp_private_key = '''{}'''\nsp_certificate = '''{}'''\nallow_idp_initiated = true\nallow_unstable_name_id = true\nrequired_signature = \"{required}\"\n{}",
                    path.display(),
                    SP_KEY.trim(),
                    SP_CRT.trim(),
                    if subject_attr {
                        "subject_attribute = \"uid\"\n"
                    } else {
                        ""
                    }
                );
                let config = Config::from_toml_and_env("fuzz", &toml, std::iter::empty())
                    .unwrap_or_else(|e| panic!("fuzz config: {e}"));
                let cfg = config.connections[0].saml().expect("a SAML connection").clone();
                let idp = IdpView::parse(&metadata, &cfg, Some(&sp_key)).expect("IdP metadata");
                variants.push(Variant { cfg, idp });
            }
        }
        let _ = std::fs::remove_file(&path);
        let idp_key_der = idp_key.private_key_to_der().expect("der");
        Env {
            variants,
            sp_key,
            sp_pub,
            idp_key,
            idp_key_der,
        }
    })
}

fn variant(flags: u8) -> &'static Variant {
    let i = (flags & 3) as usize + if flags & 0x80 != 0 { 4 } else { 0 };
    &env().variants[i]
}

type Instant = chrono::DateTime<chrono::Utc>;

#[derive(Clone, Copy)]
struct Times {
    now: Instant,
    later: Instant,
    past: Instant,
}

impl Times {
    fn current() -> Self {
        let now = chrono::Utc::now();
        Self {
            now,
            later: now + chrono::Duration::minutes(10),
            past: now - chrono::Duration::hours(1),
        }
    }

    /// For stored signed seeds: IssueInstant and the ends of validity in 2099, NotBefore in
    /// 2000, so that they stay acceptable (samael refuses no IssueInstant in the future).
    fn far() -> Self {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        Self {
            now: at("2099-01-01T00:00:00Z"),
            later: at("2099-01-01T00:10:00Z"),
            past: at("2000-01-01T00:00:00Z"),
        }
    }

    fn fmt(t: Instant) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

fn fill(s: &str, v: &Variant, t: Times) -> String {
    s.replace("@NOW@", &Times::fmt(t.now))
        .replace("@LATER@", &Times::fmt(t.later))
        .replace("@PAST@", &Times::fmt(t.past))
        .replace("@ACS@", v.cfg.acs_url.as_str())
        .replace("@SLO@", v.cfg.slo_url.as_str())
        .replace("@SP@", &v.cfg.entity_id)
        .replace("@IDP@", IDP_ENTITY)
}

/// The harness itself must not hand libxml2 what the preflight would refuse: a DOCTYPE would
/// be expanded by the signing step and vanish from the document the ACS sees.
fn harness_refuses(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.contains("<!doctype") || l.contains("<!entity") || l.contains("<!element")
}

fn strip_decl(s: String) -> String {
    if s.starts_with("<?xml")
        && let Some(i) = s.find("?>")
    {
        return s[i + 2..].trim_start().to_string();
    }
    s
}

/// Signs the first `ds:Signature` template of `xml` with the IdP key; `xml` unchanged when it
/// has none or signing fails.
fn sign(xml: &str) -> String {
    if !xml.contains("Signature") {
        return xml.to_string();
    }
    match Crypto::sign_xml(xml.as_bytes(), &env().idp_key_der) {
        Ok(s) => strip_decl(s),
        Err(_) => xml.to_string(),
    }
}

/// Byte span of the first `<saml:Assertion ...>...</saml:Assertion>` (textual).
fn assertion_span(xml: &str) -> Option<(usize, usize)> {
    let s = xml.find("<saml:Assertion")?;
    let close = "</saml:Assertion>";
    let e = xml[s..].find(close)? + s + close.len();
    Some((s, e))
}

/// An `xenc:EncryptedData` of `plain` to the SP certificate, with the content cipher and key
/// transport that `flags` name (bits 4-6). The content key and IVs are derived from the
/// plaintext and the flags (not random), so that a template encrypts the same way each run;
/// only the OAEP padding of the key transport is random.
fn encrypted_data(plain: &str, flags: u8) -> String {
    use openssl::symm::Cipher;
    let (cipher, name, gcm) = match (flags >> 4) & 3 {
        0 => (Cipher::aes_128_cbc(), format!("{XENC}aes128-cbc"), false),
        1 => (Cipher::aes_256_cbc(), format!("{XENC}aes256-cbc"), false),
        2 => (Cipher::aes_128_gcm(), format!("{XENC11}aes128-gcm"), true),
        _ => (Cipher::aes_256_gcm(), format!("{XENC11}aes256-gcm"), true),
    };
    let derive = |label: &[u8], len: usize| -> Vec<u8> {
        let mut h = openssl::sha::Sha512::new();
        h.update(label);
        h.update(&[flags]);
        h.update(plain.as_bytes());
        h.finish()[..len].to_vec()
    };
    let key = derive(b"key", cipher.key_len());
    let plain = plain.as_bytes();
    let data = if gcm {
        let iv = derive(b"iv", 12);
        let mut tag = [0u8; 16];
        let ct =
            openssl::symm::encrypt_aead(cipher, &key, Some(&iv), &[], plain, &mut tag).unwrap();
        [iv.as_slice(), &ct, &tag].concat()
    } else {
        let iv = derive(b"iv", 16);
        let ct = openssl::symm::encrypt(cipher, &key, Some(&iv), plain).unwrap();
        [iv.as_slice(), &ct].concat()
    };
    let oaep11 = flags & 0x40 != 0;
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&env().sp_pub).unwrap();
    ctx.encrypt_init().unwrap();
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    let md = if oaep11 {
        openssl::md::Md::sha256()
    } else {
        openssl::md::Md::sha1()
    };
    ctx.set_rsa_oaep_md(md).unwrap();
    ctx.set_rsa_mgf1_md(md).unwrap();
    let mut wrapped = Vec::new();
    ctx.encrypt_to_vec(&key, &mut wrapped).unwrap();
    let method = if oaep11 {
        format!(
            r#"<e:EncryptionMethod Algorithm="{XENC11}rsa-oaep"><ds:DigestMethod xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Algorithm="{XENC}sha256"/><e11:MGF xmlns:e11="{XENC11}" Algorithm="{XENC11}mgf1sha256"/></e:EncryptionMethod>"#
        )
    } else {
        format!(
            r#"<e:EncryptionMethod Algorithm="{XENC}rsa-oaep-mgf1p"><ds:DigestMethod xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></e:EncryptionMethod>"#
        )
    };
    format!(
        r#"<xenc:EncryptedData xmlns:xenc="{XENC}" Type="{XENC}Element"><xenc:EncryptionMethod Algorithm="{name}"/><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><e:EncryptedKey xmlns:e="{XENC}">{method}<e:CipherData><e:CipherValue>{}</e:CipherValue></e:CipherData></e:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>"#,
        STANDARD.encode(&wrapped),
        STANDARD.encode(&data)
    )
}

fn encrypt(assertion: &str, flags: u8) -> String {
    format!(
        r#"<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">{}</saml:EncryptedAssertion>"#,
        encrypted_data(assertion, flags)
    )
}

const ENC_OPEN: &str = "<!--enc-->";
const ENC_CLOSE: &str = "<!--/enc-->";

/// Replaces every `<!--enc-->PLAIN<!--/enc-->` of a template by an `xenc:EncryptedData` of
/// PLAIN (unsigned, encrypted to the SP like the genuine assertion), so that templates can
/// place encrypted decoys anywhere, inside whatever wrapper element they write around it
/// (`saml:EncryptedAssertion`, another namespace, no namespace). Markers are replaced before
/// anything is signed: a decoy inside a signed element is the IdP's, one outside is not.
fn encrypt_marked(mut xml: String, flags: u8) -> String {
    while let Some(s) = xml.find(ENC_OPEN) {
        let Some(len) = xml[s + ENC_OPEN.len()..].find(ENC_CLOSE) else {
            break;
        };
        let inner = &xml[s + ENC_OPEN.len()..s + ENC_OPEN.len() + len];
        let data = encrypted_data(inner, flags);
        xml.replace_range(s..s + ENC_OPEN.len() + len + ENC_CLOSE.len(), &data);
    }
    xml
}

/// The `S`/`E` pipeline: fill placeholders, encrypt the `<!--enc-->` regions, sign the
/// (first) assertion, optionally encrypt it, sign the response.
fn prepare(body: &str, flags: u8, encrypted: bool, t: Times) -> Option<String> {
    if harness_refuses(body) {
        return None;
    }
    let v = variant(flags);
    let mut xml = encrypt_marked(fill(body, v, t), flags);
    if let Some((s, e)) = assertion_span(&xml) {
        let a = &xml[s..e];
        let signed = if a.contains("Signature") {
            sign(a)
        } else {
            a.to_string()
        };
        let replacement = if encrypted {
            encrypt(&signed, flags)
        } else {
            signed
        };
        xml = format!("{}{}{}", &xml[..s], replacement, &xml[e..]);
    }
    // A template outside the (plain) assertion is the response's: sign the whole document.
    // libxmlsec signs the first template in document order, which is the response's when it
    // precedes the assertion, as SAML's schema places it.
    let outside = match assertion_span(&xml) {
        Some((s, e)) => format!("{}{}", &xml[..s], &xml[e..]),
        None => xml.clone(),
    };
    if outside.contains("Signature") {
        xml = sign(&xml);
    }
    Some(xml)
}

const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// What the ACS received: the posted value decoded here, on the oracle's side (whitespace
/// dropped, standard base64, UTF-8), for every mode, so that no accepted response escapes the
/// oracle whatever the form it was posted in.
fn received(posted: &str) -> Option<String> {
    let compact: Vec<u8> = posted
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    String::from_utf8(STANDARD.decode(compact).ok()?).ok()
}

/// The text of an element as the ACS reads values: its text descendants, trimmed.
fn text_of(n: roxmltree::Node<'_, '_>) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Every value the assertion `a` holds: the text of each element below it (also as the
/// `NameQualifier!SPNameQualifier!value` form of a NameID), and each XML attribute value.
fn values_of(a: roxmltree::Node<'_, '_>) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for d in a.descendants().filter(|d| d.is_element()) {
        let t = text_of(d);
        if d.tag_name().name() == "NameID" {
            out.insert(format!(
                "{}!{}!{}",
                d.attribute("NameQualifier").unwrap_or_default(),
                d.attribute("SPNameQualifier").unwrap_or_default(),
                t
            ));
        }
        out.insert(t);
        for at in d.attributes() {
            out.insert(at.value().to_string());
        }
    }
    out
}

/// True when the trusted content `doc` holds a `saml:Assertion` with the accepted ID (at any
/// depth) that also holds the accepted subject, session index and every claim value: all of
/// them must come from one assertion that the IdP's signatures cover.
fn from_one_trusted_assertion(doc: &str, ok: &jitbridge::idp::saml::VerifiedResponse) -> bool {
    let Ok(tree) = roxmltree::Document::parse(doc) else {
        return false;
    };
    tree.descendants()
        .filter(|n| {
            n.is_element()
                && n.tag_name().namespace() == Some(SAML_NS)
                && n.tag_name().name() == "Assertion"
                && n.attribute("ID") == Some(ok.assertion_id.as_str())
        })
        .any(|a| {
            let values = values_of(a);
            let claim_values = ok.claims.values().flat_map(|c| match c {
                serde_json::Value::Array(v) => v.clone(),
                other => vec![other.clone()],
            });
            values.contains(ok.subject.as_str())
                && ok.session_index.iter().all(|s| values.contains(s))
                && claim_values
                    .into_iter()
                    .all(|c| c.as_str().is_some_and(|c| values.contains(c)))
        })
}

/// Oracle for signature wrapping and decoys: whatever the ACS accepted must lie inside content
/// the IdP's signatures cover, checked with samael's verifier (not the ACS's own).
///
/// Trusted content is: what the document's signatures cover (pre-digest bytes); the plaintext
/// of every element named `EncryptedAssertion` (any namespace, any depth) inside that content;
/// and the signed content of the plaintext of every such element anywhere in the received
/// document, when the plaintext's own signature verifies. Encrypted documents are decrypted
/// here with the SP key; the accepted subject, assertion ID, session index and claims must all
/// come from one `saml:Assertion` of trusted content. No accepted document is skipped.
fn check_accepted(
    xml: &str,
    v: &Variant,
    sp_key: &PKey<Private>,
    ok: &jitbridge::idp::saml::VerifiedResponse,
) {
    let certs: Vec<samael::crypto::CertificateDer> = v
        .idp
        .certs
        .iter()
        .map(|c| samael::crypto::CertificateDer::from(c.to_der().unwrap()))
        .collect();
    let reduce = |doc: &str| {
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            doc,
            &certs,
            ReduceMode::PreDigest,
            Some(&v.cfg.signature_algorithms),
        )
        .ok()
    };
    let decrypted = |doc: &str| -> Vec<String> {
        let Ok(tree) = roxmltree::Document::parse(doc) else {
            return Vec::new();
        };
        tree.descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == "EncryptedAssertion")
            .filter_map(|n| decrypt::decrypt_assertion(n, sp_key, true).ok())
            .collect()
    };
    let mut trusted: Vec<String> = Vec::new();
    if let Some(signed) = reduce(xml) {
        trusted.extend(decrypted(&signed));
        trusted.push(signed);
    }
    trusted.extend(decrypted(xml).iter().filter_map(|p| reduce(p)));
    assert!(
        trusted.iter().any(|t| from_one_trusted_assertion(t, ok)),
        "accepted subject {:?} / assertion {:?} (claims {:?}) do not come from one assertion the IdP's signatures cover ({} trusted contents)",
        ok.subject,
        ok.assertion_id,
        ok.claims,
        trusted.len()
    );
}

/// `JITBRIDGE_FUZZ_VERBOSE=1`: print the ACS's answer to each input (to check seeds).
fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("JITBRIDGE_FUZZ_VERBOSE").is_some())
}

/// Posts to the ACS (`posted` is the form value) and runs the oracle on every accepted
/// response.
fn acs(posted: &str, flags: u8) {
    let env = env();
    let v = variant(flags);
    let expected = (flags & 4 == 0).then_some(REQUEST_ID);
    let key = (flags & 8 == 0).then_some(&env.sp_key);
    let r = verify_response_with(&v.cfg, &v.idp, key, posted, expected);
    if verbose() {
        match &r {
            Ok(ok) => eprintln!("ACS: accepted (subject {:?})", ok.subject),
            Err(e) => eprintln!("ACS: refused: {e}"),
        }
    }
    if let Ok(ok) = &r {
        assert!(!ok.subject.trim().is_empty() && ok.subject.len() <= 512);
        let xml = received(posted).expect("an accepted response is base64 of UTF-8");
        check_accepted(&xml, v, &env.sp_key, ok);
    }
}

fn slo_from_query(query: &str, v: &Variant) {
    let Ok(msg) = RedirectMessage::parse(query) else {
        return;
    };
    let _ = msg.is_signed();
    let _ = msg.verify(&v.idp.certs, &v.cfg.signature_algorithms);
    let Ok(xml) = preflight::decode_redirect(&msg.payload, 256 * 1024) else {
        return;
    };
    let root = if msg.param == "SAMLRequest" {
        "LogoutRequest"
    } else {
        "LogoutResponse"
    };
    let _ = logout::parse(&xml, root);
}

fn run(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let (mode, flags, body): (u8, u8, &[u8]) = if data[0] == b'<' {
        (b'X', 0, data)
    } else if data.len() < 2 {
        return;
    } else {
        let m = match data[0] {
            m @ (b'X' | b'B' | b'S' | b'E' | b'P' | b'D' | b'L' | b'R' | b'Q' | b'M') => m,
            other => b"XBSEPDLRQM"[(other % 10) as usize],
        };
        (m, data[1], &data[2..])
    };
    let text = String::from_utf8_lossy(body);
    let v = variant(flags);
    let t = Times::current();
    match mode {
        b'X' => {
            // Raw bytes, not the lossy text: non-UTF-8 must reach decode_post too.
            acs(&STANDARD.encode(body), flags);
        }
        b'B' => acs(&text, flags),
        b'S' | b'E' => {
            if let Some(xml) = prepare(&text, flags, mode == b'E', t) {
                acs(&STANDARD.encode(&xml), flags);
            }
        }
        b'P' => {
            let root = ["Response", "LogoutRequest", "LogoutResponse"][(flags % 3) as usize];
            let _ = preflight::scan(&text, root);
        }
        b'D' => {
            let max = if flags & 1 == 0 { 256 * 1024 } else { 4096 };
            if let Ok(xml) = preflight::decode_redirect(&text, max) {
                let root = if flags & 2 == 0 {
                    "LogoutRequest"
                } else {
                    "LogoutResponse"
                };
                let _ = logout::parse(&xml, root);
            }
        }
        b'L' => {
            let root = if flags & 1 == 0 {
                "LogoutRequest"
            } else {
                "LogoutResponse"
            };
            let _ = logout::parse(&text, root);
        }
        b'R' => slo_from_query(&text, v),
        b'Q' => {
            let xml = fill(&text, v, t);
            let param = if flags & 1 == 0 {
                "SAMLRequest"
            } else {
                "SAMLResponse"
            };
            let relay = (flags & 2 != 0).then_some("rs&=+/ x");
            let dest = url::Url::parse("https://sp.example.com/saml/fuzz/slo").unwrap();
            if let Ok(url) = redirect::encode(&dest, param, &xml, relay, Some(&env().idp_key)) {
                slo_from_query(url.query().unwrap_or(""), v);
            }
        }
        b'M' => {
            let key = (flags & 8 == 0).then_some(&env().sp_key);
            let _ = IdpView::parse(&text, &v.cfg, key);
        }
        _ => unreachable!(),
    }
}

/// `JITBRIDGE_FUZZ_WRITE_SEEDS=DIR`: derive signed seeds from the `S*`/`E*` templates in DIR.
fn write_seeds(dir: &str) {
    let far = Times::far();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("seed dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('S') || n.starts_with('E'))
        .collect();
    names.sort();
    for n in names {
        let data = std::fs::read(format!("{dir}/{n}")).unwrap();
        if data.len() < 2 {
            continue;
        }
        let (mode, flags) = (data[0], data[1]);
        let body = String::from_utf8_lossy(&data[2..]);
        let Some(xml) = prepare(&body, flags, mode == b'E', far) else {
            continue;
        };
        let stem = n.trim_end_matches(".xml").trim_end_matches(".seed");
        let mut x = vec![b'X', flags];
        x.extend_from_slice(xml.as_bytes());
        std::fs::write(format!("{dir}/signed-{stem}.X"), x).unwrap();
        let mut b = vec![b'B', flags];
        b.extend_from_slice(STANDARD.encode(&xml).as_bytes());
        std::fs::write(format!("{dir}/signed-{stem}.B"), b).unwrap();
        if flags == 0 {
            std::fs::write(format!("{dir}/signed-{stem}.xml"), &xml).unwrap();
        }
        // Tell whether the signed seed is accepted, for the README's record.
        let v = variant(flags);
        let r = verify_response_with(
            &v.cfg,
            &v.idp,
            (flags & 8 == 0).then_some(&env().sp_key),
            &STANDARD.encode(&xml),
            (flags & 4 == 0).then_some(REQUEST_ID),
        );
        if let Ok(ok) = &r {
            check_accepted(&xml, v, &env().sp_key, ok);
        }
        eprintln!(
            "{n}: {}",
            match r {
                Ok(ok) => format!("accepted (subject {:?})", ok.subject),
                Err(e) => format!("refused: {e}"),
            }
        );
    }
}

fuzz_target!(|data: &[u8]| {
    static SEEDS: OnceLock<()> = OnceLock::new();
    SEEDS.get_or_init(|| {
        if let Ok(dir) = std::env::var("JITBRIDGE_FUZZ_WRITE_SEEDS") {
            write_seeds(&dir);
        }
    });
    run(data);
});
