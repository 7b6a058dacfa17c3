//! The `jobs` table, its `job_scratch` rows and the `tree_removals` of `DELETE /trees`:
//! every query on them, nothing else.
//!
//! Status changes are conditional updates (`WHERE status = …`), so a cancel racing a
//! worker's start can never both win.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use super::model::{Job, JobError, JobKind, JobStatus, Progress, now_rfc3339};

pub type DbResult<T> = Result<T, sqlx::Error>;

fn job_from_row(row: &SqliteRow) -> DbResult<Job> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let request: String = row.try_get("request")?;
    let progress: Option<String> = row.try_get("progress")?;
    let result: Option<String> = row.try_get("result")?;
    let error_code: Option<String> = row.try_get("error_code")?;
    let error_message: Option<String> = row.try_get("error_message")?;
    let decode = |what: &str, e: String| sqlx::Error::Decode(format!("jobs.{what}: {e}").into());
    Ok(Job {
        id: row.try_get("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| decode("kind", kind.clone()))?,
        status: JobStatus::parse(&status).ok_or_else(|| decode("status", status.clone()))?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        request: serde_json::from_str(&request).map_err(|e| decode("request", e.to_string()))?,
        progress: progress.and_then(|p| serde_json::from_str::<Progress>(&p).ok()),
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        // Through `new`, so a row written before messages were capped is served cut too.
        error: error_code.map(|code| JobError::new(&code, error_message.unwrap_or_default())),
    })
}

pub async fn insert(
    db: &SqlitePool,
    id: &str,
    kind: JobKind,
    request: &serde_json::Value,
    had_credentials: bool,
) -> DbResult<Job> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, created_at, request, had_credentials)
         VALUES (?, ?, 'queued', ?, ?, ?)",
    )
    .bind(id)
    .bind(kind.as_str())
    .bind(now_rfc3339())
    .bind(request.to_string())
    .bind(had_credentials)
    .execute(db)
    .await?;
    get(db, id).await?.ok_or_else(|| sqlx::Error::RowNotFound)
}

pub async fn get(db: &SqlitePool, id: &str) -> DbResult<Option<Job>> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(job_from_row).transpose()
}

/// Newest first, optionally filtered; with `before` (a job's `seq`), only older jobs.
pub async fn list(
    db: &SqlitePool,
    status: Option<JobStatus>,
    kind: Option<JobKind>,
    before: Option<i64>,
    limit: u32,
) -> DbResult<Vec<Job>> {
    let rows = sqlx::query(
        "SELECT * FROM jobs
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2)
               AND (?3 IS NULL OR seq < ?3)
         ORDER BY seq DESC LIMIT ?4",
    )
    .bind(status.map(JobStatus::as_str))
    .bind(kind.map(JobKind::as_str))
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(job_from_row).collect()
}

/// The place of job `id` in the table's order (for paging), if it exists.
pub async fn seq_of(db: &SqlitePool, id: &str) -> DbResult<Option<i64>> {
    sqlx::query_scalar("SELECT seq FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Deletes at most `batch` jobs, oldest first, that ended at least `age_secs` seconds ago
/// and have no scratch row left (a folder still to remove keeps its job); returns how many.
/// Small batches keep each write transaction short, so sweeping never holds up a job.
pub async fn delete_ended(db: &SqlitePool, age_secs: u64, batch: u32) -> DbResult<u64> {
    let done = sqlx::query(
        "DELETE FROM jobs WHERE seq IN (
             SELECT seq FROM jobs
             WHERE status IN ('succeeded', 'failed', 'cancelled')
                   AND finished_at IS NOT NULL
                   AND julianday(finished_at) <= julianday('now') - ?1 / 86400.0
                   AND NOT EXISTS (SELECT 1 FROM job_scratch s WHERE s.job_id = jobs.id)
             ORDER BY seq LIMIT ?2)",
    )
    .bind(age_secs as f64)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// queued → running; false when the job was no longer queued (cancelled meanwhile).
pub async fn mark_running(db: &SqlitePool, id: &str) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'running', started_at = ?, error_code = NULL,
                         error_message = NULL
         WHERE id = ? AND status = 'queued'",
    )
    .bind(now_rfc3339())
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a job that is queued or running; false when it had already ended.
pub async fn finish(
    db: &SqlitePool,
    id: &str,
    status: JobStatus,
    result: Option<&serde_json::Value>,
    error: Option<&JobError>,
) -> DbResult<bool> {
    debug_assert!(status.is_terminal());
    let done = sqlx::query(
        "UPDATE jobs SET status = ?, finished_at = ?, result = ?, error_code = ?,
                         error_message = ?
         WHERE id = ? AND status IN ('queued', 'running')",
    )
    .bind(status.as_str())
    .bind(now_rfc3339())
    .bind(result.map(|r| r.to_string()))
    .bind(error.map(|e| e.code.as_str()))
    .bind(error.map(|e| e.message.as_str()))
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// queued → cancelled; false when the job was no longer queued.
pub async fn cancel_if_queued(db: &SqlitePool, id: &str) -> DbResult<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'cancelled', finished_at = ?, error_code = 'cancelled',
                         error_message = 'cancelled by request'
         WHERE id = ? AND status = 'queued'",
    )
    .bind(now_rfc3339())
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_progress(db: &SqlitePool, id: &str, progress: &Progress) -> DbResult<()> {
    let json = serde_json::to_string(progress).unwrap_or_default();
    sqlx::query("UPDATE jobs SET progress = ? WHERE id = ? AND status = 'running'")
        .bind(json)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// A job that must run again after a restart.
pub struct Unfinished {
    pub id: String,
    pub had_credentials: bool,
    pub request: serde_json::Value,
}

/// Jobs left queued or running by the previous daemon, oldest first; running ones are put
/// back to queued.
pub async fn take_unfinished(db: &SqlitePool) -> DbResult<Vec<Unfinished>> {
    sqlx::query(
        "UPDATE jobs SET status = 'queued', started_at = NULL, progress = NULL
         WHERE status = 'running'",
    )
    .execute(db)
    .await?;
    let rows = sqlx::query(
        "SELECT id, had_credentials, request FROM jobs WHERE status = 'queued' ORDER BY seq",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let request: String = r.try_get("request")?;
            Ok(Unfinished {
                id: r.try_get("id")?,
                had_credentials: r.try_get("had_credentials")?,
                request: serde_json::from_str(&request).unwrap_or_default(),
            })
        })
        .collect()
}

/// Counts by (kind, status), for metrics.
pub async fn counts(db: &SqlitePool) -> DbResult<Vec<(String, String, i64)>> {
    let rows = sqlx::query("SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status")
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("kind")?, r.try_get("status")?, r.try_get("n")?)))
        .collect()
}

/// True when some job is queued or running (for idle exit).
pub async fn any_active(db: &SqlitePool) -> DbResult<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_one(db)
            .await?;
    Ok(n > 0)
}

/// Records `path` as a scratch folder of job `id` (again is fine).
pub async fn add_scratch(db: &SqlitePool, id: &str, path: &Path) -> DbResult<()> {
    sqlx::query("INSERT OR IGNORE INTO job_scratch (job_id, path) VALUES (?, ?)")
        .bind(id)
        .bind(path.as_os_str().as_bytes())
        .execute(db)
        .await?;
    Ok(())
}

/// The recorded scratch folders of job `id`, or of every job when `None`, as
/// `(job id, path)`.
pub async fn scratch(db: &SqlitePool, id: Option<&str>) -> DbResult<Vec<(String, PathBuf)>> {
    let rows = sqlx::query(
        "SELECT job_id, path FROM job_scratch WHERE ?1 IS NULL OR job_id = ?1
         ORDER BY job_id, path",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let path: Vec<u8> = r.try_get("path")?;
            Ok((
                r.try_get("job_id")?,
                PathBuf::from(OsString::from_vec(path)),
            ))
        })
        .collect()
}

/// Forgets a scratch folder of job `id` once it is gone.
pub async fn forget_scratch(db: &SqlitePool, id: &str, path: &Path) -> DbResult<()> {
    sqlx::query("DELETE FROM job_scratch WHERE job_id = ? AND path = ?")
        .bind(id)
        .bind(path.as_os_str().as_bytes())
        .execute(db)
        .await?;
    Ok(())
}

/// The stored requests of the jobs that are queued or running, as `(id, request)`.
pub async fn active_requests(db: &SqlitePool) -> DbResult<Vec<(String, serde_json::Value)>> {
    let rows = sqlx::query("SELECT id, request FROM jobs WHERE status IN ('queued', 'running')")
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| {
            let request: String = r.try_get("request")?;
            Ok((
                r.try_get("id")?,
                serde_json::from_str(&request).unwrap_or_default(),
            ))
        })
        .collect()
}

/// Records `path` as a tree being removed (before it is renamed there).
pub async fn add_tree_removal(db: &SqlitePool, path: &Path) -> DbResult<()> {
    sqlx::query("INSERT OR IGNORE INTO tree_removals (path) VALUES (?)")
        .bind(path.as_os_str().as_bytes())
        .execute(db)
        .await?;
    Ok(())
}

/// Every tree being removed.
pub async fn tree_removals(db: &SqlitePool) -> DbResult<Vec<PathBuf>> {
    let rows = sqlx::query("SELECT path FROM tree_removals ORDER BY path")
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| {
            let path: Vec<u8> = r.try_get("path")?;
            Ok(PathBuf::from(OsString::from_vec(path)))
        })
        .collect()
}

/// Forgets a tree removal once the tree is gone.
pub async fn forget_tree_removal(db: &SqlitePool, path: &Path) -> DbResult<()> {
    sqlx::query("DELETE FROM tree_removals WHERE path = ?")
        .bind(path.as_os_str().as_bytes())
        .execute(db)
        .await?;
    Ok(())
}
