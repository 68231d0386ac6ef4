//! OpenID Connect relying party (authorization code flow with PKCE S256), on `openidconnect`.
//!
//! What this adapter adds around the crate: discovery that retries instead of failing the
//! whole bridge when one provider is down; a JWKS refetch (rate-limited) when an ID token names
//! a key we do not know, since the crate only reads the JWKS at discovery; the RFC 9207 `iss`
//! response parameter; a clock-skew allowance; and one claims map merged from the ID token and
//! userinfo for the mapping.

use super::logout_token::{self, Expectations, LogoutRequest, LogoutTokenError};
use super::{AdapterError, NormalizedLogin};
use crate::config::{ConnectionConfig, OidcConfig};
use crate::mapping::Claims;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreSubjectIdentifierType, CoreTokenIntrospectionResponse,
    CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, RequestTokenError, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use url::Url;

mod errors;
mod keys;
mod logout;
mod types;

use errors::*;
use keys::*;
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

const IAT_IN_FUTURE: &str = "issued in the future";

/// What discovery produced; replaced as a whole when the JWKS is refreshed.
struct Discovered {
    metadata: Metadata,
    client: Client,
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
    /// Last discovery attempt and last JWKS refetch, to rate-limit both.
    last_discovery: Mutex<Option<Instant>>,
    last_jwks_fetch: Mutex<Option<Instant>>,
    /// The JWKS in jsonwebtoken's form, for logout tokens (fetched on first use).
    logout_jwks: RwLock<Option<Arc<jsonwebtoken::jwk::JwkSet>>>,
    /// When discovery or a key refresh last succeeded.
    keys_fresh_at: Mutex<Option<Instant>>,
}

impl OidcProvider {
    pub fn new(conn: &ConnectionConfig, public_url: &Url, http: reqwest::Client) -> Self {
        let redirect = public_url
            .join(&format!("callback/{}", conn.name))
            .expect("connection names are URL-safe");
        Self {
            name: conn.name.clone(),
            cfg: conn
                .oidc()
                .expect("OidcProvider::new is called for OIDC connections")
                .clone(),
            redirect_uri: RedirectUrl::from_url(redirect),
            http,
            discovered: RwLock::new(None),
            last_discovery: Mutex::new(None),
            last_jwks_fetch: Mutex::new(None),
            logout_jwks: RwLock::new(None),
            keys_fresh_at: Mutex::new(None),
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
                return Err(AdapterError::Unavailable(
                    "discovery failed recently; retrying shortly".into(),
                ));
            }
            *last = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| AdapterError::Unavailable(format!("issuer is not a URL: {e}")))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(connection = %self.name, error = %error_chain(&e), "OIDC discovery failed");
                AdapterError::Unavailable(format!("discovery failed: {e}"))
            })?;
        let d = Arc::new(self.build(metadata));
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
        self.mark_keys_fresh();
        tracing::info!(connection = %self.name, "OIDC provider discovered");
        Ok(d)
    }

    fn build(&self, metadata: Metadata) -> Discovered {
        let mut client = Client::from_provider_metadata(
            metadata.clone(),
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
        Discovered { metadata, client }
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
        self.keys_not_stale()?;
        let token = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| AdapterError::Unavailable(format!("provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => AdapterError::CodeRejected {
                    code: r.error().as_ref().to_string(),
                },
                other => AdapterError::Unavailable(format!(
                    "token request failed: {}",
                    error_chain(&other)
                )),
            })?;

        let nonce = Nonce::new(nonce.to_string());
        let (d, mut claims) = match self.verify_id_token(&d, &token, &nonce) {
            Err(IdTokenFailure::UnknownKey) if self.may_refetch_jwks() => {
                let d = self.refetch_jwks(&d).await?;
                let claims = self
                    .verify_id_token(&d, &token, &nonce)
                    .map_err(IdTokenFailure::into_adapter)?;
                (d, claims)
            }
            Err(f) => return Err(f.into_adapter()),
            Ok(claims) => (d, claims),
        };

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

    fn verify_id_token(
        &self,
        d: &Discovered,
        token: &TokenResponseX,
        nonce: &Nonce,
    ) -> Result<Claims, IdTokenFailure> {
        let id_token = token.id_token().ok_or(IdTokenFailure::Missing)?;
        let skew = chrono::Duration::from_std(self.cfg.clock_skew).unwrap_or_default();
        let verifier = d
            .client
            .id_token_verifier()
            .set_allowed_algs(self.cfg.allowed_algs.clone())
            // exp is compared with this clock: allow `skew` after expiry.
            .set_time_fn(move || chrono::Utc::now() - skew)
            .set_issue_time_verifier_fn(move |iat| {
                if iat > chrono::Utc::now() + skew {
                    Err(IAT_IN_FUTURE.into())
                } else {
                    Ok(())
                }
            });
        let claims = id_token.claims(&verifier, nonce).map_err(|e| {
            use openidconnect::{ClaimsVerificationError as C, SignatureVerificationError as S};
            match e {
                C::SignatureVerification(S::NoMatchingKey) => IdTokenFailure::UnknownKey,
                other => IdTokenFailure::Invalid(describe_claims_error(&other)),
            }
        })?;
        // at_hash binds the access token to this ID token (required for some flows, checked
        // whenever present).
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| IdTokenFailure::Invalid(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| IdTokenFailure::Invalid(e.to_string()))?;
            let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
                .map_err(|e| IdTokenFailure::Invalid(e.to_string()))?;
            if actual != *expected {
                return Err(IdTokenFailure::Invalid(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        match serde_json::to_value(claims) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(IdTokenFailure::Invalid("claims are not an object".into())),
        }
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
                        AdapterError::Unavailable(format!("userinfo answered {status}"))
                    }
                    other => AdapterError::Unavailable(format!(
                        "userinfo failed: {}",
                        error_chain(&other)
                    )),
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
