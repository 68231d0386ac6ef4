//! The provider's keys: discovery and JWKS refreshed on a schedule (Cache-Control within
//! bounds) and on an unknown `kid` (rate-limited), and failing closed once they are stale.

use super::*;

/// Bounds on the refresh interval a provider's Cache-Control may ask for.
pub(super) const MIN_KEY_REFRESH: Duration = Duration::from_secs(5 * 60);
pub(super) const MAX_KEY_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// `max-age` of a Cache-Control header value, in seconds.
pub(super) fn max_age(header: Option<&str>) -> Option<u64> {
    header?
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.trim_matches('"').parse().ok())
}

/// A key set is a few kilobytes; a megabyte is far beyond any real one.
pub(super) const MAX_JWKS_BYTES: usize = 1024 * 1024;
pub(super) const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

impl OidcProvider {
    pub(super) fn mark_keys_fresh(&self) {
        *self.keys_fresh_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Refuses to use keys older than `jwks_max_stale` (refreshes failing that long): better
    /// no logins than trusting a key the provider may have withdrawn.
    pub(super) fn keys_not_stale(&self) -> Result<(), AdapterError> {
        let at = *self.keys_fresh_at.lock().unwrap_or_else(|p| p.into_inner());
        match at {
            Some(t) if t.elapsed() > self.cfg.jwks_max_stale => {
                tracing::error!(connection = %self.name, "the provider's keys could not be refreshed for longer than jwks_max_stale; refusing tokens");
                Err(AdapterError::Unavailable(
                    "the identity provider's signing keys are out of date".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// One scheduled refresh: discovery again, then the JWKS (whose Cache-Control sets the
    /// next interval). A key the provider withdrew is no longer trusted afterwards, by ID
    /// tokens or logout tokens. Returns when to refresh next.
    pub async fn refresh_keys_once(&self) -> Result<Duration, AdapterError> {
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| AdapterError::Unavailable(format!("issuer is not a URL: {e}")))?;
        let metadata = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| AdapterError::Unavailable(format!("discovery failed: {e}")))?;
        let resp = self
            .http
            .get(metadata.jwks_uri().url().clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AdapterError::Unavailable(format!("JWKS fetch failed: {e}")))?;
        let next = max_age(
            resp.headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        )
        .map(Duration::from_secs)
        .unwrap_or(self.cfg.jwks_refresh_interval)
        .clamp(MIN_KEY_REFRESH, MAX_KEY_REFRESH);
        let bytes = crate::read_capped(resp, MAX_JWKS_BYTES)
            .await
            .map_err(|e| AdapterError::Unavailable(format!("JWKS fetch failed: {e}")))?;
        let for_id_tokens: CoreJsonWebKeySet = serde_json::from_slice(&bytes)
            .map_err(|e| AdapterError::Unavailable(format!("the JWKS is unreadable: {e}")))?;
        let for_logout: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&bytes)
            .map_err(|e| AdapterError::Unavailable(format!("the JWKS is unreadable: {e}")))?;
        let d = Arc::new(self.build(metadata.set_jwks(for_id_tokens)));
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = Some(d);
        *self.logout_jwks.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(for_logout));
        self.mark_keys_fresh();
        Ok(next)
    }

    /// Refreshes keys on schedule while the server runs; a failure is retried after
    /// `MIN_KEY_REFRESH`, with the last good keys kept (at most `jwks_max_stale`).
    pub async fn refresh_keys_until_stopped(self: Arc<Self>) {
        let mut next = self
            .cfg
            .jwks_refresh_interval
            .clamp(MIN_KEY_REFRESH, MAX_KEY_REFRESH);
        loop {
            tokio::time::sleep(next).await;
            next = match self.refresh_keys_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(connection = %self.name, error = %e, "key refresh failed; keeping the last good keys");
                    MIN_KEY_REFRESH
                }
            };
        }
    }

    pub(super) fn may_refetch_jwks(&self) -> bool {
        let mut last = self
            .last_jwks_fetch
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.cfg.jwks_refresh_min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Refetches the JWKS after an unknown `kid` (key rotation at the provider).
    pub(super) async fn refetch_jwks(
        &self,
        d: &Discovered,
    ) -> Result<Arc<Discovered>, AdapterError> {
        tracing::info!(connection = %self.name, "ID token signed by an unknown key; refetching the JWKS");
        let jwks = CoreJsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| AdapterError::Unavailable(format!("JWKS fetch failed: {e}")))?;
        let fresh = Arc::new(self.build(d.metadata.clone().set_jwks(jwks)));
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }
}
