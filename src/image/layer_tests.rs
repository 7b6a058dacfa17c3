use crate::error::ErrorCode;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::oci::MediaType;

const OCI_GZIP: LayerOptions = LayerOptions {
    format: Format::Oci,
    compression: Compression::Gzip,
    keep_owners: false,
    source_date_epoch: None,
};

struct Entry {
    name: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    username: Vec<u8>,
}

/// Sets the mtime of `path` itself (a FIFO is not opened, a symlink not followed).
fn set_mtime(path: &Path, secs: u64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A folder with one of everything a layer can hold (and a socket it cannot).
fn sample_source() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    std::fs::create_dir_all(p.join("bin")).unwrap();
    std::fs::create_dir_all(p.join("tmp")).unwrap();
    std::fs::write(p.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    chmod(&p.join("bin/tool"), 0o4755);
    chmod(&p.join("tmp"), 0o1777);
    std::fs::write(p.join("data.txt"), vec![b'x'; 1500]).unwrap();
    std::fs::hard_link(p.join("data.txt"), p.join("zz-same")).unwrap();
    std::os::unix::fs::symlink("bin/tool", p.join("link")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        p.join("fifo"),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let long = format!("{}/{}", "d".repeat(90), "f".repeat(60));
    std::fs::create_dir_all(p.join("d".repeat(90))).unwrap();
    std::fs::write(p.join(&long), b"long").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(p.join("sock")).unwrap();
    for name in [
        "bin/tool",
        "data.txt",
        "link",
        "fifo",
        "tmp",
        "bin",
        &long,
        &"d".repeat(90),
    ] {
        set_mtime(&p.join(name), 1_700_000_000);
    }
    t
}

async fn build(source: &Path, opts: &LayerOptions) -> (BuiltLayer, Vec<u8>) {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("layer");
    let layer = build_layer(source, &file, opts, &CancellationToken::new())
        .await
        .unwrap();
    (layer, std::fs::read(file).unwrap())
}

fn gunzip(blob: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(blob)
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

fn entries(tar_bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Entry {
            name,
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
            username: h.username_bytes().unwrap_or_default().to_vec(),
        });
    }
    out
}

#[tokio::test]
async fn same_folder_builds_to_the_same_digest_twice_and_a_change_changes_it() {
    let source = sample_source();
    let (one, blob_one) = build(source.path(), &OCI_GZIP).await;
    // Reading files (atime) or listing folders between builds changes nothing.
    let _ = std::fs::read(source.path().join("data.txt")).unwrap();
    let (two, blob_two) = build(source.path(), &OCI_GZIP).await;
    assert_eq!(one, two);
    assert_eq!(blob_one, blob_two);

    std::fs::write(source.path().join("bin/tool"), b"#!/bin/sh\necho bye\n").unwrap();
    set_mtime(&source.path().join("bin/tool"), 1_700_000_000);
    let (three, _) = build(source.path(), &OCI_GZIP).await;
    assert_ne!(three.digest, one.digest);
    assert_ne!(three.diff_id, one.diff_id);
}

#[tokio::test]
async fn digests_size_and_media_type_describe_the_blob_and_its_tar() {
    let source = sample_source();
    let (layer, blob) = build(source.path(), &OCI_GZIP).await;
    assert_eq!(layer.media_type, MediaType::OciLayer(Compression::Gzip));
    assert_eq!(layer.size, blob.len() as u64);
    assert_eq!(layer.digest, Digest::sha256_of(&blob));
    assert_eq!(layer.diff_id, Digest::sha256_of(&gunzip(&blob)));
    // A gzip header with no time, no name, "unknown" OS: nothing that varies.
    assert_eq!(&blob[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
    assert_eq!(blob[9], 0xff);
    assert_eq!(layer.descriptor().digest, layer.digest);
}

#[tokio::test]
async fn entries_are_sorted_typed_and_stripped_of_owners() {
    let source = sample_source();
    let (_, blob) = build(source.path(), &OCI_GZIP).await;
    let list = entries(&gunzip(&blob));
    let long_dir = format!("{}/", "d".repeat(90));
    let long_file = format!("{long_dir}{}", "f".repeat(60));
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bin/",
            "bin/tool",
            "data.txt",
            long_dir.as_str(),
            long_file.as_str(),
            "fifo",
            "link",
            "tmp/",
            "zz-same"
        ]
    );
    let by = |n: &str| list.iter().find(|e| e.name == n).unwrap();
    assert_eq!(by("bin/tool").mode, 0o4755);
    assert_eq!(by("bin/tool").data, b"#!/bin/sh\necho hi\n");
    assert_eq!(by("tmp/").mode, 0o1777);
    assert_eq!(by("tmp/").kind, tar::EntryType::Directory);
    assert_eq!(by("data.txt").data.len(), 1500);
    assert_eq!(by("zz-same").kind, tar::EntryType::Link);
    assert_eq!(by("zz-same").link.as_deref(), Some("data.txt"));
    assert_eq!(by("link").kind, tar::EntryType::Symlink);
    assert_eq!(by("link").link.as_deref(), Some("bin/tool"));
    assert_eq!(by("fifo").kind, tar::EntryType::Fifo);
    assert_eq!(by(&long_file).data, b"long");
    for e in &list {
        assert_eq!(e.uid, 0, "{}", e.name);
        assert!(e.username.is_empty(), "{}", e.name);
    }
    assert_eq!(by("data.txt").mtime, 1_700_000_000);
}

#[tokio::test]
async fn mtimes_are_clamped_and_owners_kept_on_request() {
    let source = sample_source();
    set_mtime(&source.path().join("data.txt"), 1_000);
    let opts = LayerOptions {
        keep_owners: true,
        source_date_epoch: Some(1_500_000_000),
        ..OCI_GZIP
    };
    let (_, blob) = build(source.path(), &opts).await;
    let list = entries(&gunzip(&blob));
    let by = |n: &str| list.iter().find(|e| e.name == n).unwrap();
    assert_eq!(by("bin/tool").mtime, 1_500_000_000);
    assert_eq!(by("data.txt").mtime, 1_000);
    let me = u64::from(rustix::process::geteuid().as_raw());
    assert!(list.iter().all(|e| e.uid == me));
}

#[tokio::test]
async fn every_compression_holds_the_same_tar() {
    let source = sample_source();
    let (gzip, _) = build(source.path(), &OCI_GZIP).await;
    let zstd_opts = LayerOptions {
        format: Format::Docker,
        compression: Compression::Zstd,
        ..OCI_GZIP
    };
    let (zstd, blob) = build(source.path(), &zstd_opts).await;
    assert_eq!(zstd.media_type, MediaType::DockerLayer(Compression::Zstd));
    assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(zstd.diff_id, gzip.diff_id);
    let mut tar = Vec::new();
    let mut decoder = async_compression::tokio::bufread::ZstdDecoder::new(&blob[..]);
    tokio::io::AsyncReadExt::read_to_end(&mut decoder, &mut tar)
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&tar), zstd.diff_id);

    let plain_opts = LayerOptions {
        compression: Compression::None,
        ..OCI_GZIP
    };
    let (plain, blob) = build(source.path(), &plain_opts).await;
    assert_eq!(plain.media_type, MediaType::OciLayer(Compression::None));
    assert_eq!(
        (plain.digest.clone(), plain.size),
        (gzip.diff_id, blob.len() as u64)
    );
}

#[tokio::test]
async fn failures_and_cancellation_leave_no_output_file() {
    let source = sample_source();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("layer");

    let missing = build_layer(
        &out.path().join("nope"),
        &file,
        &OCI_GZIP,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), "invalid_source");
    assert!(!file.exists());

    let cancel = CancellationToken::new();
    cancel.cancel();
    let e = build_layer(source.path(), &file, &OCI_GZIP, &cancel)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "cancelled");
    assert!(!file.exists());

    std::fs::write(&file, b"keep me").unwrap();
    let e = build_layer(source.path(), &file, &OCI_GZIP, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "io_error");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test]
async fn output_inside_the_source_is_not_archived() {
    let source = sample_source();
    let (outside, _) = build(source.path(), &OCI_GZIP).await;
    let file = source.path().join("layer.tar.gz");
    let inside = build_layer(source.path(), &file, &OCI_GZIP, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(inside.digest, outside.digest);
}

#[tokio::test]
async fn empty_folder_is_an_empty_tar() {
    let source = tempfile::tempdir().unwrap();
    let (layer, blob) = build(source.path(), &OCI_GZIP).await;
    assert_eq!(gunzip(&blob), vec![0u8; 1024]);
    assert_eq!(layer.diff_id, Digest::sha256_of(&[0u8; 1024]));
}

#[tokio::test]
async fn dropping_the_build_midway_removes_the_output() {
    let source = tempfile::tempdir().unwrap();
    let big = std::fs::File::create(source.path().join("big")).unwrap();
    big.set_len(256 << 20).unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("layer");
    let cancel = CancellationToken::new();
    let build = build_layer(source.path(), &file, &OCI_GZIP, &cancel);
    let timed_out = tokio::time::timeout(Duration::from_millis(50), build).await;
    assert!(timed_out.is_err(), "a 256 MiB layer built in 50 ms");
    assert!(!file.exists());
}

/// `len` bytes of word-like text from a fixed seed: compressible, but not trivially.
fn text(len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 12] = [
        b"layer ",
        b"hoist ",
        b"blob\n",
        b"digest ",
        b"tar ",
        b"gzip ",
        b"0123 ",
        b"zstd\t",
        b"registry ",
        b"manifest ",
        b"config\n",
        b"x ",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % 12) as usize]);
        if state.is_multiple_of(7) {
            out.extend_from_slice(&state.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn encode(compression: Compression, input: &[u8], threads: usize) -> Vec<u8> {
    let mut encoder = Encoder::new(compression, Vec::new(), threads).unwrap();
    // uneven writes: block boundaries must not follow them
    for piece in input.chunks(100_003) {
        encoder.write_all(piece).unwrap();
    }
    encoder.finish().unwrap()
}

#[test]
fn gzip_bytes_do_not_depend_on_the_thread_count_and_are_one_member() {
    // 17 blocks and a bit: every block but the first primed with its predecessor's tail
    let input = text(17 * GZIP_BLOCK + 777);
    let one = encode(Compression::Gzip, &input, 1);
    for threads in [2, 4] {
        let other = encode(Compression::Gzip, &input, threads);
        assert!(
            one == other,
            "gzip with {threads} threads differs from 1 thread"
        );
    }
    // one standard member: a single-member decoder reads everything and nothing is left
    let mut decoder = flate2::read::GzDecoder::new(&one[..]);
    let mut back = Vec::new();
    decoder.read_to_end(&mut back).unwrap();
    assert!(back == input, "gzip round trip");
    assert!(
        decoder.into_inner().is_empty(),
        "bytes after the first member"
    );
    // the header carries no time, no name; XFL 0 (level 6), OS unknown
    assert_eq!(&one[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    // dictionary priming keeps the ratio of one stream (pigz's scheme): within 1 %
    let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    io::Write::write_all(&mut single, &input).unwrap();
    let single = single.finish().unwrap();
    assert!(
        one.len() * 100 <= single.len() * 101,
        "blocks {} bytes, one stream {} bytes",
        one.len(),
        single.len()
    );
}

#[test]
fn zstd_bytes_do_not_depend_on_the_thread_count() {
    // more than four jobs (`ZSTD_JOB`)
    let input = text(18 << 20);
    let one = encode(Compression::Zstd, &input, 1);
    for threads in [2, 4] {
        let other = encode(Compression::Zstd, &input, threads);
        assert!(
            one == other,
            "zstd with {threads} threads differs from 1 thread"
        );
    }
    let back = zstd::stream::decode_all(&one[..]).unwrap();
    assert!(back == input, "zstd round trip");
}

#[tokio::test]
async fn a_fixed_folder_and_epoch_build_to_pinned_digests() {
    // The bytes are the identity of an image: a change of compressor, level, block size or
    // deflate backend changes these digests, and must be a decision (re-pin, say why).
    let source = tempfile::tempdir().unwrap();
    let p = source.path();
    std::fs::create_dir_all(p.join("usr/share")).unwrap();
    // more than two zstd jobs (`ZSTD_JOB`), many gzip blocks
    std::fs::write(p.join("usr/share/words"), text((9 << 20) + 5)).unwrap();
    std::fs::write(p.join("usr/share/more"), text(GZIP_BLOCK / 3)).unwrap();
    std::fs::write(p.join("hello"), b"hello\n").unwrap();
    for f in ["usr/share/words", "usr/share/more", "hello"] {
        chmod(&p.join(f), 0o644);
    }
    for d in ["usr/share", "usr"] {
        chmod(&p.join(d), 0o755);
    }
    for f in [
        "usr/share/words",
        "usr/share/more",
        "hello",
        "usr/share",
        "usr",
    ] {
        set_mtime(&p.join(f), 1_000_000_000);
    }
    let opts = |compression| LayerOptions {
        compression,
        source_date_epoch: Some(1_600_000_000),
        ..OCI_GZIP
    };
    let (gzip, _) = build(p, &opts(Compression::Gzip)).await;
    let (zstd, _) = build(p, &opts(Compression::Zstd)).await;
    let got = [
        gzip.diff_id.to_string(),
        gzip.digest.to_string(),
        zstd.digest.to_string(),
    ];
    // Pinned with gzp (zlib-rs deflate, level 6, 128 KiB primed blocks) and libzstd 1.5.7
    // (MT, level 3, 4 MiB jobs); the same for any core count (the two tests above).
    let want = [
        "sha256:bdd7ae8946a274677c844e3bf1910bffdccbbd7c089ff3ff8e35b355e078a6ec",
        "sha256:5b2706e93eab24e2e1a52a635a4373865332bba32a67320c96aebbe8e8fb8adf",
        "sha256:45f82835479b882412f21f3f37f7d08a489cfc8d9ca5e65c86443e40ed0e9a2f",
    ];
    assert_eq!(got, want, "diff_id, gzip digest, zstd digest");
}

/// The start of this test's own executable: real machine code and data, the kind of input
/// on which a deflate state reused from another block changed the output.
fn binary(len: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    bytes.truncate(len);
    bytes
}

#[test]
fn gzip_bytes_do_not_depend_on_which_thread_compressed_which_block() {
    let input = binary(12 << 20);
    let one = encode(Compression::Gzip, &input, 1);
    for round in 0..4 {
        let threads = [2, 4][round % 2];
        let other = encode(Compression::Gzip, &input, threads);
        assert!(
            one == other,
            "round {round}: gzip with {threads} threads differs from 1 thread ({} and {} bytes)",
            other.len(),
            one.len()
        );
    }
    assert!(gunzip(&one) == input, "gzip round trip");
}
