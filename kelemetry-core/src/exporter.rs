//! The [`Exporter`] trait: where spans go.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::BoxError;
use crate::span::SpanRecord;

/// An exporter could not take a batch. The cause is kept as the error's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Worth trying again later (the backend is unreachable or overloaded).
    #[error("retryable export failure: {0}")]
    Retryable(#[source] BoxError),
    /// Trying again would fail the same way (the data or the configuration is wrong).
    #[error("permanent export failure: {0}")]
    Permanent(#[source] BoxError),
}

impl ExportError {
    /// A failure worth trying again later; a `String` or `&str` is accepted as the cause too.
    pub fn retryable(source: impl Into<BoxError>) -> Self {
        Self::Retryable(source.into())
    }

    /// A failure that trying again would repeat.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        Self::Permanent(source.into())
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// Takes batches of finished spans. Duplicates (same trace and span id) may arrive; they are identical and an
/// exporter may keep either.
#[async_trait]
pub trait Exporter: Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Exports one batch.
    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError>;

    /// How many batches the pipeline may have in [`Exporter::export`] at once (read once, when the pipeline is
    /// built; 0 counts as 1). By default 1: the batches come one at a time, in order. An exporter whose `export`
    /// waits for a remote endpoint to answer (the OTLP exporter with confirmed delivery) takes more, so that the
    /// round trips overlap; its batches may then finish in any order.
    fn concurrent_exports(&self) -> usize {
        1
    }

    /// Makes everything exported so far durable or delivered. Called at shutdown.
    async fn flush(&self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Drops every span. For benchmarks and dry runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardExporter;

#[async_trait]
impl Exporter for DiscardExporter {
    fn name(&self) -> &str {
        "discard"
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// Keeps every span in memory, up to a capacity, for tests and small tools.
#[derive(Debug)]
pub struct MemoryExporter {
    capacity: usize,
    spans: Mutex<Vec<SpanRecord>>,
}

impl MemoryExporter {
    /// Keeps at most `capacity` spans; beyond that, export fails permanently.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            spans: Mutex::new(Vec::new()),
        }
    }

    /// A copy of the spans kept so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Exporter for MemoryExporter {
    fn name(&self) -> &str {
        "memory"
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        let mut spans = self
            .spans
            .lock()
            .map_err(|_| ExportError::permanent("memory exporter poisoned"))?;
        if spans.len() + batch.len() > self.capacity {
            return Err(ExportError::permanent(format!(
                "memory exporter full ({} spans)",
                self.capacity
            )));
        }
        spans.extend_from_slice(batch);
        Ok(())
    }
}

/// A [`MemoryExporter`] behind a gate, for tests of what waits on exports (delivery receipts, checkpoints,
/// watermarks, offsets): each batch takes one permit before it is kept, so a test can hold spans in export with
/// a closed gate, let them through with [`GatedExporter::open`], or make every export give up with
/// [`GatedExporter::refuse`].
///
/// ```
/// use kelemetry_core::{Exporter, GatedExporter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let gated = GatedExporter::new(100);
/// gated.open(1);
/// gated.export(&[]).await.unwrap();
/// gated.refuse(true);
/// assert!(gated.export(&[]).await.is_err());
/// # }
/// ```
#[derive(Debug)]
pub struct GatedExporter {
    gate: tokio::sync::Semaphore,
    refusing: std::sync::atomic::AtomicBool,
    kept: MemoryExporter,
}

impl GatedExporter {
    /// A closed gate in front of a [`MemoryExporter`] keeping at most `capacity` spans.
    pub fn new(capacity: usize) -> Self {
        Self {
            gate: tokio::sync::Semaphore::new(0),
            refusing: std::sync::atomic::AtomicBool::new(false),
            kept: MemoryExporter::new(capacity),
        }
    }

    /// Lets `batches` more batches through.
    pub fn open(&self, batches: usize) {
        self.gate.add_permits(batches);
    }

    /// While `refusing`, every export fails permanently at once ("the backend refused the batch"), gate or not.
    pub fn refuse(&self, refusing: bool) {
        self.refusing
            .store(refusing, std::sync::atomic::Ordering::SeqCst);
    }

    /// A copy of the spans let through so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.kept.spans()
    }
}

#[async_trait]
impl Exporter for GatedExporter {
    fn name(&self) -> &str {
        "gated"
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ExportError::permanent("the backend refused the batch"));
        }
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| ExportError::permanent("the gate was closed for good"))?;
        permit.forget();
        self.kept.export(batch).await
    }
}
