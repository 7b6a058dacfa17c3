//! A staging folder beside the destination, swapped into place only when complete.

use std::path::{Path, PathBuf};

use super::UnpackError;

/// A folder beside `dest` (same filesystem, so the final rename is atomic) that is removed
/// when dropped uncommitted: a failed or cancelled job leaves `dest` as it was.
pub struct Staging {}

impl Staging {
    /// Creates `<dest parent>/.hoist-staging-<tag>` (and the parent folders of dest).
    pub async fn create(_dest: &Path, _tag: &str) -> Result<Staging, UnpackError> {
        todo!()
    }

    pub fn path(&self) -> &Path {
        todo!()
    }

    /// Moves the staged tree to `dest`. An existing `dest` is a `DestExists` error unless
    /// `force`, then the old tree is swapped out atomically (renameat2 RENAME_EXCHANGE) and
    /// removed afterwards.
    pub async fn commit(self, _force: bool) -> Result<PathBuf, UnpackError> {
        todo!()
    }
}
