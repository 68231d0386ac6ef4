//! The provider's one key set, for ID tokens and logout tokens alike: discovery and JWKS
//! fetched with a size cap, refreshed on a schedule (Cache-Control within bounds) and on an
//! unknown `kid` (rate-limited), replaced as a whole by the newest fetch, and refused once it
//! is older than `jwks_max_stale`.

use super::*;
use std::sync::atomic::Ordering;

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

/// A discovery document or a key set is a few kilobytes; a megabyte is far beyond any real one.
pub(super) const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
pub(super) const DISCOVERY_RETRY: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

impl OidcProvider {
    /// GET `url` with a timeout and a size cap; the body and its Cache-Control `max-age`.
    async fn fetch(
        &self,
        url: &Url,
        what: &'static str,
    ) -> Result<(Vec<u8>, Option<u64>), AdapterError> {
        let resp = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AdapterError::unavailable(what, e))?;
        let max_age = max_age(
            resp.headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let body = crate::read_capped(resp, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| AdapterError::unavailable(what, e))?;
        Ok((body, max_age))
    }

    /// The discovery document, whose `issuer` must be the configured one exactly (OIDC
    /// Discovery 4.3).
    async fn fetch_metadata(&self) -> Result<Metadata, AdapterError> {
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| AdapterError::unavailable("the issuer is not a URL", e))?;
        let url = issuer
            .join(".well-known/openid-configuration")
            .map_err(|e| AdapterError::unavailable("the issuer is not a URL", e))?;
        let (body, _) = self.fetch(&url, "the discovery fetch failed").await?;
        let metadata: Metadata = serde_json::from_slice(&body)
            .map_err(|e| AdapterError::unavailable("the discovery document is unreadable", e))?;
        if metadata.issuer() != &issuer {
            tracing::error!(connection = %self.name, published = %metadata.issuer().as_str(), "the discovery document names another issuer");
            return Err(AdapterError::Unavailable {
                what: "the discovery document names another issuer",
                cause: None,
            });
        }
        Ok(metadata)
    }

    /// The key set at the provider's `jwks_uri`, and when to fetch it again.
    async fn fetch_keys(&self, metadata: &Metadata) -> Result<(JwkSet, Duration), AdapterError> {
        let (body, max_age) = self
            .fetch(metadata.jwks_uri().url(), "the JWKS fetch failed")
            .await?;
        let keys = jwt::parse_key_set(&body)
            .map_err(|e| AdapterError::unavailable("the JWKS is unreadable", e))?;
        let next = max_age
            .map(Duration::from_secs)
            .unwrap_or(self.cfg.jwks_refresh_interval)
            .clamp(MIN_KEY_REFRESH, MAX_KEY_REFRESH);
        Ok((keys, next))
    }

    /// Installs what a fetch produced, unless a fetch that started later already installed
    /// its own: an older key set never replaces a newer one (a slow scheduled refresh racing a
    /// refetch must not bring back a key the provider withdrew in between).
    fn install(&self, fresh: Discovered) -> Arc<Discovered> {
        let mut slot = self.discovered.write().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = slot.as_ref()
            && current.generation > fresh.generation
        {
            return current.clone();
        }
        let fresh = Arc::new(fresh);
        *slot = Some(fresh.clone());
        fresh
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Discovery and the key set, fetched now and installed; returns when to refresh next.
    pub(super) async fn discover_now(&self) -> Result<(Arc<Discovered>, Duration), AdapterError> {
        let generation = self.next_generation();
        let metadata = self.fetch_metadata().await?;
        let (keys, next) = self.fetch_keys(&metadata).await?;
        Ok((self.install(self.build(metadata, keys, generation)), next))
    }

    /// Refuses keys older than `jwks_max_stale` (refreshes failing that long): better no
    /// logins than trusting a key the provider may have withdrawn.
    pub(super) fn keys_not_stale(&self, d: &Discovered) -> Result<(), AdapterError> {
        if d.fetched_at.elapsed() > self.cfg.jwks_max_stale {
            tracing::error!(connection = %self.name, "the provider's keys could not be refreshed for longer than jwks_max_stale; refusing tokens");
            return Err(AdapterError::Unavailable {
                what: "the provider's signing keys are out of date (jwks_max_stale)",
                cause: None,
            });
        }
        Ok(())
    }

    /// One scheduled refresh: discovery again, then the JWKS (whose Cache-Control sets the
    /// next interval). Returns when to refresh next.
    pub async fn refresh_keys_once(&self) -> Result<Duration, AdapterError> {
        self.discover_now().await.map(|(_, next)| next)
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
                    tracing::warn!(connection = %self.name, error = %crate::cause_chain(&e), "key refresh failed; keeping the last good keys");
                    MIN_KEY_REFRESH
                }
            };
        }
    }

    fn may_refetch_keys(&self) -> bool {
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

    /// Runs `check` against the current keys; when it names a key the set lacks (rotation at
    /// the provider), refetches the set once (rate-limited) and runs it again. ID tokens and
    /// logout tokens both come through here, so a refetch for one is seen by the other.
    pub(super) async fn with_keys<T, E>(
        &self,
        d: Arc<Discovered>,
        check: impl Fn(&Discovered) -> Result<T, E>,
        is_unknown_key: impl Fn(&E) -> bool,
        unavailable: impl Fn(AdapterError) -> E,
    ) -> Result<(Arc<Discovered>, T), E> {
        self.keys_not_stale(&d).map_err(&unavailable)?;
        match check(&d) {
            Err(e) if is_unknown_key(&e) && self.may_refetch_keys() => {
                tracing::info!(connection = %self.name, "token signed by an unknown key; refetching the JWKS");
                let generation = self.next_generation();
                // The metadata installed now, not the request's: a discovery that finished
                // meanwhile must not be undone by this refetch.
                let metadata = self
                    .cached()
                    .map_or_else(|| d.metadata.clone(), |c| c.metadata.clone());
                let (keys, _) = self.fetch_keys(&metadata).await.map_err(&unavailable)?;
                let fresh = self.install(self.build(metadata, keys, generation));
                let t = check(&fresh)?;
                Ok((fresh, t))
            }
            other => other.map(|t| (d, t)),
        }
    }
}
