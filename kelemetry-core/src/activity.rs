//! [`Activity`]: one thing that happened to one object.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;

use crate::key::Object;

/// Span attributes: a name and a text value. Names are usually static; values are [`SmolStr`]s: one of up to 23
/// bytes is held inline, without an allocation, and a longer one is allocated once and shared by its clones. So the
/// identity every span of an object repeats (cluster, group, version, resource, namespace, and most names) costs no
/// allocation per span.
pub type Attributes = Vec<(Cow<'static, str>, SmolStr)>;

/// Where an activity came from. Becomes the `service.name` of its span and the value of `zzz-traceSource`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceKind {
    /// An apiserver request from the audit log.
    Audit,
    /// A Kubernetes Event.
    Event,
    /// A change seen by watching the object.
    Watch,
    /// Anything else, named by its writer (for example a controller's own activity).
    Custom(String),
}

impl SourceKind {
    /// The name used on spans: `audit`, `event`, `watch` or the custom name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Audit => "audit",
            Self::Event => "event",
            Self::Watch => "watch",
            Self::Custom(name) => name,
        }
    }

    /// Parses the name written by [`SourceKind::as_str`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "audit" => Self::Audit,
            "event" => Self::Event,
            "watch" => Self::Watch,
            other => Self::Custom(other.to_owned()),
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a log line on an activity is (the `zzz-logType` of the original).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogKind {
    /// The request failed: the apiserver's reason and message.
    RealError,
    /// Something worth knowing that is not an error, e.g. "No-op update".
    RealVerbose,
    /// Kelemetry itself could not do something (e.g. find a diff).
    KelemetryError,
    /// A full object as JSON (creation or deletion snapshot).
    ObjectSnapshot,
    /// Field-level diff, one line per changed field: `path old -> new`.
    ObjectDiff,
    /// The message of a Kubernetes Event.
    EventMessage,
}

impl LogKind {
    /// The original's name for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RealError => "realError",
            Self::RealVerbose => "realVerbose",
            Self::KelemetryError => "kelemetryError",
            Self::ObjectSnapshot => "audit/objectSnapshot",
            Self::ObjectDiff => "audit/objectDiff",
            Self::EventMessage => "event/message",
        }
    }

    /// Parses the name written by [`LogKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "realError" => Self::RealError,
            "realVerbose" => Self::RealVerbose,
            "kelemetryError" => Self::KelemetryError,
            "audit/objectSnapshot" => Self::ObjectSnapshot,
            "audit/objectDiff" => Self::ObjectDiff,
            "event/message" => Self::EventMessage,
            _ => return None,
        })
    }
}

/// One log line of an activity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// What it is.
    pub kind: LogKind,
    /// The text.
    pub message: String,
}

impl LogLine {
    /// A log line.
    pub fn new(kind: LogKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The kind of change a write request made, which decides what diff or snapshot it gets.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The object was created.
    Create,
    /// The object was replaced or patched.
    Update,
    /// The object was deleted.
    Delete,
}

/// What an activity changed, for the diff decorator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Create, update or delete.
    pub kind: ChangeKind,
    /// The resource version the request was based on, if it named one.
    pub old_resource_version: Option<String>,
    /// The subresource written (`status`, `scale`...), if any.
    pub subresource: Option<String>,
}

/// One thing that happened to one object: an apiserver request, a Kubernetes Event, a watched change, or anything a
/// custom source reports. It becomes one span under the object's span of the window that holds `start`.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    /// The object it happened to, with the body the source saw, if any.
    pub object: Object,
    /// Where it came from.
    pub source: SourceKind,
    /// When it started.
    pub start: Timestamp,
    /// When it ended; a one-second span is written when unknown.
    pub end: Option<Timestamp>,
    /// The span name, e.g. `alice update status` or `ScalingReplicaSet`.
    pub title: String,
    /// Source-specific attributes.
    pub attributes: Attributes,
    /// Log lines: errors, diffs, snapshots, messages.
    pub logs: Vec<LogLine>,
    /// What the activity changed, when it is a write.
    pub change: Option<Change>,
    /// Unique to this occurrence (audit id; event uid + resourceVersion; object uid + resourceVersion). The same
    /// occurrence delivered twice has the same key and so the same span id.
    pub dedup_key: String,
}

impl Activity {
    /// An activity with no attributes, logs or change.
    pub fn new(
        object: Object,
        source: SourceKind,
        start: Timestamp,
        title: impl Into<String>,
        dedup_key: impl Into<String>,
    ) -> Self {
        Self {
            object,
            source,
            start,
            end: None,
            title: title.into(),
            attributes: Vec::new(),
            logs: Vec::new(),
            change: None,
            dedup_key: dedup_key.into(),
        }
    }

    /// Adds an attribute.
    pub fn attribute(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<SmolStr>) {
        self.attributes.push((name.into(), value.into()));
    }

    /// The value of an attribute, if set.
    pub fn attribute_value(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A sighting of an object's body without an activity: for example an object listed from a recording. It gives
/// linkers and the diff decorator the body, and makes the object's span exist in that window.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The object, with its body.
    pub object: Object,
    /// When it was seen.
    pub time: Timestamp,
}

/// What a source hands the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Something happened to an object.
    Activity(Box<Activity>),
    /// An object was seen.
    Observation(Box<Observation>),
}

impl Record {
    /// An estimate of the memory the record holds, in bytes: its body ([`Body::approximate_size`]), text,
    /// attributes and logs. A body shared with another holder (the body cache) is counted in full, so the estimate
    /// errs high; what bounds queues by bytes relies on that.
    ///
    /// [`Body::approximate_size`]: crate::body::Body::approximate_size
    pub fn approximate_size(&self) -> usize {
        let object = |object: &Object| {
            object
                .body
                .as_ref()
                .map_or(0, |body| body.approximate_size())
        };
        match self {
            Self::Activity(activity) => {
                std::mem::size_of::<Activity>()
                    + object(&activity.object)
                    + activity.title.capacity()
                    + activity.dedup_key.capacity()
                    + attributes_size(&activity.attributes)
                    + activity
                        .logs
                        .iter()
                        .map(|log| std::mem::size_of::<LogLine>() + log.message.capacity())
                        .sum::<usize>()
            }
            Self::Observation(observation) => {
                std::mem::size_of::<Observation>() + object(&observation.object)
            }
        }
    }

    /// The object the record is about.
    pub fn object(&self) -> &Object {
        match self {
            Self::Activity(activity) => &activity.object,
            Self::Observation(observation) => &observation.object,
        }
    }

    /// The object's mutable parts (to redact its body, for example).
    pub fn object_mut(&mut self) -> &mut Object {
        match self {
            Self::Activity(activity) => &mut activity.object,
            Self::Observation(observation) => &mut observation.object,
        }
    }
}

/// The bytes of `attributes`' storage and of the text they own (see [`crate::SpanRecord::approximate_size`]).
pub(crate) fn attributes_size(attributes: &Attributes) -> usize {
    let text: usize = attributes
        .iter()
        .map(|(key, value)| {
            let key = match key {
                Cow::Borrowed(_) => 0,
                Cow::Owned(owned) => owned.capacity(),
            };
            let value = if value.is_heap_allocated() {
                value.len()
            } else {
                0
            };
            key + value
        })
        .sum();
    attributes.capacity() * std::mem::size_of::<(Cow<'static, str>, SmolStr)>() + text
}

impl From<Activity> for Record {
    fn from(activity: Activity) -> Self {
        Self::Activity(Box::new(activity))
    }
}

impl From<Observation> for Record {
    fn from(observation: Observation) -> Self {
        Self::Observation(Box::new(observation))
    }
}
