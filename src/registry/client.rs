//! The HTTP side of the distribution protocol: manifests, blobs (with resume), retries.

use std::path::PathBuf;

use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use super::{Credentials, FetchedManifest, Platform, Reference, RegistryError, ResolvedImage};
use crate::digest::Digest;

/// Settings the client needs, taken from the daemon's configuration once.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// `host[:port]` spoken to over plain HTTP, besides localhost and 127.0.0.0/8.
    pub insecure_registries: Vec<String>,
    /// Folder of Docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config_dir: Option<PathBuf>,
}

/// One client for every registry: a shared connection pool and token cache.
/// Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct RegistryClient {}

impl RegistryClient {
    pub fn new(_config: RegistryConfig) -> Result<Self, RegistryError> {
        todo!()
    }

    /// GETs the manifest `reference` names (tag or digest), verifying its digest when the
    /// reference has one. Schema 1 is refused with `unsupported_manifest`.
    pub async fn get_manifest(
        &self,
        _reference: &Reference,
        _creds: Option<&Credentials>,
    ) -> Result<FetchedManifest, RegistryError> {
        todo!()
    }

    /// The digest and media type of what `reference` points at, with a HEAD when the
    /// registry sends `Docker-Content-Digest`, else a GET that is hashed.
    pub async fn head_manifest(
        &self,
        _reference: &Reference,
        _creds: Option<&Credentials>,
    ) -> Result<(Digest, String, u64), RegistryError> {
        todo!()
    }

    /// Resolves `reference` to one platform's image manifest and its config.
    /// `platform` None: the host's platform is picked from an index.
    pub async fn resolve(
        &self,
        _reference: &Reference,
        _platform: Option<&Platform>,
        _creds: Option<&Credentials>,
    ) -> Result<ResolvedImage, RegistryError> {
        todo!()
    }

    /// Streams blob `digest` of `reference`'s repository into `sink`, starting at byte
    /// `offset` (bytes the sink already holds). Resumes with `Range` after a dropped
    /// connection; `progress` is called with each chunk's length. Returns the total size.
    /// Does not verify the digest: the sink (the store's writer) does.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_blob<W: AsyncWrite + Unpin + Send>(
        &self,
        _reference: &Reference,
        _digest: &Digest,
        _expected_size: Option<u64>,
        _creds: Option<&Credentials>,
        _sink: &mut W,
        _offset: u64,
        _progress: &(dyn Fn(u64) + Send + Sync),
        _cancel: &CancellationToken,
    ) -> Result<u64, RegistryError> {
        todo!()
    }
}
