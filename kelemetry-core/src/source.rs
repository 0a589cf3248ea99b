//! The [`Source`] and [`ActivitySink`] traits: where records come from and how they enter the pipeline.

use std::sync::Arc;

use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;

use crate::BoxError;
use crate::activity::Record;
use crate::delivery::Delivery;

/// A record a source could not use: where it was and why. The source reports it and goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Where the record was, e.g. `audit.log:17` or `webhook 10.0.0.1`.
    pub origin: String,
    /// A short, stable class of the problem, for counting (e.g. `invalid JSON`).
    pub reason: String,
    /// The details.
    pub detail: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.reason, self.detail)
    }
}

/// The pipeline stopped taking records.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("the pipeline is closed")]
pub struct SinkClosed;

/// Where a source pushes its records. `send` waits while the pipeline is busy (backpressure).
#[async_trait]
pub trait ActivitySink: Send + Sync {
    /// Hands one record to the pipeline, waiting for room.
    async fn send(&self, record: Record) -> Result<(), SinkClosed>;

    /// Hands one record of `delivery` to the pipeline, which settles the delivery's [`Receipt`] once the record's
    /// spans are exported (see [`crate::delivery`]). A record not taken (the send failed, or was cancelled while
    /// waiting for room) is no part of the delivery. A sink that does not track deliveries takes the record as
    /// delivered once accepted: that is this default.
    ///
    /// [`Receipt`]: crate::Receipt
    async fn send_tracked(&self, record: Record, delivery: &Delivery) -> Result<(), SinkClosed> {
        let _ = delivery;
        self.send(record).await
    }

    /// Reports a record the source could not use.
    fn reject(&self, rejection: Rejection);

    /// Reports how many bytes of input the source has consumed since the last call, for progress displays.
    fn progress(&self, _bytes: u64) {}
}

/// A source failed as a whole (not one bad record, which is a [`Rejection`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Reading the input failed.
    #[error("{origin}: {source}")]
    Io {
        /// What was being read.
        origin: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, with its cause.
    #[error("{origin}: {source}")]
    Other {
        /// What was being done or read.
        origin: String,
        /// The cause (a message is an error too: `"text".into()`).
        #[source]
        source: BoxError,
    },
}

impl SourceError {
    /// Reading `origin` failed.
    pub fn io(origin: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            origin: origin.into(),
            source,
        }
    }

    /// Any other failure at `origin`, keeping its cause; a `String` or `&str` is accepted as the cause too.
    pub fn other(origin: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Other {
            origin: origin.into(),
            source: source.into(),
        }
    }
}

/// Produces records until its input ends or shutdown is requested.
///
/// A source stops taking input soon after `shutdown` is cancelled, hands over what it already accepted (each
/// [`ActivitySink::send`] it makes still goes through), stores any checkpoint, and returns. The [`Pipeline`]
/// that started it keeps processing until every source has returned, within its shutdown grace period.
///
/// [`Pipeline`]: crate::Pipeline
#[async_trait]
pub trait Source: Send {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Runs the source. Returns when the input is exhausted, or soon after `shutdown` is cancelled.
    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError>;
}

/// An [`ActivitySink`] that keeps what it is given, up to a capacity (further sends fail with [`SinkClosed`]): for
/// testing a source, and for small tools. The counterpart of [`MemoryExporter`](crate::MemoryExporter).
///
/// ```
/// use std::sync::Arc;
/// use kelemetry_core::{ActivitySink, CollectingSink, Rejection};
///
/// let sink = Arc::new(CollectingSink::default());
/// sink.reject(Rejection { origin: "audit.log:3".into(), reason: "invalid JSON".into(), detail: "eof".into() });
/// sink.progress(120);
/// assert_eq!(sink.rejections().len(), 1);
/// assert_eq!(sink.progress_bytes(), 120);
/// ```
#[derive(Debug)]
pub struct CollectingSink {
    capacity: usize,
    records: std::sync::Mutex<Vec<Record>>,
    rejections: std::sync::Mutex<Vec<Rejection>>,
    progress: std::sync::atomic::AtomicU64,
}

impl Default for CollectingSink {
    /// Keeps up to a million records.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl CollectingSink {
    /// Keeps at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            records: std::sync::Mutex::default(),
            rejections: std::sync::Mutex::default(),
            progress: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The records sent so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The activities sent so far, in order.
    pub fn activities(&self) -> Vec<crate::Activity> {
        let records = self.records();
        let activities = records.into_iter().filter_map(|record| match record {
            Record::Activity(activity) => Some(*activity),
            Record::Observation(_) => None,
        });
        activities.collect()
    }

    /// The observations sent so far, in order.
    pub fn observations(&self) -> Vec<crate::Observation> {
        let records = self.records();
        let observations = records.into_iter().filter_map(|record| match record {
            Record::Observation(observation) => Some(*observation),
            Record::Activity(_) => None,
        });
        observations.collect()
    }

    /// The rejections reported so far, in order.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.rejections
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The bytes of input reported through [`ActivitySink::progress`].
    pub fn progress_bytes(&self) -> u64 {
        self.progress.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl ActivitySink for CollectingSink {
    async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        let mut records = self.records.lock().map_err(|_| SinkClosed)?;
        if records.len() >= self.capacity {
            return Err(SinkClosed);
        }
        records.push(record);
        Ok(())
    }

    fn reject(&self, rejection: Rejection) {
        if let Ok(mut rejections) = self.rejections.lock() {
            rejections.push(rejection);
        }
    }

    fn progress(&self, bytes: u64) {
        self.progress
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}
