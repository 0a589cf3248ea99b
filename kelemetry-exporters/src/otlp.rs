//! [`SpanRecord`]s as OTLP messages (the `opentelemetry-proto` types), shared by every OTLP-speaking exporter.
//!
//! Spans are grouped into one `ResourceSpans` per service name (`object`, `link`, `audit`, `event`, ...), in the
//! order the services first appear in the batch, each with one `ScopeSpans` whose scope is [`SCOPE_NAME`].
//! Every span is `SPAN_KIND_INTERNAL`; its logs become span events whose name is the log's message.
//!
//! With the `with-serde` feature of `opentelemetry-proto`, these messages serialise to the OTLP/JSON encoding:
//! camelCase field names, trace and span ids as lowercase hex, 64-bit times as decimal strings.

use jiff::Timestamp;
use kelemetry_core::{Attributes, SpanLog, SpanRecord};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

/// The instrumentation scope name of every exported span.
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

/// A batch as one export request: one `ResourceSpans` per service name, in order of first appearance, each
/// resource carrying `service.name` and then `extra_resource_attributes`.
pub fn export_request(
    spans: &[SpanRecord],
    extra_resource_attributes: &[(String, String)],
) -> ExportTraceServiceRequest {
    let mut groups: Vec<(&str, Vec<Span>)> = Vec::new();
    for record in spans {
        let service = record.service_name();
        let index = match groups.iter().position(|(name, _)| *name == service) {
            Some(index) => index,
            None => {
                groups.push((service, Vec::new()));
                groups.len() - 1
            }
        };
        if let Some((_, group)) = groups.get_mut(index) {
            group.push(otlp_span(record));
        }
    }
    let resource_spans = groups
        .into_iter()
        .map(|(service, spans)| {
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
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}
