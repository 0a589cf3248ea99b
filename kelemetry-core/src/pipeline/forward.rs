//! The stage of a forwarding pipeline (the `ingest` role): filter → redact → [`RecordForwarder`], each record's
//! delivery settled by the forwarder's acknowledgement.
//!
//! One task takes the records in arrival order, so a forwarder that keeps order per key (Kafka's idempotent
//! producer does, per partition) keeps each object's records in order. At most `max_in_flight` records wait for
//! their acknowledgements; then the task waits for the oldest ones, and the intake channel, then the sources, feel
//! the back-pressure.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tracing::error;

use super::shard::Unrouted;
use super::stage::Stage;
use super::{PipelineStats, StopCause, Tracked, decrement, drain_within, error_chain};
use crate::activity::Record;
use crate::delivery::PendingRecord;
use crate::forward::RecordForwarder;
use crate::source::CancellationToken;

/// How long the forwarder's last flush may take at the end of a run.
const FINAL_FLUSH: Duration = Duration::from_secs(30);

/// The running forwarding task, seen from the run loop.
pub(super) struct Forwarding {
    sender: mpsc::Sender<Tracked>,
    task: tokio::task::JoinHandle<u64>,
    /// Cancelled on a hard stop: what waits is dropped (lost), and so are the acknowledgements not yet come.
    stop: CancellationToken,
}

impl Forwarding {
    /// Starts the task: at most `queue` records wait for it, at most `max_in_flight` for their acknowledgements.
    pub(super) fn start(
        forwarder: Arc<dyn RecordForwarder>,
        stage: Arc<Stage>,
        stats: &Arc<PipelineStats>,
        queue: usize,
        max_in_flight: usize,
        stop: CancellationToken,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let task = tokio::spawn(run(
            forwarder,
            stage,
            stats.clone(),
            receiver,
            max_in_flight.max(1),
            stop.clone(),
        ));
        Self { sender, task, stop }
    }

    /// Hands `tracked` to the task, waiting for room.
    pub(super) async fn route(&self, tracked: Tracked) -> Result<(), Unrouted> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(Unrouted),
            sent = self.sender.send(tracked) => sent.map_err(|_| Unrouted),
        }
    }

    /// Stops hard: the records still waiting are dropped.
    pub(super) fn stop_hard(&self) {
        self.stop.cancel();
    }

    /// Closes the queue and waits until every record was forwarded and acknowledged (or lost), and the forwarder
    /// flushed. Past `deadline`, what still waits is dropped and `stop` becomes [`StopCause::HardStop`]. Returns
    /// the records dropped, and the task's panic if it panicked.
    pub(super) async fn finish(
        self,
        deadline: Option<tokio::time::Instant>,
        stop: &mut StopCause,
    ) -> (u64, Option<Box<dyn std::any::Any + Send>>) {
        drop(self.sender);
        let joined = drain_within(self.task, &self.stop, deadline, stop, "the forwarder").await;
        match joined {
            Ok(dropped) => (dropped, None),
            Err(err) if err.is_panic() => (0, Some(err.into_panic())),
            Err(err) => {
                error!(%err, "the forwarding task failed");
                (0, None)
            }
        }
    }
}

/// What one record's acknowledgement came to.
struct Acknowledged {
    outcome: Result<(), crate::BoxError>,
    pending: Option<PendingRecord>,
    arrived: Instant,
}

/// The task: forwards records in order, settles their deliveries as acknowledgements come. Returns the records
/// dropped by a hard stop.
async fn run(
    forwarder: Arc<dyn RecordForwarder>,
    stage: Arc<Stage>,
    stats: Arc<PipelineStats>,
    mut receiver: mpsc::Receiver<Tracked>,
    max_in_flight: usize,
    stop: CancellationToken,
) -> u64 {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(acknowledged) = in_flight.next(), if !in_flight.is_empty() => {
                settle(acknowledged, &stats, forwarder.name());
            }
            tracked = receiver.recv(), if open && in_flight.len() < max_in_flight => {
                // The record's bytes are held until the forwarder has taken it.
                let Some(Tracked { record, pending, arrived, held: _held }) = tracked else {
                    open = false;
                    continue;
                };
                let Some(record) = prepared(&stage, record) else {
                    if let Some(pending) = pending {
                        pending.delivered();
                    }
                    decrement(&stats.queued_records);
                    continue;
                };
                let acknowledgement = tokio::select! {
                    biased;
                    () = stop.cancelled() => {
                        decrement(&stats.queued_records);
                        break;
                    }
                    acknowledgement = forwarder.forward(record) => acknowledgement,
                };
                in_flight.push(async move {
                    Acknowledged { outcome: acknowledgement.await, pending, arrived }
                });
            }
        }
    }
    if stop.is_cancelled() {
        // Dropped with their pending deliveries: counted lost by their sources.
        let mut dropped = in_flight.len() as u64;
        receiver.close();
        while receiver.try_recv().is_ok() {
            dropped += 1;
        }
        let _ = stats
            .queued_records
            .fetch_update(Relaxed, Relaxed, |now| Some(now.saturating_sub(dropped)));
        return dropped;
    }
    if let Err(err) = forwarder.flush(FINAL_FLUSH).await {
        error!(forwarder = forwarder.name(), error = %error_chain(&*err), "the last flush failed");
    }
    0
}

/// `record` if the filter admits it, redacted; `None` when filtered (counted). Nothing is decorated here: an
/// object's earlier body may have gone through another ingest process (two behind one Service), so a diff made
/// here could span writes this process never saw. The process that makes the spans sees all of an object's
/// records, in order, and diffs them.
fn prepared(stage: &Stage, mut record: Record) -> Option<Record> {
    if !stage.filter.is_empty() && !stage.filter.admits(&record) {
        stage.stats.filtered.fetch_add(1, Relaxed);
        return None;
    }
    stage.redact(record.object_mut());
    Some(record)
}

/// Settles one record's delivery by its acknowledgement.
fn settle(acknowledged: Acknowledged, stats: &PipelineStats, forwarder: &str) {
    let Acknowledged {
        outcome,
        pending,
        arrived,
    } = acknowledged;
    decrement(&stats.queued_records);
    match outcome {
        Ok(()) => {
            stats.forwarded.fetch_add(1, Relaxed);
            stats.ingest_to_export.observe(arrived.elapsed());
            if let Some(pending) = pending {
                pending.delivered();
            }
        }
        Err(err) => {
            drop(pending);
            let failed = stats.forward_failed.fetch_add(1, Relaxed) + 1;
            // Dropping the pending record counts it lost: its source answers accordingly (a webhook 5xx).
            if failed.is_power_of_two() {
                error!(forwarder, failed, error = %error_chain(&*err), "a record was not forwarded");
            }
        }
    }
}
