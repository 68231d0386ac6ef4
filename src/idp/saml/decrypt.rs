//! XML Encryption of an `EncryptedAssertion` (XML Encryption 1.1), decrypted with OpenSSL.
//!
//! samael decrypts only AES-128 and reads `KeyInfo` only when it declares its own namespace
//! prefix, while ADFS and Entra ID send AES-256 and IdPs write KeyInfo in other shapes. So
//! this module reads the structure itself and leaves the cryptography to OpenSSL: RSA-OAEP
//! key transport (rsa-oaep-mgf1p and xmlenc11 rsa-oaep, SHA-1 or SHA-2 digests) and AES-CBC or
//! AES-GCM content. RSA PKCS#1 v1.5 key transport is refused (Bleichenbacher's attack), and
//! every failure is the same error to the sender.

use super::SamlError;
use super::preflight::attr;
use base64::Engine;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use quick_xml::events::Event;
use quick_xml::reader::NsReader;

const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";

#[derive(Default, Debug)]
struct EncryptedKey {
    algorithm: String,
    digest: Option<String>,
    mgf: Option<String>,
    cipher_value: String,
}

#[derive(Default, Debug)]
struct Parsed {
    data_algorithm: String,
    data_cipher_value: String,
    keys: Vec<EncryptedKey>,
}

fn parse(xml: &str) -> Option<Parsed> {
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut p = Parsed::default();
    let mut in_cipher_value = false;
    loop {
        let (_, ev) = reader.read_resolved_event().ok()?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name().as_ref().to_vec();
                let in_key = stack.iter().any(|n| n == b"EncryptedKey");
                let parent = stack.last().map(|n| n.as_slice());
                match (local.as_slice(), parent) {
                    (b"EncryptedKey", _) => p.keys.push(EncryptedKey::default()),
                    (b"EncryptionMethod", Some(b"EncryptedKey")) => {
                        p.keys.last_mut()?.algorithm = attr(e, b"Algorithm")?;
                    }
                    (b"EncryptionMethod", Some(b"EncryptedData")) => {
                        p.data_algorithm = attr(e, b"Algorithm")?;
                    }
                    (b"DigestMethod", Some(b"EncryptionMethod")) if in_key => {
                        p.keys.last_mut()?.digest = attr(e, b"Algorithm");
                    }
                    (b"MGF", Some(b"EncryptionMethod")) if in_key => {
                        p.keys.last_mut()?.mgf = attr(e, b"Algorithm");
                    }
                    (b"CipherValue", _) => in_cipher_value = matches!(ev, Event::Start(_)),
                    _ => {}
                }
                if matches!(ev, Event::Start(_)) {
                    stack.push(local);
                }
            }
            Event::Text(ref t) if in_cipher_value => {
                let text = t.decode().ok()?;
                let in_key = stack.iter().any(|n| n == b"EncryptedKey");
                if in_key {
                    p.keys.last_mut()?.cipher_value.push_str(&text);
                } else {
                    p.data_cipher_value.push_str(&text);
                }
            }
            Event::End(_) if stack.pop().as_deref() == Some(b"CipherValue") => {
                in_cipher_value = false;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Some(p)
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

fn unwrap_key(k: &EncryptedKey, key: &PKey<Private>) -> Result<Vec<u8>, &'static str> {
    let (oaep_md, mgf_md) = if k.algorithm == format!("{XENC}rsa-oaep-mgf1p") {
        // MGF1 with SHA-1 by definition; the digest may be named.
        (digest(k.digest.as_deref()).ok_or("digest")?, Md::sha1())
    } else if k.algorithm == format!("{XENC11}rsa-oaep") {
        (
            digest(k.digest.as_deref()).ok_or("digest")?,
            mgf(k.mgf.as_deref()).ok_or("mgf")?,
        )
    } else {
        return Err("key transport algorithm not accepted");
    };
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

fn decrypt_content(alg: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (cipher, gcm) = match alg.strip_prefix(XENC).or_else(|| alg.strip_prefix(XENC11)) {
        Some("aes128-cbc") => (Cipher::aes_128_cbc(), false),
        Some("aes192-cbc") => (Cipher::aes_192_cbc(), false),
        Some("aes256-cbc") => (Cipher::aes_256_cbc(), false),
        Some("aes128-gcm") => (Cipher::aes_128_gcm(), true),
        Some("aes192-gcm") => (Cipher::aes_192_gcm(), true),
        Some("aes256-gcm") => (Cipher::aes_256_gcm(), true),
        _ => return Err("content algorithm not accepted"),
    };
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

/// Decrypts the `EncryptedAssertion` element `xml` and returns the assertion's XML.
pub fn decrypt_assertion(xml: &str, key: &PKey<Private>) -> Result<String, SamlError> {
    let fail = |step: &str| {
        // The step is logged, never shown: one error for every failure.
        tracing::info!(step, "assertion decryption failed");
        SamlError::Decryption
    };
    let p = parse(xml).ok_or_else(|| fail("structure"))?;
    let data = b64(&p.data_cipher_value).ok_or_else(|| fail("content base64"))?;
    let mut last = "no EncryptedKey";
    for k in &p.keys {
        match unwrap_key(k, key) {
            Ok(sym) => {
                let plain = decrypt_content(&p.data_algorithm, &sym, &data).map_err(fail)?;
                let text = String::from_utf8(plain).map_err(|_| fail("utf-8"))?;
                let t = text.trim();
                if !t.starts_with('<') || !t.ends_with('>') {
                    return Err(fail("not an element"));
                }
                return Ok(t.to_string());
            }
            Err(e) => last = e,
        }
    }
    Err(fail(last))
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

    #[test]
    fn aes_cbc_and_gcm_assertions_decrypt_and_tampering_fails() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        for alg in ["aes256-cbc", "aes128-gcm"] {
            let xml = encrypt(alg, b"<saml:Assertion ID=\"a\"/>", &rsa);
            assert_eq!(
                decrypt_assertion(&xml, &rsa).unwrap(),
                "<saml:Assertion ID=\"a\"/>"
            );
            let other = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
            assert!(decrypt_assertion(&xml, &other).is_err(), "{alg}: wrong key");
        }
        // PKCS#1 v1.5 key transport is refused outright.
        let xml = encrypt("aes128-gcm", b"<a/>", &rsa).replace("rsa-oaep-mgf1p", "rsa-1_5");
        assert!(decrypt_assertion(&xml, &rsa).is_err());
    }
}
