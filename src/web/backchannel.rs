//! `POST /backchannel-logout/{connection}`: OpenID Connect Back-Channel Logout 1.0. The IdP
//! tells us a session (sid) or a person (sub) logged out; their sessions here end at once.
//! Answers per section 2.8: 200 on success, 400 with a JSON error otherwise, never cached.

use super::AppState;
use super::errors::{LoginError, cause_chain};
use crate::audit::{self, Event, Outcome};
use crate::db::schema::identities;
use crate::db::{DbConnection, DbError};
use crate::session::SessionError;
use actix_web::{HttpResponse, web};
use diesel::prelude::*;
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
    let revoked = revoke_for_idp(&state, &connection, req.sid.as_deref(), req.sub.as_deref()).await;
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

/// Why the sessions an IdP names could not be ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum RevokeError {
    #[error("cannot end the sessions")]
    Sessions(#[from] SessionError),
    #[error("cannot find the account of the subject")]
    Database(#[from] DbError),
}

impl From<RevokeError> for LoginError {
    fn from(e: RevokeError) -> Self {
        match e {
            RevokeError::Sessions(e) => Self::Sessions(e),
            RevokeError::Database(e) => Self::Database(e),
        }
    }
}

/// Ends the sessions an IdP names: those of its session `sid` when given, otherwise every
/// session of the account behind (connection, subject). Shared by OIDC back-channel logout and
/// SAML IdP-initiated logout.
pub(super) async fn revoke_for_idp(
    state: &AppState,
    connection: &str,
    sid: Option<&str>,
    subject: Option<&str>,
) -> Result<usize, RevokeError> {
    match (sid, subject) {
        (Some(sid), _) => Ok(state.sessions.revoke_idp_session(connection, sid).await?),
        (None, Some(sub)) => {
            let (c, s) = (connection.to_string(), sub.to_string());
            match state.db.run(move |db| account_of(db, &c, &s)).await? {
                Some(account) => Ok(state.sessions.revoke_account(&account, None).await?),
                None => Ok(0),
            }
        }
        (None, None) => Ok(0),
    }
}

fn account_of(
    c: &mut DbConnection,
    connection: &str,
    subject: &str,
) -> Result<Option<String>, DbError> {
    Ok(identities::table
        .find((connection, subject))
        .select(identities::account_id)
        .first(c)
        .optional()?)
}
