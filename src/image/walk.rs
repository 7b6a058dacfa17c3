//! Listing a build source folder without ever leaving it: every directory is opened from
//! its parent's descriptor with `O_NOFOLLOW`, symlinks are recorded, never followed, and
//! files are later reopened beneath the root with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`.
//!
//! The listing is what goes into the layer, in layer order: sorted by tar name bytewise,
//! with the second and later names of a hardlinked file turned into hardlinks to the
//! first. Not for: reading contents or encoding tar headers (see `tar`).

use crate::error::FromIo;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use tokio_util::sync::CancellationToken;

use super::ImageError;

/// One entry of the layer to be, as the source folder had it when listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SourceEntry {
    /// The tar name: relative to the source, no `./`, directories end with `/`.
    pub name: Vec<u8>,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; before it counts as the epoch.
    pub mtime: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular file; `id` is (device, inode), to check it is the same file when read.
    File {
        size: u64,
        id: (u64, u64),
    },
    /// A later name of a regular file that an earlier entry (`target`) already holds.
    HardLink {
        target: Vec<u8>,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    Fifo,
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
}

/// Opens the source folder, refusing a symlink or anything but a directory.
pub(super) fn open_source(source: &Path) -> Result<OwnedFd, ImageError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(source, flags, Mode::empty()).map_err(|e| {
        // The kernel says ENOTDIR or ELOOP for a symlink; lstat tells which it was.
        let is_symlink = std::fs::symlink_metadata(source).is_ok_and(|m| m.is_symlink());
        let reason = match e {
            _ if is_symlink => "is a symlink; give the folder it points to".to_string(),
            rustix::io::Errno::NOENT => "does not exist".to_string(),
            rustix::io::Errno::NOTDIR => "is not a folder".to_string(),
            other => std::io::Error::from(other).to_string(),
        };
        ImageError::InvalidSource {
            path: source.to_path_buf(),
            reason,
        }
    })
}

/// Opens the regular file `name` (a tar name) beneath `root`, refusing any symlink on
/// the way, and checks it is still the file that was listed.
pub(super) fn open_listed_file(
    root: BorrowedFd<'_>,
    source: &Path,
    name: &[u8],
    size: u64,
    id: (u64, u64),
) -> Result<std::fs::File, ImageError> {
    let path = display_path(source, name);
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat2(root, name, flags, Mode::empty(), resolve).map_err(|e| {
        ImageError::SourceChanged {
            path: path.clone(),
            reason: format!("could not be reopened ({})", std::io::Error::from(e)),
        }
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ImageError::io(&path)(e.into()))?;
    let changed = |reason: &str| ImageError::SourceChanged {
        path: path.clone(),
        reason: reason.to_string(),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || (st.st_dev, st.st_ino) != id
    {
        return Err(changed("was replaced"));
    }
    if st.st_size as u64 != size {
        return Err(changed("changed size"));
    }
    Ok(std::fs::File::from(fd))
}

/// `source/name`, for messages.
pub(super) fn display_path(source: &Path, name: &[u8]) -> PathBuf {
    source.join(OsStr::from_bytes(name))
}

/// Directories still to list: (parent, name, relative path).
type Pending = Vec<(Arc<OwnedFd>, Vec<u8>, Vec<u8>)>;

/// Lists everything below `root` (not the root itself), sorted and with hardlinks
/// resolved. Sockets are skipped (a tar cannot hold them); so is the file `skip`
/// (device, inode), the layer being written when it lies inside the source.
pub(super) fn list(
    root: OwnedFd,
    source: &Path,
    skip: Option<(u64, u64)>,
    cancel: &CancellationToken,
) -> Result<Vec<SourceEntry>, ImageError> {
    // Holding a parent's descriptor until its children are opened keeps the walk inside
    // the folder even if names move meanwhile.
    let root = Arc::new(root);
    let mut pending: Pending = Vec::new();
    let mut entries = Vec::new();
    let mut nlinks = HashMap::new();
    list_dir(
        &root,
        &[],
        source,
        skip,
        &mut entries,
        &mut nlinks,
        &mut pending,
    )?;
    while let Some((parent, name, rel)) = pending.pop() {
        if cancel.is_cancelled() {
            return Err(ImageError::Cancelled);
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = rustix::fs::openat(parent.as_fd(), name.as_slice(), flags, Mode::empty())
            .map_err(|e| ImageError::SourceChanged {
                path: display_path(source, &rel),
                reason: format!(
                    "could not be opened as a folder ({})",
                    std::io::Error::from(e)
                ),
            })?;
        drop(parent);
        let dir = Arc::new(dir);
        list_dir(
            &dir,
            &rel,
            source,
            skip,
            &mut entries,
            &mut nlinks,
            &mut pending,
        )?;
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    link_duplicates(&mut entries, &nlinks);
    Ok(entries)
}

fn list_dir(
    dir: &Arc<OwnedFd>,
    rel: &[u8],
    source: &Path,
    skip: Option<(u64, u64)>,
    entries: &mut Vec<SourceEntry>,
    nlinks: &mut HashMap<(u64, u64), u64>,
    pending: &mut Pending,
) -> Result<(), ImageError> {
    let io_err = |e: rustix::io::Errno| ImageError::io(display_path(source, rel))(e.into());
    for item in Dir::read_from(dir.as_fd()).map_err(io_err)? {
        let item = item.map_err(io_err)?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let child_rel = if rel.is_empty() {
            name.to_vec()
        } else {
            [rel, b"/", name].concat()
        };
        let st = rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ImageError::io(display_path(source, &child_rel))(e.into()))?;
        let id = (st.st_dev, st.st_ino);
        if Some(id) == skip {
            continue;
        }
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    nlinks.insert(id, st.st_nlink);
                }
                Kind::File {
                    size: st.st_size as u64,
                    id,
                }
            }
            FileType::Directory => {
                pending.push((dir.clone(), name.to_vec(), child_rel.clone()));
                Kind::Dir
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir.as_fd(), name, Vec::new())
                    .map_err(|e| ImageError::io(display_path(source, &child_rel))(e.into()))?;
                Kind::Symlink {
                    target: target.into_bytes(),
                }
            }
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDevice {
                major: rustix::fs::major(st.st_rdev),
                minor: rustix::fs::minor(st.st_rdev),
            },
            FileType::BlockDevice => Kind::BlockDevice {
                major: rustix::fs::major(st.st_rdev),
                minor: rustix::fs::minor(st.st_rdev),
            },
            FileType::Socket | FileType::Unknown => continue,
        };
        let mut tar_name = child_rel;
        if kind == Kind::Dir {
            tar_name.push(b'/');
        }
        entries.push(SourceEntry {
            name: tar_name,
            kind,
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime: u64::try_from(st.st_mtime).unwrap_or(0),
        });
    }
    Ok(())
}

/// The first name (in layer order) of a file with several names keeps its contents; the
/// others become hardlinks to it. Links to files outside the source are not followed:
/// only names seen in the listing count.
fn link_duplicates(entries: &mut [SourceEntry], nlinks: &HashMap<(u64, u64), u64>) {
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for entry in entries {
        let Kind::File { id, .. } = entry.kind else {
            continue;
        };
        if !nlinks.contains_key(&id) {
            continue;
        }
        match first.get(&id) {
            Some(target) => {
                entry.kind = Kind::HardLink {
                    target: target.clone(),
                }
            }
            None => {
                first.insert(id, entry.name.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn names(entries: &[SourceEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect()
    }

    #[test]
    fn listing_is_sorted_bytewise_with_dirs_slashed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a-c"), b"x").unwrap();
        std::fs::write(t.path().join("a/b/f"), b"x").unwrap();
        std::fs::write(t.path().join("B"), b"x").unwrap();
        let root = open_source(t.path()).unwrap();
        let entries = list(root, t.path(), None, &CancellationToken::new()).unwrap();
        assert_eq!(names(&entries), ["B", "a-c", "a/", "a/b/", "a/b/f"]);
    }

    #[test]
    fn symlinks_are_recorded_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("out")).unwrap();
        let root = open_source(t.path()).unwrap();
        let entries = list(root, t.path(), None, &CancellationToken::new()).unwrap();
        assert_eq!(names(&entries), ["out"]);
        let Kind::Symlink { target } = &entries[0].kind else {
            panic!("{:?}", entries[0])
        };
        assert_eq!(target.as_slice(), outside.path().as_os_str().as_bytes());
    }

    #[test]
    fn source_that_is_a_symlink_or_a_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", t.path().join("link")).unwrap();
        std::fs::write(t.path().join("file"), b"x").unwrap();
        for (name, hint) in [
            ("link", "symlink"),
            ("file", "not a folder"),
            ("none", "does not exist"),
        ] {
            let e = open_source(&t.path().join(name)).unwrap_err();
            assert_eq!(e.code(), "invalid_source");
            assert!(e.to_string().contains(hint), "{e}");
        }
    }

    #[test]
    fn second_name_of_a_file_becomes_a_hardlink_to_the_first() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("z"), b"data").unwrap();
        std::fs::hard_link(t.path().join("z"), t.path().join("a")).unwrap();
        let root = open_source(t.path()).unwrap();
        let entries = list(root, t.path(), None, &CancellationToken::new()).unwrap();
        assert!(matches!(entries[0].kind, Kind::File { size: 4, .. }));
        assert_eq!(
            entries[1].kind,
            Kind::HardLink {
                target: b"a".to_vec()
            }
        );
    }

    #[test]
    fn a_file_changed_after_listing_is_refused_when_reopened() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("grows"), b"1").unwrap();
        std::fs::write(t.path().join("swapped"), b"1").unwrap();
        let root = open_source(t.path()).unwrap();
        let entries = list(
            root.try_clone().unwrap(),
            t.path(),
            None,
            &CancellationToken::new(),
        )
        .unwrap();
        std::fs::write(t.path().join("grows"), b"12").unwrap();
        std::fs::remove_file(t.path().join("swapped")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("swapped")).unwrap();
        for (entry, reason) in entries
            .iter()
            .zip(["changed size", "could not be reopened"])
        {
            let Kind::File { size, id } = entry.kind else {
                panic!("{entry:?}")
            };
            let e = open_listed_file(root.as_fd(), t.path(), &entry.name, size, id).unwrap_err();
            assert_eq!(e.code(), "source_changed");
            assert!(e.to_string().contains(reason), "{e}");
        }
    }
}
