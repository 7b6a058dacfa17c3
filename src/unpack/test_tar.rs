//! The unit tests' face of the one tar writer (`tar_builder`, shared with the integration
//! tests): its [`E`]ntries written as POSIX ustar with PAX records ([`layer`]), the entry
//! kinds only the unit tests use (devices, fifos, PAX records, owners, GNU long names), and
//! the helpers that need the crate's types (`apply_all`, `root_options`, `zstd`). Not for:
//! production code (tests only).

use std::io::Cursor;
use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::tar_builder::{Dialect, archive, pax_records};
pub(super) use super::tar_builder::{Entry as E, gzip};
use super::{LayerStats, Tree, UnpackError, UnpackOptions};
use crate::digest::Algorithm;
use crate::oci::Compression;

/// POSIX ustar as the unit tests have always written it: owner names `root`, device
/// fields, mtime 2020-09-13, long names as PAX records unless an entry asks for GNU.
const POSIX: Dialect = Dialect {
    gnu_magic: false,
    owner_name: b"root",
    device_fields: true,
    mtime: 1_600_000_000,
    extension_mtime: 1_600_000_000,
    gnu_long_names: false,
};

/// The entry kinds and fields only the unit tests write.
impl E {
    pub(super) fn fifo(name: impl AsRef<[u8]>) -> E {
        E::new(name, b'6', 0o640)
    }

    pub(super) fn char_device(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
        let mut e = E::new(name, b'3', 0o666);
        e.device = (major, minor);
        e
    }

    /// A PAX global header (`g`) holding one record.
    pub(super) fn pax_global(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> E {
        let mut e = E::new("pax_global_header", b'g', 0o644);
        e.data = pax_records(&[(key.as_ref().to_vec(), value.as_ref().to_vec())]);
        e
    }

    pub(super) fn owner(mut self, uid: u64, gid: u64) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub(super) fn mtime(mut self, mtime: u64) -> E {
        self.mtime = Some(mtime);
        self
    }

    pub(super) fn pax(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> E {
        self.pax
            .push((key.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Long names as GNU `L`/`K` entries instead of PAX records.
    pub(super) fn gnu(mut self) -> E {
        self.gnu_long_names = true;
        self
    }
}

/// The bytes of an uncompressed layer holding `entries`, in order.
pub(super) fn layer(entries: &[E]) -> Vec<u8> {
    archive(&POSIX, entries)
}

pub(super) async fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::ZstdEncoder::new(bytes)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

/// Options as root would have them (the tests run as root).
pub(super) fn root_options() -> UnpackOptions {
    UnpackOptions {
        same_owner: true,
        devices: true,
    }
}

/// Opens a tree at `root` (created if missing) and applies each uncompressed layer.
pub(super) async fn apply_all(
    root: &Path,
    layers: &[Vec<u8>],
) -> Result<Vec<LayerStats>, UnpackError> {
    std::fs::create_dir_all(root).unwrap();
    let mut tree = Tree::open(root, root_options())?;
    let mut stats = Vec::new();
    for l in layers {
        let blob = Cursor::new(l.clone());
        stats.push(
            tree.apply_layer(
                blob,
                Compression::None,
                Algorithm::Sha256,
                &CancellationToken::new(),
            )
            .await?,
        );
    }
    tree.finish().await?;
    Ok(stats)
}
