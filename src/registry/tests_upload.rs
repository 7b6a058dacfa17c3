//! Behaviour tests of chunked uploads against the fake registry, with the blob cut small
//! (chunks of 8 bytes past 10): a chunk that fails is resumed where the upload status
//! says, never sent again blindly; an upload the registry cannot say the state of fails
//! with the first failure; the final PUT is repeated only when safe.

use crate::error::ErrorCode;

use super::RegistryError;
use super::fake_registry::{Fake, Seen, client, reply};
use super::upload::UploadSizes;
use crate::digest::Digest;

const BLOB: &[u8] = b"0123456789abcdefghij";
const UPLOAD: &str = "/v2/a/b/blobs/uploads/u1";

fn sizes() -> UploadSizes {
    UploadSizes {
        monolithic_max: 10,
        chunk: 8,
    }
}

/// A registry that starts upload `u1` and answers its requests with `answer` (given each
/// request and how many earlier ones had its method and path), everything else 404.
async fn registry(
    answer: impl Fn(&Seen, usize) -> Option<axum::response::Response> + Send + Sync + 'static,
) -> Fake {
    Fake::start(move |s, n| {
        if s.method == "POST" && s.path == "/v2/a/b/blobs/uploads/" {
            return reply(202, &[("location", UPLOAD)], "");
        }
        answer(s, n).unwrap_or_else(|| reply(404, &[], ""))
    })
    .await
}

fn accepted(state: &str) -> Option<axum::response::Response> {
    let loc = format!("{UPLOAD}?s={state}");
    Some(reply(202, &[("location", loc.as_str())], ""))
}

fn status(last: &str, state: &str) -> Option<axum::response::Response> {
    let loc = format!("{UPLOAD}?s={state}");
    Some(reply(
        204,
        &[("range", last), ("location", loc.as_str())],
        "",
    ))
}

fn created() -> Option<axum::response::Response> {
    let digest = Digest::sha256_of(BLOB).to_string();
    Some(reply(
        201,
        &[("docker-content-digest", digest.as_str())],
        "",
    ))
}

/// Each PATCH as `Content-Range (Content-Length) ?query`, and the other upload requests
/// after the POST that starts it (the query: its first pair).
fn upload_requests(fake: &Fake) -> Vec<String> {
    fake.seen()
        .iter()
        .filter(|s| s.path.starts_with("/v2/a/b/blobs/") && s.method != "POST")
        .map(|s| match s.method.as_str() {
            "PATCH" => format!(
                "PATCH {} ({}) ?{}",
                s.header("content-range").unwrap_or("-"),
                s.header("content-length").unwrap_or("-"),
                s.query
            ),
            m => format!(
                "{m} {} ?{}",
                s.path,
                s.query.split('&').next().unwrap_or("")
            ),
        })
        .collect()
}

async fn upload(fake: &Fake) -> Result<u64, RegistryError> {
    let c = client();
    let r = fake.reference("a/b:1");
    c.upload_blob_sized(
        &r,
        &Digest::sha256_of(BLOB),
        BLOB.len() as u64,
        std::io::Cursor::new(BLOB),
        None,
        sizes(),
    )
    .await
    .map(|()| c.bytes_uploaded())
}

#[tokio::test]
async fn a_failed_chunk_goes_on_from_the_byte_the_registry_has_inside_it() {
    for failure in [
        reply(500, &[], "broken"),
        reply(429, &[("retry-after", "0")], ""),
        reply(408, &[], ""),
    ] {
        let failure = std::sync::Mutex::new(Some(failure));
        let fake = registry(move |s, n| match (s.method.as_str(), n) {
            ("PATCH", 0) => accepted("8"),
            ("PATCH", 1) => failure.lock().unwrap().take(),
            // it kept 3 bytes of the failed chunk
            ("GET", 0) => status("0-10", "11"),
            ("PATCH", 2) => accepted("16"),
            ("PATCH", 3) => accepted("20"),
            ("PUT", 0) => created(),
            _ => None,
        })
        .await;
        let uploaded = upload(&fake).await.unwrap();
        assert_eq!(
            upload_requests(&fake),
            [
                "PATCH 0-7 (8) ?",
                "PATCH 8-15 (8) ?s=8",
                "GET /v2/a/b/blobs/uploads/u1 ?s=8",
                "PATCH 11-15 (5) ?s=11",
                "PATCH 16-19 (4) ?s=16",
                "PUT /v2/a/b/blobs/uploads/u1 ?s=20",
            ]
        );
        assert_eq!(uploaded, BLOB.len() as u64, "bytes counted once");
    }
}

#[tokio::test]
async fn a_chunk_the_registry_has_whole_is_not_sent_again() {
    let fake = registry(|s, n| match (s.method.as_str(), n) {
        ("PATCH", 0) => accepted("8"),
        ("PATCH", 1) => Some(reply(503, &[], "")),
        ("GET", 0) => status("0-15", "16"),
        ("PATCH", 2) => accepted("20"),
        ("PUT", 0) => created(),
        _ => None,
    })
    .await;
    upload(&fake).await.unwrap();
    let patches: Vec<_> = upload_requests(&fake)
        .into_iter()
        .filter(|r| r.starts_with("PATCH"))
        .collect();
    assert_eq!(
        patches,
        [
            "PATCH 0-7 (8) ?",
            "PATCH 8-15 (8) ?s=8",
            "PATCH 16-19 (4) ?s=16"
        ]
    );
}

#[tokio::test]
async fn an_upload_whose_status_is_refused_fails_with_the_first_failure() {
    let fake = registry(|s, n| match (s.method.as_str(), n) {
        ("PATCH", 0) => accepted("8"),
        ("PATCH", 1) => Some(reply(502, &[], "bad gateway")),
        ("GET", _) => Some(reply(
            404,
            &[("content-type", "application/json")],
            r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#,
        )),
        _ => None,
    })
    .await;
    let e = upload(&fake).await.unwrap_err();
    let RegistryError::UploadNotResumed { at, cause, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(*at, 8);
    assert!(
        matches!(**cause, RegistryError::Http { status: 502, .. }),
        "{cause:?}"
    );
    assert_eq!(e.code(), "registry_error", "the first failure's code");
    let text = e.to_string();
    assert!(
        text.contains("cannot be resumed") && text.contains("BLOB_UPLOAD_UNKNOWN"),
        "{text}"
    );
    assert_eq!(fake.count("PATCH", UPLOAD), 2, "no blind resend");
    assert_eq!(fake.count("PUT", UPLOAD), 0);
}

#[tokio::test]
async fn bytes_of_an_earlier_chunk_lost_cannot_be_resumed_from_memory() {
    let fake = registry(|s, n| match (s.method.as_str(), n) {
        ("PATCH", 0) => accepted("8"),
        ("PATCH", 1) => Some(reply(500, &[], "")),
        ("GET", 0) => status("0-3", "4"),
        _ => None,
    })
    .await;
    let e = upload(&fake).await.unwrap_err();
    assert!(
        e.to_string().contains("fewer than the 8 it had taken"),
        "{e}"
    );
    assert_eq!(fake.count("PATCH", UPLOAD), 2);
}

#[tokio::test]
async fn a_chunk_failing_on_every_try_fails_after_the_policys_attempts() {
    let fake = registry(|s, _| match s.method.as_str() {
        "PATCH" => Some(reply(503, &[], "")),
        "GET" => status("0-0", "0"),
        _ => None,
    })
    .await;
    let e = upload(&fake).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Http { status: 503, .. }),
        "{e:?}"
    );
    // the fake client's policy: 3 tries, each from byte 0 (`0-0`: nothing yet)
    assert_eq!(
        upload_requests(&fake),
        [
            "PATCH 0-7 (8) ?",
            "GET /v2/a/b/blobs/uploads/u1 ?",
            "PATCH 0-7 (8) ?s=0",
            "GET /v2/a/b/blobs/uploads/u1 ?s=0",
            "PATCH 0-7 (8) ?s=0",
        ]
    );
}

#[tokio::test]
async fn a_failed_final_put_is_done_when_the_blob_is_there() {
    let fake = registry(|s, n| match (s.method.as_str(), n) {
        ("PATCH", _) => accepted(&format!("{}", (n + 1) * 8)),
        ("PUT", 0) => Some(reply(503, &[], "")),
        ("HEAD", 0) => Some(reply(200, &[], "")),
        _ => None,
    })
    .await;
    upload(&fake).await.unwrap();
    assert_eq!(fake.count("PUT", UPLOAD), 1, "{:?}", upload_requests(&fake));
}

#[tokio::test]
async fn a_failed_final_put_is_sent_again_only_once_the_registry_has_every_byte() {
    let fake = registry(|s, n| match (s.method.as_str(), n) {
        ("PATCH", _) => accepted(&format!("{}", (n + 1) * 8)),
        ("PUT", 0) => Some(reply(500, &[], "")),
        ("GET", 0) => status("0-19", "all"),
        ("PUT", 1) => created(),
        _ => None,
    })
    .await;
    upload(&fake).await.unwrap();
    let reqs = upload_requests(&fake);
    assert_eq!(reqs.len(), 3 + 4, "{reqs:?}");
    assert!(
        reqs[3].starts_with("PUT") && reqs[4].starts_with("HEAD"),
        "{reqs:?}"
    );
    assert_eq!(reqs[5], "GET /v2/a/b/blobs/uploads/u1 ?s=24");
    assert_eq!(reqs[6], "PUT /v2/a/b/blobs/uploads/u1 ?s=all");

    // short of bytes: not sent again
    let fake = registry(|s, n| match (s.method.as_str(), n) {
        ("PATCH", _) => accepted(&format!("{}", (n + 1) * 8)),
        ("PUT", 0) => Some(reply(500, &[], "")),
        ("GET", 0) => status("0-9", "10"),
        _ => None,
    })
    .await;
    let e = upload(&fake).await.unwrap_err();
    assert!(e.to_string().contains("has 10 of its 20 bytes"), "{e}");
    assert_eq!(fake.count("PUT", UPLOAD), 1);
}
