//! Whiteouts: removing, from what lower layers left, the names a layer marks as deleted.
//!
//! A layer may put its whiteouts before or after its own entries in the same directory,
//! so removal spares whatever this layer itself created: [`UpperPaths`] records every
//! path the layer wrote and all their ancestors (as resolved inside the root), and a
//! whiteout removes a name only when it is not in that set, descending into the names
//! that are (umoci and containerd do the same). Not for: deciding what is a whiteout
//! (`names`), or resolving the directory that holds it (`fsops`).

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::fsops::{is_dir, list_dir, lstat_at, open_child_dir, remove_all_at};
use super::names::child;

/// The paths (relative to the root, symlinks expanded) that the current layer created or
/// is an ancestor of. Grows with the number of entries, not with the layer's bytes.
#[derive(Debug, Default)]
pub(super) struct UpperPaths {
    paths: HashSet<Vec<u8>>,
}

impl UpperPaths {
    /// Records `rel` and every ancestor of it (the root itself is never recorded: a
    /// whiteout cannot remove it).
    pub(super) fn insert(&mut self, rel: &[u8]) {
        let mut end = rel.len();
        loop {
            if end == 0 || !self.paths.insert(rel[..end].to_vec()) {
                // Already there: its ancestors were recorded with it.
                return;
            }
            match rel[..end].iter().rposition(|&b| b == b'/') {
                Some(slash) => end = slash,
                None => return,
            }
        }
    }

    pub(super) fn contains(&self, rel: &[u8]) -> bool {
        self.paths.contains(rel)
    }
}

/// Removes `name` (found in `dir`, which is `dir_rel` below the root) unless this layer
/// wrote it; if it did, removes instead what lower layers left inside it.
pub(super) fn remove_lower(
    upper: &UpperPaths,
    dir: BorrowedFd<'_>,
    dir_rel: &[u8],
    name: &[u8],
) -> io::Result<()> {
    let rel = child(dir_rel, name);
    if !upper.contains(&rel) {
        return remove_all_at(dir, name);
    }
    match lstat_at(dir, name)? {
        Some(st) if is_dir(&st) => {
            let sub = open_child_dir(dir, name)?;
            remove_lower_children(upper, sub.as_fd(), &rel)
        }
        _ => Ok(()),
    }
}

/// The opaque marker's work: everything lower layers left in `dir` goes, what this layer
/// wrote there stays.
pub(super) fn remove_lower_children(
    upper: &UpperPaths,
    dir: BorrowedFd<'_>,
    dir_rel: &[u8],
) -> io::Result<()> {
    for name in list_dir(dir)? {
        remove_lower(upper, dir, dir_rel, &name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_paths_record_ancestors() {
        let mut upper = UpperPaths::default();
        upper.insert(b"a/b/c");
        for p in [&b"a"[..], b"a/b", b"a/b/c"] {
            assert!(upper.contains(p), "{p:?}");
        }
        assert!(!upper.contains(b""));
        assert!(!upper.contains(b"a/b/d"));
        upper.insert(b"a/x");
        assert!(upper.contains(b"a/x"));
    }
}
