//! The OTLP exporter's counters as Prometheus reads them (feature `otlp`; the workspace's test run enables it
//! through kelemetry-cli).
#![cfg(feature = "otlp")]

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use kelemetry_exporters::OtlpStats;
use kelemetry_metrics::{Metrics, OtlpCollector};

#[test]
fn the_otlp_counters_render_by_name_and_reason() {
    let stats = Arc::new(OtlpStats::default());
    stats.spans_accepted.store(10, Relaxed);
    stats.spans_exported.store(6, Relaxed);
    stats.spans_rejected.store(1, Relaxed);
    stats.spans_dropped_buffer_full.store(2, Relaxed);
    stats.spans_buffered.store(1, Relaxed);
    stats.requests_sent.store(3, Relaxed);
    stats.requests_retried.store(4, Relaxed);
    let mut metrics = Metrics::new();
    metrics.register(OtlpCollector::new(stats));
    let text = metrics.render().expect("rendered");
    for line in [
        "kelemetry_otlp_spans_accepted_total 10\n",
        "kelemetry_otlp_spans_delivered_total 6\n",
        "kelemetry_otlp_spans_lost_total{reason=\"buffer_full\"} 2\n",
        "kelemetry_otlp_spans_lost_total{reason=\"rejected\"} 1\n",
        "kelemetry_otlp_spans_lost_total{reason=\"undelivered\"} 0\n",
        "kelemetry_otlp_buffer_spans 1\n",
        "kelemetry_otlp_requests_total 3\n",
        "kelemetry_otlp_requests_retried_total 4\n",
        "# TYPE kelemetry_otlp_spans_lost_total counter\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}
