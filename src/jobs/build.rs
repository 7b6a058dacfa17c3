//! The build job: one folder becomes one layer, optionally on top of a base image; the
//! config and manifest are written and everything is pushed with the registry's own
//! protocol (existing blobs skipped, base layers mounted across repositories when the
//! registry allows, uploaded otherwise).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::JobEnv;
use super::cancel::cancellable;
use super::errors::io_error;
use super::fetch::{Fetcher, PrivateDir};
use super::model::{JobError, now_rfc3339};
use super::progress::Tracker;
use super::request::{BuildSpec, epoch_rfc3339};
use crate::digest::Digest;
use crate::image::{LayerOptions, build_config, build_layer, build_manifest};
use crate::oci::Descriptor;
use crate::registry::{Credentials, ManifestKind, Platform, ResolvedImage};

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
) -> Result<Value, JobError> {
    let base_auth = auth.base.clone().or_else(|| auth.target.clone());
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
    let work = PrivateDir::create(&env.config.tmp_dir(), &format!("build-{job_id}")).await?;
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
    .await
    .map_err(|e| JobError::new(e.code(), e.to_string()))?;

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
    let config = Bytes::from(build_config(
        base_config.as_ref(),
        &spec.config,
        &platform,
        &built.diff_id,
        &created,
        "hoist build",
    ));
    let config_desc = Descriptor {
        media_type: spec.format.config_media_type(),
        digest: Digest::sha256_of(&config),
        size: config.len() as u64,
    };
    let mut layers = base_layers.clone();
    layers.push(built.descriptor());
    let (manifest, media_type) = build_manifest(spec.format, &config_desc, &layers);

    tracker.set_phase("pushing");
    let mut blobs = layers.clone();
    blobs.push(config_desc.clone());
    tracker.set_layers(blobs.iter().map(|b| (b.digest.to_string(), b.size)));
    let pusher = Pusher {
        env,
        spec: &spec,
        auth: auth.target.as_ref(),
        tracker,
        cancel,
    };
    for (index, layer) in base_layers.iter().enumerate() {
        let base = base.as_ref().expect("base layers come from a base");
        pusher
            .push_base_layer(index, layer, base, base_auth.as_ref())
            .await?;
    }
    let index = base_layers.len();
    let layer_file = open(&layer_path).await?;
    pusher
        .push_blob(index, &built.descriptor(), layer_file)
        .await?;
    pusher
        .push_blob(
            index + 1,
            &config_desc,
            std::io::Cursor::new(config.clone()),
        )
        .await?;
    pusher.check_cancel()?;
    let digest = cancellable(
        cancel,
        env.registry.put_manifest(
            &spec.target,
            &media_type,
            Bytes::from(manifest.clone()),
            auth.target.as_ref(),
        ),
    )
    .await?;
    Ok(json!({
        "target": spec.target.to_string(),
        "digest": digest,
        "media_type": media_type,
        "platform": platform.to_string(),
        "config_digest": config_desc.digest,
        "layers": layers.iter().map(|l| json!({
            "digest": l.digest,
            "size": l.size,
            "media_type": l.media_type.in_format(spec.format),
        })).collect::<Vec<_>>(),
        "diff_id": built.diff_id,
    }))
}

struct Pusher<'a> {
    env: &'a JobEnv,
    spec: &'a BuildSpec,
    auth: Option<&'a Credentials>,
    tracker: &'a Arc<Tracker>,
    cancel: &'a CancellationToken,
}

impl Pusher<'_> {
    fn check_cancel(&self) -> Result<(), JobError> {
        if self.cancel.is_cancelled() {
            return Err(JobError::new("cancelled", "cancelled"));
        }
        Ok(())
    }

    /// Uploads a blob unless the target already has it.
    async fn push_blob<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        index: usize,
        blob: &Descriptor,
        reader: R,
    ) -> Result<(), JobError> {
        let registry = &self.env.registry;
        self.check_cancel()?;
        if cancellable(
            self.cancel,
            registry.blob_exists(&self.spec.target, &blob.digest, self.auth),
        )
        .await?
        {
            self.tracker.add_bytes(index, blob.size);
            self.tracker.layer_done(index, "exists");
            return Ok(());
        }
        if self.cancel.is_cancelled() {
            return Err(JobError::new("cancelled", "cancelled"));
        }
        self.tracker.layer_state(index, "pushing");
        let counted = Counted {
            inner: reader,
            tracker: self.tracker.clone(),
            index,
        };
        cancellable(
            self.cancel,
            registry.upload_blob(
                &self.spec.target,
                &blob.digest,
                blob.size,
                counted,
                self.auth,
            ),
        )
        .await?;
        self.tracker.layer_done(index, "pushed");
        Ok(())
    }

    /// A base layer: already there, mounted from the base's repository (same registry),
    /// or fetched (through the cache) and uploaded.
    async fn push_base_layer(
        &self,
        index: usize,
        layer: &Descriptor,
        base: &ResolvedImage,
        base_auth: Option<&Credentials>,
    ) -> Result<(), JobError> {
        let registry = &self.env.registry;
        let target = &self.spec.target;
        self.check_cancel()?;
        if cancellable(
            self.cancel,
            registry.blob_exists(target, &layer.digest, self.auth),
        )
        .await?
        {
            self.tracker.add_bytes(index, layer.size);
            self.tracker.layer_done(index, "exists");
            return Ok(());
        }
        let same_registry = base.reference.registry == target.registry;
        if same_registry
            && base.reference.repository != target.repository
            && cancellable(
                self.cancel,
                registry.mount_blob(target, &layer.digest, &base.reference, self.auth),
            )
            .await?
        {
            self.tracker.add_bytes(index, layer.size);
            self.tracker.layer_done(index, "mounted");
            return Ok(());
        }
        // The fetch reports its bytes as it downloads; the upload counts them again.
        let fetcher = Fetcher {
            env: self.env.clone(),
            reference: base.reference.clone(),
            auth: base_auth.cloned(),
            blob_dir: None,
            tracker: Arc::new(Tracker::default()),
            cancel: self.cancel.clone(),
        };
        let blob = fetcher.fetch(index, layer).await?;
        let file = open(blob.path()).await?;
        self.push_blob(index, layer, file).await
    }
}

async fn open(path: &Path) -> Result<tokio::fs::File, JobError> {
    tokio::fs::File::open(path)
        .await
        .map_err(|e| io_error(format!("opening {}", path.display()), e))
}

/// An `AsyncRead` that reports what passes through it as upload progress.
struct Counted<R> {
    inner: R,
    tracker: Arc<Tracker>,
    index: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.tracker.add_bytes(self.index, n);
        }
        poll
    }
}
