//! Single flight: callers asking the same question at the same time share one answer, so
//! 200 concurrent `GET /digest` of one image make one registry request, not 200.
//!
//! A flight starts with its first caller and ends when its answer is ready: the next
//! caller after that asks anew (answers are shared, never cached). A caller that goes
//! away (its HTTP request dropped) does not end the flight for the others, who drive it
//! on; the last one gone drops it. Not for: blobs (the store has its own single flight,
//! which also owns a file on disk).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

struct Flight<V> {
    /// Tells this flight from a later one under the same key.
    id: u64,
    answer: Shared<BoxFuture<'static, V>>,
    callers: usize,
}

pub(super) struct SingleFlight<K, V: Clone> {
    flights: Mutex<Inner<K, V>>,
}

struct Inner<K, V: Clone> {
    next_id: u64,
    by_key: HashMap<K, Flight<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    pub fn new() -> Self {
        SingleFlight {
            flights: Mutex::new(Inner {
                next_id: 0,
                by_key: HashMap::new(),
            }),
        }
    }

    /// The answer of the flight for `key`: the one under way, else a new one that runs
    /// what `start` returns.
    pub async fn run<F>(&self, key: K, start: impl FnOnce() -> F) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (id, answer) = {
            let mut inner = self.lock();
            let Inner { next_id, by_key } = &mut *inner;
            let flight = by_key.entry(key.clone()).or_insert_with(|| {
                *next_id += 1;
                Flight {
                    id: *next_id,
                    answer: start().boxed().shared(),
                    callers: 0,
                }
            });
            flight.callers += 1;
            (flight.id, flight.answer.clone())
        };
        let mut leave = Leave {
            flights: self,
            key: Some(key),
            id,
            answered: false,
        };
        let value = answer.await;
        leave.answered = true;
        value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.lock().by_key.len()
    }
}

/// Takes a caller off its flight, answered or gone; ends the flight when it was answered
/// (later callers ask anew) or when nobody waits for it any more.
struct Leave<'a, K: Hash + Eq + Clone, V: Clone> {
    flights: &'a SingleFlight<K, V>,
    key: Option<K>,
    id: u64,
    answered: bool,
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leave<'_, K, V> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut inner = self
            .flights
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(flight) = inner.by_key.get_mut(&key).filter(|f| f.id == self.id) else {
            return;
        };
        flight.callers -= 1;
        if self.answered || flight.callers == 0 {
            inner.by_key.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::Credentials;
    use super::super::fake_registry::{Fake, client, image_manifest, reply};
    use super::SingleFlight;
    use crate::digest::Digest;
    use crate::oci::MediaType;

    fn counted(runs: &Arc<AtomicUsize>, value: u32) -> impl Future<Output = u32> + use<> {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            value
        }
    }

    #[tokio::test]
    async fn concurrent_callers_of_one_key_share_one_run() {
        let flights = SingleFlight::<&str, u32>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let answers =
            futures_util::future::join_all((0..50).map(|_| flights.run("a", || counted(&runs, 7))))
                .await;
        assert!(answers.iter().all(|&a| a == 7));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0, "an answered flight is over");
    }

    #[tokio::test]
    async fn different_keys_fly_apart_and_a_later_call_asks_anew() {
        let flights = SingleFlight::<&str, u32>::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (a, b) = tokio::join!(
            flights.run("a", || counted(&runs, 1)),
            flights.run("b", || counted(&runs, 2)),
        );
        assert_eq!((a, b), (1, 2));
        assert_eq!(flights.run("a", || counted(&runs, 3)).await, 3);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_leaves_the_flight_to_the_others() {
        let flights = Arc::new(SingleFlight::<&str, u32>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let first = {
            let (flights, runs) = (flights.clone(), runs.clone());
            tokio::spawn(async move { flights.run("a", || counted(&runs, 9)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = flights.run("a", || counted(&runs, 0));
        first.abort();
        assert_eq!(second.await, 9);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);

        // nobody left waiting: the flight is dropped, not kept for the next caller
        let gone = tokio::time::timeout(
            Duration::from_millis(5),
            flights.run("b", || counted(&runs, 1)),
        )
        .await;
        assert!(gone.is_err());
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn digests_share_a_flight_only_with_the_same_credentials() {
        let body = image_manifest(b"{}", b"x");
        let digest = Digest::sha256_of(body.as_bytes()).to_string();
        let fake = Fake::start(move |_, _| {
            reply(
                200,
                &[
                    ("docker-content-digest", &digest),
                    ("content-type", MediaType::OciManifest.as_str()),
                    ("content-length", "100"),
                ],
                "",
            )
        })
        .await;
        let c = client();
        let image = fake.reference("a/app:1");
        let creds = |user: &str| Credentials {
            username: user.into(),
            password: "secret".into(),
        };
        let (alice, bob) = (creds("alice"), creds("bob"));
        // all started in the same poll: the first of each key is still in flight
        let answers = tokio::join!(
            c.digest(&image, None, Some(&alice)),
            c.digest(&image, None, Some(&alice)),
            c.digest(&image, None, Some(&bob)),
            c.digest(&image, None, None),
            c.digest(&image, None, None),
        );
        for answer in [answers.0, answers.1, answers.2, answers.3, answers.4] {
            answer.unwrap();
        }
        assert_eq!(fake.count("HEAD", "/v2/a/app/manifests/1"), 3);
    }
}
