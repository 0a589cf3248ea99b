//! EKS: CloudWatch Logs events of the control plane's log group `/aws/eks/<cluster>/cluster` whose message is an
//! audit event, alone (`aws logs filter-log-events`, a Logs Insights export with `@message`) or in the records
//! a subscription filter sends to Kinesis or Firehose (`messageType`, `logGroup`, `logStream`, `logEvents`).
//!
//! An audit event without any timestamp takes the CloudWatch event's `timestamp` (epoch milliseconds) as its
//! stage timestamp.
//!
//! Only the audit log streams (`kube-apiserver-audit-*`) are read when the stream is named; events of the other
//! streams of the group (`kube-apiserver-*`, `authenticator-*`, `kube-controller-manager-*`...) are skipped.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{Envelope, EnvelopeSkip, Enveloped, embedded_events, invalid, missing};
use crate::audit_intake::{RecordRejection, RejectReason};

/// The prefix of the apiserver's audit log streams.
const AUDIT_STREAM: &str = "kube-apiserver-audit";

/// The cluster of an EKS log group `/aws/eks/<cluster>/cluster` (also with an account prefix,
/// `123456789012:/aws/eks/<cluster>/cluster`, as Logs Insights writes `@log`).
pub(super) fn cluster_of(log_group: &str) -> Option<Arc<str>> {
    let (_, rest) = log_group.split_once("/aws/eks/")?;
    let name = rest.strip_suffix("/cluster")?;
    (!name.is_empty() && !name.contains('/')).then(|| Arc::from(name))
}

/// The first string of `keys` that `object` has.
fn text<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|key| object.get(*key))
        .and_then(Value::as_str)
}

/// Whether `object` is a subscription-filter record: a string `messageType` with `logEvents` or `logGroup`.
pub(super) fn is_subscription(object: &Map<String, Value>) -> bool {
    object.get("messageType").is_some_and(Value::is_string)
        && (object.contains_key("logEvents") || object.contains_key("logGroup"))
}

/// Whether `object` is a CloudWatch Logs event: a string `message` (or `@message`) with one of the fields
/// CloudWatch gives an event.
pub(super) fn is_cloudwatch_event(object: &Map<String, Value>) -> bool {
    let has_message = ["message", "@message"]
        .iter()
        .any(|key| object.get(*key).is_some_and(Value::is_string));
    has_message
        && [
            "logStreamName",
            "logStream",
            "logGroup",
            "logGroupName",
            "timestamp",
            "ingestionTime",
            "eventId",
            "@log",
            "@logStream",
            "@timestamp",
        ]
        .iter()
        .any(|key| object.contains_key(*key))
}

/// The entries of one CloudWatch Logs event of `envelope`: the audit events of its message, a skip when its
/// stream is not an audit stream, or the rejection naming the field. `cluster` and `stream` come from the
/// subscription record around it, if any.
fn event_entries(
    envelope: Envelope,
    event: &Map<String, Value>,
    cluster: Option<Arc<str>>,
    stream: Option<&str>,
    field: &str,
) -> Result<Vec<Enveloped<'static>>, RecordRejection> {
    if stream.is_some_and(|stream| !stream.starts_with(AUDIT_STREAM)) {
        return Ok(vec![Enveloped::skipped(
            envelope,
            cluster,
            EnvelopeSkip::OtherLog,
        )]);
    }
    let Some(message) = text(event, &["message", "@message"]) else {
        return Err(missing(envelope, &format!("{field}message")));
    };
    let events = embedded_events(envelope, &format!("{field}message"), message.as_bytes())?;
    let event_time = event
        .get("timestamp")
        .and_then(Value::as_i64)
        .and_then(|millis| Timestamp::from_millisecond(millis).ok());
    Ok(events
        .into_iter()
        .map(|audit| {
            let audit = super::with_fallback_time(audit, event_time);
            Enveloped::event(envelope, cluster.clone(), audit)
        })
        .collect())
}

/// The entries of one CloudWatch Logs event read on its own (not in a subscription record).
pub(super) fn cloudwatch_entries(
    event: &Map<String, Value>,
) -> Result<Vec<Enveloped<'static>>, RecordRejection> {
    let cluster = text(event, &["logGroup", "logGroupName", "@log"]).and_then(cluster_of);
    let stream = text(event, &["logStreamName", "logStream", "@logStream"]);
    event_entries(Envelope::EksCloudWatch, event, cluster, stream, "")
}

/// The entries of a subscription-filter record: one per log event (its audit event, a skip or a rejection), or
/// one skip for a `CONTROL_MESSAGE`. A record of more than `max_events` log events is rejected whole.
pub(super) fn subscription_entries(
    record: &Map<String, Value>,
    max_events: usize,
) -> Result<Vec<Enveloped<'static>>, RecordRejection> {
    const SUBSCRIPTION: Envelope = Envelope::EksSubscription;
    let cluster = text(record, &["logGroup"]).and_then(cluster_of);
    match text(record, &["messageType"]).unwrap_or_default() {
        "CONTROL_MESSAGE" => {
            return Ok(vec![Enveloped::skipped(
                SUBSCRIPTION,
                cluster,
                EnvelopeSkip::ControlMessage,
            )]);
        }
        "DATA_MESSAGE" => {}
        other => {
            return Err(invalid(
                SUBSCRIPTION,
                "messageType",
                format!("{other:?} is neither DATA_MESSAGE nor CONTROL_MESSAGE"),
            ));
        }
    }
    let Some(log_events) = record.get("logEvents") else {
        return Err(missing(SUBSCRIPTION, "logEvents"));
    };
    let Some(log_events) = log_events.as_array() else {
        return Err(invalid(SUBSCRIPTION, "logEvents", "is not an array"));
    };
    if log_events.len() > max_events {
        return Err(RecordRejection::new(
            RejectReason::DocumentTooLarge,
            format!(
                "logEvents holds {} log events, more than the limit of {max_events}",
                log_events.len()
            ),
        )
        .in_envelope(SUBSCRIPTION));
    }
    let stream = text(record, &["logStream"]);
    let mut entries = Vec::with_capacity(log_events.len());
    for (index, log_event) in log_events.iter().enumerate() {
        let field = format!("logEvents[{index}].");
        let read = match log_event.as_object() {
            Some(log_event) => {
                event_entries(SUBSCRIPTION, log_event, cluster.clone(), stream, &field)
            }
            None => Err(invalid(
                SUBSCRIPTION,
                &format!("logEvents[{index}]"),
                "is not an object",
            )),
        };
        match read {
            Ok(read) => entries.extend(read),
            Err(rejection) => entries.push(Enveloped::rejected(SUBSCRIPTION, rejection)),
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_of_log_groups() {
        assert_eq!(
            cluster_of("/aws/eks/prod-1/cluster").as_deref(),
            Some("prod-1")
        );
        assert_eq!(
            cluster_of("123456789012:/aws/eks/prod-1/cluster").as_deref(),
            Some("prod-1")
        );
        assert_eq!(cluster_of("/aws/eks//cluster").as_deref(), None);
        assert_eq!(cluster_of("/aws/lambda/fn").as_deref(), None);
        assert_eq!(cluster_of("/aws/eks/a/b/cluster").as_deref(), None);
    }
}
