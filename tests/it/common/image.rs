//! Images made by real tools: `umoci` builds OCI layouts layer by layer (each `repack` adds
//! a layer; deletions become `.wh.` whiteouts), `skopeo` pushes them to a registry and
//! inspects what the registry holds, and `umoci unpack` gives the reference tree a pull
//! must reproduce.
//!
//! Tool facts this module relies on (umoci 0.4.7, skopeo 1.9.3):
//! * umoci never writes opaque markers (`.wh..wh..opq`): a replaced directory becomes one
//!   whiteout per removed entry. Opaque layers are hand-made tars added with
//!   `umoci raw add-layer`; `umoci unpack` honours them.
//! * umoci writes every changed entry's parent directories only in the first layer that
//!   creates them, and `umoci unpack` restores a directory's mtime from its own entry
//!   after later entries disturb it; so directory mtimes are deterministic.
//! * skopeo keeps a blob-info cache (`/var/lib/containers/cache`) and may reuse a blob the
//!   destination registry already holds in another compression instead of converting:
//!   `--dest-compress-format zstd` leaves gzip layers as gzip when the registry already
//!   has them. [`Image::push`] checks the pushed media types and fails loudly if so.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::registry::Registry;
use super::tools;

/// How to push: manifest format and layer compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI manifest, gzip layers (as umoci made them).
    Oci,
    /// Docker schema 2 manifest, gzip layers.
    DockerV2s2,
    /// OCI manifest, zstd layers.
    OciZstd,
}

/// A folder being filled as the next layer's rootfs, with helpers that panic on error.
pub struct Rootfs<'a>(&'a Path);

impl Rootfs<'_> {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn parent(&self, rel: &str) {
        if let Some(p) = self.path(rel).parent() {
            fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir -p {p:?}: {e}"));
        }
    }

    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        self.parent(rel);
        fs::write(self.path(rel), content).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        self
    }

    pub fn dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.path(rel)).unwrap_or_else(|e| panic!("mkdir {rel}: {e}"));
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        self.parent(rel);
        symlink(target, self.path(rel)).unwrap_or_else(|e| panic!("symlink {rel}: {e}"));
        self
    }

    /// `rel` becomes another name of the existing `existing`.
    pub fn hardlink(&self, rel: &str, existing: &str) -> &Self {
        self.parent(rel);
        fs::hard_link(self.path(existing), self.path(rel))
            .unwrap_or_else(|e| panic!("link {existing} {rel}: {e}"));
        self
    }

    pub fn fifo(&self, rel: &str) -> &Self {
        self.parent(rel);
        tools::run(tools::command("mkfifo").arg(self.path(rel)));
        self
    }

    /// Full mode bits, setuid/setgid/sticky included.
    pub fn chmod(&self, rel: &str, mode: u32) -> &Self {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {rel}: {e}"));
        self
    }

    /// Owner of the entry itself (not a symlink's target). Needs root.
    pub fn chown(&self, rel: &str, uid: u32, gid: u32) -> &Self {
        std::os::unix::fs::lchown(self.path(rel), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {rel}: {e}"));
        self
    }

    pub fn xattr(&self, rel: &str, name: &str, value: &[u8]) -> &Self {
        rustix::fs::lsetxattr(self.path(rel), name, value, rustix::fs::XattrFlags::empty())
            .unwrap_or_else(|e| panic!("setxattr {rel} {name}: {e}"));
        self
    }

    /// Sets a regular file's mtime (seconds since the epoch).
    pub fn mtime(&self, rel: &str, secs: u64) -> &Self {
        let f = fs::File::options()
            .write(true)
            .open(self.path(rel))
            .unwrap_or_else(|e| panic!("open {rel}: {e}"));
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap_or_else(|e| panic!("set mtime {rel}: {e}"));
        self
    }

    /// Removes a file, symlink or whole directory: the next layer whites it out.
    pub fn remove(&self, rel: &str) -> &Self {
        let p = self.path(rel);
        let meta = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
        if meta.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .unwrap_or_else(|e| panic!("remove {rel}: {e}"));
        self
    }

    /// `len` bytes that gzip and zstd cannot shrink (a deterministic xorshift stream), so
    /// a blob is about as big as its content: for slow and interrupted downloads.
    pub fn incompressible(&self, rel: &str, len: usize, seed: u64) -> &Self {
        self.file(rel, incompressible_bytes(len, seed))
    }
}

/// `len` bytes that gzip and zstd cannot shrink: a deterministic xorshift stream from
/// `seed`, so a blob is about as big as its content.
pub fn incompressible_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// Builds an OCI image layout with umoci, one layer per [`ImageBuilder::layer`] call.
pub struct ImageBuilder {
    dir: TempDir,
    tag: String,
    bundle_fresh: bool,
}

impl ImageBuilder {
    /// An image of `layers` layers, each one file `layerN/data` of `size` incompressible
    /// bytes (from `seed`).
    pub fn incompressible_layers(layers: usize, size: usize, seed: u64) -> Image {
        let mut b = ImageBuilder::new();
        for i in 0..layers {
            b = b.layer(|r| {
                r.incompressible(&format!("layer{i}/data"), size, seed * 100 + i as u64);
            });
        }
        b.build()
    }

    /// An empty image (no layers) tagged `t` in a new layout.
    pub fn new() -> ImageBuilder {
        let dir = tempfile::Builder::new()
            .prefix("hoist-test-image-")
            .tempdir()
            .expect("image temp dir");
        let b = ImageBuilder {
            dir,
            tag: "t".into(),
            bundle_fresh: false,
        };
        tools::run(
            tools::command("umoci")
                .arg("init")
                .arg("--layout")
                .arg(b.layout()),
        );
        tools::run(
            tools::command("umoci")
                .arg("new")
                .arg("--image")
                .arg(b.image_arg()),
        );
        b
    }

    fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn image_arg(&self) -> String {
        format!("{}:{}", self.layout().display(), self.tag)
    }

    fn unpack_bundle(&mut self) {
        if self.bundle_fresh {
            return;
        }
        let _ = fs::remove_dir_all(self.bundle());
        tools::run(
            tools::command("umoci")
                .arg("unpack")
                .arg("--image")
                .arg(self.image_arg())
                .arg(self.bundle()),
        );
        self.bundle_fresh = true;
    }

    /// Lets `f` change the rootfs, then `umoci repack` turns the changes into a layer.
    pub fn layer(mut self, f: impl FnOnce(&Rootfs)) -> ImageBuilder {
        self.unpack_bundle();
        let rootfs = self.bundle().join("rootfs");
        f(&Rootfs(&rootfs));
        tools::run(
            tools::command("umoci")
                .arg("repack")
                .arg("--refresh-bundle")
                .arg("--image")
                .arg(self.image_arg())
                .arg(self.bundle()),
        );
        self
    }

    /// Appends a hand-made, uncompressed layer tarball verbatim (umoci gzips it).
    pub fn raw_layer(mut self, tar: &[u8]) -> ImageBuilder {
        let file = self.dir.path().join("raw-layer.tar");
        fs::write(&file, tar).expect("write raw layer");
        tools::run(
            tools::command("umoci")
                .args(["raw", "add-layer", "--image"])
                .arg(self.image_arg())
                .arg(&file),
        );
        self.bundle_fresh = false;
        self
    }

    /// `umoci config` with these flags (`--config.env=K=V`, `--architecture=arm64`, …).
    pub fn config(mut self, flags: &[&str]) -> ImageBuilder {
        tools::run(
            tools::command("umoci")
                .arg("config")
                .arg("--image")
                .arg(self.image_arg())
                .args(flags),
        );
        self.bundle_fresh = false;
        self
    }

    pub fn build(self) -> Image {
        let _ = fs::remove_dir_all(self.bundle());
        Image {
            layout: self.layout(),
            tag: self.tag.clone(),
            _dir: Arc::new(self.dir),
        }
    }
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// A finished image in an OCI layout.
#[derive(Clone)]
pub struct Image {
    pub layout: PathBuf,
    pub tag: String,
    _dir: Arc<TempDir>,
}

/// A reference tree unpacked by umoci; the folder goes away with the value.
pub struct Unpacked {
    _dir: TempDir,
    pub rootfs: PathBuf,
}

/// What the registry holds after a push.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// `repo:tag` (no host: the daemon may reach the registry through the proxy).
    pub repo_tag: String,
    /// sha256 of the manifest bytes the registry serves (`skopeo inspect --raw`).
    pub digest: String,
    pub manifest: Value,
    pub raw: Vec<u8>,
}

impl Pushed {
    /// The layer descriptors of an image manifest.
    pub fn layers(&self) -> Vec<Value> {
        self.manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers()
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_owned())
            .collect()
    }

    pub fn config_digest(&self) -> String {
        self.manifest["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_owned()
    }

    /// Config and layers: every blob a pull fetches.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut v = vec![self.config_digest()];
        v.extend(self.layer_digests());
        v
    }

    pub fn media_type(&self) -> String {
        self.manifest["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_owned()
    }

    /// Of an index: the manifest digest of the entry whose platform is `arch`.
    pub fn entry_digest(&self, arch: &str) -> String {
        self.manifest["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Image {
    /// `oci:<layout>:<tag>`, skopeo's name for it.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }

    /// The tree a pull must produce, as `umoci unpack` makes it (owners kept: we are root).
    pub fn unpack_reference(&self) -> Unpacked {
        unpack_layout(&self.layout, &self.tag)
    }

    /// Pushes to `registry` as `repo_tag` with skopeo, then reads back what the registry
    /// serves and checks that the format asked for is what landed.
    pub fn push(&self, registry: &Registry, repo_tag: &str, format: Format) -> Pushed {
        let src = match format {
            // decompress first: then skopeo compresses with zstd instead of keeping gzip
            Format::OciZstd => {
                let dir = self
                    .layout
                    .with_file_name(format!("dir-{}", repo_tag.replace(['/', ':'], "_")));
                let _ = fs::remove_dir_all(&dir);
                tools::run(
                    tools::command("skopeo")
                        .args(["copy", "--quiet", "--dest-decompress"])
                        .arg(self.oci_ref())
                        .arg(format!("dir:{}", dir.display())),
                );
                format!("dir:{}", dir.display())
            }
            _ => self.oci_ref(),
        };
        let mut cmd = tools::command("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = registry.credentials() {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        match format {
            Format::Oci => {}
            Format::DockerV2s2 => {
                cmd.args(["--format", "v2s2"]);
            }
            Format::OciZstd => {
                cmd.args(["--format", "oci", "--dest-compress-format", "zstd"]);
            }
        }
        cmd.arg(&src)
            .arg(format!("docker://{}/{repo_tag}", registry.host()));
        tools::run(&mut cmd);
        let pushed = inspect_pushed(registry, repo_tag);
        let wanted = match format {
            Format::Oci => ("application/vnd.oci.image.manifest.v1+json", "tar+gzip"),
            Format::DockerV2s2 => (
                "application/vnd.docker.distribution.manifest.v2+json",
                "tar.gzip",
            ),
            Format::OciZstd => ("application/vnd.oci.image.manifest.v1+json", "tar+zstd"),
        };
        assert_eq!(
            pushed.media_type(),
            wanted.0,
            "skopeo pushed another format"
        );
        for layer in pushed.layers() {
            let mt = layer["mediaType"].as_str().unwrap_or_default();
            assert!(
                mt.ends_with(wanted.1),
                "skopeo pushed layer {layer} as {mt}, wanted *{}: its blob-info cache \
                 reused a blob this registry already had; push a zstd image before its gzip \
                 twin, or give it its own content",
                wanted.1
            );
        }
        pushed
    }
}

/// `umoci unpack` of `layout:tag` into a new temp dir.
pub fn unpack_layout(layout: &Path, tag: &str) -> Unpacked {
    let dir = tempfile::Builder::new()
        .prefix("hoist-test-ref-")
        .tempdir()
        .expect("reference temp dir");
    let bundle = dir.path().join("bundle");
    tools::run(
        tools::command("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle),
    );
    Unpacked {
        rootfs: bundle.join("rootfs"),
        _dir: dir,
    }
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest");
    layout.join("blobs").join(alg).join(hex)
}

/// One platform's image for [`push_index`].
pub struct PlatformImage<'a> {
    pub image: &'a Image,
    pub os: &'a str,
    pub architecture: &'a str,
    pub variant: Option<&'a str>,
}

/// Puts the images into one layout under an OCI index (with each entry's platform) and
/// pushes it with `skopeo copy --all`. Returns the pushed index.
pub fn push_index(registry: &Registry, repo_tag: &str, images: &[PlatformImage]) -> Pushed {
    let dir = tempfile::Builder::new()
        .prefix("hoist-test-index-")
        .tempdir()
        .expect("index temp dir");
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut manifests = Vec::new();
    for pi in images {
        for entry in fs::read_dir(pi.image.layout.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let to = blobs.join(entry.file_name());
            if !to.exists() {
                fs::copy(entry.path(), to).unwrap();
            }
        }
        let raw_on_disk = {
            // the manifest file's exact bytes: its digest is what the index must name
            let index: Value = read_json(&pi.image.layout.join("index.json"));
            let d = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| {
                    d["annotations"]["org.opencontainers.image.ref.name"] == pi.image.tag.as_str()
                })
                .unwrap()["digest"]
                .as_str()
                .unwrap()
                .to_owned();
            fs::read(blob_path(&pi.image.layout, &d)).unwrap()
        };
        let mut platform = json!({"architecture": pi.architecture, "os": pi.os});
        if let Some(v) = pi.variant {
            platform["variant"] = json!(v);
        }
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": tools::digest_of(&raw_on_disk),
            "size": raw_on_disk.len(),
            "platform": platform,
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let index_digest = tools::digest_of(&index);
    fs::write(blobs.join(tools::sha256_hex(&index)), &index).unwrap();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": index_digest,
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    let mut cmd = tools::command("skopeo");
    cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
    if let Some((u, p)) = registry.credentials() {
        cmd.arg(format!("--dest-creds={u}:{p}"));
    }
    cmd.arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{}/{repo_tag}", registry.host()));
    tools::run(&mut cmd);
    let pushed = inspect_pushed(registry, repo_tag);
    assert_eq!(
        pushed.media_type(),
        "application/vnd.oci.image.index.v1+json",
        "skopeo --all did not push an index"
    );
    pushed
}

fn skopeo_inspect(registry: &Registry, repo_tag: &str, extra: &[&str]) -> Vec<u8> {
    let mut cmd = tools::command("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]).args(extra);
    if let Some((u, p)) = registry.credentials() {
        cmd.arg(format!("--creds={u}:{p}"));
    }
    cmd.arg(format!("docker://{}/{repo_tag}", registry.host()));
    tools::run(&mut cmd).stdout
}

/// `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them.
pub fn inspect_raw(registry: &Registry, repo_tag: &str) -> Vec<u8> {
    skopeo_inspect(registry, repo_tag, &["--raw"])
}

/// skopeo's flags that pick `os/arch[/variant]` from an index.
fn platform_overrides(platform: Option<&str>) -> Vec<String> {
    let Some(p) = platform else { return Vec::new() };
    let parts: Vec<&str> = p.split('/').collect();
    let mut flags = vec![
        format!("--override-os={}", parts[0]),
        format!("--override-arch={}", parts[1]),
    ];
    if let Some(v) = parts.get(2) {
        flags.push(format!("--override-variant={v}"));
    }
    flags
}

/// `skopeo inspect` (for an index: of the entry for `platform`, `os/arch[/variant]`).
pub fn inspect(registry: &Registry, repo_tag: &str, platform: Option<&str>) -> Value {
    let extra = platform_overrides(platform);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    serde_json::from_slice(&skopeo_inspect(registry, repo_tag, &extra)).expect("inspect JSON")
}

/// `skopeo inspect --config`: the image config blob.
pub fn inspect_config(registry: &Registry, repo_tag: &str, platform: Option<&str>) -> Value {
    let mut extra = vec!["--config".to_owned()];
    extra.extend(platform_overrides(platform));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    serde_json::from_slice(&skopeo_inspect(registry, repo_tag, &extra)).expect("config JSON")
}

/// What the registry serves for `repo_tag`, read back with skopeo.
pub fn inspect_pushed(registry: &Registry, repo_tag: &str) -> Pushed {
    let raw = inspect_raw(registry, repo_tag);
    Pushed {
        repo_tag: repo_tag.into(),
        digest: tools::digest_of(&raw),
        manifest: serde_json::from_slice(&raw).expect("manifest JSON"),
        raw,
    }
}
