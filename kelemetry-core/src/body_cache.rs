//! [`BodyCache`]: the latest bodies seen per object, bounded, least recently used object first out.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lru::LruCache;
use serde_json::Value;

use crate::body::{Body, BodyMetadata};
use crate::key::{ObjectKey, ObjectRef};
use crate::link::ObjectLookup;

/// How many versions of one object the cache keeps by default.
pub const DEFAULT_VERSIONS_PER_OBJECT: usize = 3;

/// How many bytes of bodies (estimated by [`approximate_size`]) the cache keeps by default: 128 MiB.
pub const DEFAULT_BODY_BYTES: usize = 128 * 1024 * 1024;

/// An estimate of the memory a parsed JSON value takes: 32 bytes per value, the text of its strings and keys, and
/// for each non-empty object a B-tree node (512 bytes) per 11 entries, which is what dominates Kubernetes bodies full
/// of small maps (`managedFields`). Measured on recorded audit bodies, resident memory stays within about 1.5 times
/// this estimate. Cheap to compute, so that a byte bound on bodies is a bound on memory.
pub fn approximate_size(value: &Value) -> usize {
    const VALUE: usize = 32;
    const MAP_NODE: usize = 512;
    const MAP_NODE_ENTRIES: usize = 11;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => VALUE,
        Value::String(text) => VALUE + text.len(),
        Value::Array(items) => VALUE + items.iter().map(approximate_size).sum::<usize>(),
        Value::Object(map) => {
            VALUE
                + MAP_NODE * map.len().div_ceil(MAP_NODE_ENTRIES)
                + map
                    .iter()
                    .map(|(k, v)| k.len() + approximate_size(v))
                    .sum::<usize>()
        }
    }
}

/// The latest bodies seen per object: at most `capacity` objects and `max_bytes` of bodies (estimated by
/// [`approximate_size`]), least recently used object first out, and for each at most a few versions ordered by
/// `metadata.resourceVersion`. The diff decorator compares a new body with the version just before it; linkers look
/// up the newest. A [`Body`] that came as text (an audit response) is kept as its text, parsed only as far as a
/// stage reads it; an older version that was parsed (or that never had text) is kept as text only (a parsed
/// Kubernetes body takes about five times the memory of its text).
///
/// Records of one object can arrive out of order when several sources report it (an audit log and a watch stream
/// read side by side, a webhook and a watch): keeping a short history ordered by resource version lets a diff be
/// taken against the right predecessor instead of against whatever arrived last. Resource versions are compared as
/// numbers when both are (what etcd-backed apiservers write); a body without a numeric resource version is taken as
/// the newest.
///
/// ```
/// use std::sync::Arc;
/// use kelemetry_core::{BodyCache, ObjectKey};
/// use serde_json::json;
///
/// let cache = BodyCache::new(100);
/// let key = ObjectKey::new("c", "apps", "deployments", "ns", "web");
/// for rv in ["12", "10", "11"] {
///     cache.insert(&key, Arc::new(json!({"metadata": {"resourceVersion": rv}}).into()));
/// }
/// assert_eq!(cache.get(&key).unwrap()["metadata"]["resourceVersion"], "12");
/// assert_eq!(cache.before(&key, Some("12")).unwrap()["metadata"]["resourceVersion"], "11");
/// assert_eq!(cache.before(&key, Some("11")).unwrap()["metadata"]["resourceVersion"], "10");
/// assert!(cache.before(&key, Some("10")).is_none());
/// ```
#[derive(Debug)]
pub struct BodyCache {
    inner: Mutex<Bodies>,
    versions_per_object: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Versions of one object, oldest first: resource version, body, estimated size. The newest version is kept as
/// it came (the next write's diff and the linkers read it); older ones only as their text (see [`Body::text_only`]):
/// a parsed Kubernetes body takes about five times the memory of its text, in hundreds of small blocks, and freeing
/// such a tree long after it was last touched costs a cache miss per block.
type Versions = VecDeque<(Option<u64>, Arc<Body>, usize)>;

/// Whether an older version should be kept as text only: it has been parsed whole, or has no text. (Its parsed
/// `metadata` alone is kept: it is small, and the resource version read from it orders the versions.)
fn worth_keeping_as_text(body: &Body) -> bool {
    body.text().is_none() || body.is_parsed()
}

/// `body` as text only: its own text, or for a body without one (made from a value) the value written as JSON.
fn text_only(body: &Body) -> Option<Body> {
    body.text_only().or_else(|| {
        let text = serde_json::to_string(body.value()).ok()?;
        Body::from_text(text).ok()
    })
}

/// The cached objects and the estimated bytes of their bodies.
#[derive(Debug)]
struct Bodies {
    objects: LruCache<ObjectKey, Versions>,
    bytes: usize,
}

impl Bodies {
    /// Forgets the least recently used object.
    fn evict_one(&mut self) {
        if let Some((_, versions)) = self.objects.pop_lru() {
            self.bytes = self.bytes.saturating_sub(size_of(&versions));
        }
    }
}

fn size_of(versions: &Versions) -> usize {
    versions.iter().map(|(_, _, size)| size).sum()
}

/// The numeric resource version of a body, if it has one.
pub fn numeric_resource_version<B: BodyMetadata + ?Sized>(body: &B) -> Option<u64> {
    crate::body::metadata_str(body, "resourceVersion").and_then(|rv| rv.parse().ok())
}

impl BodyCache {
    /// A cache of at most `capacity` objects (at least one), each with [`DEFAULT_VERSIONS_PER_OBJECT`] versions.
    pub fn new(capacity: usize) -> Self {
        Self::with_versions(capacity, DEFAULT_VERSIONS_PER_OBJECT)
    }

    /// A cache of at most `capacity` objects with at most `versions` versions each (both at least one), and
    /// [`DEFAULT_BODY_BYTES`] of bodies.
    pub fn with_versions(capacity: usize, versions: usize) -> Self {
        Self::with_limits(capacity, versions, DEFAULT_BODY_BYTES)
    }

    /// A cache of at most `capacity` objects with at most `versions` versions each (both at least one), and at
    /// most `max_bytes` of bodies as [`approximate_size`] estimates them. The newest body of the object inserted
    /// last is always kept, even alone over `max_bytes`.
    pub fn with_limits(capacity: usize, versions: usize, max_bytes: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(Bodies {
                objects: LruCache::new(capacity),
                bytes: 0,
            }),
            max_bytes,
            versions_per_object: versions.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn count(&self, found: bool) {
        if found {
            self.hits.fetch_add(1, Relaxed);
        } else {
            self.misses.fetch_add(1, Relaxed);
        }
    }

    /// The newest body of `key`, if cached.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Body>> {
        let found = self.inner.lock().ok().and_then(|mut c| {
            c.objects
                .get(key)
                .and_then(|v| v.back().map(|(_, body, _)| Arc::clone(body)))
        });
        self.count(found.is_some());
        found
    }

    /// The newest body of `key` older than `resource_version`: the version a change to `resource_version` was
    /// made from. Without a numeric `resource_version` (or with no numeric versions cached), the newest body.
    pub fn before(&self, key: &ObjectKey, resource_version: Option<&str>) -> Option<Arc<Body>> {
        let target = resource_version.and_then(|rv| rv.parse::<u64>().ok());
        let found = self.inner.lock().ok().and_then(|mut c| {
            let versions = c.objects.get(key)?;
            match target {
                Some(target) => versions
                    .iter()
                    .rev()
                    .find(|(rv, _, _)| rv.is_some_and(|rv| rv < target))
                    .map(|(_, body, _)| Arc::clone(body)),
                None => versions.back().map(|(_, body, _)| Arc::clone(body)),
            }
        });
        self.count(found.is_some());
        found
    }

    /// Stores `body` as a version of `key`, in resource-version order. A version already held is not stored twice.
    /// Then forgets least recently used objects while the bodies are over the byte bound.
    /// The key is cloned only for an object the cache does not hold yet.
    pub fn insert(&self, key: &ObjectKey, body: Arc<Body>) {
        let rv = numeric_resource_version(&body);
        let size = body.approximate_size();
        // The text-only copy is made outside the lock, then swapped in if the cache still holds the version.
        if let Some(older) = self.insert_newest(key, rv, body, size)
            && let Some(text_only) = text_only(&older)
        {
            self.keep_as_text(key, &older, text_only);
        }
    }

    /// Stores `body`, and returns a version of the object that is no longer the newest (the one this body
    /// displaced, or this body when it arrived after a newer one) if it holds more than its text.
    fn insert_newest(
        &self,
        key: &ObjectKey,
        rv: Option<u64>,
        body: Arc<Body>,
        size: usize,
    ) -> Option<Arc<Body>> {
        let mut cache = self.inner.lock().ok()?;
        if !cache.objects.contains(key)
            && let Some((_, evicted)) = cache.objects.push(key.clone(), VecDeque::new())
        {
            cache.bytes = cache.bytes.saturating_sub(size_of(&evicted));
        }
        let versions = cache.objects.get_mut(key)?;
        let position = match rv {
            Some(rv) => {
                if versions.iter().any(|(held, _, _)| *held == Some(rv)) {
                    return None;
                }
                // After every older numeric version; unnumbered bodies stay at the end.
                versions
                    .iter()
                    .position(|(held, _, _)| held.is_none_or(|held| held > rv))
                    .unwrap_or(versions.len())
            }
            None => versions.len(),
        };
        versions.insert(position, (rv, body, size));
        let mut freed = 0;
        while versions.len() > self.versions_per_object {
            freed += versions.pop_front().map_or(0, |(_, _, size)| size);
        }
        let older = versions
            .iter()
            .rev()
            .skip(1)
            .find(|(_, body, _)| worth_keeping_as_text(body))
            .map(|(_, body, _)| Arc::clone(body));
        cache.bytes = (cache.bytes + size).saturating_sub(freed);
        while cache.bytes > self.max_bytes && cache.objects.len() > 1 {
            cache.evict_one();
        }
        older
    }

    /// Replaces the version `older` of `key` with `text_only`, if the cache still holds it.
    fn keep_as_text(&self, key: &ObjectKey, older: &Arc<Body>, text_only: Body) {
        let Ok(mut cache) = self.inner.lock() else {
            return;
        };
        let Some(versions) = cache.objects.peek_mut(key) else {
            return;
        };
        let Some((_, held, size)) = versions
            .iter_mut()
            .find(|(_, held, _)| Arc::ptr_eq(held, older))
        else {
            return;
        };
        let was = *size;
        *size = text_only.approximate_size();
        *held = Arc::new(text_only);
        let now = *size;
        cache.bytes = cache.bytes.saturating_sub(was) + now;
    }

    /// The estimated bytes of the bodies cached.
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|c| c.bytes).unwrap_or(0)
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|c| c.objects.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found a body, and lookups that did not.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

#[async_trait]
impl ObjectLookup for BodyCache {
    async fn body(&self, object: &ObjectRef) -> Option<Arc<Body>> {
        self.get(&object.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("c", "", "pods", "ns", name)
    }

    fn body(rv: &str) -> Arc<Body> {
        Arc::new(json!({"metadata": {"resourceVersion": rv}}).into())
    }

    #[test]
    fn keeps_at_most_capacity_objects() {
        let cache = BodyCache::new(2);
        for name in ["a", "b", "c"] {
            cache.insert(&key(name), Arc::new(json!({"n": name}).into()));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get(&key("c")).is_some());
        assert_eq!(cache.hits_and_misses(), (1, 1));
    }

    #[test]
    fn keeps_at_most_max_bytes_of_bodies() {
        let big = |name: &str| Arc::new(Body::from(json!({"n": name, "data": "x".repeat(1000)})));
        let one = big("a").approximate_size();
        let cache = BodyCache::with_limits(100, 3, 3 * one);
        for name in ["a", "b", "c", "d", "e"] {
            cache.insert(&key(name), big(name));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.bytes(), 3 * one);
        assert!(cache.get(&key("b")).is_none());
        assert!(cache.get(&key("c")).is_some());
        // Versions pushed out of an object free their bytes; an object over the bound alone is still kept.
        let cache = BodyCache::with_limits(100, 1, one / 2);
        cache.insert(&key("a"), big("a"));
        cache.insert(&key("a"), big("b"));
        assert_eq!((cache.len(), cache.bytes()), (1, one));
        cache.insert(&key("b"), big("b"));
        assert_eq!((cache.len(), cache.bytes()), (1, one));
        assert!(cache.get(&key("b")).is_some());
        // Objects pushed out by the count bound free their bytes too.
        let cache = BodyCache::with_limits(2, 3, usize::MAX);
        for name in ["a", "b", "c"] {
            cache.insert(&key(name), big(name));
        }
        assert_eq!((cache.len(), cache.bytes()), (2, 2 * one));
    }

    #[test]
    fn older_versions_are_kept_as_text_and_counted_as_such() {
        let version = |rv: &str| {
            Arc::new(Body::from(
                json!({"metadata": {"resourceVersion": rv, "labels": {"a": "b"}}, "spec": {"n": [1, 2]}}),
            ))
        };
        let text = |rv: &str| {
            Body::from_text(serde_json::to_string(version(rv).value()).unwrap())
                .unwrap()
                .approximate_size()
        };
        let cache = BodyCache::with_versions(10, 3);
        for rv in ["1", "2", "4"] {
            cache.insert(&key("p"), version(rv));
        }
        // The newest parsed, the two before it as text.
        assert_eq!(
            cache.bytes(),
            version("4").approximate_size() + text("1") + text("2")
        );
        // A version that arrives late is kept as text at its place.
        cache.insert(&key("p"), version("3"));
        assert_eq!(
            cache.bytes(),
            version("4").approximate_size() + text("2") + text("3")
        );
        assert_eq!(cache.before(&key("p"), Some("4")), Some(version("3")));
        assert_eq!(cache.before(&key("p"), Some("3")), Some(version("2")));
        assert_eq!(cache.get(&key("p")), Some(version("4")));
    }

    #[test]
    fn keeps_a_bounded_ordered_history() {
        let cache = BodyCache::with_versions(10, 3);
        for rv in ["5", "3", "4", "3", "6"] {
            cache.insert(&key("p"), body(rv));
        }
        let rv = |b: Option<Arc<Body>>| {
            b.map(|b| {
                b["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        };
        assert_eq!(rv(cache.get(&key("p"))).as_deref(), Some("6"));
        assert_eq!(rv(cache.before(&key("p"), Some("6"))).as_deref(), Some("5"));
        assert_eq!(rv(cache.before(&key("p"), Some("5"))).as_deref(), Some("4"));
        // Only three versions are kept: 3 was dropped.
        assert_eq!(rv(cache.before(&key("p"), Some("4"))), None);
        // Without a number, the newest.
        assert_eq!(rv(cache.before(&key("p"), None)).as_deref(), Some("6"));
        assert_eq!(rv(cache.before(&key("p"), Some("x"))).as_deref(), Some("6"));
    }
}
