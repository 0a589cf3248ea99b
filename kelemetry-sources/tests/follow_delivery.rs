//! The audit-log follower's checkpoint follows what the exporters acknowledged, through a real `Pipeline`: it does
//! not move past lines whose spans are not exported yet, and lines whose spans were lost are read again at the
//! next start.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kelemetry_core::{CancellationToken, GatedExporter, Pipeline, PipelineReport};
use kelemetry_sources::{AuditLogFollower, CheckpointFile, FileCheckpoint};

fn write_lines(path: &Path, count: u32) {
    let mut file = std::fs::File::create(path).unwrap();
    for i in 0..count {
        writeln!(
            file,
            concat!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-{i}","#,
                r#""stage":"ResponseComplete","verb":"update","user":{{"username":"alice"}},"#,
                r#""objectRef":{{"resource":"configmaps","namespace":"default","name":"cm-{i}","apiVersion":"v1"}},"#,
                r#""responseStatus":{{"code":200}},"requestReceivedTimestamp":"2024-05-01T12:00:00.000000Z","#,
                r#""stageTimestamp":"2024-05-01T12:00:00.010000Z"}}"#
            ),
            i = i
        )
        .unwrap();
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<PipelineReport>,
    stats: Arc<kelemetry_core::pipeline::PipelineStats>,
}

fn start(log: &Path, checkpoint: &Path, exporter: Arc<GatedExporter>) -> Running {
    let follower = AuditLogFollower::new(log, "c")
        .with_poll_interval(Duration::from_millis(10))
        .with_checkpoint(CheckpointFile::new(checkpoint))
        .with_checkpoint_interval(Duration::from_millis(10));
    let pipeline = Pipeline::builder()
        .source(Box::new(follower))
        .exporter(exporter)
        .flush_interval(Duration::from_millis(10))
        .build();
    let stats = pipeline.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(stop.clone()));
    Running { stop, task, stats }
}

async fn checkpoint_line(path: &Path) -> Option<u64> {
    let stored: Option<FileCheckpoint> = CheckpointFile::new(path).load().await.unwrap();
    stored.map(|c| c.line)
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

fn activities(exporter: &GatedExporter) -> usize {
    exporter
        .spans()
        .iter()
        .filter(|span| span.parent_span_id.is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_waits_for_the_exporters() {
    let dir = tempfile::tempdir().unwrap();
    let (log, checkpoint) = (dir.path().join("audit.log"), dir.path().join("checkpoint"));
    write_lines(&log, 10);
    let exporter = Arc::new(GatedExporter::new(1000));
    let running = start(&log, &checkpoint, exporter.clone());

    // The pipeline took all 10 lines' records, and a good many checkpoint intervals pass: nothing is exported, so
    // nothing past the start may be stored.
    let stats = running.stats.clone();
    wait_for("the pipeline to take 10 records", async || {
        stats.records.load(std::sync::atomic::Ordering::Relaxed) == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(checkpoint_line(&checkpoint).await.unwrap_or(0), 0);

    exporter.open(1000);
    wait_for("the checkpoint past line 10", async || {
        checkpoint_line(&checkpoint).await == Some(10)
    })
    .await;
    assert_eq!(activities(&exporter), 10);
    running.stop.cancel();
    let report = running.task.await.unwrap();
    report.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_whose_spans_were_lost_are_read_again_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (log, checkpoint) = (dir.path().join("audit.log"), dir.path().join("checkpoint"));
    write_lines(&log, 10);
    let refusing = Arc::new(GatedExporter::new(1000));
    refusing.refuse(true);
    let running = start(&log, &checkpoint, refusing);
    let stats = running.stats.clone();
    wait_for("the exporter to give up on the spans", async || {
        stats
            .spans_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 20
    })
    .await;
    running.stop.cancel();
    let report = running.task.await.unwrap();
    assert_eq!(report.spans_dropped, 20, "{report}");
    assert_eq!(checkpoint_line(&checkpoint).await.unwrap_or(0), 0);

    // The next start reads the 10 lines again, and this time they are exported and checkpointed.
    let accepting = Arc::new(GatedExporter::new(1000));
    accepting.open(1000);
    let running = start(&log, &checkpoint, accepting.clone());
    wait_for("the checkpoint past line 10", async || {
        checkpoint_line(&checkpoint).await == Some(10)
    })
    .await;
    running.stop.cancel();
    running.task.await.unwrap().check().unwrap();
    assert_eq!(activities(&accepting), 10);
}
