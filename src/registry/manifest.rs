//! Manifests and indexes (OCI and Docker schema 2), their media types, and platform selection.
//!
//! Parsing is deliberately lenient about fields hoist does not use (annotations,
//! `artifactType`, `os.version`) and strict about what it does use (digests, sizes).
//! Not for: fetching (see the client) or interpreting layers (see unpack).

use bytes::Bytes;
use serde::Deserialize;

use super::{Platform, Reference, RegistryError};
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

/// The media types hoist asks registries for, best first (schema 1 only to refuse it clearly).
pub(super) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, \
application/vnd.docker.distribution.manifest.v1+json;q=0.1";

const SCHEMA1_HINT: &str = "docker schema 1 manifests are not supported; \
push the image again with a current docker, or convert it with \
`skopeo copy --format v2s2`";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    fs_layers: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: Digest,
    size: u64,
    platform: Option<Platform>,
}

impl From<RawDescriptor> for LayerDescriptor {
    fn from(d: RawDescriptor) -> Self {
        LayerDescriptor {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
        }
    }
}

/// The `Content-Type` without parameters, unless it is a generic type that says nothing.
fn specific_content_type(content_type: Option<&str>) -> Option<String> {
    let ct = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match ct.as_str() {
        "" | "application/json" | "text/plain" | "application/octet-stream" => None,
        _ => Some(ct),
    }
}

impl FetchedManifest {
    /// Parses a manifest document. The media type comes from `content_type` when it is
    /// specific, else from the document's `mediaType`, else from its shape (`manifests`
    /// means an OCI index, `layers` an OCI manifest). `digest` must already be verified.
    pub fn parse(
        image: &str,
        digest: Digest,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<FetchedManifest, RegistryError> {
        let unsupported = |reason: String| RegistryError::UnsupportedManifest {
            image: image.to_string(),
            reason,
        };
        let doc: RawDocument = serde_json::from_slice(&bytes).map_err(|e| {
            unsupported(format!(
                "manifest {digest} is not a valid manifest document: {e}"
            ))
        })?;
        if doc.schema_version == Some(1) || doc.fs_layers.is_some() {
            return Err(unsupported(SCHEMA1_HINT.to_string()));
        }
        let media_type = specific_content_type(content_type)
            .or_else(|| doc.media_type.clone())
            .or_else(|| match (&doc.manifests, &doc.layers) {
                (Some(_), _) => Some(media_types::OCI_INDEX.to_string()),
                (None, Some(_)) => Some(media_types::OCI_MANIFEST.to_string()),
                (None, None) => None,
            })
            .ok_or_else(|| {
                unsupported(format!(
                    "manifest {digest} has no media type and neither `manifests` nor `layers`"
                ))
            })?;

        use media_types::*;
        let kind = match media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let entries = doc.manifests.ok_or_else(|| {
                    unsupported(format!("index {digest} ({media_type}) has no `manifests`"))
                })?;
                ManifestKind::Index(
                    entries
                        .into_iter()
                        .map(|mut d| (d.platform.take(), d.into()))
                        .collect(),
                )
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = doc.config.ok_or_else(|| {
                    unsupported(format!("manifest {digest} ({media_type}) has no `config`"))
                })?;
                ManifestKind::Image {
                    config: config.into(),
                    layers: doc
                        .layers
                        .unwrap_or_default()
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                }
            }
            DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => {
                return Err(unsupported(SCHEMA1_HINT.to_string()));
            }
            other => {
                return Err(unsupported(format!(
                    "media type {other:?} of {digest} is neither an image manifest nor an index"
                )));
            }
        };
        Ok(FetchedManifest {
            digest,
            media_type,
            bytes,
            kind,
        })
    }

    pub fn is_index(&self) -> bool {
        matches!(self.kind, ManifestKind::Index(_))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::registry) const D1: &str =
        "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    pub(in crate::registry) const D2: &str =
        "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    pub(in crate::registry) const D3: &str =
        "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    pub(in crate::registry) fn parse(
        ct: Option<&str>,
        json: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let bytes = Bytes::from(json.to_string());
        let digest = Digest::sha256_of(&bytes);
        FetchedManifest::parse("docker.io/library/x:1", digest, ct, bytes)
    }

    fn image_json(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"{}","digest":"{D1}","size":7}},
            "layers":[{{"mediaType":"{}","digest":"{D2}","size":100}}],"annotations":{{"a":"b"}}}}"#,
            media_types::OCI_CONFIG,
            media_types::OCI_LAYER_GZIP
        )
    }

    pub(in crate::registry) fn index_json() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{m}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{m}","digest":"{D2}","size":2,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{m}","digest":"{D3}","size":3,"platform":{{"os":"unknown","architecture":"unknown"}},
              "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#,
            media_types::OCI_INDEX,
            m = media_types::OCI_MANIFEST
        )
    }

    #[test]
    fn image_manifest_parses_config_and_layers() {
        let m = parse(Some(media_types::OCI_MANIFEST), &image_json(None)).unwrap();
        assert_eq!(m.media_type, media_types::OCI_MANIFEST);
        let ManifestKind::Image { config, layers } = &m.kind else {
            panic!()
        };
        assert_eq!(config.digest.to_string(), D1);
        assert_eq!(config.size, 7);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].media_type, media_types::OCI_LAYER_GZIP);
        assert!(!m.is_index());
    }

    #[test]
    fn media_type_from_header_then_document_then_shape() {
        let docker = parse(
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
            &image_json(None),
        )
        .unwrap();
        assert_eq!(docker.media_type, media_types::DOCKER_MANIFEST);
        let from_doc = parse(
            Some("application/json"),
            &image_json(Some(media_types::DOCKER_MANIFEST)),
        )
        .unwrap();
        assert_eq!(from_doc.media_type, media_types::DOCKER_MANIFEST);
        let from_shape = parse(None, &image_json(None)).unwrap();
        assert_eq!(from_shape.media_type, media_types::OCI_MANIFEST);
        let index_shape =
            index_json().replace(&format!(r#""mediaType":"{}","#, media_types::OCI_INDEX), "");
        assert_eq!(
            parse(None, &index_shape).unwrap().media_type,
            media_types::OCI_INDEX
        );
    }

    #[test]
    fn schema1_is_refused_with_a_hint() {
        let signed = r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[],"signatures":[]}"#;
        for ct in [
            Some(media_types::DOCKER_SCHEMA1_SIGNED),
            None,
            Some("application/json"),
        ] {
            let e = parse(ct, signed).unwrap_err();
            assert_eq!(e.code(), "unsupported_manifest");
            assert!(e.to_string().contains("skopeo copy --format v2s2"), "{e}");
        }
    }

    #[test]
    fn unknown_or_broken_documents_are_unsupported() {
        let e = parse(
            Some("application/vnd.oci.artifact.manifest.v1+json"),
            &image_json(None),
        )
        .unwrap_err();
        assert!(e.to_string().contains("artifact.manifest"), "{e}");
        let e = parse(None, "not json").unwrap_err();
        assert_eq!(e.code(), "unsupported_manifest");
        let e = parse(None, r#"{"schemaVersion":2}"#).unwrap_err();
        assert_eq!(e.code(), "unsupported_manifest");
        let bad_digest = image_json(None).replace(D2, "sha256:abc");
        assert!(parse(None, &bad_digest).is_err());
        let no_config = format!(
            r#"{{"mediaType":"{}","layers":[]}}"#,
            media_types::OCI_MANIFEST
        );
        assert!(
            parse(None, &no_config)
                .unwrap_err()
                .to_string()
                .contains("config")
        );
    }
}
