//! Manifests and indexes (OCI and Docker schema 2) as fetched, parsed into their descriptors.
//!
//! Parsing is deliberately lenient about fields hoist does not use (annotations,
//! `artifactType`, `os.version`) and strict about what it does use (digests, sizes).
//! Not for: fetching (see the client), choosing a platform (see `select`), the media
//! types themselves (see `crate::oci`) or interpreting layers (see unpack).

use bytes::Bytes;
use serde::Deserialize;

use super::select::{config_platform, platform_not_found};
use super::{Platform, Reference, RegistryError};
use crate::digest::Digest;
use crate::oci::{Descriptor, MediaType};

/// What a manifest document is.
#[derive(Clone, Debug)]
pub enum ManifestKind {
    /// An OCI index or Docker manifest list: (platform, digest, media type, size) per entry.
    Index(Vec<(Option<Platform>, Descriptor)>),
    /// An image manifest: its config and its layers, oldest first.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// A manifest document as fetched: its exact bytes (verified against `digest`), media type,
/// and parsed form.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: MediaType,
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

/// An image resolved down to one platform's manifest, its config not read yet
/// ([`RegistryClient::resolve_manifest`](super::RegistryClient::resolve_manifest)).
#[derive(Clone, Debug)]
pub struct ResolvedManifest {
    pub reference: Reference,
    pub top: FetchedManifest,
    /// An image manifest (never an index), whose config is at most 16 MiB.
    pub manifest: FetchedManifest,
    pub platforms: Vec<Platform>,
    /// The platform picked from an index; `None` for a single manifest.
    pub(super) chosen: Option<Platform>,
    /// The platform asked for, checked against a single manifest's config.
    pub(super) wanted: Option<Platform>,
}

impl ResolvedManifest {
    /// The config's descriptor.
    pub fn config(&self) -> &Descriptor {
        match &self.manifest.kind {
            ManifestKind::Image { config, .. } => config,
            ManifestKind::Index(_) => unreachable!("resolve_manifest returns image manifests"),
        }
    }

    /// The resolved image, with `config`: the config blob's bytes, from wherever they
    /// came; checked against the config's digest here again (a few KiB), then read for
    /// the platform of a single manifest.
    pub fn with_config(self, config: Bytes) -> Result<ResolvedImage, RegistryError> {
        let desc = self.config();
        if !desc.digest.matches(&config) {
            let mut h = desc.digest.hasher();
            h.update(&config);
            return Err(RegistryError::DigestMismatch {
                image: self.reference.to_string(),
                what: "config".to_string(),
                expected: desc.digest.to_string(),
                actual: h.finish().to_string(),
            });
        }
        let platform = match self.chosen {
            Some(p) => p,
            None => {
                let p = config_platform(&self.reference.to_string(), &config)?;
                if let Some(want) = self.wanted.as_ref().filter(|w| w.match_score(&p).is_none()) {
                    return Err(platform_not_found(
                        &self.reference,
                        want,
                        std::slice::from_ref(&p),
                    ));
                }
                p
            }
        };
        Ok(ResolvedImage {
            reference: self.reference,
            top: self.top,
            manifest: self.manifest,
            platforms: self.platforms,
            platform,
            config,
        })
    }
}

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

impl From<RawDescriptor> for Descriptor {
    fn from(d: RawDescriptor) -> Self {
        Descriptor {
            media_type: MediaType::from(d.media_type),
            digest: d.digest,
            size: d.size,
        }
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
        let media_type = MediaType::from_content_type(content_type)
            .or_else(|| doc.media_type.clone().map(MediaType::from))
            .or(match (&doc.manifests, &doc.layers) {
                (Some(_), _) => Some(MediaType::OciIndex),
                (None, Some(_)) => Some(MediaType::OciManifest),
                (None, None) => None,
            })
            .ok_or_else(|| {
                unsupported(format!(
                    "manifest {digest} has no media type and neither `manifests` nor `layers`"
                ))
            })?;

        let kind = if media_type.is_index() {
            let entries = doc.manifests.ok_or_else(|| {
                unsupported(format!("index {digest} ({media_type}) has no `manifests`"))
            })?;
            ManifestKind::Index(
                entries
                    .into_iter()
                    .map(|mut d| (d.platform.take(), d.into()))
                    .collect(),
            )
        } else if media_type.is_manifest() {
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
        } else if media_type.is_schema1() {
            return Err(unsupported(SCHEMA1_HINT.to_string()));
        } else {
            return Err(unsupported(format!(
                "media type {:?} of {digest} is neither an image manifest nor an index",
                media_type.as_str()
            )));
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
    use crate::error::ErrorCode;
    use crate::oci::Compression;

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
            MediaType::OciConfig,
            MediaType::OciLayer(Compression::Gzip)
        )
    }

    pub(in crate::registry) fn index_json() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{m}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{m}","digest":"{D2}","size":2,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{m}","digest":"{D3}","size":3,"platform":{{"os":"unknown","architecture":"unknown"}},
              "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#,
            MediaType::OciIndex,
            m = MediaType::OciManifest
        )
    }

    #[test]
    fn image_manifest_parses_config_and_layers() {
        let m = parse(Some(MediaType::OciManifest.as_str()), &image_json(None)).unwrap();
        assert_eq!(m.media_type, MediaType::OciManifest);
        let ManifestKind::Image { config, layers } = &m.kind else {
            panic!()
        };
        assert_eq!(config.digest.to_string(), D1);
        assert_eq!(config.size, 7);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].media_type, MediaType::OciLayer(Compression::Gzip));
        assert!(!m.is_index());
    }

    #[test]
    fn media_type_from_header_then_document_then_shape() {
        let docker = parse(
            Some(&format!("{}; charset=utf-8", MediaType::DockerManifest)),
            &image_json(None),
        )
        .unwrap();
        assert_eq!(docker.media_type, MediaType::DockerManifest);
        let from_doc = parse(
            Some("application/json"),
            &image_json(Some(MediaType::DockerManifest.as_str())),
        )
        .unwrap();
        assert_eq!(from_doc.media_type, MediaType::DockerManifest);
        let from_shape = parse(None, &image_json(None)).unwrap();
        assert_eq!(from_shape.media_type, MediaType::OciManifest);
        let index_shape =
            index_json().replace(&format!(r#""mediaType":"{}","#, MediaType::OciIndex), "");
        assert_eq!(
            parse(None, &index_shape).unwrap().media_type,
            MediaType::OciIndex
        );
    }

    #[test]
    fn foreign_and_unknown_layer_types_are_kept_as_written() {
        let foreign = MediaType::DockerForeignLayer;
        let odd = format!("{}; x=y", MediaType::DockerLayer(Compression::Gzip));
        let json = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{D1}","size":7}},
            "layers":[{{"mediaType":"{foreign}","digest":"{D2}","size":100,"urls":["https://example.com/l"]}},
            {{"mediaType":"{odd}","digest":"{D3}","size":1}}]}}"#,
            MediaType::DockerConfig
        );
        let m = parse(Some(MediaType::DockerManifest.as_str()), &json).unwrap();
        let ManifestKind::Image { config, layers } = &m.kind else {
            panic!()
        };
        assert_eq!(config.media_type, MediaType::DockerConfig);
        assert_eq!(layers[0].media_type, foreign);
        assert_eq!(layers[1].media_type.as_str(), odd);
        assert_eq!(layers[1].media_type.compression(), Some(Compression::Gzip));
    }

    #[test]
    fn schema1_is_refused_with_a_hint() {
        let signed = r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[],"signatures":[]}"#;
        for ct in [
            Some(MediaType::DockerSchema1Signed.as_str()),
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
            MediaType::OciManifest
        );
        assert!(
            parse(None, &no_config)
                .unwrap_err()
                .to_string()
                .contains("config")
        );
    }
}
