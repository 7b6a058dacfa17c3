//! The content-addressed blob cache shared by every job.
//!
//! A blob file exists under its digest only once its bytes were hashed and matched.
//! Concurrent requests for one blob download it once (single flight, per digest, no
//! process-wide lock). Running jobs pin the blobs they use so purge and LRU eviction
//! leave them alone. Knows nothing of HTTP or registries: a fetch is driven by the caller
//! writing into a [`BlobWriter`].

mod writer;

pub use writer::BlobWriter;

use std::path::{Path, PathBuf};

use sqlx::SqlitePool;

use crate::digest::Digest;

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
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => {
                "digest_mismatch"
            }
            StoreError::Io { .. } => "io_error",
            StoreError::Db(_) => "internal_error",
        }
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
    pub hits: u64,
    pub misses: u64,
    /// Requests that found another job already downloading the blob and waited for it.
    pub shared: u64,
    pub evictions: u64,
}

/// A pinned cached blob: while it lives, purge and eviction keep the file.
pub struct BlobGuard {}

impl BlobGuard {
    pub fn path(&self) -> &Path {
        todo!()
    }
    pub fn digest(&self) -> &Digest {
        todo!()
    }
    pub fn size(&self) -> u64 {
        todo!()
    }
}

/// The answer of [`Store::acquire`].
pub enum Acquired {
    /// The blob is cached (possibly after waiting for another job's download).
    Ready(BlobGuard),
    /// This caller is the one to download it: write into the writer, then
    /// [`BlobWriter::commit`]. Dropping the writer without committing removes the
    /// temporary file and lets a waiting caller try.
    Fetch(BlobWriter),
}

/// The cache. Cheap to clone.
#[derive(Clone)]
pub struct Store {}

impl Store {
    /// Opens (creating) the cache folder, removes leftover temporary files, and reconciles
    /// the `blobs` table with the files present.
    pub async fn open(
        _dir: PathBuf,
        _db: SqlitePool,
        _max_bytes: Option<u64>,
    ) -> Result<Self, StoreError> {
        todo!()
    }

    pub fn dir(&self) -> &Path {
        todo!()
    }

    /// The cached blob, pinned, or the right to fetch it; waits while another task fetches it.
    /// `size`: the size the manifest declares, checked on commit.
    pub async fn acquire(&self, _digest: &Digest, _size: Option<u64>) -> Result<Acquired, StoreError> {
        todo!()
    }

    pub async fn stats(&self) -> Result<CacheStats, StoreError> {
        todo!()
    }

    /// Removes every blob not pinned by a running job.
    pub async fn purge(&self) -> Result<PurgeReport, StoreError> {
        todo!()
    }

    pub fn counters(&self) -> StoreCounters {
        todo!()
    }
}
