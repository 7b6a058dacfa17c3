//! Following a blob while it is written: a reader that yields the bytes of a download as
//! they land in its temporary file, and at its end, the verdict on them.
//!
//! The writer ([`super::BlobWriter`]) publishes, on a `watch` channel, how many bytes are
//! in the file (written, not yet synced) and then its outcome: verified, committed, or
//! failed. A [`Follower`] holds a read-only descriptor of that file (so the rename into
//! the cache, or the removal of a bad file, changes nothing for it) and `pread`s up to the
//! published offset, then waits for more: no copy through channels, the page cache is
//! the buffer, and any number of followers (the job that downloads, another job pulling
//! the same image, later an HTTP client of the pull-through registry) read one download.
//!
//! The rules a follower can rely on:
//! - the writer only appends: bytes below a published offset never change (a resumed
//!   download appends at the offset; a server that ignores `Range` has its repeated bytes
//!   skipped, `registry::blob`), so every follower reads the very bytes that were hashed;
//! - a reader reaches its end only once the digest (and declared size) matched; a
//!   mismatch, or a download that stopped, is a read error (once the reader has read
//!   what had landed when it last looked). Whatever was read before that is unverified:
//!   the caller must not let it escape (a staging tree is discarded);
//! - [`Follower::outcome`] is the blob committed and pinned, or the writer's error.
//!
//! Not for: deciding who downloads (that is `Store::acquire_or_follow`'s single flight).

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin as StdPin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, ReusableBoxFuture, WaitForCancellationFutureOwned};

use super::state::Pin;
use super::{BlobGuard, StoreError};
use crate::digest::Digest;
use crate::error::ErrorCode;

/// Followers are woken at most once per this many landed bytes (and at a flush), or once
/// [`PUBLISH_AFTER`] passed since they were last told: waking a reader's thread for every
/// HTTP chunk costs it a scheduling round each, while a slow download must still flow (a
/// follower lags it by at most this many bytes or that long, whichever comes first).
pub(super) const PUBLISH_STEP: u64 = 256 * 1024;
pub(super) const PUBLISH_AFTER: Duration = Duration::from_millis(50);

/// Where a blob's download stands, as its followers see it.
#[derive(Clone, Debug)]
pub(super) enum Landed {
    /// Bytes `0..n` are in the file and will not change.
    Writing(u64),
    /// All `n` bytes are in the file and matched the digest; the commit (fsync, rename,
    /// row) is under way. Readers may end here: the bytes are verified.
    Verified(u64),
    /// Committed into place at `path`.
    Committed { path: PathBuf, size: u64 },
    /// The download or its verification failed, or it stopped before its end.
    Failed { code: &'static str, message: String },
}

impl Landed {
    /// Bytes a reader may read, and whether they are all there is (verified).
    fn readable(&self) -> (u64, bool) {
        match self {
            Landed::Writing(n) => (*n, false),
            Landed::Verified(n) | Landed::Committed { size: n, .. } => (*n, true),
            Landed::Failed { .. } => (0, false),
        }
    }

    fn is_final(&self) -> bool {
        matches!(self, Landed::Committed { .. } | Landed::Failed { .. })
    }
}

/// The writer's side: the channel and the file followers read. Shared by the writer and
/// the store's single-flight entry, so another task can start following; when the last
/// holder drops it before an outcome was published, followers are told the download
/// stopped.
pub(super) struct Landing {
    digest: Digest,
    file: Arc<File>,
    tx: watch::Sender<Landed>,
    /// When followers were last told of landed bytes.
    told_at: std::sync::Mutex<Instant>,
}

impl Landing {
    pub fn new(digest: Digest, file: Arc<File>) -> Arc<Landing> {
        let (tx, _) = watch::channel(Landed::Writing(0));
        let told_at = std::sync::Mutex::new(Instant::now());
        Arc::new(Landing {
            digest,
            file,
            tx,
            told_at,
        })
    }

    /// Bytes `0..n` are in the file. Followers are told only every [`PUBLISH_STEP`]
    /// bytes, [`PUBLISH_AFTER`] after they were last told, or with `all` (the writer was
    /// flushed): each telling may wake a thread.
    pub fn landed(&self, n: u64, all: bool) {
        let mut told_at = self.told_at.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let late = now.duration_since(*told_at) >= PUBLISH_AFTER;
        let told = self.tx.send_if_modified(|l| match l {
            Landed::Writing(told) if n > *told && (all || late || n - *told >= PUBLISH_STEP) => {
                *l = Landed::Writing(n);
                true
            }
            _ => false,
        });
        if told {
            *told_at = now;
        }
    }

    pub fn verified(&self, n: u64) {
        self.tx.send_modify(|l| *l = Landed::Verified(n));
    }

    pub fn committed(&self, path: PathBuf, size: u64) {
        self.tx
            .send_modify(|l| *l = Landed::Committed { path, size });
    }

    /// Publishes the failure unless an outcome is out already.
    pub fn failed(&self, code: &'static str, message: String) {
        self.tx.send_if_modified(|l| {
            if l.is_final() {
                return false;
            }
            *l = Landed::Failed { code, message };
            true
        });
    }

    /// A follower from the start of the file; `pin` (for cache blobs) becomes its guard's.
    pub fn follow(&self, declared: Option<u64>, pin: Option<Pin>) -> Follower {
        Follower {
            digest: self.digest.clone(),
            file: self.file.clone(),
            rx: self.tx.subscribe(),
            declared,
            pin,
        }
    }

    /// Resolves once nobody follows any more (every [`Follower`] and reader dropped).
    pub fn unfollowed(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let this = Arc::clone(self);
        async move { this.tx.closed().await }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        let message = format!("blob {}: its download stopped before its end", self.digest);
        self.failed("io_error", message);
    }
}

/// One follower of a blob being written: readers over its bytes, and its outcome.
///
/// While it (or a reader made from it) lives, the download it follows is wanted: a
/// download whose followers are all gone may stop (see `jobs::fetch`).
pub struct Follower {
    digest: Digest,
    file: Arc<File>,
    rx: watch::Receiver<Landed>,
    /// The size this follower's manifest declares, checked against the outcome.
    declared: Option<u64>,
    pin: Option<Pin>,
}

impl Follower {
    /// A reader of the blob from its first byte: it yields bytes as they land, ends only
    /// once they are verified, and fails with the writer's error (or `cancel`'s, once it
    /// fires while the reader waits for bytes).
    ///
    /// Reads are `pread`s of the page cache on the polling thread (at most the caller's
    /// buffer at a time): poll it from a blocking-pool thread (through `SyncIoBridge`), or
    /// accept a short page-cache read on a runtime thread.
    pub fn reader(&self, cancel: CancellationToken) -> BlobReader {
        let mut rx = self.rx.clone();
        let current = rx.borrow_and_update().clone();
        BlobReader {
            digest: self.digest.clone(),
            file: self.file.clone(),
            pos: 0,
            current,
            next: ReusableBoxFuture::new(changed(rx)),
            cancelled: Box::pin(cancel.cancelled_owned()),
        }
    }

    /// Waits for the writer's outcome: the blob committed and pinned (unpinned outside the
    /// cache), or the error that ended the download. Cancel-safe.
    pub async fn outcome(mut self) -> Result<BlobGuard, StoreError> {
        let waited = self.rx.wait_for(Landed::is_final).await.map(|l| l.clone());
        // Err: the writer is gone, and its `Drop` published an outcome before it went.
        let landed = waited.unwrap_or_else(|_| self.rx.borrow().clone());
        match landed {
            Landed::Committed { path, size } => {
                if let Some(expected) = self.declared.filter(|&d| d != size) {
                    return Err(StoreError::SizeMismatch {
                        digest: self.digest,
                        expected,
                        actual: size,
                    });
                }
                Ok(BlobGuard::new(self.digest, path, size, self.pin))
            }
            Landed::Failed { code, message } => Err(StoreError::Followed { code, message }),
            other => Err(StoreError::Followed {
                code: "internal_error",
                message: format!("blob {}: download ended as {other:?}", self.digest),
            }),
        }
    }
}

impl fmt::Debug for Follower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("digest", &self.digest)
            .field("landed", &*self.rx.borrow())
            .finish_non_exhaustive()
    }
}

type Changed = (Result<(), watch::error::RecvError>, watch::Receiver<Landed>);

async fn changed(mut rx: watch::Receiver<Landed>) -> Changed {
    let result = rx.changed().await;
    (result, rx)
}

/// An `AsyncRead` over a blob being written; see [`Follower::reader`].
pub struct BlobReader {
    digest: Digest,
    file: Arc<File>,
    pos: u64,
    /// The last state seen.
    current: Landed,
    /// The next change of state (armed while the reader lives).
    next: ReusableBoxFuture<'static, Changed>,
    cancelled: StdPin<Box<WaitForCancellationFutureOwned>>,
}

impl AsyncRead for BlobReader {
    fn poll_read(
        self: StdPin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Landed::Failed { code, message } = &this.current {
                return Poll::Ready(Err(followed_error(code, message)));
            }
            let (readable, verified) = this.current.readable();
            if this.pos < readable {
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                let want = usize::try_from(readable - this.pos)
                    .unwrap_or(usize::MAX)
                    .min(buf.remaining());
                let into = &mut buf.initialize_unfilled()[..want];
                let n = this.file.read_at(into, this.pos)?;
                if n == 0 {
                    // The writer said these bytes were in the file: they are not.
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "blob {}: file ends at {} of {readable} landed bytes",
                            this.digest, this.pos
                        ),
                    )));
                }
                buf.advance(n);
                this.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
            if verified {
                return Poll::Ready(Ok(()));
            }
            // Caught up with the writer: wait for more, or for the caller to give up.
            if this.cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::other(format!(
                    "blob {}: reading cancelled",
                    this.digest
                ))));
            }
            let (result, mut rx) = ready!(this.next.poll(cx));
            this.current = match result {
                Ok(()) => rx.borrow_and_update().clone(),
                // The writer and the single-flight entry are gone: whatever they left
                // (`Landing`'s `Drop` leaves an outcome) is final.
                Err(_) => rx.borrow().clone(),
            };
            if result.is_err() && !this.current.is_final() {
                this.current = Landed::Failed {
                    code: "io_error",
                    message: format!("blob {}: its download stopped", this.digest),
                };
            }
            this.next.set(changed(rx));
        }
    }
}

fn followed_error(code: &str, message: &str) -> io::Error {
    let kind = if code == "digest_mismatch" {
        io::ErrorKind::InvalidData
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, message.to_string())
}

/// `err` as a followers' outcome.
pub(super) fn failure(err: &StoreError) -> (&'static str, String) {
    (err.code(), err.to_string())
}
