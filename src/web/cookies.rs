//! The bridge's cookies: the session cookie (opaque id) and, during a login, one cookie per
//! started login holding its sealed state (see `super::pending`), so that a callback is
//! accepted only in the browser that started it (login CSRF) and several tabs can log in at
//! once.

use crate::config::CookieConfig;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use std::time::Duration;

fn base<'c>(cfg: &CookieConfig, name: String, value: String, max_age: Duration) -> Cookie<'c> {
    let mut c = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .secure(cfg.secure)
        // Lax: sent on the top-level GET that comes back from the IdP, never on cross-site
        // subrequests or POSTs.
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(max_age.as_secs() as i64))
        .finish();
    if let Some(d) = &cfg.domain {
        c.set_domain(d.clone());
    }
    c
}

pub fn session<'c>(cfg: &CookieConfig, id: &str, max_age: Duration) -> Cookie<'c> {
    base(cfg, cfg.name.clone(), id.to_string(), max_age)
}

pub fn clear_session<'c>(cfg: &CookieConfig) -> Cookie<'c> {
    let mut c = base(cfg, cfg.name.clone(), String::new(), Duration::ZERO);
    c.make_removal();
    c
}

/// What every login cookie's name starts with. Login cookies are host-only and on `/`, and
/// `Secure` over https: there the name carries `__Host-` (also when the session cookie spans a
/// domain and is `__Secure-`), so that browsers refuse such a cookie set by a sibling host or
/// with a Domain, and a sibling cannot plant a login of its own choosing.
pub fn login_prefix(cfg: &CookieConfig) -> String {
    let base = cfg
        .name
        .trim_start_matches("__Host-")
        .trim_start_matches("__Secure-");
    if cfg.secure {
        format!("__Host-{base}-login-")
    } else {
        format!("{base}-login-")
    }
}

/// The login cookie's name for one login, derived from its state.
pub fn login_name(cfg: &CookieConfig, state: &str) -> String {
    let suffix = &crate::session::hash_key(state)[..16];
    format!("{}{suffix}", login_prefix(cfg))
}

fn login_named<'c>(cfg: &CookieConfig, name: String, value: &str, max_age: Duration) -> Cookie<'c> {
    // The login cookie is host-only even when the session cookie spans a domain.
    let mut c = base(cfg, name, value.to_string(), max_age);
    c.unset_domain();
    c
}

pub fn login<'c>(cfg: &CookieConfig, state: &str, value: &str, max_age: Duration) -> Cookie<'c> {
    login_named(cfg, login_name(cfg, state), value, max_age)
}

pub fn clear_login<'c>(cfg: &CookieConfig, state: &str) -> Cookie<'c> {
    clear_login_named(cfg, login_name(cfg, state))
}

pub fn clear_login_named<'c>(cfg: &CookieConfig, name: String) -> Cookie<'c> {
    let mut c = login_named(cfg, name, "", Duration::ZERO);
    c.make_removal();
    c
}

/// The login cookie of a SAML login. The IdP answers with a cross-site POST, on which a
/// `SameSite=Lax` cookie is not sent: over https the cookie is `SameSite=None; Secure`; over
/// plain http (loopback development only) it carries no SameSite attribute, which browsers
/// still send on a top-level cross-site POST shortly after it was set.
pub fn cross_site_login<'c>(
    cfg: &CookieConfig,
    relay: &str,
    value: &str,
    max_age: Duration,
) -> Cookie<'c> {
    let mut c = login(cfg, relay, value, max_age);
    if cfg.secure {
        c.set_same_site(SameSite::None);
    } else {
        c.set_same_site(None);
    }
    c
}

pub fn clear_cross_site_login<'c>(cfg: &CookieConfig, relay: &str) -> Cookie<'c> {
    let mut c = cross_site_login(cfg, relay, "", Duration::ZERO);
    c.make_removal();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, domain: Option<&str>, secure: bool) -> CookieConfig {
        CookieConfig {
            name: name.into(),
            domain: domain.map(str::to_string),
            secure,
        }
    }

    /// Regression: with `cookie_domain`, login cookies were named `__Secure-…`, which a sibling
    /// host of the domain can set (with `Domain=`) for the bridge's host.
    #[test]
    fn over_https_login_cookies_are_host_cookies_also_when_the_session_spans_a_domain() {
        for c in [
            cfg("__Host-jitbridge", None, true),
            cfg("__Secure-jitbridge", Some("example.com"), true),
        ] {
            let login = login(&c, "st", "v", Duration::from_secs(60));
            assert!(
                login.name().starts_with("__Host-jitbridge-login-"),
                "{}",
                login.name()
            );
            assert_eq!(login.domain(), None);
            assert_eq!(login.path(), Some("/"));
            assert_eq!(login.secure(), Some(true));
            let saml = cross_site_login(&c, "relay", "v", Duration::from_secs(60));
            assert!(saml.name().starts_with("__Host-"), "{}", saml.name());
            assert_eq!(saml.domain(), None);
            assert_eq!(clear_login(&c, "st").name(), login.name());
        }
        let session = session(
            &cfg("__Secure-jitbridge", Some("example.com"), true),
            "id",
            Duration::from_secs(60),
        );
        assert_eq!(session.domain(), Some("example.com"));
        // Plain http (loopback development): no prefix, which browsers would refuse.
        let plain = login(
            &cfg("jitbridge", None, false),
            "st",
            "v",
            Duration::from_secs(60),
        );
        assert!(plain.name().starts_with("jitbridge-login-"));
    }
}
