//! What one tar entry asks for, read once from its header and PAX records.
//!
//! The tar crate already folds GNU long names, PAX `path`/`linkpath`/`size`/`uid`/`gid`
//! into the entry; this adds what it leaves raw: sub-second and access times (`mtime`,
//! `atime`, GNU `atime`), `SCHILY.xattr.*` records, and the entry kind as umoci reads it
//! (an old-style regular entry whose name ends in `/` is a directory, as Go's reader has
//! it). It also refuses what Go's reader refuses in PAX records (a NUL in `path`,
//! `linkpath`, `uname`, `gname` or in any key: C-string consumers would see another name
//! than ours) and global headers over Go's 1 MiB. Not for: touching the filesystem.

use std::io;

use rustix::fs::{Timespec, Timestamps};
use tokio::io::AsyncRead;
use tokio_tar::{Entry, EntryType};

use crate::text::quote;

use super::UnpackError;
use super::bounded::EXTENSION_MAX;
use super::meta::Meta;
use super::names::EntryName;

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Char,
    Block,
    /// A PAX global header: no file of its own.
    Skip,
}

/// One entry's header, owned, so the entry can then be read for its contents.
#[derive(Debug)]
pub(super) struct EntryHead {
    pub name: EntryName,
    pub kind: Kind,
    /// Symlink target (verbatim) or hardlink target (a name in the tree).
    pub link: Option<Vec<u8>>,
    pub meta: Meta,
    pub device: (u32, u32),
    pub size: u64,
}

impl EntryHead {
    pub(super) async fn read<R: AsyncRead + Unpin>(
        entry: &mut Entry<R>,
    ) -> Result<EntryHead, UnpackError> {
        let raw_name = entry.path_bytes().map_err(unreadable)?.into_owned();
        let name = EntryName::clean(&raw_name);
        let bad = |reason: String| UnpackError::BadEntry {
            entry: quote(&raw_name),
            reason,
        };
        let header = entry.header();
        let typeflag = header.as_old().linkflag[0];
        let kind = match header.entry_type() {
            EntryType::Regular if typeflag == 0 && raw_name.ends_with(b"/") => Kind::Dir,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Fifo => Kind::Fifo,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::XGlobalHeader => Kind::Skip,
            other => {
                return Err(bad(format!(
                    "unsupported entry type {:?}",
                    other.as_byte() as char
                )));
            }
        };
        let field = |what: &str, r: io::Result<u64>| {
            r.map_err(|e| bad(format!("unreadable {what} field: {e}")))
        };
        let mode = field("mode", header.mode().map(u64::from))? as u32 & 0o7777;
        let uid = field("uid", header.uid())?;
        let gid = field("gid", header.gid())?;
        let mtime_secs = field("mtime", header.mtime())?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(mtime_secs).map_err(|_| bad("mtime out of range".into()))?,
            tv_nsec: 0,
        };
        let mut atime = header
            .as_gnu()
            .filter(|g| g.atime[0] != 0)
            .and_then(|g| g.atime().ok())
            .and_then(|secs| i64::try_from(secs).ok())
            .map(|tv_sec| Timespec { tv_sec, tv_nsec: 0 });
        let device = match kind {
            Kind::Char | Kind::Block => (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            ),
            _ => (0, 0),
        };
        let link = match kind {
            Kind::Symlink | Kind::Hardlink => Some(
                entry
                    .link_name_bytes()
                    .map_err(unreadable)?
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        let size = entry.effective_size();
        // A global header's data is skipped, not read, so the header budget does not see
        // it; Go refuses it past the same 1 MiB as any extension.
        if kind == Kind::Skip && size > EXTENSION_MAX {
            return Err(bad(format!(
                "PAX global header of {size} bytes (the limit is {EXTENSION_MAX})"
            )));
        }

        let mut xattrs = Vec::new();
        let records = match kind {
            Kind::Skip => None,
            _ => entry.pax_extensions().await.map_err(unreadable)?,
        };
        if let Some(records) = records {
            {
                for record in records {
                    let record = record.map_err(unreadable)?;
                    let (key, value) = (record.key_bytes(), record.value_bytes());
                    check_pax_record(key, value).map_err(bad)?;
                    if let Some(xattr) = key.strip_prefix(XATTR_PREFIX) {
                        xattrs.push((xattr.to_vec(), value.to_vec()));
                    } else if key == b"mtime" {
                        mtime = parse_pax_time(value)
                            .ok_or_else(|| bad(format!("bad PAX mtime {:?}", quote(value))))?;
                    } else if key == b"atime" {
                        atime = Some(
                            parse_pax_time(value)
                                .ok_or_else(|| bad(format!("bad PAX atime {:?}", quote(value))))?,
                        );
                    }
                }
            }
        }
        let times = Timestamps {
            last_access: atime.unwrap_or(mtime),
            last_modification: mtime,
        };
        Ok(EntryHead {
            name,
            kind,
            link,
            meta: Meta {
                mode,
                uid,
                gid,
                times,
                xattrs,
            },
            device,
            size,
        })
    }
}

/// Go's `validPAXRecord`: no empty key, no NUL in a key, and none in the values that
/// name things (`path`, `linkpath`, `uname`, `gname`), which C-string readers would cut
/// where this reader does not. (`=` cannot be in a key: the record parser splits there.)
fn check_pax_record(key: &[u8], value: &[u8]) -> Result<(), String> {
    if key.is_empty() {
        return Err("PAX record with an empty key".into());
    }
    if key.contains(&0) {
        return Err(format!(
            "PAX record key {:?} contains a NUL byte",
            quote(key)
        ));
    }
    let names_something = matches!(key, b"path" | b"linkpath" | b"uname" | b"gname");
    if names_something && value.contains(&0) {
        return Err(format!(
            "PAX {} {:?} contains a NUL byte",
            quote(key),
            quote(value)
        ));
    }
    Ok(())
}

/// A tar stream that cannot be read (corrupt, truncated, badly compressed).
pub(super) fn unreadable(e: io::Error) -> UnpackError {
    UnpackError::BadEntry {
        entry: "(archive)".to_string(),
        reason: format!("unreadable layer: {e}"),
    }
}

/// A PAX time: decimal seconds since the epoch with an optional fraction, maybe negative.
pub(super) fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !negative {
        Timespec {
            tv_sec: secs,
            tv_nsec: nanos as _,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: (1_000_000_000 - nanos) as _,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(tv_sec: i64, tv_nsec: i64) -> Option<Timespec> {
        Some(Timespec {
            tv_sec,
            tv_nsec: tv_nsec as _,
        })
    }

    #[test]
    fn pax_records_are_checked_as_go_checks_them() {
        assert!(check_pax_record(b"path", b"a/b").is_ok());
        assert!(check_pax_record(b"comment", b"with\0nul").is_ok());
        assert!(check_pax_record(b"SCHILY.xattr.user.x", b"bin\0ary").is_ok());
        for key in [&b"path"[..], b"linkpath", b"uname", b"gname"] {
            assert!(check_pax_record(key, b"a\0b").is_err(), "{key:?}");
        }
        assert!(check_pax_record(b"", b"x").is_err());
        assert!(check_pax_record(b"SCHILY.xattr.a\0b", b"x").is_err());
    }

    #[test]
    fn pax_time_keeps_nanoseconds() {
        assert_eq!(parse_pax_time(b"1700000000"), ts(1_700_000_000, 0));
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            ts(1_700_000_000, 500_000_000)
        );
        assert_eq!(parse_pax_time(b"1.123456789123"), ts(1, 123_456_789));
    }

    #[test]
    fn pax_time_before_the_epoch_borrows_a_second() {
        assert_eq!(parse_pax_time(b"-1.25"), ts(-2, 750_000_000));
        assert_eq!(parse_pax_time(b"-3"), ts(-3, 0));
    }

    #[test]
    fn pax_time_refuses_garbage() {
        for bad in [&b""[..], b".5", b"1.2.3", b"12a", b"--1", b"1e9"] {
            assert_eq!(parse_pax_time(bad), None, "{bad:?}");
        }
    }
}
