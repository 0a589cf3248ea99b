//! Deliveries: a source's receipt settles only once the spans of its records are exported, and reports losses.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::pipeline::RetryPolicy;
use kelemetry_core::{
    Activity, CancellationToken, Delivery, ExportError, Exporter, Filter, GatedExporter,
    MemoryExporter, NotDelivered, Object, ObjectKey, ObjectRef, Pipeline, Record, SourceKind,
    SpanRecord,
};

fn activity(resource: &str, n: u32) -> Record {
    let key = ObjectKey::new("c", "", resource, "ns", format!("o{n}"));
    let at = format!("2024-05-01T12:00:{:02}Z", n % 60);
    Activity::new(
        Object::new(ObjectRef::new(key, "v1", None)),
        SourceKind::Audit,
        at.parse().unwrap(),
        "alice update",
        format!("audit-{n}"),
    )
    .into()
}

/// Fails every export permanently, or its flush.
struct FailingExporter {
    fail_export: bool,
}

#[async_trait]
impl Exporter for FailingExporter {
    fn name(&self) -> &str {
        "failing"
    }
    async fn export(&self, _batch: &[SpanRecord]) -> Result<(), ExportError> {
        match self.fail_export {
            true => Err(ExportError::permanent("no space left on device")),
            false => Ok(()),
        }
    }
    async fn flush(&self) -> Result<(), ExportError> {
        Err(ExportError::permanent("no space left on device"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_receipt_settles_only_after_every_exporter_exported_the_spans() {
    let gated = Arc::new(GatedExporter::new(10_000));
    let memory = Arc::new(MemoryExporter::new(10_000));
    let pipeline = Pipeline::builder()
        .exporter(gated.clone())
        .exporter(memory.clone())
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));

    let (delivery, mut receipt) = Delivery::new();
    for n in 0..3 {
        sink.send_tracked(activity("pods", n), &delivery)
            .await
            .unwrap();
    }
    drop(delivery);
    // Past the flush interval: the batch went out, the ungated exporter has it, the gated one waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        memory.spans().len(),
        6,
        "3 object spans and 3 activity spans"
    );
    assert!(
        futures_poll(&mut receipt).is_none(),
        "settled before the gated exporter exported"
    );

    gated.open(100);
    assert_eq!(receipt.await, Ok(()));
    assert_eq!(gated.spans().len(), 6);
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.spans_dropped, 0);
}

#[tokio::test(start_paused = true)]
async fn records_that_make_no_span_are_delivered_once_processed() {
    let memory = Arc::new(MemoryExporter::new(10_000));
    let pipeline = Pipeline::builder()
        .filter(Filter::default().exclude_resource("leases"))
        .exporter(memory.clone())
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));

    let (delivery, receipt) = Delivery::new();
    sink.send_tracked(activity("leases", 1), &delivery)
        .await
        .unwrap();
    drop(delivery);
    assert_eq!(receipt.await, Ok(()));
    assert!(memory.spans().is_empty());
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.filtered, 1);
}

#[tokio::test(start_paused = true)]
async fn a_batch_an_exporter_gave_up_on_is_reported_lost_with_its_record_count() {
    let memory = Arc::new(MemoryExporter::new(10_000));
    let pipeline = Pipeline::builder()
        .exporter(memory.clone())
        .exporter(Arc::new(FailingExporter { fail_export: true }))
        .retry(RetryPolicy::default())
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));

    let (delivery, receipt) = Delivery::new();
    for n in 0..4 {
        sink.send_tracked(activity("pods", n), &delivery)
            .await
            .unwrap();
    }
    drop(delivery);
    assert_eq!(receipt.await, Err(NotDelivered { records: 4 }));
    // The other exporter still has them: a loss anywhere is a loss.
    assert_eq!(memory.spans().len(), 8);
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.spans_dropped, 8);
    assert!(report.check().is_err());
}

#[tokio::test(start_paused = true)]
async fn records_abandoned_by_a_hard_stop_are_reported_lost() {
    let gated = Arc::new(GatedExporter::new(10_000));
    // One span a batch and one batch of queue: the stage waits on the exporter after a few records, and the rest
    // stay in the intake queue.
    let pipeline = Pipeline::builder()
        .exporter(gated.clone())
        .channel_capacity(1000)
        .exporter_queue(1)
        .batch_size(1)
        .build();
    let sink = pipeline.sink();
    let hard_stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run_until(CancellationToken::new(), hard_stop.clone()));

    let (delivery, receipt) = Delivery::new();
    for n in 0..50 {
        sink.send_tracked(activity("pods", n), &delivery)
            .await
            .unwrap();
    }
    drop(delivery);
    tokio::time::sleep(Duration::from_millis(10)).await;
    hard_stop.cancel();
    gated.open(10_000);

    let Err(NotDelivered { records: lost }) = receipt.await else {
        panic!("a hard stop with 50 records queued lost none");
    };
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(
        report.abandoned, lost,
        "the receipt counts what the report abandoned"
    );
    assert!(lost > 0 && lost < 50, "{lost}");
    let exported_activities = gated
        .spans()
        .iter()
        .filter(|span| span.parent_span_id.is_some())
        .count() as u64;
    assert_eq!(exported_activities + lost, 50);
}

#[tokio::test(start_paused = true)]
async fn a_failed_flush_counts_what_was_exported_since_as_not_written() {
    let pipeline = Pipeline::builder()
        .exporter(Arc::new(FailingExporter { fail_export: false }))
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));
    for n in 0..5 {
        sink.send(activity("pods", n)).await.unwrap();
    }
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.spans_dropped, 10);
    let failure = report.check().unwrap_err().to_string();
    assert!(failure.contains("10 spans"), "{failure}");
}

/// Polls a future once without waiting.
fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(future).poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// A pipeline whose only exporter is held at its gate, with a task sending it records.
struct Held {
    gated: Arc<GatedExporter>,
    stats: Arc<kelemetry_core::pipeline::PipelineStats>,
    running: tokio::task::JoinHandle<kelemetry_core::pipeline::PipelineReport>,
    sending: tokio::task::JoinHandle<()>,
    receipt: kelemetry_core::Receipt,
}

impl Held {
    /// Builds `pipeline` with a held exporter, sends `records` from a task (tracked), and waits until the pipeline
    /// has taken what it can: the exporter holds the first batch in its export.
    async fn start(pipeline: kelemetry_core::PipelineBuilder, records: Vec<Record>) -> Self {
        let gated = Arc::new(GatedExporter::new(10_000));
        let pipeline = pipeline.exporter(gated.clone()).build();
        let stats = pipeline.stats();
        let sink = pipeline.sink();
        let running = tokio::spawn(pipeline.run(CancellationToken::new()));
        let (delivery, receipt) = Delivery::new();
        let sending = tokio::spawn(async move {
            for record in records {
                sink.send_tracked(record, &delivery).await.unwrap();
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        Self {
            gated,
            stats,
            running,
            sending,
            receipt,
        }
    }

    /// Opens the gate and checks that every record was delivered and no span dropped; the spans exported.
    async fn release(self) -> Vec<SpanRecord> {
        self.gated.open(10_000);
        self.sending.await.unwrap();
        assert_eq!(self.receipt.await, Ok(()));
        let report = self.running.await.unwrap();
        assert_eq!(report.spans_dropped, 0);
        self.gated.spans()
    }
}

#[tokio::test(start_paused = true)]
async fn an_exporters_queue_holds_at_most_its_bytes_whatever_its_batch_count() {
    const BUDGET: usize = 8 * 1024;
    let pipeline = Pipeline::builder()
        .channel_capacity(1000)
        .batch_size(1)
        .exporter_queue(1000)
        .exporter_queue_bytes(BUDGET);
    let held = Held::start(pipeline, (0..200).map(|n| activity("pods", n)).collect()).await;
    let exporter = held.stats.exporters()[0].clone();
    let (batches, bytes) = (
        exporter.queued_batches.load(Relaxed),
        exporter.queued_bytes.load(Relaxed),
    );
    // 400 one-span batches would fit the queue's batch count; the bytes stop it long before.
    assert!(bytes > 0 && bytes <= BUDGET as u64, "{bytes} bytes queued");
    assert!((1..50).contains(&batches), "{batches} batches queued");

    assert_eq!(held.release().await.len(), 400);
    assert_eq!(exporter.queued_bytes.load(Relaxed), 0);
    assert_eq!(exporter.queued_batches.load(Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_larger_than_the_queues_bytes_goes_alone() {
    let pipeline = Pipeline::builder()
        .channel_capacity(1000)
        .batch_size(1)
        .exporter_queue(1000)
        .exporter_queue_bytes(1);
    let held = Held::start(pipeline, (0..20).map(|n| activity("pods", n)).collect()).await;
    let exporter = held.stats.exporters()[0].clone();
    // The batch in the export holds the whole budget; no other may wait.
    assert_eq!(exporter.queued_batches.load(Relaxed), 0);
    let in_export = exporter.queued_bytes.load(Relaxed);
    assert!(in_export > 1, "{in_export}");

    let spans = held.release().await;
    assert_eq!(spans.len(), 40);
    // The gauge counted the first batch's span by the same estimate, with the room its vectors had reserved (the
    // exporter keeps a copy without it).
    assert!(
        in_export >= spans[0].approximate_size() as u64,
        "{in_export}"
    );
}

/// Keeps the span count and estimated bytes of every batch it is handed.
#[derive(Default)]
struct BatchShapes {
    batches: std::sync::Mutex<Vec<(usize, usize)>>,
}

#[async_trait]
impl Exporter for BatchShapes {
    fn name(&self) -> &str {
        "shapes"
    }
    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        let bytes = batch.iter().map(SpanRecord::approximate_size).sum();
        self.batches.lock().unwrap().push((batch.len(), bytes));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_shard_hands_on_its_batch_at_its_share_of_the_queues_bytes() {
    let shapes = Arc::new(BatchShapes::default());
    // 16 KiB for the queue: a batch is handed on at 4 KiB however few spans it holds.
    let pipeline = Pipeline::builder()
        .exporter(shapes.clone())
        .shards(1)
        .batch_size(512)
        .exporter_queue_bytes(4 * 4096)
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));
    for n in 0..100 {
        sink.send(activity("pods", n)).await.unwrap();
    }
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.spans_dropped, 0);
    let batches = shapes.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().map(|(spans, _)| spans).sum::<usize>(), 200);
    // A record makes two spans of several hundred bytes each (the exported copies estimate at least 500): a batch
    // ends within one record of 4 KiB, where 512 spans would make one batch of everything.
    let smallest = batches
        .iter()
        .map(|&(spans, bytes)| bytes / spans)
        .min()
        .unwrap();
    assert!(smallest >= 500, "{batches:?}");
    assert!(batches.len() >= 25, "{batches:?}");
    assert!(
        batches.iter().all(|&(spans, _)| spans <= 4096 / 500 + 2),
        "{batches:?}"
    );
}

/// An activity whose object carries a body of about `bytes` bytes.
fn activity_with_body(n: u32, bytes: usize) -> Record {
    let key = ObjectKey::new("c", "", "configmaps", "ns", format!("o{n}"));
    let body = serde_json::json!({"metadata": {"name": format!("o{n}")}, "data": {"blob": "x".repeat(bytes)}});
    Activity::new(
        Object::with_body(ObjectRef::new(key, "v1", None), body),
        SourceKind::Audit,
        "2024-05-01T12:00:00Z".parse().unwrap(),
        "alice update",
        format!("audit-{n}"),
    )
    .into()
}

/// Sends 100 records of bodies of `body` bytes into a pipeline whose exporter is held, with `channel_bytes` of
/// intake; returns the records the pipeline took while held, then lets everything through and checks nothing was
/// lost.
async fn records_taken_while_held(channel_bytes: usize, body: usize) -> u64 {
    let pipeline = Pipeline::builder()
        .shards(1)
        .batch_size(1)
        .exporter_queue(1)
        .channel_bytes(channel_bytes);
    let records = (0..100).map(|n| activity_with_body(n, body)).collect();
    let held = Held::start(pipeline, records).await;
    let stats = held.stats.clone();
    let taken = stats.records.load(Relaxed);
    let (queued, bytes) = (
        stats.queued_records.load(Relaxed),
        stats.queued_record_bytes.load(Relaxed),
    );
    assert!(
        bytes <= channel_bytes.max(body * 2) as u64,
        "{bytes} bytes in {queued} queued records"
    );

    assert_eq!(held.release().await.len(), 200);
    assert_eq!(stats.queued_record_bytes.load(Relaxed), 0);
    taken
}

#[tokio::test(start_paused = true)]
async fn the_intake_holds_at_most_its_bytes_of_records_whatever_their_count() {
    // Bodies of 16 KiB and 128 KiB of intake: a handful of records wait, where the channel has room for 4,096.
    let taken = records_taken_while_held(128 * 1024, 16 * 1024).await;
    assert!((2..=16).contains(&taken), "{taken} records taken");
    // The same records with the default bytes: the channel's count is what stops them.
    let taken =
        records_taken_while_held(kelemetry_core::pipeline::DEFAULT_CHANNEL_BYTES, 16 * 1024).await;
    assert_eq!(taken, 100);
}

#[tokio::test(start_paused = true)]
async fn a_record_larger_than_the_intakes_bytes_goes_alone() {
    let taken = records_taken_while_held(1024, 16 * 1024).await;
    // One in the exporter's queue or export, one waiting for it in the shard, one in the intake.
    assert!((1..=4).contains(&taken), "{taken} records taken");
}
