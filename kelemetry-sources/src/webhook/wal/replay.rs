//! Delivery of what the write-ahead log holds: batches handed to the pipeline with a [`Delivery`] each, their
//! entries acknowledged once the receipt says every span made from them was exported ([`Receipts`]); and, at
//! start, the entries the previous run left ([`Durable::replay`]), handed over before any new batch.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use kelemetry_core::{ActivitySink, Delivery, Receipt, Record};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::format::{self, Entry};
use super::{ReplaySegment, SegmentId, WalHandle, read_segment};
use crate::audit_intake::{AuditIntake, AuditItem};
use crate::webhook::{WebhookConfig, WebhookMetrics};

/// Receipts awaited at once at most; beyond, handing over waits for one to settle.
const MAX_PENDING_RECEIPTS: usize = 16_384;

/// What makes the webhook's deliveries durable: its write-ahead log, what the previous run left in it, and the
/// intake that reads those bodies again.
#[derive(Debug)]
pub(crate) struct Durable {
    /// The log.
    pub(crate) wal: WalHandle,
    replay: Vec<ReplaySegment>,
    intake: AuditIntake,
    metrics: Arc<WebhookMetrics>,
}

impl Durable {
    /// The log `wal` with the segments to `replay`, read with the mapping of `config`.
    pub(crate) fn new(
        wal: WalHandle,
        replay: Vec<ReplaySegment>,
        config: &WebhookConfig,
        metrics: Arc<WebhookMetrics>,
    ) -> Self {
        Self {
            wal,
            replay,
            intake: AuditIntake::new(config.mapping.clone()),
            metrics,
        }
    }

    /// Hands the entries the previous run left to `sink`, oldest first, each tracked until exported; stops early
    /// if the pipeline closes (what was not handed over stays for the next start).
    pub(crate) async fn replay(&self, sink: &dyn ActivitySink, receipts: &mut Receipts) {
        let mut replayed = 0u64;
        for segment in &self.replay {
            let (bytes, scan) = match read_segment(&segment.path).await {
                Ok(read) => read,
                Err(error) => {
                    error!(segment = %segment.path.display(), %error, "write-ahead log: cannot read a segment to replay; it stays for the next start");
                    continue;
                }
            };
            let name = segment
                .path
                .file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
            for (index, range) in scan.entries.iter().enumerate() {
                // The scan checked every entry it returns.
                let Some(entry) = bytes.get(range.clone()).and_then(format::decode) else {
                    continue;
                };
                let origin = format!("webhook write-ahead log {name} entry {index}");
                let records = self.take(&entry, &origin, sink);
                let count = records.len() as u64;
                let (_, lost) = send_tracked(records, segment.id, sink, receipts).await;
                if lost > 0 {
                    warn!(
                        lost,
                        "write-ahead log: the pipeline closed during the replay; the rest stays for the next start"
                    );
                    return;
                }
                self.metrics.replayed_batches.fetch_add(1, Relaxed);
                self.metrics.replayed_events.fetch_add(count, Relaxed);
                replayed += 1;
            }
        }
        if !self.replay.is_empty() {
            info!(
                batches = replayed,
                "write-ahead log: replayed what the previous run had not acknowledged"
            );
        }
    }

    /// The activities of one entry read back; its malformed events (and a body that no longer reads, if the
    /// mapping changed) are reported to `sink` as rejections at `origin`.
    fn take(&self, entry: &Entry<'_>, origin: &str, sink: &dyn ActivitySink) -> Vec<Record> {
        let items = match self.intake.take(entry.body, entry.cluster) {
            Ok(items) => items,
            Err(rejection) => {
                sink.reject(rejection.into_rejection(origin));
                return Vec::new();
            }
        };
        let mut records = Vec::with_capacity(items.len());
        for (index, item) in items.enumerate() {
            match item {
                AuditItem::Activity(activity) => records.push(Record::Activity(activity)),
                AuditItem::Rejected(rejection) => {
                    sink.reject(rejection.into_rejection(format!("{origin} item {index}")));
                }
                _ => {}
            }
        }
        records
    }
}

/// Sends the `records` of one entry of `segment` with one [`Delivery`] and tracks its receipt in `receipts`;
/// returns how many were sent and how many the closed pipeline did not take. An entry not handed over whole is
/// not tracked: it stays in the log for the next start.
pub(crate) async fn send_tracked(
    records: Vec<Record>,
    segment: SegmentId,
    sink: &dyn ActivitySink,
    receipts: &mut Receipts,
) -> (u64, u64) {
    let total = records.len() as u64;
    let (sent, receipt) = send_as_one_delivery(records, sink).await;
    if sent == total {
        receipts.track(segment, total, receipt).await;
    }
    (sent, total - sent)
}

/// Sends `records` in order with one [`Delivery`] until the pipeline stops taking them: how many it took, and the
/// receipt that settles once those are exported (or lost).
pub(crate) async fn send_as_one_delivery(
    records: Vec<Record>,
    sink: &dyn ActivitySink,
) -> (u64, Receipt) {
    let (delivery, receipt) = Delivery::new();
    let mut sent = 0;
    for record in records {
        if sink.send_tracked(record, &delivery).await.is_err() {
            break;
        }
        sent += 1;
    }
    (sent, receipt)
}

/// The receipts of entries handed over, each awaited by a task that acknowledges the entry in the log once it is
/// exported, or counts and logs the loss (the entry then stays for the next start).
#[derive(Debug)]
pub(crate) struct Receipts {
    pending: JoinSet<()>,
    wal: Option<WalHandle>,
    metrics: Arc<WebhookMetrics>,
}

impl Receipts {
    /// Nothing awaited yet; acknowledgements go to `wal`.
    pub(crate) fn new(wal: Option<WalHandle>, metrics: Arc<WebhookMetrics>) -> Self {
        Self {
            pending: JoinSet::new(),
            wal,
            metrics,
        }
    }

    /// Whether no receipt is awaited.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Awaits `receipt` of an entry of `segment` holding `records` activities.
    async fn track(&mut self, segment: SegmentId, records: u64, receipt: Receipt) {
        while self.pending.len() >= MAX_PENDING_RECEIPTS {
            self.settle_one().await;
        }
        let (wal, metrics) = (self.wal.clone(), Arc::clone(&self.metrics));
        self.pending.spawn(async move {
            match receipt.await {
                Ok(()) => {
                    if let Some(wal) = wal {
                        wal.ack(segment).await;
                    }
                }
                Err(lost) => {
                    metrics.batches_not_delivered.fetch_add(1, Relaxed);
                    metrics
                        .events_not_delivered
                        .fetch_add(lost.records, Relaxed);
                    warn!(
                        lost = lost.records,
                        of = records,
                        "audit webhook: a batch written ahead was not exported; it stays in the write-ahead log \
                         for the next start"
                    );
                }
            }
        });
    }

    /// Waits until one receipt has settled and been handled (at once when none is awaited). Cancel safe.
    pub(crate) async fn settle_one(&mut self) {
        let _ = self.pending.join_next().await;
    }

    /// Waits until every receipt has settled and been handled.
    pub(crate) async fn settle_all(&mut self) {
        while self.pending.join_next().await.is_some() {}
    }
}
