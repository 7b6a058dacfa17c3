//! A tar writer for tests that writes names exactly as given, hostile ones included.
//!
//! Real tar builders refuse `..` and absolute names, which are the whole point of the
//! breakout tests; this one writes raw ustar headers, with PAX records or GNU long-name
//! entries for long names. Not for: production code (tests only).

use std::io::Cursor;
use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::{LayerStats, Tree, UnpackError, UnpackOptions};
use crate::oci::Compression;

/// One entry to write.
#[derive(Clone, Debug)]
pub(super) struct E {
    name: Vec<u8>,
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Vec<u8>,
    data: Vec<u8>,
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    device: (u32, u32),
    gnu_long_names: bool,
}

impl E {
    fn new(name: impl AsRef<[u8]>, typeflag: u8, mode: u32) -> E {
        E {
            name: name.as_ref().to_vec(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: Vec::new(),
            data: Vec::new(),
            pax: Vec::new(),
            device: (0, 0),
            gnu_long_names: false,
        }
    }

    pub(super) fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> E {
        let mut e = E::new(name, b'0', 0o644);
        e.data = data.as_ref().to_vec();
        e
    }

    pub(super) fn dir(name: impl AsRef<[u8]>) -> E {
        E::new(name, b'5', 0o755)
    }

    pub(super) fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
        let mut e = E::new(name, b'2', 0o777);
        e.link = target.as_ref().to_vec();
        e
    }

    pub(super) fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
        let mut e = E::new(name, b'1', 0o644);
        e.link = target.as_ref().to_vec();
        e
    }

    pub(super) fn fifo(name: impl AsRef<[u8]>) -> E {
        E::new(name, b'6', 0o640)
    }

    pub(super) fn char_device(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
        let mut e = E::new(name, b'3', 0o666);
        e.device = (major, minor);
        e
    }

    /// A PAX global header (`g`) holding one record.
    pub(super) fn pax_global(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> E {
        let mut e = E::new("pax_global_header", b'g', 0o644);
        e.data = pax_records(&[(key.as_ref().to_vec(), value.as_ref().to_vec())]);
        e
    }

    pub(super) fn mode(mut self, mode: u32) -> E {
        self.mode = mode;
        self
    }

    pub(super) fn owner(mut self, uid: u64, gid: u64) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub(super) fn mtime(mut self, mtime: u64) -> E {
        self.mtime = mtime;
        self
    }

    pub(super) fn pax(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> E {
        self.pax
            .push((key.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Long names as GNU `L`/`K` entries instead of PAX records.
    pub(super) fn gnu(mut self) -> E {
        self.gnu_long_names = true;
        self
    }
}

/// The bytes of an uncompressed layer holding `entries`, in order.
pub(super) fn layer(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        write_entry(&mut out, e);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn write_entry(out: &mut Vec<u8>, e: &E) {
    let mut pax = e.pax.clone();
    let long_name = e.name.len() > 100;
    let long_link = e.link.len() > 100;
    if e.gnu_long_names {
        if long_name {
            write_header(
                out,
                b"././@LongLink",
                b'L',
                0o644,
                &[],
                (e.name.len() + 1) as u64,
            );
            write_data(out, &[e.name.as_slice(), b"\0"].concat());
        }
        if long_link {
            write_header(
                out,
                b"././@LongLink",
                b'K',
                0o644,
                &[],
                (e.link.len() + 1) as u64,
            );
            write_data(out, &[e.link.as_slice(), b"\0"].concat());
        }
    } else {
        if long_name {
            pax.push((b"path".to_vec(), e.name.clone()));
        }
        if long_link {
            pax.push((b"linkpath".to_vec(), e.link.clone()));
        }
    }
    if !pax.is_empty() {
        let body = pax_records(&pax);
        write_header(
            out,
            b"PaxHeaders/entry",
            b'x',
            0o644,
            &[],
            body.len() as u64,
        );
        write_data(out, &body);
    }
    let name = &e.name[..e.name.len().min(100)];
    let link = &e.link[..e.link.len().min(100)];
    let start = out.len();
    write_header(out, name, e.typeflag, e.mode, link, e.data.len() as u64);
    let header = &mut out[start..start + 512];
    octal(&mut header[108..116], e.uid);
    octal(&mut header[116..124], e.gid);
    octal(&mut header[136..148], e.mtime);
    octal(&mut header[329..337], e.device.0 as u64);
    octal(&mut header[337..345], e.device.1 as u64);
    checksum(header);
    write_data(out, &e.data);
}

/// PAX records, each `"<len> <key>=<value>\n"` with its own length counted.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} ").as_bytes());
        body.extend_from_slice(k);
        body.push(b'=');
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    body
}

fn write_header(out: &mut Vec<u8>, name: &[u8], typeflag: u8, mode: u32, link: &[u8], size: u64) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    checksum(&mut h);
    out.extend_from_slice(&h);
}

fn write_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// Zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    field[..width].copy_from_slice(digits.as_bytes());
    field[width] = 0;
}

fn checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
}

pub(super) async fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(bytes)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

pub(super) async fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::ZstdEncoder::new(bytes)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

/// Options as root would have them (the tests run as root).
pub(super) fn root_options() -> UnpackOptions {
    UnpackOptions {
        same_owner: true,
        devices: true,
    }
}

/// Opens a tree at `root` (created if missing) and applies each uncompressed layer.
pub(super) async fn apply_all(
    root: &Path,
    layers: &[Vec<u8>],
) -> Result<Vec<LayerStats>, UnpackError> {
    std::fs::create_dir_all(root).unwrap();
    let mut tree = Tree::open(root, root_options())?;
    let mut stats = Vec::new();
    for l in layers {
        let blob = Cursor::new(l.clone());
        stats.push(
            tree.apply_layer(blob, Compression::None, &CancellationToken::new())
                .await?,
        );
    }
    tree.finish().await?;
    Ok(stats)
}
