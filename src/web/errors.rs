//! Errors at the HTTP boundary. People get an HTML page with a clear message; the log and the
//! audit trail get a stable reason code. Nothing here echoes tokens or claim values.

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
    #[error("this login link has expired or was already used; please start again")]
    StateUnknown,
    #[error("this login was started in another browser or tab session; please start again")]
    BrowserMismatch,
    #[error("this login response belongs to another connection")]
    ConnectionMismatch,
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
    #[error("the service is temporarily unavailable; please try again")]
    Unavailable(String),
}

impl LoginError {
    /// A stable code for the audit trail and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownConnection => "unknown_connection",
            Self::Redirect(_) => "redirect_refused",
            Self::StateMissing => "state_missing",
            Self::StateUnknown => "state_unknown_or_replayed",
            Self::BrowserMismatch => "browser_binding_mismatch",
            Self::ConnectionMismatch => "connection_mismatch",
            Self::Adapter(a) => match a {
                AdapterError::ProviderError { .. } => "provider_error",
                AdapterError::MissingCode => "code_missing",
                AdapterError::IssuerParamMissing => "iss_param_missing",
                AdapterError::IssuerParamMismatch => "iss_param_mismatch",
                AdapterError::CodeRejected { .. } => "code_rejected",
                AdapterError::IdTokenMissing => "id_token_missing",
                AdapterError::IdTokenInvalid(_) => "id_token_invalid",
                AdapterError::UserinfoInvalid(_) => "userinfo_invalid",
                AdapterError::Unavailable(_) => "provider_unavailable",
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
                SamlError::Busy => "saml_busy",
                SamlError::Logout(_) => "saml_logout_invalid",
            },
            Self::Replayed => "saml_replayed",
            Self::Mapping(_) => "mapping_refused",
            Self::AccountDisabled { .. } => "account_disabled",
            Self::UsernameTaken => "username_taken",
            Self::Unavailable(_) => "internal_unavailable",
        }
    }
}

impl From<ProvisionError> for LoginError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::AccountDisabled { account_id } => Self::AccountDisabled { account_id },
            ProvisionError::UsernameTaken => Self::UsernameTaken,
            e @ ProvisionError::AccountGone => Self::Unavailable(e.to_string()),
            ProvisionError::Db(e) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::idp::saml::preflight::PreflightError> for LoginError {
    fn from(e: crate::idp::saml::preflight::PreflightError) -> Self {
        Self::Saml(e.into())
    }
}

impl From<SessionError> for LoginError {
    fn from(e: SessionError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::db::DbError> for LoginError {
    fn from(e: crate::db::DbError) -> Self {
        Self::Unavailable(e.to_string())
    }
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
            Self::AccountDisabled { .. } | Self::Mapping(_) | Self::UsernameTaken => {
                StatusCode::FORBIDDEN
            }
            Self::Adapter(AdapterError::Unavailable(_)) | Self::Saml(SamlError::NoMetadata) => {
                StatusCode::BAD_GATEWAY
            }
            Self::Unavailable(_) | Self::Saml(SamlError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let title = match status {
            StatusCode::FORBIDDEN => "Access refused",
            StatusCode::NOT_FOUND => "Not found",
            s if s.is_server_error() => "Temporarily unavailable",
            _ => "Login failed",
        };
        // Internal causes stay in the log; the person sees the variant's own message.
        let message = match self {
            Self::Adapter(AdapterError::Unavailable(_)) | Self::Saml(SamlError::NoMetadata) => {
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
        if matches!(self, Self::Saml(SamlError::Busy)) {
            page.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("1"),
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
