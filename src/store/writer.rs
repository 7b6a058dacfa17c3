//! Writing a blob: a temporary file that hashes what passes, renamed into place only
//! once the digest (and declared size) match.
//!
//! A writer either belongs to the cache (made by [`super::Store::acquire`], holding the
//! digest's fetch slot until it commits or drops) or stands alone for `cache: bypass`.
//! Either way no unverified byte is ever visible under a digest's name, and a writer
//! dropped without commit leaves no file behind. While it writes, any number of
//! [`Follower`]s read what has landed (`follow.rs`); they learn the outcome from the
//! writer: verified as soon as the digest matched (before the fsync), then committed, or
//! failed. Not for: downloading (the caller copies a response body in) or decompressing.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;
use std::sync::Arc;

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::follow::{Follower, Landing, failure};
use super::sink::FileSink;
use super::state::{Counters, Shared, Slot};
use super::{BlobGuard, Store, StoreError, table};
use crate::digest::{Digest, HashingWriter};
use crate::error::FromIo;
use crate::guard::PathGuard;

/// An `AsyncWrite` into a temporary file, hashing as it goes.
pub struct BlobWriter {
    out: HashingWriter<FileSink>,
    /// Removed inline when dropped: it must be gone before `target`'s fetch slot is
    /// released (fields drop in order), even without a runtime.
    temp: PathGuard,
    digest: Digest,
    size: Option<u64>,
    /// What followers see; also held by the store's single-flight entry for the digest.
    landing: Arc<Landing>,
    target: Target,
}

enum Target {
    /// Into the cache; the slot keeps other fetchers of the digest waiting.
    Cache { store: Store, slot: Slot },
    /// To `dir/<algorithm>/<hex>`, outside the cache.
    Standalone { dir: PathBuf },
}

impl BlobWriter {
    /// A writer outside the cache (for `cache: bypass`): the blob lands at
    /// `dir/<algorithm>/<hex>` once verified.
    pub async fn standalone(
        dir: &Path,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<BlobWriter, StoreError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(StoreError::io(dir))?;
        let temp = dir.join(format!(".{}", temp_name(digest)));
        let target = Target::Standalone {
            dir: dir.to_path_buf(),
        };
        Self::create(temp, digest, size, target).await
    }

    /// A writer into the cache, for the task that holds `digest`'s fetch slot.
    pub(super) async fn for_cache(
        store: Store,
        slot: Slot,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<BlobWriter, StoreError> {
        let temp = store.dir().join("tmp").join(temp_name(digest));
        Self::create(temp, digest, size, Target::Cache { store, slot }).await
    }

    async fn create(
        path: PathBuf,
        digest: &Digest,
        size: Option<u64>,
        target: Target,
    ) -> Result<BlobWriter, StoreError> {
        // Readable too: followers `pread` this descriptor, whatever becomes of the name.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(StoreError::io(&path))?;
        let temp = PathGuard::file(path);
        let file = Arc::new(file.into_std().await);
        let landing = Landing::new(digest.clone(), file.clone());
        Ok(BlobWriter {
            out: HashingWriter::new(FileSink::new(file, landing.clone()), digest.algorithm()),
            temp,
            digest: digest.clone(),
            size,
            landing,
            target,
        })
    }

    /// A follower of this write from its first byte (see `follow.rs`), pinned like any
    /// reader of a cache blob.
    pub fn follow(&self) -> Follower {
        let pin = match &self.target {
            Target::Cache { store, .. } => Some(Shared::pin(&store.shared, &self.digest)),
            Target::Standalone { .. } => None,
        };
        self.landing.follow(self.size, pin)
    }

    /// Resolves once every follower (and reader) of this write is gone: whoever drives
    /// the download may then stop it.
    pub fn unfollowed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.landing.unfollowed()
    }

    /// Gives up: followers get `err`'s code and message as the download's outcome, and
    /// the temporary file goes.
    pub(crate) fn abandon(self, err: &dyn crate::error::ErrorCode) {
        self.landing.failed(err.code(), err.to_string());
    }

    pub(super) fn landing(&self) -> &Arc<Landing> {
        &self.landing
    }

    /// Bytes written so far (where a resumed download starts).
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// Checks the digest and size, fsyncs, renames into place, records the blob, and
    /// returns it pinned. On mismatch the temporary file is removed. Followers hear of
    /// each step: verified once the digest matched, then committed, or the error.
    pub async fn commit(self) -> Result<BlobGuard, StoreError> {
        self.commit_with(|_| {}).await
    }

    /// [`commit`](Self::commit), with `before_told` called on a failure before the
    /// followers hear of it (so what they do next sees its effects: a mirror blamed).
    pub async fn commit_with(
        self,
        before_told: impl FnOnce(&StoreError),
    ) -> Result<BlobGuard, StoreError> {
        let landing = self.landing.clone();
        let result = self.commit_inner(&landing).await;
        if let Err(err) = &result {
            before_told(err);
            let (code, message) = failure(err);
            landing.failed(code, message);
        }
        result
    }

    async fn commit_inner(self, landing: &Landing) -> Result<BlobGuard, StoreError> {
        let BlobWriter {
            mut out,
            temp,
            digest,
            size,
            landing: _,
            target,
        } = self;
        if let Err(source) = out.flush().await {
            let err = StoreError::io(temp.path())(source);
            temp.remove().await;
            return Err(err);
        }
        let (file, actual, written) = out.into_parts();
        if let Some(expected) = size.filter(|&s| s != written) {
            temp.remove().await;
            return Err(StoreError::SizeMismatch {
                digest,
                expected,
                actual: written,
            });
        }
        if actual != digest {
            temp.remove().await;
            return Err(StoreError::DigestMismatch {
                expected: digest,
                actual,
                size: written,
            });
        }
        // Before the fsync: a follower (an extraction) may end now, its bytes verified;
        // the sync and rename then run beside whatever it does next.
        landing.verified(written);
        let synced = file.sync().await;
        drop(file);
        if let Err(source) = synced {
            let err = StoreError::io(temp.path())(source);
            temp.remove().await;
            return Err(err);
        }
        match target {
            Target::Standalone { dir } => {
                let path = dir.join(digest.algorithm().as_str()).join(digest.hex());
                publish(temp, &path).await?;
                landing.committed(path.clone(), written);
                Ok(BlobGuard::new(digest, path, written, None))
            }
            Target::Cache { store, slot } => {
                let path = store.blob_path(&digest);
                publish(temp, &path).await?;
                let shared = &store.shared;
                let now = shared.now_millis();
                if let Err(err) = table::upsert(&shared.db, &digest, written, now).await {
                    // Without its row the file would be unaccounted for: take it back.
                    remove_quietly(&path).await;
                    return Err(err.into());
                }
                let pin = Shared::pin(shared, &digest);
                landing.committed(path.clone(), written);
                // Only now may waiters look: the file and its row are both in place.
                drop(slot);
                Counters::add(&shared.counters.bytes_written, written);
                if let Err(err) = store.evict().await {
                    tracing::warn!(%digest, error = %err, "cache eviction after commit failed");
                }
                Ok(BlobGuard::new(digest, path, written, Some(pin)))
            }
        }
    }
}

impl AsyncWrite for BlobWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(size) = this.size
            && this.out.written().saturating_add(buf.len() as u64) > size
        {
            // Refuse early: a lying server must not fill the disk.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {}: more than the declared {size} bytes", this.digest),
            )));
        }
        Pin::new(&mut this.out).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().out).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().out).poll_shutdown(cx)
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("written", &self.out.written())
            .field("temp", &self.temp.path())
            .finish_non_exhaustive()
    }
}

/// The temporary file's name: the digest (so errors and leftovers say what they were)
/// plus randomness (so concurrent writers never collide).
fn temp_name(digest: &Digest) -> String {
    format!(
        "{}-{}-{}.partial",
        digest.algorithm().as_str(),
        digest.hex(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Renames the verified temporary file to `path` (atomically replacing any equal copy)
/// and fsyncs the folder so the name survives a crash.
async fn publish(temp: PathGuard, path: &Path) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    if let Err(source) = tokio::fs::create_dir_all(parent).await {
        temp.remove().await;
        return Err(StoreError::io(parent)(source));
    }
    if let Err(source) = tokio::fs::rename(temp.path(), path).await {
        temp.remove().await;
        return Err(StoreError::io(path)(source));
    }
    temp.keep();
    let synced = async { File::open(parent).await?.sync_all().await }.await;
    synced.map_err(StoreError::io(parent))
}

/// Removes a file whose removal failing changes nothing for the caller (the next
/// `Store::open` would clean it anyway); logs anything but "already gone".
pub(super) async fn remove_quietly(path: &Path) {
    if let Err(err) = tokio::fs::remove_file(path).await
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %err, "could not remove cache file");
    }
}
