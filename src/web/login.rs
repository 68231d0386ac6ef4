//! `/login`, `/callback/{connection}`: the browser side of the pipeline.

use super::errors::{LoginError, html_page, log_internal};
use super::ratelimit::Class;
use super::redirect::safe_return_to;
use super::{AppState, cookies, pending};
use crate::idp::AdapterError;
use crate::login;
use crate::session::{PendingProtocol, random_token};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct LoginQuery {
    connection: Option<String>,
    rd: Option<String>,
}

struct ConnectionLink {
    href: String,
    label: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct ChooserPage {
    connections: Vec<ConnectionLink>,
}

pub(super) fn found(location: &str) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::Found();
    b.insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"));
    b
}

/// Records a refused or failed login in the audit trail (through the login service, which
/// aggregates repeats) and logs an internal failure's cause chain.
pub(super) async fn audit_failure(
    state: &AppState,
    err: &LoginError,
    connection: Option<&str>,
    request_id: &str,
) {
    if err.is_internal() {
        log_internal(err, err.reason(), request_id);
    }
    let refused = login::Refused {
        reason: err.reason(),
        message: err,
        account_id: err.account_id(),
        connection,
    };
    login::audit_refused(&state.login(), refused, request_id).await;
}

#[tracing::instrument(skip_all, fields(connection = q.connection.as_deref()))]
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<LoginQuery>,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = match state.limits.check(Class::Login, &req) {
        Ok(()) => start_inner(&req, &state, &q).await,
        Err(limited) => Err(LoginError::RateLimited(limited)),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            audit_failure(&state, &e, q.connection.as_deref(), &request_id).await;
            actix_web::ResponseError::error_response(&e)
        }
    }
}

async fn start_inner(
    req: &HttpRequest,
    state: &AppState,
    q: &LoginQuery,
) -> Result<HttpResponse, LoginError> {
    // Browsers say how a request was made; a navigation is the only way a person starts a
    // login. (An older browser sends no header and is let through.)
    if req
        .headers()
        .get("sec-fetch-mode")
        .is_some_and(|m| m.as_bytes() != b"navigate")
    {
        return Err(LoginError::NotNavigation);
    }
    let cfg = &state.config;
    let return_to = safe_return_to(
        q.rd.as_deref(),
        &cfg.server.public_url,
        &cfg.server.allowed_redirect_hosts,
    )?;
    let name = match (&q.connection, cfg.connections.as_slice()) {
        (Some(name), _) => name.clone(),
        (None, [only]) => only.name.clone(),
        (None, all) => {
            let connections = all
                .iter()
                .map(|c| ConnectionLink {
                    href: format!(
                        "/login?{}",
                        serde_urlencoded_pairs(&[("connection", &c.name), ("rd", &return_to)])
                    ),
                    label: c.display_name.clone(),
                })
                .collect();
            return Ok(html_page(StatusCode::OK, &ChooserPage { connections }));
        }
    };
    // The login is sealed into this browser's cookie: nothing is stored for a login start.
    let (location, cookie) = if let Some(provider) = state.providers.get(&name) {
        let started = provider.start().await?;
        let p = pending::new_login(
            state,
            &name,
            PendingProtocol::Oidc {
                nonce: started.nonce,
                pkce_verifier: started.pkce_verifier,
            },
            return_to,
        );
        let cookie = pending::cookie(state, &started.state, &p);
        (started.authorize_url.to_string(), cookie)
    } else {
        let saml = state.saml.get(&name).ok_or(LoginError::UnknownConnection)?;
        // RelayState carries only an opaque name for the pending login, never the return path.
        let relay = random_token();
        let started = saml.start(&relay).await?;
        let p = pending::new_login(
            state,
            &name,
            PendingProtocol::Saml {
                request_id: started.request_id,
            },
            return_to,
        );
        let cookie = pending::cross_site_cookie(state, &relay, &p);
        (started.redirect_url.to_string(), cookie)
    };
    let mut resp = found(&location);
    for old in pending::evict_oldest(req, state) {
        resp.cookie(old);
    }
    Ok(resp.cookie(cookie).finish())
}

fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

#[tracing::instrument(skip_all, fields(connection = %path))]
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let connection = path.into_inner();
    let cookie_cfg = &state.config.server.cookie;
    let limit = state.limits.check(Class::Callback, &req);
    // A callback refused by the rate limit never looked at its login: the browser keeps the
    // login's cookie, so the person's retry once the limit allows it can still finish.
    let looked_at_login = limit.is_ok();
    let result = match limit {
        Ok(()) => callback_inner(&req, &state, &connection, &q, &request_id).await,
        Err(limited) => Err(LoginError::RateLimited(limited)),
    };
    let mut resp = match result {
        Ok((session_id, return_to)) => found(&return_to)
            .cookie(cookies::session(
                cookie_cfg,
                &session_id,
                state.config.sessions.absolute_timeout,
            ))
            .finish(),
        Err(e) => {
            let known = state
                .providers
                .contains_key(&connection)
                .then_some(connection.as_str());
            audit_failure(&state, &e, known, &request_id).await;
            actix_web::ResponseError::error_response(&e)
        }
    };
    if let Some(s) = q.state.as_ref().filter(|_| looked_at_login) {
        let _ = resp.add_cookie(&cookies::clear_login(cookie_cfg, s));
    }
    resp
}

async fn callback_inner(
    req: &HttpRequest,
    state: &AppState,
    connection: &str,
    q: &CallbackQuery,
    request_id: &str,
) -> Result<(String, String), LoginError> {
    let provider = state
        .providers
        .get(connection)
        .ok_or(LoginError::UnknownConnection)?;
    let st = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(LoginError::StateMissing)?;
    if st.len() > 512 {
        return Err(crate::web::errors::StateRefused::CookieMissing.into());
    }
    // Opened from this browser's cookie and marked used before anything else, so a replayed
    // callback fails here.
    let pending = pending::take(req, state, st, connection).await?;
    if let Some(err) = &q.error {
        // Echo only a well-formed OAuth error code, never free text from the URL.
        let code = if err.len() <= 64 && err.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            err.clone()
        } else {
            "unrecognised_error".into()
        };
        return Err(AdapterError::ProviderError { code }.into());
    }
    provider.check_iss_param(q.iss.as_deref()).await?;
    let code = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(AdapterError::MissingCode)?;
    let PendingProtocol::Oidc {
        nonce,
        pkce_verifier,
    } = &pending.protocol
    else {
        return Err(LoginError::ConnectionMismatch);
    };
    let login = provider.finish(code, nonce, pkce_verifier).await?;
    let previous = super::session_id(req, &state.config.server.cookie.name);
    let id = login::complete(&state.login(), login, previous, request_id).await?;
    Ok((id.as_str().to_string(), pending.return_to))
}
