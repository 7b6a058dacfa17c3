//! A staging folder beside the destination, swapped into place only when complete.
//!
//! A tree is built in `<dest parent>/.hoist-staging-<tag>` (same filesystem, so the final
//! rename is atomic) and moved to `dest` by `renameat2`: `RENAME_NOREPLACE` when `dest`
//! must not exist, `RENAME_EXCHANGE` to replace an existing tree in one step. A staging
//! folder that is dropped uncommitted is removed; [`Staging::path_for`] names the folder
//! before it exists, so that a caller can record it and clear it with [`remove_scratch`]
//! after a crash. Nothing here guesses which folders are leftovers. Not for: building the
//! tree (`Tree`).

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags};
use rustix::io::Errno;

use super::UnpackError;
use std::os::fd::AsFd;

use super::fsops::{Root, fd_path, lstat_at, remove_tree};
use crate::error::FromIo;
use crate::guard::PathGuard;

const PREFIX: &str = ".hoist-staging-";

/// A folder beside `dest` (same filesystem, so the final rename is atomic) that is removed
/// when dropped uncommitted (by the one guard's drop rule, `crate::guard`): a failed or
/// cancelled job leaves `dest` as it was.
pub struct Staging {
    tree: PathGuard,
    dest: PathBuf,
}

fn invalid(path: &Path, what: &str) -> UnpackError {
    UnpackError::io(path)(io::Error::new(
        io::ErrorKind::InvalidInput,
        what.to_string(),
    ))
}

/// Runs blocking filesystem work on the blocking pool.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, UnpackError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(UnpackError::io(path))
}

impl Staging {
    /// The folder [`Staging::create`] makes for `dest` and `tag`:
    /// `<dest parent>/.hoist-staging-<tag>`. `tag` must be a plain name.
    pub fn path_for(dest: &Path, tag: &str) -> Result<PathBuf, UnpackError> {
        if tag.is_empty() || tag.contains('/') || tag == "." || tag == ".." {
            return Err(invalid(dest, "staging tag must be a plain file name"));
        }
        let (Some(parent), Some(_)) = (dest.parent(), dest.file_name()) else {
            return Err(invalid(
                dest,
                "destination must name a folder (not / or ..)",
            ));
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        Ok(parent.join(format!("{PREFIX}{tag}")))
    }

    /// Creates [`Staging::path_for`]`(dest, tag)` (and the parent folders of dest). A
    /// leftover folder of the same tag is removed first.
    pub async fn create(dest: &Path, tag: &str) -> Result<Staging, UnpackError> {
        let path = Staging::path_for(dest, tag)?;
        let parent = path.parent().unwrap_or(Path::new("."));
        let (p, staged) = (parent.to_path_buf(), path.clone());
        blocking(&path, move || {
            std::fs::create_dir_all(&p)?;
            remove_tree(&staged)?;
            std::fs::DirBuilder::new().mode(0o755).create(&staged)
        })
        .await?;
        Ok(Staging {
            tree: PathGuard::tree_with(path, remove_tree),
            dest: dest.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.tree.path()
    }

    /// Moves the staged tree to `dest`. An existing `dest` is a `DestExists` error unless
    /// `force`, then the old tree is swapped out atomically (renameat2 RENAME_EXCHANGE) and
    /// removed afterwards.
    pub async fn commit(self, force: bool) -> Result<PathBuf, UnpackError> {
        let (from, to) = (self.path().to_path_buf(), self.dest.clone());
        let swapped = blocking(&self.dest, move || {
            match rustix::fs::renameat_with(CWD, &from, CWD, &to, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(Some(false)),
                Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => {}
                // A filesystem without RENAME_NOREPLACE: check, then plain rename.
                Err(Errno::INVAL) if to.symlink_metadata().is_err() => {
                    std::fs::rename(&from, &to)?;
                    return Ok(Some(false));
                }
                Err(Errno::INVAL) => {}
                Err(e) => return Err(e.into()),
            }
            if !force {
                return Ok(None);
            }
            rustix::fs::renameat_with(CWD, &from, CWD, &to, RenameFlags::EXCHANGE)?;
            Ok(Some(true))
        })
        .await;
        match swapped {
            // Removed here, awaited, rather than by Drop's thread: the caller may report
            // its job ended as soon as this returns.
            Err(e) => {
                self.discard().await;
                Err(e)
            }
            Ok(None) => {
                let dest = self.dest.clone();
                self.discard().await;
                Err(UnpackError::DestExists(dest))
            }
            Ok(Some(replaced)) => {
                if replaced {
                    // The old tree now sits at the staging path.
                    self.tree.remove().await;
                } else {
                    self.tree.keep();
                }
                Ok(self.dest)
            }
        }
    }
}

impl Staging {
    /// Removes the staged tree now (a failed or cancelled job), so that nothing of it is
    /// left once the job is reported ended.
    pub async fn discard(self) {
        self.tree.remove().await;
    }
}

/// Removes the tree at `path` on the blocking pool, never following a symlink there (a
/// symlink is removed, not its target); nothing at `path`, or no parent folder, is fine.
/// For a staging folder (or a sibling of one) that its creator recorded and a crash left
/// behind, and for a job's scratch after it ended.
pub async fn remove_scratch(path: &Path) -> Result<(), UnpackError> {
    let p = path.to_path_buf();
    blocking(path, move || match remove_tree(&p) {
        // Raced with another removal (a dropped `Staging`), or the parent went: gone is gone.
        Err(_)
            if p.symlink_metadata()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound) =>
        {
            Ok(())
        }
        other => other,
    })
    .await
}

/// What a tree is renamed to before it is removed: `.hoist-removing-<tag>` beside it.
const ASIDE_PREFIX: &str = ".hoist-removing-";

/// A tree inside a root about to be moved aside (renamed beside itself) so that it can be
/// removed: [`Aside::prepare`] finds it, the caller records [`Aside::path`], then
/// [`Aside::rename`] moves it. The name is resolved inside the root by the kernel
/// (`RESOLVE_IN_ROOT`) and its last component is never followed: a symlink is moved, not
/// what it points at, and no symlink on the way can lead out of the root.
pub struct Aside {
    parent: std::os::fd::OwnedFd,
    name: Vec<u8>,
    aside: Vec<u8>,
    path: PathBuf,
}

impl Aside {
    /// Finds `rel` (plain components, no `..`) inside `root`; `None` when nothing is there.
    pub async fn prepare(root: &Path, rel: &Path, tag: &str) -> Result<Option<Aside>, UnpackError> {
        use std::os::unix::ffi::OsStrExt;
        let (root, rel, tag) = (root.to_path_buf(), rel.to_path_buf(), tag.to_string());
        let at = root.join(&rel);
        blocking(&at, move || {
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for c in rel.components() {
                match c {
                    std::path::Component::Normal(n) => parts.push(n.as_bytes().to_vec()),
                    std::path::Component::CurDir => {}
                    _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a plain relative path")),
                }
            }
            let Some((name, parent)) = parts.split_last() else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "the root itself"));
            };
            let root = Root::open(&root)?;
            let parent = match root.open_dir(parent) {
                Ok(fd) => fd,
                Err(e) if matches!(e.raw_os_error(), Some(c) if c == Errno::NOENT.raw_os_error() || c == Errno::NOTDIR.raw_os_error()) => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if lstat_at(parent.as_fd(), name)?.is_none() {
                return Ok(None);
            }
            let aside = format!("{ASIDE_PREFIX}{tag}").into_bytes();
            let mut path = fd_path(parent.as_fd())?;
            path.push(b'/');
            path.extend_from_slice(&aside);
            let path = PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(path));
            Ok(Some(Aside { parent, name: name.clone(), aside, path }))
        })
        .await
    }

    /// Where the tree will be once renamed (absolute, as the kernel resolved its folder).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the tree aside; false when it was gone meanwhile.
    pub async fn rename(self) -> Result<bool, UnpackError> {
        let path = self.path.clone();
        blocking(&path, move || {
            let dir = self.parent.as_fd();
            match rustix::fs::renameat_with(
                dir,
                &self.name[..],
                dir,
                &self.aside[..],
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => Ok(true),
                Err(Errno::NOENT) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::guard::tests::gone;

    async fn staged(dest: &Path, tag: &str, file: &str) -> Staging {
        let staging = Staging::create(dest, tag).await.unwrap();
        std::fs::write(staging.path().join(file), file).unwrap();
        staging
    }

    #[tokio::test]
    async fn staging_folder_sits_beside_dest_and_commit_renames_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("machines/web");
        let staging = staged(&dest, "job1", "new").await;
        assert_eq!(
            staging.path(),
            tmp.path().join("machines/.hoist-staging-job1")
        );
        let path = staging.path().to_path_buf();
        assert_eq!(staging.commit(false).await.unwrap(), dest);
        assert!(dest.join("new").exists());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn commit_over_existing_dest_without_force_is_dest_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("web");
        std::fs::create_dir_all(dest.join("old")).unwrap();
        let staging = staged(&dest, "job2", "new").await;
        let path = staging.path().to_path_buf();
        let err = staging.commit(false).await.unwrap_err();
        assert!(matches!(err, UnpackError::DestExists(_)), "{err}");
        assert!(dest.join("old").exists());
        assert!(
            path.symlink_metadata().is_err(),
            "staging folder left behind once commit returned"
        );
    }

    #[tokio::test]
    async fn forced_commit_swaps_trees_and_removes_the_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("web");
        std::fs::create_dir_all(dest.join("old/deep")).unwrap();
        let staging = staged(&dest, "job3", "new").await;
        let path = staging.path().to_path_buf();
        staging.commit(true).await.unwrap();
        assert!(dest.join("new").exists());
        assert!(!dest.join("old").exists());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn dropped_staging_folder_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = staged(&tmp.path().join("web"), "job4", "x").await;
        let path = staging.path().to_path_buf();
        drop(staging);
        assert!(gone(&path).await);
    }

    #[tokio::test]
    async fn scratch_is_removed_without_following_symlinks_and_missing_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = Staging::path_for(&tmp.path().join("a/web"), "dead").unwrap();
        std::fs::create_dir_all(dead.join("x/y")).unwrap();
        std::fs::create_dir_all(tmp.path().join("kept")).unwrap();
        std::fs::write(tmp.path().join("kept/file"), "mine").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("kept"), dead.join("x/link")).unwrap();
        let link = tmp.path().join("a/.hoist-staging-link");
        std::os::unix::fs::symlink(tmp.path().join("kept"), &link).unwrap();
        for path in [&dead, &link] {
            remove_scratch(path).await.unwrap();
            assert!(path.symlink_metadata().is_err(), "{path:?} left");
        }
        remove_scratch(&dead).await.unwrap();
        remove_scratch(&tmp.path().join("no/such/parent/.hoist-staging-x"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join("kept/file")).unwrap(),
            b"mine"
        );
        assert!(tmp.path().join("a").is_dir(), "the parent folder stays");
    }

    #[tokio::test]
    async fn tag_with_a_slash_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Staging::create(&tmp.path().join("web"), "../x")
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), "io_error");
    }
}
