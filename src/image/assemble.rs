//! A build's parts put together as one value, before anything is pushed: the config (the
//! base's, with the new layer's diff_id and the request's overrides), the manifest, and
//! every blob with where its bytes come from (the base's repository for its layers, the
//! built file for the new one, memory for the config).
//!
//! Not for: pushing it (`registry::RegistryClient::push_image`), resolving the base or
//! building the layer (the build job does both first).

use std::path::Path;

use bytes::Bytes;
use serde_json::Value;

use super::{BuiltLayer, ConfigOverrides, build_config, build_manifest};
use crate::digest::Digest;
use crate::oci::{Descriptor, Format};
use crate::registry::{BlobSource, ImageToPush, Platform, PushBlob, Reference};

/// The base image, as far as a build uses it.
pub struct BaseImage<'a> {
    /// Where its layers live: mounted from there, or read from there, when pushed.
    pub reference: &'a Reference,
    /// Its layers, oldest first, as its manifest lists them.
    pub layers: &'a [Descriptor],
    /// Its config document.
    pub config: &'a Value,
}

/// Everything an image is made of.
pub struct ImageParts<'a> {
    pub format: Format,
    pub base: Option<BaseImage<'a>>,
    /// The new layer, on top of the base's.
    pub layer: &'a BuiltLayer,
    /// Where the new layer's blob was written.
    pub layer_file: &'a Path,
    pub overrides: &'a ConfigOverrides,
    pub platform: &'a Platform,
    /// RFC 3339 time of the config's `created` and its history entry.
    pub created: &'a str,
    /// The history entry's `created_by`.
    pub created_by: &'a str,
}

/// The image of `parts`, ready to push. Layer descriptors carry the media types the
/// manifest lists (a base's converted to `format`'s names).
pub fn assemble(parts: &ImageParts<'_>) -> ImageToPush {
    let config = Bytes::from(build_config(
        parts.base.as_ref().map(|b| b.config),
        parts.overrides,
        parts.platform,
        &parts.layer.diff_id,
        parts.created,
        parts.created_by,
    ));
    let config_desc = Descriptor {
        media_type: parts.format.config_media_type(),
        digest: Digest::sha256_of(&config),
        size: config.len() as u64,
    };

    let base_layers = parts.base.as_ref().map_or(&[][..], |b| b.layers);
    let mut descriptors = base_layers.to_vec();
    descriptors.push(parts.layer.descriptor());
    let (manifest, media_type) = build_manifest(parts.format, &config_desc, &descriptors);

    let as_listed = |d: &Descriptor| Descriptor {
        media_type: d.media_type.in_format(parts.format),
        ..d.clone()
    };
    let mut layers: Vec<PushBlob> = match &parts.base {
        Some(base) => base
            .layers
            .iter()
            .map(|d| PushBlob {
                descriptor: as_listed(d),
                source: BlobSource::Repository(base.reference.clone()),
            })
            .collect(),
        None => Vec::new(),
    };
    layers.push(PushBlob {
        descriptor: as_listed(&parts.layer.descriptor()),
        source: BlobSource::File(parts.layer_file.to_path_buf()),
    });
    ImageToPush {
        layers,
        config: PushBlob {
            descriptor: config_desc,
            source: BlobSource::Bytes(config),
        },
        manifest: Bytes::from(manifest),
        media_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Compression, MediaType};

    fn built() -> BuiltLayer {
        BuiltLayer {
            digest: Digest::sha256_of(b"layer"),
            diff_id: Digest::sha256_of(b"tar"),
            size: 5,
            media_type: MediaType::DockerLayer(Compression::Gzip),
        }
    }

    fn parts<'a>(
        base: Option<BaseImage<'a>>,
        layer: &'a BuiltLayer,
        platform: &'a Platform,
    ) -> ImageParts<'a> {
        static OVERRIDES: std::sync::LazyLock<ConfigOverrides> =
            std::sync::LazyLock::new(ConfigOverrides::default);
        ImageParts {
            format: Format::Docker,
            base,
            layer,
            layer_file: Path::new("/tmp/x/layer"),
            overrides: &OVERRIDES,
            platform,
            created: "2026-01-01T00:00:00Z",
            created_by: "hoist build",
        }
    }

    #[test]
    fn base_layers_come_from_the_base_repository_and_the_new_one_from_its_file() {
        let reference: Reference = "registry.example/base/img:1".parse().unwrap();
        let base_layers = [Descriptor {
            media_type: MediaType::OciLayer(Compression::Gzip),
            digest: Digest::sha256_of(b"base"),
            size: 4,
        }];
        let base_config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(b"base tar")]}});
        let layer = built();
        let platform: Platform = "linux/amd64".parse().unwrap();
        let base = BaseImage {
            reference: &reference,
            layers: &base_layers,
            config: &base_config,
        };
        let image = assemble(&parts(Some(base), &layer, &platform));

        let sources: Vec<_> = image.blobs().map(|b| &b.source).collect();
        assert!(matches!(sources[0], BlobSource::Repository(r) if r == &reference));
        assert!(matches!(sources[1], BlobSource::File(p) if p == Path::new("/tmp/x/layer")));
        let BlobSource::Bytes(config) = sources[2] else {
            panic!("the config is pushed from memory: {sources:?}");
        };
        assert_eq!(image.config.descriptor.digest, Digest::sha256_of(config));
        assert_eq!(image.config.descriptor.size, config.len() as u64);
        let config: Value = serde_json::from_slice(config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][1], layer.diff_id.to_string());

        // the value says what the manifest says, base layer types converted to Docker's
        assert_eq!(image.media_type, MediaType::DockerManifest);
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(
            manifest["config"]["digest"],
            image.config.descriptor.digest.to_string()
        );
        let listed: Vec<(String, String, u64)> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let text = |k: &str| l[k].as_str().unwrap().to_string();
                (
                    text("mediaType"),
                    text("digest"),
                    l["size"].as_u64().unwrap(),
                )
            })
            .collect();
        let ours: Vec<(String, String, u64)> = image
            .layers
            .iter()
            .map(|b| {
                let d = &b.descriptor;
                (
                    d.media_type.as_str().to_string(),
                    d.digest.to_string(),
                    d.size,
                )
            })
            .collect();
        assert_eq!(listed, ours);
        assert_eq!(
            ours[0].0,
            MediaType::DockerLayer(Compression::Gzip).as_str()
        );
    }

    #[test]
    fn without_a_base_the_image_is_the_new_layer_and_its_config() {
        let layer = built();
        let platform: Platform = "linux/arm64".parse().unwrap();
        let image = assemble(&parts(None, &layer, &platform));
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.layers[0].descriptor, layer.descriptor());
        assert_eq!(image.blobs().count(), 2);
    }
}
