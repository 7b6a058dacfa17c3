//! The OCI vocabulary every room speaks: media types, descriptors, layer compression and
//! the two families of names an image is written in (OCI and Docker schema 2).
//!
//! Words used throughout hoist: a *descriptor* names content by media type, digest and
//! size; a *manifest* lists one image's config and layers; an *index* (Docker: manifest
//! list) lists manifests, one per platform; a layer's *digest* is that of the blob as
//! stored (compressed), its *diff_id* that of the uncompressed tar.
//!
//! This is the only place that spells a media type: elsewhere, a media type is a
//! [`MediaType`], parsed once where it enters (a manifest, a `Content-Type` header).
//! Not for: parsing or writing whole documents (`registry` parses manifests, `image`
//! writes them) or anything that does I/O.

mod media_type;

pub use media_type::MediaType;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A content descriptor as a manifest names its config and layers and an index its
/// manifests (image-spec, [descriptor.md](https://github.com/opencontainers/image-spec/blob/v1.1.0/descriptor.md)):
/// the three fields hoist uses. Serialized (in API answers) with snake_case names; the
/// documents hoist writes spell their own camelCase form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
}

/// How a layer blob is compressed (image-spec,
/// [layer.md](https://github.com/opencontainers/image-spec/blob/v1.1.0/layer.md#gzip-media-types)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a blob's first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`, else none). A layer is
    /// decompressed by what its bytes say, not by what its media type claims: registries
    /// and tools sometimes label a plain tar as gzip (containerd decides the same way).
    pub fn sniff(first_bytes: &[u8]) -> Compression {
        if first_bytes.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Which family of media types an image is written in: OCI (image-spec,
/// [manifest.md](https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md)) or
/// Docker schema 2 ([manifest-v2-2.md](https://github.com/distribution/distribution/blob/v2.8.3/docs/spec/manifest-v2-2.md)).
/// Requests name it in lower case (`"oci"`, `"docker"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Oci,
    Docker,
}

impl Format {
    pub fn manifest_media_type(self) -> MediaType {
        match self {
            Format::Oci => MediaType::OciManifest,
            Format::Docker => MediaType::DockerManifest,
        }
    }

    pub fn config_media_type(self) -> MediaType {
        match self {
            Format::Oci => MediaType::OciConfig,
            Format::Docker => MediaType::DockerConfig,
        }
    }

    /// The (distributable) layer type of `compression` in this family's names.
    pub fn layer_media_type(self, compression: Compression) -> MediaType {
        match self {
            Format::Oci => MediaType::OciLayer(compression),
            Format::Docker => MediaType::DockerLayer(compression),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_deserializes_lowercase() {
        let f: Vec<Format> = serde_json::from_str(r#"["oci","docker"]"#).unwrap();
        assert_eq!(f, [Format::Oci, Format::Docker]);
        assert!(serde_json::from_str::<Format>(r#""OCI""#).is_err());
    }

    #[test]
    fn format_names_its_documents_and_layers() {
        assert_eq!(
            Format::Oci.manifest_media_type().as_str(),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            Format::Docker.config_media_type().as_str(),
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(
            Format::Docker.layer_media_type(Compression::Zstd).as_str(),
            "application/vnd.docker.image.rootfs.diff.tar.zstd"
        );
        assert_eq!(
            Format::Oci.layer_media_type(Compression::None).as_str(),
            "application/vnd.oci.image.layer.v1.tar"
        );
    }

    #[test]
    fn descriptor_serializes_snake_case_with_the_media_type_as_a_string() {
        let d = Descriptor {
            media_type: MediaType::from("application/vnd.example+json"),
            digest: Digest::sha256_of(b""),
            size: 0,
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            format!(
                r#"{{"media_type":"application/vnd.example+json","digest":"{}","size":0}}"#,
                d.digest
            )
        );
    }

    #[test]
    fn sniff_recognises_magic_bytes() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/passwd"), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }
}
