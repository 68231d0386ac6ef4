//! Logout: back-channel logout tokens (the same key set and JWT stack as ID tokens) and RP-initiated
//! logout at the provider.

use super::*;

impl OidcProvider {
    /// Verifies an OIDC Back-Channel Logout token against the provider's one key set
    /// (refetched once, rate-limited, when the token names a key the set lacks).
    pub async fn verify_logout_token(
        &self,
        token: &str,
    ) -> Result<LogoutRequest, LogoutTokenError> {
        let unavailable = |e: AdapterError| LogoutTokenError::Invalid(e.to_string());
        let d = self.discovered().await.map_err(unavailable)?;
        let check = |d: &Discovered| {
            let expect = jwt::Expect {
                issuer: d.metadata.issuer().as_str(),
                client_id: &self.cfg.client_id,
                allowed_algs: &self.cfg.allowed_algs,
                leeway_secs: self.cfg.clock_skew.as_secs(),
                hmac_secret: None,
                required: &[],
            };
            logout_token::verify(token, &d.keys, &expect, self.cfg.logout_token_max_age)
        };
        let unknown = |e: &LogoutTokenError| matches!(e, LogoutTokenError::UnknownKey);
        self.with_keys(d, check, unknown, unavailable)
            .await
            .map(|(_, lr)| lr)
    }

    /// The provider's RP-initiated logout URL, when it advertises one.
    pub fn end_session_url(&self, post_logout_redirect: &Url) -> Option<Url> {
        let d = self.cached()?;
        let mut url = d
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("post_logout_redirect_uri", post_logout_redirect.as_str());
        Some(url)
    }
}
