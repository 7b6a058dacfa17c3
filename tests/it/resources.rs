//! The daemon gives back what a load took: descriptors (registry connections, client
//! connections, database handles) and memory return to about where they started once
//! the work settles, and concurrent `GET /digest` of one image share one registry
//! request. Measured from `/proc/<pid>` of the real daemon.
//!
//! Before the fixes: 20 descriptors at start, 231 after the load (200 idle connections to
//! the registry, one per digest request, kept for up to 3 minutes); 27 MiB of RSS before
//! a 200 MiB build, 61 MiB after it.

use crate::common;

use std::time::{Duration, Instant};

use common::hostile_tar::tar;
use common::resources::{
    connections_to, daemon_pid, fd_count, fd_targets, rss_kib, settles_to, write_random_file,
};
use common::{Job, TarEntry, World};
use futures_util::future::join_all;
use serde_json::json;

/// Idle connections the daemon may keep to one registry once a load is over.
const IDLE_REGISTRY_CONNECTIONS: usize = 8;

/// Descriptors the daemon may hold after a load beyond those it held before: the idle
/// registry connections above, and the database pool, which grows to its 8 connections
/// (2 descriptors each: the database and its WAL) under load and keeps them a while.
const FD_SLACK: usize = IDLE_REGISTRY_CONNECTIONS + 16;

/// How long descriptors get to come back once the load is over.
const FD_SETTLE: Duration = Duration::from_secs(10);

/// Resident memory the daemon may keep after a build of [`BIG_BUILD`] bytes beyond what
/// it held before it.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// A build's source of this many incompressible bytes.
const BIG_BUILD: usize = 200 << 20;

async fn events_to_end(world: &World, id: &str) {
    let resp = world
        .get(&format!("/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "GET /jobs/{id}/events");
    // the stream closes after the job ends
    resp.bytes().await.expect("event stream");
}

#[tokio::test]
async fn descriptors_come_back_after_watchers_pulls_builds_and_digests() {
    let world = World::builder().proxy().start().await;
    let layer = |label: &str| {
        tar(&[
            TarEntry::dir("etc"),
            TarEntry::file("etc/label", label.as_bytes()),
        ])
    };
    world.push_layers("load/base:1", &[layer("base")]).await;
    let target = world.push_layers("load/digest:1", &[layer("digest")]).await;
    for name in ["src-a", "src-b"] {
        let dir = world.root().join(name);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/label"), name).unwrap();
    }
    let pid = daemon_pid(&world.hoist);
    let (status, _) = world.get_json("/healthz").await;
    assert_eq!(status, 200);
    let start_fds = fd_count(pid);

    let mut jobs: Vec<Job> = Vec::new();
    for i in 0..8 {
        let body = json!({"image": world.image("load/base:1"), "dest": format!("pull-{i}")});
        jobs.push(world.submit_pull(body).await);
    }
    for (i, source) in ["src-a", "src-b"].into_iter().enumerate() {
        let body = json!({"source": source, "target": world.image(&format!("load/built:{i}"))});
        jobs.push(world.submit_job("/builds", "build", &body).await);
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.id().to_owned()).collect();
    // 16 watchers: an event stream and a long poll on each of the first 8 jobs
    let streams = join_all(ids.iter().take(8).map(|id| events_to_end(&world, id)));
    let polls = join_all(ids.iter().take(8).map(|id| world.wait_job(id)));
    let digest_path = format!("/digest?image={}", world.image("load/digest:1"));
    world.proxy().clear_log();
    let digests = join_all((0..200).map(|_| world.get_json(&digest_path)));
    // and 100 that cannot share: each its own registry request, its own connection
    let missing_paths: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "/digest?image={}",
                world.image(&format!("load/missing:{i}"))
            )
        })
        .collect();
    let missing = join_all(missing_paths.iter().map(|p| world.get_json(p)));
    let ((), _, answers, missing) = tokio::join!(
        async {
            streams.await;
        },
        polls,
        digests,
        missing
    );
    for (status, body) in &missing {
        assert_eq!(*status, 404, "GET /digest of a missing tag: {body}");
        assert_eq!(body["code"], "manifest_unknown", "{body}");
    }
    for (status, body) in &answers {
        assert_eq!(*status, 200, "GET {digest_path}: {body}");
        assert_eq!(body["digest"], target.digest.as_str(), "{body}");
    }
    let manifest_requests = world
        .proxy()
        .log()
        .iter()
        .filter(|l| l.path.contains("/load/digest/manifests/"))
        .count();
    for id in &ids {
        world.wait_job(id).await.expect_succeeded();
    }

    let proxy_port = world.proxy().addr.port();
    let idle = settles_to(FD_SETTLE, IDLE_REGISTRY_CONNECTIONS as u64, || {
        connections_to(pid, proxy_port) as u64
    })
    .await;
    let settled = settles_to(FD_SETTLE, (start_fds + FD_SLACK) as u64, || {
        fd_count(pid) as u64
    })
    .await;
    eprintln!(
        "descriptors: {start_fds} at start, {settled} after the load, {idle} of them \
         connections to the registry; {manifest_requests} registry requests for 200 digests"
    );
    assert!(
        manifest_requests <= 20,
        "200 concurrent GET /digest of one image made {manifest_requests} registry requests \
         (single flight expected)\n{}",
        world.proxy().log_text()
    );
    assert!(
        idle as usize <= IDLE_REGISTRY_CONNECTIONS,
        "{idle} connections to the registry still open {FD_SETTLE:?} after the load \
         (at most {IDLE_REGISTRY_CONNECTIONS} idle ones expected)"
    );
    assert!(
        settled as usize <= start_fds + FD_SLACK,
        "the daemon held {start_fds} descriptors before the load and {settled} {FD_SETTLE:?} \
         after it: {:#?}",
        fd_targets(pid)
    );
}

#[tokio::test]
async fn memory_comes_back_after_a_big_build_and_its_pull() {
    let world = World::start().await;
    let source = world.root().join("big");
    std::fs::create_dir_all(&source).unwrap();
    write_random_file(&source.join("random.bin"), BIG_BUILD, 7);
    let small = world.root().join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("label"), "small").unwrap();
    let pid = daemon_pid(&world.hoist);
    let build = |source: &str, tag: &str| json!({"source": source, "target": world.image(&format!("mem/app:{tag}"))});
    // a small build and pull first, so what any job sets up once is in the baseline
    let job = world
        .submit_job("/builds", "build", &build("small", "warm"))
        .await;
    world.wait_job(job.id()).await.expect_succeeded();
    world.pull_ok(&world.image("mem/app:warm"), "warm").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let started = Instant::now();
    let job = world
        .submit_job("/builds", "build", &build("big", "1"))
        .await;
    world.wait_job(job.id()).await.expect_succeeded();
    let built = started.elapsed();
    let after_build = settles_to(Duration::from_secs(5), before + RSS_SLACK_KIB, || {
        rss_kib(pid)
    })
    .await;
    let started = Instant::now();
    world.pull_ok(&world.image("mem/app:1"), "big-pulled").await;
    let pulled = started.elapsed();
    let after_pull = settles_to(Duration::from_secs(5), before + RSS_SLACK_KIB, || {
        rss_kib(pid)
    })
    .await;
    eprintln!(
        "RSS: {before} KiB before, {after_build} KiB after a {} MiB build ({built:?}), \
         {after_pull} KiB after pulling it ({pulled:?})",
        BIG_BUILD >> 20,
    );
    assert!(
        after_build <= before + RSS_SLACK_KIB,
        "RSS grew from {before} KiB to {after_build} KiB over one {} MiB build",
        BIG_BUILD >> 20
    );
    assert!(
        after_pull <= before + RSS_SLACK_KIB,
        "RSS grew from {before} KiB to {after_pull} KiB over a {} MiB build and its pull",
        BIG_BUILD >> 20
    );
}
