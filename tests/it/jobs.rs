//! Jobs over their life: listing, events, cancellation (queued and running), surviving a
//! restart or a crash of the daemon with jobs queued and running, and what the network
//! does to a running pull: a connection dropped mid-body is resumed with `Range` and the
//! blob still verified; `429` with `Retry-After` is waited out.
//!
//! Slow and broken networks come from the fault proxy in front of the real registry.

use crate::common;

use std::sync::LazyLock;
use std::time::Duration;

use common::image::Unpacked;
use common::sse;
use common::{
    Fault, Format, Image, Job, Rule, World, assert_same_tree, expect_problem, fixtures, jobs_of,
};
use serde_json::{Value, json};

/// About 1.5 MB of incompressible layer: slow enough through a throttled proxy.
static BIG: LazyLock<Image> = LazyLock::new(|| fixtures::big(1_500_000, 42));
static BIG_REF: LazyLock<Unpacked> = LazyLock::new(|| BIG.unpack_reference());
static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("jobs"));

#[tokio::test]
async fn jobs_are_listed_newest_first_and_filtered() {
    let world = World::start().await;
    world.push(&SMALL, "jobs/small:1", Format::Oci);
    let first = world.pull_ok(&world.image("jobs/small:1"), "one").await;
    let second = world
        .pull(json!({"image": world.image("jobs/missing:1"), "dest": "two"}))
        .await;
    second.expect_failed("manifest_unknown");
    let ids = |v: &Value| -> Vec<String> {
        jobs_of(v)
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = world.get_json("/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&all), vec![second.id(), first.id()], "newest first");
    let (_, limited) = world.get_json("/jobs?limit=1").await;
    assert_eq!(ids(&limited), vec![second.id()]);
    let (_, ok) = world.get_json("/jobs?status=succeeded").await;
    assert_eq!(ids(&ok), vec![first.id()]);
    let (_, failed) = world.get_json("/jobs?status=failed&kind=pull").await;
    assert_eq!(ids(&failed), vec![second.id()]);
    let (_, builds) = world.get_json("/jobs?kind=build").await;
    assert!(ids(&builds).is_empty());
    // GET /jobs/{id} shows the same job as the list
    assert_eq!(world.job(first.id()).await.0, jobs_of(&all)[1]);
}

#[tokio::test]
async fn events_stream_states_and_progress_then_end() {
    let world = World::builder().proxy().start().await;
    world.push(&BIG, "jobs/big:1", Format::Oci);
    world
        .proxy()
        .add_rule(Rule::slow_gets("/blobs/", 1_000_000));
    let job = world
        .submit_pull(json!({"image": world.image("jobs/big:1"), "dest": "evented"}))
        .await;
    let resp = tokio::time::timeout(
        Duration::from_secs(120),
        world.get(&format!("/jobs/{}/events", job.id())).send(),
    )
    .await
    .expect("events answered")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let text = tokio::time::timeout(Duration::from_secs(120), resp.text())
        .await
        .expect("the stream ends after the job ends")
        .unwrap();
    let events = sse::parse_json(&text);
    assert!(events.len() >= 2, "{text}");
    assert_eq!(events[0].0, "state", "{text}");
    let (last_name, last) = events.last().unwrap();
    assert_eq!(last_name, "state");
    assert_eq!(last["status"], "succeeded", "{text}");
    let progress: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "progress")
        .map(|(_, v)| v)
        .collect();
    assert!(
        !progress.is_empty(),
        "a 1.5 MB download at 1 MB/s reports progress:\n{text}"
    );
    for p in &progress {
        for field in [
            "phase",
            "layers_done",
            "layers_total",
            "bytes_done",
            "bytes_total",
        ] {
            assert!(!p[field].is_null(), "progress without {field}: {p}");
        }
    }
    let done: Vec<u64> = progress
        .iter()
        .map(|p| p["bytes_done"].as_u64().unwrap())
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "bytes_done goes back: {done:?}"
    );
    // a finished job's stream is one state event, at once
    let resp = world
        .get(&format!("/jobs/{}/events", job.id()))
        .send()
        .await
        .unwrap();
    let again = sse::parse_json(&resp.text().await.unwrap());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1["status"], "succeeded");
}

#[tokio::test]
async fn cancelling_a_running_pull_leaves_no_dest_and_no_partial_blob() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&BIG, "jobs/big:1", Format::Oci);
    let big_layer = pushed.layer_digests()[1].clone();
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 100_000)); // 15 s for the big layer
    let job = world
        .submit_pull(json!({"image": world.image("jobs/big:1"), "dest": "cancelled"}))
        .await;
    world
        .wait_until(job.id(), Duration::from_secs(30), |j| {
            j.status() == "running" && j.0["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0
        })
        .await;
    let job = world.cancel_job(job.id()).await;
    assert_eq!(job.status(), "cancelled", "{job:?}");
    assert_eq!(job.error_code(), Some("cancelled"));
    assert!(job.result().is_null());
    assert!(
        !world.root().join("cancelled").exists(),
        "dest of a cancelled pull"
    );
    assert_eq!(
        std::fs::read_dir(world.root()).unwrap().count(),
        0,
        "nothing left in the root (no staging folder)"
    );
    assert!(
        !world.cached_blobs().contains(&big_layer),
        "half a blob in the cache"
    );
    world.assert_cache_verified();
    let mut tmp = world.cache_tmp_files();
    for _ in 0..50 {
        if tmp.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        tmp = world.cache_tmp_files();
    }
    assert_eq!(
        tmp,
        Vec::<std::path::PathBuf>::new(),
        "partial download left in tmp/"
    );
    // a finished job cannot be cancelled again
    let resp = world
        .delete(&format!("/jobs/{}", job.id()))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 409, Some("job_finished")).await;
}

#[tokio::test]
async fn cancelling_a_queued_pull_means_it_never_starts() {
    let world = World::builder().proxy().workers(1).start().await;
    world.push(&BIG, "jobs/big:1", Format::Oci);
    world.push(&SMALL, "jobs/small:1", Format::Oci);
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 100_000));
    let running = world
        .submit_pull(json!({"image": world.image("jobs/big:1"), "dest": "first"}))
        .await;
    world
        .wait_until(running.id(), Duration::from_secs(30), |j| {
            j.status() == "running"
        })
        .await;
    let queued = world
        .submit_pull(json!({"image": world.image("jobs/small:1"), "dest": "second"}))
        .await;
    assert_eq!(world.job(queued.id()).await.status(), "queued");
    let resp = world
        .delete(&format!("/jobs/{}", queued.id()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cancelled = Job(resp.json().await.unwrap());
    assert_eq!(
        cancelled.status(),
        "cancelled",
        "a queued job is cancelled at once"
    );
    assert!(cancelled.0.get("started_at").is_none(), "{cancelled:?}");
    // let the first one finish quickly
    world.proxy().clear_rules();
    world.wait_job(running.id()).await.expect_succeeded();
    let queued = world.job(queued.id()).await;
    assert_eq!(queued.status(), "cancelled");
    assert!(!world.root().join("second").exists());
    // and a succeeded job cannot be cancelled
    let resp = world
        .delete(&format!("/jobs/{}", running.id()))
        .send()
        .await
        .unwrap();
    expect_problem(resp, 409, Some("job_finished")).await;
}

/// One worker, a slow registry: one job running, two queued; then the daemon goes away
/// (`graceful`: SIGTERM, else SIGKILL) and comes back. Every job must then succeed.
async fn jobs_survive_the_daemon_going_away(graceful: bool) {
    let mut world = World::builder().proxy().workers(1).start().await;
    world.push(&BIG, "jobs/big:1", Format::Oci);
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 150_000));
    let mut ids = Vec::new();
    for dest in ["r1", "r2", "r3"] {
        let job = world
            .submit_pull(json!({"image": world.image("jobs/big:1"), "dest": dest}))
            .await;
        ids.push(job.id().to_owned());
    }
    world
        .wait_until(&ids[0], Duration::from_secs(30), |j| {
            j.status() == "running" && j.0["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0
        })
        .await;
    for id in &ids[1..] {
        assert_eq!(world.job(id).await.status(), "queued");
    }
    if graceful {
        world.restart_hoist();
    } else {
        world.hoist.kill();
        world.restart_hoist();
    }
    world.proxy().clear_rules();
    for (id, dest) in ids.iter().zip(["r1", "r2", "r3"]) {
        let job = world.wait_job(id).await;
        job.expect_succeeded();
        assert_same_tree(&BIG_REF.rootfs, &world.root().join(dest));
    }
    let mut names: Vec<String> = std::fs::read_dir(world.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["r1", "r2", "r3"], "leftovers beside the trees");
    assert!(
        world.cache_tmp_files().is_empty(),
        "{:?}",
        world.cache_tmp_files()
    );
    world.assert_cache_verified();
}

#[tokio::test]
async fn queued_and_running_jobs_complete_after_a_restart() {
    jobs_survive_the_daemon_going_away(true).await;
}

#[tokio::test]
async fn queued_and_running_jobs_complete_after_a_crash() {
    jobs_survive_the_daemon_going_away(false).await;
}

#[tokio::test]
async fn interrupted_download_resumes_with_range_and_is_still_verified() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&BIG, "jobs/big:1", Format::Oci);
    let layer = pushed.layer_digests()[1].clone();
    const DROP_AT: u64 = 500_000;
    world.proxy().add_rule(
        Rule::new(Fault::DropAfter(DROP_AT), &format!("/blobs/{layer}"))
            .method("GET")
            .times(1),
    );
    let job = world.pull_ok(&world.image("jobs/big:1"), "resumed").await;
    assert_same_tree(&BIG_REF.rootfs, &job.dest());
    let gets = world.proxy().blob_gets(&layer);
    assert_eq!(gets[0].fault, Some("drop"), "{}", world.proxy().log_text());
    let resumed: Vec<u64> = gets[1..]
        .iter()
        .filter(|g| g.status == 206)
        .filter_map(|g| {
            g.range
                .as_deref()?
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        resumed.iter().any(|&from| from > 0 && from <= DROP_AT),
        "no GET with `Range: bytes=N-` (0 < N <= {DROP_AT}) after the drop:\n{}",
        world.proxy().log_text()
    );
    assert!(world.cached_blobs().contains(&layer));
    world.assert_cache_verified();
}

#[tokio::test]
async fn retry_after_of_a_429_is_waited_out_for_blobs_and_manifests() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&SMALL, "jobs/small:1", Format::Oci);
    let layer = pushed.layer_digests()[0].clone();
    for path in [format!("/blobs/{layer}"), "/manifests/".to_owned()] {
        world.proxy().clear_log();
        world.proxy().add_rule(
            Rule::new(
                Fault::TooManyRequests {
                    retry_after_secs: 2,
                },
                &path,
            )
            .times(1),
        );
        let dest = if path.contains("blobs") {
            "after-429-blob"
        } else {
            "after-429-manifest"
        };
        let job = world
            .pull(json!({"image": world.image("jobs/small:1"), "dest": dest, "cache": "bypass"}))
            .await;
        job.expect_succeeded();
        let log: Vec<_> = world
            .proxy()
            .log()
            .into_iter()
            .filter(|l| l.path.contains(&path))
            .collect();
        let i = log
            .iter()
            .position(|l| l.status == 429)
            .unwrap_or_else(|| panic!("no 429 on {path}:\n{}", world.proxy().log_text()));
        let next = log
            .get(i + 1)
            .unwrap_or_else(|| panic!("no retry of {path}:\n{}", world.proxy().log_text()));
        let waited = next.at.duration_since(log[i].at);
        assert!(
            waited >= Duration::from_millis(1950),
            "retried {path} after {waited:?}, Retry-After said 2 s:\n{}",
            world.proxy().log_text()
        );
    }
}

#[tokio::test]
async fn a_registry_that_keeps_answering_429_fails_the_job_with_too_many_requests() {
    let world = World::builder().proxy().start().await;
    world.push(&SMALL, "jobs/small:1", Format::Oci);
    world.proxy().add_rule(Rule::new(
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        "/manifests/",
    ));
    let job = world
        .pull(json!({"image": world.image("jobs/small:1"), "dest": "never"}))
        .await;
    job.expect_failed("too_many_requests");
    assert!(!world.root().join("never").exists());
}
