//! Encoding a listed source folder as a tar stream: PAX-extended ustar headers, written
//! so that the same folder always gives the same bytes.
//!
//! Only what a container runtime needs is recorded: name, type, mode (with setuid,
//! setgid, sticky), owner ids (0:0 unless kept), mtime (whole seconds, clamped to
//! `SOURCE_DATE_EPOCH`), link targets and device numbers. No user or group names, no
//! atime/ctime, no xattrs. PAX records appear only when a value does not fit its ustar
//! field (names or link targets over 100 bytes, sizes of 8 GiB and more, large ids).
//! Not for: listing the folder (see `walk`) or compressing (see `layer`).

use crate::error::FromIo;
use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::path::Path;

use tokio_tar::{EntryType, Header};
use tokio_util::sync::CancellationToken;

use super::ImageError;
use super::read_ahead::ReadAhead;
use super::walk::{Kind, SourceEntry, display_path, open_listed_file};

const BLOCK: usize = 512;
/// ustar's name and linkname fields.
const NAME_LEN: usize = 100;
/// 11 octal digits: the largest size and mtime a ustar header holds.
const MAX_OCTAL_12: u64 = 0o77_777_777_777;
/// 7 octal digits: the largest uid and gid a ustar header holds.
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// A fixed name for PAX extended headers (GNU tar puts a process id there).
const PAX_NAME: &[u8] = b"././@PaxHeader";
const COPY_CHUNK: usize = 64 * 1024;

/// How entries' metadata is recorded.
#[derive(Clone, Copy, Debug)]
pub(super) struct HeaderOptions {
    pub keep_owners: bool,
    pub source_date_epoch: Option<u64>,
}

/// The folder being tarred: the descriptor it was listed from, its path (for messages)
/// and its entries, as `walk::list` gave them.
pub(super) struct Listed<'a> {
    pub root: BorrowedFd<'a>,
    pub source: &'a Path,
    pub entries: &'a [SourceEntry],
}

/// Writes the whole tar stream of `listed` into `out`, end marker included, telling
/// `ahead` where it is. Blocking; checks `cancel` between entries and between chunks of a
/// file.
pub(super) fn write_tar(
    listed: &Listed<'_>,
    options: HeaderOptions,
    out: &mut impl Write,
    out_path: &Path,
    ahead: &ReadAhead,
    cancel: &CancellationToken,
) -> Result<(), ImageError> {
    let Listed {
        root,
        source,
        entries,
    } = *listed;
    let write_err = |e| ImageError::io(out_path)(e);
    let mut buf = vec![0u8; COPY_CHUNK];
    for (index, entry) in entries.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(ImageError::Cancelled);
        }
        ahead.reached(index);
        out.write_all(&header_blocks(entry, options))
            .map_err(write_err)?;
        let Kind::File { size, id } = entry.kind else {
            continue;
        };
        let path = display_path(source, &entry.name);
        let mut file = open_listed_file(root, source, &entry.name, size, id)?;
        let mut remaining = size;
        while remaining > 0 {
            if cancel.is_cancelled() {
                return Err(ImageError::Cancelled);
            }
            let want = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = file.read(&mut buf[..want]).map_err(ImageError::io(&path))?;
            if n == 0 {
                return Err(ImageError::SourceChanged {
                    path,
                    reason: "shrank".to_string(),
                });
            }
            out.write_all(&buf[..n]).map_err(write_err)?;
            remaining -= n as u64;
        }
        let padding = padding(size);
        out.write_all(&[0u8; BLOCK][..padding]).map_err(write_err)?;
    }
    out.write_all(&[0u8; 2 * BLOCK]).map_err(write_err)
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// The header block of `entry`, preceded by a PAX extended header when needed.
pub(super) fn header_blocks(entry: &SourceEntry, options: HeaderOptions) -> Vec<u8> {
    let (uid, gid) = if options.keep_owners {
        (entry.uid, entry.gid)
    } else {
        (0, 0)
    };
    let mtime = match options.source_date_epoch {
        Some(epoch) => entry.mtime.min(epoch),
        None => entry.mtime,
    };
    let (entry_type, size, link): (EntryType, u64, &[u8]) = match &entry.kind {
        Kind::File { size, .. } => (EntryType::Regular, *size, b""),
        Kind::HardLink { target } => (EntryType::Link, 0, target),
        Kind::Dir => (EntryType::Directory, 0, b""),
        Kind::Symlink { target } => (EntryType::Symlink, 0, target),
        Kind::Fifo => (EntryType::Fifo, 0, b""),
        Kind::CharDevice { .. } => (EntryType::Char, 0, b""),
        Kind::BlockDevice { .. } => (EntryType::Block, 0, b""),
    };

    let mut pax = Vec::new();
    if entry.name.len() > NAME_LEN {
        pax.extend(pax_record("path", &entry.name));
    }
    if link.len() > NAME_LEN {
        pax.extend(pax_record("linkpath", link));
    }
    if size > MAX_OCTAL_12 {
        pax.extend(pax_record("size", size.to_string().as_bytes()));
    }
    if uid > MAX_OCTAL_8 {
        pax.extend(pax_record("uid", uid.to_string().as_bytes()));
    }
    if gid > MAX_OCTAL_8 {
        pax.extend(pax_record("gid", gid.to_string().as_bytes()));
    }
    if mtime > MAX_OCTAL_12 {
        pax.extend(pax_record("mtime", mtime.to_string().as_bytes()));
    }

    let mut blocks = Vec::with_capacity(3 * BLOCK);
    if !pax.is_empty() {
        let mut h = Header::new_ustar();
        set_name_fields(&mut h, PAX_NAME, b"");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(pax.len() as u64);
        h.set_entry_type(EntryType::XHeader);
        h.set_cksum();
        blocks.extend_from_slice(h.as_bytes());
        let pad = padding(pax.len() as u64);
        blocks.extend(pax);
        blocks.extend(std::iter::repeat_n(0u8, pad));
    }

    let mut h = Header::new_ustar();
    set_name_fields(&mut h, &entry.name, link);
    h.set_mode(entry.mode);
    h.set_uid(uid.min(MAX_OCTAL_8));
    h.set_gid(gid.min(MAX_OCTAL_8));
    h.set_mtime(mtime.min(MAX_OCTAL_12));
    // Sizes past the octal field go in base-256 too (GNU), for readers without PAX.
    h.set_size(size);
    h.set_entry_type(entry_type);
    if let Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } = entry.kind {
        let ustar = h.as_ustar_mut().expect("a ustar header");
        ustar.set_device_major(major);
        ustar.set_device_minor(minor);
    }
    h.set_cksum();
    blocks.extend_from_slice(h.as_bytes());
    blocks
}

/// Raw name and link name bytes, cut to the field when a PAX record holds the whole.
fn set_name_fields(h: &mut Header, name: &[u8], link: &[u8]) {
    let ustar = h.as_ustar_mut().expect("a ustar header");
    let n = name.len().min(NAME_LEN);
    ustar.name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(NAME_LEN);
    ustar.linkname[..l].copy_from_slice(&link[..l]);
}

/// One PAX record: `"<length> <key>=<value>\n"`, where the length counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: Kind) -> SourceEntry {
        SourceEntry {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            mtime: 2_000_000_000,
        }
    }

    const DEFAULTS: HeaderOptions = HeaderOptions {
        keep_owners: false,
        source_date_epoch: None,
    };

    #[test]
    fn pax_record_length_counts_its_own_digits() {
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        let long = vec![b'x'; 95];
        let r = pax_record("path", &long);
        assert_eq!(r.len(), 105);
        assert!(r.starts_with(b"105 path="));
    }

    #[test]
    fn short_entry_is_one_ustar_block_with_zero_owners_and_mode_bits() {
        let b = header_blocks(&entry("bin/su", Kind::Dir), DEFAULTS);
        assert_eq!(b.len(), BLOCK);
        let h = Header::from_byte_slice(&b);
        assert_eq!(h.path_bytes().as_ref(), b"bin/su");
        assert_eq!(h.mode().unwrap(), 0o4755);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.entry_type(), EntryType::Directory);
    }

    #[test]
    fn owners_kept_and_mtime_clamped_on_request() {
        let options = HeaderOptions {
            keep_owners: true,
            source_date_epoch: Some(1_000),
        };
        let b = header_blocks(&entry("f", Kind::Fifo), options);
        let h = Header::from_byte_slice(&b);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (1000, 1000));
        assert_eq!(h.mtime().unwrap(), 1_000);
        let old = SourceEntry {
            mtime: 5,
            ..entry("f", Kind::Fifo)
        };
        let b = header_blocks(&old, options);
        assert_eq!(Header::from_byte_slice(&b).mtime().unwrap(), 5);
    }

    #[test]
    fn long_names_and_link_targets_get_a_pax_header() {
        let name = format!("{}/file", "d".repeat(120));
        let target = "t".repeat(150);
        let e = entry(
            &name,
            Kind::Symlink {
                target: target.clone().into_bytes(),
            },
        );
        let b = header_blocks(&e, DEFAULTS);
        let pax = Header::from_byte_slice(&b[..BLOCK]);
        assert_eq!(pax.entry_type(), EntryType::XHeader);
        let len = pax.raw_entry_size().unwrap() as usize;
        let records = &b[BLOCK..BLOCK + len];
        assert_eq!(
            records,
            [
                pax_record("path", name.as_bytes()),
                pax_record("linkpath", target.as_bytes())
            ]
            .concat()
        );
        assert_eq!(b.len(), BLOCK + len.div_ceil(BLOCK) * BLOCK + BLOCK);
    }

    #[test]
    fn device_numbers_are_recorded() {
        let b = header_blocks(
            &entry("dev/null", Kind::CharDevice { major: 1, minor: 3 }),
            DEFAULTS,
        );
        let h = Header::from_byte_slice(&b);
        assert_eq!(h.entry_type(), EntryType::Char);
        assert_eq!(h.device_major().unwrap(), Some(1));
        assert_eq!(h.device_minor().unwrap(), Some(3));
    }
}
