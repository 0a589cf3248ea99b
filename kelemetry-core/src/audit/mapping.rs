//! From an [`AuditEvent`] to an [`Activity`] (docs/behaviour/audit.md; the error logs of failed requests:
//! docs/behaviour/audit.md#failed-requests).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use smol_str::SmolStr;

use super::{AuditEvent, AuditObjectRef, ResponseStatus, Stage, UserInfo};
use crate::activity::{Activity, Change, ChangeKind, LogKind, LogLine, SourceKind};
use crate::body::{Body, metadata_str};
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
#[non_exhaustive]
pub struct AuditMapping {
    /// Name the impersonated user (not the one who authenticated) as the actor; the authenticated one is then
    /// kept in the `impersonatedBy` attribute. On by default, as in the original.
    pub use_impersonated_user: bool,
    /// Sees every event before it is mapped (default: none).
    pub observer: Option<Arc<dyn AuditObserver>>,
}

impl Default for AuditMapping {
    fn default() -> Self {
        Self {
            use_impersonated_user: true,
            observer: None,
        }
    }
}

/// Sees every well-formed audit event an [`AuditMapping`] maps, before it is mapped: reads and writes, at every
/// stage, whether it becomes an activity, is skipped or is malformed. Every audit source (the webhook, the log
/// follower, recorded files) maps its events through its `AuditMapping`, so an observer set there sees them all;
/// request metrics are made this way. It must be quick: it runs on the source's task, once per event.
pub trait AuditObserver: Send + Sync + fmt::Debug {
    /// One event, of `cluster`.
    fn observe(&self, event: &AuditEvent<'_>, cluster: &str);
}

impl AuditMapping {
    /// This mapping, with `observer` seeing every event.
    pub fn with_observer(mut self, observer: Arc<dyn AuditObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Maps one audit event of `cluster` with the default [`AuditMapping`].
pub fn map_event(event: AuditEvent<'_>, cluster: &str) -> Result<AuditOutcome, AuditMappingError> {
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
    let subresource = subresource.filter(|s| !s.is_empty());
    // Sized once: the user, the verb, the subresource and a status text such as ` (Service Unavailable)`.
    let mut title =
        String::with_capacity(user.len() + verb.len() + subresource.map_or(0, str::len) + 32);
    title.push_str(user);
    title.push(' ');
    title.push_str(verb);
    if let Some(subresource) = subresource {
        title.push(' ');
        title.push_str(subresource);
    }
    if let Some(code) = code.filter(|c| *c >= 300) {
        title.push_str(" (");
        match status_text(code) {
            Some(text) => title.push_str(text),
            None => {
                let _ = write!(title, "{code}");
            }
        }
        title.push(')');
    }
    title
}

impl AuditMapping {
    /// Maps one audit event of `cluster`: an activity, a normal skip, or an error for a malformed event.
    pub fn map(
        &self,
        event: AuditEvent<'_>,
        cluster: &str,
    ) -> Result<AuditOutcome, AuditMappingError> {
        if let Some(observer) = &self.observer {
            observer.observe(&event, cluster);
        }
        match self.activity(event, cluster) {
            Ok(activity) => Ok(AuditOutcome::Activity(Box::new(activity))),
            Err(NoActivity::Skipped(reason)) => Ok(AuditOutcome::Skipped(reason)),
            Err(NoActivity::Malformed(error)) => Err(error),
        }
    }

    /// The activity of one audit event, or why there is none; the checks run in a fixed order, so an event with
    /// several faults is always reported by the same one.
    fn activity(&self, event: AuditEvent<'_>, cluster: &str) -> Result<Activity, NoActivity> {
        if event.audit_id.is_empty() {
            return Err(AuditMappingError::MissingAuditId.into());
        }
        let change_kind = change_kind(&event.verb, &event.audit_id)?;
        check_stage(event.stage, &event.audit_id)?;
        let start = event.start_time();
        let audit_id = event.audit_id;
        let Some(mut object_ref) = event.object_ref else {
            return Err(SkipReason::NoObjectRef.into());
        };
        let Some(resource) = nonempty(object_ref.resource.take()) else {
            return Err(AuditMappingError::MissingResource {
                audit_id: audit_id.into_owned(),
            }
            .into());
        };
        let Some(start) = start else {
            return Err(AuditMappingError::MissingTimestamp {
                audit_id: audit_id.into_owned(),
            }
            .into());
        };
        let (username, impersonated_by) =
            self.actor(event.user, event.impersonated_user, &audit_id)?;

        let code = event.response_status.as_ref().and_then(|s| s.code);
        let failed = code.is_some_and(|c| c >= 300);
        // Only writes get here, so the response body of one that succeeded is kept, as its text: what the stages
        // read of it is parsed when they read it (see `Body`).
        let response: Option<Body> = event
            .response_object
            .filter(|_| !failed)
            .and_then(Body::from_raw)
            .filter(is_object_body);
        let target = Target::resolve(resource, object_ref, change_kind, response.as_ref())?;
        let (object, change) = target.into_object(cluster, response);

        let title = activity_title(&username, &event.verb, change.subresource.as_deref(), code);
        let mut activity = Activity::new(
            object,
            SourceKind::Audit,
            start,
            title,
            ["audit:", &audit_id].concat(),
        );
        activity.end = event.stage_timestamp;
        // Room for the attributes below at once, rather than growing the list three times.
        activity.attributes.reserve(AUDIT_ATTRIBUTES);
        attribute_actor(&mut activity, audit_id, username, impersonated_by);
        if let Some(agent) = event.user_agent.filter(|a| !a.is_empty()) {
            activity.attribute(vocabulary::USER_AGENT, agent);
        }
        if let Some(code) = code {
            activity.attribute(
                vocabulary::RESPONSE_CODE,
                SmolStr::new(itoa::Buffer::new().format(code)),
            );
        }
        if let Some(rv) = &change.old_resource_version {
            activity.attribute(vocabulary::RESOURCE_VERSION, rv.as_str());
        }
        attribute_source_ips(&mut activity, event.source_ips);
        if let Some(sub) = &change.subresource {
            activity.attribute(vocabulary::SUBRESOURCE, sub.as_str());
        }
        activity.attribute(vocabulary::TAG, event.verb);

        if failed && let Some(status) = event.response_status {
            push_failure_logs(&mut activity.logs, status, code);
        }
        activity.change = Some(change);
        Ok(activity)
    }

    /// The acting user's name and, when it is an impersonated user, the name of the one who authenticated.
    fn actor<'e>(
        &self,
        user: Option<UserInfo<'e>>,
        impersonated_user: Option<UserInfo<'e>>,
        audit_id: &str,
    ) -> Result<(Cow<'e, str>, Option<Cow<'e, str>>), NoActivity> {
        let authenticated = user.map(|u| u.username).filter(|u| !u.is_empty());
        let impersonated = impersonated_user
            .map(|u| u.username)
            .filter(|u| !u.is_empty() && self.use_impersonated_user);
        match (impersonated, authenticated) {
            (Some(acting), real) => Ok((acting, real)),
            (None, Some(real)) => Ok((real, None)),
            (None, None) => Err(AuditMappingError::MissingUser {
                audit_id: audit_id.to_owned(),
            }
            .into()),
        }
    }
}

/// Why an audit event gives no activity: a normal skip, or a malformed event.
enum NoActivity {
    Skipped(SkipReason),
    Malformed(AuditMappingError),
}

impl From<SkipReason> for NoActivity {
    fn from(reason: SkipReason) -> Self {
        Self::Skipped(reason)
    }
}

impl From<AuditMappingError> for NoActivity {
    fn from(error: AuditMappingError) -> Self {
        Self::Malformed(error)
    }
}

/// The kind of change a verb makes; reads and other verbs are skipped, an empty verb is malformed.
fn change_kind(verb: &str, audit_id: &str) -> Result<ChangeKind, NoActivity> {
    match verb {
        "create" => Ok(ChangeKind::Create),
        "update" | "patch" => Ok(ChangeKind::Update),
        "delete" => Ok(ChangeKind::Delete),
        "" => Err(AuditMappingError::MissingVerb {
            audit_id: audit_id.to_owned(),
        }
        .into()),
        _ => Err(SkipReason::UnsupportedVerb.into()),
    }
}

/// Only `ResponseComplete` events are traced; the other known stages are skipped, an unknown one is malformed.
fn check_stage(stage: Option<Stage>, audit_id: &str) -> Result<(), NoActivity> {
    match stage {
        Some(Stage::ResponseComplete) => Ok(()),
        Some(Stage::RequestReceived | Stage::ResponseStarted | Stage::Panic) => {
            Err(SkipReason::IncompleteStage.into())
        }
        None | Some(Stage::Unknown) => Err(AuditMappingError::MissingStage {
            audit_id: audit_id.to_owned(),
        }
        .into()),
    }
}

/// `Some` of a non-empty string.
fn nonempty(s: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty())
}

/// The object a write was about, and the change the request made to it.
struct Target<'e> {
    resource: Cow<'e, str>,
    name: Cow<'e, str>,
    namespace: Cow<'e, str>,
    /// The rest of the event's `objectRef`.
    group: Option<Cow<'e, str>>,
    version: Option<Cow<'e, str>>,
    uid: Option<Cow<'e, str>>,
    change: Change,
}

impl<'e> Target<'e> {
    /// Reads the target from the event's `objectRef` (whose `resource` was already taken); a `create` with no
    /// name (`generateName`) takes the name and namespace the response body gives.
    fn resolve(
        resource: Cow<'e, str>,
        object_ref: AuditObjectRef<'e>,
        change_kind: ChangeKind,
        response: Option<&Body>,
    ) -> Result<Self, NoActivity> {
        let mut namespace = nonempty(object_ref.namespace).unwrap_or_default();
        let mut change = Change {
            kind: change_kind,
            old_resource_version: nonempty(object_ref.resource_version).map(Cow::into_owned),
            subresource: nonempty(object_ref.subresource).map(Cow::into_owned),
        };
        let name = match nonempty(object_ref.name) {
            Some(name) => name,
            None if change_kind == ChangeKind::Create => {
                let Some((name, ns)) = response.and_then(created_name) else {
                    return Err(SkipReason::UnnamedCreate.into());
                };
                if let Some(ns) = ns {
                    namespace = Cow::Owned(ns);
                }
                // As the original: the request named no version, and wrote no subresource of a known object.
                change.old_resource_version = None;
                change.subresource = None;
                Cow::Owned(name)
            }
            None => return Err(SkipReason::NoObjectName.into()),
        };
        Ok(Self {
            resource,
            name,
            namespace,
            group: object_ref.api_group,
            version: object_ref.api_version,
            uid: object_ref.uid,
            change,
        })
    }

    /// The traced object of `cluster`, with the response body when it is the object itself (whose uid then
    /// wins over the `objectRef`'s), and the change.
    fn into_object(self, cluster: &str, response: Option<Body>) -> (Object, Change) {
        // The response is the object itself only for the main resource and `status`; other subresources
        // (`scale`, `token`, `eviction`...) answer with other kinds.
        let body = response.filter(|body| {
            self.change
                .subresource
                .as_deref()
                .is_none_or(|s| s == "status")
                && metadata_str(body, "name") == Some(&*self.name)
        });
        let uid = body
            .as_ref()
            .and_then(|b| metadata_str(b, "uid"))
            .map(SmolStr::new)
            .or_else(|| nonempty(self.uid).map(SmolStr::from));
        let key = ObjectKey {
            cluster: cluster.into(),
            group: self.group.map(SmolStr::from).unwrap_or_default(),
            resource: self.resource.into(),
            namespace: self.namespace.into(),
            name: self.name.into(),
        };
        let object_ref = ObjectRef::new(
            key,
            self.version.map(SmolStr::from).unwrap_or_default(),
            uid,
        );
        let object = match body {
            Some(body) => Object::with_body(object_ref, body),
            None => Object::new(object_ref),
        };
        (object, self.change)
    }
}

/// The name (non-empty) and namespace of a created object, from the response body's metadata.
fn created_name(body: &Body) -> Option<(String, Option<String>)> {
    // Read from the text (`metadata_str`), without parsing the whole `metadata` (which the body would keep).
    let name = metadata_str(body, "name").filter(|n| !n.is_empty())?;
    let ns = metadata_str(body, "namespace");
    Some((name.to_owned(), ns.map(str::to_owned)))
}

/// The most attributes the mapping gives an activity: audit id, user, impersonator, user agent, response code,
/// resource version, source address, proxies, subresource and verb.
const AUDIT_ATTRIBUTES: usize = 10;

/// The audit id, the acting user and, if impersonated, the one who authenticated.
fn attribute_actor(
    activity: &mut Activity,
    audit_id: Cow<'_, str>,
    username: Cow<'_, str>,
    impersonated_by: Option<Cow<'_, str>>,
) {
    activity.attribute(vocabulary::AUDIT_ID, audit_id);
    activity.attribute(vocabulary::USERNAME, username);
    if let Some(real) = impersonated_by {
        activity.attribute(vocabulary::IMPERSONATED_BY, real);
    }
}

/// The client address, then the proxies it came through (comma-separated), when recorded.
fn attribute_source_ips(activity: &mut Activity, source_ips: Vec<Cow<'_, str>>) {
    if let Some((first, proxies)) = source_ips.split_first() {
        activity.attribute(vocabulary::SOURCE_IP, &**first);
        if !proxies.is_empty() {
            activity.attribute(vocabulary::PROXY, proxies.join(","));
        }
    }
}

/// The error logs of a failed request: the status's reason and message, then one line per cause.
fn push_failure_logs(logs: &mut Vec<LogLine>, status: ResponseStatus<'_>, code: Option<i32>) {
    logs.push(LogLine::new(
        LogKind::RealError,
        failure_text(status.reason, status.message, code),
    ));
    for cause in status.details.map(|d| d.causes).unwrap_or_default() {
        let text = match (cause.reason.filter(|r| !r.is_empty()), cause.message) {
            (Some(kind), Some(message)) => format!("{kind}: {message}"),
            (Some(kind), None) => kind.into_owned(),
            (None, Some(message)) => message.into_owned(),
            (None, None) => continue,
        };
        logs.push(LogLine::new(LogKind::RealError, text));
    }
}

/// `<reason>: <message>`, leaving out what is missing; the status text when both are.
fn failure_text(
    reason: Option<Cow<'_, str>>,
    message: Option<Cow<'_, str>>,
    code: Option<i32>,
) -> String {
    match (
        reason.filter(|r| !r.is_empty()),
        message.filter(|m| !m.is_empty()),
    ) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(reason), None) => reason.into_owned(),
        (None, Some(message)) => message.into_owned(),
        (None, None) => code
            .map(|c| status_text(c).map_or_else(|| format!("HTTP {c}"), str::to_owned))
            .unwrap_or_default(),
    }
}

/// Whether a response body is an object (rather than a `Status` or a list): it has `metadata` and is not a
/// `Status`.
fn is_object_body(body: &Body) -> bool {
    body.kind() != Some("Status") && body.has_metadata()
}
