//! Audit envelopes: the wrappings in which managed clusters deliver the apiserver's audit log, recognised per
//! document by their shape and unwrapped into the same [`AuditEvent`]s as a native audit log.
//!
//! Contents:
//! - [`Envelope`]: the envelopes known (`native`, `gke`, `aks`, `eks-cloudwatch`, `eks-subscription`), each with
//!   a stable text ([`Envelope::as_str`]) that reports count by.
//! - [`unwrap_document`]: one document's bytes → [`Enveloped`] entries (an event, a skip or a rejection, each
//!   with the envelope it came in and the cluster the envelope names), or the rejection of the whole document.
//! - [`EnvelopeLimits`]: the bounds on what unwrapping may build (decompressed bytes, entries per document,
//!   nested layers).
//! - [`EnvelopeSkip`]: records an envelope carries that are deliberately not audit events (a CloudWatch control
//!   message, another AKS log category, an audit entry of another Google service).
//!
//! The envelopes, by shape (the first that matches wins; a document that matches none is read as a native
//! `Event`/`EventList`, and gets the native parser's rejection):
//!
//! | envelope | shape | cluster |
//! |---|---|---|
//! | `native` | an `audit.k8s.io` `Event` or `EventList` | none (the source's) |
//! | `gke` | a Cloud Logging `LogEntry` whose `protoPayload` is a `google.cloud.audit.AuditLog` of `serviceName` `k8s.io` (or whose `logName` is a `cloudaudit.googleapis.com` log); also inside a Pub/Sub message (`{"message":{"data":"<base64>"}}`) | `resource.labels.cluster_name` |
//! | `aks` | an Azure diagnostic record of `category` `kube-audit` or `kube-audit-admin`, the audit event in `properties.log` (a JSON string or an object), or `log_s` (Log Analytics' `AzureDiagnostics`); also a batch `{"records":[...]}` as Event Hubs delivers it | the last segment of `resourceId` (`…/managedClusters/<name>`), in lower case |
//! | `eks-cloudwatch` | a CloudWatch Logs event whose `message` (or `@message`) holds the audit event; also `{"events":[...]}` as `aws logs filter-log-events` prints it | `<name>` of a `logGroup` (or `@log`) `/aws/eks/<name>/cluster` |
//! | `eks-subscription` | a CloudWatch Logs subscription-filter record `{"messageType":"DATA_MESSAGE","logGroup":…,"logEvents":[…]}`, gzip-compressed and/or base64-encoded as Kinesis and Firehose deliver it (also `{"awslogs":{"data":…}}`, `{"records":[{"data":…}]}`, `{"Records":[{"kinesis":{"data":…}}]}`); `CONTROL_MESSAGE` records are skipped | `<name>` of the `logGroup` `/aws/eks/<name>/cluster` |
//!
//! Layers are undone in any order up to [`EnvelopeLimits::max_layers`] deep: gzip (detected by its magic bytes,
//! several concatenated members allowed, decompressed to at most [`EnvelopeLimits::decompressed_bytes`]), base64
//! text, and JSON holding one or several documents (JSON lines, or objects back to back as Firehose writes them).
//! A top-level JSON array is read element by element (`gcloud logging read --format=json` prints one).
//!
//! The cluster an envelope names wins over the source's default cluster (the `--cluster` of `kelemetry replay`,
//! the cluster of a webhook path), so one export of several clusters lands as several clusters in one store; an
//! event whose envelope names no cluster is traced in the source's cluster.
//!
//! A record whose envelope is recognised but cannot be read is rejected with a detail naming the envelope and the
//! field, e.g. `gke: protoPayload.methodName missing`.
//!
//! ```
//! use kelemetry_sources::audit_envelope::{Envelope, EnvelopeLimits, EnvelopedContent, unwrap_document};
//!
//! let entry = br#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog",
//!   "serviceName":"k8s.io","methodName":"io.k8s.apps.v1.deployments.status.patch",
//!   "resourceName":"apps/v1/namespaces/default/deployments/web/status",
//!   "authenticationInfo":{"principalEmail":"alice@example.com"},"status":{"code":0}},
//!   "operation":{"id":"3f1c","producer":"k8s.io","first":true,"last":true},
//!   "resource":{"type":"k8s_cluster","labels":{"cluster_name":"prod-eu","location":"europe-west1","project_id":"p"}},
//!   "timestamp":"2024-05-01T12:00:00.25Z"}"#;
//! let entries = unwrap_document(entry, &EnvelopeLimits::default()).unwrap();
//! assert_eq!(entries[0].envelope, Envelope::Gke);
//! assert_eq!(entries[0].cluster.as_deref(), Some("prod-eu"));
//! let EnvelopedContent::Event(event) = &entries[0].content else { panic!("an event") };
//! assert_eq!(event.verb, "patch");
//! assert_eq!(event.object_ref.as_ref().unwrap().subresource.as_deref(), Some("status"));
//!
//! let rejected = unwrap_document(br#"{"protoPayload":{"serviceName":"k8s.io"},"timestamp":"2024-05-01T12:00:00Z",
//!   "insertId":"a"}"#, &EnvelopeLimits::default()).unwrap_err();
//! assert_eq!(rejected.detail, "gke: protoPayload.methodName missing");
//! ```

mod aks;
mod eks;
mod gke;
mod layers;

use std::fmt;
use std::sync::Arc;

use kelemetry_core::audit::{AuditEvent, AuditParseError, parse_document};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::DEFAULT_DOCUMENT_LIMIT;
use crate::audit_intake::{RecordRejection, RejectReason};

/// The wrapping an audit record came in. Reports count records by it ([`Envelope::as_str`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Envelope {
    /// An `audit.k8s.io` `Event` or `EventList`, as the apiserver writes its log and posts to its webhook.
    Native,
    /// A Google Cloud Logging `LogEntry` with an `AuditLog` payload of the Kubernetes API (GKE).
    Gke,
    /// An Azure diagnostic record of category `kube-audit` or `kube-audit-admin` (AKS).
    Aks,
    /// A CloudWatch Logs event whose message is an audit event (EKS).
    EksCloudWatch,
    /// A CloudWatch Logs subscription-filter record, as Kinesis and Firehose deliver it (EKS).
    EksSubscription,
}

impl Envelope {
    /// Every envelope, in declaration order.
    pub const ALL: [Envelope; 5] = [
        Self::Native,
        Self::Gke,
        Self::Aks,
        Self::EksCloudWatch,
        Self::EksSubscription,
    ];

    /// The stable text of the envelope: `native`, `gke`, `aks`, `eks-cloudwatch`, `eks-subscription`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Gke => "gke",
            Self::Aks => "aks",
            Self::EksCloudWatch => "eks-cloudwatch",
            Self::EksSubscription => "eks-subscription",
        }
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record an envelope carries that is deliberately not read as an audit event: counted as skipped, not
/// rejected.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EnvelopeSkip {
    /// A CloudWatch Logs `CONTROL_MESSAGE` (sent to check that the destination is reachable).
    ControlMessage,
    /// A record of the envelope that is not a Kubernetes audit event: another AKS log category
    /// (`kube-apiserver`, `guard`...), a Google audit entry of another service, a CloudWatch event of another
    /// EKS log stream.
    OtherLog,
}

impl EnvelopeSkip {
    /// The stable text, as counted in reports: `control message`, `not an audit log record`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ControlMessage => "control message",
            Self::OtherLog => "not an audit log record",
        }
    }
}

impl fmt::Display for EnvelopeSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bounds on what unwrapping one document may build.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeLimits {
    /// The most bytes gzip data may decompress to (each gzip layer); more is rejected as `document too large`.
    /// Default: [`DEFAULT_DOCUMENT_LIMIT`] (16 MiB), the file sources' document limit.
    pub decompressed_bytes: usize,
    /// The most entries (log events, records, array elements) one document may hold; a document with more is
    /// rejected whole as `document too large`. Default: 10,000 (what one CloudWatch Logs batch holds at most).
    pub entries_per_document: usize,
    /// The most layers (gzip, base64, a wrapper holding encoded data) nested in one another. Default: 4.
    pub max_layers: usize,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        Self {
            decompressed_bytes: DEFAULT_DOCUMENT_LIMIT,
            entries_per_document: 10_000,
            max_layers: 4,
        }
    }
}

impl EnvelopeLimits {
    /// Limits of `decompressed_bytes`, `entries_per_document` and `max_layers`.
    pub fn new(decompressed_bytes: usize, entries_per_document: usize, max_layers: usize) -> Self {
        Self {
            decompressed_bytes,
            entries_per_document,
            max_layers,
        }
    }
}

/// One entry of a document: what it holds, the envelope it came in and the cluster that envelope names.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Enveloped<'a> {
    /// The envelope.
    pub envelope: Envelope,
    /// The cluster the envelope names (GKE's `cluster_name`, AKS's `resourceId`, EKS's log group), if any.
    pub cluster: Option<Arc<str>>,
    /// An event, a skip or a rejection.
    pub content: EnvelopedContent<'a>,
}

/// What an entry of a document holds.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum EnvelopedContent<'a> {
    /// An audit event, native or translated from the envelope: borrowed from the document when the document
    /// itself is a native `Event` or `EventList` (JSON, not an array, not compressed or encoded), else owned.
    Event(Box<AuditEvent<'a>>),
    /// A record deliberately not read.
    Skipped(EnvelopeSkip),
    /// A record that cannot be read (the rest of the document still is).
    Rejected(RecordRejection),
}

impl<'a> Enveloped<'a> {
    fn event(envelope: Envelope, cluster: Option<Arc<str>>, event: AuditEvent<'a>) -> Self {
        Self {
            envelope,
            cluster,
            content: EnvelopedContent::Event(Box::new(event)),
        }
    }

    fn skipped(envelope: Envelope, cluster: Option<Arc<str>>, skip: EnvelopeSkip) -> Self {
        Self {
            envelope,
            cluster,
            content: EnvelopedContent::Skipped(skip),
        }
    }

    fn rejected(envelope: Envelope, rejection: RecordRejection) -> Self {
        Self {
            envelope,
            cluster: None,
            content: EnvelopedContent::Rejected(rejection.in_envelope(envelope)),
        }
    }

    /// The entries of native events.
    pub(crate) fn native(events: Vec<AuditEvent<'a>>) -> impl ExactSizeIterator<Item = Self> {
        events
            .into_iter()
            .map(|event| Self::event(Envelope::Native, None, event))
    }
}

/// Reads one document: a native `Event`/`EventList`, or any envelope of the [module](self) table, possibly
/// compressed and encoded. Returns its entries in order, or the rejection of the whole document when nothing in
/// it can be read (not JSON, no known shape, an envelope missing a field it needs, over a limit).
///
/// The events of a document that is itself a native `Event` or `EventList` borrow their strings and bodies from
/// it; those found anywhere else (a top-level array, an envelope, compressed or encoded data) own theirs.
pub fn unwrap_document<'a>(
    document: &'a [u8],
    limits: &EnvelopeLimits,
) -> Result<Vec<Enveloped<'a>>, RecordRejection> {
    let mut reader = Unwrapper {
        limits,
        out: Vec::new(),
        overflow: None,
    };
    let trimmed = document.trim_ascii();
    // A JSON document: what `bytes` would do with it, with the events of a native one borrowed from it.
    if !layers::is_gzip(document) && looks_like_json(trimmed) {
        match parse_document(trimmed) {
            Ok(events) => reader.native(events)?,
            Err(error) => reader.not_native(trimmed, 0, &error)?,
        }
        return Ok(reader.out);
    }
    reader.bytes(document, 0, None)?;
    Ok(reader.out)
}

/// The state of one [`unwrap_document`].
struct Unwrapper<'l, 'a> {
    limits: &'l EnvelopeLimits,
    out: Vec<Enveloped<'a>>,
    /// The document holds more entries than the limit: it is rejected whole, whatever the level that noticed.
    overflow: Option<RecordRejection>,
}

/// Where encoded data was found, for rejection details: its envelope and field.
#[derive(Copy, Clone, Debug)]
struct Within<'a> {
    envelope: Envelope,
    field: &'a str,
}

impl Within<'_> {
    fn rejection(self, reason: RejectReason, what: impl fmt::Display) -> RecordRejection {
        RecordRejection::new(reason, format!("{}: {what}", self.field)).in_envelope(self.envelope)
    }

    /// A rejection found inside the data, named after the data when it names no envelope itself.
    fn wrap(self, rejection: RecordRejection) -> RecordRejection {
        if rejection.envelope.is_some() {
            rejection
        } else {
            self.rejection(rejection.reason, rejection.detail)
        }
    }
}

/// A rejection of `within` when there is one, else of the document.
fn rejection_in(
    within: Option<Within<'_>>,
    reason: RejectReason,
    what: impl fmt::Display,
) -> RecordRejection {
    match within {
        Some(within) => within.rejection(reason, what),
        None => RecordRejection::new(reason, what.to_string()),
    }
}

impl<'a> Unwrapper<'_, 'a> {
    /// Room for `more` entries, else the rejection of the whole document.
    fn make_room(&mut self, more: usize, what: &str) -> Result<(), RecordRejection> {
        let limit = self.limits.entries_per_document;
        if let Some(overflow) = &self.overflow {
            return Err(overflow.clone());
        }
        if self.out.len().saturating_add(more) > limit {
            let rejection = RecordRejection::new(
                RejectReason::DocumentTooLarge,
                format!(
                    "{what} holds {more} entries, more than the limit of {limit} entries per document{}",
                    if self.out.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} before it)", self.out.len())
                    }
                ),
            );
            self.overflow = Some(rejection.clone());
            return Err(rejection);
        }
        Ok(())
    }

    fn push_all(&mut self, entries: Vec<Enveloped<'a>>) -> Result<(), RecordRejection> {
        self.make_room(entries.len(), "the document")?;
        self.out.extend(entries);
        Ok(())
    }

    /// Bytes of a document, or of data found inside an envelope (`within`): gzip, base64 or JSON.
    fn bytes(
        &mut self,
        bytes: &[u8],
        depth: usize,
        within: Option<Within<'_>>,
    ) -> Result<(), RecordRejection> {
        if depth > self.limits.max_layers {
            let what = format!("more than {} nested layers", self.limits.max_layers);
            return Err(rejection_in(within, RejectReason::InvalidEnvelope, what));
        }
        if layers::is_gzip(bytes) {
            let text = layers::gunzip(bytes, self.limits.decompressed_bytes)
                .map_err(|error| rejection_in(within, error.reason(), &error))?;
            return self.json_stream(&text, depth + 1, within);
        }
        let trimmed = bytes.trim_ascii();
        if looks_like_json(trimmed) {
            return match within {
                None => self.document(trimmed, depth),
                Some(_) => self.json_stream(trimmed, depth, within),
            };
        }
        if let Some(decoded) = layers::base64(trimmed)
            && (layers::is_gzip(&decoded) || looks_like_json(&decoded))
        {
            return self.bytes(&decoded, depth + 1, within);
        }
        match within {
            // Whatever it is, it is not JSON: the native parser says so.
            None => self.document(trimmed, depth),
            Some(within) => Err(within.rejection(
                RejectReason::InvalidEnvelope,
                "neither JSON nor gzip nor base64 of either",
            )),
        }
    }

    /// Decoded data holding one or several JSON documents (JSON lines, objects back to back).
    fn json_stream(
        &mut self,
        text: &[u8],
        depth: usize,
        within: Option<Within<'_>>,
    ) -> Result<(), RecordRejection> {
        let mut values = serde_json::Deserializer::from_slice(text).into_iter::<&RawValue>();
        let mut count = 0usize;
        for value in &mut values {
            let raw = value.map_err(|error| {
                let reason = if error.is_eof() {
                    RejectReason::TruncatedJson
                } else {
                    RejectReason::InvalidJson
                };
                rejection_in(
                    within,
                    reason,
                    format!("document {count} of the decoded data: {error}"),
                )
            })?;
            count += 1;
            self.document(raw.get().as_bytes(), depth)
                .map_err(|rejection| match within {
                    Some(within) => within.wrap(rejection),
                    None => rejection,
                })?;
        }
        if count == 0 {
            return Err(rejection_in(
                within,
                RejectReason::InvalidEnvelope,
                "the decoded data holds no JSON document",
            ));
        }
        Ok(())
    }

    /// One JSON document (other than a top-level one, which `unwrap_document` reads first), or input that is not
    /// JSON (for the native parser's error): native first (the common case, parsed in one pass), then the envelopes
    /// by shape. Its events own their strings, as the data they were found in is not kept.
    fn document(&mut self, text: &[u8], depth: usize) -> Result<(), RecordRejection> {
        match parse_document(text) {
            Ok(events) => self.native(events.into_iter().map(AuditEvent::into_owned).collect()),
            Err(error) => self.not_native(text, depth, &error),
        }
    }

    /// The events of a native document.
    fn native(&mut self, events: Vec<AuditEvent<'a>>) -> Result<(), RecordRejection> {
        self.make_room(events.len(), "the EventList")?;
        self.out.extend(Enveloped::native(events));
        Ok(())
    }

    /// A JSON document that is not a native one (`native_error` says why): the envelopes by shape.
    fn not_native(
        &mut self,
        text: &[u8],
        depth: usize,
        native_error: &AuditParseError,
    ) -> Result<(), RecordRejection> {
        let native_rejection = || native_rejection(native_error, text);
        let Ok(value) = serde_json::from_slice::<Value>(text) else {
            return Err(native_rejection());
        };
        match value {
            Value::Object(object) => {
                if self.object(object, depth)? {
                    Ok(())
                } else {
                    Err(native_rejection())
                }
            }
            Value::Array(items) => self.array(items, depth, native_rejection),
            _ => Err(native_rejection()),
        }
    }

    /// Reads `item` (the `index`th of a batch) as an entry of its own: its entries, or one rejection naming it.
    /// Only a document over the entry limit stops the batch.
    fn item(
        &mut self,
        index: usize,
        read: impl FnOnce(&mut Self) -> Result<(), RecordRejection>,
    ) -> Result<bool, RecordRejection> {
        let before = self.out.len();
        match read(self) {
            Ok(()) => Ok(true),
            Err(rejection) => {
                if let Some(overflow) = &self.overflow {
                    return Err(overflow.clone());
                }
                self.out.truncate(before);
                let envelope = rejection.envelope.unwrap_or(Envelope::Native);
                let entry = Enveloped::rejected(envelope, rejection.in_item(index));
                self.make_room(1, "the document")?;
                self.out.push(entry);
                Ok(false)
            }
        }
    }

    /// A top-level array: each element on its own. When no element is readable, the array is rejected whole
    /// (with the first element's rejection).
    fn array(
        &mut self,
        items: Vec<Value>,
        depth: usize,
        native_rejection: impl FnOnce() -> RecordRejection,
    ) -> Result<(), RecordRejection> {
        self.make_room(items.len(), "the array")?;
        let before = self.out.len();
        let mut read_any = false;
        for (index, item) in items.into_iter().enumerate() {
            let text = item.to_string();
            read_any |= self.item(index, |this| this.document(text.as_bytes(), depth))?;
        }
        if read_any {
            return Ok(());
        }
        let first_rejection = self
            .out
            .drain(before..)
            .find_map(|entry| match entry.content {
                EnvelopedContent::Rejected(rejection) => Some(rejection),
                _ => None,
            });
        Err(first_rejection.unwrap_or_else(native_rejection))
    }

    /// A JSON object: its entries when it has a known shape (`true`), else `false`.
    fn object(
        &mut self,
        object: Map<String, Value>,
        depth: usize,
    ) -> Result<bool, RecordRejection> {
        if gke::is_log_entry(&object) {
            let entry = gke::entry(object)?;
            self.push_all(vec![entry])?;
            return Ok(true);
        }
        if let Some(data) = pubsub_data(&object) {
            let within = Within {
                envelope: Envelope::Gke,
                field: "message.data",
            };
            self.bytes(data.as_bytes(), depth + 1, Some(within))?;
            return Ok(true);
        }
        if let Some(messages) = object.get("receivedMessages").and_then(Value::as_array) {
            self.make_room(messages.len(), "receivedMessages")?;
            for (index, message) in messages.iter().enumerate() {
                let field = format!("receivedMessages[{index}].message.data");
                let within = Within {
                    envelope: Envelope::Gke,
                    field: &field,
                };
                self.item(index, |this| {
                    match message.pointer("/message/data").and_then(Value::as_str) {
                        Some(data) => this.bytes(data.as_bytes(), depth + 1, Some(within)),
                        None => Err(within.rejection(RejectReason::InvalidEnvelope, "missing")),
                    }
                })?;
            }
            return Ok(true);
        }
        if aks::is_record(&object) {
            self.push_all(aks::entries(&object)?)?;
            return Ok(true);
        }
        if eks::is_subscription(&object) {
            let entries = eks::subscription_entries(&object, self.limits.entries_per_document)?;
            self.push_all(entries)?;
            return Ok(true);
        }
        if eks::is_cloudwatch_event(&object) {
            self.push_all(eks::cloudwatch_entries(&object)?)?;
            return Ok(true);
        }
        if let Some(data) = object
            .get("awslogs")
            .and_then(|awslogs| awslogs.get("data"))
            .and_then(Value::as_str)
        {
            let within = Within {
                envelope: Envelope::EksSubscription,
                field: "awslogs.data",
            };
            self.bytes(data.as_bytes(), depth + 1, Some(within))?;
            return Ok(true);
        }
        for (key, pointer) in [("records", "/data"), ("Records", "/kinesis/data")] {
            if let Some(records) = object.get(key).and_then(Value::as_array) {
                self.batch(key, records, pointer, depth)?;
                return Ok(true);
            }
        }
        if let Some(events) = object.get("events").and_then(Value::as_array)
            && events
                .iter()
                .any(|event| event.as_object().is_some_and(eks::is_cloudwatch_event))
        {
            self.make_room(events.len(), "events")?;
            for (index, event) in events.iter().enumerate() {
                self.item(index, |this| {
                    let entries = match event.as_object() {
                        Some(event) => eks::cloudwatch_entries(event)?,
                        None => {
                            return Err(invalid(
                                Envelope::EksCloudWatch,
                                "event",
                                "is not an object",
                            ));
                        }
                    };
                    this.push_all(entries)
                })?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// `records` (Event Hubs' batch of AKS records, or Firehose's records of base64 data) or `Records` (Kinesis
    /// records as a Lambda function receives them): each on its own.
    fn batch(
        &mut self,
        key: &str,
        records: &[Value],
        data_pointer: &str,
        depth: usize,
    ) -> Result<(), RecordRejection> {
        self.make_room(records.len(), key)?;
        for (index, record) in records.iter().enumerate() {
            self.item(index, |this| {
                if let Some(data) = record.pointer(data_pointer).and_then(Value::as_str) {
                    let field = format!("{key}[{index}]{}", data_pointer.replace('/', "."));
                    let within = Within {
                        envelope: Envelope::EksSubscription,
                        field: &field,
                    };
                    return this.bytes(data.as_bytes(), depth + 1, Some(within));
                }
                match record.as_object() {
                    Some(object) if aks::is_record(object) => this.push_all(aks::entries(object)?),
                    Some(object) if eks::is_subscription(object) => {
                        let entries =
                            eks::subscription_entries(object, this.limits.entries_per_document)?;
                        this.push_all(entries)
                    }
                    Some(object) if eks::is_cloudwatch_event(object) => {
                        this.push_all(eks::cloudwatch_entries(object)?)
                    }
                    _ => Err(RecordRejection::new(
                        RejectReason::NotAnAuditEvent,
                        format!("{key}[{index}] is neither an AKS record nor encoded data"),
                    )),
                }
            })?;
        }
        Ok(())
    }
}

/// The rejection of a document read as a native audit document.
fn native_rejection(error: &AuditParseError, text: &[u8]) -> RecordRejection {
    RecordRejection::new(RejectReason::of_parse_error(error, text), error.to_string())
}

/// Whether decoded bytes start like JSON (an object or an array).
fn looks_like_json(bytes: &[u8]) -> bool {
    matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'['))
}

/// The base64 `data` of a Pub/Sub push message (`{"message":{"data":...},"subscription":...}`).
fn pubsub_data(object: &Map<String, Value>) -> Option<&str> {
    object.get("message")?.as_object()?.get("data")?.as_str()
}

/// The native audit events of an envelope's embedded text (AKS `properties.log`, a CloudWatch `message`), or
/// the rejection naming the envelope and field.
fn embedded_events(
    envelope: Envelope,
    field: &str,
    text: &[u8],
) -> Result<Vec<AuditEvent<'static>>, RecordRejection> {
    let events = parse_document(text).map_err(|error| {
        RecordRejection::new(
            RejectReason::of_parse_error(&error, text),
            format!("{field}: {error}"),
        )
        .in_envelope(envelope)
    })?;
    Ok(events.into_iter().map(AuditEvent::into_owned).collect())
}

/// `event`, with `time` as its stage timestamp when it has no timestamp of its own.
fn with_fallback_time(mut event: AuditEvent<'_>, time: Option<jiff::Timestamp>) -> AuditEvent<'_> {
    if event.start_time().is_none() {
        event.stage_timestamp = time;
    }
    event
}

/// Whether a line that is not JSON is encoded data an envelope may arrive in (base64 of gzip or of JSON, as a
/// Kinesis or Firehose record is): the file sources then take the line as a document of its own.
pub(crate) fn is_encoded_line(line: &[u8]) -> bool {
    layers::base64(line.trim_ascii())
        .is_some_and(|decoded| layers::is_gzip(&decoded) || looks_like_json(&decoded))
}

/// A field that must be there: `<envelope>: <field> missing`.
fn missing(envelope: Envelope, field: &str) -> RecordRejection {
    RecordRejection::new(RejectReason::InvalidEnvelope, format!("{field} missing"))
        .in_envelope(envelope)
}

/// A field of the wrong form: `<envelope>: <field> <what>`.
fn invalid(envelope: Envelope, field: &str, what: impl fmt::Display) -> RecordRejection {
    RecordRejection::new(RejectReason::InvalidEnvelope, format!("{field} {what}"))
        .in_envelope(envelope)
}

#[cfg(test)]
mod tests;
