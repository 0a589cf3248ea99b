//! Apiserver audit events: the `audit.k8s.io` types ([`AuditEvent`]), parsing of one input document
//! ([`parse_document`]), and the mapping of an event to an [`Activity`](crate::Activity) ([`AuditMapping`]).
//!
//! Both `audit.k8s.io/v1` and `v1beta1` parse into the same [`AuditEvent`] (`v1beta1` only adds `timestamp`).
//! Unknown fields are ignored, and every field Kubernetes may leave out is optional. The request and response
//! bodies are kept as raw JSON and only parsed when the event is a write that becomes an activity.
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

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

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
pub struct UserInfo {
    /// The user name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    /// The user's uid, when the authenticator gives one.
    #[serde(default)]
    pub uid: Option<String>,
    /// Groups the user belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub groups: Vec<String>,
    /// Further authenticator-provided information.
    #[serde(default, deserialize_with = "null_as_default")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The object a request was about (`objectRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef {
    /// Plural resource, e.g. `deployments`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Namespace; absent for cluster-scoped objects.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name; absent for collections and for creates with `generateName`.
    #[serde(default)]
    pub name: Option<String>,
    /// Object uid as given in the request.
    #[serde(default)]
    pub uid: Option<String>,
    /// API group; absent for the core group.
    #[serde(default)]
    pub api_group: Option<String>,
    /// API version without the group, e.g. `v1`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The resource version the request named (the version it was based on).
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Subresource, e.g. `status`, `scale`, `exec`.
    #[serde(default)]
    pub subresource: Option<String>,
}

/// The outcome of a request (`responseStatus`, a `metav1.Status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseStatus {
    /// `Success` or `Failure`, often absent on success.
    #[serde(default)]
    pub status: Option<String>,
    /// Human-readable description of the failure.
    #[serde(default)]
    pub message: Option<String>,
    /// Machine-readable reason, e.g. `NotFound`, `Conflict`, `Forbidden`.
    #[serde(default)]
    pub reason: Option<String>,
    /// More about the failure.
    #[serde(default)]
    pub details: Option<StatusDetails>,
    /// The HTTP status code.
    #[serde(default)]
    pub code: Option<i32>,
}

/// `responseStatus.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Name of the object concerned.
    #[serde(default)]
    pub name: Option<String>,
    /// Group of the object concerned.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind (or resource) of the object concerned.
    #[serde(default)]
    pub kind: Option<String>,
    /// Individual causes, e.g. one per invalid field.
    #[serde(default, deserialize_with = "null_as_default")]
    pub causes: Vec<StatusCause>,
}

/// One cause of a failure (`responseStatus.details.causes[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCause {
    /// The cause type, e.g. `FieldValueInvalid` (written `reason` in JSON).
    #[serde(default, alias = "type")]
    pub reason: Option<String>,
    /// Human-readable description.
    #[serde(default)]
    pub message: Option<String>,
    /// The field concerned, e.g. `spec.replicas`.
    #[serde(default)]
    pub field: Option<String>,
}

/// Declares [`AuditEvent`] and the private document type that also accepts an `EventList`, from one field list,
/// so a document is parsed in a single pass whatever its kind.
macro_rules! audit_event_types {
    ($( $(#[$field_meta:meta])* $field:ident : $ty:ty, )*) => {
        /// One apiserver audit event (`audit.k8s.io/v1` or `v1beta1` `Event`).
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct AuditEvent {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Document {
            #[serde(default)]
            kind: DocumentKind,
            #[serde(default)]
            items: Option<Vec<AuditEvent>>,
            $( $(#[$field_meta])* $field: $ty, )*
        }

        impl Document {
            fn into_event(self) -> AuditEvent {
                AuditEvent { $( $field: self.$field, )* }
            }
        }
    };
}

audit_event_types! {
    /// `audit.k8s.io/v1` or `audit.k8s.io/v1beta1`; absent in some recordings.
    #[serde(default)]
    api_version: Option<String>,
    /// How much was recorded.
    #[serde(default)]
    level: Option<Level>,
    /// Unique per request; the same id appears once per stage.
    #[serde(rename = "auditID", default, deserialize_with = "null_as_default")]
    audit_id: String,
    /// The stage the event was written at.
    #[serde(default)]
    stage: Option<Stage>,
    /// The request URI.
    #[serde(rename = "requestURI", default)]
    request_uri: Option<String>,
    /// The Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`...
    #[serde(default, deserialize_with = "null_as_default")]
    verb: String,
    /// The authenticated user.
    #[serde(default)]
    user: Option<UserInfo>,
    /// The user impersonated by `user`, if any.
    #[serde(default)]
    impersonated_user: Option<UserInfo>,
    /// Client address first, then the proxies it came through.
    #[serde(rename = "sourceIPs", default, deserialize_with = "null_as_default")]
    source_ips: Vec<String>,
    /// The client's user agent.
    #[serde(default)]
    user_agent: Option<String>,
    /// The object the request was about; absent for non-resource URLs.
    #[serde(default)]
    object_ref: Option<AuditObjectRef>,
    /// The outcome.
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    /// The request body (level Request and above), unparsed.
    #[serde(default)]
    request_object: Option<Box<RawValue>>,
    /// The response body (level RequestResponse), unparsed: the object itself, or a `Status`.
    #[serde(default)]
    response_object: Option<Box<RawValue>>,
    /// When the apiserver received the request.
    #[serde(default)]
    request_received_timestamp: Option<Timestamp>,
    /// When the apiserver reached `stage`.
    #[serde(default)]
    stage_timestamp: Option<Timestamp>,
    /// `v1beta1` only: when the event was written (second precision).
    #[serde(default)]
    timestamp: Option<Timestamp>,
    /// Annotations added by admission and authorization, e.g. `authorization.k8s.io/decision`.
    #[serde(default, deserialize_with = "null_as_default")]
    annotations: BTreeMap<String, String>,
}

impl AuditEvent {
    /// The user the request acted as: the impersonated user when there is one, else the authenticated user.
    pub fn acting_user(&self) -> Option<&str> {
        fn named(user: &Option<UserInfo>) -> Option<&str> {
            user.as_ref()
                .map(|u| u.username.as_str())
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
pub fn parse_document(input: &[u8]) -> Result<Vec<AuditEvent>, AuditParseError> {
    // Checked as UTF-8 once, the text is parsed without the per-string and per-raw-body checks that parsing bytes
    // makes (a tenth of the parse). Bytes that are not UTF-8 are parsed as bytes, for serde_json's error.
    let document: Document = match std::str::from_utf8(input) {
        Ok(text) => serde_json::from_str(text)?,
        Err(_) => serde_json::from_slice(input)?,
    };
    if let Some(api_version) = &document.api_version {
        let in_group = api_version
            .split_once('/')
            .is_some_and(|(group, _)| group == AUDIT_GROUP);
        if !in_group {
            return Err(AuditParseError::UnexpectedApiVersion {
                api_version: api_version.clone(),
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
