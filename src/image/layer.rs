//! A folder → one layer blob, in a single streaming pass of two stages on the blocking
//! pool, joined by a bounded channel: the folder is listed, encoded as tar and the tar
//! hashed (the diff_id); the tar is compressed, hashed again (the digest) and written to a
//! file as it goes. No layer is ever held in memory.
//!
//! The compressor uses every core (gzip block-parallel as pigz does, zstd multithreaded).
//!
//! The same folder gives the same digest, on any machine and core count: entries are
//! sorted, metadata is trimmed to what a runtime needs (see `tar`), the gzip header carries
//! no time or name, and the compressed bytes do not depend on the number of threads (see
//! `Encoder`; a unit test pins the digests of a fixed folder).
//! Not for: putting the blob in the cache or pushing it (the caller moves the file).

use crate::error::FromIo;
use crate::guard::PathGuard;
use std::io::{self, Write as _};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::{FormatSpec, GzpError, ZWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::read_ahead::ReadAhead;
use super::tar::{HeaderOptions, Listed, write_tar};
use super::{ImageError, walk};
use crate::digest::{Algorithm, Digest, Hasher, HashingWriter};
use crate::oci::{Compression, Descriptor, Format, MediaType};

/// Tar bytes are handed from the encoder to the compressor in chunks of this size.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the two stages.
const CHANNEL_DEPTH: usize = 4;

/// How a layer is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerOptions {
    /// Decides the layer's media type (OCI or Docker names).
    pub format: Format,
    /// `None` writes a plain tar (its digest is then its diff_id).
    pub compression: Compression,
    /// Record the files' uid/gid; otherwise every entry is owned by 0:0.
    pub keep_owners: bool,
    /// `SOURCE_DATE_EPOCH`: no entry's mtime is later than this (seconds).
    pub source_date_epoch: Option<u64>,
}

/// A layer blob written to a file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BuiltLayer {
    /// sha256 of the blob as written (compressed).
    pub digest: Digest,
    /// sha256 of the uncompressed tar: what the image config's `rootfs.diff_ids` lists.
    pub diff_id: Digest,
    /// Bytes of the blob as written.
    pub size: u64,
    pub media_type: MediaType,
}

impl BuiltLayer {
    /// The layer as a manifest lists it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

/// Builds one layer from everything below `source` (the folder itself is not an entry:
/// the tree's root gets its mode from whoever applies the layer) into `out_file`.
///
/// Symlinks are stored, never followed, and nothing outside `source` is read. Sockets
/// are skipped; FIFOs and device nodes become tar entries. `out_file` must not exist; it
/// is removed again on error, on cancellation and when this future is dropped, and is
/// skipped if it lies inside `source`. Errors: `invalid_source` when `source` is not a
/// folder (or is a symlink), `source_changed` when a file changes while it is read.
pub async fn build_layer(
    source: &Path,
    out_file: &Path,
    opts: &LayerOptions,
    cancel: &CancellationToken,
) -> Result<BuiltLayer, ImageError> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out_file)
        .await
        .map_err(ImageError::io(out_file))?;
    let guard = PathGuard::file(out_file);
    let meta = file.metadata().await.map_err(ImageError::io(out_file))?;
    let skip = Some((meta.dev(), meta.ino()));

    let cancel = cancel.child_token();
    // Dropping this future stops both stages too.
    let _stop = cancel.clone().drop_guard();
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let options = HeaderOptions {
        keep_owners: opts.keep_owners,
        source_date_epoch: opts.source_date_epoch,
    };
    let tar_stage = {
        let (source, out_path, cancel) =
            (source.to_path_buf(), out_file.to_path_buf(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            let root = walk::open_source(&source)?;
            let listed = root.try_clone().map_err(ImageError::io(&source))?;
            let entries = walk::list(listed, &source, skip, &cancel)?;
            let mut sink = ChunkSink::new(tx);
            let listed = Listed {
                root: root.as_fd(),
                source: &source,
                entries: &entries,
            };
            ReadAhead::around(&listed, |ahead| {
                write_tar(&listed, options, &mut sink, &out_path, ahead, &cancel)
            })?;
            sink.finish().map_err(ImageError::io(&out_path))
        })
    };
    // Hashing and compressing is CPU work: it runs on the blocking pool as well, not on
    // the runtime's workers.
    let compress_stage = {
        let (out_path, cancel) = (out_file.to_path_buf(), cancel.clone());
        let compression = opts.compression;
        let file = file.into_std().await;
        tokio::task::spawn_blocking(move || compress(rx, file, compression, &out_path, &cancel))
    };
    let (tarred, written) = tokio::join!(tar_stage, compress_stage);
    let stopped = |e: tokio::task::JoinError| {
        ImageError::io(source)(io::Error::other(format!("the layer builder stopped: {e}")))
    };
    // The compress stage only fails on its own (output or cancellation); the tar stage
    // also fails when the compress stage went away, so its error comes second.
    let (digest, size) = written.map_err(stopped)??;
    let diff_id = tarred.map_err(stopped)??;
    guard.keep();
    Ok(BuiltLayer {
        digest,
        diff_id,
        size,
        media_type: opts.format.layer_media_type(opts.compression),
    })
}

/// The second stage: tar chunks in, compressed, hashed (digest) and written. Returns
/// (digest, size) once the channel closes. Not synced: the file is the build's scratch,
/// read back at once for the push and removed after it; a crash fails the build, whose
/// scratch goes with it. Syncing it only made the build wait for the disk.
fn compress(
    mut chunks: mpsc::Receiver<Bytes>,
    file: std::fs::File,
    compression: Compression,
    out_file: &Path,
    cancel: &CancellationToken,
) -> Result<(Digest, u64), ImageError> {
    let mut out = Encoder::new(
        compression,
        HashingWriter::new(file, Algorithm::Sha256),
        threads(),
    )
    .map_err(ImageError::io(out_file))?;
    // The tar stage stops on cancellation too, which closes the channel.
    while let Some(chunk) = chunks.blocking_recv() {
        if cancel.is_cancelled() {
            return Err(ImageError::Cancelled);
        }
        out.write_all(&chunk).map_err(ImageError::io(out_file))?;
    }
    if cancel.is_cancelled() {
        return Err(ImageError::Cancelled);
    }
    let hashed = out.finish().map_err(ImageError::io(out_file))?;
    let (_file, digest, written) = hashed.into_parts();
    Ok((digest, written))
}

/// Compression threads: every core, up to `THREADS_MAX`. The bytes written do not depend
/// on it (see `Encoder`).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(THREADS_MAX))
}

/// A blocking `Write` that hashes the tar (the diff_id, here so that the compress stage's
/// thread only feeds the compressor) and hands chunks to the compress stage; a write fails
/// once that stage is gone (cancelled or failed), which stops the tar stage.
struct ChunkSink {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    diff_id: Hasher,
}

impl ChunkSink {
    fn new(tx: mpsc::Sender<Bytes>) -> ChunkSink {
        ChunkSink {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
            diff_id: Hasher::new(Algorithm::Sha256),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.diff_id.update(&chunk);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer writer stopped"))
    }

    /// Sends the last chunk; returns the diff_id.
    fn finish(mut self) -> io::Result<Digest> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(self.diff_id.finish())
    }
}

impl io::Write for ChunkSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// gzip level, as `gzip -6` and pigz (and flate2's default, used before).
const GZIP_LEVEL: u32 = 6;
/// gzip blocks compressed apart (pigz's default `-b 128`). Part of the output's identity:
/// changing it changes every gzip layer's digest.
const GZIP_BLOCK: usize = 128 * 1024;
/// zstd level: libzstd's default (what was used before).
const ZSTD_LEVEL: i32 = 3;
/// zstd input per MT job (libzstd's default at level 3 is 8 MiB): part of the output's
/// identity like `GZIP_BLOCK`, and what bounds memory (about two jobs per worker).
const ZSTD_JOB: u32 = 4 << 20;
/// At most this many compression threads: more buys little and, for zstd, costs memory.
const THREADS_MAX: usize = 4;

/// The compression stage; each variant owns the writer below it.
///
/// Both compressors use every core and write the same bytes for any number of threads:
/// gzip is cut in fixed `GZIP_BLOCK`s, each deflated with the 32 KiB before it as its
/// dictionary and ended by a sync flush, and the blocks are written in order as one gzip
/// member (pigz's scheme); zstd always runs libzstd's multithreaded mode (with at least one
/// worker), whose frames libzstd documents as independent of the worker count.
enum Encoder<W: io::Write + Send + 'static> {
    Plain(W),
    Gzip(ParCompress<'static, FreshGzip, W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: io::Write + Send + 'static> Encoder<W> {
    fn new(compression: Compression, inner: W, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        Ok(match compression {
            Compression::None => Encoder::Plain(inner),
            Compression::Gzip => Encoder::Gzip(
                ParCompressBuilder::<FreshGzip>::new()
                    .num_threads(threads)
                    .and_then(|b| b.buffer_size(GZIP_BLOCK))
                    .map_err(io::Error::other)?
                    .compression_level(flate2::Compression::new(GZIP_LEVEL))
                    .from_writer(inner),
            ),
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
                encoder.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
                encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB))?;
                Encoder::Zstd(encoder)
            }
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.write_all(bytes),
            Encoder::Gzip(w) => w.write_all(bytes),
            Encoder::Zstd(w) => w.write_all(bytes),
        }
    }

    /// Ends the compressed stream, flushes everything below and hands the writer back.
    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Encoder::Gzip(mut w) => {
                let mut inner = w.finish().map_err(gzp_error)?;
                inner.flush()?;
                Ok(inner)
            }
            Encoder::Zstd(w) => {
                let mut inner = w.finish()?;
                inner.flush()?;
                Ok(inner)
            }
        }
    }
}

/// gzp's `Gzip` with a new deflate state for every block. gzp keeps one per thread and
/// resets it between blocks, but a reset deflate state still remembers something of the
/// block before (seen: real binaries compressed on 2 threads came out a few bytes longer or
/// shorter from run to run), so which thread got which block showed in the bytes.
#[derive(Clone, Copy, Debug)]
struct FreshGzip(Gzip);

impl FormatSpec for FreshGzip {
    type C = <Gzip as FormatSpec>::C;
    type Compressor = ();

    fn new() -> Self {
        FreshGzip(<Gzip as FormatSpec>::new())
    }

    fn needs_dict(&self) -> bool {
        self.0.needs_dict()
    }

    fn create_compressor(&self, _: flate2::Compression) -> Result<(), GzpError> {
        Ok(())
    }

    fn encode(
        &self,
        input: &[u8],
        _: &mut (),
        level: flate2::Compression,
        dict: Option<&Bytes>,
        is_last: bool,
    ) -> Result<Vec<u8>, GzpError> {
        let mut fresh = self.0.create_compressor(level)?;
        self.0.encode(input, &mut fresh, level, dict, is_last)
    }

    fn header(&self, level: flate2::Compression) -> Vec<u8> {
        self.0.header(level)
    }

    fn footer(&self, check: &Self::C) -> Vec<u8> {
        self.0.footer(check)
    }
}

/// gzp wraps the writer's own io errors; keep their kind.
fn gzp_error(e: GzpError) -> io::Error {
    match e {
        GzpError::Io(e) => e,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
