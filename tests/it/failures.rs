//! Pulls that must fail, and fail cleanly: content that does not match its digest (a
//! registry whose stored blob went bad, bytes corrupted on the wire, a wrong declared
//! size), missing tags, and hostile layers (`..`, absolute names, symlink and hardlink
//! escapes, whiteouts aimed outside the tree). A failed pull leaves `dest` as it was and
//! no unverified blob in the cache; a hostile layer changes nothing outside `dest`.
//!
//! The hostile layers are one table (containerd's `TestBreakouts` habit): a new escape is
//! a new row.

use crate::common;

use std::path::Path;
use std::sync::LazyLock;

use common::hostile_tar::tar;
use common::tree::{snapshot, snapshot_diff};
use common::upload;
use common::{Fault, Format, Image, Rule, TarEntry, World, fixtures};
use serde_json::json;

static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("failures"));

/// Makes a dest with content of its own, for "left as it was".
fn existing_tree(dest: &Path) {
    std::fs::create_dir_all(dest.join("kept/inner")).unwrap();
    std::fs::write(dest.join("kept/inner/file"), "the old tree").unwrap();
    std::os::unix::fs::symlink("kept/inner/file", dest.join("link")).unwrap();
}

/// Nothing unverified in the cache: no file for `digest`, every file true to its name,
/// nothing in `tmp/`.
fn assert_cache_clean(world: &World, digest: &str) {
    assert!(
        !world.cached_blobs().iter().any(|d| d == digest),
        "the bad blob {digest} is in the cache"
    );
    world.assert_cache_verified();
    assert!(
        world.cache_tmp_files().is_empty(),
        "partial blobs left: {:?}",
        world.cache_tmp_files()
    );
}

#[tokio::test]
async fn blob_that_does_not_match_its_digest_fails_and_leaves_dest_and_cache_clean() {
    // which blob goes bad: a layer, then the config
    for which in ["layer", "config"] {
        let world = World::start().await;
        let pushed = world.push(&SMALL, "bad/blob:1", Format::Oci);
        let digest = match which {
            "layer" => pushed.layer_digests()[0].clone(),
            _ => pushed.config_digest(),
        };
        world.registry.corrupt_blob(&digest);
        let dest = world.root().join("existing");
        existing_tree(&dest);
        let before = snapshot(world.root(), &[]);
        for force in [true, false] {
            let dest_name = if force { "existing" } else { "fresh" };
            let job = world
                .pull(
                    json!({"image": world.image("bad/blob:1"), "dest": dest_name, "force": force}),
                )
                .await;
            job.expect_failed("digest_mismatch");
            let message = job.0["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&digest[7..19]),
                "the message names the blob {digest}: {message}"
            );
            assert_eq!(
                snapshot_diff(&before, &snapshot(world.root(), &[])),
                Vec::<String>::new(),
                "a failed pull ({which}, force={force}) changed the root folder"
            );
            assert_cache_clean(&world, &digest);
        }
    }
}

#[tokio::test]
async fn bytes_corrupted_on_the_wire_fail_the_pull_and_are_not_cached() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&SMALL, "bad/wire:1", Format::Oci);
    let layer = pushed.layer_digests()[0].clone();
    // every time: a daemon may retry a bad download, but not succeed with one
    world
        .proxy()
        .add_rule(Rule::new(Fault::Corrupt { at: 20 }, &format!("/blobs/{layer}")).method("GET"));
    let job = world
        .pull(json!({"image": world.image("bad/wire:1"), "dest": "wire"}))
        .await;
    job.expect_failed("digest_mismatch");
    assert!(!world.root().join("wire").exists());
    assert_eq!(
        std::fs::read_dir(world.root()).unwrap().count(),
        0,
        "leftovers in the root"
    );
    assert_cache_clean(&world, &layer);
    // the same image, uncorrupted, then pulls fine: nothing bad was remembered
    world.proxy().clear_rules();
    world.pull_ok(&world.image("bad/wire:1"), "wire").await;
}

#[tokio::test]
async fn layer_longer_than_its_declared_size_fails_with_digest_mismatch() {
    let world = World::start().await;
    let layer = tar(&[TarEntry::file("file", b"content")]);
    let pushed = world.push_layers("bad/size:ok", &[layer]).await;
    // the same blobs under a manifest that declares the layer one byte short
    let mut manifest = pushed.manifest.clone();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    manifest["layers"][0]["size"] = json!(size - 1);
    let raw = serde_json::to_vec(&manifest).unwrap();
    upload::put_manifest(
        &world.registry,
        "bad/size",
        "short",
        "application/vnd.oci.image.manifest.v1+json",
        &raw,
    )
    .await;
    let job = world
        .pull(json!({"image": world.image("bad/size:short"), "dest": "short"}))
        .await;
    job.expect_failed("digest_mismatch");
    assert!(!world.root().join("short").exists());
    assert_cache_clean(&world, &pushed.layer_digests()[0]);
}

#[tokio::test]
async fn missing_tag_and_missing_repository_fail_with_manifest_unknown() {
    let world = World::start().await;
    world.push(&SMALL, "exists/img:1", Format::Oci);
    for image in ["exists/img:2", "nothing/here:1"] {
        let job = world
            .pull(json!({"image": world.image(image), "dest": "none"}))
            .await;
        job.expect_failed("manifest_unknown");
    }
    assert!(!world.root().join("none").exists());
}

#[tokio::test]
async fn unreachable_registry_fails_with_registry_unreachable() {
    let world = World::start().await;
    let port = common::tools::free_port(); // nothing listens there
    let job = world
        .pull(json!({"image": format!("127.0.0.1:{port}/gone/img:1"), "dest": "none"}))
        .await;
    job.expect_failed("registry_unreachable");
}

/// What a hostile row may end in. Either way nothing outside `dest` may change.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// The job fails with `invalid_layer` (and `dest` is not created): for hardlinks to
    /// files outside, whose target, resolved inside the tree, does not exist.
    Refused,
    /// Refused, or applied with everything kept inside `dest` (as containerd does with
    /// `..` and absolute names: resolved against the tree's root).
    Contained,
}

struct Row {
    name: &'static str,
    layers: Vec<Vec<TarEntry>>,
    outcome: Outcome,
}

/// The rows. `out` is an absolute folder outside every root, with `victim.txt` in it, and
/// `up` the same folder relative to `dest`; the root folder holding `dest` also has a
/// `sibling.txt`, which `../sibling.txt` would hit.
fn rows(out: &str, up: &str) -> Vec<Row> {
    use Outcome::*;
    use TarEntry as E;
    let victim = format!("{out}/victim.txt");
    let deep = format!("{}{}", "../".repeat(20), out.trim_start_matches('/'));
    vec![
        Row {
            name: "dotdot file over a sibling of dest",
            layers: vec![vec![E::file("../sibling.txt", b"pwned")]],
            outcome: Contained,
        },
        Row {
            name: "dotdot file to a folder outside the roots",
            layers: vec![vec![E::file(format!("{up}/victim.txt"), b"pwned")]],
            outcome: Contained,
        },
        Row {
            name: "deep dotdot path to an absolute folder",
            layers: vec![vec![E::file(format!("a/{deep}/new-file"), b"pwned")]],
            outcome: Contained,
        },
        Row {
            name: "absolute name of an existing file",
            layers: vec![vec![E::file(&victim, b"pwned")]],
            outcome: Contained,
        },
        Row {
            name: "absolute name of a new file",
            layers: vec![vec![E::file(format!("{out}/created"), b"pwned")]],
            outcome: Contained,
        },
        Row {
            name: "dotdot directory",
            layers: vec![vec![E::dir("../new-dir")]],
            outcome: Contained,
        },
        Row {
            name: "absolute symlink to a folder, then a file through it",
            layers: vec![vec![
                E::symlink("escape", out),
                E::file("escape/new-file", b"pwned"),
            ]],
            outcome: Contained,
        },
        Row {
            name: "relative symlink up and out, then a file through it",
            layers: vec![vec![
                E::symlink("escape", up),
                E::file("escape/victim.txt", b"pwned"),
            ]],
            outcome: Contained,
        },
        Row {
            name: "symlink chain out, then a file through it",
            layers: vec![vec![
                E::symlink("a", "b"),
                E::symlink("b", out),
                E::file("a/new-file", b"pwned"),
            ]],
            outcome: Contained,
        },
        Row {
            name: "symlink in a lower layer, file through it in an upper layer",
            layers: vec![
                vec![E::symlink("escape", out)],
                vec![E::file("escape/victim.txt", b"pwned")],
            ],
            outcome: Contained,
        },
        Row {
            name: "symlink to a file, then a regular file of the same name",
            layers: vec![vec![
                E::symlink("victim-link", &victim),
                E::file("victim-link", b"pwned"),
            ]],
            outcome: Contained,
        },
        Row {
            name: "symlink to a folder, then a directory of the same name",
            layers: vec![vec![
                E::symlink("d", out),
                E::dir("d").mode(0o777),
                E::file("d/new-file", b"pwned"),
            ]],
            outcome: Contained,
        },
        Row {
            name: "symlink to a folder, then a directory inside it",
            layers: vec![vec![E::symlink("s", out), E::dir("s/new-dir")]],
            outcome: Contained,
        },
        Row {
            name: "hardlink to an absolute file outside",
            layers: vec![vec![E::hardlink("hl", &victim)]],
            outcome: Refused,
        },
        Row {
            name: "hardlink up and out",
            layers: vec![vec![E::hardlink("hl", format!("{up}/victim.txt"))]],
            outcome: Refused,
        },
        Row {
            name: "hardlink through a symlink that leads out",
            layers: vec![vec![
                E::symlink("s", out),
                E::hardlink("hl", "s/victim.txt"),
            ]],
            outcome: Refused,
        },
        Row {
            name: "hardlink out, then content written to it",
            layers: vec![vec![E::hardlink("hl", &victim), E::file("hl", b"pwned")]],
            outcome: Refused,
        },
        Row {
            name: "whiteout of ../sibling",
            layers: vec![
                vec![E::file("keep", b"k")],
                vec![E::file("../.wh.sibling.txt", b"")],
            ],
            outcome: Contained,
        },
        Row {
            name: "whiteout through a symlink that leads out",
            layers: vec![
                vec![E::symlink("s", out)],
                vec![E::file("s/.wh.victim.txt", b"")],
            ],
            outcome: Contained,
        },
        Row {
            name: "opaque marker through a symlink that leads out",
            layers: vec![
                vec![E::symlink("s", out)],
                vec![E::file("s/.wh..wh..opq", b"")],
            ],
            outcome: Contained,
        },
        Row {
            name: "whiteout with an absolute name",
            layers: vec![
                vec![E::file("keep", b"k")],
                vec![E::file(format!("{out}/.wh.victim.txt"), b"")],
            ],
            outcome: Contained,
        },
        Row {
            name: "entry named only ..",
            layers: vec![vec![E::dir("..").mode(0o777)]],
            outcome: Contained,
        },
    ]
}

#[tokio::test]
async fn hostile_layers_change_nothing_outside_dest() {
    let world = World::start().await;
    let out = world.outside();
    std::fs::write(out.join("victim.txt"), "precious").unwrap();
    std::fs::write(world.root().join("sibling.txt"), "precious").unwrap();
    // dest is <world>/hoist/root-a/dest-N, and out is <world>/outside
    let hoist_dir = world.dir().join("hoist");
    assert_eq!(world.root().parent(), Some(hoist_dir.as_path()));
    let rows = rows(out.to_str().unwrap(), "../../../outside");
    // everything a row could reach, but the daemon's own files (database, cache, log)
    let watch = || {
        [
            ("root", snapshot(world.root(), &[])),
            ("outside", snapshot(&out, &[])),
            (
                "hoist",
                snapshot(&hoist_dir, &["data", "cache", "root-a", "hoist.log"]),
            ),
            (
                "world",
                snapshot(world.dir(), &["hoist", "registry", "outside"]),
            ),
        ]
    };
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let repo_tag = format!("hostile/row{i}:1");
        let layers: Vec<Vec<u8>> = row.layers.iter().map(|l| tar(l)).collect();
        world.push_layers(&repo_tag, &layers).await;
        let before = watch();
        let dest = format!("dest-{i}");
        let job = world
            .pull(json!({"image": world.image(&repo_tag), "dest": dest}))
            .await;
        let mut problems = Vec::new();
        match (job.status(), job.error_code()) {
            ("failed", Some("invalid_layer")) => {
                if world.root().join(&dest).exists() {
                    problems.push("refused, but dest was created".to_owned());
                }
            }
            ("succeeded", _) if row.outcome == Outcome::Contained => {}
            _ => problems.push(format!(
                "ended {} {:?}, expected {:?}",
                job.status(),
                job.error_code(),
                row.outcome
            )),
        }
        let after = watch();
        for ((place, b), (_, mut a)) in before.into_iter().zip(after) {
            if place == "root" {
                a.retain(|p, _| p != &dest && !p.starts_with(&format!("{dest}/")));
            }
            problems.extend(
                snapshot_diff(&b, &a)
                    .into_iter()
                    .map(|d| format!("{place}: {d}")),
            );
        }
        if !problems.is_empty() {
            failures.push(format!(
                "row {i} `{}`:\n    {}",
                row.name,
                problems.join("\n    ")
            ));
        }
        let _ = std::fs::remove_dir_all(world.root().join(&dest));
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile rows escaped or misbehaved:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
