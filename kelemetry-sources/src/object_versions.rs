//! [`ObjectVersions`]: successive versions of the same object in a recording turned into change activities, the
//! way the live object watch turns what it sees into `watch` activities (the same [`WatchStore`] diffs them).

use std::sync::Arc;

use jiff::Timestamp;
use kelemetry_core::redact::Redactor;
use kelemetry_core::{Observation, Record};
use serde_json::Value;

use crate::watch_store::{WatchPhase, WatchStore, WatchStoreLimits};

/// The bounds of the versions a file source remembers: the latest body of at most 10,000 objects and 64 MiB
/// (estimated), least recently seen first out. An object pushed out is taken as new when it shows up again: its
/// next version is an observation, not a diff.
pub(crate) const FILE_VERSION_LIMITS: WatchStoreLimits = WatchStoreLimits {
    max_objects: 10_000,
    max_body_bytes: 64 * 1024 * 1024,
    // The changes are sent as activities at once; the store keeps none of them for a decorator.
    max_changes: 1,
    max_change_bytes: 1024 * 1024,
};

/// Remembers the latest version of each object of a recording and turns the next one into a change.
#[derive(Debug)]
pub(crate) struct ObjectVersions {
    store: WatchStore,
}

impl ObjectVersions {
    /// Versions remembered within `limits`, bodies redacted with `redactor` before they are kept or diffed.
    pub(crate) fn new(limits: WatchStoreLimits, redactor: Redactor) -> Self {
        Self {
            store: WatchStore::new(limits, redactor),
        }
    }

    /// What one recorded version of an object becomes:
    /// - the first version of an object: the observation itself;
    /// - a version whose `metadata.resourceVersion` differs from the one before: a `watch update` activity with
    ///   the field diff between the two, carrying the new body;
    /// - the same resource version again: the observation (nothing changed);
    /// - a deletion (`deleted`, a `DELETED` watch event): a `watch delete` activity with the final snapshot.
    ///
    /// `timed` says the observation's time was recorded with it; otherwise a change takes the latest time the body
    /// itself gives (see [`version_time`]), never earlier than the version before.
    pub(crate) fn record(&self, observation: Observation, deleted: bool, timed: bool) -> Record {
        let Observation { object, time } = observation;
        let Some(body) = object.body else {
            return Observation { object, time }.into();
        };
        let key = object.object_ref.key.clone();
        let previous = self.store.body(&key);
        let time = if timed {
            time
        } else {
            let earliest = previous
                .as_deref()
                .and_then(|body| version_time(body))
                .unwrap_or(time);
            version_time(&body).unwrap_or(time).max(earliest)
        };
        if deleted {
            let change = self.store.deleted(
                object.object_ref,
                Arc::unwrap_or_clone(body).into_value(),
                time,
            );
            return change.to_activity(None).into();
        }
        let object_ref = object.object_ref.clone();
        // A first version is filed like a watch's initial list: kept, no change.
        let phase = WatchPhase::InitialList;
        match self.store.seen(
            object_ref,
            Arc::unwrap_or_clone(body).into_value(),
            phase,
            time,
        ) {
            Some(change) => change.to_activity(self.store.body(&key)).into(),
            // A first version, or the same resource version again: an observation with the (redacted) body kept.
            _ => {
                let object = match self.store.body(&key) {
                    Some(kept) => kelemetry_core::Object::with_body(object.object_ref, kept),
                    None => kelemetry_core::Object::new(object.object_ref),
                };
                Observation { object, time }.into()
            }
        }
    }
}

/// The latest time a body gives for its own last change: `metadata.managedFields[].time`,
/// `status.conditions[].lastTransitionTime` and `lastUpdateTime`, `metadata.deletionTimestamp` and
/// `metadata.creationTimestamp`. Recordings without recorded times (`kubectl get -w -o json`) place a change there.
pub(crate) fn version_time(body: &Value) -> Option<Timestamp> {
    let parse = |value: Option<&Value>| value.and_then(Value::as_str)?.parse::<Timestamp>().ok();
    let metadata = body.get("metadata");
    let managed = metadata
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| parse(entry.get("time")));
    let conditions = body
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|condition| {
            [
                parse(condition.get("lastTransitionTime")),
                parse(condition.get("lastUpdateTime")),
            ]
        })
        .flatten();
    let own = ["deletionTimestamp", "creationTimestamp"]
        .into_iter()
        .filter_map(|field| parse(metadata.and_then(|m| m.get(field))));
    managed.chain(conditions).chain(own).max()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kelemetry_core::activity::LogKind;
    use kelemetry_core::{Object, ObjectKey, ObjectRef};
    use serde_json::json;

    use super::*;

    fn version(replicas: u64, rv: &str, at: &str) -> Observation {
        let key = ObjectKey::new("c", "apps", "deployments", "ns", "web");
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": rv,
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl", "time": at}]},
            "spec": {"replicas": replicas}});
        Observation {
            object: Object::with_body(ObjectRef::new(key, "v1", Some("u1".into())), Arc::new(body)),
            time: "2024-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn successive_versions_become_updates_with_diffs() {
        let versions = ObjectVersions::new(FILE_VERSION_LIMITS, Redactor::default());
        let first = versions.record(version(2, "10", "2024-01-01T00:00:00Z"), false, false);
        assert!(matches!(first, Record::Observation(_)), "{first:?}");
        let again = versions.record(version(2, "10", "2024-01-01T00:00:00Z"), false, false);
        assert!(matches!(again, Record::Observation(_)), "{again:?}");
        let Record::Activity(update) =
            versions.record(version(4, "11", "2024-01-01T00:05:00Z"), false, false)
        else {
            panic!("an update");
        };
        assert_eq!(update.title, "watch update");
        assert_eq!(update.dedup_key, "watch:u1:11");
        assert_eq!(update.start.to_string(), "2024-01-01T00:05:00Z");
        assert_eq!(update.logs.len(), 1);
        assert_eq!(update.logs[0].kind, LogKind::ObjectDiff);
        assert_eq!(update.logs[0].message, "spec.replicas 2 -> 4");
        // A version whose own times are older than the one before does not go back in time.
        let Record::Activity(later) =
            versions.record(version(3, "12", "2023-12-31T00:00:00Z"), false, false)
        else {
            panic!("an update");
        };
        assert_eq!(later.start.to_string(), "2024-01-01T00:05:00Z");
        let Record::Activity(deletion) =
            versions.record(version(3, "13", "2024-01-01T00:09:00Z"), true, false)
        else {
            panic!("a deletion");
        };
        assert_eq!(deletion.title, "watch delete");
        assert_eq!(deletion.logs[0].kind, LogKind::ObjectSnapshot);
    }

    #[test]
    fn secrets_are_redacted_before_they_are_diffed() {
        let versions = ObjectVersions::new(FILE_VERSION_LIMITS, Redactor::default());
        let secret = |value: &str, rv: &str| {
            let key = ObjectKey::new("c", "", "secrets", "ns", "s");
            let body = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "s", "namespace": "ns", "resourceVersion": rv},
                "data": {"password": value}});
            Observation {
                object: Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body)),
                time: "2024-01-01T00:00:00Z".parse().unwrap(),
            }
        };
        let first = versions.record(secret("c2VjcmV0MQ==", "1"), false, true);
        let Record::Observation(first) = first else {
            panic!("an observation");
        };
        assert!(
            !first
                .object
                .body
                .unwrap()
                .to_string()
                .contains("c2VjcmV0MQ==")
        );
        let Record::Activity(update) = versions.record(secret("c2VjcmV0Mg==", "2"), false, true)
        else {
            panic!("an update");
        };
        let text = format!("{:?}", update.logs);
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }

    #[test]
    fn version_time_takes_the_latest_time_of_the_body() {
        let body = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"time": "2024-01-01T00:02:00Z"}, {"time": "bad"}]},
            "status": {"conditions": [{"lastTransitionTime": "2024-01-01T00:03:00Z",
                "lastUpdateTime": "2024-01-01T00:01:00Z"}]}});
        assert_eq!(
            version_time(&body).unwrap().to_string(),
            "2024-01-01T00:03:00Z"
        );
        assert_eq!(version_time(&json!({"metadata": {}})), None);
    }
}
