//! TEMPORARY live checks against a real docker-registry (HOIST_LIVE_REGISTRY=host:port).

use tokio_util::sync::CancellationToken;

use super::*;
use crate::digest::Digest;

fn reg() -> String {
    std::env::var("HOIST_LIVE_REGISTRY").expect("HOIST_LIVE_REGISTRY")
}
fn r(s: &str) -> Reference {
    format!("{}/{s}", reg()).parse().unwrap()
}

#[tokio::test]
#[ignore]
async fn live_pull_side() {
    let c = RegistryClient::new(RegistryConfig::default()).unwrap();
    let multi = r("acc/img:multi");
    let (d, mt, size) = c.head_manifest(&multi, None).await.unwrap();
    println!("head multi: {d} {mt} {size}");
    assert_eq!(mt, media_types::OCI_INDEX);
    let arm = c.resolve(&multi, Some(&"linux/arm64".parse().unwrap()), None).await.unwrap();
    println!("arm: {} {} platforms={:?}", arm.manifest.digest, arm.platform, arm.platforms);
    assert_eq!(arm.platform.to_string(), "linux/arm64/v8");
    let host = c.resolve(&multi, None, None).await.unwrap();
    println!("host: {} {}", host.manifest.digest, host.platform);
    let e = c.resolve(&multi, Some(&"linux/s390x".parse().unwrap()), None).await.unwrap_err();
    println!("s390x: {e}");
    let docker = c.resolve(&r("acc/docker:v2"), None, None).await.unwrap();
    println!("docker: {} {} {}", docker.manifest.media_type, docker.platform, docker.manifest.digest);
    assert_eq!(docker.manifest.media_type, media_types::DOCKER_MANIFEST);
    let ManifestKind::Image { layers, .. } = &host.manifest.kind else { panic!() };
    let layer = &layers[0];
    let mut sink = Vec::new();
    let total = c
        .copy_blob(&multi, &layer.digest, Some(layer.size), None, &mut sink, 0, &|_| {}, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(total, layer.size);
    assert!(layer.digest.matches(&sink));
    // Resume from the middle (a real 206).
    let half = sink.len() / 2;
    let mut resumed = sink[..half].to_vec();
    c.copy_blob(&multi, &layer.digest, Some(layer.size), None, &mut resumed, half as u64, &|_| {}, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(resumed, sink);
    for (name, err) in [("acc/img:nope", "manifest_unknown"), ("acc/nothere:1", "manifest_unknown")] {
        let e = c.get_manifest(&r(name), None).await.unwrap_err();
        println!("{name}: {e}");
        assert_eq!(e.code(), err);
    }
    println!("counts {:?} bytes {}", c.request_counts(), c.bytes_downloaded());
}

#[tokio::test]
#[ignore]
async fn live_push_side() {
    let c = RegistryClient::new(RegistryConfig::default()).unwrap();
    let target = r("acc/pushed:v1");
    let small = b"hello small blob".to_vec();
    let small_d = Digest::sha256_of(&small);
    assert!(!c.blob_exists(&target, &small_d, None).await.unwrap());
    c.upload_blob(&target, &small_d, small.len() as u64, std::io::Cursor::new(small.clone()), None).await.unwrap();
    assert!(c.blob_exists(&target, &small_d, None).await.unwrap());
    let big: Vec<u8> = (0..70u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let big_d = Digest::sha256_of(&big);
    c.upload_blob(&target, &big_d, big.len() as u64, std::io::Cursor::new(big.clone()), None).await.unwrap();
    assert!(c.blob_exists(&target, &big_d, None).await.unwrap());
    // Wrong digest: the registry refuses.
    let e = c.upload_blob(&target, &Digest::sha256_of(b"x"), small.len() as u64, std::io::Cursor::new(small.clone()), None).await.unwrap_err();
    println!("wrong digest upload: {e}");
    let other = r("acc/mounted:v1");
    assert!(c.mount_blob(&other, &big_d, &target, None).await.unwrap());
    assert!(c.blob_exists(&other, &big_d, None).await.unwrap());
    assert!(!c.mount_blob(&other, &Digest::sha256_of(b"nope"), &target, None).await.unwrap());
    let config = br#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_d = Digest::sha256_of(config);
    c.upload_blob(&target, &config_d, config.len() as u64, std::io::Cursor::new(config.to_vec()), None).await.unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{big_d}","size":{}}}]}}"#,
        media_types::OCI_MANIFEST, media_types::OCI_CONFIG, config.len(), media_types::OCI_LAYER_GZIP, big.len()
    );
    let d = c.put_manifest(&target, media_types::OCI_MANIFEST, bytes::Bytes::from(manifest.clone()), None).await.unwrap();
    let got = c.resolve(&target, None, None).await.unwrap();
    assert_eq!(got.manifest.digest, d);
    let mut sink = Vec::new();
    c.copy_blob(&target, &big_d, Some(big.len() as u64), None, &mut sink, 0, &|_| {}, &CancellationToken::new()).await.unwrap();
    assert!(big_d.matches(&sink));
    println!("pushed {d}; counts {:?} up {} down {}", c.request_counts(), c.bytes_uploaded(), c.bytes_downloaded());
}
