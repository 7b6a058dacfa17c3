//! An OCI image layout folder (`oci-layout`, `blobs/<alg>/<hex>`, `index.json`), as
//! `skopeo copy oci:DIR:TAG …` and `umoci unpack --image DIR:TAG` read it.
//!
//! Blobs come from files that are already verified (the cache's): they are copied (a
//! reflink where the filesystem can), never hardlinked, so that editing the layout can
//! never change the shared cache. Small documents (manifest,
//! config) are written from bytes. Not for: reading layouts, or indexes of several
//! images (one pull, one manifest).

use crate::error::FromIo;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ImageError, build_manifest};
use crate::digest::Digest;
use crate::oci::{Descriptor, Format, MediaType};
use crate::registry::{Platform, Reference};

/// The annotation `skopeo`/`umoci` look a `DIR:TAG` up by.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd (`ctr image import`) names the image by.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An OCI image layout being written into a folder; [`OciLayout::finish`] writes the
/// `index.json` that makes it an image.
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: MediaType,
    manifests: [IndexEntry<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    media_type: &'a MediaType,
    digest: &'a Digest,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Platform>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    annotations: std::collections::BTreeMap<&'static str, String>,
}

impl OciLayout {
    /// Creates `dir` (and its parents) if needed, with `oci-layout` and `blobs/`.
    pub async fn create(dir: &Path) -> Result<OciLayout, ImageError> {
        let blobs = dir.join("blobs");
        tokio::fs::create_dir_all(&blobs)
            .await
            .map_err(ImageError::io(&blobs))?;
        let layout = OciLayout {
            dir: dir.to_path_buf(),
        };
        layout
            .write_file(
                &dir.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )
            .await?;
        Ok(layout)
    }

    /// Where the blob `digest` lives in the layout.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Puts a copy of the verified blob file `source` in the layout as `digest`. A blob
    /// already there is left as it is.
    pub async fn add_blob(&self, digest: &Digest, source: &Path) -> Result<(), ImageError> {
        let target = self.blob_path(digest);
        let source = source.to_path_buf();
        tokio::task::spawn_blocking(move || copy_blob(&source, &target))
            .await
            .map_err(|e| ImageError::io(&self.dir)(io::Error::other(e)))?
    }

    /// [`OciLayout::add_blob`] for each (digest, file) in turn.
    /// Copies several blobs in (only the tests do; a pull adds each as it arrives).
    #[cfg(test)]
    pub async fn add_blobs(
        &self,
        blobs: impl IntoIterator<Item = (Digest, PathBuf)>,
    ) -> Result<(), ImageError> {
        for (digest, source) in blobs {
            self.add_blob(&digest, &source).await?;
        }
        Ok(())
    }

    /// Writes a small document (a manifest, a config) as a sha256 blob; returns its digest.
    pub async fn add_document(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::sha256_of(bytes);
        let path = self.blob_path(&digest);
        self.write_file(&path, bytes).await?;
        Ok(digest)
    }

    /// Writes an image's manifest as a blob and returns what [`OciLayout::finish`] needs.
    /// An OCI manifest is written as it is (`bytes`, digest unchanged); a Docker schema 2
    /// one is rewritten as the OCI manifest of the same `config` and `layers` (what
    /// `skopeo copy … oci:` does; the digest then differs from the registry's), because
    /// skopeo and umoci look up only OCI manifests in a layout.
    pub async fn add_manifest(
        &self,
        media_type: &MediaType,
        bytes: &[u8],
        config: &Descriptor,
        layers: &[Descriptor],
    ) -> Result<Descriptor, ImageError> {
        let (bytes, media_type) = if *media_type == MediaType::OciManifest {
            (bytes.to_vec(), MediaType::OciManifest)
        } else {
            build_manifest(Format::Oci, config, layers)
        };
        let digest = self.add_document(&bytes).await?;
        Ok(Descriptor {
            media_type,
            digest,
            size: bytes.len() as u64,
        })
    }

    /// Writes `index.json` naming `manifest` (already added as a blob) for `platform`.
    /// With a `reference`, the entry is annotated with its tag (what `oci:DIR:TAG`
    /// finds; a digest-only reference has none, and `oci:DIR` then finds the one
    /// manifest) and, for containerd, the full reference.
    pub async fn finish(
        self,
        manifest: &Descriptor,
        platform: Option<&Platform>,
        reference: Option<&Reference>,
    ) -> Result<(), ImageError> {
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(reference) = reference {
            annotations.insert(CONTAINERD_NAME, reference.to_string());
            if let Some(tag) = &reference.tag {
                annotations.insert(REF_NAME, tag.clone());
            }
        }
        let index = Index {
            schema_version: 2,
            media_type: MediaType::OciIndex,
            manifests: [IndexEntry {
                media_type: &manifest.media_type,
                digest: &manifest.digest,
                size: manifest.size,
                platform,
                annotations,
            }],
        };
        let bytes = serde_json::to_vec(&index).expect("an index serializes");
        self.write_file(&self.dir.join("index.json"), &bytes).await
    }

    /// Writes `bytes` to `path` through a temporary name, so a reader never sees half.
    async fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
        tokio::task::spawn_blocking(move || {
            let parent = path.parent().expect("a file in the layout");
            std::fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
            let temp = temp_name(&path);
            std::fs::write(&temp, bytes)
                .and_then(|()| std::fs::rename(&temp, &path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&temp);
                    ImageError::io(&path)(e)
                })
        })
        .await
        .map_err(|e| ImageError::io(&self.dir)(io::Error::other(e)))?
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()))
}

/// Copies, never hardlinks: a layout is the client's to change, and a link would let an
/// edit of its blobs change the shared cache behind every other pull. `std::fs::copy`
/// uses `copy_file_range`, a reflink where the filesystem has them.
fn copy_blob(source: &Path, target: &Path) -> Result<(), ImageError> {
    let parent = target.parent().expect("a blob path has a parent");
    std::fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
    if target.exists() {
        return Ok(());
    }
    let temp = temp_name(target);
    let copied = std::fs::copy(source, &temp).and_then(|_| std::fs::rename(&temp, target));
    copied.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        ImageError::io(source)(e)
    })
}

#[cfg(test)]
#[path = "oci_layout_tests.rs"]
mod tests;
