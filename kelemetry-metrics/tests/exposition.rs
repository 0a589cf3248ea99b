//! The metrics as a scraper reads them: rendered, parsed back with a Prometheus text parser, and checked to the
//! exact count against what was fed in (a real pipeline run, audit events through a real `AuditMapping`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::audit::{AuditMapping, parse_document};
use kelemetry_core::{
    Activity, ActivitySink, CancellationToken, GatedExporter, MemoryExporter, Object, ObjectKey,
    ObjectRef, Pipeline, PipelineLimits, Rejection, Source, SourceError, SourceKind,
};
use kelemetry_metrics::{
    AuditLabel, AuditMetricsConfig, AuditRequests, MAX_LABEL_BYTES, Metrics, PipelineCollector,
};
use kelemetry_testkit::scrape::{parse, value};

/// One audit event line at `stage`, with `latency_ms` between its timestamps.
fn audit_line(
    verb: &str,
    resource: &str,
    user: &str,
    code: u16,
    stage: &str,
    latency_ms: u64,
) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"id-{verb}-{resource}","stage":"{stage}",
        "verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"{resource}","namespace":"ns","name":"x"}},
        "responseStatus":{{"code":{code}}},"requestReceivedTimestamp":"2024-05-01T12:00:00Z",
        "stageTimestamp":"2024-05-01T12:00:00.{latency_ms:03}Z"}}"#
    )
}

fn feed(mapping: &AuditMapping, line: &str, cluster: &str) {
    for event in parse_document(line.as_bytes()).expect("an audit event") {
        let _ = mapping.map(event, cluster);
    }
}

#[test]
fn audit_requests_are_counted_exactly_within_the_cap_and_the_rest_under_other() {
    let config = AuditMetricsConfig::new(
        vec![
            AuditLabel::Cluster,
            AuditLabel::Verb,
            AuditLabel::Resource,
            AuditLabel::User,
            AuditLabel::Code,
        ],
        3,
    );
    let requests = Arc::new(AuditRequests::new(&config));
    let mapping = AuditMapping::default().with_observer(requests.clone());
    // Three combinations fill the cap: get pods (x4, one at RequestReceived not counted), list pods, create
    // deployments 201.
    for latency in [3, 40, 250] {
        feed(
            &mapping,
            &audit_line("get", "pods", "alice", 200, "ResponseComplete", latency),
            "prod",
        );
    }
    feed(
        &mapping,
        &audit_line("get", "pods", "alice", 200, "RequestReceived", 0),
        "prod",
    );
    feed(
        &mapping,
        &audit_line("list", "pods", "alice", 200, "ResponseComplete", 7),
        "prod",
    );
    feed(
        &mapping,
        &audit_line("create", "deployments", "bob", 201, "ResponseComplete", 120),
        "prod",
    );
    // Two more combinations, five requests: all under `other`.
    for _ in 0..3 {
        feed(
            &mapping,
            &audit_line("delete", "deployments", "bob", 200, "ResponseComplete", 9),
            "prod",
        );
    }
    feed(
        &mapping,
        &audit_line("get", "pods", "alice", 200, "ResponseComplete", 1),
        "staging",
    );
    feed(
        &mapping,
        &audit_line("get", "pods", "alice", 200, "Panic", 999),
        "staging",
    );
    // A known combination still counts as itself once the cap is reached.
    feed(
        &mapping,
        &audit_line("list", "pods", "alice", 200, "ResponseComplete", 5),
        "prod",
    );

    assert_eq!(requests.overflow(), 5);
    assert_eq!(requests.untimed(), 0);
    let series = requests.snapshot();
    assert_eq!(
        series.len(),
        4,
        "three combinations and `other`: {series:#?}"
    );

    let mut metrics = Metrics::new();
    metrics.register(requests.clone());
    let text = metrics.render().expect("rendered");
    let scrape = parse(&text);
    let get_pods = [
        ("cluster", "prod"),
        ("verb", "get"),
        ("resource", "pods"),
        ("user", "alice"),
        ("code", "200"),
    ];
    assert_eq!(
        value(&scrape, "kelemetry_audit_requests_total", &get_pods),
        3.0
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_audit_request_duration_seconds_count",
            &get_pods
        ),
        3.0
    );
    assert!(
        (value(
            &scrape,
            "kelemetry_audit_request_duration_seconds_sum",
            &get_pods
        ) - 0.293)
            .abs()
            < 1e-9
    );
    // 3 ms and 40 ms are at or under 0.05 s; 250 ms is in the 0.25 bucket.
    assert!(text.contains(
        "kelemetry_audit_request_duration_seconds_bucket{cluster=\"prod\",verb=\"get\",resource=\"pods\",\
         user=\"alice\",code=\"200\",le=\"0.05\"} 2\n"
    ));
    assert!(text.contains(
        "kelemetry_audit_request_duration_seconds_bucket{cluster=\"prod\",verb=\"get\",resource=\"pods\",\
         user=\"alice\",code=\"200\",le=\"0.25\"} 3\n"
    ));
    let list_pods = [("verb", "list"), ("resource", "pods")];
    assert_eq!(
        value(&scrape, "kelemetry_audit_requests_total", &list_pods),
        2.0
    );
    let create = [
        ("verb", "create"),
        ("resource", "deployments"),
        ("user", "bob"),
        ("code", "201"),
    ];
    assert_eq!(
        value(&scrape, "kelemetry_audit_requests_total", &create),
        1.0
    );
    let other = [
        ("cluster", "other"),
        ("verb", "other"),
        ("resource", "other"),
        ("user", "other"),
        ("code", "other"),
    ];
    assert_eq!(
        value(&scrape, "kelemetry_audit_requests_total", &other),
        5.0
    );
    assert_eq!(
        value(&scrape, "kelemetry_audit_request_overflow_total", &[]),
        5.0
    );
    assert_eq!(value(&scrape, "kelemetry_audit_request_series", &[]), 4.0);
    assert_eq!(
        value(&scrape, "kelemetry_audit_request_series_limit", &[]),
        3.0
    );
}

#[test]
fn a_hostile_label_value_is_cut_and_a_missing_timestamp_is_counted_untimed() {
    let requests = Arc::new(AuditRequests::new(&AuditMetricsConfig::new(
        vec![AuditLabel::User],
        10,
    )));
    let mapping = AuditMapping::default().with_observer(requests.clone());
    // 200 two-byte characters: cut at 128 bytes, on a character boundary.
    let user = "é".repeat(200);
    feed(
        &mapping,
        &audit_line("get", "pods", &user, 200, "ResponseComplete", 5),
        "c",
    );
    let untimed = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"u","stage":"ResponseComplete","verb":"get",
        "user":{"username":"carol"},"objectRef":{"resource":"pods"}}"#;
    feed(&mapping, untimed, "c");
    let series = requests.snapshot();
    assert_eq!(series.len(), 2);
    let cut = &series[1].labels[0].1;
    assert_eq!(cut.len(), MAX_LABEL_BYTES);
    assert_eq!(cut.chars().count(), MAX_LABEL_BYTES / 2);
    assert_eq!(
        (
            series[0].labels[0].1.as_str(),
            series[0].requests,
            series[0].latency.count
        ),
        ("carol", 1, 0)
    );
    assert_eq!(requests.untimed(), 1);
}

/// A source that sends `activities` activities and reports `rejections` rejections, then ends.
struct ScriptedSource {
    activities: usize,
    rejections: usize,
}

#[async_trait]
impl Source for ScriptedSource {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        _: CancellationToken,
    ) -> Result<(), SourceError> {
        let at: jiff::Timestamp = "2024-05-01T12:00:00Z".parse().expect("a time");
        for i in 0..self.activities {
            let key = ObjectKey::new("c", "apps", "deployments", "ns", format!("d{i}"));
            let activity = Activity::new(
                Object::new(ObjectRef::new(key, "v1", None)),
                SourceKind::Audit,
                at,
                "alice update",
                format!("a{i}"),
            );
            if sink.send(activity.into()).await.is_err() {
                break;
            }
        }
        for i in 0..self.rejections {
            sink.reject(Rejection {
                origin: format!("script:{i}"),
                reason: if i % 2 == 0 {
                    "invalid JSON"
                } else {
                    "truncated JSON"
                }
                .to_owned(),
                detail: "scripted".to_owned(),
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_pipeline_run_shows_in_its_metrics_to_the_count() {
    let limits = PipelineLimits {
        batch_size: 4,
        ..PipelineLimits::default()
    };
    let memory = Arc::new(MemoryExporter::new(10_000));
    let pipeline = Pipeline::builder()
        .limits(limits.clone())
        .exporter(memory.clone())
        .source(Box::new(ScriptedSource {
            activities: 10,
            rejections: 3,
        }))
        .build();
    let mut metrics = Metrics::new();
    metrics.register(PipelineCollector::new(&pipeline, &limits));
    let sink = pipeline.sink();
    sink.reject(Rejection {
        origin: "here".into(),
        reason: "invalid JSON".into(),
        detail: "by hand".into(),
    });
    drop(sink);
    let report = pipeline.run(CancellationToken::new()).await;
    assert_eq!(report.activities, 10);

    let scrape = parse(&metrics.render().expect("rendered"));
    assert_eq!(
        value(&scrape, "kelemetry_pipeline_records_total", &[]),
        10.0
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_pipeline_spans_total",
            &[("kind", "object")]
        ),
        10.0
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_pipeline_spans_total",
            &[("kind", "activity")]
        ),
        10.0
    );
    let rejected = |source: &str, reason: &str| {
        value(
            &scrape,
            "kelemetry_pipeline_rejections_total",
            &[("source", source), ("reason", reason)],
        )
    };
    assert_eq!(rejected("scripted", "invalid JSON"), 2.0);
    assert_eq!(rejected("scripted", "truncated JSON"), 1.0);
    assert_eq!(rejected("sink", "invalid JSON"), 1.0);
    // Every record made spans that the one exporter took: each is in the ingest-to-export histogram once.
    assert_eq!(
        value(
            &scrape,
            "kelemetry_pipeline_ingest_to_export_seconds_count",
            &[]
        ),
        10.0
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_exporter_spans_total",
            &[("exporter", "memory")]
        ),
        20.0
    );
    assert_eq!(memory.spans().len(), 20);
    let batches = value(
        &scrape,
        "kelemetry_exporter_batches_total",
        &[("exporter", "memory")],
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_exporter_export_seconds_count",
            &[("exporter", "memory")]
        ),
        batches
    );
    assert!(
        batches >= 5.0,
        "{batches} batches of at most 4 spans (and whole records)"
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_exporter_spans_dropped_total",
            &[("exporter", "memory")]
        ),
        0.0
    );
    assert_eq!(value(&scrape, "kelemetry_pipeline_queue_records", &[]), 0.0);
    assert_eq!(value(&scrape, "kelemetry_pipeline_queue_bytes", &[]), 0.0);
    assert_eq!(
        value(&scrape, "kelemetry_pipeline_queue_capacity_bytes", &[]),
        limits.channel_bytes as f64
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_exporter_queue_batches",
            &[("exporter", "memory")]
        ),
        0.0
    );
    assert_eq!(value(&scrape, "kelemetry_body_cache_objects", &[]), 0.0);
    assert_eq!(
        value(
            &scrape,
            "kelemetry_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

/// Fails its first `failures` tries with a retryable error, then takes every batch.
#[derive(Debug)]
struct FlakyExporter {
    failures: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl kelemetry_core::Exporter for FlakyExporter {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn export(
        &self,
        _: &[kelemetry_core::SpanRecord],
    ) -> Result<(), kelemetry_core::ExportError> {
        let left = self
            .failures
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        match left {
            Ok(_) => Err(kelemetry_core::ExportError::retryable("not yet")),
            Err(_) => Ok(()),
        }
    }
}

use std::sync::atomic::Ordering::Relaxed;

#[tokio::test]
async fn held_refused_and_flaky_exporters_show_their_queue_drops_and_retries() {
    let limits = PipelineLimits {
        batch_size: 1,
        exporter_queue: 4,
        ..PipelineLimits::default()
    };
    let gated = Arc::new(GatedExporter::new(100));
    let flaky = Arc::new(FlakyExporter { failures: 2.into() });
    let pipeline = Pipeline::builder()
        .limits(limits.clone())
        .retry(kelemetry_core::RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        })
        .exporter(gated.clone())
        .exporter(flaky)
        .source(Box::new(ScriptedSource {
            activities: 3,
            rejections: 0,
        }))
        .build();
    let mut metrics = Metrics::new();
    metrics.register(PipelineCollector::new(&pipeline, &limits));
    let stats = pipeline.stats();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));
    // Three records, each its own batch of two spans: the first is held at the gate, two wait in the queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.exporters()[0].queued_batches.load(Relaxed) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            metrics.render().unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let scrape = parse(&metrics.render().expect("rendered"));
    assert_eq!(
        value(
            &scrape,
            "kelemetry_exporter_queue_batches",
            &[("exporter", "gated")]
        ),
        2.0
    );
    assert_eq!(
        value(&scrape, "kelemetry_exporter_queue_capacity_batches", &[]),
        4.0
    );
    // Three batches of two spans are held: one in the export, two queued.
    let held = stats.exporters()[0].queued_bytes.load(Relaxed);
    assert!(held > 6 * 100, "{held}");
    assert_eq!(
        value(
            &scrape,
            "kelemetry_exporter_queue_bytes",
            &[("exporter", "gated")]
        ),
        held as f64
    );
    assert_eq!(
        value(&scrape, "kelemetry_exporter_queue_capacity_bytes", &[]),
        limits.exporter_queue_bytes as f64
    );
    // The held batch goes through; the two queued ones are refused (permanently: no retries) and dropped.
    gated.refuse(true);
    gated.open(1);
    let report = running.await.expect("the pipeline ran");
    assert_eq!(report.spans_dropped, 4);
    let scrape = parse(&metrics.render().expect("rendered"));
    let gated_value = |name: &str| value(&scrape, name, &[("exporter", "gated")]);
    assert_eq!(gated_value("kelemetry_exporter_batches_total"), 1.0);
    assert_eq!(gated_value("kelemetry_exporter_spans_total"), 2.0);
    assert_eq!(gated_value("kelemetry_exporter_spans_dropped_total"), 4.0);
    assert_eq!(gated_value("kelemetry_exporter_retries_total"), 0.0);
    assert_eq!(gated_value("kelemetry_exporter_queue_batches"), 0.0);
    assert_eq!(gated_value("kelemetry_exporter_queue_bytes"), 0.0);
    let flaky_value = |name: &str| value(&scrape, name, &[("exporter", "flaky")]);
    assert_eq!(flaky_value("kelemetry_exporter_batches_total"), 3.0);
    assert_eq!(flaky_value("kelemetry_exporter_retries_total"), 2.0);
    assert_eq!(flaky_value("kelemetry_exporter_spans_dropped_total"), 0.0);
    assert_eq!(
        value(&scrape, "kelemetry_pipeline_spans_dropped_total", &[]),
        4.0
    );
    // Only the batch both exporters took counts from ingest to export.
    assert_eq!(
        value(
            &scrape,
            "kelemetry_pipeline_ingest_to_export_seconds_count",
            &[]
        ),
        1.0
    );
}
