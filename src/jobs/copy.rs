//! The copy job: an image (all of an index, some of its platforms, or one manifest) from
//! one repository to another, on the same registry or another, byte for byte.
//!
//! Order, and why: every child manifest is pushed *by digest* before anything gets a tag,
//! and the target's tag is PUT last, once every manifest and blob it names is in the
//! target repository. So a failed, cancelled or killed copy leaves the tag as it was
//! (absent, or naming what it named before), never naming a manifest with missing parts;
//! the children it did push are untagged and the registry's to collect. Each manifest's
//! blobs go first through `registry::push_image`: HEAD (skip what the target has), mount
//! within one registry, else the bytes from the source, read through the verified cache
//! (`cache: use`) or streamed straight through, hashed on the way (`cache: bypass`).
//! Referrers (`"referrers": true`) follow the tag, since they refer to what it names.
//!
//! A retag (the target in the source's own repository) is one manifest PUT: every blob and
//! child is there already. Not for: the registry protocol (`registry::copy`, `push*`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::JobEnv;
use super::cancel::cancellable;
use super::copy_source::{Offset, Opener};
use super::model::{BlobCounts, CopyResult, JobError};
use super::progress::Tracker;
use super::request::CopySpec;
use crate::digest::Digest;
use crate::oci::MediaType;
use crate::registry::{
    Credentials, FetchedManifest, ImageToPush, MAX_REFERRERS, ManifestKind, Reference,
    RegistryError, referrer_tags, subset_index,
};

/// Children of an index copied at most (an index with more is refused).
const MAX_CHILDREN: usize = 256;

/// Credentials of a copy: the source's, and the target's.
pub struct CopyAuth {
    pub source: Option<Credentials>,
    pub target: Option<Credentials>,
}

/// What the tag will name once everything else is in.
enum Tagged {
    /// An image manifest, pushed with its blobs.
    Image(FetchedManifest),
    /// An index (the source's, or one made of some of its entries), whose children are
    /// pushed first.
    Index {
        bytes: bytes::Bytes,
        media_type: MediaType,
    },
}

pub async fn run(
    env: &JobEnv,
    spec: CopySpec,
    auth: CopyAuth,
    tracker: &Arc<Tracker>,
    cancel: &CancellationToken,
) -> Result<CopyResult, JobError> {
    let src_auth = auth.source.as_ref();
    // Within one registry, the source's credentials are the target's unless told otherwise.
    let target_auth = auth
        .target
        .clone()
        .or_else(|| (spec.source.registry == spec.target.registry).then(|| auth.source.clone())?);
    let registry = &env.registry;

    tracker.set_phase("resolving");
    let top = cancellable(cancel, registry.get_manifest(&spec.source, src_auth)).await?;
    let (children, tagged) = plan(env, &spec, top, src_auth, cancel).await?;

    let mut copy = Copy {
        env,
        spec: &spec,
        src_auth,
        target_auth: target_auth.as_ref(),
        tracker,
        cancel,
        counts: BlobCounts::default(),
        bytes: 0,
        manifests: 0,
        next_index: 0,
        declared: 0,
    };
    let (digest, media_type) = if spec.is_retag() {
        // Every blob and child is in this repository already: one PUT, no blob traffic.
        tracker.set_phase("tagging");
        let (bytes, media_type) = match tagged {
            Tagged::Image(m) => (m.bytes, m.media_type),
            Tagged::Index { bytes, media_type } => (bytes, media_type),
        };
        let digest = copy.put(&spec.target, &media_type, bytes).await?;
        (digest, media_type)
    } else {
        tracker.set_phase("pushing");
        let images: Vec<&FetchedManifest> = children
            .iter()
            .chain(match &tagged {
                Tagged::Image(m) => Some(m),
                Tagged::Index { .. } => None,
            })
            .collect();
        let blobs: Vec<(String, u64)> = images.iter().flat_map(|m| blobs_of(m)).collect();
        copy.declared = blobs.len();
        tracker.set_layers(blobs);
        for child in &children {
            copy.image(&spec.target.with_digest(child.digest.clone()), child)
                .await?;
        }
        // Only now, with every child in, may the tag name the whole.
        match tagged {
            Tagged::Image(m) => {
                let digest = copy.image(&spec.target, &m).await?;
                (digest, m.media_type)
            }
            Tagged::Index { bytes, media_type } => {
                let digest = copy.put(&spec.target, &media_type, bytes).await?;
                (digest, media_type)
            }
        }
    };
    // A retag's referrers are in its repository already.
    if spec.referrers && !spec.is_retag() {
        tracker.set_phase("referrers");
        let mut subjects: Vec<Digest> = children.iter().map(|c| c.digest.clone()).collect();
        subjects.push(digest.clone());
        copy.referrers(&subjects).await?;
    }
    Ok(CopyResult {
        source: spec.source.to_string(),
        target: spec.target.to_string(),
        digest,
        media_type,
        blobs: copy.counts,
        bytes_copied: copy.bytes,
        manifests: copy.manifests,
    })
}

/// The child manifests to push by digest, and what the tag names in the end.
async fn plan(
    env: &JobEnv,
    spec: &CopySpec,
    top: FetchedManifest,
    auth: Option<&Credentials>,
    cancel: &CancellationToken,
) -> Result<(Vec<FetchedManifest>, Tagged), JobError> {
    let registry = &env.registry;
    let entries = match &top.kind {
        ManifestKind::Image { .. } => {
            // A single manifest: a platform list must name its platform (checked against
            // its config, as a pull does).
            for platform in spec.platforms.iter().flatten() {
                cancellable(cancel, registry.resolve(&spec.source, Some(platform), auth)).await?;
            }
            return Ok((Vec::new(), Tagged::Image(top)));
        }
        // A retag of the whole index needs none of its children: they are there.
        ManifestKind::Index(_) if spec.is_retag() && spec.platforms.is_none() => {
            let (bytes, media_type) = (top.bytes.clone(), top.media_type.clone());
            return Ok((Vec::new(), Tagged::Index { bytes, media_type }));
        }
        ManifestKind::Index(entries) => entries,
    };
    let chosen: Vec<Digest> = match &spec.platforms {
        None => entries.iter().map(|(_, d)| d.digest.clone()).collect(),
        Some(platforms) => {
            let mut chosen = Vec::new();
            for platform in platforms {
                let (_, desc) =
                    top.kind
                        .select(platform)
                        .ok_or_else(|| RegistryError::PlatformNotFound {
                            image: spec.source.to_string(),
                            platform: platform.to_string(),
                            available: top
                                .kind
                                .platforms()
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                        })?;
                if !chosen.contains(&desc.digest) {
                    chosen.push(desc.digest.clone());
                }
            }
            chosen
        }
    };
    if chosen.len() > MAX_CHILDREN {
        return Err(JobError::new(
            "unsupported_manifest",
            format!(
                "index {} has {} entries; at most {MAX_CHILDREN} are copied",
                top.digest,
                chosen.len()
            ),
        ));
    }
    let mut children = Vec::with_capacity(chosen.len());
    for digest in &chosen {
        let child = cancellable(
            cancel,
            registry.get_manifest(&spec.source.with_digest(digest.clone()), auth),
        )
        .await?;
        if child.is_index() {
            return Err(JobError::new(
                "unsupported_manifest",
                format!(
                    "index {} names {digest}, itself an index; nested indexes are not copied",
                    top.digest
                ),
            ));
        }
        children.push(child);
    }
    let tagged = match &spec.platforms {
        // The whole index, byte for byte: the target's digest is the source's.
        None => Tagged::Index {
            bytes: top.bytes.clone(),
            media_type: top.media_type.clone(),
        },
        // One platform: its manifest, unchanged.
        Some(_) if children.len() == 1 => {
            return Ok((Vec::new(), Tagged::Image(children.remove(0))));
        }
        Some(_) => Tagged::Index {
            bytes: subset_index(&top, &chosen)?,
            media_type: top.media_type.clone(),
        },
    };
    Ok((children, tagged))
}

/// `(digest, size)` of a manifest's blobs, in push order (layers, then config).
fn blobs_of(m: &FetchedManifest) -> Vec<(String, u64)> {
    match &m.kind {
        ManifestKind::Image { config, layers } => layers
            .iter()
            .chain(std::iter::once(config))
            .map(|d| (d.digest.to_string(), d.size))
            .collect(),
        ManifestKind::Index(_) => Vec::new(),
    }
}

/// One copy under way, and what it did so far.
struct Copy<'a> {
    env: &'a JobEnv,
    spec: &'a CopySpec,
    src_auth: Option<&'a Credentials>,
    target_auth: Option<&'a Credentials>,
    tracker: &'a Arc<Tracker>,
    cancel: &'a CancellationToken,
    counts: BlobCounts,
    bytes: u64,
    manifests: u64,
    /// The tracker's index of the next manifest's first blob.
    next_index: usize,
    /// Blobs the tracker lists so far (those of a referrer are added as it comes).
    declared: usize,
}

impl Copy<'_> {
    /// An image manifest with its blobs to `target` (a digest, or the tag last of all).
    async fn image(&mut self, target: &Reference, m: &FetchedManifest) -> Result<Digest, JobError> {
        let image = ImageToPush::from_fetched(m, &self.spec.source)?;
        if self.next_index >= self.declared {
            let blobs = blobs_of(m);
            self.declared += blobs.len();
            self.tracker.append_layers(blobs);
        }
        let progress = Arc::new(Offset {
            tracker: self.tracker.clone(),
            base: self.next_index,
        });
        self.next_index += image.blobs().count();
        let opener = Opener {
            env: self.env,
            auth: self.src_auth,
            cache: self.spec.cache,
            tracker: progress.clone(),
            cancel: self.cancel,
            stream_failure: Arc::default(),
        };
        let pushed = self
            .env
            .registry
            .push_image(
                target,
                &image,
                self.target_auth,
                &opener,
                &progress,
                self.cancel,
            )
            .await;
        let report = match pushed {
            Ok(report) => report,
            // A streamed blob's download failed (or its bytes did not hash to its
            // digest): that, not the upload it broke off, is what went wrong.
            Err(e) => return Err(opener.take_stream_failure().map_or(e, JobError::from)),
        };
        self.counts.copied += report.uploaded as u64;
        self.counts.mounted += report.mounted as u64;
        self.counts.skipped += report.skipped as u64;
        self.bytes += report.bytes_uploaded;
        self.manifests += 1;
        Ok(report.digest)
    }

    /// A manifest whose parts are all in the target already, PUT under `target`.
    async fn put(
        &mut self,
        target: &Reference,
        media_type: &MediaType,
        bytes: bytes::Bytes,
    ) -> Result<Digest, JobError> {
        let digest = cancellable(
            self.cancel,
            self.env
                .registry
                .put_manifest(target, media_type, bytes, self.target_auth),
        )
        .await?;
        self.manifests += 1;
        Ok(digest)
    }

    /// The referrers of `subjects` in the source: those its referrers API lists (pushed by
    /// digest), else those the tag schema names (`sha256-<hex>`, cosign's `.sig`, `.att`,
    /// `.sbom`), pushed and then tagged alike on the target.
    async fn referrers(&mut self, subjects: &[Digest]) -> Result<(), JobError> {
        let registry = &self.env.registry;
        let source = &self.spec.source;
        let mut source_tags: Option<Vec<String>> = None;
        for subject in subjects {
            let api = cancellable(
                self.cancel,
                registry.referrers_api(source, subject, self.src_auth),
            )
            .await?;
            let found: Vec<(Reference, Option<String>)> = match api {
                Some(digests) => digests
                    .into_iter()
                    .map(|d| (source.with_digest(d), None))
                    .collect(),
                None => {
                    if source_tags.is_none() {
                        let list = cancellable(
                            self.cancel,
                            registry.list_tags(source, None, None, self.src_auth),
                        )
                        .await?;
                        source_tags = Some(list.tags);
                    }
                    referrer_tags(subject, source_tags.as_deref().unwrap_or_default())
                        .into_iter()
                        .map(|tag| {
                            let r = Reference {
                                tag: Some(tag.clone()),
                                digest: None,
                                ..source.clone()
                            };
                            (r, Some(tag))
                        })
                        .collect()
                }
            };
            for (from, tag) in found.into_iter().take(MAX_REFERRERS) {
                let m =
                    cancellable(self.cancel, registry.get_manifest(&from, self.src_auth)).await?;
                self.manifest_tree(&m).await?;
                if let Some(tag) = tag {
                    let target = Reference {
                        tag: Some(tag),
                        digest: None,
                        ..self.spec.target.clone()
                    };
                    self.put(&target, &m.media_type, m.bytes.clone()).await?;
                }
            }
        }
        Ok(())
    }

    /// A manifest by digest, with its parts: an image with its blobs, an index with its
    /// (image) children first.
    async fn manifest_tree(&mut self, m: &FetchedManifest) -> Result<(), JobError> {
        let target = self.spec.target.with_digest(m.digest.clone());
        let ManifestKind::Index(entries) = &m.kind else {
            self.image(&target, m).await?;
            return Ok(());
        };
        for (_, desc) in entries.iter().take(MAX_CHILDREN) {
            let child = cancellable(
                self.cancel,
                self.env.registry.get_manifest(
                    &self.spec.source.with_digest(desc.digest.clone()),
                    self.src_auth,
                ),
            )
            .await?;
            if !child.is_index() {
                self.image(&self.spec.target.with_digest(child.digest.clone()), &child)
                    .await?;
            }
        }
        self.put(&target, &m.media_type, m.bytes.clone()).await?;
        Ok(())
    }
}
