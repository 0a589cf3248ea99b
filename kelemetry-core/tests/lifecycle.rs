//! The pipeline owns its sources' lifecycle: start, stop on cancellation, drain within the grace period, stop
//! hard, report each source's failure. Dropping a token never stops anything.

#![allow(clippy::unwrap_used)]

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use kelemetry_core::{
    Activity, ActivitySink, BodyCache, CancellationToken, Decorator, MemoryExporter, Object,
    ObjectKey, ObjectRef, Pipeline, Record, Source, SourceError, SourceKind, StopCause,
};

fn activity(n: u32) -> Record {
    let key = ObjectKey::new("c", "apps", "deployments", "default", format!("d{n}"));
    let at = "2024-05-01T12:00:00Z".parse().unwrap();
    Activity::new(
        Object::new(ObjectRef::new(key, "v1", None)),
        SourceKind::Audit,
        at,
        "alice update",
        format!("a{n}"),
    )
    .into()
}

/// How a [`TestSource`] behaves once it was asked to stop.
#[derive(Clone, Copy)]
enum OnStop {
    /// Sends `n` more records (what it had accepted), then returns.
    HandOver(u32),
    /// Never returns.
    Hang,
}

/// Sends one record at once, then waits for cancellation; or fails at once.
struct TestSource {
    name: &'static str,
    on_stop: OnStop,
    fail: bool,
}

#[async_trait]
impl Source for TestSource {
    fn name(&self) -> &str {
        self.name
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        if self.fail {
            return Err(SourceError::other(
                "test input",
                std::io::Error::other("connection refused"),
            ));
        }
        sink.send(activity(0))
            .await
            .map_err(|e| SourceError::other(self.name, e))?;
        shutdown.cancelled().await;
        match self.on_stop {
            OnStop::HandOver(n) => {
                for i in 1..=n {
                    sink.send(activity(i))
                        .await
                        .map_err(|e| SourceError::other(self.name, e))?;
                }
                Ok(())
            }
            OnStop::Hang => std::future::pending().await,
        }
    }
}

fn source(on_stop: OnStop) -> Box<dyn Source> {
    Box::new(TestSource {
        name: "test",
        on_stop,
        fail: false,
    })
}

#[tokio::test(start_paused = true)]
async fn dropping_a_token_does_not_stop_the_pipeline() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let pipeline = Pipeline::builder()
        .source(source(OnStop::HandOver(2)))
        .exporter(exporter.clone())
        .flush_interval(Duration::from_millis(10))
        .build();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));
    // Every clone of the token but the one the pipeline holds is dropped.
    drop(shutdown);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished(), "the pipeline stopped by itself");
    assert_eq!(exporter.spans().len(), 2, "the first record was processed");
    running.abort();
}

#[tokio::test(start_paused = true)]
async fn shutdown_takes_what_the_sources_hand_over() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let pipeline = Pipeline::builder()
        .source(source(OnStop::HandOver(3)))
        .exporter(exporter.clone())
        .build();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    let report = running.await.unwrap();
    assert_eq!(report.stop, StopCause::Shutdown);
    assert_eq!(report.activities, 4, "{report:?}");
    assert!(report.source_errors.is_empty(), "{report:?}");
    assert_eq!(exporter.spans().len(), 8);
}

#[tokio::test(start_paused = true)]
async fn a_source_that_does_not_stop_is_aborted_after_the_grace_and_reported() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let pipeline = Pipeline::builder()
        .source(source(OnStop::Hang))
        .exporter(exporter.clone())
        .shutdown_grace(Duration::from_millis(200))
        .build();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the grace period bounds the shutdown")
        .unwrap();
    assert_eq!(report.activities, 1);
    assert_eq!(report.source_errors.len(), 1, "{report:?}");
    assert_eq!(report.source_errors[0].source, "test");
    assert!(
        report.source_errors[0].error.contains("grace"),
        "{report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hard_stop_does_not_wait_for_the_sources() {
    let pipeline = Pipeline::builder()
        .source(source(OnStop::Hang))
        .exporter(Arc::new(MemoryExporter::new(1_000)))
        .shutdown_grace(Duration::from_secs(3600))
        .build();
    let (shutdown, hard_stop) = (CancellationToken::new(), CancellationToken::new());
    let running = tokio::spawn(pipeline.run_until(shutdown.clone(), hard_stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    hard_stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("a hard stop is immediate")
        .unwrap();
    assert_eq!(report.stop, StopCause::HardStop);
    assert_eq!(report.source_errors.len(), 1, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_live_source_stops_the_others_and_is_reported_with_its_cause() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let failing = Box::new(TestSource {
        name: "broken",
        on_stop: OnStop::HandOver(0),
        fail: true,
    });
    let pipeline = Pipeline::builder()
        .source(source(OnStop::HandOver(1)))
        .source(failing)
        .stop_when_a_source_ends(true)
        .exporter(exporter.clone())
        .build();
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        pipeline.run(CancellationToken::new()),
    )
    .await
    .expect("a live pipeline stops when a source ends");
    assert_eq!(report.stop, StopCause::SourceEnded("broken".into()));
    assert_eq!(report.source_errors.len(), 1, "{report:?}");
    assert_eq!(report.source_errors[0].source, "broken");
    assert!(
        report.source_errors[0].error.contains("connection refused"),
        "the cause is kept: {report:?}"
    );
    // The healthy source handed over what it had.
    assert_eq!(report.activities, 2, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn without_live_mode_finished_sources_end_the_run_once_their_sinks_are_gone() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let failing = Box::new(TestSource {
        name: "broken",
        on_stop: OnStop::HandOver(0),
        fail: true,
    });
    let pipeline = Pipeline::builder()
        .source(failing)
        .exporter(exporter.clone())
        .build();
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        pipeline.run(CancellationToken::new()),
    )
    .await
    .unwrap();
    assert_eq!(report.stop, StopCause::InputEnded);
    assert_eq!(report.source_errors.len(), 1);
}

/// Drops its sink after one record, then waits to be told to stop.
struct DropsItsSink;

#[async_trait]
impl Source for DropsItsSink {
    fn name(&self) -> &str {
        "drops-its-sink"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        sink.send(activity(0))
            .await
            .map_err(|e| SourceError::other("drops-its-sink", e))?;
        drop(sink);
        shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn when_every_sink_is_gone_the_sources_still_running_are_told_to_stop() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let pipeline = Pipeline::builder()
        .source(Box::new(DropsItsSink))
        .exporter(exporter.clone())
        .build();
    let report = tokio::time::timeout(
        Duration::from_secs(5),
        pipeline.run(CancellationToken::new()),
    )
    .await
    .expect("the pipeline cancels a source that outlives its input");
    assert_eq!(report.stop, StopCause::InputEnded);
    assert!(report.source_errors.is_empty(), "{report:?}");
    assert_eq!(report.activities, 1);
}

/// Panics on every activity.
struct PanickingDecorator;

#[async_trait]
impl Decorator for PanickingDecorator {
    fn name(&self) -> &str {
        "panicking"
    }

    async fn decorate(&self, _activity: &mut Activity, _bodies: &BodyCache) {
        panic!("the decorator failed on purpose");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_stage_reaches_whoever_awaits_run() {
    let pipeline = Pipeline::builder()
        .source(Box::new(DropsItsSink))
        .decorator(Arc::new(PanickingDecorator))
        .exporter(Arc::new(MemoryExporter::new(1_000)))
        .build();
    let outcome = AssertUnwindSafe(pipeline.run(CancellationToken::new()))
        .catch_unwind()
        .await;
    let Err(panic) = outcome else {
        panic!("the pipeline returned a report");
    };
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"the decorator failed on purpose")
    );
}

/// Never returns; its `dropped` sender goes when its task is dropped.
struct Endless {
    dropped: tokio::sync::oneshot::Sender<()>,
}

#[async_trait]
impl Source for Endless {
    fn name(&self) -> &str {
        "endless"
    }

    async fn run(
        self: Box<Self>,
        _sink: Arc<dyn ActivitySink>,
        _shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let _held = self.dropped;
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_of_run_stops_the_pipeline_and_its_sources() {
    let (dropped, source_gone) = tokio::sync::oneshot::channel();
    let pipeline = Pipeline::builder()
        .source(Box::new(Endless { dropped }))
        .exporter(Arc::new(MemoryExporter::new(1_000)))
        .build();
    let run = pipeline.run(CancellationToken::new());
    // The run loop is a task of its own: dropping what awaits it must not leave it (and its sources) running.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), run)
            .await
            .is_err()
    );
    let gone = tokio::time::timeout(Duration::from_secs(5), source_gone).await;
    assert!(
        matches!(gone, Ok(Err(_))),
        "the source still runs after the future of run was dropped"
    );
}
