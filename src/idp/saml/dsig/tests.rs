use super::*;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use samael::crypto::{Crypto, CryptoProvider};
use std::sync::OnceLock;

const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const XSLT: &str = "http://www.w3.org/TR/1999/REC-xslt-19991116";

/// A throwaway RSA key with a self-signed certificate (also used by the metadata tests).
pub(in crate::idp::saml) fn keypair() -> (PKey<Private>, X509) {
    use openssl::{asn1::Asn1Time, hash::MessageDigest, rsa::Rsa, x509::X509Name};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("CN", "idp").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}

/// Two IdP key pairs, made once (RSA key generation is slow in debug builds).
fn pairs() -> &'static [(PKey<Private>, X509); 2] {
    static P: OnceLock<[(PKey<Private>, X509); 2]> = OnceLock::new();
    P.get_or_init(|| {
        let [a, b] = [keypair(), keypair()];
        // libxmlsec1 is initialised by samael on first use.
        crate::idp::saml::xmlsec_log::install(&samael::crypto::CertificateDer::from(
            a.1.to_der().unwrap(),
        ));
        [a, b]
    })
}

fn keys(which: &[usize]) -> VerifyingKeys {
    let certs: Vec<X509> = which.iter().map(|i| pairs()[*i].1.clone()).collect();
    VerifyingKeys::new(&certs).unwrap()
}

fn signature(uri: &str, method: &str, digest: &str, transforms: &[&str]) -> String {
    let t: String = transforms
        .iter()
        .map(|a| format!(r#"<ds:Transform Algorithm="{a}"/>"#))
        .collect();
    format!(
        r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/><ds:SignatureMethod Algorithm="{method}"/><ds:Reference URI="{uri}"><ds:Transforms>{t}</ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue></ds:Signature>"#
    )
}

fn standard(uri: &str) -> String {
    signature(uri, RSA_SHA256, SHA256, &[ENVELOPED, EXC_C14N])
}

fn response(sig: &str) -> String {
    format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r1" Version="2.0"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">idp</saml:Issuer>{sig}<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a1"><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"#
    )
}

fn sign(xml: &str, key: usize) -> String {
    let der = pairs()[key].0.private_key_to_der().unwrap();
    Crypto::sign_xml(xml.as_bytes(), &der).expect("the test template signs")
}

fn allowed() -> Vec<AllowedSignatureAlgorithm> {
    vec![AllowedSignatureAlgorithm::RsaSha256]
}

#[test]
fn a_signed_response_reduces_to_exactly_its_digested_form() {
    let signed = sign(&response(&standard("#_r1")), 0);
    let out = keys(&[0]).reduce(&signed, &allowed()).unwrap();
    assert!(super::super::preflight::root_is_protocol_response(&out));
    assert!(out.contains("<saml:NameID>alice</saml:NameID>"), "{out}");
    assert!(
        !out.contains("SignatureValue"),
        "the enveloped signature is not content: {out}"
    );
}

#[test]
fn a_changed_value_or_another_key_fails_and_a_rollover_key_list_verifies() {
    let signed = sign(&response(&standard("#_r1")), 0);
    let tampered = signed.replace(">alice<", ">mallory<");
    assert_eq!(
        keys(&[0]).reduce(&tampered, &allowed()),
        Err(DsigError::Invalid)
    );
    assert_eq!(
        keys(&[1]).reduce(&signed, &allowed()),
        Err(DsigError::Invalid)
    );
    assert!(keys(&[1, 0]).reduce(&signed, &allowed()).is_ok());
}

#[test]
fn an_unsigned_document_and_a_duplicated_id_are_refused() {
    assert_eq!(
        keys(&[0]).reduce(&response(""), &allowed()),
        Err(DsigError::Unsigned)
    );
    let signed = sign(&response(&standard("#_r1")), 0);
    let twice = signed.replace(r#"ID="_a1""#, r#"ID="_r1""#);
    assert_eq!(keys(&[0]).reduce(&twice, &allowed()), Err(DsigError::Ids));
    let not_ncname = signed.replace(r#"ID="_a1""#, r#"ID="1 2""#);
    assert_eq!(
        keys(&[0]).reduce(&not_ncname, &allowed()),
        Err(DsigError::Ids)
    );
}

#[test]
fn an_algorithm_outside_the_allow_list_is_refused_by_libxmlsec1_itself() {
    let sha1 = sign(
        &response(&signature("#_r1", RSA_SHA1, SHA1, &[ENVELOPED, EXC_C14N])),
        0,
    );
    assert_eq!(
        keys(&[0]).reduce(&sha1, &allowed()),
        Err(DsigError::Invalid)
    );
    // The same document verifies once its algorithm is allowed... only if samael knows a
    // SHA-1 variant, which it does not: SHA-1 can never be allowed.
    let sha512_digest = sign(
        &response(&signature(
            "#_r1",
            RSA_SHA256,
            "http://www.w3.org/2001/04/xmlenc#sha512",
            &[ENVELOPED, EXC_C14N],
        )),
        0,
    );
    assert_eq!(
        keys(&[0]).reduce(&sha512_digest, &allowed()),
        Err(DsigError::Invalid),
        "a digest method outside the allow-list is refused"
    );
    assert!(
        keys(&[0])
            .reduce(
                &sha512_digest,
                &[
                    AllowedSignatureAlgorithm::RsaSha256,
                    AllowedSignatureAlgorithm::RsaSha512
                ]
            )
            .is_ok()
    );
}

#[test]
fn a_reference_outside_the_document_is_never_fetched() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("jb-dsig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret.xml");
    std::fs::write(&file, "<secret/>").unwrap();
    for uri in [
        format!("http://127.0.0.1:{port}/x"),
        format!("file://{}", file.display()),
        file.display().to_string(),
    ] {
        // Unsigned (the digest is empty): what matters is that nothing is dereferenced.
        let doc = response(&standard(&uri));
        assert_eq!(
            keys(&[0]).reduce(&doc, &allowed()),
            Err(DsigError::Invalid),
            "{uri}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "the verifier connected to a URI named by the document"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn transforms_beyond_enveloped_and_canonicalization_are_refused_before_running() {
    let xslt = format!(
        r#"<ds:Transform Algorithm="{XSLT}"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/">x</xsl:template></xsl:stylesheet></ds:Transform>"#
    );
    let sig = standard("#_r1").replace("<ds:Transforms>", &format!("<ds:Transforms>{xslt}"));
    assert_eq!(
        keys(&[0]).reduce(&response(&sig), &allowed()),
        Err(DsigError::Invalid)
    );
    let xpath = signature(
        "#_r1",
        RSA_SHA256,
        SHA256,
        &[ENVELOPED, "http://www.w3.org/TR/1999/REC-xpath-19991116"],
    );
    assert_eq!(
        keys(&[0]).reduce(&response(&xpath), &allowed()),
        Err(DsigError::Invalid)
    );
}

#[test]
fn a_signature_with_two_references_is_refused() {
    let sig = standard("#_r1").replace(
        "</ds:SignedInfo>",
        &format!(
            r##"<ds:Reference URI="#_a1"><ds:Transforms><ds:Transform Algorithm="{EXC_C14N}"/></ds:Transforms><ds:DigestMethod Algorithm="{SHA256}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>"##
        ),
    );
    let signed = sign(&response(&sig), 0);
    assert_eq!(
        keys(&[0]).reduce(&signed, &allowed()),
        Err(DsigError::References)
    );
}

#[test]
fn with_response_and_assertion_signed_the_response_is_what_goes_on() {
    let assertion_sig = standard("#_a1");
    let doc = response(&standard("#_r1"))
        .replace("<saml:Subject>", &format!("{assertion_sig}<saml:Subject>"));
    // The assertion's signature first (its template comes second in document order).
    let inner = {
        let s = doc.find("<saml:Assertion").unwrap();
        let e = doc.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
        let signed = sign(&doc[s..e], 0);
        let signed = match signed.strip_prefix("<?xml") {
            Some(rest) => rest[rest.find("?>").unwrap() + 2..].trim().to_string(),
            None => signed,
        };
        format!("{}{}{}", &doc[..s], signed, &doc[e..])
    };
    let both = sign(&inner, 0);
    let out = keys(&[0]).reduce(&both, &allowed()).unwrap();
    assert!(super::super::preflight::root_is_protocol_response(&out));
    assert!(out.contains(r#"ID="_a1""#));
    // A broken inner signature fails the whole document even though the outer one covers it.
    let broken = both.replacen("<ds:SignatureValue>", "<ds:SignatureValue>AAAA", 2);
    assert!(keys(&[0]).reduce(&broken, &allowed()).is_err());
}
