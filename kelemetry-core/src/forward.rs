//! [`RecordForwarder`]: where a pipeline in the `ingest` role hands its records, instead of making spans of them.
//!
//! A fleet splits the work in two: `ingest` processes run the sources near each cluster and forward every record
//! (filtered and redacted, nothing else) to a queue; `process` processes read the queue, diff and link, and make
//! the spans. A pipeline built with [`PipelineBuilder::forward`](crate::PipelineBuilder::forward) does the first
//! half: its decorators, linkers and exporters are not used. A record's [`Delivery`](crate::Delivery) settles once the
//! forwarder's [`Acknowledgement`] does, so a webhook answers 200, and a follower moves its checkpoint, only once the
//! queue holds the record durably.
//!
//! The Kafka forwarder lives in `kelemetry-sources` (feature `kafka`); [`MemoryForwarder`] is for tests.
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry_core::{Activity, CancellationToken, Object, ObjectKey, ObjectRef, Pipeline, Record, SourceKind};
//! use kelemetry_core::forward::MemoryForwarder;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let forwarder = Arc::new(MemoryForwarder::default());
//! let pipeline = Pipeline::builder().forward(forwarder.clone()).build();
//! let sink = pipeline.sink();
//! let key = ObjectKey::new("prod", "", "pods", "default", "web-1");
//! let at: jiff::Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
//! sink.send(Record::from(Activity::new(Object::new(ObjectRef::new(key, "v1", None)), SourceKind::Audit, at,
//!     "alice create", "a1"))).await.unwrap();
//! drop(sink);
//! let report = pipeline.run(CancellationToken::new()).await;
//! assert_eq!(report.forwarded, 1);
//! assert_eq!(forwarder.records().len(), 1);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use async_trait::async_trait;

use crate::BoxError;
use crate::activity::Record;

/// Settles `Ok` once the far side holds the record durably, `Err` when it will not (the record counts as lost).
pub type Acknowledgement = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Hands records on to another process (through a durable queue) instead of making spans of them.
#[async_trait]
pub trait RecordForwarder: Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Queues `record` to be sent and returns its acknowledgement. Waits while the forwarder's own queue is full
    /// (the back-pressure the sources feel); a record that cannot be queued at all gets an acknowledgement that
    /// settles `Err` at once.
    async fn forward(&self, record: Record) -> Acknowledgement;

    /// Sends what is queued and waits for the answers, at most `timeout` (at shutdown, after the last record).
    async fn flush(&self, timeout: Duration) -> Result<(), BoxError>;
}

/// Keeps every record it is given, up to a capacity; refuses them all while [`MemoryForwarder::refuse`] is on.
#[derive(Debug)]
pub struct MemoryForwarder {
    capacity: usize,
    records: Mutex<Vec<Record>>,
    refusing: AtomicBool,
}

impl Default for MemoryForwarder {
    /// Keeps up to a million records.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl MemoryForwarder {
    /// Keeps at most `capacity` records; further ones are refused.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            records: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
        }
    }

    /// A copy of the records kept so far, in the order they were forwarded.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Refuses every record from now on (`true`), or takes them again (`false`).
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Relaxed);
    }
}

#[async_trait]
impl RecordForwarder for MemoryForwarder {
    fn name(&self) -> &str {
        "memory"
    }

    async fn forward(&self, record: Record) -> Acknowledgement {
        let kept = if self.refusing.load(Relaxed) {
            Err("the memory forwarder refuses records".into())
        } else {
            match self.records.lock() {
                Ok(mut records) if records.len() < self.capacity => {
                    records.push(record);
                    Ok(())
                }
                Ok(_) => {
                    Err(format!("the memory forwarder is full ({} records)", self.capacity).into())
                }
                Err(_) => Err("the memory forwarder is poisoned".into()),
            }
        };
        Box::pin(std::future::ready(kept))
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BoxError> {
        Ok(())
    }
}
