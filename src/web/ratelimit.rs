//! Rate limits per client address on the endpoints strangers reach without a session:
//! `GET /login`, the OIDC callback, the SAML ACS and SLO. Over the limit, a person gets a 429
//! page with `Retry-After`, and the refusal is audited through the failure aggregator (one row
//! per reason, connection and minute), never one row per request.
//!
//! **The client address** is the TCP peer, unless the peer is one of `server.trusted_proxies`:
//! then it is read from `X-Forwarded-For`, walking from the right and skipping trusted
//! addresses, and the first untrusted one is the client. Each proxy appends the address it
//! was connected from, so the right-most entries were written by our own proxies, while
//! everything to the left of the first untrusted one was written by that client and can be
//! anything it likes (taking the left-most would let every request name a new address and
//! escape its bucket). IPv6 clients are keyed by their /64, the block one host usually has.
//!
//! **Buckets are per replica**: nothing is shared through Redis (a limit that needs a round
//! trip per request would cost more than the work it protects). Behind N replicas balanced
//! evenly, an address gets up to N times the configured rate.
//!
//! **Memory is bounded**: each class tracks at most `max_addresses` addresses (a key and a
//! 64-bit time each). Addresses whose bucket has refilled are dropped when the map is full
//! (at most once a second) and every minute; while it is still full, new addresses share one
//! overflow bucket, so a flood of distinct addresses is throttled as one rather than growing
//! the map.
//!
//! GCRA from the `governor` crate, over [`BoundedStore`].

use crate::config::{Rate, RateLimitsConfig};
use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Entries of `X-Forwarded-For` read at most, from the right.
const MAX_FORWARDED_HOPS: usize = 16;

/// The endpoint classes, each with its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Login,
    Callback,
    Acs,
    Slo,
}

impl Class {
    /// The reason code of a refusal in this class.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Login => "rate_limited_login",
            Self::Callback => "rate_limited_callback",
            Self::Acs => "rate_limited_acs",
            Self::Slo => "rate_limited_slo",
        }
    }
}

/// A client as the limits count it: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    V6Prefix(u64),
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.into()),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    e.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// The client's address: the peer, or, from a trusted proxy, the right-most untrusted entry
/// of `X-Forwarded-For` (the header lines in order, as one list).
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    proxies: &[IpNet],
) -> IpAddr {
    if !trusted(peer, proxies) {
        return peer;
    }
    let chain: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    let mut current = peer;
    for entry in chain.iter().rev().take(MAX_FORWARDED_HOPS) {
        // An entry our proxy wrote is an address; anything else means a proxy that does not
        // set the header as it should: the request counts against the last trusted hop.
        let Some(hop) = parse_hop(entry) else {
            return current;
        };
        current = hop;
        if !trusted(hop, proxies) {
            return hop;
        }
    }
    current
}

/// A keyed GCRA state store with a bound on its keys; see the module documentation.
pub struct BoundedStore<K> {
    inner: Mutex<Inner<K>>,
    cap: usize,
}

struct Inner<K> {
    /// Theoretical arrival time per key, in nanoseconds since the limiter's start.
    tats: HashMap<K, u64>,
    /// The bucket new keys share while the map is full.
    overflow: u64,
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                tats: HashMap::new(),
                overflow: 0,
            }),
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut inner = self.lock();
        let known = |v: u64| (v != 0).then(|| Nanos::from(v));
        if let Some(tat) = inner.tats.get_mut(key) {
            let (t, next) = f(known(*tat))?;
            *tat = next.into();
            return Ok(t);
        }
        if inner.tats.len() < self.cap {
            let (t, next) = f(None)?;
            inner.tats.insert(key.clone(), next.into());
            return Ok(t);
        }
        let (t, next) = f(known(inner.overflow))?;
        inner.overflow = next.into();
        Ok(t)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        let below: u64 = drop_below.into();
        let mut inner = self.lock();
        inner.tats.retain(|_, tat| *tat > below);
        if inner.tats.len() < self.cap / 2 {
            inner.tats.shrink_to(self.cap / 2);
        }
    }

    fn len(&self) -> usize {
        self.lock().tats.len()
    }

    fn is_empty(&self) -> bool {
        self.lock().tats.is_empty()
    }
}

/// One class's limiter.
pub struct Limiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<ClientKey, BoundedStore<ClientKey>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    cap: usize,
    /// When a full map was last swept (at most once a second).
    last_sweep: Mutex<C::Instant>,
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn new(rate: Rate, max_addresses: usize, clock: C) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::new(quota, BoundedStore::new(max_addresses), clock.clone()),
            last_sweep: Mutex::new(clock.now()),
            clock,
            cap: max_addresses,
        }
    }

    /// `Ok` to go ahead, or how long to wait.
    pub fn check(&self, key: ClientKey) -> Result<(), Duration> {
        if self.limiter.len() >= self.cap {
            let now = self.clock.now();
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if Duration::from(now.duration_since(*last)) >= Duration::from_secs(1) {
                *last = now;
                drop(last);
                self.limiter.retain_recent();
            }
        }
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Drops addresses whose bucket is full again (they are no different from new ones).
    pub fn sweep(&self) {
        self.limiter.retain_recent();
    }
}

/// A request over its class's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub class: Class,
    /// Whole seconds until the next request would be allowed (at least 1).
    pub retry_after: u64,
}

/// The limiters of every class, and who the client is.
pub struct RateLimits {
    enabled: bool,
    proxies: Vec<IpNet>,
    login: Limiter,
    callback: Limiter,
    acs: Limiter,
    slo: Limiter,
    /// Set once an `X-Forwarded-For` from an untrusted peer was ignored (logged once).
    warned_untrusted_forward: std::sync::atomic::AtomicBool,
}

impl RateLimits {
    pub fn new(cfg: &RateLimitsConfig, proxies: &[IpNet]) -> Self {
        let l = |r| Limiter::new(r, cfg.max_addresses, DefaultClock::default());
        Self {
            enabled: cfg.enabled,
            proxies: proxies.to_vec(),
            login: l(cfg.login),
            callback: l(cfg.callback),
            acs: l(cfg.acs),
            slo: l(cfg.slo),
            warned_untrusted_forward: Default::default(),
        }
    }

    fn limiter(&self, class: Class) -> &Limiter {
        match class {
            Class::Login => &self.login,
            Class::Callback => &self.callback,
            Class::Acs => &self.acs,
            Class::Slo => &self.slo,
        }
    }

    /// The client address of a request (see the module documentation).
    pub fn client(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let xff = req.headers().get_all("x-forwarded-for");
        let values = xff.filter_map(|v| v.to_str().ok());
        if !trusted(peer, &self.proxies)
            && req.headers().contains_key("x-forwarded-for")
            && !self.warned_untrusted_forward.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                %peer,
                "X-Forwarded-For from a peer that is not in server.trusted_proxies is ignored; \
                 if this is your reverse proxy, list it there, or every request through it \
                 shares one rate-limit bucket"
            );
        }
        Some(client_address(peer, values, &self.proxies))
    }

    /// Counts the request against its client's bucket in `class`.
    pub fn check(&self, class: Class, req: &HttpRequest) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        // No peer address (not a TCP connection): nothing to key by.
        let Some(ip) = self.client(req) else {
            return Ok(());
        };
        self.limiter(class)
            .check(ClientKey::of(ip))
            .map_err(|wait| Limited {
                class,
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
    }

    /// Drops refilled buckets of every class; run every minute so that memory follows the
    /// addresses seen lately, not the peak.
    pub fn sweep(&self) {
        for c in [Class::Login, Class::Callback, Class::Acs, Class::Slo] {
            self.limiter(c).sweep();
        }
    }

    pub async fn sweep_until_stopped(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            self.sweep();
        }
    }
}

#[cfg(test)]
mod tests;
