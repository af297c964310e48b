//! The JSON API's one error type and its mapping to HTTP, in one place.
//!
//! Every error answers with the same envelope, `{"error": {"code": "...", "message": "..."}}`.
//! 5xx details are stashed in the response's extensions for the logging middleware and never
//! sent to the client; 401 carries `WWW-Authenticate`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, wrong content type).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that are not valid here.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 404: no such resource on this host (also what a resource of another tenant looks like).
    #[error("not found")]
    NotFound,
    /// 409: the resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// 422: the request was read but a field breaks a rule; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// 500: something failed inside; the detail is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

/// The detail of a 5xx, kept out of the body and logged by `ops::log_errors`.
#[derive(Clone, Debug)]
pub struct ErrorDetail(pub String);

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound => ApiError::NotFound,
            crate::store::StoreError::Conflict(what) => {
                ApiError::Conflict(format!("{what} already exists"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::tenants::TenantError> for ApiError {
    fn from(e: crate::tenants::TenantError) -> Self {
        use crate::tenants::TenantError;
        match e {
            TenantError::Invalid(m) => ApiError::Invalid(m),
            e @ TenantError::Exists(_) => ApiError::Conflict(e.to_string()),
            TenantError::Store(s) => s.into(),
        }
    }
}

impl From<crate::servers::ServerError> for ApiError {
    fn from(e: crate::servers::ServerError) -> Self {
        use crate::servers::ServerError;
        match e {
            ServerError::Invalid(m) => ApiError::Invalid(m),
            e @ ServerError::Exists(_) => ApiError::Conflict(e.to_string()),
            ServerError::NotFound => ApiError::NotFound,
            ServerError::Store(s) => s.into(),
        }
    }
}

impl From<crate::access::AccessError> for ApiError {
    fn from(e: crate::access::AccessError) -> Self {
        use crate::access::AccessError;
        match e {
            AccessError::Invalid(m) => ApiError::Invalid(m),
            e @ AccessError::Exists(_) => ApiError::Conflict(e.to_string()),
            AccessError::NotFound => ApiError::NotFound,
            AccessError::Store(s) => s.into(),
        }
    }
}

impl From<crate::sso::SsoError> for ApiError {
    fn from(e: crate::sso::SsoError) -> Self {
        match e {
            crate::sso::SsoError::Invalid(m) => ApiError::Invalid(m),
            crate::sso::SsoError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = Json(serde_json::json!({
            "error": { "code": code, "message": self.to_string() }
        }));
        let mut res = (status, body).into_response();
        match &self {
            ApiError::Unauthorized => {
                res.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"portcullis\""),
                );
            }
            ApiError::Internal(detail) => {
                res.extensions_mut().insert(ErrorDetail(detail.clone()));
            }
            _ => {}
        }
        res
    }
}
