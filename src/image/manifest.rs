//! Image manifests for a built image: OCI image manifest or Docker schema 2, with every
//! media type (config and layers) in the chosen format's names.
//!
//! Not for: parsing manifests (see `registry`), indexes (a build makes one platform's
//! image), the media types themselves (see `crate::oci`), or pushing.

use serde::Serialize;

use crate::digest::Digest;
use crate::oci::{Descriptor, Format, MediaType};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: MediaType,
    config: WireDescriptor<'a>,
    layers: Vec<WireDescriptor<'a>>,
}

/// A descriptor as the image-spec spells it (camelCase).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireDescriptor<'a> {
    media_type: MediaType,
    digest: &'a Digest,
    size: u64,
}

/// The manifest document of an image made of `config` and `layers` (oldest first), and
/// its media type. The config's media type is `format`'s whatever `config` says; layer
/// media types are converted with [`MediaType::in_format`].
pub fn build_manifest(
    format: Format,
    config: &Descriptor,
    layers: &[Descriptor],
) -> (Vec<u8>, MediaType) {
    let manifest = Manifest {
        schema_version: 2,
        media_type: format.manifest_media_type(),
        config: WireDescriptor {
            media_type: format.config_media_type(),
            digest: &config.digest,
            size: config.size,
        },
        layers: layers
            .iter()
            .map(|l| WireDescriptor {
                media_type: l.media_type.in_format(format),
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
    use crate::oci::Compression;

    fn desc(media_type: MediaType, n: u8) -> Descriptor {
        Descriptor {
            media_type,
            digest: Digest::sha256_of(&[n]),
            size: u64::from(n) * 100,
        }
    }

    #[test]
    fn oci_manifest_has_oci_types_and_exact_shape() {
        let config = desc(MediaType::from("whatever"), 1);
        let layers = [desc(MediaType::OciLayer(Compression::Gzip), 2)];
        let (bytes, media_type) = build_manifest(Format::Oci, &config, &layers);
        assert_eq!(media_type, MediaType::OciManifest);
        let expected = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":100}},"layers":[{{"mediaType":"{}","digest":"{}","size":200}}]}}"#,
            MediaType::OciManifest,
            MediaType::OciConfig,
            config.digest,
            MediaType::OciLayer(Compression::Gzip),
            layers[0].digest
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn docker_manifest_converts_base_layers_from_oci() {
        let layers = [
            desc(MediaType::OciLayer(Compression::Gzip), 2),
            desc(MediaType::OciLayer(Compression::Zstd), 3),
            desc(MediaType::OciLayer(Compression::None), 4),
            desc(MediaType::DockerLayer(Compression::Gzip), 5),
        ];
        let (bytes, media_type) =
            build_manifest(Format::Docker, &desc(MediaType::from("x"), 1), &layers);
        assert_eq!(media_type, MediaType::DockerManifest);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["config"]["mediaType"], MediaType::DockerConfig.as_str());
        let types: Vec<_> = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                MediaType::DockerLayer(Compression::Gzip).as_str(),
                MediaType::DockerLayer(Compression::Zstd).as_str(),
                MediaType::DockerLayer(Compression::None).as_str(),
                MediaType::DockerLayer(Compression::Gzip).as_str(),
            ]
        );
    }
}
