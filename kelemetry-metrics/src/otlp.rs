//! [`OtlpCollector`]: the OTLP exporter's counters ([`OtlpStats`]), read when scraped.

use std::sync::Arc;

use kelemetry_exporters::OtlpStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::encode;

/// The OTLP exporter's delivery: spans accepted, delivered, lost by reason, buffered; requests and retries.
#[derive(Debug)]
pub struct OtlpCollector {
    stats: Arc<OtlpStats>,
}

impl OtlpCollector {
    /// Reads `stats` ([`OtlpExporter::stats`](kelemetry_exporters::OtlpExporter::stats)).
    pub fn new(stats: Arc<OtlpStats>) -> Self {
        Self { stats }
    }
}

impl Collector for OtlpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let r = self.stats.report();
        let e = &mut encoder;
        encode::counter(
            e,
            "kelemetry_otlp_spans_accepted",
            "Spans the OTLP exporter took into its buffer.",
            r.spans_accepted,
        )?;
        encode::counter(
            e,
            "kelemetry_otlp_spans_delivered",
            "Spans the OTLP endpoint accepted.",
            r.spans_exported,
        )?;
        encode::counters(
            e,
            "kelemetry_otlp_spans_lost",
            "Spans that will never arrive, by reason: buffer_full, rejected (by the endpoint), undelivered (at a \
             flush timeout).",
            [
                ("buffer_full", r.spans_dropped_buffer_full),
                ("rejected", r.spans_rejected),
                ("undelivered", r.spans_dropped_undelivered),
            ]
            .map(|(reason, n)| ([("reason", reason)], n)),
        )?;
        encode::gauge(
            e,
            "kelemetry_otlp_buffer_spans",
            "Spans waiting in the OTLP exporter's buffer or in the request being sent.",
            r.spans_buffered,
        )?;
        encode::counter(
            e,
            "kelemetry_otlp_requests",
            "OTLP export requests that succeeded.",
            r.requests_sent,
        )?;
        encode::counter(
            e,
            "kelemetry_otlp_requests_retried",
            "OTLP export requests that failed and were retried.",
            r.requests_retried,
        )
    }
}
