//! Getting a job's blobs onto local disk, verified: from the shared cache, by following
//! (or waiting for) another job's download of the same blob, or downloaded now (into the
//! cache, or into a job-private folder for `cache: bypass`).
//!
//! A pull's layers are streamed ([`Fetcher::stream_all`]): each download runs in a task of
//! its own, the job reads it as it lands ([`crate::store::Follower`]), and a download goes
//! on for as long as anyone follows it, this job or another pulling the same blob.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::JobEnv;
use super::model::JobError;
use super::progress::Tracker;
use crate::digest::Digest;
use crate::error::FromIo;
use crate::guard::PathGuard;
use crate::oci::Descriptor;
use crate::registry::{BlobCopied, Credentials, Reference};
use crate::store::{Acquired, BlobGuard, BlobWriter, Follower, Opened, StoreError};

/// Blobs downloaded at once by one job.
pub const PARALLEL_DOWNLOADS: usize = 3;

/// A layer's bytes, as a pull reads them.
#[derive(Debug)]
pub enum LayerBlob {
    /// Verified already (cached, or in the job's folder): read the file.
    Ready(BlobGuard),
    /// Being downloaded, by this job or another: read it as it lands; its end tells
    /// whether the bytes matched.
    Landing(Follower),
}

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
    /// Starts every blob's download in order, at most [`PARALLEL_DOWNLOADS`] at once, in a
    /// task of its own; the receiver yields each blob as soon as it can be read (cached,
    /// or landing), in order. Dropping the handle starts no more; a download already
    /// started goes on while it is followed (see [`Fetcher::download`]).
    pub fn stream_all(
        &self,
        blobs: Vec<Descriptor>,
    ) -> (
        AbortOnDropHandle<()>,
        mpsc::Receiver<Result<LayerBlob, JobError>>,
    ) {
        let (tx, rx) = mpsc::channel(PARALLEL_DOWNLOADS);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let downloads = Arc::new(Semaphore::new(PARALLEL_DOWNLOADS));
            for (index, blob) in blobs.into_iter().enumerate() {
                // Taken before looking at the blob: a fetch needs it, the rest drop it.
                let Ok(permit) = downloads.clone().acquire_owned().await else {
                    return;
                };
                let result = this.start(index, &blob, permit).await;
                let failed = result.is_err();
                if tx.send(result).await.is_err() || failed {
                    return;
                }
            }
        });
        (AbortOnDropHandle::new(task), rx)
    }

    /// Blob `index`: cached, followed (another job downloads it), or its download started.
    async fn start(
        &self,
        index: usize,
        blob: &Descriptor,
        permit: OwnedSemaphorePermit,
    ) -> Result<LayerBlob, JobError> {
        let tracker = &self.tracker;
        let writer = match &self.blob_dir {
            None => match self
                .env
                .store
                .acquire_or_follow(&blob.digest, Some(blob.size))
                .await?
            {
                Opened::Ready(found) => {
                    self.source(index, "cache");
                    tracker.add_bytes(index, blob.size);
                    tracker.layer_state(index, "cached");
                    return Ok(LayerBlob::Ready(found));
                }
                Opened::Follow(follower) => {
                    // Another job's download: its bytes (and its host) are counted there;
                    // this job asked no host.
                    self.source(index, "cache");
                    tracker.add_bytes(index, blob.size);
                    tracker.layer_state(index, "downloading");
                    return Ok(LayerBlob::Landing(follower));
                }
                Opened::Fetch(writer) => writer,
            },
            Some(dir) => BlobWriter::standalone(dir, &blob.digest, Some(blob.size)).await?,
        };
        // Made before the download starts: a download without followers stops.
        let follower = writer.follow();
        tracker.layer_state(index, "downloading");
        tokio::spawn(self.clone().download(index, blob.clone(), writer, permit));
        Ok(LayerBlob::Landing(follower))
    }

    /// Downloads `blob` into `writer` and commits it, while anyone follows it: once every
    /// follower is gone (this job failed or was cancelled, and no other job joined), the
    /// download stops and its file goes. Its outcome reaches the followers through the
    /// writer; nobody awaits this task.
    async fn download(
        self,
        index: usize,
        blob: Descriptor,
        mut writer: BlobWriter,
        _permit: OwnedSemaphorePermit,
    ) {
        let unfollowed = writer.unfollowed();
        let tracker = self.tracker.clone();
        let progress = move |n: u64| tracker.add_bytes(index, n);
        // The download's own stop is `unfollowed`; the registry call needs a token.
        let never = CancellationToken::new();
        let copied = tokio::select! {
            biased;
            () = unfollowed => None,
            copied = self.env.registry.copy_blob(
                &self.reference,
                &blob.digest,
                Some(blob.size),
                self.auth.as_ref(),
                &mut writer,
                0,
                &progress,
                &never,
            ) => Some(copied),
        };
        match copied {
            None => tracing::debug!(digest = %blob.digest, "download stopped: nobody follows it"),
            Some(Err(err)) => writer.abandon(&err),
            Some(Ok(copied)) => {
                // Before the commit, which is what lets the job end: the result names it.
                self.source(index, &copied.source);
                // A verified blob is committed even if its followers left meanwhile.
                let blame = |err: &StoreError| {
                    blame_mirrors(&self, &blob.digest, &copied, err);
                };
                if let Err(err) = writer.commit_with(blame).await {
                    tracing::debug!(digest = %blob.digest, error = %err, "download refused");
                }
            }
        }
    }

    /// One blob, verified; `index` is its place in the tracker's layer list.
    ///
    /// Nobody reads these bytes as they land, so a mirror caught sending wrong ones is
    /// skipped at once and the blob asked of the next host (each round blames one more
    /// mirror; the origin's wrong bytes are the answer).
    pub async fn fetch(&self, index: usize, blob: &Descriptor) -> Result<BlobGuard, JobError> {
        loop {
            let mut blamed = false;
            match self.fetch_once(index, blob, &mut blamed).await {
                Err(e) if blamed => {
                    tracing::debug!(digest = %blob.digest, error = %e.message, "blob: asking the next host");
                }
                other => return other,
            }
        }
    }

    /// One round of [`fetch`](Self::fetch); `blamed` says whether its failure blamed a
    /// mirror.
    async fn fetch_once(
        &self,
        index: usize,
        blob: &Descriptor,
        blamed: &mut bool,
    ) -> Result<BlobGuard, JobError> {
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
        let blame = |err: &StoreError| *blamed = blame_mirrors(self, &blob.digest, &copied, err);
        let found = writer.commit_with(blame).await?;
        self.source(index, &copied.source);
        tracker.layer_state(index, "downloaded");
        Ok(found)
    }

    /// Records who served blob `index`. `cache` does not replace a host: on a pull's
    /// second try (see `pull.rs`), a blob the first one downloaded is still named by the
    /// host that sent it.
    fn source(&self, index: usize, source: &str) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if source == "cache" {
            sources.entry(index).or_insert_with(|| source.to_string());
        } else {
            sources.insert(index, source.to_string());
        }
    }
}

/// A blob whose bytes did not match its digest, with mirrors among who sent them: they
/// are skipped for it from now on, so asking again goes elsewhere. True when it blamed.
fn blame_mirrors(
    fetcher: &Fetcher,
    digest: &Digest,
    copied: &BlobCopied,
    err: &StoreError,
) -> bool {
    let blame = matches!(err, StoreError::DigestMismatch { .. }) && !copied.mirrors.is_empty();
    if blame {
        fetcher.env.registry.blame_mirrors(digest, &copied.mirrors);
    }
    blame
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
