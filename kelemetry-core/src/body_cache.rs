//! [`BodyCache`]: the latest body seen per object, bounded, least recently used first out.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lru::LruCache;

use crate::key::{ObjectKey, ObjectRef};
use crate::link::ObjectLookup;

/// The latest body seen per object, holding at most `capacity` objects. The diff decorator compares new bodies with
/// it; linkers look bodies up in it.
#[derive(Debug)]
pub struct BodyCache {
    inner: Mutex<LruCache<ObjectKey, Arc<serde_json::Value>>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl BodyCache {
    /// A cache of at most `capacity` objects (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(LruCache::new(capacity)),
            hits: 0.into(),
            misses: 0.into(),
        }
    }

    /// The latest body of `key`, if cached.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<serde_json::Value>> {
        use std::sync::atomic::Ordering::Relaxed;
        let found = self.inner.lock().ok().and_then(|mut c| c.get(key).cloned());
        if found.is_some() {
            self.hits.fetch_add(1, Relaxed);
        } else {
            self.misses.fetch_add(1, Relaxed);
        }
        found
    }

    /// Stores `body` as the latest of `key`; returns the body it replaces.
    pub fn insert(
        &self,
        key: ObjectKey,
        body: Arc<serde_json::Value>,
    ) -> Option<Arc<serde_json::Value>> {
        self.inner.lock().ok().and_then(|mut c| c.put(key, body))
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found a body, and lookups that did not.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

#[async_trait]
impl ObjectLookup for BodyCache {
    async fn body(&self, object: &ObjectRef) -> Option<Arc<serde_json::Value>> {
        self.get(&object.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_capacity_objects() {
        let cache = BodyCache::new(2);
        for name in ["a", "b", "c"] {
            cache.insert(
                ObjectKey::new("c", "", "pods", "ns", name),
                Arc::new(serde_json::json!({"n": name})),
            );
        }
        assert_eq!(cache.len(), 2);
        assert!(
            cache
                .get(&ObjectKey::new("c", "", "pods", "ns", "a"))
                .is_none()
        );
        assert!(
            cache
                .get(&ObjectKey::new("c", "", "pods", "ns", "c"))
                .is_some()
        );
        assert_eq!(cache.hits_and_misses(), (1, 1));
    }
}
