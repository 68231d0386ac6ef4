//! SAML endpoints: SP metadata, the assertion consumer service (HTTP-POST) and single logout
//! (HTTP-Redirect). Verification is the adapter's; from a verified response on, a SAML login
//! takes the same path as an OIDC one ([`crate::login::complete`]). The checks of a received
//! LogoutRequest are the adapter's ([`crate::idp::saml::slo`]); here the request is parsed,
//! the sessions it names end through the lifecycle apply path, and the answer is rendered.

use super::errors::{LoginError, StateRefused, html_page};
use super::login::{audit_failure, found};
use super::logout::LoggedOutPage;
use super::ratelimit::Class;
use super::redirect::safe_return_to;
use super::{AppState, cookies, pending};
use crate::audit::{self, Event, Outcome};
use crate::idp::saml::logout::{self, STATUS_RESPONDER, STATUS_SUCCESS};
use crate::idp::saml::redirect::RedirectMessage;
use crate::idp::saml::{SamlError, SamlProvider, preflight, redirect, slo};
use crate::lifecycle::idp::{IdpEnded, end_idp_sessions};
use crate::session::{PendingLogin, PendingProtocol};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn provider<'a>(state: &'a AppState, name: &str) -> Result<&'a Arc<SamlProvider>, LoginError> {
    state.saml.get(name).ok_or(LoginError::UnknownConnection)
}

/// GET /saml/{connection}/metadata
pub async fn metadata(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let Ok(p) = provider(&state, &path) else {
        return HttpResponse::NotFound().body("unknown connection");
    };
    match p.sp_metadata() {
        Ok(xml) => HttpResponse::Ok()
            .content_type("application/samlmetadata+xml")
            .body(xml),
        Err(e) => {
            tracing::error!(error = %e, "cannot build SP metadata");
            HttpResponse::InternalServerError().body("cannot build the metadata")
        }
    }
}

/// Reads an urlencoded POST body up to `limit` bytes; a larger one is refused, not truncated.
async fn read_form(
    payload: web::Payload,
    limit: usize,
) -> Result<Vec<(String, String)>, LoginError> {
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| SamlError::Preflight(preflight::PreflightError::TooLarge))?
        .map_err(|_| SamlError::Preflight(preflight::PreflightError::Malformed))?;
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// POST /saml/{connection}/acs
#[tracing::instrument(skip_all, fields(connection = %path))]
pub async fn acs(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let connection = path.into_inner();
    let cookie_cfg = &state.config.server.cookie;
    let mut relay_seen = None;
    // Before the body is read: a refused POST costs no parsing.
    let result = match state.limits.check(Class::Acs, &req) {
        Ok(()) => {
            acs_inner(
                &req,
                &state,
                &connection,
                payload,
                &request_id,
                &mut relay_seen,
            )
            .await
        }
        Err(limited) => Err(LoginError::RateLimited(limited)),
    };
    let mut resp = match result {
        // 303: the browser follows with a GET, never re-POSTing the assertion.
        Ok((session_id, return_to)) => HttpResponse::SeeOther()
            .insert_header(("Location", return_to))
            .insert_header(("Cache-Control", "no-store"))
            .cookie(cookies::session(
                cookie_cfg,
                session_id.as_str(),
                state.config.sessions.absolute_timeout,
            ))
            .finish(),
        Err(e) => refuse(&state, &e, &connection, &request_id).await,
    };
    if let Some(r) = relay_seen {
        let _ = resp.add_cookie(&cookies::clear_cross_site_login(cookie_cfg, &r));
    }
    resp
}

/// Audits a refused SAML message and renders the person's error page.
async fn refuse(
    state: &AppState,
    e: &LoginError,
    connection: &str,
    request_id: &str,
) -> HttpResponse {
    let known = state.saml.contains_key(connection).then_some(connection);
    audit_failure(state, e, known, request_id).await;
    actix_web::ResponseError::error_response(e)
}

fn looks_like_our_relay(r: &str) -> bool {
    r.len() == 43
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn acs_inner(
    req: &HttpRequest,
    state: &AppState,
    connection: &str,
    payload: web::Payload,
    request_id: &str,
    relay_seen: &mut Option<String>,
) -> Result<(crate::session::SessionId, String), LoginError> {
    let p = provider(state, connection)?;
    let cfg = p.config();
    let form = read_form(payload, cfg.max_response_bytes / 3 * 4 + 16 * 1024).await?;
    // A slot bounds the verifications running at once: taken once the body is in (a client
    // that sends its body slowly must not hold one), before anything is marked used (a busy
    // answer leaves the login retryable), and given back before provisioning.
    let slot = p.verify_slot().await?;
    let field = |name: &str| -> Result<Option<&str>, LoginError> {
        let mut it = form.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(SamlError::Invalid(format!("{name} appears twice")).into());
        }
        Ok(first)
    };
    let saml_response = field("SAMLResponse")?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SamlError::Invalid("the POST carries no SAMLResponse".into()))?;
    let relay = field("RelayState")?.filter(|r| !r.is_empty());

    // The RelayState we issued names the login this browser started (its sealed state is in
    // this browser's cookie); anything else is unsolicited.
    let mut pending: Option<PendingLogin> = None;
    if let Some(r) = relay.filter(|r| looks_like_our_relay(r)) {
        *relay_seen = Some(r.to_string());
        pending = pending::open(req, state, r)?;
        match &pending {
            Some(pl) => {
                if pl.connection != connection {
                    return Err(LoginError::ConnectionMismatch);
                }
                // Single use, recorded before the (costly) verification.
                pending::mark_used(state, r, pl).await?;
            }
            None if !cfg.allow_idp_initiated => return Err(StateRefused::CookieMissing.into()),
            None => {}
        }
    }
    let (expected, return_to) = match &pending {
        Some(pl) => {
            let PendingProtocol::Saml { request_id } = &pl.protocol else {
                return Err(LoginError::ConnectionMismatch);
            };
            (Some(request_id.as_str()), pl.return_to.clone())
        }
        None => {
            // IdP-initiated: a RelayState may name where to go, within the usual rules.
            let target = relay
                .and_then(|r| {
                    safe_return_to(
                        Some(r),
                        &state.config.server.public_url,
                        &state.config.server.allowed_redirect_hosts,
                    )
                    .ok()
                })
                .unwrap_or_else(|| "/".into());
            (None, target)
        }
    };
    let verified = p.verify_response(saml_response, expected).await?;
    drop(slot);
    // The login carries the assertion's replay key; the login service records it first.
    let login = verified.into_login(connection);
    let previous = super::session_id(req, &state.config.server.cookie.name);
    let id = crate::login::complete(&state.login(), login, previous, request_id).await?;
    Ok((id, return_to))
}

/// GET /saml/{connection}/slo: the IdP's LogoutRequest, or its answer to ours.
#[tracing::instrument(skip_all, fields(connection = %path))]
pub async fn slo(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> HttpResponse {
    let connection = path.into_inner();
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = match (
        state.limits.check(Class::Slo, &req),
        provider(&state, &connection),
    ) {
        (Err(limited), _) => Err(LoginError::RateLimited(limited)),
        (Ok(()), Ok(p)) => slo_inner(&req, &state, p, &request_id).await,
        (Ok(()), Err(e)) => Err(e),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => refuse(&state, &e, &connection, &request_id).await,
    }
}

async fn slo_inner(
    req: &HttpRequest,
    state: &AppState,
    p: &SamlProvider,
    request_id: &str,
) -> Result<HttpResponse, LoginError> {
    let msg = RedirectMessage::parse(req.query_string())?;
    let idp = p.idp().await?;
    let cfg = p.config();
    let xml = preflight::decode_redirect(&msg.payload, 256 * 1024)?;
    if msg.param == "SAMLResponse" {
        return logout_answer(req, state, p, &msg, &xml).await;
    }
    let lr = slo::check_logout_request(cfg, &idp, p.name(), &msg, &xml)?;
    // Used once: checked now, marked once the sessions ended (a failure must leave the IdP's
    // retry of the same request welcome).
    if state.sessions.was_used(&lr.replay_key).await? {
        return Err(LoginError::Replayed);
    }
    let target = lr.target(cfg)?;
    let ended = if target.session_indexes.is_empty() {
        IdpEnded::Principal {
            principal: &target.principal,
            subject: target.subject.as_deref(),
        }
    } else {
        IdpEnded::PrincipalSessions {
            principal: &target.principal,
            session_indexes: &target.session_indexes,
        }
    };
    let revoked = end_idp_sessions(&state.db, &state.sessions, p.name(), ended).await;
    if revoked.is_ok()
        && let Err(e) = state
            .sessions
            .first_use(&lr.replay_key, Duration::from_secs(900))
            .await
    {
        // The sessions ended; a replay could only end them again.
        tracing::warn!(error = %e, "cannot mark a LogoutRequest as used");
    }
    let status = match &revoked {
        Ok(_) => STATUS_SUCCESS,
        Err(_) => STATUS_RESPONDER,
    };
    let e = Event::new(
        "logout.idp",
        if revoked.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        },
    )
    .actor(format!("idp:{}", p.name()))
    .connection(p.name())
    .details(json!({
        "protocol": "saml",
        "sessions_revoked": revoked.as_ref().ok(),
        "by": if target.session_indexes.is_empty() { "name_id" } else { "session_index" },
    }))
    .request_id(Some(request_id.to_string()));
    state.db.run(move |c| audit::record(c, e)).await?;
    let (dest, answer) = lr.answer(cfg, &idp, status)?;
    let key = p.sp_key().filter(|_| cfg.sign_requests);
    let url = redirect::encode(
        &dest,
        "SAMLResponse",
        &answer,
        msg.relay_state.as_deref(),
        key,
    )
    .map_err(|e| LoginError::Internal(e.context("cannot sign the LogoutResponse")))?;
    Ok(found(url.as_str()).finish())
}

/// The IdP's LogoutResponse to our LogoutRequest: the local session is already gone, so this
/// only decides where the browser lands (the return path sealed in this browser's cookie when
/// the logout started; without it, or when it does not open, the logged-out page). Nothing is
/// recorded: a replay can only repeat that redirect.
async fn logout_answer(
    req: &HttpRequest,
    state: &AppState,
    p: &SamlProvider,
    msg: &RedirectMessage,
    xml: &str,
) -> Result<HttpResponse, LoginError> {
    let idp = p.idp().await?;
    if msg.is_signed() {
        msg.verify(&idp.certs, &p.config().signature_algorithms)?;
    }
    let answer = logout::parse(xml, "LogoutResponse")?;
    let relay = msg
        .relay_state
        .as_deref()
        .filter(|r| looks_like_our_relay(r));
    let pending = relay.and_then(|r| pending::open(req, state, r).ok().flatten());
    let return_to = match pending {
        Some(PendingLogin {
            protocol: PendingProtocol::SamlLogout { request_id },
            return_to,
            ..
        }) if answer.in_response_to.as_deref() == Some(request_id.as_str()) => Some(return_to),
        _ => None,
    };
    let ok = answer.status.as_deref() == Some(STATUS_SUCCESS);
    if !ok {
        tracing::info!(
            status = answer.status.as_deref().unwrap_or("none"),
            "the IdP reported a partial logout"
        );
    }
    let mut resp = match return_to.filter(|r| r != "/" && ok) {
        Some(rd) => found(&rd).finish(),
        None => html_page(StatusCode::OK, &LoggedOutPage),
    };
    if let Some(r) = relay {
        let _ = resp.add_cookie(&cookies::clear_login(&state.config.server.cookie, r));
    }
    Ok(resp)
}

/// Starts SP-initiated single logout for a SAML session that was just ended locally: the
/// redirect to the IdP's SLO endpoint and the cookie that holds the logout's sealed state,
/// or `None` when the IdP has none.
pub(super) async fn start_logout(
    state: &AppState,
    record: &crate::session::SessionRecord,
    return_to: Option<String>,
) -> Option<(String, actix_web::cookie::Cookie<'static>)> {
    let p = state.saml.get(&record.connection)?;
    let idp = p.idp().await.ok()?;
    let dest = idp.slo_redirect.clone()?;
    let (id, xml) = slo::logout_request(
        p.config(),
        dest.as_str(),
        record.idp_logout_ref.as_ref()?,
        record.idp_session.as_deref(),
    )?;
    let relay = crate::session::random_token();
    let pending = pending::new_login(
        state,
        &record.connection,
        PendingProtocol::SamlLogout { request_id: id },
        return_to.unwrap_or_else(|| "/".into()),
    );
    // The IdP answers with a top-level GET redirect: a SameSite=Lax cookie comes back.
    let cookie = pending::cookie(state, &relay, &pending);
    let key = p.sp_key().filter(|_| p.config().sign_requests);
    match redirect::encode(&dest, "SAMLRequest", &xml, Some(&relay), key) {
        Ok(u) => Some((u.to_string(), cookie)),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the LogoutRequest");
            None
        }
    }
}
