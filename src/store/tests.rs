//! Behaviour of the blob cache against a real temp folder and a real SQLite file with
//! the project's migrations: verification, crash cleanup, single flight, pins, LRU.

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

use super::*;

async fn pool(dir: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("hoist.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate!().run(&pool).await.unwrap();
    pool
}

pub(super) async fn open(tmp: &TempDir, max_bytes: Option<u64>) -> Store {
    let db = pool(tmp.path()).await;
    Store::open(tmp.path().join("cache"), db, max_bytes)
        .await
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub(super) fn fetch(acquired: Acquired) -> BlobWriter {
    match acquired {
        Acquired::Fetch(writer) => writer,
        Acquired::Ready(guard) => panic!("expected a fetch, got cached {guard:?}"),
    }
}

fn ready(acquired: Acquired) -> BlobGuard {
    match acquired {
        Acquired::Ready(guard) => guard,
        Acquired::Fetch(writer) => panic!("expected a cached blob, got {writer:?}"),
    }
}

async fn put(store: &Store, bytes: &[u8]) -> BlobGuard {
    let digest = Digest::sha256_of(bytes);
    store.insert_bytes(&digest, bytes).await.unwrap()
}

#[tokio::test]
async fn verified_write_commits_and_is_then_a_hit() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let digest = Digest::sha256_of(b"hello world");

    let mut writer = fetch(store.acquire(&digest, Some(11)).await.unwrap());
    writer.write_all(b"hello ").await.unwrap();
    writer.write_all(b"world").await.unwrap();
    assert_eq!(writer.written(), 11);
    let guard = writer.commit().await.unwrap();

    assert_eq!(guard.path(), store.blob_path(&digest));
    assert_eq!(std::fs::read(guard.path()).unwrap(), b"hello world");
    assert_eq!(guard.size(), 11);
    assert!(names(&store.dir().join("tmp")).is_empty());
    drop(guard);

    let again = ready(store.acquire(&digest, Some(11)).await.unwrap());
    assert_eq!(again.digest(), &digest);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.blobs, stats.bytes), (1, 11));
    let counters = store.counters();
    assert_eq!((counters.hits, counters.misses, counters.shared), (1, 1, 0));
    assert_eq!(counters.bytes_written, 11);
}

#[tokio::test]
async fn wrong_digest_is_refused_and_leaves_no_file() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let digest = Digest::sha256_of(b"expected");

    let mut writer = fetch(store.acquire(&digest, None).await.unwrap());
    writer.write_all(b"tampered").await.unwrap();
    let err = writer.commit().await.unwrap_err();

    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(names(&store.dir().join("tmp")).is_empty());
    assert!(names(&store.dir().join("blobs/sha256")).is_empty());
    assert_eq!(store.stats().await.unwrap().blobs, 0);
    // The slot was released: the next caller may fetch.
    fetch(store.acquire(&digest, None).await.unwrap());
}

#[tokio::test]
async fn wrong_size_is_refused() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let digest = Digest::sha256_of(b"four");

    let mut writer = fetch(store.acquire(&digest, Some(5)).await.unwrap());
    writer.write_all(b"four").await.unwrap();
    let err = writer.commit().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 5,
                actual: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(names(&store.dir().join("tmp")).is_empty());

    // Writing past the declared size fails at once rather than filling the disk.
    let mut writer = fetch(store.acquire(&digest, Some(3)).await.unwrap());
    assert!(writer.write_all(b"four").await.is_err());
    drop(writer);
    assert!(names(&store.dir().join("tmp")).is_empty());
}

#[tokio::test]
async fn cached_blob_with_other_declared_size_is_refused() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let guard = put(&store, b"abc").await;
    let err = store.acquire(guard.digest(), Some(4)).await.unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
}

#[tokio::test]
async fn dropped_writer_leaves_no_temp_file() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let digest = Digest::sha256_of(b"never finished");
    let mut writer = fetch(store.acquire(&digest, None).await.unwrap());
    writer.write_all(b"never").await.unwrap();
    assert_eq!(names(&store.dir().join("tmp")).len(), 1);
    drop(writer);
    assert!(names(&store.dir().join("tmp")).is_empty());
}

#[tokio::test]
async fn open_cleans_temp_files_and_disagreements() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let kept = put(&store, b"kept").await;
    let lost = put(&store, b"lost").await;
    let (kept_path, lost_path) = (kept.path().to_path_buf(), lost.path().to_path_buf());
    drop((kept, lost, store));

    let cache = tmp.path().join("cache");
    std::fs::write(cache.join("tmp/sha256-abc-123.partial"), b"half").unwrap();
    std::fs::create_dir(cache.join("tmp/leftover")).unwrap();
    std::fs::remove_file(&lost_path).unwrap(); // a row without its file
    let unrecorded = cache.join(format!("blobs/sha256/{}", Digest::sha256_of(b"x").hex()));
    std::fs::write(&unrecorded, b"x").unwrap(); // a file without its row
    std::fs::write(cache.join("blobs/sha256/not-a-digest"), b"?").unwrap();

    let store = open(&tmp, None).await;
    assert!(names(&cache.join("tmp")).is_empty());
    assert!(!unrecorded.exists());
    assert!(!cache.join("blobs/sha256/not-a-digest").exists());
    assert!(kept_path.exists());
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.blobs, stats.bytes), (1, 4));
    let kept = Digest::sha256_of(b"kept");
    ready(store.acquire(&kept, Some(4)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_acquires_fetch_once() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let bytes = b"one download for everyone".to_vec();
    let digest = Digest::sha256_of(&bytes);

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, digest, bytes) = (store.clone(), digest.clone(), bytes.clone());
            tokio::spawn(async move {
                match store
                    .acquire(&digest, Some(bytes.len() as u64))
                    .await
                    .unwrap()
                {
                    Acquired::Fetch(mut writer) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        writer.write_all(&bytes).await.unwrap();
                        writer.commit().await.unwrap();
                        true
                    }
                    Acquired::Ready(guard) => {
                        assert_eq!(std::fs::read(guard.path()).unwrap(), bytes);
                        false
                    }
                }
            })
        })
        .collect();
    let mut fetches = 0;
    for task in tasks {
        fetches += usize::from(task.await.unwrap());
    }
    assert_eq!(fetches, 1);
    let counters = store.counters();
    assert_eq!(counters.misses, 1);
    assert_eq!(counters.hits + counters.shared, 15);
    assert!(counters.shared > 0, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_fetch_hands_over_to_one_waiter() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let bytes = b"second time lucky".to_vec();
    let digest = Digest::sha256_of(&bytes);

    let first = fetch(store.acquire(&digest, None).await.unwrap());
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (store, digest, bytes) = (store.clone(), digest.clone(), bytes.clone());
            tokio::spawn(async move {
                match store.acquire(&digest, None).await.unwrap() {
                    Acquired::Fetch(mut writer) => {
                        writer.write_all(&bytes).await.unwrap();
                        writer.commit().await.unwrap();
                        true
                    }
                    Acquired::Ready(_) => false,
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "waiters must wait"
    );
    drop(first);

    let mut fetches = 0;
    for waiter in waiters {
        fetches += usize::from(waiter.await.unwrap());
    }
    assert_eq!(fetches, 1);
    assert_eq!(store.counters().misses, 2);
    assert!(store.blob_path(&digest).exists());
}

#[tokio::test]
async fn purge_keeps_pinned_blobs() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let pinned = put(&store, b"in use").await;
    drop(put(&store, b"idle one").await);
    drop(put(&store, b"idle two").await);

    let report = store.purge().await.unwrap();
    assert_eq!((report.removed_blobs, report.freed_bytes), (2, 16));
    assert!(pinned.path().exists());
    assert_eq!(names(&store.dir().join("blobs/sha256")).len(), 1);
    assert_eq!(store.stats().await.unwrap().blobs, 1);

    let digest = pinned.digest().clone();
    drop(pinned);
    assert_eq!(store.shared.pins(&digest), 0);
    let report = store.purge().await.unwrap();
    assert_eq!(report.removed_blobs, 1);
    assert!(names(&store.dir().join("blobs/sha256")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_racing_acquire_never_deletes_a_held_blob() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, None).await;
    let bytes = b"contended".to_vec();
    let digest = Digest::sha256_of(&bytes);
    for _ in 0..50 {
        let purger = {
            let store = store.clone();
            tokio::spawn(async move { store.purge().await.unwrap() })
        };
        let guard = store.insert_bytes(&digest, &bytes).await.unwrap();
        assert_eq!(std::fs::read(guard.path()).unwrap(), bytes);
        purger.await.unwrap();
        assert!(guard.path().exists(), "purged while pinned");
    }
}

#[tokio::test]
async fn lru_evicts_least_recently_used_unpinned() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, Some(10)).await;
    let a = put(&store, b"aaaa").await;
    let b = put(&store, b"bbbb").await;
    let (da, db) = (a.digest().clone(), b.digest().clone());
    drop((a, b));
    // Use `a` again: `b` is now the least recently used.
    drop(ready(store.acquire(&da, None).await.unwrap()));

    let c = put(&store, b"cccc").await;
    assert!(store.blob_path(&da).exists());
    assert!(!store.blob_path(&db).exists());
    assert!(c.path().exists());
    assert_eq!(store.counters().evictions, 1);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.blobs, stats.bytes, stats.max_bytes),
        (2, 8, Some(10))
    );
}

#[tokio::test]
async fn oversized_blob_is_usable_while_pinned_then_evicted() {
    let tmp = TempDir::new().unwrap();
    let store = open(&tmp, Some(4)).await;
    let big = put(&store, b"far too big for the cache").await;
    assert!(big.path().exists(), "pinned blobs survive eviction");
    let path = big.path().to_path_buf();
    drop(big);

    assert_eq!(store.evict().await.unwrap(), 1);
    assert!(!path.exists());
    assert_eq!(store.stats().await.unwrap().bytes, 0);
}

#[tokio::test]
async fn standalone_writer_lands_outside_the_cache() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("layout/blobs");
    let digest = Digest::sha256_of(b"bypass");

    let mut writer = BlobWriter::standalone(&dir, &digest, Some(6))
        .await
        .unwrap();
    writer.write_all(b"bypass").await.unwrap();
    let guard = writer.commit().await.unwrap();
    assert_eq!(guard.path(), dir.join("sha256").join(digest.hex()));
    assert_eq!(std::fs::read(guard.path()).unwrap(), b"bypass");
    assert_eq!(names(&dir), ["sha256"]);

    let mut writer = BlobWriter::standalone(&dir, &digest, None).await.unwrap();
    writer.write_all(b"bypasS").await.unwrap();
    assert!(writer.commit().await.is_err());
    assert_eq!(names(&dir), ["sha256"]);
}
