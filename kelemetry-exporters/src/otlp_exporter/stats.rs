//! [`OtlpStats`] and [`OtlpReport`]: what an [`OtlpExporter`](super::OtlpExporter) did with the spans it took.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of an [`OtlpExporter`](super::OtlpExporter), shared with whoever reports metrics. All counts are spans unless named
/// otherwise.
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// Taken into the buffer.
    pub spans_accepted: AtomicU64,
    /// Delivered and accepted by the endpoint.
    pub spans_exported: AtomicU64,
    /// Refused because the buffer was full (also reported to the pipeline as a permanent failure).
    pub spans_dropped_buffer_full: AtomicU64,
    /// Refused by the endpoint: a permanent failure or the rejected part of a partial success.
    pub spans_rejected: AtomicU64,
    /// Still undelivered when a flush timed out or the exporter was dropped.
    pub spans_dropped_undelivered: AtomicU64,
    /// Waiting in the buffer or in the request being sent (a gauge).
    pub spans_buffered: AtomicU64,
    /// Requests that failed and were retried.
    pub requests_retried: AtomicU64,
    /// Requests that succeeded.
    pub requests_sent: AtomicU64,
}

/// A copy of [`OtlpStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtlpReport {
    /// See [`OtlpStats::spans_accepted`].
    pub spans_accepted: u64,
    /// See [`OtlpStats::spans_exported`].
    pub spans_exported: u64,
    /// See [`OtlpStats::spans_dropped_buffer_full`].
    pub spans_dropped_buffer_full: u64,
    /// See [`OtlpStats::spans_rejected`].
    pub spans_rejected: u64,
    /// See [`OtlpStats::spans_dropped_undelivered`].
    pub spans_dropped_undelivered: u64,
    /// See [`OtlpStats::spans_buffered`].
    pub spans_buffered: u64,
    /// See [`OtlpStats::requests_retried`].
    pub requests_retried: u64,
    /// See [`OtlpStats::requests_sent`].
    pub requests_sent: u64,
}

impl std::fmt::Display for OtlpReport {
    /// One line: `N spans accepted, N exported, N lost (N buffer full, N rejected, N undelivered), N buffered; N
    /// requests, N retried`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} spans accepted, {} exported, {} lost ({} buffer full, {} rejected, {} undelivered), {} buffered; \
             {} requests, {} retried",
            self.spans_accepted,
            self.spans_exported,
            self.spans_lost(),
            self.spans_dropped_buffer_full,
            self.spans_rejected,
            self.spans_dropped_undelivered,
            self.spans_buffered,
            self.requests_sent,
            self.requests_retried
        )
    }
}

impl OtlpReport {
    /// Every span that will never arrive: dropped because the buffer was full, rejected, or undelivered.
    pub fn spans_lost(&self) -> u64 {
        self.spans_dropped_buffer_full + self.spans_rejected + self.spans_dropped_undelivered
    }
}

impl OtlpStats {
    /// The counters now.
    pub fn report(&self) -> OtlpReport {
        OtlpReport {
            spans_accepted: self.spans_accepted.load(Relaxed),
            spans_exported: self.spans_exported.load(Relaxed),
            spans_dropped_buffer_full: self.spans_dropped_buffer_full.load(Relaxed),
            spans_rejected: self.spans_rejected.load(Relaxed),
            spans_dropped_undelivered: self.spans_dropped_undelivered.load(Relaxed),
            spans_buffered: self.spans_buffered.load(Relaxed),
            requests_retried: self.requests_retried.load(Relaxed),
            requests_sent: self.requests_sent.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_prints_on_one_line() {
        let report = OtlpReport {
            spans_accepted: 10,
            spans_exported: 7,
            spans_rejected: 1,
            spans_buffered: 2,
            requests_sent: 3,
            ..OtlpReport::default()
        };
        assert_eq!(
            report.to_string(),
            "10 spans accepted, 7 exported, 1 lost (0 buffer full, 1 rejected, 0 undelivered), 2 buffered; \
             3 requests, 0 retried"
        );
    }
}
