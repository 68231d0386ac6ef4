//! Pending logins in the browser's own cookies: one cookie per started login, named after its
//! state (so parallel tabs do not overwrite each other), holding the login sealed by
//! [`crate::session::sealed`]. Nothing is kept server-side until the login comes back with a
//! valid sealed state; then its use is recorded once (`first_use`, for the login's remaining
//! lifetime), so a replayed callback or ACS POST is refused.
//!
//! The cookie binds the login to the browser that started it, as the binding cookie did
//! before: a callback URL opened in another browser (login CSRF: an attacker's own login
//! pushed into a victim's browser) finds no cookie. It is HttpOnly, host-only, Secure over
//! https, `SameSite=Lax` for OIDC (the IdP sends a top-level GET back) and `SameSite=None`
//! for the SAML ACS (a cross-site POST); see [`super::cookies`].
//!
//! A browser holds at most [`MAX_PENDING`] of them: starting one more drops the oldest, so a
//! page that sends a browser to `/login` in a loop cannot grow its cookie header without
//! bound. The value is `<unix milliseconds>.<sealed>`; the clear-text time only orders
//! cookies for that purpose, the sealed login's own times are the authority.

use super::errors::{LoginError, StateRefused};
use super::{AppState, cookies};
use crate::session::sealed::OpenError;
use crate::session::{PendingLogin, PendingProtocol, unix_now};
use actix_web::HttpRequest;
use actix_web::cookie::Cookie;
use std::time::Duration;

/// Logins one browser can have under way at once (tabs, apps sending it to `/login`).
pub const MAX_PENDING: usize = 4;

/// A new pending login, valid for `sessions.login_timeout`.
pub(super) fn new_login(
    state: &AppState,
    connection: &str,
    protocol: PendingProtocol,
    return_to: String,
) -> PendingLogin {
    let now = unix_now();
    PendingLogin {
        connection: connection.to_string(),
        protocol,
        return_to,
        created_at: now,
        expires_at: now + state.config.sessions.login_timeout.as_secs() as i64,
    }
}

fn value(state: &AppState, st: &str, login: &PendingLogin) -> String {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    format!("{ms}.{}", state.sealer.seal(st, login))
}

/// The cookie of a login whose IdP answers with a top-level GET (OIDC, SAML logout).
pub(super) fn cookie(state: &AppState, st: &str, login: &PendingLogin) -> Cookie<'static> {
    let cfg = &state.config.server.cookie;
    cookies::login(
        cfg,
        st,
        &value(state, st, login),
        state.config.sessions.login_timeout,
    )
}

/// The cookie of a login whose IdP answers with a cross-site POST (the SAML ACS).
pub(super) fn cross_site_cookie(
    state: &AppState,
    st: &str,
    login: &PendingLogin,
) -> Cookie<'static> {
    let cfg = &state.config.server.cookie;
    cookies::cross_site_login(
        cfg,
        st,
        &value(state, st, login),
        state.config.sessions.login_timeout,
    )
}

/// Removal cookies for the oldest pending logins of this browser, so that with one more at
/// most [`MAX_PENDING`] remain.
pub(super) fn evict_oldest(req: &HttpRequest, state: &AppState) -> Vec<Cookie<'static>> {
    let cfg = &state.config.server.cookie;
    let prefix = cookies::login_prefix(cfg);
    let Ok(all) = req.cookies() else {
        return Vec::new();
    };
    let mut pending: Vec<(i128, String)> = all
        .iter()
        .filter(|c| c.name().starts_with(&prefix))
        .map(|c| {
            // Unreadable ones sort first and go first.
            let at = c
                .value()
                .split_once('.')
                .and_then(|(t, _)| t.parse().ok())
                .unwrap_or(i128::MIN);
            (at, c.name().to_string())
        })
        .collect();
    if pending.len() < MAX_PENDING {
        return Vec::new();
    }
    pending.sort();
    let excess = pending.len() + 1 - MAX_PENDING;
    pending
        .into_iter()
        .take(excess)
        .map(|(_, name)| cookies::clear_login_named(cfg, name))
        .collect()
}

/// The login this browser started with `st`: `Ok(None)` when it holds no cookie for it.
pub(super) fn open(
    req: &HttpRequest,
    state: &AppState,
    st: &str,
) -> Result<Option<PendingLogin>, StateRefused> {
    let Some(c) = req.cookie(&cookies::login_name(&state.config.server.cookie, st)) else {
        return Ok(None);
    };
    let sealed = c
        .value()
        .split_once('.')
        .map(|(_, s)| s)
        .ok_or(StateRefused::Tampered)?;
    let now = unix_now();
    let login = state.sealer.open(st, sealed, now).map_err(|e| match e {
        OpenError::Tampered => StateRefused::Tampered,
        OpenError::UnknownKey => StateRefused::UnknownKey,
        OpenError::Expired => StateRefused::Expired,
    })?;
    // A login timeout shortened since the login started applies to it too.
    if now >= login.created_at + state.config.sessions.login_timeout.as_secs() as i64 {
        return Err(StateRefused::Expired);
    }
    Ok(Some(login))
}

/// Records that the login of `st` came back; refused when it already had (a replay). Only
/// here does a login write to the store.
pub(super) async fn mark_used(
    state: &AppState,
    st: &str,
    login: &PendingLogin,
) -> Result<(), LoginError> {
    let left = (login.expires_at - unix_now()).max(1) as u64;
    let fresh = state
        .sessions
        .first_use(&format!("login-state\u{0}{st}"), Duration::from_secs(left))
        .await?;
    if !fresh {
        return Err(StateRefused::Replayed.into());
    }
    Ok(())
}

/// The login this browser started with `st`, once: opened, checked against the connection it
/// comes back to, and marked used.
pub(super) async fn take(
    req: &HttpRequest,
    state: &AppState,
    st: &str,
    connection: &str,
) -> Result<PendingLogin, LoginError> {
    let login = open(req, state, st)?.ok_or(StateRefused::CookieMissing)?;
    if login.connection != connection {
        return Err(LoginError::ConnectionMismatch);
    }
    mark_used(state, st, &login).await?;
    Ok(login)
}
