//! The audit webhook's write-ahead log through a real pipeline: batches answered 200 are exported and then
//! removed from the log; batches whose spans an exporter drops stay in it and are replayed at the next start; a
//! log that is full answers 429 until exports make room.
#![cfg(feature = "webhook")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kelemetry_core::{
    CancellationToken, ExportError, Exporter, MemoryExporter, Pipeline, PipelineLimits,
    PipelineReport, SpanRecord, vocabulary,
};
use kelemetry_sources::webhook::{AuditWebhook, WalConfig, WebhookConfig, WebhookMetrics};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

fn event(id: &str, name: &str) -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "requestURI": format!("/api/v1/namespaces/default/configmaps/{name}"),
        "verb": "update", "user": {"username": "alice"}, "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1.34",
        "objectRef": {"resource": "configmaps", "namespace": "default", "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2024-05-01T12:00:00.100000Z",
        "stageTimestamp": "2024-05-01T12:00:00.130000Z"
    })
}

/// A batch of `events` events with audit ids `{batch}-{i}`.
fn batch(batch: usize, events: usize) -> String {
    let items: Vec<Value> = (0..events)
        .map(|i| event(&format!("{batch}-{i}"), &format!("cm-{batch}-{i}")))
        .collect();
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

/// Drops every batch (a permanent failure): nothing it is given is exported.
#[derive(Debug)]
struct FailingExporter;

#[async_trait]
impl Exporter for FailingExporter {
    fn name(&self) -> &str {
        "failing"
    }

    async fn export(&self, _batch: &[SpanRecord]) -> Result<(), ExportError> {
        Err(ExportError::permanent("disk full"))
    }
}

/// Holds every export until opened.
#[derive(Debug)]
struct GatedExporter {
    open: AtomicBool,
    inner: MemoryExporter,
}

#[async_trait]
impl Exporter for GatedExporter {
    fn name(&self) -> &str {
        "gated"
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        while !self.open.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.inner.export(batch).await
    }
}

struct Running {
    address: String,
    metrics: Arc<WebhookMetrics>,
    shutdown: CancellationToken,
    task: JoinHandle<PipelineReport>,
}

/// A pipeline with a webhook writing ahead into `wal`, exporting to `exporter`.
fn start(wal: WalConfig, exporter: Arc<dyn Exporter>) -> Running {
    let mut config = WebhookConfig::new("127.0.0.1:0".parse().unwrap(), "test");
    config.wal = Some(wal);
    let webhook = AuditWebhook::bind(config).unwrap();
    let address = format!("http://{}", webhook.local_addr());
    let metrics = webhook.metrics();
    // One shard: the tests check the order in which the webhook hands batches over (replayed ones first), and
    // one shard exports in that order; several export different objects side by side.
    let limits = PipelineLimits {
        flush_interval: Duration::from_millis(50),
        shards: 1,
        ..PipelineLimits::default()
    };
    let pipeline = Pipeline::builder()
        .limits(limits)
        .source(Box::new(webhook))
        .exporter(exporter)
        .build();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(shutdown.clone()));
    Running {
        address,
        metrics,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) -> (PipelineReport, Arc<WebhookMetrics>) {
        self.shutdown.cancel();
        (self.task.await.unwrap(), self.metrics)
    }
}

async fn post(client: &reqwest::Client, address: &str, body: String) -> reqwest::Response {
    client
        .post(format!("{address}/audit"))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The audit ids of the activity spans in `spans`.
fn audit_ids(spans: &[SpanRecord]) -> BTreeSet<String> {
    spans
        .iter()
        .filter_map(|span| span.attribute(vocabulary::AUDIT_ID))
        .map(str::to_owned)
        .collect()
}

fn expected_ids(batches: usize, events: usize) -> BTreeSet<String> {
    (0..batches)
        .flat_map(|b| (0..events).map(move |i| format!("{b}-{i}")))
        .collect()
}

/// The segment files in the log's folder.
fn segments(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_batches_leave_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("wal");
    let exporter = Arc::new(MemoryExporter::new(1_000_000));
    let running = start(WalConfig::new(&folder), exporter.clone());
    let client = reqwest::Client::new();
    let mut posts = Vec::new();
    for b in 0..8 {
        let (client, address) = (client.clone(), running.address.clone());
        posts.push(tokio::spawn(async move {
            post(&client, &address, batch(b, 5)).await.status().as_u16()
        }));
    }
    for answer in posts {
        assert_eq!(answer.await.unwrap(), 200);
    }
    // Answered 200: on disk before any export. Once exported, acknowledged; the segment still being written stays.
    assert_eq!(segments(&folder).len(), 1);
    let (report, metrics) = running.stop().await;
    assert_eq!(report.spans_dropped, 0);
    assert_eq!(audit_ids(&exporter.spans()), expected_ids(8, 5));
    let counts = metrics.snapshot();
    assert_eq!(
        (
            counts.wal_batches,
            counts.batches_accepted,
            counts.events_delivered
        ),
        (8, 8, 40)
    );
    assert!(
        (1..=8).contains(&counts.wal_syncs),
        "{} syncs",
        counts.wal_syncs
    );
    assert_eq!(
        (counts.replayed_batches, counts.batches_not_delivered),
        (0, 0)
    );
    // Everything acknowledged: the log is empty after a clean stop.
    assert_eq!(segments(&folder), Vec::<String>::new());
    assert_eq!(counts.wal_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_not_exported_are_replayed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("wal");
    let client = reqwest::Client::new();

    // First run: every export fails; the batches were answered 200, so they must not be lost.
    let running = start(WalConfig::new(&folder), Arc::new(FailingExporter));
    for b in 0..3 {
        let answer = post(&client, &running.address, batch(b, 4)).await;
        assert_eq!(answer.status().as_u16(), 200);
    }
    let (report, metrics) = running.stop().await;
    assert!(report.spans_dropped > 0);
    let counts = metrics.snapshot();
    assert_eq!(
        (counts.batches_not_delivered, counts.events_not_delivered),
        (3, 12)
    );
    assert_eq!(segments(&folder).len(), 1, "kept for the next start");

    // Second run: replayed before anything new, exported, and the log emptied.
    let exporter = Arc::new(MemoryExporter::new(1_000_000));
    let running = start(WalConfig::new(&folder), exporter.clone());
    let answer = post(&client, &running.address, batch(3, 4)).await;
    assert_eq!(answer.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while audit_ids(&exporter.spans()).len() < 16 {
        assert!(Instant::now() < deadline, "not exported within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // In the order handed over: the three replayed batches, then the new one.
    let order: Vec<String> = exporter
        .spans()
        .iter()
        .filter_map(|span| span.attribute(vocabulary::AUDIT_ID))
        .map(|id| id.split('-').next().unwrap_or_default().to_owned())
        .collect();
    let first_new = order.iter().position(|b| b == "3").unwrap();
    assert!(order[first_new..].iter().all(|b| b == "3"), "{order:?}");
    let (report, metrics) = running.stop().await;
    assert_eq!(report.spans_dropped, 0);
    assert_eq!(audit_ids(&exporter.spans()), expected_ids(4, 4));
    let counts = metrics.snapshot();
    assert_eq!((counts.replayed_batches, counts.replayed_events), (3, 12));
    assert_eq!(counts.wal_batches, 1);
    assert_eq!(segments(&folder), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_answers_429_until_exports_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("wal");
    let exporter = Arc::new(GatedExporter {
        open: AtomicBool::new(false),
        inner: MemoryExporter::new(1_000_000),
    });
    let body_len = batch(0, 5).len();
    // Room for about six batches: two segments of three.
    let mut wal = WalConfig::new(&folder);
    wal.max_bytes = 6 * (body_len + 64);
    wal.segment_bytes = 3 * (body_len + 64);
    let running = start(wal, exporter.clone());
    let client = reqwest::Client::new();
    let mut accepted = 0;
    let refused = loop {
        let answer = post(&client, &running.address, batch(accepted, 5)).await;
        if answer.status().as_u16() != 200 {
            break answer;
        }
        accepted += 1;
        assert!(accepted <= 6, "the log must fill");
    };
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.text().await.unwrap(), "write-ahead log full\n");
    assert_eq!(running.metrics.snapshot().wal_full, 1);

    // Exports make room again.
    exporter.open.store(true, Relaxed);
    let mut next = accepted;
    let deadline = Instant::now() + Duration::from_secs(20);
    while post(&client, &running.address, batch(next, 5))
        .await
        .status()
        .as_u16()
        != 200
    {
        assert!(Instant::now() < deadline, "no room in the log after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    next += 1;
    let (report, metrics) = running.stop().await;
    assert_eq!(report.spans_dropped, 0);
    assert_eq!(audit_ids(&exporter.inner.spans()), expected_ids(next, 5));
    assert_eq!(metrics.snapshot().wal_batches, next as u64);
    assert_eq!(segments(&folder), Vec::<String>::new());
}
