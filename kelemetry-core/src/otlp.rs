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
    let mut groups: Vec<(S, Vec<Span>)> = Vec::new();
    for (service, span) in spans {
        match groups
            .iter_mut()
            .find(|(name, _)| name.as_ref() == service.as_ref())
        {
            Some((_, group)) => group.push(span),
            None => groups.push((service, vec![span])),
        }
    }
    let resource_spans = groups
        .into_iter()
        .map(|(service, spans)| resource_spans(service.as_ref(), extra_resource_attributes, spans))
        .collect();
    ExportTraceServiceRequest { resource_spans }
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
