//! [`CachingLookup`]: a bounded cache in front of a slow [`ObjectLookup`], with hit and miss counters.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kelemetry_core::body::Body;
use kelemetry_core::{ObjectKey, ObjectLookup, ObjectRef};
use lru::LruCache;

/// What a [`CachingLookup`] did so far.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Answers given from the cache (a known body or a known absence).
    pub hits: u64,
    /// Questions passed on to the inner lookup.
    pub misses: u64,
    /// Of the misses, those the inner lookup could not answer either.
    pub not_found: u64,
    /// Objects held now.
    pub cached: usize,
}

impl LookupStats {
    /// Hits over all lookups, 0 when there were none.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Remembers the answers of an inner lookup (for example an apiserver GET) for at most `capacity` objects and at
/// most `max_age` each, least recently used first out. Absences are remembered too, so an object that is gone is
/// not asked for again on every window of every object that links to it.
///
/// The pipeline asks its own body cache first (bodies it saw in the stream; see
/// [`Pipeline::body_cache`](kelemetry_core::Pipeline::body_cache) for its counters) and this lookup only for the
/// rest, so the two count different things: this one counts the trips to the slow lookup it saved.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kelemetry_core::{BodyCache, ObjectKey, ObjectLookup, ObjectRef, Pipeline};
/// use kelemetry_linkers::CachingLookup;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Any ObjectLookup stands for the slow one here.
/// let slow = BodyCache::new(10);
/// let cached = Arc::new(CachingLookup::new(slow, 1_000, Duration::from_secs(60)));
/// let pod = ObjectRef::new(ObjectKey::new("c", "", "pods", "ns", "p"), "v1", None);
/// assert!(cached.body(&pod).await.is_none());
/// assert!(cached.body(&pod).await.is_none());
/// assert_eq!((cached.stats().misses, cached.stats().hits), (1, 1));
/// let pipeline = Pipeline::builder().lookup(cached.clone()).build();
/// # drop(pipeline);
/// # });
/// ```
pub struct CachingLookup<L> {
    inner: L,
    entries: Mutex<LruCache<ObjectKey, Entry>>,
    max_age: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    not_found: AtomicU64,
}

struct Entry {
    body: Option<Arc<Body>>,
    fetched: Instant,
}

impl<L> std::fmt::Debug for CachingLookup<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingLookup")
            .field("max_age", &self.max_age)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<L> CachingLookup<L> {
    /// A cache of at most `capacity` objects (at least one), each answer kept at most `max_age`.
    pub fn new(inner: L, capacity: usize, max_age: Duration) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner,
            entries: Mutex::new(LruCache::new(capacity)),
            max_age,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
        }
    }

    /// The counters.
    pub fn stats(&self) -> LookupStats {
        LookupStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            not_found: self.not_found.load(Relaxed),
            cached: self.entries.lock().map(|e| e.len()).unwrap_or(0),
        }
    }

    /// The cached answer for `key`, if fresh: `Some(None)` is a remembered absence.
    fn cached(&self, key: &ObjectKey) -> Option<Option<Arc<Body>>> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        if entry.fetched.elapsed() <= self.max_age {
            return Some(entry.body.clone());
        }
        entries.pop(key);
        None
    }
}

#[async_trait]
impl<L: ObjectLookup> ObjectLookup for CachingLookup<L> {
    async fn body(&self, object: &ObjectRef) -> Option<Arc<Body>> {
        if let Some(answer) = self.cached(&object.key) {
            self.hits.fetch_add(1, Relaxed);
            return answer;
        }
        self.misses.fetch_add(1, Relaxed);
        let body = self.inner.body(object).await;
        if body.is_none() {
            self.not_found.fetch_add(1, Relaxed);
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.put(
                object.key.clone(),
                Entry {
                    body: body.clone(),
                    fetched: Instant::now(),
                },
            );
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Answers for pods only, and counts the questions.
    #[derive(Default)]
    struct CountingLookup {
        asked: AtomicU64,
    }

    #[async_trait]
    impl ObjectLookup for CountingLookup {
        async fn body(&self, object: &ObjectRef) -> Option<Arc<Body>> {
            self.asked.fetch_add(1, Relaxed);
            (object.key.resource == "pods")
                .then(|| Arc::new(json!({"name": object.key.name}).into()))
        }
    }

    fn object(resource: &str, name: &str) -> ObjectRef {
        ObjectRef::new(ObjectKey::new("c", "", resource, "ns", name), "v1", None)
    }

    #[tokio::test]
    async fn answers_and_absences_are_remembered_within_capacity() {
        let lookup = CachingLookup::new(CountingLookup::default(), 2, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(lookup.body(&object("pods", "a")).await.is_some());
            assert!(lookup.body(&object("nodes", "gone")).await.is_none());
        }
        assert_eq!(lookup.inner.asked.load(Relaxed), 2);
        let stats = lookup.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.not_found, stats.cached),
            (4, 2, 1, 2)
        );
        assert!((stats.hit_ratio() - 4.0 / 6.0).abs() < 1e-9);
        // A third object pushes out the least recently used one.
        lookup.body(&object("pods", "b")).await;
        assert_eq!(lookup.stats().cached, 2);
        lookup.body(&object("pods", "a")).await;
        assert_eq!(lookup.inner.asked.load(Relaxed), 4);
    }

    #[tokio::test]
    async fn stale_answers_are_asked_again() {
        let lookup = CachingLookup::new(CountingLookup::default(), 10, Duration::ZERO);
        lookup.body(&object("pods", "a")).await;
        std::thread::sleep(Duration::from_millis(2));
        lookup.body(&object("pods", "a")).await;
        assert_eq!(lookup.inner.asked.load(Relaxed), 2);
        assert_eq!(lookup.stats().hits, 0);
    }
}
