//! [`BodyCache`]: the latest bodies seen per object, bounded, least recently used object first out.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lru::LruCache;
use serde_json::Value;

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
/// up the newest. Only the newest version of an object is kept parsed; older ones are kept as compact JSON text
/// (about a fifth of the memory) and parsed again when asked for.
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
///     cache.insert(key.clone(), Arc::new(json!({"metadata": {"resourceVersion": rv}})));
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

/// Versions of one object, oldest first: resource version, body, estimated size.
type Versions = VecDeque<(Option<u64>, Held, usize)>;

/// One cached version of a body. The newest version of an object is kept parsed: the next write's diff and the
/// linkers read it. Older versions are kept as compact JSON text and parsed again only when asked for (a record
/// that arrived out of order): a parsed Kubernetes body takes about five times the memory of its text, in hundreds
/// of small blocks, and freeing such a tree long after it was last touched costs a cache miss per block.
#[derive(Clone, Debug)]
enum Held {
    Parsed(Arc<Value>),
    Text(Box<str>),
}

impl Held {
    /// The body; `None` only if its text no longer parses (it was written by `serde_json`, so it does).
    fn body(&self) -> Option<Arc<Value>> {
        match self {
            Self::Parsed(body) => Some(Arc::clone(body)),
            Self::Text(text) => serde_json::from_str(text).ok().map(Arc::new),
        }
    }
}

/// The estimated memory of a body kept as text.
fn text_size(text: &str) -> usize {
    32 + text.len()
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
pub fn numeric_resource_version(body: &Value) -> Option<u64> {
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
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        let found = self.inner.lock().ok().and_then(|mut c| {
            c.objects
                .get(key)
                .and_then(|v| v.back().map(|(_, held, _)| held.clone()))
        });
        let found = found.and_then(|held| held.body());
        self.count(found.is_some());
        found
    }

    /// The newest body of `key` older than `resource_version`: the version a change to `resource_version` was
    /// made from. Without a numeric `resource_version` (or with no numeric versions cached), the newest body.
    pub fn before(&self, key: &ObjectKey, resource_version: Option<&str>) -> Option<Arc<Value>> {
        let target = resource_version.and_then(|rv| rv.parse::<u64>().ok());
        let found = self.inner.lock().ok().and_then(|mut c| {
            let versions = c.objects.get(key)?;
            match target {
                Some(target) => versions
                    .iter()
                    .rev()
                    .find(|(rv, _, _)| rv.is_some_and(|rv| rv < target))
                    .map(|(_, held, _)| held.clone()),
                None => versions.back().map(|(_, held, _)| held.clone()),
            }
        });
        // Text is parsed outside the lock.
        let found = found.and_then(|held| held.body());
        self.count(found.is_some());
        found
    }

    /// Stores `body` as a version of `key`, in resource-version order. A version already held is not stored twice.
    /// Then forgets least recently used objects while the bodies are over the byte bound.
    pub fn insert(&self, key: ObjectKey, body: Arc<Value>) {
        let rv = numeric_resource_version(&body);
        let size = approximate_size(&body);
        // Written as text outside the lock, then swapped in if the cache still holds it.
        if let Some(older) = self.insert_parsed(&key, rv, body, size)
            && let Ok(text) = serde_json::to_string(&*older)
        {
            self.keep_as_text(&key, &older, text.into_boxed_str());
        }
    }

    /// Stores `body` parsed, and returns a version of the object that is parsed but no longer the newest (the one
    /// this body displaced, or this body when it arrived after a newer one), to be kept as text.
    fn insert_parsed(
        &self,
        key: &ObjectKey,
        rv: Option<u64>,
        body: Arc<Value>,
        size: usize,
    ) -> Option<Arc<Value>> {
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
        versions.insert(position, (rv, Held::Parsed(body), size));
        let mut freed = 0;
        while versions.len() > self.versions_per_object {
            freed += versions.pop_front().map_or(0, |(_, _, size)| size);
        }
        let older = versions
            .iter()
            .rev()
            .skip(1)
            .find_map(|(_, held, _)| match held {
                Held::Parsed(body) => Some(Arc::clone(body)),
                Held::Text(_) => None,
            });
        cache.bytes = (cache.bytes + size).saturating_sub(freed);
        while cache.bytes > self.max_bytes && cache.objects.len() > 1 {
            cache.evict_one();
        }
        older
    }

    /// Replaces the parsed version `older` of `key` with its `text`, if the cache still holds it.
    fn keep_as_text(&self, key: &ObjectKey, older: &Arc<Value>, text: Box<str>) {
        let Ok(mut cache) = self.inner.lock() else {
            return;
        };
        let Some(versions) = cache.objects.peek_mut(key) else {
            return;
        };
        let Some((_, held, size)) = versions
            .iter_mut()
            .find(|(_, held, _)| matches!(held, Held::Parsed(body) if Arc::ptr_eq(body, older)))
        else {
            return;
        };
        let was = *size;
        *size = text_size(&text);
        *held = Held::Text(text);
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
    async fn body(&self, object: &ObjectRef) -> Option<Arc<Value>> {
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

    fn body(rv: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"resourceVersion": rv}}))
    }

    #[test]
    fn keeps_at_most_capacity_objects() {
        let cache = BodyCache::new(2);
        for name in ["a", "b", "c"] {
            cache.insert(key(name), Arc::new(json!({"n": name})));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get(&key("c")).is_some());
        assert_eq!(cache.hits_and_misses(), (1, 1));
    }

    #[test]
    fn keeps_at_most_max_bytes_of_bodies() {
        let big = |name: &str| Arc::new(json!({"n": name, "data": "x".repeat(1000)}));
        let one = approximate_size(&big("a"));
        let cache = BodyCache::with_limits(100, 3, 3 * one);
        for name in ["a", "b", "c", "d", "e"] {
            cache.insert(key(name), big(name));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.bytes(), 3 * one);
        assert!(cache.get(&key("b")).is_none());
        assert!(cache.get(&key("c")).is_some());
        // Versions pushed out of an object free their bytes; an object over the bound alone is still kept.
        let cache = BodyCache::with_limits(100, 1, one / 2);
        cache.insert(key("a"), big("a"));
        cache.insert(key("a"), big("b"));
        assert_eq!((cache.len(), cache.bytes()), (1, one));
        cache.insert(key("b"), big("b"));
        assert_eq!((cache.len(), cache.bytes()), (1, one));
        assert!(cache.get(&key("b")).is_some());
        // Objects pushed out by the count bound free their bytes too.
        let cache = BodyCache::with_limits(2, 3, usize::MAX);
        for name in ["a", "b", "c"] {
            cache.insert(key(name), big(name));
        }
        assert_eq!((cache.len(), cache.bytes()), (2, 2 * one));
    }

    #[test]
    fn older_versions_are_kept_as_text_and_counted_as_such() {
        let version = |rv: &str| {
            Arc::new(
                json!({"metadata": {"resourceVersion": rv, "labels": {"a": "b"}}, "spec": {"n": [1, 2]}}),
            )
        };
        let text = |rv: &str| text_size(&serde_json::to_string(&*version(rv)).unwrap());
        let cache = BodyCache::with_versions(10, 3);
        for rv in ["1", "2", "4"] {
            cache.insert(key("p"), version(rv));
        }
        // The newest parsed, the two before it as text.
        assert_eq!(
            cache.bytes(),
            approximate_size(&version("4")) + text("1") + text("2")
        );
        // A version that arrives late is kept as text at its place.
        cache.insert(key("p"), version("3"));
        assert_eq!(
            cache.bytes(),
            approximate_size(&version("4")) + text("2") + text("3")
        );
        assert_eq!(cache.before(&key("p"), Some("4")), Some(version("3")));
        assert_eq!(cache.before(&key("p"), Some("3")), Some(version("2")));
        assert_eq!(cache.get(&key("p")), Some(version("4")));
    }

    #[test]
    fn keeps_a_bounded_ordered_history() {
        let cache = BodyCache::with_versions(10, 3);
        for rv in ["5", "3", "4", "3", "6"] {
            cache.insert(key("p"), body(rv));
        }
        let rv = |b: Option<Arc<Value>>| {
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
