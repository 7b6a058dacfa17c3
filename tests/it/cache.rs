//! The blob cache: what it holds after pulls (`GET /cache` against the files in
//! `$HOIST_CACHE_DIR/blobs/sha256/`), that a cached blob is not fetched again, that
//! `cache: bypass` neither reads nor writes it, that `DELETE /cache` empties it, and that
//! concurrent pulls of one image fetch each blob once. Fetches are counted in the fault
//! proxy's log (every request the registry got from the daemon).

use crate::common;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use common::{Format, Image, Pushed, Rule, World, assert_same_tree, fixtures};
use serde_json::json;

static IMAGE: LazyLock<Image> = LazyLock::new(|| fixtures::big(400_000, 3));

/// How many successful GETs of each layer of `pushed` the registry answered.
///
/// Layers only; the config goes through the cache too, which `pipeline` checks.
fn fetch_counts(world: &World, pushed: &Pushed) -> BTreeMap<String, usize> {
    pushed
        .layer_digests()
        .into_iter()
        .map(|d| {
            let n = world
                .proxy()
                .blob_gets(&d)
                .iter()
                .filter(|g| g.status == 200 || g.status == 206)
                .count();
            (d, n)
        })
        .collect()
}

fn each(pushed: &Pushed, n: usize) -> BTreeMap<String, usize> {
    pushed.layer_digests().into_iter().map(|d| (d, n)).collect()
}

fn blob_sizes(pushed: &Pushed) -> u64 {
    pushed.manifest["config"]["size"].as_u64().unwrap()
        + pushed
            .layers()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
}

#[tokio::test]
async fn pulled_blobs_are_cached_verified_and_not_fetched_again() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&IMAGE, "cache/img:1", Format::Oci);
    let first = world.pull_ok(&world.image("cache/img:1"), "first").await;
    assert_eq!(fetch_counts(&world, &pushed), each(&pushed, 1));
    for layer in pushed.layer_digests() {
        assert!(
            world.cached_blobs().contains(&layer),
            "layer {layer} not cached"
        );
    }
    world.assert_cache_verified();
    assert!(world.cache_tmp_files().is_empty());

    let second = world.pull_ok(&world.image("cache/img:1"), "second").await;
    assert_eq!(
        fetch_counts(&world, &pushed),
        each(&pushed, 1),
        "the second pull fetched cached blobs again:\n{}",
        world.proxy().log_text()
    );
    let reference = IMAGE.unpack_reference();
    assert_same_tree(&reference.rootfs, &first.dest());
    assert_same_tree(&reference.rootfs, &second.dest());
}

#[tokio::test]
async fn cache_stats_match_the_files_and_delete_empties_the_cache() {
    let world = World::builder().cache_max_bytes(1 << 40).start().await;
    let pushed = world.push(&IMAGE, "cache/img:1", Format::Oci);
    let (status, empty) = world.get_json("/cache").await;
    assert_eq!(status, 200);
    assert_eq!(
        empty,
        json!({"path": world.cache_dir().display().to_string(), "blobs": 0, "bytes": 0,
               "max_bytes": 1u64 << 40})
    );
    world.pull_ok(&world.image("cache/img:1"), "one").await;
    let files = world.cached_blobs();
    let on_disk: u64 = files
        .iter()
        .map(|d| {
            std::fs::metadata(world.cache_dir().join("blobs/sha256").join(&d[7..]))
                .unwrap()
                .len()
        })
        .sum();
    let (_, stats) = world.get_json("/cache").await;
    assert_eq!(stats["blobs"], files.len(), "{stats}");
    assert_eq!(stats["bytes"], on_disk, "{stats}");
    assert!(files.len() >= pushed.layer_digests().len());
    assert!(on_disk >= blob_sizes(&pushed) - pushed.manifest["config"]["size"].as_u64().unwrap());

    let resp = world.delete("/cache").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let report: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        report,
        json!({"removed_blobs": files.len(), "freed_bytes": on_disk})
    );
    assert!(
        world.cached_blobs().is_empty(),
        "{:?}",
        world.cached_blobs()
    );
    let (_, after) = world.get_json("/cache").await;
    assert_eq!(
        (after["blobs"].as_u64(), after["bytes"].as_u64()),
        (Some(0), Some(0))
    );
    // the pulled tree does not depend on the cache
    assert!(world.root().join("one/blob.bin").is_file());
    // and a pull after the purge works (fetching again)
    world.pull_ok(&world.image("cache/img:1"), "two").await;
    assert_eq!(world.cached_blobs(), files);
}

#[tokio::test]
async fn cache_bypass_leaves_the_cache_empty() {
    let world = World::start().await;
    world.push(&IMAGE, "cache/img:1", Format::Oci);
    let job = world
        .pull(json!({"image": world.image("cache/img:1"), "dest": "bypassed", "cache": "bypass"}))
        .await;
    job.expect_succeeded();
    assert_eq!(job.0["request"]["cache"], "bypass");
    assert_same_tree(&IMAGE.unpack_reference().rootfs, &job.dest());
    assert!(
        world.cached_blobs().is_empty(),
        "{:?}",
        world.cached_blobs()
    );
    assert!(
        world.cache_tmp_files().is_empty(),
        "{:?}",
        world.cache_tmp_files()
    );
    let (_, stats) = world.get_json("/cache").await;
    assert_eq!(
        (stats["blobs"].as_u64(), stats["bytes"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn cache_bypass_does_not_read_the_cache_either() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&IMAGE, "cache/img:1", Format::Oci);
    world.pull_ok(&world.image("cache/img:1"), "cached").await;
    let (_, before) = world.get_json("/cache").await;
    let files = world.cached_blobs();
    world.proxy().clear_log();
    let job = world
        .pull(json!({"image": world.image("cache/img:1"), "dest": "fresh", "cache": "bypass"}))
        .await;
    job.expect_succeeded();
    let counts = fetch_counts(&world, &pushed);
    for layer in pushed.layer_digests() {
        assert_eq!(
            counts[&layer],
            1,
            "bypass must fetch {layer} from the registry:\n{}",
            world.proxy().log_text()
        );
    }
    let (_, after) = world.get_json("/cache").await;
    assert_eq!(after, before);
    assert_eq!(world.cached_blobs(), files);
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_fetch_each_blob_once() {
    let world = World::builder().proxy().workers(4).start().await;
    let pushed = world.push(&IMAGE, "cache/img:1", Format::Oci);
    // slow enough that the three pulls overlap
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 400_000));
    let mut ids = Vec::new();
    for dest in ["c1", "c2", "c3"] {
        let job = world
            .submit_pull(json!({"image": world.image("cache/img:1"), "dest": dest}))
            .await;
        ids.push(job.id().to_owned());
    }
    let reference = IMAGE.unpack_reference();
    for (id, dest) in ids.iter().zip(["c1", "c2", "c3"]) {
        let job = world.wait_job(id).await;
        job.expect_succeeded();
        assert_same_tree(&reference.rootfs, &world.root().join(dest));
    }
    assert_eq!(
        fetch_counts(&world, &pushed),
        each(&pushed, 1),
        "each blob is fetched once, however many jobs want it:\n{}",
        world.proxy().log_text()
    );
    world.assert_cache_verified();
}

#[tokio::test]
async fn cache_max_bytes_evicts_the_least_recently_used_blobs() {
    let first = fixtures::big(300_000, 11);
    let second = fixtures::big(300_000, 12);
    // room for one image's blobs, not two
    let max = 450_000u64;
    let world = World::builder().cache_max_bytes(max).start().await;
    let a = world.push(&first, "evict/a:1", Format::Oci);
    let b = world.push(&second, "evict/b:1", Format::Oci);
    world.pull_ok(&world.image("evict/a:1"), "a").await;
    world.pull_ok(&world.image("evict/b:1"), "b").await;
    let big_a = a.layer_digests()[1].clone();
    let big_b = b.layer_digests()[1].clone();
    let mut cached = world.cached_blobs();
    for _ in 0..50 {
        if !cached.contains(&big_a) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        cached = world.cached_blobs();
    }
    assert!(
        !cached.contains(&big_a),
        "the older image's big layer stays: {cached:?}"
    );
    assert!(
        cached.contains(&big_b),
        "the newest image's big layer went: {cached:?}"
    );
    let (_, stats) = world.get_json("/cache").await;
    assert!(stats["bytes"].as_u64().unwrap() <= max, "{stats}");
    assert_eq!(stats["max_bytes"], max);
    world.assert_cache_verified();
    // both trees are whole: eviction never touches pulled trees
    assert_same_tree(&first.unpack_reference().rootfs, &world.root().join("a"));
    assert_same_tree(&second.unpack_reference().rootfs, &world.root().join("b"));
}
