//! Jaeger's HTTP JSON model (the one the Jaeger UI's query service speaks), as our own serde types, and the
//! conversion of a [`DisplayTrace`] into it.
//!
//! Ids are lowercase hex (trace ids 32 digits, span ids 16), times and durations are microseconds since the Unix
//! epoch, every tag and log field here is a string.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::display::DisplayTrace;

/// The envelope of every answer: `{"data": ..., "total": N, "limit": 0, "offset": 0, "errors": null}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    /// The answer; `null` when the request failed.
    pub data: Option<T>,
    /// How many items `data` holds.
    #[serde(default)]
    pub total: usize,
    /// Always 0 (no paging).
    #[serde(default)]
    pub limit: usize,
    /// Always 0 (no paging).
    #[serde(default)]
    pub offset: usize,
    /// What went wrong, `null` when nothing did.
    #[serde(default)]
    pub errors: Option<Vec<ResponseError>>,
}

impl<T> Response<T> {
    /// A successful answer with `total` items.
    pub fn ok(data: T, total: usize) -> Self {
        Self {
            data: Some(data),
            total,
            limit: 0,
            offset: 0,
            errors: None,
        }
    }

    /// A failed answer.
    pub fn error(code: u16, msg: impl Into<String>) -> Self {
        Self {
            data: None,
            total: 0,
            limit: 0,
            offset: 0,
            errors: Some(vec![ResponseError {
                code,
                msg: msg.into(),
                trace_id: None,
            }]),
        }
    }
}

/// One error of a [`Response`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// The HTTP status code.
    pub code: u16,
    /// What went wrong.
    pub msg: String,
    /// The trace concerned, if one.
    #[serde(rename = "traceID", default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// 32 hex digits.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// The spans, parents before children.
    pub spans: Vec<Span>,
    /// The processes the spans refer to by [`Span::process_id`].
    #[serde(default)]
    pub processes: BTreeMap<String, Process>,
    /// Notes about the whole trace.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// A span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// 32 hex digits.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// 16 hex digits.
    #[serde(rename = "spanID")]
    pub span_id: String,
    /// Sampling flags.
    #[serde(default)]
    pub flags: u32,
    /// The operation name.
    pub operation_name: String,
    /// The parent, as a `CHILD_OF` reference.
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Start, microseconds since the Unix epoch.
    pub start_time: u64,
    /// Duration in microseconds.
    pub duration: u64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// Logs.
    #[serde(default)]
    pub logs: Vec<Log>,
    /// Key into [`Trace::processes`].
    #[serde(rename = "processID")]
    pub process_id: String,
    /// Notes about the span.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// A reference from a span to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// The relation.
    pub ref_type: RefType,
    /// The other span's trace.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// The other span.
    #[serde(rename = "spanID")]
    pub span_id: String,
}

/// The kind of a [`Reference`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefType {
    /// The other span is the parent.
    #[serde(rename = "CHILD_OF")]
    ChildOf,
    /// The other span caused this one but does not wait for it.
    #[serde(rename = "FOLLOWS_FROM")]
    FollowsFrom,
}

/// A tag or a log field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The type of `value`.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// The value.
    pub value: serde_json::Value,
}

impl KeyValue {
    /// A string tag.
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value_type: ValueType::String,
            value: serde_json::Value::String(value.into()),
        }
    }
}

/// The type of a [`KeyValue`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// A string.
    String,
    /// A boolean.
    Bool,
    /// A 64-bit integer.
    Int64,
    /// A 64-bit float.
    Float64,
    /// Bytes (base64).
    Binary,
}

/// A log of a span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// When, microseconds since the Unix epoch.
    pub timestamp: u64,
    /// The fields.
    pub fields: Vec<KeyValue>,
}

/// A process: the service that emitted spans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// The service name.
    pub service_name: String,
    /// Process tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// An operation of a service, as `/api/operations` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The operation name.
    pub name: String,
    /// The span kind (empty: unspecified).
    pub span_kind: String,
}

/// Microseconds since the Unix epoch; 0 before it.
pub fn micros(t: Timestamp) -> u64 {
    u64::try_from(t.as_microsecond()).unwrap_or(0)
}

/// The trace id as Jaeger prints it.
pub fn trace_id_hex(id: u128) -> String {
    format!("{id:032x}")
}

impl From<&DisplayTrace> for Trace {
    /// One process per service name, numbered `p1`, `p2`, ... in the order of first use.
    fn from(trace: &DisplayTrace) -> Self {
        let trace_id = trace_id_hex(trace.trace_id);
        let mut processes: BTreeMap<String, Process> = BTreeMap::new();
        let mut process_of: BTreeMap<&str, String> = BTreeMap::new();
        let mut spans = Vec::with_capacity(trace.spans.len());
        for span in &trace.spans {
            let next = process_of.len() + 1;
            let process_id = process_of
                .entry(span.service.as_str())
                .or_insert_with(|| {
                    let id = format!("p{next}");
                    processes.insert(
                        id.clone(),
                        Process {
                            service_name: span.service.clone(),
                            tags: Vec::new(),
                        },
                    );
                    id
                })
                .clone();
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: format!("{:016x}", span.span_id),
                flags: 1,
                operation_name: span.operation.clone(),
                references: span
                    .parent
                    .map(|parent| Reference {
                        ref_type: RefType::ChildOf,
                        trace_id: trace_id.clone(),
                        span_id: format!("{parent:016x}"),
                    })
                    .into_iter()
                    .collect(),
                start_time: micros(span.start),
                duration: micros(span.end).saturating_sub(micros(span.start)),
                tags: span
                    .tags
                    .iter()
                    .map(|(k, value)| KeyValue::string(k.as_str(), value.as_str()))
                    .collect(),
                logs: span
                    .logs
                    .iter()
                    .map(|log| Log {
                        timestamp: micros(log.time),
                        fields: log
                            .fields
                            .iter()
                            .map(|(k, value)| KeyValue::string(k.as_str(), value.as_str()))
                            .collect(),
                    })
                    .collect(),
                process_id,
                warnings: (!span.warnings.is_empty()).then(|| span.warnings.clone()),
            });
        }
        Self {
            trace_id,
            spans,
            processes,
            warnings: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::display::{DisplayKind, DisplayLog, DisplayMode, DisplaySpan};

    fn span(id: u64, parent: Option<u64>, service: &str) -> DisplaySpan {
        DisplaySpan {
            span_id: id,
            parent,
            kind: DisplayKind::Object,
            service: service.into(),
            operation: format!("op{id}"),
            start: "2024-01-01T10:00:00Z".parse().unwrap(),
            end: "2024-01-01T10:00:02.5Z".parse().unwrap(),
            tags: vec![("cluster".into(), "c".into())],
            logs: vec![DisplayLog {
                time: "2024-01-01T10:00:01Z".parse().unwrap(),
                fields: vec![("event".into(), "Scheduled".into())],
            }],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_display_trace_becomes_jaeger_json() {
        let trace = DisplayTrace {
            trace_id: DisplayMode::DEFAULT.trace_id(0xab),
            mode: DisplayMode::DEFAULT,
            spans: vec![
                span(1, None, "c deployments"),
                span(2, Some(1), "replicasets"),
                span(3, Some(1), "replicasets"),
            ],
        };
        let json = serde_json::to_value(Response::ok(vec![Trace::from(&trace)], 1)).unwrap();
        assert_eq!(json["total"], 1);
        assert!(json["errors"].is_null());
        let t = &json["data"][0];
        assert_eq!(t["traceID"], "ff20000000e1e3e700000000000000ab");
        let root = &t["spans"][0];
        assert_eq!(root["spanID"], "0000000000000001");
        assert_eq!(root["operationName"], "op1");
        assert_eq!(root["references"], serde_json::json!([]));
        assert_eq!(root["startTime"], 1_704_103_200_000_000u64);
        assert_eq!(root["duration"], 2_500_000);
        assert_eq!(
            root["tags"][0],
            serde_json::json!({"key": "cluster", "type": "string", "value": "c"})
        );
        assert_eq!(root["logs"][0]["timestamp"], 1_704_103_201_000_000u64);
        assert_eq!(root["logs"][0]["fields"][0]["key"], "event");
        assert!(root["warnings"].is_null());
        let child = &t["spans"][1];
        assert_eq!(
            child["references"][0],
            serde_json::json!({"refType": "CHILD_OF", "traceID": "ff20000000e1e3e700000000000000ab", "spanID": "0000000000000001"})
        );
        // One process per service.
        assert_eq!(t["processes"].as_object().unwrap().len(), 2);
        assert_eq!(t["spans"][2]["processID"], child["processID"]);
        assert_eq!(t["processes"]["p1"]["serviceName"], "c deployments");
        // And back: the model reads what it writes (and what Jaeger writes).
        let back: Response<Vec<Trace>> = serde_json::from_value(json).unwrap();
        assert_eq!(back.data.unwrap()[0], Trace::from(&trace));
    }

    #[test]
    fn errors_have_the_jaeger_shape() {
        let json = serde_json::to_value(Response::<()>::error(404, "trace not found")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"data": null, "total": 0, "limit": 0, "offset": 0,
                               "errors": [{"code": 404, "msg": "trace not found"}]})
        );
    }
}
