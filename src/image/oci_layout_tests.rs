//! The layout is checked by the tools users read it with: skopeo and umoci must be
//! installed (scripts/test installs them); a missing tool fails the test.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::image::{ConfigOverrides, LayerOptions, build_config, build_layer, build_manifest};
use crate::oci::Compression;

struct Built {
    _dirs: tempfile::TempDir,
    layout: PathBuf,
    manifest: Descriptor,
    layer: Digest,
    layer_file: PathBuf,
}

/// A one-layer image (a file, a setuid file, a symlink) written as a layout tagged `1.0`.
async fn write_image(format: Format) -> Built {
    let dirs = tempfile::tempdir().unwrap();
    let source = dirs.path().join("src");
    std::fs::create_dir_all(source.join("bin")).unwrap();
    std::fs::write(source.join("hello.txt"), b"hello from hoist\n").unwrap();
    std::fs::write(source.join("bin/app"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        source.join("bin/app"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("hello.txt", source.join("greeting")).unwrap();

    let layer_file = dirs.path().join("layer.blob");
    let opts = LayerOptions {
        format,
        compression: Compression::Gzip,
        keep_owners: false,
        source_date_epoch: Some(1_700_000_000),
    };
    let layer = build_layer(&source, &layer_file, &opts, &CancellationToken::new())
        .await
        .unwrap();
    let platform: Platform = "linux/amd64".parse().unwrap();
    let overrides = ConfigOverrides {
        cmd: Some(vec!["/bin/app".into()]),
        env: Some(vec!["GREETING=hi".into()]),
        ..Default::default()
    };
    let config = build_config(
        None,
        &overrides,
        &platform,
        &layer.diff_id,
        "2023-11-14T22:13:20Z",
        "hoist build src",
    );

    let layout_dir = dirs.path().join("layout");
    let layout = OciLayout::create(&layout_dir).await.unwrap();
    layout
        .add_blobs([(layer.digest.clone(), layer_file.clone())])
        .await
        .unwrap();
    let config_digest = layout.add_document(&config).await.unwrap();
    let config_desc = Descriptor {
        media_type: MediaType::from(""),
        digest: config_digest,
        size: config.len() as u64,
    };
    let layers = [layer.descriptor()];
    let (manifest, media_type) = build_manifest(format, &config_desc, &layers);
    let manifest_desc = layout
        .add_manifest(&media_type, &manifest, &config_desc, &layers)
        .await
        .unwrap();
    if format == Format::Oci {
        assert_eq!(manifest_desc.digest, Digest::sha256_of(&manifest));
    }
    let reference: Reference = "localhost:5000/team/app:1.0".parse().unwrap();
    layout
        .finish(&manifest_desc, Some(&platform), Some(&reference))
        .await
        .unwrap();
    Built {
        _dirs: dirs,
        layout: layout_dir,
        manifest: manifest_desc,
        layer: layer.digest,
        layer_file,
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed for this test (scripts/test installs it): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn layout_has_the_spec_files_and_every_blob_under_its_digest() {
    let built = write_image(Format::Oci).await;
    let dir = &built.layout;
    assert_eq!(
        std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], MediaType::OciIndex.as_str());
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], built.manifest.digest.to_string());
    assert_eq!(entry["size"], built.manifest.size);
    assert_eq!(entry["mediaType"], MediaType::OciManifest.as_str());
    assert_eq!(
        entry["platform"],
        serde_json::json!({"os": "linux", "architecture": "amd64"})
    );
    assert_eq!(entry["annotations"][REF_NAME], "1.0");
    assert_eq!(
        entry["annotations"][CONTAINERD_NAME],
        "localhost:5000/team/app:1.0"
    );

    let blobs: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .collect();
    assert_eq!(blobs.len(), 3, "manifest, config, layer and no leftovers");
    for blob in blobs {
        let path = blob.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let digest = Digest::sha256_of(&std::fs::read(&path).unwrap());
        assert_eq!(digest.hex(), name);
    }
}

#[tokio::test]
async fn blobs_are_copies_never_links_to_the_cache_and_added_once() {
    let built = write_image(Format::Oci).await;
    let in_layout =
        std::fs::metadata(built.layout.join("blobs/sha256").join(built.layer.hex())).unwrap();
    let source = std::fs::metadata(&built.layer_file).unwrap();
    assert_ne!(in_layout.ino(), source.ino());
    assert_eq!(in_layout.len(), source.len());
    let layout = OciLayout {
        dir: built.layout.clone(),
    };
    layout
        .add_blob(&built.layer, &built.layer_file)
        .await
        .unwrap();
}

#[tokio::test]
async fn skopeo_inspects_the_layout_by_tag_whatever_the_image_format() {
    for format in [Format::Oci, Format::Docker] {
        let built = write_image(format).await;
        let target = format!("oci:{}:1.0", built.layout.display());
        let out: serde_json::Value =
            serde_json::from_str(&run("skopeo", &["inspect", &target])).unwrap();
        assert_eq!(
            out["Digest"],
            built.manifest.digest.to_string(),
            "{format:?}"
        );
        assert_eq!(out["Architecture"], "amd64");
        assert_eq!(out["Os"], "linux");
        assert_eq!(out["Layers"], serde_json::json!([built.layer.to_string()]));
        assert_eq!(out["Env"], serde_json::json!(["GREETING=hi"]));
    }
}

#[tokio::test]
async fn umoci_unpacks_the_layout_by_tag() {
    let built = write_image(Format::Oci).await;
    let bundle = built.layout.with_file_name("bundle");
    let image = format!("{}:1.0", built.layout.display());
    let mut args = vec!["unpack", "--image", &image];
    if !rustix::process::geteuid().is_root() {
        args.push("--rootless");
    }
    let bundle_arg = bundle.display().to_string();
    args.push(&bundle_arg);
    run("umoci", &args);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("hello.txt")).unwrap(),
        "hello from hoist\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("greeting")).unwrap(),
        Path::new("hello.txt")
    );
    let mode = std::fs::metadata(rootfs.join("bin/app")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o4755);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"], serde_json::json!(["/bin/app"]));
}
