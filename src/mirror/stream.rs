//! A blob's bytes for one `/v2/` response: a cached file (pinned while the body lives),
//! or a download into the cache that the response follows as it is written.
//!
//! The download is the cache's single flight (`Store::acquire` gave this request the
//! digest's writer): its bytes go into the `BlobWriter` (hashed, written to the cache's
//! temporary file) and, through a bounded channel, to the client. The last chunk is held
//! back until the writer committed (digest and size matched), so a client never receives
//! a whole body of bytes that did not verify: on a mismatch the body ends in an error (the
//! connection is cut short) and nothing is cached. A client that goes away does not stop
//! the download: the blob still lands in the cache for whoever waits for it.
//!
//! This is the seam the store's follow-a-download primitive replaces: requests that find
//! the digest being fetched wait for its commit in `acquire` and then read the file.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;
use tokio_util::sync::{CancellationToken, PollSender};

use crate::digest::Digest;
use crate::registry::{Credentials, Reference, RegistryClient, RegistryError};
use crate::store::{BlobGuard, BlobWriter, StoreError};

/// Chunks in flight between a download and its client: the client's pace slows the
/// download down to it, and memory stays at a few chunks whatever the blob's size.
const CHANNEL_CHUNKS: usize = 16;
/// Read size of a cached file.
const FILE_CHUNK: usize = 256 * 1024;

/// The bytes of a response body; an `Err` ends the response without its clean end.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Why a download for a client failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bytes `start..start + len` of a cached blob; the guard (its pin) lives as long as the
/// stream, so purge and eviction leave the file alone while it is being served.
pub async fn cached(guard: BlobGuard, start: u64, len: u64) -> Result<BodyStream, io::Error> {
    let mut file = tokio::fs::File::open(guard.path()).await?;
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let reader = file.take(len);
    let stream = ReaderStream::with_capacity(reader, FILE_CHUNK).map(move |chunk| {
        let _pinned = &guard;
        chunk
    });
    Ok(Box::pin(stream))
}

/// Downloads blob `digest` into `writer` (the cache's single flight for it) in a task of
/// its own, and answers the stream a client follows it with.
pub fn follow_download(
    registry: RegistryClient,
    reference: Reference,
    digest: Digest,
    size: u64,
    creds: Option<Credentials>,
    writer: BlobWriter,
) -> BodyStream {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::spawn(async move {
        let result = download(
            &registry,
            &reference,
            &digest,
            size,
            creds.as_ref(),
            writer,
            Some(tx.clone()),
        )
        .await;
        match result {
            Ok((_guard, held)) => {
                if let Some(last) = held {
                    let _ = tx.send(Ok(last)).await;
                }
            }
            Err(e) => {
                tracing::warn!(%digest, repository = %reference.name(), error = %e, "mirror download failed; the response is cut short");
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
            }
        }
    });
    Box::pin(tokio_stream_from(rx))
}

/// Downloads blob `digest` into `writer` and commits it; with `tx`, every chunk but the
/// last goes to it on the way, and the last one is handed back once the blob verified.
pub async fn download(
    registry: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    size: u64,
    creds: Option<&Credentials>,
    writer: BlobWriter,
    tx: Option<mpsc::Sender<Result<Bytes, io::Error>>>,
) -> Result<(BlobGuard, Option<Bytes>), DownloadError> {
    let gone = tx.is_none();
    let mut tee = Tee {
        writer,
        tx: PollSender::new(tx.unwrap_or_else(|| mpsc::channel(1).0)),
        held: None,
        gone,
    };
    let cancel = CancellationToken::new();
    registry
        .copy_blob(
            reference,
            digest,
            Some(size),
            creds,
            &mut tee,
            0,
            &|_| {},
            &cancel,
        )
        .await?;
    let Tee { writer, held, .. } = tee;
    // `commit` flushes, syncs and checks the digest and size.
    let guard = writer.commit().await?;
    Ok((guard, held))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, io::Error>>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Writes into the blob writer and passes each chunk on to the client one chunk late, so
/// that the last one is still held when the download ends.
struct Tee {
    writer: BlobWriter,
    tx: PollSender<Result<Bytes, io::Error>>,
    held: Option<Bytes>,
    /// The client went away (or there is none): nothing more is sent.
    gone: bool,
}

impl AsyncWrite for Tee {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.is_some() && !this.gone {
            match ready!(this.tx.poll_reserve(cx)) {
                Ok(()) => {
                    let chunk = this.held.take().expect("checked above");
                    this.gone = this.tx.send_item(Ok(chunk)).is_err();
                }
                Err(_) => this.gone = true,
            }
        }
        this.held = None;
        let n = ready!(Pin::new(&mut this.writer).poll_write(cx, buf))?;
        if !this.gone {
            this.held = Some(Bytes::copy_from_slice(&buf[..n]));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}
