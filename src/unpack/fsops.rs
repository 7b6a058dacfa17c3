//! Filesystem operations confined to a tree's root: the only place that turns names into
//! file descriptors.
//!
//! Directories are reached with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from
//! the root's descriptor, so `..` and symlinks (absolute or relative, planted by any
//! earlier entry or layer) resolve as if the root were `/`. The final component of an
//! entry is then acted on relative to its parent's descriptor with calls that never
//! follow it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`).
//! Blocking: call from the blocking pool. Not for: deciding what a layer means (`apply`).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, Timestamps};
use rustix::io::Errno;

use super::names::join;

/// Symlinks followed while creating missing parents before giving up (as the kernel does).
const MAX_SYMLINKS: usize = 40;

/// The root of a tree: a directory descriptor and the path the kernel reports for it.
#[derive(Debug)]
pub(super) struct Root {
    fd: OwnedFd,
    /// Absolute and canonical, to turn descriptors back into names below the root.
    path: Vec<u8>,
}

impl std::os::fd::AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Root {
    pub(super) fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty())?;
        let path = fd_path(fd.as_fd())?;
        Ok(Root { fd, path })
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the existing directory `rel` (cleaned components), resolved inside the root.
    pub(super) fn open_dir(&self, rel: &[Vec<u8>]) -> io::Result<OwnedFd> {
        let rel = join(rel);
        let rel: &[u8] = if rel.is_empty() { b"." } else { &rel };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let mut attempts = 0;
        loop {
            match rustix::fs::openat2(self.fd(), rel, dir_flags(), Mode::empty(), resolve) {
                // EAGAIN: a rename elsewhere raced the lookup; the kernel asks for a retry.
                Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// Opens directory `rel`, creating missing components (mode 0755, owned by the daemon's
    /// user) like umoci's `MkdirAll`, through dangling symlinks too.
    pub(super) fn ensure_dir(&self, rel: &[Vec<u8>]) -> io::Result<Ensured> {
        // Most parents are reached without a symlink: then their name is `rel` itself, and
        // the kernel need not be asked for it (a readlink per run of entries).
        let plain = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
        let joined = join(rel);
        let path: &[u8] = if joined.is_empty() { b"." } else { &joined };
        let found = |fd, name| Ensured {
            fd,
            created: false,
            name,
        };
        match rustix::fs::openat2(self.fd(), path, dir_flags(), Mode::empty(), plain) {
            Ok(fd) => return Ok(found(fd, Some(joined))),
            Err(Errno::NOENT) => {}
            // A symlink on the way (or a rename racing): resolved inside the root instead.
            Err(Errno::LOOP | Errno::AGAIN) => match self.open_dir(rel) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => return other.map(|fd| found(fd, None)),
            },
            Err(e) => return Err(e.into()),
        }
        // Slow path: walk component by component, creating what is missing and following
        // symlinks by hand (always re-resolved from the root, so still confined).
        let mut todo: Vec<Vec<u8>> = rel.iter().rev().cloned().collect();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut fd = self.open_dir(&[])?;
        let mut created = false;
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    done.pop();
                    fd = self.open_dir(&done)?;
                    continue;
                }
                _ => {}
            }
            let single = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
            match rustix::fs::openat2(&fd, c.as_slice(), dir_flags(), Mode::empty(), single) {
                Ok(next) => {
                    fd = next;
                    done.push(c);
                }
                Err(Errno::NOENT) => {
                    fd = make_dir(fd.as_fd(), &c)?;
                    created = true;
                    done.push(c);
                }
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    let target = match rustix::fs::readlinkat(&fd, c.as_slice(), Vec::new()) {
                        Ok(t) => t.into_bytes(),
                        Err(Errno::INVAL) => return Err(Errno::NOTDIR.into()),
                        Err(e) => return Err(e.into()),
                    };
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP.into());
                    }
                    if target.first() == Some(&b'/') {
                        done.clear();
                    }
                    fd = self.open_dir(&done)?;
                    todo.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Ensured {
            fd,
            created,
            name: None,
        })
    }

    /// The name below the root of an open directory (empty for the root itself), as the
    /// kernel resolved it: symlinks on the way are expanded.
    pub(super) fn rel_path(&self, dir: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
        let path = fd_path(dir)?;
        if path == self.path {
            return Ok(Vec::new());
        }
        let prefix_len = if self.path == b"/" {
            0
        } else {
            self.path.len()
        };
        match path.strip_prefix(&self.path[..prefix_len]) {
            Some(rest) if rest.first() == Some(&b'/') => Ok(rest[1..].to_vec()),
            _ => Err(io::Error::other(format!(
                "directory {} is not below the tree root {}",
                String::from_utf8_lossy(&path),
                String::from_utf8_lossy(&self.path)
            ))),
        }
    }
}

/// A directory [`Root::ensure_dir`] opened.
pub(super) struct Ensured {
    pub(super) fd: OwnedFd,
    /// Whether anything on the way was created: then no directory on it had its times kept.
    pub(super) created: bool,
    /// Its name below the root, when it is known without [`Root::rel_path`]: no symlink
    /// was on the way.
    pub(super) name: Option<Vec<u8>>,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// The path the kernel reports for a descriptor (`/proc/self/fd/N`).
pub(super) fn fd_path(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let link = proc_fd(fd);
    Ok(std::fs::read_link(&link)?
        .into_os_string()
        .into_encoded_bytes())
}

/// `/proc/self/fd/N`: the magic link to a descriptor's file, for calls that have no
/// descriptor form (chmod of an `O_PATH` descriptor, xattrs of a symlink).
pub(super) fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `/proc/self/fd/N/name`: a name in an open directory, for l* calls.
pub(super) fn proc_child(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    proc_fd(dir).join(OsStr::from_bytes(name))
}

/// Creates and opens directory `name` in `dir` with mode 0755 whatever the umask, as
/// umoci (under umask 022) leaves the parents it makes.
fn make_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))?;
    let fd = open_child_dir(dir, name)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
    Ok(fd)
}

/// Opens the directory `name` in `dir`, refusing a symlink.
pub(super) fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = dir_flags() | OFlags::NOFOLLOW;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// lstat of `name` in `dir`; None when nothing is there.
pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// The access and modification times of an open file.
pub(super) fn times_of(fd: BorrowedFd<'_>) -> io::Result<Timestamps> {
    Ok(times_from(&rustix::fs::fstat(fd)?))
}

/// The access and modification times in `st`.
pub(super) fn times_from(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Whether the directory `dir` has no xattrs at all, so a node made in it inherits none
/// (no default ACL; and no security label, which a labelling LSM would give `dir` too).
/// A filesystem without xattrs has none; any other error says "maybe".
pub(super) fn has_no_xattrs(dir: BorrowedFd<'_>) -> bool {
    match rustix::fs::flistxattr_query(dir) {
        Ok(size) => size == 0,
        Err(e) => e == Errno::OPNOTSUPP,
    }
}

/// The mode to make a node with, and the mode it then has (`None`: not known, so it is
/// set after). `wanted` itself when the process's umask keeps every bit of it and it has
/// no setuid, setgid or sticky bit (a `chown` would clear the first two); else `fallback`,
/// the private mode the node keeps until its own is set.
pub(super) fn creation_mode(wanted: u32, fallback: u32) -> (u32, Option<u32>) {
    let wanted = wanted & 0o7777;
    match umask() {
        Some(mask) if wanted & 0o7000 == 0 && wanted & mask == 0 => (wanted, Some(wanted)),
        Some(mask) => (fallback, Some(fallback & !mask)),
        None => (fallback, None),
    }
}

/// The daemon's effective user and group ids (fixed for its life; `geteuid` is a
/// syscall, once per entry otherwise).
pub(super) fn own_ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    })
}

/// The process's umask, read once from `/proc/self/status` (which, unlike `umask(2)`,
/// does not change it while other threads make files). `None` where the kernel does not
/// say.
fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Removes `name` from `dir`, recursively when it is a directory, never following a
/// symlink. Directories we may not write (as a non-root user) are made writable first.
pub(super) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if !is_dir(&st) {
        return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let sub = open_child_dir(dir, name)?;
    empty_dir(sub)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes everything inside the open directory `dir`.
pub(super) fn empty_dir(dir: OwnedFd) -> io::Result<()> {
    let names = list_dir(dir.as_fd())?;
    for name in &names {
        match remove_all_at(dir.as_fd(), name) {
            Err(e) if e.raw_os_error() == Some(Errno::ACCESS.raw_os_error()) => {
                rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700))?;
                remove_all_at(dir.as_fd(), name)?;
            }
            other => other?,
        }
    }
    Ok(())
}

/// The names in a directory, without `.` and `..`.
pub(super) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes the tree at `path` (not following a final symlink); nothing there is fine.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no final name"))?;
    let parent = rustix::fs::open(parent, dir_flags(), Mode::empty())?;
    remove_all_at(parent.as_fd(), name.as_bytes())
}
