//! The build job, in two parts: first the image is made as a value (one folder becomes
//! one layer, optionally on top of a base image; `image::assemble` adds the config and
//! manifest and says where each blob's bytes are), then `registry::push_image` pushes it
//! (existing blobs skipped, base layers mounted across repositories when the registry
//! allows, uploaded otherwise; the manifest last). This file adds only what is a job's:
//! phases and progress names, and reading a base layer through the verified cache.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::JobEnv;
use super::cancel::cancellable;
use super::fetch::{Fetcher, private_dir};
use super::model::{BuildResult, JobError, now_rfc3339};
use super::progress::Tracker;
use super::request::{BuildSpec, epoch_rfc3339};
use crate::error::FromIo;
use crate::image::{BaseImage, ImageParts, LayerOptions, assemble, build_layer};
use crate::oci::Descriptor;
use crate::registry::{
    BlobPushed, BlobReader, BlobSource, Credentials, ManifestKind, OpenBlob, Platform, PushBlob,
    PushProgress, Reference,
};
use crate::store::BlobGuard;

/// Credentials of a build: for the target, and for the base when it differs.
pub struct BuildAuth {
    pub target: Option<Credentials>,
    pub base: Option<Credentials>,
}

pub async fn run(
    env: &JobEnv,
    job_id: &str,
    spec: BuildSpec,
    auth: BuildAuth,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> Result<BuildResult, JobError> {
    // The target's credentials serve the base only on the target's own registry: they never
    // go to another one.
    let same_registry = spec
        .base
        .as_ref()
        .is_some_and(|b| b.registry == spec.target.registry);
    let base_auth = auth
        .base
        .clone()
        .or_else(|| auth.target.clone().filter(|_| same_registry));
    tracker.set_phase("resolving");
    let base = match &spec.base {
        Some(reference) => Some(
            cancellable(
                cancel,
                env.registry
                    .resolve(reference, spec.platform.as_ref(), base_auth.as_ref()),
            )
            .await?,
        ),
        None => None,
    };
    let platform = spec
        .platform
        .clone()
        .or_else(|| base.as_ref().map(|b| b.platform.clone()))
        .unwrap_or_else(Platform::host);
    let base_layers: Vec<Descriptor> = match base.as_ref().map(|b| &b.manifest.kind) {
        Some(ManifestKind::Image { layers, .. }) => layers.clone(),
        Some(ManifestKind::Index(_)) => {
            return Err(JobError::new(
                "unsupported_manifest",
                "the base resolved to an index, not an image",
            ));
        }
        None => Vec::new(),
    };

    tracker.set_phase("building");
    let work = private_dir(&env.config.tmp_dir(), &format!("build-{job_id}")).await?;
    let layer_path = work.path().join("layer");
    let built = build_layer(
        &spec.source,
        &layer_path,
        &LayerOptions {
            format: spec.format,
            compression: spec.compression.into(),
            keep_owners: spec.keep_owners,
            source_date_epoch: spec.source_date_epoch,
        },
        cancel,
    )
    .await?;

    let created = match spec.source_date_epoch {
        Some(epoch) => epoch_rfc3339(epoch).ok_or_else(|| {
            JobError::new(
                "invalid_request",
                format!("source_date_epoch {epoch} is out of range"),
            )
        })?,
        None => now_rfc3339(),
    };
    let base_config: Option<Value> = base
        .as_ref()
        .map(|b| serde_json::from_slice(&b.config))
        .transpose()
        .map_err(|e| JobError::new("invalid_config", format!("base image config: {e}")))?;
    let image = assemble(&ImageParts {
        format: spec.format,
        base: base
            .as_ref()
            .zip(base_config.as_ref())
            .map(|(b, config)| BaseImage {
                reference: &b.reference,
                layers: &base_layers,
                config,
            }),
        layer: &built,
        layer_file: &layer_path,
        overrides: &spec.config,
        platform: &platform,
        created: &created,
        created_by: "hoist build",
    });

    tracker.set_phase("pushing");
    tracker.set_layers(
        image
            .blobs()
            .map(|b| (b.descriptor.digest.to_string(), b.descriptor.size)),
    );
    let opener = Opener {
        env,
        base_auth: base_auth.as_ref(),
        cancel,
    };
    let pushed = env
        .registry
        .push_image(
            &spec.target,
            &image,
            auth.target.as_ref(),
            &opener,
            tracker,
            cancel,
        )
        .await;
    // The built layer is pushed (or the push failed): its folder goes now, awaited.
    work.remove().await;
    let pushed = pushed?;
    Ok(BuildResult {
        target: spec.target.to_string(),
        digest: pushed.digest,
        media_type: image.media_type.clone(),
        platform: platform.to_string(),
        config_digest: image.config.descriptor.digest.clone(),
        layers: image
            .layers
            .iter()
            .map(|b| (&b.descriptor).into())
            .collect(),
        diff_id: built.diff_id,
    })
}

/// The build's progress names for how each blob got into the target (the API's
/// `layers[].state`).
impl PushProgress for Tracker {
    fn bytes(&self, index: usize, n: u64) {
        self.add_bytes(index, n);
    }
    fn uploading(&self, index: usize) {
        self.layer_state(index, "pushing");
    }
    fn done(&self, index: usize, how: BlobPushed) {
        let state = match how {
            BlobPushed::Skipped => "exists",
            BlobPushed::Mounted => "mounted",
            BlobPushed::Uploaded => "pushed",
        };
        self.layer_done(index, state);
    }
}

/// Opens the bytes of a build's blobs that the target lacks: the built layer's file, the
/// config from memory, and a base layer fetched (verified, through the cache) from the
/// base's repository with the base's credentials.
struct Opener<'a> {
    env: &'a JobEnv,
    base_auth: Option<&'a Credentials>,
    cancel: &'a CancellationToken,
}

impl OpenBlob for Opener<'_> {
    type Error = JobError;

    async fn open(&self, index: usize, blob: &PushBlob) -> Result<BlobReader, JobError> {
        match &blob.source {
            BlobSource::Bytes(bytes) => Ok(Box::new(std::io::Cursor::new(bytes.clone()))),
            BlobSource::File(path) => Ok(Box::new(open(path).await?)),
            BlobSource::Repository(from) => {
                let pinned = Pinned::fetch(
                    self.env,
                    from,
                    self.base_auth,
                    self.cancel,
                    index,
                    &blob.descriptor,
                )
                .await?;
                Ok(Box::new(pinned))
            }
        }
    }
}

pub(super) async fn open(path: &Path) -> Result<tokio::fs::File, JobError> {
    tokio::fs::File::open(path)
        .await
        .map_err(JobError::io(path))
}

/// A cached blob's file, read while its pin keeps it from eviction and purge.
pub(super) struct Pinned {
    pub(super) file: tokio::fs::File,
    pub(super) _pin: BlobGuard,
}

impl Pinned {
    /// Blob `desc` of `from` through the cache (fetched into it unless there), pinned. The
    /// fetch's own progress is not a push's: the upload counts the bytes.
    pub(super) async fn fetch(
        env: &JobEnv,
        from: &Reference,
        auth: Option<&Credentials>,
        cancel: &CancellationToken,
        index: usize,
        desc: &Descriptor,
    ) -> Result<Pinned, JobError> {
        let fetcher = Fetcher {
            env: env.clone(),
            reference: from.clone(),
            auth: auth.cloned(),
            blob_dir: None,
            tracker: Arc::new(Tracker::default()),
            cancel: cancel.clone(),
            sources: Default::default(),
        };
        let cached = fetcher.fetch(index, desc).await?;
        let file = open(cached.path()).await?;
        Ok(Pinned { file, _pin: cached })
    }
}

impl AsyncRead for Pinned {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}
