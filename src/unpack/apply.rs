//! Applying one layer: reading the tar stream that `inflate` decompresses on its own
//! thread, and turning each entry into confined filesystem operations, with umoci's results.
//!
//! Runs on a blocking-pool thread that drives the async tar reader with `block_on`, so
//! the many small syscalls never stall a runtime worker. Memory is one read buffer, the
//! inflate stage's chunks in flight (at most `inflate::DEPTH`), one entry's headers (at
//! most [`HEADER_BYTES_MAX`] of the archive, see `bounded`) and the set of paths the layer
//! wrote (for whiteouts: 16 bytes each, at most [`UnpackOptions::names_max`] of them),
//! whatever the layer's size.
//!
//! Like umoci, every entry keeps its parent directory's times: they are read before the
//! entry is applied and put back after, so a directory ends with the times of its own
//! header. A parent that did not exist before the entry (created implicitly, mode 0755)
//! keeps the times of its creation, and so does whatever held it, as with umoci. A run of
//! entries in one directory shares its opening, resolution and times (`ParentDir`): read
//! before the first, put back after the last, which ends where umoci's per-entry round
//! trips end, with five syscalls fewer per entry.

use crate::error::FromIo;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use futures_util::StreamExt;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_tar::{Archive, Entry};
use tokio_util::sync::CancellationToken;

use super::bounded::{Bounded, HEADER_BYTES_MAX, HeaderBudget};
use super::fsops::{
    Ensured, Root, creation_mode, has_no_xattrs, is_dir, lstat_at, open_child_dir, own_ids,
    remove_all_at, times_from, times_of,
};
use super::header::{EntryHead, Kind, unreadable};
use super::inflate::Inflated;
use super::meta::{Fresh, MetaWriter, Node};
use super::names::{EntryName, Whiteout, child};
use super::whiteout::{UpperPaths, remove_lower, remove_lower_children};
use super::writeback;
use super::{LayerStats, UnpackError, UnpackOptions};

/// Read size for file contents.
const CHUNK: usize = 64 * 1024;

/// Applies the layer `decoded` (inflating on its own thread, ahead of this one, and
/// hashing its whole uncompressed stream into the layer's diff_id, for the caller to check)
/// to the tree at `root`. Call on a blocking-pool thread.
pub(super) async fn apply_layer(
    root: &Root,
    options: UnpackOptions,
    decoded: Inflated,
    cancel: &CancellationToken,
) -> Result<LayerStats, UnpackError> {
    let budget = HeaderBudget::default();
    let mut archive = Archive::new(Bounded::new(decoded, budget.clone()));
    let mut entries = archive.entries().map_err(unreadable)?;
    let mut layer = Layer {
        root,
        options,
        upper: UpperPaths::with_max(options.names_max),
        meta: MetaWriter::new(options.same_owner),
        stats: Counts::default(),
        buf: vec![0; CHUNK],
        parent: None,
    };
    loop {
        if cancel.is_cancelled() {
            return Err(UnpackError::Cancelled);
        }
        // The budget covers exactly this entry's headers because the previous entry's
        // data was drained before: `next` then reads only padding, headers and the
        // extension data it folds into the entry.
        budget.arm();
        let next = entries.next().await;
        budget.disarm();
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|e| {
            if budget.exceeded() {
                headers_too_big()
            } else {
                unreadable(e)
            }
        })?;
        layer.apply_entry(&mut entry, cancel).await?;
        layer.drain(&mut entry, cancel).await?;
    }
    layer
        .leave_parent()
        .map_err(|e| UnpackError::from_io(PathBuf::from("(archive)"), e))?;
    // The archive ended; what follows its end blocks is part of the diff_id too.
    drop(entries);
    let Ok(bounded) = archive.into_inner() else {
        unreachable!("every entry was dropped, so the archive has no other owner")
    };
    let Some(diff_id) = bounded
        .into_inner()
        .finish(cancel)
        .await
        .map_err(unreadable)?
    else {
        return Err(UnpackError::Cancelled);
    };
    Ok(LayerStats {
        entries: layer.stats.entries,
        bytes: layer.stats.bytes,
        diff_id,
        warnings: layer.meta.warnings,
    })
}

/// What [`LayerStats`] counts while the layer is applied.
#[derive(Default)]
struct Counts {
    entries: u64,
    bytes: u64,
}

/// One entry's headers are over the budget: a GNU long name or link, PAX records or a
/// sparse map bigger than any real one, as Go's archive/tar refuses them.
fn headers_too_big() -> UnpackError {
    UnpackError::BadEntry {
        entry: "(archive)".to_string(),
        reason: format!(
            "an entry's headers (GNU long name or link, PAX records, sparse map) take over \
             {HEADER_BYTES_MAX} bytes; refusing them, as Go's archive/tar does past 1 MiB"
        ),
    }
}

/// The layer wrote more names than `max` (see [`UnpackOptions::names_max`]).
fn too_many_names(max: usize) -> UnpackError {
    UnpackError::BadEntry {
        entry: "(archive)".to_string(),
        reason: format!(
            "the layer writes over {max} names; refusing it (each name a layer writes is \
             kept while it is applied, for its whiteouts, and that memory is bounded)"
        ),
    }
}

struct Layer<'a> {
    root: &'a Root,
    options: UnpackOptions,
    upper: UpperPaths,
    meta: MetaWriter,
    stats: Counts,
    buf: Vec<u8>,
    /// The parent of the last entries, while they come one after another in it.
    parent: Option<ParentDir>,
}

/// An open parent directory shared by a run of entries in it (tar files list a
/// directory's entries together): opened, resolved and its times read once, its times put
/// back once at the run's end. The run ends at an entry elsewhere, a whiteout, the root's
/// own entry, the layer's end, or an entry that removed a name (which could change how the
/// directory's own name resolves; adding names cannot).
struct ParentDir {
    components: Vec<Vec<u8>>,
    fd: OwnedFd,
    /// Its name below the root, as the kernel resolved it.
    rel: Vec<u8>,
    /// The times to put back; none while the run's first entry created it.
    kept: Option<Timestamps>,
    /// The group a node made in it gets (its own when it is setgid, else the daemon's).
    child_gid: u32,
    /// Whether it is setgid (so a folder made in it is setgid too).
    setgid: bool,
    /// Whether it has no xattrs, so nodes made in it inherit none.
    bare: bool,
}

impl ParentDir {
    /// What a node made in this directory with `mode` (as `creation_mode` returned it)
    /// already has.
    fn fresh(&self, mode: Option<u32>) -> Fresh {
        Fresh {
            uid: own_ids().0,
            gid: self.child_gid,
            // Without xattrs no default ACL reshaped the mode.
            mode: mode.filter(|_| self.bare),
            bare: self.bare,
        }
    }
}

/// What an entry made before looking at what held its name.
enum Made {
    File(OwnedFd),
    Dir,
    Symlink,
}

/// Makes the regular file `name` in `dir` with `mode` (never through or over anything
/// already there: `EEXIST`), open for writing.
fn create_file(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
    rustix::fs::openat(
        dir,
        name,
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
}

/// An I/O error on the entry `name`.
fn io_err(name: &EntryName) -> impl Fn(std::io::Error) -> UnpackError + '_ {
    move |source| UnpackError::from_io(PathBuf::from(name.display()), source)
}

fn bad(name: &EntryName, reason: impl Into<String>) -> UnpackError {
    UnpackError::BadEntry {
        entry: name.display(),
        reason: reason.into(),
    }
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == Errno::NOENT.raw_os_error() || code == Errno::NOTDIR.raw_os_error()
    )
}

impl Layer<'_> {
    async fn apply_entry<R: AsyncRead + Unpin>(
        &mut self,
        entry: &mut Entry<R>,
        cancel: &CancellationToken,
    ) -> Result<(), UnpackError> {
        let head = EntryHead::read(entry).await?;
        if head.kind == Kind::Skip {
            return Ok(());
        }
        self.stats.entries += 1;
        let io = io_err(&head.name);
        let Some((parent, name)) = head.name.split_last() else {
            self.leave_parent().map_err(&io)?;
            return self.apply_root(&head);
        };
        if let Some(whiteout) = Whiteout::parse(name) {
            let whiteout = whiteout.map_err(|reason| bad(&head.name, reason))?;
            self.leave_parent().map_err(&io)?;
            return self.apply_whiteout(&head.name, parent, whiteout);
        }

        let mut at = match self.parent.take() {
            Some(p) if p.components == parent => p,
            other => {
                self.parent = other;
                self.leave_parent().map_err(&io)?;
                self.enter(parent).map_err(&io)?
            }
        };
        let dir = at.fd.as_fd();
        let fallback = if head.kind == Kind::Dir { 0o700 } else { 0o600 };
        let (mode, has_mode) = creation_mode(head.meta.mode, fallback);

        // A file, folder or symlink is made at once: only a name already taken costs a
        // look at what is there. That goes, unless a directory meets a directory (then
        // its contents stay and only its metadata changes).
        let mut made_now = match head.kind {
            Kind::File => match create_file(dir, name, mode) {
                Ok(fd) => Some(Made::File(fd)),
                Err(Errno::EXIST) => None,
                Err(e) => return Err(io(e.into())),
            },
            Kind::Dir => match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
                Ok(()) => Some(Made::Dir),
                Err(Errno::EXIST) => None,
                Err(e) => return Err(io(e.into())),
            },
            Kind::Symlink => {
                let target = head.link.as_deref().unwrap_or_default();
                match rustix::fs::symlinkat(target, dir, name) {
                    Ok(()) => Some(Made::Symlink),
                    Err(Errno::EXIST) => None,
                    Err(e) => return Err(io(e.into())),
                }
            }
            _ => None,
        };
        let mut removed = false;
        if made_now.is_none()
            && let Some(st) = lstat_at(dir, name).map_err(&io)?
            && !(is_dir(&st) && head.kind == Kind::Dir)
        {
            remove_all_at(dir, name).map_err(&io)?;
            removed = true;
        }

        let made = match head.kind {
            Kind::File => {
                let fd = match made_now.take() {
                    Some(Made::File(fd)) => fd,
                    _ => create_file(dir, name, mode).map_err(|e| io(e.into()))?,
                };
                let fresh = at.fresh(has_mode);
                self.write_file(&head, fd, entry, fresh, cancel).await?;
                true
            }
            Kind::Dir => {
                // Made now, or made again after what held the name went; else it was
                // there and keeps what the layer does not set.
                let made = made_now.is_some()
                    || removed
                        && match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
                            Ok(()) => true,
                            Err(Errno::EXIST) => false,
                            Err(e) => return Err(io(e.into())),
                        };
                // A folder made in a setgid folder is setgid too: its mode is set.
                let fresh = made.then(|| at.fresh(has_mode.filter(|_| !at.setgid)));
                let fd = open_child_dir(dir, name).map_err(&io)?;
                self.meta
                    .apply(
                        Node::Open(fd.as_fd()),
                        &head.meta,
                        &head.name.display(),
                        fresh,
                    )
                    .map_err(&io)?;
                true
            }
            Kind::Symlink => {
                if made_now.is_none() {
                    let target = head.link.as_deref().unwrap_or_default();
                    rustix::fs::symlinkat(target, dir, name).map_err(|e| io(e.into()))?;
                }
                let node = Node::Symlink { parent: dir, name };
                self.meta
                    .apply(node, &head.meta, &head.name.display(), Some(at.fresh(None)))
                    .map_err(&io)?;
                true
            }
            Kind::Hardlink => {
                self.link(&head, dir, name)?;
                true
            }
            Kind::Fifo | Kind::Char | Kind::Block => self.make_node(&head, dir, name)?,
            Kind::Skip => false,
        };
        if made && self.upper.insert(&child(&at.rel, name)).is_err() {
            return Err(too_many_names(self.options.names_max));
        }
        if removed {
            // A name went: how later names resolve may have changed, so the next entry
            // opens its parent afresh (and this one's times are put back now).
            if let Some(times) = &at.kept {
                rustix::fs::futimens(&at.fd, times).map_err(|e| io(e.into()))?;
            }
            return Ok(());
        }
        if at.kept.is_none() {
            // A parent this entry created keeps the times the entry left it with, which
            // the next entries in it then keep (as umoci, reading them before each).
            at.kept = Some(times_of(at.fd.as_fd()).map_err(&io)?);
        }
        self.parent = Some(at);
        Ok(())
    }

    /// Opens the parent directory `components` for a run of entries in it, with its times
    /// (none when it was created just now).
    fn enter(&self, components: &[Vec<u8>]) -> std::io::Result<ParentDir> {
        let Ensured { fd, created, name } = self.root.ensure_dir(components)?;
        let st = rustix::fs::fstat(&fd)?;
        let kept = (!created).then(|| times_from(&st));
        let setgid = st.st_mode & 0o2000 != 0;
        let child_gid = if setgid { st.st_gid } else { own_ids().1 };
        let bare = has_no_xattrs(fd.as_fd());
        let rel = match name {
            Some(name) => name,
            None => self.root.rel_path(fd.as_fd())?,
        };
        Ok(ParentDir {
            components: components.to_vec(),
            fd,
            rel,
            kept,
            child_gid,
            setgid,
            bare,
        })
    }

    /// Ends a run of entries in one directory: puts back the times it had before them.
    fn leave_parent(&mut self) -> std::io::Result<()> {
        match self.parent.take() {
            Some(ParentDir {
                fd, kept: Some(t), ..
            }) => Ok(rustix::fs::futimens(&fd, &t)?),
            _ => Ok(()),
        }
    }

    /// Reads what `apply_entry` left of the entry's data (a directory's or a link's, a
    /// skipped device's), so that the next header read starts at the entry's end.
    async fn drain<R: AsyncRead + Unpin>(
        &mut self,
        entry: &mut Entry<R>,
        cancel: &CancellationToken,
    ) -> Result<(), UnpackError> {
        loop {
            if cancel.is_cancelled() {
                return Err(UnpackError::Cancelled);
            }
            if entry.read(&mut self.buf).await.map_err(unreadable)? == 0 {
                return Ok(());
            }
        }
    }

    /// `.`, `/` and the like: the root's own metadata. Only a directory may stand there.
    fn apply_root(&mut self, head: &EntryHead) -> Result<(), UnpackError> {
        if head.kind != Kind::Dir {
            return Err(bad(
                &head.name,
                "refusing to change the type of the root directory",
            ));
        }
        let node = Node::Open(self.root.fd());
        self.meta
            .apply(node, &head.meta, &head.name.display(), None)
            .map_err(io_err(&head.name))
    }

    fn apply_whiteout(
        &mut self,
        name: &EntryName,
        parent: &[Vec<u8>],
        whiteout: Whiteout<'_>,
    ) -> Result<(), UnpackError> {
        let io = io_err(name);
        let dir = match self.root.open_dir(parent) {
            Ok(dir) => dir,
            // Nothing below a missing directory to remove.
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        let kept_times = times_of(dir.as_fd()).map_err(&io)?;
        let dir_rel = self.root.rel_path(dir.as_fd()).map_err(&io)?;
        match whiteout {
            Whiteout::Remove(target) => {
                remove_lower(&self.upper, dir.as_fd(), &dir_rel, target).map_err(&io)?
            }
            Whiteout::Opaque => {
                remove_lower_children(&self.upper, dir.as_fd(), &dir_rel).map_err(&io)?
            }
            Whiteout::Ignored => {}
        }
        rustix::fs::futimens(&dir, &kept_times).map_err(|e| io(e.into()))
    }

    /// Writes the entry's data into `fd`, the file just made for it, then its metadata.
    async fn write_file<R: AsyncRead + Unpin>(
        &mut self,
        head: &EntryHead,
        fd: OwnedFd,
        entry: &mut Entry<R>,
        fresh: Fresh,
        cancel: &CancellationToken,
    ) -> Result<(), UnpackError> {
        let io = io_err(&head.name);
        let mut file = std::fs::File::from(fd);
        let mut written: u64 = 0;
        loop {
            if cancel.is_cancelled() {
                return Err(UnpackError::Cancelled);
            }
            let n = entry.read(&mut self.buf).await.map_err(unreadable)?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n]).map_err(&io)?;
            written += n as u64;
        }
        if written != head.size {
            return Err(bad(
                &head.name,
                format!("truncated: expected {} bytes, got {written}", head.size),
            ));
        }
        self.stats.bytes += written;
        self.meta
            .apply(
                Node::Open(file.as_fd()),
                &head.meta,
                &head.name.display(),
                Some(fresh),
            )
            .map_err(&io)?;
        if written >= writeback::EARLY {
            writeback::start(file);
        }
        Ok(())
    }

    /// A hardlink to a name already in the tree (resolved inside the root; its final
    /// component is not followed, so a link to a symlink links the symlink).
    fn link(
        &mut self,
        head: &EntryHead,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), UnpackError> {
        let raw = head.link.as_deref().unwrap_or_default();
        let target = EntryName::clean(raw);
        let missing = || {
            bad(
                &head.name,
                format!("hardlink target {:?} does not exist", target.display()),
            )
        };
        let Some((target_parent, target_name)) = target.split_last() else {
            return Err(bad(&head.name, "hardlink to the root directory"));
        };
        let target_dir = match self.root.open_dir(target_parent) {
            Ok(fd) => fd,
            Err(e) if is_missing(&e) => return Err(missing()),
            Err(e) => return Err(io_err(&head.name)(e)),
        };
        match rustix::fs::linkat(&target_dir, target_name, dir, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(missing()),
            Err(Errno::PERM) => Err(bad(&head.name, "hardlink target is a directory")),
            Err(e) => Err(io_err(&head.name)(e.into())),
        }
    }

    /// A FIFO, or a device node when the options allow devices; without, an empty file in
    /// its place, as umoci's rootless mode makes (and a warning). Returns whether a node
    /// was made.
    fn make_node(
        &mut self,
        head: &EntryHead,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<bool, UnpackError> {
        let io = io_err(&head.name);
        let (file_type, dev) = match head.kind {
            Kind::Fifo => (FileType::Fifo, 0),
            _ if !self.options.devices => {
                let (major, minor) = head.device;
                let kind = if head.kind == Kind::Char {
                    "character"
                } else {
                    "block"
                };
                self.meta.warnings.push(format!(
                    "device node {:?} ({kind} {major}:{minor}) created as an empty file (not root)",
                    head.name.display()
                ));
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
                let fd = rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io(e.into()))?;
                self.meta
                    .apply(
                        Node::Open(fd.as_fd()),
                        &head.meta,
                        &head.name.display(),
                        None,
                    )
                    .map_err(&io)?;
                return Ok(true);
            }
            Kind::Char => (
                FileType::CharacterDevice,
                rustix::fs::makedev(head.device.0, head.device.1),
            ),
            _ => (
                FileType::BlockDevice,
                rustix::fs::makedev(head.device.0, head.device.1),
            ),
        };
        rustix::fs::mknodat(dir, name, file_type, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| io(e.into()))?;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| io(e.into()))?;
        self.meta
            .apply(
                Node::Special(fd.as_fd()),
                &head.meta,
                &head.name.display(),
                None,
            )
            .map_err(&io)?;
        Ok(true)
    }
}
