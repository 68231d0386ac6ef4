//! The HTTP-Redirect binding (SAML bindings 3.4): DEFLATE + base64 in the query string, and the
//! query-string signature of section 3.4.4.1.
//!
//! The signature covers the parameters exactly as they were URL-encoded by the sender, so a
//! received signature is checked against the raw query string, never against re-encoded values
//! (encoders differ on `+` and `%20`, and on which characters they escape).

use super::SamlError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use samael::crypto::AllowedSignatureAlgorithm;
use url::Url;

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space).
fn dec(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

fn digest_for(alg: &str) -> Option<(AllowedSignatureAlgorithm, MessageDigest)> {
    use AllowedSignatureAlgorithm::*;
    let all = [
        (RsaSha256, MessageDigest::sha256()),
        (RsaSha384, MessageDigest::sha384()),
        (RsaSha512, MessageDigest::sha512()),
        (EcdsaSha256, MessageDigest::sha256()),
        (EcdsaSha384, MessageDigest::sha384()),
        (EcdsaSha512, MessageDigest::sha512()),
    ];
    all.into_iter().find(|(a, _)| a.signature_uri() == alg)
}

thread_local! {
    /// One compressor per thread, reset for each message: a new one allocates and zeroes its
    /// hash tables (a few hundred kilobytes) for a message of a kilobyte.
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::default(), false));
}

/// Raw DEFLATE (RFC 1951), as the Redirect binding wants (SAML Bindings 3.4.4.1).
fn deflate(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    DEFLATE.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            let consumed = usize::try_from(c.total_in())?;
            match c.compress_vec(&data[consumed..], &mut out, flate2::FlushCompress::Finish)? {
                flate2::Status::StreamEnd => return Ok(out),
                _ => out.reserve(out.capacity().max(64)),
            }
        }
    })
}

/// Builds `dest?<param>=...&RelayState=...&SigAlg=...&Signature=...`.
pub fn encode(
    dest: &Url,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    key: Option<&PKey<Private>>,
) -> anyhow::Result<Url> {
    let payload = STANDARD.encode(deflate(xml.as_bytes())?);
    let mut query = format!("{param}={}", enc(&payload));
    if let Some(rs) = relay_state.filter(|r| !r.is_empty()) {
        query.push_str(&format!("&RelayState={}", enc(rs)));
    }
    if let Some(key) = key {
        let (alg, ec) = if key.ec_key().is_ok() {
            (AllowedSignatureAlgorithm::EcdsaSha256, true)
        } else {
            (AllowedSignatureAlgorithm::RsaSha256, false)
        };
        query.push_str(&format!("&SigAlg={}", enc(alg.signature_uri())));
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), key)?;
        signer.update(query.as_bytes())?;
        let mut sig = signer.sign_to_vec()?;
        if ec {
            sig = ecdsa_der_to_raw(&sig, key.bits() as usize)?;
        }
        query.push_str(&format!("&Signature={}", enc(&STANDARD.encode(sig))));
    }
    let mut url = dest.clone();
    let full = match dest.query() {
        Some(q) if !q.is_empty() => format!("{q}&{query}"),
        _ => query,
    };
    url.set_query(Some(&full));
    Ok(url)
}

/// XML-DSig carries ECDSA signatures as r || s; OpenSSL speaks DER.
fn ecdsa_der_to_raw(der: &[u8], bits: usize) -> anyhow::Result<Vec<u8>> {
    let sig = openssl::ecdsa::EcdsaSig::from_der(der)?;
    let n = bits.div_ceil(8);
    let mut out = sig.r().to_vec_padded(n as i32)?;
    out.extend(sig.s().to_vec_padded(n as i32)?);
    Ok(out)
}

fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let sig = openssl::ecdsa::EcdsaSig::from_private_components(
        openssl::bn::BigNum::from_slice(r).ok()?,
        openssl::bn::BigNum::from_slice(s).ok()?,
    )
    .ok()?;
    sig.to_der().ok()
}

/// A message received over the HTTP-Redirect binding.
#[derive(Debug)]
pub struct RedirectMessage {
    /// `SAMLRequest` or `SAMLResponse`.
    pub param: &'static str,
    /// The base64 DEFLATE payload, URL-decoded.
    pub payload: String,
    pub relay_state: Option<String>,
    signed: Option<SignedParts>,
}

#[derive(Debug)]
struct SignedParts {
    octets: String,
    sig_alg: String,
    signature: String,
}

impl RedirectMessage {
    /// Splits a raw query string, keeping each parameter exactly as it was encoded.
    pub fn parse(raw_query: &str) -> Result<Self, SamlError> {
        let bad = |m: &str| SamlError::Logout(m.to_string());
        let mut found: [Option<&str>; 5] = [None; 5];
        const NAMES: [&str; 5] = [
            "SAMLRequest",
            "SAMLResponse",
            "RelayState",
            "SigAlg",
            "Signature",
        ];
        for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(i) = NAMES.iter().position(|n| *n == k) {
                if found[i].is_some() {
                    return Err(bad("a parameter appears twice in the query string"));
                }
                found[i] = Some(v);
            }
        }
        let (param, raw_payload) = match (found[0], found[1]) {
            (Some(v), None) => ("SAMLRequest", v),
            (None, Some(v)) => ("SAMLResponse", v),
            _ => return Err(bad("expected exactly one of SAMLRequest and SAMLResponse")),
        };
        let payload =
            dec(raw_payload).ok_or_else(|| bad("the payload is not URL-encoded UTF-8"))?;
        let relay_state = found[2]
            .map(|r| dec(r).ok_or_else(|| bad("RelayState is not URL-encoded UTF-8")))
            .transpose()?;
        let signed = match (found[3], found[4]) {
            (Some(alg), Some(sig)) => {
                let mut octets = format!("{param}={raw_payload}");
                if let Some(rs) = found[2] {
                    octets.push_str(&format!("&RelayState={rs}"));
                }
                octets.push_str(&format!("&SigAlg={alg}"));
                Some(SignedParts {
                    octets,
                    sig_alg: dec(alg).ok_or_else(|| bad("SigAlg is not URL-encoded UTF-8"))?,
                    signature: dec(sig).ok_or_else(|| bad("Signature is not URL-encoded"))?,
                })
            }
            (None, None) => None,
            _ => return Err(bad("SigAlg and Signature must come together")),
        };
        Ok(Self {
            param,
            payload,
            relay_state,
            signed,
        })
    }

    pub fn is_signed(&self) -> bool {
        self.signed.is_some()
    }

    /// Checks the query-string signature against any of the IdP's certificates.
    pub fn verify(
        &self,
        certs: &[X509],
        allowed: &[AllowedSignatureAlgorithm],
    ) -> Result<(), SamlError> {
        let s = self
            .signed
            .as_ref()
            .ok_or(SamlError::SignatureRequired("a signed redirect"))?;
        let (alg, digest) = digest_for(&s.sig_alg).ok_or(SamlError::BadSignature)?;
        if !allowed.contains(&alg) {
            return Err(SamlError::BadSignature);
        }
        let raw = STANDARD
            .decode(s.signature.trim())
            .map_err(|_| SamlError::BadSignature)?;
        let ec = matches!(
            alg,
            AllowedSignatureAlgorithm::EcdsaSha256
                | AllowedSignatureAlgorithm::EcdsaSha384
                | AllowedSignatureAlgorithm::EcdsaSha512
        );
        let sig = if ec {
            ecdsa_raw_to_der(&raw).ok_or(SamlError::BadSignature)?
        } else {
            raw
        };
        for cert in certs {
            let Ok(key) = cert.public_key() else { continue };
            if (key.ec_key().is_ok()) != ec {
                continue;
            }
            let Ok(mut v) = openssl::sign::Verifier::new(digest, &key) else {
                continue;
            };
            if v.update(s.octets.as_bytes()).is_ok() && v.verify(&sig).unwrap_or(false) {
                return Ok(());
            }
        }
        Err(SamlError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    /// The reused compressor gives what a fresh one does, message after message, for short,
    /// long and incompressible input.
    #[test]
    fn the_reused_compressor_round_trips_every_message() {
        use std::io::Read;
        let mut noise = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..100_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            noise.push((x >> 16) as u8);
        }
        let long = "<samlp:AuthnRequest/>".repeat(5000).into_bytes();
        for msg in [
            b"".to_vec(),
            b"<a/>".to_vec(),
            long,
            noise,
            b"<b/>".to_vec(),
        ] {
            let packed = super::deflate(&msg).unwrap();
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(packed.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, msg);
        }
    }

    use super::*;

    fn rsa_key_and_cert() -> (PKey<Private>, X509) {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (key, b.build())
    }

    #[test]
    fn a_signed_redirect_verifies_and_any_change_breaks_it() {
        let (key, cert) = rsa_key_and_cert();
        let dest = Url::parse("https://idp.example/slo?tenant=a b").unwrap();
        let url = encode(&dest, "SAMLRequest", "<x/>", Some("rs +/&="), Some(&key)).unwrap();
        let q = url.query().unwrap();
        let msg = RedirectMessage::parse(q).unwrap();
        assert_eq!(msg.relay_state.as_deref(), Some("rs +/&="));
        msg.verify(
            std::slice::from_ref(&cert),
            &[AllowedSignatureAlgorithm::RsaSha256],
        )
        .unwrap();
        // Not allowed algorithm.
        assert!(
            msg.verify(
                std::slice::from_ref(&cert),
                &[AllowedSignatureAlgorithm::RsaSha512]
            )
            .is_err()
        );
        // Tampered relay state.
        let tampered = q.replace("RelayState=rs", "RelayState=rx");
        let msg = RedirectMessage::parse(&tampered).unwrap();
        assert!(
            msg.verify(
                std::slice::from_ref(&cert),
                &[AllowedSignatureAlgorithm::RsaSha256]
            )
            .is_err()
        );
        // Another key.
        let (_, other) = rsa_key_and_cert();
        let msg = RedirectMessage::parse(q).unwrap();
        assert!(
            msg.verify(&[other], &[AllowedSignatureAlgorithm::RsaSha256])
                .is_err()
        );
        // Unsigned.
        let plain = encode(&dest, "SAMLRequest", "<x/>", None, None).unwrap();
        let msg = RedirectMessage::parse(plain.query().unwrap()).unwrap();
        assert!(!msg.is_signed());
        assert!(
            msg.verify(&[cert], &[AllowedSignatureAlgorithm::RsaSha256])
                .is_err()
        );
    }

    #[test]
    fn a_duplicated_parameter_is_refused() {
        assert!(RedirectMessage::parse("SAMLRequest=a&SAMLRequest=b").is_err());
        assert!(RedirectMessage::parse("SAMLRequest=a&SAMLResponse=b").is_err());
        assert!(RedirectMessage::parse("SAMLRequest=a&SigAlg=b").is_err());
    }

    #[test]
    fn ecdsa_signatures_round_trip_in_xmldsig_form() {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let url = encode(
            &Url::parse("https://idp/x").unwrap(),
            "SAMLResponse",
            "<y/>",
            None,
            Some(&key),
        )
        .unwrap();
        let msg = RedirectMessage::parse(url.query().unwrap()).unwrap();
        msg.verify(&[cert], &[AllowedSignatureAlgorithm::EcdsaSha256])
            .unwrap();
    }
}
