//! A job's scratch folders, the ones it creates among the user's files (a pull's staging
//! tree beside its dest, the `git` layout's repository beside that), recorded in
//! `job_scratch` so that they go when the job ends, even when the daemon died first.
//!
//! The order is the point: a folder's row is written *before* the folder is created (a
//! kill in between leaves a row for nothing, which cleaning skips, never a folder nobody
//! knows), and deleted only *after* the folder is gone (a failed removal is retried at the
//! next start). Only recorded paths are ever removed: a user's `.hoist-staging-foo` is
//! not ours. Removal runs on the blocking pool (`unpack::remove_scratch`): a tree can be
//! a whole image. Not for: the job-private blob folders in `tmp/`, which the daemon owns
//! whole and empties at start.

use std::path::Path;

use sqlx::SqlitePool;

use super::model::JobError;
use super::table;
use crate::error::FromIo;
use crate::unpack::remove_scratch;

/// Records the scratch folders of one job. Cheap to clone.
#[derive(Clone)]
pub struct Scratch {
    db: SqlitePool,
    job_id: String,
}

impl Scratch {
    pub fn new(db: SqlitePool, job_id: &str) -> Scratch {
        Scratch {
            db,
            job_id: job_id.to_string(),
        }
    }

    /// Records `path` as this job's, to be removed when the job ends. Call it before
    /// creating the folder.
    pub async fn record(&self, path: &Path) -> Result<(), JobError> {
        let path = std::path::absolute(path).map_err(JobError::io(path))?;
        table::add_scratch(&self.db, &self.job_id, &path)
            .await
            .map_err(|e| {
                JobError::new(
                    "internal_error",
                    format!("recording scratch folder {}: {e}", path.display()),
                )
            })
    }
}

/// Removes every recorded scratch folder of job `id`, then its rows. Failures are logged
/// and their rows kept, for the next start to try again.
pub async fn clean(db: &SqlitePool, id: &str) {
    match table::scratch(db, Some(id)).await {
        Ok(rows) => remove_all(db, rows).await,
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "scratch folders not listed; left for the next start")
        }
    }
}

/// Removes the recorded scratch folders of every job: at start, before any job runs.
pub async fn clean_all(db: &SqlitePool) -> Result<(), sqlx::Error> {
    remove_all(db, table::scratch(db, None).await?).await;
    Ok(())
}

async fn remove_all(db: &SqlitePool, rows: Vec<(String, std::path::PathBuf)>) {
    for (id, path) in rows {
        if let Err(e) = remove_scratch(&path).await {
            tracing::warn!(job = %id, path = %path.display(), error = %e,
                           "scratch folder not removed; tried again at the next start");
            continue;
        }
        if let Err(e) = table::forget_scratch(db, &id, &path).await {
            tracing::warn!(job = %id, path = %path.display(), error = %e, "scratch row not deleted");
        }
    }
}
