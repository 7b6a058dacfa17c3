//! Pull layouts other than `rootfs`: `oci` writes an OCI image layout folder
//! (`oci-layout`, `index.json` naming the manifest with its tag, `blobs/sha256/`) that
//! `skopeo inspect oci:DEST` and `umoci unpack` read; `git` writes the tree as a git
//! repository with one commit per layer, oldest first, each message naming the layer's
//! digest, so `git diff HEAD~1` is what the last layer changed. Both are atomic like
//! `rootfs`: a failed or cancelled pull leaves `dest` as it was.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use common::image;
use common::tree::{Options, snapshot, snapshot_diff};
use common::{
    Format, Image, ImageBuilder, Pushed, Rule, World, assert_same_tree, diff_trees, expect_problem,
    fixtures, tools,
};
use serde_json::{Value, json};

static FEATURES: LazyLock<Image> = LazyLock::new(|| fixtures::features("layouts"));
static ZSTD: LazyLock<Image> = LazyLock::new(|| fixtures::features("layouts-zstd"));
static BIG: LazyLock<Image> = LazyLock::new(|| fixtures::big(1_500_000, 11));

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Makes a dest with content of its own, for "left as it was" and "replaced".
fn existing_tree(dest: &Path) {
    fs::create_dir_all(dest.join("kept/inner")).unwrap();
    fs::write(dest.join("kept/inner/file"), "the old tree").unwrap();
    std::os::unix::fs::symlink("kept/inner/file", dest.join("link")).unwrap();
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

/// What changed in the root folder since `before` (its snapshot).
fn root_changes(root: &Path, before: &BTreeMap<String, String>) -> Vec<String> {
    snapshot_diff(before, &snapshot(root, &[]))
}

/// The sorted names in a folder.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// layout: oci
// ---------------------------------------------------------------------------------------

/// Checks the OCI image layout at `dest` against what the registry serves (`pushed`, the
/// image manifest pulled) and returns its `index.json`: `oci-layout`, one manifest in the
/// index, exactly the image's blobs, each true to its name, and nothing else.
fn check_oci_layout(dest: &Path, pushed: &Pushed) -> Value {
    assert_eq!(
        read_json(&dest.join("oci-layout")),
        json!({"imageLayoutVersion": "1.0.0"})
    );
    assert_eq!(
        names(dest),
        ["blobs", "index.json", "oci-layout"],
        "{dest:?}"
    );
    let index = read_json(&dest.join("index.json"));
    assert_eq!(index["schemaVersion"], 2, "{index}");
    let manifests = index["manifests"].as_array().expect("index.manifests");
    assert_eq!(manifests.len(), 1, "one pull, one manifest: {index}");
    let entry = &manifests[0];
    assert_eq!(entry["digest"], pushed.digest.as_str(), "{index}");
    assert_eq!(entry["size"], pushed.raw.len(), "{index}");
    assert_eq!(entry["mediaType"], pushed.media_type().as_str(), "{index}");

    assert_eq!(names(&dest.join("blobs")), ["sha256"]);
    let mut expected: Vec<String> = pushed
        .blob_digests()
        .into_iter()
        .chain([pushed.digest.clone()])
        .map(|d| d.trim_start_matches("sha256:").to_owned())
        .collect();
    expected.sort();
    expected.dedup();
    let blobs = dest.join("blobs/sha256");
    assert_eq!(
        names(&blobs),
        expected,
        "blobs/sha256 holds the manifest, config and layers"
    );
    for hex in &expected {
        let bytes = fs::read(blobs.join(hex)).unwrap();
        assert_eq!(
            tools::sha256_hex(&bytes),
            *hex,
            "blob {hex} is not what it says"
        );
    }
    assert_eq!(
        fs::read(blobs.join(pushed.digest.trim_start_matches("sha256:"))).unwrap(),
        pushed.raw,
        "the manifest as the registry serves it, byte for byte"
    );
    index
}

/// `skopeo inspect oci:<location>` as JSON.
fn skopeo_inspect_oci(location: &str) -> Value {
    let out = tools::run(
        tools::command("skopeo")
            .arg("inspect")
            .arg(format!("oci:{location}")),
    );
    serde_json::from_slice(&out.stdout).expect("skopeo inspect JSON")
}

#[tokio::test]
async fn oci_layout_pull_writes_an_image_layout_that_skopeo_and_umoci_read() {
    let world = World::start().await;
    let pushed = world.push(&FEATURES, "layout/oci:1.0", Format::Oci);
    let dest = world.root().join("layout");
    existing_tree(&dest);
    let job = world
        .pull(
            json!({"image": world.image("layout/oci:1.0"), "dest": "layout",
                     "layout": "oci", "force": true}),
        )
        .await;
    let result = job.expect_succeeded();
    assert_eq!(job.dest(), dest);
    assert_eq!(result["digest"], pushed.digest.as_str());
    assert_eq!(job.0["request"]["layout"], "oci");
    assert!(!dest.join("kept").exists(), "force replaced the old tree");

    let index = check_oci_layout(&dest, &pushed);
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(
        annotations[REF_NAME], "1.0",
        "the tag, for oci:DEST:TAG: {index}"
    );

    for location in [
        dest.display().to_string(),
        format!("{}:1.0", dest.display()),
    ] {
        let inspected = skopeo_inspect_oci(&location);
        assert_eq!(
            inspected["Digest"],
            pushed.digest.as_str(),
            "oci:{location}"
        );
        assert_eq!(
            inspected["Layers"],
            json!(pushed.layer_digests()),
            "oci:{location}"
        );
    }
    let unpacked = image::unpack_layout(&dest, "1.0");
    assert_same_tree(&FEATURES.unpack_reference().rootfs, &unpacked.rootfs);

    // the layout is an image skopeo can copy on, to the same digest
    tools::run(
        tools::command("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:1.0", dest.display()))
            .arg(format!("docker://{}/copied/oci:1", world.registry.host())),
    );
    assert_eq!(
        image::inspect_pushed(&world.registry, "copied/oci:1").digest,
        pushed.digest
    );
}

/// Runs `cmd`; its stdout, or what it said on stderr when it failed.
fn try_run(cmd: &mut std::process::Command) -> Result<Vec<u8>, String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

#[tokio::test]
async fn oci_layout_of_a_docker_schema2_image_is_read_by_skopeo_and_umoci() {
    let world = World::start().await;
    let pushed = world.push(&FEATURES, "layout/v2s2:1", Format::DockerV2s2);
    let job = world
        .pull(json!({"image": world.image("layout/v2s2:1"), "dest": "v2s2", "layout": "oci"}))
        .await;
    job.expect_succeeded();
    let dest = job.dest();
    let index = read_json(&dest.join("index.json"));
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(1),
        "{index}"
    );
    assert_eq!(
        index["manifests"][0]["annotations"][REF_NAME], "1",
        "{index}"
    );

    // what a user does with an OCI layout: inspect it by tag, unpack it
    let mut failures = Vec::new();
    match try_run(
        tools::command("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:1", dest.display())),
    ) {
        Ok(out) => {
            let inspected: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(
                inspected["Layers"].as_array().map(Vec::len),
                Some(pushed.layers().len())
            );
        }
        Err(e) => failures.push(format!("skopeo inspect oci:DEST:1: {e}")),
    }
    let bundle = tempfile::tempdir().unwrap();
    match try_run(
        tools::command("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:1", dest.display()))
            .arg(bundle.path().join("b")),
    ) {
        Ok(_) => assert_same_tree(
            &FEATURES.unpack_reference().rootfs,
            &bundle.path().join("b/rootfs"),
        ),
        Err(e) => failures.push(format!("umoci unpack --image DEST:1: {e}")),
    }
    assert!(
        failures.is_empty(),
        "the OCI layout of a Docker schema 2 image (index.json: {index}) cannot be read:\n  {}",
        failures.join("\n  ")
    );
}

#[tokio::test]
async fn oci_layout_of_an_index_holds_the_platforms_image_and_names_its_platform() {
    let world = World::start().await;
    let index = fixtures::push_two_platform_index(&world.registry, "layout/multi:1");
    let arm_digest = index.entry_digest("arm64");
    let job = world
        .pull(
            json!({"image": world.image("layout/multi:1"), "dest": "arm",
                     "layout": "oci", "platform": "linux/arm64"}),
        )
        .await;
    job.expect_succeeded();
    assert_eq!(job.result()["digest"], arm_digest.as_str());
    let pushed = image::inspect_pushed(&world.registry, &format!("layout/multi@{arm_digest}"));
    let written = check_oci_layout(&job.dest(), &pushed);
    let entry = &written["manifests"][0];
    assert_eq!(entry["platform"]["architecture"], "arm64", "{written}");
    assert_eq!(entry["platform"]["os"], "linux", "{written}");
    assert_eq!(entry["annotations"][REF_NAME], "1", "{written}");
    let inspected = skopeo_inspect_oci(&job.dest().display().to_string());
    assert_eq!(inspected["Architecture"], "arm64");
    let unpacked = image::unpack_layout(&job.dest(), "1");
    assert_same_tree(&fixtures::ARM64.unpack_reference().rootfs, &unpacked.rootfs);
}

#[tokio::test]
async fn oci_layout_pulled_by_digest_or_with_zstd_layers_is_read_by_skopeo() {
    let world = World::start().await;
    let pushed = world.push(&ZSTD, "layout/zstd:1", Format::OciZstd);
    // by digest: no tag to annotate, and `oci:DEST` finds the one manifest
    let job = world
        .pull(
            json!({"image": world.image(&format!("layout/zstd@{}", pushed.digest)),
                     "dest": "by-digest", "layout": "oci"}),
        )
        .await;
    job.expect_succeeded();
    let index = check_oci_layout(&job.dest(), &pushed);
    assert!(
        index["manifests"][0]["annotations"].get(REF_NAME).is_none(),
        "a digest is no tag: {index}"
    );
    let inspected = skopeo_inspect_oci(&job.dest().display().to_string());
    assert_eq!(inspected["Digest"], pushed.digest.as_str());
    let raw = tools::run(
        tools::command("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}", job.dest().display())),
    )
    .stdout;
    assert_eq!(
        raw, pushed.raw,
        "skopeo reads the manifest out of the layout"
    );
    for layer in pushed.layers() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    // umoci 0.4.7 cannot read zstd: the layout goes back to the registry, and hoist pulls
    // that as a rootfs, equal to the reference
    tools::run(
        tools::command("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}", job.dest().display()))
            .arg(format!("docker://{}/copied/zstd:1", world.registry.host())),
    );
    let pulled = world
        .pull_ok(&world.image("copied/zstd:1"), "from-layout")
        .await;
    assert_eq!(pulled.result()["digest"], pushed.digest.as_str());
    assert_same_tree(&ZSTD.unpack_reference().rootfs, &pulled.dest());
}

#[tokio::test]
async fn writing_into_an_oci_layout_does_not_change_the_shared_cache() {
    let world = World::start().await;
    let small = fixtures::small("layout-cache");
    let pushed = world.push(&small, "layout/cache:1", Format::Oci);
    let job = world
        .pull(json!({"image": world.image("layout/cache:1"), "dest": "mine", "layout": "oci"}))
        .await;
    job.expect_succeeded();
    // the layout is the user's: a tool (or a mistake) rewrites a blob in place
    let layer = pushed.layer_digests()[0].clone();
    let blob = job
        .dest()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .unwrap();
    // the cache every client shares still holds only verified bytes…
    world.assert_cache_verified();
    // …and the next pull of the image, from the cache, is the image
    let pulled = world
        .pull_ok(&world.image("layout/cache:1"), "rootfs")
        .await;
    assert_same_tree(&small.unpack_reference().rootfs, &pulled.dest());
}

// ---------------------------------------------------------------------------------------
// layout: git
// ---------------------------------------------------------------------------------------

/// `git -C dir args…`, its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    tools::run_stdout(
        tools::command("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "core.quotePath=false", "--no-pager"])
            .args(args),
    )
}

/// `git diff --name-status` between two revisions, one `STATUS\tpath` line each, sorted.
fn changes(dir: &Path, from: &str, to: &str) -> Vec<String> {
    let mut out: Vec<String> = git(dir, &["diff", "--no-renames", "--name-status", from, to])
        .lines()
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

/// How a git pull's work tree `dest` differs from the image's tree `rootfs`, leaving out
/// `.git` and the root's own mtime (moving `.git` in touches it).
fn work_tree_diffs(rootfs: &Path, dest: &Path) -> Vec<String> {
    diff_trees(
        rootfs,
        dest,
        &Options {
            ignore: vec![".git".into()],
            ..Options::default()
        },
    )
    .into_iter()
    .filter(|d| !d.starts_with(".: mtime "))
    .collect()
}

#[tokio::test]
async fn git_layout_pull_commits_each_layer_oldest_first() {
    let world = World::start().await;
    let pushed = world.push(&FEATURES, "layout/git:1", Format::Oci);
    let job = world
        .pull(json!({"image": world.image("layout/git:1"), "dest": "repo", "layout": "git"}))
        .await;
    job.expect_succeeded();
    let dest = job.dest();
    assert_eq!(job.0["request"]["layout"], "git");
    assert!(dest.join(".git").is_dir(), "the repository is dest/.git");

    // one commit per layer, oldest first, each naming its layer
    let subjects: Vec<String> = git(&dest, &["log", "--reverse", "--format=%s"])
        .lines()
        .map(str::to_owned)
        .collect();
    let layers = pushed.layer_digests();
    assert_eq!(subjects.len(), layers.len(), "{subjects:?}");
    for (subject, digest) in subjects.iter().zip(&layers) {
        assert!(
            subject.contains(digest.as_str()),
            "commit {subject:?} names layer {digest}"
        );
    }
    assert_eq!(
        git(&dest, &["rev-list", "--count", "HEAD"]).trim(),
        layers.len().to_string()
    );

    // `git diff HEAD~1` is what the last layer (an opaque directory) changed
    assert_eq!(
        changes(&dest, "HEAD~1", "HEAD"),
        [
            "A\tflavour-3",
            "A\topaque/upper",
            "D\topaque/lower-1",
            "D\topaque/lower-dir/x",
        ]
    );
    // and the layer before: whiteouts, a replaced dir, changed content, type changes
    assert_eq!(
        changes(&dest, "HEAD~2", "HEAD~1"),
        [
            "A\tbecomes-file",
            "A\tdata/third-name",
            "A\tflavour-2",
            "A\treplace/new",
            "D\tbecomes-file/inner",
            "D\tdir-to-remove/a",
            "D\tdir-to-remove/sub/b",
            "D\tlink-to-delete",
            "D\treplace/old-1",
            "D\treplace/old-2",
            "D\tto-delete/file",
            "M\tcontent-changes",
            "T\tbecomes-link",
        ]
    );
    assert_eq!(
        git(&dest, &["show", "HEAD~2:to-delete/file"]),
        "gone in layer 2\n",
        "the first commit holds the first layer's tree"
    );
    assert_eq!(
        git(&dest, &["show", "HEAD:content-changes"]),
        "version 2, longer\n"
    );

    // the work tree is the image's tree (the root's own mtime aside: moving `.git` in
    // touches it), and what git holds of it is unchanged
    assert_eq!(
        work_tree_diffs(&FEATURES.unpack_reference().rootfs, &dest),
        Vec::<String>::new(),
        "the work tree is the image's"
    );
    assert_eq!(
        git(&dest, &["status", "--porcelain", "--untracked-files=all"]),
        "",
        "the tree is what HEAD holds"
    );
    git(&dest, &["fsck", "--strict", "--no-progress"]);
    assert_eq!(
        names(world.root()),
        ["repo"],
        "nothing beside dest (the repository was built apart and moved in)"
    );

    // the same image gives the same commits
    let again = world
        .pull(json!({"image": world.image("layout/git:1"), "dest": "again", "layout": "git"}))
        .await;
    again.expect_succeeded();
    assert_eq!(
        git(&again.dest(), &["rev-parse", "HEAD"]),
        git(&dest, &["rev-parse", "HEAD"]),
        "two git pulls of one image give different histories"
    );
}

#[tokio::test]
async fn git_layout_stores_the_images_files_whatever_its_git_settings_say() {
    let world = World::start().await;
    let image = ImageBuilder::new()
        .layer(|r| {
            r.file(".gitignore", "*\n")
                .file(
                    ".gitattributes",
                    "* text eol=crlf\n*.txt filter=rot13 ident\n",
                )
                .file("notes.txt", "line 1\nline 2 $Id$\n")
                .file("bin/tool", "#!/bin/sh\n")
                .chmod("bin/tool", 0o755)
                .file("sub/file", "in sub\n")
                .file("sub/.git/config", "[core]\n\thooksPath = /tmp\n");
        })
        .layer(|r| {
            r.file("notes.txt", "line 1\nline 2 changed\n")
                .file("ignored.log", "ignored by the image's .gitignore\n");
        })
        .build();
    world.push(&image, "layout/gitsettings:1", Format::Oci);
    let job = world
        .pull(
            json!({"image": world.image("layout/gitsettings:1"), "dest": "repo",
                     "layout": "git"}),
        )
        .await;
    job.expect_succeeded();
    let dest = job.dest();
    let mut files: Vec<String> = git(&dest, &["ls-files"])
        .lines()
        .map(str::to_owned)
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ".gitattributes",
            ".gitignore",
            "bin/tool",
            "ignored.log",
            "notes.txt",
            "sub/file"
        ],
        "every file is committed, ignore rules or not"
    );
    assert_eq!(
        git(&dest, &["show", "HEAD~1:notes.txt"]),
        "line 1\nline 2 $Id$\n",
        "stored byte for byte: no line-ending conversion, no filter, no ident"
    );
    assert_eq!(
        changes(&dest, "HEAD~1", "HEAD"),
        ["A\tignored.log", "M\tnotes.txt"]
    );
    assert!(
        git(&dest, &["ls-files", "-s", "bin/tool"]).starts_with("100755 "),
        "the executable bit is kept"
    );
    assert_eq!(
        git(&dest, &["status", "--porcelain", "--untracked-files=all"]),
        ""
    );
    assert_eq!(
        work_tree_diffs(&image.unpack_reference().rootfs, &dest),
        Vec::<String>::new(),
        "the work tree is the image's"
    );
}

#[tokio::test]
async fn git_layout_of_an_image_with_its_own_git_dir_fails_and_leaves_dest_as_it_was() {
    let world = World::start().await;
    let image = ImageBuilder::new()
        .layer(|r| {
            r.file("README", "a checkout\n")
                .file(".git/config", "[core]\n\tbare = false\n")
                .file(".git/HEAD", "ref: refs/heads/main\n");
        })
        .build();
    world.push(&image, "layout/dotgit:1", Format::Oci);
    existing_tree(&world.root().join("existing"));
    let before = snapshot(world.root(), &[]);
    for (dest, force) in [("existing", true), ("fresh", false)] {
        let job = world
            .pull(
                json!({"image": world.image("layout/dotgit:1"), "dest": dest,
                         "layout": "git", "force": force}),
            )
            .await;
        job.expect_failed("git_dir_in_image");
        assert_eq!(
            root_changes(world.root(), &before),
            Vec::<String>::new(),
            "a failed git pull (dest {dest}) changed the root folder"
        );
    }
    // the same image is fine as a rootfs
    world
        .pull_ok(&world.image("layout/dotgit:1"), "plain")
        .await;
}

// ---------------------------------------------------------------------------------------
// Atomic like rootfs
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn layout_pull_into_an_existing_dest_without_force_is_409() {
    let world = World::start().await;
    existing_tree(&world.root().join("taken"));
    for layout in ["oci", "git"] {
        let resp = world
            .post_pull(
                &json!({"image": world.image("layout/any:1"), "dest": "taken",
                               "layout": layout}),
            )
            .await;
        expect_problem(resp, 409, Some("dest_exists")).await;
    }
}

#[tokio::test]
async fn failed_oci_and_git_layout_pulls_leave_dest_as_it_was() {
    let world = World::start().await;
    let pushed = world.push(&FEATURES, "layout/bad:1", Format::Oci);
    // the last layer is bad: for git, the first layers are committed before it fails
    let bad = pushed.layer_digests().last().unwrap().clone();
    world.registry.corrupt_blob(&bad);
    existing_tree(&world.root().join("existing"));
    let before = snapshot(world.root(), &[]);
    for layout in ["oci", "git"] {
        for (dest, force) in [("existing", true), ("fresh", false)] {
            let job = world
                .pull(json!({"image": world.image("layout/bad:1"), "dest": dest,
                             "layout": layout, "force": force}))
                .await;
            job.expect_failed("digest_mismatch");
            assert_eq!(
                root_changes(world.root(), &before),
                Vec::<String>::new(),
                "a failed {layout} pull into {dest} (force: {force}) changed the root folder"
            );
        }
    }
    assert!(
        !world.cached_blobs().contains(&bad),
        "the bad blob is not cached"
    );
}

#[tokio::test]
async fn cancelled_oci_and_git_layout_pulls_leave_dest_as_it_was() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&BIG, "layout/big:1", Format::Oci);
    let big_layer = pushed.layer_digests()[1].clone();
    // the big layer comes at 100 kB/s: 15 s, while the small one is already written
    world
        .proxy()
        .add_rule(Rule::slow_gets(&format!("/blobs/{big_layer}"), 100_000));
    existing_tree(&world.root().join("existing"));
    let before = snapshot(world.root(), &[]);
    for layout in ["oci", "git"] {
        for (dest, force) in [("existing", true), ("fresh", false)] {
            let job = world
                .submit_pull(json!({"image": world.image("layout/big:1"), "dest": dest,
                                    "layout": layout, "force": force, "cache": "bypass"}))
                .await;
            world
                .wait_until(job.id(), Duration::from_secs(30), |j| {
                    j.status() == "running"
                        && j.0["progress"]["layers_done"].as_u64().unwrap_or(0) >= 1
                        && j.0["progress"]["bytes_done"].as_u64().unwrap_or(0)
                            > pushed.layers()[0]["size"].as_u64().unwrap()
                })
                .await;
            let job = world.cancel_job(job.id()).await;
            assert_eq!(job.status(), "cancelled", "{job:?}");
            assert_eq!(
                root_changes(world.root(), &before),
                Vec::<String>::new(),
                "a cancelled {layout} pull into {dest} (force: {force}) changed the root folder"
            );
        }
    }
}
