//! The bounded buffer between [`Exporter::export`](kelemetry_core::Exporter::export) and the delivery task, and
//! the state both share.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use kelemetry_core::SpanRecord;
use kelemetry_core::otlp::encode_span;
use tokio::sync::{Notify, oneshot};

use super::stats::OtlpStats;

/// The spans waiting for delivery.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub(super) spans: VecDeque<BufferedSpan>,
    /// Spans taken by the delivery task and not yet delivered or dropped.
    pub(super) in_flight: usize,
    /// The estimated bytes of `spans`.
    pub(super) queued_bytes: usize,
    /// The estimated bytes of the spans in flight.
    pub(super) in_flight_bytes: usize,
    /// A batch was refused since the buffer last had room (for logging the transitions only).
    pub(super) overflowing: bool,
    /// The exporter is gone: the delivery task ends once the buffer is empty.
    pub(super) closed: bool,
    /// Spans ever put into the buffer: span `n` of all is at position `n - taken` while queued.
    pub(super) pushed: u64,
    /// Spans ever taken into requests.
    pub(super) taken: u64,
    /// Exports waiting for their spans' outcome, oldest first.
    pub(super) tickets: VecDeque<Ticket>,
}

/// A span waiting in the buffer, converted already (so the buffer holds no copy of the pipeline's records), with
/// the service it is exported under.
#[derive(Debug)]
pub(super) struct BufferedSpan {
    pub(super) service: Arc<str>,
    /// The span in the protobuf encoding ([`encode_span`]): the request is put together from these bytes.
    pub(super) encoded: Vec<u8>,
}

impl BufferedSpan {
    /// The memory it takes: its encoding and this struct.
    pub(super) fn bytes(&self) -> usize {
        self.encoded.capacity() + std::mem::size_of::<Self>()
    }

    /// `batch` encoded, consecutive spans of one service sharing its name.
    pub(super) fn convert(batch: &[SpanRecord]) -> Vec<Self> {
        let mut last: Option<Arc<str>> = None;
        batch
            .iter()
            .map(|record| {
                let name = record.service_name();
                let service = match &last {
                    Some(service) if &**service == name => service.clone(),
                    _ => last.insert(Arc::from(name)).clone(),
                };
                Self {
                    service,
                    encoded: encode_span(record),
                }
            })
            .collect()
    }
}

/// An export waiting until the spans `start..end` (numbered as [`Buffer::pushed`] counts them) are delivered.
#[derive(Debug)]
pub(super) struct Ticket {
    pub(super) start: u64,
    pub(super) end: u64,
    /// Some of its spans were rejected or dropped.
    pub(super) failed: bool,
    pub(super) done: oneshot::Sender<bool>,
}

impl Buffer {
    /// Settles the tickets covered by the finished request of spans `start..end`: delivered when every span of a
    /// ticket was.
    pub(super) fn settle(&mut self, start: u64, end: u64, delivered: bool) {
        while let Some(ticket) = self.tickets.front_mut() {
            if ticket.start >= end {
                return;
            }
            if !delivered && ticket.end > start {
                ticket.failed = true;
            }
            if ticket.end > end {
                return;
            }
            if let Some(ticket) = self.tickets.pop_front() {
                // The export may have stopped waiting: nobody to tell.
                let _ = ticket.done.send(!ticket.failed);
            }
        }
    }

    /// Fails every waiting export (the buffer was dropped).
    pub(super) fn fail_all(&mut self) {
        for ticket in self.tickets.drain(..) {
            let _ = ticket.done.send(false);
        }
    }
}

impl Buffer {
    /// Spans queued or being sent.
    pub(super) fn waiting(&self) -> usize {
        self.spans.len() + self.in_flight
    }

    /// The estimated bytes of the spans queued or being sent.
    pub(super) fn waiting_bytes(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }

    /// Queues `spans`, whose estimated bytes are `bytes`.
    pub(super) fn push(&mut self, spans: Vec<BufferedSpan>, bytes: usize) {
        self.spans.extend(spans);
        self.queued_bytes += bytes;
    }

    /// Takes at most `max` queued spans for one request, and counts them in flight.
    fn take_in_flight(&mut self, max: usize) -> Vec<BufferedSpan> {
        let take = self.spans.len().min(max);
        let batch: Vec<BufferedSpan> = self.spans.drain(..take).collect();
        let bytes = batch.iter().map(BufferedSpan::bytes).sum::<usize>();
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        self.in_flight = batch.len();
        self.in_flight_bytes = bytes;
        batch
    }

    /// The request in flight is done (or abandoned): its spans no longer wait.
    pub(super) fn clear_in_flight(&mut self) {
        self.in_flight = 0;
        self.in_flight_bytes = 0;
    }

    /// Drops every queued span; what is in flight stays counted until its request finishes.
    pub(super) fn clear_queued(&mut self) {
        self.spans.clear();
        self.queued_bytes = 0;
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
    /// The delivery task is retrying a request that failed: the endpoint is not taking spans now.
    pub(super) failing: AtomicBool,
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
            failing: AtomicBool::new(false),
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
    /// The second value is the number of the batch's first span (see [`Buffer::pushed`]).
    pub(super) async fn next_batch(&self, max: usize) -> Option<(Vec<BufferedSpan>, u64)> {
        loop {
            {
                let mut buffer = self.lock();
                if !buffer.spans.is_empty() {
                    let batch = buffer.take_in_flight(max);
                    let first = buffer.taken;
                    buffer.taken += batch.len() as u64;
                    return Some((batch, first));
                }
                if buffer.closed {
                    return None;
                }
            }
            self.arrived.notified().await;
        }
    }

    /// The request in flight, of spans `start..end`, is done (delivered, rejected or dropped): settles the exports
    /// waiting for it and wakes the flushes.
    pub(super) fn request_finished(&self, start: u64, end: u64, delivered: bool) {
        let mut buffer = self.lock();
        buffer.clear_in_flight();
        self.set_buffered(&buffer);
        buffer.settle(start, end, delivered);
        drop(buffer);
        self.progressed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(buffer: &mut Buffer, start: u64, end: u64) -> oneshot::Receiver<bool> {
        let (done, settled) = oneshot::channel();
        buffer.tickets.push_back(Ticket {
            start,
            end,
            failed: false,
            done,
        });
        settled
    }

    #[test]
    fn a_ticket_settles_when_the_last_request_of_its_spans_finishes() {
        let mut buffer = Buffer::default();
        let mut a = ticket(&mut buffer, 0, 3);
        let mut b = ticket(&mut buffer, 3, 8);
        let mut c = ticket(&mut buffer, 8, 9);
        // Requests of 4 spans: 0..4 delivered, 4..8 failed, 8..9 delivered.
        buffer.settle(0, 4, true);
        assert_eq!(a.try_recv(), Ok(true));
        assert!(b.try_recv().is_err(), "b still has spans in later requests");
        buffer.settle(4, 8, false);
        assert_eq!(b.try_recv(), Ok(false), "part of b failed");
        assert!(c.try_recv().is_err());
        buffer.settle(8, 9, true);
        assert_eq!(c.try_recv(), Ok(true));
        assert!(buffer.tickets.is_empty());
    }

    #[test]
    fn a_failed_request_fails_a_ticket_it_only_started() {
        let mut buffer = Buffer::default();
        let mut a = ticket(&mut buffer, 0, 6);
        buffer.settle(0, 2, false);
        buffer.settle(2, 6, true);
        assert_eq!(a.try_recv(), Ok(false));
        let mut b = ticket(&mut buffer, 6, 7);
        buffer.fail_all();
        assert_eq!(b.try_recv(), Ok(false));
    }
}
