//! A blob's bytes for one `/v2/` response: a cached file (pinned while the body lives),
//! or a download into the cache that the response follows as it lands.
//!
//! A download is the cache's single flight: `Store::acquire_or_follow` hands one request
//! the digest's writer ([`start_download`] drives it in a task of its own) and every
//! other request a [`Follower`] of the same download; each response reads the bytes as
//! they land in the cache's temporary file ([`followed`]). The download goes on while
//! anyone follows it, and stops (its file removed) once nobody does.
//!
//! A follower's reader ends only once the digest matched, and fails if it did not. That
//! is not enough for HTTP: a response with a `Content-Length` is complete for the client
//! as soon as its last byte is sent, before the body's end (or error) is even polled. So
//! a followed body is passed on one chunk late: its last chunk goes out only after the
//! reader reached its verified end, and on a mismatch the body ends in an error instead
//! (the connection is cut short), never with all its bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use crate::digest::Digest;
use crate::registry::{Credentials, Reference, RegistryClient};
use crate::store::{BlobGuard, BlobWriter, Follower};

/// Read size of a cached or landing file.
const CHUNK: usize = 256 * 1024;

/// The bytes of a response body; an `Err` ends the response without its clean end.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Bytes `start..start + len` of a cached blob; the guard (its pin) lives as long as the
/// stream, so purge and eviction leave the file alone while it is being served.
pub async fn cached(guard: BlobGuard, start: u64, len: u64) -> Result<BodyStream, io::Error> {
    let mut file = tokio::fs::File::open(guard.path()).await?;
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let stream = ReaderStream::with_capacity(file.take(len), CHUNK).map(move |chunk| {
        let _pinned = &guard;
        chunk
    });
    Ok(Box::pin(stream))
}

/// The whole blob as it lands, held one chunk back until it verified. The follower (its
/// pin, and the download's reason to go on) lives as long as the stream.
pub fn followed(follower: Follower) -> BodyStream {
    let reader = follower.reader(CancellationToken::new());
    let stream = ReaderStream::with_capacity(reader, CHUNK).map(move |chunk| {
        let _following = &follower;
        chunk
    });
    Box::pin(OneChunkLate {
        inner: Box::pin(stream),
        held: None,
    })
}

/// Starts downloading blob `digest` into `writer` (the cache's single flight for it),
/// with the client's own credentials, and answers a follower of it. The download stops
/// when nobody follows it any more; its outcome reaches the followers through the writer.
pub fn start_download(
    registry: RegistryClient,
    reference: Reference,
    digest: Digest,
    size: u64,
    creds: Option<Credentials>,
    mut writer: BlobWriter,
) -> Follower {
    // Made before the download starts: a download without followers stops.
    let follower = writer.follow();
    tokio::spawn(async move {
        let unfollowed = writer.unfollowed();
        let never = CancellationToken::new();
        let copied = tokio::select! {
            biased;
            () = unfollowed => None,
            copied = registry.copy_blob(
                &reference, &digest, Some(size), creds.as_ref(), &mut writer, 0, &|_| {}, &never,
            ) => Some(copied),
        };
        match copied {
            None => tracing::debug!(%digest, "mirror download stopped: nobody follows it"),
            Some(Err(err)) => {
                tracing::warn!(%digest, repository = %reference.name(), error = %err, "mirror download failed");
                writer.abandon(&err);
            }
            Some(Ok(_)) => {
                // `commit` syncs and checks the digest and size; followers hear the verdict.
                if let Err(err) = writer.commit().await {
                    tracing::warn!(%digest, repository = %reference.name(), error = %err, "mirror download refused");
                }
            }
        }
    });
    follower
}

/// Passes a stream on one chunk late: a chunk goes out once the next one (or the clean
/// end) came, so the last chunk waits for the end, and an error drops it.
struct OneChunkLate {
    inner: BodyStream,
    held: Option<Bytes>,
}

impl Stream for OneChunkLate {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => match this.held.replace(chunk) {
                    Some(previous) => return Poll::Ready(Some(Ok(previous))),
                    None => continue,
                },
                Some(Err(e)) => {
                    this.held = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => return Poll::Ready(this.held.take().map(Ok)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn late(items: Vec<Result<&'static str, &'static str>>) -> Vec<Result<String, String>> {
        let inner = futures_util::stream::iter(items.into_iter().map(|i| {
            i.map(|s| Bytes::from_static(s.as_bytes()))
                .map_err(io::Error::other)
        }));
        let stream = OneChunkLate {
            inner: Box::pin(inner),
            held: None,
        };
        stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|r| {
                r.map(|b| String::from_utf8(b.to_vec()).unwrap())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[tokio::test]
    async fn the_last_chunk_waits_for_the_clean_end_and_an_error_drops_it() {
        assert_eq!(
            late(vec![Ok("a"), Ok(""), Ok("b"), Ok("c")]).await,
            vec![Ok("a".into()), Ok("b".into()), Ok("c".into())]
        );
        assert_eq!(
            late(vec![Ok("a"), Ok("b"), Err("digest mismatch")]).await,
            vec![Ok("a".into()), Err("digest mismatch".into())]
        );
        assert_eq!(late(vec![Err("x")]).await, vec![Err("x".into())]);
        assert_eq!(late(vec![]).await, vec![]);
    }
}
