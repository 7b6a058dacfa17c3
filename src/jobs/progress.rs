//! Progress of a running job: cheap to update from any task (atomics), published to
//! listeners a few times a second and to the job's row about once a second.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::model::{JobEvent, LayerProgress, Progress};
use super::table;

/// Shared counters of one job.
#[derive(Default)]
pub struct Tracker {
    phase: Mutex<String>,
    layers_done: AtomicU64,
    layers_total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    layers: Mutex<Vec<LayerProgress>>,
}

impl Tracker {
    pub fn set_phase(&self, phase: &str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase.to_string();
    }
    pub fn set_totals(&self, layers: u64, bytes: u64) {
        self.layers_total.store(layers, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }
    /// Declares the job's layers (digest, size), all `waiting`, and the totals.
    pub fn set_layers(&self, layers: impl IntoIterator<Item = (String, u64)>) {
        let layers: Vec<LayerProgress> = layers
            .into_iter()
            .map(|(digest, size)| LayerProgress {
                digest,
                size,
                bytes_done: 0,
                state: "waiting".into(),
            })
            .collect();
        self.set_totals(layers.len() as u64, layers.iter().map(|l| l.size).sum());
        *self.lock_layers() = layers;
    }
    /// Declares more layers (digest, size), `waiting`, after those of [`set_layers`]
    /// (a copy's referrers, found once the image is in), and adds them to the totals.
    ///
    /// [`set_layers`]: Tracker::set_layers
    pub fn append_layers(&self, layers: impl IntoIterator<Item = (String, u64)>) {
        let mut all = self.lock_layers();
        for (digest, size) in layers {
            self.layers_total.fetch_add(1, Ordering::Relaxed);
            self.bytes_total.fetch_add(size, Ordering::Relaxed);
            all.push(LayerProgress {
                digest,
                size,
                bytes_done: 0,
                state: "waiting".into(),
            });
        }
    }
    fn lock_layers(&self) -> std::sync::MutexGuard<'_, Vec<LayerProgress>> {
        self.layers.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// `n` more bytes of layer `index` transferred.
    pub fn add_bytes(&self, index: usize, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        if let Some(l) = self.lock_layers().get_mut(index) {
            l.bytes_done += n;
        }
    }
    pub fn layer_state(&self, index: usize, state: &str) {
        if let Some(l) = self.lock_layers().get_mut(index) {
            l.state = state.to_string();
        }
    }
    /// Layer `index` is finished (`state`: `done`, `pushed`, …).
    pub fn layer_done(&self, index: usize, state: &str) {
        self.layers_done.fetch_add(1, Ordering::Relaxed);
        self.layer_state(index, state);
    }
    pub fn snapshot(&self) -> Progress {
        Progress {
            phase: self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            layers_done: self.layers_done.load(Ordering::Relaxed),
            layers_total: self.layers_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            layers: self.lock_layers().clone(),
        }
    }
}

/// Publishes `tracker` until `stop` is cancelled, then once more.
pub async fn report(
    id: String,
    tracker: Arc<Tracker>,
    db: SqlitePool,
    events: broadcast::Sender<JobEvent>,
    stop: CancellationToken,
) {
    let mut last_sent = Progress::default();
    let mut last_saved = Progress::default();
    let mut ticks = 0u32;
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_millis(250)) => false,
        };
        ticks += 1;
        let now = tracker.snapshot();
        if now != last_sent {
            let _ = events.send(JobEvent::Progress {
                id: id.clone(),
                progress: now.clone(),
            });
            last_sent = now.clone();
        }
        if (stopping || ticks.is_multiple_of(4)) && now != last_saved {
            if let Err(e) = table::set_progress(&db, &id, &now).await {
                tracing::warn!(job = %id, error = %e, "saving progress");
            }
            last_saved = now;
        }
        if stopping {
            return;
        }
    }
}
