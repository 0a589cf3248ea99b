//! The pipeline end to end, in memory.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use kelemetry_core::pipeline::RetryPolicy;
use kelemetry_core::{
    Activity, CancellationToken, ExportError, Exporter, Link, LinkError, Linker, MemoryExporter,
    Object, ObjectKey, ObjectLookup, ObjectRef, Observation, Pipeline, Record, Rejection,
    SourceKind, SpanKind, SpanRecord,
};
use serde_json::json;

/// Links `pods/x` to `replicasets/<label rs>` and `replicasets/y` to `deployments/<label d>`, from the body.
struct LabelLinker;

#[async_trait]
impl Linker for LabelLinker {
    fn name(&self) -> &str {
        "label"
    }
    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        let body = match &object.body {
            Some(b) => b.clone(),
            None => match lookup.body(&object.object_ref).await {
                Some(b) => b,
                None => return Ok(vec![]),
            },
        };
        let key = object.key();
        let Some(owner) = body
            .pointer("/metadata/labels/owner")
            .and_then(|v| v.as_str())
        else {
            return Ok(vec![]);
        };
        let (resource, name) = owner.split_once('/').unwrap_or(("", owner));
        Ok(vec![
            Link::parent(ObjectRef::new(
                ObjectKey::new(&key.cluster, "apps", resource, &key.namespace, name),
                "v1",
                None,
            ))
            .with_class("children")
            .with_dedup_id("label"),
        ])
    }
}

fn object(resource: &str, name: &str, owner: Option<&str>) -> Object {
    let key = ObjectKey::new(
        "c",
        if resource == "pods" { "" } else { "apps" },
        resource,
        "ns",
        name,
    );
    let body = match owner {
        Some(owner) => json!({"metadata": {"name": name, "labels": {"owner": owner}}}),
        None => json!({"metadata": {"name": name}}),
    };
    Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body))
}

fn activity(object: Object, at: &str, id: &str) -> Record {
    Activity::new(
        object,
        SourceKind::Audit,
        at.parse().unwrap(),
        format!("alice {id}"),
        id,
    )
    .into()
}

async fn run(
    records: Vec<Record>,
    exporter: Arc<dyn Exporter>,
    depth: usize,
) -> kelemetry_core::PipelineReport {
    let pipeline = Pipeline::builder()
        .linker(Arc::new(LabelLinker))
        .exporter(exporter)
        .max_link_depth(depth)
        .channel_capacity(2)
        .batch_size(3)
        .build();
    let sink = pipeline.sink();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown));
    for record in records {
        sink.send(record).await.unwrap();
    }
    sink.reject(Rejection {
        origin: "test:1".into(),
        reason: "invalid JSON".into(),
        detail: "expected value".into(),
    });
    drop(sink);
    running.await.unwrap()
}

fn chain() -> Vec<Record> {
    vec![
        Observation {
            object: object("replicasets", "rs", Some("deployments/d")),
            time: "2024-01-01T10:00:00Z".parse().unwrap(),
        }
        .into(),
        activity(
            object("pods", "p", Some("replicasets/rs")),
            "2024-01-01T10:01:00Z",
            "a1",
        ),
        activity(
            object("pods", "p", Some("replicasets/rs")),
            "2024-01-01T10:02:00Z",
            "a2",
        ),
        // A later window: a new object span, linked again.
        activity(
            object("pods", "p", Some("replicasets/rs")),
            "2024-01-01T10:31:00Z",
            "a3",
        ),
    ]
}

fn by_kind(spans: &[SpanRecord], kind: &SpanKind) -> usize {
    spans.iter().filter(|s| &s.kind == kind).count()
}

#[tokio::test]
async fn links_are_written_both_ways_and_cascade() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let report = run(chain(), exporter.clone(), 8).await;
    let spans = exporter.spans();
    assert_eq!(report.activities, 3);
    assert_eq!(report.observations, 1);
    assert_eq!(report.rejected, 1);
    assert_eq!(report.rejections_by_reason.get("invalid JSON"), Some(&1));
    // Window 1: rs, d, p; window 2: p, rs, d.
    assert_eq!(by_kind(&spans, &SpanKind::Object), 6, "{spans:#?}");
    // Window 1: rs<->d, p<->rs; window 2: p<->rs, rs<->d (rs's body comes from the cache).
    assert_eq!(by_kind(&spans, &SpanKind::Link), 8);
    assert_eq!(report.spans() as usize, spans.len());
    // Every link span has a mirror in the other object's trace.
    for link in spans.iter().filter(|s| s.kind == SpanKind::Link) {
        let owner = link.object_key().unwrap();
        let other = link.linked_key().unwrap();
        let role = link.link_role().unwrap();
        assert!(
            spans.iter().any(|s| s.kind == SpanKind::Link
                && s.object_key().as_ref() == Some(&other)
                && s.linked_key().as_ref() == Some(&owner)
                && s.link_role() == Some(role.reversed())
                && s.start == link.start),
            "no mirror of {owner} -> {other}"
        );
        assert_eq!(link.parent_span_id, Some(link.trace_id.object_span()));
    }
    // Activities hang under their object span of the right window.
    for span in spans
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Activity(_)))
    {
        let root = spans
            .iter()
            .find(|s| s.kind == SpanKind::Object && s.trace_id == span.trace_id)
            .expect("object span of the activity's trace");
        assert!(root.start <= span.start && span.start < root.end);
    }
}

#[tokio::test]
async fn the_depth_limit_stops_cascades() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    // A pod seen without its ReplicaSet's body: depth 1 allows the pod -> rs hop only.
    let records = vec![activity(
        object("pods", "p", Some("replicasets/rs")),
        "2024-01-01T10:01:00Z",
        "a1",
    )];
    run(records, exporter.clone(), 1).await;
    let spans = exporter.spans();
    assert_eq!(by_kind(&spans, &SpanKind::Object), 2);
    assert_eq!(by_kind(&spans, &SpanKind::Link), 2);
}

#[tokio::test]
async fn replaying_gives_the_same_span_ids() {
    let first = Arc::new(MemoryExporter::new(1_000));
    let second = Arc::new(MemoryExporter::new(1_000));
    run(chain(), first.clone(), 8).await;
    run(chain(), second.clone(), 8).await;
    let ids = |spans: Vec<SpanRecord>| {
        let mut ids: Vec<_> = spans.into_iter().map(|s| (s.trace_id, s.span_id)).collect();
        ids.sort();
        ids
    };
    let (a, b) = (ids(first.spans()), ids(second.spans()));
    assert_eq!(a, b);
    let mut unique = a.clone();
    unique.dedup();
    assert_eq!(unique.len(), a.len(), "no duplicates within one run");
}

/// Fails the first `failures` calls with a retryable error (a backend outage the real backends cannot be made to
/// show on cue in a unit test), then keeps the spans.
struct FlakyExporter {
    failures: AtomicU32,
    inner: MemoryExporter,
    permanent: bool,
}

#[async_trait]
impl Exporter for FlakyExporter {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(if self.permanent {
                ExportError::permanent("bad")
            } else {
                ExportError::retryable("down")
            });
        }
        self.inner.export(batch).await
    }
}

#[tokio::test]
async fn retryable_failures_are_retried_and_permanent_ones_counted() {
    let flaky = Arc::new(FlakyExporter {
        failures: AtomicU32::new(2),
        inner: MemoryExporter::new(1_000),
        permanent: false,
    });
    let pipeline = Pipeline::builder()
        .exporter(flaky.clone())
        .retry(RetryPolicy {
            attempts: 5,
            initial_backoff: std::time::Duration::from_millis(1),
            max_backoff: std::time::Duration::from_millis(2),
        })
        .build();
    let sink = pipeline.sink();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown));
    sink.send(activity(
        object("pods", "p", None),
        "2024-01-01T10:01:00Z",
        "a1",
    ))
    .await
    .unwrap();
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.spans_dropped, 0);
    assert_eq!(flaky.inner.spans().len(), 2);

    let broken = Arc::new(FlakyExporter {
        failures: AtomicU32::new(1),
        inner: MemoryExporter::new(1_000),
        permanent: true,
    });
    let pipeline = Pipeline::builder().exporter(broken.clone()).build();
    let sink = pipeline.sink();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown));
    sink.send(activity(
        object("pods", "p", None),
        "2024-01-01T10:01:00Z",
        "a1",
    ))
    .await
    .unwrap();
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.spans_dropped, 2);
}

#[tokio::test]
async fn shutdown_drains_what_was_accepted() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let pipeline = Pipeline::builder().exporter(exporter.clone()).build();
    let sink = pipeline.sink();
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    for i in 0..10 {
        sink.send(activity(
            object("pods", "p", None),
            "2024-01-01T10:01:00Z",
            &format!("a{i}"),
        ))
        .await
        .unwrap();
    }
    trigger.cancel();
    // The sink is still held: shutdown alone must end the run, after draining the ten buffered records.
    let report = pipeline.run(shutdown).await;
    assert_eq!(report.activities, 10);
    assert_eq!(exporter.spans().len(), 11);
    assert!(
        sink.send(activity(
            object("pods", "p", None),
            "2024-01-01T10:01:00Z",
            "late"
        ))
        .await
        .is_err()
    );
}

/// Takes up to `concurrent` batches at once ([`Exporter::concurrent_exports`]); each export waits until that many
/// are in (or a while), as a remote endpoint's round trips would overlap, and notes the most it saw at once.
struct OverlappingExporter {
    concurrent: usize,
    exporting: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
    inner: MemoryExporter,
}

#[async_trait]
impl Exporter for OverlappingExporter {
    fn name(&self) -> &str {
        "overlapping"
    }

    fn concurrent_exports(&self) -> usize {
        self.concurrent
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        let now = self.exporting.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.arrived.notify_waiters();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
        while self.exporting.load(Ordering::SeqCst) < self.concurrent {
            let arrived = self.arrived.notified();
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        let result = self.inner.export(batch).await;
        self.exporting.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_gets_as_many_batches_at_once_as_it_takes_and_no_more() {
    for concurrent in [1, 3] {
        let exporter = Arc::new(OverlappingExporter {
            concurrent,
            exporting: Default::default(),
            most: Default::default(),
            arrived: tokio::sync::Notify::new(),
            inner: MemoryExporter::new(1_000),
        });
        let pipeline = Pipeline::builder()
            .exporter(exporter.clone())
            .batch_size(1)
            .build();
        let sink = pipeline.sink();
        let running = tokio::spawn(pipeline.run(CancellationToken::new()));
        for i in 0..12 {
            sink.send(activity(
                object("pods", &format!("p{i}"), None),
                "2024-01-01T10:01:00Z",
                &format!("a{i}"),
            ))
            .await
            .unwrap();
        }
        drop(sink);
        let report = running.await.unwrap();
        assert_eq!(report.spans_dropped, 0);
        assert_eq!(exporter.inner.spans().len(), 24, "every span exported");
        assert_eq!(
            exporter.most.load(Ordering::SeqCst),
            concurrent,
            "batches in export at once"
        );
    }
}
