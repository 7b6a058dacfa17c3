//! Where a copy's blobs come from when the target lacks them and no mount could link them:
//! the source repository, read through the verified cache (`cache: use`), or streamed as
//! the upload reads it and hashed on the way (`cache: bypass`), so the upload never ends
//! with bytes that do not match the digest. Also each manifest's place in the job's
//! progress. Not for: the order of a copy (`copy.rs`) or the push (`registry::push_image`).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::JobEnv;
use super::build::Pinned;
use super::model::JobError;
use super::progress::Tracker;
use super::request::CacheMode;
use crate::digest::{Digest, HashingWriter};
use crate::oci::Descriptor;
use crate::registry::{
    BlobPushed, BlobReader, BlobSource, Credentials, OpenBlob, PushBlob, PushProgress, Reference,
    RegistryClient, RegistryError,
};

/// A manifest's push progress at its place in the job's list of blobs.
pub(super) struct Offset {
    pub(super) tracker: Arc<Tracker>,
    pub(super) base: usize,
}

impl PushProgress for Offset {
    fn bytes(&self, index: usize, n: u64) {
        self.tracker.bytes(self.base + index, n);
    }
    fn uploading(&self, index: usize) {
        self.tracker.uploading(self.base + index);
    }
    fn done(&self, index: usize, how: BlobPushed) {
        self.tracker.done(self.base + index, how);
    }
}

/// Opens a source blob the target lacks: through the verified cache (`cache: use`), or
/// streamed from the source as the upload reads it (`cache: bypass`).
pub(super) struct Opener<'a> {
    pub(super) env: &'a JobEnv,
    pub(super) auth: Option<&'a Credentials>,
    pub(super) cache: CacheMode,
    /// The manifest's place in the job's progress (a blob is `downloading` while read).
    pub(super) tracker: Arc<Offset>,
    pub(super) cancel: &'a CancellationToken,
    /// Why a streamed blob's download failed, for the job's error.
    pub(super) stream_failure: Arc<Mutex<Option<RegistryError>>>,
}

impl Opener<'_> {
    /// Why a streamed blob's download failed, if one did.
    pub(super) fn take_stream_failure(&self) -> Option<RegistryError> {
        self.stream_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Bytes in flight between a bypassed blob's download and its upload.
const PIPE_BYTES: usize = 1 << 20;

impl OpenBlob for Opener<'_> {
    type Error = JobError;

    async fn open(&self, index: usize, blob: &PushBlob) -> Result<BlobReader, JobError> {
        let BlobSource::Repository(from) = &blob.source else {
            return Err(JobError::new(
                "internal_error",
                "a copy's blobs all come from the source repository",
            ));
        };
        let place = self.tracker.base + index;
        self.tracker.tracker.layer_state(place, "downloading");
        match self.cache {
            CacheMode::Use => {
                let pinned = Pinned::fetch(
                    self.env,
                    from,
                    self.auth,
                    self.cancel,
                    index,
                    &blob.descriptor,
                )
                .await?;
                Ok(Box::new(pinned))
            }
            CacheMode::Bypass => {
                let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
                let (registry, from, auth) =
                    (self.env.registry.clone(), from.clone(), self.auth.cloned());
                let (desc, cancel) = (blob.descriptor.clone(), self.cancel.clone());
                let failure = self.stream_failure.clone();
                let task = tokio::spawn(async move {
                    let result =
                        stream(&registry, &from, &desc, auth.as_ref(), writer, &cancel).await;
                    if let Err(e) = &result {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    }
                    result
                });
                Ok(Box::new(Streamed {
                    pipe: reader,
                    download: AbortOnDropHandle::new(task),
                }))
            }
        }
    }
}

/// Downloads `desc` from `from` into the pipe, hashing it: an error unless every byte came
/// and they hash to the digest.
async fn stream(
    registry: &RegistryClient,
    from: &Reference,
    desc: &Descriptor,
    auth: Option<&Credentials>,
    writer: tokio::io::DuplexStream,
    cancel: &CancellationToken,
) -> Result<(), RegistryError> {
    let mut sink = LastBytesChecked {
        inner: HashingWriter::new(writer, desc.digest.algorithm()),
        size: desc.size,
        digest: desc.digest.clone(),
        refused: None,
    };
    let copied = registry
        .copy_blob(
            from,
            &desc.digest,
            Some(desc.size),
            auth,
            &mut sink,
            0,
            &|_| {},
            cancel,
        )
        .await;
    let got = match (copied, sink.refused) {
        (Err(RegistryError::Write { .. }), Some(got)) => got,
        (Err(e), _) => return Err(e),
        (Ok(_), _) => sink.inner.into_parts().1,
    };
    if got != desc.digest {
        return Err(RegistryError::DigestMismatch {
            image: from.to_string(),
            what: format!("blob {}", desc.digest),
            expected: desc.digest.to_string(),
            actual: got.to_string(),
        });
    }
    Ok(())
}

/// The pipe's side of a streamed blob: the bytes that complete it are passed on only
/// once they make its digest. A registry reading a body of the declared length would
/// otherwise hold every byte, wrong ones included, and answer (`DIGEST_INVALID`) before
/// the pipe's end could tell it the bytes were bad.
struct LastBytesChecked {
    inner: HashingWriter<tokio::io::DuplexStream>,
    size: u64,
    digest: Digest,
    /// The digest the bytes came to, when they were refused.
    refused: Option<Digest>,
}

impl AsyncWrite for LastBytesChecked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let left = self.size.saturating_sub(self.inner.written());
        if buf.len() as u64 >= left {
            let got = self.inner.digest_with(&buf[..left as usize]);
            if got != self.digest {
                let refused = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("blob {} hashes to {got}", self.digest),
                );
                self.refused = Some(got);
                return Poll::Ready(Err(refused));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A blob streamed from its download: the pipe's end is the blob's end only once the
/// download said its bytes hashed to the digest; else reading fails, so the upload is
/// never completed with wrong or missing bytes.
struct Streamed {
    pipe: tokio::io::DuplexStream,
    download: AbortOnDropHandle<Result<(), RegistryError>>,
}

impl AsyncRead for Streamed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.pipe).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                // The writer is gone: the download ended. How?
                match Pin::new(&mut self.download).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(Ok(()))) => Poll::Ready(Ok(())),
                    Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(std::io::Error::other(e))),
                    Poll::Ready(Err(join)) => Poll::Ready(Err(std::io::Error::other(join))),
                }
            }
            other => other,
        }
    }
}
