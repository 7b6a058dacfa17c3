//! Behaviour tests of `push_image` against the fake registry: the order of its requests
//! (HEAD, mount, upload per blob, the manifest last), which blobs are opened, what it
//! reports, and that a cancel stops it before the next request.

use crate::error::ErrorCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::fake_registry::{Fake, client, reply};
use super::{
    BlobPushed, BlobReader, BlobSource, ImageToPush, OpenBlob, PushBlob, PushProgress, Reference,
    RegistryError,
};
use crate::digest::Digest;
use crate::oci::{Compression, Descriptor, MediaType};

fn blob(bytes: &'static [u8], source: BlobSource) -> PushBlob {
    PushBlob {
        descriptor: Descriptor {
            media_type: MediaType::OciLayer(Compression::Gzip),
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
        },
        source,
    }
}

/// Layers: one the target has, one mountable from `base`, one to upload; and the config.
fn image(base: &Reference) -> ImageToPush {
    let from = BlobSource::Repository(base.clone());
    ImageToPush {
        layers: vec![
            blob(b"there", from.clone()),
            blob(b"mountable", from),
            blob(b"new", BlobSource::Bytes(Bytes::from_static(b"new"))),
        ],
        config: blob(b"{}", BlobSource::Bytes(Bytes::from_static(b"{}"))),
        manifest: Bytes::from_static(b"{\"schemaVersion\":2}"),
        media_type: MediaType::OciManifest,
    }
}

/// A registry where `there` exists, `mountable` mounts, and everything else uploads.
async fn registry() -> Fake {
    let there = Digest::sha256_of(b"there").to_string();
    let mountable = Digest::sha256_of(b"mountable").to_string();
    Fake::start(move |s, _| match (s.method.as_str(), s.path.as_str()) {
        ("HEAD", p) if p.ends_with(&there) => reply(200, &[], ""),
        ("HEAD", _) => reply(404, &[], ""),
        ("POST", _)
            if s.query
                .contains(&format!("mount={}", mountable.replace(':', "%3A"))) =>
        {
            reply(201, &[], "")
        }
        ("POST", _) => reply(202, &[("location", "/v2/app/blobs/uploads/u1")], ""),
        ("PUT", _) => reply(201, &[], ""),
        _ => reply(500, &[], ""),
    })
    .await
}

/// Opens `Bytes` sources and records which blobs it was asked for; cancels `cancel`
/// when asked, if told to.
#[derive(Default)]
struct Opener {
    opened: Mutex<Vec<usize>>,
    cancel_on_open: Option<CancellationToken>,
}

impl OpenBlob for Opener {
    type Error = RegistryError;

    async fn open(&self, index: usize, blob: &PushBlob) -> Result<BlobReader, RegistryError> {
        self.opened.lock().unwrap().push(index);
        if let Some(cancel) = &self.cancel_on_open {
            cancel.cancel();
        }
        match &blob.source {
            BlobSource::Bytes(b) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            other => Err(RegistryError::Protocol(format!(
                "not opened here: {other:?}"
            ))),
        }
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl PushProgress for Events {
    fn bytes(&self, index: usize, n: u64) {
        self.0.lock().unwrap().push(format!("{index}+{n}"));
    }
    fn uploading(&self, index: usize) {
        self.0.lock().unwrap().push(format!("{index} uploading"));
    }
    fn done(&self, index: usize, how: BlobPushed) {
        self.0.lock().unwrap().push(format!("{index} {how:?}"));
    }
}

#[tokio::test]
async fn blobs_are_skipped_mounted_or_uploaded_in_order_then_the_manifest() {
    let fake = registry().await;
    let (target, base) = (fake.reference("app:1"), fake.reference("base/img:1"));
    let image = image(&base);
    let opener = Opener::default();
    let events = Arc::new(Events::default());
    let report = client()
        .push_image(
            &target,
            &image,
            None,
            &opener,
            &events,
            &CancellationToken::new(),
        )
        .await
        .unwrap();

    assert_eq!(report.digest, Digest::sha256_of(&image.manifest));
    assert_eq!((report.skipped, report.mounted, report.uploaded), (1, 1, 2));
    assert_eq!(report.bytes_uploaded, 3 + 2, "the new layer and the config");
    assert_eq!(
        *opener.opened.lock().unwrap(),
        [2, 3],
        "only uploaded blobs are opened"
    );
    assert_eq!(
        *events.0.lock().unwrap(),
        [
            "0+5",
            "0 Skipped",
            "1+9",
            "1 Mounted",
            "2 uploading",
            "2+3",
            "2 Uploaded",
            "3 uploading",
            "3+2",
            "3 Uploaded"
        ]
    );
    let requests: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    let blob_path = |b: &[u8]| format!("/v2/app/blobs/{}", Digest::sha256_of(b));
    assert_eq!(
        requests,
        [
            format!("HEAD {}", blob_path(b"there")),
            format!("HEAD {}", blob_path(b"mountable")),
            "POST /v2/app/blobs/uploads/".to_string(),
            format!("HEAD {}", blob_path(b"new")),
            "POST /v2/app/blobs/uploads/".to_string(),
            "PUT /v2/app/blobs/uploads/u1".to_string(),
            format!("HEAD {}", blob_path(b"{}")),
            "POST /v2/app/blobs/uploads/".to_string(),
            "PUT /v2/app/blobs/uploads/u1".to_string(),
            "PUT /v2/app/manifests/1".to_string(),
        ]
    );
}

#[tokio::test]
async fn a_source_in_the_target_repository_is_opened_without_asking_for_a_mount() {
    let fake = registry().await;
    let target = fake.reference("app:1");
    let image = ImageToPush {
        layers: vec![blob(b"lonely", BlobSource::Repository(target.clone()))],
        ..image(&target)
    };
    let opener = Opener::default();
    let err = client()
        .push_image(
            &target,
            &image,
            None,
            &opener,
            &Arc::new(Events::default()),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    // this opener refuses Repository sources: its error ends the push
    assert_eq!(err.code(), "registry_protocol_error", "{err}");
    assert_eq!(*opener.opened.lock().unwrap(), [0]);
    let methods: Vec<_> = fake.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["HEAD"], "no mount asked: {:?}", fake.seen());
}

#[tokio::test]
async fn a_cancelled_push_sends_no_further_request_and_no_manifest() {
    let fake = registry().await;
    let (target, base) = (fake.reference("app:1"), fake.reference("base/img:1"));
    let image = image(&base);

    // cancelled before it starts: not one request
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = client()
        .push_image(
            &target,
            &image,
            None,
            &Opener::default(),
            &Arc::new(Events::default()),
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "cancelled");
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());

    // cancelled once the first blob to upload is opened: its upload never starts
    let cancel = CancellationToken::new();
    let opener = Opener {
        cancel_on_open: Some(cancel.clone()),
        ..Opener::default()
    };
    let err = client()
        .push_image(
            &target,
            &image,
            None,
            &opener,
            &Arc::new(Events::default()),
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "cancelled");
    assert_eq!(*opener.opened.lock().unwrap(), [2]);
    let after_mount: Vec<_> = fake.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(
        after_mount,
        ["HEAD", "HEAD", "POST", "HEAD"],
        "{:?}",
        fake.seen()
    );
    assert_eq!(fake.count("PUT", "/v2/app/manifests/1"), 0);
}
