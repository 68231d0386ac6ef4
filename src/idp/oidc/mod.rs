//! OpenID Connect relying party (authorization code flow with PKCE S256), on `openidconnect`.
//!
//! What this adapter adds around the crate: discovery that retries instead of failing the
//! whole bridge when one provider is down; a JWKS refetch (rate-limited) when an ID token names
//! a key we do not know, since the crate only reads the JWKS at discovery; the RFC 9207 `iss`
//! response parameter; a clock-skew allowance; and one claims map merged from the ID token and
//! userinfo for the mapping.

use super::{AdapterError, NormalizedLogin};
use crate::config::{ConnectionConfig, OidcConfig};
use crate::mapping::Claims;
use jsonwebtoken::jwk::JwkSet;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, RequestTokenError, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use url::Url;

mod errors;
mod id_token;
mod jwt;
mod keys;
mod logout;
mod logout_token;
mod types;

use errors::*;
use keys::*;
pub use logout_token::{LogoutRequest, LogoutTokenError};
pub use types::ExtraClaims;
use types::*;

/// Claims that belong to the protocol, taken from the ID token and never overridden by userinfo.
const ID_TOKEN_ONLY: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nonce",
    "azp",
    "at_hash",
    "c_hash",
    "auth_time",
    "acr",
    "amr",
    "sid",
];

/// What discovery produced, with the one key set for ID tokens and logout tokens; replaced as
/// a whole by every discovery or key fetch.
struct Discovered {
    metadata: Metadata,
    client: Client,
    keys: JwkSet,
    fetched_at: Instant,
    /// Order of the fetch that produced it: an older fetch never replaces a newer one.
    generation: u64,
}

/// The parts of a started login that must come back at the callback.
pub struct StartedLogin {
    pub authorize_url: Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

pub struct OidcProvider {
    name: String,
    cfg: OidcConfig,
    redirect_uri: RedirectUrl,
    http: reqwest::Client,
    discovered: RwLock<Option<Arc<Discovered>>>,
    generation: AtomicU64,
    /// Last discovery attempt and last JWKS refetch, to rate-limit both.
    last_discovery: Mutex<Option<Instant>>,
    last_jwks_fetch: Mutex<Option<Instant>>,
}

impl OidcProvider {
    pub fn new(conn: &ConnectionConfig, public_url: &Url, http: reqwest::Client) -> Self {
        let redirect = public_url
            .join(&format!("callback/{}", conn.name))
            .expect("connection names are URL-safe");
        let cfg = conn
            .oidc()
            .expect("OidcProvider::new is called for OIDC connections")
            .clone();
        Self {
            name: conn.name.clone(),
            cfg,
            redirect_uri: RedirectUrl::from_url(redirect),
            http,
            discovered: RwLock::new(None),
            generation: AtomicU64::new(0),
            last_discovery: Mutex::new(None),
            last_jwks_fetch: Mutex::new(None),
        }
    }

    pub fn redirect_uri(&self) -> &Url {
        self.redirect_uri.url()
    }

    fn cached(&self) -> Option<Arc<Discovered>> {
        self.discovered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether discovery has succeeded (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.cached().is_some()
    }

    /// The discovered provider, discovering now if needed (at most every few seconds on failure).
    #[tracing::instrument(skip_all, fields(connection = %self.name))]
    pub async fn ensure_discovered(&self) -> Result<(), AdapterError> {
        self.discovered().await.map(|_| ())
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, AdapterError> {
        if let Some(d) = self.cached() {
            return Ok(d);
        }
        {
            let mut last = self
                .last_discovery
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < DISCOVERY_RETRY) {
                return Err(AdapterError::Unavailable {
                    what: "discovery failed recently; retrying shortly",
                    cause: None,
                });
            }
            *last = Some(Instant::now());
        }
        let (d, _) = self.discover_now().await?;
        tracing::info!(connection = %self.name, "OIDC provider discovered");
        Ok(d)
    }

    /// The client for `metadata`. ID tokens and logout tokens are verified by [`jwt`] against
    /// `keys`; the client gets the same set, converted, for the one thing it still verifies
    /// itself: a UserInfo answer the provider signs (`application/jwt`).
    fn build(&self, metadata: Metadata, keys: JwkSet, generation: u64) -> Discovered {
        let for_userinfo = serde_json::to_value(&keys)
            .and_then(serde_json::from_value::<openidconnect::core::CoreJsonWebKeySet>)
            .unwrap_or_else(|_| openidconnect::core::CoreJsonWebKeySet::new(Vec::new()));
        let mut client = Client::from_provider_metadata(
            metadata.clone().set_jwks(for_userinfo),
            ClientId::new(self.cfg.client_id.clone()),
            self.cfg
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        // Prefer client_secret_basic (the spec default) unless the provider only offers post.
        if let Some(methods) = metadata.token_endpoint_auth_methods_supported()
            && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
        {
            client = client.set_auth_type(openidconnect::AuthType::RequestBody);
        }
        Discovered {
            metadata,
            client,
            keys,
            fetched_at: Instant::now(),
            generation,
        }
    }

    /// Builds the authorization request (code flow, PKCE S256, state, nonce).
    pub async fn start(&self) -> Result<StartedLogin, AdapterError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in self.cfg.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(StartedLogin {
            authorize_url: url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Checks the RFC 9207 `iss` parameter of the authorization response.
    pub async fn check_iss_param(&self, iss: Option<&str>) -> Result<(), AdapterError> {
        let d = self.discovered().await?;
        let promised = d
            .metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true);
        match iss {
            Some(iss) if iss == d.metadata.issuer().as_str() => Ok(()),
            Some(_) => Err(AdapterError::IssuerParamMismatch),
            None if promised => Err(AdapterError::IssuerParamMissing),
            None => Ok(()),
        }
    }

    /// Exchanges the code, validates the ID token, fetches userinfo and returns the login.
    #[tracing::instrument(skip_all, fields(connection = %self.name))]
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<NormalizedLogin, AdapterError> {
        let d = self.discovered().await?;
        self.keys_not_stale(&d)?;
        let token = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| AdapterError::unavailable("the provider has no token endpoint", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => AdapterError::CodeRejected {
                    code: r.error().as_ref().to_string(),
                },
                other => AdapterError::unavailable("the token request failed", other),
            })?;

        let (d, mut claims) = self
            .with_keys(
                d,
                |d| self.verify_id_token(d, &token, nonce),
                |f| matches!(f, IdTokenFailure::UnknownKey),
                IdTokenFailure::Unavailable,
            )
            .await
            .map_err(IdTokenFailure::into_adapter)?;

        let subject = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AdapterError::IdTokenInvalid("no subject".into()))?
            .to_string();

        if self.cfg.use_userinfo
            && let Some(userinfo) = self.userinfo(&d, &token, &subject).await?
        {
            for (k, v) in userinfo {
                if !ID_TOKEN_ONLY.contains(&k.as_str()) {
                    claims.insert(k, v);
                }
            }
        }
        let idp_session = claims
            .get("sid")
            .and_then(|s| s.as_str())
            .map(str::to_string);
        Ok(NormalizedLogin {
            connection: self.name.clone(),
            subject,
            claims,
            idp_session,
            idp_principal: None,
            session_ends_at: None,
            single_use: None,
        })
    }

    async fn userinfo(
        &self,
        d: &Discovered,
        token: &TokenResponseX,
        subject: &str,
    ) -> Result<Option<Claims>, AdapterError> {
        let Ok(req) = d.client.user_info(
            token.access_token().clone(),
            Some(openidconnect::SubjectIdentifier::new(subject.to_string())),
        ) else {
            return Ok(None); // the provider has no userinfo endpoint
        };
        let info: UserInfoClaims<ExtraClaims, CoreGenderClaim> = req
            .require_signed_response(false)
            .request_async(&self.http)
            .await
            .map_err(|e| {
                use openidconnect::UserInfoError as U;
                match e {
                    U::ClaimsVerification(c) => {
                        AdapterError::UserinfoInvalid(describe_claims_error(&c))
                    }
                    U::Response(status, _, _) => {
                        AdapterError::unavailable("userinfo answered an error", status.to_string())
                    }
                    other => AdapterError::unavailable("the userinfo request failed", other),
                }
            })?;
        match serde_json::to_value(info) {
            Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
            _ => Err(AdapterError::UserinfoInvalid(
                "claims are not an object".into(),
            )),
        }
    }
}
