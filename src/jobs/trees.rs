//! `DELETE /trees`: removing a tree that jobs wrote inside the roots, for callers who
//! cannot remove root-owned files themselves.
//!
//! The order is the one `scratch.rs` keeps, for the same reason: the tree is found inside
//! its root by the kernel (`unpack::Aside`, `RESOLVE_IN_ROOT`, the last component never
//! followed), the path it is about to be renamed to is recorded in `tree_removals`, and
//! only then is it renamed aside (one rename: the name is free at once) and removed on the
//! blocking pool; the row goes after the tree. A crash anywhere leaves a row that the next
//! start finishes, never half a tree at its old name. Busy is decided under the same lock
//! that submissions take, so no job can be queued for a tree between the check and the
//! rename. Not for: the trees' contents, which are not inspected (any entry a job could
//! have written is removable, a plain file or a symlink too).

use std::path::{Path, PathBuf};

use sqlx::SqlitePool;

use super::{Jobs, JobsError, RequestError, table};
use crate::config::{canonicalize_existing_prefix, resolve_in_roots};
use crate::unpack::{Aside, remove_scratch};

/// True when one of `a`, `b` contains the other (or they are the same path).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl Jobs {
    /// Removes the tree at `dest` (resolved against the roots like a pull's `dest`) and
    /// answers its path once it is gone.
    pub async fn remove_tree(&self, dest: &str) -> Result<PathBuf, JobsError> {
        let roots = &self.inner.env.config.roots;
        let path = resolve_in_roots(roots, dest).map_err(RequestError::Path)?;
        let Some(root) = roots.iter().find(|r| path.starts_with(r)) else {
            unreachable!("resolve_in_roots answers only paths inside a root")
        };
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let db = &self.inner.db;
        let aside = {
            let _submissions = self.inner.dests.lock().await;
            if let Some(job) = self.busy_with(&path).await? {
                return Err(JobsError::DestBusy { path, job });
            }
            let tag = uuid::Uuid::new_v4().to_string();
            let aside = Aside::prepare(root, &rel, &tag)
                .await
                .map_err(|e| JobsError::Tree(e.to_string()))?
                .ok_or_else(|| JobsError::DestNotFound(path.clone()))?;
            // This must come before the rename: a crash right after it leaves a row, and
            // the next start removes what the row names.
            let aside_path = aside.path().to_path_buf();
            table::add_tree_removal(db, &aside_path).await?;
            match aside.rename().await {
                Ok(true) => aside_path,
                Ok(false) => {
                    table::forget_tree_removal(db, &aside_path).await?;
                    return Err(JobsError::DestNotFound(path));
                }
                Err(e) => {
                    table::forget_tree_removal(db, &aside_path).await?;
                    return Err(JobsError::Tree(e.to_string()));
                }
            }
        };
        tracing::info!(dest = %path.display(), "removing tree");
        // In a task of its own: a client that hangs up does not stop the removal halfway.
        let db = db.clone();
        let removal = tokio::spawn(async move { remove_recorded(&db, &aside).await });
        match removal.await {
            Ok(Ok(())) => Ok(path),
            Ok(Err(e)) => Err(JobsError::Tree(e)),
            Err(e) => Err(JobsError::Tree(e.to_string())),
        }
    }

    /// The id of a queued or running job whose dest or source overlaps `path`, or of any
    /// job whose scratch folder (a staging tree) lies there.
    async fn busy_with(&self, path: &Path) -> Result<Option<String>, JobsError> {
        let real = canonicalize_existing_prefix(path);
        let roots = &self.inner.env.config.roots;
        for (id, request) in table::active_requests(&self.inner.db).await? {
            for field in ["dest", "source"] {
                let Some(other) = request[field].as_str() else {
                    continue;
                };
                let Ok(other) = resolve_in_roots(roots, other) else {
                    continue;
                };
                if overlaps(&real, &canonicalize_existing_prefix(&other)) {
                    return Ok(Some(id));
                }
            }
        }
        for (job, scratch) in table::scratch(&self.inner.db, None).await? {
            if overlaps(&real, &canonicalize_existing_prefix(&scratch)) {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }
}

/// Removes a tree renamed aside, then forgets its row (kept when removal failed, for the
/// next start).
async fn remove_recorded(db: &SqlitePool, path: &Path) -> Result<(), String> {
    remove_scratch(path).await.map_err(|e| e.to_string())?;
    table::forget_tree_removal(db, path)
        .await
        .map_err(|e| e.to_string())
}

/// Finishes the removals a previous daemon left: at start, before any job runs.
pub async fn clean_all(db: &SqlitePool) -> Result<(), sqlx::Error> {
    for path in table::tree_removals(db).await? {
        if let Err(e) = remove_recorded(db, &path).await {
            tracing::warn!(path = %path.display(), error = %e, "tree removal not finished; tried again at the next start");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon killed after the rename: the next start removes the tree its row names,
    /// then the row; a row whose rename never happened names nothing, and goes too.
    #[tokio::test]
    async fn removals_left_by_a_crash_are_finished_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::db::open(&tmp.path().join("hoist.db")).await.unwrap();
        let aside = tmp.path().join("root/.hoist-removing-x");
        std::fs::create_dir_all(aside.join("etc/deep")).unwrap();
        std::fs::write(aside.join("etc/deep/file"), "x").unwrap();
        let never = tmp.path().join("root/.hoist-removing-never");
        let mine = tmp.path().join("root/.hoist-removing-mine");
        std::fs::create_dir_all(&mine).unwrap();
        table::add_tree_removal(&db, &aside).await.unwrap();
        table::add_tree_removal(&db, &never).await.unwrap();
        clean_all(&db).await.unwrap();
        assert!(
            aside.symlink_metadata().is_err(),
            "the recorded tree is gone"
        );
        assert!(
            mine.is_dir(),
            "an unrecorded folder of the same kind of name stays"
        );
        assert!(table::tree_removals(&db).await.unwrap().is_empty());
    }

    #[test]
    fn a_tree_overlaps_what_is_inside_it_and_what_holds_it() {
        let p = Path::new;
        assert!(overlaps(p("/r/a"), p("/r/a")));
        assert!(overlaps(p("/r/a"), p("/r/a/b")));
        assert!(overlaps(p("/r/a/b"), p("/r/a")));
        assert!(!overlaps(p("/r/a"), p("/r/ab")));
        assert!(!overlaps(p("/r/a"), p("/r/b")));
    }
}
