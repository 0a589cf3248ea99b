//! Where a file source's records go: the sink, the counters, and the rejections with their file and line.

use std::sync::Arc;

use kelemetry_core::{ActivitySink, CancellationToken, Delivery, Record, Rejection};

use crate::audit_intake::{AuditItem, AuditItems, RecordRejection};
use crate::report::ReadCounters;

/// How often (in bytes of input) progress is reported to the sink.
const PROGRESS_STEP: u64 = 64 * 1024;

/// Whether to go on reading.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on.
    Continue,
    /// Shutdown was requested or the pipeline closed: stop reading.
    Stop,
}

/// The sink, the counters and the name of the input, as one source run uses them.
pub(crate) struct Outlet {
    sink: Arc<dyn ActivitySink>,
    counters: Arc<ReadCounters>,
    origin: String,
    shutdown: CancellationToken,
    unreported_bytes: u64,
    /// The delivery the records sent now belong to, when the source tracks them.
    delivery: Option<Delivery>,
}

impl Outlet {
    pub(crate) fn new(
        sink: Arc<dyn ActivitySink>,
        counters: Arc<ReadCounters>,
        origin: String,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            sink,
            counters,
            origin,
            shutdown,
            unreported_bytes: 0,
            delivery: None,
        }
    }

    /// Sends the records from now on as part of `delivery` (or untracked with `None`); returns the previous one.
    pub(crate) fn track(&mut self, delivery: Option<Delivery>) -> Option<Delivery> {
        std::mem::replace(&mut self.delivery, delivery)
    }

    /// Whether shutdown was requested.
    pub(crate) fn stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Counts a record found in the input.
    pub(crate) fn found(&self) {
        self.counters.record_found();
    }

    /// Sends a record, waiting for room in the pipeline unless shutdown comes first.
    pub(crate) async fn send(&mut self, record: Record) -> Flow {
        if self.shutdown.is_cancelled() {
            return Flow::Stop;
        }
        let sink = Arc::clone(&self.sink);
        let sending = async {
            match &self.delivery {
                Some(delivery) => sink.send_tracked(record, delivery).await,
                None => sink.send(record).await,
            }
        };
        // The send first: when the pipeline has room it completes at once, and the shutdown's future is dropped
        // without being polled, which would register it with the token and unregister it again (two locks per
        // record). It is polled only while the send waits.
        tokio::select! {
            biased;
            sent = sending => match sent {
                Ok(()) => {
                    self.counters.record_sent();
                    Flow::Continue
                }
                Err(closed) => {
                    tracing::debug!(origin = %self.origin, "{closed}: stop reading");
                    Flow::Stop
                }
            },
            () = self.shutdown.cancelled() => Flow::Stop,
        }
    }

    /// Counts a record deliberately not sent.
    pub(crate) fn skip(&self, reason: &str) {
        self.counters.record_skipped(reason);
    }

    /// Reports a record that could not be used, found at `line` of the input.
    pub(crate) fn reject(&self, line: u64, reason: &str, detail: impl Into<String>) {
        self.counters.record_rejected(reason);
        let rejection = Rejection {
            origin: format!("{}:{line}", self.origin),
            reason: reason.to_owned(),
            detail: detail.into(),
        };
        tracing::debug!(%rejection, "record rejected");
        self.sink.reject(rejection);
    }

    /// Reports a record found at `line` of the input that could not be used; counts its envelope when it was
    /// recognised.
    pub(crate) fn reject_record(&self, line: u64, rejection: RecordRejection) {
        if let Some(envelope) = rejection.envelope {
            self.counters.record_envelope(envelope);
        }
        self.reject(line, rejection.reason.as_str(), rejection.detail);
    }

    /// Hands over the records of one audit document found at `line`: sends each activity, counts each skip and
    /// reports each rejection. Every record counts as a record found, and as one of its envelope.
    pub(crate) async fn deliver_audit(&mut self, line: u64, mut items: AuditItems<'_>) -> Flow {
        while let Some((envelope, item)) = items.next_enveloped() {
            self.found();
            self.counters.record_envelope(envelope);
            match item {
                AuditItem::Activity(activity) => {
                    if self.send(Record::Activity(activity)).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                AuditItem::Skipped(reason) => self.skip(reason.as_str()),
                AuditItem::Rejected(rejection) => {
                    self.reject(line, rejection.reason.as_str(), rejection.detail);
                }
            }
        }
        Flow::Continue
    }

    /// Counts consumed input; reports it to the sink every [`PROGRESS_STEP`] bytes.
    pub(crate) fn consumed(&mut self, bytes: u64) {
        self.counters.add_bytes(bytes);
        self.unreported_bytes += bytes;
        if self.unreported_bytes >= PROGRESS_STEP {
            self.flush_progress();
        }
    }

    /// Reports the consumed input not yet reported.
    pub(crate) fn flush_progress(&mut self) {
        if self.unreported_bytes > 0 {
            self.sink.progress(self.unreported_bytes);
            self.unreported_bytes = 0;
        }
    }
}
