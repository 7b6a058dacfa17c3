//! Building images and writing image outputs: folder → layer, image config, manifest,
//! OCI image layout folders, and the `git` layout's history.
//!
//! These are pure building blocks: they are given paths, digests and documents and
//! return bytes, files and digests. They know nothing of HTTP, the blob cache's
//! bookkeeping or job ids, and make no registry request (no pushing, no fetching);
//! `jobs` wires them together. They do use `registry`'s types: `Platform` and
//! `Reference`, and the push vocabulary (`ImageToPush`, `PushBlob`, `BlobSource`) that
//! `assemble` fills and `registry::RegistryClient::push_image` consumes (the one arrow
//! from `image` to `registry`, see ARCHITECTURE.md).
//! Not for: applying layers to a tree (see `unpack`) or parsing pulled manifests (see
//! `registry`).
//!
//! Map: `layer` (a folder streamed into one compressed tar layer, with `walk` listing the
//! folder safely and `tar` encoding its entries), `config` (the image config JSON),
//! `manifest` (OCI or Docker schema 2 image manifests), `assemble` (a build's layers,
//! config and manifest as one `registry::ImageToPush` value, each blob saying where its
//! bytes come from; pushing it is the registry's), `oci_layout` (an OCI image layout
//! folder), `git` (a tree as a git repository, one commit per layer).

mod assemble;
mod config;
mod git;
mod layer;
mod manifest;
mod oci_layout;
mod read_ahead;
mod tar;
mod walk;

pub use assemble::{BaseImage, ImageParts, assemble};
pub use config::{ConfigOverrides, build_config};
pub use git::{GitHistory, LayerCommit};
pub use layer::{BuiltLayer, LayerOptions, build_layer};
pub use manifest::build_manifest;
pub use oci_layout::OciLayout;

use std::path::PathBuf;

/// What went wrong while building an image or writing an image output.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The build source cannot be used as it is (not a folder, a symlink, a path the
    /// kernel refuses).
    #[error("build source {path}: {reason}")]
    InvalidSource { path: PathBuf, reason: String },
    /// A file of the source changed (size, type or inode) between listing and reading.
    #[error(
        "build source entry {path}: {reason} while the layer was being built; try again once the folder is quiet"
    )]
    SourceChanged { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A value of the `config` part of a build request is malformed.
    #[error("config {field} {value:?}: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A git command failed (or git is missing).
    #[error("git {command}: {reason}")]
    GitFailed { command: String, reason: String },
    /// The image's own tree has a `.git` at its root, where the `git` layout puts its
    /// repository.
    #[error(
        "the image has its own {path} at the root of its tree, so it cannot be pulled with layout git; pull it with layout rootfs"
    )]
    GitDirInImage { path: PathBuf },
    #[error("cancelled")]
    Cancelled,
}

impl crate::error::ErrorCode for ImageError {
    /// The stable machine-readable code the API puts in problem+json.
    fn code(&self) -> &'static str {
        match self {
            ImageError::InvalidSource { .. } => "invalid_source",
            ImageError::SourceChanged { .. } => "source_changed",
            ImageError::Io { .. } => "io_error",
            ImageError::InvalidConfig { .. } => "invalid_config",
            ImageError::GitFailed { .. } => "git_failed",
            ImageError::GitDirInImage { .. } => "git_dir_in_image",
            ImageError::Cancelled => crate::error::CANCELLED,
        }
    }
}

impl crate::error::FromIo for ImageError {
    fn from_io(path: PathBuf, source: std::io::Error) -> Self {
        ImageError::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn codes_are_stable_snake_case() {
        let errors = [
            ImageError::InvalidSource {
                path: "/s".into(),
                reason: "not a folder".into(),
            },
            ImageError::Io {
                path: "/x".into(),
                source: std::io::Error::other("boom"),
            },
            ImageError::GitFailed {
                command: "add".into(),
                reason: "exit 128".into(),
            },
            ImageError::Cancelled,
        ];
        let codes: Vec<_> = errors.iter().map(ErrorCode::code).collect();
        assert_eq!(
            codes,
            ["invalid_source", "io_error", "git_failed", "cancelled"]
        );
        assert!(errors[0].to_string().contains("/s: not a folder"));
    }
}
