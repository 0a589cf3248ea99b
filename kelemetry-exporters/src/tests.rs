use kelemetry_core::span::{activity_span, link_span, object_span};
use kelemetry_core::{
    Activity, Exporter, Link, LogKind, LogLine, Object, ObjectKey, ObjectRef, SourceKind,
    SpanRecord, Windowing,
};
use kelemetry_store::{SpanStore, WriteDurability};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;

use crate::{JsonLinesExporter, StoreExporter};
use kelemetry_core::otlp::export_request;

fn nginx() -> ObjectRef {
    ObjectRef::new(
        ObjectKey::new("prod", "apps", "deployments", "default", "nginx"),
        "v1",
        Some("uid-1".into()),
    )
}

/// Object, link, audit and event spans of one window, interleaved so grouping has work to do.
fn spans(when: &str) -> Vec<SpanRecord> {
    let at: jiff::Timestamp = when.parse().unwrap();
    let window = Windowing::default().window_of(at);
    let object = nginx();
    let link = Link::child(ObjectRef::new(
        ObjectKey::new("prod", "apps", "replicasets", "default", "nginx-1"),
        "v1",
        None,
    ))
    .with_class("children")
    .with_dedup_id("ownerReference");
    let mut audit = Activity::new(
        Object::new(object.clone()),
        SourceKind::Audit,
        at,
        "alice update",
        "a1",
    );
    audit.attribute("username", "alice");
    audit
        .logs
        .push(LogLine::new(LogKind::ObjectDiff, "spec.replicas 1 -> 3"));
    let event = Activity::new(
        Object::new(object.clone()),
        SourceKind::Event,
        at,
        "ScalingReplicaSet",
        "e1",
    );
    let audit2 = Activity::new(
        Object::new(object.clone()),
        SourceKind::Audit,
        at,
        "bob get",
        "a2",
    );
    vec![
        object_span(&object, window),
        activity_span(&audit, window),
        link_span(&object, window, &link),
        activity_span(&event, window),
        activity_span(&audit2, window),
    ]
}

fn string_attribute<'a>(attributes: &'a Value, key: &str) -> Option<&'a str> {
    attributes.as_array()?.iter().find(|kv| kv["key"] == key)?["value"]["stringValue"].as_str()
}

#[tokio::test]
async fn json_lines_have_the_otlp_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.jsonl");
    let batch = spans("2024-05-01T12:34:56.25Z");
    let exporter = JsonLinesExporter::create(&path)
        .await
        .unwrap()
        .with_resource_attribute("k8s.cluster.name", "prod");
    exporter.export(&batch).await.unwrap();
    exporter.flush().await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1);
    let request: Value = serde_json::from_str(lines[0]).unwrap();
    let resources = request["resourceSpans"].as_array().unwrap();
    let services: Vec<&str> = resources
        .iter()
        .map(|r| string_attribute(&r["resource"]["attributes"], "service.name").unwrap())
        .collect();
    assert_eq!(services, ["object", "audit", "link", "event"]);
    for resource in resources {
        assert_eq!(
            string_attribute(&resource["resource"]["attributes"], "k8s.cluster.name"),
            Some("prod")
        );
        assert_eq!(resource["scopeSpans"][0]["scope"]["name"], "kelemetry");
    }
    let audit_spans = resources[1]["scopeSpans"][0]["spans"].as_array().unwrap();
    assert_eq!(audit_spans.len(), 2, "both audit spans share one resource");

    let object = &resources[0]["scopeSpans"][0]["spans"][0];
    assert_eq!(object["traceId"], batch[0].trace_id.to_string());
    assert_eq!(object["spanId"], batch[0].span_id.to_string());
    assert_eq!(object["parentSpanId"], "");
    assert_eq!(object["name"], "deployments/nginx");
    assert_eq!(object["kind"], 1);
    assert_eq!(object["startTimeUnixNano"], "1714566600000000000");
    assert_eq!(object["endTimeUnixNano"], "1714568400000000000");
    assert_eq!(
        string_attribute(&object["attributes"], "zzz-pseudoType"),
        Some("object")
    );

    let audit = &audit_spans[0];
    let trace_hex = audit["traceId"].as_str().unwrap();
    assert_eq!(trace_hex.len(), 32);
    assert!(
        trace_hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(audit["parentSpanId"], batch[0].span_id.to_string());
    assert_eq!(audit["startTimeUnixNano"], "1714566896250000000");
    assert_eq!(audit["endTimeUnixNano"], "1714566897250000000");
    assert_eq!(
        string_attribute(&audit["attributes"], "username"),
        Some("alice")
    );
    let event = &audit["events"][0];
    assert_eq!(event["name"], "spec.replicas 1 -> 3");
    assert_eq!(event["timeUnixNano"], "1714566896250000000");
    assert_eq!(
        string_attribute(&event["attributes"], "zzz-logType"),
        Some("audit/objectDiff")
    );

    // The line is also a valid OTLP message that decodes back to what was exported.
    let decoded: ExportTraceServiceRequest = serde_json::from_str(lines[0]).unwrap();
    let extra = [("k8s.cluster.name".to_owned(), "prod".to_owned())];
    assert_eq!(decoded, export_request(&batch, &extra));
}

#[tokio::test]
async fn large_batches_are_split_into_bounded_lines_and_append_keeps_old_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.jsonl");
    let exporter = JsonLinesExporter::create(&path)
        .await
        .unwrap()
        .with_spans_per_line(2);
    exporter
        .export(&spans("2024-05-01T12:00:00Z"))
        .await
        .unwrap();
    exporter.flush().await.unwrap();
    drop(exporter);
    let appender = JsonLinesExporter::append(&path).await.unwrap();
    appender
        .export(&spans("2024-05-01T13:00:00Z"))
        .await
        .unwrap();
    appender.flush().await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let counts: Vec<usize> = text
        .lines()
        .map(|line| {
            let request: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
            request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum()
        })
        .collect();
    assert_eq!(counts, [2, 2, 1, 5]);
}

#[tokio::test]
async fn opening_a_file_in_a_missing_directory_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("spans.jsonl");
    let err = JsonLinesExporter::create(&path).await.unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_exporter_is_idempotent_and_durable_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let first = spans("2024-05-01T12:00:00Z");
    let second = spans("2024-05-01T12:45:00Z");
    {
        let exporter = StoreExporter::new(SpanStore::create(dir.path()).unwrap())
            .with_durability(WriteDurability::Deferred);
        // Concurrent exports, each batch twice.
        let tasks: Vec<_> = [first.clone(), second.clone(), first.clone(), second.clone()]
            .into_iter()
            .map(|batch| {
                let exporter = exporter.clone();
                tokio::spawn(async move { exporter.export(&batch).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        exporter.export(&[]).await.unwrap();
        exporter.flush().await.unwrap();
        assert_eq!(exporter.name(), "store");
    }
    let store = SpanStore::open(dir.path()).unwrap();
    assert_eq!(store.span_count().unwrap(), 10);
    assert_eq!(store.trace_count().unwrap(), 2);
    let mut expected = first.clone();
    expected.sort_by_key(|s| s.span_id);
    assert_eq!(store.spans_of_trace(first[0].trace_id).unwrap(), expected);
    let found = store
        .find_objects(&"deployments/default/nginx".parse().unwrap(), usize::MAX)
        .unwrap();
    assert_eq!(found, vec![nginx().key]);
}

#[tokio::test(flavor = "current_thread")]
async fn store_exporter_works_on_a_current_thread_runtime_and_reports_read_only_stores() {
    let dir = tempfile::tempdir().unwrap();
    drop(SpanStore::create(dir.path()).unwrap());
    let exporter = StoreExporter::new(SpanStore::open_read_only(dir.path()).unwrap());
    let err = exporter
        .export(&spans("2024-05-01T12:00:00Z"))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(exporter);
    let writable = StoreExporter::new(SpanStore::open(dir.path()).unwrap());
    writable
        .export(&spans("2024-05-01T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(writable.store().span_count().unwrap(), 5);
}
