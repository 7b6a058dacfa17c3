//! The one shape of a failure: every domain error enum has a stable machine-readable
//! code ([`ErrorCode`]), which `api/error.rs` maps to an HTTP status and a failed job
//! reports as `error.code` (one conversion, `From<E: ErrorCode> for JobError`). Local
//! I/O failures say which path they were about ([`FromIo::io`]); cancellation is one code,
//! [`CANCELLED`]. Not for: HTTP statuses (`api`), job bookkeeping (`jobs`).

use std::io;
use std::path::PathBuf;

/// The code of every cancellation, whichever room noticed it.
pub(crate) const CANCELLED: &str = "cancelled";

/// An error with a stable code: snake_case, part of the API contract (`code` in
/// problem+json and in a failed job's `error`), never changed once released.
pub(crate) trait ErrorCode: std::error::Error {
    fn code(&self) -> &'static str;
}

/// An error type with a variant for a local I/O failure on a path.
pub(crate) trait FromIo: Sized {
    fn from_io(path: PathBuf, source: io::Error) -> Self;

    /// The one io-error helper, `map_err(E::io(path))`: the failure as `E`, saying which
    /// path it was about.
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::from_io(path, source)
    }
}
