//! Housekeeping of the job table: jobs that ended more than `HOIST_JOB_RETENTION` seconds
//! ago are deleted, at start and then periodically, in small batches on the pool like any
//! other query, so a sweep never blocks a request or a job for long.
//!
//! A job whose scratch folders are not all gone yet (a failed removal, retried at the next
//! start) is kept until they are: its rows say what is left to remove. Not for: the
//! trees jobs wrote, which stay until a client removes them (`DELETE /trees`).

use std::time::Duration;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use super::table;

/// Jobs deleted per transaction.
const BATCH: u32 = 500;
/// The longest pause between sweeps: a job is deleted at most this late.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Time between sweeps for `retention`: half of it, between one second and a minute.
fn interval(retention: Duration) -> Duration {
    (retention / 2).clamp(Duration::from_secs(1), MAX_INTERVAL)
}

/// Sweeps now, then every [`interval`] until `stop`.
pub async fn run(db: SqlitePool, retention: Duration, stop: CancellationToken) {
    loop {
        match sweep(&db, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                retention_seconds = retention.as_secs(),
                "deleted jobs that ended more than HOIST_JOB_RETENTION seconds ago"
            ),
            Err(e) => tracing::warn!(error = %e, "deleting old jobs failed; tried again later"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval(retention)) => {}
        }
    }
}

/// Deletes every job past `retention`, a batch at a time; returns how many.
async fn sweep(db: &SqlitePool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = table::delete_ended(db, retention.as_secs(), BATCH).await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only ended jobs past the retention go, and not while a scratch row is left.
    #[tokio::test]
    async fn sweep_deletes_ended_jobs_past_the_retention_only() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::db::open(&tmp.path().join("hoist.db")).await.unwrap();
        let insert = |id: &'static str, status: &'static str, ended: Option<&'static str>| {
            let db = db.clone();
            async move {
                sqlx::query(
                    "INSERT INTO jobs (id, kind, status, created_at, finished_at, request)
                     VALUES (?, 'pull', ?, '2020-01-01T00:00:00Z', ?, '{}')",
                )
                .bind(id)
                .bind(status)
                .bind(ended)
                .execute(&db)
                .await
                .unwrap();
            }
        };
        insert("old", "succeeded", Some("2020-01-01T00:00:01.5Z")).await;
        insert("old-with-scratch", "failed", Some("2020-01-01T00:00:01Z")).await;
        insert("running", "running", None).await;
        insert("recent", "cancelled", Some("2999-01-01T00:00:00Z")).await;
        table::add_scratch(&db, "old-with-scratch", std::path::Path::new("/nowhere"))
            .await
            .unwrap();
        assert_eq!(sweep(&db, Duration::from_secs(3600)).await.unwrap(), 1);
        let left: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
        assert_eq!(left, ["old-with-scratch", "recent", "running"]);
    }

    #[test]
    fn sweeps_are_between_a_second_and_a_minute_apart() {
        assert_eq!(interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(4)), Duration::from_secs(2));
        assert_eq!(interval(Duration::from_secs(604_800)), MAX_INTERVAL);
    }
}
