//! The bounded buffer between [`Exporter::export`](kelemetry_core::Exporter::export) and the delivery task, and
//! the state both share.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use kelemetry_core::SpanRecord;
use tokio::sync::Notify;

use super::stats::OtlpStats;

/// The spans waiting for delivery.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub(super) spans: VecDeque<SpanRecord>,
    /// Spans taken by the delivery task and not yet delivered or dropped.
    pub(super) in_flight: usize,
    /// A batch was refused since the buffer last had room (for logging the transitions only).
    pub(super) overflowing: bool,
    /// The exporter is gone: the delivery task ends once the buffer is empty.
    pub(super) closed: bool,
}

impl Buffer {
    /// Spans queued or being sent.
    pub(super) fn waiting(&self) -> usize {
        self.spans.len() + self.in_flight
    }
}

/// What the exporter and its delivery task share.
#[derive(Debug)]
pub(super) struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the delivery task: spans arrived, or it is closed.
    pub(super) arrived: Notify,
    /// Wakes flushes: a request finished.
    pub(super) progressed: Notify,
    /// Tells the delivery task to drop the request it keeps retrying (a flush timed out).
    pub(super) abandon: AtomicBool,
    pub(super) abandoned: Notify,
    pub(super) stats: Arc<OtlpStats>,
    /// The endpoint and the protocol, for logs and errors.
    pub(super) destination: String,
}

impl Shared {
    pub(super) fn new(destination: String) -> Self {
        Self {
            buffer: Mutex::new(Buffer::default()),
            arrived: Notify::new(),
            progressed: Notify::new(),
            abandon: AtomicBool::new(false),
            abandoned: Notify::new(),
            stats: Arc::new(OtlpStats::default()),
            destination,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding the lock cannot leave the buffer inconsistent (every update is one step), so a
        // poisoned lock is still used.
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set_buffered(&self, buffer: &Buffer) {
        self.stats
            .spans_buffered
            .store(buffer.waiting() as u64, Relaxed);
    }

    /// Takes at most `max` spans for one request and marks them in flight; `None` once the buffer is closed and
    /// empty. Waits for spans to arrive.
    pub(super) async fn next_batch(&self, max: usize) -> Option<Vec<SpanRecord>> {
        loop {
            {
                let mut buffer = self.lock();
                if !buffer.spans.is_empty() {
                    let take = buffer.spans.len().min(max);
                    let batch: Vec<SpanRecord> = buffer.spans.drain(..take).collect();
                    buffer.in_flight = batch.len();
                    return Some(batch);
                }
                if buffer.closed {
                    return None;
                }
            }
            self.arrived.notified().await;
        }
    }

    /// The request in flight is done (delivered, rejected or dropped): wakes the flushes waiting for it.
    pub(super) fn request_finished(&self) {
        let mut buffer = self.lock();
        buffer.in_flight = 0;
        self.set_buffered(&buffer);
        drop(buffer);
        self.progressed.notify_waiters();
    }
}
