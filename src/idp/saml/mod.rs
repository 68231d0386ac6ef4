//! The SAML 2.0 service-provider adapter: IdP metadata, AuthnRequests over HTTP-Redirect,
//! response validation at the ACS, and single logout.
//!
//! libxmlsec1 verifies XML signatures ([`dsig`]: keys loaded once, same-document references
//! and a transform allow-list, the pre-digest form as the only thing processed); the verified
//! bytes become one tree, read by namespace and local name ([`assertion`], [`tree`]); `samael`
//! builds AuthnRequests and metadata;
//! [`validate`] checks what SAML core and the browser SSO profile ask of a response (time
//! windows, issuer, audience, destination, recipient, InResponseTo, status). Around them:
//! refusing DOCTYPEs and wrapping shapes before parsing ([`preflight`]), the signature policy
//! of the connection, encrypted assertions ([`decrypt`]), redirect-binding signatures
//! ([`redirect`]), logout messages ([`logout`]) and the checks of a received LogoutRequest
//! ([`slo`]).
//! A verified response becomes a protocol-neutral login ([`VerifiedResponse::into_login`])
//! that carries its replay key; the replay cache lives in the session store, shared by
//! replicas, and the login service records the key there.

mod assertion;
pub mod decrypt;
pub mod dsig;
pub mod logout;
mod metadata;
pub mod preflight;
mod profile;
pub mod redirect;
mod response;
pub mod slo;
mod tree;
mod validate;
pub(crate) mod xmlsec_log;

use crate::config::{ConnectionConfig, MetadataSource, SamlConfig};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use url::Url;

pub use metadata::IdpView;
pub use response::VerifiedResponse;

/// Why a SAML message was refused. Messages are safe to show and to log: they say what failed,
/// never the assertion's content.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("{0}")]
    Preflight(#[from] preflight::PreflightError),
    #[error("the identity provider's metadata is not available yet")]
    NoMetadata,
    #[error("the identity provider reported the status {0}")]
    Status(String),
    #[error("the response was sent to another endpoint (Destination)")]
    Destination,
    #[error("the response answers no outstanding request of ours (InResponseTo)")]
    InResponseTo,
    #[error("an unsolicited response arrived, and IdP-initiated login is off for this connection")]
    Unsolicited,
    #[error("the response is not signed as this connection requires ({0})")]
    SignatureRequired(&'static str),
    #[error(
        "the signature does not verify with the identity provider's certificate, or uses a refused algorithm"
    )]
    BadSignature,
    /// One message for every failure to decrypt or to read the plaintext, whatever the step
    /// (no padding or key-transport oracle); the step is kept for the audit trail only.
    #[error("the encrypted assertion cannot be decrypted with our key")]
    Decryption(decrypt::Failure),
    #[error(
        "the assertion is encrypted with AES-CBC but the response is not signed; ask the identity provider to sign the response, or to encrypt with AES-GCM"
    )]
    UnsignedCbc,
    #[error("the message is not a SAML 2.0 message (Version)")]
    Version,
    #[error("the assertion carries no AuthnStatement, so it does not say that anyone logged in")]
    NoAuthnStatement,
    #[error("the assertion is not meant for us (Audience)")]
    Audience,
    #[error("the assertion is invalid: {0}")]
    Invalid(String),
    #[error("the identity provider's session has already ended (SessionNotOnOrAfter)")]
    SessionEnded,
    /// Every verification slot is taken (`server.max_concurrent_saml_verifications`).
    #[error("too many sign-ins are being checked right now; please try again in a moment")]
    Busy,
    #[error("the assertion names no usable subject: {0}")]
    Subject(String),
    /// The subject NameID's NameQualifier names another identity provider than this
    /// connection's, and is not listed in `accepted_name_qualifiers` (see `profile`).
    #[error(
        "the NameID is qualified by another identity provider than this connection's (NameQualifier); if it is the same identity provider under another name, an administrator can list it in accepted_name_qualifiers"
    )]
    NameQualifier,
    /// The subject NameID's SPNameQualifier names another service provider than us, and is
    /// not listed in `accepted_sp_name_qualifiers` (see `profile`).
    #[error(
        "the NameID was issued for another service provider (SPNameQualifier); if it names an affiliation this service provider belongs to, an administrator can list it in accepted_sp_name_qualifiers"
    )]
    SpNameQualifier,
    #[error("the logout message is invalid: {0}")]
    Logout(String),
    /// Read from the verified tree: not exactly one `saml:Assertion` or
    /// `saml:EncryptedAssertion` child of the Response, or a second `Subject`, `Conditions`
    /// or `Issuer` in the assertion (what the schema allows once).
    #[error(
        "the response must carry exactly one assertion, with one subject, issuer and set of conditions ({0})"
    )]
    NotOne(&'static str),
}

/// One SAML connection: our SP settings and the IdP as its metadata describes it.
pub struct SamlProvider {
    name: String,
    cfg: SamlConfig,
    sp_key: Option<PKey<Private>>,
    sp_cert: Option<X509>,
    http: reqwest::Client,
    /// Shared by every SAML connection of the process: verification is CPU work on the
    /// blocking pool, and a stranger can post as many responses as they like.
    verify_slots: Arc<VerifySlots>,
    idp: RwLock<Option<Arc<IdpView>>>,
    last_fetch: std::sync::Mutex<Option<Instant>>,
}

/// How long a response may wait for a verification slot before the ACS answers 503.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

/// The bound on SAML verifications running at once, shared by every SAML connection. A burst
/// of real logins (more browsers than slots at 9 o'clock) waits up to [`SLOT_WAIT`]; at most
/// four times as many responses as there are slots wait, so a flood neither queues without end
/// nor delays anyone by more than that; the rest are refused at once as [`SamlError::Busy`]
/// (503 with Retry-After; the pending login is left untouched, so the browser can retry).
pub struct VerifySlots {
    running: Arc<tokio::sync::Semaphore>,
    waiting: Arc<tokio::sync::Semaphore>,
}

impl VerifySlots {
    pub fn new(slots: usize) -> Self {
        Self {
            running: Arc::new(tokio::sync::Semaphore::new(slots)),
            waiting: Arc::new(tokio::sync::Semaphore::new(slots.saturating_mul(4))),
        }
    }

    pub async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, SamlError> {
        if let Ok(p) = self.running.clone().try_acquire_owned() {
            return Ok(p);
        }
        let _waiting = self
            .waiting
            .clone()
            .try_acquire_owned()
            .map_err(|_| SamlError::Busy)?;
        match tokio::time::timeout(SLOT_WAIT, self.running.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(SamlError::Busy),
        }
    }
}

/// A started login: where to send the browser and the request id to expect back.
pub struct StartedSamlLogin {
    pub redirect_url: Url,
    pub request_id: String,
}

impl SamlProvider {
    pub fn new(
        conn: &ConnectionConfig,
        http: reqwest::Client,
        verify_slots: Arc<VerifySlots>,
    ) -> anyhow::Result<Self> {
        let cfg = conn
            .saml()
            .expect("SamlProvider::new is called for SAML connections")
            .clone();
        let sp_key = cfg
            .sp_private_key
            .as_ref()
            .map(|k| PKey::private_key_from_pem(k.expose().as_bytes()))
            .transpose()?;
        let sp_cert = cfg
            .sp_certificate
            .as_ref()
            .map(|c| X509::from_pem(c.as_bytes()))
            .transpose()?;
        Ok(Self {
            name: conn.name.clone(),
            cfg,
            sp_key,
            sp_cert,
            http,
            verify_slots,
            idp: RwLock::new(None),
            last_fetch: std::sync::Mutex::new(None),
        })
    }

    pub fn has_metadata(&self) -> bool {
        self.idp.read().expect("lock").is_some()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &SamlConfig {
        &self.cfg
    }

    /// The IdP as last loaded, loading it now if it never was (rate-limited).
    pub async fn idp(&self) -> Result<Arc<IdpView>, SamlError> {
        if let Some(v) = self.idp.read().expect("lock").clone() {
            return Ok(v);
        }
        let due = {
            let mut last = self.last_fetch.lock().expect("lock");
            let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(10));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due && let Err(e) = self.refresh_metadata().await {
            tracing::warn!(connection = %self.name, error = format!("{e:#}"), "IdP metadata not available");
        }
        self.idp
            .read()
            .expect("lock")
            .clone()
            .ok_or(SamlError::NoMetadata)
    }

    /// Loads the IdP metadata from its file or URL and swaps it in; on failure the last good
    /// copy stays in use.
    pub async fn refresh_metadata(&self) -> anyhow::Result<()> {
        let text = match &self.cfg.idp_metadata {
            MetadataSource::File(path) => tokio::fs::read_to_string(path).await.map_err(|e| {
                anyhow::anyhow!("cannot read idp_metadata_file {}: {e}", path.display())
            })?,
            MetadataSource::Url(url) => {
                let resp = self
                    .http
                    .get(url.clone())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot fetch idp_metadata_url: {e}"))?;
                if !resp.status().is_success() {
                    anyhow::bail!("idp_metadata_url answered {}", resp.status());
                }
                let bytes = resp.bytes().await?;
                if bytes.len() > 4 * 1024 * 1024 {
                    anyhow::bail!("idp_metadata_url returned more than 4 MiB");
                }
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| anyhow::anyhow!("the IdP metadata is not UTF-8"))?
            }
        };
        let view = IdpView::parse(&text, &self.cfg, self.sp_key.as_ref())?;
        *self.idp.write().expect("lock") = Some(Arc::new(view));
        Ok(())
    }

    /// Keeps the metadata fresh while the server runs.
    pub async fn refresh_until_stopped(self: Arc<Self>) {
        let every = self.cfg.metadata_refresh;
        loop {
            tokio::time::sleep(every).await;
            match self.refresh_metadata().await {
                Ok(()) => tracing::debug!(connection = %self.name, "IdP metadata refreshed"),
                Err(e) => {
                    tracing::warn!(connection = %self.name, error = format!("{e:#}"), "IdP metadata refresh failed; keeping the last good copy")
                }
            }
        }
    }

    /// Builds an AuthnRequest for the HTTP-Redirect binding, signed when configured.
    pub async fn start(&self, relay_state: &str) -> Result<StartedSamlLogin, SamlError> {
        let idp = self.idp().await?;
        let request_id = new_message_id();
        let mut request = idp
            .sp
            .make_authentication_request(idp.sso_redirect.as_str())
            .map_err(|e| SamlError::Invalid(format!("cannot build the AuthnRequest: {e}")))?;
        request.id = request_id.clone();
        let xml = samael::traits::ToXml::to_string(&request)
            .map_err(|e| SamlError::Invalid(format!("cannot serialize the AuthnRequest: {e:?}")))?;
        let key = self
            .cfg
            .sign_requests
            .then_some(self.sp_key.as_ref())
            .flatten();
        let redirect_url = redirect::encode(
            &idp.sso_redirect,
            "SAMLRequest",
            &xml,
            Some(relay_state),
            key,
        )
        .map_err(|e| SamlError::Invalid(format!("cannot sign the request: {e}")))?;
        Ok(StartedSamlLogin {
            redirect_url,
            request_id,
        })
    }

    /// One of the process's SAML verification slots, held while the ACS verifies a response
    /// (see [`VerifySlots::acquire`]).
    pub async fn verify_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, SamlError> {
        self.verify_slots.acquire().await
    }

    /// The semaphore of running verifications behind [`Self::verify_slot`] (tests fill it).
    pub fn verify_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.verify_slots.running
    }

    /// Verifies a POSTed `SAMLResponse`. `expected_request` is the id of our outstanding
    /// AuthnRequest that the browser's RelayState led to, or `None` for an unsolicited response.
    pub async fn verify_response(
        &self,
        saml_response: &str,
        expected_request: Option<&str>,
    ) -> Result<VerifiedResponse, SamlError> {
        let idp = self.idp().await?;
        // Parsing, signature checks and decryption take a millisecond or more of CPU: they run
        // on the blocking pool, not on the threads that serve requests.
        let cfg = self.cfg.clone();
        let key = self.sp_key.clone();
        let input = saml_response.to_string();
        let expected = expected_request.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            xmlsec_log::on_this_thread();
            response::verify(&cfg, &idp, key.as_ref(), &input, expected.as_deref())
        })
        .await
        .map_err(|_| SamlError::Invalid("the verification task failed".into()))?
    }

    /// Our SP metadata, to paste into the IdP.
    pub fn sp_metadata(&self) -> Result<String, SamlError> {
        metadata::sp_metadata(&self.cfg, self.sp_cert.as_ref())
            .map_err(|e| SamlError::Invalid(format!("cannot build the metadata: {e}")))
    }

    pub fn sp_key(&self) -> Option<&PKey<Private>> {
        self.sp_key.as_ref()
    }
}

/// Verifies a POSTed `SAMLResponse` against an IdP view without a provider (fuzzing and
/// benchmarks drive the exact ACS path through this).
pub fn verify_response_with(
    cfg: &SamlConfig,
    idp: &IdpView,
    sp_key: Option<&PKey<Private>>,
    saml_response: &str,
    expected_request: Option<&str>,
) -> Result<VerifiedResponse, SamlError> {
    response::verify(cfg, idp, sp_key, saml_response, expected_request)
}

/// A fresh SAML message id: 128 random bits, starting with a letter as xs:ID requires.
pub fn new_message_id() -> String {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).expect("the OS random generator is available");
    let mut s = String::with_capacity(34);
    s.push_str("id");
    for x in b {
        use std::fmt::Write;
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// A SAML connection's settings for unit tests: `https://sp.example.com`, connection `c`, the
/// defaults, plus `extra` lines in `[connection.saml]`.
#[cfg(test)]
pub(crate) fn test_config(extra: &str) -> SamlConfig {
    let toml = format!(
        "[server]\npublic_url = \"https://sp.example.com\"\n[[connection]]\nname = \"c\"\nkind = \"saml\"\n[connection.saml]\nidp_metadata_file = \"/dev/null\"\n{extra}"
    );
    let c = crate::config::Config::from_toml_and_env("t", &toml, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    c.connections[0].saml().expect("a SAML connection").clone()
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    /// More browsers than slots wait their turn; a flood beyond the waiting room is refused
    /// at once, and nobody waits longer than SLOT_WAIT.
    #[tokio::test]
    async fn a_burst_waits_for_a_slot_and_a_flood_is_refused_at_once() {
        let slots = Arc::new(VerifySlots::new(1));
        let first = slots.acquire().await.unwrap();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let s = slots.clone();
                tokio::spawn(async move { s.acquire().await.map(drop) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(
            matches!(slots.acquire().await, Err(SamlError::Busy)),
            "a fifth waiter is refused without waiting"
        );
        drop(first);
        for w in waiters {
            assert!(w.await.unwrap().is_ok(), "each waiter got the slot in turn");
        }
        let held = slots.acquire().await.unwrap();
        let t0 = Instant::now();
        assert!(matches!(slots.acquire().await, Err(SamlError::Busy)));
        let waited = t0.elapsed();
        assert!(
            waited >= SLOT_WAIT && waited < SLOT_WAIT + Duration::from_millis(900),
            "refused once SLOT_WAIT passed: {waited:?}"
        );
        drop(held);
    }
}
