//! The span attribute vocabulary: the wire schema of every span Kelemetry writes.
//!
//! Readers (the query side, Jaeger searches, people's saved queries) rely on these keys, so they are a storage
//! format like the ids: renaming one breaks every reader of spans already written. Names and values are those of
//! the original Kelemetry, so habits and queries carry over. Every value is an OTLP **string** attribute (numbers
//! are written as decimal text); the conversion to OTLP is `crate::otlp` (feature `otlp`), and
//! `docs/behaviour/spans.md` tells which span carries what, in which order.
//!
//! | Key | On | Meaning |
//! |---|---|---|
//! | `cluster`, `group`, `version`, `resource`, `namespace`, `name` | every span | the identity of the object whose trace the span is in (`group` and `namespace` empty for the core group and cluster-scoped objects; `version` informational) |
//! | `uid` | object | the object's uid, when known |
//! | `timeStamp` | object, link | the window's start, RFC 3339 |
//! | `k8s.cluster.name`, `k8s.namespace.name`, `k8s.<kind>.name`, `k8s.<kind>.uid` | object | OpenTelemetry semantic conventions (namespace only when namespaced; kind only for the common workload kinds) |
//! | `zzz-traceSource` | every span | which source wrote it: `object` on object and link spans, the activity's source otherwise |
//! | `zzz-pseudoType` | object, link | `object` or `link` |
//! | `zzz-notPseudo` | activity | present on every activity span (its value is its own name) |
//! | `linkedCluster`, `linkedGroup`, `linkedResource`, `linkedNamespace`, `linkedName` | link | the other object |
//! | `linkRole` | link | `parent` or `child`: what the other object is to this one |
//! | `linkClass` | link | the class of the relation (`children` for owner references; may be empty) |
//! | `linker` | link | the dedup id of the linker that found the relation |
//! | `auditId`, `username`, `impersonatedBy`, `userAgent`, `responseCode`, `resourceVersion`, `newResourceVersion`, `tag`, `sourceIP`, `proxy`, `subresource`, `requestURI` | audit activity | the apiserver audit record (`tag` is the verb; `responseCode` a decimal HTTP status) |
//! | `source`, `action`, `type`, `count`, `eventName` | event activity | the Kubernetes Event (`count` decimal) |
//! | `zzz-logType` | span event (log) | what the log's text is: a [`LogKind`](crate::LogKind) name |
//!
//! Keys starting with [`INTERNAL_PREFIX`] (`zzz-`) are markers for the read side, which removes them from what it
//! shows. [`SCHEMA`] lists the fixed keys in code.

/// Object identity: cluster name.
pub const CLUSTER: &str = "cluster";
/// Object identity: API group.
pub const GROUP: &str = "group";
/// API version (informational).
pub const VERSION: &str = "version";
/// Object identity: resource (plural).
pub const RESOURCE: &str = "resource";
/// Object identity: namespace.
pub const NAMESPACE: &str = "namespace";
/// Object identity: name.
pub const NAME: &str = "name";
/// Object uid when known.
pub const UID: &str = "uid";
/// Window start of an object or link span, RFC 3339.
pub const TIME_STAMP: &str = "timeStamp";

/// Marker: which source wrote the span (`object`, `audit`, `event`, ...).
pub const TRACE_SOURCE: &str = "zzz-traceSource";
/// Marker: the kind of pseudo span (`object`, `link`, `linkClass`, `groupByTraceSource`).
pub const PSEUDO_TYPE: &str = "zzz-pseudoType";
/// Marker present on every activity span.
pub const NOT_PSEUDO: &str = "zzz-notPseudo";
/// Attribute of a span log: its [`LogKind`](crate::LogKind).
pub const LOG_TYPE: &str = "zzz-logType";
/// Prefix of internal markers that display steps strip.
pub const INTERNAL_PREFIX: &str = "zzz-";

/// Link span: the other object's cluster.
pub const LINKED_CLUSTER: &str = "linkedCluster";
/// Link span: the other object's group.
pub const LINKED_GROUP: &str = "linkedGroup";
/// Link span: the other object's resource.
pub const LINKED_RESOURCE: &str = "linkedResource";
/// Link span: the other object's namespace.
pub const LINKED_NAMESPACE: &str = "linkedNamespace";
/// Link span: the other object's name.
pub const LINKED_NAME: &str = "linkedName";
/// Link span: `parent` when the other object is the parent of this span's object, `child` otherwise.
pub const LINK_ROLE: &str = "linkRole";
/// Link span: the class of the relation (`children` for owner references).
pub const LINK_CLASS: &str = "linkClass";
/// Link span: the linker that found the relation.
pub const LINKER: &str = "linker";

/// Audit: audit id.
pub const AUDIT_ID: &str = "auditId";
/// Audit: the acting user (the impersonated one when impersonating).
pub const USERNAME: &str = "username";
/// Audit: the user that authenticated, when it impersonated another.
pub const IMPERSONATED_BY: &str = "impersonatedBy";
/// Audit: user agent.
pub const USER_AGENT: &str = "userAgent";
/// Audit: HTTP response code.
pub const RESPONSE_CODE: &str = "responseCode";
/// Audit: `objectRef.resourceVersion` of the request.
pub const RESOURCE_VERSION: &str = "resourceVersion";
/// Audit: resource version of the response object.
pub const NEW_RESOURCE_VERSION: &str = "newResourceVersion";
/// Audit: the verb (`tag` in the original).
pub const TAG: &str = "tag";
/// Audit: first source IP.
pub const SOURCE_IP: &str = "sourceIP";
/// Audit: further source IPs (proxies).
pub const PROXY: &str = "proxy";
/// Audit: subresource, when the request was on one.
pub const SUBRESOURCE: &str = "subresource";
/// Audit: request URI.
pub const REQUEST_URI: &str = "requestURI";

/// Kubernetes Event: reporting component (`source.component` or `reportingController`).
pub const EVENT_SOURCE: &str = "source";
/// Kubernetes Event: action.
pub const EVENT_ACTION: &str = "action";
/// Kubernetes Event: `Normal` or `Warning`.
pub const EVENT_TYPE: &str = "type";
/// Kubernetes Event: how many times it happened.
pub const EVENT_COUNT: &str = "count";
/// Kubernetes Event: the Event object's own name.
pub const EVENT_NAME: &str = "eventName";

/// OpenTelemetry semantic convention: cluster name.
pub const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";
/// OpenTelemetry semantic convention: namespace name.
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";

/// Value of [`TRACE_SOURCE`] and [`PSEUDO_TYPE`] on object spans, and of [`TRACE_SOURCE`] on link spans.
pub const OBJECT: &str = "object";
/// Value of [`PSEUDO_TYPE`] on link spans.
pub const LINK: &str = "link";

/// Which spans carry an attribute.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CarriedBy {
    /// Every span: object, link and activity spans.
    EverySpan,
    /// Object spans.
    ObjectSpans,
    /// Object and link spans.
    ObjectAndLinkSpans,
    /// Link spans.
    LinkSpans,
    /// Every activity span.
    ActivitySpans,
    /// Activity spans of the audit source.
    AuditSpans,
    /// Activity spans of the Kubernetes Event source.
    EventSpans,
    /// Span events (logs).
    Logs,
}

/// One fixed key of the wire schema. Every value is a string attribute.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AttributeSpec {
    /// The key.
    pub key: &'static str,
    /// Which spans carry it.
    pub carried_by: CarriedBy,
    /// What the value means.
    pub meaning: &'static str,
}

const fn spec(key: &'static str, carried_by: CarriedBy, meaning: &'static str) -> AttributeSpec {
    AttributeSpec {
        key,
        carried_by,
        meaning,
    }
}

/// The fixed keys of the wire schema (the `k8s.<kind>.*` keys, which depend on the resource, are left out), in
/// the order of the table in the [module documentation](self).
pub const SCHEMA: &[AttributeSpec] = {
    use CarriedBy::*;
    &[
        spec(CLUSTER, EverySpan, "cluster of the span's object"),
        spec(
            GROUP,
            EverySpan,
            "API group of the span's object, empty for the core group",
        ),
        spec(
            VERSION,
            EverySpan,
            "API version of the span's object (informational)",
        ),
        spec(
            RESOURCE,
            EverySpan,
            "resource (lowercase plural) of the span's object",
        ),
        spec(
            NAMESPACE,
            EverySpan,
            "namespace of the span's object, empty when cluster-scoped",
        ),
        spec(NAME, EverySpan, "name of the span's object"),
        spec(UID, ObjectSpans, "uid of the object, when known"),
        spec(
            TIME_STAMP,
            ObjectAndLinkSpans,
            "start of the window, RFC 3339",
        ),
        spec(
            K8S_CLUSTER_NAME,
            ObjectSpans,
            "semantic convention: the cluster",
        ),
        spec(
            K8S_NAMESPACE_NAME,
            ObjectSpans,
            "semantic convention: the namespace, when namespaced",
        ),
        spec(
            TRACE_SOURCE,
            EverySpan,
            "`object`, or the source of the activity",
        ),
        spec(PSEUDO_TYPE, ObjectAndLinkSpans, "`object` or `link`"),
        spec(NOT_PSEUDO, ActivitySpans, "marks an activity span"),
        spec(LINKED_CLUSTER, LinkSpans, "cluster of the other object"),
        spec(LINKED_GROUP, LinkSpans, "API group of the other object"),
        spec(LINKED_RESOURCE, LinkSpans, "resource of the other object"),
        spec(LINKED_NAMESPACE, LinkSpans, "namespace of the other object"),
        spec(LINKED_NAME, LinkSpans, "name of the other object"),
        spec(
            LINK_ROLE,
            LinkSpans,
            "`parent` or `child`: what the other object is to this one",
        ),
        spec(
            LINK_CLASS,
            LinkSpans,
            "class of the relation, `children` for owner references",
        ),
        spec(
            LINKER,
            LinkSpans,
            "dedup id of the linker that found the relation",
        ),
        spec(AUDIT_ID, AuditSpans, "audit id"),
        spec(
            USERNAME,
            AuditSpans,
            "acting user (the impersonated one when impersonating)",
        ),
        spec(
            IMPERSONATED_BY,
            AuditSpans,
            "user that authenticated, when impersonating",
        ),
        spec(USER_AGENT, AuditSpans, "user agent"),
        spec(RESPONSE_CODE, AuditSpans, "HTTP response code, decimal"),
        spec(
            RESOURCE_VERSION,
            AuditSpans,
            "resource version of the request's object reference",
        ),
        spec(
            NEW_RESOURCE_VERSION,
            AuditSpans,
            "resource version of the response object",
        ),
        spec(TAG, AuditSpans, "the verb"),
        spec(SOURCE_IP, AuditSpans, "first source IP"),
        spec(PROXY, AuditSpans, "further source IPs (proxies)"),
        spec(SUBRESOURCE, AuditSpans, "subresource of the request"),
        spec(REQUEST_URI, AuditSpans, "request URI"),
        spec(EVENT_SOURCE, EventSpans, "reporting component"),
        spec(EVENT_ACTION, EventSpans, "action"),
        spec(EVENT_TYPE, EventSpans, "`Normal` or `Warning`"),
        spec(
            EVENT_COUNT,
            EventSpans,
            "how many times it happened, decimal",
        ),
        spec(EVENT_NAME, EventSpans, "name of the Event object"),
        spec(LOG_TYPE, Logs, "what the log's text is: a `LogKind` name"),
    ]
};

/// The schema entry of `key`, if it is a fixed key.
pub fn spec_of(key: &str) -> Option<&'static AttributeSpec> {
    SCHEMA.iter().find(|spec| spec.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_lists_each_key_once_and_the_module_table_names_them() {
        let table = include_str!("vocabulary.rs");
        let table = table.split("| Key |").nth(1).unwrap_or_default();
        let table = table.split("\n//!\n").next().unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        for spec in SCHEMA {
            assert!(seen.insert(spec.key), "{} twice", spec.key);
            assert!(
                table.contains(&format!("`{}`", spec.key)),
                "{} not in the table",
                spec.key
            );
        }
    }

    #[test]
    fn every_span_written_uses_schema_keys_only() {
        use crate::{Activity, Link, Object, ObjectKey, ObjectRef, SourceKind, Windowing};
        let object = ObjectRef::new(
            ObjectKey::new("c", "apps", "deployments", "ns", "d"),
            "v1",
            Some("u".into()),
        );
        let at: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let window = Windowing::default().window_of(at);
        let other = ObjectRef::new(
            ObjectKey::new("c", "apps", "replicasets", "ns", "r"),
            "v1",
            None,
        );
        let activity = Activity::new(Object::new(object.clone()), SourceKind::Audit, at, "t", "a");
        let spans = [
            crate::span::object_span(&object, window),
            crate::span::link_span(&object, window, &Link::child(other)),
            crate::span::activity_span(&activity, window),
        ];
        for span in &spans {
            for (key, _) in &span.attributes {
                assert!(
                    spec_of(key).is_some() || key.starts_with("k8s."),
                    "{key} is not in the schema"
                );
            }
        }
    }
}
