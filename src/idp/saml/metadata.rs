//! IdP metadata in, SP metadata out.

use super::dsig::VerifyingKeys;
use crate::config::SamlConfig;
use anyhow::{Context, bail};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use samael::crypto::CertificateDer;
use samael::metadata::{
    Endpoint, EntitiesDescriptor, EntityDescriptor, EntityDescriptorType, HTTP_POST_BINDING,
    HTTP_REDIRECT_BINDING, IndexedEndpoint, KeyDescriptor, SpSsoDescriptor,
};
use samael::service_provider::{ServiceProvider, ServiceProviderBuilder};
use samael::traits::ToXml;
use url::Url;

/// The IdP as its metadata describes it: endpoints, signing keys (loaded once) and samael's
/// service provider for building AuthnRequests.
pub struct IdpView {
    pub entity_id: String,
    pub sso_redirect: Url,
    pub slo_redirect: Option<Url>,
    /// Signing certificates (several during a key rollover).
    pub certs: Vec<X509>,
    /// Their public keys, loaded once, for the signatures of responses.
    pub(super) keys: VerifyingKeys,
    /// samael's view of us and the IdP, for building AuthnRequests.
    pub(super) sp: ServiceProvider,
}

/// The metadata reduced to what its signature covers, which must be the whole document: a
/// federation signs its aggregate (or an IdP its EntityDescriptor) with the certificate
/// configured as `idp_metadata_certificate`.
fn verify_metadata(text: &str, cfg: &SamlConfig) -> anyhow::Result<String> {
    use samael::crypto::CertificateDer;
    // libxmlsec1 is initialised on first use through samael.
    super::xmlsec_log::install(&CertificateDer::from(cfg.metadata_signers[0].to_der()?));
    let keys = VerifyingKeys::new(&cfg.metadata_signers)
        .context("idp_metadata_certificate holds a key that cannot be loaded")?;
    let verified = keys.reduce(text, &cfg.signature_algorithms).map_err(|e| {
        anyhow::anyhow!(
            "the IdP metadata's signature does not verify with idp_metadata_certificate: {e}"
        )
    })?;
    // The signed element must be the document's root: same name, same ID (a nested
    // aggregate has its own).
    let root = |xml: &str| {
        super::preflight::root_element(xml, |ns, e| {
            super::preflight::is(ns, METADATA_NS).then(|| {
                (
                    e.local_name().as_ref().to_vec(),
                    super::preflight::attr(e, b"ID"),
                )
            })
        })
        .flatten()
    };
    match (root(text), root(&verified)) {
        (Some(a), Some(b)) if a == b => Ok(verified),
        _ => bail!("the IdP metadata's signature does not cover the whole document"),
    }
}

const METADATA_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:metadata";

/// The IdP's EntityDescriptor: the document itself, or the one named `idp_entity_id` in an
/// aggregate (EntitiesDescriptor, as federations publish them).
fn select_entity(text: &str, wanted: Option<&str>) -> anyhow::Result<EntityDescriptor> {
    let aggregate = super::preflight::root_is(text, METADATA_NS, b"EntitiesDescriptor");
    let ed = if aggregate {
        let wanted = wanted.context(
            "the IdP metadata is an aggregate of several entities (EntitiesDescriptor): set idp_entity_id to the IdP's entityID",
        )?;
        let all: EntitiesDescriptor = text
            .parse()
            .context("the IdP metadata aggregate cannot be read")?;
        if let Some(t) = all.valid_until
            && t < chrono::Utc::now()
        {
            bail!("the IdP metadata aggregate expired at {t} (validUntil); fetch a fresh copy");
        }
        EntityDescriptorType::EntitiesDescriptor(all)
            .iter()
            .find(|e| e.entity_id.as_deref() == Some(wanted))
            .cloned()
            .with_context(|| {
                format!("the IdP metadata aggregate has no entity {wanted} (idp_entity_id)")
            })?
    } else {
        text.parse::<EntityDescriptor>()
            .context("the IdP metadata is not a SAML EntityDescriptor")?
    };
    if let Some(w) = wanted
        && ed.entity_id.as_deref() != Some(w)
    {
        bail!(
            "the IdP metadata describes {}, not {w} (idp_entity_id)",
            ed.entity_id.as_deref().unwrap_or("no entityID")
        );
    }
    Ok(ed)
}

fn endpoint(list: &[Endpoint], binding: &str) -> Option<Url> {
    list.iter()
        .find(|e| e.binding == binding)
        .and_then(|e| Url::parse(&e.location).ok())
}

impl IdpView {
    pub fn parse(
        text: &str,
        cfg: &SamlConfig,
        sp_key: Option<&PKey<Private>>,
    ) -> anyhow::Result<Self> {
        let lower = text.to_ascii_lowercase();
        if lower.contains("<!doctype") || lower.contains("<!entity") {
            bail!("the IdP metadata carries a DOCTYPE or entity declaration; refusing it");
        }
        let verified;
        let text = if cfg.metadata_signers.is_empty() {
            text
        } else {
            verified = verify_metadata(text, cfg)?;
            verified.as_str()
        };
        let ed = select_entity(text, cfg.idp_entity_id.as_deref())?;
        let entity_id = ed
            .entity_id
            .clone()
            .filter(|s| !s.is_empty())
            .context("the IdP metadata has no entityID")?;
        if let Some(t) = ed.valid_until
            && t < chrono::Utc::now()
        {
            bail!("the IdP metadata expired at {t} (validUntil); fetch a fresh copy");
        }
        let idp = match ed.idp_sso_descriptors.as_deref() {
            Some([one]) => one,
            Some([]) | None => bail!("the IdP metadata has no IDPSSODescriptor"),
            Some(_) => bail!("the IdP metadata has several IDPSSODescriptors"),
        };
        let sso_redirect = endpoint(&idp.single_sign_on_services, HTTP_REDIRECT_BINDING).context(
            "the IdP metadata offers no SingleSignOnService with the HTTP-Redirect binding",
        )?;
        let slo_redirect = endpoint(&idp.single_logout_services, HTTP_REDIRECT_BINDING);

        let mut sp = ServiceProviderBuilder::default()
            .entity_id(Some(cfg.entity_id.clone()))
            .acs_url(Some(cfg.acs_url.to_string()))
            .slo_url(Some(cfg.slo_url.to_string()))
            .metadata_url(Some(cfg.metadata_url.to_string()))
            .idp_metadata(ed.clone())
            .authn_name_id_format(cfg.name_id_format.clone())
            .force_authn(cfg.force_authn)
            .build()
            .context("cannot configure the SAML service provider")?;
        sp.key = sp_key.cloned();
        let der = sp
            .idp_signing_certs()
            .map_err(|e| anyhow::anyhow!("the IdP metadata has an unreadable certificate: {e}"))?
            .unwrap_or_default();
        // Without a signing certificate no response could ever be verified: refuse at start
        // (samael itself would accept unsigned responses from such an IdP).
        if der.is_empty() {
            bail!("the IdP metadata has no signing certificate, so no response could be verified");
        }
        super::xmlsec_log::install(&der[0]);
        let certs = der
            .iter()
            .map(|c: &CertificateDer| X509::from_der(c.der_data()))
            .collect::<Result<Vec<_>, _>>()
            .context("the IdP metadata has an unreadable signing certificate")?;
        let keys = VerifyingKeys::new(&certs)
            .context("the IdP metadata has a signing certificate whose key cannot be loaded")?;
        Ok(Self {
            entity_id,
            sso_redirect,
            slo_redirect,
            certs,
            keys,
            sp,
        })
    }
}

fn key_descriptor(cert: &X509, key_use: &str) -> anyhow::Result<KeyDescriptor> {
    use base64::Engine;
    Ok(KeyDescriptor {
        key_use: Some(key_use.into()),
        key_info: samael::key_info::KeyInfo {
            id: None,
            x509_data: Some(samael::key_info::X509Data {
                certificates: vec![
                    base64::engine::general_purpose::STANDARD.encode(cert.to_der()?),
                ],
            }),
        },
        encryption_methods: None,
    })
}

/// Our metadata: entityID, the ACS (HTTP-POST) and SLO (HTTP-Redirect) endpoints, and the
/// certificate for signing and encryption when a key is configured.
pub fn sp_metadata(cfg: &SamlConfig, cert: Option<&X509>) -> anyhow::Result<String> {
    let mut keys = Vec::new();
    if let Some(c) = cert {
        keys.push(key_descriptor(c, "signing")?);
        keys.push(key_descriptor(c, "encryption")?);
    }
    let sp = SpSsoDescriptor {
        protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
        key_descriptors: (!keys.is_empty()).then_some(keys),
        single_logout_services: Some(vec![Endpoint {
            binding: HTTP_REDIRECT_BINDING.into(),
            location: cfg.slo_url.to_string(),
            response_location: None,
        }]),
        name_id_formats: cfg.name_id_format.clone().map(|f| vec![f]),
        authn_requests_signed: Some(cfg.sign_requests),
        want_assertions_signed: Some(matches!(
            cfg.required_signature,
            crate::config::RequiredSignature::Assertion | crate::config::RequiredSignature::Both
        )),
        assertion_consumer_services: vec![IndexedEndpoint {
            binding: HTTP_POST_BINDING.into(),
            location: cfg.acs_url.to_string(),
            response_location: None,
            index: 0,
            is_default: Some(true),
        }],
        ..SpSsoDescriptor::default()
    };
    let ed = EntityDescriptor {
        entity_id: Some(cfg.entity_id.clone()),
        sp_sso_descriptors: Some(vec![sp]),
        ..EntityDescriptor::default()
    };
    ed.to_string()
        .map_err(|e| anyhow::anyhow!("cannot serialize the metadata: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::saml::dsig::tests::keypair;
    use base64::Engine;
    use samael::crypto::{Crypto, CryptoProvider};

    const IDP: &str = "https://idp.example.org/idp";

    fn cfg(extra: &str) -> SamlConfig {
        crate::idp::saml::test_config(extra)
    }

    fn b64(c: &X509) -> String {
        base64::engine::general_purpose::STANDARD.encode(c.to_der().unwrap())
    }

    fn entity(entity_id: &str, idp_cert: &X509, attrs: &str, signature: &str) -> String {
        let der = b64(idp_cert);
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}"{attrs}>{signature}<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{entity_id}/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    const SIGNATURE: &str = r##"<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_md"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue></ds:Signature>"##;

    fn signed(xml: &str, key: &PKey<Private>) -> String {
        Crypto::sign_xml(xml.as_bytes(), &key.private_key_to_der().unwrap()).unwrap()
    }

    fn signer(cert: &X509) -> String {
        let pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
        format!("idp_metadata_certificate = \"\"\"\n{pem}\"\"\"\n")
    }

    fn refusal(text: &str, cfg: &SamlConfig) -> String {
        match IdpView::parse(text, cfg, None) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn metadata_signed_by_the_configured_certificate_is_used_and_anything_else_refused() {
        let (_, idp_cert) = keypair();
        let (fed_key, fed_cert) = keypair();
        let (rogue_key, _) = keypair();
        let (_, other) = keypair();
        let cfg = cfg(&signer(&fed_cert));
        let doc = entity(IDP, &idp_cert, r#" ID="_md""#, SIGNATURE);
        let good = signed(&doc, &fed_key);
        let view = IdpView::parse(&good, &cfg, None).unwrap();
        assert_eq!(view.entity_id, IDP);
        assert_eq!(view.certs[0].to_der().unwrap(), idp_cert.to_der().unwrap());

        // Another IdP certificate slipped in, a rogue signer, no signature at all.
        let swapped = good.replace(&b64(&idp_cert), &b64(&other));
        assert_ne!(swapped, good);
        let rogue = signed(&doc, &rogue_key);
        let unsigned = entity(IDP, &idp_cert, "", "");
        for (what, text) in [
            ("swapped", swapped),
            ("rogue", rogue),
            ("unsigned", unsigned),
        ] {
            let e = refusal(&text, &cfg);
            assert!(e.contains("idp_metadata_certificate"), "{what}: {e}");
        }
    }

    #[test]
    fn an_aggregate_needs_idp_entity_id_and_yields_that_entity() {
        let (_, a) = keypair();
        let (_, b) = keypair();
        let other = "https://other.example.org/idp";
        let aggregate = format!(
            r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" Name="federation">{}{}</md:EntitiesDescriptor>"#,
            entity(other, &b, "", ""),
            entity(IDP, &a, "", "")
        );
        let e = refusal(&aggregate, &cfg(""));
        assert!(e.contains("idp_entity_id"), "{e}");
        let named = cfg(&format!("idp_entity_id = \"{IDP}\"\n"));
        let view = IdpView::parse(&aggregate, &named, None).unwrap();
        assert_eq!(view.entity_id, IDP);
        assert_eq!(view.certs[0].to_der().unwrap(), a.to_der().unwrap());
        let e = refusal(&aggregate, &cfg("idp_entity_id = \"https://nobody\"\n"));
        assert!(e.contains("no entity https://nobody"), "{e}");
        // A single EntityDescriptor must be the one named.
        let e = refusal(&entity(other, &b, "", ""), &named);
        assert!(e.contains(&format!("not {IDP}")), "{e}");
    }

    #[test]
    fn expired_metadata_is_refused() {
        let (_, a) = keypair();
        let old = entity(IDP, &a, r#" validUntil="2020-01-01T00:00:00Z""#, "");
        let e = refusal(&old, &cfg(""));
        assert!(e.contains("validUntil"), "{e}");
        let fresh = entity(IDP, &a, r#" validUntil="2999-01-01T00:00:00Z""#, "");
        assert!(IdpView::parse(&fresh, &cfg(""), None).is_ok());
    }
}
