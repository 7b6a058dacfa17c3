//! Getting a job's blobs onto local disk, verified: from the shared cache, by waiting for
//! another job's download of the same blob, or downloaded now (into the cache, or into a
//! job-private folder for `cache: bypass`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::JobEnv;
use super::model::JobError;
use super::progress::Tracker;
use crate::error::FromIo;
use crate::guard::PathGuard;
use crate::oci::Descriptor;
use crate::registry::{Credentials, Reference};
use crate::store::{Acquired, BlobGuard, BlobWriter};

/// Blobs downloaded at once by one job.
pub const PARALLEL_DOWNLOADS: usize = 3;

/// Fetches blobs of one repository for one job.
#[derive(Clone)]
pub struct Fetcher {
    pub env: JobEnv,
    pub reference: Reference,
    pub auth: Option<Credentials>,
    /// `Some` for `cache: bypass`: blobs land here instead of the cache.
    pub blob_dir: Option<PathBuf>,
    pub tracker: Arc<Tracker>,
    pub cancel: CancellationToken,
    /// Who served each blob fetched, by index: a host, or `cache`.
    pub sources: Arc<std::sync::Mutex<HashMap<usize, String>>>,
}

impl Fetcher {
    /// Fetches every blob, a few at once, in a task of its own (so downloads go on while the
    /// caller works on earlier blobs); the receiver yields them in order. Dropping the handle
    /// stops the downloads.
    pub fn fetch_all(
        &self,
        blobs: Vec<Descriptor>,
    ) -> (
        AbortOnDropHandle<()>,
        mpsc::Receiver<Result<BlobGuard, JobError>>,
    ) {
        let (tx, rx) = mpsc::channel(PARALLEL_DOWNLOADS);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let fetches =
                futures_util::stream::iter(blobs.into_iter().enumerate().map(|(index, blob)| {
                    let this = this.clone();
                    async move { this.fetch(index, &blob).await }
                }))
                .buffered(PARALLEL_DOWNLOADS);
            futures_util::pin_mut!(fetches);
            while let Some(result) = fetches.next().await {
                let failed = result.is_err();
                if tx.send(result).await.is_err() || failed {
                    return;
                }
            }
        });
        (AbortOnDropHandle::new(task), rx)
    }

    /// One blob, verified; `index` is its place in the tracker's layer list.
    pub async fn fetch(&self, index: usize, blob: &Descriptor) -> Result<BlobGuard, JobError> {
        let tracker = &self.tracker;
        let mut writer = match &self.blob_dir {
            None => match self
                .env
                .store
                .acquire(&blob.digest, Some(blob.size))
                .await?
            {
                Acquired::Ready(found) => {
                    self.source(index, "cache");
                    tracker.add_bytes(index, blob.size);
                    tracker.layer_state(index, "cached");
                    return Ok(found);
                }
                Acquired::Fetch(writer) => writer,
            },
            Some(dir) => BlobWriter::standalone(dir, &blob.digest, Some(blob.size)).await?,
        };
        let offset = writer.written();
        tracker.layer_state(index, "downloading");
        let progress = {
            let tracker = tracker.clone();
            move |n: u64| tracker.add_bytes(index, n)
        };
        let copied = self
            .env
            .registry
            .copy_blob(
                &self.reference,
                &blob.digest,
                Some(blob.size),
                self.auth.as_ref(),
                &mut writer,
                offset,
                &progress,
                &self.cancel,
            )
            .await?;
        // `commit` flushes, syncs and checks the digest.
        let found = writer.commit().await?;
        self.source(index, &copied.source);
        tracker.layer_state(index, "downloaded");
        Ok(found)
    }

    fn source(&self, index: usize, source: &str) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.insert(index, source.to_string());
    }
}

/// The image config `desc` names, verified: through the cache (read from it when there,
/// else downloaded into it, one download shared by concurrent jobs like any blob's), or
/// straight from the registry with `use_cache` false (`cache: bypass`: the cache is
/// neither read nor written). `desc` comes from [`crate::registry::ResolvedManifest`],
/// which refused a config over 16 MiB, so reading it whole is bounded.
pub async fn config(
    env: &JobEnv,
    reference: &Reference,
    auth: Option<&Credentials>,
    desc: &Descriptor,
    use_cache: bool,
) -> Result<Bytes, JobError> {
    if !use_cache {
        return Ok(env.registry.fetch_config(reference, desc, auth).await?);
    }
    match env.store.acquire(&desc.digest, Some(desc.size)).await? {
        // Verified on its way in; its size is the declared one (checked by `acquire`).
        Acquired::Ready(found) => {
            let bytes = tokio::fs::read(found.path())
                .await
                .map_err(JobError::io(found.path()))?;
            Ok(Bytes::from(bytes))
        }
        Acquired::Fetch(mut writer) => {
            let bytes = env.registry.fetch_config(reference, desc, auth).await?;
            let path = env.store.blob_path(&desc.digest);
            writer
                .write_all(&bytes)
                .await
                .map_err(JobError::io(&path))?;
            // `commit` flushes, syncs and checks the digest.
            writer.commit().await?;
            Ok(bytes)
        }
    }
}

/// Creates a job-private folder `tmp/blobs-<name>` (for `cache: bypass` blobs, a build's
/// layer), emptied first; the guard removes it (`remove().await` on the normal path).
pub async fn private_dir(tmp: &Path, name: &str) -> Result<PathGuard, JobError> {
    let path = tmp.join(format!("blobs-{name}"));
    let guard = PathGuard::tree(&path);
    let _ = tokio::fs::remove_dir_all(&path).await;
    tokio::fs::create_dir_all(&path)
        .await
        .map_err(JobError::io(&path))?;
    Ok(guard)
}
