//! The sources' counters, read when scraped: what the audit log follower and the Events source read
//! ([`SourceReadCollector`]), the audit webhook ([`WebhookCollector`], feature `webhook`), the object watch
//! ([`WatchCollector`], feature `kube`).

use std::sync::Arc;

use kelemetry_sources::ReadCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::encode;

/// What sources that keep [`ReadCounters`] read, each under its `source` label (e.g. `audit_log`, `events`).
#[derive(Debug, Default)]
pub struct SourceReadCollector {
    sources: Vec<(&'static str, Arc<ReadCounters>)>,
}

impl SourceReadCollector {
    /// Adds the counters of a source, labelled `source`.
    pub fn source(mut self, source: &'static str, counters: Arc<ReadCounters>) -> Self {
        self.sources.push((source, counters));
        self
    }

    /// Whether no source was added.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

impl Collector for SourceReadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let reports: Vec<_> = self
            .sources
            .iter()
            .map(|(source, counters)| (*source, counters.snapshot()))
            .collect();
        let e = &mut encoder;
        encode::counters(
            e,
            "kelemetry_source_input_bytes",
            "Bytes of input a source read.",
            reports
                .iter()
                .map(|(source, report)| ([("source", *source)], report.bytes)),
        )?;
        encode::counters(
            e,
            "kelemetry_source_records",
            "Records a source found in its input (audit events, Kubernetes Events...), whatever became of them.",
            reports
                .iter()
                .map(|(source, report)| ([("source", *source)], report.records)),
        )?;
        encode::counters(
            e,
            "kelemetry_source_sent",
            "Records a source handed to the pipeline.",
            reports
                .iter()
                .map(|(source, report)| ([("source", *source)], report.sent)),
        )?;
        encode::counters(
            e,
            "kelemetry_source_skipped",
            "Records a source deliberately did not send (reads, intermediate stages...), by reason.",
            reports.iter().flat_map(|(source, report)| {
                report.skipped.iter().map(move |(reason, count)| {
                    (
                        [("source", (*source).to_owned()), ("reason", reason.clone())],
                        *count,
                    )
                })
            }),
        )?;
        encode::counters(
            e,
            "kelemetry_source_rejected",
            "Records a source could not use, by reason.",
            reports.iter().flat_map(|(source, report)| {
                report.rejected.iter().map(move |(reason, count)| {
                    (
                        [("source", (*source).to_owned()), ("reason", reason.clone())],
                        *count,
                    )
                })
            }),
        )
    }
}

#[cfg(feature = "webhook")]
pub use self::webhook::WebhookCollector;

#[cfg(feature = "webhook")]
mod webhook {
    use std::sync::Arc;

    use kelemetry_sources::webhook::WebhookMetrics;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;

    use crate::encode;

    /// The audit webhook's counters ([`WebhookMetrics`]).
    #[derive(Debug)]
    pub struct WebhookCollector {
        metrics: Arc<WebhookMetrics>,
    }

    impl WebhookCollector {
        /// Reads `metrics`.
        pub fn new(metrics: Arc<WebhookMetrics>) -> Self {
            Self { metrics }
        }
    }

    impl Collector for WebhookCollector {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            let c = self.metrics.snapshot();
            let e = &mut encoder;
            let plain: [(&str, &str, u64); 7] = [
                (
                    "kelemetry_webhook_requests",
                    "Requests to /audit and /audit/{cluster}.",
                    c.requests,
                ),
                (
                    "kelemetry_webhook_batches_accepted",
                    "Audit batches answered 200.",
                    c.batches_accepted,
                ),
                (
                    "kelemetry_webhook_events_received",
                    "Audit events in the bodies read.",
                    c.events_received,
                ),
                (
                    "kelemetry_webhook_events_delivered",
                    "Activities the webhook handed to the pipeline.",
                    c.events_delivered,
                ),
                (
                    "kelemetry_webhook_events_lost",
                    "Accepted activities the pipeline did not take because it had closed (shutdown).",
                    c.events_lost,
                ),
                (
                    "kelemetry_webhook_batches_not_delivered",
                    "Batches the pipeline did not export; with a write-ahead log they are kept for the next start.",
                    c.batches_not_delivered,
                ),
                (
                    "kelemetry_webhook_events_not_delivered",
                    "Activities of those batches.",
                    c.events_not_delivered,
                ),
            ];
            for (name, help, value) in plain {
                encode::counter(e, name, help, value)?;
            }
            encode::counters(
                e,
                "kelemetry_webhook_events",
                "Audit events of the bodies read, by what became of them: accepted (an activity queued), skipped \
                 (not traced: reads, intermediate stages), invalid (malformed, rejected).",
                [
                    ("accepted", c.events_accepted),
                    ("skipped", c.events_skipped),
                    ("invalid", c.events_invalid),
                ]
                .map(|(outcome, count)| ([("outcome", outcome)], count)),
            )?;
            encode::counters(
                e,
                "kelemetry_webhook_refused",
                "Requests refused, by status code: 429 queue or log full or no read slot, 413 too large, 401 \
                 unauthorized, 400 malformed or 408 too slow, 503 shutting down or the log failed.",
                [
                    ("429", c.throttled),
                    ("413", c.too_large),
                    ("401", c.unauthorized),
                    ("400", c.malformed),
                    ("503", c.unavailable),
                ]
                .map(|(code, count)| ([("code", code)], count)),
            )?;
            encode::gauge(
                e,
                "kelemetry_webhook_queue_events",
                "Activities waiting in the webhook's queue.",
                c.queued_events,
            )?;
            encode::gauge(
                e,
                "kelemetry_webhook_wal_enabled",
                "1 when the webhook writes ahead into a log before answering 200.",
                u64::from(c.durable),
            )?;
            let wal: [(&str, &str, u64); 7] = [
                (
                    "kelemetry_webhook_wal_batches",
                    "Batches written to the write-ahead log.",
                    c.wal_batches,
                ),
                (
                    "kelemetry_webhook_wal_syncs",
                    "Syncs of the write-ahead log (each made one or more batches durable).",
                    c.wal_syncs,
                ),
                (
                    "kelemetry_webhook_wal_full",
                    "Batches refused with 429 because the write-ahead log had no room.",
                    c.wal_full,
                ),
                (
                    "kelemetry_webhook_wal_failed",
                    "Batches refused with 503 because writing or syncing the write-ahead log failed.",
                    c.wal_failed,
                ),
                (
                    "kelemetry_webhook_wal_damaged",
                    "Damaged stretches of the write-ahead log found at start.",
                    c.wal_damaged,
                ),
                (
                    "kelemetry_webhook_wal_replayed_batches",
                    "Batches read back from the write-ahead log at start.",
                    c.replayed_batches,
                ),
                (
                    "kelemetry_webhook_wal_replayed_events",
                    "Activities of those batches.",
                    c.replayed_events,
                ),
            ];
            for (name, help, value) in wal {
                encode::counter(e, name, help, value)?;
            }
            encode::gauge(
                e,
                "kelemetry_webhook_wal_bytes",
                "Bytes the write-ahead log holds on disk.",
                c.wal_bytes,
            )?;
            let k = &c.connections;
            encode::counter(
                e,
                "kelemetry_webhook_connections_accepted",
                "Connections the webhook accepted.",
                k.accepted,
            )?;
            encode::counters(
                e,
                "kelemetry_webhook_connections_closed",
                "Connections the webhook closed, by reason.",
                [
                    ("head_timeout", k.head_timeouts),
                    ("idle_timeout", k.idle_timeouts),
                    ("handshake_failed", k.handshake_failures),
                    ("slow_body", k.slow_bodies),
                    ("room_for_same_client", k.peer_limit_closed_idle),
                    ("room_for_another", k.total_limit_closed_idle),
                ]
                .map(|(reason, count)| ([("reason", reason)], count)),
            )?;
            encode::counters(
                e,
                "kelemetry_webhook_connections_refused",
                "Connections refused at once, by the limit: per_client or total.",
                [
                    ("per_client", k.peer_limit_refused),
                    ("total", k.total_limit_refused),
                ]
                .map(|(limit, count)| ([("limit", limit)], count)),
            )?;
            encode::counter(
                e,
                "kelemetry_webhook_read_slot_timeouts",
                "Requests answered 429 because no read slot freed within the wait.",
                k.read_slot_timeouts,
            )
        }
    }
}

#[cfg(feature = "kube")]
pub use self::watch::WatchCollector;

#[cfg(feature = "kube")]
mod watch {
    use std::sync::Arc;

    use kelemetry_sources::WatchStore;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;

    use crate::encode;

    /// The object watch's store and its diff decorator ([`WatchStore`]).
    #[derive(Debug)]
    pub struct WatchCollector {
        store: Arc<WatchStore>,
    }

    impl WatchCollector {
        /// Reads `store`.
        pub fn new(store: Arc<WatchStore>) -> Self {
            Self { store }
        }
    }

    impl Collector for WatchCollector {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            let c = self.store.counts();
            let (listing, listed) = self.store.resources_listing_and_listed();
            let (found, given_up) = self.store.decorator_waits();
            let e = &mut encoder;
            encode::gauge(
                e,
                "kelemetry_watch_objects",
                "Objects whose last body the watch keeps.",
                c.objects,
            )?;
            encode::gauge(
                e,
                "kelemetry_watch_body_bytes",
                "Estimated bytes of the bodies the watch keeps.",
                c.body_bytes,
            )?;
            encode::gauge(
                e,
                "kelemetry_watch_changes",
                "Changes (diffs, snapshots) the watch keeps for audit writes to find.",
                c.changes,
            )?;
            encode::gauges(
                e,
                "kelemetry_watch_resources",
                "Watched resources, by state: listing (first list not complete) or listed.",
                [("listing", listing), ("listed", listed)]
                    .map(|(state, n)| ([("state", state)], n)),
            )?;
            encode::counter(
                e,
                "kelemetry_watch_versions",
                "Object versions the watch saw.",
                c.versions_seen,
            )?;
            encode::counters(
                e,
                "kelemetry_watch_changes_filed",
                "Changes the watch filed, by kind.",
                [
                    ("diff", c.diffs),
                    ("creation", c.creations),
                    ("deletion", c.deletions),
                ]
                .map(|(kind, n)| ([("kind", kind)], n)),
            )?;
            encode::counters(
                e,
                "kelemetry_watch_evicted",
                "Bodies and changes the watch dropped to stay within its bounds.",
                [("body", c.bodies_evicted), ("change", c.changes_evicted)]
                    .map(|(what, n)| ([("what", what)], n)),
            )?;
            encode::counters(
                e,
                "kelemetry_watch_decorator_lookups",
                "Audit writes that looked for the watch's change, by result.",
                [("found", c.decorator_hits), ("missed", c.decorator_misses)]
                    .map(|(result, n)| ([("result", result)], n)),
            )?;
            encode::histograms(
                e,
                "kelemetry_watch_decorator_wait_seconds",
                "How long an audit write waited for a lagging watch, by outcome: found (the watch's lag behind \
                 the audit record) or gave_up. The pipeline's one stage waits with it.",
                [("found", found), ("gave_up", given_up)]
                    .map(|(outcome, h)| ([("outcome", outcome)], h)),
            )
        }
    }
}
