//! Behaviour tests of blob downloads (resume, Range ignored, size checks, cancellation),
//! redirects (no credentials to another origin) and pushes, against the fake registry.

use crate::error::ErrorCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body as AxumBody;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::fake_registry::{Fake, Seen, client, reply};
use super::{Credentials, Reference, RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::oci::MediaType;

const BLOB: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

async fn copy(
    c: &RegistryClient,
    r: &Reference,
    expected: Option<u64>,
    sink: &mut Vec<u8>,
    offset: u64,
) -> Result<(u64, u64), RegistryError> {
    let seen = AtomicU64::new(0);
    let progress = |n: u64| {
        seen.fetch_add(n, Ordering::Relaxed);
    };
    let digest = Digest::sha256_of(BLOB);
    c.copy_blob(
        r,
        &digest,
        expected,
        None,
        sink,
        offset,
        &progress,
        &CancellationToken::new(),
    )
    .await?;
    Ok((sink.len() as u64, seen.load(Ordering::Relaxed)))
}

/// A body that sends `first` bytes of BLOB (declaring all of it) and then breaks.
fn broken_body(first: usize) -> axum::response::Response {
    let head = futures_util::stream::iter([Ok(Bytes::from_static(&BLOB[..first]))]);
    // Break off only once the first bytes are surely on the wire.
    let tail = futures_util::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err(std::io::Error::other("connection lost"))
    });
    let body = AxumBody::from_stream(futures_util::StreamExt::chain(head, tail));
    let mut r = axum::response::Response::new(body);
    r.headers_mut().insert("content-length", BLOB.len().into());
    r
}

fn range_start(s: &Seen) -> Option<usize> {
    s.header("range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

#[tokio::test]
async fn download_resumes_with_range_after_the_connection_breaks() {
    let fake = Fake::start(|s, n| match (n, range_start(s)) {
        (0, None) => broken_body(10),
        (_, Some(start)) => reply(
            206,
            &[(
                "content-range",
                &format!("bytes {start}-{}/{}", BLOB.len() - 1, BLOB.len()),
            )],
            &BLOB[start..],
        ),
        _ => reply(500, &[], ""),
    })
    .await;
    let mut sink = Vec::new();
    let r = fake.reference("a/b:1");
    let (total, progressed) = copy(&client(), &r, Some(BLOB.len() as u64), &mut sink, 0)
        .await
        .unwrap();
    assert_eq!(sink, BLOB);
    assert_eq!((total, progressed), (BLOB.len() as u64, BLOB.len() as u64));
    let ranges: Vec<Option<usize>> = fake.seen().iter().map(range_start).collect();
    assert_eq!(ranges, [None, Some(10)]);
}

#[tokio::test]
async fn a_server_ignoring_range_has_the_first_bytes_skipped() {
    let fake = Fake::start(|_, _| reply(200, &[], BLOB)).await;
    let mut sink = BLOB[..7].to_vec();
    let c = client();
    let (total, progressed) = copy(&c, &fake.reference("a/b:1"), None, &mut sink, 7)
        .await
        .unwrap();
    assert_eq!(sink, BLOB);
    assert_eq!(
        (total, progressed),
        (BLOB.len() as u64, (BLOB.len() - 7) as u64)
    );
    assert_eq!(fake.seen()[0].header("range"), Some("bytes=7-"));
    assert_eq!(c.bytes_downloaded(), BLOB.len() as u64);
}

#[tokio::test]
async fn sizes_other_than_expected_are_refused() {
    let fake = Fake::start(|_, _| reply(200, &[], BLOB)).await;
    let r = fake.reference("a/b:1");
    let e = copy(&client(), &r, Some(5), &mut Vec::new(), 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "digest_mismatch", "{e}");
    let e = copy(&client(), &r, Some(100), &mut Vec::new(), 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "digest_mismatch", "{e}");
    // Nothing left to fetch: no request at all.
    let (total, _) = copy(&client(), &r, Some(3), &mut b"abc".to_vec(), 3)
        .await
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn a_missing_blob_is_blob_unknown_and_a_dead_one_gives_up() {
    let fake = Fake::start(|s, _| match s.path.contains("/gone/") {
        true => reply(404, &[], r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#),
        false => broken_body(0),
    })
    .await;
    let e = copy(
        &client(),
        &fake.reference("a/gone:1"),
        None,
        &mut Vec::new(),
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "blob_unknown", "{e}");
    let e = copy(
        &client(),
        &fake.reference("a/dead:1"),
        None,
        &mut Vec::new(),
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "registry_unreachable", "{e}");
}

#[tokio::test]
async fn cancel_stops_a_download() {
    let fake = Fake::start(|_, _| {
        let slow = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        axum::response::Response::new(AxumBody::from_stream(slow))
    })
    .await;
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        c2.cancel();
    });
    let r = fake.reference("a/b:1");
    let digest = Digest::sha256_of(BLOB);
    let e = client()
        .copy_blob(
            &r,
            &digest,
            None,
            None,
            &mut Vec::new(),
            0,
            &|_| {},
            &cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Cancelled), "{e}");
}

#[tokio::test]
async fn redirects_keep_range_but_drop_credentials_on_another_origin() {
    let cdn = Fake::start(|s, _| {
        let start = range_start(s).unwrap_or(0);
        reply(206, &[], &BLOB[start..])
    })
    .await;
    let cdn_url = format!("http://{}/blob?sig=secret", cdn.addr);
    let registry = Fake::start(move |s, _| match s.header("authorization") {
        Some(_) if s.path.contains("/blobs/") => reply(307, &[("location", &cdn_url)], ""),
        Some(_) => reply(200, &[], ""),
        None => reply(401, &[("www-authenticate", r#"Basic realm="r""#)], ""),
    })
    .await;
    let creds = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    let mut sink = BLOB[..4].to_vec();
    let digest = Digest::sha256_of(BLOB);
    let r = registry.reference("a/b:1");
    client()
        .copy_blob(
            &r,
            &digest,
            Some(BLOB.len() as u64),
            Some(&creds),
            &mut sink,
            4,
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(sink, BLOB);
    let at_cdn = cdn.seen();
    assert_eq!(at_cdn.len(), 1);
    assert_eq!(at_cdn[0].header("authorization"), None);
    assert_eq!(at_cdn[0].header("range"), Some("bytes=4-"));
    assert_eq!(at_cdn[0].query, "sig=secret");
}

#[tokio::test]
async fn redirect_loops_end() {
    let fake = Fake::start(|_, _| reply(302, &[("location", "/again")], "")).await;
    let e = copy(
        &client(),
        &fake.reference("a/b:1"),
        None,
        &mut Vec::new(),
        0,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("redirects"), "{e}");
}

#[tokio::test]
async fn push_uploads_mounts_and_puts_manifests() {
    let uploaded = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let up = uploaded.clone();
    let fake = Fake::start(move |s, _| match (s.method.as_str(), s.path.as_str()) {
        ("HEAD", p) if p.ends_with(&Digest::sha256_of(BLOB).to_string()) => reply(200, &[], ""),
        ("HEAD", _) => reply(404, &[], ""),
        ("POST", _) if s.query.contains("from=a%2Fsource") => reply(201, &[], ""),
        ("POST", _) if s.query.contains("mount=") => {
            reply(202, &[("location", "/v2/a/b/blobs/uploads/u2")], "")
        }
        ("POST", _) => reply(
            202,
            &[("location", "/v2/a/b/blobs/uploads/u1?_state=x")],
            "",
        ),
        ("PUT", "/v2/a/b/blobs/uploads/u1") => {
            up.lock().unwrap().push(s.query.clone());
            reply(201, &[], "")
        }
        ("PUT", p) if p.starts_with("/v2/a/b/manifests/") => reply(201, &[], ""),
        ("DELETE", _) => reply(204, &[], ""),
        _ => reply(500, &[], ""),
    })
    .await;
    let c = client();
    let r = fake.reference("a/b:v1");
    let digest = Digest::sha256_of(BLOB);
    assert!(c.blob_exists(&r, &digest, None).await.unwrap());
    assert!(
        !c.blob_exists(&r, &Digest::sha256_of(b"x"), None)
            .await
            .unwrap()
    );
    assert!(
        c.mount_blob(&r, &digest, &fake.reference("a/source:1"), None)
            .await
            .unwrap()
    );
    assert!(
        !c.mount_blob(&r, &digest, &fake.reference("a/elsewhere:1"), None)
            .await
            .unwrap()
    );
    assert_eq!(
        fake.count("DELETE", "/v2/a/b/blobs/uploads/u2"),
        1,
        "started upload cancelled"
    );
    let other: Reference = "ghcr.io/a/source:1".parse().unwrap();
    assert!(!c.mount_blob(&r, &digest, &other, None).await.unwrap());

    c.upload_blob(
        &r,
        &digest,
        BLOB.len() as u64,
        std::io::Cursor::new(BLOB),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        *uploaded.lock().unwrap(),
        [format!(
            "_state=x&digest={}",
            digest.to_string().replace(':', "%3A")
        )]
    );
    assert_eq!(c.bytes_uploaded(), BLOB.len() as u64);

    let manifest = Bytes::from_static(b"{}");
    let d = c
        .put_manifest(&r, &MediaType::OciManifest, manifest.clone(), None)
        .await
        .unwrap();
    assert_eq!(d, Digest::sha256_of(b"{}"));
    let put = fake
        .seen()
        .into_iter()
        .find(|s| s.path == "/v2/a/b/manifests/v1")
        .unwrap();
    assert_eq!(
        put.header("content-type"),
        Some(MediaType::OciManifest.as_str())
    );
    let wrong = r.with_digest(Digest::sha256_of(b"other"));
    let e = c
        .put_manifest(&wrong, &MediaType::OciManifest, manifest, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "digest_mismatch");
}
