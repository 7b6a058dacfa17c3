//! Errors on `/v2/` in the distribution format (`{"errors":[{"code","message","detail"}]}`,
//! `application/json`), not problem+json: its clients are registry clients, which read
//! these codes (`MANIFEST_UNKNOWN`, `UNAUTHORIZED`, …) and the `WWW-Authenticate` challenge.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::mirror::MirrorError;
use crate::registry::RegistryError;
use crate::store::StoreError;

pub const API_VERSION: &str = "docker-distribution-api-version";
pub const BASIC_CHALLENGE: &str = "Basic realm=\"hoist\"";
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"hoist\"";

/// One distribution error answer.
#[derive(Debug)]
pub struct V2Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The challenge of a 401 (`Basic` for upstream refusals, `Bearer` with an API token).
    pub challenge: Option<&'static str>,
    /// `Content-Range: bytes */SIZE` of a 416.
    pub size: Option<u64>,
}

impl V2Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> V2Error {
        V2Error {
            status,
            code,
            message: message.into(),
            challenge: None,
            size: None,
        }
    }

    /// 401 with the challenge that tells the client what to send hoist.
    pub fn unauthorized(message: impl Into<String>, challenge: &'static str) -> V2Error {
        V2Error {
            challenge: Some(challenge),
            ..V2Error::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
        }
    }

    pub fn unsupported(message: impl Into<String>) -> V2Error {
        V2Error::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }

    /// The answer to `e`; `challenge` is the one a refusal of the upstream's becomes.
    pub fn from_mirror(e: MirrorError, challenge: &'static str) -> V2Error {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            MirrorError::InvalidName(_) => V2Error::new(S::BAD_REQUEST, "NAME_INVALID", message),
            MirrorError::InvalidDigest(_) => {
                V2Error::new(S::BAD_REQUEST, "DIGEST_INVALID", message)
            }
            MirrorError::Credentials(_) => V2Error::unauthorized(message, challenge),
            MirrorError::NotServed(_) => V2Error::new(S::NOT_FOUND, "UNSUPPORTED", message),
            MirrorError::Range { size, .. } => V2Error {
                size: Some(size),
                ..V2Error::new(S::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", message)
            },
            MirrorError::Registry(e) => match e {
                RegistryError::ManifestUnknown { .. } => {
                    V2Error::new(S::NOT_FOUND, "MANIFEST_UNKNOWN", message)
                }
                RegistryError::BlobUnknown { .. } => {
                    V2Error::new(S::NOT_FOUND, "BLOB_UNKNOWN", message)
                }
                RegistryError::Unauthorized { .. } => V2Error::unauthorized(
                    format!("{message}; the upstream decides: send your credentials for it"),
                    challenge,
                ),
                RegistryError::Denied { .. } => V2Error::new(S::FORBIDDEN, "DENIED", message),
                RegistryError::TooManyRequests { .. } => {
                    V2Error::new(S::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", message)
                }
                RegistryError::Unreachable { .. } => {
                    V2Error::new(S::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
                }
                _ => V2Error::new(S::BAD_GATEWAY, "UNKNOWN", message),
            },
            MirrorError::Store(
                StoreError::SizeMismatch { .. } | StoreError::DigestMismatch { .. },
            ) => V2Error::new(S::BAD_GATEWAY, "UNKNOWN", message),
            MirrorError::Store(_) | MirrorError::Io { .. } => {
                tracing::error!(error = %message, "mirror: internal error");
                V2Error::new(S::INTERNAL_SERVER_ERROR, "UNKNOWN", message)
            }
        }
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let body =
            json!({"errors": [{"code": self.code, "message": self.message, "detail": null}]});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        if let Some(c) = self.challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(size) = self.size
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        resp
    }
}
