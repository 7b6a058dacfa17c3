//! Applying layer tarballs to a tree, safely, and swapping finished trees into place.
//!
//! Every entry of every layer is resolved inside the tree's root (openat2
//! `RESOLVE_IN_ROOT`): `..`, absolute names, and symlinks or hardlinks planted by earlier
//! entries cannot reach outside it. The resulting tree is the one `umoci unpack` makes
//! (whiteouts, links, modes, owners, xattrs, times), so `systemd-nspawn -D` boots it.
//! Knows nothing of registries, the cache or jobs.
//!
//! Map: `apply` reads a layer and applies its entries; `inflate` decompresses it on a
//! thread of its own, ahead of `apply`, through a bounded channel; `bounded` caps what the tar reader
//! may take for one entry's headers (GNU long names, PAX records); `header` reads one
//! entry's header and refuses the names Go's reader refuses;
//! `names` cleans names and spots whiteouts; `whiteout` removes what they name; `fsops`
//! is the only place that turns names into descriptors; `meta` sets owner, mode, xattrs
//! and times; `staging` swaps a finished tree into place; `syncfs` flushes finished trees, one call
//! for those finishing together.

mod apply;
mod bounded;
mod fsops;
mod header;
mod inflate;
mod meta;
mod names;
mod staging;
mod syncfs;
mod whiteout;
mod writeback;

#[cfg(test)]
mod tar_builder;
#[cfg(test)]
mod test_tar;
#[cfg(test)]
mod tests_breakouts;
#[cfg(test)]
mod tests_layers;

pub use inflate::counts as inflates;
pub use meta::Warnings;
pub use staging::{Aside, Staging, remove_scratch};
pub use syncfs::flushes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, Timespec, Timestamps};
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use crate::digest::{Algorithm, Digest};
use crate::error::FromIo;
use crate::oci::Compression;
use fsops::Root;

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

impl crate::error::ErrorCode for UnpackError {
    fn code(&self) -> &'static str {
        match self {
            UnpackError::Io { .. } => "io_error",
            UnpackError::BadEntry { .. } => "invalid_layer",
            UnpackError::DestExists(_) => "dest_exists",
            UnpackError::Cancelled => crate::error::CANCELLED,
        }
    }
}

impl crate::error::FromIo for UnpackError {
    fn from_io(path: PathBuf, source: std::io::Error) -> Self {
        UnpackError::Io { path, source }
    }
}

/// Choices that depend on who runs the daemon, and the bound on a layer's names.
#[derive(Clone, Copy, Debug)]
pub struct UnpackOptions {
    /// Apply the uid/gid of entries (only possible as root).
    pub same_owner: bool,
    /// Create device nodes (only possible as root).
    pub devices: bool,
    /// Names one layer may write, ancestors included: past it the layer is refused
    /// (`invalid_layer`), as each is kept while the layer is applied, for its whiteouts.
    pub names_max: usize,
}

impl UnpackOptions {
    /// Owners and devices when running as root, neither otherwise.
    pub fn for_current_user() -> UnpackOptions {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            same_owner: root,
            devices: root,
            names_max: whiteout::NAMES_MAX,
        }
    }
}

/// What one layer did.
#[derive(Clone, Debug)]
pub struct LayerStats {
    /// Entries applied, whiteouts included (PAX global headers are not entries).
    pub entries: u64,
    /// Bytes of regular-file contents written (uncompressed).
    pub bytes: u64,
    /// The digest of the whole uncompressed stream (to the end, past the archive's end
    /// blocks): what an image config lists in `rootfs.diff_ids`. Checking it is the
    /// caller's business.
    pub diff_id: Digest,
    /// What could not be applied as the layer says (not root).
    pub warnings: Warnings,
}

/// A layer's bytes being inflated on a thread of their own, for [`Tree::apply`]. Made
/// before its turn (while the layer below is written), it makes `inflate::PRIMED` chunks
/// and waits for its reader; shared, it stays joinable meanwhile (it has made fewer than
/// `inflate::JOIN_WINDOW`). Dropped, it stops.
pub struct Inflating(inflate::Inflated);

/// Starts inflating the layer blob `blob`. `compression` is the media type's claim; the
/// blob's first bytes decide (see [`Compression::sniff`]). The uncompressed stream is
/// hashed with `diff_id`. Call inside a tokio runtime.
pub fn inflate_layer<R: AsyncRead + Unpin + Send + 'static>(
    blob: R,
    compression: Compression,
    diff_id: Algorithm,
) -> Inflating {
    Inflating(inflate::inflate(blob, compression, diff_id))
}

/// [`inflate_layer`] for the blob `digest` read from the shared cache (a verified file,
/// or a follower of the one download of it): trees applying the same blob at the same time
/// share one inflate of it. `open(stop)` gives the blob when this inflate is the one that
/// reads it; `stop` fires once no tree reads it any more (the job that started it may be
/// cancelled while others go on).
pub fn inflate_cached_layer<R: AsyncRead + Unpin + Send + 'static>(
    digest: &Digest,
    open: impl FnOnce(CancellationToken) -> R,
    compression: Compression,
    diff_id: Algorithm,
) -> Inflating {
    Inflating(inflate::shared(digest, open, compression, diff_id))
}

/// A tree being built, layer by layer, in a folder (normally a [`Staging`] folder).
pub struct Tree {
    root: Arc<Root>,
    /// As given to `open`, for messages.
    path: PathBuf,
    options: UnpackOptions,
}

impl Tree {
    /// Opens `root` as an empty tree's root and gives it umoci's starting state: mode
    /// 0755, owned by root (with `same_owner`), times at the epoch (a layer's `./` entry,
    /// if any, then sets its own).
    pub fn open(root: &Path, options: UnpackOptions) -> Result<Tree, UnpackError> {
        let io = |source| UnpackError::from_io(root.to_path_buf(), source);
        let tree_root = Root::open(root).map_err(io)?;
        let fd = tree_root.fd();
        if options.same_owner {
            let root_id = (Some(rustix::fs::Uid::ROOT), Some(rustix::fs::Gid::ROOT));
            rustix::fs::fchown(fd, root_id.0, root_id.1).map_err(|e| io(e.into()))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(0o755)).map_err(|e| io(e.into()))?;
        let epoch = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: epoch,
            last_modification: epoch,
        };
        rustix::fs::futimens(fd, &times).map_err(|e| io(e.into()))?;
        Ok(Tree {
            root: Arc::new(tree_root),
            path: root.to_path_buf(),
            options,
        })
    }

    /// Applies one layer blob on top of what is there: [`inflate_layer`], then
    /// [`Tree::apply`] (for tests, which have the blob at hand).
    #[cfg(test)]
    pub async fn apply_layer<R: AsyncRead + Unpin + Send + 'static>(
        &mut self,
        blob: R,
        compression: Compression,
        diff_id: Algorithm,
        cancel: &CancellationToken,
    ) -> Result<LayerStats, UnpackError> {
        self.apply(inflate_layer(blob, compression, diff_id), cancel)
            .await
    }

    /// Applies the layer `inflating` on top of what is there: whiteouts and opaque
    /// markers remove what lower layers put there. Its uncompressed stream is hashed into
    /// [`LayerStats::diff_id`]. Runs on the blocking pool; stops with `Cancelled` between
    /// entries and between chunks of a file once `cancel` fires, or once this future is
    /// dropped. The tree is then half-applied: throw it away.
    pub async fn apply(
        &mut self,
        inflating: Inflating,
        cancel: &CancellationToken,
    ) -> Result<LayerStats, UnpackError> {
        let decoded = inflating.0;
        let root = self.root.clone();
        let options = self.options;
        let cancel = cancel.child_token();
        // Dropping this future cancels the blocking task too.
        let stop_on_drop = cancel.clone().drop_guard();
        let runtime = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            // A read may wait for bytes that are slow to come (a shared inflate's blob
            // reader stops only with its last reader): `cancel` ends the wait too, and
            // dropping the reader lets the inflate go.
            runtime.block_on(async {
                tokio::select! {
                    stats = apply::apply_layer(&root, options, decoded, &cancel) => stats,
                    () = cancel.cancelled() => Err(UnpackError::Cancelled),
                }
            })
        });
        let result = task.await;
        stop_on_drop.disarm();
        match result {
            Ok(stats) => stats,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(UnpackError::Cancelled),
        }
    }

    /// Finishes the tree: with `flush`, flushes it to disk (syncfs, shared with trees
    /// finishing at the same time on the same file system), so that a tree committed into
    /// place survives a crash whole; without, it is whole for every process at once, and
    /// on disk once the kernel writes it back. Directory times need no fixing here: every
    /// entry already put back its parent's times, as umoci does.
    pub async fn finish(self, flush: bool) -> Result<(), UnpackError> {
        if !flush {
            return Ok(());
        }
        syncfs::syncfs(self.root)
            .await
            .map_err(UnpackError::io(self.path))
    }
}
