//! [`MediaType`]: every media type hoist reads or writes, by name, and what it says
//! (a layer and its compression, an image manifest, an index).

use std::borrow::Cow;
use std::fmt;

use super::{Compression, Format};

/// A media type as a descriptor, a document's `mediaType` or a `Content-Type` names it
/// (image-spec, [media-types.md](https://github.com/opencontainers/image-spec/blob/v1.1.0/media-types.md);
/// Docker's in [manifest-v2-2.md](https://github.com/distribution/distribution/blob/v2.8.3/docs/spec/manifest-v2-2.md#media-types)).
///
/// A known arm stands for exactly its name; anything else is [`MediaType::Other`] and keeps
/// its string byte for byte (artifact types, attestations, a spelling with parameters), so
/// that a document hoist copies names what its source named. Layer types are also
/// recognised by their essence (parameters and case ignored), since layers are unpacked by
/// what their bytes are anyway; manifest and index types must match exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.config.v1+json`
    OciConfig,
    /// `application/vnd.oci.image.layer.v1.tar`, `+gzip`, `+zstd`
    OciLayer(Compression),
    /// `application/vnd.oci.image.layer.nondistributable.v1.tar`, `+gzip`, `+zstd`
    OciNondistributableLayer(Compression),
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.container.image.v1+json`
    DockerConfig,
    /// `application/vnd.docker.image.rootfs.diff.tar`, `.gzip`, `.zstd`
    DockerLayer(Compression),
    /// `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`
    DockerForeignLayer,
    /// `application/vnd.docker.distribution.manifest.v1+json` (schema 1: refused)
    DockerSchema1,
    /// `application/vnd.docker.distribution.manifest.v1+prettyjws` (schema 1: refused)
    DockerSchema1Signed,
    /// Any other name, as it was written.
    Other(OtherMediaType),
}

/// The name of a media type hoist has no arm for; never one of the known names (it is
/// only made by parsing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OtherMediaType(String);

impl OtherMediaType {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every known arm, for parsing by name.
const KNOWN: [MediaType; 18] = [
    MediaType::OciIndex,
    MediaType::OciManifest,
    MediaType::OciConfig,
    MediaType::OciLayer(Compression::None),
    MediaType::OciLayer(Compression::Gzip),
    MediaType::OciLayer(Compression::Zstd),
    MediaType::OciNondistributableLayer(Compression::None),
    MediaType::OciNondistributableLayer(Compression::Gzip),
    MediaType::OciNondistributableLayer(Compression::Zstd),
    MediaType::DockerManifestList,
    MediaType::DockerManifest,
    MediaType::DockerConfig,
    MediaType::DockerLayer(Compression::None),
    MediaType::DockerLayer(Compression::Gzip),
    MediaType::DockerLayer(Compression::Zstd),
    MediaType::DockerForeignLayer,
    MediaType::DockerSchema1,
    MediaType::DockerSchema1Signed,
];

/// What hoist GETs manifests with, best first (distribution-spec,
/// [pulling manifests](https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#pulling-manifests)):
/// schema 1 last, only so that it can be refused with a hint rather than not found.
const MANIFEST_ACCEPT: [(MediaType, &str); 6] = [
    (MediaType::OciIndex, ""),
    (MediaType::OciManifest, ""),
    (MediaType::DockerManifestList, ""),
    (MediaType::DockerManifest, ""),
    (MediaType::DockerSchema1Signed, ";q=0.1"),
    (MediaType::DockerSchema1, ";q=0.1"),
];

/// `Content-Type` values that say nothing about which document a body is.
const GENERIC_CONTENT_TYPES: [&str; 4] = [
    "",
    "application/json",
    "text/plain",
    "application/octet-stream",
];

impl MediaType {
    /// The name, as written on the wire.
    pub fn as_str(&self) -> &str {
        use Compression as C;
        match self {
            MediaType::OciIndex => "application/vnd.oci.image.index.v1+json",
            MediaType::OciManifest => "application/vnd.oci.image.manifest.v1+json",
            MediaType::OciConfig => "application/vnd.oci.image.config.v1+json",
            MediaType::OciLayer(C::None) => "application/vnd.oci.image.layer.v1.tar",
            MediaType::OciLayer(C::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            MediaType::OciLayer(C::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            MediaType::OciNondistributableLayer(C::None) => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar"
            }
            MediaType::OciNondistributableLayer(C::Gzip) => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            }
            MediaType::OciNondistributableLayer(C::Zstd) => {
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            }
            MediaType::DockerManifestList => {
                "application/vnd.docker.distribution.manifest.list.v2+json"
            }
            MediaType::DockerManifest => "application/vnd.docker.distribution.manifest.v2+json",
            MediaType::DockerConfig => "application/vnd.docker.container.image.v1+json",
            MediaType::DockerLayer(C::None) => "application/vnd.docker.image.rootfs.diff.tar",
            MediaType::DockerLayer(C::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            MediaType::DockerLayer(C::Zstd) => "application/vnd.docker.image.rootfs.diff.tar.zstd",
            MediaType::DockerForeignLayer => {
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            }
            MediaType::DockerSchema1 => "application/vnd.docker.distribution.manifest.v1+json",
            MediaType::DockerSchema1Signed => {
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            }
            MediaType::Other(other) => other.as_str(),
        }
    }

    /// The media type a `Content-Type` header names (parameters dropped, lower case), or
    /// `None` when it is absent or generic (`application/json` and the like) and so says
    /// nothing.
    pub fn from_content_type(value: Option<&str>) -> Option<MediaType> {
        let essence = essence(value?);
        if GENERIC_CONTENT_TYPES.contains(&essence.as_str()) {
            return None;
        }
        Some(MediaType::from(essence))
    }

    /// The `Accept` header value for manifest GETs and HEADs.
    pub fn manifest_accept() -> String {
        MANIFEST_ACCEPT
            .iter()
            .map(|(media_type, params)| format!("{media_type}{params}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// An OCI index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// An image manifest (OCI or Docker schema 2), not an index.
    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    /// A Docker schema 1 manifest, signed or not.
    pub fn is_schema1(&self) -> bool {
        matches!(
            self,
            MediaType::DockerSchema1 | MediaType::DockerSchema1Signed
        )
    }

    /// The compression a layer type declares (OCI or Docker, distributable or not); `None`
    /// for a type that is not a tar layer.
    pub fn compression(&self) -> Option<Compression> {
        match &*self.recognised() {
            MediaType::OciLayer(c)
            | MediaType::OciNondistributableLayer(c)
            | MediaType::DockerLayer(c) => Some(*c),
            MediaType::DockerForeignLayer => Some(Compression::Gzip),
            _ => None,
        }
    }

    /// A (base image's) layer type in `format`'s names, same compression. Foreign (Docker)
    /// and non-distributable (OCI) layers map onto each other; Docker has no foreign type
    /// for plain or zstd layers, so those are kept, as is a type that is not a layer.
    pub fn in_format(&self, format: Format) -> MediaType {
        let known = self.recognised();
        let Some(compression) = known.compression() else {
            return self.clone();
        };
        let restricted = matches!(
            *known,
            MediaType::OciNondistributableLayer(_) | MediaType::DockerForeignLayer
        );
        match (format, restricted, compression) {
            (Format::Oci, true, c) => MediaType::OciNondistributableLayer(c),
            (Format::Docker, true, Compression::Gzip) => MediaType::DockerForeignLayer,
            (Format::Docker, true, _) => self.clone(),
            (f, false, c) => f.layer_media_type(c),
        }
    }

    /// The known arm an `Other` spelling's essence names, else `self`.
    fn recognised(&self) -> Cow<'_, MediaType> {
        match self {
            MediaType::Other(other) => match known(&essence(other.as_str())) {
                Some(known) => Cow::Owned(known),
                None => Cow::Borrowed(self),
            },
            _ => Cow::Borrowed(self),
        }
    }
}

/// A media type without its parameters, trimmed, in lower case.
fn essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn known(name: &str) -> Option<MediaType> {
    KNOWN.iter().find(|m| m.as_str() == name).cloned()
}

impl From<&str> for MediaType {
    fn from(name: &str) -> MediaType {
        known(name).unwrap_or_else(|| MediaType::Other(OtherMediaType(name.to_string())))
    }
}

impl From<String> for MediaType {
    fn from(name: String) -> MediaType {
        known(&name).unwrap_or(MediaType::Other(OtherMediaType(name)))
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(MediaType::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_parses_back_to_its_arm() {
        for m in KNOWN {
            assert_eq!(MediaType::from(m.as_str()), m, "{m}");
            assert_eq!(MediaType::from(m.to_string()), m, "{m}");
        }
        let names: std::collections::HashSet<_> = KNOWN.iter().map(MediaType::as_str).collect();
        assert_eq!(names.len(), KNOWN.len());
    }

    #[test]
    fn unknown_names_survive_round_trips_byte_for_byte() {
        for name in [
            "application/vnd.in-toto+json",
            "application/vnd.oci.artifact.manifest.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip; foo=bar",
            "Application/Vnd.Oci.Image.Manifest.v1+json",
            "",
        ] {
            let m = MediaType::from(name);
            assert!(matches!(m, MediaType::Other(_)), "{name}");
            assert_eq!(m.as_str(), name);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, serde_json::to_string(name).unwrap());
            assert_eq!(serde_json::from_str::<MediaType>(&json).unwrap(), m);
        }
    }

    #[test]
    fn layer_types_map_to_compressions() {
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Some(Compression::None),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Some(Compression::Zstd),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                Some(Compression::Zstd),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "Application/Vnd.Oci.Image.Layer.v1.Tar+Zstd ; x=y",
                Some(Compression::Zstd),
            ),
            ("application/vnd.oci.image.config.v1+json", None),
            ("application/vnd.in-toto+json", None),
        ];
        for (media_type, want) in cases {
            assert_eq!(
                MediaType::from(media_type).compression(),
                want,
                "{media_type}"
            );
        }
    }

    #[test]
    fn manifest_and_index_types_match_exactly() {
        assert!(MediaType::OciIndex.is_index() && MediaType::DockerManifestList.is_index());
        assert!(MediaType::OciManifest.is_manifest() && MediaType::DockerManifest.is_manifest());
        assert!(!MediaType::OciIndex.is_manifest() && !MediaType::OciManifest.is_index());
        assert!(MediaType::DockerSchema1Signed.is_schema1());
        let spelled = MediaType::from("application/vnd.oci.image.manifest.v1+json; x=y");
        assert!(!spelled.is_manifest() && !spelled.is_index());
    }

    #[test]
    fn content_type_drops_parameters_and_says_nothing_when_generic() {
        assert_eq!(
            MediaType::from_content_type(Some(
                "Application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"
            )),
            Some(MediaType::DockerManifest)
        );
        for generic in ["application/json", "text/plain; charset=utf-8", " ", ""] {
            assert_eq!(
                MediaType::from_content_type(Some(generic)),
                None,
                "{generic}"
            );
        }
        assert_eq!(MediaType::from_content_type(None), None);
        assert_eq!(
            MediaType::from_content_type(Some("application/vnd.oci.artifact.manifest.v1+json")),
            Some(MediaType::from(
                "application/vnd.oci.artifact.manifest.v1+json"
            ))
        );
    }

    #[test]
    fn manifest_accept_lists_what_hoist_reads_best_first() {
        assert_eq!(
            MediaType::manifest_accept(),
            "application/vnd.oci.image.index.v1+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, \
             application/vnd.docker.distribution.manifest.v1+json;q=0.1"
        );
    }

    #[test]
    fn base_layers_convert_between_formats() {
        use MediaType as M;
        let docker: Vec<_> = [
            M::OciLayer(Compression::Gzip),
            M::OciLayer(Compression::Zstd),
            M::OciLayer(Compression::None),
            M::DockerLayer(Compression::Gzip),
        ]
        .iter()
        .map(|m| m.in_format(Format::Docker))
        .collect();
        assert_eq!(
            docker,
            [
                M::DockerLayer(Compression::Gzip),
                M::DockerLayer(Compression::Zstd),
                M::DockerLayer(Compression::None),
                M::DockerLayer(Compression::Gzip),
            ]
        );
        assert_eq!(
            M::DockerLayer(Compression::Zstd).in_format(Format::Oci),
            M::OciLayer(Compression::Zstd)
        );
        let spelled = M::from("application/vnd.docker.image.rootfs.diff.tar.gzip; x=y");
        assert_eq!(
            spelled.in_format(Format::Oci),
            M::OciLayer(Compression::Gzip)
        );
    }

    #[test]
    fn restricted_layers_map_between_foreign_and_nondistributable() {
        use MediaType as M;
        assert_eq!(
            M::DockerForeignLayer.in_format(Format::Oci),
            M::OciNondistributableLayer(Compression::Gzip)
        );
        assert_eq!(
            M::OciNondistributableLayer(Compression::Gzip).in_format(Format::Docker),
            M::DockerForeignLayer
        );
        // Docker has no foreign zstd or plain type: kept as written.
        let zstd = M::from("application/vnd.oci.image.layer.nondistributable.v1.tar+ZSTD");
        assert_eq!(zstd.in_format(Format::Docker), zstd);
        assert_eq!(
            M::OciNondistributableLayer(Compression::None).in_format(Format::Docker),
            M::OciNondistributableLayer(Compression::None)
        );
    }

    #[test]
    fn types_that_are_not_layers_are_kept_in_any_format() {
        for name in [
            "application/x-other",
            "application/vnd.in-toto+json",
            "application/vnd.oci.image.config.v1+json",
        ] {
            let m = MediaType::from(name);
            assert_eq!(m.in_format(Format::Docker), m);
            assert_eq!(m.in_format(Format::Oci), m);
        }
    }
}
