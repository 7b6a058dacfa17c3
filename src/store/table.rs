//! The `blobs` table (migrations/0002_blobs.sql): one row per verified blob file, with
//! its size and when it was last used (unix milliseconds), for stats and LRU order.
//!
//! Thin typed queries only; which row may change when is decided by the callers,
//! under a pin or a slot (see `state.rs`). Not for: job state, which has its own tables.

use sqlx::SqlitePool;

use crate::digest::Digest;

/// SQLite stores sizes as signed 64-bit; blobs never come near the limit.
fn to_db(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn from_db(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

/// Marks the blob used at `now` and returns its recorded size, if it has a row.
pub(super) async fn touch(
    db: &SqlitePool,
    digest: &Digest,
    now: i64,
) -> Result<Option<u64>, sqlx::Error> {
    let size: Option<i64> =
        sqlx::query_scalar("UPDATE blobs SET last_used = ?1 WHERE digest = ?2 RETURNING size")
            .bind(now)
            .bind(digest.to_string())
            .fetch_optional(db)
            .await?;
    Ok(size.map(from_db))
}

/// Records a committed blob, or refreshes its row when one is already there.
pub(super) async fn upsert(
    db: &SqlitePool,
    digest: &Digest,
    size: u64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, last_used) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (digest) DO UPDATE SET size = excluded.size, last_used = excluded.last_used",
    )
    .bind(digest.to_string())
    .bind(to_db(size))
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the blob's row; true when there was one.
pub(super) async fn delete(db: &SqlitePool, digest: &Digest) -> Result<bool, sqlx::Error> {
    delete_raw(db, &digest.to_string()).await
}

/// Deletes a row by its stored text, for rows whose digest no longer parses.
pub(super) async fn delete_raw(db: &SqlitePool, digest: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM blobs WHERE digest = ?1")
        .bind(digest)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every row as stored (digest text, size), least recently used first.
pub(super) async fn all_raw(db: &SqlitePool) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT digest, size FROM blobs ORDER BY last_used, created_at, digest")
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(d, s)| (d, from_db(s))).collect())
}

/// Every row whose digest parses, least recently used first.
pub(super) async fn all(db: &SqlitePool) -> Result<Vec<(Digest, u64)>, sqlx::Error> {
    Ok(all_raw(db)
        .await?
        .into_iter()
        .filter_map(|(d, s)| Some((d.parse().ok()?, s)))
        .collect())
}

/// (number of blobs, total bytes).
pub(super) async fn totals(db: &SqlitePool) -> Result<(u64, u64), sqlx::Error> {
    let (count, bytes): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs")
            .fetch_one(db)
            .await?;
    Ok((from_db(count), from_db(bytes)))
}

/// The latest `last_used`, to keep the clock monotonic across restarts.
pub(super) async fn latest_use(db: &SqlitePool) -> Result<i64, sqlx::Error> {
    let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(last_used) FROM blobs")
        .fetch_one(db)
        .await?;
    Ok(latest.unwrap_or(0))
}
