//! Manifests and indexes (OCI and Docker schema 2), their media types, and platform selection.

use bytes::Bytes;

use super::{Platform, Reference};
use crate::digest::Digest;

pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
}

/// A layer (or config) as a manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerDescriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// What a manifest document is.
#[derive(Clone, Debug)]
pub enum ManifestKind {
    /// An OCI index or Docker manifest list: (platform, digest, media type, size) per entry.
    Index(Vec<(Option<Platform>, LayerDescriptor)>),
    /// An image manifest: its config and its layers, oldest first.
    Image {
        config: LayerDescriptor,
        layers: Vec<LayerDescriptor>,
    },
}

/// A manifest document as fetched: its exact bytes (verified against `digest`), media type,
/// and parsed form.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub kind: ManifestKind,
}

/// An image resolved down to one platform's manifest.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// The reference as asked for (canonical).
    pub reference: Reference,
    /// The top-level document the tag points at (an index or the manifest itself).
    pub top: FetchedManifest,
    /// The image manifest for the chosen platform (same as `top` when not an index).
    pub manifest: FetchedManifest,
    /// The platforms an index offers (attestation `unknown/unknown` entries skipped);
    /// empty for a single manifest.
    pub platforms: Vec<Platform>,
    /// The chosen platform (from the config for a single manifest).
    pub platform: Platform,
    /// The config blob's bytes, verified.
    pub config: Bytes,
}
