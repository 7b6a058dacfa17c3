//! Domain errors of the rooms below, as the `{code, message}` a failed job reports.

use super::model::JobError;
use crate::registry::RegistryError;
use crate::store::StoreError;
use crate::unpack::UnpackError;

impl From<RegistryError> for JobError {
    fn from(e: RegistryError) -> Self {
        JobError::new(e.code(), e.to_string())
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::new(e.code(), e.to_string())
    }
}

impl From<UnpackError> for JobError {
    fn from(e: UnpackError) -> Self {
        JobError::new(e.code(), e.to_string())
    }
}

/// A local I/O failure while running a job.
pub fn io_error(what: impl std::fmt::Display, e: std::io::Error) -> JobError {
    JobError::new("io_error", format!("{what}: {e}"))
}
