//! `POST /backchannel-logout/{connection}`: OpenID Connect Back-Channel Logout 1.0. The IdP
//! tells us a session (sid) or a person (sub) logged out; their sessions here end at once.
//! Answers per section 2.8: 200 on success, 400 with a JSON error otherwise, never cached.

use super::AppState;
use super::errors::{LoginError, cause_chain};
use crate::audit::{self, Event, Outcome};
use crate::lifecycle::idp::{EndError, IdpEnded, end_idp_sessions};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

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

#[tracing::instrument(skip_all, fields(connection = %path))]
pub async fn logout(
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
    let Some(token) = form.logout_token.as_deref().filter(|t| !t.is_empty()) else {
        audit_result(
            &state,
            &connection,
            Outcome::Failure,
            json!({ "reason": "logout_token missing" }),
        )
        .await;
        return refuse("logout_token is missing");
    };
    let req = match provider.verify_logout_token(token).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(reason = %e, "logout token refused");
            audit_result(
                &state,
                &connection,
                Outcome::Failure,
                json!({ "reason": e.to_string() }),
            )
            .await;
            return refuse(&e.to_string());
        }
    };
    let ttl =
        Duration::from_secs((req.exp - crate::session::unix_now()).clamp(60, 86_400) as u64 + 300);
    match state
        .sessions
        .first_use(&format!("bcl\u{0}{connection}\u{0}{}", req.jti), ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            audit_result(
                &state,
                &connection,
                Outcome::Failure,
                json!({ "reason": "replayed logout token" }),
            )
            .await;
            return refuse("this logout token was already used");
        }
        Err(e) => {
            tracing::error!(error = %cause_chain(&e), "session store unavailable");
            return HttpResponse::ServiceUnavailable()
                .json(json!({ "error": "temporarily_unavailable" }));
        }
    }
    let ended = match (req.sid.as_deref(), req.sub.as_deref()) {
        (Some(sid), _) => IdpEnded::OidcSession { sid },
        (None, Some(subject)) => IdpEnded::Subject { subject },
        // The token check requires a sid or a sub.
        (None, None) => return refuse("the logout token names neither sid nor sub"),
    };
    let revoked = end_idp_sessions(&state.db, &state.sessions, &connection, ended).await;
    match revoked {
        Ok(n) => {
            audit_result(&state, &connection, Outcome::Success, json!({ "sessions_revoked": n, "by": if req.sid.is_some() { "sid" } else { "sub" } })).await;
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
