//! Behaviour tests of the client against an in-process fake registry: auth flows,
//! retries, error mapping, digest checks, platform resolution. Blob downloads, redirects
//! and pushes are in `tests_blob`.

use crate::error::ErrorCode;
use std::time::Duration;

use super::fake_registry::{Fake, Seen, client, image_manifest, reply};
use super::{Credentials, ManifestKind, Reference, RegistryError};
use crate::digest::Digest;
use crate::oci::MediaType;

const CONFIG_ARM64: &[u8] = br#"{"os":"linux","architecture":"arm64","variant":"v8","rootfs":{"type":"layers","diff_ids":[]}}"#;

#[tokio::test]
async fn bearer_token_is_fetched_once_and_reused() {
    let manifest = image_manifest(CONFIG_ARM64, b"layer");
    let m = manifest.clone();
    let fake = Fake::start(move |s, _| match s.path.as_str() {
        "/token" => reply(200, &[], r#"{"token":"tok","expires_in":300}"#),
        _ if s.header("authorization") == Some("Bearer tok") => reply(
            200,
            &[("content-type", MediaType::OciManifest.as_str())],
            m.clone(),
        ),
        _ => {
            let port = s.header("host").unwrap().to_string();
            let ch = format!(r#"Bearer realm="http://{port}/token",service="fake",scope="x""#);
            reply(401, &[("www-authenticate", &ch)], "")
        }
    })
    .await;
    let c = client();
    let r = fake.reference("acc/x:1");
    let got = c.get_manifest(&r, None).await.unwrap();
    assert_eq!(got.digest, Digest::sha256_of(manifest.as_bytes()));
    assert!(matches!(got.kind, ManifestKind::Image { .. }));
    c.get_manifest(&r, None).await.unwrap();
    let token_calls: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == "/token")
        .collect();
    assert_eq!(token_calls.len(), 1, "token cached");
    assert_eq!(
        token_calls[0].query,
        "service=fake&scope=repository%3Aacc%2Fx%3Apull"
    );
    assert_eq!(token_calls[0].header("authorization"), None, "anonymous");
    // 401, then with token, then pre-authenticated.
    assert_eq!(fake.count("GET", "/v2/acc/x/manifests/1"), 3);
    assert_eq!(c.request_counts(), vec![(200, 3), (401, 1)]);
}

#[tokio::test]
async fn token_request_carries_basic_credentials() {
    let fake = Fake::start(|s, _| match s.path.as_str() {
        "/token" if s.header("authorization") == Some("Basic dTpw") => {
            reply(200, &[], r#"{"access_token":"t2"}"#)
        }
        "/token" => reply(401, &[], ""),
        _ if s.header("authorization") == Some("Bearer t2") => reply(
            404,
            &[],
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"nope"}]}"#,
        ),
        _ => {
            let ch = format!(
                r#"Bearer realm="http://{}/token",service="fake""#,
                s.header("host").unwrap()
            );
            reply(401, &[("www-authenticate", &ch)], "")
        }
    })
    .await;
    let creds = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    let e = client()
        .get_manifest(&fake.reference("acc/x:gone"), Some(&creds))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "manifest_unknown", "{e}");
    assert!(e.to_string().contains("acc/x:gone"), "{e}");
    let wrong = Credentials {
        username: "u".into(),
        password: "bad".into(),
    };
    let e = client()
        .get_manifest(&fake.reference("acc/x:gone"), Some(&wrong))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unauthorized", "{e}");
    assert!(!e.to_string().contains("bad"), "no secret in {e}");
}

#[tokio::test]
async fn basic_challenge_is_answered_with_credentials_or_refused() {
    let fake = Fake::start(|s, _| match s.header("authorization") {
        Some("Basic dTpw") => reply(
            200,
            &[("content-type", MediaType::OciManifest.as_str())],
            image_manifest(b"{}", b""),
        ),
        _ => reply(401, &[("www-authenticate", r#"Basic realm="fake""#)], ""),
    })
    .await;
    let creds = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    let r = fake.reference("acc/x:1");
    client().get_manifest(&r, Some(&creds)).await.unwrap();
    let e = client().get_manifest(&r, None).await.unwrap_err();
    assert_eq!(e.code(), "unauthorized");
    assert!(e.to_string().contains("docker login"), "{e}");
}

#[tokio::test]
async fn still_unauthorized_after_a_token_is_an_error_not_a_loop() {
    let fake = Fake::start(|s, _| match s.path.as_str() {
        "/token" => reply(200, &[], r#"{"token":"t"}"#),
        _ => {
            let ch = format!(
                r#"Bearer realm="http://{}/token""#,
                s.header("host").unwrap()
            );
            reply(401, &[("www-authenticate", &ch)], "")
        }
    })
    .await;
    let e = client()
        .get_manifest(&fake.reference("acc/x:1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unauthorized");
    assert_eq!(fake.count("GET", "/v2/acc/x/manifests/1"), 2);
}

#[tokio::test]
async fn plain_http_token_realm_elsewhere_is_refused() {
    let fake = Fake::start(|_, _| {
        reply(
            401,
            &[(
                "www-authenticate",
                r#"Bearer realm="http://auth.example.com/token""#,
            )],
            "",
        )
    })
    .await;
    let e = client()
        .get_manifest(&fake.reference("acc/x:1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "registry_protocol_error");
    assert!(
        e.to_string().contains("http://auth.example.com/token"),
        "{e}"
    );
}

#[tokio::test]
async fn error_answers_map_to_codes() {
    let fake = Fake::start(|s, _| match s.path.as_str() {
        "/v2/a/b/manifests/missing" => reply(404, &[], ""),
        "/v2/a/b/manifests/unknown-name" => reply(
            400,
            &[],
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}"#,
        ),
        "/v2/a/b/manifests/denied" => reply(403, &[], ""),
        _ => reply(
            400,
            &[],
            r#"{"errors":[{"code":"TAG_INVALID","message":"bad tag"}]}"#,
        ),
    })
    .await;
    let c = client();
    let code = |tag: &'static str| {
        let (c, r) = (c.clone(), fake.reference(&format!("a/b:{tag}")));
        async move { c.get_manifest(&r, None).await.unwrap_err() }
    };
    assert_eq!(code("missing").await.code(), "manifest_unknown");
    assert_eq!(code("unknown-name").await.code(), "manifest_unknown");
    assert_eq!(code("denied").await.code(), "denied");
    let e = code("other").await;
    assert_eq!(e.code(), "registry_error");
    assert!(e.to_string().contains("TAG_INVALID bad tag"), "{e}");
}

#[tokio::test]
async fn transient_failures_are_retried_with_retry_after_capped() {
    let fake = Fake::start(|s, n| match (s.path.as_str(), n) {
        ("/v2/a/flaky/manifests/1", 0) => reply(503, &[], ""),
        ("/v2/a/flaky/manifests/1", 1) => reply(429, &[("retry-after", "3600")], ""),
        ("/v2/a/flaky/manifests/1", _) => reply(200, &[], image_manifest(b"{}", b"")),
        ("/v2/a/down/manifests/1", _) => reply(503, &[], "maintenance"),
        _ => reply(429, &[("retry-after", "0")], ""),
    })
    .await;
    let c = client();
    let started = std::time::Instant::now();
    c.get_manifest(&fake.reference("a/flaky:1"), None)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "retry-after capped"
    );
    let e = c
        .get_manifest(&fake.reference("a/down:1"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Http { status: 503, .. }), "{e}");
    assert_eq!(fake.count("GET", "/v2/a/down/manifests/1"), 3);
    let e = c
        .get_manifest(&fake.reference("a/busy:1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "too_many_requests");
}

#[tokio::test]
async fn unreachable_registry_is_reported_after_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r: Reference = format!("127.0.0.1:{port}/a/b:1").parse().unwrap();
    let c = client();
    let e = c.get_manifest(&r, None).await.unwrap_err();
    assert_eq!(e.code(), "registry_unreachable", "{e}");
    assert_eq!(c.request_counts(), vec![(0, 3)]);
}

#[tokio::test]
async fn manifest_digests_are_verified() {
    let body = image_manifest(b"{}", b"x");
    let good = Digest::sha256_of(body.as_bytes());
    let other = Digest::sha256_of(b"other");
    let (b, o) = (body.clone(), other.to_string());
    let fake = Fake::start(move |s, _| match s.path.as_str() {
        "/v2/a/b/manifests/lying" => reply(200, &[("docker-content-digest", &o)], b.clone()),
        _ => reply(
            200,
            &[("content-type", MediaType::DockerManifest.as_str())],
            b.clone(),
        ),
    })
    .await;
    let c = client();
    let e = c
        .get_manifest(&fake.reference("a/b:lying"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "digest_mismatch", "{e}");
    let e = c
        .get_manifest(&fake.reference(&format!("a/b@{other}")), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "digest_mismatch", "{e}");
    let m = c
        .get_manifest(&fake.reference(&format!("a/b@{good}")), None)
        .await
        .unwrap();
    assert_eq!(m.media_type, MediaType::DockerManifest);
}

#[tokio::test]
async fn head_manifest_uses_headers_or_falls_back_to_get() {
    let body = image_manifest(b"{}", b"x");
    let digest = Digest::sha256_of(body.as_bytes());
    let (b, d) = (body.clone(), digest.to_string());
    let fake = Fake::start(move |s, _| match (s.method.as_str(), s.path.as_str()) {
        ("HEAD", "/v2/a/full/manifests/1") => reply(
            200,
            &[
                ("docker-content-digest", &d),
                ("content-type", MediaType::OciIndex.as_str()),
                ("content-length", "1234"),
            ],
            "",
        ),
        ("HEAD", _) => reply(200, &[], ""),
        _ => reply(
            200,
            &[("content-type", MediaType::OciManifest.as_str())],
            b.clone(),
        ),
    })
    .await;
    let c = client();
    let (dg, mt, size) = c
        .head_manifest(&fake.reference("a/full:1"), None)
        .await
        .unwrap();
    assert_eq!(
        (dg, mt.as_str(), size),
        (digest.clone(), MediaType::OciIndex.as_str(), 1234)
    );
    assert_eq!(fake.count("GET", "/v2/a/full/manifests/1"), 0);
    let (dg, mt, size) = c
        .head_manifest(&fake.reference("a/bare:1"), None)
        .await
        .unwrap();
    assert_eq!(
        (dg, mt.as_str(), size),
        (digest, MediaType::OciManifest.as_str(), body.len() as u64)
    );
}

/// A fake with an index (amd64, arm64/v8, an attestation) whose arm64 entry is complete.
async fn index_fake() -> (Fake, Digest) {
    let arm = image_manifest(CONFIG_ARM64, b"layer");
    let arm_digest = Digest::sha256_of(arm.as_bytes());
    let amd_digest = Digest::sha256_of(b"amd");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
        {{"mediaType":"{m}","digest":"{amd_digest}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}},
        {{"mediaType":"{m}","digest":"{arm_digest}","size":{},"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
        {{"mediaType":"{m}","digest":"{amd_digest}","size":3,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
        MediaType::OciIndex.as_str(),
        arm.len(),
        m = MediaType::OciManifest.as_str()
    );
    let config_path = format!("/v2/a/multi/blobs/{}", Digest::sha256_of(CONFIG_ARM64));
    let arm_path = format!("/v2/a/multi/manifests/{arm_digest}");
    let fake = Fake::start(move |s, _| match s.path.as_str() {
        "/v2/a/multi/manifests/1" => reply(
            200,
            &[("content-type", MediaType::OciIndex.as_str())],
            index.clone(),
        ),
        p if p == arm_path => reply(
            200,
            &[("content-type", MediaType::OciManifest.as_str())],
            arm.clone(),
        ),
        p if p == config_path => reply(200, &[], CONFIG_ARM64),
        _ => reply(404, &[], ""),
    })
    .await;
    (fake, arm_digest)
}

#[tokio::test]
async fn resolve_picks_the_platform_from_an_index() {
    let (fake, arm_digest) = index_fake().await;
    let r = fake.reference("a/multi:1");
    let got = client()
        .resolve(&r, Some(&"linux/arm64".parse().unwrap()), None)
        .await
        .unwrap();
    assert_eq!(got.manifest.digest, arm_digest);
    assert_eq!(got.platform.to_string(), "linux/arm64/v8");
    assert_eq!(got.config.as_ref(), CONFIG_ARM64);
    assert!(got.top.is_index());
    let names: Vec<String> = got.platforms.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["linux/amd64", "linux/arm64/v8"]);
    let e = client()
        .resolve(&r, Some(&"linux/s390x".parse().unwrap()), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "platform_not_found");
    assert!(e.to_string().contains("linux/amd64, linux/arm64/v8"), "{e}");
}

#[tokio::test]
async fn resolve_single_manifest_takes_the_platform_from_its_config() {
    let (fake, arm_digest) = index_fake().await;
    let r = fake.reference(&format!("a/multi@{arm_digest}"));
    let got = client().resolve(&r, None, None).await.unwrap();
    assert_eq!(got.platform.to_string(), "linux/arm64/v8");
    assert!(got.platforms.is_empty());
    assert_eq!(got.top.digest, got.manifest.digest);
    let e = client()
        .resolve(&r, Some(&"linux/amd64".parse().unwrap()), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "platform_not_found");
    assert!(e.to_string().contains("(it has: linux/arm64/v8)"), "{e}");
}
