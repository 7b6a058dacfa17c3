//! The pull job: resolve, download layers (in parallel, through the cache), apply them in
//! order to a staging tree, swap it into place.
//!
//! One pass over the network bytes: each blob is hashed while it is written (cache or
//! job-private folder) and only a verified blob is ever extracted. Downloads run ahead of
//! extraction, a few layers at a time, so the network and the disk work at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::JobEnv;
use super::errors::io_error;
use super::model::JobError;
use super::progress::Tracker;
use super::request::{CacheMode, PullSpec};
use crate::registry::{Credentials, LayerDescriptor, ManifestKind, Reference};
use crate::store::{Acquired, BlobGuard, BlobWriter};
use crate::unpack::{Compression, Staging, Tree, UnpackOptions};

/// Layers downloaded at once by one job.
const PARALLEL_DOWNLOADS: usize = 3;

pub async fn run(
    env: &JobEnv,
    job_id: &str,
    spec: PullSpec,
    auth: Option<Credentials>,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> Result<serde_json::Value, JobError> {
    tracker.set_phase("resolving");
    let image = env
        .registry
        .resolve(&spec.reference, spec.platform.as_ref(), auth.as_ref())
        .await?;
    let ManifestKind::Image { layers, .. } = &image.manifest.kind else {
        return Err(JobError::new(
            "unsupported_manifest",
            format!("{}: resolved to an index, not an image", spec.reference),
        ));
    };
    let compressions = layers
        .iter()
        .map(|l| {
            Compression::from_media_type(&l.media_type).ok_or_else(|| {
                JobError::new(
                    "unsupported_layer",
                    format!(
                        "{}: layer {} has media type {:?}, which is not a tar layer",
                        spec.reference, l.digest, l.media_type
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracker.set_layers(layers.iter().map(|l| (l.digest.to_string(), l.size)));

    let staging = Staging::create(&spec.dest, job_id).await?;
    let blob_dir = match spec.cache {
        CacheMode::Use => None,
        CacheMode::Bypass => Some(PrivateDir::create(&env.config.tmp_dir(), job_id).await?),
    };

    tracker.set_phase("downloading");
    let (tx, mut rx) = mpsc::channel(PARALLEL_DOWNLOADS);
    let _producer = AbortOnDropHandle::new(tokio::spawn(download_all(
        env.clone(),
        spec.reference.clone(),
        layers.clone(),
        auth.clone(),
        blob_dir.as_ref().map(|d| d.path.clone()),
        tracker.clone(),
        cancel.clone(),
        tx,
    )));

    let mut tree = Tree::open(staging.path(), UnpackOptions::for_current_user())?;
    for (index, (layer, compression)) in layers.iter().zip(compressions).enumerate() {
        let blob = match rx.recv().await {
            Some(result) => result?,
            None => return Err(JobError::new("internal_error", "layer download stopped")),
        };
        if cancel.is_cancelled() {
            return Err(JobError::new("cancelled", "cancelled"));
        }
        tracker.set_phase("extracting");
        tracker.layer_state(index, "extracting");
        let file = tokio::fs::File::open(blob.path())
            .await
            .map_err(|e| io_error(format!("opening blob {}", layer.digest), e))?;
        tree.apply_layer(file, compression, cancel).await?;
        tracker.layer_done(index, "done");
        tracing::debug!(layer = %layer.digest, "layer applied");
    }
    tree.finish().await?;
    let dest = staging.commit(spec.force).await?;
    drop(blob_dir);

    Ok(json!({
        "image": spec.reference.to_string(),
        "digest": image.manifest.digest,
        "index_digest": (image.top.digest != image.manifest.digest).then_some(&image.top.digest),
        "dest": dest,
        "platform": image.platform.to_string(),
        "layers": layers.iter().map(|l| json!({
            "digest": l.digest, "size": l.size, "media_type": l.media_type,
        })).collect::<Vec<_>>(),
    }))
}

/// Downloads every layer, a few at once, sending each verified blob in layer order.
#[allow(clippy::too_many_arguments)]
async fn download_all(
    env: JobEnv,
    reference: Reference,
    layers: Vec<LayerDescriptor>,
    auth: Option<Credentials>,
    blob_dir: Option<PathBuf>,
    tracker: Arc<Tracker>,
    cancel: CancellationToken,
    tx: mpsc::Sender<Result<BlobGuard, JobError>>,
) {
    let fetches =
        futures_util::stream::iter(layers.into_iter().enumerate().map(|(index, layer)| {
            let env = env.clone();
            let reference = reference.clone();
            let auth = auth.clone();
            let blob_dir = blob_dir.clone();
            let tracker = tracker.clone();
            let cancel = cancel.clone();
            async move {
                fetch_layer(
                    &env,
                    &reference,
                    index,
                    &layer,
                    auth.as_ref(),
                    blob_dir.as_deref(),
                    &tracker,
                    &cancel,
                )
                .await
            }
        }))
        .buffered(PARALLEL_DOWNLOADS);
    futures_util::pin_mut!(fetches);
    while let Some(result) = fetches.next().await {
        let failed = result.is_err();
        if tx.send(result).await.is_err() || failed {
            return;
        }
    }
}

/// One layer, verified: from the cache, by waiting for another job's download of it, or
/// downloaded now.
async fn fetch_layer(
    env: &JobEnv,
    reference: &Reference,
    index: usize,
    layer: &LayerDescriptor,
    auth: Option<&Credentials>,
    blob_dir: Option<&Path>,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> Result<BlobGuard, JobError> {
    let mut writer = match blob_dir {
        None => match env.store.acquire(&layer.digest, Some(layer.size)).await? {
            Acquired::Ready(blob) => {
                tracker.add_bytes(index, layer.size);
                tracker.layer_state(index, "cached");
                return Ok(blob);
            }
            Acquired::Fetch(writer) => writer,
        },
        Some(dir) => BlobWriter::standalone(dir, &layer.digest, Some(layer.size)).await?,
    };
    let offset = writer.written();
    tracker.layer_state(index, "downloading");
    let progress = {
        let tracker = tracker.clone();
        move |n: u64| tracker.add_bytes(index, n)
    };
    env.registry
        .copy_blob(
            reference,
            &layer.digest,
            Some(layer.size),
            auth,
            &mut writer,
            offset,
            &progress,
            cancel,
        )
        .await?;
    writer
        .flush()
        .await
        .map_err(|e| io_error(format!("writing blob {}", layer.digest), e))?;
    let blob = writer.commit().await?;
    tracker.layer_state(index, "downloaded");
    Ok(blob)
}

/// A job-private folder for `cache: bypass` blobs, removed when dropped.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    async fn create(tmp: &Path, job_id: &str) -> Result<PrivateDir, JobError> {
        let path = tmp.join(format!("blobs-{job_id}"));
        let _ = tokio::fs::remove_dir_all(&path).await;
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|e| io_error(format!("creating {}", path.display()), e))?;
        Ok(PrivateDir { path })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
