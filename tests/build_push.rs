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
//! Each test starts its own World (a registry and a daemon take well under a second):
//! they need different ones (proxy, token auth), and a World prints its logs when its
//! test fails, which a shared one never would.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use common::image::{self, Unpacked};
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
    /// `directory`, `file N bytes sha256:…`, `symlink to …`, `fifo`, `socket`, `char …`.
    kind: String,
    mode: u32,
    owner: (u32, u32),
    /// Whole seconds (a tar header has no more).
    mtime: i64,
    /// The other names of the same file (hardlinks), sorted.
    links: Vec<String>,
}

type Tree = BTreeMap<String, Meta>;

/// Every entry below `root` (not the root itself: a layer has no entry for it), without
/// the top-level names in `ignore`.
fn scan(root: &Path, ignore: &[&str]) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    let mut stack: Vec<(PathBuf, String)> = Vec::new();
    let children = |dir: &Path, rel: &str, stack: &mut Vec<(PathBuf, String)>| {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("readdir {dir:?}: {e}")) {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if rel.is_empty() && ignore.contains(&name.as_str()) {
                continue;
            }
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            stack.push((dir.join(&name), child));
        }
    };
    children(root, "", &mut stack);
    while let Some((path, rel)) = stack.pop() {
        let m = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {path:?}: {e}"));
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            children(&path, &rel, &mut stack);
            "directory".to_owned()
        } else if ft.is_file() {
            let bytes = fs::read(&path).unwrap();
            format!("file {} bytes {}", bytes.len(), tools::digest_of(&bytes))
        } else if ft.is_symlink() {
            format!("symlink to {:?}", fs::read_link(&path).unwrap())
        } else if ft.is_fifo() {
            "fifo".to_owned()
        } else if ft.is_socket() {
            "socket".to_owned()
        } else if ft.is_char_device() {
            format!("char device {:#x}", m.rdev())
        } else {
            format!("block device {:#x}", m.rdev())
        };
        if !ft.is_dir() {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
        tree.insert(
            rel,
            Meta {
                kind,
                mode: m.mode() & 0o7777,
                owner: (m.uid(), m.gid()),
                mtime: m.mtime(),
                links: Vec::new(),
            },
        );
    }
    for names in inodes.values().filter(|n| n.len() > 1) {
        for name in names {
            let mut others: Vec<String> = names.iter().filter(|n| *n != name).cloned().collect();
            others.sort();
            tree.get_mut(name).unwrap().links = others;
        }
    }
    tree
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
        .filter(|(_, m)| m.kind != "socket")
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
            None => diffs.push(format!("{path}: missing ({})", e.kind)),
            Some(a) if a != e => diffs.push(format!("{path}: got {a:?}, expected {e:?}")),
            _ => {}
        }
    }
    for (path, a) in &got {
        if !expected.contains_key(path) {
            diffs.push(format!("{path}: unexpected {}", a.kind));
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
// Builds without a base: formats and compressions
// ---------------------------------------------------------------------------------------

/// Builds the source as one layer in `format`/`compression` and checks everything the
/// registry then serves: result, manifest, config, the layer's bytes and entries, and the
/// tree (pulled back by hoist; by skopeo + umoci for gzip). Returns the served image.
async fn build_and_check(
    world: &World,
    source: &str,
    repo_tag: &str,
    format: &str,
    compression: &str,
) -> Served {
    let label = format!("{format}-{compression}");
    let (config, expected_config) = full_config(&label);
    let target = world.image(repo_tag);
    let job = build_ok(
        world,
        json!({"source": source, "target": target, "format": format,
               "compression": compression, "config": config}),
    )
    .await;
    let result = job.result();
    let served = served(&world.registry, repo_tag).await;
    let (manifest_type, config_type, layer_type) = media_types(format, compression);

    // the result, per contract
    assert_eq!(result["target"], target.as_str(), "{job:?}");
    assert_eq!(result["platform"], host_platform().as_str(), "{job:?}");
    assert_eq!(result["digest"], served.digest.as_str(), "result.digest");
    let layers = result["layers"].as_array().expect("result.layers");
    assert_eq!(layers.len(), 1, "one folder, one layer: {job:?}");
    assert_eq!(layers[0]["digest"], served.layers()[0]["digest"]);
    assert_eq!(layers[0]["size"], served.layers()[0]["size"]);

    // the manifest
    assert_eq!(served.manifest["schemaVersion"], 2);
    assert_eq!(
        served.manifest["mediaType"],
        manifest_type,
        "{}",
        String::from_utf8_lossy(&served.raw)
    );
    assert_eq!(served.manifest["config"]["mediaType"], config_type);
    assert_eq!(served.layers().len(), 1);
    assert_eq!(served.layers()[0]["mediaType"], layer_type.as_str());

    // the config
    let c = &served.config;
    assert_eq!(c["architecture"], upload::host_arch(), "{c}");
    assert_eq!(c["os"], "linux", "{c}");
    assert_eq!(
        c["config"], expected_config,
        "runtime config from the request"
    );
    assert_eq!(c["rootfs"]["type"], "layers");
    assert_eq!(served.diff_ids().len(), 1);
    let history = c["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "one history entry for the one layer: {c}");
    assert_ne!(history[0]["empty_layer"], true);
    let created = c["created"].as_str().expect("created");
    assert!(
        (unix_time(created) - now()).abs() < 300,
        "created {created} is not about now"
    );
    assert_eq!(history[0]["created"], created);

    // the layer: sorted entries, no root entry, owners 0:0, modes and links as the source
    let items = built_layer_items(&world.registry, repo_of(repo_tag), &served).await;
    let names: Vec<&[u8]> = items.iter().map(|i| i.name.as_bytes()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "layer entries are sorted by name");
    assert!(
        !items
            .iter()
            .any(|i| matches!(i.name.as_str(), "." | "./" | "/" | "")),
        "the source folder itself is no entry"
    );
    assert!(
        items.iter().all(|i| i.owner == (0, 0)),
        "owners are 0:0 unless kept: {:?}",
        items
            .iter()
            .filter(|i| i.owner != (0, 0))
            .collect::<Vec<_>>()
    );
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i.name.trim_end_matches('/') == name)
            .unwrap_or_else(|| panic!("no entry {name} in the layer: {items:#?}"))
    };
    assert_eq!(item("bin/suid").mode, 0o4755);
    assert_eq!(item("tmp").kind, tar::EntryType::Directory);
    assert_eq!(item("tmp").mode, 0o1777);
    assert_eq!(item("links/long").kind, tar::EntryType::Symlink);
    assert_eq!(
        item("links/long").link.as_deref(),
        Some(format!("../{}", fixtures::LONG_NAME).as_str())
    );
    assert_eq!(item("data/second-name").kind, tar::EntryType::Link);
    assert_eq!(
        item("data/second-name").link.as_deref(),
        Some("data/original"),
        "the second name of a file is a hardlink to the first"
    );
    assert_eq!(
        item("data/future").mtime,
        FUTURE,
        "no clamp without an epoch"
    );
    assert_eq!(
        item("data/linked-out").kind,
        tar::EntryType::Regular,
        "a file's only name in the source is a regular file"
    );
    assert!(
        !items.iter().any(|i| i.name.starts_with("links/etc-dir/")),
        "a symlink to a folder is not followed"
    );
    assert!(
        !items.iter().any(|i| i.name == "run/socket"),
        "a socket has no place in a tar"
    );

    // the tree, pulled back by hoist (and by skopeo + umoci when umoci can read it)
    let expected = expected_from_source(&world.root().join(source), Recorded::default());
    let dest = format!("pulled-{}", repo_tag.replace(['/', ':'], "-"));
    let pulled = world.pull_ok(&target, &dest).await;
    assert_eq!(pulled.result()["digest"], served.digest.as_str());
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull of the build");
    if compression == "gzip" {
        let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, repo_tag);
        assert_tree(
            &expected,
            &unpacked.rootfs,
            &[],
            "umoci's unpack of the build",
        );
    }
    assert_skopeo_reads(&world.registry, repo_tag, &served);
    served
}

#[tokio::test]
async fn oci_gzip_build_pushes_the_folder_as_one_layer_with_config_and_manifest() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "oci-gzip");
    build_and_check(&world, "src", "built/app:oci-gzip", "oci", "gzip").await;
}

#[tokio::test]
async fn docker_gzip_build_pushes_a_docker_schema2_image() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "docker-gzip");
    build_and_check(&world, "src", "built/app:docker-gzip", "docker", "gzip").await;
}

/// zstd: umoci cannot read it, so the tree is checked through hoist's pull, and a gzip
/// twin of the same folder (same tar, so the same diff_id) through umoci.
async fn zstd_build_with_gzip_twin(format: &str) {
    let world = World::start().await;
    make_source(&world.root().join("src"), &format!("{format}-zstd"));
    let zstd = build_and_check(
        &world,
        "src",
        &format!("built/app:{format}-zstd"),
        format,
        "zstd",
    )
    .await;
    let twin = build_and_check(
        &world,
        "src",
        &format!("twin/app:{format}-gzip"),
        format,
        "gzip",
    )
    .await;
    assert_eq!(
        zstd.diff_ids(),
        twin.diff_ids(),
        "the same folder is the same tar, whatever the compression"
    );
    assert_ne!(zstd.layer_digests(), twin.layer_digests());
}

#[tokio::test]
async fn oci_zstd_build_pushes_zstd_layers_that_hoist_pulls_back_as_the_source() {
    zstd_build_with_gzip_twin("oci").await;
}

#[tokio::test]
async fn docker_format_with_zstd_layers_is_refused_when_submitted() {
    // Docker schema 2 has no zstd layer type: skopeo and podman refuse such images, so
    // hoist does not make them.
    let world = World::start().await;
    make_source(&world.root().join("dz"), "dz");
    let body = json!({"source": "dz", "target": world.image("dz/app:1"),
                      "format": "docker", "compression": "zstd"});
    let resp = world.post("/builds").json(&body).send().await.unwrap();
    let problem = expect_problem(resp, 400, Some("invalid_request")).await;
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("zstd"),
        "{problem}"
    );
}

// ---------------------------------------------------------------------------------------
// Reproducibility and owners
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn same_folder_with_source_date_epoch_builds_to_the_same_digest_twice() {
    let world = World::start().await;
    let source = world.root().join("repro");
    make_source(&source, "repro");
    let body = |tag: &str| {
        json!({"source": "repro", "target": world.image(&format!("repro/app:{tag}")),
               "source_date_epoch": SDE, "config": {"cmd": ["/bin/app"]}})
    };
    let first = build_ok(&world, body("one")).await;
    // what the epoch hides: mtimes newer than it
    set_mtime(&source.join("label"), now() as u64);
    set_mtime(&source.join("data/future"), FUTURE + 1);
    let second = build_ok(&world, body("two")).await;
    assert_eq!(
        first.result()["digest"],
        second.result()["digest"],
        "same folder, same epoch: same image\n{first:?}\n{second:?}"
    );
    assert_eq!(first.result()["layers"], second.result()["layers"]);
    let one = served(&world.registry, "repro/app:one").await;
    let two = served(&world.registry, "repro/app:two").await;
    assert_eq!(
        one.raw, two.raw,
        "the registry serves the same manifest bytes"
    );
    assert_eq!(one.digest, first.result()["digest"].as_str().unwrap());
    assert_eq!(one.config["created"], "2020-09-13T12:26:40Z");
    assert_eq!(
        unix_time(one.config["created"].as_str().unwrap()),
        SDE as i64
    );
    assert_eq!(one.config["history"][0]["created"], one.config["created"]);

    // every mtime at most the epoch, older ones kept
    let items = built_layer_items(&world.registry, "repro/app", &one).await;
    assert!(
        items.iter().all(|i| i.mtime <= SDE),
        "mtimes clamped: {:?}",
        items.iter().filter(|i| i.mtime > SDE).collect::<Vec<_>>()
    );
    let mtime = |name: &str| items.iter().find(|i| i.name == name).unwrap().mtime;
    assert_eq!(mtime("data/old"), OLD);
    assert_eq!(mtime("data/future"), SDE);
    let pulled = world
        .pull_ok(&world.image("repro/app:one"), "repro-pulled")
        .await;
    assert_tree(
        &expected_from_source(
            &source,
            Recorded {
                source_date_epoch: Some(SDE),
                ..Recorded::default()
            },
        ),
        &pulled.dest(),
        &[],
        "the reproducible build pulled back",
    );

    // another epoch is another image; no epoch keeps the newer mtimes
    let other = build_ok(
        &world,
        json!({"source": "repro", "target": world.image("repro/app:three"),
               "source_date_epoch": SDE + 1, "config": {"cmd": ["/bin/app"]}}),
    )
    .await;
    assert_ne!(other.result()["digest"], first.result()["digest"]);
    let unclamped = build_ok(
        &world,
        json!({"source": "repro", "target": world.image("repro/app:four")}),
    )
    .await;
    assert_ne!(
        unclamped.result()["layers"][0]["digest"],
        first.result()["layers"][0]["digest"]
    );
}

#[tokio::test]
async fn keep_owners_records_the_files_owners_in_the_layer() {
    let world = World::start().await;
    let source = world.root().join("owned");
    make_source(&source, "owners");
    let job = build_ok(
        &world,
        json!({"source": source.display().to_string(),
               "target": world.image("owners/app:1"), "keep_owners": true}),
    )
    .await;
    assert_eq!(job.0["request"]["keep_owners"], true);
    let served = served(&world.registry, "owners/app:1").await;
    let items = built_layer_items(&world.registry, "owners/app", &served).await;
    let owner = |name: &str| {
        items
            .iter()
            .find(|i| i.name.trim_end_matches('/') == name)
            .unwrap()
            .owner
    };
    assert_eq!(owner("etc/app.conf"), (1000, 1000));
    assert_eq!(owner("etc/secret"), (1000, 50));
    assert_eq!(owner("home/user"), (1000, 1000));
    assert_eq!(owner("links/relative"), (1000, 1000));
    assert_eq!(owner("srv/group"), (0, 50));
    assert_eq!(owner("etc/big-ids"), (3_000_000, 3_000_001));
    assert_eq!(owner("bin/app"), (0, 0));
    let expected = expected_from_source(
        &source,
        Recorded {
            keep_owners: true,
            ..Recorded::default()
        },
    );
    let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, "owners/app:1");
    assert_tree(&expected, &unpacked.rootfs, &[], "umoci's unpack");
    let pulled = world
        .pull_ok(&world.image("owners/app:1"), "owners-pulled")
        .await;
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull");
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

#[tokio::test]
async fn build_on_a_base_in_the_same_registry_mounts_its_layers_and_inherits_its_config() {
    let world = World::builder().proxy().start().await;
    let base = world.push(&BASE, "base/img:1", Format::Oci);
    let base_config = image::inspect_config(&world.registry, "base/img:1", None);
    assert_eq!(
        base_config["config"]["Cmd"],
        json!(["--from-base"]),
        "umoci wrote the base config this test expects: {base_config}"
    );
    make_source(&world.root().join("app"), "on-base");
    let (config, expected_config) = overrides_on_base();
    world.proxy().clear_log();
    let job = build_ok(
        &world,
        json!({"source": "app", "target": world.image("team/app:1"),
               "base": world.image("base/img:1"), "config": config, "format": "docker"}),
    )
    .await;
    let served = served(&world.registry, "team/app:1").await;
    assert_eq!(job.result()["digest"], served.digest.as_str());
    assert_eq!(served.manifest["mediaType"], DOCKER_MANIFEST);

    // layers: the base's, by reference, then the new one
    let base_layers = base.layer_digests();
    let layers = served.layer_digests();
    assert_eq!(layers.len(), base_layers.len() + 1, "{:?}", served.manifest);
    assert_eq!(layers[..base_layers.len()], base_layers[..]);
    for (l, b) in served.layers().iter().zip(base.layers()) {
        assert_eq!(l["size"], b["size"]);
        assert_eq!(
            l["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "base layers in the build's format"
        );
    }
    let result_layers: Vec<String> = job.result()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(result_layers, layers, "result.layers, oldest first");

    // pushed by mounting the base's blobs: no base layer uploaded
    for digest in &base_layers {
        // the query as sent: `mount=sha256%3A…&from=base%2Fimg` (or unescaped)
        let mounted = logged(&world, "POST", "/v2/team/app/blobs/uploads/?")
            .into_iter()
            .any(|m| {
                let query = m.path.replace("%3A", ":").replace("%2F", "/");
                m.status == 201
                    && query.contains(&format!("mount={digest}"))
                    && query.contains("from=base/img")
            });
        assert!(
            mounted,
            "base layer {digest} mounted from base/img: {}",
            world.proxy().log_text()
        );
        assert!(
            !uploads(&world).iter().any(|u| u.contains(&digest[7..])),
            "base layer {digest} uploaded: {:?}",
            uploads(&world)
        );
        assert!(world.registry.blob_file(digest).exists());
    }
    assert!(
        !logged(&world, "GET", "/blobs/")
            .iter()
            .any(|l| base_layers.iter().any(|d| l.path.contains(d.as_str()))),
        "a mounted base layer is not downloaded: {}",
        world.proxy().log_text()
    );
    // every blob was checked for before anything was sent
    for digest in served
        .layer_digests()
        .iter()
        .chain([&served.manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .to_owned()])
    {
        assert!(
            !logged(&world, "HEAD", &format!("/v2/team/app/blobs/{digest}")).is_empty(),
            "HEAD {digest}: {}",
            world.proxy().log_text()
        );
    }
    let puts = logged(&world, "PUT", "/v2/team/app/manifests/");
    assert_eq!(puts.len(), 1, "{}", world.proxy().log_text());
    assert!(
        puts[0].path.ends_with("/manifests/1"),
        "PUT by tag: {:?}",
        puts[0]
    );

    // the config: the base's, overridden field by field
    let c = &served.config;
    assert_eq!(c["config"], expected_config, "{c}");
    assert_eq!(c["architecture"], base_config["architecture"]);
    assert_eq!(c["os"], base_config["os"]);
    let base_diff_ids = base_config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(
        served.diff_ids()[..base_diff_ids.len()],
        {
            base_diff_ids
                .iter()
                .map(|d| d.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }[..]
    );
    assert_eq!(served.diff_ids().len(), base_diff_ids.len() + 1);
    let base_history = base_config["history"].as_array().unwrap();
    let history = c["history"].as_array().unwrap();
    assert_eq!(history.len(), base_history.len() + 1, "{c}");
    assert_eq!(
        history[..base_history.len()],
        base_history[..],
        "history kept"
    );
    assert_ne!(history.last().unwrap()["empty_layer"], true);
    assert_eq!(history.last().unwrap()["created"], c["created"]);
    built_layer_items(&world.registry, "team/app", &served).await;
    assert_skopeo_reads(&world.registry, "team/app:1", &served);

    // the tree: the base's with the folder laid over it
    let expected = overlay(
        scan(&BASE_TREE.rootfs, &[]),
        expected_from_source(&world.root().join("app"), Recorded::default()),
    );
    let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, "team/app:1");
    assert_tree(&expected, &unpacked.rootfs, &[], "umoci's unpack");
    let pulled = world
        .pull_ok(&world.image("team/app:1"), "app-pulled")
        .await;
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull");
}

#[tokio::test]
async fn base_given_as_an_index_is_the_image_for_the_builds_platform() {
    let world = World::start().await;
    let index = fixtures::push_two_platform_index(&world.registry, "multi/base:1");
    make_source(&world.root().join("src"), "index");
    for (platform, arch, variant, tag) in [
        (Some("linux/arm64/v8"), "arm64", Some("v8"), "arm"),
        (None, upload::host_arch(), None, "host"),
    ] {
        let mut body = json!({"source": "src", "target": world.image(&format!("multi/app:{tag}")),
                              "base": world.image("multi/base:1")});
        if let Some(p) = platform {
            body["platform"] = json!(p);
        }
        let job = build_ok(&world, body).await;
        let repo_tag = format!("multi/app:{tag}");
        let served = served(&world.registry, &repo_tag).await;
        let base = image::inspect_pushed(
            &world.registry,
            &format!("multi/base@{}", index.entry_digest(arch)),
        );
        assert_eq!(
            served.layer_digests()[..1],
            base.layer_digests()[..],
            "the base layer is the {arch} image's"
        );
        assert_eq!(served.config["architecture"], arch, "{}", served.config);
        assert_eq!(served.config["os"], "linux");
        match variant {
            Some(v) => assert_eq!(served.config["variant"], v, "{}", served.config),
            None => assert!(served.config.get("variant").is_none()),
        }
        let platform_said = match variant {
            Some(v) => format!("linux/{arch}/{v}"),
            None => format!("linux/{arch}"),
        };
        assert_eq!(job.result()["platform"], platform_said.as_str(), "{job:?}");
        // the image pushed is one platform's image, not an index
        assert_eq!(served.manifest["mediaType"], OCI_MANIFEST);
        let pulled = world
            .pull(
                json!({"image": world.image(&repo_tag), "dest": format!("pulled-{tag}"),
                         "platform": platform_said}),
            )
            .await;
        pulled.expect_succeeded();
        assert_eq!(
            fs::read_to_string(pulled.dest().join("platform")).unwrap(),
            format!("linux/{arch}\n")
        );
        assert_eq!(
            fs::read_to_string(pulled.dest().join("label")).unwrap(),
            "index"
        );
    }
}

#[tokio::test]
async fn base_in_another_registry_is_fetched_with_base_auth_and_uploaded_with_auth() {
    let world = World::builder()
        .auth(RegistryAuth::token("alice", PASSWORD))
        .start()
        .await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = Registry::start(
        other_dir.path(),
        RegistryAuth::basic("bob", "bobs-password"),
    );
    let base_image = base_image("other-registry");
    // a Docker schema 2 base under an OCI build: its layers get OCI media types
    let base = base_image.push(&other, "base/img:1", Format::DockerV2s2);
    let base_ref = format!("{}/base/img:1", other.host());
    make_source(&world.root().join("src"), "cross");
    let alice = json!({"username": "alice", "password": PASSWORD});
    let bob = json!({"username": "bob", "password": "bobs-password"});
    let body = |tag: &str| {
        json!({"source": "src", "target": world.image(&format!("team/app:{tag}")),
               "base": base_ref, "compression": "zstd"})
    };

    // the target's credentials are no good for the base's registry, and the other way round
    let mut no_base_auth = body("a");
    no_base_auth["auth"] = alice.clone();
    build(&world, no_base_auth)
        .await
        .expect_failed("unauthorized");
    let mut no_auth = body("b");
    no_auth["base_auth"] = bob.clone();
    build(&world, no_auth).await.expect_failed("unauthorized");
    let mut swapped = body("c");
    swapped["auth"] = bob.clone();
    swapped["base_auth"] = alice.clone();
    build(&world, swapped).await.expect_failed("unauthorized");

    let mut both = body("1");
    both["auth"] = alice;
    both["base_auth"] = bob;
    let job = build_ok(&world, both).await;
    let served = served(&world.registry, "team/app:1").await;
    assert_eq!(job.result()["digest"], served.digest.as_str());
    assert_eq!(served.layer_digests()[..2], base.layer_digests()[..]);
    assert_eq!(served.manifest["mediaType"], OCI_MANIFEST);
    for layer in &served.layers()[..2] {
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "a base layer in the build's format"
        );
    }
    assert_eq!(
        served.layers()[2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_skopeo_reads(&world.registry, "team/app:1", &served);
    for digest in base.layer_digests() {
        assert!(
            world.registry.blob_file(&digest).exists(),
            "base layer {digest} uploaded into the target registry"
        );
    }
    let seen = format!(
        "{}\n{}",
        world.hoist.log_text(),
        world.get_json("/jobs").await.1
    );
    for secret in [PASSWORD, "bobs-password"] {
        assert!(
            !seen.contains(secret),
            "a password shows in the log or jobs"
        );
    }
    let expected = overlay(
        scan(&base_image.unpack_reference().rootfs, &[]),
        expected_from_source(&world.root().join("src"), Recorded::default()),
    );
    let pulled = world
        .pull(json!({"image": world.image("team/app:1"), "dest": "pulled",
                     "auth": {"username": "alice", "password": PASSWORD}}))
        .await;
    pulled.expect_succeeded();
    assert_tree(
        &expected,
        &pulled.dest(),
        &[],
        "hoist's pull of the zstd build",
    );
}

// ---------------------------------------------------------------------------------------
// Pushing: what is there is not sent again; progress; auth
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn second_push_of_the_same_build_uploads_no_blob() {
    let world = World::builder().proxy().start().await;
    world.push(&BASE, "base/img:1", Format::Oci);
    make_source(&world.root().join("src"), "twice");
    for (with_base, repo) in [(false, "alone/app"), (true, "stacked/app")] {
        let mut body = json!({"source": "src", "source_date_epoch": SDE});
        if with_base {
            body["base"] = json!(world.image("base/img:1"));
        }
        body["target"] = json!(world.image(&format!("{repo}:1")));
        let first = build_ok(&world, body.clone()).await;
        let states: Vec<&str> = first.0["progress"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["state"].as_str().unwrap())
            .collect();
        assert!(
            states.contains(&"pushed"),
            "the first push uploads: {first:?}"
        );

        assert!(
            !uploads(&world).is_empty(),
            "the first push's uploads are seen in the proxy log: {}",
            world.proxy().log_text()
        );
        world.proxy().clear_log();
        body["target"] = json!(world.image(&format!("{repo}:2")));
        let second = build_ok(&world, body).await;
        assert_eq!(second.result()["digest"], first.result()["digest"]);
        assert_eq!(
            uploads(&world),
            Vec::<String>::new(),
            "the second push (base: {with_base}) uploaded:\n{}",
            world.proxy().log_text()
        );
        assert!(
            logged(&world, "POST", "/blobs/uploads/").is_empty(),
            "no upload started, no mount asked: {}",
            world.proxy().log_text()
        );
        let heads = logged(&world, "HEAD", &format!("/v2/{repo}/blobs/"));
        let blobs = second.result()["layers"].as_array().unwrap().len() + 1;
        assert!(
            heads.len() >= blobs && heads.iter().all(|h| h.status == 200),
            "every blob (layers and config) checked with HEAD and found: {}",
            world.proxy().log_text()
        );
        assert_eq!(
            logged(&world, "PUT", &format!("/v2/{repo}/manifests/2")).len(),
            1,
            "{}",
            world.proxy().log_text()
        );
        for layer in second.0["progress"]["layers"].as_array().unwrap() {
            assert_eq!(layer["state"], "exists", "{second:?}");
        }
        assert_eq!(
            served(&world.registry, &format!("{repo}:2")).await.digest,
            first.result()["digest"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn progress_of_a_build_reports_the_bytes_pushed() {
    let world = World::builder().proxy().start().await;
    let source = world.root().join("big");
    fs::create_dir_all(&source).unwrap();
    fs::write(
        source.join("blob.bin"),
        image::incompressible_bytes(3 << 20, 7),
    )
    .unwrap();
    // hold the first existence check back for 2 s, so the events are followed live
    world.proxy().add_rule(
        Rule::new(
            Fault::TooManyRequests {
                retry_after_secs: 2,
            },
            "/blobs/",
        )
        .method("HEAD")
        .times(1),
    );
    let job = submit_build(
        &world,
        &json!({"source": "big", "target": world.image("big/app:1")}),
    )
    .await;
    let text = tokio::time::timeout(Duration::from_secs(120), async {
        world
            .get(&format!("/jobs/{}/events", job.id()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the event stream ends with the job");
    let job = world.wait_job(job.id()).await;
    job.expect_succeeded();
    let progress = &job.0["progress"];
    let layer_size = job.result()["layers"][0]["size"].as_u64().unwrap();
    assert!(layer_size > 3 << 20, "{job:?}");
    let served = served(&world.registry, "big/app:1").await;
    let config_size = served.manifest["config"]["size"].as_u64().unwrap();
    assert_eq!(progress["bytes_total"], layer_size + config_size, "{job:?}");
    assert_eq!(progress["bytes_done"], progress["bytes_total"], "{job:?}");
    assert_eq!(progress["layers_total"], 2, "the layer and the config");
    assert_eq!(progress["layers_done"], 2, "{job:?}");

    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|b| {
            b.lines()
                .any(|l| l.strip_prefix("event:").map(str::trim) == Some("progress"))
        })
        .map(|b| {
            let data: String = b
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            serde_json::from_str(&data).unwrap()
        })
        .collect();
    // `done` is the last phase of a job that succeeded: its bytes are the pushing ones.
    let pushing: Vec<&Value> = events
        .iter()
        .filter(|e| e["phase"] == "pushing" || e["phase"] == "done")
        .collect();
    assert!(
        !pushing.is_empty(),
        "progress events in phase pushing: {text}"
    );
    let done: Vec<u64> = pushing
        .iter()
        .map(|e| e["bytes_done"].as_u64().unwrap())
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "bytes_done only grows: {done:?}"
    );
    assert_eq!(
        pushing.last().unwrap()["bytes_done"],
        layer_size + config_size
    );
}

#[tokio::test]
async fn token_auth_registry_builds_with_credentials_and_refuses_without() {
    let world = World::builder()
        .auth(RegistryAuth::token("alice", PASSWORD))
        .start()
        .await;
    world.push(&BASE, "base/img:1", Format::Oci);
    make_source(&world.root().join("src"), "token");
    let alice = json!({"username": "alice", "password": PASSWORD});
    let tokens = world.registry.token_server.as_ref().unwrap();

    for (i, (format, compression, with_base)) in [
        ("oci", "zstd", true),
        ("docker", "gzip", true),
        ("oci", "gzip", false),
    ]
    .into_iter()
    .enumerate()
    {
        let repo_tag = format!("private/app:{i}");
        let mut body = json!({"source": "src", "target": world.image(&repo_tag),
                              "format": format, "compression": compression, "auth": alice});
        if with_base {
            body["base"] = json!(world.image("base/img:1"));
        }
        let before = tokens.requests().len();
        let mounts = || {
            world
                .registry
                .access_log_lines("POST /v2/private/app/blobs/uploads/?")
                .into_iter()
                .filter(|l| l.contains("mount=") && l.contains("\" 201 "))
                .count()
        };
        let mounts_before = mounts();
        let job = build_ok(&world, body).await;
        let served = served(&world.registry, &repo_tag).await;
        assert_eq!(job.result()["digest"], served.digest.as_str());
        let (manifest_type, _, layer_type) = media_types(format, compression);
        assert_eq!(served.manifest["mediaType"], manifest_type);
        assert_eq!(
            served.layers().last().unwrap()["mediaType"],
            layer_type.as_str()
        );
        assert_skopeo_reads(&world.registry, &repo_tag, &served);
        if with_base && i == 0 {
            assert_eq!(
                mounts() - mounts_before,
                2,
                "the base's two layers are mounted under token auth: {:?}",
                world.registry.access_log_lines("/blobs/uploads/")
            );
        }
        let asked = &tokens.requests()[before..];
        assert!(
            asked.iter().any(|r| r.granted
                && r.scopes
                    .iter()
                    .any(|s| s == "repository:private/app:pull,push"
                        || s == "repository:private/app:push,pull")),
            "a push,pull token for the target: {asked:?}"
        );
        let mut expected = expected_from_source(&world.root().join("src"), Recorded::default());
        if with_base {
            expected = overlay(scan(&BASE_TREE.rootfs, &[]), expected);
        }
        if compression == "gzip" {
            let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, &repo_tag);
            assert_tree(&expected, &unpacked.rootfs, &[], "umoci's unpack");
        }
        let pulled = world
            .pull(
                json!({"image": world.image(&repo_tag), "dest": format!("pulled-{i}"),
                         "auth": alice}),
            )
            .await;
        pulled.expect_succeeded();
        assert_tree(&expected, &pulled.dest(), &[], "hoist's pull");
    }

    // without credentials, or with wrong ones: unauthorized, and nothing pushed
    let job = build(
        &world,
        json!({"source": "src", "target": world.image("private/app:anonymous")}),
    )
    .await;
    job.expect_failed("unauthorized");
    let job = build(
        &world,
        json!({"source": "src", "target": world.image("private/app:wrong"),
               "auth": {"username": "alice", "password": "wrong"}}),
    )
    .await;
    job.expect_failed("unauthorized");
    let tags = tools::run_stdout(
        tools::command("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("--creds=alice:{PASSWORD}"))
            .arg(format!("docker://{}/private/app", world.registry.host())),
    );
    let mut tags: Vec<String> =
        serde_json::from_value(serde_json::from_str::<Value>(&tags).unwrap()["Tags"].clone())
            .unwrap();
    tags.sort();
    assert_eq!(tags, ["0", "1", "2"], "no tag pushed without credentials");
    assert!(
        !world.hoist.log_text().contains(PASSWORD),
        "the password reached the log"
    );
}

// ---------------------------------------------------------------------------------------
// Requests refused before they become jobs
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn build_requests_that_cannot_be_built_are_refused_and_make_no_job() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "refused");
    fs::write(world.root().join("a-file"), "not a folder").unwrap();
    fs::create_dir_all(world.outside().join("src")).unwrap();
    let target = world.image("refused/app:1");
    let with = |extra: Value| {
        let mut body = json!({"source": "src", "target": target});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let outside = world.outside().join("src").display().to_string();
    let root = world.root().display().to_string();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            with(json!({"source": outside})),
            403,
            "source_outside_roots",
        ),
        (with(json!({"source": root})), 403, "source_outside_roots"),
        (
            with(json!({"source": "does/not/exist"})),
            400,
            "invalid_source",
        ),
        (with(json!({"source": "a-file"})), 400, "invalid_source"),
        (with(json!({"source": "src/../src"})), 400, "invalid_source"),
        (with(json!({"source": ""})), 400, "invalid_source"),
        (
            with(
                json!({"target": format!("{}@sha256:{}", world.image("refused/app"), "a".repeat(64))}),
            ),
            400,
            "invalid_reference",
        ),
        (
            with(
                json!({"target": format!("{}@sha256:{}", world.image("refused/app:1"), "b".repeat(64))}),
            ),
            400,
            "invalid_reference",
        ),
        (
            with(json!({"target": "Not A/Reference"})),
            400,
            "invalid_reference",
        ),
        (
            with(json!({"base": "UPPER/case:1"})),
            400,
            "invalid_reference",
        ),
        (
            with(json!({"config": {"env": ["NO_EQUALS_SIGN"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"env": ["=value"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"exposed_ports": ["http"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"exposed_ports": ["8080/quic"]}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"config": {"labels": {"": "x"}}})),
            400,
            "invalid_config",
        ),
        (
            with(json!({"platform": "not-a-platform"})),
            400,
            "invalid_platform",
        ),
    ];
    for (body, status, code) in cases {
        refused(&world, body, status, code).await;
    }
    // malformed JSON shapes: 400 whatever the code
    for body in [
        with(json!({"source_date_epoch": -1})),
        with(json!({"format": "tarball"})),
        with(json!({"compression": "lz4"})),
        with(json!({"config": {"entrypoint": "/bin/app"}})),
        with(json!({"config": {"volumes": ["/data"]}})),
        with(json!({"unknown_field": true})),
        json!({"target": target}),
        json!({"source": "src"}),
    ] {
        let resp = world.post("/builds").json(&body).send().await.unwrap();
        expect_problem(resp, 400, None).await;
    }
    let (_, builds) = world.get_json("/jobs?kind=build").await;
    assert!(
        jobs_of(&builds).is_empty(),
        "refused builds made jobs: {builds}"
    );
    // and the same source, absolute in the second root, is fine
    make_source(&world.root2().join("elsewhere"), "second-root");
    let job = build_ok(
        &world,
        json!({"source": world.root2().join("elsewhere").display().to_string(),
               "target": target}),
    )
    .await;
    assert_eq!(
        job.0["request"]["source"],
        world.root2().join("elsewhere").display().to_string()
    );
}

// ---------------------------------------------------------------------------------------
// The whole story, as a user would tell it
// ---------------------------------------------------------------------------------------

/// `curl -sS` with `args`; its answer as JSON.
fn curl(args: &[&str]) -> Value {
    let out = tools::run_stdout(
        tools::command("curl")
            .args(["-sS", "--fail-with-body", "--noproxy", "*"])
            .args(args),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("curl {args:?} said {out:?}: {e}"))
}

#[tokio::test]
async fn folder_built_with_curl_on_a_pulled_base_pulls_back_as_the_source_with_hoist_and_skopeo() {
    let world = World::start().await;
    world.push(&BASE, "base/img:1", Format::Oci);
    // the base, pulled by hoist: what the new layer goes on top of
    let base = world.pull_ok(&world.image("base/img:1"), "base").await;
    make_source(&world.root().join("site"), "curl");
    let body = json!({"source": "site", "target": world.image("site/app:1.0"),
                      "base": world.image("base/img:1"),
                      "config": {"entrypoint": ["/bin/app"], "env": ["MODE=curl"]}})
    .to_string();
    let accepted = curl(&[
        "-X",
        "POST",
        &world.url("/builds"),
        "-H",
        "content-type: application/json",
        "-d",
        &body,
    ]);
    let id = accepted["id"].as_str().expect("job id").to_owned();
    let mut job = accepted;
    for _ in 0..5 {
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break;
        }
        job = curl(&[&world.url(&format!("/jobs/{id}?wait=60"))]);
    }
    assert_eq!(job["status"], "succeeded", "{job}");
    let expected = overlay(
        scan(&base.dest(), &[]),
        expected_from_source(&world.root().join("site"), Recorded::default()),
    );
    let pulled = world
        .pull_ok(&world.image("site/app:1.0"), "site-pulled")
        .await;
    assert_eq!(pulled.result()["digest"], job["result"]["digest"]);
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull of the build");
    let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, "site/app:1.0");
    assert_tree(
        &expected,
        &unpacked.rootfs,
        &[],
        "skopeo + umoci's unpack of the build",
    );
    let config = image::inspect_config(&world.registry, "site/app:1.0", None);
    assert_eq!(config["config"]["Entrypoint"], json!(["/bin/app"]));
    assert_eq!(
        config["config"]["Env"],
        json!(["PATH=/usr/bin:/bin", "KEEP=base", "MODE=curl"])
    );
}

// ---------------------------------------------------------------------------------------
// Cancelling, and big layers
// ---------------------------------------------------------------------------------------

/// Nothing left in the daemon's `tmp/` (where builds write their layer).
fn assert_no_work_files(world: &World) {
    let tmp = world.hoist.data_dir.join("tmp");
    let left: Vec<_> = fs::read_dir(&tmp)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "build work files left: {left:?}");
}

/// True when the registry has a manifest under `repo:tag` (HEAD on the registry itself).
async fn tag_exists(registry: &Registry, repo: &str, tag: &str) -> bool {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .head(registry.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Accept", format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("HEAD manifest {repo}:{tag}: {other}"),
    }
}

/// Submits a build whose first existence check is held back 3 s (429, `Retry-After`),
/// cancels it while it is pushing, and returns the ended job.
async fn cancel_while_pushing(world: &World, body: Value) -> Job {
    world.proxy().add_rule(
        Rule::new(
            Fault::TooManyRequests {
                retry_after_secs: 3,
            },
            "/blobs/",
        )
        .method("HEAD")
        .times(1),
    );
    let job = submit_build(world, &body).await;
    world
        .wait_until(job.id(), Duration::from_secs(30), |j| {
            j.status() == "running" && j.0["progress"]["phase"] == "pushing"
        })
        .await;
    let resp = world
        .delete(&format!("/jobs/{}", job.id()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "DELETE of a running build");
    world.wait_job(job.id()).await
}

#[tokio::test]
async fn cancelled_build_pushes_no_manifest() {
    let world = World::builder().proxy().start().await;
    make_source(&world.root().join("src"), "cancel");
    let body = |tag: &str| {
        json!({"source": "src", "target": world.image(&format!("cancel/app:{tag}")),
               "source_date_epoch": SDE})
    };
    // blobs still to upload: the cancel is seen before the first upload
    let job = cancel_while_pushing(&world, body("1")).await;
    assert_eq!(job.status(), "cancelled", "{job:?}");
    assert_eq!(job.error_code(), Some("cancelled"));
    assert!(job.result().is_null(), "{job:?}");
    assert!(!tag_exists(&world.registry, "cancel/app", "1").await);
    assert_no_work_files(&world);

    // every blob already there (the same build pushed before): cancelling must still
    // keep the manifest from being PUT
    build_ok(&world, body("2")).await;
    let job = cancel_while_pushing(&world, body("3")).await;
    assert_eq!(
        job.status(),
        "cancelled",
        "a build cancelled while pushing went on: {job:?}"
    );
    assert!(
        !tag_exists(&world.registry, "cancel/app", "3").await,
        "a cancelled build moved the tag"
    );
}

#[tokio::test]
async fn layer_over_64_mib_is_uploaded_in_chunks_and_pulls_back_whole() {
    let world = World::builder().proxy().start().await;
    let source = world.root().join("huge");
    fs::create_dir_all(&source).unwrap();
    fs::write(
        source.join("blob.bin"),
        image::incompressible_bytes(66 << 20, 3),
    )
    .unwrap();
    fs::write(source.join("small"), "small\n").unwrap();
    let job = build_ok(
        &world,
        json!({"source": "huge", "target": world.image("huge/app:1"), "compression": "zstd"}),
    )
    .await;
    let layer = job.result()["layers"][0].clone();
    let size = layer["size"].as_u64().unwrap();
    assert!(size > 64 << 20, "{job:?}");
    let patches = logged(&world, "PATCH", "/v2/huge/app/blobs/uploads/");
    assert!(
        patches.len() >= 2 && patches.iter().all(|p| p.status == 202),
        "a big blob goes up in PATCH chunks: {}",
        world.proxy().log_text()
    );
    let digest = layer["digest"].as_str().unwrap();
    let stored = fs::read(world.registry.blob_file(digest)).unwrap();
    assert_eq!(stored.len() as u64, size);
    assert_eq!(tools::digest_of(&stored), digest);
    drop(stored);
    let served = served(&world.registry, "huge/app:1").await;
    assert_eq!(served.digest, job.result()["digest"].as_str().unwrap());
    let pulled = world
        .pull_ok(&world.image("huge/app:1"), "huge-pulled")
        .await;
    assert_tree(
        &expected_from_source(&source, Recorded::default()),
        &pulled.dest(),
        &[],
        "the big build pulled back",
    );
}

#[tokio::test]
async fn build_whose_base_cannot_be_had_fails_and_pushes_nothing() {
    let world = World::start().await;
    world.push(&BASE, "base/img:1", Format::Oci);
    make_source(&world.root().join("src"), "no-base");
    let cases = [
        (
            json!({"base": world.image("base/missing:1")}),
            "manifest_unknown",
        ),
        (
            json!({"base": world.image("base/img:404")}),
            "manifest_unknown",
        ),
        (
            json!({"base": world.image("base/img:1"), "platform": "linux/s390x"}),
            "platform_not_found",
        ),
    ];
    for (i, (extra, code)) in cases.into_iter().enumerate() {
        let mut body = json!({"source": "src", "target": world.image(&format!("nobase/app:{i}"))});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let job = build(&world, body).await;
        job.expect_failed(code);
        assert!(
            !tag_exists(&world.registry, "nobase/app", &i.to_string()).await,
            "a failed build pushed a manifest"
        );
    }
    assert_no_work_files(&world);
}

#[tokio::test]
async fn source_date_epoch_no_image_can_hold_is_refused_when_submitted() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "epoch");
    // year 10000: `created` has no RFC 3339 form. A bad request is a 400, never a job
    // that builds the layer and then fails.
    let body = json!({"source": "src", "target": world.image("epoch/app:1"),
                      "source_date_epoch": 253_402_300_800u64});
    let resp = world.post("/builds").json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status == 202 {
        let job: Value = serde_json::from_str(&text).unwrap();
        let job = world.wait_job(job["id"].as_str().unwrap()).await;
        panic!("accepted, and then the job ended so: {job:?}");
    }
    assert_eq!(status, 400, "{text}");
}
