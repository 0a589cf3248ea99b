//! From an [`AuditEvent`] to an [`Activity`] (docs/behaviour/audit.md; the error logs of failed requests:
//! docs/behaviour/audit.md#failed-requests).

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::{AuditEvent, Stage};
use crate::activity::{Activity, Change, ChangeKind, LogKind, LogLine, SourceKind};
use crate::key::{Object, ObjectKey, ObjectRef};
use crate::vocabulary;

/// What became of an audit event that was well formed.
#[derive(Clone, Debug, PartialEq)]
pub enum AuditOutcome {
    /// It is a write on an object: here is its activity.
    Activity(Box<Activity>),
    /// It is not traced, for a normal reason (a read, an intermediate stage...).
    Skipped(SkipReason),
}

/// Why a well-formed audit event is not traced. Callers count these by [`SkipReason::as_str`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The verb is not `create`, `update`, `patch` or `delete` (reads, watches, `deletecollection`...).
    UnsupportedVerb,
    /// The stage is not `ResponseComplete` (the same request is traced once, at its last stage).
    IncompleteStage,
    /// The request was not about a resource (non-resource URL such as `/healthz`).
    NoObjectRef,
    /// An `update`, `patch` or `delete` without an object name.
    NoObjectName,
    /// A `create` without a name (`generateName`) whose response body, which would hold the name, was not
    /// recorded (level below `RequestResponse`, or the request failed).
    UnnamedCreate,
}

impl SkipReason {
    /// A short stable name, for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedVerb => "unsupported verb",
            Self::IncompleteStage => "stage not ResponseComplete",
            Self::NoObjectRef => "no objectRef",
            Self::NoObjectName => "no object name",
            Self::UnnamedCreate => "create without a name in the response",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An audit event that cannot be traced because it is malformed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuditMappingError {
    /// No `auditID`.
    #[error("audit event has no auditID")]
    MissingAuditId,
    /// No `verb`.
    #[error("audit event {audit_id}: missing verb")]
    MissingVerb {
        /// The event's audit id.
        audit_id: String,
    },
    /// No `stage`, or one this crate does not know.
    #[error("audit event {audit_id}: missing or unknown stage")]
    MissingStage {
        /// The event's audit id.
        audit_id: String,
    },
    /// `objectRef` has no `resource`.
    #[error("audit event {audit_id}: objectRef has no resource")]
    MissingResource {
        /// The event's audit id.
        audit_id: String,
    },
    /// No `user.username`.
    #[error("audit event {audit_id}: missing user.username")]
    MissingUser {
        /// The event's audit id.
        audit_id: String,
    },
    /// None of `requestReceivedTimestamp`, `stageTimestamp` and `timestamp`.
    #[error("audit event {audit_id}: no requestReceivedTimestamp, stageTimestamp or timestamp")]
    MissingTimestamp {
        /// The event's audit id.
        audit_id: String,
    },
}

/// How audit events become activities.
#[derive(Clone, Debug)]
pub struct AuditMapping {
    /// Name the impersonated user (not the one who authenticated) as the actor; the authenticated one is then
    /// kept in the `impersonatedBy` attribute. On by default, as in the original.
    pub use_impersonated_user: bool,
}

impl Default for AuditMapping {
    fn default() -> Self {
        Self {
            use_impersonated_user: true,
        }
    }
}

/// Maps one audit event of `cluster` with the default [`AuditMapping`].
pub fn map_event(event: AuditEvent, cluster: &str) -> Result<AuditOutcome, AuditMappingError> {
    AuditMapping::default().map(event, cluster)
}

/// The English text of an HTTP status code, e.g. `Not Found` for 404.
pub fn status_text(code: i32) -> Option<&'static str> {
    Some(match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// The span name of an audit activity: `<user> <verb>`, then ` <subresource>` if any, then ` (<status text>)` when
/// the response code is 300 or more (the bare code when it has no known text).
///
/// ```
/// use kelemetry_core::audit::activity_title;
/// assert_eq!(activity_title("bob", "patch", Some("status"), Some(404)), "bob patch status (Not Found)");
/// assert_eq!(activity_title("bob", "create", None, Some(201)), "bob create");
/// ```
pub fn activity_title(
    user: &str,
    verb: &str,
    subresource: Option<&str>,
    code: Option<i32>,
) -> String {
    let mut title = format!("{user} {verb}");
    if let Some(subresource) = subresource.filter(|s| !s.is_empty()) {
        title.push(' ');
        title.push_str(subresource);
    }
    if let Some(code) = code.filter(|c| *c >= 300) {
        match status_text(code) {
            Some(text) => title.push_str(&format!(" ({text})")),
            None => title.push_str(&format!(" ({code})")),
        }
    }
    title
}

impl AuditMapping {
    /// Maps one audit event of `cluster`: an activity, a normal skip, or an error for a malformed event.
    pub fn map(&self, event: AuditEvent, cluster: &str) -> Result<AuditOutcome, AuditMappingError> {
        if event.audit_id.is_empty() {
            return Err(AuditMappingError::MissingAuditId);
        }
        let audit_id = event.audit_id;
        let change_kind = match event.verb.as_str() {
            "create" => ChangeKind::Create,
            "update" | "patch" => ChangeKind::Update,
            "delete" => ChangeKind::Delete,
            "" => return Err(AuditMappingError::MissingVerb { audit_id }),
            _ => return Ok(AuditOutcome::Skipped(SkipReason::UnsupportedVerb)),
        };
        match event.stage {
            Some(Stage::ResponseComplete) => {}
            Some(Stage::RequestReceived | Stage::ResponseStarted | Stage::Panic) => {
                return Ok(AuditOutcome::Skipped(SkipReason::IncompleteStage));
            }
            None | Some(Stage::Unknown) => {
                return Err(AuditMappingError::MissingStage { audit_id });
            }
        }
        let Some(object_ref) = event.object_ref else {
            return Ok(AuditOutcome::Skipped(SkipReason::NoObjectRef));
        };
        let Some(resource) = object_ref.resource.filter(|r| !r.is_empty()) else {
            return Err(AuditMappingError::MissingResource { audit_id });
        };
        let Some(start) = event
            .request_received_timestamp
            .or(event.stage_timestamp)
            .or(event.timestamp)
        else {
            return Err(AuditMappingError::MissingTimestamp { audit_id });
        };
        let authenticated = event.user.map(|u| u.username).filter(|u| !u.is_empty());
        let impersonated = event
            .impersonated_user
            .map(|u| u.username)
            .filter(|u| !u.is_empty() && self.use_impersonated_user);
        let (username, impersonated_by) = match (impersonated, authenticated) {
            (Some(acting), real) => (acting, real),
            (None, Some(real)) => (real, None),
            (None, None) => return Err(AuditMappingError::MissingUser { audit_id }),
        };

        let code = event.response_status.as_ref().and_then(|s| s.code);
        let failed = code.is_some_and(|c| c >= 300);
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let mut subresource = nonempty(object_ref.subresource);
        let mut old_resource_version = nonempty(object_ref.resource_version);
        let mut namespace = nonempty(object_ref.namespace).unwrap_or_default();
        // Only writes get here, so the response body is worth parsing now.
        let response: Option<Value> = event
            .response_object
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .filter(|body: &Value| !failed && is_object_body(body));
        let name = match nonempty(object_ref.name) {
            Some(name) => name,
            None if change_kind == ChangeKind::Create => {
                // `generateName`: the name is only known from the response.
                let found = response.as_ref().and_then(|body| {
                    let metadata = body.get("metadata")?;
                    let name = metadata.get("name")?.as_str().filter(|n| !n.is_empty())?;
                    let ns = metadata.get("namespace").and_then(Value::as_str);
                    Some((name.to_owned(), ns.map(str::to_owned)))
                });
                let Some((name, ns)) = found else {
                    return Ok(AuditOutcome::Skipped(SkipReason::UnnamedCreate));
                };
                if let Some(ns) = ns {
                    namespace = ns;
                }
                // As the original: the request named no version, and wrote no subresource of a known object.
                old_resource_version = None;
                subresource = None;
                name
            }
            None => return Ok(AuditOutcome::Skipped(SkipReason::NoObjectName)),
        };
        // The response is the object itself only for the main resource and `status`; other subresources
        // (`scale`, `token`, `eviction`...) answer with other kinds.
        let body = response.filter(|body| {
            subresource.as_deref().is_none_or(|s| s == "status")
                && body.pointer("/metadata/name").and_then(Value::as_str) == Some(name.as_str())
        });
        let body_uid = body
            .as_ref()
            .and_then(|b| b.pointer("/metadata/uid"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let uid = body_uid.or_else(|| nonempty(object_ref.uid));

        let key = ObjectKey {
            cluster: cluster.to_owned(),
            group: object_ref.api_group.unwrap_or_default(),
            resource,
            namespace,
            name,
        };
        let version = object_ref.api_version.unwrap_or_default();
        let object_ref = ObjectRef::new(key, version, uid);
        let object = match body {
            Some(body) => Object::with_body(object_ref, Arc::new(body)),
            None => Object::new(object_ref),
        };

        let title = activity_title(&username, &event.verb, subresource.as_deref(), code);
        let mut activity = Activity::new(
            object,
            SourceKind::Audit,
            start,
            title,
            format!("audit:{audit_id}"),
        );
        activity.end = event.stage_timestamp;

        activity.attribute(vocabulary::AUDIT_ID, audit_id);
        activity.attribute(vocabulary::USERNAME, username);
        if let Some(real) = impersonated_by {
            activity.attribute(vocabulary::IMPERSONATED_BY, real);
        }
        if let Some(agent) = event.user_agent.filter(|a| !a.is_empty()) {
            activity.attribute(vocabulary::USER_AGENT, agent);
        }
        if let Some(code) = code {
            activity.attribute(vocabulary::RESPONSE_CODE, code.to_string());
        }
        if let Some(rv) = &old_resource_version {
            activity.attribute(vocabulary::RESOURCE_VERSION, rv.clone());
        }
        let mut ips = event.source_ips.into_iter();
        if let Some(first) = ips.next() {
            activity.attribute(vocabulary::SOURCE_IP, first);
            let proxies: Vec<String> = ips.collect();
            if !proxies.is_empty() {
                activity.attribute(vocabulary::PROXY, proxies.join(","));
            }
        }
        if let Some(sub) = &subresource {
            activity.attribute(vocabulary::SUBRESOURCE, sub.clone());
        }
        activity.attribute(vocabulary::TAG, event.verb);

        if failed && let Some(status) = event.response_status {
            activity.logs.push(LogLine::new(
                LogKind::RealError,
                failure_text(status.reason, status.message, code),
            ));
            for cause in status.details.map(|d| d.causes).unwrap_or_default() {
                let text = match (cause.reason.filter(|r| !r.is_empty()), cause.message) {
                    (Some(kind), Some(message)) => format!("{kind}: {message}"),
                    (Some(kind), None) => kind,
                    (None, Some(message)) => message,
                    (None, None) => continue,
                };
                activity.logs.push(LogLine::new(LogKind::RealError, text));
            }
        }

        activity.change = Some(Change {
            kind: change_kind,
            old_resource_version,
            subresource,
        });
        Ok(AuditOutcome::Activity(Box::new(activity)))
    }
}

/// `<reason>: <message>`, leaving out what is missing; the status text when both are.
fn failure_text(reason: Option<String>, message: Option<String>, code: Option<i32>) -> String {
    match (
        reason.filter(|r| !r.is_empty()),
        message.filter(|m| !m.is_empty()),
    ) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(reason), None) => reason,
        (None, Some(message)) => message,
        (None, None) => code
            .map(|c| status_text(c).map_or_else(|| format!("HTTP {c}"), str::to_owned))
            .unwrap_or_default(),
    }
}

/// Whether a response body is an object (rather than a `Status` or a list): it has `metadata` and is not a
/// `Status`.
fn is_object_body(body: &Value) -> bool {
    body.get("kind").and_then(Value::as_str) != Some("Status")
        && body.get("metadata").is_some_and(Value::is_object)
}
