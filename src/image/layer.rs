//! A folder → one layer blob, in a single streaming pass of two stages on the blocking
//! pool, joined by a bounded channel: the folder is listed and encoded as tar; the tar is
//! hashed (the diff_id), compressed, hashed again (the digest) and written to a file as it
//! goes. No layer is ever held in memory.
//!
//! The same folder gives the same digest: entries are sorted, metadata is trimmed to what
//! a runtime needs (see `tar`), and the gzip header carries no time or name.
//! Not for: putting the blob in the cache or pushing it (the caller moves the file).

use crate::error::FromIo;
use crate::guard::PathGuard;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::tar::{HeaderOptions, write_tar};
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
            let (fd, out) = (root.as_fd(), &out_path);
            write_tar(fd, &source, &entries, options, &mut sink, out, &cancel)?;
            sink.finish().map_err(ImageError::io(out))
        })
    };
    // Hashing and compressing is CPU work: it runs on the blocking pool as well, not on
    // the runtime's workers.
    let compress_stage = {
        let (out_path, cancel) = (out_file.to_path_buf(), cancel.clone());
        let compression = opts.compression;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(compress(rx, file, compression, &out_path, &cancel))
        })
    };
    let (tarred, written) = tokio::join!(tar_stage, compress_stage);
    let stopped = |e: tokio::task::JoinError| {
        ImageError::io(source)(io::Error::other(format!("the layer builder stopped: {e}")))
    };
    // The compress stage only fails on its own (output or cancellation); the tar stage
    // also fails when the compress stage went away, so its error comes second.
    let (diff_id, digest, size) = written.map_err(stopped)??;
    tarred.map_err(stopped)??;
    guard.keep();
    Ok(BuiltLayer {
        digest,
        diff_id,
        size,
        media_type: opts.format.layer_media_type(opts.compression),
    })
}

/// The second stage: tar chunks in, hashed (diff_id), compressed, hashed again (digest),
/// written and synced. Returns (diff_id, digest, size) once the channel closes.
async fn compress(
    mut chunks: mpsc::Receiver<Bytes>,
    file: tokio::fs::File,
    compression: Compression,
    out_file: &Path,
    cancel: &CancellationToken,
) -> Result<(Digest, Digest, u64), ImageError> {
    let mut diff_id = Hasher::new(Algorithm::Sha256);
    let mut out = Encoder::new(compression, HashingWriter::new(file, Algorithm::Sha256));
    loop {
        let chunk = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ImageError::Cancelled),
            chunk = chunks.recv() => chunk,
        };
        let Some(chunk) = chunk else { break };
        diff_id.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(ImageError::io(out_file))?;
    }
    out.shutdown().await.map_err(ImageError::io(out_file))?;
    let (file, digest, written) = out.into_inner().into_parts();
    file.sync_all().await.map_err(ImageError::io(out_file))?;
    Ok((diff_id.finish(), digest, written))
}

/// A blocking `Write` that hands chunks to the async stage; a write fails once the async
/// stage is gone (cancelled or failed), which stops the tar stage.
struct ChunkSink {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
}

impl ChunkSink {
    fn new(tx: mpsc::Sender<Bytes>) -> ChunkSink {
        ChunkSink {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer writer stopped"))
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
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

/// The compression stage; each variant owns the writer below it.
enum Encoder<W: AsyncWrite + Unpin> {
    Plain(W),
    Gzip(GzipEncoder<W>),
    Zstd(ZstdEncoder<W>),
}

impl<W: AsyncWrite + Unpin> Encoder<W> {
    fn new(compression: Compression, inner: W) -> Self {
        match compression {
            Compression::None => Encoder::Plain(inner),
            Compression::Gzip => Encoder::Gzip(GzipEncoder::new(inner)),
            Compression::Zstd => Encoder::Zstd(ZstdEncoder::new(inner)),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.write_all(bytes).await,
            Encoder::Gzip(w) => w.write_all(bytes).await,
            Encoder::Zstd(w) => w.write_all(bytes).await,
        }
    }

    /// Ends the compressed stream and flushes everything below.
    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.shutdown().await,
            Encoder::Gzip(w) => w.shutdown().await,
            Encoder::Zstd(w) => w.shutdown().await,
        }
    }

    fn into_inner(self) -> W {
        match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w.into_inner(),
            Encoder::Zstd(w) => w.into_inner(),
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
