//! The pull job: resolve, download layers (in parallel, through the cache), apply them in
//! order to a staging tree, swap it into place.
//!
//! One pass over the network bytes: each blob, the config included, is hashed while it is
//! written (cache or job-private folder), and a layer is applied *while* it downloads,
//! read as it lands (`store::Follower`); a later layer that finished downloading first is
//! read from its file. The staging tree is unverified until its end: it is swapped into
//! place only after every layer's reader ended (which it does only once the blob's digest
//! matched) and every applied layer's uncompressed stream matched the config's diff_id;
//! any failure discards it. Downloads run ahead of extraction, a few layers at a time, and
//! the next layer's inflate starts while one is written (a few chunks ahead, then waiting).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::JobEnv;
use super::cancel::cancellable;
use super::fetch::{self, Fetcher, LayerBlob, private_dir};
use super::model::{JobError, PullResult, ResultLayer};
use super::progress::Tracker;
use super::request::{CacheMode, Layout, PullSpec};
use super::scratch::Scratch;
use crate::digest::Digest;
use crate::error::FromIo;
use crate::image::{GitHistory, LayerCommit, OciLayout};
use crate::oci::{Compression, Descriptor};
use crate::registry::{Credentials, ManifestKind, ResolvedImage};
use crate::store::Follower;
use crate::unpack::{
    Inflating, Staging, Tree, UnpackOptions, Warnings, inflate_cached_layer, inflate_layer,
    remove_scratch,
};

pub async fn run(
    env: &JobEnv,
    job_id: &str,
    spec: PullSpec,
    auth: Option<Credentials>,
    scratch: &Scratch,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> Result<PullResult, JobError> {
    tracker.set_phase("resolving");
    let resolved = cancellable(
        cancel,
        env.registry
            .resolve_manifest(&spec.reference, spec.platform.as_ref(), auth.as_ref()),
    )
    .await?;
    // The config is a blob like the layers: cached, so a warm pull asks for no blob.
    let config = cancellable(
        cancel,
        fetch::config(
            env,
            &spec.reference,
            auth.as_ref(),
            resolved.config(),
            spec.cache == CacheMode::Use,
        ),
    )
    .await?;
    let image = resolved.with_config(config)?;
    let ManifestKind::Image { layers, .. } = &image.manifest.kind else {
        return Err(JobError::new(
            "unsupported_manifest",
            format!("{}: resolved to an index, not an image", spec.reference),
        ));
    };
    let compressions = layers
        .iter()
        .map(|l| {
            l.media_type.compression().ok_or_else(|| {
                JobError::new(
                    "unsupported_layer",
                    format!(
                        "{}: layer {} has media type {:?}, which is not a tar layer",
                        spec.reference,
                        l.digest,
                        l.media_type.as_str()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Layouts that apply layers check each one's uncompressed stream against its diff_id;
    // `oci` copies the blobs as they are (verified by digest), so it needs none.
    let diff_ids = match spec.layout {
        Layout::Rootfs | Layout::Git => diff_ids(&spec, &image.config, layers.len())?,
        Layout::Oci => Vec::new(),
    };
    tracker.set_layers(layers.iter().map(|l| (l.digest.to_string(), l.size)));

    // Recorded before they exist, so that a kill at any point leaves nothing unknown: the
    // job's end, or the next start, removes them (`scratch.rs`).
    let staging_path = Staging::path_for(&spec.dest, job_id)?;
    scratch.record(&staging_path).await?;
    if spec.layout == Layout::Git {
        scratch.record(&GitDir::path_beside(&staging_path)).await?;
    }
    let blob_dir = match spec.cache {
        CacheMode::Use => None,
        CacheMode::Bypass => Some(private_dir(&env.config.tmp_dir(), job_id).await?),
    };
    let fetcher = Fetcher {
        env: env.clone(),
        reference: spec.reference.clone(),
        auth: auth.clone(),
        blob_dir: blob_dir.as_ref().map(|d| d.path().to_path_buf()),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
        sources: Default::default(),
    };

    // A second try when the first failed on a mirror's wrong bytes: that mirror is now
    // skipped for that blob, and what the first try verified is in the cache.
    let mut tries = 0;
    let (staging, warnings) = loop {
        tries += 1;
        tracker.set_phase("downloading");
        let staging = Staging::create(&spec.dest, job_id).await?;
        let filled = fill(
            &spec,
            &image,
            layers,
            compressions.clone(),
            &diff_ids,
            &fetcher,
            staging.path(),
        )
        .await;
        match filled {
            Ok(warnings) => break (staging, warnings),
            Err(e) => {
                // Removed now, on the blocking pool; the worker then clears what else the
                // job recorded (the git repository) before the job is reported ended.
                staging.discard().await;
                let blamed = layers.iter().any(|l| env.registry.mirror_blamed(&l.digest));
                if tries == 1 && e.code == "digest_mismatch" && blamed {
                    tracing::warn!(job = %job_id, image = %spec.reference, error = %e.message, "pull: a mirror sent wrong bytes; trying again without it");
                    tracker.set_layers(layers.iter().map(|l| (l.digest.to_string(), l.size)));
                    continue;
                }
                if let Some(dir) = blob_dir {
                    dir.remove().await;
                }
                return Err(e);
            }
        }
    };
    let dest = staging.commit(spec.force).await?;
    if !warnings.is_empty() {
        tracing::warn!(
            job = %job_id,
            image = %spec.reference,
            warnings = warnings.count,
            first = ?warnings.first.first(),
            "pulled without everything the layers ask for (not root); see result.warnings"
        );
    }
    if let Some(dir) = blob_dir {
        dir.remove().await;
    }

    Ok(PullResult {
        image: spec.reference.to_string(),
        digest: image.manifest.digest.clone(),
        index_digest: (image.top.digest != image.manifest.digest).then(|| image.top.digest.clone()),
        dest,
        platform: image.platform.to_string(),
        layers: result_layers(layers, &fetcher),
        warnings,
    })
}

/// Writes the image into the staging folder `tree` in the requested layout, applying each
/// layer while it downloads (or copying each blob once verified). `diff_ids`: one per
/// layer for the layouts that apply layers. An `Ok` means every byte written into `tree`
/// was verified.
async fn fill(
    spec: &PullSpec,
    image: &ResolvedImage,
    layers: &[Descriptor],
    compressions: Vec<Compression>,
    diff_ids: &[Digest],
    fetcher: &Fetcher,
    tree_path: &Path,
) -> Result<Warnings, JobError> {
    let mut warnings = Warnings::default();
    let (tracker, cancel) = (&fetcher.tracker, &fetcher.cancel);

    let (_downloads, mut blobs) = fetcher.stream_all(layers.to_vec());
    match spec.layout {
        Layout::Rootfs | Layout::Git => {
            let history = match spec.layout {
                Layout::Git => Some(GitDir::init(tree_path).await?),
                _ => None,
            };
            let created = layer_history(&image.config);
            let mut tree = Tree::open(tree_path, UnpackOptions::for_current_user())?;
            // Streamed layers whose bytes matched; their commits into the cache (fsync,
            // rename) go on beside the next layers and are awaited at the end.
            let mut committing = Vec::new();
            // The next layer's inflate starts while this one is written, as soon as its
            // blob is at hand (cached, or its download begun): it runs a few chunks ahead.
            let mut ahead: Option<Started> = None;
            let start_at = async |at: usize, blob: LayerBlob| {
                start(
                    spec,
                    &layers[at],
                    compressions[at],
                    &diff_ids[at],
                    blob,
                    cancel,
                )
                .await
            };
            for (index, layer) in layers.iter().enumerate() {
                let started = match ahead.take() {
                    Some(started) => started,
                    None => start_at(index, next_blob(&mut blobs, cancel).await?).await?,
                };
                tracker.set_phase("extracting");
                tracker.layer_state(index, "extracting");
                let diff_id = &diff_ids[index];
                let Started {
                    inflating,
                    follower,
                } = started;
                let applying = tree.apply(inflating, cancel);
                tokio::pin!(applying);
                let more = index + 1 < layers.len();
                let applied = loop {
                    tokio::select! {
                        applied = &mut applying => break applied,
                        blob = next_blob(&mut blobs, cancel), if more && ahead.is_none() => {
                            ahead = Some(start_at(index + 1, blob?).await?);
                        }
                    }
                };
                let applied = match (applied, follower) {
                    (Ok(applied), None) => applied,
                    (Err(err), None) => return Err(err.into()),
                    // The reader ended, so the digest matched (the tar stage reads to the
                    // blob's end); `committed` below still waits for every verdict before
                    // the tree may be committed.
                    (Ok(applied), Some(follower)) => {
                        committing.push(follower);
                        applied
                    }
                    (Err(err), Some(follower)) => {
                        return Err(streamed_error(err, follower, cancel).await);
                    }
                };
                tracing::debug!(
                    layer = %layer.digest,
                    entries = applied.entries,
                    bytes = applied.bytes,
                    diff_id = %applied.diff_id,
                    "layer applied"
                );
                if applied.diff_id != *diff_id {
                    return Err(JobError::new(
                        "diff_id_mismatch",
                        format!(
                            "{}: layer {index} ({}) uncompresses to {}, but the image config \
                             lists the diff_id {diff_id}",
                            spec.reference, layer.digest, applied.diff_id
                        ),
                    ));
                }
                if let Some(git) = &history {
                    let (created, created_by) = created.get(index).cloned().unwrap_or_default();
                    git.commit(LayerCommit {
                        index,
                        total: layers.len(),
                        digest: &layer.digest,
                        created_by: created_by.as_deref(),
                        created: created.as_deref(),
                    })
                    .await?;
                }
                warnings.extend(applied.warnings);
                tracker.layer_done(index, "done");
            }
            let (finished, committed) = tokio::join!(tree.finish(spec.sync), committed(committing));
            finished?;
            committed?;
            if let Some(git) = history {
                git.finish().await?;
            }
        }
        Layout::Oci => {
            let layout = OciLayout::create(tree_path).await?;
            for (index, layer) in layers.iter().enumerate() {
                let blob = match next_blob(&mut blobs, cancel).await? {
                    LayerBlob::Ready(blob) => blob,
                    LayerBlob::Landing(follower) => cancellable(cancel, follower.outcome()).await?,
                };
                tracker.set_phase("writing");
                layout.add_blob(&layer.digest, blob.path()).await?;
                tracker.layer_done(index, "done");
            }
            layout.add_document(&image.config).await?;
            let ManifestKind::Image { config, .. } = &image.manifest.kind else {
                return Err(JobError::new(
                    "unsupported_manifest",
                    "not an image manifest",
                ));
            };
            let manifest = layout
                .add_manifest(
                    &image.manifest.media_type,
                    &image.manifest.bytes,
                    config,
                    layers,
                )
                .await?;
            layout
                .finish(&manifest, Some(&image.platform), Some(&spec.reference))
                .await?;
        }
    }
    Ok(warnings)
}

/// Why applying a streamed layer failed. The download's verdict comes first: bytes that
/// did not match their digest explain whatever error they caused in the tar stage (a
/// corrupt gzip stream, a bad entry), so it waits for the download's end, unless the job
/// was cancelled.
async fn streamed_error(
    err: crate::unpack::UnpackError,
    follower: Follower,
    cancel: &CancellationToken,
) -> JobError {
    if cancel.is_cancelled() {
        return JobError::cancelled();
    }
    match cancellable(cancel, follower.outcome()).await {
        Err(verdict) => verdict,
        Ok(_) => err.into(),
    }
}

/// A layer whose inflate has started, and the download it follows, if any.
struct Started {
    inflating: Inflating,
    follower: Option<Follower>,
}

/// Starts inflating `layer` from `blob`. Through the shared cache, a layer's bytes are its
/// digest's whoever reads them (one verified file, or the one download of it): pulls
/// applying it at the same time share its inflate.
async fn start(
    spec: &PullSpec,
    layer: &Descriptor,
    compression: Compression,
    diff_id: &Digest,
    blob: LayerBlob,
    cancel: &CancellationToken,
) -> Result<Started, JobError> {
    let algorithm = diff_id.algorithm();
    let shared = spec.cache == CacheMode::Use;
    Ok(match blob {
        LayerBlob::Ready(blob) => {
            let file = tokio::fs::File::open(blob.path())
                .await
                .map_err(JobError::io(blob.path()))?;
            let inflating = match shared {
                true => inflate_cached_layer(&layer.digest, |_| file, compression, algorithm),
                false => inflate_layer(file, compression, algorithm),
            };
            Started {
                inflating,
                follower: None,
            }
        }
        LayerBlob::Landing(follower) => {
            let inflating = match shared {
                // Stops once no pull reads it.
                true => inflate_cached_layer(
                    &layer.digest,
                    |stop| follower.reader(stop),
                    compression,
                    algorithm,
                ),
                // Stops with this job.
                false => inflate_layer(follower.reader(cancel.clone()), compression, algorithm),
            };
            Started {
                inflating,
                follower: Some(follower),
            }
        }
    })
}

/// Waits for the commits of the streamed layers (already verified) into the cache.
async fn committed(followers: Vec<Follower>) -> Result<(), JobError> {
    for follower in followers {
        follower.outcome().await?;
    }
    Ok(())
}

/// The result's layers, each with the host that served it (or `cache`).
fn result_layers(layers: &[Descriptor], fetcher: &Fetcher) -> Vec<ResultLayer> {
    let sources = fetcher.sources.lock().unwrap_or_else(|e| e.into_inner());
    let with_source = |(i, l): (usize, &Descriptor)| ResultLayer {
        source: sources.get(&i).cloned(),
        ..l.into()
    };
    layers.iter().enumerate().map(with_source).collect()
}

/// The next blob from the downloads, ready or landing, or why there is none.
async fn next_blob(
    blobs: &mut tokio::sync::mpsc::Receiver<Result<LayerBlob, JobError>>,
    cancel: &CancellationToken,
) -> Result<LayerBlob, JobError> {
    let blob = match blobs.recv().await {
        Some(result) => result?,
        None => return Err(JobError::new("internal_error", "layer download stopped")),
    };
    if cancel.is_cancelled() {
        return Err(JobError::cancelled());
    }
    Ok(blob)
}

/// The config's `rootfs.diff_ids`, one per layer: `invalid_config` when they cannot be
/// read, `diff_id_mismatch` when there are not as many as layers.
fn diff_ids(spec: &PullSpec, config: &[u8], layers: usize) -> Result<Vec<Digest>, JobError> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<Digest>,
    }
    let diff_ids = serde_json::from_slice::<Config>(config)
        .map_err(|e| {
            JobError::new(
                "invalid_config",
                format!("{}: image config, rootfs.diff_ids: {e}", spec.reference),
            )
        })?
        .rootfs
        .diff_ids;
    if diff_ids.len() != layers {
        return Err(JobError::new(
            "diff_id_mismatch",
            format!(
                "{}: the image config lists {} diff_ids for {layers} layers",
                spec.reference,
                diff_ids.len()
            ),
        ));
    }
    Ok(diff_ids)
}

/// `(created, created_by)` of each layer, from the config's history entries that are not
/// `empty_layer`.
fn layer_history(config: &[u8]) -> Vec<(Option<String>, Option<String>)> {
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(config) else {
        return Vec::new();
    };
    config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["empty_layer"].as_bool() != Some(true))
        .map(|h| {
            (
                h["created"].as_str().map(str::to_string),
                h["created_by"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The `git` layout's repository, kept beside the staging tree (never inside it, where a
/// layer could plant hooks) until every layer is committed. Recorded as the job's scratch
/// before it is made: when the pull fails, the worker removes it (on the blocking pool,
/// it may hold the whole image) before the job is reported ended.
struct GitDir {
    history: GitHistory,
}

impl GitDir {
    /// `<tree>.git`: beside the tree, on the same file system.
    fn path_beside(tree: &Path) -> PathBuf {
        let mut path = tree.as_os_str().to_owned();
        path.push(".git");
        PathBuf::from(path)
    }

    async fn init(tree: &Path) -> Result<GitDir, JobError> {
        let path = GitDir::path_beside(tree);
        // A leftover of this job's own earlier run (recorded, so ours), as `Staging::create`
        // does for the tree.
        remove_scratch(&path).await?;
        let history = GitHistory::init(tree, &path).await?;
        Ok(GitDir { history })
    }

    async fn commit(&self, layer: LayerCommit<'_>) -> Result<(), JobError> {
        Ok(self.history.commit_layer(layer).await?)
    }

    /// Moves the repository into the tree.
    async fn finish(self) -> Result<(), JobError> {
        Ok(self.history.finish().await?)
    }
}
