//! Logout: back-channel logout tokens (with the same keys as ID tokens) and RP-initiated
//! logout at the provider.

use super::*;

impl OidcProvider {
    /// Verifies an OIDC Back-Channel Logout token; refetches the JWKS once (rate-limited) when
    /// the token names a key we do not have.
    pub async fn verify_logout_token(
        &self,
        token: &str,
    ) -> Result<LogoutRequest, LogoutTokenError> {
        let d = self
            .discovered()
            .await
            .map_err(|e| LogoutTokenError::Invalid(e.to_string()))?;
        self.keys_not_stale()
            .map_err(|e| LogoutTokenError::Invalid(e.to_string()))?;
        let algs: Vec<String> = self
            .cfg
            .allowed_algs
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok()?.as_str().map(str::to_string))
            .collect();
        let expect = Expectations {
            issuer: d.metadata.issuer().as_str(),
            client_id: &self.cfg.client_id,
            allowed_algs: &algs,
            leeway_secs: self.cfg.clock_skew.as_secs(),
        };
        let cached = self
            .logout_jwks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let kid = logout_token::key_id(token)?;
        let has_key =
            |set: &jsonwebtoken::jwk::JwkSet| kid.as_deref().is_none_or(|k| set.find(k).is_some());
        let jwks = match cached {
            Some(set) if has_key(&set) => set,
            Some(set) if !self.may_refetch_jwks() => set,
            _ => {
                let resp = self
                    .http
                    .get(d.metadata.jwks_uri().url().clone())
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| {
                        LogoutTokenError::Invalid(format!("cannot fetch the provider's keys: {e}"))
                    })?;
                let set: jsonwebtoken::jwk::JwkSet = crate::read_capped(resp, MAX_JWKS_BYTES)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| {
                        LogoutTokenError::Invalid("the provider's JWKS is unreadable".into())
                    })?;
                let set = Arc::new(set);
                *self.logout_jwks.write().unwrap_or_else(|p| p.into_inner()) = Some(set.clone());
                set
            }
        };
        logout_token::verify(token, &jwks, &expect)
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
