//! Comparing two trees entry by entry (lstat, never following symlinks), the way a pulled
//! tree is checked against `umoci unpack`'s.
//!
//! Compared for every entry, the root included: type, full mode (setuid, setgid, sticky),
//! uid and gid, xattrs (all names, values byte for byte); regular files: size and sha256
//! of the content; symlinks: target; devices: rdev; hardlinks: the set of paths sharing
//! an inode must be the same set in both trees. Modification times are compared for files,
//! symlinks, fifos and — by default — directories too: umoci restores a directory's mtime
//! from its own tar entry after later entries change its contents, so it is deterministic
//! whenever every directory has an entry (umoci writes one for each; hand-made layers in
//! these tests do too). [`Options::dir_mtimes`] turns it off for trees with implied
//! parents, whose mtime is the extraction time. Access and change times are never compared
//! (they record when the tree was written, not what it is).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Options {
    pub dir_mtimes: bool,
    pub xattrs: bool,
    /// Top-level names left out on both sides (e.g. `.git` in a git layout).
    pub ignore: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dir_mtimes: true,
            xattrs: true,
            ignore: Vec::new(),
        }
    }
}

/// What an entry is, with what makes two of a kind equal (size and content, target, rdev).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, sha256: String },
    Symlink(PathBuf),
    Fifo,
    Socket,
    CharDev(u64),
    BlockDev(u64),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File { .. } => "regular file",
            Kind::Symlink(_) => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::CharDev(_) => "char device",
            Kind::BlockDev(_) => "block device",
        }
    }
}

/// One entry as `lstat` (and `llistxattr`) sees it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    /// The permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// (device, inode).
    pub inode: (u64, u64),
    pub nlink: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// A walked tree: relative path ("." for the root) → entry, and the names of each
/// non-directory inode (hardlinks share one).
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
    pub by_inode: HashMap<(u64, u64), BTreeSet<String>>,
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return out,
    };
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "security.selinux" {
            continue; // assigned by the host's policy, not by the image
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]) {
            value.truncate(len);
            out.insert(name, value);
        }
    }
    out
}

/// Walks `root` (lstat, never following a symlink): the one tree scanner of the harness.
pub fn walk(root: &Path, opts: &Options) -> Tree {
    let mut tree = Tree {
        entries: BTreeMap::new(),
        by_inode: HashMap::new(),
    };
    let mut stack = vec![(root.to_path_buf(), ".".to_owned())];
    while let Some((path, rel)) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {path:?}: {e}"));
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            let mut children: Vec<_> = fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("readdir {path:?}: {e}"))
                .map(|e| e.expect("dir entry").file_name())
                .collect();
            children.sort();
            for name in children {
                let name_s = name.to_string_lossy().into_owned();
                if rel == "." && opts.ignore.contains(&name_s) {
                    continue;
                }
                let child_rel = if rel == "." {
                    name_s
                } else {
                    format!("{rel}/{name_s}")
                };
                stack.push((path.join(&name), child_rel));
            }
            Kind::Dir
        } else if ft.is_file() {
            Kind::File {
                size: meta.len(),
                sha256: sha256_file(&path),
            }
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&path).expect("readlink"))
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() {
            Kind::CharDev(meta.rdev())
        } else {
            Kind::BlockDev(meta.rdev())
        };
        let inode = (meta.dev(), meta.ino());
        if !matches!(kind, Kind::Dir) {
            tree.by_inode.entry(inode).or_default().insert(rel.clone());
        }
        tree.entries.insert(
            rel,
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                inode,
                nlink: meta.nlink(),
                xattrs: if opts.xattrs {
                    xattrs(&path)
                } else {
                    BTreeMap::new()
                },
            },
        );
    }
    tree
}

fn fmt_time((s, ns): (i64, i64)) -> String {
    format!("{s}.{ns:09}")
}

/// Every difference between `expected` and `actual`, one line each; empty when equal.
pub fn diff_trees(expected: &Path, actual: &Path, opts: &Options) -> Vec<String> {
    let e = walk(expected, opts);
    let a = walk(actual, opts);
    let mut out = Vec::new();
    for (path, ee) in &e.entries {
        let Some(ae) = a.entries.get(path) else {
            out.push(format!("{path}: missing ({} expected)", ee.kind.name()));
            continue;
        };
        if std::mem::discriminant(&ee.kind) != std::mem::discriminant(&ae.kind) {
            out.push(format!(
                "{path}: is a {}, expected a {}",
                ae.kind.name(),
                ee.kind.name()
            ));
            continue;
        }
        match (&ee.kind, &ae.kind) {
            (
                Kind::File {
                    size: es,
                    sha256: eh,
                },
                Kind::File {
                    size: as_,
                    sha256: ah,
                },
            ) => {
                if es != as_ {
                    out.push(format!("{path}: size {as_}, expected {es}"));
                } else if eh != ah {
                    out.push(format!("{path}: content differs (same size {es})"));
                }
            }
            (Kind::Symlink(et), Kind::Symlink(at)) if et != at => {
                out.push(format!("{path}: symlink to {at:?}, expected {et:?}"));
            }
            (Kind::CharDev(er), Kind::CharDev(ar)) | (Kind::BlockDev(er), Kind::BlockDev(ar))
                if er != ar =>
            {
                out.push(format!("{path}: device {ar:#x}, expected {er:#x}"));
            }
            _ => {}
        }
        if ee.mode != ae.mode {
            out.push(format!(
                "{path}: mode {:04o}, expected {:04o}",
                ae.mode, ee.mode
            ));
        }
        if (ee.uid, ee.gid) != (ae.uid, ae.gid) {
            out.push(format!(
                "{path}: owner {}:{}, expected {}:{}",
                ae.uid, ae.gid, ee.uid, ee.gid
            ));
        }
        let is_dir = matches!(ee.kind, Kind::Dir);
        if (!is_dir || opts.dir_mtimes) && ee.mtime != ae.mtime {
            out.push(format!(
                "{path}: mtime {}, expected {}",
                fmt_time(ae.mtime),
                fmt_time(ee.mtime)
            ));
        }
        if ee.xattrs != ae.xattrs {
            let show = |x: &BTreeMap<String, Vec<u8>>| {
                x.iter()
                    .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "{path}: xattrs [{}], expected [{}]",
                show(&ae.xattrs),
                show(&ee.xattrs)
            ));
        }
        if !is_dir {
            let eg = &e.by_inode[&ee.inode];
            let ag = &a.by_inode[&ae.inode];
            if eg != ag {
                out.push(format!("{path}: hardlinked with {ag:?}, expected {eg:?}"));
            }
        }
    }
    for (path, ae) in &a.entries {
        if !e.entries.contains_key(path) {
            out.push(format!("{path}: unexpected {}", ae.kind.name()));
        }
    }
    out
}

/// Panics with a readable list when the trees differ.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    assert_same_tree_with(expected, actual, &Options::default());
}

pub fn assert_same_tree_with(expected: &Path, actual: &Path, opts: &Options) {
    let diffs = diff_trees(expected, actual, opts);
    if !diffs.is_empty() {
        let shown: Vec<&str> = diffs.iter().take(60).map(String::as_str).collect();
        panic!(
            "tree {actual:?} differs from the reference {expected:?} in {} ways:\n  {}{}",
            diffs.len(),
            shown.join("\n  "),
            if diffs.len() > 60 { "\n  …" } else { "" }
        );
    }
}

/// A fingerprint of everything under `root` except the top-level names in `ignore`
/// (paths, kinds, modes, owners, content, inode numbers and link counts, mtimes): two equal
/// snapshots mean
/// nothing there was created, removed, written or re-linked. For "nothing outside dest
/// changed". The root's own mtime and link count are left out: creating `dest` inside
/// it changes them.
pub fn snapshot(root: &Path, ignore: &[&str]) -> BTreeMap<String, String> {
    if !root.exists() {
        return BTreeMap::new();
    }
    let opts = Options {
        ignore: ignore.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    };
    walk(root, &opts)
        .entries
        .into_iter()
        .map(|(p, e)| {
            // creating dest inside the root moves its mtime and link count
            let (mtime, nlink) = if p == "." {
                (String::new(), String::new())
            } else {
                (fmt_time(e.mtime), e.nlink.to_string())
            };
            let line = format!(
                "{:?} {:04o} {}:{} ino={} nlink={nlink} mtime={mtime} xattrs={:?}",
                e.kind, e.mode, e.uid, e.gid, e.inode.1, e.xattrs
            );
            (p, line)
        })
        .collect()
}

/// The lines that differ between two snapshots.
pub fn snapshot_diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => out.push(format!("{p}: removed (was {b})")),
            Some(a) if a != b => out.push(format!("{p}: changed from {b} to {a}")),
            _ => {}
        }
    }
    for (p, a) in after {
        if !before.contains_key(p) {
            out.push(format!("{p}: created ({a})"));
        }
    }
    out
}
