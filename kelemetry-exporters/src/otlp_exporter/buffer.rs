//! The bounded buffer between [`Exporter::export`](kelemetry_core::Exporter::export) and the delivery task, and
//! the state both share.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use kelemetry_core::SpanRecord;
use kelemetry_core::otlp::encode_span;
use tokio::sync::{Notify, oneshot};

use super::stats::OtlpStats;

/// The spans waiting for delivery.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub(super) spans: VecDeque<BufferedSpan>,
    /// Spans taken by the delivery task into requests not yet delivered or dropped.
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
    /// Exports waiting for their spans' outcome, in the order of their spans (contiguous ranges); one that is
    /// settled leaves the front once every one before it is settled too.
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
    /// Its spans whose request has not finished yet.
    pub(super) unsettled: u64,
    /// Some of its spans were rejected or dropped.
    pub(super) failed: bool,
    /// Told the outcome once every span is settled; `None` once told.
    pub(super) done: Option<oneshot::Sender<bool>>,
}

impl Ticket {
    /// A ticket for the spans `start..end`, telling `done`.
    pub(super) fn new(start: u64, end: u64, done: oneshot::Sender<bool>) -> Self {
        Self {
            start,
            end,
            unsettled: end - start,
            failed: false,
            done: Some(done),
        }
    }
}

impl Buffer {
    /// Settles what the finished request of spans `start..end` covers, whichever requests are still in flight: a
    /// ticket is told once all its spans are settled, delivered when every one of them was.
    pub(super) fn settle(&mut self, start: u64, end: u64, delivered: bool) {
        let first = self.tickets.partition_point(|ticket| ticket.end <= start);
        for ticket in self.tickets.range_mut(first..) {
            if ticket.start >= end {
                break;
            }
            let covered = end.min(ticket.end) - start.max(ticket.start);
            ticket.unsettled = ticket.unsettled.saturating_sub(covered);
            ticket.failed |= !delivered;
            if ticket.unsettled == 0
                && let Some(done) = ticket.done.take()
            {
                // The export may have stopped waiting: nobody to tell.
                let _ = done.send(!ticket.failed);
            }
        }
        while self
            .tickets
            .front()
            .is_some_and(|ticket| ticket.done.is_none())
        {
            self.tickets.pop_front();
        }
    }

    /// Fails every waiting export (the buffer was dropped).
    pub(super) fn fail_all(&mut self) {
        for ticket in self.tickets.drain(..) {
            if let Some(done) = ticket.done {
                let _ = done.send(false);
            }
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

    /// Takes at most `max` queued spans for one request, and counts them in flight; the spans and their bytes.
    fn take_in_flight(&mut self, max: usize) -> (Vec<BufferedSpan>, usize) {
        let take = self.spans.len().min(max);
        let batch: Vec<BufferedSpan> = self.spans.drain(..take).collect();
        let bytes = batch.iter().map(BufferedSpan::bytes).sum::<usize>();
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        self.in_flight += batch.len();
        self.in_flight_bytes += bytes;
        (batch, bytes)
    }

    /// A request of `spans` spans of `bytes` bytes is done (or abandoned): its spans no longer wait.
    fn finish_in_flight(&mut self, spans: usize, bytes: usize) {
        self.in_flight = self.in_flight.saturating_sub(spans);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
    }

    /// Forgets every request in flight (the exporter is dropped).
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

/// Spans taken for one request.
#[derive(Debug)]
pub(super) struct Taken {
    pub(super) spans: Vec<BufferedSpan>,
    /// The number of the first of them (see [`Buffer::pushed`]).
    pub(super) first: u64,
    /// Their bytes, counted in flight.
    pub(super) bytes: usize,
    /// [`Shared::abandon`] when they were taken.
    pub(super) abandon_epoch: u64,
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
    /// How many flushes timed out: a request taken before the last of them is dropped instead of retried.
    pub(super) abandon: AtomicU64,
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
            abandon: AtomicU64::new(0),
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
    pub(super) async fn next_batch(&self, max: usize) -> Option<Taken> {
        loop {
            {
                let mut buffer = self.lock();
                if !buffer.spans.is_empty() {
                    let (spans, bytes) = buffer.take_in_flight(max);
                    let first = buffer.taken;
                    buffer.taken += spans.len() as u64;
                    return Some(Taken {
                        spans,
                        first,
                        bytes,
                        abandon_epoch: self.abandon.load(Relaxed),
                    });
                }
                if buffer.closed {
                    return None;
                }
            }
            self.arrived.notified().await;
        }
    }

    /// The request of spans `start..end` holding `bytes` is done (delivered, rejected or dropped): settles the
    /// exports waiting for it and wakes the flushes.
    pub(super) fn request_finished(&self, start: u64, end: u64, bytes: usize, delivered: bool) {
        let mut buffer = self.lock();
        buffer.finish_in_flight(usize::try_from(end - start).unwrap_or(usize::MAX), bytes);
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
        buffer.tickets.push_back(Ticket::new(start, end, done));
        settled
    }

    #[test]
    fn requests_that_finish_out_of_order_settle_each_ticket_once_all_its_spans_are_done() {
        let mut buffer = Buffer::default();
        let mut a = ticket(&mut buffer, 0, 4);
        let mut b = ticket(&mut buffer, 4, 10);
        let mut c = ticket(&mut buffer, 10, 12);
        // Requests 0..3, 3..7, 7..12 in flight at once; they finish last first.
        buffer.settle(7, 12, true);
        assert_eq!(
            c.try_recv(),
            Ok(true),
            "c's spans were all in the last request"
        );
        assert!(b.try_recv().is_err(), "b still has spans in 3..7");
        assert_eq!(
            buffer.tickets.len(),
            3,
            "c stays behind a and b until they settle"
        );
        buffer.settle(3, 7, false);
        assert_eq!(b.try_recv(), Ok(false), "part of b failed");
        assert!(a.try_recv().is_err(), "a still has spans in 0..3");
        buffer.settle(0, 3, true);
        assert_eq!(a.try_recv(), Ok(false), "a's span 3 failed with 3..7");
        assert!(buffer.tickets.is_empty());
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
