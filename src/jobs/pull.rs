//! The pull job: resolve, download layers (in parallel, through the cache), apply them in
//! order to a staging tree, swap it into place.
//!
//! One pass over the network bytes: each blob is hashed while it is written (cache or
//! job-private folder) and only a verified blob is ever extracted. Downloads run ahead of
//! extraction, a few layers at a time, so the network and the disk work at once.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::JobEnv;
use super::errors::io_error;
use super::fetch::{Fetcher, PrivateDir};
use super::model::JobError;
use super::progress::Tracker;
use super::request::{CacheMode, PullSpec};
use crate::registry::{Credentials, ManifestKind};
use crate::unpack::{Compression, Staging, Tree, UnpackOptions};

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
    let fetcher = Fetcher {
        env: env.clone(),
        reference: spec.reference.clone(),
        auth: auth.clone(),
        blob_dir: blob_dir.as_ref().map(|d| d.path().to_path_buf()),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
    };

    tracker.set_phase("downloading");
    let (_downloads, mut rx) = fetcher.fetch_all(layers.clone());

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
