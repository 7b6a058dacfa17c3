//! The one tar writer of the tests, for layers no tool would make: names with `..`,
//! absolute names, links out of the tree, whiteouts of `../x`, devices, PAX records, GNU
//! long names, raw headers. Real tar writers (the `tar` crate included) refuse such
//! names, so every 512-byte header is written here byte by byte, names exactly as given.
//!
//! Shared by the library's unit tests (declared in `src/unpack/mod.rs`, wrapped by
//! `test_tar`, which adds what needs the crate's types) and the integration tests
//! (included with `#[path]` by `tests/it/common/hostile_tar.rs`), so it uses `std` and
//! dev-dependencies only: no `crate::` or `super::`. Each side names its [`Dialect`]
//! (the unit tests write POSIX ustar with PAX records, the harness GNU tar) and adds the
//! entry kinds only it uses. Not for: production code, or well-formed images (the
//! harness makes those with umoci and skopeo).

/// One entry, named byte for byte as given; written by [`archive`].
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// `None`: the dialect's [`Dialect::mtime`].
    pub mtime: Option<u64>,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    /// PAX records written in an `x` header before the entry.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// Major and minor, written when the dialect writes device fields.
    pub device: (u32, u32),
    /// Long names and links as GNU `L`/`K` entries rather than PAX records.
    pub gnu_long_names: bool,
}

impl Entry {
    pub fn new(name: impl AsRef<[u8]>, typeflag: u8, mode: u32) -> Entry {
        Entry {
            name: name.as_ref().to_vec(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: None,
            link: Vec::new(),
            data: Vec::new(),
            pax: Vec::new(),
            device: (0, 0),
            gnu_long_names: false,
        }
    }

    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name, b'0', 0o644);
        e.data = data.as_ref().to_vec();
        e
    }

    pub fn dir(name: impl AsRef<[u8]>) -> Entry {
        Entry::new(name, b'5', 0o755)
    }

    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name, b'2', 0o777);
        e.link = target.as_ref().to_vec();
        e
    }

    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name, b'1', 0o644);
        e.link = target.as_ref().to_vec();
        e
    }

    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
}

/// How [`archive`] lays out its headers.
#[derive(Clone, Copy, Debug)]
pub struct Dialect {
    /// GNU magic (`ustar  \0`) rather than POSIX ustar's (`ustar\0` `00`).
    pub gnu_magic: bool,
    /// The user and group name of every header (empty: none).
    pub owner_name: &'static [u8],
    /// Device numbers written as octal in every header, or the fields left NUL.
    pub device_fields: bool,
    /// The mtime of entries that set none.
    pub mtime: u64,
    /// The mtime of the extension headers (GNU long names, PAX records).
    pub extension_mtime: u64,
    /// Every long name or link as a GNU `L`/`K` entry, whatever the entry asks.
    pub gnu_long_names: bool,
}

/// One 512-byte tar header, every field as given.
#[derive(Clone, Debug, Default)]
pub struct Header<'a> {
    /// At most 100 bytes (longer names need an `L` entry or a PAX `path` first).
    pub name: &'a [u8],
    pub typeflag: u8,
    pub mode: u32,
    pub size: u64,
    pub mtime: u64,
    /// At most 100 bytes (longer links need a `K` entry or a PAX `linkpath` first).
    pub link: &'a [u8],
    /// GNU magic (`ustar  \0`) rather than POSIX ustar's (`ustar\0` `00`).
    pub gnu: bool,
    pub uid: u64,
    pub gid: u64,
    /// The user and group name (empty: none).
    pub owner_name: &'a [u8],
    /// Major and minor as octal; `None` leaves both fields NUL.
    pub device: Option<(u32, u32)>,
}

impl Header<'_> {
    pub fn bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..self.name.len()].copy_from_slice(self.name);
        octal(&mut h[100..108], u64::from(self.mode));
        octal(&mut h[108..116], self.uid);
        octal(&mut h[116..124], self.gid);
        octal(&mut h[124..136], self.size);
        octal(&mut h[136..148], self.mtime);
        h[156] = self.typeflag;
        h[157..157 + self.link.len()].copy_from_slice(self.link);
        if self.gnu {
            h[257..265].copy_from_slice(b"ustar  \0");
        } else {
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
        }
        let owner = self.owner_name;
        h[265..265 + owner.len()].copy_from_slice(owner);
        h[297..297 + owner.len()].copy_from_slice(owner);
        if let Some((major, minor)) = self.device {
            octal(&mut h[329..337], u64::from(major));
            octal(&mut h[337..345], u64::from(minor));
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }
}

/// Zero-padded octal filling `field` but its last byte, which stays NUL.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    field[..width].copy_from_slice(format!("{value:0width$o}").as_bytes());
}

/// Zeros up to the next 512-byte boundary after `len` bytes of data.
pub fn padding(len: u64) -> Vec<u8> {
    vec![0; ((512 - len % 512) % 512) as usize]
}

/// One PAX record, `"<len> <key>=<value>\n"`, with its length prefix counted.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    [format!("{len} ").as_bytes(), key, b"=", value, b"\n"].concat()
}

/// The body of a PAX header holding `records`, in order.
pub fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    records.iter().flat_map(|(k, v)| pax_record(k, v)).collect()
}

/// An uncompressed tarball of `entries`, in order, then the two zero blocks that end it.
/// A name or link past the 100 bytes of its field gets a GNU long-name (`L`) or long-link
/// (`K`) entry first, as GNU tar and Go's archive/tar write them, or a PAX `path` or
/// `linkpath` record, as the dialect and the entry ask; the field keeps its first 100 bytes.
pub fn archive(dialect: &Dialect, entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        write_entry(&mut out, dialect, e);
    }
    out.extend([0; 1024]);
    out
}

fn write_entry(out: &mut Vec<u8>, dialect: &Dialect, e: &Entry) {
    let mut pax = e.pax.clone();
    for (typeflag, key, value) in [(b'L', "path", &e.name), (b'K', "linkpath", &e.link)] {
        if value.len() <= 100 {
            continue;
        }
        if dialect.gnu_long_names || e.gnu_long_names {
            let data = [value.as_slice(), b"\0"].concat();
            write_extension(out, dialect, b"././@LongLink", typeflag, &data);
        } else {
            pax.push((key.as_bytes().to_vec(), value.clone()));
        }
    }
    if !pax.is_empty() {
        write_extension(out, dialect, b"PaxHeaders/entry", b'x', &pax_records(&pax));
    }
    let header = Header {
        name: &e.name[..e.name.len().min(100)],
        typeflag: e.typeflag,
        mode: e.mode,
        size: e.data.len() as u64,
        mtime: e.mtime.unwrap_or(dialect.mtime),
        link: &e.link[..e.link.len().min(100)],
        gnu: dialect.gnu_magic,
        uid: e.uid,
        gid: e.gid,
        owner_name: dialect.owner_name,
        device: dialect.device_fields.then_some(e.device),
    };
    write_data(out, &header, &e.data);
}

/// A header of `typeflag` (`L`, `K`, `x`) carrying `data` for the entry after it.
fn write_extension(out: &mut Vec<u8>, dialect: &Dialect, name: &[u8], typeflag: u8, data: &[u8]) {
    let header = Header {
        name,
        typeflag,
        mode: 0o644,
        size: data.len() as u64,
        mtime: dialect.extension_mtime,
        gnu: dialect.gnu_magic,
        owner_name: dialect.owner_name,
        device: dialect.device_fields.then_some((0, 0)),
        ..Header::default()
    };
    write_data(out, &header, data);
}

fn write_data(out: &mut Vec<u8>, header: &Header, data: &[u8]) {
    out.extend(header.bytes());
    out.extend_from_slice(data);
    out.extend(padding(data.len() as u64));
}

/// `bytes` as one gzip member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}
