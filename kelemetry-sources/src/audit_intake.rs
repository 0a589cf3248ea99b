//! Audit intake, written once: the bytes of one audit document (a JSON line, an `EventList`, a webhook body, a
//! managed cluster's envelope) → its audit events → an activity, a skip or a rejection each, with one set of
//! rejection reasons.
//!
//! Every document goes through [`unwrap_document`] first, so a native
//! audit event and the envelopes of GKE, AKS and EKS are taken alike; an event is mapped for the cluster its
//! envelope names, else for the cluster the source was given ([`AuditIntake::take`]).
//!
//! [`AuditFileSource`](crate::AuditFileSource), [`AuditLogFollower`](crate::AuditLogFollower) and the audit
//! webhook all take audit input through [`AuditIntake`], so the same bad input gets the same [`RejectReason`]
//! from each. A custom audit source (reading from a queue, say) can use it too:
//!
//! ```
//! use kelemetry_sources::audit_intake::{AuditIntake, AuditItem, RejectReason};
//!
//! let intake = AuditIntake::default();
//! let rejected = intake.take(b"{\"kind\":\"PodList\",\"apiVersion\":\"v1\"}", "prod").unwrap_err();
//! assert_eq!(rejected.reason, RejectReason::NotAnAuditEvent);
//! assert_eq!(rejected.reason.as_str(), "not an audit event");
//!
//! let line = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseComplete",
//!     "verb":"get","user":{"username":"alice"},"objectRef":{"resource":"pods","namespace":"default","name":"p"},
//!     "requestReceivedTimestamp":"2024-05-01T12:00:00Z"}"#;
//! let items: Vec<AuditItem> = intake.take(line, "prod").unwrap().collect();
//! assert!(matches!(&items[..], [AuditItem::Skipped(reason)] if reason.as_str() == "unsupported verb"));
//! ```

use std::fmt;

use kelemetry_core::audit::{
    AuditEvent, AuditMapping, AuditMappingError, AuditOutcome, AuditParseError, SkipReason,
};
use kelemetry_core::{Activity, Rejection};
use serde_json::error::Category;

use crate::audit_envelope::{
    Envelope, EnvelopeLimits, EnvelopeSkip, Enveloped, EnvelopedContent, unwrap_document,
};

/// Why a source could not use a record: a short class with a stable text ([`RejectReason::as_str`]), counted by
/// [`ReadCounters`](crate::ReadCounters) and carried by the [`Rejection`]s the sources report.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not JSON: a syntax error, or text outside any JSON document.
    InvalidJson,
    /// A JSON document that ends before it is complete (a cut line, a file that ends inside a document).
    TruncatedJson,
    /// A document (or line) larger than the source's limit.
    DocumentTooLarge,
    /// Well-formed JSON that is not an audit `Event` or `EventList`: another kind, an apiVersion outside
    /// `audit.k8s.io`, no kind, or not an object at all.
    NotAnAuditEvent,
    /// An audit event that cannot be traced: no `auditID`, no verb, a missing or unknown stage, a field of the
    /// wrong type...
    InvalidAuditEvent,
    /// A managed cluster's envelope (GKE, AKS, EKS) missing a field it needs, or with one of the wrong form;
    /// the detail names the envelope and the field (`gke: protoPayload.methodName missing`).
    InvalidEnvelope,
    /// A YAML document that does not parse.
    InvalidYaml,
    /// A message that is no record of Kelemetry's wire format (`kelemetry_core::wire`), or one of another version.
    InvalidRecord,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 8] = [
        Self::InvalidJson,
        Self::TruncatedJson,
        Self::DocumentTooLarge,
        Self::NotAnAuditEvent,
        Self::InvalidAuditEvent,
        Self::InvalidEnvelope,
        Self::InvalidYaml,
        Self::InvalidRecord,
    ];

    /// The stable text of the reason, as counted in reports and carried in [`Rejection::reason`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid JSON",
            Self::TruncatedJson => "truncated JSON",
            Self::DocumentTooLarge => "document too large",
            Self::NotAnAuditEvent => "not an audit event",
            Self::InvalidAuditEvent => "invalid audit event",
            Self::InvalidEnvelope => "invalid envelope",
            Self::InvalidYaml => "invalid YAML",
            Self::InvalidRecord => "invalid record",
        }
    }

    /// The reason of a document that did not parse as audit events.
    pub fn of_parse_error(error: &AuditParseError, document: &[u8]) -> Self {
        match error {
            AuditParseError::Json(json) => match json.classify() {
                Category::Eof => Self::TruncatedJson,
                // serde reports some values of the wrong type (a number for an enum) as syntax errors: only text
                // that is not JSON at all is invalid JSON.
                Category::Syntax | Category::Io
                    if serde_json::from_slice::<serde::de::IgnoredAny>(document).is_err() =>
                {
                    Self::InvalidJson
                }
                // Valid JSON of the wrong shape: an array or a scalar is not an audit event at all; an object is
                // one whose fields are wrong.
                _ if document.trim_ascii_start().first() != Some(&b'{') => Self::NotAnAuditEvent,
                _ => Self::InvalidAuditEvent,
            },
            AuditParseError::MissingAuditId { .. } => Self::InvalidAuditEvent,
            // MissingKind, UnexpectedKind, UnexpectedApiVersion.
            _ => Self::NotAnAuditEvent,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record a source could not use: the [`RejectReason`] and what exactly was wrong. The source turns it into a
/// [`Rejection`] with the record's origin ([`RecordRejection::into_rejection`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordRejection {
    /// The class of the problem.
    pub reason: RejectReason,
    /// The details, e.g. the parser's message; for a record of a managed cluster's envelope, starting with the
    /// envelope (`gke: ...`).
    pub detail: String,
    /// The envelope the record came in, when it was recognised.
    pub envelope: Option<Envelope>,
}

impl RecordRejection {
    /// A rejection for `reason`, with `detail`.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            envelope: None,
        }
    }

    /// The rejection of a record of `envelope`: the detail starts with the envelope's name (`gke: `), except for
    /// native records. A rejection that already names its envelope is kept as it is.
    pub fn in_envelope(mut self, envelope: Envelope) -> Self {
        if self.envelope.is_none() {
            self.envelope = Some(envelope);
            if envelope != Envelope::Native {
                self.detail = format!("{envelope}: {}", self.detail);
            }
        }
        self
    }

    /// The rejection of the `index`th item of a batch: the detail starts with `item <index>: `.
    pub fn in_item(mut self, index: usize) -> Self {
        self.detail = format!("item {index}: {}", self.detail);
        self
    }

    /// A document of `size` bytes over the limit of `limit` bytes.
    pub fn too_large(size: u64, limit: usize) -> Self {
        Self::new(
            RejectReason::DocumentTooLarge,
            format!("document of {size} bytes exceeds the limit of {limit} bytes"),
        )
    }

    /// The [`Rejection`] a source reports, naming where the record was (`file:line`, `webhook PEER item N`).
    pub fn into_rejection(self, origin: impl Into<String>) -> Rejection {
        Rejection {
            origin: origin.into(),
            reason: self.reason.as_str().to_owned(),
            detail: self.detail,
        }
    }
}

impl fmt::Display for RecordRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// Why a record was deliberately not traced: the audit mapping's [`SkipReason`] for an event, or the
/// envelope's [`EnvelopeSkip`] for a record that is no audit event.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SkipCause {
    /// A well-formed audit event that is not traced (a read, an intermediate stage...).
    Event(SkipReason),
    /// A record of an envelope that is no audit event (a control message, another log).
    Envelope(EnvelopeSkip),
}

impl SkipCause {
    /// The stable text, as counted in reports (the reason's own text).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event(reason) => reason.as_str(),
            Self::Envelope(skip) => skip.as_str(),
        }
    }
}

impl fmt::Display for SkipCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<SkipReason> for SkipCause {
    fn from(reason: SkipReason) -> Self {
        Self::Event(reason)
    }
}

/// What became of one record of a document.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AuditItem {
    /// A write on an object: its activity.
    Activity(Box<Activity>),
    /// Well formed but not traced (a read, an intermediate stage, a CloudWatch control message...).
    Skipped(SkipCause),
    /// Malformed.
    Rejected(RecordRejection),
}

/// Takes audit documents in: unwraps their envelope, parses them and maps their events with one
/// [`AuditMapping`]. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct AuditIntake {
    mapping: AuditMapping,
    limits: EnvelopeLimits,
}

impl AuditIntake {
    /// An intake mapping events with `mapping`, with the default [`EnvelopeLimits`].
    pub fn new(mapping: AuditMapping) -> Self {
        Self {
            mapping,
            limits: EnvelopeLimits::default(),
        }
    }

    /// Unwraps envelopes within `limits`.
    pub fn with_envelope_limits(mut self, limits: EnvelopeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads `document`: an audit `Event` or `EventList` (any version of `audit.k8s.io`), or a managed cluster's
    /// envelope ([`audit_envelope`](crate::audit_envelope)). Returns its records, each event mapped one at a time
    /// as the items are taken, for the cluster its envelope names, else for `cluster`; or why the whole
    /// document is rejected.
    pub fn take<'a>(
        &'a self,
        document: &'a [u8],
        cluster: &'a str,
    ) -> Result<AuditItems<'a>, RecordRejection> {
        let entries = unwrap_document(document, &self.limits)?;
        Ok(AuditItems {
            entries: Entries::Unwrapped(entries.into_iter()),
            mapping: &self.mapping,
            cluster,
        })
    }

    /// Native events already parsed, mapped for `cluster` one at a time as the items are taken.
    pub fn items<'a>(&'a self, events: Vec<AuditEvent<'a>>, cluster: &'a str) -> AuditItems<'a> {
        AuditItems {
            entries: Entries::Native(events.into_iter()),
            mapping: &self.mapping,
            cluster,
        }
    }
}

/// The records of one audit document, each event mapped to an [`AuditItem`] when it is taken, in the
/// document's order. [`AuditItems::next_enveloped`] also says which envelope each came in.
#[derive(Debug)]
pub struct AuditItems<'a> {
    entries: Entries<'a>,
    mapping: &'a AuditMapping,
    cluster: &'a str,
}

/// The entries of a document: native events as they were parsed (no envelope to record for each), or what
/// unwrapping the document found.
#[derive(Debug)]
enum Entries<'a> {
    Native(std::vec::IntoIter<AuditEvent<'a>>),
    Unwrapped(std::vec::IntoIter<Enveloped<'a>>),
}

impl AuditItems<'_> {
    /// The next item and the envelope it came in.
    pub fn next_enveloped(&mut self) -> Option<(Envelope, AuditItem)> {
        let (mapping, cluster) = (self.mapping, self.cluster);
        let entry = match &mut self.entries {
            Entries::Native(events) => {
                let event = events.next()?;
                return Some((
                    Envelope::Native,
                    mapped(mapping, Envelope::Native, event, cluster),
                ));
            }
            Entries::Unwrapped(entries) => entries.next()?,
        };
        let envelope = entry.envelope;
        let item = match entry.content {
            EnvelopedContent::Event(event) => {
                let cluster = entry.cluster.as_deref().unwrap_or(cluster);
                mapped(mapping, envelope, *event, cluster)
            }
            EnvelopedContent::Skipped(skip) => AuditItem::Skipped(SkipCause::Envelope(skip)),
            EnvelopedContent::Rejected(rejection) => AuditItem::Rejected(rejection),
        };
        Some((envelope, item))
    }
}

/// The item of an event of `cluster` that came in `envelope`.
fn mapped(
    mapping: &AuditMapping,
    envelope: Envelope,
    event: AuditEvent<'_>,
    cluster: &str,
) -> AuditItem {
    match mapping.map(event, cluster) {
        Ok(AuditOutcome::Activity(activity)) => AuditItem::Activity(activity),
        Ok(AuditOutcome::Skipped(reason)) => AuditItem::Skipped(reason.into()),
        Err(error) => AuditItem::Rejected(mapping_rejection(envelope, &error)),
    }
}

/// The rejection of an event the mapping refused. For GKE, whose events are translated, the missing field is
/// named as the LogEntry writes it.
fn mapping_rejection(envelope: Envelope, error: &AuditMappingError) -> RecordRejection {
    let detail = match (envelope, error) {
        (Envelope::Gke, AuditMappingError::MissingUser { audit_id }) => {
            format!(
                "protoPayload.authenticationInfo.principalEmail missing (audit event {audit_id})"
            )
        }
        (Envelope::Gke, AuditMappingError::MissingResource { audit_id }) => {
            format!("protoPayload.resourceName names no resource (audit event {audit_id})")
        }
        _ => error.to_string(),
    };
    RecordRejection::new(RejectReason::InvalidAuditEvent, detail).in_envelope(envelope)
}

impl Iterator for AuditItems<'_> {
    type Item = AuditItem;

    fn next(&mut self) -> Option<AuditItem> {
        self.next_enveloped().map(|(_, item)| item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.entries {
            Entries::Native(events) => events.size_hint(),
            Entries::Unwrapped(entries) => entries.size_hint(),
        }
    }
}

impl ExactSizeIterator for AuditItems<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(document: &str) -> RejectReason {
        match AuditIntake::default().take(document.as_bytes(), "c") {
            Ok(mut items) => match items.next() {
                Some(AuditItem::Rejected(rejection)) => rejection.reason,
                other => panic!("{document}: not rejected: {other:?}"),
            },
            Err(rejection) => rejection.reason,
        }
    }

    #[test]
    fn bad_documents_have_one_reason_each() {
        let event = r#""kind":"Event","apiVersion":"audit.k8s.io/v1""#;
        for (document, expected) in [
            ("this is not JSON", RejectReason::InvalidJson),
            ("{not json", RejectReason::InvalidJson),
            (r#"{"kind":"Event","auditID":"#, RejectReason::TruncatedJson),
            (
                r#"{"kind":"PodList","apiVersion":"v1"}"#,
                RejectReason::NotAnAuditEvent,
            ),
            (
                r#"{"apiVersion":"audit.k8s.io/v1"}"#,
                RejectReason::NotAnAuditEvent,
            ),
            (
                r#"{"kind":"Event","apiVersion":"v1"}"#,
                RejectReason::NotAnAuditEvent,
            ),
            ("[1, 2]", RejectReason::NotAnAuditEvent),
            (
                &format!(r#"{{{event},"verb":"create"}}"#),
                RejectReason::InvalidAuditEvent,
            ),
            (
                &format!(r#"{{{event},"auditID":"a","stage":5}}"#),
                RejectReason::InvalidAuditEvent,
            ),
            (
                &format!(r#"{{{event},"auditID":"a","verb":"create","stage":"Bogus"}}"#),
                RejectReason::InvalidAuditEvent,
            ),
            (
                &format!(r#"{{{event},"auditID":"a","stage":"ResponseComplete"}}"#),
                RejectReason::InvalidAuditEvent,
            ),
        ] {
            assert_eq!(reason(document), expected, "{document}");
        }
    }

    #[test]
    fn reasons_have_distinct_texts() {
        let texts: std::collections::BTreeSet<_> =
            RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(texts.len(), RejectReason::ALL.len());
    }

    #[test]
    fn a_rejection_names_its_origin() {
        let rejection = RecordRejection::too_large(10, 4).into_rejection("audit.log:3");
        assert_eq!(
            rejection.to_string(),
            "audit.log:3: document too large: document of 10 bytes exceeds the limit of 4 bytes"
        );
    }
}
