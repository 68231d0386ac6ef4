//! Forward-auth for nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth` and
//! Envoy `ext_authz`: 200 with identity headers (and, for a configured app, a signed identity
//! assertion), 401 without a live session, 403 when the session lacks a required role.
//!
//! It never redirects: nginx's auth_request only understands 2xx/401/403 (anything else becomes
//! a 500), and the proxy knows the original URL to send the browser back to, so the proxy turns
//! 401 into a redirect to `/login?rd=...` itself. It reads the session store only, never the
//! database: this is the hot path of every protected request.

use super::{AppState, session_id};
use crate::session::{SessionError, SessionId, SessionRecord};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct VerifyQuery {
    /// Comma-separated roles; the session must hold at least one of them.
    allowed_roles: Option<String>,
}

static USER: HeaderName = HeaderName::from_static("x-auth-request-user");
static EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
static PREFERRED: HeaderName = HeaderName::from_static("x-auth-request-preferred-username");
static GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
static SUBJECT: HeaderName = HeaderName::from_static("x-auth-request-subject");

pub async fn current_session(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<(SessionId, SessionRecord)>, SessionError> {
    let Some(id) = session_id(req, &state.config.server.cookie.name) else {
        return Ok(None);
    };
    Ok(state.sessions.get(&id).await?.map(|r| (id, r)))
}

pub async fn verify(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<VerifyQuery>,
) -> HttpResponse {
    let (id, record) = match current_session(&req, &state).await {
        Ok(Some(found)) => found,
        Ok(None) => return plain(HttpResponse::Unauthorized(), "no valid session"),
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable during forward-auth");
            return plain(
                HttpResponse::ServiceUnavailable(),
                "session store unavailable",
            );
        }
    };
    // The app's own rule first: the Host is the caller's to choose, the query the proxy's.
    let app = super::assertion::request_host(&req).and_then(|h| state.assertions.app_for_host(h));
    if let Some(app) = app
        && !crate::assertion::admits(app, &record.account.roles)
    {
        return plain(
            HttpResponse::Forbidden(),
            "the session lacks a required role",
        );
    }
    if let Some(allowed) = q.allowed_roles.as_deref().filter(|a| !a.is_empty()) {
        let ok = allowed
            .split(',')
            .map(str::trim)
            .any(|want| record.account.roles.iter().any(|r| r == want));
        if !ok {
            return plain(
                HttpResponse::Forbidden(),
                "the session lacks a required role",
            );
        }
    }
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("Cache-Control", "no-store"));
    let a = &record.account;
    // Values come from the mapping, which refuses control characters; from_bytes keeps UTF-8.
    let mut put = |name: &HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
            resp.insert_header((name.clone(), v));
        }
    };
    // The account id the bridge minted: never changes (a rename changes the username, not
    // this) and is never given to anyone else, so apps should key their users by it.
    put(&SUBJECT, &a.id);
    put(&USER, &a.username);
    put(&PREFERRED, &a.username);
    if let Some(email) = &a.email {
        put(&EMAIL, email);
    }
    put(&GROUPS, &a.roles.join(","));
    // The same values, signed for the app this host is (see `assertion`).
    if let Some(token) = super::assertion::header_for(app, &state, &id, a) {
        resp.insert_header((super::assertion::ASSERTION.clone(), token));
    }
    resp.finish()
}

/// A refusal as text. These answers skip the security-header middleware, yet a browser that
/// opens `/auth/verify` renders them: they carry what every page does against sniffing and
/// framing (clickjacking) themselves.
fn plain(mut b: actix_web::HttpResponseBuilder, msg: &'static str) -> HttpResponse {
    use actix_web::http::header;
    b.insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .content_type("text/plain; charset=utf-8")
        .body(msg)
}
