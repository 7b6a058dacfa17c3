//! The temporary file of a blob being written: bytes handed to `pwrite`s on the blocking
//! pool, one at a time, and what has landed in the file published to followers.
//!
//! Unlike `tokio::fs::File`, this knows when each write is done, which is what a follower
//! needs: an offset is published only once the bytes below it are in the file (written,
//! not synced; the sync is the commit's). Bytes that arrive while a write is under way
//! wait in one buffer of at most [`PENDING_MAX`] bytes and go in the next write, so a fast
//! network makes few large writes and a slow one makes them as the bytes come. The file
//! is only appended to. Not for: hashing (the writer's `HashingWriter` wraps this).

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;
use tokio::task::JoinHandle;

use super::follow::Landing;

/// Bytes that may wait for the write under way before `poll_write` waits too.
const PENDING_MAX: usize = 256 * 1024;

type Written = (Vec<u8>, io::Result<()>);

pub(super) struct FileSink {
    file: Arc<File>,
    landing: Arc<Landing>,
    /// Bytes accepted, not yet handed to a write.
    pending: Vec<u8>,
    /// The write under way; its buffer comes back with its result, for reuse.
    inflight: Option<JoinHandle<Written>>,
    spare: Vec<u8>,
    /// Bytes handed to writes (the next write's offset).
    queued: u64,
}

impl FileSink {
    pub fn new(file: Arc<File>, landing: Arc<Landing>) -> FileSink {
        FileSink {
            file,
            landing,
            pending: Vec::new(),
            inflight: None,
            spare: Vec::new(),
            queued: 0,
        }
    }

    /// Syncs the file's data (after a flush). Runs on the blocking pool.
    pub async fn sync(&self) -> io::Result<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(io::Error::other)?
    }

    /// Takes the result of the write under way, if it is done.
    fn poll_reap(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(inflight) = self.inflight.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let joined = ready!(Pin::new(inflight).poll(cx));
        self.inflight = None;
        let (mut spent, result) = joined.map_err(io::Error::other)?;
        result?;
        spent.clear();
        self.spare = spent;
        Poll::Ready(Ok(()))
    }

    /// Hands the pending bytes to a write, unless one is under way.
    fn start(&mut self) {
        if self.inflight.is_some() || self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        let (file, landing, at) = (self.file.clone(), self.landing.clone(), self.queued);
        self.queued += chunk.len() as u64;
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let result = file.write_all_at(&chunk, at);
            if result.is_ok() {
                // Published by the write itself, as soon as its bytes are in the file
                // (one write at a time, so offsets only grow), whenever the writer's
                // owner polls it next.
                landing.landed(at + chunk.len() as u64, false);
            }
            (chunk, result)
        }));
    }
}

impl AsyncWrite for FileSink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_reap(cx) {
            Poll::Ready(result) => {
                result?;
                this.start();
            }
            // Too much waits already: wait for the write under way (its waker is set).
            Poll::Pending if this.pending.len() >= PENDING_MAX => return Poll::Pending,
            Poll::Pending => {}
        }
        let n = buf.len().min(PENDING_MAX - this.pending.len());
        this.pending.extend_from_slice(&buf[..n]);
        this.start();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_reap(cx))?;
            if this.pending.is_empty() {
                // Everything is in the file: followers hear of the last bytes too.
                this.landing.landed(this.queued, true);
                return Poll::Ready(Ok(()));
            }
            this.start();
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
