//! Followers of a blob being written (told of landed bytes every `PUBLISH_STEP` and at
//! each flush, so the tests flush): bytes as they land, the end only once verified,
//! every failure an error to every follower, a download followed by a second task, and
//! the signal that nobody follows any more.

use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::tests::{fetch, open};
use super::*;
use crate::error::ErrorCode;

const PATIENCE: Duration = Duration::from_secs(10);
const A_MOMENT: Duration = Duration::from_millis(150);

/// Reads exactly `n` bytes from `reader`, failing the test if they take long.
async fn read_n(reader: &mut (impl tokio::io::AsyncRead + Unpin), n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(PATIENCE, reader.read_exact(&mut buf))
        .await
        .expect("the bytes came")
        .expect("read");
    buf
}

/// Whether a read of `reader` is still waiting after a moment.
async fn waits(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> bool {
    let mut buf = [0; 1];
    tokio::time::timeout(A_MOMENT, reader.read(&mut buf))
        .await
        .is_err()
}

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_bytes_as_they_land_and_ends_only_once_verified() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let bytes = blob(300_000);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = fetch(
        store
            .acquire(&digest, Some(bytes.len() as u64))
            .await
            .unwrap(),
    );
    let follower = writer.follow();
    let mut reader = follower.reader(CancellationToken::new());

    writer.write_all(&bytes[..100_000]).await.unwrap();
    writer.flush().await.unwrap();
    assert!(read_n(&mut reader, 100_000).await == bytes[..100_000]);
    assert!(waits(&mut reader).await, "no end before the rest lands");
    writer.write_all(&bytes[100_000..]).await.unwrap();
    writer.flush().await.unwrap();
    assert!(read_n(&mut reader, 200_000).await == bytes[100_000..]);
    assert!(
        waits(&mut reader).await,
        "all bytes landed, but no end before the digest is checked"
    );
    assert!(!store.blob_path(&digest).exists());

    writer.commit().await.unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    let guard = follower.outcome().await.unwrap();
    assert_eq!(guard.path(), store.blob_path(&digest));
    assert_eq!(guard.size(), bytes.len() as u64);
    assert_eq!(store.shared.pins(&digest), 1, "the follower's guard pins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_task_follows_the_download_in_progress_instead_of_fetching() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let bytes = blob(50_000);
    let digest = Digest::sha256_of(&bytes);
    let size = Some(bytes.len() as u64);
    let mut writer = fetch(store.acquire(&digest, size).await.unwrap());
    writer.write_all(&bytes[..20_000]).await.unwrap();
    writer.flush().await.unwrap();

    let Opened::Follow(follower) = store.acquire_or_follow(&digest, size).await.unwrap() else {
        panic!("a download in progress is followed");
    };
    let mut reader = follower.reader(CancellationToken::new());
    assert!(read_n(&mut reader, 20_000).await == bytes[..20_000]);
    // `acquire` (not following) waits for the commit and gets the cached blob.
    let waiter = tokio::spawn({
        let (store, digest) = (store.clone(), digest.clone());
        async move {
            store
                .acquire(&digest, size)
                .await
                .map(|a| matches!(a, Acquired::Ready(_)))
        }
    });
    writer.write_all(&bytes[20_000..]).await.unwrap();
    writer.flush().await.unwrap();
    writer.commit().await.unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert!(rest == bytes[20_000..]);
    follower.outcome().await.unwrap();
    assert!(waiter.await.unwrap().unwrap(), "the waiter found it cached");
    let counters = store.counters();
    assert_eq!(counters.misses, 1, "one download: {counters:?}");
    assert_eq!(counters.shared, 2, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_mismatch_fails_every_follower_and_leaves_no_file() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let bytes = blob(40_000);
    let digest = Digest::sha256_of(&bytes);
    let mut forged = bytes.clone();
    forged[30_000] ^= 0xff;
    let mut writer = fetch(store.acquire(&digest, None).await.unwrap());
    let follower = writer.follow();
    let mut own = follower.reader(CancellationToken::new());
    writer.write_all(&forged).await.unwrap();
    writer.flush().await.unwrap();
    let Opened::Follow(other) = store.acquire_or_follow(&digest, None).await.unwrap() else {
        panic!("a download in progress is followed");
    };
    let mut others = other.reader(CancellationToken::new());
    // Unverified bytes are readable while they land...
    assert!(read_n(&mut own, 10_000).await == forged[..10_000]);
    let err = writer.commit().await.unwrap_err();
    assert_eq!(err.code(), "digest_mismatch");

    for reader in [&mut own, &mut others] {
        let mut all = Vec::new();
        let err = reader.read_to_end(&mut all).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        // ...and once a reader has caught up with the verdict, a read is its error.
        assert!(forged.ends_with(&all), "{} bytes read", all.len());
    }
    for follower in [follower, other] {
        let err = follower.outcome().await.unwrap_err();
        assert_eq!(err.code(), "digest_mismatch", "{err}");
        assert!(err.to_string().contains(&digest.to_string()), "{err}");
    }
    assert!(!store.blob_path(&digest).exists());
    assert_eq!(
        std::fs::read_dir(store.dir().join("tmp")).unwrap().count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_dropped_or_abandoned_ends_its_followers_with_an_error() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let bytes = blob(10_000);
    let digest = Digest::sha256_of(&bytes);
    let mut writer = fetch(store.acquire(&digest, None).await.unwrap());
    let follower = writer.follow();
    let mut reader = follower.reader(CancellationToken::new());
    writer.write_all(&bytes[..5_000]).await.unwrap();
    writer.flush().await.unwrap();
    assert!(read_n(&mut reader, 5_000).await == bytes[..5_000]);
    drop(writer);
    reader.read_u8().await.unwrap_err();
    assert_eq!(follower.outcome().await.unwrap_err().code(), "io_error");

    // Abandoned with a reason: followers get its code and message.
    let writer = fetch(store.acquire(&digest, None).await.unwrap());
    let follower = writer.follow();
    let reason = StoreError::SizeMismatch {
        digest: digest.clone(),
        expected: 1,
        actual: 2,
    };
    writer.abandon(&reason);
    let err = follower.outcome().await.unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        ("digest_mismatch", reason.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_learns_when_nobody_follows_and_a_reader_can_be_cancelled() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let digest = Digest::sha256_of(b"never written");
    let writer = fetch(store.acquire(&digest, None).await.unwrap());
    let follower = writer.follow();
    let cancel = CancellationToken::new();
    let mut reader = follower.reader(cancel.clone());
    let unfollowed = tokio::spawn(writer.unfollowed());
    drop(follower);
    tokio::time::sleep(A_MOMENT).await;
    assert!(!unfollowed.is_finished(), "the reader still follows");

    let read = tokio::spawn(async move {
        let mut buf = [0; 16];
        reader.read(&mut buf).await
    });
    tokio::time::sleep(A_MOMENT).await;
    assert!(!read.is_finished(), "the reader waits for bytes");
    cancel.cancel();
    let err = tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a cancelled reader stops waiting")
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    tokio::time::timeout(PATIENCE, unfollowed)
        .await
        .expect("nobody follows once the reader is gone")
        .unwrap();
    drop(writer);
}
