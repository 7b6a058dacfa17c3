//! The pull pipeline's checks and its use of the cache: each layer's uncompressed stream
//! is checked against the config's `rootfs.diff_ids` (layouts `rootfs` and `git`; `oci`
//! copies blobs and checks no diff_id), and every blob, the config included, comes from the
//! cache on a warm pull (no blob request at all; concurrent pulls share one download).
//! Requests are counted in the fault proxy's log.

use std::time::Duration;

use crate::common;

use common::hostile_tar::{gzip, tar};
use common::upload::{self, host_arch};
use common::{Format, ImageBuilder, Rule, TarEntry, World, assert_same_tree, fixtures, tools};
use serde_json::{Value, json};

const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Pushes `repo:tag`, a Docker schema 2 image of `layers` (blob, media type) whose config
/// lists `diff_ids` as they are given (right or forged).
async fn push_image(
    world: &World,
    repo_tag: &str,
    layers: &[(Vec<u8>, &str)],
    diff_ids: Value,
) -> Value {
    let (repo, tag) = repo_tag.rsplit_once(':').expect("repo:tag");
    let mut descriptors = Vec::new();
    for (blob, media_type) in layers {
        let digest = upload::upload_blob(&world.registry, repo, blob).await;
        descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = upload::upload_blob(&world.registry, repo, &config).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descriptors,
    });
    let raw = serde_json::to_vec(&manifest).unwrap();
    upload::put_manifest(
        &world.registry,
        repo,
        tag,
        "application/vnd.docker.distribution.manifest.v2+json",
        &raw,
    )
    .await;
    manifest
}

/// What the test's root holds (names), so that a failed pull is seen to leave nothing.
fn root_entries(world: &World) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(world.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn pull(world: &World, repo_tag: &str, dest: &str, layout: &str) -> common::Job {
    world
        .pull(json!({"image": world.image(repo_tag), "dest": dest, "layout": layout}))
        .await
}

#[tokio::test]
async fn a_layer_whose_diff_id_is_wrong_fails_the_pull_and_nothing_reaches_dest() {
    let world = World::start().await;
    // Right diff_ids pass, whatever the layer's compression: an uncompressed Docker layer
    // (its diff_id is its digest) and a gzip layer with zero padding after its end
    // blocks (the diff_id covers the whole stream, which the tar reader stops short of).
    let plain = tar(&[TarEntry::file("plain", b"uncompressed")]);
    let mut padded = tar(&[TarEntry::file("padded", b"gzipped")]);
    padded.resize(padded.len() + 20 * 512, 0);
    let right = json!([tools::digest_of(&plain), tools::digest_of(&padded)]);
    let layers = [(plain.clone(), DOCKER_TAR), (gzip(&padded), DOCKER_GZIP)];
    push_image(&world, "diffid/img:right", &layers, right).await;
    for layout in ["rootfs", "git"] {
        let dest = format!("right-{layout}");
        let job = pull(&world, "diffid/img:right", &dest, layout).await;
        job.expect_succeeded();
        assert_eq!(
            std::fs::read(job.dest().join("plain")).unwrap(),
            b"uncompressed"
        );
        assert_eq!(
            std::fs::read(job.dest().join("padded")).unwrap(),
            b"gzipped"
        );
    }

    // The same layers, the second one's diff_id forged (the digest of other content).
    let forged = json!([
        tools::digest_of(&plain),
        tools::digest_of(b"not this layer")
    ]);
    push_image(&world, "diffid/img:forged", &layers, forged).await;
    let before = root_entries(&world);
    for layout in ["rootfs", "git"] {
        let dest = format!("forged-{layout}");
        let job = pull(&world, "diffid/img:forged", &dest, layout).await;
        job.expect_failed("diff_id_mismatch");
        let message = job.0["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&tools::digest_of(&padded)),
            "the message names the diff_id found: {message}"
        );
        assert!(!world.root().join(&dest).exists(), "{layout}: dest made");
        assert_eq!(
            root_entries(&world),
            before,
            "{layout}: no staging tree or repository left"
        );
    }
    // `oci` copies the blobs, verified by digest, and applies nothing: no diff_id check.
    pull(&world, "diffid/img:forged", "forged-oci", "oci")
        .await
        .expect_succeeded();
}

#[tokio::test]
async fn a_config_without_one_diff_id_per_layer_is_refused() {
    let world = World::start().await;
    let layer = tar(&[TarEntry::file("file", b"content")]);
    let diff_id = tools::digest_of(&layer);
    let layers = [(gzip(&layer), OCI_GZIP)];
    let before = root_entries(&world);
    let cases = [
        ("two", json!([diff_id, diff_id]), "diff_id_mismatch"),
        ("none", json!([]), "diff_id_mismatch"),
        ("bad", json!(["sha256:nothex"]), "invalid_config"),
    ];
    for (tag, diff_ids, code) in cases {
        push_image(&world, &format!("diffid/count:{tag}"), &layers, diff_ids).await;
        let job = pull(&world, &format!("diffid/count:{tag}"), tag, "rootfs").await;
        job.expect_failed(code);
        assert_eq!(root_entries(&world), before, "{tag}: something left");
    }
}

/// The GETs and HEADs of blobs (any digest, any repository) the registry was asked.
fn blob_requests(world: &World) -> Vec<String> {
    world
        .proxy()
        .log()
        .into_iter()
        .filter(|l| l.path.contains("/blobs/"))
        .map(|l| format!("{} {} -> {}", l.method, l.path, l.status))
        .collect()
}

#[tokio::test]
async fn a_warm_pull_makes_no_blob_request_and_bypass_fetches_them_all() {
    let world = World::builder().proxy().start().await;
    let image = fixtures::small("warm");
    let pushed = world.push(&image, "warm/img:1", Format::Oci);
    let config = pushed.manifest["config"]["digest"].as_str().unwrap();
    world.pull_ok(&world.image("warm/img:1"), "cold").await;
    assert!(
        world.cached_blobs().iter().any(|b| b == config),
        "the config is cached: {:?}",
        world.cached_blobs()
    );
    world.assert_cache_verified();

    world.proxy().clear_log();
    let warm = world.pull_ok(&world.image("warm/img:1"), "warm").await;
    assert_eq!(
        blob_requests(&world),
        Vec::<String>::new(),
        "a warm pull asks for no blob:\n{}",
        world.proxy().log_text()
    );
    let manifests = world
        .proxy()
        .log()
        .iter()
        .filter(|l| l.method == "GET" && l.path.contains("/manifests/1"))
        .count();
    assert_eq!(manifests, 1, "a tag may move: its manifest is asked for");
    assert_same_tree(&image.unpack_reference().rootfs, &warm.dest());

    // `cache: bypass` reads nothing from the cache: the config comes from the registry too.
    world.proxy().clear_log();
    let cached = world.cached_blobs();
    world
        .pull(json!({"image": world.image("warm/img:1"), "dest": "bypass", "cache": "bypass"}))
        .await
        .expect_succeeded();
    for blob in std::iter::once(config.to_string()).chain(pushed.layer_digests()) {
        let gets = world.proxy().blob_gets(&blob);
        assert_eq!(gets.len(), 1, "bypass fetches {blob} once: {gets:?}");
    }
    assert_eq!(world.cached_blobs(), cached);
}

#[tokio::test]
async fn a_pull_with_sync_false_flushes_nothing_and_a_default_pull_flushes_its_tree() {
    let world = World::start().await;
    let image = fixtures::small("sync");
    world.push(&image, "sync/img:1", Format::Oci);
    let flushes = async || common::metric(&world.metrics().await, "hoist_tree_flushes_total ");
    let before = flushes().await;
    let job = world
        .pull(json!({"image": world.image("sync/img:1"), "dest": "unsynced", "sync": false}))
        .await;
    job.expect_succeeded();
    assert_eq!(job.0["request"]["sync"], false, "{job:?}");
    assert_same_tree(&image.unpack_reference().rootfs, &job.dest());
    assert_eq!(
        flushes().await,
        before,
        "a pull with sync false calls no syncfs"
    );

    let job = world.pull_ok(&world.image("sync/img:1"), "synced").await;
    assert_eq!(job.0["request"]["sync"], true, "{job:?}");
    assert_eq!(
        flushes().await,
        before + 1,
        "a default pull flushes its tree once"
    );

    let resp = world
        .post("/pulls")
        .json(&json!({"image": world.image("sync/img:1"), "dest": "x", "sync": "no"}))
        .send()
        .await
        .unwrap();
    common::expect_problem(resp, 400, Some("invalid_request")).await;
}

#[tokio::test]
async fn pulls_of_one_image_at_once_share_each_layers_inflate() {
    let world = World::builder().proxy().workers(4).start().await;
    let image = ImageBuilder::incompressible_layers(3, 150_000, 31);
    let pushed = world.push(&image, "inflate/img:1", Format::Oci);
    let first = pushed.layer_digests()[0].clone();
    // The first layer arrives slowly: its inflate waits for bytes while the pulls meet.
    world.proxy().add_rule(Rule::slow_gets(&first, 150_000));
    let count = async |name: &str| common::metric(&world.metrics().await, name);
    let ids: Vec<String> = futures_util::future::join_all(["i1", "i2", "i3"].map(|dest| {
        world.submit_pull(json!({"image": world.image("inflate/img:1"), "dest": dest}))
    }))
    .await
    .iter()
    .map(|job| job.id().to_owned())
    .collect();
    let reference = image.unpack_reference();
    for id in &ids {
        let job = world.wait_job(id).await;
        job.expect_succeeded();
        assert_same_tree(&reference.rootfs, &job.dest());
    }
    let (started, joined) = (
        count("hoist_layer_inflates_total ").await,
        count("hoist_layer_inflates_joined_total ").await,
    );
    assert_eq!(started + joined, 9, "3 pulls of 3 layers");
    assert!(
        joined >= 2,
        "the slow layer was inflated once for the three pulls: {started} inflates, {joined} joined"
    );
    assert_eq!(world.proxy().blob_gets(&first).len(), 1);
}

#[tokio::test]
async fn the_next_layer_inflates_while_the_one_below_is_written() {
    let world = World::builder().proxy().start().await;
    let image = ImageBuilder::incompressible_layers(2, 300_000, 33);
    let pushed = world.push(&image, "inflate/ahead:1", Format::Oci);
    let first = pushed.layer_digests()[0].clone();
    let blob_bytes: u64 = pushed.manifest["config"]["size"].as_u64().unwrap()
        + pushed
            .layers()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>();
    // The first layer takes about 4 s to arrive, and is applied as it does; the second
    // comes at once.
    world.proxy().add_rule(Rule::slow_gets(&first, 75_000));
    let job = world
        .submit_pull(json!({"image": world.image("inflate/ahead:1"), "dest": "ahead"}))
        .await;
    let since = std::time::Instant::now();
    let (started, downloaded) = loop {
        let metrics = world.metrics().await;
        let started = common::metric(&metrics, "hoist_layer_inflates_total ");
        let downloaded = common::metric(&metrics, "hoist_registry_download_bytes_total ");
        if started == 2 || since.elapsed() > Duration::from_secs(20) {
            break (started, downloaded);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(started, 2, "the second layer's inflate never started");
    // Read from the same answer: the first layer was still arriving, so it was still
    // being written (it is applied to the end of its bytes).
    assert!(
        downloaded < blob_bytes,
        "both inflates started while the first layer was still being written: \
         {downloaded} of the blobs' {blob_bytes} bytes were in"
    );
    let done = world.wait_job(job.id()).await;
    done.expect_succeeded();
    assert_same_tree(&image.unpack_reference().rootfs, &done.dest());
    let started = common::metric(&world.metrics().await, "hoist_layer_inflates_total ");
    assert_eq!(started, 2, "one inflate per layer");
}

#[tokio::test]
async fn the_pull_whose_inflate_others_share_may_be_cancelled_and_they_still_succeed() {
    let world = World::builder().proxy().workers(4).start().await;
    let image = ImageBuilder::incompressible_layers(2, 150_000, 32);
    let pushed = world.push(&image, "inflate/cancel:1", Format::Oci);
    let first = pushed.layer_digests()[0].clone();
    world.proxy().add_rule(Rule::slow_gets(&first, 50_000));
    let body = |dest: &str| json!({"image": world.image("inflate/cancel:1"), "dest": dest});
    let starter = world.submit_pull(body("c1")).await;
    let extracting = |j: &common::Job| j.0["progress"]["layers"][0]["state"] == "extracting";
    world
        .wait_until(starter.id(), Duration::from_secs(20), extracting)
        .await;
    let others = [
        world.submit_pull(body("c2")).await,
        world.submit_pull(body("c3")).await,
    ];
    let joined =
        async || common::metric(&world.metrics().await, "hoist_layer_inflates_joined_total ");
    let start = std::time::Instant::now();
    while joined().await < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the other pulls never joined the first one's inflate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pull whose follower feeds the shared inflate goes; the blob is still read.
    let cancelled = world.cancel_job(starter.id()).await;
    assert_eq!(cancelled.status(), "cancelled", "{cancelled:?}");
    let reference = image.unpack_reference();
    for job in &others {
        let job = world.wait_job(job.id()).await;
        job.expect_succeeded();
        assert_same_tree(&reference.rootfs, &job.dest());
    }
    assert!(
        !world.root().join("c1").exists(),
        "the cancelled pull left nothing"
    );
}

#[tokio::test]
async fn concurrent_cold_pulls_share_one_config_download() {
    let world = World::builder().proxy().workers(4).start().await;
    let image = fixtures::small("shared");
    let pushed = world.push(&image, "shared/img:1", Format::Oci);
    let config = pushed.manifest["config"]["digest"].as_str().unwrap();
    // slow enough that the pulls overlap
    world.proxy().add_rule(Rule::slow_gets(config, 2_000));
    let dests = ["s1", "s2", "s3"];
    let mut ids = Vec::new();
    for dest in dests {
        let job = world
            .submit_pull(json!({"image": world.image("shared/img:1"), "dest": dest}))
            .await;
        ids.push(job.id().to_owned());
    }
    for id in &ids {
        world.wait_job(id).await.expect_succeeded();
    }
    let gets = world.proxy().blob_gets(config);
    assert_eq!(
        gets.len(),
        1,
        "one download of the config for all the pulls:\n{}",
        world.proxy().log_text()
    );
}
