//! Layers are applied while they download: the first files of a slowly served layer appear
//! in the job's staging tree while its blob is not yet in the cache, and whatever goes
//! wrong mid-stream (a corrupt byte, a cancel) leaves dest as it was, nothing cached under
//! the digest and no staging tree. Two pulls of one image that overlap follow one download
//! per blob. The registry sits behind the fault proxy, which paces and corrupts bodies.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use crate::common;

use common::{Fault, Format, Image, ImageBuilder, Rule, World, assert_same_tree};
use serde_json::json;

/// Bytes of the incompressible file after the layer's first file.
const BIG: usize = 3 << 20;
/// The pace of the slow layer: about three seconds for it.
const PACE: u64 = 1 << 20;

/// One layer: a small file first (in tar order), then `BIG` incompressible bytes, so the
/// first file is extracted long before the paced blob has been downloaded.
static IMAGE: LazyLock<Image> = LazyLock::new(|| {
    ImageBuilder::new()
        .layer(|r| {
            r.file("a-first", "the first entry\n")
                .incompressible("z-big", BIG, 9);
        })
        .build()
});

/// `.hoist-staging-<job>` beside `dest` (relative to the first root).
fn staging(world: &World, job: &str) -> PathBuf {
    world.root().join(format!(".hoist-staging-{job}"))
}

/// Waits until `path` exists, up to a deadline; whether it did.
async fn appears(path: &Path, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Waits until `what` holds, up to ten seconds; whether it did.
async fn eventually(what: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits for the layer's first file in the staging tree of `job` and checks that the
/// layer's blob is not in the cache yet: it is being applied while it downloads.
async fn first_file_while_downloading(world: &World, job: &str, layer: &str) {
    let first = staging(world, job).join("a-first");
    assert!(
        appears(&first, Duration::from_secs(20)).await,
        "layer 0's first file never appeared in {first:?} during its download:\n{}",
        world.proxy().log_text()
    );
    assert!(
        !world.cached_blobs().iter().any(|b| b == layer),
        "the first file appeared only once the blob was cached"
    );
    let progress = &world.job(job).await.0["progress"];
    assert_eq!(
        progress["layers"][0]["state"], "extracting",
        "layer 0 is extracting while it downloads: {progress}"
    );
}

fn layer_of(pushed: &common::Pushed) -> String {
    let layers = pushed.layer_digests();
    assert_eq!(layers.len(), 1);
    layers[0].clone()
}

#[tokio::test]
async fn a_layer_is_applied_while_it_downloads() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&IMAGE, "stream/img:1", Format::Oci);
    let layer = layer_of(&pushed);
    world.proxy().add_rule(Rule::slow_gets(&layer, PACE));
    let job = world
        .submit_pull(json!({"image": world.image("stream/img:1"), "dest": "streamed"}))
        .await;
    first_file_while_downloading(&world, job.id(), &layer).await;

    let done = world.wait_job(job.id()).await;
    done.expect_succeeded();
    assert_same_tree(&IMAGE.unpack_reference().rootfs, &done.dest());
    assert!(world.cached_blobs().contains(&layer));
    world.assert_cache_verified();
}

#[tokio::test]
async fn a_byte_corrupted_mid_stream_fails_digest_mismatch_and_leaves_nothing() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&IMAGE, "stream/bad:1", Format::Oci);
    let layer = layer_of(&pushed);
    // Flipped inside `z-big`'s data, well after `a-first` was extracted.
    let fault = Fault::SlowCorrupt {
        at: 2 << 20,
        bytes_per_sec: PACE,
    };
    world
        .proxy()
        .add_rule(Rule::new(fault, &layer).method("GET"));
    let job = world
        .submit_pull(json!({"image": world.image("stream/bad:1"), "dest": "bad"}))
        .await;
    first_file_while_downloading(&world, job.id(), &layer).await;

    let done = world.wait_job(job.id()).await;
    done.expect_failed("digest_mismatch");
    assert!(!world.root().join("bad").exists(), "dest made");
    assert!(!staging(&world, job.id()).exists(), "staging left");
    assert!(
        !world.cached_blobs().contains(&layer),
        "the bad blob is cached under its digest"
    );
    assert!(
        eventually(|| world.cache_tmp_files().is_empty()).await,
        "partial files left: {:?}",
        world.cache_tmp_files()
    );
}

#[tokio::test]
async fn cancelling_mid_stream_leaves_dest_as_it_was() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&IMAGE, "stream/cancel:1", Format::Oci);
    let layer = layer_of(&pushed);
    world.proxy().add_rule(Rule::slow_gets(&layer, PACE / 4));
    let dest = world.root().join("kept");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("mine"), "the user's file").unwrap();
    let job = world
        .submit_pull(json!({
            "image": world.image("stream/cancel:1"),
            "dest": "kept",
            "force": true,
        }))
        .await;
    first_file_while_downloading(&world, job.id(), &layer).await;

    let started = Instant::now();
    world.cancel_job(job.id()).await;
    assert_eq!(world.job(job.id()).await.status(), "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the cancel waited for the download: {:?}",
        started.elapsed()
    );
    let names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mine"], "dest changed");
    assert_eq!(
        std::fs::read_to_string(dest.join("mine")).unwrap(),
        "the user's file"
    );
    assert!(!staging(&world, job.id()).exists(), "staging left");
    assert!(!world.cached_blobs().contains(&layer));
    assert!(
        eventually(|| world.cache_tmp_files().is_empty()).await,
        "the download nobody follows goes on: {:?}",
        world.cache_tmp_files()
    );
}

#[tokio::test]
async fn overlapping_pulls_of_one_image_follow_one_download_per_blob() {
    let world = World::builder().proxy().workers(2).start().await;
    let pushed = world.push(&IMAGE, "stream/two:1", Format::Oci);
    let layer = layer_of(&pushed);
    world.proxy().add_rule(Rule::slow_gets(&layer, PACE));
    let mut jobs = Vec::new();
    for dest in ["one", "two"] {
        let job = world
            .submit_pull(json!({"image": world.image("stream/two:1"), "dest": dest}))
            .await;
        jobs.push(job.id().to_owned());
    }
    // Both apply the layer while its one download goes on.
    for job in &jobs {
        first_file_while_downloading(&world, job, &layer).await;
    }
    let reference = IMAGE.unpack_reference();
    for job in &jobs {
        let done = world.wait_job(job).await;
        done.expect_succeeded();
        assert_same_tree(&reference.rootfs, &done.dest());
    }
    for blob in pushed.blob_digests() {
        let gets: Vec<_> = world
            .registry
            .access_log_lines(&format!("/blobs/{blob}"))
            .into_iter()
            .filter(|l| l.contains("\"GET "))
            .collect();
        assert_eq!(gets.len(), 1, "one GET of {blob}: {gets:#?}");
    }
    world.assert_cache_verified();
}
