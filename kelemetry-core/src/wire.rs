//! The wire format of records between processes: how an `ingest` process hands a [`Record`] to a `process` process
//! through a message queue (Kafka), one record a message.
//!
//! A message's value is one JSON object. Its first field, `"wire"`, is the format's version, [`WIRE_VERSION`]; a
//! reader refuses any other version with [`WireError::Version`], naming both, so that replicas of two releases never
//! misread each other silently: roll the `process` group forward first (a release reads its own version and the one
//! before it, when there is one), then the `ingest` processes. The message key is the record's [`ObjectKey`] as text
//! (`cluster/group/resource/namespace/name`), so that Kafka keeps one object's records in order in one partition.
//!
//! Version 1, an activity (the fields as [`Activity`] documents them; absent optional fields may be left out):
//!
//! ```json
//! {"wire": 1, "record": "activity",
//!  "object": {"cluster": "prod", "group": "apps", "resource": "deployments", "namespace": "default",
//!             "name": "web", "version": "v1", "uid": "9f1c…"},
//!  "body": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
//!  "source": "audit", "start": "2026-05-01T12:00:00.1Z", "end": "2026-05-01T12:00:00.13Z",
//!  "title": "alice update", "attributes": [["verb", "update"], ["auditId", "a1"]],
//!  "logs": [{"kind": "realError", "message": "the object has been modified"}],
//!  "change": {"kind": "update", "oldResourceVersion": "41", "subresource": null},
//!  "dedupKey": "a1"}
//! ```
//!
//! and an observation: `{"wire": 1, "record": "observation", "object": {…}, "body": {…}, "time": "…"}`.
//! `source` is [`SourceKind::as_str`] (`audit`, `event`, `watch` or a custom name), a log's `kind` is
//! [`LogKind::as_str`], a change's `kind` is `create`, `update` or `delete`, times are RFC 3339 in UTC. Unknown
//! fields are refused: a field is only ever added with a new version.
//!
//! ```
//! use kelemetry_core::{Activity, Object, ObjectKey, ObjectRef, Record, SourceKind, wire};
//!
//! let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
//! let at: jiff::Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
//! let record = Record::from(Activity::new(Object::new(ObjectRef::new(key, "v1", None)), SourceKind::Audit, at,
//!     "alice update", "a1"));
//! let bytes = wire::encode(&record);
//! assert_eq!(wire::message_key(&record), "prod/apps/deployments/default/web");
//! assert_eq!(wire::decode(&bytes).unwrap(), record);
//! assert!(wire::decode(br#"{"wire": 9, "record": "activity"}"#).is_err());
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::activity::{
    Activity, Change, ChangeKind, LogKind, LogLine, Observation, Record, SourceKind,
};
use crate::body::Body;
use crate::key::{Object, ObjectKey, ObjectRef};

/// The version of the wire format this release writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// A message that is no record of this wire format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message is not JSON, or not a record of the format (the parser's message names the field and column).
    #[error("not a kelemetry wire record: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The record is written in another version of the format.
    #[error("wire format version {found}, this release reads version {WIRE_VERSION}")]
    Version {
        /// The version the message says it is in.
        found: u64,
    },
    /// A log line's kind is none this release knows.
    #[error("unknown log kind {0:?}")]
    LogKind(String),
}

/// The Kafka message key of a record: its object key as text, so one object's records stay in one partition.
pub fn message_key(record: &Record) -> String {
    record.object().key().to_string()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireObject<'a> {
    #[serde(borrow)]
    cluster: Cow<'a, str>,
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    resource: Cow<'a, str>,
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    version: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    uid: Option<Cow<'a, str>>,
}

impl<'a> WireObject<'a> {
    fn of(object: &'a ObjectRef) -> Self {
        let key = &object.key;
        Self {
            cluster: Cow::Borrowed(&key.cluster),
            group: Cow::Borrowed(&key.group),
            resource: Cow::Borrowed(&key.resource),
            namespace: Cow::Borrowed(&key.namespace),
            name: Cow::Borrowed(&key.name),
            version: Cow::Borrowed(&object.version),
            uid: object.uid.as_deref().map(Cow::Borrowed),
        }
    }

    fn into_ref(self) -> ObjectRef {
        ObjectRef::new(
            ObjectKey::new(
                self.cluster,
                self.group,
                self.resource,
                self.namespace,
                self.name,
            ),
            self.version,
            self.uid.map(SmolStr::from),
        )
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireLog {
    kind: String,
    message: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireChange {
    kind: WireChangeKind,
    #[serde(default)]
    old_resource_version: Option<String>,
    #[serde(default)]
    subresource: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum WireChangeKind {
    Create,
    Update,
    Delete,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum WireRecordKind {
    Activity,
    Observation,
}

/// One record as written; the fields of the other kind are absent.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireRecord<'a> {
    wire: u64,
    record: WireRecordKind,
    #[serde(borrow)]
    object: WireObject<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Arc<Body>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    logs: Vec<WireLog>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    change: Option<WireChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dedup_key: Option<Cow<'a, str>>,
}

/// Only the version, read first so that a record of another version is named as such (not as malformed).
#[derive(Deserialize)]
struct VersionOnly {
    wire: u64,
}

/// The message value of `record` in the current version.
pub fn encode(record: &Record) -> Vec<u8> {
    let wire = match record {
        Record::Activity(activity) => WireRecord {
            wire: u64::from(WIRE_VERSION),
            record: WireRecordKind::Activity,
            object: WireObject::of(&activity.object.object_ref),
            body: activity.object.body.clone(),
            time: None,
            source: Some(Cow::Borrowed(activity.source.as_str())),
            start: Some(activity.start),
            end: activity.end,
            title: Some(Cow::Borrowed(&activity.title)),
            attributes: activity
                .attributes
                .iter()
                .map(|(name, value)| (Cow::Borrowed(name.as_ref()), Cow::Borrowed(value.as_str())))
                .collect(),
            logs: activity
                .logs
                .iter()
                .map(|log| WireLog {
                    kind: log.kind.as_str().to_owned(),
                    message: log.message.clone(),
                })
                .collect(),
            change: activity.change.as_ref().map(|change| WireChange {
                kind: match change.kind {
                    ChangeKind::Create => WireChangeKind::Create,
                    ChangeKind::Update => WireChangeKind::Update,
                    ChangeKind::Delete => WireChangeKind::Delete,
                },
                old_resource_version: change.old_resource_version.clone(),
                subresource: change.subresource.clone(),
            }),
            dedup_key: Some(Cow::Borrowed(&activity.dedup_key)),
        },
        Record::Observation(observation) => WireRecord {
            wire: u64::from(WIRE_VERSION),
            record: WireRecordKind::Observation,
            object: WireObject::of(&observation.object.object_ref),
            body: observation.object.body.clone(),
            time: Some(observation.time),
            source: None,
            start: None,
            end: None,
            title: None,
            attributes: Vec::new(),
            logs: Vec::new(),
            change: None,
            dedup_key: None,
        },
    };
    // Serialising these types cannot fail: every map key is a string and no value is a NaN float.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// A field an activity needs, or the error naming it.
fn required<T>(value: Option<T>, field: &str) -> Result<T, WireError> {
    value.ok_or_else(|| {
        WireError::Malformed(serde::de::Error::custom(format_args!(
            "an activity needs the field `{field}`"
        )))
    })
}

/// The record a message value holds.
pub fn decode(bytes: &[u8]) -> Result<Record, WireError> {
    let version: VersionOnly = serde_json::from_slice(bytes).map_err(WireError::Malformed)?;
    if version.wire != u64::from(WIRE_VERSION) {
        return Err(WireError::Version {
            found: version.wire,
        });
    }
    let wire: WireRecord<'_> = serde_json::from_slice(bytes).map_err(WireError::Malformed)?;
    let object = Object {
        object_ref: wire.object.into_ref(),
        body: wire.body,
    };
    Ok(match wire.record {
        WireRecordKind::Observation => Record::Observation(Box::new(Observation {
            object,
            time: required(wire.time, "time")?,
        })),
        WireRecordKind::Activity => {
            let mut logs = Vec::with_capacity(wire.logs.len());
            for log in wire.logs {
                let kind = LogKind::from_name(&log.kind).ok_or(WireError::LogKind(log.kind))?;
                logs.push(LogLine::new(kind, log.message));
            }
            Record::Activity(Box::new(Activity {
                object,
                source: SourceKind::from_name(&required(wire.source, "source")?),
                start: required(wire.start, "start")?,
                end: wire.end,
                title: required(wire.title, "title")?.into_owned(),
                attributes: wire
                    .attributes
                    .into_iter()
                    .map(|(name, value)| (Cow::Owned(name.into_owned()), SmolStr::from(value)))
                    .collect(),
                logs,
                change: wire.change.map(|change| Change {
                    kind: match change.kind {
                        WireChangeKind::Create => ChangeKind::Create,
                        WireChangeKind::Update => ChangeKind::Update,
                        WireChangeKind::Delete => ChangeKind::Delete,
                    },
                    old_resource_version: change.old_resource_version,
                    subresource: change.subresource,
                }),
                dedup_key: required(wire.dedup_key, "dedupKey")?.into_owned(),
            }))
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Record {
        let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
        let at: Timestamp = "2026-05-01T12:00:00.1Z".parse().unwrap();
        let mut activity = Activity::new(
            Object::with_body(
                ObjectRef::new(key, "v1", Some("u1".into())),
                Arc::new(serde_json::json!({"kind": "Deployment", "spec": {"replicas": 3}})),
            ),
            SourceKind::Audit,
            at,
            "alice update",
            "a1",
        );
        activity.end = Some("2026-05-01T12:00:00.13Z".parse().unwrap());
        activity.attribute("verb", "update");
        activity.attribute("auditId", "a1");
        activity
            .logs
            .push(LogLine::new(LogKind::RealError, "modified \"quoted\" é"));
        activity.change = Some(Change {
            kind: ChangeKind::Update,
            old_resource_version: Some("41".into()),
            subresource: Some("status".into()),
        });
        Record::from(activity)
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let record = sample();
        assert_eq!(decode(&encode(&record)).unwrap(), record);
        let observation = Record::from(Observation {
            object: Object::new(ObjectRef::new(
                ObjectKey::new("c", "", "pods", "ns", "p"),
                "",
                None,
            )),
            time: "2026-05-01T12:00:00Z".parse().unwrap(),
        });
        assert_eq!(decode(&encode(&observation)).unwrap(), observation);
        let custom = match sample() {
            Record::Activity(mut activity) => {
                activity.source = SourceKind::Custom("my-controller".into());
                Record::Activity(activity)
            }
            other => other,
        };
        assert_eq!(decode(&encode(&custom)).unwrap(), custom);
    }

    /// Numbers in bodies come back as they went, floats to the last bit (serde_json's `float_roundtrip`: without
    /// it, this one came back 1 ulp off, found by the `wire_record` fuzz target).
    #[test]
    fn floats_in_bodies_survive_to_the_last_bit() {
        let mut record = sample();
        if let Record::Activity(activity) = &mut record {
            activity.object.body = Some(Arc::new(
                serde_json::json!({
                    "spec": {"ratio": 2.2222222222222226e122, "small": 5e-324, "third": 1.0 / 3.0, "big": u64::MAX}
                })
                .into(),
            ));
        }
        assert_eq!(decode(&encode(&record)).unwrap(), record);
    }

    /// The bytes of version 1 are pinned: a change to them is a new version.
    #[test]
    fn version_one_is_pinned() {
        let text = String::from_utf8(encode(&sample())).unwrap();
        assert_eq!(
            text,
            r#"{"wire":1,"record":"activity","object":{"cluster":"prod","group":"apps","resource":"deployments","namespace":"default","name":"web","version":"v1","uid":"u1"},"body":{"kind":"Deployment","spec":{"replicas":3}},"source":"audit","start":"2026-05-01T12:00:00.1Z","end":"2026-05-01T12:00:00.13Z","title":"alice update","attributes":[["verb","update"],["auditId","a1"]],"logs":[{"kind":"realError","message":"modified \"quoted\" é"}],"change":{"kind":"update","oldResourceVersion":"41","subresource":"status"},"dedupKey":"a1"}"#
        );
    }

    #[test]
    fn what_is_no_record_is_named() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "not a kelemetry wire record"),
            (b"[1]", "not a kelemetry wire record"),
            (br#"{"wire": 2}"#, "wire format version 2, this release reads version 1"),
            (br#"{"record": "activity"}"#, "missing field `wire`"),
            (
                br#"{"wire": 1, "record": "activity", "object": {"cluster": "c", "group": "", "resource": "pods", "namespace": "n", "name": "p"}}"#,
                "an activity needs the field `source`",
            ),
            (
                br#"{"wire": 1, "record": "thing", "object": {}}"#,
                "unknown variant `thing`",
            ),
            (
                br#"{"wire": 1, "record": "observation", "object": {"cluster": "c", "group": "", "resource": "pods", "namespace": "n", "name": "p"}, "time": "2026-05-01T12:00:00Z", "extra": 1}"#,
                "unknown field `extra`",
            ),
        ];
        for (bytes, expected) in cases {
            let err = decode(bytes).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{:?}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        let bad_log = String::from_utf8(encode(&sample()))
            .unwrap()
            .replace("realError", "nonsense");
        assert_eq!(
            decode(bad_log.as_bytes()).unwrap_err().to_string(),
            "unknown log kind \"nonsense\""
        );
    }
}
