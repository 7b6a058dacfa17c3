//! Applying an entry's metadata (owner, mode, xattrs, times) to a node already created.
//!
//! Not root, owners cannot be set: each entry's owner is recorded as umoci's rootless mode
//! does, in the `user.rootlesscontainers` xattr (the rootlesscontainers.io `Resource`
//! protobuf: field 1 uid, field 2 gid, varints; an id of 0, which is the daemon's own user
//! in that mapping, is written as `NOOP_ID`, and an entry owned by 0:0 gets no xattr).
//! What cannot be kept that way (that xattr on a symlink or FIFO, where Linux allows no
//! `user.` names; `trusted.`/`security.` names) is counted in [`Warnings`], never dropped
//! silently.
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

/// The xattr umoci's rootless mode records an entry's owner in.
pub(super) const ROOTLESS_XATTR: &[u8] = b"user.rootlesscontainers";
/// "No change" in a rootlesscontainers `Resource`: the id of the daemon's user.
const NOOP_ID: u32 = u32::MAX;

/// The `user.rootlesscontainers` value for an entry owned by `uid:gid`, as umoci writes it
/// (both fields, varints; 0 maps to the daemon's own user, so it is `NOOP_ID`), or `None`
/// for 0:0 (nothing to record). Ids over `u32::MAX` are kept as `NOOP_ID` too: no kernel
/// has them.
pub(super) fn rootless_owner(uid: u64, gid: u64) -> Option<Vec<u8>> {
    let id = |v: u64| match u32::try_from(v) {
        Ok(0) | Err(_) => NOOP_ID,
        Ok(v) => v,
    };
    let (uid, gid) = (id(uid), id(gid));
    if uid == NOOP_ID && gid == NOOP_ID {
        return None;
    }
    let mut out = Vec::with_capacity(12);
    for (tag, value) in [(0x08u8, uid), (0x10u8, gid)] {
        out.push(tag);
        let mut v = value;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    Some(out)
}

/// What a tree could not get as its layers say (not root: device nodes, owners that
/// cannot be recorded, privileged xattrs): a count, and the first [`Warnings::KEPT`]
/// messages, each quoting the entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Warnings {
    pub count: u64,
    pub first: Vec<String>,
}

impl Warnings {
    /// Messages kept; the rest are only counted.
    pub const KEPT: usize = 20;

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(super) fn push(&mut self, message: String) {
        self.count += 1;
        if self.first.len() < Self::KEPT {
            self.first.push(message);
        }
    }

    /// Adds another layer's warnings after these.
    pub fn extend(&mut self, other: Warnings) {
        self.count += other.count;
        let room = Self::KEPT.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
    }
}

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

impl Node<'_> {
    /// What kind of node this is, for messages.
    fn kind_name(&self) -> &'static str {
        match self {
            Node::Open(_) => "file or folder",
            Node::Special(_) => "FIFO or device",
            Node::Symlink { .. } => "symlink",
        }
    }
}

/// What a node made just now already has: the owner it was made with, its mode (`None`:
/// not known, so set), and whether it was made bare (in a directory without xattrs, so
/// it inherited none).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fresh {
    pub uid: u32,
    pub gid: u32,
    pub mode: Option<u32>,
    pub bare: bool,
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

/// Applies metadata, remembering whether the filesystem refused xattrs (warned once) and
/// what it could not apply (`warnings`).
#[derive(Debug)]
pub(super) struct MetaWriter {
    same_owner: bool,
    xattrs_unsupported_warned: bool,
    pub(super) warnings: Warnings,
}

impl MetaWriter {
    pub(super) fn new(same_owner: bool) -> MetaWriter {
        MetaWriter {
            same_owner,
            xattrs_unsupported_warned: false,
            warnings: Warnings::default(),
        }
    }

    /// Applies `meta` to `node`, the entry `entry` (quoted, for warnings). `fresh`: what a
    /// node this layer made just now already has, so that calls that would change nothing
    /// are left out (`None`: the full round, for nodes that were there before).
    pub(super) fn apply(
        &mut self,
        node: Node<'_>,
        meta: &Meta,
        entry: &str,
        fresh: Option<Fresh>,
    ) -> io::Result<()> {
        let mut owner_xattr = None;
        if self.same_owner {
            let owned =
                fresh.is_some_and(|f| u64::from(f.uid) == meta.uid && u64::from(f.gid) == meta.gid);
            if !owned {
                chown(node, meta.uid, meta.gid)?;
            }
        } else {
            owner_xattr = rootless_owner(meta.uid, meta.gid);
        }
        let bits = meta.mode & 0o7777;
        let mode = Mode::from_raw_mode(bits);
        match node {
            Node::Open(_) if fresh.and_then(|f| f.mode) == Some(bits) => {}
            Node::Open(fd) => rustix::fs::fchmod(fd, mode)?,
            Node::Special(fd) => rustix::fs::chmod(proc_fd(fd), mode)?,
            Node::Symlink { .. } => {}
        }
        // A fresh node whose parent has no xattrs inherited none (no default ACL, no
        // security label): nothing to list and clear.
        let bare = fresh.is_some_and(|f| f.bare);
        if self.same_owner {
            self.apply_xattrs(node, &meta.xattrs, entry, bare)?;
        } else {
            // the layer's own record of an owner is not the truth here: ours is
            let mut wanted: Vec<(Vec<u8>, Vec<u8>)> = meta
                .xattrs
                .iter()
                .filter(|(n, _)| n != ROOTLESS_XATTR)
                .cloned()
                .collect();
            if let Some(value) = owner_xattr {
                wanted.push((ROOTLESS_XATTR.to_vec(), value));
            }
            self.apply_xattrs(node, &wanted, entry, bare)?;
        }
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

    fn apply_xattrs(
        &mut self,
        node: Node<'_>,
        wanted: &[(Vec<u8>, Vec<u8>)],
        entry: &str,
        bare: bool,
    ) -> io::Result<()> {
        // A fresh symlink has no xattrs to clear (nothing inherits onto one).
        if !bare && !matches!(node, Node::Symlink { .. }) {
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
            match set_xattr(node, name, value) {
                // not root: umoci lets these pass too; they are listed, not dropped silently
                Err(Errno::PERM) if !self.same_owner => {
                    let message = if name == ROOTLESS_XATTR {
                        format!(
                            "owner of {entry:?} not recorded: {} cannot be set on a {} (not root)",
                            String::from_utf8_lossy(ROOTLESS_XATTR),
                            node.kind_name()
                        )
                    } else {
                        format!(
                            "xattr {:?} of {entry:?} not set (only root may set it)",
                            crate::text::quote(name)
                        )
                    };
                    self.warnings.push(message);
                }
                other => self.tolerate(other)?,
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `umoci unpack --rootless` (0.4.7) wrote for these owners
    /// (`getfattr -e hex`).
    #[test]
    fn rootless_owner_is_encoded_as_umoci_encodes_it() {
        let hex = |v: Option<Vec<u8>>| v.map(hex::encode);
        assert_eq!(hex(rootless_owner(0, 0)), None);
        assert_eq!(
            hex(rootless_owner(0, 5)).as_deref(),
            Some("08ffffffff0f1005")
        );
        assert_eq!(
            hex(rootless_owner(4, 0)).as_deref(),
            Some("080410ffffffff0f")
        );
        assert_eq!(
            hex(rootless_owner(1000, 1001)).as_deref(),
            Some("08e80710e907")
        );
    }

    #[test]
    fn warnings_keep_the_first_messages_and_count_all() {
        let mut w = Warnings::default();
        for i in 0..Warnings::KEPT + 5 {
            w.push(format!("w{i}"));
        }
        let mut more = Warnings::default();
        more.push("later".into());
        w.extend(more);
        assert_eq!(w.count, Warnings::KEPT as u64 + 6);
        assert_eq!(w.first.len(), Warnings::KEPT);
        assert_eq!(w.first[0], "w0");
    }
}
