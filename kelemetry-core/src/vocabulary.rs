//! Span attribute names and values shared with the original Kelemetry (DESIGN §5.6), so that habits and queries
//! carry over.

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
