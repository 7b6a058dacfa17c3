//! The content-addressed blob cache shared by every job.
//!
//! A blob file exists under its digest only once its bytes were hashed and matched.
//! Concurrent requests for one blob download it once (single flight, per digest, no
//! process-wide lock). Running jobs pin the blobs they use so purge and LRU eviction
//! leave them alone. A blob being written can be read while it lands, by the task that
//! writes it and by others ([`Follower`], `follow.rs`): one download, any number of
//! readers, each told at the end whether the bytes matched. Knows nothing of HTTP or
//! registries: a fetch is driven by the caller writing into a [`BlobWriter`].

mod follow;
mod maintenance;
mod sink;
mod state;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_follow;
mod writer;

pub use follow::Follower;
pub use writer::BlobWriter;

use crate::error::FromIo;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::SqlitePool;

use crate::digest::Digest;
use state::{Counters, Pin, Shared, Wait, Work};

impl From<BlobGuard> for Opened {
    fn from(guard: BlobGuard) -> Opened {
        Opened::Ready(guard)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {expected}: content hashes to {actual} ({size} bytes)")]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache database: {0}")]
    Db(#[from] sqlx::Error),
    /// The outcome of a download this caller followed: the writer's error, as it told it.
    #[error("{message}")]
    Followed { code: &'static str, message: String },
}

impl crate::error::ErrorCode for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => {
                "digest_mismatch"
            }
            StoreError::Io { .. } => "io_error",
            StoreError::Db(_) => "internal_error",
            StoreError::Followed { code, .. } => code,
        }
    }
}

impl crate::error::FromIo for StoreError {
    fn from_io(path: PathBuf, source: std::io::Error) -> Self {
        StoreError::Io { path, source }
    }
}

/// Numbers for `GET /cache`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CacheStats {
    pub path: PathBuf,
    pub blobs: u64,
    pub bytes: u64,
    pub max_bytes: Option<u64>,
}

/// What `DELETE /cache` freed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PurgeReport {
    pub removed_blobs: u64,
    pub freed_bytes: u64,
}

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StoreCounters {
    /// Requests answered from the cache at once.
    pub hits: u64,
    /// Requests that had to fetch the blob themselves.
    pub misses: u64,
    /// Requests that found another job already downloading the blob and waited for it.
    pub shared: u64,
    /// Blobs removed by LRU eviction (not counting `purge`).
    pub evictions: u64,
    /// Bytes of blobs committed into the cache.
    pub bytes_written: u64,
}

/// A pinned cached blob: while it lives, purge and eviction keep the file.
///
/// Cloning pins again. A guard from [`BlobWriter::standalone`] pins nothing: its file
/// lies outside the cache.
#[derive(Clone)]
pub struct BlobGuard {
    digest: Digest,
    path: PathBuf,
    size: u64,
    _pin: Option<Pin>,
}

impl BlobGuard {
    fn new(digest: Digest, path: PathBuf, size: u64, pin: Option<Pin>) -> Self {
        BlobGuard {
            digest,
            path,
            size,
            _pin: pin,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    #[cfg(test)]
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    #[cfg(test)]
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl fmt::Debug for BlobGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobGuard")
            .field("digest", &self.digest)
            .field("path", &self.path)
            .field("size", &self.size)
            .field("pinned", &self._pin.is_some())
            .finish()
    }
}

/// The answer of [`Store::acquire`].
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per blob download; boxing buys nothing"
)]
pub enum Acquired {
    /// The blob is cached (possibly after waiting for another job's download).
    Ready(BlobGuard),
    /// This caller is the one to download it: write into the writer, then
    /// [`BlobWriter::commit`]. Dropping the writer without committing removes the
    /// temporary file and lets a waiting caller try.
    Fetch(BlobWriter),
}

/// The answer of [`Store::acquire_or_follow`].
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per blob download; boxing buys nothing"
)]
pub enum Opened {
    /// The blob is cached.
    Ready(BlobGuard),
    /// This caller is the one to download it (as [`Acquired::Fetch`]).
    Fetch(BlobWriter),
    /// Another task is downloading it: read it as it lands.
    Follow(Follower),
}

/// The cache. Cheap to clone.
///
/// One `Store` per cache folder and database: two processes (or two `open`s) on the
/// same folder would each clean the other's temporary files.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .field("max_bytes", &self.shared.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating) the cache folder, removes leftover temporary files, and reconciles
    /// the `blobs` table with the files present.
    ///
    /// Files without a row, rows without a file, and files whose size disagrees with
    /// their row are all removed: nothing unverified is trusted.
    pub async fn open(
        dir: PathBuf,
        db: SqlitePool,
        max_bytes: Option<u64>,
    ) -> Result<Self, StoreError> {
        maintenance::prepare(&dir, &db).await?;
        let clock = table::latest_use(&db).await?;
        Ok(Store {
            shared: Arc::new(Shared::new(dir, db, max_bytes, clock)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Where the verified blob `digest` lives (or would live) in the cache.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.shared
            .dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// The cached blob, pinned, or the right to fetch it; waits while another task fetches it.
    /// `size`: the size the manifest declares, checked on commit.
    ///
    /// A cached blob whose size differs from a declared `size` is a `SizeMismatch`: the
    /// manifest is lying about a blob whose content is known. Cancel-safe: dropping the
    /// future releases whatever it held.
    ///
    /// Waiting has no timeout of its own: a stalled download holds its waiters until the
    /// fetcher's transfer times out or is cancelled. A task that holds the writer of a
    /// digest must not await `acquire` of that same digest (it would wait for itself);
    /// polling both concurrently (e.g. in one `buffered` stream) is fine.
    pub async fn acquire(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Acquired, StoreError> {
        loop {
            match self.acquire_or_follow(digest, size).await? {
                Opened::Ready(guard) => return Ok(Acquired::Ready(guard)),
                Opened::Fetch(writer) => return Ok(Acquired::Fetch(writer)),
                // A failed download lets a waiter try: the next round may claim it.
                Opened::Follow(follower) => match follower.outcome().await {
                    Ok(guard) => return Ok(Acquired::Ready(guard)),
                    Err(StoreError::SizeMismatch { .. } | StoreError::Followed { .. }) => {}
                    Err(err) => return Err(err),
                },
            }
        }
    }

    /// As [`Store::acquire`], but a blob another task is downloading is not waited for:
    /// the answer is a [`Follower`] of that download. (A delete in progress is waited for.)
    pub async fn acquire_or_follow(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Opened, StoreError> {
        let shared = &self.shared;
        let mut waited_for_fetch = false;
        loop {
            // Pin first, then look: a blob pinned before it is found cannot be purged
            // between the look and the use.
            let pin = match Shared::pin_unless_busy(shared, digest) {
                Ok(pin) => pin,
                Err(wait) => {
                    if let Some(follower) = self.follow(digest, size, &wait) {
                        return Ok(Opened::Follow(follower));
                    }
                    waited_for_fetch |= wait.work == Work::Fetch;
                    wait.finished().await;
                    continue;
                }
            };
            // Whoever waited for a download and then found the blob shared it.
            let counter = if waited_for_fetch {
                &shared.counters.shared
            } else {
                &shared.counters.hits
            };
            if let Some(found) = self.lookup(digest).await? {
                return self
                    .ready(digest, size, found, pin, counter)
                    .map(Opened::from);
            }
            drop(pin);

            let slot = match Shared::claim_fetch(shared, digest) {
                Ok(slot) => slot,
                Err(wait) => {
                    if let Some(follower) = self.follow(digest, size, &wait) {
                        return Ok(Opened::Follow(follower));
                    }
                    waited_for_fetch |= wait.work == Work::Fetch;
                    wait.finished().await;
                    continue;
                }
            };
            // Another fetcher may have committed between the look and the claim.
            if let Some(found) = self.lookup(digest).await? {
                let pin = Shared::pin(shared, digest);
                drop(slot);
                return self
                    .ready(digest, size, found, pin, counter)
                    .map(Opened::from);
            }
            // Holding the slot, clear whatever half state is left (row without file,
            // file of the wrong size) so the commit starts clean.
            table::delete(&shared.db, digest).await?;
            writer::remove_quietly(&self.blob_path(digest)).await;
            Counters::add(&shared.counters.misses, 1);
            let writer = BlobWriter::for_cache(self.clone(), slot, digest, size).await?;
            // From now on, others follow this download instead of waiting for its end.
            Shared::set_landing(shared, digest, writer.landing().clone());
            return Ok(Opened::Fetch(writer));
        }
    }

    /// A follower of the download `wait` is about, if it is one whose writer exists.
    fn follow(&self, digest: &Digest, size: Option<u64>, wait: &Wait) -> Option<Follower> {
        let landing = wait.landing.as_ref().filter(|_| wait.work == Work::Fetch)?;
        // Pinned now, while the fetch holds the digest: the pin outlives its commit.
        let pin = Shared::pin(&self.shared, digest);
        Counters::add(&self.shared.counters.shared, 1);
        Some(landing.follow(size, Some(pin)))
    }

    fn ready(
        &self,
        digest: &Digest,
        declared: Option<u64>,
        found: u64,
        pin: Pin,
        counter: &std::sync::atomic::AtomicU64,
    ) -> Result<BlobGuard, StoreError> {
        if let Some(expected) = declared.filter(|&s| s != found) {
            return Err(StoreError::SizeMismatch {
                digest: digest.clone(),
                expected,
                actual: found,
            });
        }
        Counters::add(counter, 1);
        Ok(BlobGuard::new(
            digest.clone(),
            self.blob_path(digest),
            found,
            Some(pin),
        ))
    }

    /// The blob's size if both its row and a file of that size are present; marks it
    /// used. The caller holds a pin or the slot.
    async fn lookup(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let now = self.shared.now_millis();
        let Some(size) = table::touch(&self.shared.db, digest, now).await? else {
            return Ok(None);
        };
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() && meta.len() == size => Ok(Some(size)),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::io(&path)(source)),
        }
    }

    /// Caches a small document already held in memory, pinned; its digest is checked
    /// again on the way in, like any other blob's. Only the tests put blobs in this way.
    #[cfg(test)]
    pub async fn insert_bytes(
        &self,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<BlobGuard, StoreError> {
        use tokio::io::AsyncWriteExt;
        match self.acquire(digest, Some(bytes.len() as u64)).await? {
            Acquired::Ready(guard) => Ok(guard),
            Acquired::Fetch(mut writer) => {
                if let Err(source) = writer.write_all(bytes).await {
                    return Err(StoreError::io(self.blob_path(digest))(source));
                }
                writer.commit().await
            }
        }
    }

    pub async fn stats(&self) -> Result<CacheStats, StoreError> {
        let (blobs, bytes) = table::totals(&self.shared.db).await?;
        Ok(CacheStats {
            path: self.shared.dir.clone(),
            blobs,
            bytes,
            max_bytes: self.shared.max_bytes,
        })
    }

    pub fn counters(&self) -> StoreCounters {
        self.shared.counters.snapshot()
    }
}
