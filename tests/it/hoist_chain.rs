//! hoist behind hoist: daemon B's `HOIST_HOSTS_DIR` names daemon A's `/v2/` as the
//! mirror of the origin registry, so B's pulls go through A's verified cache (B's requests
//! carry `?ns=<origin>`, which A's `/v2/` reads). Which host served what is read from the
//! jobs' `layers[].source`, the origin's access log, A's cache and metrics, and (for
//! credentials) a fault proxy in front of A that logs every `Authorization` header.

use std::path::Path;

use crate::common;

use common::assert_same_tree;
use common::tls::HostsDir;
use common::{FaultProxy, Format, ImageBuilder, RegistryAuth, World, metric};
use serde_json::json;

/// A daemon reading `HOIST_HOSTS_DIR` from `certs`. It comes with a registry of its own
/// (the harness's world), which the tests leave unused: its images come from another
/// world's origin.
async fn daemon_with_hosts(certs: &Path) -> World {
    World::builder()
        .env("HOIST_HOSTS_DIR", &certs.display().to_string())
        .start()
        .await
}

/// `<certs>/<origin>/hosts.toml` naming `mirror` (`127.0.0.1:PORT`) for pull and resolve.
fn mirror_of(hosts: &HostsDir, origin: &str, mirror: &str) {
    hosts.write(
        origin,
        "hosts.toml",
        format!(
            "server = \"http://{origin}\"\n\n[host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    );
}

/// The origin's successful blob GETs of `digest`, from its access log.
fn origin_blob_gets(world: &World, digest: &str) -> usize {
    world
        .registry
        .access_log_lines(&format!("/blobs/{digest}"))
        .iter()
        .filter(|l| l.contains("\"GET ") && (l.contains("\" 200 ") || l.contains("\" 206 ")))
        .count()
}

#[tokio::test]
async fn a_second_hoist_pulls_through_the_first_and_the_origin_sends_each_blob_once() {
    let a = World::start().await;
    let img = ImageBuilder::incompressible_layers(4, 200_000, 21);
    let pushed = a.push(&img, "chain/app:1", Format::Oci);
    let origin = a.registry.host();
    let a_host = a.hoist.addr.to_string();

    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    mirror_of(&hosts, &origin, &a_host);
    let b = daemon_with_hosts(certs.path()).await;
    let reference = format!("{origin}/chain/app:1");

    let job = b.pull_ok(&reference, "app").await;
    assert_eq!(job.result()["digest"], pushed.digest, "{job:?}");
    assert_eq!(
        job.layer_sources(),
        vec![a_host.clone(); 4],
        "every layer from A: {job:?}"
    );
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());

    // A holds every blob, verified, and counted the misses for the origin.
    let cached = a.cached_blobs();
    for blob in pushed.blob_digests() {
        assert!(
            cached.contains(&blob),
            "{blob} not in A's cache: {cached:?}"
        );
    }
    a.assert_cache_verified();
    let metrics = a.metrics().await;
    let upstream = format!("{{upstream=\"{origin}\"}}");
    assert!(
        metric(&metrics, &format!("hoist_mirror_misses_total{upstream}")) >= 4,
        "A's misses for the origin:\n{metrics}"
    );
    // Each blob left the origin once, for A (B never asked the origin for one).
    for blob in pushed.blob_digests() {
        assert_eq!(origin_blob_gets(&a, &blob), 1, "{blob}");
    }

    // A third daemon with the same folder: served from A's cache, nothing new from the origin.
    let c = daemon_with_hosts(certs.path()).await;
    let job = c.pull_ok(&reference, "app").await;
    assert_eq!(
        job.layer_sources(),
        vec![a_host.clone(); 4],
        "every layer from A: {job:?}"
    );
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());
    for blob in pushed.blob_digests() {
        assert_eq!(origin_blob_gets(&a, &blob), 1, "{blob} fetched again");
    }
    let metrics = a.metrics().await;
    assert!(
        metric(&metrics, &format!("hoist_mirror_hits_total{upstream}")) >= 4,
        "A's hits for the origin:\n{metrics}"
    );
}

#[tokio::test]
async fn a_private_image_skips_the_first_hoist_and_the_origins_credentials_stay_with_it() {
    let a = World::builder()
        .auth(RegistryAuth::basic("alice", "s3cret"))
        .start()
        .await;
    let img = ImageBuilder::incompressible_layers(2, 100_000, 22);
    let pushed = a.push(&img, "private/app:1", Format::Oci);
    let origin = a.registry.host();
    // In front of A, to see what B sent it.
    let front = FaultProxy::start(a.hoist.addr);

    let certs = tempfile::tempdir().unwrap();
    let hosts = HostsDir::new(certs.path().to_path_buf());
    mirror_of(&hosts, &origin, &front.host());
    let b = daemon_with_hosts(certs.path()).await;
    let job = b
        .pull(json!({
            "image": format!("{origin}/private/app:1"),
            "dest": "app",
            "auth": {"username": "alice", "password": "s3cret"},
        }))
        .await;
    job.expect_succeeded();
    assert_eq!(
        job.layer_sources(),
        vec![origin.clone(); 2],
        "every layer from the origin: {job:?}"
    );
    assert_same_tree(&img.unpack_reference().rootfs, &job.dest());

    // B asked A first, without the origin's credentials, and A refused (it asked the
    // origin anonymously and was refused).
    let asked = front.log();
    assert!(
        asked.iter().any(|l| l.path.contains("/manifests/")),
        "B asked A first:\n{}",
        front.log_text()
    );
    assert!(
        asked.iter().all(|l| l.authorization.is_none()),
        "no credentials to A: {asked:?}"
    );
    assert!(
        asked.iter().all(|l| l.status == 401),
        "A refused every request:\n{}",
        front.log_text()
    );
    // A cached nothing, and the origin sent each blob once, to B.
    for blob in pushed.blob_digests() {
        assert!(!a.cached_blobs().contains(&blob), "{blob} cached by A");
        assert_eq!(origin_blob_gets(&a, &blob), 1, "{blob}");
    }
    assert!(
        !a.hoist.log_text().contains("s3cret") && !b.hoist.log_text().contains("s3cret"),
        "a password in a daemon's log"
    );
}
