//! Picking one platform's manifest from an index (attestations skipped, the best match
//! first) and reading the platform of a single-platform image from its config.
//!
//! The matching rules themselves live with [`Platform::match_score`]. Not for: fetching.

use serde::Deserialize;

use super::{ManifestKind, Platform, Reference, RegistryError};
use crate::oci::{Descriptor, MediaType};

/// Whether an index entry names an image manifest; an entry without a media type is
/// taken for one.
fn is_image_manifest_type(media_type: &MediaType) -> bool {
    media_type.is_manifest() || media_type.as_str().is_empty()
}

impl ManifestKind {
    /// The platforms an index offers, attestation (`unknown/unknown`) entries skipped;
    /// empty for an image manifest.
    pub fn platforms(&self) -> Vec<Platform> {
        match self {
            ManifestKind::Index(entries) => entries
                .iter()
                .filter(|(_, d)| is_image_manifest_type(&d.media_type))
                .filter_map(|(p, _)| p.clone())
                .filter(|p| !p.is_unknown())
                .collect(),
            ManifestKind::Image { .. } => Vec::new(),
        }
    }

    /// The index entry that fits `wanted` best (the first of equally good ones), with its
    /// platform; `None` for an image manifest or when no entry fits.
    pub fn select(&self, wanted: &Platform) -> Option<(&Platform, &Descriptor)> {
        let ManifestKind::Index(entries) = self else {
            return None;
        };
        let mut best: Option<(u8, &Platform, &Descriptor)> = None;
        for (platform, desc) in entries {
            let Some(platform) = platform else { continue };
            if !is_image_manifest_type(&desc.media_type) {
                continue;
            }
            if let Some(score) = wanted.match_score(platform)
                && best.is_none_or(|(s, _, _)| score > s)
            {
                best = Some((score, platform, desc));
            }
        }
        best.map(|(_, p, d)| (p, d))
    }
}

/// The `platform_not_found` error for `wanted` against what `available` offers.
pub(super) fn platform_not_found(
    image: &Reference,
    wanted: &Platform,
    available: &[Platform],
) -> RegistryError {
    let available = if available.is_empty() {
        "no platforms".to_string()
    } else {
        available
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    RegistryError::PlatformNotFound {
        image: image.to_string(),
        platform: wanted.to_string(),
        available,
    }
}

/// The platform an image config declares (`os`, `architecture`, `variant`).
pub(super) fn config_platform(image: &str, config: &[u8]) -> Result<Platform, RegistryError> {
    #[derive(Deserialize)]
    struct RawConfig {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    let c: RawConfig =
        serde_json::from_slice(config).map_err(|e| RegistryError::UnsupportedManifest {
            image: image.to_string(),
            reason: format!("image config has no valid os/architecture: {e}"),
        })?;
    Ok(Platform {
        os: c.os,
        architecture: c.architecture,
        variant: c.variant.filter(|v| !v.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::registry::manifest::tests::{D1, D2, index_json, parse};

    #[test]
    fn index_lists_platforms_without_attestations() {
        let m = parse(None, &index_json()).unwrap();
        assert!(m.is_index());
        let names: Vec<String> = m.kind.platforms().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64/v8"]);
    }

    #[test]
    fn select_picks_the_matching_entry() {
        let m = parse(None, &index_json()).unwrap();
        let (p, d) = m.kind.select(&"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(d.digest.to_string(), D2);
        let (_, d) = m.kind.select(&"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!(d.digest.to_string(), D1);
        assert!(m.kind.select(&"linux/s390x".parse().unwrap()).is_none());
        assert!(m.kind.select(&"unknown/unknown".parse().unwrap()).is_none());
    }

    #[test]
    fn select_prefers_default_variant_over_index_order() {
        let json = format!(
            r#"{{"manifests":[
            {{"mediaType":"{m}","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v6"}}}},
            {{"mediaType":"{m}","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#,
            m = MediaType::DockerManifest
        );
        let m = parse(Some(MediaType::DockerManifestList.as_str()), &json).unwrap();
        let (_, d) = m.kind.select(&"linux/arm".parse().unwrap()).unwrap();
        assert_eq!(d.digest.to_string(), D2);
        let (_, d) = m.kind.select(&"linux/arm/v6".parse().unwrap()).unwrap();
        assert_eq!(d.digest.to_string(), D1);
    }

    #[test]
    fn index_entries_of_unknown_types_are_kept_and_never_chosen() {
        let sbom = "application/x.example.sbom.v1+json; v=2";
        let json = format!(
            r#"{{"manifests":[
            {{"mediaType":"{sbom}","artifactType":"application/spdx+json","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"digest":"{D2}","size":2,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let m = parse(Some(MediaType::OciIndex.as_str()), &json).unwrap();
        let ManifestKind::Index(entries) = &m.kind else {
            panic!("{:?}", m.kind)
        };
        assert_eq!(entries[0].1.media_type.as_str(), sbom);
        assert!(matches!(entries[0].1.media_type, MediaType::Other(_)));
        assert_eq!(m.kind.platforms().len(), 1);
        // The entry without a media type is taken for a manifest; the artifact never.
        let (_, d) = m.kind.select(&"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!(d.digest.to_string(), D2);
    }

    #[test]
    fn config_platform_reads_os_arch_variant() {
        let p = config_platform(
            "x",
            br#"{"os":"linux","architecture":"arm64","variant":"v8","rootfs":{}}"#,
        )
        .unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(config_platform("x", b"{}").is_err());
    }

    #[test]
    fn platform_not_found_lists_what_there_is() {
        let r: Reference = "ubuntu".parse().unwrap();
        let e = platform_not_found(
            &r,
            &"linux/s390x".parse().unwrap(),
            &["linux/amd64".parse().unwrap()],
        );
        assert_eq!(e.code(), "platform_not_found");
        assert!(e.to_string().contains("(it has: linux/amd64)"), "{e}");
    }
}
