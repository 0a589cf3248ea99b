//! [`SpanRecord`]s as OpenTelemetry Protocol messages and back (feature `otlp`): the one home of the conversion
//! used by the OTLP and OTLP/JSON exporters, the Jaeger reader and Jaeger's remote storage service.
//!
//! # The wire form
//!
//! - Spans are grouped into one `ResourceSpans` per service name ([`SpanRecord::service_name`]: `object`,
//!   `link`, `audit`, `event`, ...), in the order the services first appear in the batch. The resource carries
//!   [`SERVICE_NAME`] and then any extra resource attributes; it has one `ScopeSpans` whose scope is
//!   [`SCOPE_NAME`] at this crate's version.
//! - Trace and span ids are the 16 and 8 big-endian bytes of [`TraceId`] and [`SpanId`]; an object span has no
//!   parent (empty bytes). Times are nanoseconds since the Unix epoch, exactly as computed (a time before the
//!   epoch, which OTLP cannot carry, is written as 0).
//! - Every span is `SPAN_KIND_INTERNAL` with an unset status. Its attributes are string attributes, in order; the
//!   keys and their meaning are the schema in [`crate::vocabulary`]. Its logs become span events whose name is
//!   the log's message.
//!
//! An exporter that holds spans before it sends them encodes each once ([`encode_span`]) and puts requests together
//! from those bytes ([`encode_export_request`]): the same bytes as encoding [`export_request`]'s message.
//!
//! Reading back ([`span_records`]) inverts this: the service name gives the [`SpanKind`] (`object`, `link`, any
//! other name is an activity of that source) and non-string attribute values are written as text. Spans written
//! by [`export_request`] come back equal, ids and nanoseconds included.
//!
//! With the `with-serde` feature of `opentelemetry-proto` (on with this feature) the messages serialise to the
//! OTLP/JSON encoding: camelCase field names, ids as lowercase hex, 64-bit times as decimal strings.
//!
//! ```
//! use kelemetry_core::{ObjectKey, ObjectRef, Windowing, otlp};
//!
//! let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
//! let window = Windowing::default().window_of("2024-05-01T12:34:56.123456789Z".parse().unwrap());
//! let span = kelemetry_core::span::object_span(&ObjectRef::new(key, "v1", None), window);
//! let request = otlp::export_request(std::slice::from_ref(&span), &[]);
//! assert_eq!(otlp::span_records(&request.resource_spans).unwrap(), vec![span]);
//! ```

use std::borrow::Cow;

use jiff::Timestamp;
pub use opentelemetry_proto;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::activity::Attributes;
use crate::ids::{SpanId, TraceId};
use crate::span::{SpanKind, SpanLog, SpanRecord};

/// The instrumentation scope name of every span Kelemetry writes.
pub const SCOPE_NAME: &str = "kelemetry";

/// The resource attribute that carries the service name.
pub const SERVICE_NAME: &str = "service.name";

/// One OTLP string attribute.
pub fn string_attribute(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn attributes(attributes: &Attributes) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|(key, value)| string_attribute(key.as_ref(), value.as_str()))
        .collect()
}

/// Nanoseconds since the Unix epoch; OTLP has no earlier times, so those become 0.
pub fn unix_nanos(t: Timestamp) -> u64 {
    u64::try_from(t.as_nanosecond()).unwrap_or(0)
}

fn event(log: &SpanLog) -> span::Event {
    span::Event {
        time_unix_nano: unix_nanos(log.time),
        name: log.message.clone(),
        attributes: attributes(&log.attributes),
        dropped_attributes_count: 0,
    }
}

/// One span as an OTLP span.
pub fn otlp_span(record: &SpanRecord) -> Span {
    Span {
        trace_id: record.trace_id.to_bytes().to_vec(),
        span_id: record.span_id.to_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: record
            .parent_span_id
            .map(|id| id.to_bytes().to_vec())
            .unwrap_or_default(),
        flags: 0,
        name: record.name.clone(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: unix_nanos(record.start),
        end_time_unix_nano: unix_nanos(record.end),
        attributes: attributes(&record.attributes),
        dropped_attributes_count: 0,
        events: record.logs.iter().map(event).collect(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(Status::default()),
    }
}

/// The spans of one service as a `ResourceSpans`: the resource carries [`SERVICE_NAME`] then
/// `extra_resource_attributes`, and one scope, [`SCOPE_NAME`], holds `spans`.
pub fn resource_spans(
    service: &str,
    extra_resource_attributes: &[(String, String)],
    spans: Vec<Span>,
) -> ResourceSpans {
    let mut resource_attributes = Vec::with_capacity(1 + extra_resource_attributes.len());
    resource_attributes.push(string_attribute(SERVICE_NAME, service));
    resource_attributes.extend(
        extra_resource_attributes
            .iter()
            .map(|(key, value)| string_attribute(key.as_str(), value.as_str())),
    );
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource_attributes,
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                attributes: Vec::new(),
                dropped_attributes_count: 0,
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// A batch as one export request: one `ResourceSpans` per service name, in order of first appearance, each
/// resource carrying `service.name` and then `extra_resource_attributes`.
pub fn export_request(
    spans: &[SpanRecord],
    extra_resource_attributes: &[(String, String)],
) -> ExportTraceServiceRequest {
    export_request_of(
        spans
            .iter()
            .map(|record| (record.service_name(), otlp_span(record))),
        extra_resource_attributes,
    )
}

/// [`export_request`] of spans already converted ([`otlp_span`]), each with its service name: what an exporter
/// that converts spans as they arrive sends later.
pub fn export_request_of<S: AsRef<str>>(
    spans: impl IntoIterator<Item = (S, Span)>,
    extra_resource_attributes: &[(String, String)],
) -> ExportTraceServiceRequest {
    let resource_spans = by_service(spans)
        .into_iter()
        .map(|(service, spans)| resource_spans(service.as_ref(), extra_resource_attributes, spans))
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// The items of each service name together, the names in the order they first appear.
fn by_service<S: AsRef<str>, T>(items: impl IntoIterator<Item = (S, T)>) -> Vec<(S, Vec<T>)> {
    let mut groups: Vec<(S, Vec<T>)> = Vec::new();
    for (service, item) in items {
        match groups
            .iter_mut()
            .find(|(name, _)| name.as_ref() == service.as_ref())
        {
            Some((_, group)) => group.push(item),
            None => groups.push((service, vec![item])),
        }
    }
    groups
}

/// One span in the protobuf encoding, as [`encode_export_request`] takes it: the bytes of [`otlp_span`]'s message
/// encoded, written straight from the record (without making the message's strings first).
pub fn encode_span(record: &SpanRecord) -> Vec<u8> {
    // Span fields (opentelemetry/proto/trace/v1/trace.proto), in the order the message writes them.
    const TRACE_ID: u32 = 1;
    const SPAN_ID: u32 = 2;
    const PARENT_SPAN_ID: u32 = 4;
    const NAME: u32 = 5;
    const KIND: u32 = 6;
    const START: u32 = 7;
    const END: u32 = 8;
    const ATTRIBUTES: u32 = 9;
    const EVENTS: u32 = 11;
    const STATUS: u32 = 15;
    // Event fields.
    const EVENT_TIME: u32 = 1;
    const EVENT_NAME: u32 = 2;
    const EVENT_ATTRIBUTES: u32 = 3;

    // Room for it all, measured roughly (a string attribute's keys and lengths take at most 16 bytes below 2 MB):
    // the exact lengths are only needed where a field's length is written.
    let room = |attributes: &Attributes| -> usize {
        attributes
            .iter()
            .map(|(key, value)| key.len() + value.len() + 16)
            .sum()
    };
    let mut out = Vec::with_capacity(
        64 + record.name.len()
            + room(&record.attributes)
            + record
                .logs
                .iter()
                .map(|log| 24 + log.message.len() + room(&log.attributes))
                .sum::<usize>(),
    );
    wire::bytes(TRACE_ID, &record.trace_id.to_bytes(), &mut out);
    wire::bytes(SPAN_ID, &record.span_id.to_bytes(), &mut out);
    if let Some(parent) = record.parent_span_id {
        wire::bytes(PARENT_SPAN_ID, &parent.to_bytes(), &mut out);
    }
    wire::bytes(NAME, record.name.as_bytes(), &mut out);
    wire::varint(KIND, span::SpanKind::Internal as u64, &mut out);
    wire::fixed64(START, unix_nanos(record.start), &mut out);
    wire::fixed64(END, unix_nanos(record.end), &mut out);
    for (key, value) in &record.attributes {
        wire::key_value(ATTRIBUTES, key, value, &mut out);
    }
    for log in &record.logs {
        let time = unix_nanos(log.time);
        let len = wire::fixed64_len(EVENT_TIME, time)
            + wire::bytes_len(EVENT_NAME, log.message.as_bytes())
            + log
                .attributes
                .iter()
                .map(|(key, value)| {
                    wire::delimited_len(EVENT_ATTRIBUTES, wire::key_value_len(key, value))
                })
                .sum::<usize>();
        wire::delimited_head(EVENTS, len, &mut out);
        wire::fixed64(EVENT_TIME, time, &mut out);
        wire::bytes(EVENT_NAME, log.message.as_bytes(), &mut out);
        for (key, value) in &log.attributes {
            wire::key_value(EVENT_ATTRIBUTES, key, value, &mut out);
        }
    }
    // The status is present and empty (unset).
    wire::delimited_head(STATUS, 0, &mut out);
    out
}

/// The protobuf wire form of the fields Kelemetry's spans use. As proto3 does, a scalar field at its default
/// (an empty string, a zero) is left out; a message field that is present is written even when empty.
mod wire {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

    /// The bytes a length-delimited field of `len` bytes takes: its key, its length and its content.
    pub(super) fn delimited_len(tag: u32, len: usize) -> usize {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    /// The key and the length of a length-delimited field, whose `len` bytes of content follow.
    pub(super) fn delimited_head(tag: u32, len: usize, out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
    }

    /// A string or bytes field.
    pub(super) fn bytes(tag: u32, data: &[u8], out: &mut Vec<u8>) {
        if !data.is_empty() {
            delimited_head(tag, data.len(), out);
            out.extend_from_slice(data);
        }
    }

    pub(super) fn bytes_len(tag: u32, data: &[u8]) -> usize {
        if data.is_empty() {
            0
        } else {
            delimited_len(tag, data.len())
        }
    }

    pub(super) fn fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
        if value != 0 {
            encode_key(tag, WireType::SixtyFourBit, out);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }

    pub(super) fn fixed64_len(tag: u32, value: u64) -> usize {
        if value == 0 { 0 } else { key_len(tag) + 8 }
    }

    pub(super) fn varint(tag: u32, value: u64, out: &mut Vec<u8>) {
        if value != 0 {
            encode_key(tag, WireType::Varint, out);
            encode_varint(value, out);
        }
    }

    // A string attribute: `KeyValue { key: 1, value: 2 }` whose `AnyValue` holds `string_value: 1`, a member of a
    // oneof, written even when empty.
    const KEY: u32 = 1;
    const VALUE: u32 = 2;
    const STRING_VALUE: u32 = 1;

    /// The content length of a string attribute's `KeyValue`.
    pub(super) fn key_value_len(key: &str, value: &str) -> usize {
        bytes_len(KEY, key.as_bytes())
            + delimited_len(VALUE, delimited_len(STRING_VALUE, value.len()))
    }

    /// A string attribute as the field `tag` (a `KeyValue`).
    pub(super) fn key_value(tag: u32, key: &str, value: &str, out: &mut Vec<u8>) {
        delimited_head(tag, key_value_len(key, value), out);
        bytes(KEY, key.as_bytes(), out);
        delimited_head(VALUE, delimited_len(STRING_VALUE, value.len()), out);
        delimited_head(STRING_VALUE, value.len(), out);
        out.extend_from_slice(value.as_bytes());
    }
}

/// The protobuf encoding of the [`export_request_of`] the same spans, byte for byte, made from the spans encoded
/// one by one ([`encode_span`]), each with its service name: what an exporter that encodes spans as they arrive
/// sends later. Each span's bytes are copied once, and nothing is measured or encoded again. (Encoding the
/// request's message tree whole measures each span once for every message around it.)
pub fn encode_export_request<S: AsRef<str>, B: AsRef<[u8]>>(
    spans: impl IntoIterator<Item = (S, B)>,
    extra_resource_attributes: &[(String, String)],
) -> Vec<u8> {
    use prost::Message;
    use wire::{delimited_head as field_head, delimited_len as field_len};

    // Field numbers: ExportTraceServiceRequest.resource_spans, ResourceSpans.resource and .scope_spans,
    // ScopeSpans.scope and .spans.
    const RESOURCE_SPANS: u32 = 1;
    const RESOURCE: u32 = 1;
    const SCOPE_SPANS: u32 = 2;
    const SPANS: u32 = 2;

    let groups = by_service(spans);
    let span_bytes: usize = groups
        .iter()
        .flat_map(|(_, spans)| spans)
        .map(|span| field_len(SPANS, span.as_ref().len()))
        .sum();
    let mut out = Vec::with_capacity(span_bytes + groups.len() * 128);
    for (service, spans) in groups {
        // The group's message without its spans (which come last in field order, after the scope), then its spans.
        // `resource_spans` makes one `ScopeSpans`; the test compares the bytes with the whole message's.
        let head = resource_spans(service.as_ref(), extra_resource_attributes, Vec::new());
        let resource_len = head
            .resource
            .as_ref()
            .map_or(0, |r| field_len(RESOURCE, r.encoded_len()));
        let scope_spans_len = head
            .scope_spans
            .iter()
            .map(Message::encoded_len)
            .sum::<usize>()
            + spans
                .iter()
                .map(|span| field_len(SPANS, span.as_ref().len()))
                .sum::<usize>();
        field_head(
            RESOURCE_SPANS,
            resource_len + field_len(SCOPE_SPANS, scope_spans_len),
            &mut out,
        );
        if let Some(resource) = &head.resource {
            prost::encoding::message::encode(RESOURCE, resource, &mut out);
        }
        field_head(SCOPE_SPANS, scope_spans_len, &mut out);
        for scope_spans in &head.scope_spans {
            scope_spans.encode_raw(&mut out);
        }
        for span in spans {
            let span = span.as_ref();
            field_head(SPANS, span.len(), &mut out);
            out.extend_from_slice(span);
        }
    }
    out
}

/// An OTLP span that cannot be a [`SpanRecord`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpDecodeError {
    /// An id has the wrong number of bytes.
    #[error("the {what} has {found} bytes, not {expected}")]
    IdLength {
        /// Which id (`trace id`, `span id`, `parent span id`).
        what: &'static str,
        /// Its length.
        found: usize,
        /// The length it must have.
        expected: usize,
    },
    /// An id is all zeros, which OpenTelemetry forbids.
    #[error("the {what} is zero")]
    ZeroId {
        /// Which id.
        what: &'static str,
    },
    /// A time is out of the range of [`Timestamp`].
    #[error("the {what} {nanos} ns is out of range")]
    Time {
        /// Which time (`start time`, `end time`, `event time`).
        what: &'static str,
        /// The value.
        nanos: u64,
    },
    /// A line of OTLP/JSON that is not an `ExportTraceServiceRequest`: the parser's message (kept as text, so that
    /// this error stays comparable and cloneable).
    #[error("not an OTLP/JSON export request: {0}")]
    Json(String),
}

/// The text of an attribute value: strings as they are, other scalars as Rust prints them, arrays and maps in
/// debug form, nothing as `""`.
pub fn attribute_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes_of(attributes: &[KeyValue]) -> Attributes {
    attributes
        .iter()
        .map(|kv| {
            (
                Cow::Owned(kv.key.clone()),
                attribute_text(kv.value.as_ref()).into(),
            )
        })
        .collect()
}

fn timestamp(nanos: u64, what: &'static str) -> Result<Timestamp, OtlpDecodeError> {
    Timestamp::from_nanosecond(i128::from(nanos)).map_err(|_| OtlpDecodeError::Time { what, nanos })
}

fn id_bytes<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], OtlpDecodeError> {
    bytes.try_into().map_err(|_| OtlpDecodeError::IdLength {
        what,
        found: bytes.len(),
        expected: N,
    })
}

/// One OTLP span back into a [`SpanRecord`] of `kind`.
pub fn span_record(span: &Span, kind: SpanKind) -> Result<SpanRecord, OtlpDecodeError> {
    let trace_id = TraceId::from_u128(u128::from_be_bytes(id_bytes(&span.trace_id, "trace id")?))
        .ok_or(OtlpDecodeError::ZeroId { what: "trace id" })?;
    let span_id = SpanId::from_u64(u64::from_be_bytes(id_bytes(&span.span_id, "span id")?))
        .ok_or(OtlpDecodeError::ZeroId { what: "span id" })?;
    let parent_span_id = if span.parent_span_id.is_empty() {
        None
    } else {
        SpanId::from_u64(u64::from_be_bytes(id_bytes(
            &span.parent_span_id,
            "parent span id",
        )?))
    };
    let logs = span
        .events
        .iter()
        .map(|event| {
            Ok(SpanLog {
                time: timestamp(event.time_unix_nano, "event time")?,
                message: event.name.clone(),
                attributes: attributes_of(&event.attributes),
            })
        })
        .collect::<Result<Vec<_>, OtlpDecodeError>>()?;
    Ok(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        kind,
        name: span.name.clone(),
        start: timestamp(span.start_time_unix_nano, "start time")?,
        end: timestamp(span.end_time_unix_nano, "end time")?,
        attributes: attributes_of(&span.attributes),
        logs,
    })
}

/// The spans of one line of OTLP/JSON (an `ExportTraceServiceRequest`, as the JSON lines exporter writes them), in
/// order.
pub fn span_records_from_json(line: &str) -> Result<Vec<SpanRecord>, OtlpDecodeError> {
    let request: ExportTraceServiceRequest =
        serde_json::from_str(line).map_err(|err| OtlpDecodeError::Json(err.to_string()))?;
    span_records(&request.resource_spans)
}

/// OTLP spans back into [`SpanRecord`]s, in order: the inverse of [`export_request`] (see the
/// [module documentation](self)).
pub fn span_records(resource_spans: &[ResourceSpans]) -> Result<Vec<SpanRecord>, OtlpDecodeError> {
    let mut out = Vec::new();
    for resource in resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == SERVICE_NAME))
            .map(|kv| attribute_text(kv.value.as_ref()))
            .unwrap_or_default();
        let kind = SpanKind::from_service_name(&service);
        for scope in &resource.scope_spans {
            for span in &scope.spans {
                out.push(span_record(span, kind.clone())?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Activity, Link, LogKind, LogLine, Object, ObjectKey, ObjectRef, SourceKind, Windowing,
    };

    fn spans() -> Vec<SpanRecord> {
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        let at: Timestamp = "2021-05-19T09:42:58.123456789Z".parse().unwrap();
        let window = Windowing::default().window_of(at);
        let object = ObjectRef::new(key, "v1", Some("uid".into()));
        let mut activity = Activity::new(
            Object::new(object.clone()),
            SourceKind::Event,
            at,
            "Scheduled",
            "e1",
        );
        activity
            .logs
            .push(LogLine::new(LogKind::EventMessage, "assigned to node-1"));
        let node = ObjectRef::new(ObjectKey::new("c", "", "nodes", "", "node-1"), "v1", None);
        vec![
            crate::span::object_span(&object, window),
            crate::span::activity_span(&activity, window),
            crate::span::link_span(&object, window, &Link::parent(node).with_class("node")),
        ]
    }

    #[test]
    fn records_round_trip_through_protobuf_and_json() {
        let spans = spans();
        let request = export_request(&spans, &[("k8s.cluster.name".into(), "c".into())]);
        assert_eq!(span_records(&request.resource_spans).unwrap(), spans);
        let json = serde_json::to_string(&request).unwrap();
        let decoded: ExportTraceServiceRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(span_records(&decoded.resource_spans).unwrap(), spans);
    }

    #[test]
    fn services_group_in_order_of_first_appearance() {
        let mut spans = spans();
        spans.push(spans[0].clone());
        let request = export_request(&spans, &[]);
        let services: Vec<String> = request
            .resource_spans
            .iter()
            .map(|r| attribute_text(r.resource.as_ref().unwrap().attributes[0].value.as_ref()))
            .collect();
        assert_eq!(services, ["object", "event", "link"]);
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 2);
    }

    #[test]
    fn a_request_of_spans_encoded_one_by_one_is_the_request_encoded_whole() {
        let mut spans = spans();
        // Services interleaved and repeated; a span with many attributes and a long name.
        spans.push(spans[0].clone());
        spans.push(spans[2].clone());
        let mut long = spans[1].clone();
        long.name = "x".repeat(70_000);
        for i in 0..300 {
            long.attributes
                .push((format!("k{i}").into(), "v".repeat(i).into()));
        }
        spans.insert(1, long);
        for extra in [
            vec![],
            vec![("k8s.cluster.name".to_owned(), "c".to_owned())],
        ] {
            for take in [0, 1, 2, spans.len()] {
                let batch = &spans[..take];
                let whole = prost::Message::encode_to_vec(&export_request(batch, &extra));
                let encoded = batch
                    .iter()
                    .map(|record| (record.service_name(), encode_span(record)));
                assert_eq!(
                    encode_export_request(encoded, &extra),
                    whole,
                    "{take} spans"
                );
            }
        }
    }

    #[test]
    fn a_span_is_written_as_its_message_encodes() {
        let mut records = spans();
        let mut odd = records[1].clone();
        odd.name = String::new();
        odd.parent_span_id = None;
        odd.start = Timestamp::UNIX_EPOCH;
        odd.end = "1969-12-31T23:59:59Z".parse().unwrap();
        odd.attributes = vec![
            ("".into(), "".into()),
            ("k".into(), "".into()),
            ("".into(), "v".into()),
            ("ünïcode ✓".into(), "é".repeat(100).into()),
            ("long".into(), "x".repeat(20_000).into()),
        ];
        let mut log = odd.logs[0].clone();
        log.message = String::new();
        log.attributes.clear();
        log.time = Timestamp::UNIX_EPOCH;
        odd.logs.push(log);
        records.push(odd);
        for record in &records {
            assert_eq!(
                encode_span(record),
                prost::Message::encode_to_vec(&otlp_span(record)),
                "{record:?}"
            );
        }
    }

    #[test]
    fn malformed_spans_are_named() {
        let mut span = otlp_span(&spans()[0]);
        span.trace_id.pop();
        let err = span_record(&span, SpanKind::Object).unwrap_err();
        assert_eq!(
            err,
            OtlpDecodeError::IdLength {
                what: "trace id",
                found: 15,
                expected: 16
            }
        );
        let mut span = otlp_span(&spans()[0]);
        span.span_id = vec![0; 8];
        assert!(
            span_record(&span, SpanKind::Object)
                .unwrap_err()
                .to_string()
                .contains("span id is zero")
        );
    }
}
