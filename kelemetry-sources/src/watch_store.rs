//! [`WatchStore`]: what the object watch saw, for the audit activities that did not carry it
//! (docs/behaviour/watch.md), and [`WatchDiffDecorator`], which attaches it to them.
//!
//! The object watch (`object_watch::ObjectWatchSource`, feature `kube`) hands every
//! version of every watched object to the store. The store keeps, bounded by count and by an estimate of their
//! memory, least recently used first out:
//!
//! - the **latest body** of each object (redacted with the configured [`Redactor`]), which is also an
//!   [`ObjectLookup`] for linkers;
//! - the **changes**: for an update, the field diff between the previous and the new version (core's
//!   [`audit_diff_of`], lists matched by key; `metadata.managedFields` and `metadata.resourceVersion` never
//!   appear), indexed by the new resource version *and* by the old one (so audit records of level `Metadata`, which
//!   only know the version the request was based on, still match); for a creation seen after the initial list and
//!   for a deletion, a snapshot of the object (without `managedFields`).
//!
//! [`WatchDiffDecorator`] runs after core's [`DiffDecorator`](kelemetry_core::DiffDecorator) in the pipeline: an
//! audit write that got no diff or snapshot from its own response body (level `Metadata` or `Request`, or the
//! first write seen of an object since the start) gets the watch's, matched by resource version. As in the
//! original, the watch may lag behind the audit record: it tries at once, then polls (every second by default)
//! until `stageTimestamp + 15 s`, and never waits more than 10 s for one activity; it only waits for resources the
//! watch of this process covers and has listed (so not on a replica where the watch does not run because another
//! holds the leader election's Lease, nor after [`WatchStore::watch_stopped`]), not for writes that finished before
//! that list (the apiserver may deliver old audit batches after a restart; their changes were never watched), and
//! not when the latest version watched is already the one written (a patch that changed nothing). A miss adds nothing. An update or patch that created
//! its object (server-side apply) gets the creation snapshot.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::activity::{Activity, ChangeKind, LogKind, LogLine, SourceKind};
use kelemetry_core::body::Body;
use kelemetry_core::decorate::{Decorator, REDACTED_MESSAGE};
use kelemetry_core::diff::audit_diff_of;
use kelemetry_core::redact::{Redactor, is_redacted_whole};
use kelemetry_core::{BodyCache, Object, ObjectKey, ObjectLookup, ObjectRef, SmolStr, vocabulary};
use lru::LruCache;
use serde_json::Value;

/// Where a change is filed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChangeSlot {
    /// The update that produced this resource version.
    NewVersion(String),
    /// The update that was based on this resource version.
    OldVersion(String),
    /// The creation of the object.
    Creation,
    /// The deletion of the object.
    Deletion,
}

/// What a watched change holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeContent {
    /// Lines `path old -> new`, one per changed field; empty when only ignored fields changed.
    Diff(String),
    /// The object as JSON, without `metadata.managedFields`.
    Snapshot(String),
    /// The object is redacted whole: only that fact may be shown.
    Redacted,
}

/// One change the watch saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedChange {
    /// The object, with its API version and uid.
    pub object: ObjectRef,
    /// Created, updated or deleted.
    pub kind: ChangeKind,
    /// The resource version after the change (for a deletion: the last one).
    pub resource_version: Option<String>,
    /// The resource version before the change (updates only).
    pub old_resource_version: Option<String>,
    /// When the watch saw it.
    pub seen_at: Timestamp,
    /// The diff or snapshot.
    pub content: ChangeContent,
}

impl WatchedChange {
    /// The change as a watch activity (docs/behaviour/watch.md): source `watch`, titled `watch create|update|delete`,
    /// the diff or snapshot as its log, dedup key `watch:<uid>:<resourceVersion>` (`:delete` added for a deletion),
    /// carrying `body` when given. The object watch sends these when asked to; recorded object files always do.
    pub fn to_activity(&self, body: Option<Arc<Body>>) -> Activity {
        let verb = match self.kind {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        };
        let identity = self
            .object
            .uid
            .as_ref()
            .map_or_else(|| self.object.key.to_string(), SmolStr::to_string);
        let rv = self.resource_version.clone().unwrap_or_default();
        let dedup_key = match self.kind {
            ChangeKind::Delete => format!("watch:{identity}:{rv}:delete"),
            _ => format!("watch:{identity}:{rv}"),
        };
        let object = match body {
            Some(body) => Object::with_body(self.object.clone(), body),
            None => Object::new(self.object.clone()),
        };
        let mut activity = Activity::new(
            object,
            SourceKind::Watch,
            self.seen_at,
            format!("watch {verb}"),
            dedup_key,
        );
        if !rv.is_empty() {
            activity.attribute(vocabulary::RESOURCE_VERSION, rv);
        }
        match &self.content {
            ChangeContent::Diff(text) if text.is_empty() => {}
            ChangeContent::Diff(text) => activity
                .logs
                .push(LogLine::new(LogKind::ObjectDiff, text.clone())),
            ChangeContent::Snapshot(text) => {
                activity
                    .logs
                    .push(LogLine::new(LogKind::ObjectSnapshot, text.clone()));
            }
            ChangeContent::Redacted => {
                activity
                    .logs
                    .push(LogLine::new(LogKind::KelemetryError, REDACTED_MESSAGE));
            }
        }
        activity
    }

    fn approximate_size(&self) -> usize {
        let content = match &self.content {
            ChangeContent::Diff(text) | ChangeContent::Snapshot(text) => text.len(),
            ChangeContent::Redacted => 0,
        };
        content + 256
    }
}

/// How a version of an object was seen.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WatchPhase {
    /// Listed when the watch of its resource started: nothing to compare with, no creation.
    InitialList,
    /// Listed again after the watch was interrupted: compared with what was known; unknown objects were created
    /// meanwhile.
    Relist,
    /// Seen by the live watch.
    Live,
}

/// Bounds of a [`WatchStore`]. In configuration files they are part of the object watch's section
/// (`ObjectWatchConfig`, feature `kube`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WatchStoreLimits {
    /// Objects whose latest body is kept.
    pub max_objects: usize,
    /// Estimated memory of the kept bodies, in bytes.
    pub max_body_bytes: usize,
    /// Changes (diffs and snapshots) kept.
    pub max_changes: usize,
    /// Estimated memory of the kept changes, in bytes.
    pub max_change_bytes: usize,
}

impl Default for WatchStoreLimits {
    fn default() -> Self {
        Self {
            max_objects: 50_000,
            max_body_bytes: 256 * 1024 * 1024,
            max_changes: 100_000,
            max_change_bytes: 128 * 1024 * 1024,
        }
    }
}

/// One line: versions, diffs, what is kept, and how the decorators fared.
impl std::fmt::Display for WatchStoreCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} versions, {} diffs, {} creations, {} deletions; {} objects kept (~{} KiB), {} changes kept; \
             decorated {} writes, {} missed, waited {} ms",
            self.versions_seen,
            self.diffs,
            self.creations,
            self.deletions,
            self.objects,
            self.body_bytes / 1024,
            self.changes,
            self.decorator_hits,
            self.decorator_misses,
            self.decorator_wait_ms,
        )
    }
}

/// Counters of a [`WatchStore`] and of the decorators reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchStoreCounts {
    /// Object versions handed to the store.
    pub versions_seen: u64,
    /// Diffs filed.
    pub diffs: u64,
    /// Creation snapshots filed.
    pub creations: u64,
    /// Deletion snapshots filed.
    pub deletions: u64,
    /// Bodies dropped to stay within the bounds.
    pub bodies_evicted: u64,
    /// Changes dropped to stay within the bounds.
    pub changes_evicted: u64,
    /// Objects whose body is kept now.
    pub objects: u64,
    /// Estimated memory of the kept bodies now.
    pub body_bytes: u64,
    /// Changes kept now.
    pub changes: u64,
    /// Activities that found their change.
    pub decorator_hits: u64,
    /// Activities that did not, after waiting.
    pub decorator_misses: u64,
    /// Total time decorators waited, in milliseconds.
    pub decorator_wait_ms: u64,
}

#[derive(Debug, Default)]
struct Counters {
    versions_seen: AtomicU64,
    diffs: AtomicU64,
    creations: AtomicU64,
    deletions: AtomicU64,
    bodies_evicted: AtomicU64,
    changes_evicted: AtomicU64,
    decorator_hits: AtomicU64,
    decorator_misses: AtomicU64,
    decorator_wait_ms: AtomicU64,
    /// The waits of the decorator that found the change (how far the watch lagged behind the audit record).
    waits_found: kelemetry_core::histogram::DurationHistogram,
    /// The waits of the decorator that gave up.
    waits_given_up: kelemetry_core::histogram::DurationHistogram,
}

struct Bodies {
    entries: LruCache<ObjectKey, (Arc<Body>, usize)>,
    bytes: usize,
}

struct Changes {
    entries: LruCache<(ObjectKey, ChangeSlot), (Arc<WatchedChange>, usize)>,
    bytes: usize,
}

/// How far the watch of one resource is.
#[derive(Copy, Clone, Debug, Default)]
struct ResourceWatch {
    /// Its first list is complete.
    listed: bool,
    /// When its first list was complete: writes that finished before are in the list, not seen as changes (those
    /// that finished while it was read may be either).
    since: Option<Timestamp>,
}

/// How much earlier than the end of a resource's first list a write must have finished for the decorator not to
/// wait for it (allows for clock skew between the apiserver and this process).
const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// The latest bodies and the recent changes of watched objects. See the module documentation.
pub struct WatchStore {
    limits: WatchStoreLimits,
    redactor: Redactor,
    bodies: Mutex<Bodies>,
    changes: Mutex<Changes>,
    /// (group, resource) → how far its watch is.
    resources: RwLock<HashMap<(SmolStr, SmolStr), ResourceWatch>>,
    counters: Counters,
}

impl std::fmt::Debug for WatchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStore")
            .field("limits", &self.limits)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

/// An estimate of the memory a JSON value takes (the body cache's, so both bound bodies alike).
pub use kelemetry_core::body_cache::approximate_size;

use kelemetry_core::body::resource_version;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The object as JSON without `metadata.managedFields`.
fn snapshot_text(body: &Value) -> String {
    let mut copy = body.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    copy.to_string()
}

/// The diff of two versions of an object of `group`/`resource`, lists matched by their keys
/// (`kelemetry_core::ListKeys`).
fn diff_text(group: &str, resource: &str, old: &Value, new: &Value) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for entry in audit_diff_of(group, resource, old, new) {
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = write!(text, "{entry}");
    }
    text
}

impl WatchStore {
    /// An empty store with these bounds, redacting bodies with `redactor`.
    pub fn new(limits: WatchStoreLimits, redactor: Redactor) -> Self {
        let capacity = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Self {
            limits,
            redactor,
            bodies: Mutex::new(Bodies {
                entries: LruCache::new(capacity(limits.max_objects)),
                bytes: 0,
            }),
            changes: Mutex::new(Changes {
                entries: LruCache::new(capacity(limits.max_changes)),
                bytes: 0,
            }),
            resources: RwLock::default(),
            counters: Counters::default(),
        }
    }

    /// Notes that objects of `group`/`resource` are watched (not listed yet).
    pub fn watching(&self, group: &str, resource: &str) {
        self.resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((SmolStr::new(group), SmolStr::new(resource)))
            .or_default();
    }

    /// Notes that the object watch stopped (this replica lost the Lease, see `leader::LeaderElected`): no resource
    /// counts as watched until the watch starts and lists it again, so [`WatchDiffDecorator`] does not hold audit
    /// writes waiting for changes that no watch on this replica will file. The bodies and changes kept stay, for
    /// the writes that still find them.
    pub fn watch_stopped(&self) {
        self.resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Notes that the first list of `group`/`resource` was complete at `at` (later calls change nothing).
    pub fn listed(&self, group: &str, resource: &str, at: Timestamp) {
        let mut resources = self
            .resources
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let watch = resources
            .entry((SmolStr::new(group), SmolStr::new(resource)))
            .or_default();
        watch.listed = true;
        watch.since.get_or_insert(at);
    }

    fn watch_of(&self, key: &ObjectKey) -> Option<ResourceWatch> {
        self.resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(key.group.clone(), key.resource.clone()))
            .copied()
    }

    /// Whether changes of objects like `key` are watched and their resource was listed once.
    pub fn covers(&self, key: &ObjectKey) -> bool {
        self.watch_of(key).is_some_and(|watch| watch.listed)
    }

    /// Whether a write on an object like `key` that finished at `stage` can still show up as a watched change:
    /// its resource is watched and listed, and the write did not finish before that list.
    pub fn may_still_see(&self, key: &ObjectKey, stage: Timestamp) -> bool {
        match self.watch_of(key) {
            Some(watch) if watch.listed => watch.since.is_none_or(|since| {
                since
                    .checked_sub(CLOCK_SKEW)
                    .is_ok_and(|earliest| stage >= earliest)
            }),
            _ => false,
        }
    }

    /// The latest body seen of `key` (redacted).
    pub fn body(&self, key: &ObjectKey) -> Option<Arc<Body>> {
        lock(&self.bodies)
            .entries
            .get(key)
            .map(|(body, _)| body.clone())
    }

    /// The change filed for `key` in `slot`.
    pub fn change(&self, key: &ObjectKey, slot: &ChangeSlot) -> Option<Arc<WatchedChange>> {
        lock(&self.changes)
            .entries
            .get(&(key.clone(), slot.clone()))
            .map(|(change, _)| change.clone())
    }

    /// Takes a version of an object seen by the watch: files the diff against the previous version (or the
    /// creation snapshot) and keeps it as the latest body. Returns the change filed, if any.
    pub fn seen(
        &self,
        object: ObjectRef,
        mut body: Value,
        phase: WatchPhase,
        now: Timestamp,
    ) -> Option<Arc<WatchedChange>> {
        self.counters.versions_seen.fetch_add(1, Relaxed);
        if self.redactor.applies_to(&object.key, &body) {
            self.redactor.redact(&object.key, &mut body);
        }
        let body = Arc::new(Body::from_value(body));
        let size = approximate_size(&body);
        let previous = self.remember(object.key.clone(), body.clone(), size);
        let new_rv = resource_version(&body).map(str::to_owned);
        let change = match (previous, phase) {
            (Some(previous), _) => {
                let old_rv = resource_version(&previous).map(str::to_owned);
                if old_rv == new_rv {
                    return None;
                }
                let content = if is_redacted_whole(&previous) || is_redacted_whole(&body) {
                    ChangeContent::Redacted
                } else {
                    ChangeContent::Diff(diff_text(
                        &object.key.group,
                        &object.key.resource,
                        &previous,
                        &body,
                    ))
                };
                WatchedChange {
                    object,
                    kind: ChangeKind::Update,
                    resource_version: new_rv,
                    old_resource_version: old_rv,
                    seen_at: now,
                    content,
                }
            }
            (None, WatchPhase::InitialList) => return None,
            (None, WatchPhase::Relist | WatchPhase::Live) => WatchedChange {
                object,
                kind: ChangeKind::Create,
                resource_version: new_rv,
                old_resource_version: None,
                seen_at: now,
                content: snapshot_content(&body),
            },
        };
        Some(self.file(change))
    }

    /// Takes the deletion of an object (`last` is its final body): files the deletion snapshot and forgets it.
    pub fn deleted(
        &self,
        object: ObjectRef,
        mut last: Value,
        now: Timestamp,
    ) -> Arc<WatchedChange> {
        if self.redactor.applies_to(&object.key, &last) {
            self.redactor.redact(&object.key, &mut last);
        }
        let mut bodies = lock(&self.bodies);
        if let Some((_, size)) = bodies.entries.pop(&object.key) {
            bodies.bytes = bodies.bytes.saturating_sub(size);
        }
        drop(bodies);
        self.file(WatchedChange {
            object,
            kind: ChangeKind::Delete,
            resource_version: resource_version(&last).map(str::to_owned),
            old_resource_version: None,
            seen_at: now,
            content: snapshot_content(&last),
        })
    }

    /// After a re-list of `group`/`resource`: the kept objects of it that were not listed were deleted while the
    /// watch was interrupted. Files their deletion snapshots (from their last known body) and returns them.
    pub fn relisted(
        &self,
        group: &str,
        resource: &str,
        listed: &HashSet<ObjectKey>,
        now: Timestamp,
    ) -> Vec<Arc<WatchedChange>> {
        let gone: Vec<(ObjectKey, Arc<Body>)> = lock(&self.bodies)
            .entries
            .iter()
            .filter(|(key, _)| {
                key.group == group && key.resource == resource && !listed.contains(*key)
            })
            .map(|(key, (body, _))| (key.clone(), body.clone()))
            .collect();
        gone.into_iter()
            .map(|(key, body)| {
                let version = body
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .map(|v| kelemetry_core::key::split_api_version(v).1.to_owned())
                    .unwrap_or_default();
                let uid = body
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(SmolStr::new);
                let last = Arc::unwrap_or_clone(body).into_value();
                self.deleted(ObjectRef::new(key, version, uid), last, now)
            })
            .collect()
    }

    fn remember(&self, key: ObjectKey, body: Arc<Body>, size: usize) -> Option<Arc<Body>> {
        let mut bodies = lock(&self.bodies);
        let previous = match bodies.entries.push(key.clone(), (body, size)) {
            Some((old_key, (old_body, old_size))) => {
                bodies.bytes = bodies.bytes.saturating_sub(old_size);
                if old_key == key {
                    Some(old_body)
                } else {
                    self.counters.bodies_evicted.fetch_add(1, Relaxed);
                    None
                }
            }
            None => None,
        };
        bodies.bytes += size;
        while bodies.bytes > self.limits.max_body_bytes && bodies.entries.len() > 1 {
            let Some((_, (_, evicted))) = bodies.entries.pop_lru() else {
                break;
            };
            bodies.bytes = bodies.bytes.saturating_sub(evicted);
            self.counters.bodies_evicted.fetch_add(1, Relaxed);
        }
        previous
    }

    fn file(&self, change: WatchedChange) -> Arc<WatchedChange> {
        let key = change.object.key.clone();
        let mut slots = Vec::with_capacity(2);
        match change.kind {
            ChangeKind::Update => {
                self.counters.diffs.fetch_add(1, Relaxed);
                if let Some(rv) = &change.resource_version {
                    slots.push(ChangeSlot::NewVersion(rv.clone()));
                }
                if let Some(rv) = &change.old_resource_version {
                    slots.push(ChangeSlot::OldVersion(rv.clone()));
                }
            }
            ChangeKind::Create => {
                self.counters.creations.fetch_add(1, Relaxed);
                slots.push(ChangeSlot::Creation);
                // A patch or update can create the object (server-side apply): it asks by the new version.
                if let Some(rv) = &change.resource_version {
                    slots.push(ChangeSlot::NewVersion(rv.clone()));
                }
            }
            ChangeKind::Delete => {
                self.counters.deletions.fetch_add(1, Relaxed);
                slots.push(ChangeSlot::Deletion);
            }
        }
        let size = change.approximate_size();
        let change = Arc::new(change);
        let mut changes = lock(&self.changes);
        for slot in slots {
            let filed = (key.clone(), slot);
            if let Some((replaced, (_, old))) =
                changes.entries.push(filed.clone(), (change.clone(), size))
            {
                changes.bytes = changes.bytes.saturating_sub(old);
                if replaced != filed {
                    self.counters.changes_evicted.fetch_add(1, Relaxed);
                }
            }
            changes.bytes += size;
        }
        while changes.bytes > self.limits.max_change_bytes && changes.entries.len() > 1 {
            let Some((_, (_, evicted))) = changes.entries.pop_lru() else {
                break;
            };
            changes.bytes = changes.bytes.saturating_sub(evicted);
            self.counters.changes_evicted.fetch_add(1, Relaxed);
        }
        change
    }

    /// The counters.
    pub fn counts(&self) -> WatchStoreCounts {
        let (objects, body_bytes) = {
            let bodies = lock(&self.bodies);
            (bodies.entries.len() as u64, bodies.bytes as u64)
        };
        let changes = lock(&self.changes).entries.len() as u64;
        let c = &self.counters;
        WatchStoreCounts {
            versions_seen: c.versions_seen.load(Relaxed),
            diffs: c.diffs.load(Relaxed),
            creations: c.creations.load(Relaxed),
            deletions: c.deletions.load(Relaxed),
            bodies_evicted: c.bodies_evicted.load(Relaxed),
            changes_evicted: c.changes_evicted.load(Relaxed),
            objects,
            body_bytes,
            changes,
            decorator_hits: c.decorator_hits.load(Relaxed),
            decorator_misses: c.decorator_misses.load(Relaxed),
            decorator_wait_ms: c.decorator_wait_ms.load(Relaxed),
        }
    }
}

fn snapshot_content(body: &Value) -> ChangeContent {
    if is_redacted_whole(body) {
        ChangeContent::Redacted
    } else {
        ChangeContent::Snapshot(snapshot_text(body))
    }
}

#[async_trait]
impl ObjectLookup for WatchStore {
    async fn body(&self, object: &ObjectRef) -> Option<Arc<Body>> {
        WatchStore::body(self, &object.key)
    }
}

/// How long [`WatchDiffDecorator`] waits for the watch (docs/behaviour/watch.md#waiting-for-the-watch).
/// With the feature `config` it is read from configuration files (camelCase keys, durations like `15s`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
pub struct WatchWait {
    /// Pause between two tries (default 1 s).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub poll: Duration,
    /// Give up at the request's `stageTimestamp` plus this (default 15 s).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub after_stage: Duration,
    /// Never wait longer than this for one activity (default 10 s).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub total: Duration,
}

impl Default for WatchWait {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            after_stage: Duration::from_secs(15),
            total: Duration::from_secs(10),
        }
    }
}

/// Attaches the watch's diff or snapshot to audit writes that have none. See the module documentation.
#[derive(Clone, Debug)]
pub struct WatchDiffDecorator {
    store: Arc<WatchStore>,
    wait: WatchWait,
}

impl WatchDiffDecorator {
    /// Reads `store`, waiting as `wait` says.
    pub fn new(store: Arc<WatchStore>, wait: WatchWait) -> Self {
        Self { store, wait }
    }

    /// The slot whose change this activity wants, or `None` when it wants none.
    fn wanted(activity: &Activity) -> Option<ChangeSlot> {
        let change = activity.change.as_ref()?;
        let done = activity.logs.iter().any(|l| {
            matches!(l.kind, LogKind::ObjectDiff | LogKind::ObjectSnapshot)
                || (l.kind == LogKind::RealVerbose && l.message == "No-op update")
                || l.message == REDACTED_MESSAGE
        });
        let failed = activity
            .attribute_value(vocabulary::RESPONSE_CODE)
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code >= 300);
        if done || failed {
            return None;
        }
        let subresource = change.subresource.as_deref();
        match change.kind {
            ChangeKind::Create if subresource.is_none() => Some(ChangeSlot::Creation),
            ChangeKind::Delete if subresource.is_none() => Some(ChangeSlot::Deletion),
            ChangeKind::Update => {
                let new_rv = activity
                    .attribute_value(vocabulary::NEW_RESOURCE_VERSION)
                    .map(str::to_owned)
                    .or_else(|| {
                        activity
                            .object
                            .body
                            .as_deref()
                            .and_then(resource_version)
                            .map(str::to_owned)
                    });
                match (new_rv, &change.old_resource_version) {
                    (Some(new), Some(old)) if &new == old => None,
                    (Some(new), _) => Some(ChangeSlot::NewVersion(new)),
                    (None, Some(old)) => Some(ChangeSlot::OldVersion(old.clone())),
                    (None, None) => None,
                }
            }
            _ => None,
        }
    }

    fn attach(activity: &mut Activity, change: &WatchedChange) {
        match &change.content {
            ChangeContent::Diff(text) if text.is_empty() => {}
            ChangeContent::Diff(text) => activity
                .logs
                .push(LogLine::new(LogKind::ObjectDiff, text.clone())),
            ChangeContent::Snapshot(text) => activity
                .logs
                .push(LogLine::new(LogKind::ObjectSnapshot, text.clone())),
            ChangeContent::Redacted => activity
                .logs
                .push(LogLine::new(LogKind::KelemetryError, REDACTED_MESSAGE)),
        }
        if change.kind == ChangeKind::Update
            && activity
                .attribute_value(vocabulary::NEW_RESOURCE_VERSION)
                .is_none()
            && let Some(rv) = &change.resource_version
        {
            activity.attribute(vocabulary::NEW_RESOURCE_VERSION, rv.clone());
        }
    }
}

#[async_trait]
impl Decorator for WatchDiffDecorator {
    fn name(&self) -> &str {
        "watch-diff"
    }

    async fn decorate(&self, activity: &mut Activity, _bodies: &BodyCache) {
        let Some(slot) = Self::wanted(activity) else {
            return;
        };
        let key = activity.object.key().clone();
        if let Some(change) = self.store.change(&key, &slot) {
            self.store.counters.decorator_hits.fetch_add(1, Relaxed);
            Self::attach(activity, &change);
            return;
        }
        let stage = activity.end.unwrap_or(activity.start);
        let current = match &slot {
            // The latest version seen is the one written, and no change was filed for it: the write changed
            // nothing (a no-op patch), or it is in the first list. Nothing will come.
            ChangeSlot::NewVersion(rv) => self
                .store
                .body(&key)
                .is_some_and(|body| resource_version(&body) == Some(rv.as_str())),
            _ => false,
        };
        if current || !self.store.may_still_see(&key, stage) {
            if self.store.covers(&key) {
                self.store.counters.decorator_misses.fetch_add(1, Relaxed);
            }
            return;
        }
        let started = tokio::time::Instant::now();
        let until_stage_deadline = stage
            .checked_add(self.wait.after_stage)
            .ok()
            .and_then(|deadline| Duration::try_from(deadline.duration_since(Timestamp::now())).ok())
            .unwrap_or(Duration::ZERO);
        let deadline = started + until_stage_deadline.min(self.wait.total);
        let mut found = None;
        while tokio::time::Instant::now() < deadline {
            let pause = self
                .wait
                .poll
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::time::sleep(pause).await;
            if let Some(change) = self.store.change(&key, &slot) {
                found = Some(change);
                break;
            }
        }
        let elapsed = started.elapsed();
        let waited = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match found {
            Some(_) => self.store.counters.waits_found.observe(elapsed),
            None => self.store.counters.waits_given_up.observe(elapsed),
        }
        self.store
            .counters
            .decorator_wait_ms
            .fetch_add(waited, Relaxed);
        match found {
            Some(change) => {
                self.store.counters.decorator_hits.fetch_add(1, Relaxed);
                Self::attach(activity, &change);
            }
            None => {
                self.store.counters.decorator_misses.fetch_add(1, Relaxed);
                tracing::debug!(object = %key, ?slot, "no watched change for this write");
            }
        }
    }
}

/// For metrics: the decorator's waits and how far the watches are.
impl WatchStore {
    /// How long [`WatchDiffDecorator`] waited for a lagging watch, for the writes whose change then came (the
    /// watch's lag behind the audit record) and for those it gave up on. Writes that did not wait are in neither.
    pub fn decorator_waits(
        &self,
    ) -> (
        kelemetry_core::histogram::HistogramSnapshot,
        kelemetry_core::histogram::HistogramSnapshot,
    ) {
        (
            self.counters.waits_found.snapshot(),
            self.counters.waits_given_up.snapshot(),
        )
    }

    /// The watched resources whose first list is still being read, and those listed.
    pub fn resources_listing_and_listed(&self) -> (u64, u64) {
        let resources = self
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let listed = resources.values().filter(|watch| watch.listed).count() as u64;
        (resources.len() as u64 - listed, listed)
    }
}

#[cfg(test)]
mod tests {
    use kelemetry_core::activity::Change;
    use kelemetry_core::{Object, ObjectRef};

    use super::*;

    fn write_without_change(at: Timestamp) -> Activity {
        let object = ObjectRef::new(
            ObjectKey::new("c", "apps", "deployments", "default", "web"),
            "v1",
            Some("uid-web".into()),
        );
        let mut activity = Activity::new(
            Object::new(object),
            SourceKind::Audit,
            at,
            "alice create",
            "audit:1",
        );
        activity.end = Some(at);
        activity.change = Some(Change {
            kind: ChangeKind::Create,
            old_resource_version: None,
            subresource: None,
        });
        activity
    }

    /// The decorator's wait, on tokio's paused clock: how long it waited for one write that no change comes for.
    async fn waited_for_one_write(store: &Arc<WatchStore>) -> u64 {
        let wait = WatchWait {
            poll: Duration::from_secs(1),
            after_stage: Duration::from_secs(3600),
            total: Duration::from_secs(10),
        };
        let decorator = WatchDiffDecorator::new(Arc::clone(store), wait);
        let before = store.counts().decorator_wait_ms;
        let mut activity = write_without_change(Timestamp::now());
        decorator.decorate(&mut activity, &BodyCache::new(1)).await;
        store.counts().decorator_wait_ms - before
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_where_the_watch_does_not_run_or_stopped() {
        let store = Arc::new(WatchStore::new(
            WatchStoreLimits::default(),
            Redactor::default(),
        ));
        // A replica that does not hold the Lease: its watch never ran.
        assert_eq!(waited_for_one_write(&store).await, 0);
        // The watch runs and has listed: a write without its change is waited for, up to the bound.
        store.watching("apps", "deployments");
        store.listed(
            "apps",
            "deployments",
            Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(60))
                .unwrap_or_default(),
        );
        assert_eq!(waited_for_one_write(&store).await, 10_000);
        // The Lease was lost and the watch stopped: no more waiting, until it lists again.
        store.watch_stopped();
        assert!(!store.covers(&ObjectKey::new(
            "c",
            "apps",
            "deployments",
            "default",
            "web"
        )));
        assert_eq!(waited_for_one_write(&store).await, 0);
        store.watching("apps", "deployments");
        assert_eq!(waited_for_one_write(&store).await, 0);
    }
}
