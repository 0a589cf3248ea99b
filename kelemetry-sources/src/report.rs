//! What a file source read: [`ReadReport`], kept up to date in a shared [`ReadCounters`].

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::audit_envelope::Envelope;

/// How many distinct reasons a report counts separately; further reasons are counted under [`OTHER_REASON`].
pub const MAX_REASONS: usize = 64;

/// The reason under which reasons beyond [`MAX_REASONS`] are counted.
pub const OTHER_REASON: &str = "other";

/// What a source read from its input, so far or in total.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Bytes of input consumed.
    pub bytes: u64,
    /// Records found in the input (audit events, objects, Kubernetes Events, watch events, list items),
    /// whatever became of them.
    pub records: u64,
    /// Records handed to the sink.
    pub sent: u64,
    /// Records deliberately not sent, by reason (e.g. `verb get`, `watch bookmark`).
    pub skipped: BTreeMap<String, u64>,
    /// Records that could not be used, by reason (the [`Rejection`](kelemetry_core::Rejection)'s class).
    pub rejected: BTreeMap<String, u64>,
    /// Audit records by the envelope they came in (`native`, `gke`...): every record of an audit source whose
    /// envelope was recognised, whatever became of it. Bounded by [`Envelope::ALL`].
    pub by_envelope: BTreeMap<Envelope, u64>,
}

/// `[N bytes, ]N records, N sent[ (REASON N, ..., rejected REASON N, ...)]`.
impl std::fmt::Display for ReadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.bytes > 0 {
            write!(f, "{} bytes, ", self.bytes)?;
        }
        write!(f, "{} records, {} sent", self.records, self.sent)?;
        let skipped = self.skipped.iter().map(|(r, n)| format!("{r} {n}"));
        let rejected = self
            .rejected
            .iter()
            .map(|(r, n)| format!("rejected {r} {n}"));
        let parts: Vec<String> = skipped.chain(rejected).collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

impl ReadReport {
    /// All skipped records.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// All rejected records.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// `gke 3, native 10`: the records by envelope, in the order of the envelopes' names; empty when no audit
    /// record was read.
    pub fn envelopes_text(&self) -> String {
        let mut counts: Vec<(&str, u64)> = self
            .by_envelope
            .iter()
            .map(|(envelope, count)| (envelope.as_str(), *count))
            .collect();
        counts.sort_unstable();
        let parts: Vec<String> = counts
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        parts.join(", ")
    }
}

fn count_reason(counts: &mut BTreeMap<String, u64>, reason: &str) {
    if let Some(count) = counts.get_mut(reason) {
        *count += 1;
    } else if counts.len() < MAX_REASONS {
        counts.insert(reason.to_owned(), 1);
    } else {
        *counts.entry(OTHER_REASON.to_owned()).or_default() += 1;
    }
}

/// Counters a running source updates and anyone holding the `Arc` can read: get them from the source (e.g.
/// [`AuditFileSource::counters`](crate::AuditFileSource::counters)) before running it.
#[derive(Debug, Default)]
pub struct ReadCounters {
    report: Mutex<ReadReport>,
}

impl ReadCounters {
    /// A copy of the counts so far.
    pub fn snapshot(&self) -> ReadReport {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadReport> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.lock().bytes += bytes;
    }

    pub(crate) fn record_found(&self) {
        self.lock().records += 1;
    }

    pub(crate) fn record_sent(&self) {
        self.lock().sent += 1;
    }

    pub(crate) fn record_skipped(&self, reason: &str) {
        count_reason(&mut self.lock().skipped, reason);
    }

    pub(crate) fn record_rejected(&self, reason: &str) {
        count_reason(&mut self.lock().rejected, reason);
    }

    pub(crate) fn record_envelope(&self, envelope: Envelope) {
        *self.lock().by_envelope.entry(envelope).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded() {
        let counters = ReadCounters::default();
        for i in 0..(MAX_REASONS + 10) {
            counters.record_rejected(&format!("reason {i}"));
        }
        counters.record_rejected("reason 0");
        let report = counters.snapshot();
        assert_eq!(report.rejected.len(), MAX_REASONS + 1);
        assert_eq!(report.rejected.get(OTHER_REASON), Some(&10));
        assert_eq!(report.rejected.get("reason 0"), Some(&2));
        assert_eq!(report.rejected_total(), MAX_REASONS as u64 + 11);
    }
}
