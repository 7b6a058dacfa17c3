//! Layers whose tar headers are hostile rather than their names' targets: GNU long names
//! and long links (`L`, `K`) and PAX records (`x`) of 128 MiB that gzip to ~0.1 MB, and
//! PAX `path`/`linkpath` values with a NUL in them. Each must fail the pull with
//! `invalid_layer`, without the daemon growing by the size of the header (its peak RSS is
//! measured from `/proc/PID/status`) and without a huge job row. A moderately long legal
//! name (a 4 KiB PAX path) must still be applied, as umoci and Go's archive/tar apply it.
//!
//! The layers are written as raw 512-byte tar blocks (`common::hostile_tar`: no tar
//! library writes such headers) and gzipped as concatenated members, so the test itself never holds the
//! 128 MiB either.

use crate::common;

use std::io::Write as _;
use std::time::Duration;

use common::World;
use common::hostile_tar::{Header, padding, pax_record};
use common::resources::daemon_pid;
use common::upload::{host_arch, put_manifest, upload_blob};
use serde_json::json;
use sha2::Digest as _;

const MIB: u64 = 1 << 20;
/// The size of the hostile headers' data.
const HUGE: u64 = 128 * MIB;
/// How much the daemon's peak RSS may grow while refusing one such layer.
const RSS_GROWTH_MAX: u64 = 64 * MIB;
/// How big `GET /jobs/{id}` may be for a job refused for its headers.
const JOB_BODY_MAX: usize = 8 * 1024;

/// A piece of a tar stream: literal bytes, or one byte repeated (for the huge parts).
enum Piece {
    Bytes(Vec<u8>),
    Repeat(u8, u64),
}

/// One 512-byte POSIX ustar header, mode 0644, mtime 2020-09-13.
fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> Vec<u8> {
    Header {
        name,
        typeflag,
        mode: 0o644,
        size,
        mtime: 1_600_000_000,
        link,
        ..Header::default()
    }
    .bytes()
}

/// A `x` header holding `records`, then the member `member` (a full header).
fn pax_then(records: &[u8], member: Vec<u8>) -> Vec<Piece> {
    let n = records.len() as u64;
    vec![
        Piece::Bytes(header(b"PaxHeaders/member", b'x', n, b"")),
        Piece::Bytes(records.to_vec()),
        Piece::Bytes(padding(n)),
        Piece::Bytes(member),
        Piece::Bytes(vec![0; 1024]),
    ]
}

/// A GNU `L` or `K` entry of `HUGE` bytes of `a`, then `member`.
fn gnu_huge_then(typeflag: u8, member: Vec<u8>) -> Vec<Piece> {
    vec![
        Piece::Bytes(header(b"././@LongLink", typeflag, HUGE, b"")),
        Piece::Repeat(b'a', HUGE),
        Piece::Bytes(member),
        Piece::Bytes(vec![0; 1024]),
    ]
}

/// A `x` header whose one `path` record is `HUGE` bytes long in all, then a file.
fn pax_huge_record() -> Vec<Piece> {
    let prefix = format!("{HUGE} path=");
    let value = HUGE - prefix.len() as u64 - 1;
    vec![
        Piece::Bytes(header(b"PaxHeaders/member", b'x', HUGE, b"")),
        Piece::Bytes(prefix.into_bytes()),
        Piece::Repeat(b'a', value),
        Piece::Bytes(b"\n".to_vec()),
        Piece::Bytes(header(b"f", b'0', 0, b"")),
        Piece::Bytes(vec![0; 1024]),
    ]
}

/// The gzip blob of `pieces` (one gzip member per piece or 1 MiB of a repeat: the daemon
/// reads multi-member gzip, as every layer reader must) and the sha256 of the tar.
fn gzip_layer(pieces: &[Piece]) -> (Vec<u8>, String) {
    let member = |bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let mut blob = Vec::new();
    let mut tar_hash = sha2::Sha256::new();
    for piece in pieces {
        match piece {
            Piece::Bytes(bytes) => {
                blob.extend(member(bytes));
                tar_hash.update(bytes);
            }
            Piece::Repeat(byte, len) => {
                let chunk = vec![*byte; MIB as usize];
                let full = member(&chunk);
                for _ in 0..len / MIB {
                    blob.extend_from_slice(&full);
                    tar_hash.update(&chunk);
                }
                let rest = &chunk[..(len % MIB) as usize];
                if !rest.is_empty() {
                    blob.extend(member(rest));
                    tar_hash.update(rest);
                }
            }
        }
    }
    (blob, format!("sha256:{}", hex::encode(tar_hash.finalize())))
}

/// Pushes a one-layer image made of `pieces` as `repo:1`; returns the image reference.
async fn push_layer(world: &World, repo: &str, pieces: &[Piece]) -> String {
    let (blob, diff_id) = gzip_layer(pieces);
    let layer = upload_blob(&world.registry, repo, &blob).await;
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let config_digest = upload_blob(&world.registry, repo, &config).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer,
            "size": blob.len(),
        }],
    });
    let raw = serde_json::to_vec(&manifest).unwrap();
    put_manifest(
        &world.registry,
        repo,
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        &raw,
    )
    .await;
    world.image(&format!("{repo}:1"))
}

/// A `Vm…:` line of `/proc/PID/status`, in bytes.
fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// What a pull of one image did to the daemon.
struct Measured {
    status: String,
    code: Option<String>,
    /// Bytes of `GET /jobs/{id}` once the job ended.
    job_body: usize,
    /// Peak RSS during the pull minus RSS before it.
    rss_growth: u64,
}

/// Pulls `image` into `dest`, measuring the daemon's peak RSS growth (the peak is reset
/// first through `/proc/PID/clear_refs`) and the final job row's size.
async fn measured_pull(world: &World, image: &str, dest: &str) -> Measured {
    let pid = daemon_pid(&world.hoist);
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let before = vm(pid, "VmRSS:");
    let id = world
        .submit_pull(json!({"image": image, "dest": dest}))
        .await
        .id()
        .to_owned();
    let start = std::time::Instant::now();
    let body = loop {
        let resp = world.get(&format!("/jobs/{id}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.bytes().await.unwrap();
        let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break body;
        }
        assert!(
            start.elapsed() < common::JOB_DEADLINE,
            "job {id} did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let peak = vm(pid, "VmHWM:");
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let m = Measured {
        status: job["status"].as_str().unwrap_or_default().to_owned(),
        code: job["error"]["code"].as_str().map(str::to_owned),
        job_body: body.len(),
        rss_growth: peak.saturating_sub(before),
    };
    let message = job["error"]["message"].as_str().unwrap_or_default();
    eprintln!(
        "{image}: {} {:?}, GET /jobs/{id} {} bytes, daemon RSS {} MiB -> peak {} MiB \
         (+{} MiB); message: {}",
        m.status,
        m.code,
        m.job_body,
        before / MIB,
        peak / MIB,
        m.rss_growth / MIB,
        message.chars().take(300).collect::<String>()
    );
    m
}

/// Refused with `invalid_layer`, `dest` not created, the daemon not grown by the header,
/// the job row small.
async fn assert_refused_cheaply(world: &World, image: &str, dest: &str) {
    let m = measured_pull(world, image, dest).await;
    let mut problems = Vec::new();
    if (m.status.as_str(), m.code.as_deref()) != ("failed", Some("invalid_layer")) {
        problems.push(format!(
            "ended {} {:?}, expected failed invalid_layer",
            m.status, m.code
        ));
    }
    if m.job_body >= JOB_BODY_MAX {
        problems.push(format!(
            "GET /jobs/ID is {} bytes (max {JOB_BODY_MAX})",
            m.job_body
        ));
    }
    if m.rss_growth >= RSS_GROWTH_MAX {
        problems.push(format!(
            "the daemon's peak RSS grew by {} MiB (max {} MiB)",
            m.rss_growth / MIB,
            RSS_GROWTH_MAX / MIB
        ));
    }
    if world.root().join(dest).exists() {
        problems.push("dest was created".into());
    }
    assert!(problems.is_empty(), "{image}: {}", problems.join("; "));
}

#[tokio::test]
async fn huge_gnu_long_name_is_refused_without_growing_the_daemon() {
    let world = World::start().await;
    let image = push_layer(
        &world,
        "headers/longname",
        &gnu_huge_then(b'L', header(b"f", b'0', 0, b"")),
    )
    .await;
    assert_refused_cheaply(&world, &image, "longname").await;
}

#[tokio::test]
async fn huge_gnu_long_link_is_refused_without_growing_the_daemon() {
    let world = World::start().await;
    let image = push_layer(
        &world,
        "headers/longlink",
        &gnu_huge_then(b'K', header(b"s", b'2', 0, b"t")),
    )
    .await;
    assert_refused_cheaply(&world, &image, "longlink").await;
}

#[tokio::test]
async fn huge_pax_record_is_refused_without_growing_the_daemon() {
    let world = World::start().await;
    let image = push_layer(&world, "headers/paxrecord", &pax_huge_record()).await;
    assert_refused_cheaply(&world, &image, "paxrecord").await;
}

#[tokio::test]
async fn pax_path_or_linkpath_with_nul_is_refused() {
    let world = World::start().await;
    let cases = [
        (
            "path",
            pax_then(
                &pax_record(b"path", b"etc/pass\0wd"),
                header(b"placeholder", b'0', 0, b""),
            ),
        ),
        (
            "linkpath",
            pax_then(
                &pax_record(b"linkpath", b"/etc/pass\0wd"),
                header(b"s", b'2', 0, b"placeholder"),
            ),
        ),
    ];
    for (what, pieces) in cases {
        let image = push_layer(&world, &format!("headers/nul-{what}"), &pieces).await;
        let dest = format!("nul-{what}");
        let job = world.pull(json!({"image": image, "dest": dest})).await;
        assert_eq!(
            (job.status(), job.error_code()),
            ("failed", Some("invalid_layer")),
            "PAX {what} with a NUL: {job:?}"
        );
        assert!(!world.root().join(&dest).exists(), "{what}: dest created");
    }
}

#[tokio::test]
async fn four_kib_pax_path_is_still_applied() {
    let world = World::start().await;
    // 16 components of 255 bytes: 4095 bytes, within PATH_MAX and every NAME_MAX
    let name: Vec<u8> = vec![vec![b'n'; 255]; 16].join(&b'/');
    let mut pieces = Vec::new();
    let mut records = pax_record(b"path", &name);
    records.extend(pax_record(b"comment", &vec![b'c'; 200 * 1024]));
    let data = b"deep and legal";
    let n = records.len() as u64;
    pieces.push(Piece::Bytes(header(b"PaxHeaders/member", b'x', n, b"")));
    pieces.push(Piece::Bytes(records));
    pieces.push(Piece::Bytes(padding(n)));
    pieces.push(Piece::Bytes(header(
        b"placeholder",
        b'0',
        data.len() as u64,
        b"",
    )));
    pieces.push(Piece::Bytes(data.to_vec()));
    pieces.push(Piece::Bytes(padding(data.len() as u64)));
    pieces.push(Piece::Bytes(vec![0; 1024]));
    let image = push_layer(&world, "headers/deep", &pieces).await;
    let m = measured_pull(&world, &image, "deep").await;
    assert_eq!(m.status, "succeeded", "{:?}", m.code);
    // dest joined with the name is longer than PATH_MAX: walk it with openat
    let mut dir = rustix::fs::open(
        world.root().join("deep"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .expect("dest");
    let components: Vec<&[u8]> = name.split(|&b| b == b'/').collect();
    for c in &components[..components.len() - 1] {
        dir = rustix::fs::openat(
            &dir,
            *c,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .expect("a deep directory");
    }
    let file = rustix::fs::openat(
        &dir,
        components[components.len() - 1],
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .expect("the deep file");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(file), &mut got).unwrap();
    assert_eq!(got, data);
}
