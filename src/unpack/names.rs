//! Entry names as the tree sees them: lexically cleaned components, and whiteout markers.
//!
//! A layer's names are untrusted bytes. They are cleaned here the way umoci cleans them
//! (leading `/` and `./` dropped, `.` and empty components skipped, `..` popping within
//! the root and never above it), so nothing later handles a raw name. This is only the
//! lexical half of containment: symlinks met on the way are the job of `fsops`, which
//! resolves every name with `RESOLVE_IN_ROOT`. Not for: link targets of symlinks, which
//! are stored verbatim.

/// A cleaned name below the tree's root: no empty, `.` or `..` component. Empty means
/// the root itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct EntryName {
    components: Vec<Vec<u8>>,
}

impl EntryName {
    /// Cleans a raw tar name; never fails, a name can at worst mean the root.
    pub(super) fn clean(raw: &[u8]) -> EntryName {
        let mut components: Vec<Vec<u8>> = Vec::new();
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    components.pop();
                }
                _ => components.push(part.to_vec()),
            }
        }
        EntryName { components }
    }

    pub(super) fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The parent's components and the final one; None for the root.
    pub(super) fn split_last(&self) -> Option<(&[Vec<u8>], &[u8])> {
        let (last, parent) = self.components.split_last()?;
        Some((parent, last))
    }

    /// The name as a relative path, for messages (`.` for the root), cut as
    /// [`crate::text::quote`] cuts.
    pub(super) fn display(&self) -> String {
        if self.is_root() {
            return ".".to_string();
        }
        crate::text::quote(&join(&self.components))
    }
}

/// `a/b/c` from components.
pub(super) fn join(components: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

/// `dir/name`, or `name` when `dir` is the root (empty).
pub(super) fn child(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        out.extend_from_slice(dir);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// AUFS bookkeeping names (`.wh..wh.plnk`, `.wh..wh.aufs`) that carry no meaning here.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// What an entry's final component says when it is a whiteout.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whiteout<'a> {
    /// `.wh.NAME`: remove NAME, as lower layers left it, from the same directory.
    Remove(&'a [u8]),
    /// `.wh..wh..opq`: remove everything lower layers left in the directory.
    Opaque,
    /// Other `.wh..wh.` names: AUFS metadata, ignored.
    Ignored,
}

/// Error text for a whiteout that names no sibling.
pub(super) const BAD_WHITEOUT: &str =
    "whiteout names no file (\".wh.\" followed by nothing, \".\" or \"..\")";

impl<'a> Whiteout<'a> {
    /// None when `name` is not a whiteout; `Err` for one that names nothing a directory can
    /// hold (`.wh.`, `.wh..`, `.wh...`), which umoci would turn into removing the directory
    /// itself or its parent.
    pub(super) fn parse(name: &'a [u8]) -> Option<Result<Whiteout<'a>, &'static str>> {
        let target = name.strip_prefix(WHITEOUT_PREFIX)?;
        Some(if name == OPAQUE_MARKER {
            Ok(Whiteout::Opaque)
        } else if name.starts_with(AUFS_META_PREFIX) {
            Ok(Whiteout::Ignored)
        } else if matches!(target, b"" | b"." | b"..") {
            Err(BAD_WHITEOUT)
        } else {
            Ok(Whiteout::Remove(target))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(raw: &str) -> String {
        EntryName::clean(raw.as_bytes()).display()
    }

    #[test]
    fn clean_drops_leading_slashes_and_dots() {
        assert_eq!(cleaned("/etc/passwd"), "etc/passwd");
        assert_eq!(cleaned("./etc/passwd"), "etc/passwd");
        assert_eq!(cleaned("//./etc//passwd/"), "etc/passwd");
    }

    #[test]
    fn clean_keeps_dot_dot_inside_the_root() {
        assert_eq!(cleaned("../../etc/passwd"), "etc/passwd");
        assert_eq!(cleaned("a/b/../../../c"), "c");
        assert_eq!(cleaned("a/../b"), "b");
        assert_eq!(cleaned("/.."), ".");
    }

    #[test]
    fn clean_maps_dot_and_empty_to_the_root() {
        for raw in ["", ".", "./", "/", "a/.."] {
            assert!(EntryName::clean(raw.as_bytes()).is_root(), "{raw:?}");
        }
    }

    #[test]
    fn split_last_gives_parent_and_name() {
        let name = EntryName::clean(b"a/b/c");
        let (parent, last) = name.split_last().unwrap();
        assert_eq!(join(parent), b"a/b");
        assert_eq!(last, b"c");
        assert!(EntryName::clean(b"/").split_last().is_none());
    }

    #[test]
    fn whiteout_names_are_classified() {
        assert_eq!(Whiteout::parse(b"file"), None);
        assert_eq!(Whiteout::parse(b".whx"), None);
        assert_eq!(
            Whiteout::parse(b".wh.file"),
            Some(Ok(Whiteout::Remove(b"file")))
        );
        assert_eq!(Whiteout::parse(b".wh..wh..opq"), Some(Ok(Whiteout::Opaque)));
        assert_eq!(
            Whiteout::parse(b".wh..wh.plnk"),
            Some(Ok(Whiteout::Ignored))
        );
        assert_eq!(
            Whiteout::parse(b".wh..hidden"),
            Some(Ok(Whiteout::Remove(b".hidden")))
        );
    }

    #[test]
    fn whiteout_of_nothing_or_a_parent_is_refused() {
        for name in [&b".wh."[..], b".wh..", b".wh..."] {
            assert_eq!(Whiteout::parse(name), Some(Err(BAD_WHITEOUT)), "{name:?}");
        }
    }

    #[test]
    fn child_joins_below_the_root() {
        assert_eq!(child(b"", b"a"), b"a");
        assert_eq!(child(b"a/b", b"c"), b"a/b/c");
    }
}
