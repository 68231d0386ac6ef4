//! The web side of the signed identity assertion: the JWK set on the public listener, and the
//! header `/auth/verify` adds (see [`crate::assertion`] for what is in it).

use super::AppState;
use crate::config::AppConfig;
use crate::provisioning::AccountSnapshot;
use crate::session::SessionId;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

pub static ASSERTION: HeaderName = HeaderName::from_static(crate::assertion::HEADER);

/// How long proxies and apps may cache the JWK set. A new key is published (listed second)
/// for longer than this before it signs; see README, key rotation.
const JWKS_MAX_AGE: &str = "public, max-age=300";

/// `GET /.well-known/jwks.json`: every configured key's public half (an empty set when none).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", JWKS_MAX_AGE))
        .content_type("application/json")
        .body(state.assertions.jwks_json().to_string())
}

/// The host a forward-auth request is for: X-Forwarded-Host when the proxy sent one (it must
/// set it, not pass the client's on), else Host.
pub fn request_host(req: &HttpRequest) -> Option<&str> {
    let h = req.headers();
    h.get("x-forwarded-host")
        .or_else(|| h.get(actix_web::http::header::HOST))
        .and_then(|v| v.to_str().ok())
}

/// The `X-Jitbridge-Assertion` value for this session and the request's app, from the same
/// account values the identity headers carry; `None` when no app or key applies or it would be
/// too large.
pub fn header_for(
    app: Option<&AppConfig>,
    state: &AppState,
    id: &SessionId,
    account: &AccountSnapshot,
) -> Option<HeaderValue> {
    let Some(app) = app else {
        tracing::debug!("no [[app]] is configured for this host: no identity assertion");
        return None;
    };
    let token = state.assertions.for_app(app, id.store_key(), account)?;
    HeaderValue::from_str(&token).ok()
}
