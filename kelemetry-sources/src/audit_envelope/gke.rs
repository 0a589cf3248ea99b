//! GKE: a Cloud Logging `LogEntry` whose `protoPayload` is a `google.cloud.audit.AuditLog` of the Kubernetes API
//! (`serviceName` `k8s.io`), translated into an [`AuditEvent`].
//!
//! | LogEntry field | audit event field |
//! |---|---|
//! | `operation.id` (else `insertId`; GKE writes the Kubernetes audit ID in both) | `auditID` |
//! | last segment of `protoPayload.methodName` (`io.k8s.apps.v1.deployments.status.patch` → `patch`) | `verb` |
//! | `protoPayload.resourceName` (`apps/v1/namespaces/default/deployments/web/status`; `core` is the core group), else the middle of `methodName` | `objectRef` (group, version, resource, namespace, name, subresource) |
//! | `protoPayload.authenticationInfo.principalEmail` | `user.username` |
//! | `protoPayload.requestMetadata.callerIp` | `sourceIPs[0]` |
//! | `protoPayload.requestMetadata.callerSuppliedUserAgent` | `userAgent` |
//! | `protoPayload.status.code` (a `google.rpc.Code`), or the `code` of a `response` that is a Kubernetes `Status` | `responseStatus.code` as HTTP (see [`http_code`]) |
//! | `protoPayload.status.message`, or the `Status` response's `reason`, `message`, `details` | `responseStatus` |
//! | `protoPayload.request`, `protoPayload.response` without their `@type` key | `requestObject`, `responseObject` |
//! | `timestamp` (else `receiveTimestamp`) | `requestReceivedTimestamp` and `stageTimestamp` |
//! | `operation.first`/`operation.last`: an entry that is `first` but not `last` opens a long-running request | stage `RequestReceived` (skipped); otherwise `ResponseComplete` |
//! | `labels` (`authorization.k8s.io/decision`, `mutation.webhook.admission.k8s.io/...`) | `annotations` |
//! | `resource.labels.cluster_name` | the cluster (`project_id` and `location` are not used) |
//!
//! `receiveTimestamp` is when Cloud Logging received the entry, often seconds after the request: it is used only
//! when `timestamp` is missing, never as the end of the request. The level is `RequestResponse` with a response
//! body, `Request` with only a request body, else `Metadata`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kelemetry_core::audit::{
    AuditEvent, AuditObjectRef, Level, RawBody, ResponseStatus, Stage, StatusDetails, UserInfo,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Envelope, EnvelopeSkip, Enveloped, invalid, missing};
use crate::audit_intake::RecordRejection;

const GKE: Envelope = Envelope::Gke;

/// The text of a JSON string, or `""`.
fn text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or_default()
}

/// Whether `object` is a Cloud Logging entry of an audit log: an `AuditLog` payload (by its `@type`, its
/// `serviceName` `k8s.io` or an `io.k8s.` method), or an entry of a `cloudaudit.googleapis.com` log.
pub(super) fn is_log_entry(object: &Map<String, Value>) -> bool {
    let audit_payload = object
        .get("protoPayload")
        .and_then(Value::as_object)
        .is_some_and(|payload| {
            text(payload.get("@type")).ends_with("google.cloud.audit.AuditLog")
                || text(payload.get("serviceName")) == "k8s.io"
                || text(payload.get("methodName")).starts_with("io.k8s.")
        });
    audit_payload || text(object.get("logName")).contains("cloudaudit.googleapis.com")
}

/// The HTTP status code of a `google.rpc.Code`, as Google's API design guide pairs them: 0 `OK` → 200 (201 for a
/// `create`), 1 `CANCELLED` → 499, 2 `UNKNOWN` → 500, 3 `INVALID_ARGUMENT` → 400, 4 `DEADLINE_EXCEEDED` → 504,
/// 5 `NOT_FOUND` → 404, 6 `ALREADY_EXISTS` → 409, 7 `PERMISSION_DENIED` → 403, 8 `RESOURCE_EXHAUSTED` → 429,
/// 9 `FAILED_PRECONDITION` → 400, 10 `ABORTED` → 409, 11 `OUT_OF_RANGE` → 400, 12 `UNIMPLEMENTED` → 501,
/// 13 `INTERNAL` → 500, 14 `UNAVAILABLE` → 503, 15 `DATA_LOSS` → 500, 16 `UNAUTHENTICATED` → 401; any other
/// code → 500.
pub(super) fn http_code(rpc_code: i64, verb: &str) -> i32 {
    match rpc_code {
        0 if verb == "create" => 201,
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The entry of one GKE `LogEntry`: its audit event, a skip (an audit entry of another Google service, e.g.
/// `container.googleapis.com`), or the rejection naming the missing field.
pub(super) fn entry(mut object: Map<String, Value>) -> Result<Enveloped<'static>, RecordRejection> {
    let cluster: Option<Arc<str>> = object
        .get("resource")
        .and_then(|resource| resource.pointer("/labels/cluster_name"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(Arc::from);
    let Some(Value::Object(mut payload)) = object.remove("protoPayload") else {
        return Err(missing(GKE, "protoPayload"));
    };
    let service = payload.get("serviceName").and_then(Value::as_str);
    let method = payload
        .get("methodName")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    let of_kubernetes = match service {
        Some(service) => service == "k8s.io",
        None => method.is_none_or(|m| m.starts_with("io.k8s.")),
    };
    if !of_kubernetes {
        return Ok(Enveloped::skipped(GKE, cluster, EnvelopeSkip::OtherLog));
    }
    let Some(method) = method else {
        return Err(missing(GKE, "protoPayload.methodName"));
    };
    let method = Method::parse(method).ok_or_else(|| {
        invalid(
            GKE,
            "protoPayload.methodName",
            format!("{method:?} is not io.k8s.<group>.<version>.<resource>.<verb>"),
        )
    })?;
    let audit_id = ["/operation/id", "/insertId"]
        .iter()
        .find_map(|pointer| pointer_text(&object, pointer))
        .ok_or_else(|| missing(GKE, "operation.id and insertId"))?;
    let time = timestamp(&object)?;

    let object_ref = match payload.get("resourceName").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Some(
            ResourcePath::parse(name)
                .ok_or_else(|| {
                    invalid(
                        GKE,
                        "protoPayload.resourceName",
                        format!("{name:?} is not <group>/<version>/[namespaces/<ns>/]<resource>[/<name>]"),
                    )
                })?
                .object_ref(&method),
        ),
        _ => method.object_ref(),
    };
    let request = payload.remove("request").and_then(body);
    let response = payload.remove("response").and_then(body);
    let response_status = response_status(&payload, response.as_ref(), &method.verb);
    let level = if response.is_some() {
        Level::RequestResponse
    } else if request.is_some() {
        Level::Request
    } else {
        Level::Metadata
    };
    let text = |pointer: &str| {
        payload
            .get("requestMetadata")
            .and_then(|metadata| metadata.pointer(pointer))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| Cow::Owned(t.to_owned()))
    };
    let user = payload
        .get("authenticationInfo")
        .and_then(|info| info.get("principalEmail"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(|name| UserInfo {
            username: Cow::Owned(name.to_owned()),
            ..UserInfo::default()
        });
    let event = AuditEvent {
        level: Some(level),
        audit_id: Cow::Owned(audit_id),
        stage: Some(stage(&object)),
        verb: Cow::Owned(method.verb.clone()),
        user,
        source_ips: text("/callerIp").into_iter().collect(),
        user_agent: text("/callerSuppliedUserAgent"),
        object_ref,
        response_status: Some(response_status),
        request_object: request.and_then(raw),
        response_object: response.and_then(raw),
        request_received_timestamp: Some(time),
        stage_timestamp: Some(time),
        annotations: labels(&object),
        ..AuditEvent::default()
    };
    Ok(Enveloped::event(GKE, cluster, event))
}

/// The text at a JSON pointer of the entry, when it is a non-empty string.
fn pointer_text(object: &Map<String, Value>, pointer: &str) -> Option<String> {
    let (first, rest) = pointer.trim_start_matches('/').split_once('/').map_or_else(
        || (pointer.trim_start_matches('/'), None),
        |(first, rest)| (first, Some(rest)),
    );
    let value = object.get(first)?;
    let value = match rest {
        Some(rest) => value.pointer(&format!("/{rest}"))?,
        None => value,
    };
    value.as_str().filter(|t| !t.is_empty()).map(str::to_owned)
}

/// `timestamp`, else `receiveTimestamp`.
fn timestamp(object: &Map<String, Value>) -> Result<Timestamp, RecordRejection> {
    for field in ["timestamp", "receiveTimestamp"] {
        if let Some(value) = object.get(field) {
            let Some(text) = value.as_str() else {
                return Err(invalid(GKE, field, "is not a string"));
            };
            return text
                .parse()
                .map_err(|_| invalid(GKE, field, format!("{text:?} is not an RFC 3339 time")));
        }
    }
    Err(missing(GKE, "timestamp"))
}

/// `RequestReceived` for the entry that opens a long-running request (`operation.first` without `last`), else
/// `ResponseComplete`.
fn stage(object: &Map<String, Value>) -> Stage {
    let flag = |name: &str| {
        object
            .get("operation")
            .and_then(|operation| operation.get(name))
            .map(|value| {
                value
                    .as_bool()
                    .unwrap_or_else(|| value.as_str() == Some("true"))
            })
    };
    match (flag("first"), flag("last")) {
        (Some(true), None | Some(false)) => Stage::RequestReceived,
        _ => Stage::ResponseComplete,
    }
}

/// The entry's string `labels`, which GKE fills with the audit event's annotations.
fn labels(object: &Map<String, Value>) -> BTreeMap<Cow<'static, str>, Cow<'static, str>> {
    object
        .get("labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| {
                    let value = value.as_str()?.to_owned();
                    Some((Cow::Owned(key.clone()), Cow::Owned(value)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A request or response body without the `@type` key Cloud Logging adds; `None` for `null`.
fn body(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(mut object) => {
            object.remove("@type");
            Some(Value::Object(object))
        }
        other => Some(other),
    }
}

fn raw(value: Value) -> Option<RawBody<'static>> {
    serde_json::value::to_raw_value(&value)
        .ok()
        .map(RawBody::from)
}

/// The response status: the Kubernetes `Status` the response holds when it is one, else the HTTP code of
/// `status.code` and its message.
fn response_status(
    payload: &Map<String, Value>,
    response: Option<&Value>,
    verb: &str,
) -> ResponseStatus<'static> {
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| Cow::Owned(t.to_owned()))
    };
    if let Some(status) =
        response.filter(|r| r.get("kind").and_then(Value::as_str) == Some("Status"))
        && let Some(code) = status
            .get("code")
            .and_then(Value::as_i64)
            .and_then(|code| i32::try_from(code).ok())
    {
        return ResponseStatus {
            status: text(status.get("status")),
            message: text(status.get("message")),
            reason: text(status.get("reason")),
            details: status
                .get("details")
                .and_then(|details| StatusDetails::deserialize(details).ok())
                .map(StatusDetails::into_owned),
            code: Some(code),
        };
    }
    let status = payload.get("status");
    let rpc_code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    ResponseStatus {
        message: text(status.and_then(|s| s.get("message"))),
        code: Some(http_code(rpc_code, verb)),
        ..ResponseStatus::default()
    }
}

/// Whether a segment is a Kubernetes API version: `v1`, `v2beta1`, `v1alpha3`.
fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let rest = &rest[digits..];
    rest.is_empty()
        || ["alpha", "beta"].iter().any(|stage| {
            rest.strip_prefix(stage)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The group as a `resourceName` or `methodName` writes it: `core` is the core group.
fn group_of(segment: &str) -> String {
    if segment == "core" {
        String::new()
    } else {
        segment.to_owned()
    }
}

/// `io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`.
#[derive(Debug, PartialEq, Eq)]
struct Method {
    verb: String,
    /// The rest, when it names a version: group (abbreviated for the `*.k8s.io` groups, e.g. `coordination`),
    /// version, resource, subresource.
    target: Option<(String, String, String, Option<String>)>,
}

impl Method {
    fn parse(method: &str) -> Option<Self> {
        let rest = method.strip_prefix("io.k8s.")?;
        let (rest, verb) = rest.rsplit_once('.').unwrap_or(("", rest));
        if verb.is_empty() {
            return None;
        }
        let segments: Vec<&str> = rest.split('.').collect();
        let target = segments
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, segment)| is_version(segment))
            .and_then(|(at, version)| {
                let resource = segments.get(at + 1).filter(|r| !r.is_empty())?;
                Some((
                    group_of(&segments[..at].join(".")),
                    (*version).to_owned(),
                    (*resource).to_owned(),
                    segments.get(at + 2).map(|s| (*s).to_owned()),
                ))
            });
        Some(Self {
            verb: verb.to_owned(),
            target,
        })
    }

    /// The object reference the method alone gives (no namespace, no name).
    fn object_ref(&self) -> Option<AuditObjectRef<'static>> {
        let (group, version, resource, subresource) = self.target.clone()?;
        Some(AuditObjectRef {
            resource: Some(Cow::Owned(resource)),
            api_group: Some(Cow::Owned(group)),
            api_version: Some(Cow::Owned(version)),
            subresource: subresource.map(Cow::Owned),
            ..AuditObjectRef::default()
        })
    }
}

/// `<group>/<version>/[namespaces/<namespace>/]<resource>[/<name>[/<subresource>...]]`, as in
/// `protoPayload.resourceName`; the group and version may be missing.
#[derive(Debug, PartialEq, Eq)]
struct ResourcePath {
    group: Option<String>,
    version: Option<String>,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl ResourcePath {
    fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match parts.as_slice() {
            [group, version, rest @ ..] if is_version(version) => {
                (Some(group_of(group)), Some((*version).to_owned()), rest)
            }
            rest => (None, None, rest),
        };
        let owned = |part: Option<&&str>| part.filter(|p| !p.is_empty()).map(|p| (*p).to_owned());
        // As the apiserver reads a path: `namespaces/<ns>/<resource>...`, except the namespace's own
        // subresources `status` and `finalize`.
        let (namespace, rest) = match rest {
            ["namespaces", namespace, resource, ..]
                if !matches!(*resource, "status" | "finalize") =>
            {
                (Some((*namespace).to_owned()), &rest[2..])
            }
            other => (None, other),
        };
        let resource = rest.first().filter(|r| !r.is_empty())?;
        Some(Self {
            group,
            version,
            namespace: namespace.filter(|n| !n.is_empty()),
            resource: (*resource).to_owned(),
            name: owned(rest.get(1)),
            subresource: owned(rest.get(2)),
        })
    }

    /// The object reference, the method filling in what the path leaves out.
    fn object_ref(self, method: &Method) -> AuditObjectRef<'static> {
        let from_method = method.target.as_ref();
        AuditObjectRef {
            resource: Some(Cow::Owned(self.resource)),
            namespace: self.namespace.map(Cow::Owned),
            name: self.name.map(Cow::Owned),
            api_group: self
                .group
                .or_else(|| from_method.map(|(group, ..)| group.clone()))
                .map(Cow::Owned),
            api_version: self
                .version
                .or_else(|| from_method.map(|(_, version, ..)| version.clone()))
                .map(Cow::Owned),
            subresource: self
                .subresource
                .or_else(|| from_method.and_then(|(.., sub)| sub.clone()))
                .map(Cow::Owned),
            ..AuditObjectRef::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn path(text: &str) -> ResourcePath {
        ResourcePath::parse(text).unwrap()
    }

    #[test]
    fn resource_names() {
        let p = path("core/v1/namespaces/default/pods/web-1/status");
        assert_eq!(
            (
                p.group.as_deref(),
                p.version.as_deref(),
                p.namespace.as_deref()
            ),
            (Some(""), Some("v1"), Some("default"))
        );
        assert_eq!(
            (
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            ("pods", Some("web-1"), Some("status"))
        );
        let p = path("apps/v1/namespaces/prod/deployments/web");
        assert_eq!(p.group.as_deref(), Some("apps"));
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref()),
            ("deployments", Some("web"))
        );
        let p = path("core/v1/namespaces/team-a");
        assert_eq!(
            (
                p.resource.as_str(),
                p.name.as_deref(),
                p.namespace.as_deref()
            ),
            ("namespaces", Some("team-a"), None)
        );
        let p = path("core/v1/namespaces/team-a/finalize");
        assert_eq!(
            (
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            ("namespaces", Some("team-a"), Some("finalize"))
        );
        let p = path("core/v1/nodes/node-1/proxy/metrics/cadvisor");
        assert_eq!(
            (
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            ("nodes", Some("node-1"), Some("proxy"))
        );
        let p = path("core/v1/namespaces/default/pods");
        assert_eq!((p.resource.as_str(), p.name.as_deref()), ("pods", None));
        let p = path("coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler");
        assert_eq!(p.group.as_deref(), Some("coordination.k8s.io"));
        let p = path("namespaces/default/pods/web");
        assert_eq!(
            (p.group, p.namespace.as_deref(), p.name.as_deref()),
            (None, Some("default"), Some("web"))
        );
        assert_eq!(ResourcePath::parse(""), None);
        assert_eq!(ResourcePath::parse("core/v1"), None);
    }

    #[test]
    fn method_names() {
        let m = Method::parse("io.k8s.apps.v1.deployments.status.patch").unwrap();
        assert_eq!(m.verb, "patch");
        assert_eq!(
            m.target,
            Some((
                "apps".into(),
                "v1".into(),
                "deployments".into(),
                Some("status".into())
            ))
        );
        let m = Method::parse("io.k8s.core.v1.pods.create").unwrap();
        assert_eq!(
            m.target,
            Some((String::new(), "v1".into(), "pods".into(), None))
        );
        let m = Method::parse("io.k8s.cert-manager.io.v1.certificates.update").unwrap();
        assert_eq!(
            m.target,
            Some((
                "cert-manager.io".into(),
                "v1".into(),
                "certificates".into(),
                None
            ))
        );
        let m =
            Method::parse("io.k8s.autoscaling.v2beta2.horizontalpodautoscalers.delete").unwrap();
        assert_eq!(m.target.unwrap().1, "v2beta2");
        assert_eq!(Method::parse("io.k8s.get").unwrap().target, None);
        assert_eq!(
            Method::parse("google.container.v1.ClusterManager.CreateCluster"),
            None
        );
        assert_eq!(Method::parse("io.k8s."), None);
    }

    #[test]
    fn versions() {
        for yes in ["v1", "v10", "v1beta1", "v2alpha3"] {
            assert!(is_version(yes), "{yes}");
        }
        for no in ["v", "vbeta1", "v1beta", "v1gamma1", "apps", "1"] {
            assert!(!is_version(no), "{no}");
        }
    }

    #[test]
    fn rpc_codes_as_http() {
        assert_eq!(http_code(0, "create"), 201);
        assert_eq!(http_code(0, "patch"), 200);
        assert_eq!(http_code(7, "get"), 403);
        assert_eq!(http_code(5, "delete"), 404);
        assert_eq!(http_code(6, "create"), 409);
        assert_eq!(http_code(16, "get"), 401);
        assert_eq!(http_code(99, "get"), 500);
        assert_eq!(http_code(-1, "get"), 500);
    }
}
