//! The harness's face of the one tar writer (`src/unpack/tar_builder.rs`, shared with the
//! library's unit tests and included here by path): [`TarEntry`]s written as GNU tar by
//! [`tar`], with long-name entries past 100 bytes, whiteouts and opaque markers; and, for
//! hostile header streams, the raw [`Header`], [`pax_record`] and [`padding`] pieces.
//! Not for: well-formed images (see `image`, which uses umoci and skopeo).

#[path = "../../../src/unpack/tar_builder.rs"]
mod tar_builder;

use tar_builder::{Dialect, archive};
pub use tar_builder::{Entry as TarEntry, Header, gzip, padding, pax_record};

/// GNU tar as the harness has always written it: no owner names, device fields left NUL,
/// every entry at 2023-11-14 (so trees are deterministic), long names as `L`/`K` entries.
const GNU: Dialect = Dialect {
    gnu_magic: true,
    owner_name: b"",
    device_fields: false,
    mtime: 1_700_000_000,
    extension_mtime: 0,
    gnu_long_names: true,
};

/// The entries only the harness writes.
impl TarEntry {
    /// The whiteout that deletes `path` (`dir/.wh.name`).
    pub fn whiteout(path: &str) -> TarEntry {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let marker = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        TarEntry::file(&marker, b"")
    }

    /// The opaque marker that hides what lower layers put in `dir`.
    pub fn opaque(dir: &str) -> TarEntry {
        TarEntry::file(format!("{dir}/.wh..wh..opq"), b"")
    }
}

/// An uncompressed tarball of `entries`, in order, names written verbatim.
pub fn tar(entries: &[TarEntry]) -> Vec<u8> {
    archive(&GNU, entries)
}
