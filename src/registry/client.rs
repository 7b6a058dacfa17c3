//! The distribution API as hoist uses it: manifests (GET, HEAD), resolving a reference to
//! one platform's image, and counters for `/metrics`. Blobs are in `blob`, pushes in `push`.
//!
//! Every request goes through the transport (auth, retries, redirects). Not for: caching
//! blobs (the store) or knowing about jobs.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response};

use super::auth::Scope;
use super::docker_config::{self, DockerConfig};
use super::endpoint::{Endpoint, Need, each_host};
use super::error_map::{Target, error_for};
use super::hosts_config::{HostsDirs, RegistrySettings};
use super::retry::RetryPolicy;
use super::select::platform_not_found;
use super::singleflight::SingleFlight;
use super::tls::TlsPool;
use super::transport::{Body, Request, Transport, read_limited};
use super::{
    Credentials, FetchedManifest, ManifestKind, Platform, Reference, RegistryError, ResolvedImage,
    ResolvedManifest,
};
use crate::digest::Digest;
use crate::oci::MediaType;

/// Manifests larger than this are refused (the distribution spec allows registries 4 MiB).
const MAX_MANIFEST_BYTES: usize = 16 << 20;
/// Image configs larger than this are refused; they are JSON of a few KiB.
pub(super) const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// The `Accept` of every manifest request, built once.
static MANIFEST_ACCEPT: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&MediaType::manifest_accept()).expect("media type names are header-safe")
});
pub(super) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Settings the client needs, taken from the daemon's configuration once.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// `host[:port]` spoken to over plain HTTP, besides localhost and 127.0.0.0/8.
    pub insecure_registries: Vec<String>,
    /// Folder of Docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`).
    /// `None`: no credentials besides those a request brings.
    pub docker_config_dir: Option<PathBuf>,
    /// `HOIST_HOSTS_DIR`: folders of per-registry settings (mirrors, TLS), first match wins.
    pub hosts_dirs: Vec<PathBuf>,
}

impl RegistryConfig {
    /// `$DOCKER_CONFIG`, else `~/.docker` (None without `HOME`).
    pub fn default_docker_config_dir() -> Option<PathBuf> {
        docker_config::default_dir()
    }
}

/// One client for every registry: a shared connection pool and token cache.
/// Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct RegistryClient {
    pub(super) inner: Arc<Transport>,
    digests: Arc<SingleFlight<DigestKey, Result<ImageDigest, RegistryError>>>,
}

/// What [`RegistryClient::digest`] answers.
#[derive(Clone, Debug)]
pub struct ImageDigest {
    /// The digest and media type of what the reference names (an index or an image).
    pub digest: Digest,
    pub media_type: MediaType,
    /// With a platform asked for: the one chosen and its image manifest's digest.
    pub platform: Option<(Platform, Digest)>,
}

/// Two digest questions share one answer only when all of this is the same: callers with
/// other credentials may be allowed to see other things.
#[derive(Clone, PartialEq, Eq, Hash)]
struct DigestKey {
    reference: Reference,
    platform: Option<Platform>,
    /// [`Credentials::identity`], none for the daemon's own (Docker config).
    identity: Option<String>,
}

impl RegistryClient {
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        Self::with_policy(config, RetryPolicy::default())
    }

    pub(super) fn with_policy(
        config: RegistryConfig,
        retry: RetryPolicy,
    ) -> Result<Self, RegistryError> {
        let tls = TlsPool::new().map_err(RegistryError::Protocol)?;
        let docker = DockerConfig::new(config.docker_config_dir);
        Ok(RegistryClient {
            inner: Arc::new(Transport::new(
                tls,
                HostsDirs::new(config.hosts_dirs),
                config.insecure_registries,
                docker,
                retry,
            )),
            digests: Arc::new(SingleFlight::new()),
        })
    }

    /// The daemon's own Docker config, as [`DockerConfig::describe`] says it.
    pub fn docker_config(&self) -> String {
        self.inner.docker.describe()
    }

    /// Registry responses so far by HTTP status, ascending; status 0 counts requests that
    /// got no answer (connection errors, timeouts).
    pub fn request_counts(&self) -> Vec<(u16, u64)> {
        self.inner.counters.by_status()
    }

    /// Registry requests so far by host (`host[:port]` of mirrors, origins, token realms).
    pub fn request_counts_by_host(&self) -> Vec<(String, u64)> {
        self.inner.counters.by_host()
    }

    /// The host settings in force for `reference`'s registry, read from
    /// `HOIST_HOSTS_DIR` now: its hosts in the order they are asked, the origin last.
    pub async fn registry_settings(
        &self,
        reference: &Reference,
    ) -> Result<RegistrySettings, RegistryError> {
        self.inner.settings(reference).await
    }

    /// Blob bytes received from registries so far (manifests not included).
    pub fn bytes_downloaded(&self) -> u64 {
        self.inner.counters.downloaded.load(Ordering::Relaxed)
    }

    /// Blob bytes sent to registries so far.
    pub fn bytes_uploaded(&self) -> u64 {
        self.inner.counters.uploaded.load(Ordering::Relaxed)
    }

    /// A request to `host` for `path` (relative to its API root: `REPO/blobs/DIGEST`).
    pub(super) fn request<'a>(
        &self,
        host: &Arc<Endpoint>,
        method: Method,
        reference: &'a Reference,
        path: &str,
        scopes: Vec<Scope>,
        creds: Option<&'a Credentials>,
    ) -> Result<Request<'a>, RegistryError> {
        Ok(Request {
            method,
            reference,
            host: host.clone(),
            url: host.url(path)?,
            headers: HeaderMap::new(),
            body: Body::Empty,
            scopes,
            creds,
            one_try: false,
        })
    }

    fn manifest_request<'a>(
        &self,
        host: &Arc<Endpoint>,
        method: Method,
        reference: &'a Reference,
        creds: Option<&'a Credentials>,
    ) -> Result<Request<'a>, RegistryError> {
        let path = format!(
            "{}/manifests/{}",
            reference.repository,
            reference.manifest_ref()
        );
        let mut req = self.request(
            host,
            method,
            reference,
            &path,
            vec![Scope::pull(&reference.repository)],
            creds,
        )?;
        req.headers.insert(header::ACCEPT, MANIFEST_ACCEPT.clone());
        Ok(req)
    }

    /// GETs the manifest `reference` names (tag or digest), verifying its digest when the
    /// reference has one. Schema 1 is refused with `unsupported_manifest`. A tag is asked
    /// of the hosts with `resolve`, a digest of those with `pull`, the origin last.
    pub async fn get_manifest(
        &self,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<FetchedManifest, RegistryError> {
        let need = match reference.digest {
            Some(_) => Need::Pull,
            None => Need::Resolve,
        };
        let hosts = self.inner.endpoints(reference).await?.for_need(need);
        each_host(&hosts, reference, "manifest", |host| {
            self.get_manifest_from(host, reference, creds)
        })
        .await
    }

    async fn get_manifest_from(
        &self,
        host: Arc<Endpoint>,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<FetchedManifest, RegistryError> {
        let req = self.manifest_request(&host, Method::GET, reference, creds)?;
        let mut tries = 0;
        let (headers, bytes) = loop {
            let resp = self.inner.send(&req).await?;
            if !resp.status().is_success() {
                return Err(error_for(resp, reference, &req.scopes, Target::Manifest).await);
            }
            let headers = resp.headers().clone();
            match read_limited(resp, MAX_MANIFEST_BYTES, &reference.registry, "manifest").await {
                Ok(bytes) => break (headers, bytes),
                // The body broke off: ask again, like any transient failure.
                Err(RegistryError::Unreachable { .. }) if tries + 1 < self.inner.retry.attempts => {
                    tokio::time::sleep(self.inner.retry.backoff(tries)).await;
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let mismatch = |expected: &Digest, actual: &Digest| RegistryError::DigestMismatch {
            image: reference.to_string(),
            what: "manifest".to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        };
        let header_digest = headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let digest = match (&reference.digest, header_digest) {
            (Some(want), _) => want.clone(),
            (None, Some(said)) => said,
            (None, None) => Digest::sha256_of(&bytes),
        };
        if !digest.matches(&bytes) {
            let mut h = digest.hasher();
            h.update(&bytes);
            return Err(mismatch(&digest, &h.finish()));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        FetchedManifest::parse(&reference.to_string(), digest, content_type, bytes)
    }

    /// The digest and media type of what `reference` points at, with a HEAD when the
    /// registry sends `Docker-Content-Digest`, else a GET that is hashed.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<(Digest, MediaType, u64), RegistryError> {
        let need = match reference.digest {
            Some(_) => Need::Pull,
            None => Need::Resolve,
        };
        let hosts = self.inner.endpoints(reference).await?.for_need(need);
        let found = each_host(&hosts, reference, "manifest", |host| {
            self.head_manifest_from(host, reference, creds)
        })
        .await?;
        if let Some(found) = found {
            return Ok(found);
        }
        let m = self.get_manifest(reference, creds).await?;
        Ok((m.digest, m.media_type, m.bytes.len() as u64))
    }

    /// `None`: the host answered the HEAD without the headers that say it all.
    async fn head_manifest_from(
        &self,
        host: Arc<Endpoint>,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<Option<(Digest, MediaType, u64)>, RegistryError> {
        let req = self.manifest_request(&host, Method::HEAD, reference, creds)?;
        let resp = self.inner.send(&req).await?;
        if resp.status().is_success() {
            if let Some(found) = from_head(&resp) {
                if let Some(want) = reference.digest.as_ref().filter(|w| **w != found.0) {
                    return Err(RegistryError::DigestMismatch {
                        image: reference.to_string(),
                        what: "manifest".to_string(),
                        expected: want.to_string(),
                        actual: found.0.to_string(),
                    });
                }
                return Ok(Some(found));
            }
        } else if resp.status() == reqwest::StatusCode::NOT_FOUND || !host.is_origin() {
            return Err(error_for(resp, reference, &req.scopes, Target::Manifest).await);
        }
        Ok(None)
    }

    /// The digest of what `reference` names and, with `platform`, of that platform's
    /// manifest. Concurrent calls for the same reference, platform and credentials share
    /// one set of registry requests.
    pub async fn digest(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        creds: Option<&Credentials>,
    ) -> Result<ImageDigest, RegistryError> {
        let key = DigestKey {
            reference: reference.clone(),
            platform: platform.cloned(),
            identity: creds.map(Credentials::identity),
        };
        let client = self.clone();
        let (reference, platform, creds) = (reference.clone(), platform.cloned(), creds.cloned());
        self.digests
            .run(key, move || async move {
                client
                    .digest_uncached(&reference, platform.as_ref(), creds.as_ref())
                    .await
            })
            .await
    }

    async fn digest_uncached(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        creds: Option<&Credentials>,
    ) -> Result<ImageDigest, RegistryError> {
        match platform {
            // Resolving reads the top document anyway: no HEAD before it.
            Some(platform) => {
                let image = self.resolve(reference, Some(platform), creds).await?;
                Ok(ImageDigest {
                    digest: image.top.digest,
                    media_type: image.top.media_type,
                    platform: Some((image.platform, image.manifest.digest)),
                })
            }
            None => {
                let (digest, media_type, _size) = self.head_manifest(reference, creds).await?;
                Ok(ImageDigest {
                    digest,
                    media_type,
                    platform: None,
                })
            }
        }
    }

    /// Resolves `reference` to one platform's image manifest and its config.
    /// `platform` None: the host's platform is picked from an index.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        creds: Option<&Credentials>,
    ) -> Result<ResolvedImage, RegistryError> {
        let manifest = self.resolve_manifest(reference, platform, creds).await?;
        let config = self
            .fetch_config(reference, manifest.config(), creds)
            .await?;
        manifest.with_config(config)
    }

    /// The manifest half of [`resolve`](Self::resolve): the documents down to one
    /// platform's image manifest, whose config (at most [`MAX_CONFIG_BYTES`], checked
    /// here) the caller gets where it likes, from [`fetch_config`](Self::fetch_config) or
    /// from a cache, and hands to [`ResolvedManifest::with_config`].
    pub async fn resolve_manifest(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        creds: Option<&Credentials>,
    ) -> Result<ResolvedManifest, RegistryError> {
        let top = self.get_manifest(reference, creds).await?;
        let (manifest, platforms, chosen) = if top.is_index() {
            let platforms = top.kind.platforms();
            // Without an explicit wish, any variant of the host's architecture will do,
            // the default one first.
            let wanted = platform.cloned().unwrap_or_else(|| Platform {
                variant: None,
                ..Platform::host()
            });
            let (chosen, desc) = top.kind.select(&wanted).ok_or_else(|| {
                platform_not_found(reference, platform.unwrap_or(&Platform::host()), &platforms)
            })?;
            let (chosen, digest) = (chosen.clone(), desc.digest.clone());
            let manifest = self
                .get_manifest(&reference.with_digest(digest), creds)
                .await?;
            if manifest.is_index() {
                return Err(RegistryError::UnsupportedManifest {
                    image: reference.to_string(),
                    reason: format!(
                        "index entry {} for {chosen} is itself an index",
                        manifest.digest
                    ),
                });
            }
            (manifest, platforms, Some(chosen))
        } else {
            (top.clone(), Vec::new(), None)
        };
        let ManifestKind::Image { config, .. } = &manifest.kind else {
            unreachable!("checked above: not an index");
        };
        check_config_size(reference, config)?;
        Ok(ResolvedManifest {
            reference: reference.clone(),
            top,
            manifest,
            platforms,
            chosen,
            wanted: platform.cloned(),
        })
    }
}

/// A config over [`MAX_CONFIG_BYTES`] is refused before any byte of it is read.
pub(super) fn check_config_size(
    reference: &Reference,
    desc: &crate::oci::Descriptor,
) -> Result<(), RegistryError> {
    if desc.size > MAX_CONFIG_BYTES {
        return Err(RegistryError::UnsupportedManifest {
            image: reference.to_string(),
            reason: format!(
                "config {} is {} bytes, more than {MAX_CONFIG_BYTES}",
                desc.digest, desc.size
            ),
        });
    }
    Ok(())
}

/// Digest, media type and size from a HEAD answer, when it says all of them specifically.
fn from_head(resp: &Response) -> Option<(Digest, MediaType, u64)> {
    let h = resp.headers();
    let digest = h
        .get(DOCKER_CONTENT_DIGEST)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let content_type = h.get(header::CONTENT_TYPE)?.to_str().ok();
    let media_type = MediaType::from_content_type(content_type)?;
    let size = h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?;
    Some((digest, media_type, size))
}
