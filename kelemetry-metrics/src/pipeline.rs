//! [`PipelineCollector`]: the pipeline's counters ([`PipelineStats`]), its exporters' ([`ExporterStats`]) and its
//! body cache, read when scraped.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use kelemetry_core::{BodyCache, ExporterStats, Pipeline, PipelineLimits, PipelineStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::encode;

/// The metrics of a [`Pipeline`]: records, spans, rejections by source and reason, the queues, the
/// ingest-to-export latency, each exporter's batches, drops, retries and export latency, the body cache.
#[derive(Debug)]
pub struct PipelineCollector {
    stats: Arc<PipelineStats>,
    bodies: Arc<BodyCache>,
    limits: PipelineLimits,
}

impl PipelineCollector {
    /// Reads the counters of `pipeline` (built with `limits`).
    pub fn new(pipeline: &Pipeline, limits: &PipelineLimits) -> Self {
        Self {
            stats: pipeline.stats(),
            bodies: pipeline.body_cache(),
            limits: limits.clone(),
        }
    }
}

impl Collector for PipelineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = &self.stats;
        let e = &mut encoder;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Relaxed);
        encode::counter(
            e,
            "kelemetry_pipeline_records",
            "Records handed to the pipeline by its sources.",
            load(&stats.records),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_activities",
            "Activities that became spans.",
            load(&stats.activities),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_observations",
            "Observations (object bodies seen without an activity) processed.",
            load(&stats.observations),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_filtered",
            "Records dropped by the filter.",
            load(&stats.filtered),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_input_bytes",
            "Bytes of input the sources consumed.",
            load(&stats.bytes_read),
        )?;
        encode::counters(
            e,
            "kelemetry_pipeline_rejections",
            "Records the sources could not use, by source and reason.",
            stats
                .rejections_by_source()
                .into_iter()
                .map(|(source, reason, count)| ([("source", source), ("reason", reason)], count)),
        )?;
        encode::counters(
            e,
            "kelemetry_pipeline_spans",
            "Spans made, by kind.",
            [
                ("object", load(&stats.object_spans)),
                ("link", load(&stats.link_spans)),
                ("activity", load(&stats.activity_spans)),
            ]
            .map(|(kind, count)| ([("kind", kind)], count)),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_link_errors",
            "Linker failures (the object is still traced).",
            load(&stats.link_errors),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_spans_dropped",
            "Spans an exporter did not take after its retries, or whose flush failed.",
            load(&stats.spans_dropped),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_records_forwarded",
            "Records an ingest process forwarded and had acknowledged (role ingest).",
            load(&stats.forwarded),
        )?;
        encode::counter(
            e,
            "kelemetry_pipeline_records_not_forwarded",
            "Records an ingest process could not forward: lost, their sources told so (role ingest).",
            load(&stats.forward_failed),
        )?;
        encode::gauge(
            e,
            "kelemetry_pipeline_queue_records",
            "Records waiting between the sources and the pipeline.",
            load(&stats.queued_records),
        )?;
        encode::gauge(
            e,
            "kelemetry_pipeline_queue_capacity_records",
            "The most records that can wait between the sources and the pipeline (limits.channel).",
            self.limits.channel as u64,
        )?;
        encode::gauge(
            e,
            "kelemetry_pipeline_queue_bytes",
            "Estimated bytes of the records between the sources and the pipeline.",
            load(&stats.queued_record_bytes),
        )?;
        encode::gauge(
            e,
            "kelemetry_pipeline_queue_capacity_bytes",
            "The most bytes of records that can wait between the sources and the pipeline (limits.channelBytes).",
            self.limits.channel_bytes as u64,
        )?;
        encode::histogram(
            e,
            "kelemetry_pipeline_ingest_to_export_seconds",
            "From a record's arrival in the pipeline to the last exporter's acknowledgement of its spans.",
            &stats.ingest_to_export.snapshot(),
        )?;
        self.encode_exporters(e, stats.exporters())?;
        let (hits, misses) = self.bodies.hits_and_misses();
        encode::gauge(
            e,
            "kelemetry_body_cache_objects",
            "Objects whose latest bodies the pipeline keeps for diffs and linkers.",
            self.bodies.len() as u64,
        )?;
        encode::gauge(
            e,
            "kelemetry_body_cache_bytes",
            "Estimated bytes of the bodies the pipeline keeps.",
            self.bodies.bytes() as u64,
        )?;
        encode::gauge(
            e,
            "kelemetry_body_cache_capacity_bytes",
            "The most bytes of bodies the pipeline keeps (limits.bodyCacheBytes).",
            self.limits.body_cache_bytes as u64,
        )?;
        encode::counters(
            e,
            "kelemetry_body_cache_lookups",
            "Lookups of a linker in the body cache, by result.",
            [("hit", hits), ("miss", misses)].map(|(result, count)| ([("result", result)], count)),
        )
    }
}

impl PipelineCollector {
    fn encode_exporters(
        &self,
        e: &mut DescriptorEncoder<'_>,
        exporters: &[Arc<ExporterStats>],
    ) -> std::fmt::Result {
        let per_exporter = |value: fn(&ExporterStats) -> u64| {
            exporters
                .iter()
                .map(move |stats| ([("exporter", stats.name().to_owned())], value(stats)))
        };
        encode::counters(
            e,
            "kelemetry_exporter_batches",
            "Batches of spans an exporter took.",
            per_exporter(|s| s.batches_exported.load(Relaxed)),
        )?;
        encode::counters(
            e,
            "kelemetry_exporter_spans",
            "Spans an exporter took.",
            per_exporter(|s| s.spans_exported.load(Relaxed)),
        )?;
        encode::counters(
            e,
            "kelemetry_exporter_spans_dropped",
            "Spans an exporter did not take after its retries, or whose flush failed.",
            per_exporter(|s| s.spans_dropped.load(Relaxed)),
        )?;
        encode::counters(
            e,
            "kelemetry_exporter_retries",
            "Export tries that failed and were retried.",
            per_exporter(|s| s.retries.load(Relaxed)),
        )?;
        encode::gauges(
            e,
            "kelemetry_exporter_queue_batches",
            "Batches waiting in an exporter's queue.",
            per_exporter(|s| s.queued_batches.load(Relaxed)),
        )?;
        encode::gauge(
            e,
            "kelemetry_exporter_queue_capacity_batches",
            "The most batches that can wait in each exporter's queue (limits.exporterQueue).",
            self.limits.exporter_queue as u64,
        )?;
        encode::gauges(
            e,
            "kelemetry_exporter_queue_bytes",
            "Estimated bytes of the spans waiting in an exporter's queue or in its export.",
            per_exporter(|s| s.queued_bytes.load(Relaxed)),
        )?;
        encode::gauge(
            e,
            "kelemetry_exporter_queue_capacity_bytes",
            "The most bytes of spans that can wait for each exporter (limits.exporterQueueBytes).",
            self.limits.exporter_queue_bytes as u64,
        )?;
        encode::histograms(
            e,
            "kelemetry_exporter_export_seconds",
            "How long an exporter took to take a batch, retries included.",
            exporters.iter().map(|stats| {
                (
                    [("exporter", stats.name().to_owned())],
                    stats.export_duration.snapshot(),
                )
            }),
        )
    }
}
