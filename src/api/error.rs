//! Every error the API answers, as RFC 9457 `application/problem+json` with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::PathError;
use crate::jobs::{JobsError, RequestError};
use crate::registry::RegistryError;
use crate::store::StoreError;

/// A problem to answer: HTTP status, stable code, and a detail for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            detail.to_string(),
        )
    }

    /// The problem document (RFC 9457) of this error.
    pub fn body(&self) -> String {
        let title = self.status.canonical_reason().unwrap_or("Error");
        json!({
            "type": format!("urn:hoist:problem:{}", self.code),
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        })
        .to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let status = match &e {
            RequestError::Path(PathError::OutsideRoots { .. } | PathError::IsRoot(_))
            | RequestError::Source(PathError::OutsideRoots { .. } | PathError::IsRoot(_)) => {
                StatusCode::FORBIDDEN
            }
            RequestError::DestExists(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::Request(r) => r.into(),
            JobsError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.code(), e.to_string()),
            JobsError::AlreadyFinished { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
            }
            JobsError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
            }
            JobsError::Db(_) => ApiError::internal(e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = match &e {
            RegistryError::ManifestUnknown { .. } | RegistryError::BlobUnknown { .. } => {
                StatusCode::NOT_FOUND
            }
            RegistryError::PlatformNotFound { .. } => StatusCode::NOT_FOUND,
            // 403, not 401: a 401 from hoist means hoist's own API token is wrong.
            RegistryError::Unauthorized { .. } | RegistryError::Denied { .. } => {
                StatusCode::FORBIDDEN
            }
            RegistryError::UnsupportedManifest { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}
