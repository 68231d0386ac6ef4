//! `POST /backchannel-logout/{connection}`: OpenID Connect Back-Channel Logout 1.0. The IdP
//! tells us a session (sid) or a person (sub) logged out; their sessions here end at once.
//! Answers per section 2.8: 200 on success, 400 with a JSON error otherwise, never cached.

use super::AppState;
use super::errors::{LoginError, cause_chain};
use super::ratelimit::Class;
use crate::audit::{self, Event, Outcome};
use crate::lifecycle::idp::{EndError, IdpEnded, end_idp_sessions};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub struct LogoutForm {
    logout_token: Option<String>,
}

fn refuse(msg: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "error": "invalid_request", "error_description": msg }))
}

async fn audit_result(
    state: &AppState,
    connection: &str,
    outcome: Outcome,
    details: serde_json::Value,
) {
    let e = Event::new("logout.backchannel", outcome)
        .actor("idp")
        .connection(connection)
        .details(details);
    if let Err(err) = state.db.run(move |c| audit::record(c, e)).await {
        tracing::error!(error = %err, "could not audit a back-channel logout");
    }
}

/// A refused logout request, audited through the failure aggregator: the first of each
/// reason, connection and minute in full, the rest counted (strangers can send these without
/// bound).
async fn audit_refusal(
    state: &AppState,
    connection: &str,
    reason: &'static str,
    details: serde_json::Value,
) {
    let now = crate::session::unix_now();
    if state
        .failures
        .note("logout.backchannel", reason, Some(connection), now)
    {
        let mut details = details;
        if let serde_json::Value::Object(m) = &mut details {
            m.insert("reason".into(), json!(reason));
        }
        audit_result(state, connection, Outcome::Failure, details).await;
    }
}

#[tracing::instrument(skip_all, fields(connection = %path))]
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<LogoutForm>,
) -> HttpResponse {
    let connection = path.into_inner();
    let Some(provider) = state.providers.get(&connection) else {
        return HttpResponse::NotFound().json(
            json!({ "error": "invalid_request", "error_description": "unknown connection" }),
        );
    };
    // IdP-initiated logout shares the SLO class of the rate limits.
    if let Err(limited) = state.limits.check(Class::Slo, &req) {
        audit_refusal(&state, &connection, limited.class.reason(), json!({})).await;
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", limited.retry_after.to_string()))
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({ "error": "temporarily_unavailable", "error_description": "too many requests" }));
    }
    let Some(token) = form.logout_token.as_deref().filter(|t| !t.is_empty()) else {
        audit_refusal(&state, &connection, "logout_token_missing", json!({})).await;
        return refuse("logout_token is missing");
    };
    let lr = match provider.verify_logout_token(token).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(reason = %e, "logout token refused");
            audit_refusal(
                &state,
                &connection,
                e.reason(),
                json!({ "why": e.to_string() }),
            )
            .await;
            return refuse(&e.to_string());
        }
    };
    let ended = match (lr.sid.as_deref(), lr.sub.as_deref()) {
        (Some(sid), _) => IdpEnded::OidcSession { sid },
        (None, Some(subject)) => IdpEnded::Subject { subject },
        // The token check requires a sid or a sub.
        (None, None) => return refuse("the logout token names neither sid nor sub"),
    };
    let replay_key = format!("bcl\u{0}{connection}\u{0}{}", lr.jti);
    // Kept while the token could be accepted, which its iat bounds (logout_token_max_age).
    let ttl = lr.replay_ttl(crate::session::unix_now());
    // A token is used once. Checked before the sessions end, marked only once they did: a
    // failure (the store or the database down) must leave the IdP's retry of the same token
    // welcome, or the sessions would never end.
    match state.sessions.was_used(&replay_key).await {
        Ok(false) => {}
        Ok(true) => {
            audit_refusal(&state, &connection, "logout_token_replayed", json!({})).await;
            return refuse("this logout token was already used");
        }
        Err(e) => {
            tracing::error!(error = %cause_chain(&e), "session store unavailable");
            return HttpResponse::ServiceUnavailable()
                .json(json!({ "error": "temporarily_unavailable" }));
        }
    }
    match end_idp_sessions(&state.db, &state.sessions, &connection, ended).await {
        Ok(n) => {
            if let Err(e) = state.sessions.first_use(&replay_key, ttl).await {
                // The sessions ended; a replay could only end them again.
                tracing::warn!(error = %cause_chain(&e), "cannot mark a logout token as used");
            }
            audit_result(&state, &connection, Outcome::Success, json!({ "sessions_revoked": n, "by": if lr.sid.is_some() { "sid" } else { "sub" } })).await;
            HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .finish()
        }
        Err(e) => {
            tracing::error!(error = %cause_chain(&e), "cannot end the sessions");
            HttpResponse::ServiceUnavailable().json(json!({ "error": "temporarily_unavailable" }))
        }
    }
}

impl From<EndError> for LoginError {
    fn from(e: EndError) -> Self {
        match e {
            EndError::Sessions(e) => Self::Sessions(e),
            EndError::Database(e) => Self::Database(e),
        }
    }
}
