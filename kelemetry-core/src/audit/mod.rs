//! Apiserver audit events: the `audit.k8s.io` types ([`AuditEvent`]), parsing of one input document
//! ([`parse_document`]), and the mapping of an event to an [`Activity`](crate::Activity) ([`AuditMapping`]).
//!
//! Both `audit.k8s.io/v1` and `v1beta1` parse into the same [`AuditEvent`] (`v1beta1` only adds `timestamp`).
//! Unknown fields are ignored, and every field Kubernetes may leave out is optional. An event borrows its strings
//! and its request and response bodies (raw JSON, parsed only when the event is a write that becomes an
//! activity) from the document it was parsed from, so that what the mapping drops is never copied;
//! [`AuditEvent::into_owned`] keeps one beyond its document.
//!
//! ```
//! use kelemetry_core::audit::{AuditOutcome, map_event, parse_document};
//!
//! let line = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1",
//!   "stage":"ResponseComplete","verb":"update","user":{"username":"alice"},
//!   "objectRef":{"resource":"deployments","apiGroup":"apps","apiVersion":"v1","namespace":"default","name":"web",
//!   "resourceVersion":"41","subresource":"scale"},"responseStatus":{"code":409,"reason":"Conflict",
//!   "message":"the object has been modified"},"requestReceivedTimestamp":"2024-05-01T12:00:00.100000Z",
//!   "stageTimestamp":"2024-05-01T12:00:00.130000Z"}"#;
//! let events = parse_document(line).unwrap();
//! let AuditOutcome::Activity(activity) = map_event(events.into_iter().next().unwrap(), "prod").unwrap() else {
//!     panic!("a write is kept");
//! };
//! assert_eq!(activity.title, "alice update scale (Conflict)");
//! assert_eq!(activity.object.key().to_string(), "prod/apps/deployments/default/web");
//! assert_eq!(activity.logs[0].message, "Conflict: the object has been modified");
//! ```

mod mapping;
mod text;
mod walk;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

pub use crate::body::RawBody;
pub use mapping::{
    AuditMapping, AuditMappingError, AuditObserver, AuditOutcome, SkipReason, activity_title,
    map_event, status_text,
};

/// The audit API group; documents of any version of it are accepted.
pub const AUDIT_GROUP: &str = "audit.k8s.io";

/// How much of a request the apiserver recorded (`level`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Level {
    /// Nothing is recorded (never seen in a log).
    None,
    /// User, verb, object reference, response status.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, request and response bodies.
    RequestResponse,
    /// A level this crate does not know.
    #[serde(other)]
    Unknown,
}

/// When during the request the event was written (`stage`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Stage {
    /// The request arrived.
    RequestReceived,
    /// Response headers were sent (long-running requests such as watch).
    ResponseStarted,
    /// The response was sent.
    ResponseComplete,
    /// The handler panicked.
    Panic,
    /// A stage this crate does not know.
    #[serde(other)]
    Unknown,
}

/// An authenticated or impersonated user (`user`, `impersonatedUser`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo<'a> {
    /// The user name.
    #[serde(default, borrow, deserialize_with = "text::or_empty")]
    pub username: Cow<'a, str>,
    /// The user's uid, when the authenticator gives one.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub uid: Option<Cow<'a, str>>,
    /// Groups the user belongs to.
    #[serde(default, borrow, deserialize_with = "text::list")]
    pub groups: Vec<Cow<'a, str>>,
    /// Further authenticator-provided information.
    #[serde(default, borrow, deserialize_with = "text::map_of_lists")]
    pub extra: BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>,
}

/// The object a request was about (`objectRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef<'a> {
    /// Plural resource, e.g. `deployments`.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub resource: Option<Cow<'a, str>>,
    /// Namespace; absent for cluster-scoped objects.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub namespace: Option<Cow<'a, str>>,
    /// Object name; absent for collections and for creates with `generateName`.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub name: Option<Cow<'a, str>>,
    /// Object uid as given in the request.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub uid: Option<Cow<'a, str>>,
    /// API group; absent for the core group.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub api_group: Option<Cow<'a, str>>,
    /// API version without the group, e.g. `v1`.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub api_version: Option<Cow<'a, str>>,
    /// The resource version the request named (the version it was based on).
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub resource_version: Option<Cow<'a, str>>,
    /// Subresource, e.g. `status`, `scale`, `exec`.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub subresource: Option<Cow<'a, str>>,
}

/// The outcome of a request (`responseStatus`, a `metav1.Status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseStatus<'a> {
    /// `Success` or `Failure`, often absent on success.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub status: Option<Cow<'a, str>>,
    /// Human-readable description of the failure.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub message: Option<Cow<'a, str>>,
    /// Machine-readable reason, e.g. `NotFound`, `Conflict`, `Forbidden`.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub reason: Option<Cow<'a, str>>,
    /// More about the failure.
    #[serde(default, borrow)]
    pub details: Option<StatusDetails<'a>>,
    /// The HTTP status code.
    #[serde(default)]
    pub code: Option<i32>,
}

/// `responseStatus.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails<'a> {
    /// Name of the object concerned.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub name: Option<Cow<'a, str>>,
    /// Group of the object concerned.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub group: Option<Cow<'a, str>>,
    /// Kind (or resource) of the object concerned.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub kind: Option<Cow<'a, str>>,
    /// Individual causes, e.g. one per invalid field.
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    pub causes: Vec<StatusCause<'a>>,
}

/// One cause of a failure (`responseStatus.details.causes[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause<'a> {
    /// The cause type, e.g. `FieldValueInvalid` (written `reason` in JSON).
    #[serde(default, alias = "type", borrow, deserialize_with = "text::optional")]
    pub reason: Option<Cow<'a, str>>,
    /// Human-readable description.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub message: Option<Cow<'a, str>>,
    /// The field concerned, e.g. `spec.replicas`.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    pub field: Option<Cow<'a, str>>,
}

/// Declares [`AuditEvent`] and the private document type that also accepts an `EventList`, from one field list,
/// so a document is parsed in a single pass whatever its kind.
macro_rules! audit_event_types {
    ($( $(#[$field_meta:meta])* $field:ident : $ty:ty, )*) => {
        /// One apiserver audit event (`audit.k8s.io/v1` or `v1beta1` `Event`). Parsed by [`parse_document`], its
        /// strings (those without escapes) and bodies borrow from the input; [`AuditEvent::into_owned`] makes one that
        /// owns them. It deserialises from borrowed input only (`serde_json::from_slice` or `from_str`), as its
        /// bodies are raw JSON text of the input.
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct AuditEvent<'a> {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Document<'a> {
            #[serde(default)]
            kind: DocumentKind,
            #[serde(default, borrow)]
            items: Option<Vec<AuditEvent<'a>>>,
            $( $(#[$field_meta])* $field: $ty, )*
        }

        impl<'a> Document<'a> {
            fn into_event(self) -> AuditEvent<'a> {
                AuditEvent { $( $field: self.$field, )* }
            }
        }
    };
}

audit_event_types! {
    /// `audit.k8s.io/v1` or `audit.k8s.io/v1beta1`; absent in some recordings.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    api_version: Option<Cow<'a, str>>,
    /// How much was recorded.
    #[serde(default)]
    level: Option<Level>,
    /// Unique per request; the same id appears once per stage.
    #[serde(rename = "auditID", default, borrow, deserialize_with = "text::or_empty")]
    audit_id: Cow<'a, str>,
    /// The stage the event was written at.
    #[serde(default)]
    stage: Option<Stage>,
    /// The request URI.
    #[serde(rename = "requestURI", default, borrow, deserialize_with = "text::optional")]
    request_uri: Option<Cow<'a, str>>,
    /// The Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`...
    #[serde(default, borrow, deserialize_with = "text::or_empty")]
    verb: Cow<'a, str>,
    /// The authenticated user.
    #[serde(default, borrow)]
    user: Option<UserInfo<'a>>,
    /// The user impersonated by `user`, if any.
    #[serde(default, borrow)]
    impersonated_user: Option<UserInfo<'a>>,
    /// Client address first, then the proxies it came through.
    #[serde(rename = "sourceIPs", default, borrow, deserialize_with = "text::list")]
    source_ips: Vec<Cow<'a, str>>,
    /// The client's user agent.
    #[serde(default, borrow, deserialize_with = "text::optional")]
    user_agent: Option<Cow<'a, str>>,
    /// The object the request was about; absent for non-resource URLs.
    #[serde(default, borrow)]
    object_ref: Option<AuditObjectRef<'a>>,
    /// The outcome.
    #[serde(default, borrow)]
    response_status: Option<ResponseStatus<'a>>,
    /// The request body (level Request and above), unparsed.
    #[serde(default, borrow, deserialize_with = "text::raw")]
    request_object: Option<RawBody<'a>>,
    /// The response body (level RequestResponse), unparsed: the object itself, or a `Status`.
    #[serde(default, borrow, deserialize_with = "text::raw_with_fields")]
    response_object: Option<RawBody<'a>>,
    /// When the apiserver received the request.
    #[serde(default, deserialize_with = "text::timestamp")]
    request_received_timestamp: Option<Timestamp>,
    /// When the apiserver reached `stage`.
    #[serde(default, deserialize_with = "text::timestamp")]
    stage_timestamp: Option<Timestamp>,
    /// `v1beta1` only: when the event was written (second precision).
    #[serde(default, deserialize_with = "text::timestamp")]
    timestamp: Option<Timestamp>,
    /// Annotations added by admission and authorization, e.g. `authorization.k8s.io/decision`.
    #[serde(default, borrow, deserialize_with = "text::map")]
    annotations: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

impl AuditEvent<'_> {
    /// The user the request acted as: the impersonated user when there is one, else the authenticated user.
    pub fn acting_user(&self) -> Option<&str> {
        fn named<'e>(user: &'e Option<UserInfo<'_>>) -> Option<&'e str> {
            user.as_ref()
                .map(|u| u.username.as_ref())
                .filter(|name| !name.is_empty())
        }
        named(&self.impersonated_user).or_else(|| named(&self.user))
    }

    /// The HTTP status code of the response, when recorded.
    pub fn response_code(&self) -> Option<i32> {
        self.response_status.as_ref().and_then(|s| s.code)
    }

    /// When the request started: `requestReceivedTimestamp`, else `stageTimestamp`, else (`v1beta1`) `timestamp`.
    pub fn start_time(&self) -> Option<Timestamp> {
        self.request_received_timestamp
            .or(self.stage_timestamp)
            .or(self.timestamp)
    }
}

impl UserInfo<'_> {
    /// The same user, owning its strings.
    pub fn into_owned(self) -> UserInfo<'static> {
        UserInfo {
            username: text::owned(self.username),
            uid: text::owned_optional(self.uid),
            groups: text::owned_list(self.groups),
            extra: self
                .extra
                .into_iter()
                .map(|(key, values)| (text::owned(key), text::owned_list(values)))
                .collect(),
        }
    }
}

impl AuditObjectRef<'_> {
    /// The same reference, owning its strings.
    pub fn into_owned(self) -> AuditObjectRef<'static> {
        AuditObjectRef {
            resource: text::owned_optional(self.resource),
            namespace: text::owned_optional(self.namespace),
            name: text::owned_optional(self.name),
            uid: text::owned_optional(self.uid),
            api_group: text::owned_optional(self.api_group),
            api_version: text::owned_optional(self.api_version),
            resource_version: text::owned_optional(self.resource_version),
            subresource: text::owned_optional(self.subresource),
        }
    }
}

impl ResponseStatus<'_> {
    /// The same status, owning its strings.
    pub fn into_owned(self) -> ResponseStatus<'static> {
        ResponseStatus {
            status: text::owned_optional(self.status),
            message: text::owned_optional(self.message),
            reason: text::owned_optional(self.reason),
            details: self.details.map(StatusDetails::into_owned),
            code: self.code,
        }
    }
}

impl StatusDetails<'_> {
    /// The same details, owning their strings.
    pub fn into_owned(self) -> StatusDetails<'static> {
        StatusDetails {
            name: text::owned_optional(self.name),
            group: text::owned_optional(self.group),
            kind: text::owned_optional(self.kind),
            causes: self
                .causes
                .into_iter()
                .map(|cause| StatusCause {
                    reason: text::owned_optional(cause.reason),
                    message: text::owned_optional(cause.message),
                    field: text::owned_optional(cause.field),
                })
                .collect(),
        }
    }
}

impl AuditEvent<'_> {
    /// The same event, owning its strings and bodies: to keep it beyond the input it was parsed from.
    pub fn into_owned(self) -> AuditEvent<'static> {
        let raw = |raw: Option<RawBody<'_>>| raw.map(RawBody::into_owned);
        AuditEvent {
            api_version: text::owned_optional(self.api_version),
            level: self.level,
            audit_id: text::owned(self.audit_id),
            stage: self.stage,
            request_uri: text::owned_optional(self.request_uri),
            verb: text::owned(self.verb),
            user: self.user.map(UserInfo::into_owned),
            impersonated_user: self.impersonated_user.map(UserInfo::into_owned),
            source_ips: text::owned_list(self.source_ips),
            user_agent: text::owned_optional(self.user_agent),
            object_ref: self.object_ref.map(AuditObjectRef::into_owned),
            response_status: self.response_status.map(ResponseStatus::into_owned),
            request_object: raw(self.request_object),
            response_object: raw(self.response_object),
            request_received_timestamp: self.request_received_timestamp,
            stage_timestamp: self.stage_timestamp,
            timestamp: self.timestamp,
            annotations: self
                .annotations
                .into_iter()
                .map(|(key, value)| (text::owned(key), text::owned(value)))
                .collect(),
        }
    }
}

/// Why an input document is not usable audit data.
#[derive(Debug, thiserror::Error)]
pub enum AuditParseError {
    /// Not JSON, or a field has the wrong type.
    #[error("invalid audit JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The document has no `kind`.
    #[error("the document has no kind (expected an audit Event or EventList)")]
    MissingKind,
    /// The document's `kind` is something else.
    #[error("kind {kind} is not an audit Event or EventList")]
    UnexpectedKind {
        /// The kind as written (strings quoted).
        kind: String,
    },
    /// The document's `apiVersion` is not of the audit group.
    #[error("apiVersion {api_version:?} is not a version of audit.k8s.io")]
    UnexpectedApiVersion {
        /// The apiVersion as written.
        api_version: String,
    },
    /// An event has no `auditID`.
    #[error("{}missing auditID", .item.map(|i| format!("EventList item {i}: ")).unwrap_or_default())]
    MissingAuditId {
        /// The index of the event in its `EventList`, if it came from one.
        item: Option<usize>,
    },
}

/// Parses one input document, an audit `Event` or an `EventList` (any version of `audit.k8s.io`), into its events.
///
/// ```
/// use kelemetry_core::audit::parse_document;
/// let err = parse_document(br#"{"kind": 0}"#).unwrap_err();
/// assert_eq!(err.to_string(), "kind 0 is not an audit Event or EventList");
/// let list = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","verb":"get"}]}"#;
/// assert_eq!(parse_document(list).unwrap()[0].audit_id, "a");
/// ```
pub fn parse_document(input: &[u8]) -> Result<Vec<AuditEvent<'_>>, AuditParseError> {
    // Checked as UTF-8 once, the text is parsed without the per-string and per-raw-body checks that parsing bytes
    // makes (a tenth of the parse). Bytes that are not UTF-8 are parsed as bytes, for serde_json's error.
    // The text is walked once (see `walk`); what the walk does not take, serde_json parses, and its answer stands.
    let document: Document<'_> = match std::str::from_utf8(input) {
        Ok(text) => match walked(text) {
            Some(document) => document,
            None => serde_json::from_str(text)?,
        },
        Err(_) => serde_json::from_slice(input)?,
    };
    if let Some(api_version) = &document.api_version {
        let in_group = api_version
            .split_once('/')
            .is_some_and(|(group, _)| group == AUDIT_GROUP);
        if !in_group {
            return Err(AuditParseError::UnexpectedApiVersion {
                api_version: api_version.clone().into_owned(),
            });
        }
    }
    match document.kind {
        DocumentKind::Event => {
            let event = document.into_event();
            if event.audit_id.is_empty() {
                return Err(AuditParseError::MissingAuditId { item: None });
            }
            Ok(vec![event])
        }
        DocumentKind::EventList => {
            let items = document.items.unwrap_or_default();
            if let Some(item) = items.iter().position(|e| e.audit_id.is_empty()) {
                return Err(AuditParseError::MissingAuditId { item: Some(item) });
            }
            Ok(items)
        }
        DocumentKind::Missing => Err(AuditParseError::MissingKind),
        DocumentKind::Other(kind) => Err(AuditParseError::UnexpectedKind { kind }),
    }
}

/// The document read by the one-pass walk, if it takes it.
fn walked<'a>(text: &'a str) -> Option<Document<'a>> {
    let mut walker = walk::Walker::new(text);
    let mut document = Document::deserialize(&mut walker).ok()?;
    walker.end().ok()?;
    let mut found = walker.into_found_fields().into_iter().peekable();
    if found.peek().is_none() {
        return Some(document);
    }
    // The fields the walk found in each response body, handed to the body (both in the order of the text).
    let mut attach = |slot: &mut Option<RawBody<'a>>| {
        let Some(body) = slot.take() else {
            return;
        };
        let at = body
            .get()
            .as_ptr()
            .addr()
            .wrapping_sub(text.as_ptr().addr());
        while found.next_if(|(start, _)| *start < at).is_some() {}
        *slot = Some(match found.next_if(|(start, _)| *start == at) {
            Some((_, fields)) => body.with_fields(fields),
            None => body,
        });
    };
    match &mut document.items {
        Some(items) => items
            .iter_mut()
            .for_each(|event| attach(&mut event.response_object)),
        None => attach(&mut document.response_object),
    }
    Some(document)
}

/// The `kind` of a document, accepting any JSON value so a wrong one is reported as such.
#[derive(Debug, Default)]
enum DocumentKind {
    #[default]
    Missing,
    Event,
    EventList,
    /// Anything else, rendered as JSON-ish text for the error message.
    Other(String),
}

impl<'de> Deserialize<'de> for DocumentKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;

        impl<'de> Visitor<'de> for KindVisitor {
            type Value = DocumentKind;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DocumentKind, E> {
                Ok(match v {
                    "Event" => DocumentKind::Event,
                    "EventList" => DocumentKind::EventList,
                    other => DocumentKind::Other(format!("{other:?}")),
                })
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<DocumentKind, E> {
                Ok(DocumentKind::Other(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DocumentKind, E> {
                Ok(DocumentKind::Other(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DocumentKind, E> {
                Ok(DocumentKind::Other(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DocumentKind, E> {
                Ok(DocumentKind::Other(v.to_string()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<DocumentKind, E> {
                Ok(DocumentKind::Missing)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DocumentKind, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(DocumentKind::Other("(an array)".to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DocumentKind, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(DocumentKind::Other("(an object)".to_owned()))
            }
        }

        deserializer.deserialize_any(KindVisitor)
    }
}

/// Deserialises `null` as the type's default (Kubernetes writes some empty lists and maps as `null`).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;
