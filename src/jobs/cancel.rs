//! Cancelling registry calls that take no cancellation token of their own.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::model::JobError;

/// Runs `work` until it ends or `cancel` fires, whichever comes first. For calls that hold
/// no local state worth cleaning up (manifest requests, uploads): dropping them is safe.
pub async fn cancellable<T, E: Into<JobError>>(
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, JobError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(JobError::cancelled()),
        result = work => result.map_err(Into::into),
    }
}
