//! Whiteouts: removing, from what lower layers left, the names a layer marks as deleted.
//!
//! A layer may put its whiteouts before or after its own entries in the same directory,
//! so removal spares whatever this layer itself created: [`UpperPaths`] records every
//! path the layer wrote and all their ancestors (as resolved inside the root), and a
//! whiteout removes a name only when it is not in that set, descending into the names
//! that are (umoci and containerd do the same). Not for: deciding what is a whiteout
//! (`names`), or resolving the directory that holds it (`fsops`).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::fsops::{is_dir, list_dir, lstat_at, open_child_dir, remove_all_at};
use super::names::child;

/// The paths (relative to the root, symlinks expanded) that the current layer created or
/// is an ancestor of. Grows with the number of entries, not with the layer's bytes, and
/// only to the layer's bound on names ([`NAMES_MAX`] unless set otherwise). Each is kept
/// as a 128-bit hash under keys drawn for this layer: 16 bytes whatever the name's length,
/// and a layer cannot choose names that collide without knowing the keys. About 36 MiB
/// at the bound (the old table is held too for the moment it grows).
#[derive(Debug)]
pub(super) struct UpperPaths {
    paths: HashSet<u128>,
    keys: (RandomState, RandomState),
    max: usize,
}

/// Paths one layer may write (with their ancestors), unless set otherwise. Real layers
/// stay far below: the largest we know of hold a few hundred thousand entries.
pub(super) const NAMES_MAX: usize = 1_500_000;

/// A layer wrote more names than its bound.
#[derive(Debug)]
pub(super) struct TooManyNames;

impl UpperPaths {
    pub(super) fn with_max(max: usize) -> UpperPaths {
        UpperPaths {
            paths: HashSet::new(),
            keys: (RandomState::new(), RandomState::new()),
            max,
        }
    }

    fn key(&self, rel: &[u8]) -> u128 {
        let (a, b) = (self.keys.0.hash_one(rel), self.keys.1.hash_one(rel));
        (u128::from(a) << 64) | u128::from(b)
    }

    /// Records `rel` and every ancestor of it (the root itself is never recorded: a
    /// whiteout cannot remove it); `TooManyNames` once the layer wrote more than `max`.
    pub(super) fn insert(&mut self, rel: &[u8]) -> Result<(), TooManyNames> {
        let mut end = rel.len();
        loop {
            if end == 0 {
                return Ok(());
            }
            if self.paths.len() >= self.max && !self.contains(&rel[..end]) {
                return Err(TooManyNames);
            }
            if !self.paths.insert(self.key(&rel[..end])) {
                // Already there: its ancestors were recorded with it.
                return Ok(());
            }
            match rel[..end].iter().rposition(|&b| b == b'/') {
                Some(slash) => end = slash,
                None => return Ok(()),
            }
        }
    }

    pub(super) fn contains(&self, rel: &[u8]) -> bool {
        self.paths.contains(&self.key(rel))
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
        let mut upper = UpperPaths::with_max(NAMES_MAX);
        upper.insert(b"a/b/c").unwrap();
        for p in [&b"a"[..], b"a/b", b"a/b/c"] {
            assert!(upper.contains(p), "{p:?}");
        }
        assert!(!upper.contains(b""));
        assert!(!upper.contains(b"a/b/d"));
        assert!(!upper.contains(b"b"));
        upper.insert(b"a/x").unwrap();
        assert!(upper.contains(b"a/x"));
    }

    #[test]
    fn upper_paths_stop_at_their_max() {
        let mut upper = UpperPaths::with_max(3);
        upper.insert(b"a/b/c").unwrap();
        // What is there already costs nothing.
        upper.insert(b"a/b").unwrap();
        upper.insert(b"a/b/c").unwrap();
        assert!(upper.insert(b"a/d").is_err());
        assert!(!upper.contains(b"a/d"));
        assert_eq!(upper.paths.len(), 3);
    }
}
