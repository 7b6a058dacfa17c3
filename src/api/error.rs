//! Every error the API answers, as RFC 9457 `application/problem+json` with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::PathError;
use crate::error::ErrorCode;
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

    /// `e` with its stable code, answered with `status`.
    fn coded(status: StatusCode, e: &impl ErrorCode) -> ApiError {
        ApiError::new(status, e.code(), e.to_string())
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
        ApiError::coded(status, &e)
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::Request(r) => r.into(),
            JobsError::NotFound(_) => ApiError::coded(StatusCode::NOT_FOUND, &e),
            JobsError::AlreadyFinished { .. } => ApiError::coded(StatusCode::CONFLICT, &e),
            JobsError::ShuttingDown => ApiError::coded(StatusCode::SERVICE_UNAVAILABLE, &e),
            JobsError::DestBusy { .. } => ApiError::coded(StatusCode::CONFLICT, &e),
            JobsError::DestNotFound(_) => ApiError::coded(StatusCode::NOT_FOUND, &e),
            JobsError::Tree(_) => ApiError::internal(e),
            JobsError::Db(_) => ApiError::internal(e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::coded(registry_status(&e), &e)
    }
}

/// The status for a registry failure (an upload that could not be resumed: its cause's).
fn registry_status(e: &RegistryError) -> StatusCode {
    match e {
        RegistryError::ManifestUnknown { .. }
        | RegistryError::NameUnknown { .. }
        | RegistryError::BlobUnknown { .. } => StatusCode::NOT_FOUND,
        RegistryError::PlatformNotFound { .. } => StatusCode::NOT_FOUND,
        // 403, not 401: a 401 from hoist means hoist's own API token is wrong.
        RegistryError::Unauthorized { .. } | RegistryError::Denied { .. } => StatusCode::FORBIDDEN,
        RegistryError::UnsupportedManifest { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        RegistryError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        // The operator's files, not the request, are wrong: nothing the client sends
        // differently helps, and the same request works once the file is fixed (it
        // is read afresh, no restart): the daemon cannot serve that registry for now.
        RegistryError::HostsConfig { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RegistryError::UploadNotResumed { cause, .. } => registry_status(cause),
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}
