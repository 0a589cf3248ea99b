//! [`Decorator`]: enriches an activity before it becomes a span (diffs, snapshots, tags).

use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::activity::{Activity, ChangeKind, LogKind, LogLine};
use crate::body::{Body, resource_version};
use crate::body_cache::BodyCache;
use crate::diff::audit_diff_bodies;
use crate::list_keys::{ListKeys, SharedListKeys};
use crate::redact::is_redacted_whole;
use crate::vocabulary;

/// Enriches activities in the pipeline, in arrival order. `bodies` holds the latest body seen of each object
/// *before* this activity; the pipeline stores the activity's own body after every decorator ran.
#[async_trait]
pub trait Decorator: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Adds logs or attributes to `activity`.
    async fn decorate(&self, activity: &mut Activity, bodies: &BodyCache);
}

/// The text of the log that stands in for a diff or snapshot of an object redacted whole.
pub const REDACTED_MESSAGE: &str = "Sensitive object content has been redacted";

/// The `realVerbose` log of an update that changed nothing (its resource version is the one it was based on).
pub const NO_OP_UPDATE: &str = "No-op update";

/// Adds what a write changed to audit activities (docs/behaviour/diffs-and-redaction.md#diffs-from-audit-bodies),
/// from the activity's body (the response object) and the previous body of the object in the [`BodyCache`]:
///
/// - create (not of a subresource): one `audit/objectSnapshot` log, the created object as JSON;
/// - update or patch: when the new resource version equals the one the request was based on, a `realVerbose`
///   "No-op update" log and nothing else; otherwise the attribute `newResourceVersion` and, when an earlier body
///   of the object was seen, one `audit/objectDiff` log with a line `path old -> new` per changed field
///   ([`audit_diff_of`](crate::diff::audit_diff_of) for the object's group and resource: lists matched by their
///   keys in [`ListKeys::builtin`]; `metadata.managedFields` and `metadata.resourceVersion` never
///   appear). Without an earlier body nothing is added: the first write seen of an object has nothing to compare
///   with, and saying so on every such activity would be noise;
/// - delete (not of a subresource): a snapshot of the deleted object, from the response, else the previous body;
/// - failed requests (response code 300 or more) and activities without a body get nothing.
///
/// Snapshots leave out `metadata.managedFields`. Bodies are expected to be redacted already (the pipeline does
/// it before decorators run); for an object redacted whole (labelled
/// [`REDACTED_LABEL`](crate::redact::REDACTED_LABEL)) a `kelemetryError` log [`REDACTED_MESSAGE`] replaces the
/// diff or snapshot. Activities that already carry a diff or snapshot log are left alone.
///
/// [`DiffDecoratorWithKeys`] does the same with a table of list keys that can grow while the pipeline runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiffDecorator;

#[async_trait]
impl Decorator for DiffDecorator {
    fn name(&self) -> &str {
        "diff"
    }

    async fn decorate(&self, activity: &mut Activity, bodies: &BodyCache) {
        self.decorate_now(activity, bodies);
    }
}

impl DiffDecorator {
    /// What [`Decorator::decorate`] does, without the `async`.
    pub fn decorate_now(&self, activity: &mut Activity, bodies: &BodyCache) {
        decorate_with_keys(activity, bodies, ListKeys::builtin());
    }
}

/// [`DiffDecorator`] with a table of list keys of your own, shared so that a source can add the keys of custom
/// resources (their schemas' `x-kubernetes-list-map-keys`) while the pipeline runs; a diff uses the table as it
/// is when the diff is made.
///
/// ```
/// use std::sync::{Arc, RwLock};
/// use kelemetry_core::decorate::DiffDecoratorWithKeys;
/// use kelemetry_core::ListKeys;
///
/// let keys = Arc::new(RwLock::new(ListKeys::kubernetes()));
/// let decorator = DiffDecoratorWithKeys::new(Arc::clone(&keys));
/// // Later, from what discovery served:
/// keys.write().unwrap().insert("example.io", "widgets", "status.parts", &["id"]).unwrap();
/// # drop(decorator);
/// ```
#[derive(Clone, Debug)]
pub struct DiffDecoratorWithKeys {
    keys: SharedListKeys,
}

impl DiffDecoratorWithKeys {
    /// A decorator reading list keys from `keys`.
    pub fn new(keys: SharedListKeys) -> Self {
        Self { keys }
    }

    /// What [`Decorator::decorate`] does, without the `async`.
    pub fn decorate_now(&self, activity: &mut Activity, bodies: &BodyCache) {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        decorate_with_keys(activity, bodies, &keys);
    }
}

#[async_trait]
impl Decorator for DiffDecoratorWithKeys {
    fn name(&self) -> &str {
        "diff"
    }

    async fn decorate(&self, activity: &mut Activity, bodies: &BodyCache) {
        self.decorate_now(activity, bodies);
    }
}

/// What the diff decorators do, with list keys from `keys`.
fn decorate_with_keys(activity: &mut Activity, bodies: &BodyCache, keys: &ListKeys) {
    let Some(change) = &activity.change else {
        return;
    };
    // Decorated already (by an ingest process, before the record travelled): decorating twice changes nothing.
    let already = activity.logs.iter().any(|l| {
        matches!(l.kind, LogKind::ObjectDiff | LogKind::ObjectSnapshot)
            || (l.kind == LogKind::RealVerbose && l.message == NO_OP_UPDATE)
            || (l.kind == LogKind::KelemetryError && l.message == REDACTED_MESSAGE)
    });
    if already || failed(activity) {
        return;
    }
    let body = activity.object.body.clone();
    match change.kind {
        ChangeKind::Create => {
            if change.subresource.is_none()
                && let Some(body) = body
            {
                push_snapshot(activity, &body);
            }
        }
        ChangeKind::Delete => {
            if change.subresource.is_none()
                && let Some(body) = body.or_else(|| bodies.get(activity.object.key()))
            {
                push_snapshot(activity, &body);
            }
        }
        ChangeKind::Update => {
            let Some(body) = body else {
                return;
            };
            let new_rv = resource_version(&body);
            if new_rv.is_some() && new_rv == change.old_resource_version.as_deref() {
                activity
                    .logs
                    .push(LogLine::new(LogKind::RealVerbose, NO_OP_UPDATE));
                return;
            }
            if let Some(rv) = new_rv
                && activity
                    .attribute_value(vocabulary::NEW_RESOURCE_VERSION)
                    .is_none()
            {
                activity.attribute(vocabulary::NEW_RESOURCE_VERSION, rv);
            }
            let Some(previous) = bodies.before(activity.object.key(), new_rv) else {
                return;
            };
            if Arc::ptr_eq(&previous, &body)
                || (new_rv.is_some() && resource_version(&previous) == new_rv)
            {
                // The cache already holds this very version (a redelivery): nothing to compare.
                return;
            }
            if is_redacted_whole(&previous) || is_redacted_whole(&body) {
                activity
                    .logs
                    .push(LogLine::new(LogKind::KelemetryError, REDACTED_MESSAGE));
                return;
            }
            let key = activity.object.key();
            let text = audit_diff_bodies(keys, &key.group, &key.resource, &previous, &body);
            if !text.is_empty() {
                activity.logs.push(LogLine::new(LogKind::ObjectDiff, text));
            }
        }
    }
}

fn failed(activity: &Activity) -> bool {
    activity
        .attribute_value(vocabulary::RESPONSE_CODE)
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code >= 300)
}

fn push_snapshot(activity: &mut Activity, body: &Body) {
    if is_redacted_whole(body) {
        activity
            .logs
            .push(LogLine::new(LogKind::KelemetryError, REDACTED_MESSAGE));
        return;
    }
    // A body kept as text is its own snapshot, cut rather than parsed and written again.
    let text = match body.text_without_managed_fields() {
        Some(text) => Ok(text.into_owned()),
        None => serde_json::to_string(&WithoutManagedFields(body.value())),
    };
    match text {
        Ok(text) => activity
            .logs
            .push(LogLine::new(LogKind::ObjectSnapshot, text)),
        Err(err) => activity.logs.push(LogLine::new(
            LogKind::KelemetryError,
            format!("could not write the object snapshot: {err}"),
        )),
    }
}

/// Serialises an object as is, except `metadata.managedFields`.
struct WithoutManagedFields<'a>(&'a Value);

impl Serialize for WithoutManagedFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Value::Object(map) = self.0 else {
            return self.0.serialize(serializer);
        };
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for (key, value) in map {
            match (key.as_str(), value) {
                ("metadata", Value::Object(metadata)) => {
                    out.serialize_entry(key, &MetadataWithoutManagedFields(metadata))?;
                }
                _ => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

struct MetadataWithoutManagedFields<'a>(&'a serde_json::Map<String, Value>);

impl Serialize for MetadataWithoutManagedFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kept = self.0.iter().filter(|(k, _)| k.as_str() != "managedFields");
        serializer.collect_map(kept)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::activity::{Change, SourceKind};
    use crate::key::{Object, ObjectKey, ObjectRef};
    use crate::redact::REDACTED_LABEL;

    fn key() -> ObjectKey {
        ObjectKey::new("c", "apps", "deployments", "default", "web")
    }

    fn deployment(rv: &str, replicas: u32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": rv, "generation": replicas,
                         "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"replicas": replicas}
        })
    }

    fn write(kind: ChangeKind, old_rv: Option<&str>, body: Option<Value>, code: u16) -> Activity {
        let object_ref = ObjectRef::new(key(), "v1", None);
        let object = match body {
            Some(body) => Object::with_body(object_ref, Arc::new(body)),
            None => Object::new(object_ref),
        };
        let at = "2024-05-01T12:00:00Z".parse().unwrap_or_default();
        let mut activity = Activity::new(object, SourceKind::Audit, at, "alice write", "audit:1");
        activity.attribute(vocabulary::RESPONSE_CODE, code.to_string());
        activity.change = Some(Change {
            kind,
            old_resource_version: old_rv.map(str::to_owned),
            subresource: None,
        });
        activity
    }

    fn run(activity: &mut Activity, bodies: &BodyCache) {
        DiffDecorator.decorate_now(activity, bodies);
    }

    fn logs(activity: &Activity) -> Vec<(LogKind, String)> {
        activity
            .logs
            .iter()
            .map(|l| (l.kind, l.message.clone()))
            .collect()
    }

    #[test]
    fn create_gets_a_snapshot_without_managed_fields() {
        let mut a = write(ChangeKind::Create, None, Some(deployment("1", 2)), 201);
        run(&mut a, &BodyCache::new(4));
        assert_eq!(a.logs.len(), 1);
        assert_eq!(a.logs[0].kind, LogKind::ObjectSnapshot);
        let snapshot: Value = serde_json::from_str(&a.logs[0].message).unwrap();
        let mut expected = deployment("1", 2);
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert_eq!(snapshot, expected);
    }

    #[test]
    fn create_of_a_subresource_or_without_body_gets_nothing() {
        let mut a = write(ChangeKind::Create, None, Some(deployment("1", 2)), 201);
        a.change.as_mut().unwrap().subresource = Some("status".into());
        run(&mut a, &BodyCache::new(4));
        let mut b = write(ChangeKind::Create, None, None, 201);
        run(&mut b, &BodyCache::new(4));
        assert!(a.logs.is_empty() && b.logs.is_empty());
    }

    #[test]
    fn update_is_diffed_against_the_previous_body() {
        let bodies = BodyCache::new(4);
        bodies.insert(&key(), Arc::new(deployment("1", 2).into()));
        let mut a = write(ChangeKind::Update, Some("1"), Some(deployment("5", 4)), 200);
        run(&mut a, &bodies);
        assert_eq!(
            logs(&a),
            [(
                LogKind::ObjectDiff,
                "metadata.generation 2 -> 4\nspec.replicas 2 -> 4".to_owned()
            )]
        );
        assert_eq!(
            a.attribute_value(vocabulary::NEW_RESOURCE_VERSION),
            Some("5")
        );
    }

    #[test]
    fn update_diffs_lists_by_the_keys_of_the_objects_resource() {
        let with_parts = |rv: &str, parts: Value| {
            let mut body = deployment(rv, 2);
            body["spec"]["parts"] = parts;
            body["spec"]["template"] = json!({"spec": {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "secret": {}}]}});
            body
        };
        let old = with_parts("1", json!([{"id": 1, "size": 1}, {"id": 2, "size": 1}]));
        let mut new = with_parts("2", json!([{"id": 2, "size": 1}, {"id": 1, "size": 2}]));
        // The volumes swapped places: by the built-in table (keyed by name), that is no change.
        new["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "b", "secret": {}}, {"name": "a", "emptyDir": {}}]);
        let keys: SharedListKeys = Arc::new(std::sync::RwLock::new(ListKeys::kubernetes()));
        let decorator = DiffDecoratorWithKeys::new(Arc::clone(&keys));
        let diff_with = |decorate: &dyn Fn(&mut Activity, &BodyCache)| {
            let bodies = BodyCache::new(4);
            bodies.insert(&key(), Arc::new(old.clone().into()));
            let mut a = write(ChangeKind::Update, Some("1"), Some(new.clone()), 200);
            decorate(&mut a, &bodies);
            logs(&a)
        };
        let by_index = diff_with(&|a, b| DiffDecorator.decorate_now(a, b));
        assert_eq!(
            by_index,
            [(
                LogKind::ObjectDiff,
                "spec.parts[0].id 1 -> 2\nspec.parts[1].id 2 -> 1\nspec.parts[1].size 1 -> 2"
                    .to_owned()
            )]
        );
        // A key added while running (as a source would from a CRD schema) is used from the next diff on.
        keys.write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert("apps", "deployments", "spec.parts", &["id"])
            .unwrap_or_default();
        let keyed = diff_with(&|a, b| decorator.decorate_now(a, b));
        assert_eq!(
            keyed,
            [(
                LogKind::ObjectDiff,
                "spec.parts[id=1].size 1 -> 2".to_owned()
            )]
        );
    }

    /// An ingest process decorates before the record travels; the process that makes its span decorates again
    /// (with a cache of its own, warm or cold): the second time changes nothing.
    #[test]
    fn decorating_twice_is_decorating_once() {
        let warm = BodyCache::new(4);
        warm.insert(&key(), Arc::new(deployment("1", 2).into()));
        let cases = [
            write(ChangeKind::Update, Some("1"), Some(deployment("5", 4)), 200),
            write(ChangeKind::Update, Some("7"), Some(deployment("7", 9)), 200),
            write(ChangeKind::Create, None, Some(deployment("1", 2)), 201),
        ];
        for case in cases {
            let mut once = case.clone();
            run(&mut once, &warm);
            for second in [&warm, &BodyCache::new(4)] {
                let mut twice = once.clone();
                run(&mut twice, second);
                assert_eq!(twice, once);
            }
        }
    }

    #[test]
    fn update_that_changed_nothing_is_a_no_op() {
        let bodies = BodyCache::new(4);
        bodies.insert(&key(), Arc::new(deployment("1", 2).into()));
        let mut a = write(ChangeKind::Update, Some("7"), Some(deployment("7", 9)), 200);
        run(&mut a, &bodies);
        assert_eq!(
            logs(&a),
            [(LogKind::RealVerbose, "No-op update".to_owned())]
        );
        assert_eq!(a.attribute_value(vocabulary::NEW_RESOURCE_VERSION), None);
    }

    #[test]
    fn update_without_earlier_body_or_only_metadata_changes_adds_no_log() {
        let mut a = write(ChangeKind::Update, Some("1"), Some(deployment("2", 2)), 200);
        run(&mut a, &BodyCache::new(4));
        assert!(a.logs.is_empty());
        assert_eq!(
            a.attribute_value(vocabulary::NEW_RESOURCE_VERSION),
            Some("2")
        );
        // Only resourceVersion and managedFields differ: no diff log.
        let bodies = BodyCache::new(4);
        let mut old = deployment("1", 2);
        old["metadata"]["managedFields"] = json!([]);
        bodies.insert(&key(), Arc::new(old.into()));
        let mut a = write(ChangeKind::Update, Some("1"), Some(deployment("2", 2)), 200);
        run(&mut a, &bodies);
        assert!(a.logs.is_empty());
    }

    #[test]
    fn failed_requests_get_no_diff_or_snapshot() {
        let bodies = BodyCache::new(4);
        bodies.insert(&key(), Arc::new(deployment("1", 2).into()));
        for kind in [ChangeKind::Create, ChangeKind::Update, ChangeKind::Delete] {
            let mut a = write(kind, Some("1"), Some(deployment("2", 3)), 409);
            run(&mut a, &bodies);
            assert!(a.logs.is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn delete_snapshots_the_response_or_else_the_previous_body() {
        let bodies = BodyCache::new(4);
        bodies.insert(&key(), Arc::new(deployment("3", 2).into()));
        let mut with_status = write(ChangeKind::Delete, None, None, 200);
        run(&mut with_status, &bodies);
        assert_eq!(with_status.logs[0].kind, LogKind::ObjectSnapshot);
        assert!(
            with_status.logs[0]
                .message
                .contains("\"resourceVersion\":\"3\"")
        );
        let mut with_object = write(ChangeKind::Delete, None, Some(deployment("4", 2)), 200);
        run(&mut with_object, &bodies);
        assert!(
            with_object.logs[0]
                .message
                .contains("\"resourceVersion\":\"4\"")
        );
        assert!(!with_object.logs[0].message.contains("managedFields"));
        let mut unknown = write(ChangeKind::Delete, None, None, 200);
        run(&mut unknown, &BodyCache::new(1));
        assert!(unknown.logs.is_empty());
    }

    #[test]
    fn objects_redacted_whole_get_a_marker_instead() {
        let mut secret_deploy = deployment("2", 3);
        secret_deploy["metadata"]["labels"] = json!({REDACTED_LABEL: "true"});
        let bodies = BodyCache::new(4);
        bodies.insert(&key(), Arc::new(deployment("1", 2).into()));
        let mut update = write(
            ChangeKind::Update,
            Some("1"),
            Some(secret_deploy.clone()),
            200,
        );
        run(&mut update, &bodies);
        let mut create = write(ChangeKind::Create, None, Some(secret_deploy), 201);
        run(&mut create, &bodies);
        for a in [update, create] {
            assert_eq!(
                logs(&a),
                [(LogKind::KelemetryError, REDACTED_MESSAGE.to_owned())]
            );
        }
    }

    #[test]
    fn activities_without_change_or_with_a_diff_already_are_untouched() {
        let mut a = write(ChangeKind::Create, None, Some(deployment("1", 2)), 201);
        a.change = None;
        run(&mut a, &BodyCache::new(1));
        assert!(a.logs.is_empty());
        let mut b = write(ChangeKind::Create, None, Some(deployment("1", 2)), 201);
        b.logs.push(LogLine::new(LogKind::ObjectSnapshot, "{}"));
        run(&mut b, &BodyCache::new(1));
        assert_eq!(b.logs.len(), 1);
    }

    #[tokio::test]
    async fn works_through_the_trait() {
        let decorator: Arc<dyn Decorator> = Arc::new(DiffDecorator);
        let mut a = write(ChangeKind::Create, None, Some(deployment("1", 2)), 201);
        decorator.decorate(&mut a, &BodyCache::new(1)).await;
        assert_eq!(decorator.name(), "diff");
        assert_eq!(a.logs.len(), 1);
    }
}
