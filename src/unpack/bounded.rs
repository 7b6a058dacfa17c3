//! A bound on the bytes the tar reader may take for one entry's headers.
//!
//! astral-tokio-tar (0.7, the newest) folds GNU long names and links (`L`, `K`), PAX
//! records (`x`) and old GNU sparse maps into the entry it returns, reading each into
//! memory whatever size its header declares: a 128 MiB long name, 0.1 MB once gzipped,
//! cost the daemon 260-520 MiB. Go's archive/tar refuses extension data over 1 MiB
//! (`maxSpecialFileSize`); the crate has no such limit, so this reader sits between the
//! decompressor and the archive and counts what the archive reads while it is armed.
//!
//! `apply` arms it around each `entries.next()`, the only call in which the crate reads
//! headers and extension data, and drains the previous entry's data before, so what is
//! counted is exactly one entry's header blocks, extension data and the padding before
//! them. Past [`HEADER_BYTES_MAX`] the read fails and [`HeaderBudget::exceeded`] says why.
//! The reader parses no tar itself, so it cannot fall out of step with the crate's
//! framing (PAX `size` overrides, base-256 sizes, sparse extension blocks stay the
//! crate's business). Not for: bounding file contents, which stream through unarmed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

/// The most data one extension header (`L`, `K`, `x`, `g`) may carry: Go's
/// `maxSpecialFileSize`.
pub(super) const EXTENSION_MAX: u64 = 1 << 20;

/// The most archive bytes one entry's headers may take: one extension's worth of data,
/// plus room for the blocks around it (the member's and extension headers, padding, an
/// old GNU sparse map of over a hundred extension blocks).
pub(super) const HEADER_BYTES_MAX: u64 = EXTENSION_MAX + 64 * 1024;

/// The shared switch and counter: `apply` holds one handle, the reader the other.
#[derive(Clone, Debug, Default)]
pub(super) struct HeaderBudget(Arc<State>);

#[derive(Debug, Default)]
struct State {
    armed: AtomicBool,
    left: AtomicU64,
    exceeded: AtomicBool,
}

impl HeaderBudget {
    /// From now on, the archive may read [`HEADER_BYTES_MAX`] bytes, no more.
    pub(super) fn arm(&self) {
        self.0.left.store(HEADER_BYTES_MAX, Ordering::Relaxed);
        self.0.armed.store(true, Ordering::Relaxed);
    }

    /// Reads are unbounded again (file contents).
    pub(super) fn disarm(&self) {
        self.0.armed.store(false, Ordering::Relaxed);
    }

    /// True once a read failed for want of budget: the archive's error is then ours.
    pub(super) fn exceeded(&self) -> bool {
        self.0.exceeded.load(Ordering::Relaxed)
    }
}

/// `inner`, with reads bounded by `budget` while it is armed.
pub(super) struct Bounded<R> {
    inner: R,
    budget: HeaderBudget,
}

impl<R> Bounded<R> {
    pub(super) fn new(inner: R, budget: HeaderBudget) -> Bounded<R> {
        Bounded { inner, budget }
    }

    pub(super) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Bounded<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let state = &this.budget.0;
        if !state.armed.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let left = state.left.load(Ordering::Relaxed);
        if left == 0 {
            state.exceeded.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other(format!(
                "the headers of one entry take over {HEADER_BYTES_MAX} bytes"
            ))));
        }
        // Never read past the budget, so memory is bounded by it, not by the caller's
        // buffer.
        let want = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(want));
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        buf.advance(n);
        state.left.store(left - n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn unarmed_reads_are_unbounded_and_armed_ones_stop_at_the_budget() {
        let data = vec![7u8; (3 * HEADER_BYTES_MAX) as usize];
        let budget = HeaderBudget::default();
        let mut reader = Bounded::new(&data[..], budget.clone());
        let mut first = vec![0u8; (2 * HEADER_BYTES_MAX) as usize];
        reader.read_exact(&mut first).await.unwrap();

        budget.arm();
        let mut rest = Vec::new();
        let err = reader.read_to_end(&mut rest).await.unwrap_err();
        assert!(err.to_string().contains("headers of one entry"), "{err}");
        assert_eq!(rest.len() as u64, HEADER_BYTES_MAX);
        assert!(budget.exceeded());
    }

    #[tokio::test]
    async fn arming_again_gives_a_fresh_budget() {
        let data = vec![1u8; (3 * HEADER_BYTES_MAX) as usize];
        let budget = HeaderBudget::default();
        let mut reader = Bounded::new(&data[..], budget.clone());
        for _ in 0..3 {
            budget.arm();
            let mut block = vec![0u8; HEADER_BYTES_MAX as usize];
            reader.read_exact(&mut block).await.unwrap();
            budget.disarm();
        }
        assert!(!budget.exceeded());
    }
}
