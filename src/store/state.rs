//! The cache's in-memory bookkeeping: pins, per-digest work in progress, counters.
//!
//! All of it sits behind one `std::sync::Mutex` that is held for a few map operations
//! and never across an `.await`; waiting happens on a per-digest `watch` channel handed
//! out under the lock and closed when the work ends. The rule that makes purge and
//! eviction safe lives here: a digest is claimed by at most one worker (a fetch or a
//! delete), and a delete claims only a digest nobody pins, both checked under the lock.
//! (Followers of a download pin its digest while the fetch holds it: a pin taken then
//! outlives the fetch's commit, so purge cannot take the blob from under them.)
//! Not for: anything on disk or in SQLite (see `table.rs`, `writer.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use tokio::sync::watch;

use super::StoreCounters;
use super::follow::Landing;
use crate::digest::Digest;

/// What the store shares between its clones, guards and writers.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub db: SqlitePool,
    pub max_bytes: Option<u64>,
    pub counters: Counters,
    /// One purge or eviction pass at a time, so two passes do not both free the same
    /// excess. Never taken by `acquire`.
    pub maintenance: tokio::sync::Mutex<()>,
    /// Last `last_used` handed out, in unix milliseconds; see [`Shared::now_millis`].
    clock: AtomicI64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Readers per digest; absent means zero.
    pins: HashMap<Digest, u64>,
    /// The one task working on a digest's file and row right now.
    busy: HashMap<Digest, Busy>,
}

struct Busy {
    work: Work,
    /// Dropping it (with the map entry) wakes every waiter; so does a send, when the
    /// fetch's download becomes one to follow.
    done: watch::Sender<()>,
    /// A fetch's download, once its writer exists: others may follow it instead of waiting.
    landing: Option<Arc<Landing>>,
}

/// What the task that claimed a digest is doing with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Work {
    Fetch,
    Delete,
}

/// A ticket to wait for another task's work on a digest.
pub(super) struct Wait {
    pub work: Work,
    /// The download to follow, when the work is a fetch whose writer exists.
    pub landing: Option<Arc<Landing>>,
    done: watch::Receiver<()>,
}

impl Wait {
    /// Returns once the claim that handed out this ticket is released, or its download
    /// can be followed (look again).
    pub async fn finished(mut self) {
        // Err means the sender is gone, which is exactly the signal.
        let _ = self.done.changed().await;
    }
}

/// One reader's hold on a blob: while any pin lives, the file and row stay.
pub(super) struct Pin {
    shared: Arc<Shared>,
    digest: Digest,
}

impl Clone for Pin {
    fn clone(&self) -> Self {
        Shared::pin(&self.shared, &self.digest)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(n) = state.pins.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                state.pins.remove(&self.digest);
            }
        }
    }
}

/// The exclusive right to change a digest's file and row; dropping it wakes waiters.
pub(super) struct Slot {
    shared: Arc<Shared>,
    digest: Digest,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let busy = self.shared.lock().busy.remove(&self.digest);
        // Dropping the sender outside the lock wakes the waiters.
        drop(busy);
    }
}

impl Busy {
    fn wait(&self) -> Wait {
        Wait {
            work: self.work,
            landing: self.landing.clone(),
            done: self.done.subscribe(),
        }
    }
}

impl Shared {
    pub fn new(dir: PathBuf, db: SqlitePool, max_bytes: Option<u64>, clock: i64) -> Self {
        Shared {
            dir,
            db,
            max_bytes,
            counters: Counters::default(),
            maintenance: tokio::sync::Mutex::new(()),
            clock: AtomicI64::new(clock),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pin on `digest`, unless a task is fetching or deleting it: then a ticket to wait.
    pub fn pin_unless_busy(this: &Arc<Self>, digest: &Digest) -> Result<Pin, Wait> {
        let mut state = this.lock();
        if let Some(busy) = state.busy.get(digest) {
            return Err(busy.wait());
        }
        *state.pins.entry(digest.clone()).or_default() += 1;
        Ok(Pin {
            shared: Arc::clone(this),
            digest: digest.clone(),
        })
    }

    /// A pin on `digest` regardless of claims: for the holder of the digest's slot, or
    /// of a pin on it already.
    pub fn pin(this: &Arc<Self>, digest: &Digest) -> Pin {
        *this.lock().pins.entry(digest.clone()).or_default() += 1;
        Pin {
            shared: Arc::clone(this),
            digest: digest.clone(),
        }
    }

    /// The slot of `digest` for a fetch, unless another task holds it: then a ticket to wait.
    pub fn claim_fetch(this: &Arc<Self>, digest: &Digest) -> Result<Slot, Wait> {
        let mut state = this.lock();
        if let Some(busy) = state.busy.get(digest) {
            return Err(busy.wait());
        }
        Ok(Self::claim(this, &mut state, digest, Work::Fetch))
    }

    /// The slot of `digest` for deleting it, if nobody pins or holds it right now.
    pub fn claim_unpinned(this: &Arc<Self>, digest: &Digest) -> Option<Slot> {
        let mut state = this.lock();
        if state.pins.contains_key(digest) || state.busy.contains_key(digest) {
            return None;
        }
        Some(Self::claim(this, &mut state, digest, Work::Delete))
    }

    /// Lets others follow the download of `digest`, whose fetch slot the caller holds.
    pub fn set_landing(this: &Arc<Self>, digest: &Digest, landing: Arc<Landing>) {
        if let Some(busy) = this.lock().busy.get_mut(digest) {
            busy.landing = Some(landing);
            busy.done.send_replace(());
        }
    }

    fn claim(this: &Arc<Self>, state: &mut State, digest: &Digest, work: Work) -> Slot {
        let (done, _) = watch::channel(());
        let busy = Busy {
            work,
            done,
            landing: None,
        };
        state.busy.insert(digest.clone(), busy);
        Slot {
            shared: Arc::clone(this),
            digest: digest.clone(),
        }
    }

    #[cfg(test)]
    pub fn pins(&self, digest: &Digest) -> u64 {
        self.lock().pins.get(digest).copied().unwrap_or(0)
    }

    /// Unix milliseconds for `last_used`, strictly increasing within the process so
    /// that LRU order is exact even for uses within one millisecond.
    pub fn now_millis(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let prev = self
            .clock
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |prev| {
                Some(wall.max(prev.saturating_add(1)))
            })
            .unwrap_or_else(|prev| prev);
        wall.max(prev.saturating_add(1))
    }
}

/// The live counters behind [`StoreCounters`].
#[derive(Default)]
pub(super) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub shared: AtomicU64,
    pub evictions: AtomicU64,
    pub bytes_written: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StoreCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreCounters {
            hits: get(&self.hits),
            misses: get(&self.misses),
            shared: get(&self.shared),
            evictions: get(&self.evictions),
            bytes_written: get(&self.bytes_written),
        }
    }
}
