//! The one error type of the REST API, rendered as `{"error":{"code","message"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::links::LinkError;
use crate::plugins::InvokeError;
use crate::policy::PolicyError;
use crate::store::StoreError;
use crate::validate::Invalid;

/// An API failure. Each variant's doc names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (query string, path, cursor).
    #[error("{0}")]
    BadRequest(String),
    /// 400: the body is not valid JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// 401: no valid credentials.
    #[error("sign in or send a valid API token (Authorization: Bearer cf_…)")]
    Unauthorized,
    /// 403: signed in, but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403: a state-changing request with cookie credentials lacks the CSRF header.
    #[error("missing or wrong X-CSRF-Token header")]
    Csrf,
    /// 403: an administrator turned this feature off.
    #[error("{message}")]
    FeatureDisabled {
        code: &'static str,
        message: &'static str,
    },
    /// 404: no such resource (or not yours).
    #[error("{0}")]
    NotFound(&'static str),
    /// 410: the resource existed and was turned off for good.
    #[error("{message}")]
    Gone {
        code: &'static str,
        message: &'static str,
    },
    /// 405
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the resource is in a state that forbids this.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: &'static str,
    },
    /// 413
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 415
    #[error("send the body as JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: a field has an invalid value, or the body has unknown/missing fields.
    #[error("{0}")]
    Validation(Invalid),
    /// 422: the JSON does not match the expected shape.
    #[error("{0}")]
    InvalidBody(String),
    /// 429
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: i64 },
    /// 502: a plugin failed to answer (details are in the server's log).
    #[error("{0}")]
    PluginFailed(String),
    /// 503: not possible right now; try again later.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// 500: details are logged, never returned.
    #[error("internal error")]
    Internal(String),
}

/// The error body every failing API call returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (e.g. `validation_failed`, `link_revoked`).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The offending field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Csrf | Self::FeatureDisabled { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone { .. } => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::InvalidBody(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PluginFailed(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidJson(_) => "invalid_json",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Csrf => "csrf_failed",
            Self::FeatureDisabled { code, .. }
            | Self::Conflict { code, .. }
            | Self::Gone { code, .. } => code,
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::InvalidBody(_) => "invalid_body",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::PluginFailed(_) => "plugin_failed",
            Self::Unavailable { code, .. } => code,
            Self::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
                field: match self {
                    Self::Validation(invalid) => Some(invalid.field.to_string()),
                    _ => None,
                },
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        match self {
            Self::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::TooManyRequests { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::Validation(invalid)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => Self::Conflict {
                code: "conflict",
                message: "this already exists",
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(err: LinkError) -> Self {
        match err {
            LinkError::Invalid(invalid) => Self::Validation(invalid),
            LinkError::NotFound => Self::NotFound("no such link"),
            LinkError::Revoked => Self::Conflict {
                code: "link_revoked",
                message: "this link was revoked",
            },
            LinkError::CreationDisabled => Self::FeatureDisabled {
                code: "link_creation_disabled",
                message: "an administrator turned off link creation for members",
            },
            LinkError::Store(err) => err.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Invalid(invalid) => Self::Validation(invalid),
            AccountError::EmailTaken => Self::Conflict {
                code: "email_taken",
                message: "a user with this email address already exists",
            },
            AccountError::InvalidCredentials => Self::Unauthorized,
            AccountError::Throttled { retry_after_secs } => {
                Self::TooManyRequests { retry_after_secs }
            }
            AccountError::NotFound => Self::NotFound("not found"),
            AccountError::Store(err) => err.into(),
            AccountError::Hashing(detail) => Self::Internal(detail),
            AccountError::Busy => Self::Unavailable {
                code: "busy",
                message: "too many sign-ins at once; try again in a moment".into(),
            },
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(err: InvokeError) -> Self {
        match err {
            InvokeError::NotFound(_) => Self::NotFound("no such plugin"),
            InvokeError::NotHandled(_) => Self::NotFound("this plugin has no such page"),
            InvokeError::Disabled(_) => Self::FeatureDisabled {
                code: "plugin_disabled",
                message: "an administrator switched this plugin off",
            },
            InvokeError::Busy(_) => Self::Unavailable {
                code: "plugin_busy",
                message: err.to_string(),
            },
            InvokeError::Failed { .. } => Self::PluginFailed(err.to_string()),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(err: PolicyError) -> Self {
        match err {
            PolicyError::Invalid(invalid) => Self::Validation(invalid),
            PolicyError::Store(err) => err.into(),
        }
    }
}
