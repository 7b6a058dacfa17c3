//! The unit tests' face of the one tar writer (`tar_builder`, shared with the integration
//! tests): its [`E`]ntries written as POSIX ustar with PAX records ([`layer`]), the entry
//! kinds only the unit tests use (devices, fifos, PAX records, owners, GNU long names), and
//! the helpers that need the crate's types (`apply_all`, `root_options`, `zstd`). Not for:
//! production code (tests only).

use std::io::{self, Cursor};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
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
        ..UnpackOptions::for_current_user()
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
    tree.finish(true).await?;
    Ok(stats)
}

/// `len` bytes that do not repeat (xorshift), so a compressed stream of them is about as
/// long as they are.
pub(super) fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A blob that counts the bytes read from it and says when it is dropped (so a test sees
/// that the thread holding it ended and let go of it, as a file's descriptor).
pub(super) struct Watched {
    inner: Cursor<Vec<u8>>,
    pub(super) read: Count,
    pub(super) dropped: Flag,
}

impl Watched {
    pub(super) fn new(bytes: Vec<u8>) -> Watched {
        Watched {
            inner: Cursor::new(bytes),
            read: Count::default(),
            dropped: Flag::default(),
        }
    }
}

#[derive(Clone, Default)]
pub(super) struct Count(Arc<AtomicU64>);

impl Count {
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Default)]
pub(super) struct Flag(Arc<AtomicBool>);

impl Flag {
    pub(super) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Waits up to 2 s for the flag; returns it.
    pub(super) async fn wait(&self) -> bool {
        for _ in 0..100 {
            if self.get() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.get()
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        self.read.0.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.dropped.0.store(true, Ordering::Relaxed);
    }
}
