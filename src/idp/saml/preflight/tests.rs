use super::*;

const NS: &str = r#"xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#""#;

fn response(inner: &str) -> String {
    format!(
        r#"<samlp:Response {NS} ID="r1" InResponseTo="q1" Destination="https://sp/acs"><saml:Issuer>idp</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{inner}</samlp:Response>"#
    )
}

const ASSERTION: &str = r##"<saml:Assertion ID="a1"><saml:Issuer>idp</saml:Issuer><ds:Signature><ds:SignedInfo><ds:Reference URI="#a1"/></ds:SignedInfo></ds:Signature><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion>"##;

#[test]
fn a_plain_response_passes_and_its_shape_is_read() {
    let s = scan(&response(ASSERTION), "Response").unwrap();
    assert_eq!(s.id.as_deref(), Some("r1"));
    assert_eq!(s.in_response_to.as_deref(), Some("q1"));
    assert_eq!(s.destination.as_deref(), Some("https://sp/acs"));
    assert_eq!(s.assertion_id.as_deref(), Some("a1"));
    assert!(s.assertion_signed());
    assert!(!s.response_signed());
    assert_eq!(
        s.status.as_deref(),
        Some("urn:oasis:names:tc:SAML:2.0:status:Success")
    );
}

#[test]
fn a_signature_on_the_response_that_points_elsewhere_does_not_count_as_a_response_signature() {
    let xml = format!(
        r##"<samlp:Response {NS} ID="r1"><ds:Signature><ds:SignedInfo><ds:Reference URI="#a1"/></ds:SignedInfo></ds:Signature><samlp:Status><samlp:StatusCode Value="x"/></samlp:Status>{ASSERTION}</samlp:Response>"##
    );
    let s = scan(&xml, "Response").unwrap();
    assert!(!s.response_signed());
}

#[test]
fn doctype_and_entities_are_refused_before_parsing() {
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>{}"#,
        response(ASSERTION)
    );
    assert_eq!(scan(&laughs, "Response"), Err(PreflightError::Doctype));
    let xxe = format!(
        r#"<!doctype r [<!entity x SYSTEM "file:///etc/passwd">]>{}"#,
        response(ASSERTION)
    );
    assert_eq!(scan(&xxe, "Response"), Err(PreflightError::Doctype));
}

#[test]
fn a_declared_encoding_other_than_utf8_is_refused() {
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-16"?>{}"#,
        response(ASSERTION)
    );
    assert_eq!(scan(&xml, "Response"), Err(PreflightError::NotUtf8));
    let ok = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>{}"#,
        response(ASSERTION)
    );
    assert!(scan(&ok, "Response").is_ok());
}

#[test]
fn a_second_assertion_anywhere_is_refused() {
    let two = response(&format!("{ASSERTION}{}", ASSERTION.replace("a1", "a2")));
    assert_eq!(
        scan(&two, "Response"),
        Err(PreflightError::AssertionCount(2))
    );
    let hidden = response(&format!(
        "<samlp:Extensions>{}</samlp:Extensions>{ASSERTION}",
        ASSERTION.replace("a1", "evil")
    ));
    assert_eq!(
        scan(&hidden, "Response"),
        Err(PreflightError::Misplaced("Assertion"))
    );
    assert_eq!(
        scan(&response(""), "Response"),
        Err(PreflightError::AssertionCount(0))
    );
}

#[test]
fn a_response_wrapped_in_another_is_refused() {
    let inner = response(ASSERTION);
    let outer = format!(
        r#"<samlp:Response {NS} ID="evil"><samlp:Extensions>{inner}</samlp:Extensions></samlp:Response>"#
    );
    assert!(matches!(
        scan(&outer, "Response"),
        Err(PreflightError::Duplicated(_)) | Err(PreflightError::AssertionCount(_))
    ));
}

#[test]
fn a_comment_inside_a_text_value_is_refused() {
    let xml = response(&ASSERTION.replace("alice", "alice@corp.example<!---->.evil.example"));
    assert_eq!(scan(&xml, "Response"), Err(PreflightError::SplitText));
    let cdata = response(&ASSERTION.replace("alice", "alice<![CDATA[x]]>"));
    assert_eq!(scan(&cdata, "Response"), Err(PreflightError::SplitText));
    // A comment between elements is harmless.
    let between = response(&ASSERTION.replace("<saml:Subject>", "<!-- note --><saml:Subject>"));
    assert!(scan(&between, "Response").is_ok());
}

#[test]
fn the_wrong_root_and_garbage_are_refused() {
    assert_eq!(
        scan(&format!(r#"<samlp:LogoutRequest {NS}/>"#), "Response"),
        Err(PreflightError::WrongRoot("Response"))
    );
    assert_eq!(
        scan(r#"<Response>x</Response>"#, "Response"),
        Err(PreflightError::WrongRoot("Response"))
    );
    assert_eq!(
        scan("<samlp:Response", "Response"),
        Err(PreflightError::Malformed)
    );
    assert!(scan("", "Response").is_err());
    assert!(scan(&format!("{}<x/>", response(ASSERTION)), "Response").is_err());
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
    let xml = response(&format!(
        "{ASSERTION}<samlp:Extensions>{deep}</samlp:Extensions>"
    ));
    assert_eq!(scan(&xml, "Response"), Err(PreflightError::TooDeep));
}

#[test]
fn decoding_respects_the_size_limit_and_bounds_deflate_bombs() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode("x".repeat(10_000));
    assert_eq!(decode_post(&b64, 4096), Err(PreflightError::TooLarge));
    assert_eq!(decode_post("!!!", 4096), Err(PreflightError::NotBase64));
    // Line-wrapped base64, as many IdPs post it, decodes the same as unwrapped.
    let text = "<samlp:Response/>".repeat(20);
    let flat = base64::engine::general_purpose::STANDARD.encode(&text);
    let wrapped: String = flat
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    assert_eq!(decode_post(&flat, 4096).as_deref(), Ok(text.as_str()));
    assert_eq!(decode_post(&wrapped, 4096).as_deref(), Ok(text.as_str()));
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &vec![b'a'; 50_000_000]).unwrap();
    let bomb = base64::engine::general_purpose::STANDARD.encode(enc.finish().unwrap());
    assert_eq!(
        decode_redirect(&bomb, 65_536),
        Err(PreflightError::TooLarge)
    );
}

proptest::proptest! {
    #[test]
    fn scanning_arbitrary_text_never_panics(s in ".{0,400}") {
        let _ = scan(&s, "Response");
        let _ = decode_post(&s, 4096);
        let _ = decode_redirect(&s, 4096);
    }
}

const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";

/// An encrypted assertion as IdPs send it, with `keys` EncryptedKey elements in its KeyInfo.
fn encrypted(keys: usize) -> String {
    let key = r#"<xenc:EncryptedKey><xenc:CipherData><xenc:CipherValue>k</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>"#;
    format!(
        r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="{XENC}"><ds:KeyInfo>{}</ds:KeyInfo><xenc:CipherData><xenc:CipherValue>c</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>"#,
        key.repeat(keys)
    )
}

#[test]
fn an_encrypted_assertion_passes_with_at_most_two_keys() {
    for keys in [1, 2] {
        let s = scan(&response(&encrypted(keys)), "Response").unwrap();
        assert!(s.encrypted);
    }
    assert_eq!(
        scan(&response(&encrypted(3)), "Response"),
        Err(PreflightError::EncryptionBounds)
    );
    let two_data = response(&encrypted(1).replace(
        "</saml:EncryptedAssertion>",
        &format!(r#"<xenc:EncryptedData xmlns:xenc="{XENC}"/></saml:EncryptedAssertion>"#),
    ));
    assert_eq!(
        scan(&two_data, "Response"),
        Err(PreflightError::EncryptionBounds)
    );
}

/// The authentication bypass of the first release: a decoy named EncryptedAssertion, in any
/// namespace or none, where the signature does not reach. Each keeps the count of SAML
/// assertions at one, so only the placement rule can refuse it here.
#[test]
fn a_decoy_encrypted_assertion_in_any_namespace_outside_its_place_is_refused() {
    let genuine = encrypted(1);
    let decoys = [
        genuine
            .replace("saml:EncryptedAssertion", "x:EncryptedAssertion")
            .replacen(
                "<x:EncryptedAssertion>",
                r#"<x:EncryptedAssertion xmlns:x="urn:example:decoy">"#,
                1,
            ),
        genuine.replace("saml:EncryptedAssertion", "EncryptedAssertion"),
        genuine.clone(),
    ];
    for (i, decoy) in decoys.iter().enumerate() {
        let places = [
            format!(
                r##"<ds:Signature><ds:SignedInfo><ds:Reference URI="#r1"/></ds:SignedInfo><ds:KeyInfo>{decoy}</ds:KeyInfo></ds:Signature>{genuine}"##
            ),
            format!(
                r##"<ds:Signature><ds:SignedInfo><ds:Reference URI="#r1"/></ds:SignedInfo><ds:Object>{decoy}</ds:Object></ds:Signature>{genuine}"##
            ),
            format!("<samlp:Extensions>{decoy}</samlp:Extensions>{genuine}"),
            genuine.replace(
                "<xenc:EncryptedData",
                &format!("{decoy}<xenc:EncryptedData"),
            ),
        ];
        for (j, xml) in places.iter().enumerate() {
            let got = scan(&response(xml), "Response");
            assert!(
                matches!(got, Err(PreflightError::Misplaced(_))),
                "decoy {i} at place {j}: {got:?}"
            );
        }
    }
    // A foreign-namespace sibling after the genuine element, and no namespace at all.
    for decoy in &decoys[..2] {
        let got = scan(&response(&format!("{genuine}{decoy}")), "Response");
        assert_eq!(got, Err(PreflightError::Misplaced("EncryptedAssertion")));
    }
    // Encryption elements of their own outside the assertion, in any namespace.
    for stray in [
        format!(r#"<xenc:EncryptedKey xmlns:xenc="{XENC}"/>"#),
        r#"<y:EncryptedData xmlns:y="urn:example:decoy"/>"#.to_string(),
        format!(r#"<xenc:EncryptedData xmlns:xenc="{XENC}"/>"#),
    ] {
        let xml = response(&format!(
            "<samlp:Extensions>{stray}</samlp:Extensions>{genuine}"
        ));
        assert!(
            matches!(scan(&xml, "Response"), Err(PreflightError::Misplaced(_))),
            "{stray}"
        );
    }
    // A plain assertion in a foreign namespace, with one genuine SAML assertion.
    let foreign = ASSERTION
        .replace("saml:Assertion", "z:Assertion")
        .replacen(
            "<z:Assertion ",
            r#"<z:Assertion xmlns:z="urn:example:decoy" "#,
            1,
        )
        .replace("a1", "evil");
    let xml = response(&format!("{foreign}{ASSERTION}"));
    assert_eq!(
        scan(&xml, "Response"),
        Err(PreflightError::Misplaced("Assertion"))
    );
}

#[test]
fn a_decrypted_assertion_is_scanned_as_strictly_as_a_message() {
    let s =
        scan_assertion(&ASSERTION.replace("<saml:Assertion ", &format!("<saml:Assertion {NS} ")))
            .unwrap();
    assert!(s.assertion_signed());
    assert_eq!(s.assertion_id.as_deref(), Some("a1"));
    let nested = ASSERTION
        .replace("<saml:Assertion ", &format!("<saml:Assertion {NS} "))
        .replace(
            "</saml:Subject>",
            &format!(
                "</saml:Subject><saml:Advice>{}</saml:Advice>",
                ASSERTION.replace("a1", "a2")
            ),
        );
    assert_eq!(
        scan_assertion(&nested),
        Err(PreflightError::Misplaced("Assertion"))
    );
}

/// libxmlsec1 digests every Reference of a signature before checking its SignatureValue: a
/// stray signature (in Extensions, a second one on the Response, a Manifest) is refused before
/// it gets there.
#[test]
fn a_signature_outside_the_message_or_the_assertion_is_refused_before_any_digest() {
    let sig = r##"<ds:Signature><ds:SignedInfo><ds:Reference URI="#r1"/></ds:SignedInfo></ds:Signature>"##;
    let stray = response(&format!(
        "<samlp:Extensions>{sig}</samlp:Extensions>{ASSERTION}"
    ));
    assert_eq!(
        scan(&stray, "Response"),
        Err(PreflightError::Misplaced("Signature"))
    );
    let twice = response(&format!("{sig}{sig}{ASSERTION}"));
    assert_eq!(
        scan(&twice, "Response"),
        Err(PreflightError::Duplicated("signature"))
    );
    let manifest = response(&ASSERTION.replace(
        "</ds:SignedInfo>",
        "</ds:SignedInfo><ds:Object><ds:Manifest/></ds:Object>",
    ));
    assert_eq!(
        scan(&manifest, "Response"),
        Err(PreflightError::Misplaced("Object"))
    );
    let inner_protocol = ASSERTION
        .replace("<saml:Assertion ", &format!("<saml:Assertion {NS} "))
        .replace(
            "</saml:Subject>",
            "</saml:Subject><samlp:Response ID=\"x\"/>",
        );
    assert_eq!(
        scan_assertion(&inner_protocol),
        Err(PreflightError::Misplaced("protocol message"))
    );
}
