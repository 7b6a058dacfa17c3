//! Asking about images and picking platforms: `GET /digest` and `GET /inspect` against
//! what `skopeo inspect` says of the same registry (`--raw` bytes hashed, `Digest`,
//! `--config`), and pulls from a multi-platform index (`platform: linux/arm64`, the
//! daemon's own platform by default, `platform_not_found`).

use crate::common;

use std::sync::LazyLock;

use common::fixtures::{AMD64, ARM64};
use common::image;
use common::{
    Format, Image, Pushed, World, assert_same_tree, expect_problem, fixtures, tools, upload,
};
use serde_json::{Value, json};

static FEATURES: LazyLock<Image> = LazyLock::new(|| fixtures::features("images"));

/// Pushes the two-platform index (`linux/amd64`, `linux/arm64/v8`) as `multi/img:1`.
fn push_multi(world: &World) -> Pushed {
    fixtures::push_two_platform_index(&world.registry, "multi/img:1")
}

#[tokio::test]
async fn platform_arm64_is_picked_from_an_index() {
    let world = World::start().await;
    let index = push_multi(&world);
    // `linux/arm64` matches the `arm64/v8` entry, as containerd and docker do
    for (asked, dest) in [
        ("linux/arm64", "arm"),
        ("linux/arm64/v8", "arm-v8"),
        ("linux/aarch64", "arm-alias"),
    ] {
        let job = world
            .pull(json!({"image": world.image("multi/img:1"), "dest": dest, "platform": asked}))
            .await;
        let result = job.expect_succeeded();
        assert_eq!(result["platform"], "linux/arm64/v8", "{job:?}");
        assert_eq!(result["digest"], index.entry_digest("arm64").as_str());
        assert_eq!(result["index_digest"], index.digest.as_str());
        assert_eq!(job.0["request"]["platform"], asked);
        assert_same_tree(&ARM64.unpack_reference().rootfs, &job.dest());
    }
}

#[tokio::test]
async fn without_a_platform_the_daemons_own_is_picked() {
    let world = World::start().await;
    let index = push_multi(&world);
    let arch = upload::host_arch();
    assert!(
        arch == "amd64" || arch == "arm64",
        "the index has amd64 and arm64; this machine is {arch}"
    );
    let job = world.pull_ok(&world.image("multi/img:1"), "own").await;
    assert!(job.0["request"].get("platform").is_none(), "{job:?}");
    let result = job.result();
    assert_eq!(result["digest"], index.entry_digest(arch).as_str());
    let reference = if arch == "amd64" { &AMD64 } else { &ARM64 };
    assert_same_tree(&reference.unpack_reference().rootfs, &job.dest());
}

#[tokio::test]
async fn a_platform_the_index_lacks_fails_with_platform_not_found() {
    let world = World::start().await;
    push_multi(&world);
    let job = world
        .pull(json!({"image": world.image("multi/img:1"), "dest": "s390x", "platform": "linux/s390x"}))
        .await;
    job.expect_failed("platform_not_found");
    let message = job.0["error"]["message"].as_str().unwrap();
    assert!(message.contains("linux/s390x"), "{message}");
    assert!(!world.root().join("s390x").exists());
    // a single-platform image of another platform does not match either
    world.push(&ARM64, "single/arm:1", Format::Oci);
    if upload::host_arch() != "arm64" {
        let job = world
            .pull(json!({"image": world.image("single/arm:1"), "dest": "x", "platform": "linux/amd64"}))
            .await;
        job.expect_failed("platform_not_found");
    }
}

async fn get_ok(world: &World, path: &str, query: &[(&str, &str)]) -> Value {
    let resp = world.get(path).query(query).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path} {query:?}: {body}");
    body
}

#[tokio::test]
async fn digest_matches_skopeo_for_oci_and_docker_manifests() {
    let world = World::start().await;
    for (repo_tag, format, media_type) in [
        (
            "dig/oci:1",
            Format::Oci,
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            "dig/v2s2:1",
            Format::DockerV2s2,
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let pushed = world.push(&FEATURES, repo_tag, format);
        let raw = image::inspect_raw(&world.registry, repo_tag);
        let skopeo = image::inspect(&world.registry, repo_tag, None);
        assert_eq!(skopeo["Digest"], tools::digest_of(&raw).as_str());
        let ref_ = world.image(repo_tag);
        let answer = get_ok(&world, "/digest", &[("image", &ref_)]).await;
        assert_eq!(
            answer,
            json!({"image": ref_, "digest": pushed.digest, "media_type": media_type})
        );
    }
}

#[tokio::test]
async fn digest_of_an_index_and_of_one_of_its_platforms() {
    let world = World::start().await;
    let index = push_multi(&world);
    let ref_ = world.image("multi/img:1");
    assert_eq!(
        image::inspect(&world.registry, "multi/img:1", None)["Digest"],
        index.digest.as_str()
    );
    let answer = get_ok(&world, "/digest", &[("image", &ref_)]).await;
    assert_eq!(
        answer,
        json!({"image": ref_, "digest": index.digest,
               "media_type": "application/vnd.oci.image.index.v1+json"})
    );
    let answer = get_ok(
        &world,
        "/digest",
        &[("image", &ref_), ("platform", "linux/arm64")],
    )
    .await;
    assert_eq!(answer["digest"], index.digest.as_str());
    assert_eq!(answer["platform"], "linux/arm64/v8");
    assert_eq!(
        answer["platform_digest"],
        index.entry_digest("arm64").as_str()
    );
    // by digest, the platform manifest itself
    let by_digest = world.image(&format!("multi/img@{}", index.entry_digest("arm64")));
    let answer = get_ok(&world, "/digest", &[("image", &by_digest)]).await;
    assert_eq!(answer["digest"], index.entry_digest("arm64").as_str());
}

#[tokio::test]
async fn digest_of_what_the_registry_lacks_is_404() {
    let world = World::start().await;
    push_multi(&world);
    let resp = world
        .get("/digest")
        .query(&[("image", world.image("multi/img:nope"))])
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, Some("manifest_unknown")).await;
    let resp = world
        .get("/digest")
        .query(&[
            ("image", world.image("multi/img:1").as_str()),
            ("platform", "linux/s390x"),
        ])
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, Some("platform_not_found")).await;
    let resp = world
        .get("/inspect")
        .query(&[("image", world.image("nothing/here:1"))])
        .send()
        .await
        .unwrap();
    expect_problem(resp, 404, Some("manifest_unknown")).await;
}

fn layers_of(manifest: &Value) -> Value {
    Value::Array(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(
                |l| json!({"media_type": l["mediaType"], "digest": l["digest"], "size": l["size"]}),
            )
            .collect(),
    )
}

fn total_size(manifest: &Value) -> u64 {
    manifest["config"]["size"].as_u64().unwrap()
        + manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
}

#[tokio::test]
async fn inspect_of_a_single_image_matches_skopeo() {
    let world = World::start().await;
    for (repo_tag, format) in [
        ("insp/oci:1", Format::Oci),
        ("insp/v2s2:1", Format::DockerV2s2),
    ] {
        let pushed = world.push(&FEATURES, repo_tag, format);
        let ref_ = world.image(repo_tag);
        let answer = get_ok(&world, "/inspect", &[("image", &ref_)]).await;
        let skopeo = image::inspect(&world.registry, repo_tag, None);
        let config = image::inspect_config(&world.registry, repo_tag, None);
        assert_eq!(answer["image"], ref_.as_str());
        assert_eq!(answer["digest"], skopeo["Digest"]);
        assert_eq!(answer["media_type"], pushed.media_type().as_str());
        assert_eq!(answer["platforms"], json!([]));
        assert_eq!(
            answer["platform"],
            format!("linux/{}", skopeo["Architecture"].as_str().unwrap())
        );
        assert_eq!(answer["platform_digest"], pushed.digest.as_str());
        assert_eq!(answer["manifest_media_type"], pushed.media_type().as_str());
        assert_eq!(answer["config_digest"], pushed.config_digest().as_str());
        assert_eq!(
            answer["config"], config,
            "config as skopeo inspect --config shows it"
        );
        assert_eq!(answer["layers"], layers_of(&pushed.manifest));
        let digests: Vec<Value> = answer["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].clone())
            .collect();
        assert_eq!(Value::Array(digests), skopeo["Layers"]);
        assert_eq!(answer["size"], total_size(&pushed.manifest));
    }
}

#[tokio::test]
async fn inspect_of_an_index_resolves_one_platform_and_lists_all() {
    let world = World::start().await;
    let index = push_multi(&world);
    let ref_ = world.image("multi/img:1");
    let answer = get_ok(
        &world,
        "/inspect",
        &[("image", &ref_), ("platform", "linux/arm64")],
    )
    .await;
    let arm = image::inspect_pushed(
        &world.registry,
        &format!("multi/img@{}", index.entry_digest("arm64")),
    );
    assert_eq!(answer["digest"], index.digest.as_str());
    assert_eq!(
        answer["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        answer["platforms"],
        json!(["linux/amd64", "linux/arm64/v8"])
    );
    assert_eq!(answer["platform"], "linux/arm64/v8");
    assert_eq!(answer["platform_digest"], arm.digest.as_str());
    assert_eq!(answer["config"]["architecture"], "arm64");
    assert_eq!(
        answer["config"],
        image::inspect_config(&world.registry, "multi/img:1", Some("linux/arm64/v8"))
    );
    assert_eq!(answer["layers"], layers_of(&arm.manifest));
    assert_eq!(answer["size"], total_size(&arm.manifest));
    // without platform: the daemon's own
    let own = get_ok(&world, "/inspect", &[("image", &ref_)]).await;
    assert_eq!(
        own["platform_digest"],
        index.entry_digest(upload::host_arch()).as_str()
    );
}

#[tokio::test]
async fn localhost_registries_are_spoken_to_over_plain_http() {
    let world = World::start().await;
    let pushed = world.push(&AMD64, "local/img:1", Format::Oci);
    let image = format!("localhost:{}/local/img:1", world.registry.addr.port());
    let answer = get_ok(&world, "/digest", &[("image", &image)]).await;
    assert_eq!(answer["digest"], pushed.digest.as_str());
    let job = world
        .pull(json!({"image": image, "dest": "via-localhost", "platform": "linux/amd64"}))
        .await;
    job.expect_succeeded();
    assert_same_tree(&AMD64.unpack_reference().rootfs, &job.dest());
}
