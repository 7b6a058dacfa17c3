//! The test harness tested on its own, without the daemon: the tools are there, the
//! registry starts and serves what skopeo pushed, tree comparison finds equal trees
//! equal and every kind of difference different, the fault proxy does each fault, and
//! basic and token auth work with real clients. If this file fails, every other
//! failure is suspect.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::hostile_tar::{self, TarEntry};
use common::image;
use common::tree::{Options, diff_trees};
use common::upload;
use common::{Fault, FaultProxy, Format, Registry, RegistryAuth, Rule, fixtures, tools};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hoist-harness-")
        .tempdir()
        .unwrap()
}

#[test]
fn every_tool_the_harness_needs_is_installed() {
    for (tool, _package) in tools::TOOLS {
        tools::require(tool);
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "the suite runs as root: owners, setuid bits and umoci's reference unpacks need it"
    );
}

#[test]
fn two_umoci_unpacks_of_one_image_compare_equal() {
    let img = fixtures::features("plain");
    let a = img.unpack_reference();
    // a second apart: any time taken from the clock instead of the tar would differ
    std::thread::sleep(Duration::from_millis(1100));
    let b = img.unpack_reference();
    let diffs = diff_trees(&a.rootfs, &b.rootfs, &Options::default());
    assert!(
        diffs.is_empty(),
        "two unpacks differ:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn umoci_applies_whiteouts_and_opaque_markers_in_the_features_image() {
    let img = fixtures::features("plain");
    let u = img.unpack_reference();
    let r = &u.rootfs;
    for gone in [
        "to-delete/file",
        "dir-to-remove",
        "link-to-delete",
        "replace/old-1",
        "opaque/lower-1",
        "opaque/lower-dir",
    ] {
        assert!(
            fs::symlink_metadata(r.join(gone)).is_err(),
            "{gone} should be gone"
        );
    }
    assert_eq!(
        fs::read_to_string(r.join("opaque/upper")).unwrap(),
        "only this survives\n"
    );
    assert!(
        fs::symlink_metadata(r.join("becomes-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(r.join("becomes-file").is_file());
    assert_eq!(
        fs::metadata(r.join("usr/bin/suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
}

#[test]
fn tree_diff_reports_every_kind_of_difference() {
    use std::os::unix::fs::{MetadataExt, symlink};
    let img = fixtures::features("plain");
    let expected = img.unpack_reference();
    let actual = img.unpack_reference();
    let r = &actual.rootfs;
    // one change of each kind, each on its own path
    let mut bytes = fs::read(r.join("etc/hostname")).unwrap();
    bytes[0] ^= 1;
    fs::write(r.join("etc/hostname"), &bytes).unwrap(); // content, same size
    let m = fs::metadata(r.join("etc/hostname")).unwrap();
    std::os::unix::fs::chown(r.join("etc/hostname"), Some(m.uid()), Some(m.gid())).unwrap();
    fs::set_permissions(r.join("usr/bin/suid"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::lchown(r.join("home/user/notes.txt"), Some(0), Some(0)).unwrap();
    fs::remove_file(r.join("usr/bin/relative-link")).unwrap();
    symlink("elsewhere", r.join("usr/bin/relative-link")).unwrap();
    fs::remove_file(r.join("data/second-name")).unwrap();
    fs::copy(r.join("data/original"), r.join("data/second-name")).unwrap(); // breaks a link
    fs::File::options()
        .write(true)
        .open(r.join("data/old"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    fs::remove_file(r.join("etc/empty")).unwrap();
    fs::write(r.join("etc/extra"), "extra").unwrap();
    rustix::fs::lsetxattr(
        r.join("data/with-xattr"),
        "user.hoist",
        b"changed",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::remove_file(r.join("run/fifo")).unwrap();
    fs::write(r.join("run/fifo"), "").unwrap(); // a file where a fifo was
    let diffs = diff_trees(&expected.rootfs, r, &Options::default());
    let text = diffs.join("\n");
    for (path, what) in [
        ("etc/hostname", "content differs"),
        ("usr/bin/suid", "mode 0755, expected 4755"),
        ("home/user/notes.txt", "owner 0:0, expected 1000:1000"),
        ("usr/bin/relative-link", "symlink to \"elsewhere\""),
        ("data/second-name", "hardlinked with"),
        ("data/original", "hardlinked with"),
        ("data/old", "mtime"),
        ("etc/empty", "missing"),
        ("etc/extra", "unexpected"),
        ("data/with-xattr", "xattrs [user.hoist=changed]"),
        ("run/fifo", "is a regular file, expected a fifo"),
        // writing into etc/ and run/ moved their mtimes
        ("etc", "mtime"),
    ] {
        assert!(
            diffs
                .iter()
                .any(|d| d.starts_with(&format!("{path}:")) && d.contains(what)),
            "no `{path}: …{what}…` among the differences:\n{text}"
        );
    }
    // and the directory-mtime exclusion really excludes
    let no_dir_times = Options {
        dir_mtimes: false,
        ..Options::default()
    };
    let diffs = diff_trees(&expected.rootfs, r, &no_dir_times);
    assert!(
        !diffs.iter().any(|d| d.starts_with("etc: mtime")),
        "{diffs:?}"
    );
}

#[tokio::test]
async fn registry_serves_what_skopeo_pushed_in_each_format() {
    let dir = tempdir();
    let registry = Registry::start(dir.path(), RegistryAuth::Open);
    let img = fixtures::features("plain");
    // its own content: skopeo would otherwise reuse the gzip blobs instead of zstd ones
    let zstd = fixtures::features("zstd").push(&registry, "formats/zstd:1", Format::OciZstd);
    let oci = img.push(&registry, "formats/oci:1", Format::Oci);
    let v2s2 = img.push(&registry, "formats/v2s2:1", Format::DockerV2s2);
    for pushed in [&zstd, &oci, &v2s2] {
        let inspected = image::inspect(&registry, &pushed.repo_tag, None);
        assert_eq!(inspected["Digest"], pushed.digest.as_str());
        assert_eq!(pushed.layers().len(), 3, "{:?}", pushed.manifest);
        let layers: Vec<String> = inspected["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(layers, pushed.layer_digests());
    }
    // the same blobs under two manifest formats
    assert_eq!(oci.layer_digests(), v2s2.layer_digests());
    assert_ne!(oci.digest, v2s2.digest);
    // the registry's access log saw the pushes
    assert!(
        !registry
            .access_log_lines("PUT /v2/formats/oci/manifests/1")
            .is_empty()
    );
}

#[tokio::test]
async fn multi_platform_index_is_pushed_with_every_platform() {
    let dir = tempdir();
    let registry = Registry::start(dir.path(), RegistryAuth::Open);
    let index = fixtures::push_two_platform_index(&registry, "multi/img:1");
    let entries = index.manifest["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["platform"]["variant"], "v8");
    let arm_inspect = image::inspect(&registry, "multi/img:1", Some("linux/arm64/v8"));
    assert_eq!(arm_inspect["Architecture"], "arm64");
    let arm_config = image::inspect_config(&registry, "multi/img:1", Some("linux/arm64/v8"));
    assert_eq!(arm_config["architecture"], "arm64");
    let top = image::inspect(&registry, "multi/img:1", Some("linux/amd64"));
    assert_eq!(top["Architecture"], "amd64");
    assert_ne!(arm_inspect["Layers"], top["Layers"]);
}

#[tokio::test]
async fn hand_made_layers_go_through_the_upload_protocol_byte_for_byte() {
    let dir = tempdir();
    let registry = Registry::start(dir.path(), RegistryAuth::Open);
    let long = format!("{}deep", "../".repeat(40));
    let layer = hostile_tar::tar(&[
        TarEntry::file("../escape", b"x"),
        TarEntry::file("/abs/name", b"y"),
        TarEntry::symlink("link", "/etc"),
        TarEntry::hardlink("hard", "../../etc/passwd"),
        TarEntry::whiteout("../victim"),
        TarEntry::file(&long, b"z"),
        TarEntry::symlink("long-link", &long),
    ]);
    let pushed =
        upload::push_layers(&registry, "hostile/one:1", std::slice::from_ref(&layer)).await;
    // what skopeo reads back is what was put
    let served = image::inspect_pushed(&registry, "hostile/one:1");
    assert_eq!(served.digest, pushed.digest);
    assert_eq!(served.raw, pushed.raw);
    let (status, blob) =
        upload::fetch_blob(&registry, "hostile/one", &pushed.layer_digests()[0]).await;
    assert_eq!(status, 200);
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut raw).unwrap();
    assert_eq!(raw, layer);
    let mut archive = tar::Archive::new(&raw[..]);
    let names: Vec<(String, Option<String>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("../escape".into(), None),
            ("/abs/name".into(), None),
            ("link".into(), Some("/etc".into())),
            ("hard".into(), Some("../../etc/passwd".into())),
            ("../.wh.victim".into(), None),
            (long.clone(), None),
            ("long-link".into(), Some(long.clone())),
        ]
    );
}

#[tokio::test]
async fn a_corrupted_blob_is_served_as_stored_with_its_old_digest() {
    let dir = tempdir();
    let registry = Registry::start(dir.path(), RegistryAuth::Open);
    let pushed = fixtures::small("corrupt").push(&registry, "c/one:1", Format::Oci);
    let layer = pushed.layer_digests()[0].clone();
    let (_, before) = upload::fetch_blob(&registry, "c/one", &layer).await;
    assert_eq!(tools::digest_of(&before), layer);
    registry.corrupt_blob(&layer);
    let (status, after) = upload::fetch_blob(&registry, "c/one", &layer).await;
    assert_eq!(status, 200);
    assert_eq!(after.len(), before.len());
    assert_ne!(tools::digest_of(&after), layer);
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn fault_proxy_drops_throttles_slows_corrupts_and_logs() {
    let dir = tempdir();
    let registry = Registry::start(dir.path(), RegistryAuth::Open);
    let pushed = fixtures::big(600_000, 7).push(&registry, "p/big:1", Format::Oci);
    let layer = pushed.layer_digests()[1].clone();
    let (_, whole) = upload::fetch_blob(&registry, "p/big", &layer).await;
    assert!(
        whole.len() > 590_000,
        "incompressible layer is {} bytes",
        whole.len()
    );
    let proxy = FaultProxy::start(registry.addr);
    let url = format!("http://{}/v2/p/big/blobs/{layer}", proxy.host());

    // a dropped connection: fewer bytes than promised, then an error
    proxy.add_rule(Rule::new(Fault::DropAfter(100_000), &layer).times(1));
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(whole.len() as u64));
    let mut got = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body should end in an error");
    assert!(
        !got.is_empty() && got.len() <= 100_000,
        "{} bytes",
        got.len()
    );
    // and the rest comes with a Range request, through the proxy, to the real registry
    let received = got.len();
    let resp = http()
        .get(&url)
        .header("Range", format!("bytes={received}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    got.extend_from_slice(&resp.bytes().await.unwrap());
    assert_eq!(tools::digest_of(&got), layer);

    // 429 with Retry-After, once
    proxy.add_rule(
        Rule::new(
            Fault::TooManyRequests {
                retry_after_secs: 2,
            },
            &layer,
        )
        .method("GET")
        .times(1),
    );
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(http().get(&url).send().await.unwrap().status(), 200);

    // corrupt: same length, one byte off
    proxy.add_rule(Rule::new(Fault::Corrupt { at: 12_345 }, &layer).times(1));
    let bad = http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bad.len(), whole.len());
    let differing: Vec<usize> = (0..bad.len()).filter(|&i| bad[i] != whole[i]).collect();
    assert_eq!(differing, vec![12_345]);

    // slow: 600 kB at 1 MB/s takes at least half a second
    proxy.add_rule(
        Rule::new(
            Fault::Slow {
                bytes_per_sec: 1_000_000,
            },
            &layer,
        )
        .times(1),
    );
    let start = Instant::now();
    let slow = http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(slow.len(), whole.len());

    // HEAD keeps its Content-Length through the proxy
    let head = http().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        whole.len().to_string()
    );

    let gets = proxy.blob_gets(&layer);
    let summary: Vec<(u16, Option<&str>, Option<String>)> = gets
        .iter()
        .map(|l| (l.status, l.fault, l.range.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (200, Some("drop"), None),
            (206, None, Some(format!("bytes={received}-"))),
            (429, Some("429"), None),
            (200, None, None),
            (200, Some("corrupt"), None),
            (200, Some("slow"), None),
        ]
    );
}

#[tokio::test]
async fn basic_auth_registry_wants_its_credentials() {
    let dir = tempdir();
    let registry = Registry::start(dir.path(), RegistryAuth::basic("alice", "wonderland"));
    let pushed = fixtures::small("basic").push(&registry, "private/img:1", Format::Oci);
    let resp = http().get(registry.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    let resp = http()
        .get(registry.url("/v2/private/img/manifests/1"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let anonymous = tools::command("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/private/img:1", registry.host()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !anonymous.success(),
        "skopeo without credentials was let in"
    );
    assert_eq!(
        image::inspect_pushed(&registry, "private/img:1").digest,
        pushed.digest
    );
}

#[tokio::test]
async fn token_auth_registry_takes_tokens_from_the_test_token_server() {
    let dir = tempdir();
    let registry = Registry::start(dir.path(), RegistryAuth::token("bob", "builder"));
    let ts = registry.token_server.as_ref().unwrap();
    // skopeo pushes and reads back through the whole token dance
    let pushed = fixtures::small("token").push(&registry, "private/tok:1", Format::Oci);
    assert_eq!(
        image::inspect_pushed(&registry, "private/tok:1").digest,
        pushed.digest
    );
    let requests = ts.requests();
    assert!(
        requests.iter().any(|r| r.granted
            && r.user.as_deref() == Some("bob")
            && r.service.as_deref() == Some("hoist-test-registry")
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:private/tok:") && s.contains("push"))),
        "{requests:#?}"
    );
    // the challenge names our realm and service
    let resp = http()
        .get(registry.url("/v2/private/tok/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("realm=\"{}\"", ts.realm())),
        "{challenge}"
    );
    assert!(
        challenge.contains("service=\"hoist-test-registry\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"repository:private/tok:pull\""),
        "{challenge}"
    );
    // a token for pull only lets pull through
    let token: serde_json::Value = http()
        .get(ts.realm())
        .query(&[
            ("service", "hoist-test-registry"),
            ("scope", "repository:private/tok:pull"),
        ])
        .basic_auth("bob", Some("builder"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = http()
        .get(registry.url("/v2/private/tok/manifests/1"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        tools::digest_of(&resp.bytes().await.unwrap()),
        pushed.digest
    );
    let resp = http()
        .post(registry.url("/v2/private/tok/blobs/uploads/"))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a pull token must not allow a push");
    // a wrong password gets no token
    let resp = http()
        .get(ts.realm())
        .query(&[
            ("service", "hoist-test-registry"),
            ("scope", "repository:private/tok:pull"),
        ])
        .basic_auth("bob", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[test]
fn snapshots_see_files_created_changed_relinked_or_removed_outside_dest() {
    use common::tree::{snapshot, snapshot_diff};
    let dir = tempdir();
    let root = dir.path();
    fs::write(root.join("victim"), "precious").unwrap();
    fs::write(root.join("other"), "other").unwrap();
    fs::write(root.join("gone"), "gone").unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    let before = snapshot(root, &["dest"]);
    // what a pull may do: create dest (the root's mtime and link count move)
    fs::create_dir_all(root.join("dest/inside")).unwrap();
    assert_eq!(
        snapshot_diff(&before, &snapshot(root, &["dest"])),
        Vec::<String>::new()
    );
    // what an escape would do
    fs::write(root.join("victim"), "pwned!!!").unwrap();
    fs::hard_link(root.join("other"), root.join("dest/link")).unwrap();
    fs::remove_file(root.join("gone")).unwrap();
    fs::write(root.join("sub/new"), "new").unwrap();
    fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o777)).unwrap();
    let diffs = snapshot_diff(&before, &snapshot(root, &["dest"]));
    for (path, what) in [
        ("victim", "changed"),
        ("other", "nlink=2"),
        ("gone", "removed"),
        ("sub/new", "created"),
        ("sub", "0777"),
    ] {
        assert!(
            diffs
                .iter()
                .any(|d| d.starts_with(&format!("{path}:")) && d.contains(what)),
            "no `{path}: …{what}…` in {diffs:#?}"
        );
    }
}
