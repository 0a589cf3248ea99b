//! [`SpanRecord`]: spans built as data (docs/architecture.md#spans-as-data), and how objects, links and activities
//! become spans (docs/behaviour/spans.md).

use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use smol_str::{SmolStr, format_smolstr};

use crate::activity::{Activity, Attributes, attributes_size};
use crate::ids::{SpanId, TraceId};
use crate::key::{ObjectKey, ObjectRef};
use crate::link::{Link, LinkRole};
use crate::vocabulary as v;
use crate::window::Window;

/// What a span stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpanKind {
    /// An object in one window: the root of its trace.
    Object,
    /// A relation to another object, under an object span.
    Link,
    /// An activity, under an object span; the value is its source (`audit`, `event`, ...), held inline when it is
    /// up to 23 bytes long.
    Activity(SmolStr),
}

impl SpanKind {
    /// The OpenTelemetry service name of spans of this kind (docs/behaviour/spans.md#service-names).
    pub fn service_name(&self) -> &str {
        match self {
            Self::Object => "object",
            Self::Link => "link",
            Self::Activity(source) => source,
        }
    }

    /// The kind of spans of `service`, the inverse of [`SpanKind::service_name`].
    pub fn from_service_name(service: &str) -> Self {
        match service {
            "object" => Self::Object,
            "link" => Self::Link,
            source => Self::Activity(SmolStr::new(source)),
        }
    }
}

/// A log (OpenTelemetry span event) on a span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanLog {
    /// When.
    pub time: Timestamp,
    /// The text (the span event's name, as the original writes it).
    pub message: String,
    /// Attributes, including `zzz-logType`.
    pub attributes: Attributes,
}

/// A finished span, as data. Exporters convert it to their wire format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The trace: the object's trace of the window.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// The parent span, `None` for object spans.
    pub parent_span_id: Option<SpanId>,
    /// What it stands for; gives the service name.
    pub kind: SpanKind,
    /// The operation name.
    pub name: String,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// Attributes.
    pub attributes: Attributes,
    /// Logs.
    pub logs: Vec<SpanLog>,
}

impl SpanRecord {
    /// An estimate of the memory this span holds, in bytes: the record itself, its text and its attributes' and
    /// logs' storage. A value shared with other spans (an object's name, a long uid) is counted in each of them,
    /// so the estimate errs high; what bounds queues by bytes relies on that.
    pub fn approximate_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.name.capacity()
            + attributes_size(&self.attributes)
            + self.logs.capacity() * std::mem::size_of::<SpanLog>()
            + self
                .logs
                .iter()
                .map(|log| log.message.capacity() + attributes_size(&log.attributes))
                .sum::<usize>()
    }

    /// The OpenTelemetry service name.
    pub fn service_name(&self) -> &str {
        self.kind.service_name()
    }

    /// The value of an attribute, if set.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, val)| val.as_str())
    }

    /// The object this span belongs to, read back from its identity attributes (all five must be present).
    pub fn object_key(&self) -> Option<ObjectKey> {
        Some(ObjectKey::new(
            self.attribute(v::CLUSTER)?,
            self.attribute(v::GROUP)?,
            self.attribute(v::RESOURCE)?,
            self.attribute(v::NAMESPACE)?,
            self.attribute(v::NAME)?,
        ))
    }

    /// For a link span, the other object, read back from the `linked*` attributes.
    pub fn linked_key(&self) -> Option<ObjectKey> {
        Some(ObjectKey::new(
            self.attribute(v::LINKED_CLUSTER)?,
            self.attribute(v::LINKED_GROUP)?,
            self.attribute(v::LINKED_RESOURCE)?,
            self.attribute(v::LINKED_NAMESPACE)?,
            self.attribute(v::LINKED_NAME)?,
        ))
    }

    /// For a link span, the role of the other object.
    pub fn link_role(&self) -> Option<LinkRole> {
        LinkRole::from_name(self.attribute(v::LINK_ROLE)?)
    }
}

/// The duration written for an activity whose end is unknown (the original's `DummyDuration`).
pub const DEFAULT_ACTIVITY_DURATION: SignedDuration = SignedDuration::from_secs(1);

fn identity_attributes(object: &ObjectRef, capacity: usize) -> Attributes {
    let key = &object.key;
    let mut attrs: Attributes = Vec::with_capacity(capacity + 8);
    attrs.push((Cow::Borrowed(v::CLUSTER), key.cluster.clone()));
    attrs.push((Cow::Borrowed(v::GROUP), key.group.clone()));
    attrs.push((Cow::Borrowed(v::VERSION), object.version.clone()));
    attrs.push((Cow::Borrowed(v::RESOURCE), key.resource.clone()));
    attrs.push((Cow::Borrowed(v::NAMESPACE), key.namespace.clone()));
    attrs.push((Cow::Borrowed(v::NAME), key.name.clone()));
    attrs
}

/// The object span of `object` in `window`: the root of the window's trace, spanning the whole window.
pub fn object_span(object: &ObjectRef, window: Window) -> SpanRecord {
    let trace_id = TraceId::for_object(&object.key, window);
    let mut attributes = identity_attributes(object, 8);
    attributes.push((
        Cow::Borrowed(v::TRACE_SOURCE),
        SmolStr::new_static(v::OBJECT),
    ));
    attributes.push((
        Cow::Borrowed(v::PSEUDO_TYPE),
        SmolStr::new_static(v::OBJECT),
    ));
    attributes.push((
        Cow::Borrowed(v::TIME_STAMP),
        format_smolstr!("{}", window.start()),
    ));
    // The identity's values again, under the OpenTelemetry names (the key's values are shared, not copied).
    let key = &object.key;
    attributes.push((Cow::Borrowed(v::K8S_CLUSTER_NAME), key.cluster.clone()));
    if !key.namespace.is_empty() {
        attributes.push((Cow::Borrowed(v::K8S_NAMESPACE_NAME), key.namespace.clone()));
    }
    let semconv = semconv_attributes(&key.resource);
    if let Some((name, _)) = semconv {
        attributes.push((Cow::Borrowed(name), key.name.clone()));
    }
    if let Some(uid) = &object.uid {
        // The reference's uid, shared by both attributes (a uid of 36 bytes is allocated once, by the source).
        let uid = uid.clone();
        attributes.push((Cow::Borrowed(v::UID), uid.clone()));
        if let Some((_, uid_name)) = semconv {
            attributes.push((Cow::Borrowed(uid_name), uid));
        }
    }
    SpanRecord {
        trace_id,
        span_id: trace_id.object_span(),
        parent_span_id: None,
        kind: SpanKind::Object,
        name: object.key.operation_name(),
        start: window.start(),
        end: window.end(),
        attributes,
        logs: Vec::new(),
    }
}

/// The OpenTelemetry semantic-convention attributes of the kinds it covers: `k8s.<kind>.name` and `k8s.<kind>.uid`.
fn semconv_attributes(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "pods" => ("k8s.pod.name", "k8s.pod.uid"),
        "deployments" => ("k8s.deployment.name", "k8s.deployment.uid"),
        "replicasets" => ("k8s.replicaset.name", "k8s.replicaset.uid"),
        "statefulsets" => ("k8s.statefulset.name", "k8s.statefulset.uid"),
        "daemonsets" => ("k8s.daemonset.name", "k8s.daemonset.uid"),
        "jobs" => ("k8s.job.name", "k8s.job.uid"),
        "cronjobs" => ("k8s.cronjob.name", "k8s.cronjob.uid"),
        "nodes" => ("k8s.node.name", "k8s.node.uid"),
        "namespaces" => ("k8s.namespace.name", "k8s.namespace.uid"),
        _ => return None,
    })
}

/// The link span written under `owner`'s object span in `window`, describing `link` (the other object).
pub fn link_span(owner: &ObjectRef, window: Window, link: &Link) -> SpanRecord {
    let trace_id = TraceId::for_object(&owner.key, window);
    let other = &link.object.key;
    let mut attributes = identity_attributes(owner, 12);
    attributes.push((
        Cow::Borrowed(v::TRACE_SOURCE),
        SmolStr::new_static(v::OBJECT),
    ));
    attributes.push((Cow::Borrowed(v::PSEUDO_TYPE), SmolStr::new_static(v::LINK)));
    attributes.push((
        Cow::Borrowed(v::TIME_STAMP),
        format_smolstr!("{}", window.start()),
    ));
    attributes.push((Cow::Borrowed(v::LINKED_CLUSTER), other.cluster.clone()));
    attributes.push((Cow::Borrowed(v::LINKED_GROUP), other.group.clone()));
    attributes.push((Cow::Borrowed(v::LINKED_RESOURCE), other.resource.clone()));
    attributes.push((Cow::Borrowed(v::LINKED_NAMESPACE), other.namespace.clone()));
    attributes.push((Cow::Borrowed(v::LINKED_NAME), other.name.clone()));
    attributes.push((
        Cow::Borrowed(v::LINK_ROLE),
        SmolStr::new_static(link.role.as_str()),
    ));
    attributes.push((Cow::Borrowed(v::LINK_CLASS), SmolStr::new(&link.class)));
    attributes.push((Cow::Borrowed(v::LINKER), SmolStr::new(&link.dedup_id)));
    SpanRecord {
        trace_id,
        span_id: trace_id.link_span(&link.dedup_id, other),
        parent_span_id: Some(trace_id.object_span()),
        kind: SpanKind::Link,
        name: owner.key.operation_name(),
        start: window.start(),
        end: window.end(),
        attributes,
        logs: Vec::new(),
    }
}

/// The span of `activity`, under its object's span of `window` (the window that holds `activity.start`).
pub fn activity_span(activity: &Activity, window: Window) -> SpanRecord {
    activity_into_span(activity.clone(), window)
}

/// [`activity_span`], taking the activity: its title, attributes and logs move into the span without copies.
pub fn activity_into_span(activity: Activity, window: Window) -> SpanRecord {
    let object = &activity.object.object_ref;
    let trace_id = TraceId::for_object(&object.key, window);
    let mut attributes = identity_attributes(object, activity.attributes.len() + 2);
    attributes.push((
        Cow::Borrowed(v::NOT_PSEUDO),
        SmolStr::new_static(v::NOT_PSEUDO),
    ));
    attributes.push((
        Cow::Borrowed(v::TRACE_SOURCE),
        SmolStr::new(activity.source.as_str()),
    ));
    attributes.extend(activity.attributes);
    let start = activity.start;
    let logs = activity
        .logs
        .into_iter()
        .map(|log| SpanLog {
            time: start,
            message: log.message,
            attributes: vec![(
                Cow::Borrowed(v::LOG_TYPE),
                SmolStr::new_static(log.kind.as_str()),
            )],
        })
        .collect();
    let end = activity.end.filter(|end| *end >= start).unwrap_or_else(|| {
        start
            .saturating_add(DEFAULT_ACTIVITY_DURATION)
            .unwrap_or(start)
    });
    SpanRecord {
        trace_id,
        span_id: trace_id.activity_span(&activity.dedup_key),
        parent_span_id: Some(trace_id.object_span()),
        kind: SpanKind::Activity(SmolStr::new(activity.source.as_str())),
        name: activity.title,
        start,
        end,
        attributes,
        logs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Windowing;

    #[test]
    fn the_size_estimate_counts_owned_text_and_not_static_text() {
        let object = ObjectRef::new(
            ObjectKey::new("c", "apps", "deployments", "ns", "web"),
            "v1",
            None,
        );
        let window = Windowing::new(1800)
            .expect("a window")
            .window_of(Timestamp::UNIX_EPOCH);
        let mut span = object_span(&object, window);
        let before = span.approximate_size();
        assert!(before >= std::mem::size_of::<SpanRecord>() + span.name.len());
        span.attributes.shrink_to_fit();
        let shrunk = span.approximate_size();
        span.attributes
            .push((Cow::Borrowed("static"), SmolStr::new_static("x")));
        let grown = span.approximate_size();
        span.attributes
            .push((Cow::Owned("diff".into()), SmolStr::new("y".repeat(100_000))));
        let large = span.approximate_size();
        assert!(grown >= shrunk, "{grown} {shrunk}");
        assert!(large >= grown + 100_004, "{large} {grown}");
    }
}
