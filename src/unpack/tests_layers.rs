//! What layers do to a tree: whiteouts, links, modes, owners, special files, long names,
//! compression and times, each checked on a temporary tree (the tests run as root).

use crate::error::ErrorCode;
use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::test_tar::{E, Watched, apply_all, gzip, layer, noise, root_options, zstd};
use super::{Tree, UnpackError};
use crate::digest::Algorithm;
use crate::oci::Compression;

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = p.symlink_metadata().unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[tokio::test]
async fn whiteout_removes_a_lower_file_and_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[
        E::dir("etc"),
        E::file("etc/motd", "hi"),
        E::file("etc/keep", "k"),
        E::dir("var/cache"),
        E::file("var/cache/a/b", "deep"),
    ]);
    let upper = layer(&[E::file("etc/.wh.motd", ""), E::file("var/.wh.cache", "")]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    assert!(!exists(&root.join("etc/motd")));
    assert!(!exists(&root.join("etc/.wh.motd")));
    assert!(!exists(&root.join("var/cache")));
    assert!(!exists(&root.join("var/.wh.cache")));
    assert!(exists(&root.join("etc/keep")));
}

#[tokio::test]
async fn opaque_whiteout_hides_lower_layer_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[
        E::dir("d"),
        E::file("d/old", "o"),
        E::file("d/sub/older", "o"),
    ]);
    let upper = layer(&[
        E::dir("d"),
        E::file("d/.wh..wh..opq", ""),
        E::file("d/new", "n"),
    ]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    let mut names: Vec<_> = fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["new"]);
}

#[tokio::test]
async fn opaque_whiteout_after_the_layers_own_entries_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[
        E::dir("d"),
        E::file("d/old", "o"),
        E::dir("d/sub"),
        E::file("d/sub/lower", "l"),
    ]);
    let upper = layer(&[
        E::dir("d"),
        E::file("d/new", "n"),
        E::dir("d/sub"),
        E::file("d/sub/upper", "u"),
        E::file("d/.wh..wh..opq", ""),
    ]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    assert!(!exists(&root.join("d/old")));
    assert_eq!(fs::read(root.join("d/new")).unwrap(), b"n");
    assert_eq!(fs::read(root.join("d/sub/upper")).unwrap(), b"u");
    // A directory this layer re-stated keeps its own children but loses lower ones.
    assert!(!exists(&root.join("d/sub/lower")));
    assert!(!exists(&root.join("d/.wh..wh..opq")));
}

#[tokio::test]
async fn whiteout_after_a_same_layer_entry_spares_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[E::file("x", "lower")]);
    let upper = layer(&[E::file("x", "upper"), E::file(".wh.x", "")]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    assert_eq!(fs::read(root.join("x")).unwrap(), b"upper");
}

#[tokio::test]
async fn a_whiteout_spares_what_the_layer_wrote_through_a_symlinked_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[
        E::file("real/x", "lower"),
        E::file("real/y", "lower"),
        E::symlink("link", "real"),
    ]);
    // `link/x` is `real/x` (the symlink is followed inside the root): the layer wrote it,
    // so its whiteout spares it; `real/y` it did not write.
    let upper = layer(&[
        E::file("link/x", "upper"),
        E::file("real/.wh.x", ""),
        E::file("real/.wh.y", ""),
    ]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    assert_eq!(fs::read(root.join("real/x")).unwrap(), b"upper");
    assert!(!exists(&root.join("real/y")));
    assert!(
        fs::symlink_metadata(root.join("link"))
            .unwrap()
            .is_symlink()
    );
}

#[tokio::test]
async fn whiteout_of_a_missing_name_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[E::file("a/.wh.nothing", ""), E::file("b/.wh..wh..opq", "")]);
    apply_all(&root, &[l]).await.unwrap();
    assert!(!exists(&root.join("a")));
    assert!(!exists(&root.join("b")));
}

#[tokio::test]
async fn hardlinks_share_an_inode() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[
        E::file("bin/busybox", "bb").mode(0o755),
        E::hardlink("bin/sh", "bin/busybox"),
        E::hardlink("usr/bin/env", "/bin/busybox"),
    ]);
    apply_all(&root, &[l]).await.unwrap();
    let a = fs::metadata(root.join("bin/busybox")).unwrap();
    let b = fs::metadata(root.join("bin/sh")).unwrap();
    let c = fs::metadata(root.join("usr/bin/env")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.ino(), c.ino());
    assert_eq!(a.nlink(), 3);
}

#[tokio::test]
async fn hardlink_to_a_missing_target_is_a_bad_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[E::hardlink("sh", "bin/busybox")]);
    let err = apply_all(&root, &[l]).await.unwrap_err();
    assert!(matches!(err, UnpackError::BadEntry { .. }), "{err}");
}

#[tokio::test]
async fn setuid_setgid_and_sticky_modes_survive_the_owner_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[
        E::file("usr/bin/su", "su").mode(0o4755).owner(0, 0),
        E::file("usr/bin/wall", "w").mode(0o2755).owner(0, 5),
        E::dir("tmp").mode(0o1777),
    ]);
    apply_all(&root, &[l]).await.unwrap();
    let mode = |p: &str| {
        fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/bin/su"), 0o4755);
    assert_eq!(mode("usr/bin/wall"), 0o2755);
    assert_eq!(mode("tmp"), 0o1777);
}

#[tokio::test]
async fn nodes_made_in_a_setgid_folder_or_under_a_default_acl_end_as_their_headers_say() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    // A default ACL naming user 1000 (version 2; user_obj rwx, user 1000 rwx, group_obj
    // r-x, mask rwx, other r-x): a file made below it inherits an access ACL.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 7u16, u32::MAX),
        (0x02, 7, 1000),
        (0x04, 5, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 5, u32::MAX),
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    let l = layer(&[
        E::dir("shared").mode(0o2775).owner(0, 5),
        E::file("shared/f", "x").mode(0o644).owner(0, 0),
        E::dir("shared/sub").mode(0o755).owner(0, 5),
        E::dir("acl")
            .mode(0o755)
            .pax("SCHILY.xattr.system.posix_acl_default", &acl),
        E::file("acl/f", "x").mode(0o644),
        E::dir("acl/sub").mode(0o755),
    ]);
    apply_all(&root, &[l]).await.unwrap();
    let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(meta("shared").mode() & 0o7777, 0o2775);
    assert_eq!(
        (meta("shared/f").gid(), meta("shared/f").mode() & 0o7777),
        (0, 0o644)
    );
    // Made setgid by its parent; its header says otherwise.
    assert_eq!(meta("shared/sub").mode() & 0o7777, 0o755);
    let mut value = [0u8; 64];
    let default =
        rustix::fs::getxattr(root.join("acl"), "system.posix_acl_default", &mut value[..]);
    assert_eq!(
        default.expect("the folder's default ACL was set"),
        acl.len()
    );
    for inherited in ["acl/f", "acl/sub"] {
        let access = rustix::fs::getxattr(
            root.join(inherited),
            "system.posix_acl_access",
            &mut value[..],
        );
        assert_eq!(
            access,
            Err(rustix::io::Errno::NODATA),
            "{inherited} kept an inherited ACL"
        );
        assert_eq!(
            meta(inherited).mode() & 0o7777,
            0o644 | if inherited == "acl/sub" { 0o111 } else { 0 }
        );
    }
}

#[tokio::test]
async fn big_files_handed_to_the_writeback_thread_end_whole_with_their_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    // Over `writeback::EARLY`: closed by the writeback thread, after data, mode, times.
    let big: Vec<Vec<u8>> = (0..3).map(|i| noise((1 << 20) + i)).collect();
    assert!(
        big.iter()
            .all(|d| d.len() as u64 >= super::writeback::EARLY)
    );
    let mut entries: Vec<E> = big
        .iter()
        .enumerate()
        .map(|(i, data)| {
            E::file(format!("opt/big{i}"), data)
                .mode(0o640)
                .owner(7, 8)
                .mtime(1_500_000_000 + i as u64)
        })
        .collect();
    entries.push(E::file("opt/small", "s"));
    apply_all(&root, &[layer(&entries)]).await.unwrap();
    for (i, data) in big.iter().enumerate() {
        let path = root.join(format!("opt/big{i}"));
        assert!(fs::read(&path).unwrap() == *data, "big{i} has its bytes");
        let m = fs::metadata(&path).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 7, 8));
        assert_eq!(m.mtime(), 1_500_000_000 + i as i64);
    }
    assert_eq!(fs::read(root.join("opt/small")).unwrap(), b"s");
}

#[tokio::test]
async fn owners_are_applied_to_files_dirs_and_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[
        E::dir("home/u").owner(1000, 1001),
        E::file("home/u/f", "x").owner(1000, 1001),
        E::symlink("home/u/l", "f").owner(1002, 1003),
    ]);
    apply_all(&root, &[l]).await.unwrap();
    let ids = |p: &str| {
        let m = fs::symlink_metadata(root.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(ids("home/u"), (1000, 1001));
    assert_eq!(ids("home/u/f"), (1000, 1001));
    assert_eq!(ids("home/u/l"), (1002, 1003));
    // Implicitly created parents belong to the daemon's user (root here), mode 0755.
    assert_eq!(ids("home"), (0, 0));
    let home = fs::metadata(root.join("home")).unwrap();
    assert_eq!(home.permissions().mode() & 0o7777, 0o755);
}

#[tokio::test]
async fn fifo_and_device_nodes_are_created() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[
        E::fifo("run/initctl").mode(0o600),
        E::char_device("dev/null", 1, 3),
    ]);
    apply_all(&root, &[l]).await.unwrap();
    let fifo = fs::symlink_metadata(root.join("run/initctl")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o600);
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
}

#[tokio::test]
async fn device_nodes_become_empty_files_and_a_warning_without_the_devices_option() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let options = super::UnpackOptions {
        devices: false,
        ..root_options()
    };
    let mut tree = Tree::open(&root, options).unwrap();
    let l = layer(&[E::char_device("dev/null", 1, 3), E::fifo("dev/fifo")]);
    let cancel = CancellationToken::new();
    let stats = tree
        .apply_layer(
            Cursor::new(l),
            Compression::None,
            Algorithm::Sha256,
            &cancel,
        )
        .await
        .unwrap();
    // as `umoci unpack --rootless` does: an empty file stands in the device's place
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_file() && null.len() == 0, "{null:?}");
    assert!(exists(&root.join("dev/fifo")));
    assert_eq!(stats.warnings.count, 1, "{:?}", stats.warnings);
    assert!(stats.warnings.first[0].contains("\"dev/null\" (character 1:3)"));
}

#[tokio::test]
async fn a_layer_writing_more_names_than_its_bound_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    // "a", "a/b", "a/c": three names; a fourth is one too many.
    let options = super::UnpackOptions {
        names_max: 3,
        ..root_options()
    };
    let cancel = CancellationToken::new();
    let apply = async |entries: &[E]| {
        let mut tree = Tree::open(&root, options).unwrap();
        tree.apply_layer(
            Cursor::new(layer(entries)),
            Compression::None,
            Algorithm::Sha256,
            &cancel,
        )
        .await
    };
    let three = [E::dir("a"), E::file("a/b", "1"), E::file("a/c", "2")];
    apply(&three).await.unwrap();
    let mut four = three.to_vec();
    four.push(E::file("a/d", "3"));
    let err = apply(&four).await.unwrap_err();
    assert_eq!(err.code(), "invalid_layer", "{err}");
    assert!(err.to_string().contains("over 3 names"), "{err}");
}

#[tokio::test]
async fn dangling_symlink_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[E::symlink("etc/mtab", "/proc/self/mounts")]);
    apply_all(&root, &[l]).await.unwrap();
    let target = fs::read_link(root.join("etc/mtab")).unwrap();
    assert_eq!(target, Path::new("/proc/self/mounts"));
}

#[tokio::test]
async fn long_names_and_link_targets_work_in_pax_and_gnu_form() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let dir = format!("{}/{}", "d".repeat(120), "e".repeat(90));
    let pax_name = format!("{dir}/{}", "p".repeat(150));
    let gnu_name = format!("{dir}/{}", "g".repeat(150));
    let l = layer(&[
        E::file(&pax_name, "pax"),
        E::file(&gnu_name, "gnu").gnu(),
        E::symlink("pax-link", &pax_name),
        E::symlink("gnu-link", &gnu_name).gnu(),
        E::hardlink("gnu-hard", &gnu_name).gnu(),
    ]);
    apply_all(&root, &[l]).await.unwrap();
    assert_eq!(fs::read(root.join(&pax_name)).unwrap(), b"pax");
    assert_eq!(fs::read(root.join(&gnu_name)).unwrap(), b"gnu");
    assert_eq!(
        fs::read_link(root.join("pax-link")).unwrap(),
        Path::new(&pax_name)
    );
    assert_eq!(
        fs::read_link(root.join("gnu-link")).unwrap(),
        Path::new(&gnu_name)
    );
    assert_eq!(fs::read(root.join("gnu-hard")).unwrap(), b"gnu");
}

#[tokio::test]
async fn gzip_and_zstd_layers_decode_whatever_the_claim() {
    let raw = layer(&[E::file("hello", "world")]);
    let gz = gzip(&raw);
    let zst = zstd(&raw).await;
    let two_members = [gzip(&raw[..512]), gzip(&raw[512..])].concat();
    let cases = [
        (gz.clone(), Compression::Gzip),
        (zst.clone(), Compression::Zstd),
        (raw.clone(), Compression::Gzip), // gzip claimed, plain tar given
        (gz, Compression::None),
        (zst, Compression::Gzip),
        (two_members, Compression::Gzip),
    ];
    for (i, (blob, claim)) in cases.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let mut tree = Tree::open(tmp.path(), root_options()).unwrap();
        let cancel = CancellationToken::new();
        let stats = tree
            .apply_layer(Cursor::new(blob), claim, Algorithm::Sha256, &cancel)
            .await
            .unwrap();
        assert_eq!((stats.entries, stats.bytes), (1, 5), "case {i}");
        assert_eq!(
            fs::read(tmp.path().join("hello")).unwrap(),
            b"world",
            "case {i}"
        );
    }
}

/// The diff_id is the digest of the whole uncompressed stream, whatever the compression,
/// including what follows the archive's end blocks (a record's zero padding), which the
/// tar reader itself never reads.
#[tokio::test]
async fn the_diff_id_covers_the_whole_uncompressed_stream() {
    let mut padded = layer(&[E::file("hello", "world")]);
    padded.resize(padded.len() + 10 * 512, 0);
    for raw in [layer(&[E::file("hello", "world")]), padded] {
        let want = crate::digest::Digest::sha256_of(&raw);
        let cases = [
            (raw.clone(), Compression::None),
            (gzip(&raw), Compression::Gzip),
            (zstd(&raw).await, Compression::Zstd),
        ];
        for (i, (blob, claim)) in cases.into_iter().enumerate() {
            let tmp = tempfile::tempdir().unwrap();
            let mut tree = Tree::open(tmp.path(), root_options()).unwrap();
            let stats = tree
                .apply_layer(
                    Cursor::new(blob),
                    claim,
                    Algorithm::Sha256,
                    &CancellationToken::new(),
                )
                .await
                .unwrap();
            assert_eq!(stats.diff_id, want, "case {i}, {} bytes", raw.len());
        }
    }
}

#[tokio::test]
async fn a_corrupt_compressed_tail_after_the_tar_end_is_an_invalid_layer() {
    let raw = layer(&[E::file("hello", "world")]);
    let good = gzip(&raw);
    let mut bad_crc = good.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    let cut = good[..good.len() - 4].to_vec();
    let garbage = [good.clone(), b"not a gzip member".to_vec()].concat();
    let zst = zstd(&raw).await;
    let zstd_cut = zst[..zst.len() - 3].to_vec();
    for (case, blob) in [
        ("gzip crc", bad_crc),
        ("gzip cut", cut),
        ("gzip garbage", garbage),
        ("zstd cut", zstd_cut),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut tree = Tree::open(tmp.path(), root_options()).unwrap();
        let err = tree
            .apply_layer(
                Cursor::new(blob),
                Compression::Gzip,
                Algorithm::Sha256,
                &CancellationToken::new(),
            )
            .await
            .expect_err(case);
        assert_eq!(err.code(), "invalid_layer", "{case}: {err}");
    }
}

#[tokio::test]
async fn cancelling_mid_layer_ends_the_decode_thread_and_frees_the_blob() {
    let big = noise(12 << 20);
    let blob = gzip(&layer(&[E::file("big", &big), E::file("after", "x")]));
    let len = blob.len() as u64;
    let watched = Watched::new(blob);
    let (read, dropped) = (watched.read.clone(), watched.dropped.clone());
    let tmp = tempfile::tempdir().unwrap();
    let mut tree = Tree::open(tmp.path(), root_options()).unwrap();
    let cancel = CancellationToken::new();
    let apply = tree.apply_layer(watched, Compression::Gzip, Algorithm::Sha256, &cancel);
    let fire = async {
        // Mid-layer: the big file is being written.
        while fs::metadata(tmp.path().join("big")).map_or(0, |m| m.len()) < 1 << 20 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(apply, fire);
    assert!(matches!(result, Err(UnpackError::Cancelled)), "{result:?}");
    assert!(
        dropped.wait().await,
        "the decode thread still holds the blob"
    );
    assert!(read.get() < len, "the blob was read to its end");
    assert!(!tmp.path().join("after").exists());
}

#[tokio::test]
async fn times_come_from_headers_and_pax_records() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[
        E::dir("d").mtime(1000),
        E::file("d/f", "x").mtime(2000),
        E::file("d/p", "x")
            .pax("mtime", "3000.25")
            .pax("atime", "4000.5"),
        E::symlink("d/l", "f").mtime(5000),
    ]);
    apply_all(&root, &[l]).await.unwrap();
    assert_eq!(mtime(&root.join("d/f")), (2000, 0));
    let p = fs::metadata(root.join("d/p")).unwrap();
    assert_eq!((p.mtime(), p.mtime_nsec()), (3000, 250_000_000));
    assert_eq!((p.atime(), p.atime_nsec()), (4000, 500_000_000));
    assert_eq!(mtime(&root.join("d/l")), (5000, 0));
    // Later entries in d did not disturb its time, nor did any touch the root's.
    assert_eq!(mtime(&root.join("d")), (1000, 0));
    assert_eq!(mtime(&root), (0, 0));
}

#[tokio::test]
async fn directory_times_survive_later_layers_and_whiteouts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[E::dir("d").mtime(1000), E::file("d/a", "a")]);
    let upper = layer(&[E::file("d/b", "b"), E::file("d/.wh.a", "")]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    assert_eq!(mtime(&root.join("d")), (1000, 0));
    assert!(!exists(&root.join("d/a")));
}

#[tokio::test]
async fn a_run_of_entries_in_one_directory_keeps_its_times_replacements_included() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[
        E::dir("d").mtime(1000),
        E::file("d/a", "a"),
        E::dir("d/sub").mtime(1500),
        E::file("d/sub/x", "x"),
    ]);
    // A run in `d`: a new name, a name replaced (file over file, then file over a
    // directory), another new name; then the run goes on after the replacements.
    let upper = layer(&[
        E::file("d/b", "b"),
        E::file("d/a", "A"),
        E::file("d/sub", "was a directory"),
        E::file("d/c", "c"),
        E::symlink("d/l", "c"),
    ]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    assert_eq!(mtime(&root.join("d")), (1000, 0));
    assert_eq!(fs::read(root.join("d/a")).unwrap(), b"A");
    assert_eq!(fs::read(root.join("d/sub")).unwrap(), b"was a directory");
    assert_eq!(fs::read(root.join("d/l")).unwrap(), b"c");
}

#[tokio::test]
async fn root_entry_sets_the_roots_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[E::dir("./").mode(0o700).mtime(7000), E::file("f", "x")]);
    apply_all(&root, &[l]).await.unwrap();
    let m = fs::metadata(&root).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o700);
    assert_eq!(m.mtime(), 7000);
}

#[tokio::test]
async fn directory_over_directory_keeps_contents_and_file_over_directory_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let lower = layer(&[
        E::dir("keep"),
        E::file("keep/x", "x"),
        E::file("gone/y/z", "z"),
    ]);
    let upper = layer(&[E::dir("keep").mode(0o750), E::file("gone", "now a file")]);
    apply_all(&root, &[lower, upper]).await.unwrap();
    assert_eq!(fs::read(root.join("keep/x")).unwrap(), b"x");
    let keep = fs::metadata(root.join("keep")).unwrap();
    assert_eq!(keep.permissions().mode() & 0o7777, 0o750);
    assert_eq!(fs::read(root.join("gone")).unwrap(), b"now a file");
}

#[tokio::test]
async fn xattrs_from_pax_records_are_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[E::file("f", "x").pax("SCHILY.xattr.user.origin", "layer")]);
    apply_all(&root, &[l]).await.unwrap();
    let mut value = [0u8; 16];
    let n = rustix::fs::getxattr(root.join("f"), "user.origin", &mut value[..]).unwrap();
    assert_eq!(&value[..n], b"layer");
}

#[tokio::test]
async fn cancelled_token_stops_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tree = Tree::open(tmp.path(), root_options()).unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let l = layer(&[E::file("a", "a"), E::file("b", "b")]);
    let err = tree
        .apply_layer(
            Cursor::new(l),
            Compression::None,
            Algorithm::Sha256,
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UnpackError::Cancelled));
    assert!(!exists(&tmp.path().join("b")));
}

#[tokio::test]
async fn truncated_layer_is_an_invalid_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let l = layer(&[E::file("big", vec![7u8; 4096])]);
    let err = apply_all(&root, &[l[..1024].to_vec()]).await.unwrap_err();
    assert_eq!(err.code(), "invalid_layer", "{err}");
}
