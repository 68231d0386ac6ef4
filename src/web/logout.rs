//! Sign-out. `GET /logout` only shows a confirmation page; `POST /logout` from that page ends
//! the session, then the IdP session (OIDC RP-initiated logout, SAML SP-initiated SLO).
//!
//! Another site must not be able to sign people out (a link, an `<img>`, a hidden form), so the
//! POST needs both:
//! - the token of our own page, bound to the session: HMAC-SHA256 keyed by the session id (a
//!   256-bit secret that only the HttpOnly cookie carries). Another site can neither read our
//!   page nor compute it; every replica computes the same value without a shared key to
//!   distribute, and the token reveals nothing about the id;
//! - an `Origin` (or, when a browser sends none, `Referer`) on `server.public_url` or on one of
//!   `server.allowed_redirect_hosts`, by the same rule as `rd`.
//!
//! A sign-out that could not end the session (the store is down) says so with a 5xx page and
//! keeps the cookie, so the person can try again; it never claims success.

use super::errors::{LogoutError, html_page, log_internal};
use super::login::found;
use super::redirect::safe_return_to;
use super::{AppState, cookies, current_session, session_id};
use crate::audit::{self, Event, Outcome};
use crate::session::{SessionId, SessionRecord};
use actix_web::http::StatusCode;
use actix_web::http::header::{ORIGIN, REFERER};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use url::Url;

/// Bytes of a POST /logout body we read at most (a token and a return path).
const MAX_FORM_BYTES: usize = 8 * 1024;

#[derive(Template)]
#[template(path = "logged_out.html")]
pub(super) struct LoggedOutPage;

#[derive(Template)]
#[template(path = "logout_confirm.html")]
struct ConfirmPage {
    username: String,
    token: String,
    rd: Option<String>,
    at_idp: bool,
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    rd: Option<String>,
}

/// The confirmation token of a session.
fn token_for(id: &SessionId) -> String {
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    let mac = PKey::hmac(id.as_str().as_bytes())
        .and_then(|key| {
            let mut s = Signer::new(MessageDigest::sha256(), &key)?;
            s.update(b"jitbridge sign-out confirmation v1")?;
            s.sign_to_vec()
        })
        .expect("HMAC-SHA256 is available");
    URL_SAFE_NO_PAD.encode(mac)
}

fn token_matches(id: &SessionId, given: &str) -> bool {
    let expected = token_for(id);
    expected.len() == given.len() && openssl::memcmp::eq(expected.as_bytes(), given.as_bytes())
}

/// Whether the request comes from a page of ours or of an allowed host.
fn same_site_origin(req: &HttpRequest, state: &AppState) -> Result<(), &'static str> {
    let h = req.headers();
    let (value, which) = match (h.get(ORIGIN), h.get(REFERER)) {
        (Some(o), _) => (o, "logout_foreign_origin"),
        (None, Some(r)) => (r, "logout_foreign_referer"),
        (None, None) => return Err("logout_no_origin"),
    };
    let url = value
        .to_str()
        .ok()
        .and_then(|v| Url::parse(v).ok())
        .ok_or(which)?;
    // An opaque origin serializes as "null", which the rule below refuses.
    let origin = url.origin().ascii_serialization();
    let cfg = &state.config.server;
    safe_return_to(Some(&origin), &cfg.public_url, &cfg.allowed_redirect_hosts)
        .map(|_| ())
        .map_err(|_| which)
}

/// Where the IdP side of the sign-out goes, if anywhere (for the page's `form-action`).
async fn idp_logout_origin(state: &AppState, record: &SessionRecord) -> Option<String> {
    if let Some(p) = state.providers.get(&record.connection) {
        return p
            .end_session_url(&logged_out_url(state))
            .map(|u| u.origin().ascii_serialization());
    }
    let p = state.saml.get(&record.connection)?;
    record.idp_logout_ref.as_ref()?;
    let idp = p.idp().await.ok()?;
    idp.slo_redirect
        .as_ref()
        .map(|u| u.origin().ascii_serialization())
}

fn logged_out_url(state: &AppState) -> Url {
    state
        .config
        .server
        .public_url
        .join("logged-out")
        .expect("static path")
}

fn return_to(state: &AppState, rd: Option<&str>) -> Option<String> {
    let cfg = &state.config.server;
    safe_return_to(rd, &cfg.public_url, &cfg.allowed_redirect_hosts)
        .ok()
        .filter(|r| r != "/")
}

fn logged_out(state: &AppState) -> HttpResponse {
    let mut r = html_page(StatusCode::OK, &LoggedOutPage);
    let _ = r.add_cookie(&cookies::clear_session(&state.config.server.cookie));
    r
}

/// GET /logout: the confirmation page. It ends nothing.
#[tracing::instrument(skip_all)]
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<LogoutQuery>,
) -> HttpResponse {
    let (id, record) = match current_session(&req, &state).await {
        Ok(Some(s)) => s,
        Ok(None) => return logged_out(&state),
        Err(e) => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let e = LogoutError::from(e);
            log_internal(&e, e.reason(), &request_id);
            return actix_web::ResponseError::error_response(&e);
        }
    };
    let rd = return_to(&state, q.rd.as_deref());
    let idp = idp_logout_origin(&state, &record).await;
    // form-action also governs the redirects that answer the form (to the IdP, or to rd).
    let mut targets = vec!["'self'".to_string()];
    targets.extend(idp.clone());
    targets.extend(
        rd.as_deref()
            .and_then(|r| Url::parse(r).ok())
            .map(|u| u.origin().ascii_serialization()),
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
        targets.join(" ")
    );
    let mut resp = html_page(
        StatusCode::OK,
        &ConfirmPage {
            username: record.account.username.clone(),
            token: token_for(&id),
            rd,
            at_idp: idp.is_some(),
        },
    );
    let h = resp.headers_mut();
    if let Ok(v) = csp.parse() {
        h.insert(actix_web::http::header::CONTENT_SECURITY_POLICY, v);
    }
    // Under `no-referrer` a browser sends `Origin: null` with the form's POST (Fetch,
    // "append a request Origin header"), which the POST would refuse.
    h.insert(
        actix_web::http::header::REFERRER_POLICY,
        actix_web::http::header::HeaderValue::from_static("same-origin"),
    );
    resp
}

/// POST /logout: ends the session when the request carries this session's token and comes
/// from our own origin.
#[tracing::instrument(skip_all)]
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    match confirm_inner(&req, &state, payload).await {
        Ok(r) => r,
        Err(e) => {
            match &e {
                LogoutError::Forged { reason } => {
                    tracing::info!(reason, request_id, "sign-out refused");
                    // Anyone can post a forged sign-out: aggregated like refused logins.
                    let first = state.failures.note(
                        "logout.refused",
                        reason,
                        None,
                        crate::session::unix_now(),
                    );
                    if !first {
                        return actix_web::ResponseError::error_response(&e);
                    }
                    let ev = Event::new("logout.refused", Outcome::Failure)
                        .actor("anonymous")
                        .details(json!({ "reason": reason }))
                        .request_id(Some(request_id.clone()));
                    if let Err(err) = state.db.run(move |c| audit::record(c, ev)).await {
                        log_internal(&err, "audit_unavailable", &request_id);
                    }
                }
                LogoutError::Sessions(_) => log_internal(&e, e.reason(), &request_id),
            }
            actix_web::ResponseError::error_response(&e)
        }
    }
}

async fn confirm_inner(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
) -> Result<HttpResponse, LogoutError> {
    same_site_origin(req, state).map_err(|reason| LogoutError::Forged { reason })?;
    let Some(id) = session_id(req, &state.config.server.cookie.name) else {
        return Ok(logged_out(state));
    };
    let body = match payload.to_bytes_limited(MAX_FORM_BYTES).await {
        Ok(Ok(b)) => b,
        _ => {
            return Err(LogoutError::Forged {
                reason: "logout_token_missing",
            });
        }
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("token").filter(|t| !t.is_empty()) {
        None => {
            return Err(LogoutError::Forged {
                reason: "logout_token_missing",
            });
        }
        Some(t) if !token_matches(&id, t) => {
            return Err(LogoutError::Forged {
                reason: "logout_token_invalid",
            });
        }
        Some(_) => {}
    }
    let rd = return_to(state, field("rd"));
    let Some(record) = state.sessions.get(&id).await? else {
        return Ok(logged_out(state));
    };
    // Until the store confirms the delete, the session lives: no success page, and the cookie
    // stays so that the person can try again.
    state.sessions.delete(&id).await?;
    let e = Event::new("logout", Outcome::Success)
        .actor(format!("account:{}", record.account.id))
        .account(&record.account.id)
        .connection(&record.connection);
    if let Err(err) = state.db.run(move |c| audit::record(c, e)).await {
        tracing::error!(error = %super::errors::cause_chain(&err), "could not write the logout audit event");
    }
    let (idp_logout, logout_state) = match state.providers.get(&record.connection) {
        Some(p) => (
            p.end_session_url(&logged_out_url(state))
                .map(|u| u.to_string()),
            None,
        ),
        None => match super::saml::start_logout(state, &record, rd.clone()).await {
            Some((url, cookie)) => (Some(url), Some(cookie)),
            None => (None, None),
        },
    };
    let clear = cookies::clear_session(&state.config.server.cookie);
    Ok(match (idp_logout, rd) {
        (Some(url), _) => {
            let mut r = found(&url);
            r.cookie(clear);
            if let Some(c) = logout_state {
                r.cookie(c);
            }
            r.finish()
        }
        (None, Some(rd)) => found(&rd).cookie(clear).finish(),
        (None, None) => logged_out(state),
    })
}

/// GET /logged-out: where the IdP sends people back.
pub async fn after_idp() -> HttpResponse {
    html_page(StatusCode::OK, &LoggedOutPage)
}
