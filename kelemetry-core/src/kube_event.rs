//! Kubernetes Events (`core/v1` and `events.k8s.io/v1`) to [`Activity`]s (docs/behaviour/events.md#mapping).
//!
//! One Event object version becomes one activity on the object the Event is about (`involvedObject`, or
//! `regarding` for `events.k8s.io`):
//!
//! - start: `eventTime`, else `series.lastObservedTime`, else `lastTimestamp`, else `firstTimestamp`, else
//!   `metadata.creationTimestamp` (the original used only `eventTime` and `lastTimestamp`); a 1-second activity;
//! - title: `reason`; source [`SourceKind::Event`];
//! - attributes: `source` (`source.component`, else `reportingController`/`reportingComponent`), `action`, `type`,
//!   `count` (or `series.count`), `eventName` (only those that are set);
//! - one [`LogKind::EventMessage`] log with `message` (`note` for `events.k8s.io`);
//! - dedup key `event:<uid>:<resourceVersion>`: like the original, each update of the Event object (a higher
//!   count) is another occurrence.
//!
//! The object's resource comes from a [`ResourceMap`]; when it had to be guessed, the activity carries the
//! attribute [`RESOURCE_GUESSED`] = `true`.
//!
//! ```
//! use kelemetry_core::kube_event::event_to_activity;
//! use kelemetry_core::resource_map::ResourceMap;
//!
//! let event = serde_json::json!({
//!     "apiVersion": "v1", "kind": "Event",
//!     "metadata": {"name": "web.1", "namespace": "default", "uid": "e1", "resourceVersion": "7"},
//!     "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": "web"},
//!     "reason": "ScalingReplicaSet", "message": "Scaled up", "type": "Normal", "count": 1,
//!     "lastTimestamp": "2024-05-01T12:00:00Z",
//! });
//! let activity = event_to_activity(&event, "prod", &ResourceMap::builtin()).unwrap();
//! assert_eq!(activity.object.key().to_string(), "prod/apps/deployments/default/web");
//! assert_eq!(activity.title, "ScalingReplicaSet");
//! assert_eq!(activity.dedup_key, "event:e1:7");
//! ```

use jiff::Timestamp;
use serde::Deserialize;
use smol_str::SmolStr;

use crate::activity::{Activity, LogKind, LogLine, SourceKind};
use crate::key::{Object, ObjectRef, split_api_version};
use crate::resource_map::{RESOURCE_GUESSED, ResourceMap};
use crate::vocabulary;

/// Why a JSON value did not become an event activity.
#[derive(Debug, thiserror::Error)]
pub enum KubeEventError {
    /// The value is not a `core/v1` or `events.k8s.io/v1` Event.
    #[error("not a Kubernetes Event: apiVersion {api_version:?}, kind {kind:?}")]
    NotAnEvent {
        /// The value's `apiVersion`.
        api_version: String,
        /// The value's `kind`.
        kind: String,
    },
    /// The value has the shape of neither Event type.
    #[error("Event {event}: {source}")]
    Malformed {
        /// `namespace/name` of the Event, as far as readable.
        event: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The Event does not say which object it is about.
    #[error("Event {event} has no {field}")]
    NoObject {
        /// `namespace/name` of the Event.
        event: String,
        /// The missing field, e.g. `involvedObject.kind`.
        field: &'static str,
    },
    /// The Event has none of the times an activity can start at.
    #[error(
        "Event {event} has no time (eventTime, series.lastObservedTime, lastTimestamp, firstTimestamp and \
         metadata.creationTimestamp are all empty)"
    )]
    NoTime {
        /// `namespace/name` of the Event.
        event: String,
    },
}

impl KubeEventError {
    /// A short, stable class of the error, for counting rejections.
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotAnEvent { .. } => "not an Event",
            Self::Malformed { .. } => "malformed Event",
            Self::NoObject { .. } => "Event without object",
            Self::NoTime { .. } => "Event without time",
        }
    }
}

/// The two Event APIs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventApi {
    /// `v1` `Event` (core group).
    Core,
    /// `events.k8s.io/v1` `Event` (also accepted as `events.k8s.io/v1beta1`, which has the same fields).
    Events,
}

/// Which Event API a JSON object belongs to, from its `apiVersion` and `kind`; `None` for anything else.
pub fn event_api(value: &serde_json::Value) -> Option<EventApi> {
    let text = |field: &str| value.get(field).and_then(serde_json::Value::as_str);
    if text("kind") != Some("Event") {
        return None;
    }
    match text("apiVersion") {
        Some("v1") => Some(EventApi::Core),
        Some("events.k8s.io/v1" | "events.k8s.io/v1beta1") => Some(EventApi::Events),
        _ => None,
    }
}

/// The fields of the two Event APIs that an activity needs, as they are on the wire (camelCase JSON). Only these
/// are read; anything else in the document is ignored.
mod wire {
    use jiff::Timestamp;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Metadata {
        pub(super) name: Option<String>,
        pub(super) uid: Option<String>,
        pub(super) resource_version: Option<String>,
        pub(super) creation_timestamp: Option<Timestamp>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct ObjectReference {
        pub(super) api_version: Option<String>,
        pub(super) kind: Option<String>,
        pub(super) name: Option<String>,
        pub(super) namespace: Option<String>,
        pub(super) uid: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    pub(super) struct EventSource {
        pub(super) component: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct CoreSeries {
        pub(super) count: Option<i32>,
        pub(super) last_observed_time: Option<Timestamp>,
    }

    /// `v1` `Event`.
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct CoreEvent {
        #[serde(default)]
        pub(super) metadata: Metadata,
        pub(super) involved_object: ObjectReference,
        pub(super) event_time: Option<Timestamp>,
        pub(super) series: Option<CoreSeries>,
        pub(super) last_timestamp: Option<Timestamp>,
        pub(super) first_timestamp: Option<Timestamp>,
        pub(super) reason: Option<String>,
        pub(super) message: Option<String>,
        pub(super) source: Option<EventSource>,
        pub(super) reporting_component: Option<String>,
        pub(super) action: Option<String>,
        #[serde(rename = "type")]
        pub(super) event_type: Option<String>,
        pub(super) count: Option<i32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct EventsSeries {
        pub(super) count: i32,
        pub(super) last_observed_time: Timestamp,
    }

    /// `events.k8s.io/v1` (and `v1beta1`) `Event`.
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct EventsEvent {
        #[serde(default)]
        pub(super) metadata: Metadata,
        pub(super) regarding: Option<ObjectReference>,
        pub(super) event_time: Option<Timestamp>,
        pub(super) series: Option<EventsSeries>,
        pub(super) deprecated_last_timestamp: Option<Timestamp>,
        pub(super) deprecated_first_timestamp: Option<Timestamp>,
        pub(super) reason: Option<String>,
        pub(super) note: Option<String>,
        pub(super) reporting_controller: Option<String>,
        pub(super) deprecated_source: Option<EventSource>,
        pub(super) action: Option<String>,
        #[serde(rename = "type")]
        pub(super) event_type: Option<String>,
        pub(super) deprecated_count: Option<i32>,
    }
}

/// The fields of an Event that the activity needs, common to both APIs.
struct EventFields {
    name: String,
    uid: Option<String>,
    resource_version: Option<String>,
    object: wire::ObjectReference,
    object_field: &'static str,
    time: Option<Timestamp>,
    reason: Option<String>,
    message: Option<String>,
    source: Option<String>,
    action: Option<String>,
    event_type: Option<String>,
    count: Option<i32>,
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|text| !text.is_empty())
}

fn event_display_name(value: &serde_json::Value) -> String {
    let meta = |field: &str| {
        value
            .get("metadata")
            .and_then(|meta| meta.get(field))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (namespace, name) = (meta("namespace"), meta("name"));
    match (namespace.is_empty(), name.is_empty()) {
        (_, true) => "<unnamed>".to_owned(),
        (true, false) => name,
        (false, false) => format!("{namespace}/{name}"),
    }
}

fn core_fields(event: wire::CoreEvent) -> EventFields {
    let series = event.series.unwrap_or_default();
    let time = event
        .event_time
        .or(series.last_observed_time)
        .or(event.last_timestamp)
        .or(event.first_timestamp)
        .or(event.metadata.creation_timestamp);
    EventFields {
        name: event.metadata.name.unwrap_or_default(),
        uid: event.metadata.uid,
        resource_version: event.metadata.resource_version,
        object: event.involved_object,
        object_field: "involvedObject",
        time,
        reason: event.reason,
        message: event.message,
        source: non_empty(event.source.and_then(|source| source.component))
            .or(non_empty(event.reporting_component)),
        action: event.action,
        event_type: event.event_type,
        count: event.count.or(series.count),
    }
}

fn events_fields(event: wire::EventsEvent) -> EventFields {
    let time = event
        .event_time
        .or(event
            .series
            .as_ref()
            .map(|series| series.last_observed_time))
        .or(event.deprecated_last_timestamp)
        .or(event.deprecated_first_timestamp)
        .or(event.metadata.creation_timestamp);
    EventFields {
        name: event.metadata.name.unwrap_or_default(),
        uid: event.metadata.uid,
        resource_version: event.metadata.resource_version,
        object: event.regarding.unwrap_or_default(),
        object_field: "regarding",
        time,
        reason: event.reason,
        message: event.note,
        source: non_empty(event.reporting_controller).or(non_empty(
            event.deprecated_source.and_then(|source| source.component),
        )),
        action: event.action,
        event_type: event.event_type,
        count: event
            .series
            .as_ref()
            .map(|series| series.count)
            .or(event.deprecated_count),
    }
}

/// Maps a Kubernetes Event (`core/v1` or `events.k8s.io/v1`, as JSON) seen in `cluster` to an activity on the
/// object it is about. See the module documentation for the mapping.
pub fn event_to_activity(
    value: &serde_json::Value,
    cluster: &str,
    resources: &ResourceMap,
) -> Result<Activity, KubeEventError> {
    let display_name = event_display_name(value);
    let malformed = |source| KubeEventError::Malformed {
        event: display_name.clone(),
        source,
    };
    let fields = match event_api(value) {
        Some(EventApi::Core) => {
            core_fields(wire::CoreEvent::deserialize(value).map_err(malformed)?)
        }
        // v1beta1 has the fields of v1.
        Some(EventApi::Events) => {
            events_fields(wire::EventsEvent::deserialize(value).map_err(malformed)?)
        }
        None => {
            let text = |field: &str| {
                value
                    .get(field)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            return Err(KubeEventError::NotAnEvent {
                api_version: text("apiVersion"),
                kind: text("kind"),
            });
        }
    };
    build_activity(fields, &display_name, cluster, resources)
}

fn build_activity(
    fields: EventFields,
    display_name: &str,
    cluster: &str,
    resources: &ResourceMap,
) -> Result<Activity, KubeEventError> {
    let no_object = |field| KubeEventError::NoObject {
        event: display_name.to_owned(),
        field,
    };
    let (kind_field, name_field) = if fields.object_field == "involvedObject" {
        ("involvedObject.kind", "involvedObject.name")
    } else {
        ("regarding.kind", "regarding.name")
    };
    let kind = non_empty(fields.object.kind).ok_or_else(|| no_object(kind_field))?;
    let name = non_empty(fields.object.name).ok_or_else(|| no_object(name_field))?;
    let start = fields.time.ok_or_else(|| KubeEventError::NoTime {
        event: display_name.to_owned(),
    })?;

    let api_version = fields.object.api_version.unwrap_or_default();
    let info = resources.resolve(&api_version, &kind);
    let namespace = fields.object.namespace.unwrap_or_default();
    let key = info.object_key(cluster, &namespace, &name);
    let version = match split_api_version(&api_version).1 {
        "" => info.version.clone(),
        version => version.to_owned(),
    };
    let object = Object::new(ObjectRef::new(
        key,
        version,
        non_empty(fields.object.uid).map(SmolStr::from),
    ));

    let identity = non_empty(fields.uid).unwrap_or_else(|| display_name.to_owned());
    let dedup_key = format!(
        "event:{identity}:{}",
        fields.resource_version.unwrap_or_default()
    );
    let mut activity = Activity::new(
        object,
        SourceKind::Event,
        start,
        fields.reason.unwrap_or_default(),
        dedup_key,
    );
    if let Some(source) = fields.source {
        activity.attribute(vocabulary::EVENT_SOURCE, source);
    }
    if let Some(action) = non_empty(fields.action) {
        activity.attribute(vocabulary::EVENT_ACTION, action);
    }
    if let Some(event_type) = non_empty(fields.event_type) {
        activity.attribute(vocabulary::EVENT_TYPE, event_type);
    }
    if let Some(count) = fields.count {
        activity.attribute(
            vocabulary::EVENT_COUNT,
            smol_str::format_smolstr!("{count}"),
        );
    }
    if !fields.name.is_empty() {
        activity.attribute(vocabulary::EVENT_NAME, fields.name);
    }
    if info.guessed {
        activity.attribute(RESOURCE_GUESSED, "true");
    }
    if let Some(message) = non_empty(fields.message) {
        activity
            .logs
            .push(LogLine::new(LogKind::EventMessage, message));
    }
    Ok(activity)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn core_event() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": "px-5d567cc74c.16806e83e6b9fb2c",
                "namespace": "default",
                "uid": "1e2c4b53",
                "resourceVersion": "5361650",
                "creationTimestamp": "2021-05-19T09:42:57Z"
            },
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "px-5d567cc74c",
                "namespace": "default",
                "uid": "rs-uid"
            },
            "reason": "SuccessfulCreate",
            "message": "Created pod: px-5d567cc74c-x7x5w",
            "source": {"component": "replicaset-controller"},
            "type": "Normal",
            "count": 2,
            "eventTime": null,
            "firstTimestamp": "2021-05-19T09:42:58Z",
            "lastTimestamp": "2021-05-19T09:43:01Z"
        })
    }

    fn events_event() -> serde_json::Value {
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "n1.abc", "namespace": "default", "uid": "ev-uid", "resourceVersion": "42"},
            "regarding": {"apiVersion": "v1", "kind": "Node", "name": "n1", "namespace": "default"},
            "reason": "NodeReady",
            "note": "Node n1 status is now: NodeReady",
            "action": "StatusChange",
            "type": "Normal",
            "reportingController": "kubelet",
            "reportingInstance": "kubelet-n1",
            "eventTime": "2024-01-02T03:04:05.123456Z",
            "series": {"count": 3, "lastObservedTime": "2024-01-02T03:10:00.000000Z"}
        })
    }

    #[test]
    fn core_event_maps_to_activity() {
        let activity =
            event_to_activity(&core_event(), "kind", &ResourceMap::builtin()).expect("maps");
        assert_eq!(
            activity.object.key().to_string(),
            "kind/apps/replicasets/default/px-5d567cc74c"
        );
        assert_eq!(activity.object.object_ref.version, "v1");
        assert_eq!(activity.object.object_ref.uid.as_deref(), Some("rs-uid"));
        assert!(activity.object.body.is_none());
        assert_eq!(activity.source, SourceKind::Event);
        assert_eq!(activity.title, "SuccessfulCreate");
        assert_eq!(activity.start.to_string(), "2021-05-19T09:43:01Z");
        assert_eq!(activity.end, None);
        assert_eq!(activity.dedup_key, "event:1e2c4b53:5361650");
        assert_eq!(
            activity.attribute_value("source"),
            Some("replicaset-controller")
        );
        assert_eq!(activity.attribute_value("type"), Some("Normal"));
        assert_eq!(activity.attribute_value("count"), Some("2"));
        assert_eq!(
            activity.attribute_value("eventName"),
            Some("px-5d567cc74c.16806e83e6b9fb2c")
        );
        assert_eq!(activity.attribute_value("action"), None);
        assert_eq!(activity.attribute_value(RESOURCE_GUESSED), None);
        assert_eq!(
            activity.logs,
            vec![LogLine::new(
                LogKind::EventMessage,
                "Created pod: px-5d567cc74c-x7x5w"
            )]
        );
    }

    #[test]
    fn events_api_event_maps_to_activity() {
        let activity =
            event_to_activity(&events_event(), "c", &ResourceMap::builtin()).expect("maps");
        // Node is cluster-scoped: the namespace the Event names is dropped.
        assert_eq!(activity.object.key().to_string(), "c//nodes//n1");
        assert_eq!(activity.start.to_string(), "2024-01-02T03:04:05.123456Z");
        assert_eq!(activity.title, "NodeReady");
        assert_eq!(activity.attribute_value("source"), Some("kubelet"));
        assert_eq!(activity.attribute_value("action"), Some("StatusChange"));
        assert_eq!(activity.attribute_value("count"), Some("3"));
        assert_eq!(activity.logs[0].message, "Node n1 status is now: NodeReady");
        assert_eq!(activity.dedup_key, "event:ev-uid:42");
    }

    #[test]
    fn v1beta1_events_are_read_like_v1() {
        let mut event = events_event();
        event["apiVersion"] = json!("events.k8s.io/v1beta1");
        let activity = event_to_activity(&event, "c", &ResourceMap::builtin()).expect("maps");
        assert_eq!(activity.title, "NodeReady");
    }

    #[test]
    fn time_falls_back_in_order() {
        let map = ResourceMap::builtin();
        let mut event = core_event();
        event["eventTime"] = json!("2021-05-19T09:40:00.000001Z");
        event["series"] = json!({"count": 5, "lastObservedTime": "2021-05-19T09:41:00.000000Z"});
        let start = |event: &serde_json::Value| {
            event_to_activity(event, "c", &map)
                .expect("maps")
                .start
                .to_string()
        };
        assert_eq!(start(&event), "2021-05-19T09:40:00.000001Z");
        event["eventTime"] = json!(null);
        assert_eq!(start(&event), "2021-05-19T09:41:00Z");
        event.as_object_mut().map(|fields| fields.remove("series"));
        assert_eq!(start(&event), "2021-05-19T09:43:01Z");
        event["lastTimestamp"] = json!(null);
        assert_eq!(start(&event), "2021-05-19T09:42:58Z");
        event["firstTimestamp"] = json!(null);
        assert_eq!(start(&event), "2021-05-19T09:42:57Z");
        event["metadata"]
            .as_object_mut()
            .map(|fields| fields.remove("creationTimestamp"));
        let err = event_to_activity(&event, "c", &map).expect_err("no time");
        assert!(matches!(err, KubeEventError::NoTime { .. }));
        assert!(
            err.to_string()
                .contains("default/px-5d567cc74c.16806e83e6b9fb2c")
        );
    }

    #[test]
    fn series_count_is_used_without_count() {
        let mut event = core_event();
        event.as_object_mut().map(|fields| fields.remove("count"));
        event["series"] = json!({"count": 7, "lastObservedTime": "2021-05-19T09:41:00.000000Z"});
        let activity = event_to_activity(&event, "c", &ResourceMap::builtin()).expect("maps");
        assert_eq!(activity.attribute_value("count"), Some("7"));
    }

    #[test]
    fn event_without_object_names_itself() {
        let mut event = core_event();
        event["involvedObject"] = json!({"apiVersion": "v1", "name": "x"});
        let err = event_to_activity(&event, "c", &ResourceMap::builtin()).expect_err("no kind");
        assert!(matches!(
            err,
            KubeEventError::NoObject {
                field: "involvedObject.kind",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "Event default/px-5d567cc74c.16806e83e6b9fb2c has no involvedObject.kind"
        );
        let mut event = events_event();
        event
            .as_object_mut()
            .map(|fields| fields.remove("regarding"));
        let err =
            event_to_activity(&event, "c", &ResourceMap::builtin()).expect_err("no regarding");
        assert!(err.to_string().contains("regarding.kind"));
    }

    #[test]
    fn other_objects_and_bad_shapes_are_errors() {
        let map = ResourceMap::builtin();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let err = event_to_activity(&pod, "c", &map).expect_err("not an event");
        assert!(matches!(err, KubeEventError::NotAnEvent { .. }));
        assert_eq!(err.class(), "not an Event");
        let mut bad = core_event();
        bad["count"] = json!("many");
        let err = event_to_activity(&bad, "c", &map).expect_err("bad count");
        assert!(matches!(err, KubeEventError::Malformed { .. }));
        assert!(err.to_string().starts_with("Event default/px-5d567cc74c"));
    }

    #[test]
    fn unknown_kind_is_marked_guessed() {
        let mut event = core_event();
        event["involvedObject"] = json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "namespace": "ns"});
        let activity = event_to_activity(&event, "c", &ResourceMap::builtin()).expect("maps");
        assert_eq!(
            activity.object.key().to_string(),
            "c/example.com/widgets/ns/w"
        );
        assert_eq!(activity.attribute_value(RESOURCE_GUESSED), Some("true"));
    }

    #[test]
    fn count_update_is_another_occurrence() {
        let map = ResourceMap::builtin();
        let first = event_to_activity(&core_event(), "c", &map).expect("maps");
        let mut updated = core_event();
        updated["metadata"]["resourceVersion"] = json!("5361700");
        updated["count"] = json!(3);
        let second = event_to_activity(&updated, "c", &map).expect("maps");
        assert_ne!(first.dedup_key, second.dedup_key);
        let again = event_to_activity(&core_event(), "c", &map).expect("maps");
        assert_eq!(first.dedup_key, again.dedup_key);
    }
}
