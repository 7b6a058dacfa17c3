//! Docker image references: `ubuntu`, `ghcr.io/o/r:tag`, `host:5000/r@sha256:…`.
//!
//! TODO(registry helper): full grammar + unit tests.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// A parsed image reference with Docker's defaults applied
/// (`ubuntu` → `docker.io/library/ubuntu:latest`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`: as written (lower-cased), Docker Hub as `docker.io`.
    pub registry: String,
    /// `library/ubuntu`
    pub repository: String,
    /// `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {value:?}: {reason}")]
pub struct ReferenceError {
    pub value: String,
    pub reason: String,
}

impl Reference {
    /// The host[:port] to speak HTTP to (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        todo!()
    }

    /// What to put after `/manifests/`: the digest if any, else the tag.
    pub fn manifest_ref(&self) -> String {
        todo!()
    }

    /// The same repository at another digest (for platform manifests of an index).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(_s: &str) -> Result<Self, Self::Err> {
        todo!()
    }
}

impl fmt::Display for Reference {
    /// Canonical form: `docker.io/library/ubuntu:latest`, `host/repo:tag@sha256:…`.
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}
