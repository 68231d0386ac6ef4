//! The settings of a SAML 2.0 connection (`kind = "saml"`), as written in its
//! `[connection.saml]` table and as validated.

use super::raw::Collector;
use super::{Secret, SecretSource};
use samael::crypto::AllowedSignatureAlgorithm;
use serde::Deserialize;
use std::time::Duration;
use url::Url;

/// Where the IdP's metadata comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataSource {
    File(std::path::PathBuf),
    /// Fetched at start and every `metadata_refresh`; the last good copy is kept on failure.
    Url(Url),
}

/// Which signatures a response must carry. The SAML web browser SSO profile requires the
/// assertion to be protected by a signature on the assertion or on the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredSignature {
    Either,
    Response,
    Assertion,
    Both,
}

/// What identifies a person: the NameID (default) or an attribute such as `objectGUID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SamlSubject {
    NameId,
    Attribute(String),
}

#[derive(Debug, Clone)]
pub struct SamlConfig {
    pub idp_metadata: MetadataSource,
    pub metadata_refresh: Duration,
    /// Who signs the metadata (a federation's signing certificates): when set, metadata whose
    /// signature does not verify with one of them is refused.
    pub metadata_signers: Vec<openssl::x509::X509>,
    /// The IdP's entityID: selects it from an aggregate (EntitiesDescriptor), and must match a
    /// single EntityDescriptor.
    pub idp_entity_id: Option<String>,
    /// Our entityID (the Audience the IdP must name).
    pub entity_id: String,
    pub metadata_url: Url,
    pub acs_url: Url,
    pub slo_url: Url,
    /// The SP's private key (PEM): signs AuthnRequests and logout messages, decrypts assertions.
    pub sp_private_key: Option<Secret>,
    /// The SP's certificate (PEM), published in our metadata.
    pub sp_certificate: Option<String>,
    pub sign_requests: bool,
    pub required_signature: RequiredSignature,
    pub signature_algorithms: Vec<AllowedSignatureAlgorithm>,
    pub clock_skew: Duration,
    pub allow_idp_initiated: bool,
    /// Decrypt AES-CBC content even when no verified Response signature covers the ciphertext
    /// (an IdP that signs only inside the encryption and cannot use AES-GCM). Off by default:
    /// unauthenticated CBC is a padding oracle.
    pub allow_unsigned_cbc: bool,
    /// Accept a NameID whose format is not persistent (emailAddress, unspecified, ...) as the
    /// account key. Off by default: such a NameID can change, or be given to someone else.
    pub allow_unstable_name_id: bool,
    pub name_id_format: Option<String>,
    pub subject: SamlSubject,
    /// NameQualifiers a subject NameID may carry besides the IdP's entityID: the same IdP
    /// under another name (an old entityID, a proxy's). Read when the NameID is the account
    /// key; see `idp::saml::profile` for why.
    pub accepted_name_qualifiers: Vec<String>,
    /// SPNameQualifiers a subject NameID may carry besides our entityID: an affiliation we
    /// belong to (SAML core 8.3.7), whose members share the IdP's identifiers.
    pub accepted_sp_name_qualifiers: Vec<String>,
    pub force_authn: bool,
    /// Larger POSTed responses are refused before any parsing.
    pub max_response_bytes: usize,
}

/// The keys only a SAML connection takes beside `kind` (the shared ones are in `connection`):
/// its settings are one table down, in `[connection.saml]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSamlConnection {
    #[serde(default)]
    pub saml: RawSaml,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSaml {
    pub idp_metadata_url: Option<String>,
    pub idp_metadata_file: Option<String>,
    pub idp_metadata_refresh: Option<String>,
    pub idp_metadata_certificate: Option<SecretSource>,
    pub idp_entity_id: Option<String>,
    pub entity_id: Option<String>,
    pub sp_private_key: Option<SecretSource>,
    pub sp_certificate: Option<SecretSource>,
    pub sign_requests: Option<bool>,
    pub required_signature: Option<String>,
    pub signature_algorithms: Option<Vec<String>>,
    pub allow_idp_initiated: Option<bool>,
    pub allow_unsigned_cbc: Option<bool>,
    pub allow_unstable_name_id: Option<bool>,
    pub name_id_format: Option<String>,
    pub subject_attribute: Option<String>,
    pub accepted_name_qualifiers: Option<Vec<String>>,
    pub accepted_sp_name_qualifiers: Option<Vec<String>>,
    pub force_authn: Option<bool>,
    pub max_response_bytes: Option<usize>,
}

const DEFAULT_ALGS: &[&str] = &[
    "rsa-sha256",
    "rsa-sha384",
    "rsa-sha512",
    "ecdsa-sha256",
    "ecdsa-sha384",
    "ecdsa-sha512",
];

fn parse_alg(name: &str) -> Option<AllowedSignatureAlgorithm> {
    use AllowedSignatureAlgorithm::*;
    Some(match name {
        "rsa-sha256" => RsaSha256,
        "rsa-sha384" => RsaSha384,
        "rsa-sha512" => RsaSha512,
        "ecdsa-sha256" => EcdsaSha256,
        "ecdsa-sha384" => EcdsaSha384,
        "ecdsa-sha512" => EcdsaSha512,
        _ => return None,
    })
}

pub(super) fn validate(
    c: &mut Collector,
    key: &str,
    name: &str,
    raw: RawSaml,
    clock_skew: Duration,
    public_url: &Url,
) -> Option<SamlConfig> {
    let endpoint = |path: &str| {
        public_url
            .join(&format!("saml/{name}/{path}"))
            .expect("a connection name is a valid URL segment")
    };
    let idp_metadata = match (&raw.idp_metadata_url, &raw.idp_metadata_file) {
        (Some(u), None) => match Url::parse(u) {
            Ok(url)
                if url.scheme() == "https"
                    || (url.scheme() == "http" && super::raw::is_loopback(&url)) =>
            {
                Some(MetadataSource::Url(url))
            }
            _ => {
                c.push(
                    format!("{key}.idp_metadata_url"),
                    Some(u),
                    "must be an https URL (plain http only on loopback)",
                    "write the IdP's metadata URL, or download it and use idp_metadata_file",
                );
                None
            }
        },
        (None, Some(f)) => Some(MetadataSource::File(f.into())),
        (Some(_), Some(_)) => {
            c.push(
                format!("{key}.idp_metadata_url"),
                None,
                "is set together with idp_metadata_file",
                "keep exactly one of the two",
            );
            None
        }
        (None, None) => {
            c.push(
                format!("{key}.idp_metadata_url"),
                None,
                "is missing",
                "write the IdP's metadata URL (idp_metadata_url) or a file (idp_metadata_file)",
            );
            None
        }
    };
    let metadata_refresh = c.duration(
        &format!("{key}.idp_metadata_refresh"),
        raw.idp_metadata_refresh.as_deref(),
        Duration::from_secs(3600),
    );
    let metadata_signers = match raw
        .idp_metadata_certificate
        .as_ref()
        .and_then(|s| c.secret(&format!("{key}.idp_metadata_certificate"), s))
    {
        None => Vec::new(),
        Some(pem) => match openssl::x509::X509::stack_from_pem(pem.expose().as_bytes()) {
            Ok(certs) if !certs.is_empty() => certs,
            _ => {
                c.push(
                    format!("{key}.idp_metadata_certificate"),
                    None,
                    "holds no PEM certificate",
                    "point it at the PEM file of the certificate(s) that sign the metadata, e.g. { file = \"/etc/jitbridge/federation.pem\" }",
                );
                Vec::new()
            }
        },
    };
    if raw.idp_entity_id.as_deref() == Some("") {
        c.push(
            format!("{key}.idp_entity_id"),
            Some(""),
            "is empty",
            "write the IdP's entityID, or remove the key",
        );
    }
    let metadata_url = endpoint("metadata");
    let entity_id = raw
        .entity_id
        .clone()
        .unwrap_or_else(|| metadata_url.to_string());
    if entity_id.is_empty() || entity_id.len() > 1024 {
        c.push(
            format!("{key}.entity_id"),
            Some(&entity_id),
            "must be 1-1024 characters",
            "write a URI that names this service provider, or remove the key for the metadata URL",
        );
    }
    let sp_private_key = raw
        .sp_private_key
        .as_ref()
        .and_then(|s| c.secret(&format!("{key}.sp_private_key"), s));
    if let Some(k) = &sp_private_key
        && openssl::pkey::PKey::private_key_from_pem(k.expose().as_bytes()).is_err()
    {
        c.push(
            format!("{key}.sp_private_key"),
            None,
            "is not a PEM private key",
            "point it at a PEM file (-----BEGIN PRIVATE KEY-----), e.g. { file = \"/etc/jitbridge/sp.key\" }",
        );
    }
    let sp_certificate = raw
        .sp_certificate
        .as_ref()
        .and_then(|s| c.secret(&format!("{key}.sp_certificate"), s))
        .map(|s| s.expose().to_string());
    if let Some(pem) = &sp_certificate
        && openssl::x509::X509::from_pem(pem.as_bytes()).is_err()
    {
        c.push(
            format!("{key}.sp_certificate"),
            None,
            "is not a PEM certificate",
            "point it at a PEM file (-----BEGIN CERTIFICATE-----)",
        );
    }
    if sp_private_key.is_some() != sp_certificate.is_some() {
        c.push(
            format!("{key}.sp_certificate"),
            None,
            "must be configured together with sp_private_key",
            "set both (the certificate is published in our metadata) or neither",
        );
    }
    let sign_requests = raw.sign_requests.unwrap_or(sp_private_key.is_some());
    if sign_requests && sp_private_key.is_none() {
        c.push(
            format!("{key}.sign_requests"),
            Some("true"),
            "needs a key to sign with",
            "configure sp_private_key and sp_certificate, or set sign_requests = false",
        );
    }
    let required_signature = match raw.required_signature.as_deref().unwrap_or("either") {
        "either" => RequiredSignature::Either,
        "response" => RequiredSignature::Response,
        "assertion" => RequiredSignature::Assertion,
        "both" => RequiredSignature::Both,
        other => {
            c.push(
                format!("{key}.required_signature"),
                Some(other),
                "is not a known choice",
                "write \"either\" (default), \"response\", \"assertion\" or \"both\"",
            );
            RequiredSignature::Either
        }
    };
    let alg_names = raw
        .signature_algorithms
        .unwrap_or_else(|| DEFAULT_ALGS.iter().map(|s| s.to_string()).collect());
    let mut signature_algorithms = Vec::new();
    for a in &alg_names {
        match parse_alg(a) {
            Some(alg) => signature_algorithms.push(alg),
            None => c.push(
                format!("{key}.signature_algorithms"),
                Some(a),
                "is not an accepted XML signature algorithm (SHA-1 and DSA are refused)",
                "use rsa-sha256, rsa-sha384, rsa-sha512, ecdsa-sha256, ecdsa-sha384 or ecdsa-sha512",
            ),
        }
    }
    if alg_names.is_empty() {
        c.push(
            format!("{key}.signature_algorithms"),
            None,
            "is empty",
            "remove the key for the safe default list",
        );
    }
    let subject = match raw.subject_attribute {
        Some(a) if !a.is_empty() => SamlSubject::Attribute(a),
        Some(_) => {
            c.push(
                format!("{key}.subject_attribute"),
                Some(""),
                "is empty",
                "name the attribute that identifies a person for good (e.g. objectGUID), or remove the key to use the NameID",
            );
            SamlSubject::NameId
        }
        None => SamlSubject::NameId,
    };
    let accepted_name_qualifiers = qualifiers(
        c,
        &format!("{key}.accepted_name_qualifiers"),
        raw.accepted_name_qualifiers,
        "the entityID the identity provider writes as NameQualifier",
    );
    let accepted_sp_name_qualifiers = qualifiers(
        c,
        &format!("{key}.accepted_sp_name_qualifiers"),
        raw.accepted_sp_name_qualifiers,
        "the affiliation's ID the identity provider writes as SPNameQualifier",
    );
    let max_response_bytes = raw.max_response_bytes.unwrap_or(1024 * 1024);
    if !(4096..=16 * 1024 * 1024).contains(&max_response_bytes) {
        c.push(
            format!("{key}.max_response_bytes"),
            Some(&max_response_bytes.to_string()),
            "is outside 4096..=16777216",
            "remove the key for the 1 MiB default, or raise it for very large group lists",
        );
    }
    Some(SamlConfig {
        idp_metadata: idp_metadata?,
        metadata_refresh,
        metadata_signers,
        idp_entity_id: raw.idp_entity_id.filter(|e| !e.is_empty()),
        entity_id,
        metadata_url,
        acs_url: endpoint("acs"),
        slo_url: endpoint("slo"),
        sp_private_key,
        sp_certificate,
        sign_requests,
        required_signature,
        signature_algorithms,
        clock_skew,
        allow_idp_initiated: raw.allow_idp_initiated.unwrap_or(false),
        allow_unsigned_cbc: raw.allow_unsigned_cbc.unwrap_or(false),
        allow_unstable_name_id: raw.allow_unstable_name_id.unwrap_or(false),
        name_id_format: raw.name_id_format,
        subject,
        accepted_name_qualifiers,
        accepted_sp_name_qualifiers,
        force_authn: raw.force_authn.unwrap_or(false),
        max_response_bytes,
    })
}

/// A list of NameID qualifiers: each one a non-empty URI of at most 1024 characters (an empty
/// qualifier qualifies nothing, and listing one would admit any NameID that carries it).
fn qualifiers(c: &mut Collector, key: &str, raw: Option<Vec<String>>, what: &str) -> Vec<String> {
    let list = raw.unwrap_or_default();
    for q in &list {
        if q.trim().is_empty() || q.len() > 1024 || q.trim() != q {
            c.push(
                key,
                Some(q),
                "holds an empty, padded or over-long qualifier (1-1024 characters, no surrounding spaces)",
                format!("write {what} exactly, or remove the entry"),
            );
        }
    }
    list
}
