//! # kelemetry-metrics
//!
//! Prometheus metrics for Kelemetry, in the Prometheus text format through the `prometheus-client` crate. The
//! components keep their own counters (the pipeline's [`PipelineStats`](kelemetry_core::PipelineStats), the
//! webhook's `WebhookMetrics`, the OTLP exporter's `OtlpStats`...); the collectors here read them when the
//! endpoint is scraped, so nothing is counted twice. Every metric, its labels and which to alert on are listed in
//! `docs/metrics.md`.
//!
//! - [`Metrics`]: the registry, which renders every collector added to it ([`Metrics::render`]);
//! - [`PipelineCollector`]: the pipeline, its exporters, its body cache;
//! - [`AuditRequests`]: request counts and latencies from the audit stream, by configurable labels, with the
//!   label combinations capped ([`AuditMetricsConfig`]);
//! - with features: `SourceReadCollector` (`sources`), `WebhookCollector` (`webhook`), `WatchCollector`
//!   (`kube`), `OtlpCollector` (`otlp`); the routes `/metrics`, `/healthz`, `/readyz` and `kelemetry serve`'s
//!   `ServeCollector` (`http`).
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry_core::{MemoryExporter, Pipeline, PipelineLimits};
//! use kelemetry_metrics::{Metrics, PipelineCollector};
//!
//! let limits = PipelineLimits::default();
//! let pipeline = Pipeline::builder().limits(limits.clone()).exporter(Arc::new(MemoryExporter::new(10))).build();
//! let mut metrics = Metrics::new();
//! metrics.register(PipelineCollector::new(&pipeline, &limits));
//! let text = metrics.render().unwrap();
//! assert!(text.contains("# TYPE kelemetry_pipeline_records_total counter\n"));
//! assert!(text.contains("kelemetry_exporter_batches_total{exporter=\"memory\"} 0\n"));
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

mod audit_requests;
mod encode;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "otlp")]
mod otlp;
mod pipeline;
#[cfg(feature = "sources")]
mod sources;

pub use audit_requests::{
    AuditLabel, AuditMetricsConfig, AuditRequests, AuditSeries, DEFAULT_MAX_SERIES,
    LATENCY_BOUNDS_SECONDS, MAX_LABEL_BYTES, OTHER,
};
#[cfg(feature = "http")]
pub use http::{ReadyCheck, ServeCollector, health_router, metrics_router};
#[cfg(feature = "otlp")]
pub use otlp::OtlpCollector;
pub use pipeline::PipelineCollector;
pub use prometheus_client;
#[cfg(feature = "sources")]
pub use sources::SourceReadCollector;
#[cfg(feature = "kube")]
pub use sources::WatchCollector;
#[cfg(feature = "webhook")]
pub use sources::WebhookCollector;

/// The `Content-Type` of [`Metrics::render`]'s text: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The collectors of one process, rendered together. It starts with `kelemetry_build_info`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with `kelemetry_build_info` only.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(BuildInfo));
        Self { registry }
    }

    /// Adds a collector; it is read at every [`render`](Self::render). Each metric family must come from one
    /// collector only.
    pub fn register(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Every collector's metrics now, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// `kelemetry_build_info{version="…"} 1`.
#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode::gauges(
            &mut encoder,
            "kelemetry_build_info",
            "The version of Kelemetry running (always 1).",
            [([("version", env!("CARGO_PKG_VERSION"))], 1)],
        )
    }
}
