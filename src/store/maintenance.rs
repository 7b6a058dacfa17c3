//! Keeping the cache honest and bounded: start-up reconciliation of files and rows,
//! `purge` (`DELETE /cache`) and LRU eviction above `HOIST_CACHE_MAX_BYTES`.
//!
//! Deletion claims a digest's slot only when nobody pins it (see `state.rs`), so a blob
//! in use is never removed underneath its reader. Not for: verifying content (files that
//! cannot be vouched for are deleted, never re-adopted).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use sqlx::SqlitePool;

use super::state::{Counters, Shared};
use super::writer::remove_quietly;
use super::{PurgeReport, Store, StoreError, table};
use crate::digest::{Algorithm, Digest};
use crate::error::FromIo;

const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// Creates the folders, empties `tmp/`, and makes the `blobs` table and the files under
/// `blobs/` agree by deleting whatever only one side knows.
pub(super) async fn prepare(dir: &Path, db: &SqlitePool) -> Result<(), StoreError> {
    let scan_dir = dir.to_path_buf();
    let mut files = tokio::task::spawn_blocking(move || scan(&scan_dir))
        .await
        .map_err(|join| StoreError::io(dir)(io::Error::other(join)))??;

    let mut doomed = Vec::new();
    for (raw, size) in table::all_raw(db).await? {
        let file = raw.parse::<Digest>().ok().and_then(|d| files.remove(&d));
        match file {
            Some((_, len)) if len == size => {}
            other => {
                tracing::warn!(digest = %raw, "cache row without a matching file, forgetting it");
                table::delete_raw(db, &raw).await?;
                doomed.extend(other.map(|(path, _)| path));
            }
        }
    }
    for (digest, (path, _)) in files {
        tracing::warn!(%digest, path = %path.display(), "unrecorded cache file, removing it");
        doomed.push(path);
    }
    for path in doomed {
        remove_quietly(&path).await;
    }
    Ok(())
}

/// The blocking part of [`prepare`]: folders, `tmp/`, and the blob files present
/// (digest → path and length). Entries under `blobs/<algorithm>/` that are not named
/// by a digest are removed.
fn scan(dir: &Path) -> Result<HashMap<Digest, (PathBuf, u64)>, StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::io(&path)(source)
    };
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))? {
        let path = entry.map_err(io(&tmp))?.path();
        remove_any(&path).map_err(io(&path))?;
    }

    let mut files = HashMap::new();
    for algorithm in ALGORITHMS {
        let sub = dir.join("blobs").join(algorithm.as_str());
        std::fs::create_dir_all(&sub).map_err(io(&sub))?;
        for entry in std::fs::read_dir(&sub).map_err(io(&sub))? {
            let entry = entry.map_err(io(&sub))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io(&path))?;
            let name = entry.file_name();
            let digest = name
                .to_str()
                .and_then(|hex| format!("{}:{hex}", algorithm.as_str()).parse().ok());
            match digest {
                Some(digest) if meta.is_file() => {
                    files.insert(digest, (path, meta.len()));
                }
                _ => {
                    tracing::warn!(path = %path.display(), "stray entry in the cache, removing it");
                    remove_any(&path).map_err(io(&path))?;
                }
            }
        }
    }
    Ok(files)
}

fn remove_any(path: &Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(err) => Err(err),
    };
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Store {
    /// Removes every blob not pinned by a running job.
    pub async fn purge(&self) -> Result<PurgeReport, StoreError> {
        let _turn = self.shared.maintenance.lock().await;
        let mut report = PurgeReport {
            removed_blobs: 0,
            freed_bytes: 0,
        };
        for (digest, size) in table::all(&self.shared.db).await? {
            if self.remove_unpinned(&digest).await? {
                report.removed_blobs += 1;
                report.freed_bytes += size;
            }
        }
        Ok(report)
    }

    /// Evicts least-recently-used unpinned blobs until the cache is within `max_bytes`
    /// (a no-op without a limit); returns how many went. Runs after every commit; worth
    /// calling when a job ends too, since a blob pinned through the last pass (one larger
    /// than the limit, say) only becomes evictable once released.
    pub async fn evict(&self) -> Result<u64, StoreError> {
        let Some(max) = self.shared.max_bytes else {
            return Ok(0);
        };
        let _turn = self.shared.maintenance.lock().await;
        let db = &self.shared.db;
        let (_, mut total) = table::totals(db).await?;
        let mut evicted = 0;
        if total <= max {
            return Ok(0);
        }
        for (digest, size) in table::all(db).await? {
            if total <= max {
                break;
            }
            if self.remove_unpinned(&digest).await? {
                total = total.saturating_sub(size);
                evicted += 1;
                Counters::add(&self.shared.counters.evictions, 1);
                tracing::debug!(%digest, size, "evicted from the cache");
            }
        }
        if total > max {
            tracing::debug!(
                total,
                max,
                "cache stays above its limit: the rest is in use"
            );
        }
        Ok(evicted)
    }

    /// Deletes the blob's file and row unless it is pinned or being worked on; true when
    /// a row was removed. The file goes first: a row without a file is harmless (lookups
    /// check both, `open` forgets it), a file without a row would be unaccounted bytes.
    async fn remove_unpinned(&self, digest: &Digest) -> Result<bool, StoreError> {
        let Some(slot) = Shared::claim_unpinned(&self.shared, digest) else {
            return Ok(false);
        };
        let path = self.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(StoreError::io(&path)(err));
            }
            _ => {}
        }
        let removed = table::delete(&self.shared.db, digest).await?;
        drop(slot);
        Ok(removed)
    }
}
