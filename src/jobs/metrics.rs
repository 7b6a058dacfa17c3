//! Job durations, as a Prometheus histogram per kind and final status.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::model::{JobKind, JobStatus};

/// Upper bounds of the duration buckets, in seconds.
pub const BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];

/// One histogram: cumulative-ready bucket counts, sum and count.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

#[derive(Default)]
pub struct JobMetrics {
    durations: Mutex<HashMap<(JobKind, JobStatus), Histogram>>,
}

impl JobMetrics {
    pub fn observe(&self, kind: JobKind, status: JobStatus, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        let h = map.entry((kind, status)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Histograms by (kind, status), non-cumulative buckets already cumulated.
    pub fn snapshot(&self) -> Vec<((JobKind, JobStatus), Histogram)> {
        let map = self.durations.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, h)| (*k, h.clone())).collect();
        v.sort_by_key(|((k, s), _)| (k.as_str(), s.as_str()));
        v
    }
}
