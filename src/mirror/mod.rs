//! hoist as a registry: the pull-through mirror behind `GET /v2/`, serving manifests and
//! blobs from the verified cache to any OCI client, for any upstream.
//!
//! A request names an upstream repository and a manifest (tag or digest) or a blob
//! ([`Target`], `name.rs`). Before anything is served, the upstream must have let *this
//! client* read it: a HEAD with the client's own credentials (or none), answered from
//! `access.rs` for a minute after. A tag is resolved upstream on every request (one HEAD;
//! the token of that client is reused) and remembered (`table.rs`), so that while the
//! upstream is unreachable its last digest is served with a warning. Bytes come from the
//! cache; a miss is the cache's single-flight download, streamed to the client as it is
//! hashed and written (`stream.rs`), never completed to the client unless it verified.
//!
//! The registry client given here has no Docker config: the daemon's own credentials are
//! never used for a mirror client. Knows nothing of HTTP (the `api::v2` handlers turn
//! answers and [`MirrorError`]s into distribution responses) or of jobs.

mod access;
mod metrics;
mod name;
mod stream;
mod table;

pub use metrics::UpstreamCounts;
pub use name::{ManifestRef, Target, Want};
pub use stream::BodyStream;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use sqlx::SqlitePool;
use tokio::io::AsyncWriteExt;

use access::{AccessCache, FRESH, Granted, REMEMBERED};
use metrics::MirrorMetrics;

use crate::digest::Digest;
use crate::oci::MediaType;
use crate::registry::{Credentials, Reference, RegistryClient, RegistryError};
use crate::store::{Acquired, Opened, Store, StoreError};

/// Manifests larger than this are not served (the distribution spec lets registries
/// refuse manifests over 4 MiB; hoist's client reads up to 16 MiB).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("invalid repository name {0}")]
    InvalidName(String),
    #[error("unreadable Basic credentials: {0}")]
    Credentials(String),
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("/v2/{0} is not served: hoist's /v2/ serves manifests and blobs, read-only")]
    NotServed(String),
    #[error("range {range:?} is outside the blob's {size} bytes")]
    Range { range: String, size: u64 },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cached manifest {digest}: {source}")]
    Io {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
}

/// The `Warning` text when a tag's answer or an access answer is from memory.
pub const STALE_WARNING: &str = "110 hoist \"upstream unreachable: serving what it last answered\"";

/// A manifest to answer: `bytes` is `None` for a HEAD.
#[derive(Debug)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: MediaType,
    pub size: u64,
    pub bytes: Option<Bytes>,
    /// `Some` when the upstream could not be reached and memory answered.
    pub warning: Option<&'static str>,
}

/// A byte range of a blob as a client asks for it (`Range: bytes=START-END`, `bytes=-N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// From START to END (inclusive), END defaulting to the last byte.
    From { start: u64, end: Option<u64> },
    /// The last N bytes.
    Suffix(u64),
}

impl ByteRange {
    /// `(start, len)` within a blob of `size` bytes, if the range overlaps it.
    fn within(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From { start, end } if start < size => {
                let end = end.unwrap_or(size - 1).min(size - 1);
                (end >= start).then(|| (start, end - start + 1))
            }
            ByteRange::Suffix(n) if n > 0 && size > 0 => {
                let n = n.min(size);
                Some((size - n, n))
            }
            _ => None,
        }
    }
}

/// A blob to answer: `body` is `None` for a HEAD; `range` is `(start, len)` for a 206.
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub range: Option<(u64, u64)>,
    pub body: Option<BodyStream>,
    pub warning: Option<&'static str>,
}

/// Where a blob's bytes come from for one response.
enum Source {
    Cached(crate::store::BlobGuard),
    /// Being downloaded (by this request or another): read as it lands.
    Landing(crate::store::Follower),
}

/// The mirror: cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

struct Inner {
    /// A client without Docker config: a mirror client's credentials, or none.
    registry: RegistryClient,
    store: Store,
    db: SqlitePool,
    access: AccessCache,
    metrics: MirrorMetrics,
    default_upstream: String,
}

/// Whether the upstream could not answer at all (so memory may answer instead).
fn unreachable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { .. } => true,
        RegistryError::Http { status, .. } => *status >= 500,
        _ => false,
    }
}

impl Mirror {
    /// `registry` must be a client without the daemon's Docker config.
    pub fn new(
        registry: RegistryClient,
        store: Store,
        db: SqlitePool,
        default_upstream: String,
    ) -> Mirror {
        Mirror {
            inner: Arc::new(Inner {
                registry,
                store,
                db,
                access: AccessCache::default(),
                metrics: MirrorMetrics::default(),
                default_upstream,
            }),
        }
    }

    /// Parses what follows `/v2/` (with containerd's `ns`) and counts the request.
    pub fn target(&self, path: &str, ns: Option<&str>) -> Result<Target, MirrorError> {
        let target = Target::parse(path, ns, &self.inner.default_upstream)?;
        self.inner.metrics.request(target.upstream());
        Ok(target)
    }

    pub fn metrics(&self) -> Vec<(String, UpstreamCounts)> {
        self.inner.metrics.snapshot()
    }

    /// That the upstream lets this client read `digest` in the repository: a fresh answer
    /// from memory, else a HEAD upstream with the client's credentials (`manifest`: of the
    /// manifest, else of the blob). While the upstream is unreachable, an older yes stands,
    /// with a warning.
    async fn check(
        &self,
        creds: Option<&Credentials>,
        reference: &Reference,
        digest: &Digest,
        manifest: bool,
    ) -> Result<(Granted, Option<&'static str>), MirrorError> {
        let access = &self.inner.access;
        if let Some(g) = access.get(creds, reference, digest, FRESH) {
            return Ok((g, None));
        }
        let asked = if manifest {
            let by_digest = reference.with_digest(digest.clone());
            self.inner
                .registry
                .head_manifest(&by_digest, creds)
                .await
                .map(|(_, media_type, size)| Granted {
                    size,
                    media_type: Some(media_type),
                })
        } else {
            self.inner
                .registry
                .head_blob(reference, digest, creds)
                .await
                .map(|size| Granted {
                    size,
                    media_type: None,
                })
        };
        match asked {
            Ok(g) => {
                access.grant(creds, reference, digest, g.clone());
                Ok((g, None))
            }
            Err(e) if unreachable(&e) => match access.get(creds, reference, digest, REMEMBERED) {
                Some(g) => Ok((g, Some(STALE_WARNING))),
                None => Err(e.into()),
            },
            Err(e) => {
                access.revoke(creds, reference, digest);
                Err(e.into())
            }
        }
    }

    /// The manifest `target` names (a tag resolved upstream now), for GET (`head` false:
    /// with its bytes, exactly the upstream's) or HEAD.
    pub async fn manifest(
        &self,
        target: &Target,
        creds: Option<&Credentials>,
        head: bool,
    ) -> Result<Manifest, MirrorError> {
        let Want::Manifest(want) = &target.want else {
            unreachable!("a manifest target");
        };
        let reference = &target.reference;
        let (digest, granted, warning) = match want {
            ManifestRef::Tag(tag) => self.resolve_tag(reference, tag, creds).await?,
            ManifestRef::Digest(digest) => {
                let (g, w) = self.check(creds, reference, digest, true).await?;
                (digest.clone(), g, w)
            }
        };
        let media_type = granted
            .media_type
            .clone()
            .unwrap_or_else(|| MediaType::from("application/vnd.oci.image.manifest.v1+json"));
        let mut answer = Manifest {
            digest: digest.clone(),
            media_type,
            size: granted.size,
            bytes: None,
            warning,
        };
        if head {
            return Ok(answer);
        }
        if granted.size > MAX_MANIFEST_BYTES {
            return Err(MirrorError::Registry(RegistryError::UnsupportedManifest {
                image: reference.to_string(),
                reason: format!("manifest {digest} is {} bytes", granted.size),
            }));
        }
        let upstream = target.upstream();
        let bytes = match self
            .inner
            .store
            .acquire(&digest, Some(granted.size))
            .await?
        {
            Acquired::Ready(guard) => {
                self.inner.metrics.hit(upstream);
                let bytes =
                    tokio::fs::read(guard.path())
                        .await
                        .map_err(|source| MirrorError::Io {
                            digest: digest.clone(),
                            source,
                        })?;
                Bytes::from(bytes)
            }
            Acquired::Fetch(mut writer) => {
                self.inner.metrics.miss(upstream);
                let by_digest = reference.with_digest(digest.clone());
                // Verified against its digest by the client, and again by the writer.
                let fetched = self.inner.registry.get_manifest(&by_digest, creds).await?;
                writer
                    .write_all(&fetched.bytes)
                    .await
                    .map_err(|source| MirrorError::Io {
                        digest: digest.clone(),
                        source,
                    })?;
                writer.commit().await?;
                answer.media_type = fetched.media_type;
                fetched.bytes
            }
        };
        self.inner.metrics.served(upstream, bytes.len() as u64);
        answer.size = bytes.len() as u64;
        answer.bytes = Some(bytes);
        Ok(answer)
    }

    /// A tag's digest now (HEAD upstream, with this client's credentials), remembered;
    /// when the upstream is unreachable, the last one seen, if this client read it.
    async fn resolve_tag(
        &self,
        reference: &Reference,
        tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<(Digest, Granted, Option<&'static str>), MirrorError> {
        let db = &self.inner.db;
        match self.inner.registry.head_manifest(reference, creds).await {
            Ok((digest, media_type, size)) => {
                let granted = Granted {
                    size,
                    media_type: Some(media_type),
                };
                self.inner
                    .access
                    .grant(creds, reference, &digest, granted.clone());
                if let Err(e) = table::remember_tag(db, reference, tag, &digest).await {
                    tracing::warn!(reference = %reference, error = %e, "could not remember a tag's digest");
                }
                Ok((digest, granted, None))
            }
            Err(e) if unreachable(&e) => {
                let remembered = table::recall_tag(db, reference, tag)
                    .await
                    .map_err(StoreError::Db)?;
                let Some(digest) = remembered else {
                    return Err(e.into());
                };
                let Some(granted) = self.inner.access.get(creds, reference, &digest, REMEMBERED)
                else {
                    return Err(e.into());
                };
                tracing::warn!(reference = %reference, %digest, error = %e, "upstream unreachable: serving the tag's last digest");
                Ok((digest, granted, Some(STALE_WARNING)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The blob `target` names, whole or `range` of it (`head`: its size only). A miss is
    /// downloaded into the cache while the client follows it.
    pub async fn blob(
        &self,
        target: &Target,
        creds: Option<&Credentials>,
        head: bool,
        range: Option<ByteRange>,
    ) -> Result<Blob, MirrorError> {
        let Want::Blob(digest) = &target.want else {
            unreachable!("a blob target");
        };
        let reference = &target.reference;
        let (granted, warning) = self.check(creds, reference, digest, false).await?;
        let size = granted.size;
        let range = match range {
            None => None,
            Some(r) => Some(r.within(size).ok_or_else(|| MirrorError::Range {
                range: format!("{r:?}"),
                size,
            })?),
        };
        let mut blob = Blob {
            digest: digest.clone(),
            size,
            range,
            body: None,
            warning,
        };
        if head {
            return Ok(blob);
        }
        let upstream = target.upstream().to_string();
        let (start, len) = range.unwrap_or((0, size));
        let source = match self
            .inner
            .store
            .acquire_or_follow(digest, Some(size))
            .await?
        {
            Opened::Ready(guard) => {
                self.inner.metrics.hit(&upstream);
                Source::Cached(guard)
            }
            // Another request's download of it: one upstream fetch for both.
            Opened::Follow(follower) => {
                self.inner.metrics.hit(&upstream);
                Source::Landing(follower)
            }
            Opened::Fetch(writer) => {
                self.inner.metrics.miss(&upstream);
                Source::Landing(stream::start_download(
                    self.inner.registry.clone(),
                    reference.clone(),
                    digest.clone(),
                    size,
                    creds.cloned(),
                    writer,
                ))
            }
        };
        let body = match (source, range) {
            (Source::Cached(guard), _) => self.cached(guard, digest, start, len).await?,
            // A part of a blob cannot be checked on its own: it is served once whole.
            (Source::Landing(follower), Some(_)) => {
                let guard = follower.outcome().await?;
                self.cached(guard, digest, start, len).await?
            }
            (Source::Landing(follower), None) => stream::followed(follower),
        };
        let this = self.clone();
        blob.body = Some(Box::pin(body.inspect(move |chunk| {
            if let Ok(c) = chunk {
                this.inner.metrics.served(&upstream, c.len() as u64);
            }
        })));
        Ok(blob)
    }

    async fn cached(
        &self,
        guard: crate::store::BlobGuard,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<BodyStream, MirrorError> {
        stream::cached(guard, start, len)
            .await
            .map_err(|source| MirrorError::Io {
                digest: digest.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges_are_clamped_to_the_blob_or_refused() {
        let from = |start, end| ByteRange::From { start, end };
        assert_eq!(from(0, Some(9)).within(100), Some((0, 10)));
        assert_eq!(from(90, Some(200)).within(100), Some((90, 10)));
        assert_eq!(from(90, None).within(100), Some((90, 10)));
        assert_eq!(from(100, None).within(100), None);
        assert_eq!(ByteRange::Suffix(10).within(100), Some((90, 10)));
        assert_eq!(ByteRange::Suffix(500).within(100), Some((0, 100)));
        assert_eq!(ByteRange::Suffix(0).within(100), None);
        assert_eq!(from(0, None).within(0), None);
    }
}
