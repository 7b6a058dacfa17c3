//! Mirrors caught serving wrong bytes: a bounded, expiring memory of (mirror, digest)
//! pairs whose bytes did not match the digest, so the next download of that blob skips
//! that mirror and asks the next host (the origin last).
//!
//! A mismatch is found only at a blob's end, once its bytes went to the sink (and to any
//! extraction following it), so the download that found it fails; what asked again (the
//! pull's one retry, or the next job) is then served by another host. Not for: hosts that
//! fail outright (connection, status), which are skipped at once by `copy_blob`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::digest::Digest;

/// How long a mirror stays skipped for one blob.
const BLAME_FOR: Duration = Duration::from_secs(15 * 60);
/// Pairs remembered at most; the oldest go first.
const MAX_BLAMED: usize = 1024;

#[derive(Default)]
pub(super) struct Blamed {
    pairs: Mutex<HashMap<(String, Digest), Instant>>,
}

impl Blamed {
    /// Remembers that `mirror` served bytes for `digest` that did not match it.
    pub fn blame(&self, mirror: &str, digest: &Digest) {
        let now = Instant::now();
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs.retain(|_, at| now.duration_since(*at) < BLAME_FOR);
        if pairs.len() >= MAX_BLAMED
            && let Some(oldest) = pairs
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            pairs.remove(&oldest);
        }
        pairs.insert((mirror.to_string(), digest.clone()), now);
    }

    /// True when `mirror` served wrong bytes for `digest` lately.
    pub fn is_blamed(&self, mirror: &str, digest: &Digest) -> bool {
        let pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs
            .get(&(mirror.to_string(), digest.clone()))
            .is_some_and(|at| at.elapsed() < BLAME_FOR)
    }

    /// True when any mirror stands blamed for `digest`.
    pub fn any_for(&self, digest: &Digest) -> bool {
        let pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs
            .iter()
            .any(|((_, d), at)| d == digest && at.elapsed() < BLAME_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn a_blamed_pair_is_remembered_and_others_are_not() {
        let blamed = Blamed::default();
        blamed.blame("mirror:5000", &digest(1));
        assert!(blamed.is_blamed("mirror:5000", &digest(1)));
        assert!(!blamed.is_blamed("mirror:5000", &digest(2)));
        assert!(!blamed.is_blamed("other:5000", &digest(1)));
        assert!(blamed.any_for(&digest(1)));
        assert!(!blamed.any_for(&digest(2)));
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_goes_first() {
        let blamed = Blamed::default();
        for i in 0..(MAX_BLAMED + 10) {
            blamed.blame(&format!("m{i}"), &digest(0));
        }
        assert_eq!(blamed.pairs.lock().unwrap().len(), MAX_BLAMED);
        assert!(!blamed.is_blamed("m0", &digest(0)));
        assert!(blamed.is_blamed(&format!("m{}", MAX_BLAMED + 9), &digest(0)));
    }
}
