//! Applying an entry's metadata (owner, mode, xattrs, times) to a node already created.
//!
//! The order is umoci's: owner first (chown clears setuid/setgid and file
//! capabilities), then mode, then xattrs (everything not in the header is removed, but
//! host-specific names are left alone), then times. A node is always reached through a
//! descriptor or its parent's descriptor, never through a path that could be a symlink:
//! symlinks themselves get no mode. Not for: hardlinks, which share their target's
//! metadata and get none of their own.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, Gid, Mode, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::fsops::{proc_child, proc_fd};

/// Xattrs that describe the host, not the image: never set from a layer, never cleared.
const HOST_XATTRS: [&[u8]; 2] = [b"security.selinux", b"system.nfs4_acl"];

/// The metadata a tar header gives an entry.
#[derive(Clone, Debug)]
pub(super) struct Meta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub times: Timestamps,
    /// `SCHILY.xattr.NAME` records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How a created node is reached for metadata calls.
#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    /// A regular file or directory open for reading or writing: f* calls.
    Open(BorrowedFd<'a>),
    /// A FIFO or device held by an `O_PATH` descriptor (opening it for real could block or
    /// poke a driver): calls through its `/proc/self/fd/N` magic link.
    Special(BorrowedFd<'a>),
    /// A symlink, by its name in its open parent: l* calls, no mode.
    Symlink {
        parent: BorrowedFd<'a>,
        name: &'a [u8],
    },
}

/// Applies metadata, remembering whether the filesystem refused xattrs (warned once).
#[derive(Debug)]
pub(super) struct MetaWriter {
    same_owner: bool,
    xattrs_unsupported_warned: bool,
}

impl MetaWriter {
    pub(super) fn new(same_owner: bool) -> MetaWriter {
        MetaWriter {
            same_owner,
            xattrs_unsupported_warned: false,
        }
    }

    pub(super) fn apply(&mut self, node: Node<'_>, meta: &Meta) -> io::Result<()> {
        if self.same_owner {
            chown(node, meta.uid, meta.gid)?;
        }
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        match node {
            Node::Open(fd) => rustix::fs::fchmod(fd, mode)?,
            Node::Special(fd) => rustix::fs::chmod(proc_fd(fd), mode)?,
            Node::Symlink { .. } => {}
        }
        self.apply_xattrs(node, &meta.xattrs)?;
        match node {
            Node::Open(fd) => rustix::fs::futimens(fd, &meta.times)?,
            Node::Special(fd) => {
                rustix::fs::utimensat(rustix::fs::CWD, proc_fd(fd), &meta.times, AtFlags::empty())?
            }
            Node::Symlink { parent, name } => {
                rustix::fs::utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)?
            }
        }
        Ok(())
    }

    fn apply_xattrs(&mut self, node: Node<'_>, wanted: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        // A fresh symlink has no xattrs to clear (nothing inherits onto one).
        if !matches!(node, Node::Symlink { .. }) {
            match list_xattrs(node) {
                Ok(names) => {
                    for name in names {
                        let keep = HOST_XATTRS.contains(&name.as_slice())
                            || wanted.iter().any(|(n, _)| *n == name);
                        if !keep {
                            self.tolerate(remove_xattr(node, &name))?;
                        }
                    }
                }
                Err(e) => self.tolerate(Err(e))?,
            }
        }
        for (name, value) in wanted {
            if HOST_XATTRS.contains(&name.as_slice()) {
                tracing::debug!(xattr = %String::from_utf8_lossy(name), "host-specific xattr skipped");
                continue;
            }
            self.tolerate(set_xattr(node, name, value))?;
        }
        Ok(())
    }

    /// Xattr errors that umoci also lets pass: a filesystem without xattrs (warned once),
    /// and, when not root, names only root may set (`trusted.*`, `security.capability`).
    fn tolerate(&mut self, result: Result<(), Errno>) -> io::Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP) => {
                if !self.xattrs_unsupported_warned {
                    tracing::warn!(
                        "the destination filesystem does not support xattrs; they are skipped"
                    );
                    self.xattrs_unsupported_warned = true;
                }
                Ok(())
            }
            Err(Errno::PERM) if !self.same_owner => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn chown(node: Node<'_>, uid: u64, gid: u64) -> io::Result<()> {
    let too_big = |what, id| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} {id} is out of range"),
        )
    };
    let uid = Uid::from_raw(u32::try_from(uid).map_err(|_| too_big("uid", uid))?);
    let gid = Gid::from_raw(u32::try_from(gid).map_err(|_| too_big("gid", gid))?);
    let (uid, gid) = (Some(uid), Some(gid));
    match node {
        Node::Open(fd) => rustix::fs::fchown(fd, uid, gid)?,
        Node::Special(fd) => rustix::fs::chownat(fd, "", uid, gid, AtFlags::EMPTY_PATH)?,
        Node::Symlink { parent, name } => {
            rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?
        }
    }
    Ok(())
}

fn list_xattrs(node: Node<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let size = match node {
        Node::Open(fd) => rustix::fs::flistxattr_query(fd)?,
        Node::Special(fd) => rustix::fs::listxattr_query(proc_fd(fd))?,
        Node::Symlink { parent, name } => rustix::fs::llistxattr_query(proc_child(parent, name))?,
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; size];
    let len = match node {
        Node::Open(fd) => rustix::fs::flistxattr(fd, &mut buf[..])?,
        Node::Special(fd) => rustix::fs::listxattr(proc_fd(fd), &mut buf[..])?,
        Node::Symlink { parent, name } => {
            rustix::fs::llistxattr(proc_child(parent, name), &mut buf[..])?
        }
    };
    buf.truncate(len);
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn remove_xattr(node: Node<'_>, name: &[u8]) -> Result<(), Errno> {
    match node {
        Node::Open(fd) => rustix::fs::fremovexattr(fd, name),
        Node::Special(fd) => rustix::fs::removexattr(proc_fd(fd), name),
        Node::Symlink { parent, name: n } => rustix::fs::lremovexattr(proc_child(parent, n), name),
    }
}

fn set_xattr(node: Node<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    let flags = XattrFlags::empty();
    match node {
        Node::Open(fd) => rustix::fs::fsetxattr(fd, name, value, flags),
        Node::Special(fd) => rustix::fs::setxattr(proc_fd(fd), name, value, flags),
        Node::Symlink { parent, name: n } => {
            rustix::fs::lsetxattr(proc_child(parent, n), name, value, flags)
        }
    }
}
