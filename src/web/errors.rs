//! Errors at the HTTP boundary. People get an HTML page with a clear message; the log and the
//! audit trail get a stable reason code. Nothing here echoes tokens or claim values, and no
//! internal error's text reaches a page: variants for internal failures keep their cause as
//! `#[source]` and display a fixed message; [`log_internal`] writes the cause chain once, with
//! the request id, where the error becomes a response.

use crate::db::DbError;
use crate::idp::AdapterError;
use crate::idp::saml::SamlError;
use crate::mapping::Refusal;
use crate::provisioning::ProvisionError;
use crate::session::SessionError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

/// Everything that can go wrong between `/login` and the session cookie.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("there is no connection named like this")]
    UnknownConnection,
    #[error("{0}")]
    Redirect(#[from] super::redirect::RedirectRefused),
    #[error("the login response has no state parameter")]
    StateMissing,
    #[error("{0}")]
    State(#[from] StateRefused),
    #[error("too many requests from your network; please wait {} seconds and try again", .0.retry_after)]
    RateLimited(super::ratelimit::Limited),
    #[error("this login response belongs to another connection")]
    ConnectionMismatch,
    /// `/login` asked by a script or a subresource (`Sec-Fetch-Mode` other than `navigate`):
    /// each such request would leave a sealed-state cookie, and a hostile page firing many in
    /// parallel could fill the browser's cookie header for the bridge's host.
    #[error("a login starts from a link or a redirect, not from a script or an embedded resource")]
    NotNavigation,
    #[error("{0}")]
    Adapter(#[from] AdapterError),
    #[error("the SAML response was refused: {0}")]
    Saml(#[from] SamlError),
    #[error("this SAML response was already used; please start again")]
    Replayed,
    #[error("your account cannot be created or updated: {0}")]
    Mapping(#[from] Refusal),
    #[error("your account is disabled; contact your administrator")]
    AccountDisabled { account_id: String },
    #[error("your username is already used by another account; contact your administrator")]
    UsernameTaken,
    /// Held for the account that gave it up (`held_by`); never names the username, which the
    /// person knows and the audit trail must not keep in clear.
    #[error(
        "your username was recently given up by another account and is held back for a while, so that applications do not take you for its previous holder; your administrator can release it with `jitbridge accounts release-username <your username>`"
    )]
    UsernameQuarantined { held_by: String },
    #[error("the service is temporarily unavailable; please try again")]
    Sessions(#[from] SessionError),
    #[error("the service is temporarily unavailable; please try again")]
    Database(#[from] DbError),
    /// Provisioning failed for a reason of ours (the database, an account purged meanwhile).
    #[error("the service is temporarily unavailable; please try again")]
    Provisioning(#[source] ProvisionError),
    /// A message of ours could not be built or signed.
    #[error("the service is temporarily unavailable; please try again")]
    Internal(#[source] anyhow::Error),
}

impl LoginError {
    /// A stable code for the audit trail and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownConnection => "unknown_connection",
            Self::Redirect(_) => "redirect_refused",
            Self::StateMissing => "state_missing",
            Self::State(s) => s.reason(),
            Self::RateLimited(l) => l.class.reason(),
            Self::ConnectionMismatch => "connection_mismatch",
            Self::NotNavigation => "login_not_navigation",
            Self::Adapter(a) => match a {
                AdapterError::ProviderError { .. } => "provider_error",
                AdapterError::MissingCode => "code_missing",
                AdapterError::IssuerParamMissing => "iss_param_missing",
                AdapterError::IssuerParamMismatch => "iss_param_mismatch",
                AdapterError::CodeRejected { .. } => "code_rejected",
                AdapterError::IdTokenMissing => "id_token_missing",
                AdapterError::IdTokenInvalid(_) => "id_token_invalid",
                AdapterError::UserinfoInvalid(_) => "userinfo_invalid",
                AdapterError::Unavailable { .. } => "provider_unavailable",
            },
            Self::Saml(e) => match e {
                SamlError::Preflight(p) => p.reason(),
                SamlError::NoMetadata => "saml_metadata_unavailable",
                SamlError::Status(_) => "saml_status",
                SamlError::Destination => "saml_destination",
                SamlError::InResponseTo => "saml_in_response_to",
                SamlError::Unsolicited => "saml_unsolicited",
                SamlError::SignatureRequired(_) => "saml_signature_missing",
                SamlError::BadSignature => "saml_signature_invalid",
                SamlError::Decryption(step) => step.reason(),
                SamlError::Version => "saml_version",
                SamlError::UnsignedCbc => "saml_unsigned_cbc",
                SamlError::NoAuthnStatement => "saml_no_authn_statement",
                SamlError::Audience => "saml_audience",
                SamlError::Invalid(_) => "saml_invalid",
                SamlError::SessionEnded => "saml_session_ended",
                SamlError::Subject(_) => "saml_subject",
                SamlError::NameQualifier => "saml_name_qualifier",
                SamlError::SpNameQualifier => "saml_sp_name_qualifier",
                SamlError::Busy => "saml_busy",
                SamlError::Logout(_) => "saml_logout_invalid",
                SamlError::NotOne(_) => "saml_not_one",
            },
            Self::Replayed => "saml_replayed",
            Self::Mapping(_) => "mapping_refused",
            Self::AccountDisabled { .. } => "account_disabled",
            Self::UsernameTaken => "username_taken",
            Self::UsernameQuarantined { .. } => "username_quarantined",
            Self::Sessions(_) | Self::Database(_) | Self::Provisioning(_) | Self::Internal(_) => {
                "internal_unavailable"
            }
        }
    }

    /// The account the refusal is about, for the audit event: the disabled one, or the one a
    /// quarantined username is held for.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Self::AccountDisabled { account_id } => Some(account_id),
            Self::UsernameQuarantined { held_by } => Some(held_by),
            _ => None,
        }
    }

    /// Whether the failure is ours rather than the request's (logged with its cause chain).
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Self::Sessions(_)
                | Self::Database(_)
                | Self::Provisioning(_)
                | Self::Internal(_)
                | Self::Adapter(AdapterError::Unavailable { .. })
                | Self::Saml(SamlError::NoMetadata)
        )
    }
}

impl From<ProvisionError> for LoginError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::AccountDisabled { account_id } => Self::AccountDisabled { account_id },
            ProvisionError::UsernameTaken => Self::UsernameTaken,
            ProvisionError::UsernameQuarantined { held_by, .. } => {
                Self::UsernameQuarantined { held_by }
            }
            e @ (ProvisionError::AccountGone | ProvisionError::Db(_)) => Self::Provisioning(e),
        }
    }
}

/// Each refusal of the login service as the refusal the person sees (and the audit trail and
/// metrics count): the same variant, message and reason code whichever entrance called it.
impl From<crate::login::CompleteError> for LoginError {
    fn from(e: crate::login::CompleteError) -> Self {
        use crate::login::CompleteError as E;
        match e {
            E::UnknownConnection => Self::UnknownConnection,
            E::Replayed => Self::Replayed,
            E::Mapping(r) => Self::Mapping(r),
            E::Provisioning(p) => p.into(),
            E::Sessions(s) => Self::Sessions(s),
        }
    }
}

impl From<crate::idp::saml::preflight::PreflightError> for LoginError {
    fn from(e: crate::idp::saml::preflight::PreflightError) -> Self {
        Self::Saml(e.into())
    }
}

/// Why the state of a login that came back was refused (see `super::pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateRefused {
    /// No sealed state for this login in this browser: started in another browser (login
    /// CSRF), a made-up state, or a cookie the browser already dropped.
    #[error("this login was not started in this browser, or it took too long; please start again")]
    CookieMissing,
    #[error("this login could not be checked (its state was altered); please start again")]
    Tampered,
    /// Sealed with a key this server does not hold (retired, or another deployment's).
    #[error(
        "this login was started before a configuration change and cannot be completed; please start again"
    )]
    UnknownKey,
    #[error("this login took too long to complete; please start again")]
    Expired,
    #[error("this login response was already used; please start again")]
    Replayed,
}

impl StateRefused {
    pub fn reason(self) -> &'static str {
        match self {
            Self::CookieMissing => "state_cookie_missing",
            Self::Tampered => "state_tampered",
            Self::UnknownKey => "state_key_unknown",
            Self::Expired => "state_expired",
            Self::Replayed => "state_replayed",
        }
    }
}

/// Everything that can stop `POST /logout` from ending the session.
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    /// No token of our own page, or a request from another site (`reason` for the audit).
    #[error(
        "this sign-out request did not come from this site's sign-out page, so your session was kept; to sign out, open the sign-out page and confirm there"
    )]
    Forged { reason: &'static str },
    #[error(
        "signing out is not possible right now, and your session may still be active; please try again shortly"
    )]
    Sessions(#[from] SessionError),
}

impl LogoutError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Forged { reason } => reason,
            Self::Sessions(_) => "internal_unavailable",
        }
    }
}

impl ResponseError for LogoutError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Forged { .. } => StatusCode::FORBIDDEN,
            Self::Sessions(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let title = match self {
            Self::Forged { .. } => "Sign-out refused",
            Self::Sessions(_) => "Sign-out failed",
        };
        html_page(
            status,
            &ErrorPage {
                title,
                message: self.to_string(),
                status: status.as_u16(),
            },
        )
    }
}

pub use crate::cause_chain;

/// Logs an internal failure once, with its cause chain and the request id, at the boundary
/// where it becomes a fixed message for the person.
pub fn log_internal(e: &(dyn std::error::Error + 'static), reason: &str, request_id: &str) {
    tracing::error!(reason, request_id, error = %cause_chain(e), "internal failure");
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
    status: u16,
}

impl ResponseError for LoginError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownConnection => StatusCode::NOT_FOUND,
            Self::AccountDisabled { .. }
            | Self::Mapping(_)
            | Self::UsernameTaken
            | Self::UsernameQuarantined { .. } => StatusCode::FORBIDDEN,
            Self::Adapter(AdapterError::Unavailable { .. }) | Self::Saml(SamlError::NoMetadata) => {
                StatusCode::BAD_GATEWAY
            }
            Self::Sessions(_)
            | Self::Database(_)
            | Self::Provisioning(_)
            | Self::Internal(_)
            | Self::Saml(SamlError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let title = match status {
            StatusCode::FORBIDDEN => "Access refused",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            s if s.is_server_error() => "Temporarily unavailable",
            _ => "Login failed",
        };
        // Internal causes stay in the log; the person sees the variant's own message.
        let message = match self {
            Self::Adapter(AdapterError::Unavailable { .. }) | Self::Saml(SamlError::NoMetadata) => {
                "the identity provider could not be reached; please try again shortly".to_string()
            }
            other => other.to_string(),
        };
        let mut page = html_page(
            status,
            &ErrorPage {
                title,
                message,
                status: status.as_u16(),
            },
        );
        let retry_after = match self {
            Self::Saml(SamlError::Busy) => Some(1),
            Self::RateLimited(l) => Some(l.retry_after),
            _ => None,
        };
        if let Some(secs) = retry_after {
            page.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(secs),
            );
        }
        page
    }
}

/// Renders an HTML page with the headers every page of ours carries.
pub fn html_page(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            HttpResponse::InternalServerError().body("internal error")
        }
    }
}
