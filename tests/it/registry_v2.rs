//! hoist as a registry: `/v2/` read by real clients (skopeo, curl-like requests) against
//! the real daemon, whose `HOIST_MIRROR_DEFAULT` is a real `docker-registry` (the origin).
//!
//! What the origin served is read from its own access log (or the fault proxy's): each
//! blob fetched once however many clients, nothing served to a client the origin refused,
//! a corrupted blob never completed to a client nor cached, and the last digest of a tag
//! served with a `Warning` once the origin is gone.

use crate::common;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::mirror::{COPIED_TAG, MirrorWorld};
use common::{Fault, Format, Image, RegistryAuth, Rule, assert_same_tree, fixtures};
use futures_util::StreamExt;
use serde_json::Value;

static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("registry-v2"));
static BIG: LazyLock<Image> = LazyLock::new(|| fixtures::big(600_000, 12));

/// The distribution error code of an answer (`errors[0].code`), checking its format.
async fn v2_error(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status, "status of {resp:?}");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "/v2/ errors are distribution JSON, not problem+json: {content_type}"
    );
    let body: Value = resp.json().await.unwrap();
    let code = body["errors"][0]["code"].as_str().unwrap_or_default();
    assert!(!code.is_empty(), "no errors[0].code: {body}");
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    code.to_owned()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {resp:?}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn ping_answers_registry_2_0_with_a_basic_challenge_and_writes_are_unsupported() {
    let world = MirrorWorld::start();
    let resp = world.get_v2("").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(header(&resp, "www-authenticate"), "Basic realm=\"hoist\"");

    let pushed = world.push(&SMALL, "v2/small:1", Format::Oci);
    let layer = &pushed.layer_digests()[0];
    for (method, path) in [
        (reqwest::Method::PUT, "v2/small/manifests/2".to_owned()),
        (
            reqwest::Method::DELETE,
            format!("v2/small/manifests/{}", pushed.digest),
        ),
        (reqwest::Method::POST, "v2/small/blobs/uploads/".to_owned()),
        (
            reqwest::Method::PATCH,
            "v2/small/blobs/uploads/x".to_owned(),
        ),
        (reqwest::Method::DELETE, format!("v2/small/blobs/{layer}")),
    ] {
        let resp = world
            .http
            .request(method.clone(), world.v2(&path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(v2_error(resp, 405).await, "UNSUPPORTED", "{method} {path}");
    }
    // nothing was written upstream: the tag the PUT named does not exist
    let resp = world
        .http
        .head(world.registry().url("/v2/v2/small/manifests/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // and a name that is not a registry path is a distribution error too
    let resp = world.get_v2("Bad/manifests/1").await;
    assert_eq!(v2_error(resp, 400).await, "NAME_INVALID");
    let resp = world.get_v2("v2/small/manifests/nope").await;
    assert_eq!(v2_error(resp, 404).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn skopeo_inspect_raw_through_hoist_is_the_origins_bytes() {
    let world = MirrorWorld::start();
    for (repo_tag, format) in [
        ("v2/oci:1", Format::Oci),
        ("v2/docker:1", Format::DockerV2s2),
    ] {
        let pushed = world.push(&SMALL, repo_tag, format);
        let raw = world.inspect_raw(repo_tag, None);
        assert_eq!(
            raw, pushed.raw,
            "{repo_tag}: manifest bytes differ from the origin's"
        );
        // by digest, and HEAD: the digest and the stored media type
        let repo = repo_tag.split(':').next().unwrap();
        for path in [
            format!("{repo}/manifests/1"),
            format!("{repo}/manifests/{}", pushed.digest),
        ] {
            let resp = world.http.head(world.v2(&path)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "HEAD {path}");
            assert_eq!(header(&resp, "docker-content-digest"), pushed.digest);
            assert_eq!(header(&resp, "content-type"), pushed.media_type());
            assert_eq!(
                header(&resp, "content-length"),
                pushed.raw.len().to_string()
            );
            let resp = world.get_v2(&path).await;
            assert_eq!(header(&resp, "content-type"), pushed.media_type());
            assert_eq!(resp.bytes().await.unwrap().as_ref(), pushed.raw.as_slice());
        }
    }
    // the path may name the upstream itself (a host with a port: curl can send it)
    let path = format!("{}/v2/oci/manifests/1", world.registry().host());
    let resp = world.get_v2(&path).await;
    assert_eq!(resp.status(), 200, "GET {path}");
    // and containerd's ?ns= names it for a bare repository
    let resp = world
        .http
        .get(world.v2(&format!(
            "v2/oci/manifests/1?ns={}",
            world.registry().host()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn skopeo_copy_through_hoist_unpacks_to_the_origins_tree_and_is_cached() {
    let world = MirrorWorld::start();
    let pushed = world.push(&BIG, "v2/big:1", Format::Oci);
    let layout = world.dir().join("copy");
    world.copy_to_layout("v2/big:1", &layout, None);
    let copied = common::image::unpack_layout(&layout, COPIED_TAG);
    assert_same_tree(&BIG.unpack_reference().rootfs, &copied.rootfs);
    let cached = world.cached_blobs();
    for blob in pushed.blob_digests() {
        assert!(cached.contains(&blob), "{blob} not cached: {cached:?}");
        assert_eq!(world.origin_blob_gets(&blob), 1, "{blob}");
    }
    // a second copy is served from the cache: the origin sends no blob again
    let again = world.dir().join("again");
    world.copy_to_layout("v2/big:1", &again, None);
    for blob in pushed.blob_digests() {
        assert_eq!(world.origin_blob_gets(&blob), 1, "{blob} fetched again");
    }
    let metrics = world.metrics().await;
    let upstream = world.registry().host();
    for name in [
        "hoist_mirror_requests_total",
        "hoist_mirror_hits_total",
        "hoist_mirror_misses_total",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{upstream=\"{upstream}\"}}")))
            .unwrap_or_else(|| panic!("no {name} for {upstream}:\n{metrics}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 0, "{line}");
    }
    let served = metrics
        .lines()
        .find(|l| l.starts_with("hoist_mirror_served_bytes_total"))
        .unwrap();
    let served: u64 = served.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(served >= 2 * 600_000, "bytes served {served}");
}

#[tokio::test]
async fn two_concurrent_copies_from_a_cold_cache_fetch_each_blob_once() {
    let world = MirrorWorld::builder().proxy().start();
    let pushed = world.push(&BIG, "v2/big:1", Format::Oci);
    // slow enough that the two copies overlap
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 400_000));
    let world = std::sync::Arc::new(world);
    let copies: Vec<_> = (0..2)
        .map(|i| {
            let world = world.clone();
            std::thread::spawn(move || {
                let dest = world.dir().join(format!("copy-{i}"));
                world.copy_to_layout("v2/big:1", &dest, None);
                dest
            })
        })
        .collect();
    let reference = BIG.unpack_reference();
    for copy in copies {
        let dest = copy.join().expect("copy thread");
        let copied = common::image::unpack_layout(&dest, COPIED_TAG);
        assert_same_tree(&reference.rootfs, &copied.rootfs);
    }
    for blob in pushed.blob_digests() {
        let gets = world.proxy().blob_gets(&blob);
        assert_eq!(gets.len(), 1, "{blob}:\n{}", world.proxy().log_text());
        assert_eq!(world.origin_blob_gets(&blob), 1, "{blob}");
    }
}

#[tokio::test]
async fn a_miss_streams_at_once_and_ranges_are_206() {
    let world = MirrorWorld::builder().proxy().start();
    let pushed = world.push(&BIG, "v2/big:1", Format::Oci);
    let layer = pushed.layer_digests()[1].clone();
    let origin_bytes = std::fs::read(world.registry().blob_file(&layer)).unwrap();
    // 600 kB at 150 kB/s: 4 s for the whole blob
    world.proxy().add_rule(Rule::slow_gets(&layer, 150_000));
    let start = Instant::now();
    let resp = world.get_v2(&format!("v2/big/blobs/{layer}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-length"),
        origin_bytes.len().to_string()
    );
    assert_eq!(header(&resp, "docker-content-digest"), layer);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = start.elapsed();
    let mut got = first.to_vec();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    let all_at = start.elapsed();
    assert_eq!(got, origin_bytes);
    assert!(
        first_at < Duration::from_millis(1500) && all_at > Duration::from_secs(3),
        "the first bytes came after {first_at:?}, all of them after {all_at:?}: not streamed"
    );
    // the body ends once the bytes verified; the commit (fsync, rename) follows
    let deadline = Instant::now() + Duration::from_secs(10);
    while !world.cached_blobs().contains(&layer) {
        assert!(Instant::now() < deadline, "{layer} not cached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // ranges, from the cache now and from a cold blob (the config)
    let config = pushed.config_digest();
    let config_bytes = std::fs::read(world.registry().blob_file(&config)).unwrap();
    for (digest, bytes) in [(&layer, &origin_bytes), (&config, &config_bytes)] {
        let resp = world
            .http
            .get(world.v2(&format!("v2/big/blobs/{digest}")))
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206, "{digest}");
        assert_eq!(
            header(&resp, "content-range"),
            format!("bytes 10-19/{}", bytes.len())
        );
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    }
    let resp = world
        .http
        .get(world.v2(&format!("v2/big/blobs/{config}")))
        .header("range", format!("bytes={}-", config_bytes.len() + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    // HEAD: the size, no download
    let resp = world
        .http
        .head(world.v2(&format!("v2/big/blobs/{}", pushed.layer_digests()[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-length"),
        pushed.layers()[0]["size"].to_string()
    );
    assert!(
        world
            .proxy()
            .blob_gets(&pushed.layer_digests()[0])
            .is_empty()
    );
}

#[tokio::test]
async fn a_second_client_follows_the_download_under_way() {
    let world = MirrorWorld::builder().proxy().start();
    let pushed = world.push(&BIG, "v2/big:1", Format::Oci);
    let layer = pushed.layer_digests()[1].clone();
    let origin_bytes = std::fs::read(world.registry().blob_file(&layer)).unwrap();
    world.proxy().add_rule(Rule::slow_gets(&layer, 150_000));
    let url = world.v2(&format!("v2/big/blobs/{layer}"));
    let start = Instant::now();
    let fetch = |delay: Duration| {
        let (http, url) = (world.http.clone(), url.clone());
        async move {
            tokio::time::sleep(delay).await;
            let resp = http.get(&url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.bytes_stream();
            let mut first_at = None;
            let mut got = Vec::new();
            while let Some(chunk) = body.next().await {
                first_at.get_or_insert_with(|| start.elapsed());
                got.extend_from_slice(&chunk.unwrap());
            }
            (first_at.unwrap(), start.elapsed(), got)
        }
    };
    // the second client comes a second into the first one's 4 s download
    let (a, b) = tokio::join!(fetch(Duration::ZERO), fetch(Duration::from_secs(1)));
    for (who, (first_at, all_at, got)) in [("first", a), ("second", b)] {
        assert_eq!(got, origin_bytes, "{who}");
        assert!(
            first_at < Duration::from_millis(2500) && all_at > Duration::from_secs(3),
            "{who}: first bytes after {first_at:?}, all after {all_at:?}: it did not follow"
        );
    }
    assert_eq!(
        world.proxy().blob_gets(&layer).len(),
        1,
        "{}",
        world.proxy().log_text()
    );
}

#[tokio::test]
async fn a_corrupted_blob_never_completes_cleanly_and_is_not_cached() {
    let world = MirrorWorld::builder().proxy().start();
    let pushed = world.push(&BIG, "v2/big:1", Format::Oci);
    let layer = pushed.layer_digests()[1].clone();
    world
        .proxy()
        .add_rule(Rule::new(Fault::Corrupt { at: 300_000 }, &layer).method("GET"));
    let resp = world.get_v2(&format!("v2/big/blobs/{layer}")).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut got = 0usize;
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(
        broke,
        "the body of a corrupted blob ended cleanly after {got} bytes"
    );
    assert!(
        got < 600_000,
        "{got} bytes of a corrupted blob reached the client"
    );
    assert!(
        !world.cached_blobs().contains(&layer),
        "a corrupted blob was cached"
    );
    // skopeo copy fails rather than taking it
    let out = world.copy_to_layout_output("v2/big:1", &world.dir().join("bad"), None);
    assert!(!out.status.success(), "skopeo copied a corrupted blob");
    assert!(!world.cached_blobs().contains(&layer));
}

/// The daemon's own Docker config holds the origin's credentials: they must never be used
/// for a `/v2/` client.
fn give_the_daemon_credentials(world: &MirrorWorld) {
    let (u, p) = world.registry().credentials().unwrap();
    let auth = base64_of(&format!("{u}:{p}"));
    let config = serde_json::json!({"auths": {world.registry().host(): {"auth": auth}}});
    std::fs::write(
        world.hoist.docker_config_dir.join("config.json"),
        config.to_string(),
    )
    .unwrap();
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn private_image_is_the_upstreams_decision(auth: RegistryAuth) {
    let world = MirrorWorld::builder().auth(auth).start();
    give_the_daemon_credentials(&world);
    let pushed = world.push(&BIG, "private/img:1", Format::Oci);
    let (user, password) = world.registry().credentials().unwrap();

    // anonymous: refused with the challenge that makes clients send their own credentials
    let resp = world.get_v2("private/img/manifests/1").await;
    assert_eq!(header(&resp, "www-authenticate"), "Basic realm=\"hoist\"");
    assert_eq!(v2_error(resp, 401).await, "UNAUTHORIZED");
    let out = world.skopeo(
        &["inspect", "--raw", &world.docker_ref("private/img:1")],
        None,
    );
    assert!(!out.status.success(), "anonymous skopeo inspect was served");
    // the empty Basic credential is anonymous too
    let resp = world
        .http
        .get(world.v2("private/img/manifests/1"))
        .basic_auth("", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(v2_error(resp, 401).await, "UNAUTHORIZED");
    let resp = world
        .http
        .get(world.v2("private/img/manifests/1"))
        .basic_auth(user, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(v2_error(resp, 401).await, "UNAUTHORIZED");

    // with the client's credentials: served, bytes and tree equal to the origin's
    let raw = world.inspect_raw("private/img:1", Some((user, password)));
    assert_eq!(raw, pushed.raw);
    let layout = world.dir().join("copy");
    world.copy_to_layout("private/img:1", &layout, Some((user, password)));
    let copied = common::image::unpack_layout(&layout, COPIED_TAG);
    assert_same_tree(&BIG.unpack_reference().rootfs, &copied.rootfs);

    // cached now, and still not served to a client the origin refuses
    for blob in pushed.blob_digests() {
        assert!(world.cached_blobs().contains(&blob));
        let path = format!("private/img/blobs/{blob}");
        let resp = world.get_v2(&path).await;
        assert_eq!(
            v2_error(resp, 401).await,
            "UNAUTHORIZED",
            "anonymous {path}"
        );
        let resp = world
            .http
            .get(world.v2(&path))
            .basic_auth(user, Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            v2_error(resp, 401).await,
            "UNAUTHORIZED",
            "wrong password {path}"
        );
    }
    let resp = world
        .get_v2(&format!("private/img/manifests/{}", pushed.digest))
        .await;
    assert_eq!(
        v2_error(resp, 401).await,
        "UNAUTHORIZED",
        "cached manifest, anonymous"
    );
    // no secret in the daemon's log
    let log = world.hoist.log_text();
    assert!(
        !log.contains(password),
        "the client's password is in the daemon's log"
    );
}

#[tokio::test]
async fn a_private_image_on_a_basic_auth_registry_needs_the_clients_own_credentials() {
    private_image_is_the_upstreams_decision(RegistryAuth::basic("alice", "s3cret-basic")).await;
}

#[tokio::test]
async fn a_private_image_on_a_token_auth_registry_needs_the_clients_own_credentials() {
    private_image_is_the_upstreams_decision(RegistryAuth::token("bob", "s3cret-token")).await;
}

#[tokio::test]
async fn an_unreachable_upstream_serves_the_last_digest_of_a_tag_with_a_warning() {
    let mut world = MirrorWorld::start();
    let pushed = world.push(&SMALL, "v2/small:1", Format::Oci);
    world.push(
        &fixtures::small("other"),
        "v2/small:never-read",
        Format::Oci,
    );
    let layout = world.dir().join("copy");
    world.copy_to_layout("v2/small:1", &layout, None);
    world.stop_origin();

    let resp = world.get_v2("v2/small/manifests/1").await;
    assert_eq!(resp.status(), 200);
    assert!(
        header(&resp, "warning").starts_with("110 "),
        "{:?}",
        resp.headers()
    );
    assert_eq!(header(&resp, "docker-content-digest"), pushed.digest);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), pushed.raw.as_slice());
    // the blobs this client read before, too (skopeo copies it again)
    let again = world.dir().join("again");
    world.copy_to_layout("v2/small:1", &again, None);
    let copied = common::image::unpack_layout(&again, COPIED_TAG);
    assert_same_tree(&SMALL.unpack_reference().rootfs, &copied.rootfs);
    // a tag never resolved has no memory to fall back on
    let resp = world.get_v2("v2/small/manifests/never-read").await;
    assert_eq!(v2_error(resp, 503).await, "UNAVAILABLE");
}

#[tokio::test]
async fn the_api_token_gates_v2_with_a_bearer_challenge() {
    let world = MirrorWorld::builder().api_token("t0ken").start();
    world.push(&SMALL, "v2/small:1", Format::Oci);
    for path in ["", "v2/small/manifests/1"] {
        let resp = world.get_v2(path).await;
        assert_eq!(header(&resp, "www-authenticate"), "Bearer realm=\"hoist\"");
        assert_eq!(v2_error(resp, 401).await, "UNAUTHORIZED", "/v2/{path}");
    }
    let resp = world
        .http
        .get(world.v2(""))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "www-authenticate"), "Bearer realm=\"hoist\"");
    let resp = world
        .http
        .get(world.v2("v2/small/manifests/1"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn containerd_pulls_through_hoist_with_a_hosts_toml() {
    // The daemon's default upstream leads nowhere: only containerd's `?ns=` names the origin.
    let world = MirrorWorld::builder()
        .default_upstream("nowhere.invalid")
        .start();
    let pushed = world.push(&SMALL, "v2/ctr:1", Format::Oci);
    let origin = world.registry().host();
    let hosts = world.dir().join("certs.d");
    std::fs::create_dir_all(hosts.join(&origin)).unwrap();
    std::fs::write(
        hosts.join(&origin).join("hosts.toml"),
        format!(
            "server = \"http://{origin}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            world.host()
        ),
    )
    .unwrap();
    let containerd = common::mirror::Containerd::start(&world.dir().join("containerd"));
    let hosts_dir = hosts.display().to_string();
    let reference = format!("{origin}/v2/ctr:1");
    let out = containerd.ctr(&["content", "fetch", "--hosts-dir", &hosts_dir, &reference]);
    assert!(
        out.status.success(),
        "ctr content fetch: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = containerd.ctr(&["content", "ls", "-q"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let mut wanted = pushed.blob_digests();
    wanted.push(pushed.digest.clone());
    for digest in &wanted {
        assert!(
            listed.contains(digest.as_str()),
            "containerd lacks {digest}:\n{listed}"
        );
    }
    // it came through hoist: hoist cached the blobs and counted them for the origin
    let cached = world.cached_blobs();
    for blob in pushed.blob_digests() {
        assert!(
            cached.contains(&blob),
            "{blob} not cached by hoist: {cached:?}"
        );
    }
    let metrics = world.metrics().await;
    assert!(
        metrics.contains(&format!(
            "hoist_mirror_misses_total{{upstream=\"{origin}\"}}"
        )),
        "{metrics}"
    );
}

/// Peak resident memory of `pid` in KiB (`VmHWM`).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn serving_a_big_blob_keeps_the_daemons_memory_flat() {
    const SIZE: usize = 64 << 20;
    let world = MirrorWorld::start();
    let path = world.dir().join("big.bin");
    common::resources::write_random_file(&path, SIZE, 7);
    let bytes = std::fs::read(&path).unwrap();
    let digest = common::upload::upload_blob(world.registry(), "v2/huge", &bytes).await;
    drop(bytes);
    let pid = common::resources::daemon_pid(&world.hoist);
    // warm up the daemon's paths on a small blob first
    let small = common::upload::upload_blob(world.registry(), "v2/huge", b"warm").await;
    let resp = world.get_v2(&format!("v2/huge/blobs/{small}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"warm");
    let before = peak_kib(pid);
    // a cold miss (streamed while downloaded), then a hit from the cache
    for what in ["miss", "hit"] {
        let resp = world.get_v2(&format!("v2/huge/blobs/{digest}")).await;
        assert_eq!(resp.status(), 200, "{what}");
        let mut body = resp.bytes_stream();
        let mut n = 0usize;
        while let Some(chunk) = body.next().await {
            n += chunk.unwrap().len();
        }
        assert_eq!(n, SIZE, "{what}");
    }
    let grown = peak_kib(pid).saturating_sub(before);
    eprintln!("daemon peak RSS: {before} KiB before, grew {grown} KiB serving 2 x {SIZE} bytes");
    assert!(
        grown < 32 * 1024,
        "the daemon's peak RSS grew {grown} KiB serving a {SIZE}-byte blob"
    );
}

#[tokio::test]
async fn a_blob_being_served_is_pinned_against_purge() {
    // larger than what the sockets between daemon and client can buffer
    const SIZE: usize = 32 << 20;
    let world = MirrorWorld::start();
    let path = world.dir().join("blob.bin");
    common::resources::write_random_file(&path, SIZE, 3);
    let bytes = std::fs::read(&path).unwrap();
    let digest = common::upload::upload_blob(world.registry(), "v2/pinned", &bytes).await;
    drop(bytes);
    let url = world.v2(&format!("v2/pinned/blobs/{digest}"));
    // cache it, then serve it to a client that reads one chunk and waits
    let warm = world.http.get(&url).send().await.unwrap();
    assert_eq!(warm.bytes().await.unwrap().len(), SIZE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !world.cached_blobs().contains(&digest) {
        assert!(Instant::now() < deadline, "{digest} not cached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = world.http.get(&url).send().await.unwrap();
    let mut body = resp.bytes_stream();
    let mut got = body.next().await.unwrap().unwrap().len();
    let purge = || {
        let url = format!("http://{}/cache", world.hoist.addr);
        let http = world.http.clone();
        async move {
            http.delete(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let report = purge().await;
    assert!(
        world.cached_blobs().contains(&digest),
        "DELETE /cache removed a blob being served: {report}"
    );
    while let Some(chunk) = body.next().await {
        got += chunk.unwrap().len();
    }
    assert_eq!(got, SIZE);
    drop(body);
    // once the response is done, the blob is purgeable like any other
    let deadline = Instant::now() + Duration::from_secs(10);
    while world.cached_blobs().contains(&digest) {
        assert!(
            Instant::now() < deadline,
            "the blob stayed pinned after its response"
        );
        purge().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
