//! Writing a blob: a temporary file that hashes what passes, renamed into place only
//! once the digest (and declared size) match.

use std::path::Path;

use super::{BlobGuard, StoreError};
use crate::digest::Digest;

/// An `AsyncWrite` into a temporary file, hashing as it goes.
pub struct BlobWriter {}

impl BlobWriter {
    /// A writer outside the cache (for `cache: bypass`): the blob lands at
    /// `dir/<algorithm>/<hex>` once verified.
    pub async fn standalone(_dir: &Path, _digest: &Digest, _size: Option<u64>) -> Result<BlobWriter, StoreError> {
        todo!()
    }

    /// Bytes written so far (where a resumed download starts).
    pub fn written(&self) -> u64 {
        todo!()
    }

    /// Checks the digest and size, fsyncs, renames into place, records the blob, and
    /// returns it pinned. On mismatch the temporary file is removed.
    pub async fn commit(self) -> Result<BlobGuard, StoreError> {
        todo!()
    }
}
