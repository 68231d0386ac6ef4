//! The first look at a posted SAML message, before any XML library touches it.
//!
//! Refuses what no honest IdP sends and what known attacks need: oversized input, non-UTF-8,
//! a DOCTYPE or entity declaration (XXE, billion laughs), more than one assertion (signature
//! wrapping: an extra assertion before or after the signed one, or one hidden in an extension),
//! more than one Response, and a comment or CDATA section splitting a text value (the 2018
//! comment-truncation class, where `alice@corp.com<!---->.evil` verifies as one value and is
//! read as another). What it learns here is untrusted and is used only to refuse, or to look up
//! the outstanding request; every accepted value comes from the verified document.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub const PROTOCOL_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
pub const DSIG_NS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";
pub const XENC_NS: &[u8] = b"http://www.w3.org/2001/04/xmlenc#";

/// The most `EncryptedKey` elements an encrypted assertion may carry: IdPs that encrypt to
/// several certificates of an SP (during its key rollover) send one per certificate. Each can
/// cost an RSA operation.
pub const MAX_ENCRYPTED_KEYS: usize = 2;

const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error("the message is larger than the configured limit")]
    TooLarge,
    #[error("the message is not valid base64")]
    NotBase64,
    #[error("the message is not UTF-8 XML")]
    NotUtf8,
    #[error("the message carries a DOCTYPE or entity declaration, which SAML never needs")]
    Doctype,
    #[error("the message is not well-formed XML")]
    Malformed,
    #[error("the message nests elements deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the message is not a SAML {0}")]
    WrongRoot(&'static str),
    #[error("the message carries {0} assertions; exactly one is accepted")]
    AssertionCount(usize),
    #[error("the message carries more than one {0} element")]
    Duplicated(&'static str),
    #[error("a comment or CDATA section splits a text value (possible truncation attack)")]
    SplitText,
    /// An assertion, encrypted assertion or encryption element anywhere but where the browser
    /// SSO profile puts it, or in another namespace: nothing outside the one genuine place is
    /// ever decrypted or read, and a decoy is refused before any signature or RSA work.
    #[error("the message carries an {0} element outside its place")]
    Misplaced(&'static str),
    #[error(
        "the encrypted assertion must carry exactly one EncryptedData and at most {MAX_ENCRYPTED_KEYS} EncryptedKey elements"
    )]
    EncryptionBounds,
}

impl PreflightError {
    /// A stable code for the audit trail: which defence refused the message.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "saml_too_large",
            Self::NotBase64 => "saml_not_base64",
            Self::NotUtf8 => "saml_not_utf8",
            Self::Doctype => "saml_doctype",
            Self::Malformed => "saml_malformed",
            Self::TooDeep => "saml_too_deep",
            Self::WrongRoot(_) => "saml_wrong_root",
            Self::AssertionCount(_) => "saml_assertion_count",
            Self::Duplicated(_) => "saml_duplicated_element",
            Self::SplitText => "saml_split_text",
            Self::Misplaced(_) => "saml_misplaced_element",
            Self::EncryptionBounds => "saml_encryption_bounds",
        }
    }
}

/// What the untrusted scan saw of a `samlp:Response`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResponseShape {
    pub id: Option<String>,
    pub in_response_to: Option<String>,
    pub destination: Option<String>,
    /// The top-level `StatusCode` value.
    pub status: Option<String>,
    pub encrypted: bool,
    /// `URI` of the `Reference` of a `ds:Signature` that is a direct child of the Response.
    pub response_signature_ref: Option<String>,
    pub assertion_id: Option<String>,
    /// Same, for a signature directly inside the (plain) Assertion.
    pub assertion_signature_ref: Option<String>,
}

impl ResponseShape {
    /// True when a signature placed on the Response points at the Response itself.
    pub fn response_signed(&self) -> bool {
        matches!((&self.id, &self.response_signature_ref), (Some(id), Some(r)) if r.strip_prefix('#') == Some(id.as_str()))
    }

    pub fn assertion_signed(&self) -> bool {
        matches!((&self.assertion_id, &self.assertion_signature_ref), (Some(id), Some(r)) if r.strip_prefix('#') == Some(id.as_str()))
    }
}

/// Decodes a POSTed `SAMLResponse` (base64, no compression) within `max_bytes`.
pub fn decode_post(value: &str, max_bytes: usize) -> Result<String, PreflightError> {
    use base64::Engine;
    // Base64 is 4/3 of the payload; refuse before allocating.
    if value.len() > max_bytes / 3 * 4 + 4 {
        return Err(PreflightError::TooLarge);
    }
    // Line breaks are common (76-column base64); copy only when there are any.
    let compact: std::borrow::Cow<'_, [u8]> = if value.bytes().any(|b| b.is_ascii_whitespace()) {
        value
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>()
            .into()
    } else {
        value.as_bytes().into()
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| PreflightError::NotBase64)?;
    String::from_utf8(bytes).map_err(|_| PreflightError::NotUtf8)
}

/// Decodes an HTTP-Redirect binding value (base64 of raw DEFLATE) within `max_bytes`.
pub fn decode_redirect(value: &str, max_bytes: usize) -> Result<String, PreflightError> {
    use base64::Engine;
    use std::io::Read;
    if value.len() > max_bytes {
        return Err(PreflightError::TooLarge);
    }
    // A sender that left `+` unescaped has had it turned into a space by form decoding.
    let compact: String = value
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| PreflightError::NotBase64)?;
    let mut out = Vec::new();
    // `take` bounds a decompression bomb.
    flate2::read::DeflateDecoder::new(compressed.as_slice())
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| PreflightError::Malformed)?;
    if out.len() > max_bytes {
        return Err(PreflightError::TooLarge);
    }
    String::from_utf8(out).map_err(|_| PreflightError::NotUtf8)
}

/// Refuses declarations before any parser sees them: a byte scan, so that no encoding trick or
/// parser option can let an entity through.
fn refuse_declarations(xml: &str) -> Result<(), PreflightError> {
    let lower = xml.to_ascii_lowercase();
    if lower.contains("<!doctype") || lower.contains("<!entity") || lower.contains("<!element") {
        return Err(PreflightError::Doctype);
    }
    // Only UTF-8 is accepted: a declaration claiming another encoding would let a parser read
    // the bytes differently from this scan.
    if let Some(decl_end) = lower.strip_prefix("<?xml").and_then(|r| r.find("?>"))
        && let Some(enc) = lower[5..5 + decl_end].split("encoding").nth(1)
    {
        let enc = enc.trim_start_matches([' ', '=', '"', '\'']);
        if !(enc.starts_with("utf-8") || enc.starts_with("utf8")) {
            return Err(PreflightError::NotUtf8);
        }
    }
    Ok(())
}

#[derive(Default)]
struct ElementState {
    /// Non-whitespace text seen directly in this element.
    text: bool,
    /// A comment or CDATA section seen directly in this element.
    split: bool,
}

/// An attribute's value, entities resolved.
pub(super) fn attr(e: &quick_xml::events::BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// True when a resolved name is bound to the namespace `want`.
pub(super) fn is(ns: &ResolveResult<'_>, want: &[u8]) -> bool {
    matches!(ns, ResolveResult::Bound(n) if n.as_ref() == want)
}

/// Scans a whole document for the refusals above; `root` is the expected root element in the
/// SAML protocol namespace (`Response`, `LogoutRequest`, `LogoutResponse`).
pub fn scan(xml: &str, root: &'static str) -> Result<ResponseShape, PreflightError> {
    scan_rooted(xml, PROTOCOL_NS, root)
}

/// Scans a decrypted assertion the same way: its root must be a `saml:Assertion`, and it may
/// hold no other assertion and no encrypted element (the plaintext of an encrypted assertion is
/// as untrusted as the message was until its own signature or the Response's covers it).
pub fn scan_assertion(xml: &str) -> Result<ResponseShape, PreflightError> {
    scan_rooted(xml, ASSERTION_NS, "Assertion")
}

fn scan_rooted(
    xml: &str,
    root_ns: &[u8],
    root: &'static str,
) -> Result<ResponseShape, PreflightError> {
    refuse_declarations(xml)?;
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut shape = ResponseShape::default();
    // Local names of open elements, with their namespace class.
    let mut stack: Vec<(Vec<u8>, u8, ElementState)> = Vec::new();
    let (mut assertions, mut responses, mut statuses) = (0usize, 0usize, 0usize);
    let (mut encrypted_data, mut encrypted_keys) = (0usize, 0usize);
    let (mut response_signatures, mut assertion_signatures, mut other_signatures) =
        (0usize, 0usize, 0usize);
    let is_response = root_ns == PROTOCOL_NS && root == "Response";
    let mut seen_root = false;
    // Which signature we are inside: 1 = on the Response, 2 = on the Assertion.
    let mut signature_owner: Option<(usize, u8)> = None;
    const OTHER: u8 = 0;
    const SAMLP: u8 = 1;
    const SAML: u8 = 2;
    const DS: u8 = 3;
    const XENC: u8 = 4;
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .map_err(|_| PreflightError::Malformed)?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name().as_ref().to_vec();
                let class = if is(&ns, PROTOCOL_NS) {
                    SAMLP
                } else if is(&ns, ASSERTION_NS) {
                    SAML
                } else if is(&ns, DSIG_NS) {
                    DS
                } else if is(&ns, XENC_NS) {
                    XENC
                } else {
                    OTHER
                };
                if !seen_root {
                    seen_root = true;
                    let want = if root_ns == PROTOCOL_NS { SAMLP } else { SAML };
                    if class != want || local != root.as_bytes() {
                        return Err(PreflightError::WrongRoot(root));
                    }
                    shape.id = attr(e, b"ID");
                    shape.in_response_to = attr(e, b"InResponseTo");
                    shape.destination = attr(e, b"Destination");
                } else if stack.is_empty() {
                    return Err(PreflightError::Malformed);
                }
                let depth = stack.len();
                let parent = stack.last().map(|(n, c, _)| (n.as_slice(), *c));
                // Where each of these may stand, whatever its namespace: an assertion (plain or
                // encrypted) only as a child of the Response (or as the root of a decrypted
                // one), its EncryptedData only as the child of that EncryptedAssertion, its
                // keys only inside it. A decoy anywhere else, in any namespace or none, is
                // refused here, before the signature or any RSA operation sees it.
                let inside_encrypted = stack
                    .iter()
                    .any(|(n, c, _)| *c == SAML && n == b"EncryptedAssertion");
                let placed = match local.as_slice() {
                    b"Assertion" | b"EncryptedAssertion" => Some(
                        class == SAML
                            && ((is_response && depth == 1)
                                || (root_ns == ASSERTION_NS && depth == 0)),
                    ),
                    b"EncryptedData" => {
                        Some(class == XENC && parent == Some((b"EncryptedAssertion", SAML)))
                    }
                    b"EncryptedKey" => Some(class == XENC && inside_encrypted),
                    // A signature only on the message or on the assertion (one each), never
                    // in Extensions or elsewhere: libxmlsec1 digests every Reference before
                    // it checks SignatureValue, so a stray signature with thousands of them
                    // is that much hashing for a stranger's POST.
                    b"Signature" if class == DS => {
                        Some(depth == 1 || parent == Some((b"Assertion", SAML)))
                    }
                    b"Manifest" | b"Object" if class == DS => Some(false),
                    _ => None,
                };
                if placed == Some(false) {
                    return Err(PreflightError::Misplaced(match local.as_slice() {
                        b"Assertion" => "Assertion",
                        b"EncryptedAssertion" => "EncryptedAssertion",
                        b"EncryptedData" => "EncryptedData",
                        b"EncryptedKey" => "EncryptedKey",
                        b"Signature" => "Signature",
                        b"Manifest" => "Manifest",
                        _ => "Object",
                    }));
                }
                match (class, local.as_slice()) {
                    (SAMLP, b"Response")
                    | (SAMLP, b"LogoutRequest")
                    | (SAMLP, b"LogoutResponse") => {
                        if root_ns == ASSERTION_NS {
                            return Err(PreflightError::Misplaced("protocol message"));
                        }
                        responses += 1;
                        if responses > 1 {
                            return Err(PreflightError::Duplicated("protocol message"));
                        }
                    }
                    (SAML, b"Assertion") => {
                        assertions += 1;
                        if assertions > 1 {
                            return Err(PreflightError::AssertionCount(assertions));
                        }
                        shape.assertion_id = attr(e, b"ID");
                    }
                    (SAML, b"EncryptedAssertion") => {
                        assertions += 1;
                        if assertions > 1 {
                            return Err(PreflightError::AssertionCount(assertions));
                        }
                        shape.encrypted = true;
                    }
                    (XENC, b"EncryptedData") => {
                        encrypted_data += 1;
                        if encrypted_data > 1 {
                            return Err(PreflightError::EncryptionBounds);
                        }
                    }
                    (XENC, b"EncryptedKey") => {
                        encrypted_keys += 1;
                        if encrypted_keys > MAX_ENCRYPTED_KEYS {
                            return Err(PreflightError::EncryptionBounds);
                        }
                    }
                    (SAMLP, b"StatusCode") if depth == 2 => {
                        statuses += 1;
                        if statuses > 1 {
                            return Err(PreflightError::Duplicated("top-level StatusCode"));
                        }
                        shape.status = attr(e, b"Value");
                    }
                    (DS, b"Signature") => {
                        let owner = match parent {
                            Some((b"Response", SAMLP)) if depth == 1 => 1,
                            Some((b"Assertion", SAML)) => 2,
                            // The root of another message (LogoutRequest): not ours to read.
                            _ => 0,
                        };
                        let seen = match owner {
                            1 => &mut response_signatures,
                            2 => &mut assertion_signatures,
                            _ => &mut other_signatures,
                        };
                        *seen += 1;
                        if *seen > 1 {
                            return Err(PreflightError::Duplicated("signature"));
                        }
                        signature_owner = (owner != 0).then_some((depth, owner));
                    }
                    (DS, b"Reference") => {
                        if let Some((_, owner)) = signature_owner {
                            let uri = attr(e, b"URI");
                            let slot = if owner == 1 {
                                &mut shape.response_signature_ref
                            } else {
                                &mut shape.assertion_signature_ref
                            };
                            if slot.is_some() {
                                return Err(PreflightError::Duplicated("signature reference"));
                            }
                            *slot = uri;
                        }
                    }
                    _ => {}
                }
                if matches!(ev, Event::Start(_)) {
                    if stack.len() >= MAX_DEPTH {
                        return Err(PreflightError::TooDeep);
                    }
                    stack.push((local, class, ElementState::default()));
                }
            }
            Event::End(_) => {
                let (_, _, st) = stack.pop().ok_or(PreflightError::Malformed)?;
                if st.text && st.split {
                    return Err(PreflightError::SplitText);
                }
                if let Some((d, _)) = signature_owner
                    && stack.len() == d
                {
                    signature_owner = None;
                }
            }
            Event::Text(ref t) => {
                if let Some((_, _, st)) = stack.last_mut() {
                    if t.iter().any(|b| !b.is_ascii_whitespace()) {
                        st.text = true;
                    }
                } else if t.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(PreflightError::Malformed);
                }
            }
            Event::GeneralRef(_) => {
                // A character or predefined entity reference is part of a text value.
                if let Some((_, _, st)) = stack.last_mut() {
                    st.text = true;
                }
            }
            Event::Comment(_) | Event::CData(_) => {
                if let Some((_, _, st)) = stack.last_mut() {
                    st.split = true;
                }
            }
            Event::DocType(_) => return Err(PreflightError::Doctype),
            Event::PI(_) => {
                if seen_root {
                    return Err(PreflightError::Malformed);
                }
            }
            Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if !seen_root || !stack.is_empty() {
        return Err(PreflightError::Malformed);
    }
    let expected = if is_response || root_ns == ASSERTION_NS {
        1
    } else {
        0
    };
    if assertions != expected {
        return Err(PreflightError::AssertionCount(assertions));
    }
    if shape.encrypted && encrypted_data != 1 {
        return Err(PreflightError::EncryptionBounds);
    }
    Ok(shape)
}

/// True when the first element of `xml` is a `Response` in the SAML protocol namespace.
pub fn root_is_protocol_response(xml: &str) -> bool {
    root_is(xml, PROTOCOL_NS, b"Response")
}

/// True when the first element of `xml` has this namespace and local name.
pub fn root_is(xml: &str, ns: &[u8], local: &[u8]) -> bool {
    root_element(xml, |n, e| is(n, ns) && e.local_name().as_ref() == local).unwrap_or(false)
}

/// `f` applied to the first element of `xml`; `None` when there is none or it cannot be read.
pub(super) fn root_element<T>(
    xml: &str,
    f: impl FnOnce(&ResolveResult<'_>, &quick_xml::events::BytesStart<'_>) -> T,
) -> Option<T> {
    let mut reader = NsReader::from_str(xml);
    loop {
        match reader.read_resolved_event().ok()? {
            (n, Event::Start(e) | Event::Empty(e)) => return Some(f(&n, &e)),
            (_, Event::Eof) => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
