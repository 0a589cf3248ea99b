//! The [`Source`] and [`ActivitySink`] traits: where records come from and how they enter the pipeline.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::activity::Record;

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

    /// Reports a record the source could not use.
    fn reject(&self, rejection: Rejection);

    /// Reports how many bytes of input the source has consumed since the last call, for progress displays.
    fn progress(&self, _bytes: u64) {}
}

/// A source failed as a whole (not one bad record, which is a [`Rejection`]).
#[derive(Debug, thiserror::Error)]
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
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Produces records until its input ends or shutdown is requested.
#[async_trait]
pub trait Source: Send {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Runs the source. Returns when the input is exhausted, or soon after `shutdown` fires.
    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: Shutdown,
    ) -> Result<(), SourceError>;
}

/// A shutdown signal that many tasks can watch.
#[derive(Clone, Debug)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// Fires a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    /// A new signal and the trigger that fires it.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger { sender }, Shutdown { receiver })
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Waits until shutdown is requested (or the trigger is dropped).
    pub async fn requested(&mut self) {
        let _ = self.receiver.wait_for(|fired| *fired).await;
    }
}

impl ShutdownTrigger {
    /// Requests shutdown.
    pub fn fire(&self) {
        let _ = self.sender.send(true);
    }
}
