//! Jobs: the queue, the bounded worker pool, the job state machine and recovery at start.
//!
//! The `jobs` row in SQLite is the truth for a job; the broadcast channel only carries
//! changes to listeners (`?wait=`, `/events`). Credentials given in a request live in
//! memory only, for as long as the job is queued or running. The folders a job creates
//! beside its dest are recorded (`scratch.rs`) and removed when it ends, or at the next
//! start when the daemon died first. `worker.rs` runs jobs;
//! `pull.rs` and `build.rs` are the job bodies; they drive `registry`, `store`, `unpack`
//! and `image`, which know nothing of jobs.

mod build;
mod cancel;
mod errors;
mod fetch;
mod metrics;
mod model;
mod progress;
mod pull;
mod request;
mod retention;
mod scratch;
mod table;
mod trees;
mod worker;

pub use metrics::{BUCKETS as DURATION_BUCKETS, JobMetrics};
use model::subject;
pub use model::{BuildResult, Job, JobError, JobEvent, JobKind, JobStatus, PullResult};
pub use request::{
    BuildCompression, BuildRequest, CacheMode, Layout, PullRequest, RequestError, parse_platform,
};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::registry::{Credentials, RegistryClient};
use crate::store::Store;

/// What job bodies need from the daemon.
#[derive(Clone)]
pub struct JobEnv {
    pub config: Arc<Config>,
    pub store: Store,
    pub registry: RegistryClient,
}

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("job {0} not found")]
    NotFound(String),
    #[error("job {id} already {status}; only queued or running jobs can be cancelled")]
    AlreadyFinished { id: String, status: &'static str },
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{} is in use by job {job}; wait for it to end or cancel it (DELETE /jobs/{job})", path.display())]
    DestBusy { path: PathBuf, job: String },
    #[error("{} does not exist", .0.display())]
    DestNotFound(PathBuf),
    #[error("removing the tree: {0}")]
    Tree(String),
    #[error("job database: {0}")]
    Db(#[from] sqlx::Error),
}

impl crate::error::ErrorCode for JobsError {
    fn code(&self) -> &'static str {
        match self {
            JobsError::Request(e) => e.code(),
            JobsError::NotFound(_) => "job_not_found",
            JobsError::AlreadyFinished { .. } => "job_finished",
            JobsError::ShuttingDown => "shutting_down",
            JobsError::DestBusy { .. } => "dest_busy",
            JobsError::DestNotFound(_) => "dest_not_found",
            JobsError::Tree(_) => "internal_error",
            JobsError::Db(_) => "internal_error",
        }
    }
}

/// Credentials of one job, kept in memory only.
#[derive(Clone, Default)]
struct Secrets {
    auth: Option<Credentials>,
    base_auth: Option<Credentials>,
}

struct Inner {
    db: SqlitePool,
    env: JobEnv,
    events: broadcast::Sender<JobEvent>,
    queue: mpsc::UnboundedSender<String>,
    running: Mutex<HashMap<String, CancellationToken>>,
    secrets: Mutex<HashMap<String, Secrets>>,
    shutdown: CancellationToken,
    metrics: JobMetrics,
    /// Held while a submission checks its dest and queues its job, and while
    /// `DELETE /trees` checks that no job uses a tree and renames it aside: neither can
    /// slip between the other's check and its act.
    dests: tokio::sync::Mutex<()>,
}

/// The job manager. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// Re-queues what the previous daemon left unfinished and starts `config.workers` workers.
    pub async fn start(db: SqlitePool, env: JobEnv) -> Result<Jobs, JobsError> {
        let (queue, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let workers = env.config.workers;
        let jobs = Jobs {
            inner: Arc::new(Inner {
                db,
                env,
                events,
                queue,
                running: Mutex::new(HashMap::new()),
                secrets: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                metrics: JobMetrics::default(),
                dests: tokio::sync::Mutex::new(()),
            }),
        };
        jobs.recover().await?;
        tokio::spawn(retention::run(
            jobs.inner.db.clone(),
            jobs.inner.env.config.job_retention,
            jobs.inner.shutdown.clone(),
        ));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers {
            let jobs = jobs.clone();
            let rx = rx.clone();
            tokio::spawn(async move { jobs.worker(rx).await });
        }
        Ok(jobs)
    }

    async fn recover(&self) -> Result<(), JobsError> {
        // This must come before any job is failed or re-queued: a job is reported ended
        // only once its scratch folders are gone, and a re-queued job's run makes its own
        // afresh. No job runs yet (one daemon per data folder), so every row is a leftover.
        scratch::clean_all(&self.inner.db).await?;
        trees::clean_all(&self.inner.db).await?;
        for job in table::take_unfinished(&self.inner.db).await? {
            if job.had_credentials {
                let error = JobError::new(
                    "credentials_lost",
                    "the daemon restarted and credentials given in the request are never \
                     stored; submit the job again",
                );
                table::finish(
                    &self.inner.db,
                    &job.id,
                    JobStatus::Failed,
                    None,
                    Some(&error),
                )
                .await?;
                tracing::warn!(job = %job.id, image = subject(&job.request), "job failed after restart: credentials_lost");
            } else {
                tracing::info!(job = %job.id, image = subject(&job.request), "re-queued after restart");
                let _ = self.inner.queue.send(job.id);
            }
        }
        Ok(())
    }

    pub fn env(&self) -> &JobEnv {
        &self.inner.env
    }

    pub fn metrics(&self) -> &JobMetrics {
        &self.inner.metrics
    }

    /// Validates and queues a pull.
    pub async fn submit_pull(&self, request: PullRequest) -> Result<Job, JobsError> {
        let spec = request.validate(&self.inner.env.config.roots)?;
        let _dests = self.inner.dests.lock().await;
        if !spec.force && tokio::fs::symlink_metadata(&spec.dest).await.is_ok() {
            return Err(RequestError::DestExists(spec.dest).into());
        }
        let secrets = Secrets {
            auth: request.auth.clone(),
            base_auth: None,
        };
        let stored = serde_json::to_value(&request).unwrap_or_default();
        self.enqueue(JobKind::Pull, stored, secrets).await
    }

    /// Validates and queues a build.
    pub async fn submit_build(&self, request: BuildRequest) -> Result<Job, JobsError> {
        let spec = request.validate(&self.inner.env.config.roots)?;
        let _dests = self.inner.dests.lock().await;
        match tokio::fs::symlink_metadata(&spec.source).await {
            Ok(m) if m.is_dir() => {}
            _ => return Err(RequestError::SourceNotFolder(spec.source).into()),
        }
        let secrets = Secrets {
            auth: request.auth.clone(),
            base_auth: request.base_auth.clone(),
        };
        let stored = serde_json::to_value(&request).unwrap_or_default();
        self.enqueue(JobKind::Build, stored, secrets).await
    }

    async fn enqueue(
        &self,
        kind: JobKind,
        request: serde_json::Value,
        secrets: Secrets,
    ) -> Result<Job, JobsError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(JobsError::ShuttingDown);
        }
        let id = uuid::Uuid::new_v4().to_string();
        let had_credentials = secrets.auth.is_some() || secrets.base_auth.is_some();
        if had_credentials {
            self.lock_secrets().insert(id.clone(), secrets);
        }
        let job = table::insert(&self.inner.db, &id, kind, &request, had_credentials).await?;
        tracing::info!(job = %id, image = subject(&request), kind = kind.as_str(), request = %request, "job queued");
        self.publish_state(&job);
        let _ = self.inner.queue.send(id);
        Ok(job)
    }

    fn lock_secrets(&self) -> std::sync::MutexGuard<'_, HashMap<String, Secrets>> {
        self.inner.secrets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_state(&self, job: &Job) {
        let _ = self
            .inner
            .events
            .send(JobEvent::State(Box::new(job.clone())));
    }

    pub async fn get(&self, id: &str) -> Result<Job, JobsError> {
        table::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| JobsError::NotFound(id.to_string()))
    }

    /// Jobs newest first, at most `limit`; with `before` (a job id), only jobs older than
    /// that one (the next page). An unknown `before` is `NotFound`.
    pub async fn list(
        &self,
        status: Option<JobStatus>,
        kind: Option<JobKind>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Job>, JobsError> {
        let before = match before {
            Some(id) => Some(
                table::seq_of(&self.inner.db, id)
                    .await?
                    .ok_or_else(|| JobsError::NotFound(id.to_string()))?,
            ),
            None => None,
        };
        Ok(table::list(&self.inner.db, status, kind, before, limit).await?)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// The job once it has ended, or as it is when `timeout` runs out.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Job, JobsError> {
        let mut rx = self.subscribe();
        let job = self.get(id).await?;
        if job.status.is_terminal() || timeout.is_zero() {
            return Ok(job);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return self.get(id).await,
                Ok(Ok(JobEvent::State(job))) if job.id == id && job.status.is_terminal() => {
                    return self.get(id).await;
                }
                Ok(Ok(_)) => {}
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    let job = self.get(id).await?;
                    if job.status.is_terminal() {
                        return Ok(job);
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return self.get(id).await,
            }
        }
    }

    /// Cancels a queued or running job; answers the job once it has stopped (or after a few
    /// seconds, still cancelling).
    pub async fn cancel(&self, id: &str) -> Result<Job, JobsError> {
        let job = self.get(id).await?;
        if job.status.is_terminal() {
            return Err(JobsError::AlreadyFinished {
                id: id.to_string(),
                status: job.status.as_str(),
            });
        }
        if table::cancel_if_queued(&self.inner.db, id).await? {
            // Never started: nothing on disk to undo.
            self.lock_secrets().remove(id);
            let job = self.get(id).await?;
            self.publish_state(&job);
            tracing::info!(job = %id, image = subject(&job.request), "job cancelled while queued");
            return Ok(job);
        }
        let token = self.lock_running().get(id).cloned();
        if let Some(token) = token {
            token.cancel();
        }
        self.wait(id, Duration::from_secs(10)).await
    }

    /// Stops taking jobs, interrupts running ones (they run again at the next start) and
    /// waits up to `grace` for them to clean up.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        let deadline = Instant::now() + grace;
        while !self.lock_running().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True when a job is queued or running.
    pub async fn busy(&self) -> bool {
        !self.lock_running().is_empty() || table::any_active(&self.inner.db).await.unwrap_or(true)
    }

    /// Job counts by kind and status (for metrics).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, JobsError> {
        Ok(table::counts(&self.inner.db).await?)
    }
}
