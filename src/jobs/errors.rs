//! Domain errors of the rooms below, as the `{code, message}` a failed job reports: one
//! conversion for every error with a stable code, the job's `io_error` for local I/O
//! failures, and the one cancelled error. Not for: HTTP statuses (`api/error.rs`).

use std::path::PathBuf;

use super::model::JobError;
use crate::error::{CANCELLED, ErrorCode, FromIo};

impl<E: ErrorCode> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::new(e.code(), e.to_string())
    }
}

impl FromIo for JobError {
    fn from_io(path: PathBuf, source: std::io::Error) -> Self {
        JobError::new("io_error", format!("{}: {source}", path.display()))
    }
}

impl JobError {
    /// The one cancelled error: how a job ends once its cancellation token fired, whichever
    /// room noticed it first.
    pub fn cancelled() -> JobError {
        JobError::new(CANCELLED, "cancelled by request")
    }
}
