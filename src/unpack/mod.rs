//! Applying layer tarballs to a tree, safely, and swapping finished trees into place.
//!
//! Every entry of every layer is resolved inside the tree's root (openat2
//! `RESOLVE_IN_ROOT`): `..`, absolute names, and symlinks or hardlinks planted by earlier
//! entries cannot reach outside it. Knows nothing of registries, the cache or jobs.

mod staging;

pub use staging::Staging;

use std::path::{Path, PathBuf};

use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer entry {entry:?}: {reason}")]
    BadEntry { entry: String, reason: String },
    #[error("destination {0} already exists (set force to replace it)")]
    DestExists(PathBuf),
    #[error("cancelled")]
    Cancelled,
}

impl UnpackError {
    pub fn code(&self) -> &'static str {
        match self {
            UnpackError::Io { .. } => "io_error",
            UnpackError::BadEntry { .. } => "invalid_layer",
            UnpackError::DestExists(_) => "dest_exists",
            UnpackError::Cancelled => "cancelled",
        }
    }
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type (OCI or Docker); None for a type that is not a layer.
    pub fn from_media_type(_media_type: &str) -> Option<Compression> {
        todo!()
    }
}

/// Choices that depend on who runs the daemon.
#[derive(Clone, Copy, Debug)]
pub struct UnpackOptions {
    /// Apply the uid/gid of entries (only possible as root).
    pub same_owner: bool,
    /// Create device nodes (only possible as root).
    pub devices: bool,
}

impl UnpackOptions {
    /// Owners and devices when running as root, neither otherwise.
    pub fn for_current_user() -> UnpackOptions {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            same_owner: root,
            devices: root,
        }
    }
}

/// What one layer did.
#[derive(Clone, Debug, Default)]
pub struct LayerStats {
    pub entries: u64,
    pub bytes: u64,
}

/// A tree being built, layer by layer, in a folder (normally a [`Staging`] folder).
pub struct Tree {}

impl Tree {
    pub fn open(_root: &Path, _options: UnpackOptions) -> Result<Tree, UnpackError> {
        todo!()
    }

    /// Applies one layer blob (compressed as `compression`) on top of what is there:
    /// whiteouts and opaque markers remove what lower layers put there.
    pub async fn apply_layer<R: AsyncRead + Unpin + Send + 'static>(
        &mut self,
        _blob: R,
        _compression: Compression,
        _cancel: &CancellationToken,
    ) -> Result<LayerStats, UnpackError> {
        todo!()
    }

    /// Finishes the tree (directory times that later entries disturbed).
    pub async fn finish(self) -> Result<(), UnpackError> {
        todo!()
    }
}
