//! XML Encryption of an `EncryptedAssertion` (XML Encryption 1.1), decrypted with OpenSSL.
//!
//! samael decrypts only AES-128 and reads `KeyInfo` only when it declares its own namespace
//! prefix, while ADFS and Entra ID send AES-256 and IdPs write KeyInfo in other shapes. So
//! this module reads the structure itself and leaves the cryptography to OpenSSL: RSA-OAEP
//! key transport (rsa-oaep-mgf1p and xmlenc11 rsa-oaep, SHA-1 or SHA-2 digests) and AES-CBC or
//! AES-GCM content. RSA PKCS#1 v1.5 key transport is refused (Bleichenbacher's attack), and
//! every failure is the same error to the sender.

use super::SamlError;
use super::preflight::MAX_ENCRYPTED_KEYS;
use super::tree::{elements, is};
use base64::Engine;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use roxmltree::Node;

const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// The step at which decryption failed: for the audit trail and the tests, never shown (the
/// sender sees one message whatever the step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The elements are not the ones XML Encryption defines, in their places.
    Structure,
    /// More than one `EncryptedData` or more than [`MAX_ENCRYPTED_KEYS`] keys: refused before
    /// any RSA operation.
    Bounds,
    /// A key-transport or content algorithm we do not accept (PKCS#1 v1.5, unknown digests,
    /// AES-CBC without a Response signature over the ciphertext unless the connection opts in).
    Algorithm,
    /// Neither key unwrapped, or the content did not decrypt with the key: one step on purpose
    /// (a failed unwrap goes on with a random key, so that both fail alike).
    Cipher,
    /// The plaintext is not one UTF-8 element.
    Plaintext,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Structure => "saml_decryption_structure",
            Self::Bounds => "saml_decryption_bounds",
            Self::Algorithm => "saml_decryption_algorithm",
            Self::Cipher => "saml_decryption_cipher",
            Self::Plaintext => "saml_decryption_plaintext",
        }
    }
}

#[derive(Debug)]
struct EncryptedKey {
    algorithm: String,
    digest: Option<String>,
    mgf: Option<String>,
    cipher_value: String,
}

#[derive(Debug)]
struct Parsed {
    data_algorithm: String,
    data_cipher_value: String,
    keys: Vec<EncryptedKey>,
}

/// The one child `ns:local` of `n`, if any; two are a structure failure.
fn only_child<'a, 'i>(
    n: Node<'a, 'i>,
    ns: &str,
    local: &str,
) -> Result<Option<Node<'a, 'i>>, Failure> {
    let mut it = elements(n).filter(|c| is(c, ns, local));
    let first = it.next();
    if it.next().is_some() {
        return Err(Failure::Structure);
    }
    Ok(first)
}

/// `CipherData/CipherValue` of an `EncryptedData` or `EncryptedKey`: its text (a
/// `CipherReference` would make us fetch something, and is refused).
fn cipher_value(n: Node<'_, '_>) -> Result<String, Failure> {
    let data = only_child(n, XENC, "CipherData")?.ok_or(Failure::Structure)?;
    if elements(data).count() != 1 {
        return Err(Failure::Structure);
    }
    let value = only_child(data, XENC, "CipherValue")?.ok_or(Failure::Structure)?;
    if elements(value).next().is_some() {
        return Err(Failure::Structure);
    }
    Ok(value
        .children()
        .filter_map(|t| t.is_text().then(|| t.text()).flatten())
        .collect())
}

fn algorithm(n: Node<'_, '_>) -> Result<String, Failure> {
    only_child(n, XENC, "EncryptionMethod")?
        .and_then(|m| m.attribute("Algorithm"))
        .map(str::to_string)
        .ok_or(Failure::Structure)
}

fn encrypted_key(k: Node<'_, '_>) -> Result<EncryptedKey, Failure> {
    let method = only_child(k, XENC, "EncryptionMethod")?.ok_or(Failure::Structure)?;
    let attr_of = |ns: &str, local: &str| -> Result<Option<String>, Failure> {
        Ok(only_child(method, ns, local)?
            .and_then(|d| d.attribute("Algorithm"))
            .map(str::to_string))
    };
    Ok(EncryptedKey {
        algorithm: method
            .attribute("Algorithm")
            .ok_or(Failure::Structure)?
            .to_string(),
        digest: attr_of(DSIG, "DigestMethod")?,
        mgf: attr_of(XENC11, "MGF")?,
        cipher_value: cipher_value(k)?,
    })
}

/// Reads an `EncryptedAssertion` node (SAML core 2.3.4: one `xenc:EncryptedData`, its keys in
/// the data's `ds:KeyInfo` or beside it) by namespace and local name. Every count is bounded
/// before anything is decoded.
fn parse(assertion: Node<'_, '_>) -> Result<Parsed, Failure> {
    let mut data = None;
    let mut key_nodes = Vec::new();
    for c in elements(assertion) {
        if is(&c, XENC, "EncryptedData") && data.is_none() {
            data = Some(c);
        } else if is(&c, XENC, "EncryptedKey") {
            key_nodes.push(c);
        } else if is(&c, XENC, "EncryptedData") {
            return Err(Failure::Bounds);
        } else {
            return Err(Failure::Structure);
        }
    }
    let data = data.ok_or(Failure::Structure)?;
    if let Some(info) = only_child(data, DSIG, "KeyInfo")? {
        for c in elements(info) {
            if is(&c, XENC, "EncryptedKey") {
                key_nodes.push(c);
            } else if !is(&c, DSIG, "KeyName") && !is(&c, DSIG, "RetrievalMethod") {
                return Err(Failure::Structure);
            }
        }
    }
    // Anything named like an encryption element below what we read is a decoy or a nesting
    // no IdP sends; counted over the whole subtree, before any RSA operation.
    let count = |local: &str| {
        assertion
            .descendants()
            .filter(|d| d.is_element() && d.tag_name().name() == local)
            .count()
    };
    if count("EncryptedData") != 1 || count("EncryptedKey") != key_nodes.len() {
        return Err(Failure::Bounds);
    }
    if key_nodes.is_empty() {
        return Err(Failure::Structure);
    }
    if key_nodes.len() > MAX_ENCRYPTED_KEYS {
        return Err(Failure::Bounds);
    }
    Ok(Parsed {
        data_algorithm: algorithm(data)?,
        data_cipher_value: cipher_value(data)?,
        keys: key_nodes
            .into_iter()
            .map(encrypted_key)
            .collect::<Result<_, _>>()?,
    })
}

fn b64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

fn digest(uri: Option<&str>) -> Option<&'static MdRef> {
    Some(match uri {
        None | Some("http://www.w3.org/2000/09/xmldsig#sha1") => Md::sha1(),
        Some("http://www.w3.org/2001/04/xmlenc#sha256") => Md::sha256(),
        Some("http://www.w3.org/2001/04/xmldsig-more#sha384") => Md::sha384(),
        Some("http://www.w3.org/2001/04/xmlenc#sha512") => Md::sha512(),
        _ => return None,
    })
}

fn mgf(uri: Option<&str>) -> Option<&'static MdRef> {
    Some(match uri {
        None | Some("http://www.w3.org/2009/xmlenc11#mgf1sha1") => Md::sha1(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha224") => Md::sha224(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha256") => Md::sha256(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha384") => Md::sha384(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha512") => Md::sha512(),
        _ => return None,
    })
}

/// The OAEP digests of a key-transport algorithm we accept.
fn key_transport(k: &EncryptedKey) -> Result<(&'static MdRef, &'static MdRef), Failure> {
    if k.algorithm == format!("{XENC}rsa-oaep-mgf1p") {
        // MGF1 with SHA-1 by definition; the digest may be named.
        Ok((
            digest(k.digest.as_deref()).ok_or(Failure::Algorithm)?,
            Md::sha1(),
        ))
    } else if k.algorithm == format!("{XENC11}rsa-oaep") {
        Ok((
            digest(k.digest.as_deref()).ok_or(Failure::Algorithm)?,
            mgf(k.mgf.as_deref()).ok_or(Failure::Algorithm)?,
        ))
    } else {
        Err(Failure::Algorithm)
    }
}

fn unwrap_key(
    k: &EncryptedKey,
    (oaep_md, mgf_md): (&'static MdRef, &'static MdRef),
    key: &PKey<Private>,
) -> Result<Vec<u8>, &'static str> {
    let wrapped = b64(&k.cipher_value).ok_or("base64")?;
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(key).map_err(|_| "key")?;
    ctx.decrypt_init().map_err(|_| "init")?;
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .map_err(|_| "padding")?;
    ctx.set_rsa_oaep_md(oaep_md).map_err(|_| "oaep md")?;
    ctx.set_rsa_mgf1_md(mgf_md).map_err(|_| "mgf1 md")?;
    let mut out = Vec::new();
    ctx.decrypt_to_vec(&wrapped, &mut out)
        .map_err(|_| "unwrap")?;
    Ok(out)
}

/// The content cipher of an algorithm URI, and whether it is an AEAD (GCM).
fn content_cipher(alg: &str) -> Option<(Cipher, bool)> {
    // The URIs exactly as the specs name them: AES-CBC in XML Encryption 1.0, AES-GCM in 1.1.
    if let Some(cbc) = alg.strip_prefix(XENC) {
        return Some(match cbc {
            "aes128-cbc" => (Cipher::aes_128_cbc(), false),
            "aes192-cbc" => (Cipher::aes_192_cbc(), false),
            "aes256-cbc" => (Cipher::aes_256_cbc(), false),
            _ => return None,
        });
    }
    Some(match alg.strip_prefix(XENC11)? {
        "aes128-gcm" => (Cipher::aes_128_gcm(), true),
        "aes192-gcm" => (Cipher::aes_192_gcm(), true),
        "aes256-gcm" => (Cipher::aes_256_gcm(), true),
        _ => return None,
    })
}

fn decrypt_content(
    (cipher, gcm): (Cipher, bool),
    key: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, &'static str> {
    if key.len() != cipher.key_len() {
        return Err("key length");
    }
    if gcm {
        // IV (96 bits) || ciphertext || tag (128 bits).
        if data.len() < 12 + 16 {
            return Err("short");
        }
        let (iv, rest) = data.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        openssl::symm::decrypt_aead(cipher, key, Some(iv), &[], ct, tag).map_err(|_| "gcm")
    } else {
        // IV || ciphertext, ISO 10126 padding (only the last byte is meaningful).
        let bs = 16;
        if data.len() < 2 * bs || !data.len().is_multiple_of(bs) {
            return Err("length");
        }
        let (iv, ct) = data.split_at(bs);
        let mut c =
            openssl::symm::Crypter::new(cipher, openssl::symm::Mode::Decrypt, key, Some(iv))
                .map_err(|_| "cbc")?;
        c.pad(false);
        let mut out = vec![0; ct.len() + bs];
        let mut n = c.update(ct, &mut out).map_err(|_| "cbc")?;
        n += c.finalize(&mut out[n..]).map_err(|_| "cbc")?;
        out.truncate(n);
        let pad = *out.last().ok_or("empty")? as usize;
        if pad == 0 || pad > bs || pad > out.len() {
            return Err("padding");
        }
        out.truncate(out.len() - pad);
        Ok(out)
    }
}

/// Decrypts an `EncryptedAssertion` node and returns the assertion's XML. `cbc_allowed` says
/// whether AES-CBC content may be decrypted: only when a verified Response signature covers
/// the ciphertext (or the connection opted in), since unauthenticated CBC is a padding oracle
/// (Jager and Somorovsky, 2011) that a signature inside the plaintext cannot close.
pub fn decrypt_assertion(
    node: Node<'_, '_>,
    key: &PKey<Private>,
    cbc_allowed: bool,
) -> Result<String, SamlError> {
    let fail = |f: Failure| {
        // The step is logged and audited, never shown: one error for every failure.
        tracing::info!(step = f.reason(), "assertion decryption failed");
        SamlError::Decryption(f)
    };
    let p = parse(node).map_err(fail)?;
    let cipher = content_cipher(&p.data_algorithm).ok_or_else(|| fail(Failure::Algorithm))?;
    if !cipher.1 && !cbc_allowed {
        // Depends only on the algorithm the sender named, so saying so leaks nothing, and it
        // is the one failure an operator can fix (sign the Response, or choose AES-GCM).
        tracing::info!("AES-CBC assertion without a Response signature refused");
        return Err(SamlError::UnsignedCbc);
    }
    let transports = p
        .keys
        .iter()
        .map(key_transport)
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let data = b64(&p.data_cipher_value).ok_or_else(|| fail(Failure::Structure))?;
    // Every key is unwrapped, and one that does not unwrap becomes a random key: the content
    // is then tried under each candidate in turn. So the number of RSA operations and the
    // outcome never depend on whether a given EncryptedKey is valid OAEP (no oracle on the RSA
    // step, also with one genuine and one forged key).
    let candidates: Vec<Vec<u8>> = p
        .keys
        .iter()
        .zip(transports)
        .map(|(k, t)| {
            unwrap_key(k, t, key)
                .ok()
                .filter(|s| s.len() == cipher.0.key_len())
                .unwrap_or_else(|| {
                    let mut random = vec![0; cipher.0.key_len()];
                    openssl::rand::rand_bytes(&mut random)
                        .expect("the OS random generator is available");
                    random
                })
        })
        .collect();
    let plain = candidates
        .iter()
        .find_map(|sym| decrypt_content(cipher, sym, &data).ok())
        .ok_or_else(|| fail(Failure::Cipher))?;
    let text = String::from_utf8(plain).map_err(|_| fail(Failure::Plaintext))?;
    let t = text.trim();
    if !t.starts_with('<') || !t.ends_with('>') {
        return Err(fail(Failure::Plaintext));
    }
    Ok(t.to_string())
}

/// The one `saml:EncryptedAssertion` child of a Response root, read by namespace and local
/// name from a tree of the bytes the caller trusts (the verified Response, or the received
/// one when only the plaintext assertion is signed).
pub fn encrypted_assertion<'a, 'i>(root: Node<'a, 'i>) -> Result<Node<'a, 'i>, SamlError> {
    let saml = super::tree::ns(super::preflight::ASSERTION_NS);
    let mut it = elements(root).filter(|c| is(c, saml, "EncryptedAssertion"));
    match (it.next(), it.next()) {
        (Some(n), None) => Ok(n),
        _ => Err(SamlError::Decryption(Failure::Structure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt(alg: &str, plaintext: &[u8], rsa: &PKey<Private>) -> String {
        let (cipher, gcm) = match alg {
            "aes256-cbc" => (Cipher::aes_256_cbc(), false),
            _ => (Cipher::aes_128_gcm(), true),
        };
        let mut key = vec![0; cipher.key_len()];
        openssl::rand::rand_bytes(&mut key).unwrap();
        let data = if gcm {
            let mut iv = [0u8; 12];
            openssl::rand::rand_bytes(&mut iv).unwrap();
            let mut tag = [0u8; 16];
            let ct = openssl::symm::encrypt_aead(cipher, &key, Some(&iv), &[], plaintext, &mut tag)
                .unwrap();
            [iv.as_slice(), &ct, &tag].concat()
        } else {
            let mut iv = [0u8; 16];
            openssl::rand::rand_bytes(&mut iv).unwrap();
            let ct = openssl::symm::encrypt(cipher, &key, Some(&iv), plaintext).unwrap();
            [iv.as_slice(), &ct].concat()
        };
        let mut ctx = openssl::pkey_ctx::PkeyCtx::new(rsa).unwrap();
        ctx.encrypt_init().unwrap();
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
            .unwrap();
        let mut wrapped = Vec::new();
        ctx.encrypt_to_vec(&key, &mut wrapped).unwrap();
        let ns = if gcm { XENC11 } else { XENC };
        let e = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        format!(
            r#"<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><xenc:EncryptedData xmlns:xenc="{XENC}"><xenc:EncryptionMethod Algorithm="{ns}{alg}"/><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><e:EncryptedKey xmlns:e="{XENC}"><e:EncryptionMethod Algorithm="{XENC}rsa-oaep-mgf1p"><DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></e:EncryptionMethod><e:CipherData><e:CipherValue>{}</e:CipherValue></e:CipherData></e:EncryptedKey></KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>"#,
            e(&wrapped),
            e(&data)
        )
    }

    fn decrypt(xml: &str, key: &PKey<Private>, cbc: bool) -> Result<String, SamlError> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        decrypt_assertion(doc.root_element(), key, cbc)
    }

    fn failure(r: Result<String, SamlError>) -> Failure {
        match r {
            Err(SamlError::Decryption(f)) => f,
            other => panic!("expected a decryption failure, got {other:?}"),
        }
    }

    fn new_key() -> PKey<Private> {
        PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
    }

    #[test]
    fn aes_cbc_and_gcm_assertions_decrypt_and_tampering_fails() {
        let rsa = new_key();
        for alg in ["aes256-cbc", "aes128-gcm"] {
            let xml = encrypt(alg, b"<saml:Assertion ID=\"a\"/>", &rsa);
            assert_eq!(
                decrypt(&xml, &rsa, true).unwrap(),
                "<saml:Assertion ID=\"a\"/>"
            );
            // A wrong key fails like wrong content. With CBC, garbage under a wrong key has
            // valid-looking padding one time in sixteen and then fails as plaintext: the
            // sender sees the same message either way.
            let f = failure(decrypt(&xml, &new_key(), true));
            if alg.ends_with("gcm") {
                assert_eq!(f, Failure::Cipher, "{alg}");
            } else {
                assert!(
                    matches!(f, Failure::Cipher | Failure::Plaintext),
                    "{alg}: {f:?}"
                );
            }
        }
        // PKCS#1 v1.5 key transport is refused outright.
        let xml = encrypt("aes128-gcm", b"<a/>", &rsa).replace("rsa-oaep-mgf1p", "rsa-1_5");
        assert_eq!(failure(decrypt(&xml, &rsa, true)), Failure::Algorithm);
    }

    /// Unauthenticated CBC is a padding oracle: only a verified Response signature over the
    /// ciphertext (or an opt-in) lets it be decrypted.
    #[test]
    fn aes_cbc_is_refused_unless_a_signature_covers_the_ciphertext() {
        let rsa = new_key();
        let xml = encrypt("aes256-cbc", b"<a/>", &rsa);
        assert!(matches!(
            decrypt(&xml, &rsa, false),
            Err(SamlError::UnsignedCbc)
        ));
        let gcm = encrypt("aes128-gcm", b"<a/>", &rsa);
        assert_eq!(decrypt(&gcm, &rsa, false).unwrap(), "<a/>");
    }

    /// Thousands of EncryptedKey elements were one RSA private-key operation each.
    #[test]
    fn more_than_two_keys_or_a_second_encrypted_data_are_refused_before_any_rsa_work() {
        let rsa = new_key();
        let xml = encrypt("aes128-gcm", b"<a/>", &rsa);
        let key_re = regex::Regex::new(r"(?s)<e:EncryptedKey .*</e:EncryptedKey>").unwrap();
        let k = key_re.find(&xml).unwrap().as_str().to_string();
        let two = xml.replacen(&k, &k.repeat(2), 1);
        assert_eq!(
            decrypt(&two, &rsa, false).unwrap(),
            "<a/>",
            "two keys are fine"
        );
        let three = xml.replacen(&k, &k.repeat(3), 1);
        assert_eq!(failure(decrypt(&three, &rsa, false)), Failure::Bounds);
        // Beside the EncryptedData, as SAML core also allows, the same bound holds.
        let beside = xml.replacen(
            "</saml:EncryptedAssertion>",
            &format!("{}</saml:EncryptedAssertion>", k.repeat(2)),
            1,
        );
        assert_eq!(failure(decrypt(&beside, &rsa, false)), Failure::Bounds);
        let data_re =
            regex::Regex::new(r"(?s)<xenc:EncryptedData .*</xenc:EncryptedData>").unwrap();
        let d = data_re.find(&xml).unwrap().as_str().to_string();
        let twice = xml.replacen(&d, &d.repeat(2), 1);
        assert_eq!(failure(decrypt(&twice, &rsa, false)), Failure::Bounds);
    }

    /// Names are read with their namespace: an EncryptedKey or CipherValue in another
    /// namespace, or one nested where XML Encryption puts none, is not read.
    #[test]
    fn encryption_elements_in_another_namespace_or_place_are_refused() {
        let rsa = new_key();
        let xml = encrypt("aes128-gcm", b"<a/>", &rsa);
        let foreign_key = xml.replace(
            r#"xmlns:e="http://www.w3.org/2001/04/xmlenc#""#,
            r#"xmlns:e="urn:example:decoy""#,
        );
        assert_eq!(
            failure(decrypt(&foreign_key, &rsa, false)),
            Failure::Structure
        );
        // A decoy EncryptedKey (any namespace) nested inside the data's CipherData.
        let nested = xml.replacen(
            "<xenc:CipherData>",
            "<xenc:CipherData><x:EncryptedKey xmlns:x=\"urn:example:decoy\"/>",
            1,
        );
        assert_ne!(nested, xml);
        assert_eq!(failure(decrypt(&nested, &rsa, false)), Failure::Bounds);
    }

    /// The deeper layer on its own, as if the preflight let a decoy through: from the tree,
    /// only the SAML-namespace EncryptedAssertion child of the root is taken, never one in a
    /// signature's KeyInfo or in another namespace.
    #[test]
    fn only_the_saml_encrypted_assertion_child_of_the_root_is_taken_from_the_tree() {
        let rsa = new_key();
        let genuine = encrypt("aes128-gcm", b"<genuine/>", &rsa);
        let decoy = encrypt("aes128-gcm", b"<decoy/>", &rsa);
        let foreign = decoy
            .replace("saml:EncryptedAssertion", "x:EncryptedAssertion")
            .replacen("xmlns:saml=", "xmlns:x=", 1)
            .replacen(
                "urn:oasis:names:tc:SAML:2.0:assertion",
                "urn:example:decoy",
                1,
            );
        let xml = format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><ds:Signature xmlns:ds="{DSIG}"><ds:KeyInfo>{decoy}</ds:KeyInfo></ds:Signature>{foreign}{genuine}</samlp:Response>"#
        );
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let node = encrypted_assertion(doc.root_element()).unwrap();
        assert_eq!(decrypt_assertion(node, &rsa, false).unwrap(), "<genuine/>");
        // Two SAML ones as children of the root: none is chosen.
        let two = xml.replace(&foreign, &decoy);
        let doc = roxmltree::Document::parse(&two).unwrap();
        assert!(encrypted_assertion(doc.root_element()).is_err());
    }
}
