//! The standard images of the test suite, built with umoci (and, for what umoci cannot
//! write, a hand-made layer added with `umoci raw add-layer`).
//!
//! Build each once per test binary (they are deterministic in shape, not in bytes:
//! umoci stamps the build time), push it into each test's own registry.

use std::sync::LazyLock;

use super::hostile_tar::{TarEntry, tar};
use super::image::{self, Image, ImageBuilder, PlatformImage, Pushed};
use super::registry::Registry;

/// A name longer than the 100 bytes of a ustar name field (umoci writes a PAX header).
pub const LONG_NAME: &str = "long/a-file-name-that-is-well-over-one-hundred-bytes-long-so-that-the-tar-writer-needs-pax-or-gnu-headers-for-it.txt";

/// Three layers exercising what a rootfs pull must get right:
///
/// 1. files, empty file and dir, nested dirs, relative and absolute symlinks, a dangling
///    symlink, a hardlink pair, setuid/setgid/sticky modes, owners (files, dirs,
///    symlinks), a fifo, an xattr, fixed old mtimes, a long name, a UTF-8 name;
/// 2. deletions as whiteouts (a file, a whole dir, a symlink), a replaced dir's contents,
///    changed content, changed mode and owner only, a file turned into a symlink, a dir
///    turned into a file, a new hardlink to a lower-layer file;
/// 3. (hand-made) an opaque directory: `opaque/.wh..wh..opq` hides what layer 1 put
///    there, and new entries come with it.
///
/// `flavour` is written into every layer, so two flavours share no layer: skopeo would
/// otherwise swap one's gzip blobs for the other's zstd blobs in the same registry.
pub fn features(flavour: &str) -> Image {
    ImageBuilder::new()
        .layer(|r| {
            r.file("flavour-1", flavour)
                .file("etc/hostname", "hoist-test\n")
                .file("etc/empty", "")
                .dir("var/empty")
                .file("usr/bin/tool", "#!/bin/sh\necho tool\n")
                .chmod("usr/bin/tool", 0o755)
                .file("usr/bin/suid", "setuid binary\n")
                .chmod("usr/bin/suid", 0o4755)
                .file("usr/bin/sgid", "setgid binary\n")
                .chmod("usr/bin/sgid", 0o2711)
                .dir("tmp")
                .chmod("tmp", 0o1777)
                .dir("srv/shared")
                .chmod("srv/shared", 0o2775)
                .chown("srv/shared", 0, 50)
                .file("home/user/notes.txt", "mine\n")
                .chown("home/user/notes.txt", 1000, 1000)
                .chown("home/user", 1000, 1000)
                .chmod("home/user", 0o700)
                .symlink("usr/bin/relative-link", "tool")
                .symlink("etc/absolute-link", "/usr/bin/tool")
                .symlink("etc/dangling", "/nowhere/at/all")
                .symlink("home/user/link", "notes.txt")
                .chown("home/user/link", 1000, 1000)
                .file("data/original", "shared bytes\n")
                .hardlink("data/second-name", "data/original")
                .fifo("run/fifo")
                .file("data/with-xattr", "x\n")
                .xattr("data/with-xattr", "user.hoist", b"kept")
                .file("data/old", "from 2001\n")
                .mtime("data/old", 1_000_000_000)
                .file(LONG_NAME, "long name\n")
                .file("data/ünïcødé ✓.txt", "utf-8 name\n")
                .file("to-delete/file", "gone in layer 2\n")
                .file("dir-to-remove/a", "a\n")
                .file("dir-to-remove/sub/b", "b\n")
                .file("replace/old-1", "old\n")
                .file("replace/old-2", "old\n")
                .file("becomes-link", "a file in layer 1\n")
                .file("becomes-file/inner", "a dir in layer 1\n")
                .file("opaque/lower-1", "hidden by layer 3\n")
                .file("opaque/lower-dir/x", "hidden by layer 3\n")
                .symlink("link-to-delete", "etc/hostname")
                .file("chmod-only", "same content\n")
                .file("content-changes", "version 1\n");
        })
        .layer(|r| {
            r.file("flavour-2", flavour)
                .remove("to-delete/file")
                .remove("dir-to-remove")
                .remove("link-to-delete")
                .remove("replace/old-1")
                .remove("replace/old-2")
                .file("replace/new", "new\n")
                .file("content-changes", "version 2, longer\n")
                .chmod("chmod-only", 0o600)
                .chown("chmod-only", 33, 33)
                .remove("becomes-link")
                .symlink("becomes-link", "etc/hostname")
                .remove("becomes-file")
                .file("becomes-file", "a file in layer 2\n")
                .hardlink("data/third-name", "data/original");
        })
        .raw_layer(&tar(&[
            TarEntry::dir("opaque"),
            TarEntry::opaque("opaque"),
            TarEntry::file("opaque/upper", b"only this survives\n"),
            TarEntry::file("flavour-3", flavour.as_bytes()),
        ]))
        .build()
}

/// One small layer whose content names `label` (so two such images differ).
pub fn small(label: &str) -> Image {
    ImageBuilder::new()
        .layer(|r| {
            r.file("label", label)
                .file("etc/os-release", "ID=hoist-test\n")
                .symlink("bin", "usr/bin")
                .dir("usr/bin");
        })
        .build()
}

/// Two layers: a small one, then `size` incompressible bytes (seeded), so the second
/// blob is about `size` bytes: for slow, interrupted and counted downloads.
pub fn big(size: usize, seed: u64) -> Image {
    ImageBuilder::new()
        .layer(|r| {
            r.file("etc/os-release", "ID=hoist-test-big\n")
                .file("seed", seed.to_string());
        })
        .layer(|r| {
            r.incompressible("blob.bin", size, seed);
        })
        .build()
}

/// An image for a platform (`umoci config --os/--architecture`), whose `/platform` file
/// says which it is.
pub fn for_platform(os: &str, arch: &str) -> Image {
    ImageBuilder::new()
        .config(&[&format!("--os={os}"), &format!("--architecture={arch}")])
        .layer(|r| {
            r.file("platform", format!("{os}/{arch}\n"))
                .file(&format!("only-on-{arch}"), arch);
        })
        .build()
}

/// The `linux/amd64` image of [`push_two_platform_index`] ([`for_platform`]).
pub static AMD64: LazyLock<Image> = LazyLock::new(|| for_platform("linux", "amd64"));
/// The `linux/arm64` image of [`push_two_platform_index`] ([`for_platform`]).
pub static ARM64: LazyLock<Image> = LazyLock::new(|| for_platform("linux", "arm64"));

/// Pushes the two-platform index as `repo_tag`: [`AMD64`] as `linux/amd64` and [`ARM64`]
/// as `linux/arm64/v8`, in that order. Returns the pushed index.
pub fn push_two_platform_index(registry: &Registry, repo_tag: &str) -> Pushed {
    image::push_index(
        registry,
        repo_tag,
        &[
            PlatformImage {
                image: &AMD64,
                os: "linux",
                architecture: "amd64",
                variant: None,
            },
            PlatformImage {
                image: &ARM64,
                os: "linux",
                architecture: "arm64",
                variant: Some("v8"),
            },
        ],
    )
}
