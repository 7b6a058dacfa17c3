//! Crash leftovers: a daemon killed (SIGKILL) while pulls build their trees leaves their
//! scratch folders (`.hoist-staging-<job>` beside each dest, and the `git` layout's
//! repository `.hoist-staging-<job>.git` beside that) on disk; the restarted daemon
//! removes every one it recorded, wherever the dest was, and nothing else: a user's own
//! folder that merely looks like a staging folder stays, as do the user's files beside
//! the dests.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use common::tree::snapshot;
use common::{Fault, Format, Image, Job, RegistryAuth, Rule, World, fixtures};
use serde_json::json;

/// A small layer, then 1.5 MB that the proxy sends at 100 kB/s: a pull spends 15 s on it
/// with the first layer already applied (and committed, for `git`).
static BIG: LazyLock<Image> = LazyLock::new(|| fixtures::big(1_500_000, 17));
const PASSWORD: &str = "leftover-horse-battery-staple";

/// Files and folders of the user's own, beside and above the dests: some named like
/// hoist's scratch folders. Returns their paths.
fn user_files(world: &World) -> Vec<PathBuf> {
    let paths = [
        world.root().join("a/b/notes.txt"),
        world.root().join("a/b/.hoist-staging-foo/keep"),
        world.root().join("a/b/.hoist-staging-foo.git/HEAD"),
        world.root().join(".hoist-staging-mine/file"),
        world.root2().join("x/y/notes.txt"),
    ];
    for path in &paths {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("the user's own {}", path.display())).unwrap();
    }
    paths.to_vec()
}

/// Every path under `roots` with a component named like a hoist scratch folder
/// (`.hoist-staging-*`, `*.git`), except those under `kept`.
fn scratch_under(roots: &[&Path], kept: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(|r| r.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let mine = kept.iter().any(|k| k.starts_with(&path));
            if !mine && (name.starts_with(".hoist-staging-") || name.ends_with(".git")) {
                found.push(path.clone());
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

type Snapshots = BTreeMap<PathBuf, BTreeMap<String, String>>;

/// Each user path's content and snapshot line (inode, mode, owner, times).
fn snapshots(paths: &[PathBuf]) -> Snapshots {
    paths
        .iter()
        .map(|p| {
            let content = std::fs::read_to_string(p).unwrap_or_else(|e| format!("{p:?}: {e}"));
            let mut snap = snapshot(p.parent().unwrap(), &[]);
            // the folder beside the dests: its own entries come and go with the dests
            snap.retain(|name, _| name != "." && p.file_name().unwrap() == name.as_str());
            snap.insert("content".into(), content);
            (p.clone(), snap)
        })
        .collect()
}

/// Panics unless the daemon's scratch folder `dir` exists and is empty.
fn assert_empty_dir(dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?} must exist: {e}"))
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(entries.is_empty(), "{dir:?} is not empty: {entries:?}");
}

/// Submits three pulls of `BIG` (dests `a/b/dest`, `a/b/gitdest` with `layout: git`, and
/// the second root's `x/y/dest`, each with `extra` fields) while its big layer comes
/// slowly, waits until each has its first layer in its staging tree (and git commit),
/// checks that the scratch is there, and kills the daemon (SIGKILL). Returns the jobs.
async fn kill_pulls_mid_way(world: &mut World, extra: &serde_json::Value) -> Vec<Job> {
    let pushed = world.push(&BIG, "private/big:1", Format::Oci);
    let big_layer = pushed.layer_digests()[1].clone();
    world
        .proxy()
        .add_rule(Rule::slow_gets(&format!("/blobs/{big_layer}"), 100_000));
    let image = world.image("private/big:1");
    let mut jobs: Vec<Job> = Vec::new();
    for (dest, layout) in [
        (world.root().join("a/b/dest"), "rootfs"),
        (world.root().join("a/b/gitdest"), "git"),
        (world.root2().join("x/y/dest"), "rootfs"),
    ] {
        let mut body = json!({"image": image, "dest": dest, "layout": layout});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        jobs.push(world.submit_pull(body).await);
    }
    for job in &jobs {
        world
            .wait_until(job.id(), Duration::from_secs(60), |j| {
                j.status() == "running" && j.0["progress"]["layers_done"].as_u64().unwrap_or(0) >= 1
            })
            .await;
    }
    let staging = |parent: &Path, job: &Job| parent.join(format!(".hoist-staging-{}", job.id()));
    let git = |parent: &Path, job: &Job| parent.join(format!(".hoist-staging-{}.git", job.id()));
    let (ab, xy) = (world.root().join("a/b"), world.root2().join("x/y"));
    for path in [
        staging(&ab, &jobs[0]).join("etc/os-release"),
        staging(&ab, &jobs[1]).join("etc/os-release"),
        git(&ab, &jobs[1]).join("HEAD"),
        staging(&xy, &jobs[2]).join("etc/os-release"),
    ] {
        assert!(path.exists(), "{path:?} is being built before the kill");
    }
    world.hoist.kill();
    world.proxy().clear_rules();
    jobs
}

/// After the restarted daemon ended the killed jobs: the user's files untouched, no
/// scratch folder left anywhere under the roots, no dest made, the cache's and the data
/// folder's `tmp/` there and empty.
fn assert_nothing_left(world: &World, user: &[PathBuf], user_before: &Snapshots) {
    let after = snapshots(user);
    let touched: Vec<_> = user_before
        .iter()
        .filter(|(path, before)| after.get(*path) != Some(before))
        .map(|(path, before)| format!("{path:?}: {before:?} -> {:?}", after.get(path)))
        .collect();
    assert_eq!(
        touched,
        Vec::<String>::new(),
        "the user's own files (some named like staging folders) were touched"
    );
    assert_eq!(
        scratch_under(&[world.root(), world.root2()], user),
        Vec::<PathBuf>::new(),
        "scratch folders of the killed jobs are left under the roots"
    );
    for dest in [
        world.root().join("a/b/dest"),
        world.root().join("a/b/gitdest"),
        world.root2().join("x/y/dest"),
    ] {
        assert!(dest.symlink_metadata().is_err(), "{dest:?} was created");
    }
    assert_empty_dir(&world.cache_dir().join("tmp"));
    assert_empty_dir(&world.hoist.data_dir.join("tmp"));
}

#[tokio::test]
async fn pulls_with_credentials_killed_mid_way_leave_no_staging_or_git_folder() {
    let mut world = World::builder()
        .auth(RegistryAuth::basic("frank", PASSWORD))
        .proxy()
        .workers(3)
        .start()
        .await;
    let user = user_files(&world);
    let user_before = snapshots(&user);
    let auth = json!({"auth": {"username": "frank", "password": PASSWORD}});
    let jobs = kill_pulls_mid_way(&mut world, &auth).await;
    world.restart_hoist();
    for job in &jobs {
        world
            .wait_job(job.id())
            .await
            .expect_failed("credentials_lost");
    }
    assert_nothing_left(&world, &user, &user_before);
}

/// A re-queued job's run would clear its own staging folder, but only if it gets that far:
/// here the registry refuses every manifest after the restart, so the runs fail while
/// resolving, and the trees of the killed runs must still go.
#[tokio::test]
async fn requeued_pulls_that_fail_before_staging_leave_no_staging_or_git_folder() {
    let mut world = World::builder().proxy().workers(3).start().await;
    let user = user_files(&world);
    let user_before = snapshots(&user);
    let jobs = kill_pulls_mid_way(&mut world, &json!({})).await;
    world.proxy().add_rule(Rule::new(
        Fault::TooManyRequests {
            retry_after_secs: 0,
        },
        "/manifests/",
    ));
    world.restart_hoist();
    for job in &jobs {
        world
            .wait_job(job.id())
            .await
            .expect_failed("too_many_requests");
    }
    assert_nothing_left(&world, &user, &user_before);
}
