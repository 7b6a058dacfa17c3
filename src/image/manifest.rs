//! Image manifests for a built image: OCI image manifest or Docker schema 2, with every
//! media type (config and layers) in the chosen format's names.
//!
//! Not for: parsing manifests (see `registry`), indexes (a build makes one platform's
//! image), or pushing.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::registry::{LayerDescriptor, media_types as mt};
use crate::unpack::Compression;

/// Which family of media types an image is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Oci,
    Docker,
}

impl Format {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_MANIFEST,
            Format::Docker => mt::DOCKER_MANIFEST,
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_CONFIG,
            Format::Docker => mt::DOCKER_CONFIG,
        }
    }

    pub fn layer_media_type(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (Format::Oci, Compression::None) => mt::OCI_LAYER,
            (Format::Oci, Compression::Gzip) => mt::OCI_LAYER_GZIP,
            (Format::Oci, Compression::Zstd) => mt::OCI_LAYER_ZSTD,
            (Format::Docker, Compression::None) => mt::DOCKER_LAYER,
            (Format::Docker, Compression::Gzip) => mt::DOCKER_LAYER_GZIP,
            (Format::Docker, Compression::Zstd) => mt::DOCKER_LAYER_ZSTD,
        }
    }
}

const OCI_NONDISTRIBUTABLE: [&str; 3] = [
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];
const DOCKER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// A base image's layer media type in `format`'s names, same compression. Foreign
/// (Docker) and non-distributable (OCI) gzip layers map onto each other; a type that is
/// not a known layer type is kept as it is.
pub fn convert_layer_media_type(format: Format, media_type: &str) -> String {
    let Some(compression) = Compression::from_media_type(media_type) else {
        return media_type.to_string();
    };
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let restricted =
        essence == DOCKER_FOREIGN_GZIP || OCI_NONDISTRIBUTABLE.contains(&essence.as_str());
    match (format, restricted, compression) {
        (Format::Oci, true, c) => OCI_NONDISTRIBUTABLE[match c {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Zstd => 2,
        }]
        .to_string(),
        (Format::Docker, true, Compression::Gzip) => DOCKER_FOREIGN_GZIP.to_string(),
        // Docker has no foreign type for plain or zstd layers: keep what there is.
        (Format::Docker, true, _) => media_type.to_string(),
        (f, false, c) => f.layer_media_type(c).to_string(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: String,
    digest: &'a Digest,
    size: u64,
}

/// The manifest document of an image made of `config` and `layers` (oldest first), and
/// its media type. The config's media type is `format`'s whatever `config` says; layer
/// media types are converted with [`convert_layer_media_type`].
pub fn build_manifest(
    format: Format,
    config: &LayerDescriptor,
    layers: &[LayerDescriptor],
) -> (Vec<u8>, &'static str) {
    let manifest = Manifest {
        schema_version: 2,
        media_type: format.manifest_media_type(),
        config: Descriptor {
            media_type: format.config_media_type().to_string(),
            digest: &config.digest,
            size: config.size,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: convert_layer_media_type(format, &l.media_type),
                digest: &l.digest,
                size: l.size,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
    (bytes, format.manifest_media_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(media_type: &str, n: u8) -> LayerDescriptor {
        LayerDescriptor {
            media_type: media_type.to_string(),
            digest: Digest::sha256_of(&[n]),
            size: u64::from(n) * 100,
        }
    }

    #[test]
    fn format_deserializes_lowercase() {
        let f: Vec<Format> = serde_json::from_str(r#"["oci","docker"]"#).unwrap();
        assert_eq!(f, [Format::Oci, Format::Docker]);
        assert!(serde_json::from_str::<Format>(r#""OCI""#).is_err());
    }

    #[test]
    fn oci_manifest_has_oci_types_and_exact_shape() {
        let config = desc("whatever", 1);
        let layers = [desc(mt::OCI_LAYER_GZIP, 2)];
        let (bytes, media_type) = build_manifest(Format::Oci, &config, &layers);
        assert_eq!(media_type, mt::OCI_MANIFEST);
        let expected = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":100}},"layers":[{{"mediaType":"{}","digest":"{}","size":200}}]}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_CONFIG,
            config.digest,
            mt::OCI_LAYER_GZIP,
            layers[0].digest
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn docker_manifest_converts_base_layers_from_oci() {
        let layers = [
            desc(mt::OCI_LAYER_GZIP, 2),
            desc(mt::OCI_LAYER_ZSTD, 3),
            desc(mt::OCI_LAYER, 4),
            desc(mt::DOCKER_LAYER_GZIP, 5),
        ];
        let (bytes, media_type) = build_manifest(Format::Docker, &desc("x", 1), &layers);
        assert_eq!(media_type, mt::DOCKER_MANIFEST);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["config"]["mediaType"], mt::DOCKER_CONFIG);
        let types: Vec<_> = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                mt::DOCKER_LAYER_GZIP,
                mt::DOCKER_LAYER_ZSTD,
                mt::DOCKER_LAYER,
                mt::DOCKER_LAYER_GZIP
            ]
        );
    }

    #[test]
    fn restricted_layers_map_between_foreign_and_nondistributable() {
        assert_eq!(
            convert_layer_media_type(Format::Oci, DOCKER_FOREIGN_GZIP),
            OCI_NONDISTRIBUTABLE[1]
        );
        assert_eq!(
            convert_layer_media_type(Format::Docker, OCI_NONDISTRIBUTABLE[1]),
            DOCKER_FOREIGN_GZIP
        );
        assert_eq!(
            convert_layer_media_type(Format::Oci, mt::DOCKER_LAYER_ZSTD),
            mt::OCI_LAYER_ZSTD
        );
        assert_eq!(
            convert_layer_media_type(Format::Oci, "application/x-other"),
            "application/x-other"
        );
    }
}
