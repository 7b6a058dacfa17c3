//! Pulling images into a rootfs: the tree must equal `umoci unpack`'s, entry by entry
//! (types, modes with setuid/setgid/sticky, owners, content, symlink targets, hardlink
//! groups, mtimes, xattrs), for OCI and Docker schema 2 manifests, gzip and zstd layers,
//! and layers with whiteouts and opaque directories.

use crate::common;

use std::sync::LazyLock;

use common::image::Unpacked;
use common::{Format, Image, World, assert_same_tree, fixtures, hostile_tar, upload};
use serde_json::json;

static FEATURES: LazyLock<Image> = LazyLock::new(|| fixtures::features("plain"));
static FEATURES_REF: LazyLock<Unpacked> = LazyLock::new(|| FEATURES.unpack_reference());
static ZSTD: LazyLock<Image> = LazyLock::new(|| fixtures::features("zstd"));
static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("single"));

#[tokio::test]
async fn single_layer_image_is_unpacked_like_umoci() {
    let world = World::start().await;
    world.push(&SMALL, "single/img:1", Format::Oci);
    let job = world.pull_ok(&world.image("single/img:1"), "single").await;
    assert_eq!(job.dest(), world.root().join("single"));
    assert_same_tree(&SMALL.unpack_reference().rootfs, &job.dest());
}

#[tokio::test]
async fn oci_image_with_whiteouts_opaque_dirs_links_modes_and_owners_is_unpacked_like_umoci() {
    let world = World::start().await;
    world.push(&FEATURES, "features/oci:1", Format::Oci);
    let job = world
        .pull_ok(&world.image("features/oci:1"), "features")
        .await;
    assert_same_tree(&FEATURES_REF.rootfs, &job.dest());
}

#[tokio::test]
async fn docker_schema2_image_is_unpacked_like_umoci() {
    let world = World::start().await;
    let pushed = world.push(&FEATURES, "features/v2s2:1", Format::DockerV2s2);
    let job = world.pull_ok(&world.image("features/v2s2:1"), "v2s2").await;
    assert_eq!(job.result()["digest"], pushed.digest.as_str());
    assert_same_tree(&FEATURES_REF.rootfs, &job.dest());
}

#[tokio::test]
async fn zstd_layers_are_unpacked_like_umoci() {
    let world = World::start().await;
    let pushed = world.push(&ZSTD, "features/zstd:1", Format::OciZstd);
    let job = world.pull_ok(&world.image("features/zstd:1"), "zstd").await;
    for layer in job.result()["layers"].as_array().unwrap() {
        assert_eq!(
            layer["media_type"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{job:?}"
        );
    }
    assert_eq!(job.result()["digest"], pushed.digest.as_str());
    assert_same_tree(&ZSTD.unpack_reference().rootfs, &job.dest());
}

#[tokio::test]
async fn pull_result_names_the_manifest_its_layers_and_the_absolute_dest() {
    let world = World::start().await;
    let pushed = world.push(&FEATURES, "features/result:7", Format::Oci);
    let image = world.image("features/result:7");
    let job = world
        .pull(json!({"image": image, "dest": "nested/dir/result"}))
        .await;
    let result = job.expect_succeeded();
    assert_eq!(result["image"], image.as_str());
    assert_eq!(result["digest"], pushed.digest.as_str());
    assert!(result["index_digest"].is_null(), "{job:?}");
    assert_eq!(
        result["dest"],
        world.root().join("nested/dir/result").display().to_string()
    );
    assert_eq!(result["platform"], format!("linux/{}", upload::host_arch()));
    let layers: Vec<_> = result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| json!({"digest": l["digest"], "size": l["size"], "media_type": l["media_type"]}))
        .collect();
    let expected: Vec<_> = pushed
        .layers()
        .iter()
        .map(|l| json!({"digest": l["digest"], "size": l["size"], "media_type": l["mediaType"]}))
        .collect();
    assert_eq!(layers, expected, "layers, oldest first");
    // the request as kept: defaults filled in, nothing else
    assert_eq!(
        job.0["request"],
        json!({"image": image, "dest": "nested/dir/result", "force": false,
               "cache": "use", "layout": "rootfs", "sync": true})
    );
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(job.0[field].is_string(), "{field} of {job:?}");
    }
    assert!(job.0.get("error").is_none(), "{job:?}");
    assert_same_tree(&FEATURES_REF.rootfs, &job.dest());
}

#[tokio::test]
async fn pull_by_digest_gets_that_manifest() {
    let world = World::start().await;
    let pushed = world.push(&SMALL, "bydigest/img:1", Format::Oci);
    // retag the tag elsewhere: the digest still names the first image
    world.push(&FEATURES, "bydigest/img:1", Format::Oci);
    let job = world
        .pull_ok(
            &world.image(&format!("bydigest/img@{}", pushed.digest)),
            "bydigest",
        )
        .await;
    assert_eq!(job.result()["digest"], pushed.digest.as_str());
    assert_same_tree(&SMALL.unpack_reference().rootfs, &job.dest());
}

#[tokio::test]
async fn hand_made_layers_apply_in_order_with_whiteouts_and_opaque_markers() {
    use common::{ImageBuilder, TarEntry};
    let world = World::start().await;
    // every directory has its own entry, so its mtime is deterministic and compared
    let image = ImageBuilder::new()
        .raw_layer(&hostile_tar::tar(&[
            TarEntry::dir("."),
            TarEntry::dir("a"),
            TarEntry::file("a/one", b"1"),
            TarEntry::dir("a/sub"),
            TarEntry::file("a/sub/two", b"2"),
            TarEntry::file("keep", b"keep"),
        ]))
        .raw_layer(&hostile_tar::tar(&[
            TarEntry::dir("a"),
            TarEntry::opaque("a"),
            TarEntry::file("a/three", b"3"),
            TarEntry::whiteout("keep"),
        ]))
        .raw_layer(&hostile_tar::tar(&[TarEntry::file("keep", b"back again")]))
        .build();
    world.push(&image, "hand/made:1", Format::Oci);
    let job = world.pull_ok(&world.image("hand/made:1"), "handmade").await;
    let dest = job.dest();
    assert_eq!(std::fs::read_to_string(dest.join("a/three")).unwrap(), "3");
    assert!(!dest.join("a/one").exists(), "opaque marker ignored");
    assert!(!dest.join("a/sub").exists(), "opaque marker ignored");
    assert_eq!(
        std::fs::read_to_string(dest.join("keep")).unwrap(),
        "back again"
    );
    assert_same_tree(&image.unpack_reference().rootfs, &dest);
}
