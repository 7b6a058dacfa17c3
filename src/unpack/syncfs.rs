//! Flushing finished trees to disk with as few `syncfs` calls as their file system needs:
//! concurrent pulls finishing together share one.
//!
//! A tree is durable once a `syncfs` that *started after its last write* has returned. So
//! each caller takes a ticket when its writes are done; one `syncfs` runs at a time per file
//! system, and covers every ticket taken before it started. A caller whose ticket an ended
//! call covered returns at once; the others wait for the running one and then start the
//! next, which covers them all. Eight pulls ending together cost two calls, not eight (each
//! of which flushes everyone's dirty pages anyway). Per file system, never process-wide.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// One file system's flushes.
#[derive(Default)]
struct FsFlush {
    /// Tickets taken so far.
    taken: AtomicU64,
    /// The highest ticket a finished `syncfs` covered; held while one runs.
    covered: tokio::sync::Mutex<u64>,
    /// `syncfs` calls made.
    calls: AtomicU64,
}

static FILE_SYSTEMS: LazyLock<Mutex<HashMap<u64, Arc<FsFlush>>>> = LazyLock::new(Default::default);

/// `syncfs` calls made for finished trees so far, on every file system (`/metrics`).
pub fn flushes() -> u64 {
    let map = FILE_SYSTEMS.lock().unwrap_or_else(|e| e.into_inner());
    map.values().map(|f| f.calls.load(Ordering::Relaxed)).sum()
}

/// Flushes the file system `fd` is on, covering every write made before the call.
pub async fn syncfs<F: AsFd + Send + 'static>(fd: F) -> std::io::Result<()> {
    let dev = rustix::fs::fstat(&fd)?.st_dev;
    let flush = {
        let mut map = FILE_SYSTEMS.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(dev).or_default().clone()
    };
    flush.flush(fd).await
}

impl FsFlush {
    async fn flush<F: AsFd + Send + 'static>(&self, fd: F) -> std::io::Result<()> {
        let ticket = self.taken.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.covered.lock().await;
        if *covered >= ticket {
            return Ok(());
        }
        // Every ticket taken up to now was taken after its writes: this call covers them.
        let upto = self.taken.load(Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || rustix::fs::syncfs(&fd))
            .await
            .map_err(std::io::Error::other)??;
        *covered = upto;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_together_share_calls() {
        let dir = tempfile::tempdir().unwrap();
        let flush = Arc::new(FsFlush::default());
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (flush, fd) = (flush.clone(), std::fs::File::open(dir.path()).unwrap());
                tokio::spawn(async move { flush.flush(fd).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        // The first call started before the others took tickets; the second covers them.
        assert_eq!(flush.calls.load(Ordering::Relaxed), 2);
        assert_eq!(*flush.covered.lock().await, 8);
        // One more caller, later: a call of its own.
        flush
            .flush(std::fs::File::open(dir.path()).unwrap())
            .await
            .unwrap();
        assert_eq!(flush.calls.load(Ordering::Relaxed), 3);
    }
}
