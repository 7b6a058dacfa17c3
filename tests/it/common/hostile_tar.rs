//! The harness's one tar writer for layers no tool would make: names with `..`, absolute
//! names, symlinks and hardlinks that point out of the tree, whiteouts of `../x`, opaque
//! markers ([`TarEntry`], [`tar`]), and raw headers for hostile header streams (huge GNU
//! long names, PAX records: [`Header`], [`pax_record`], [`padding`]). Real tar writers
//! (the `tar` crate included) refuse such names, so every 512-byte header is written here
//! byte by byte. Names past the 100 bytes of the name field get a GNU long-name (`L`) or
//! long-link (`K`) entry first, as GNU tar and Go's archive/tar write them.
//!
//! The library's unit tests have their own writer (`src/unpack/test_tar.rs`), which feeds
//! the unpacker in memory and is not part of the binary the integration tests drive.

/// The mtime every hand-made entry carries (2023-11-14), so trees are deterministic.
pub const MTIME: u64 = 1_700_000_000;

/// One tar entry, named byte for byte as given.
#[derive(Clone, Debug)]
pub enum TarEntry {
    Dir {
        name: String,
        mode: u32,
    },
    File {
        name: String,
        data: Vec<u8>,
        mode: u32,
    },
    Symlink {
        name: String,
        target: String,
    },
    Hardlink {
        name: String,
        target: String,
    },
}

impl TarEntry {
    pub fn dir(name: &str) -> TarEntry {
        TarEntry::Dir {
            name: name.into(),
            mode: 0o755,
        }
    }

    pub fn file(name: &str, data: &[u8]) -> TarEntry {
        TarEntry::File {
            name: name.into(),
            data: data.to_vec(),
            mode: 0o644,
        }
    }

    pub fn symlink(name: &str, target: &str) -> TarEntry {
        TarEntry::Symlink {
            name: name.into(),
            target: target.into(),
        }
    }

    pub fn hardlink(name: &str, target: &str) -> TarEntry {
        TarEntry::Hardlink {
            name: name.into(),
            target: target.into(),
        }
    }

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
        TarEntry::file(&format!("{dir}/.wh..wh..opq"), b"")
    }
}

/// One 512-byte tar header, every field as given: uid and gid 0, no user or group name.
#[derive(Clone, Debug)]
pub struct Header<'a> {
    /// At most 100 bytes (longer names need an `L` entry first).
    pub name: &'a [u8],
    pub typeflag: u8,
    pub mode: u32,
    pub size: u64,
    pub mtime: u64,
    /// At most 100 bytes (longer links need a `K` entry first).
    pub link: &'a [u8],
    /// GNU magic (`ustar  \0`) rather than POSIX ustar's (`ustar\0` `00`).
    pub gnu: bool,
}

impl Header<'_> {
    pub fn bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..self.name.len()].copy_from_slice(self.name);
        octal(&mut h[100..108], u64::from(self.mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
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
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }
}

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
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    [format!("{len} ").as_bytes(), key, b"=", value, b"\n"].concat()
}

/// The GNU entry (`L` for a name, `K` for a link) that carries a `value` too long for its
/// header field, then the field's truncated copy.
fn long_value<'a>(out: &mut Vec<u8>, typeflag: u8, value: &'a [u8]) -> &'a [u8] {
    if value.len() <= 100 {
        return value;
    }
    let mut data = value.to_vec();
    data.push(0);
    let long = Header {
        name: b"././@LongLink",
        typeflag,
        mode: 0o644,
        size: data.len() as u64,
        mtime: 0,
        link: b"",
        gnu: true,
    };
    out.extend(long.bytes());
    out.extend_from_slice(&data);
    out.extend(padding(data.len() as u64));
    &value[..100]
}

/// An uncompressed tarball of `entries`, in order, names written verbatim (GNU format, with
/// long-name entries past 100 bytes).
pub fn tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let (name, typeflag, mode, data, link): (&str, u8, u32, &[u8], &str) = match entry {
            TarEntry::Dir { name, mode } => (name, b'5', *mode, &[], ""),
            TarEntry::File { name, data, mode } => (name, b'0', *mode, data, ""),
            TarEntry::Symlink { name, target } => (name, b'2', 0o777, &[], target),
            TarEntry::Hardlink { name, target } => (name, b'1', 0o644, &[], target),
        };
        let link = long_value(&mut out, b'K', link.as_bytes());
        let name = long_value(&mut out, b'L', name.as_bytes());
        let header = Header {
            name,
            typeflag,
            mode,
            size: data.len() as u64,
            mtime: MTIME,
            link,
            gnu: true,
        };
        out.extend(header.bytes());
        out.extend_from_slice(data);
        out.extend(padding(data.len() as u64));
    }
    out.extend([0; 1024]);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}
