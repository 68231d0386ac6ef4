//! `/login`, `/callback/{connection}`: the browser side of the pipeline.

use super::errors::{LoginError, html_page, log_internal};
use super::ratelimit::Class;
use super::redirect::safe_return_to;
use super::{AppState, cookies, pending};
use crate::audit::{self, Event, Outcome};
use crate::idp::AdapterError;
use crate::idp::NormalizedLogin;
use crate::provisioning::{self, LoginKey};
use crate::session::{PendingProtocol, SessionId, SessionRecord, random_token, unix_now};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

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

/// Records a refused or failed login in the audit trail and logs its reason code.
pub(super) async fn audit_failure(
    state: &AppState,
    err: &LoginError,
    connection: Option<&str>,
    request_id: &str,
) {
    if err.is_internal() {
        log_internal(err, err.reason(), request_id);
    }
    // A name from the URL is the caller's to choose: only a configured one is recorded.
    let connection = connection.filter(|c| state.config.connection(c).is_some());
    // The first refusal of its kind this minute is written in full; the rest are counted and
    // written as one event when the minute is over (audit::failures), so junk cannot grow
    // the trail without bound.
    // A refusal of a known account (it is disabled, or holds the name) came through the IdP:
    // kept in full.
    let of_an_account = err.account_id().is_some();
    if !of_an_account
        && !state.failures.note(
            "login.failed",
            err.reason(),
            connection,
            crate::session::unix_now(),
        )
    {
        tracing::debug!(reason = err.reason(), request_id, "login refused (repeat)");
        return;
    }
    tracing::info!(
        reason = err.reason(),
        connection,
        request_id,
        "login refused"
    );
    let mut e = Event::new("login.failed", Outcome::Failure)
        .actor("anonymous")
        .details(json!({ "reason": err.reason(), "message": err.to_string() }))
        .request_id(Some(request_id.to_string()));
    if let Some(c) = connection {
        e = e.connection(c);
    }
    if let Some(account_id) = err.account_id() {
        e = e.account(account_id);
    }
    if let Err(db) = state.db.run(move |c| audit::record(c, e)).await {
        tracing::error!(error = %db, "could not write the audit event of a refused login");
    }
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
    let result = match state.limits.check(Class::Callback, &req) {
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
    if let Some(s) = &q.state {
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
    let id = complete_login(req, state, login, request_id).await?;
    Ok((id.as_str().to_string(), pending.return_to))
}

/// The protocol-neutral end of every login: mapping, provisioning in one transaction, and a
/// new session (ending the browser's previous one).
pub(super) async fn complete_login(
    req: &HttpRequest,
    state: &AppState,
    login: NormalizedLogin,
    request_id: &str,
) -> Result<SessionId, LoginError> {
    let connection = login.connection.as_str();

    let conn_cfg = state
        .config
        .connection(connection)
        .ok_or(LoginError::UnknownConnection)?;
    let (mapping, usernames) = (conn_cfg.mapping.clone(), conn_cfg.usernames.clone());
    let profile = mapping.apply(&login.claims)?;
    let (conn_name, subject, rid) = (
        connection.to_string(),
        login.subject.clone(),
        request_id.to_string(),
    );
    let provisioned = state
        .db
        .run(move |c| {
            provisioning::provision(
                c,
                LoginKey {
                    connection: &conn_name,
                    subject: &subject,
                    request_id: Some(&rid),
                },
                &profile,
                &usernames,
            )
        })
        .await?;
    tracing::info!(
        account = %provisioned.account.id,
        created = provisioned.created,
        changed = ?provisioned.changed_fields,
        "login succeeded"
    );
    // The account's current identity and roles for every live session of it (other devices
    // too), before this session exists: a newer snapshot already stored (a disable or a role
    // change that committed after this login) is kept.
    state.sessions.put_account(&provisioned.state).await?;
    let now = unix_now();
    let record = SessionRecord {
        account: provisioned.account,
        connection: connection.to_string(),
        subject: login.subject,
        idp_session: login.idp_session,
        name_id: login.name_id,
        created_at: now,
        // The IdP may want its session over sooner (SAML SessionNotOnOrAfter).
        expires_at: (now + state.config.sessions.absolute_timeout.as_secs() as i64)
            .min(login.session_ends_at.unwrap_or(i64::MAX)),
    };
    let id = state.sessions.create(record).await?;
    // A browser holds one session: a previous one (another account, or a stale one) ends here.
    if let Some(old) = super::session_id(req, &state.config.server.cookie.name) {
        state.sessions.delete(&old).await?;
    }
    Ok(id)
}
