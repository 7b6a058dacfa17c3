//! The worker pool: each worker takes the next queued job id, runs its body in a task of
//! its own (so a panic fails the job instead of the worker), reports progress, and
//! records how the job ended.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::model::subject;
use super::{
    BuildRequest, Job, JobEnv, JobError, JobKind, JobStatus, Jobs, JobsError, PullRequest, Secrets,
    build, progress, pull, scratch, table,
};

impl Jobs {
    pub(super) async fn worker(
        &self,
        rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
    ) {
        loop {
            let next = {
                let mut rx = rx.lock().await;
                tokio::select! {
                    _ = self.inner.shutdown.cancelled() => None,
                    id = rx.recv() => id,
                }
            };
            let Some(id) = next else { return };
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = self.run(&id).await {
                tracing::error!(job = %id, error = %e, "job bookkeeping failed");
            }
        }
    }

    async fn run(&self, id: &str) -> Result<(), JobsError> {
        let cancel = self.inner.shutdown.child_token();
        self.lock_running().insert(id.to_string(), cancel.clone());
        if !table::mark_running(&self.inner.db, id).await? {
            self.lock_running().remove(id);
            return Ok(()); // cancelled while queued
        }
        let job = self.get(id).await?;
        self.publish_state(&job);
        let started = Instant::now();
        let secrets = self.lock_secrets().get(id).cloned().unwrap_or_default();
        tracing::info!(job = %id, image = subject(&job.request), kind = job.kind.as_str(), request = %job.request, "job started");

        let tracker = Arc::new(progress::Tracker::default());
        let stop_reporting = CancellationToken::new();
        let reporter = tokio::spawn(progress::report(
            id.to_string(),
            tracker.clone(),
            self.inner.db.clone(),
            self.inner.events.clone(),
            stop_reporting.clone(),
        ));

        let body = {
            let env = self.inner.env.clone();
            let job = job.clone();
            let scratch = scratch::Scratch::new(self.inner.db.clone(), id);
            let cancel = cancel.clone();
            let tracker = tracker.clone();
            tokio::spawn(async move { run_body(env, job, secrets, scratch, tracker, cancel).await })
        };
        let outcome = match body.await {
            Ok(outcome) => outcome,
            Err(join) => Err(JobError::new(
                "internal_error",
                format!("job task ended abnormally: {join}"),
            )),
        };
        if outcome.is_ok() {
            tracker.set_phase("done");
        }
        stop_reporting.cancel();
        let _ = reporter.await;
        // This must come before the job leaves `running` (shutdown waits for that) and
        // before it is reported ended, whichever way it ended (a panicked body never ran
        // its own cleanup): by then nothing it staged beside its dest is left.
        scratch::clean(&self.inner.db, id).await;
        self.lock_running().remove(id);
        // Blobs this job pinned over the size limit can go now.
        if let Err(e) = self.inner.env.store.evict().await {
            tracing::warn!(error = %e, "cache eviction");
        }

        if self.inner.shutdown.is_cancelled() && outcome.is_err() {
            // Interrupted by shutdown: left `running`, re-queued at the next start.
            tracing::info!(job = %id, image = subject(&job.request), "job interrupted by shutdown; it runs again at next start");
            return Ok(());
        }
        self.lock_secrets().remove(id);
        let (status, result, error) = match outcome {
            Ok(result) => (JobStatus::Succeeded, Some(result), None),
            Err(_) if cancel.is_cancelled() => {
                (JobStatus::Cancelled, None, Some(JobError::cancelled()))
            }
            Err(e) => (JobStatus::Failed, None, Some(e)),
        };
        table::finish(&self.inner.db, id, status, result.as_ref(), error.as_ref()).await?;
        self.inner
            .metrics
            .observe(job.kind, status, started.elapsed());
        let job = self.get(id).await?;
        match &job.error {
            // By whose fault, so that `journalctl -p err` lists what an admin must fix (the
            // disk, the database) and `-p warning` adds what a client asked for in vain.
            Some(e) if matches!(e.code.as_str(), "io_error" | "internal_error") => {
                tracing::error!(job = %id, image = subject(&job.request), status = status.as_str(), code = %e.code,
                                      error = %e.message, "job ended")
            }
            Some(e) if status == JobStatus::Failed => {
                tracing::warn!(job = %id, image = subject(&job.request), status = status.as_str(), code = %e.code,
                                      error = %e.message, "job ended")
            }
            Some(e) => {
                tracing::info!(job = %id, image = subject(&job.request), status = status.as_str(), code = %e.code,
                                      error = %e.message, "job ended")
            }
            None => {
                tracing::info!(job = %id, image = subject(&job.request), status = status.as_str(), "job ended")
            }
        }
        self.publish_state(&job);
        Ok(())
    }
}

async fn run_body(
    env: JobEnv,
    job: Job,
    secrets: Secrets,
    scratch: scratch::Scratch,
    tracker: Arc<progress::Tracker>,
    cancel: CancellationToken,
) -> Result<serde_json::Value, JobError> {
    match job.kind {
        JobKind::Pull => {
            let request: PullRequest = serde_json::from_value(job.request.clone())
                .map_err(|e| JobError::new("invalid_request", format!("stored request: {e}")))?;
            let spec = request.validate(&env.config.roots)?;
            let result = pull::run(
                &env,
                &job.id,
                spec,
                secrets.auth,
                &scratch,
                &tracker,
                &cancel,
            )
            .await?;
            to_value(&result)
        }
        JobKind::Build => {
            let request: BuildRequest = serde_json::from_value(job.request.clone())
                .map_err(|e| JobError::new("invalid_request", format!("stored request: {e}")))?;
            let spec = request.validate(&env.config.roots)?;
            let auth = build::BuildAuth {
                target: secrets.auth,
                base: secrets.base_auth,
            };
            let result = build::run(&env, &job.id, spec, auth, &tracker, &cancel).await?;
            to_value(&result)
        }
    }
}

/// A job body's typed result as the `result` the job row keeps.
fn to_value(result: &impl serde::Serialize) -> Result<serde_json::Value, JobError> {
    serde_json::to_value(result)
        .map_err(|e| JobError::new("internal_error", format!("job result: {e}")))
}
