//! The one guard for a path hoist made and must not leave behind: a staging tree beside
//! a dest, a job-private folder in `tmp/`, a half-written layer or blob file.
//!
//! The normal path removes it explicitly and awaits that ([`PathGuard::remove`], on the
//! blocking pool), or keeps it ([`PathGuard::keep`]). `Drop` is the backstop for early
//! returns and dropped futures, with one rule: it never blocks a runtime thread on a
//! tree. A tree's removal is handed to the blocking pool (`spawn_blocking`) inside a
//! runtime, done inline outside one; a file is one unlink, done inline, so it is gone when
//! the drop returns. Removal never follows a symlink at or below the path, and nothing
//! there is fine. Not for: folders that must go even when the daemon dies first (those
//! are recorded, `jobs/scratch.rs`).

use std::io;
use std::path::{Path, PathBuf};

/// How a guarded path is removed.
pub(crate) type Remover = fn(&Path) -> io::Result<()>;

/// A path removed when dropped, unless kept.
#[derive(Debug)]
pub(crate) struct PathGuard {
    path: PathBuf,
    kind: Kind,
    armed: bool,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    File,
    Tree(Remover),
}

impl PathGuard {
    /// A file (or symlink) at `path`.
    pub(crate) fn file(path: impl Into<PathBuf>) -> PathGuard {
        PathGuard::armed(path.into(), Kind::File)
    }

    /// A folder tree at `path`, removed with `std::fs::remove_dir_all` (which does not
    /// follow symlinks).
    pub(crate) fn tree(path: impl Into<PathBuf>) -> PathGuard {
        PathGuard::tree_with(path, |p| std::fs::remove_dir_all(p))
    }

    /// A folder tree at `path`, removed by `remover` (a tree whose modes a layer set).
    pub(crate) fn tree_with(path: impl Into<PathBuf>, remover: Remover) -> PathGuard {
        PathGuard::armed(path.into(), Kind::Tree(remover))
    }

    fn armed(path: PathBuf, kind: Kind) -> PathGuard {
        PathGuard {
            path,
            kind,
            armed: true,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the path: nothing is removed.
    pub(crate) fn keep(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }

    /// Removes the path now, on the blocking pool, and waits for it. A failure is logged:
    /// the caller is on its way out already (a failed or cancelled job, a refused blob).
    pub(crate) async fn remove(mut self) {
        self.armed = false;
        let (path, kind) = (std::mem::take(&mut self.path), self.kind);
        let removed = tokio::task::spawn_blocking(move || remove_logged(&path, kind)).await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removal task failed");
        }
    }
}

fn remove(path: &Path, kind: Kind) -> io::Result<()> {
    let result = match kind {
        Kind::File => std::fs::remove_file(path),
        Kind::Tree(remover) => remover(path),
    };
    match result {
        Err(_)
            if path
                .symlink_metadata()
                .is_err_and(|m| m.kind() == io::ErrorKind::NotFound) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn remove_logged(path: &Path, kind: Kind) {
    if let Err(e) = remove(path, kind) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove");
    }
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (path, kind) = (std::mem::take(&mut self.path), self.kind);
        match (kind, tokio::runtime::Handle::try_current()) {
            (Kind::Tree(_), Ok(runtime)) => {
                runtime.spawn_blocking(move || remove_logged(&path, kind));
            }
            _ => remove_logged(&path, kind),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Waits (up to 2 s) for the background removal a dropped tree guard starts; also
    /// for the guards other modules hold (staging).
    pub(crate) async fn gone(path: &Path) -> bool {
        for _ in 0..200 {
            if path.symlink_metadata().is_err() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn dropped_guards_remove_their_path_and_kept_ones_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, tree, kept) = (
            tmp.path().join("f"),
            tmp.path().join("t"),
            tmp.path().join("k"),
        );
        std::fs::write(&file, "x").unwrap();
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::create_dir_all(&kept).unwrap();
        drop(PathGuard::file(&file));
        assert!(file.symlink_metadata().is_err(), "a file goes inline");
        drop(PathGuard::tree(&tree));
        assert!(gone(&tree).await);
        assert_eq!(PathGuard::tree(&kept).keep(), kept);
        assert!(kept.is_dir());
        PathGuard::tree(&kept).remove().await;
        assert!(!kept.exists());
        PathGuard::tree(tmp.path().join("never-made"))
            .remove()
            .await;
    }

    #[tokio::test]
    async fn removal_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let (tree, outside) = (tmp.path().join("t"), tmp.path().join("outside"));
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("mine"), "mine").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        PathGuard::tree(&tree).remove().await;
        assert!(!tree.exists());
        assert!(outside.join("mine").exists());
    }
}
