//! The webhook's bounded queue: [`BatchQueue::reserve`] holds room for all of a batch (bounded in activities and
//! in bytes of the bodies they came from; waiting a while for it) before it is written ahead, [`BatchQueue::push`] queues it into that
//! room, and [`forward`] hands the queued batches to the sink (after what the write-ahead log holds from the
//! previous run), tracking each batch written ahead until its spans are exported.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use kelemetry_core::{ActivitySink, NotDelivered, Record, Rejection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use super::WebhookMetrics;
use super::admission::Refusal;
use super::wal::SegmentId;
use super::wal::replay::{Durable, Receipts, send_as_one_delivery, send_tracked};

/// Activities of one accepted batch, with the queue room they hold until delivered, and the write-ahead log
/// segment holding its body.
#[derive(Debug)]
pub(super) struct QueuedBatch {
    records: Vec<Record>,
    rejections: Vec<Rejection>,
    wal: Option<SegmentId>,
    /// Told the outcome of the batch's delivery, when the request waits for it (`acknowledge: delivered`).
    answer: Option<oneshot::Sender<Result<(), NotDelivered>>>,
    _room: Room,
}

/// Room in the queue held for one batch.
#[derive(Debug)]
pub(super) struct Room {
    count: usize,
    _events: Option<OwnedSemaphorePermit>,
    _bytes: OwnedSemaphorePermit,
}

/// The sending side of the queue and its room.
#[derive(Debug)]
pub(super) struct BatchQueue {
    sender: mpsc::Sender<QueuedBatch>,
    event_room: Arc<Semaphore>,
    byte_room: Arc<Semaphore>,
    events: usize,
    bytes: usize,
}

impl BatchQueue {
    /// A queue for `events` activities and `bytes` bytes of request bodies, and its receiving side.
    pub(super) fn new(events: usize, bytes: usize) -> (Self, mpsc::Receiver<QueuedBatch>) {
        // The permits guarantee room in the channel: it holds as many batches as the queue holds activities.
        let (sender, receiver) = mpsc::channel(events);
        let queue = Self {
            sender,
            event_room: Arc::new(Semaphore::new(events)),
            byte_room: Arc::new(Semaphore::new(bytes)),
            events,
            bytes,
        };
        (queue, receiver)
    }

    /// Whether the queue has no room left at all, in activities or in bytes.
    pub(super) fn is_full(&self) -> bool {
        self.event_room.available_permits() == 0 || self.byte_room.available_permits() == 0
    }

    /// Holds room for `count` activities that came from a body of `body_bytes` bytes, waiting up to `wait` for
    /// room for them all (in the order the batches asked: tokio's semaphores are fair); 429 when there is none
    /// by then.
    pub(super) async fn reserve(
        &self,
        count: usize,
        body_bytes: usize,
        wait: Duration,
    ) -> Result<Room, Refusal> {
        if count > self.events {
            return Err(Refusal::TooLarge(format!(
                "batch of {count} activities is larger than the queue ({})",
                self.events
            )));
        }
        let deadline = Instant::now() + wait;
        let events_permit = match count {
            0 => None,
            n => Some(take_room(&self.event_room, n, deadline).await?),
        };
        let bytes_permit =
            take_room(&self.byte_room, body_bytes.clamp(1, self.bytes), deadline).await?;
        Ok(Room {
            count,
            _events: events_permit,
            _bytes: bytes_permit,
        })
    }

    /// Queues `records` and `rejections` into `room` (held for as many records), with the write-ahead log
    /// segment holding their body, and `answer` to tell when all of them were delivered; counts them as queued in
    /// `metrics`.
    pub(super) fn push(
        &self,
        room: Room,
        records: Vec<Record>,
        rejections: Vec<Rejection>,
        wal: Option<SegmentId>,
        answer: Option<oneshot::Sender<Result<(), NotDelivered>>>,
        metrics: &WebhookMetrics,
    ) -> Result<(), Refusal> {
        let count = records.len();
        debug_assert_eq!(count, room.count, "room held for another batch");
        let batch = QueuedBatch {
            records,
            rejections,
            wal,
            answer,
            _room: room,
        };
        metrics.queued_events.fetch_add(count as u64, Relaxed);
        if let Err(err) = self.sender.try_send(batch) {
            metrics.queued_events.fetch_sub(count as u64, Relaxed);
            return Err(match err {
                mpsc::error::TrySendError::Full(_) => Refusal::Throttled("queue full"),
                mpsc::error::TrySendError::Closed(_) => Refusal::ShuttingDown,
            });
        }
        Ok(())
    }
}

/// `amount` of `room` once it is free before `deadline`, after the batches that asked before (with a deadline
/// already past, only if it is free now and nobody waits).
async fn take_room(
    room: &Arc<Semaphore>,
    amount: usize,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, Refusal> {
    let amount = u32::try_from(amount).unwrap_or(u32::MAX);
    match tokio::time::timeout_at(deadline, Arc::clone(room).acquire_many_owned(amount)).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) | Err(_) => Err(Refusal::Throttled("queue full")),
    }
}

/// Hands queued batches to the sink, in order, until told to stop taking new ones and the queue is empty. With a
/// write-ahead log, first hands over what the previous run left in it, and at the end waits for the receipts of
/// what it handed over (so that exported batches are acknowledged) before closing the log.
pub(super) async fn forward(
    mut queue: mpsc::Receiver<QueuedBatch>,
    sink: Arc<dyn ActivitySink>,
    metrics: Arc<WebhookMetrics>,
    mut stop: oneshot::Receiver<()>,
    durable: Option<Durable>,
) {
    let mut receipts = Receipts::new(
        durable.as_ref().map(|durable| durable.wal.clone()),
        Arc::clone(&metrics),
    );
    if let Some(durable) = &durable {
        durable.replay(sink.as_ref(), &mut receipts).await;
    }
    let mut closed = false;
    loop {
        let batch = tokio::select! {
            biased;
            () = receipts.settle_one(), if !receipts.is_empty() => continue,
            _ = &mut stop, if !closed => {
                // No new batches: the server has stopped. Deliver what was accepted.
                queue.close();
                closed = true;
                continue;
            }
            batch = queue.recv() => batch,
        };
        let Some(batch) = batch else { break };
        deliver(batch, sink.as_ref(), &metrics, &mut receipts).await;
    }
    let Some(durable) = durable else { return };
    receipts.settle_all().await;
    let remaining = durable.wal.close().await;
    info!(
        segments = remaining.segments,
        unacknowledged = remaining.entries,
        "audit webhook: write-ahead log closed"
    );
}

/// Reports the batch's rejections and sends its records (tracked until exported when the batch was written
/// ahead); counts what was delivered and what the closed pipeline did not take.
async fn deliver(
    batch: QueuedBatch,
    sink: &dyn ActivitySink,
    metrics: &WebhookMetrics,
    receipts: &mut Receipts,
) {
    for rejection in batch.rejections {
        sink.reject(rejection);
    }
    let count = batch.records.len() as u64;
    let (sent, lost) = match (batch.wal, batch.answer) {
        (Some(segment), _) => send_tracked(batch.records, segment, sink, receipts).await,
        (None, Some(answer)) => send_answered(batch.records, sink, answer).await,
        (None, None) => send(batch.records, sink).await,
    };
    metrics.events_delivered.fetch_add(sent, Relaxed);
    if lost > 0 {
        metrics.events_lost.fetch_add(lost, Relaxed);
        warn!(
            lost,
            "audit webhook: the pipeline closed before taking accepted events"
        );
    }
    metrics.queued_events.fetch_sub(count, Relaxed);
}

/// Sends `records` as one delivery whose outcome goes to `answer` once settled (the request waits for it);
/// how many were sent, and how many the closed pipeline did not take (then the answer says lost at once).
async fn send_answered(
    records: Vec<Record>,
    sink: &dyn ActivitySink,
    answer: oneshot::Sender<Result<(), NotDelivered>>,
) -> (u64, u64) {
    let total = records.len() as u64;
    let (sent, receipt) = send_as_one_delivery(records, sink).await;
    if sent < total {
        let _ = answer.send(Err(NotDelivered {
            records: total - sent,
        }));
        return (sent, total - sent);
    }
    // The request's task waits on the answer; this one goes on with the next batch.
    tokio::spawn(async move {
        let _ = answer.send(receipt.await);
    });
    (sent, 0)
}

/// Sends `records` untracked; how many were sent, and how many the closed pipeline did not take.
async fn send(records: Vec<Record>, sink: &dyn ActivitySink) -> (u64, u64) {
    let total = records.len() as u64;
    let mut sent = 0;
    for record in records {
        if sink.send(record).await.is_err() {
            break;
        }
        sent += 1;
    }
    (sent, total - sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_intake::{AuditIntake, AuditItem};

    /// `count` activities, made from audit events through the intake.
    fn records(count: usize) -> Vec<Record> {
        let intake = AuditIntake::default();
        (0..count)
            .map(|i| {
                let event = format!(
                    r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a{i}","stage":"ResponseComplete",
                    "verb":"create","user":{{"username":"u"}},"objectRef":{{"resource":"configmaps","name":"c{i}"}},
                    "requestReceivedTimestamp":"2024-05-01T12:00:00Z"}}"#
                );
                match intake.take(event.as_bytes(), "c").map(|mut items| items.next()) {
                    Ok(Some(AuditItem::Activity(activity))) => Record::Activity(activity),
                    other => panic!("not an activity: {other:?}"),
                }
            })
            .collect()
    }

    /// Reserves room for `count` records from `body_bytes`, waiting up to `wait`, and queues them.
    async fn push_within(
        queue: &BatchQueue,
        count: usize,
        body_bytes: usize,
        wait: Duration,
        metrics: &WebhookMetrics,
    ) -> Result<(), Refusal> {
        let room = queue.reserve(count, body_bytes, wait).await?;
        queue.push(room, records(count), Vec::new(), None, None, metrics)
    }

    /// The same without waiting for room.
    async fn push(
        queue: &BatchQueue,
        count: usize,
        body_bytes: usize,
        metrics: &WebhookMetrics,
    ) -> Result<(), Refusal> {
        push_within(queue, count, body_bytes, Duration::ZERO, metrics).await
    }

    #[tokio::test]
    async fn a_batch_takes_room_until_delivered() {
        let metrics = WebhookMetrics::default();
        let (queue, mut receiver) = BatchQueue::new(4, 100);
        assert_eq!(push(&queue, 3, 10, &metrics).await, Ok(()));
        assert_eq!(metrics.snapshot().queued_events, 3);
        assert_eq!(
            push(&queue, 2, 10, &metrics).await,
            Err(Refusal::Throttled("queue full"))
        );
        assert!(matches!(
            push(&queue, 5, 10, &metrics).await,
            Err(Refusal::TooLarge(_))
        ));
        assert_eq!(push(&queue, 1, 90, &metrics).await, Ok(()));
        assert!(queue.is_full());
        drop(receiver.try_recv());
        assert!(!queue.is_full());
    }

    #[tokio::test]
    async fn a_batch_waits_for_room_as_long_as_it_may() {
        let metrics = WebhookMetrics::default();
        let (queue, mut receiver) = BatchQueue::new(4, 100);
        assert_eq!(push(&queue, 3, 10, &metrics).await, Ok(()));
        // No room for two more within the wait: 429, and nothing of the wait is held afterwards.
        let short = Duration::from_millis(50);
        assert_eq!(
            push_within(&queue, 2, 10, short, &metrics).await,
            Err(Refusal::Throttled("queue full"))
        );
        assert_eq!(push(&queue, 1, 10, &metrics).await, Ok(()));
        // Room freed while a batch waits: it gets it. The same for room in bytes.
        let take_one = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(receiver.recv().await);
        };
        let (pushed, ()) = tokio::join!(
            push_within(&queue, 3, 10, Duration::from_secs(30), &metrics),
            take_one
        );
        assert_eq!(pushed, Ok(()));
        assert_eq!(queue.event_room.available_permits(), 0);
        let take_all = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while receiver.try_recv().is_ok() {}
        };
        let (pushed, ()) = tokio::join!(
            push_within(&queue, 1, 100, Duration::from_secs(30), &metrics),
            take_all
        );
        assert_eq!(pushed, Ok(()));
    }

    #[tokio::test]
    async fn room_held_but_not_used_is_given_back() {
        let (queue, _receiver) = BatchQueue::new(4, 100);
        let room = queue.reserve(4, 100, Duration::ZERO).await;
        assert!(queue.is_full());
        drop(room);
        assert!(!queue.is_full());
    }

    #[tokio::test]
    async fn a_closed_queue_means_shutting_down() {
        let metrics = WebhookMetrics::default();
        let (queue, receiver) = BatchQueue::new(4, 100);
        drop(receiver);
        assert_eq!(
            push(&queue, 1, 10, &metrics).await,
            Err(Refusal::ShuttingDown)
        );
        assert_eq!(metrics.snapshot().queued_events, 0);
    }
}
