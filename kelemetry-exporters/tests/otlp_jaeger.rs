//! The OTLP exporter against a real Jaeger v2 (built from its Go module by `scripts/jaeger/build`): exact ids and
//! times over gRPC and HTTP, gzip, and an outage of Jaeger (spans wait in the bounded buffer and arrive when it
//! returns; what does not fit is counted as dropped). Runs only with `KELEMETRY_JAEGER=1`.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used)]

#[path = "support/jaeger.rs"]
mod jaeger;

use std::time::Duration;

use kelemetry_core::{
    Activity, Exporter, LogKind, LogLine, Object, ObjectKey, ObjectRef, SourceKind, SpanRecord,
    TraceId, Windowing, span,
};
use kelemetry_exporters::{OtlpConfig, OtlpExporter};
use serde_json::Value;

/// An object span, a link span and an activity span (with a log and a nanosecond start) of one object.
fn spans_of(name: &str) -> Vec<SpanRecord> {
    let key = ObjectKey::new("test", "apps", "deployments", "default", name);
    let at: jiff::Timestamp = "2021-05-19T09:42:58.123456789Z".parse().unwrap();
    let window = Windowing::default().window_of(at);
    let object = ObjectRef::new(key, "v1", Some(format!("uid-{name}").into()));
    let link = kelemetry_core::Link::child(ObjectRef::new(
        ObjectKey::new(
            "test",
            "apps",
            "replicasets",
            "default",
            format!("{name}-1"),
        ),
        "v1",
        None,
    ))
    .with_class("children")
    .with_dedup_id("ownerReference");
    let mut activity = Activity::new(
        Object::new(object.clone()),
        SourceKind::Audit,
        at,
        "alice update",
        format!("audit-{name}"),
    );
    activity.attribute("auditId", format!("audit-{name}"));
    activity
        .logs
        .push(LogLine::new(LogKind::ObjectDiff, "spec.replicas 1 -> 2"));
    vec![
        span::object_span(&object, window),
        span::link_span(&object, window, &link),
        span::activity_span(&activity, window),
    ]
}

async fn v3_trace(client: &reqwest::Client, query: &str, id: TraceId) -> Option<Value> {
    let url = format!("{query}/api/v3/traces/{id}?raw_traces=true");
    let response = client.get(&url).send().await.unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    Some(response.json().await.unwrap())
}

/// Waits until Jaeger has the trace (its pipeline batches for 100 ms).
async fn wait_for_trace(client: &reqwest::Client, query: &str, id: TraceId) -> Value {
    for _ in 0..100 {
        if let Some(trace) = v3_trace(client, query, id).await {
            return trace;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("trace {id} never arrived in Jaeger");
}

/// Waits (10 s at most) until the exporter's report satisfies `done`, and returns that report.
async fn wait_for_report(
    exporter: &OtlpExporter,
    what: &str,
    done: impl Fn(&kelemetry_exporters::OtlpReport) -> bool,
) -> kelemetry_exporters::OtlpReport {
    for _ in 0..200 {
        let report = exporter.stats().report();
        if done(&report) {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", exporter.stats().report());
}

/// (service name, span id, parent span id, start nanos, end nanos, event names) of every span of an OTLP/JSON
/// trace.
fn summarize(trace: &Value) -> Vec<(String, String, String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for resource in trace["result"]["resourceSpans"].as_array().unwrap() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
            .unwrap();
        for scope in resource["scopeSpans"].as_array().unwrap() {
            for span in scope["spans"].as_array().unwrap() {
                let text = |field: &str| span[field].as_str().unwrap_or_default().to_owned();
                let events = span["events"]
                    .as_array()
                    .map(|events| {
                        events
                            .iter()
                            .map(|e| e["name"].as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    service.clone(),
                    text("spanId"),
                    text("parentSpanId"),
                    text("startTimeUnixNano"),
                    text("endTimeUnixNano"),
                    events,
                ));
            }
        }
    }
    out.sort();
    out
}

fn expected(spans: &[SpanRecord]) -> Vec<(String, String, String, String, String, Vec<String>)> {
    let mut out: Vec<_> = spans
        .iter()
        .map(|s| {
            (
                s.service_name().to_owned(),
                s.span_id.to_string(),
                s.parent_span_id.map(|p| p.to_string()).unwrap_or_default(),
                s.start.as_nanosecond().to_string(),
                s.end.as_nanosecond().to_string(),
                s.logs.iter().map(|l| l.message.clone()).collect(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_deliver_exact_ids_times_and_services() {
    if !jaeger::enabled("grpc_and_http_deliver_exact_ids_times_and_services") {
        return;
    }
    let jaeger = jaeger::Jaeger::start("exporter-exact");
    let client = reqwest::Client::new();
    for (name, config) in [
        (
            "over-grpc",
            OtlpConfig::grpc(jaeger.otlp_grpc())
                .with_gzip(true)
                .with_header("x-scope-orgid", "kelemetry"),
        ),
        (
            "over-http",
            OtlpConfig::http(jaeger.otlp_http()).with_gzip(true),
        ),
        ("over-http-plain", OtlpConfig::http(jaeger.otlp_http())),
    ] {
        let exporter = OtlpExporter::new(config).unwrap();
        let spans = spans_of(name);
        exporter.export(&spans).await.unwrap();
        exporter.flush().await.unwrap();
        let report = exporter.stats().report();
        assert_eq!(report.spans_exported, 3, "{name}: {report:?}");
        assert_eq!(report.spans_lost(), 0, "{name}: {report:?}");
        let trace = wait_for_trace(&client, &jaeger.query_http(), spans[0].trace_id).await;
        assert_eq!(
            summarize(&trace),
            expected(&spans),
            "{name}: {trace}\n{}",
            jaeger.log_tail()
        );
        // Every resource names one service, and each of object, link and audit has its own resource.
        assert_eq!(
            trace["result"]["resourceSpans"].as_array().unwrap().len(),
            3,
            "{trace}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_export_returns_once_jaeger_has_the_spans_and_fails_while_it_is_down() {
    if !jaeger::enabled(
        "a_confirmed_export_returns_once_jaeger_has_the_spans_and_fails_while_it_is_down",
    ) {
        return;
    }
    let jaeger = jaeger::Jaeger::start("exporter-confirmed");
    let config = OtlpConfig::grpc(jaeger.otlp_grpc())
        .with_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .with_timeout(Duration::from_secs(2))
        .with_flush_timeout(Duration::from_secs(3));
    let exporter = OtlpExporter::new(config).unwrap();
    let spans = spans_of("confirmed");
    exporter.export(&spans).await.unwrap();
    // No flush: the export itself waited for the endpoint's answer.
    let report = exporter.stats().report();
    assert_eq!(report.spans_exported, 3, "{report:?}");
    assert_eq!(report.spans_buffered, 0, "{report:?}");
    let client = reqwest::Client::new();
    let trace = wait_for_trace(&client, &jaeger.query_http(), spans[0].trace_id).await;
    assert_eq!(summarize(&trace), expected(&spans));

    jaeger.stop();
    let unconfirmed = exporter.export(&spans_of("confirmed-down")).await;
    match unconfirmed {
        Err(error) if !error.is_retryable() => {
            assert!(error.to_string().contains("did not confirm"), "{error}")
        }
        other => panic!("an export Jaeger never answered must fail, got {other:?}"),
    }
    // While the endpoint keeps failing, the next batch is refused at once, retryably.
    match exporter.export(&spans_of("confirmed-refused")).await {
        Err(error) if error.is_retryable() => {
            assert!(error.to_string().contains("failing"), "{error}")
        }
        other => panic!("an export while the endpoint fails must be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_wait_while_jaeger_is_down_and_overflow_is_counted() {
    if !jaeger::enabled("spans_wait_while_jaeger_is_down_and_overflow_is_counted") {
        return;
    }
    let mut jaeger = jaeger::Jaeger::start("exporter-outage");
    jaeger.stop();
    let config = OtlpConfig::grpc(jaeger.otlp_grpc())
        .with_buffer_spans(60)
        .with_max_batch_spans(9)
        .with_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .with_timeout(Duration::from_secs(2))
        .with_flush_timeout(Duration::from_secs(60))
        .with_confirm_delivery(false);
    let exporter = OtlpExporter::new(config).unwrap();
    let stats = exporter.stats();

    // 20 objects of 3 spans fill the buffer exactly; the 21st is refused and counted.
    let mut delivered = Vec::new();
    for i in 0..20 {
        let spans = spans_of(&format!("outage-{i}"));
        exporter.export(&spans).await.unwrap();
        delivered.push(spans);
    }
    let refused = spans_of("outage-refused");
    match exporter.export(&refused).await {
        Err(error) if !error.is_retryable() => {
            assert!(error.to_string().contains("full"), "{error}")
        }
        other => panic!("a full buffer must refuse the batch, got {other:?}"),
    }
    let during = wait_for_report(&exporter, "retried twice while down", |report| {
        report.requests_retried >= 2
    })
    .await;
    assert_eq!(during.spans_dropped_buffer_full, 3, "{during:?}");
    assert_eq!(during.spans_buffered, 60, "{during:?}");
    assert_eq!(during.spans_exported, 0, "{during:?}");
    assert!(
        during.requests_retried >= 2,
        "retried while down: {during:?}"
    );

    jaeger.restart();
    exporter.flush().await.unwrap();
    let after = stats.report();
    assert_eq!(after.spans_exported, 60, "{after:?}");
    assert_eq!(after.spans_buffered, 0, "{after:?}");
    assert_eq!(after.spans_dropped_buffer_full, 3, "{after:?}");
    assert_eq!(
        after.spans_rejected + after.spans_dropped_undelivered,
        0,
        "{after:?}"
    );

    let client = reqwest::Client::new();
    for spans in &delivered {
        let trace = wait_for_trace(&client, &jaeger.query_http(), spans[0].trace_id).await;
        assert_eq!(summarize(&trace), expected(spans));
    }
    assert!(
        v3_trace(&client, &jaeger.query_http(), refused[0].trace_id)
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_times_out_counts_what_it_drops() {
    if !jaeger::enabled("a_flush_that_times_out_counts_what_it_drops") {
        return;
    }
    let jaeger = jaeger::Jaeger::start("exporter-gone");
    jaeger.stop();
    let exporter = OtlpExporter::new(
        OtlpConfig::http(jaeger.otlp_http())
            .with_max_batch_spans(2)
            .with_backoff(Duration::from_millis(20), Duration::from_millis(100))
            .with_flush_timeout(Duration::from_millis(500))
            .with_confirm_delivery(false),
    )
    .unwrap();
    exporter.export(&spans_of("gone")).await.unwrap();
    let err = exporter.flush().await.unwrap_err().to_string();
    assert!(
        err.starts_with("retryable export failure: 3 spans were not delivered to "),
        "{err}"
    );
    // Spans still queued are counted by the flush; those in flight (with up to four requests at once, all three,
    // in two requests) once the delivery task notices the abandon.
    let report = wait_for_report(&exporter, "the 3 spans counted as dropped", |report| {
        report.spans_dropped_undelivered >= 3
    })
    .await;
    assert_eq!(report.spans_dropped_undelivered, 3, "{report:?}");
    assert_eq!(report.spans_buffered, 0, "{report:?}");
    assert_eq!(report.spans_lost(), report.spans_accepted);
}
