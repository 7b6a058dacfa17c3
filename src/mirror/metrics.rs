//! The mirror's counters for `/metrics`, by upstream: requests, cache hits and misses,
//! bytes served. At most [`MAX_UPSTREAMS`] upstreams get a series of their own (a client
//! names the upstream, so the label set must be bounded); the rest count as `other`.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

pub const MAX_UPSTREAMS: usize = 64;
const OTHER: &str = "other";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_served: u64,
}

#[derive(Default)]
pub struct MirrorMetrics {
    by_upstream: Mutex<BTreeMap<String, UpstreamCounts>>,
}

impl MirrorMetrics {
    fn add(&self, upstream: &str, f: impl FnOnce(&mut UpstreamCounts)) {
        let mut map = self
            .by_upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = if map.contains_key(upstream) || map.len() < MAX_UPSTREAMS {
            upstream
        } else {
            OTHER
        };
        f(map.entry(key.to_string()).or_default());
    }

    pub fn request(&self, upstream: &str) {
        self.add(upstream, |c| c.requests += 1);
    }
    pub fn hit(&self, upstream: &str) {
        self.add(upstream, |c| c.hits += 1);
    }
    pub fn miss(&self, upstream: &str) {
        self.add(upstream, |c| c.misses += 1);
    }
    pub fn served(&self, upstream: &str, n: u64) {
        self.add(upstream, |c| c.bytes_served += n);
    }

    /// Every upstream's counts, by name.
    pub fn snapshot(&self) -> Vec<(String, UpstreamCounts)> {
        let map = self
            .by_upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_past_the_limit_count_as_other() {
        let m = MirrorMetrics::default();
        for i in 0..MAX_UPSTREAMS + 5 {
            m.request(&format!("r{i}.example"));
        }
        m.served("r0.example", 10);
        let snap = m.snapshot();
        assert_eq!(snap.len(), MAX_UPSTREAMS + 1);
        let other = snap.iter().find(|(k, _)| k == OTHER).unwrap().1;
        assert_eq!(other.requests, 5);
        let r0 = snap.iter().find(|(k, _)| k == "r0.example").unwrap().1;
        assert_eq!((r0.requests, r0.bytes_served), (1, 10));
    }
}
