//! Registries as deployed, configured through `HOIST_HOSTS_DIR` (containerd's `certs.d`):
//! TLS from a private CA made by openssl, client certificates, a distribution
//! pull-through cache as a mirror, mirrors that are dead, broken (5xx) or go down
//! mid-pull, and credentials that must stay with the origin. Which host served what is
//! read from the registries' access logs and the fault proxies' logs.

use std::path::Path;
use std::time::Duration;

use crate::common;

use common::tls::{self, HostsDir, TestCa};
use common::{Fault, FaultProxy, Format, ImageBuilder, Registry, RegistryAuth, Rule, World};
use common::{assert_same_tree, expect_problem};
use serde_json::json;

/// A world whose daemon reads `HOIST_HOSTS_DIR` from `certs` (written by the test, read
/// afresh by every job).
async fn world_with_hosts(certs: &Path, proxy: bool, auth: RegistryAuth) -> World {
    let mut b = World::builder()
        .auth(auth)
        .env("HOIST_HOSTS_DIR", &certs.display().to_string());
    if proxy {
        b = b.proxy();
    }
    b.start().await
}

/// The access log lines of `registry` (HTTP/1.1 or 2) that are `GET`s containing `needle`.
fn gets(registry: &Registry, needle: &str) -> Vec<String> {
    registry
        .log_tail(1_000_000)
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn tls_registry_of_a_private_ca_needs_only_ca_crt() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    let ca = TestCa::new(world.dir(), "ca");
    let server = ca.server("server", "IP:127.0.0.1,DNS:localhost");
    let img = ImageBuilder::incompressible_layers(3, 300_000, 1);
    let pushed = world.push(&img, "tls/app:1", Format::Oci);
    let reg = tls::tls_registry(
        &world.dir().join("tls-registry"),
        &world.registry.storage,
        &server,
        None,
    );
    let host = reg.host();
    let image_ref = format!("{host}/tls/app:1");

    // The folder says TLS, but not whom to trust: the system roots do not know our CA.
    hosts.write(
        &host,
        "hosts.toml",
        format!("server = \"https://{host}\"\n"),
    );
    let job = world
        .pull(json!({"image": image_ref, "dest": "first"}))
        .await;
    job.expect_failed("tls_error");
    let message = job.0["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&host) && message.contains("unknown issuer"),
        "the message names the host and what failed: {message}"
    );

    // Docker's layout, nothing else: certs.d/HOST/ca.crt (no hosts.toml, no restart).
    hosts.remove(&host);
    hosts.copy(&host, "ca.crt", &ca.cert);
    let job = world.pull_ok(&image_ref, "app").await;
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());
    assert_eq!(job.layer_sources(), vec![host.clone(); 3], "{job:?}");
    for digest in pushed.layer_digests() {
        assert_eq!(
            gets(&reg, &digest).len(),
            1,
            "{digest} served over TLS once"
        );
    }
    // Digests and inspects go the same way.
    let (status, body) = world.get_json(&format!("/digest?image={image_ref}")).await;
    assert_eq!(
        (status, body["digest"].as_str()),
        (200, Some(pushed.digest.as_str()))
    );
}

#[tokio::test]
async fn certificate_problems_say_what_failed() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    let ca = TestCa::new(world.dir(), "ca");
    world.push(
        &ImageBuilder::incompressible_layers(1, 1000, 2),
        "tls/small:1",
        Format::Oci,
    );
    // Signed by our CA, but for another name.
    let wrong = ca.server("wrong", "DNS:elsewhere.example");
    let reg = tls::tls_registry(
        &world.dir().join("wrong-name"),
        &world.registry.storage,
        &wrong,
        None,
    );
    let host = reg.host();
    hosts.copy(&host, "ca.crt", &ca.cert);
    let resp = world
        .get(&format!("/digest?image={host}/tls/small:1"))
        .send()
        .await
        .unwrap();
    let body = expect_problem(resp, 502, Some("tls_error")).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&host) && detail.contains("name mismatch"),
        "{detail}"
    );

    // A registry that wants a client certificate, and gets none.
    let server = ca.server("server", "IP:127.0.0.1");
    let mtls = tls::tls_registry(
        &world.dir().join("mtls"),
        &world.registry.storage,
        &server,
        Some(&ca),
    );
    let host = mtls.host();
    hosts.copy(&host, "ca.crt", &ca.cert);
    let job = world
        .pull(json!({"image": format!("{host}/tls/small:1"), "dest": "x"}))
        .await;
    // TLS 1.3: the server's alert races our first request, which may meet a closed
    // connection instead; either way the message says what to look at.
    assert_eq!(job.status(), "failed", "{job:?}");
    assert!(
        matches!(job.error_code(), Some("tls_error" | "registry_unreachable")),
        "{job:?}"
    );
    let message = job.0["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&host) && message.contains("client certificate"),
        "{message}"
    );
}

#[tokio::test]
async fn client_certificates_from_hosts_toml() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    let ca = TestCa::new(world.dir(), "ca");
    let server = ca.server("server", "IP:127.0.0.1");
    let client = ca.client("client");
    let img = ImageBuilder::incompressible_layers(2, 200_000, 3);
    world.push(&img, "mtls/app:1", Format::DockerV2s2);
    let reg = tls::tls_registry(
        &world.dir().join("mtls"),
        &world.registry.storage,
        &server,
        Some(&ca),
    );
    let host = reg.host();
    let ca_file = hosts.copy(&host, "our-ca.pem", &ca.cert);
    let cert = hosts.copy(&host, "client.pem", &client.cert);
    let key = hosts.copy(&host, "client-key.pem", &client.key);
    hosts.write(
        &host,
        "hosts.toml",
        format!(
            "server = \"https://{host}\"\nca = \"our-ca.pem\"\nclient = [[\"client.pem\", \"{}\"]]\n",
            key.display()
        ),
    );
    let job = world.pull_ok(&format!("{host}/mtls/app:1"), "app").await;
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());

    // The settings in force, by file name, never the key's bytes.
    let resp = world
        .get(&format!("/registries/{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("BEGIN"),
        "{text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let origin = &body["hosts"][0];
    assert_eq!(body["hosts"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(origin["origin"], true);
    assert_eq!(origin["url"], format!("https://{host}/v2/"));
    assert_eq!(origin["ca"], json!([ca_file]));
    assert_eq!(origin["client"], json!([{"cert": cert, "key": key}]));
    assert_eq!(origin["capabilities"], json!(["pull", "resolve", "push"]));
}

#[tokio::test]
async fn a_pull_through_cache_serves_the_pull() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    // The daemon reaches the origin through the proxy (its log: what hoist asked the origin
    // for); the cache reaches the registry directly (its log: what the cache fetched).
    let world = world_with_hosts(certs.path(), true, RegistryAuth::Open).await;
    let img = ImageBuilder::incompressible_layers(3, 200_000, 4);
    let pushed = world.push(&img, "lib/app:1", Format::Oci);
    let mirror = tls::pull_through_cache(&world.dir().join("mirror"), &world.registry.host());
    let origin = world.image_host();
    hosts.write(
        &origin,
        "hosts.toml",
        format!(
            "server = \"http://{origin}\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.host()
        ),
    );
    let job = world.pull_ok(&world.image("lib/app:1"), "one").await;
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());
    assert_eq!(job.layer_sources(), vec![mirror.host(); 3], "{job:?}");
    // What the cache fetched from the origin for the first pull (distribution 2.8 fetches a
    // cold blob twice: once to stream it, once to store it); give its storing a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fetched: Vec<usize> = pushed
        .blob_digests()
        .iter()
        .map(|d| gets(&world.registry, d).len())
        .collect();
    // Pulled again without the cache: the mirror answers from its own storage.
    let again = world
        .pull(json!({"image": world.image("lib/app:1"), "dest": "two", "cache": "bypass"}))
        .await;
    again.expect_succeeded();
    // As containerd sends it: the query value escaped.
    let ns = format!("ns={}", origin.replace(':', "%3A"));
    for (digest, fetched) in pushed.blob_digests().into_iter().zip(fetched) {
        let served = gets(&mirror, &digest);
        assert_eq!(
            served.len(),
            2,
            "the mirror served {digest} to both pulls: {served:?}"
        );
        assert!(
            served.iter().all(|l| l.contains(&ns)),
            "?{ns} on mirror requests: {served:?}"
        );
        let from_origin = gets(&world.registry, &digest);
        assert!(
            fetched >= 1 && from_origin.len() == fetched,
            "the origin sent {digest} to the cache for the first pull only: {from_origin:?}"
        );
        assert!(
            from_origin.iter().all(|l| l.contains("Go-http-client")),
            "only the cache asked the origin: {from_origin:?}"
        );
        assert!(
            world.proxy().blob_gets(&digest).is_empty(),
            "hoist asked the origin for {digest}"
        );
    }
    let (status, body) = world.get_json(&format!("/registries/{origin}")).await;
    assert_eq!(status, 200);
    let listed: Vec<_> = body["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_owned(),
                h["origin"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, vec![(mirror.host(), false), (origin.clone(), true)]);
    let metrics = world.metrics().await;
    assert!(
        metrics.contains(&format!(
            "hoist_registry_host_requests_total{{host=\"{}\"}}",
            mirror.host()
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn dead_and_broken_mirrors_are_skipped() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    let img = ImageBuilder::incompressible_layers(2, 100_000, 5);
    world.push(&img, "lib/app:1", Format::Oci);
    let dead = format!("127.0.0.1:{}", common::tools::free_port());
    let broken = FaultProxy::start(world.registry.addr);
    broken.add_rule(Rule::new(Fault::Status(503), "/v2/"));
    let origin = world.registry.host();
    hosts.write(
        &origin,
        "hosts.toml",
        format!(
            "[host.\"http://{dead}\"]\n[host.\"http://{}\"]\n",
            broken.host()
        ),
    );
    let start = std::time::Instant::now();
    let job = world.pull_ok(&world.image("lib/app:1"), "app").await;
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());
    assert_eq!(job.layer_sources(), vec![origin.clone(); 2], "{job:?}");
    let asked = broken.log();
    assert!(
        asked.iter().any(|l| l.path.contains("/blobs/")) && asked.iter().all(|l| l.status == 503),
        "the broken mirror was asked, and failed: {}",
        broken.log_text()
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "failing mirrors are not retried: {:?}",
        start.elapsed()
    );
}

/// A mirror of `world`'s registry, named in its `hosts.toml`, that answers GETs of the
/// blobs `digests` with the right size but one byte flipped.
fn corrupting_mirror(world: &World, hosts: &HostsDir, digests: &[&String]) -> FaultProxy {
    let mirror = FaultProxy::start(world.registry.addr);
    for digest in digests {
        let fault = Fault::Corrupt { at: 100 };
        mirror.add_rule(Rule::new(fault, &format!("/blobs/{digest}")).method("GET"));
    }
    hosts.write(
        &world.registry.host(),
        "hosts.toml",
        format!("[host.\"http://{}\"]\n", mirror.host()),
    );
    mirror
}

/// The daemon's log has a warning naming `mirror` and each of `digests`.
fn assert_mirror_blamed(world: &World, mirror: &FaultProxy, digests: &[&String]) {
    let log = world.hoist.log_text();
    for digest in digests {
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains(&mirror.host())
                && l.contains(digest.as_str())),
            "a warning names the mirror and {digest}: {log}"
        );
    }
}

/// A mirror that answers a layer and the config with the right size but one byte
/// flipped: the pull still succeeds, those two come from the origin, the mirror is named
/// in a warning and serves the rest.
#[tokio::test]
async fn a_mirror_serving_wrong_bytes_is_skipped_for_that_blob() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    let img = ImageBuilder::incompressible_layers(3, 200_000, 8);
    let pushed = world.push(&img, "lib/app:1", Format::Oci);
    let layers = pushed.layer_digests();
    let (bad, config) = (layers[1].clone(), pushed.config_digest());
    let mirror = corrupting_mirror(&world, &hosts, &[&bad, &config]);
    let origin = world.registry.host();
    let job = world
        .pull(json!({"image": world.image("lib/app:1"), "dest": "app"}))
        .await;
    assert_eq!(job.status(), "succeeded", "{job:?}\n{}", mirror.log_text());
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());
    assert_eq!(
        job.layer_sources(),
        vec![mirror.host(), origin.clone(), mirror.host()],
        "{job:?}"
    );
    assert_eq!(mirror.blob_gets(&bad).len(), 1, "{}", mirror.log_text());
    assert_eq!(mirror.blob_gets(&config).len(), 1, "{}", mirror.log_text());
    assert_eq!(
        gets(&world.registry, &format!("/blobs/{bad}")).len(),
        2,
        "the mirror's fetch and ours"
    );
    assert_mirror_blamed(&world, &mirror, &[&bad, &config]);
    world.assert_cache_verified();
}

/// A copy reads its blobs whole into the cache (no extraction follows them), so a mirror's
/// wrong bytes for one are skipped at once: that blob comes from the origin, the copy
/// succeeds, and the target holds the source's exact image.
#[tokio::test]
async fn a_copy_skips_a_mirror_serving_wrong_bytes_at_once() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    let pushed = world.push(
        &ImageBuilder::incompressible_layers(2, 200_000, 10),
        "lib/app:1",
        Format::Oci,
    );
    let bad = pushed.layer_digests()[0].clone();
    let mirror = corrupting_mirror(&world, &hosts, &[&bad]);
    let target = Registry::start(&world.dir().join("registry-2"), RegistryAuth::Open);
    let target_ref = format!("{}/mirrored/app:1", target.host());
    let job = world
        .submit_job(
            "/copies",
            "copy",
            &json!({"source": world.image("lib/app:1"), "target": target_ref}),
        )
        .await;
    let job = world.wait_job(job.id()).await;
    job.expect_succeeded();
    assert_eq!(job.result()["digest"], pushed.digest.as_str(), "{job:?}");
    assert_eq!(mirror.blob_gets(&bad).len(), 1, "{}", mirror.log_text());
    assert_eq!(
        gets(&world.registry, &format!("/blobs/{bad}")).len(),
        2,
        "the mirror's fetch and ours"
    );
    assert!(
        target.blob_file(&bad).exists(),
        "the good bytes reached the target"
    );
    assert_mirror_blamed(&world, &mirror, &[&bad]);
    world.assert_cache_verified();
}

#[tokio::test]
async fn a_mirror_going_down_mid_pull_falls_back_to_the_origin() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), true, RegistryAuth::Open).await;
    // More layers than downloads run ahead (three at once, three more waiting to be
    // applied), so that some are asked for after the mirror died.
    let img = ImageBuilder::incompressible_layers(8, 600_000, 6);
    let pushed = world.push(&img, "lib/big:1", Format::Oci);
    let mut mirror = tls::pull_through_cache(&world.dir().join("mirror"), &world.registry.host());
    // Slow, so that the pull is under way when the mirror dies.
    let front = FaultProxy::start(mirror.addr);
    front.add_rule(Rule::slow_gets("/blobs/", 600_000));
    let origin = world.image_host();
    hosts.write(
        &origin,
        "hosts.toml",
        format!("[host.\"http://{}\"]\n", front.host()),
    );
    let job = world
        .submit_pull(json!({"image": world.image("lib/big:1"), "dest": "big"}))
        .await;
    world
        .wait_until(job.id(), Duration::from_secs(60), |j| {
            j.0["progress"]["layers"].as_array().is_some_and(|ls| {
                ls.iter()
                    .any(|l| l["state"] == "downloaded" || l["state"] == "done")
            })
        })
        .await;
    mirror.kill();
    let job = world.wait_job(job.id()).await;
    job.expect_succeeded();
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());
    let sources = job.layer_sources();
    assert!(
        sources.contains(&front.host()),
        "some layers came from the mirror: {sources:?}"
    );
    assert!(
        sources.contains(&origin),
        "the rest from the origin: {sources:?}"
    );
    for (digest, source) in pushed.layer_digests().iter().zip(&sources) {
        if *source == origin {
            assert!(
                !world.proxy().blob_gets(digest).is_empty(),
                "{digest} from the origin"
            );
        }
    }
}

#[tokio::test]
async fn the_origins_credentials_never_reach_a_mirror() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), true, RegistryAuth::basic("alice", "s3cret")).await;
    let img = ImageBuilder::incompressible_layers(2, 50_000, 7);
    let pushed = world.push(&img, "private/app:1", Format::Oci);
    // A mirror in front of the same registry: it asks for credentials too, and gets none.
    let mirror = FaultProxy::start(world.registry.addr);
    let origin = world.image_host();
    hosts.write(
        &origin,
        "hosts.toml",
        format!("[host.\"http://{}\"]\n", mirror.host()),
    );
    let job = world
        .pull(json!({
            "image": world.image("private/app:1"),
            "dest": "app",
            "auth": {"username": "alice", "password": "s3cret"},
        }))
        .await;
    job.expect_succeeded();
    assert_eq!(job.layer_sources(), vec![origin.clone(); 2], "{job:?}");
    assert!(!mirror.log().is_empty(), "the mirror was asked first");
    assert!(
        mirror.log().iter().all(|l| l.authorization.is_none()),
        "no credentials to the mirror: {:?}",
        mirror.log()
    );
    let digest = &pushed.layer_digests()[0];
    assert!(
        world.proxy().blob_gets(digest).iter().any(|l| l
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "the origin got them"
    );
}

#[tokio::test]
async fn a_bad_hosts_toml_names_file_and_line_until_fixed() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    world.push(
        &ImageBuilder::incompressible_layers(1, 1000, 8),
        "lib/app:1",
        Format::Oci,
    );
    let origin = world.registry.host();
    let file = hosts.write(
        &origin,
        "hosts.toml",
        "[host.\"http://127.0.0.1:1\"]\n  capabilities = [\"pull\"]\n  skip_verify = maybe\n",
    );
    let job = world
        .pull(json!({"image": world.image("lib/app:1"), "dest": "app"}))
        .await;
    job.expect_failed("invalid_hosts_config");
    let message = job.0["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("line 3"),
        "{message}"
    );
    for path in [
        format!("/digest?image={}", world.image("lib/app:1")),
        format!("/registries/{origin}"),
    ] {
        let resp = world.get(&path).send().await.unwrap();
        expect_problem(resp, 503, Some("invalid_hosts_config")).await;
    }
    let resp = world.get("/registries/..").send().await.unwrap();
    assert_ne!(resp.status(), 200);
    let resp = world
        .get("/registries/not%20a%20host")
        .send()
        .await
        .unwrap();
    expect_problem(resp, 400, Some("invalid_host")).await;
    // Fixed, no restart.
    hosts.write(&origin, "hosts.toml", "");
    world.pull_ok(&world.image("lib/app:1"), "app").await;
}

#[tokio::test]
async fn builds_read_their_base_through_a_mirror_and_push_to_the_origin_only() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), true, RegistryAuth::Open).await;
    world.push(
        &ImageBuilder::incompressible_layers(1, 10_000, 9),
        "lib/base:1",
        Format::Oci,
    );
    // A mirror of the same registry, with containerd's default capabilities (push too).
    let mirror = FaultProxy::start(world.registry.addr);
    let origin = world.image_host();
    hosts.write(
        &origin,
        "hosts.toml",
        format!("[host.\"http://{}\"]\n", mirror.host()),
    );
    let source = world.root().join("app");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("hello.txt"), "hello").unwrap();
    world.proxy().clear_log();
    let job = world
        .submit_job(
            "/builds",
            "build",
            &json!({"source": "app", "target": world.image("team/app:1"),
                    "base": world.image("lib/base:1")}),
        )
        .await;
    let job = world.wait_job(job.id()).await;
    job.expect_succeeded();
    let mirrored = mirror.log();
    assert!(
        mirrored
            .iter()
            .any(|l| l.method == "GET" && l.path.contains("/v2/lib/base/manifests/1?ns=")),
        "the base was resolved by the mirror: {}",
        mirror.log_text()
    );
    assert!(
        mirrored
            .iter()
            .all(|l| l.method == "GET" && !l.path.contains("team/app")),
        "nothing of the push went to the mirror: {}",
        mirror.log_text()
    );
    let pushed = world.proxy().log();
    assert!(
        pushed
            .iter()
            .any(|l| l.method == "PUT" && l.path == "/v2/team/app/manifests/1"),
        "the origin got the push: {}",
        world.proxy().log_text()
    );
    assert!(
        !pushed
            .iter()
            .any(|l| l.path.contains("/v2/lib/base/manifests/1")),
        "the base's tag was not asked of the origin: {}",
        world.proxy().log_text()
    );
}

#[tokio::test]
async fn skip_verify_trusts_any_certificate_and_says_so() {
    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    let world = world_with_hosts(certs.path(), false, RegistryAuth::Open).await;
    let ca = TestCa::new(world.dir(), "ca");
    let img = ImageBuilder::incompressible_layers(2, 10_000, 10);
    world.push(&img, "tls/app:1", Format::Oci);
    let server = ca.server("server", "DNS:elsewhere.example");
    let reg = tls::tls_registry(
        &world.dir().join("tls"),
        &world.registry.storage,
        &server,
        None,
    );
    let host = reg.host();
    hosts.write(
        &host,
        "hosts.toml",
        format!("server = \"https://{host}\"\nskip_verify = true\n"),
    );
    let job = world.pull_ok(&format!("{host}/tls/app:1"), "app").await;
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());
    let warnings = world
        .hoist
        .log_text()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("skip_verify") && l.contains(&host))
        .count();
    // manifest, config, two layers: one warning per request
    assert!(
        warnings >= 4,
        "a warning each time: {warnings}\n{}",
        world.hoist.log_text()
    );
}
