//! Builds and pushes (`POST /builds`): a folder under the roots becomes one tar layer
//! (sorted entries, types, modes, owners 0:0 unless kept, mtimes clamped to
//! `source_date_epoch`), with an image config and an OCI or Docker schema 2 manifest, alone
//! or on top of a base image, pushed to a real registry (plain and token auth).
//!
//! Every pushed image is read back by other tools: `skopeo inspect --raw` and `--config`,
//! the layer blob itself (decompressed, hashed against `rootfs.diff_ids`, its tar entries
//! listed), `skopeo copy` + `umoci unpack` (gzip only: umoci 0.4.7 cannot read zstd) and a
//! pull by hoist; the unpacked trees are compared entry by entry with the source folder.
//! Push behaviour (existence checks, cross-repository mounts, no second upload, chunked
//! uploads past 64 MiB) is counted in the fault proxy's request log; cancelling a build
//! while it pushes must leave the tag alone.
//!
//! This module holds what the four areas share (the source folder, trees, the API and
//! registry helpers, the base image); the tests are in `layer`, `base`, `push` and
//! `refused`.
//!
//! Each test starts its own World (a registry and a daemon take well under a second):
//! they need different ones (proxy, token auth), and a World prints its logs when its
//! test fails, which a shared one never would.

mod base;
mod layer;
mod push;
mod refused;

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use common::image::{self, Unpacked};
use common::tree::{self, Kind};
use common::{
    Fault, Format, Image, ImageBuilder, Job, Registry, RegistryAuth, Rule, World, expect_problem,
    fixtures, jobs_of, tools, upload,
};
use serde_json::{Value, json};
use tempfile::TempDir;

/// `source_date_epoch` of the reproducible builds (2020-09-13T12:26:40Z).
const SDE: u64 = 1_600_000_000;
/// An mtime older than [`SDE`], kept as it is by the clamp.
const OLD: u64 = 1_000_000_000;
/// An mtime later than [`SDE`] and than now (2096), clamped when a build asks.
const FUTURE: u64 = 4_000_000_000;
const PASSWORD: &str = "correct-horse-battery-staple";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

// ---------------------------------------------------------------------------------------
// The source folder
// ---------------------------------------------------------------------------------------

fn write(path: &Path, content: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {path:?}: {e}"));
}

/// Sets the mtime of `path` itself (a symlink's own, not its target's).
fn set_mtime(path: &Path, secs: u64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {path:?}: {e}"));
}

/// Fills `dir` (created) with what a layer must carry: regular files (empty, executable,
/// setuid, setgid), directories (empty, sticky, setgid, private), relative, absolute,
/// dangling and long symlinks and one to a folder outside, a hardlink pair, a file whose
/// other name is outside the source, a fifo, a character device, files owned by other
/// users (ids past ustar's 7 octal digits too), a long name, a UTF-8 name, mtimes older
/// than [`SDE`], newer than it and in the future, and a socket (which a tar cannot hold:
/// left out of the layer).
/// `label` goes into a file, so two sources differ.
fn make_source(dir: &Path, label: &str) {
    fs::create_dir_all(dir).unwrap();
    let p = |rel: &str| dir.join(rel);
    write(&p("label"), label);
    write(&p("bin/app"), "#!/bin/sh\necho app\n");
    chmod(&p("bin/app"), 0o755);
    write(&p("bin/suid"), "setuid\n");
    chmod(&p("bin/suid"), 0o4755);
    write(&p("bin/sgid"), "setgid\n");
    chmod(&p("bin/sgid"), 0o2711);
    write(&p("etc/app.conf"), "key = value\n");
    chown(&p("etc/app.conf"), 1000, 1000);
    write(&p("etc/secret"), "s3cret\n");
    chmod(&p("etc/secret"), 0o600);
    chown(&p("etc/secret"), 1000, 50);
    write(&p("etc/empty"), "");
    fs::create_dir_all(p("share/empty")).unwrap();
    fs::create_dir_all(p("tmp")).unwrap();
    chmod(&p("tmp"), 0o1777);
    fs::create_dir_all(p("srv/group")).unwrap();
    chmod(&p("srv/group"), 0o2775);
    chown(&p("srv/group"), 0, 50);
    write(&p("home/user/notes"), "mine\n");
    chmod(&p("home/user/notes"), 0o640);
    chown(&p("home/user/notes"), 1000, 1000);
    chmod(&p("home/user"), 0o700);
    chown(&p("home/user"), 1000, 1000);
    fs::create_dir_all(p("links")).unwrap();
    symlink("../bin/app", p("links/relative")).unwrap();
    symlink("/bin/app", p("links/absolute")).unwrap();
    symlink("/nowhere/at/all", p("links/dangling")).unwrap();
    symlink(format!("../{}", fixtures::LONG_NAME), p("links/long")).unwrap();
    chown(&p("links/relative"), 1000, 1000);
    // a link to a folder outside: stored as a link, never followed
    symlink("/etc", p("links/etc-dir")).unwrap();
    write(&p("data/original"), "shared bytes\n");
    fs::hard_link(p("data/original"), p("data/second-name")).unwrap();
    write(&p("data/old"), "from 2001\n");
    // a file whose other name is outside the source: one regular file in the layer
    write(&p("data/linked-out"), "one name inside\n");
    let outside_name = dir.with_file_name(format!(
        "{}.outside-name",
        dir.file_name().unwrap().to_string_lossy()
    ));
    fs::hard_link(p("data/linked-out"), outside_name).unwrap();
    // ids too big for a ustar header (PAX records)
    write(&p("etc/big-ids"), "far away owner\n");
    chown(&p("etc/big-ids"), 3_000_000, 3_000_001);
    write(&p("data/future"), "from 2096\n");
    write(&p(fixtures::LONG_NAME), "long name\n");
    write(&p("data/ünïcødé ✓.txt"), "utf-8 name\n");
    write(
        &p("data/random.bin"),
        image::incompressible_bytes(200_000, label.len() as u64),
    );
    fs::create_dir_all(p("run")).unwrap();
    tools::run(tools::command("mkfifo").arg(p("run/fifo")));
    drop(std::os::unix::net::UnixListener::bind(p("run/socket")).unwrap());
    fs::create_dir_all(p("dev")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod dev/null (the tests run as root)");
    chmod(&p("dev/null"), 0o666);
    // mtimes last: writing into a directory moves its mtime
    set_mtime(&p("data/original"), OLD);
    set_mtime(&p("data/old"), OLD);
    set_mtime(&p("data/future"), FUTURE);
    set_mtime(&p("links/relative"), OLD);
    set_mtime(&p("share/empty"), OLD);
    set_mtime(&p("srv/group"), FUTURE);
}

// ---------------------------------------------------------------------------------------
// Trees, compared entry by entry
// ---------------------------------------------------------------------------------------

/// One entry of a tree, as far as a layer can carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    kind: Kind,
    mode: u32,
    owner: (u32, u32),
    /// Whole seconds (a tar header has no more).
    mtime: i64,
    /// The other names of the same file (hardlinks), sorted.
    links: Vec<String>,
}

type Tree = BTreeMap<String, Meta>;

/// Every entry below `root` (not the root itself: a layer has no entry for it), without
/// the top-level names in `ignore`, as the harness's one scanner ([`tree::walk`]) sees it.
fn scan(root: &Path, ignore: &[&str]) -> Tree {
    let opts = tree::Options {
        xattrs: false,
        ignore: ignore.iter().map(|s| (*s).to_owned()).collect(),
        ..tree::Options::default()
    };
    let walked = tree::walk(root, &opts);
    walked
        .entries
        .into_iter()
        .filter(|(rel, _)| rel != ".")
        .map(|(rel, e)| {
            let links = match walked.by_inode.get(&e.inode) {
                Some(names) if e.kind != Kind::Dir => {
                    names.iter().filter(|n| **n != rel).cloned().collect()
                }
                _ => Vec::new(),
            };
            let meta = Meta {
                kind: e.kind,
                mode: e.mode,
                owner: (e.uid, e.gid),
                mtime: e.mtime.0,
                links,
            };
            (rel, meta)
        })
        .collect()
}

/// How a build records a source folder.
#[derive(Clone, Copy, Debug, Default)]
struct Recorded {
    keep_owners: bool,
    source_date_epoch: Option<u64>,
}

/// The tree a layer built from `source` unpacks to: sockets left out, owners 0:0 unless
/// kept, mtimes clamped to `source_date_epoch`.
fn expected_from_source(source: &Path, how: Recorded) -> Tree {
    scan(source, &[])
        .into_iter()
        .filter(|(_, m)| m.kind != Kind::Socket)
        .map(|(p, mut m)| {
            if !how.keep_owners {
                m.owner = (0, 0);
            }
            if let Some(epoch) = how.source_date_epoch {
                m.mtime = m.mtime.min(epoch as i64);
            }
            (p, m)
        })
        .collect()
}

/// `lower` with `upper`'s entries laid over it (a layer applied on top of a tree).
fn overlay(lower: Tree, upper: Tree) -> Tree {
    let mut out = lower;
    out.extend(upper);
    out
}

/// Panics with every difference between the expected tree and the one at `actual`.
fn assert_tree(expected: &Tree, actual: &Path, ignore: &[&str], what: &str) {
    let got = scan(actual, ignore);
    let mut diffs = Vec::new();
    for (path, e) in expected {
        match got.get(path) {
            None => diffs.push(format!("{path}: missing ({})", e.kind.name())),
            Some(a) if a != e => diffs.push(format!("{path}: got {a:?}, expected {e:?}")),
            _ => {}
        }
    }
    for (path, a) in &got {
        if !expected.contains_key(path) {
            diffs.push(format!("{path}: unexpected {}", a.kind.name()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what} ({actual:?}) differs from what the build should hold in {} ways:\n  {}",
        diffs.len(),
        diffs.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// The API and the registry
// ---------------------------------------------------------------------------------------

/// `POST /builds`, which must be accepted: 202, `Location: /jobs/{id}`, a build job whose
/// stored request carries no credentials.
async fn submit_build(world: &World, body: &Value) -> Job {
    world.submit_job("/builds", "build", body).await
}

/// Submits a build and waits for it to end.
async fn build(world: &World, body: Value) -> Job {
    let job = submit_build(world, &body).await;
    world.wait_job(job.id()).await
}

/// Builds and expects success; returns the job.
async fn build_ok(world: &World, body: Value) -> Job {
    let job = build(world, body).await;
    job.expect_succeeded();
    job
}

/// `POST /builds` that must be refused with `status` and `code`.
async fn refused(world: &World, body: Value, status: u16, code: &str) {
    let resp = world.post("/builds").json(&body).send().await.unwrap();
    let problem = expect_problem(resp, status, Some(code)).await;
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body} → {problem}"
    );
}

/// The manifest, its digest and the config as the registry serves them (skopeo).
struct Served {
    raw: Vec<u8>,
    digest: String,
    manifest: Value,
    config: Value,
}

/// What the registry serves for `repo_tag`: the manifest by `skopeo inspect --raw`, the
/// config blob it names fetched and checked against its digest.
async fn served(registry: &Registry, repo_tag: &str) -> Served {
    let raw = image::inspect_raw(registry, repo_tag);
    let manifest: Value = serde_json::from_slice(&raw).expect("manifest JSON");
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let (status, blob) = upload::fetch_blob(registry, repo_of(repo_tag), config_digest).await;
    assert_eq!(status, 200, "GET config blob {config_digest}");
    assert_eq!(tools::digest_of(&blob), config_digest, "config blob digest");
    assert_eq!(
        manifest["config"]["size"].as_u64(),
        Some(blob.len() as u64),
        "config size in the manifest"
    );
    Served {
        digest: tools::digest_of(&raw),
        manifest,
        config: serde_json::from_slice(&blob).expect("config JSON"),
        raw,
    }
}

/// `skopeo inspect --config`, or what skopeo said when it could not read the image.
fn skopeo_config(registry: &Registry, repo_tag: &str) -> Result<Value, String> {
    let mut cmd = tools::command("skopeo");
    cmd.args(["inspect", "--tls-verify=false", "--config"]);
    if let Some((u, p)) = registry.credentials() {
        cmd.arg(format!("--creds={u}:{p}"));
    }
    let out = cmd
        .arg(format!("docker://{}/{repo_tag}", registry.host()))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run skopeo");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("config JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// skopeo (containers/image: podman, buildah, CRI-O) reads the pushed image and finds the
/// same config.
fn assert_skopeo_reads(registry: &Registry, repo_tag: &str, served: &Served) {
    match skopeo_config(registry, repo_tag) {
        Ok(config) => assert_eq!(config, served.config, "skopeo inspect --config"),
        Err(e) => panic!(
            "skopeo inspect --config cannot read the pushed image {repo_tag} ({}):\n{e}",
            served.manifest["mediaType"]
        ),
    }
}

impl Served {
    fn layers(&self) -> Vec<Value> {
        self.manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn layer_digests(&self) -> Vec<String> {
        self.layers()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    }

    fn diff_ids(&self) -> Vec<String> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("config without rootfs.diff_ids: {}", self.config))
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect()
    }
}

/// `skopeo copy docker://… oci:…` then `umoci unpack`: the pushed image's tree by tools
/// that are not hoist. Keep the returned values alive while using the tree.
fn skopeo_umoci_unpack(registry: &Registry, repo_tag: &str) -> (TempDir, Unpacked) {
    let dir = tempfile::Builder::new()
        .prefix("hoist-test-pulled-")
        .tempdir()
        .unwrap();
    let layout = dir.path().join("layout");
    let mut cmd = tools::command("skopeo");
    cmd.args(["copy", "--quiet", "--src-tls-verify=false"]);
    if let Some((u, p)) = registry.credentials() {
        cmd.arg(format!("--src-creds={u}:{p}"));
    }
    cmd.arg(format!("docker://{}/{repo_tag}", registry.host()))
        .arg(format!("oci:{}:t", layout.display()));
    tools::run(&mut cmd);
    let unpacked = image::unpack_layout(&layout, "t");
    (dir, unpacked)
}

/// The uncompressed tar of a layer blob.
fn decompress(blob: &[u8], media_type: &str) -> Vec<u8> {
    if media_type.ends_with("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut out)
            .expect("gunzip the layer");
        out
    } else if media_type.ends_with("zstd") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layer.zst");
        fs::write(&file, blob).unwrap();
        tools::run(tools::command("zstd").args(["-q", "-d", "-c"]).arg(&file)).stdout
    } else {
        panic!("not a compressed layer type: {media_type}")
    }
}

/// One tar entry as the layer holds it.
#[derive(Debug)]
struct TarItem {
    name: String,
    kind: tar::EntryType,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    link: Option<String>,
}

fn tar_items(tar_bytes: &[u8]) -> Vec<TarItem> {
    let mut archive = tar::Archive::new(tar_bytes);
    archive
        .entries()
        .expect("tar entries")
        .map(|e| {
            let e = e.expect("tar entry");
            let h = e.header();
            TarItem {
                name: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                kind: h.entry_type(),
                mode: h.mode().unwrap() & 0o7777,
                owner: (h.uid().unwrap(), h.gid().unwrap()),
                mtime: h.mtime().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
            }
        })
        .collect()
}

/// The built layer (the last of the manifest) fetched from the registry: checks that its
/// size and digest are what the manifest says and that its uncompressed bytes hash to the
/// config's last diff_id; returns its tar entries.
async fn built_layer_items(registry: &Registry, repo: &str, served: &Served) -> Vec<TarItem> {
    let layer = served.layers().last().cloned().expect("a layer");
    let digest = layer["digest"].as_str().unwrap();
    let (status, blob) = upload::fetch_blob(registry, repo, digest).await;
    assert_eq!(status, 200, "GET blob {digest}");
    assert_eq!(tools::digest_of(&blob), digest, "the blob is what it says");
    assert_eq!(blob.len() as u64, layer["size"].as_u64().unwrap(), "size");
    let tar_bytes = decompress(&blob, layer["mediaType"].as_str().unwrap());
    assert_eq!(
        Some(&tools::digest_of(&tar_bytes)),
        served.diff_ids().last(),
        "rootfs.diff_ids ends with the sha256 of the uncompressed layer"
    );
    tar_items(&tar_bytes)
}

fn host_platform() -> String {
    format!("linux/{}", upload::host_arch())
}

/// Seconds since the epoch of an RFC 3339 time.
fn unix_time(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}

fn now() -> i64 {
    UNIX_EPOCH.elapsed().unwrap().as_secs() as i64
}

/// The registry-relative `repo` of a `repo:tag`.
fn repo_of(repo_tag: &str) -> &str {
    repo_tag.rsplit_once(':').unwrap().0
}

/// The layer and manifest media types of a build in `format` with `compression`.
fn media_types(format: &str, compression: &str) -> (&'static str, &'static str, String) {
    match format {
        "oci" => (
            OCI_MANIFEST,
            OCI_CONFIG,
            format!("application/vnd.oci.image.layer.v1.tar+{compression}"),
        ),
        "docker" => (
            DOCKER_MANIFEST,
            DOCKER_CONFIG,
            format!("application/vnd.docker.image.rootfs.diff.tar.{compression}"),
        ),
        other => panic!("format {other}"),
    }
}

/// The request's `config`, and the image config's `config` it must give without a base.
fn full_config(label: &str) -> (Value, Value) {
    (
        json!({
            "entrypoint": ["/bin/app"], "cmd": ["--serve", "--port=8080"],
            "env": ["PATH=/bin:/usr/bin", "MODE=test"], "working_dir": "/srv",
            "user": "1000:50", "labels": {"org.example.name": "app", "org.example.label": label},
            "exposed_ports": ["8080/tcp", "53/udp", "9090"],
        }),
        json!({
            "Entrypoint": ["/bin/app"], "Cmd": ["--serve", "--port=8080"],
            "Env": ["PATH=/bin:/usr/bin", "MODE=test"], "WorkingDir": "/srv",
            "User": "1000:50", "Labels": {"org.example.name": "app", "org.example.label": label},
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "9090/tcp": {}},
        }),
    )
}

// ---------------------------------------------------------------------------------------
// Builds on a base
// ---------------------------------------------------------------------------------------

/// A two-layer base with a runtime config of its own (umoci `config` flags), whose files
/// are apart from [`make_source`]'s except the shared `etc/` folder. `label` makes its
/// layers its own.
fn base_image(label: &str) -> Image {
    ImageBuilder::new()
        .config(&[
            "--config.env=PATH=/usr/bin:/bin",
            "--config.env=KEEP=base",
            "--config.env=MODE=base",
            "--config.entrypoint=/usr/bin/base-tool",
            "--config.cmd=--from-base",
            "--config.workingdir=/var/lib/base",
            "--config.user=42",
            "--config.label=org.example.base=yes",
            "--config.label=org.example.name=base",
            "--config.exposedports=22/tcp",
        ])
        .layer(|r| {
            r.file("base-label", label)
                .file("etc/os-release", "ID=base\n")
                .file("etc/base.conf", "base = 1\n")
                .file("usr/bin/base-tool", "#!/bin/sh\necho base\n")
                .chmod("usr/bin/base-tool", 0o755)
                .file("var/lib/base/state", "1\n")
                .chown("var/lib/base/state", 7, 7)
                .file("var/lib/base/gone", "removed by layer 2\n");
        })
        .layer(|r| {
            r.file("base-label-2", label)
                .remove("var/lib/base/gone")
                .file("var/lib/base/state", "2\n");
        })
        .build()
}

static BASE: LazyLock<Image> = LazyLock::new(|| base_image("same-registry"));
static BASE_TREE: LazyLock<Unpacked> = LazyLock::new(|| BASE.unpack_reference());

/// The request overrides on a base, and the runtime config they must give with
/// [`base_image`]'s config: entrypoint replaces the base's and clears its cmd, env entries
/// replace the base's of the same key and add the rest, labels and ports merge, what the
/// request does not name (working dir) is inherited.
fn overrides_on_base() -> (Value, Value) {
    (
        json!({"entrypoint": ["/bin/app"], "env": ["MODE=built", "NEW=1"], "user": "1000",
               "labels": {"org.example.name": "app", "org.example.new": "1"},
               "exposed_ports": ["8080"]}),
        json!({
            "Entrypoint": ["/bin/app"],
            "Env": ["PATH=/usr/bin:/bin", "KEEP=base", "MODE=built", "NEW=1"],
            "WorkingDir": "/var/lib/base", "User": "1000",
            "Labels": {"org.example.base": "yes", "org.example.name": "app", "org.example.new": "1"},
            "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}},
        }),
    )
}

/// The proxy log entries of `method` requests whose path contains `needle`.
fn logged(world: &World, method: &str, needle: &str) -> Vec<common::proxy::Logged> {
    world
        .proxy()
        .log()
        .into_iter()
        .filter(|l| l.method == method && l.path.contains(needle))
        .collect()
}

/// Requests that upload blob content (upload starts that are not mounts, chunks, and
/// upload PUTs), from the proxy log.
fn uploads(world: &World) -> Vec<String> {
    world
        .proxy()
        .log()
        .into_iter()
        .filter(|l| {
            (l.method == "POST" && l.path.contains("/blobs/uploads/") && !l.path.contains("mount="))
                || l.method == "PATCH"
                || (l.method == "PUT" && l.path.contains("/blobs/uploads/"))
        })
        .map(|l| format!("{} {} -> {}", l.method, l.path, l.status))
        .collect()
}
