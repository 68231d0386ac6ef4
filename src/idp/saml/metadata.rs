//! IdP metadata in, SP metadata out.

use super::dsig::VerifyingKeys;
use crate::config::SamlConfig;
use anyhow::{Context, bail};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use samael::crypto::CertificateDer;
use samael::metadata::{
    Endpoint, EntityDescriptor, HTTP_POST_BINDING, HTTP_REDIRECT_BINDING, IndexedEndpoint,
    KeyDescriptor, SpSsoDescriptor,
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
        if lower.contains("entitiesdescriptor")
            && !lower.contains("<entitydescriptor")
            && !lower.contains(":entitydescriptor")
        {
            bail!("the IdP metadata holds no EntityDescriptor");
        }
        let ed: EntityDescriptor = text
            .parse()
            .context("the IdP metadata is not a SAML EntityDescriptor (an aggregate of several entities is not supported: save the IdP's own EntityDescriptor)")?;
        let entity_id = ed
            .entity_id
            .clone()
            .filter(|s| !s.is_empty())
            .context("the IdP metadata has no entityID")?;
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
