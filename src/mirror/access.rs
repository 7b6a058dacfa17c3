//! Who may read what, as the upstream last said: per (credential identity, upstream,
//! repository, digest), the answer of a HEAD the upstream gave *that* client, kept a
//! short while so a pull's dozen requests do not each cost a round trip.
//!
//! The identity is [`Credentials::identity`] (a hash, never the secret; `None` for an
//! anonymous client). An answer is *fresh* for [`FRESH`]; older ones (up to
//! [`REMEMBERED`]) only let a client keep reading what it read before while the upstream
//! cannot be reached. In memory only, bounded at [`MAX_ENTRIES`]. Not for: asking the
//! upstream (the caller does) or tags (`table`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::oci::MediaType;
use crate::registry::{Credentials, Reference};

/// How long an upstream's yes stands without asking again.
pub const FRESH: Duration = Duration::from_secs(60);
/// How long a yes still counts while the upstream is unreachable.
pub const REMEMBERED: Duration = Duration::from_secs(24 * 3600);
/// Answers kept at most; past it the oldest go first.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    identity: Option<String>,
    upstream: String,
    repository: String,
    digest: Digest,
}

impl Key {
    fn new(creds: Option<&Credentials>, reference: &Reference, digest: &Digest) -> Key {
        Key {
            identity: creds.map(Credentials::identity),
            upstream: reference.registry.clone(),
            repository: reference.repository.clone(),
            digest: digest.clone(),
        }
    }
}

/// What the upstream said of a readable digest: its size and, for a manifest, its type.
#[derive(Clone, Debug)]
pub struct Granted {
    pub size: u64,
    pub media_type: Option<MediaType>,
}

#[derive(Default)]
pub struct AccessCache {
    map: Mutex<HashMap<Key, (Instant, Granted)>>,
}

impl AccessCache {
    /// The upstream's yes for this client, if it is younger than `max_age`.
    pub fn get(
        &self,
        creds: Option<&Credentials>,
        reference: &Reference,
        digest: &Digest,
        max_age: Duration,
    ) -> Option<Granted> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&Key::new(creds, reference, digest))
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, g)| g.clone())
    }

    /// Records that the upstream let this client read `digest` in the repository.
    pub fn grant(
        &self,
        creds: Option<&Credentials>,
        reference: &Reference,
        digest: &Digest,
        granted: Granted,
    ) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < REMEMBERED);
        }
        if map.len() >= MAX_ENTRIES {
            let oldest = map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(
            Key::new(creds, reference, digest),
            (Instant::now(), granted),
        );
    }

    /// Forgets this client's answers for the digest (the upstream said no).
    pub fn revoke(&self, creds: Option<&Credentials>, reference: &Reference, digest: &Digest) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&Key::new(creds, reference, digest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_per_identity_and_repository() {
        let cache = AccessCache::default();
        let r: Reference = "127.0.0.1:5000/a/b".parse().unwrap();
        let other: Reference = "127.0.0.1:5000/a/c".parse().unwrap();
        let d = Digest::sha256_of(b"x");
        let alice = Credentials {
            username: "alice".into(),
            password: "pw".into(),
        };
        let g = Granted {
            size: 1,
            media_type: None,
        };
        cache.grant(Some(&alice), &r, &d, g);
        assert!(cache.get(Some(&alice), &r, &d, FRESH).is_some());
        assert!(cache.get(None, &r, &d, FRESH).is_none(), "anonymous");
        assert!(cache.get(Some(&alice), &other, &d, FRESH).is_none());
        let wrong = Credentials {
            password: "guess".into(),
            ..alice.clone()
        };
        assert!(cache.get(Some(&wrong), &r, &d, FRESH).is_none());
        assert!(cache.get(Some(&alice), &r, &d, Duration::ZERO).is_none());
        cache.revoke(Some(&alice), &r, &d);
        assert!(cache.get(Some(&alice), &r, &d, REMEMBERED).is_none());
    }
}
