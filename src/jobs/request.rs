//! Job requests as clients send them, and their validated forms.
//!
//! Validation happens once, when a job is submitted (a bad request is a 400, never a
//! failed job), and again when a job is re-queued after a restart.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{PathError, resolve_in_roots};
use crate::registry::{Credentials, Platform, Reference, ReferenceError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    #[default]
    Use,
    Bypass,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Rootfs,
    Git,
    Oci,
}

/// `POST /pulls` body. `auth` is never serialized: the stored request has no credentials.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    pub image: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub cache: CacheMode,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default, skip_serializing)]
    pub auth: Option<Credentials>,
}

/// Why a request was refused before becoming a job.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("invalid platform {value:?}: {reason}")]
    Platform { value: String, reason: String },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("destination {0} already exists; set \"force\": true to replace it")]
    DestExists(PathBuf),
    #[error("{0}")]
    Unsupported(String),
}

impl RequestError {
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Reference(_) => "invalid_reference",
            RequestError::Platform { .. } => "invalid_platform",
            RequestError::Path(e) => e.code(),
            RequestError::DestExists(_) => "dest_exists",
            RequestError::Unsupported(_) => "unsupported",
        }
    }
}

/// A pull request, validated.
#[derive(Clone, Debug)]
pub struct PullSpec {
    pub reference: Reference,
    pub platform: Option<Platform>,
    pub dest: PathBuf,
    pub force: bool,
    pub cache: CacheMode,
    pub layout: Layout,
}

impl PullRequest {
    pub fn validate(&self, roots: &[PathBuf]) -> Result<PullSpec, RequestError> {
        let reference: Reference = self.image.trim().parse()?;
        let platform = self
            .platform
            .as_deref()
            .map(|p| {
                p.parse::<Platform>()
                    .map_err(|reason| RequestError::Platform {
                        value: p.to_string(),
                        reason,
                    })
            })
            .transpose()?;
        let dest = resolve_in_roots(roots, &self.dest)?;
        Ok(PullSpec {
            reference,
            platform,
            dest,
            force: self.force,
            cache: self.cache,
            layout: self.layout,
        })
    }
}

/// Parses an optional platform query value the way requests do.
pub fn parse_platform(value: Option<&str>) -> Result<Option<Platform>, RequestError> {
    value
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Platform>()
                .map_err(|reason| RequestError::Platform {
                    value: p.to_string(),
                    reason,
                })
        })
        .transpose()
}
