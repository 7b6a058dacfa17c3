//! The diff_id of a layer: the digest of its whole uncompressed stream, hashed as the tar
//! reader takes it.
//!
//! Sits between the decompressor and the tar reader. The reader stops at the archive's
//! end blocks, and a layer may carry more after them (the rest of the end blocks, the
//! zero padding of a record): the diff_id covers every byte, so [`HashingReader::finish`]
//! reads what is left to the end, through the hasher, one chunk at a time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::digest::{Algorithm, Digest, Hasher};

/// `inner`, hashing every byte read from it.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: AsyncRead + Unpin> HashingReader<R> {
    pub(super) fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(algorithm),
        }
    }

    /// Reads the rest of the stream (into `buf`, thrown away) and returns the digest of
    /// all of it; `None` when `cancel` fired first.
    pub(super) async fn finish(
        mut self,
        buf: &mut [u8],
        cancel: &CancellationToken,
    ) -> io::Result<Option<Digest>> {
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            if self.read(buf).await? == 0 {
                return Ok(Some(self.hasher.finish()));
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.hasher.update(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}
