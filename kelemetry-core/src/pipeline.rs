//! The [`Pipeline`]: sources → filter → redact → decorate → window → link → exporters, through bounded channels.
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry_core::{Activity, CancellationToken, MemoryExporter, Object, ObjectKey, ObjectRef, Pipeline, SourceKind};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let exporter = Arc::new(MemoryExporter::new(1_000));
//! let pipeline = Pipeline::builder().exporter(exporter.clone()).build();
//! let sink = pipeline.sink();
//! let running = tokio::spawn(pipeline.run(CancellationToken::new()));
//! let key = ObjectKey::new("c", "apps", "deployments", "default", "web");
//! let at = "2024-05-01T12:00:00Z".parse().unwrap();
//! sink.send(Activity::new(Object::new(ObjectRef::new(key, "v1", None)), SourceKind::Audit, at, "alice create", "a1").into())
//!     .await.unwrap();
//! drop(sink); // the pipeline ends when every sink is gone and the sources are done
//! let report = running.await.unwrap();
//! assert_eq!(report.activities, 1);
//! assert_eq!(exporter.spans().len(), 2); // the object span and the activity span
//! # });
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, debug, error, warn};

use crate::activity::Record;
use crate::body_cache::BodyCache;
use crate::budget::{ByteBudget, HeldBytes};
use crate::decorate::Decorator;
use crate::delivery::{Delivery, PendingRecord};
use crate::exporter::Exporter;
use crate::filter::Filter;
use crate::forward::RecordForwarder;
use crate::histogram::DurationHistogram;
use crate::ledger::{BoundedLedger, SpanLedger};
use crate::link::{Linker, ObjectLookup};
use crate::redact::Redactor;
use crate::source::{ActivitySink, CancellationToken, Rejection, SinkClosed, Source, SourceError};
use crate::span::SpanRecord;
use crate::window::Windowing;

mod forward;
mod shard;
mod stage;

use forward::Forwarding;
use shard::{Batch, ShardSettings, Shards, Unrouted};
use stage::{CachedLookup, Stage};

/// How many distinct rejection reasons are counted separately; further ones are counted as `other`.
const MAX_REJECTION_REASONS: usize = 64;
/// How many rejections are kept as examples for the report.
const MAX_REJECTION_EXAMPLES: usize = 20;

/// Counters of a running pipeline. Read them at any time (for progress displays and metrics).
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Records handed in by sources.
    pub records: AtomicU64,
    /// Activities that became spans.
    pub activities: AtomicU64,
    /// Observations processed.
    pub observations: AtomicU64,
    /// Records dropped by the filter.
    pub filtered: AtomicU64,
    /// Records rejected by sources.
    pub rejected: AtomicU64,
    /// Bytes of input consumed by sources.
    pub bytes_read: AtomicU64,
    /// Object spans emitted.
    pub object_spans: AtomicU64,
    /// Link spans emitted.
    pub link_spans: AtomicU64,
    /// Activity spans emitted.
    pub activity_spans: AtomicU64,
    /// Linker failures.
    pub link_errors: AtomicU64,
    /// Spans an exporter could not take (after retries).
    pub spans_dropped: AtomicU64,
    /// From a record's arrival in the pipeline (its sink took it) to the acknowledgement of the batch holding its
    /// spans by the last exporter. Records that made no span, or whose batch an exporter gave up on, are not in it.
    pub ingest_to_export: DurationHistogram,
    /// Records taken from the sources and not yet handled now (a gauge): in the intake channel, in a shard's
    /// queue, or in progress. At most about [`PipelineLimits::channel`] (see there).
    pub queued_records: AtomicU64,
    /// The estimated bytes of those records ([`Record::approximate_size`]; a gauge). At most
    /// [`PipelineLimits::channel_bytes`], and one record more.
    pub queued_record_bytes: AtomicU64,
    /// Of those, the records a shard has started on and is waiting for now, a decorator or a lookup being slow
    /// (a gauge). Later records of the same objects wait behind them; other objects' records do not.
    pub in_progress_records: AtomicU64,
    /// Records a forwarding pipeline ([`PipelineBuilder::forward`]) handed on and had acknowledged.
    pub forwarded: AtomicU64,
    /// Records its forwarder did not take (refused, or not acknowledged in time): lost, their sources told so.
    pub forward_failed: AtomicU64,
    rejections: Mutex<RejectionLog>,
    exporters: OnceLock<Vec<Arc<ExporterStats>>>,
}

/// The name under which rejections reported through a sink of [`Pipeline::sink`] (not a source's) are counted.
pub const SINK_SOURCE_NAME: &str = "sink";

/// Counters of one exporter of a running pipeline ([`PipelineStats::exporters`]).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExporterStats {
    name: String,
    /// Batches the exporter took (after retries).
    pub batches_exported: AtomicU64,
    /// Spans of those batches.
    pub spans_exported: AtomicU64,
    /// Spans the exporter gave up on (after retries), or whose flush failed.
    pub spans_dropped: AtomicU64,
    /// Tries that failed and were retried.
    pub retries: AtomicU64,
    /// Batches waiting in the exporter's queue now (a gauge).
    pub queued_batches: AtomicU64,
    /// The estimated bytes of the spans queued for the exporter or being exported now (a gauge; see
    /// [`PipelineLimits::exporter_queue_bytes`]).
    pub queued_bytes: AtomicU64,
    /// How long the exporter took to take a batch, retries included (batches it took only).
    pub export_duration: DurationHistogram,
}

impl ExporterStats {
    /// The counters of the exporter named `name` ([`Exporter::name`]).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The exporter's [`Exporter::name`].
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug, Default)]
struct RejectionLog {
    by_reason: BTreeMap<String, u64>,
    /// Source name → reason (as counted in `by_reason`) → count.
    by_source: BTreeMap<String, BTreeMap<String, u64>>,
    examples: Vec<Rejection>,
}

/// Takes one from a gauge, never below zero.
fn decrement(gauge: &AtomicU64) {
    let _ = gauge.fetch_update(Relaxed, Relaxed, |now| now.checked_sub(1));
}

impl PipelineStats {
    /// The counters of each exporter, in the order they were added to the pipeline (empty until it is built).
    pub fn exporters(&self) -> &[Arc<ExporterStats>] {
        self.exporters.get().map_or(&[], Vec::as_slice)
    }

    /// Rejections by the source that reported them ([`Source::name`], or [`SINK_SOURCE_NAME`]) and reason, as
    /// `(source, reason, count)`. The reasons are those of [`PipelineReport::rejections_by_reason`] (64 at most,
    /// then `other`), and the sources those the pipeline was built with, so the set is bounded.
    pub fn rejections_by_source(&self) -> Vec<(String, String, u64)> {
        let Ok(log) = self.rejections.lock() else {
            return Vec::new();
        };
        log.by_source
            .iter()
            .flat_map(|(source, reasons)| {
                reasons
                    .iter()
                    .map(move |(reason, count)| (source.clone(), reason.clone(), *count))
            })
            .collect()
    }

    fn record_rejection(&self, rejection: Rejection, source: &str) {
        self.rejected.fetch_add(1, Relaxed);
        warn!(origin = %rejection.origin, reason = %rejection.reason, "{}", rejection.detail);
        let Ok(mut log) = self.rejections.lock() else {
            return;
        };
        let reason = if log.by_reason.len() < MAX_REJECTION_REASONS
            || log.by_reason.contains_key(&rejection.reason)
        {
            rejection.reason.clone()
        } else {
            "other".to_owned()
        };
        *log.by_source
            .entry(source.to_owned())
            .or_default()
            .entry(reason.clone())
            .or_default() += 1;
        *log.by_reason.entry(reason).or_default() += 1;
        if log.examples.len() < MAX_REJECTION_EXAMPLES {
            log.examples.push(rejection);
        }
    }

    /// A snapshot of the counters.
    pub fn report(&self) -> PipelineReport {
        let (by_reason, examples) = self
            .rejections
            .lock()
            .map(|log| (log.by_reason.clone(), log.examples.clone()))
            .unwrap_or_default();
        PipelineReport {
            records: self.records.load(Relaxed),
            activities: self.activities.load(Relaxed),
            observations: self.observations.load(Relaxed),
            filtered: self.filtered.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            object_spans: self.object_spans.load(Relaxed),
            link_spans: self.link_spans.load(Relaxed),
            activity_spans: self.activity_spans.load(Relaxed),
            link_errors: self.link_errors.load(Relaxed),
            spans_dropped: self.spans_dropped.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            forward_failed: self.forward_failed.load(Relaxed),
            rejections_by_reason: by_reason,
            rejection_examples: examples,
            source_errors: Vec::new(),
            abandoned: 0,
            stop: StopCause::default(),
        }
    }
}

/// What a pipeline did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineReport {
    /// Records handed in by sources.
    pub records: u64,
    /// Activities that became spans.
    pub activities: u64,
    /// Observations processed.
    pub observations: u64,
    /// Records dropped by the filter.
    pub filtered: u64,
    /// Records rejected by sources.
    pub rejected: u64,
    /// Object spans emitted.
    pub object_spans: u64,
    /// Link spans emitted.
    pub link_spans: u64,
    /// Activity spans emitted.
    pub activity_spans: u64,
    /// Linker failures.
    pub link_errors: u64,
    /// Spans an exporter could not take.
    pub spans_dropped: u64,
    /// Records forwarded and acknowledged (a forwarding pipeline's output instead of spans).
    pub forwarded: u64,
    /// Records the forwarder did not take: lost.
    pub forward_failed: u64,
    /// Rejections counted by reason.
    pub rejections_by_reason: BTreeMap<String, u64>,
    /// The first rejections, with where they were.
    pub rejection_examples: Vec<Rejection>,
    /// Sources that failed as a whole, or did not stop within the shutdown grace period.
    pub source_errors: Vec<SourceFailure>,
    /// Records accepted from sources but not processed because of a hard stop.
    pub abandoned: u64,
    /// Why the pipeline stopped.
    pub stop: StopCause,
}

/// What a run lost ([`PipelineReport::check`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct RunFailed {
    /// The sources that failed, with their causes.
    pub source_errors: Vec<SourceFailure>,
    /// Spans an exporter could not take.
    pub spans_dropped: u64,
    /// Records a forwarder did not take.
    pub forward_failed: u64,
    /// Records accepted but not processed because of a hard stop.
    pub abandoned: u64,
}

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .source_errors
            .iter()
            .map(|failure| format!("source failed: {failure}"))
            .collect();
        if self.spans_dropped > 0 {
            parts.push(format!("{} spans not exported", self.spans_dropped));
        }
        if self.forward_failed > 0 {
            parts.push(format!("{} records not forwarded", self.forward_failed));
        }
        if self.abandoned > 0 {
            parts.push(format!("{} records abandoned", self.abandoned));
        }
        f.write_str(&parts.join("; "))
    }
}

/// A source that failed as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceFailure {
    /// The source's [`Source::name`].
    pub source: String,
    /// What went wrong, with its causes.
    pub error: String,
}

impl std::fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source, self.error)
    }
}

/// Why a [`Pipeline`] stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopCause {
    /// Every source finished and every sink was dropped.
    #[default]
    InputEnded,
    /// The shutdown token was cancelled; what the sources had accepted was processed.
    Shutdown,
    /// A source returned while [`PipelineBuilder::stop_when_a_source_ends`] was set.
    SourceEnded(String),
    /// The hard-stop token was cancelled, or the shutdown grace ran out: what was still queued was abandoned.
    HardStop,
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InputEnded => f.write_str("the input ended"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::SourceEnded(name) => write!(f, "source {name} ended"),
            Self::HardStop => f.write_str("hard stop"),
        }
    }
}

/// One line: `N records, N activities, N observations, N filtered, N rejected; N spans (N object, N link, N
/// activity), N not exported`, then `; N forwarded, N not forwarded` for a forwarding pipeline, the stop cause when it is not the end of the input, and the numbers of
/// abandoned records and of failed sources when there are any (each failure's [`SourceFailure`] has its own
/// `Display`).
impl std::fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records, {} activities, {} observations, {} filtered, {} rejected; {} spans ({} object, {} link, \
             {} activity), {} not exported",
            self.records,
            self.activities,
            self.observations,
            self.filtered,
            self.rejected,
            self.spans(),
            self.object_spans,
            self.link_spans,
            self.activity_spans,
            self.spans_dropped,
        )?;
        if self.forwarded > 0 || self.forward_failed > 0 {
            write!(
                f,
                "; {} forwarded, {} not forwarded",
                self.forwarded, self.forward_failed
            )?;
        }
        if self.stop != StopCause::InputEnded {
            write!(f, "; stopped by {}", self.stop)?;
        }
        if self.abandoned > 0 {
            write!(f, "; {} records abandoned", self.abandoned)?;
        }
        match self.source_errors.len() {
            0 => {}
            1 => f.write_str("; 1 source failed")?,
            n => write!(f, "; {n} sources failed")?,
        }
        Ok(())
    }
}

impl PipelineReport {
    /// `Err` when the run lost something: a source failed, spans were not exported, records were not forwarded or
    /// were abandoned; the
    /// error says what, so a binary can fail loudly with `report.check()?`.
    pub fn check(&self) -> Result<(), RunFailed> {
        let lost = !self.source_errors.is_empty()
            || self.spans_dropped > 0
            || self.forward_failed > 0
            || self.abandoned > 0;
        match lost {
            true => Err(RunFailed {
                source_errors: self.source_errors.clone(),
                spans_dropped: self.spans_dropped,
                forward_failed: self.forward_failed,
                abandoned: self.abandoned,
            }),
            false => Ok(()),
        }
    }

    /// All spans emitted.
    pub fn spans(&self) -> u64 {
        self.object_spans + self.link_spans + self.activity_spans
    }
}

/// Retry of retryable export failures: `attempts` tries, waiting `initial_backoff` and doubling up to
/// `max_backoff`, each wait with random jitter (up to the wait again, never past `max_backoff`) so that many
/// exporters do not retry in step.
/// The one schedule of retries in the project: the pipeline's export workers and the OTLP exporter's delivery both
/// take their waits from [`RetryPolicy::delays`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least one); `u32::MAX` for no limit.
    pub attempts: u32,
    /// First wait.
    pub initial_backoff: Duration,
    /// Longest wait, jitter included.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Retries without limit, waiting `initial` and doubling up to `max` (for exporters that retry until they are
    /// told to give up).
    pub fn unlimited(initial: Duration, max: Duration) -> Self {
        Self {
            attempts: u32::MAX,
            initial_backoff: initial,
            max_backoff: max.max(initial),
        }
    }

    /// The waits between tries: one fewer than [`RetryPolicy::attempts`] (endless for `u32::MAX`). Each is the
    /// doubling wait plus random jitter, never more than `max_backoff`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kelemetry_core::RetryPolicy;
    ///
    /// let policy = RetryPolicy { attempts: 4, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_millis(300) };
    /// let waits: Vec<Duration> = policy.delays().collect();
    /// assert_eq!(waits.len(), 3);
    /// assert!(waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(200));
    /// assert_eq!(waits[2], Duration::from_millis(300)); // jitter never goes past max_backoff
    /// ```
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        use backon::BackoffBuilder;
        let max = self.max_backoff.max(self.initial_backoff);
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter();
        let delays = match self.attempts {
            u32::MAX => builder.without_max_times().build(),
            attempts => builder.with_max_times(attempts.max(1) as usize - 1).build(),
        };
        // backon adds the jitter on top of the capped wait.
        delays.map(move |wait| wait.min(max))
    }
}

/// The sizes, intervals and grace period of a [`Pipeline`]; [`Default`] holds the defaults. With the `config`
/// feature it is read from configuration files (camelCase keys, durations like `250ms`, `5s`, `2m`). Set what you
/// need and take the rest from `..PipelineLimits::default()`, so that fields added later keep their defaults.
///
/// ```
/// use kelemetry_core::{Pipeline, PipelineLimits};
///
/// let limits = PipelineLimits { batch_size: 128, ..PipelineLimits::default() };
/// let pipeline = Pipeline::builder().limits(limits).build();
/// # drop(pipeline);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
pub struct PipelineLimits {
    /// Records held between the sources and the exporters' batches: half in the intake channel the sources write
    /// to, the other half split evenly over the shards (at least one record each). A source's `send` waits while
    /// the intake is full; the intake waits while the shard of its next record is full.
    pub channel: usize,
    /// Bytes of the records (estimated by [`Record::approximate_size`]) taken from the sources and not yet handled,
    /// whatever their count: a source's `send` also waits while its record does not fit. A record larger than this
    /// goes alone, once the others are handled.
    #[cfg_attr(feature = "config", serde(with = "crate::config::size"))]
    pub channel_bytes: usize,
    /// Shards of the stage: records are routed by their object's key, so the records of one object stay in order
    /// on one shard, and shards run on as many cores. `0` (the default) takes the cores this process may use.
    /// Inside a shard, a record waiting on a slow decorator or lookup holds back only its own object's later
    /// records.
    pub shards: usize,
    /// Spans per batch handed to exporters.
    pub batch_size: usize,
    /// Batches buffered per exporter.
    pub exporter_queue: usize,
    /// Bytes of spans (estimated by [`SpanRecord::approximate_size`]) that may wait for each exporter or be in its
    /// export, whatever the batch count: a shard waits while its next batch does not fit. A shard hands on a batch
    /// once it holds a quarter of them, whatever its span count; one larger than all of them (a record's spans are
    /// never split) goes alone, once the queue is empty.
    #[cfg_attr(feature = "config", serde(with = "crate::config::size"))]
    pub exporter_queue_bytes: usize,
    /// Objects whose latest body is kept for diffs and linkers.
    pub body_cache_objects: usize,
    /// Bytes of bodies (estimated) kept for diffs and linkers, whatever their count.
    #[cfg_attr(feature = "config", serde(with = "crate::config::size"))]
    pub body_cache_bytes: usize,
    /// Span ids the default ledger remembers, to emit each object and link span once.
    pub ledger_ids: usize,
    /// How many link hops one record may cause.
    pub max_link_depth: usize,
    /// How long spans may wait in a partial batch when input is slow.
    #[cfg_attr(feature = "config", serde(with = "crate::config::duration"))]
    pub flush_interval: Duration,
    /// After shutdown is requested: how long the sources have to hand over what they accepted, and then the
    /// pipeline to drain it, before they are stopped hard.
    #[cfg_attr(feature = "config", serde(with = "crate::config::duration"))]
    pub shutdown_grace: Duration,
}

/// A shard hands on its batch once it holds this fraction of [`PipelineLimits::exporter_queue_bytes`]: so at least
/// that many batches fit in each queue, and one is built while the others wait or are exported. A smaller share cut
/// batches of large spans into many small ones, which cost the store a transaction each and compress worse (the
/// spans of one trace are compressed together).
const BATCHES_IN_QUEUE_BYTES: usize = 4;

/// Records the run loop routes to the shards in one turn when they are already waiting in the intake, before it
/// looks again at what else it waits for (a stop, a deadline, a source that ended).
const ROUTED_PER_TURN: usize = 64;

/// The default of [`PipelineLimits::channel_bytes`]: 256 MiB.
pub const DEFAULT_CHANNEL_BYTES: usize = 256 << 20;

/// The default of [`PipelineLimits::exporter_queue_bytes`]: 64 MiB.
pub const DEFAULT_EXPORTER_QUEUE_BYTES: usize = 64 << 20;

impl Default for PipelineLimits {
    fn default() -> Self {
        Self {
            channel: 4096,
            channel_bytes: DEFAULT_CHANNEL_BYTES,
            shards: 0,
            batch_size: 512,
            exporter_queue: 16,
            exporter_queue_bytes: DEFAULT_EXPORTER_QUEUE_BYTES,
            body_cache_objects: 10_000,
            body_cache_bytes: crate::body_cache::DEFAULT_BODY_BYTES,
            ledger_ids: 1_000_000,
            max_link_depth: 8,
            flush_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Configures a [`Pipeline`].
#[derive(Default)]
pub struct PipelineBuilder {
    windowing: Windowing,
    filter: Filter,
    redactor: Redactor,
    decorators: Vec<Arc<dyn Decorator>>,
    linkers: Vec<Arc<dyn Linker>>,
    lookup: Option<Arc<dyn ObjectLookup>>,
    exporters: Vec<Arc<dyn Exporter>>,
    forwarder: Option<Arc<dyn RecordForwarder>>,
    ledger: Option<Arc<dyn SpanLedger>>,
    sources: Vec<Box<dyn Source>>,
    limits: PipelineLimits,
    retry: RetryPolicy,
    stop_when_a_source_ends: bool,
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |linkers: &[Arc<dyn Linker>]| -> Vec<String> {
            linkers.iter().map(|l| l.name().to_owned()).collect()
        };
        f.debug_struct("PipelineBuilder")
            .field("windowing", &self.windowing)
            .field("decorators", &self.decorators.len())
            .field("linkers", &names(&self.linkers))
            .field(
                "exporters",
                &self.exporters.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .field("stop_when_a_source_ends", &self.stop_when_a_source_ends)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// How time is cut into windows (default 30 minutes).
    pub fn windowing(mut self, windowing: Windowing) -> Self {
        self.windowing = windowing;
        self
    }

    /// Which records to drop (default: none).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// What to redact from bodies before anything else sees them (default: Secret data).
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Adds a decorator; decorators run in the order added.
    pub fn decorator(mut self, decorator: Arc<dyn Decorator>) -> Self {
        self.decorators.push(decorator);
        self
    }

    /// Adds a linker.
    pub fn linker(mut self, linker: Arc<dyn Linker>) -> Self {
        self.linkers.push(linker);
        self
    }

    /// A lookup asked for bodies the pipeline's own cache does not have (e.g. an apiserver).
    pub fn lookup(mut self, lookup: Arc<dyn ObjectLookup>) -> Self {
        self.lookup = Some(lookup);
        self
    }

    /// Adds an exporter; every exporter gets every span, through its own bounded queue.
    pub fn exporter(mut self, exporter: Arc<dyn Exporter>) -> Self {
        self.exporters.push(exporter);
        self
    }

    /// The ledger of emitted spans (default: in memory, bounded by [`PipelineBuilder::ledger_capacity`]).
    pub fn ledger(mut self, ledger: Arc<dyn SpanLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Adds a source.
    pub fn source(mut self, source: Box<dyn Source>) -> Self {
        self.sources.push(source);
        self
    }

    /// Records held between sources and the exporters' batches (default 4096; see [`PipelineLimits::channel`]).
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.limits.channel = capacity;
        self
    }

    /// Shards of the stage (default 0: one per core this process may use; see [`PipelineLimits::shards`]).
    pub fn shards(mut self, shards: usize) -> Self {
        self.limits.shards = shards;
        self
    }

    /// Spans per batch handed to exporters (default 512).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.limits.batch_size = size;
        self
    }

    /// Bytes of records between the sources and the stage (default 256 MiB; see
    /// [`PipelineLimits::channel_bytes`]).
    pub fn channel_bytes(mut self, bytes: usize) -> Self {
        self.limits.channel_bytes = bytes;
        self
    }

    /// Batches buffered per exporter (default 16).
    pub fn exporter_queue(mut self, batches: usize) -> Self {
        self.limits.exporter_queue = batches;
        self
    }

    /// Bytes of spans that may wait for each exporter or be in its export (default 64 MiB; see
    /// [`PipelineLimits::exporter_queue_bytes`]).
    pub fn exporter_queue_bytes(mut self, bytes: usize) -> Self {
        self.limits.exporter_queue_bytes = bytes;
        self
    }

    /// Objects whose latest body is kept for diffs and linkers (default 10,000).
    pub fn body_cache_capacity(mut self, objects: usize) -> Self {
        self.limits.body_cache_objects = objects;
        self
    }

    /// Bytes of bodies (estimated) kept for diffs and linkers (default 128 MiB).
    pub fn body_cache_bytes(mut self, bytes: usize) -> Self {
        self.limits.body_cache_bytes = bytes;
        self
    }

    /// Ids the default ledger remembers (default 1,000,000).
    pub fn ledger_capacity(mut self, ids: usize) -> Self {
        self.limits.ledger_ids = ids;
        self
    }

    /// How many link hops one record may cause (default 8).
    pub fn max_link_depth(mut self, depth: usize) -> Self {
        self.limits.max_link_depth = depth;
        self
    }

    /// How long spans may wait in a partial batch when input is slow (default 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.limits.flush_interval = interval;
        self
    }

    /// All sizes, intervals and the shutdown grace at once (each also has its own method).
    pub fn limits(mut self, limits: PipelineLimits) -> Self {
        self.limits = limits;
        self
    }

    /// After shutdown is requested, how long sources and the drain may take before a hard stop (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.limits.shutdown_grace = grace;
        self
    }

    /// Stop the whole pipeline (gracefully) as soon as one of its sources returns. For live sources, which
    /// return only when they fail; replays leave it off (the default), so that each file source may finish.
    pub fn stop_when_a_source_ends(mut self, stop: bool) -> Self {
        self.stop_when_a_source_ends = stop;
        self
    }

    /// Retry of retryable export failures.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Forwards every record (filtered and redacted) to `forwarder` instead of making spans: the `ingest` half of
    /// a split deployment (see [`crate::forward`]). The decorators, linkers and exporters are then not used; a
    /// record's delivery settles once the forwarder acknowledged it.
    pub fn forward(mut self, forwarder: Arc<dyn RecordForwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    /// The pipeline, ready to run.
    pub fn build(self) -> Pipeline {
        let limits = self.limits;
        let shards = shard::shard_count(limits.shards);
        let (intake, _) = shard::split_channel(limits.channel, shards);
        let (sender, receiver) = mpsc::channel(intake);
        let intake = Intake {
            sender,
            room: ByteBudget::new(limits.channel_bytes),
        };
        let stats = Arc::new(PipelineStats::default());
        let exporter_stats = self
            .exporters
            .iter()
            .map(|exporter| Arc::new(ExporterStats::new(exporter.name())))
            .collect();
        // Set once, here, on a new value.
        let _ = stats.exporters.set(exporter_stats);
        let bodies = Arc::new(BodyCache::with_limits(
            limits.body_cache_objects,
            crate::body_cache::DEFAULT_VERSIONS_PER_OBJECT,
            limits.body_cache_bytes,
        ));
        let ledger = self
            .ledger
            .unwrap_or_else(|| Arc::new(BoundedLedger::new(limits.ledger_ids)));
        let stage = Stage {
            windowing: self.windowing,
            filter: self.filter,
            redactor: self.redactor,
            decorators: self.decorators,
            linkers: self.linkers,
            lookup: CachedLookup {
                bodies: bodies.clone(),
                fallback: self.lookup,
            },
            bodies,
            ledger,
            max_link_depth: limits.max_link_depth,
            stats: stats.clone(),
        };
        Pipeline {
            stage: Arc::new(stage),
            shards,
            sources: self.sources,
            exporters: self.exporters,
            forwarder: self.forwarder,
            intake,
            receiver,
            stats,
            limits,
            retry: self.retry,
            stop_when_a_source_ends: self.stop_when_a_source_ends,
        }
    }
}

/// Sources → filter → redact → decorate → window → link → exporters. Build it with [`Pipeline::builder`], take
/// [`Pipeline::sink`]s for records you produce yourself, then [`Pipeline::run`] it.
///
/// The pipeline owns its sources' lifecycle: [`Pipeline::run`] starts every source added with
/// [`PipelineBuilder::source`]; when its shutdown token is cancelled it asks the sources to stop (they hand over
/// what they accepted), processes everything they hand over, and once every source has returned it closes its
/// intake, drains what is queued and flushes the exporters. Sources that do not return within the shutdown grace
/// period are aborted and reported as failures. Dropping a token never stops anything.
pub struct Pipeline {
    stage: Arc<Stage>,
    /// The number of shards, resolved.
    shards: usize,
    sources: Vec<Box<dyn Source>>,
    exporters: Vec<Arc<dyn Exporter>>,
    forwarder: Option<Arc<dyn RecordForwarder>>,
    intake: Intake,
    receiver: mpsc::Receiver<Tracked>,
    stats: Arc<PipelineStats>,
    limits: PipelineLimits,
    retry: RetryPolicy,
    stop_when_a_source_ends: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field(
                "exporters",
                &self.exporters.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .field("shards", &self.shards)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A builder with the defaults.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    /// The counters, readable while the pipeline runs.
    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    /// How many shards the stage runs ([`PipelineLimits::shards`], with 0 resolved to the cores).
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// The bounded cache of the latest body per object, which the diff decorator and the linkers' lookups read
    /// first; [`BodyCache::hits_and_misses`] tells how often a linker found a body there.
    pub fn body_cache(&self) -> Arc<BodyCache> {
        self.stage.bodies.clone()
    }

    /// A sink to push records into the pipeline. The pipeline runs until shutdown, or until its sources are done
    /// and every sink taken here is dropped. After shutdown, once the sources have returned, `send` fails with
    /// [`SinkClosed`].
    pub fn sink(&self) -> Arc<dyn ActivitySink> {
        Arc::new(ChannelSink {
            intake: self.intake.clone(),
            stats: self.stats.clone(),
            source: Arc::from(SINK_SOURCE_NAME),
        })
    }

    /// Runs the sources and the pipeline until the input ends or `shutdown` is cancelled, then drains and flushes
    /// every exporter (see [`Pipeline`] for the order of events).
    pub async fn run(self, shutdown: CancellationToken) -> PipelineReport {
        self.run_until(shutdown, CancellationToken::new()).await
    }

    /// Like [`Pipeline::run`], and when `hard_stop` is cancelled (e.g. a second Ctrl-C) the sources are aborted
    /// and what is still queued is abandoned (counted in [`PipelineReport::abandoned`]); the spans already made
    /// are still handed to the exporters and flushed.
    ///
    /// The run loop, which takes every record from the intake channel and hands it to its shard, runs as a task of
    /// its own, whatever awaits this future: awaited in `Runtime::block_on` it would run on the thread that
    /// blocks, outside the runtime's workers, and every record would cross between threads twice (from its
    /// source to the loop, then to its shard), each crossing a wake-up through the kernel. Dropping this future
    /// aborts that task, and with it the sources; the abort takes effect when the runtime next runs the task, so
    /// until then a source or a holder of [`Pipeline::sink`] may still hand over records, which are dropped.
    pub async fn run_until(
        self,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) -> PipelineReport {
        let stats = Arc::clone(&self.stats);
        let run = AbortOnDropHandle::new(tokio::spawn(
            self.drive(shutdown, hard_stop).in_current_span(),
        ));
        match run.await {
            Ok(report) => report,
            Err(join) => match join.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: the runtime shut down under a caller that still waits (dropping this future
                // aborts the task, but then nothing waits for it). What was queued is counted as abandoned;
                // spans in the shards' partial batches were not exported either, and are not counted.
                Err(join) => {
                    let mut report = stats.report();
                    report.stop = StopCause::HardStop;
                    report.abandoned = stats.queued_records.load(Relaxed);
                    error!(
                        %join,
                        abandoned = report.abandoned,
                        "the pipeline stopped: its runtime shut down; queued records and unexported spans are lost"
                    );
                    report
                }
            },
        }
    }

    /// The body of [`Pipeline::run_until`], on a task of its own.
    async fn drive(
        self,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) -> PipelineReport {
        let Pipeline {
            stage,
            shards: shard_count,
            sources,
            exporters,
            forwarder,
            intake,
            mut receiver,
            stats,
            limits,
            retry,
            stop_when_a_source_ends,
        } = self;

        let stop_sources = shutdown.child_token();
        let mut running = RunningSources::start(sources, &intake, &stats, &stop_sources);
        drop(intake);
        let exports = ExportWorkers::start(
            exporters,
            QueueBounds {
                batches: limits.exporter_queue.max(1),
                bytes: limits.exporter_queue_bytes,
            },
            &stats,
            retry,
        );
        let (_, budget) = shard::split_channel(limits.channel, shard_count);
        let shards = match forwarder {
            Some(forwarder) => Processing::Forward(Forwarding::start(
                forwarder,
                Arc::clone(&stage),
                &stats,
                budget * shard_count,
                limits.channel,
                hard_stop.child_token(),
            )),
            None => Processing::Shards(Shards::start(
                &ShardSettings {
                    count: shard_count,
                    budget,
                    batch_size: limits.batch_size.max(1),
                    batch_bytes: limits.exporter_queue_bytes / BATCHES_IN_QUEUE_BYTES,
                    flush_interval: limits.flush_interval,
                },
                &stage,
                &exports.queues,
                &stats,
                hard_stop.child_token(),
            )),
        };
        drop(stage);

        let mut unrouted = 0u64;
        let mut stopping =
            Stopping::new(limits.shutdown_grace, stop_sources, stop_when_a_source_ends);
        'drive: loop {
            tokio::select! {
                biased;
                () = hard_stop.cancelled() => {
                    stopping.stop = StopCause::HardStop;
                    break;
                }
                () = sleep_until_or_never(stopping.deadline) => {
                    if stopping.grace_ran_out(&mut running, &mut receiver) {
                        break;
                    }
                }
                () = shutdown.cancelled(), if stopping.stop == StopCause::InputEnded => {
                    stopping.begin(StopCause::Shutdown, &running, &mut receiver);
                }
                ended = running.next_finished(), if !running.is_empty() => {
                    stopping.source_ended(ended, &running, &mut receiver);
                    if stopping.input_done && running.is_empty() {
                        break;
                    }
                }
                tracked = receiver.recv(), if !stopping.input_done => {
                    let Some(tracked) = tracked else {
                        if running.is_empty() {
                            break;
                        }
                        stopping.input_ended();
                        continue;
                    };
                    // Then the records already waiting, a bounded run of them, without going round the select
                    // (and its stop and deadline checks) for each.
                    let mut next = Some(tracked);
                    let mut routed = 0;
                    while let Some(tracked) = next {
                        if shards.route(tracked).await.is_err() {
                            // Stopped hard while waiting for room, or a shard's task is gone (its panic is raised
                            // below): nothing more can be handled.
                            unrouted += 1;
                            decrement(&stats.queued_records);
                            stopping.stop = StopCause::HardStop;
                            break 'drive;
                        }
                        routed += 1;
                        next = if routed < ROUTED_PER_TURN {
                            receiver.try_recv().ok()
                        } else {
                            None
                        };
                    }
                }
            }
        }
        let left_in_intake = stopping.abandon_if_hard(&mut running, &mut receiver);
        if left_in_intake > 0 {
            let _ = stats.queued_records.fetch_update(Relaxed, Relaxed, |now| {
                Some(now.saturating_sub(left_in_intake))
            });
        }
        let mut abandoned = unrouted + left_in_intake;
        if stopping.stop == StopCause::HardStop {
            shards.stop_hard();
        }
        let (dropped_in_shards, panic) = shards.finish(stopping.deadline, &mut stopping.stop).await;
        abandoned += dropped_in_shards;
        if abandoned > 0 {
            error!(
                abandoned,
                "hard stop: records accepted from sources were not processed"
            );
        }
        exports.finish().await;
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }

        let mut report = stats.report();
        report.abandoned = abandoned;
        report.stop = stopping.stop;
        report.source_errors = running.finish().await;
        report
    }
}

/// What the run loop hands records to: the sharded stage that makes spans, or the forwarding task.
enum Processing {
    Shards(Shards),
    Forward(Forwarding),
}

impl Processing {
    async fn route(&self, tracked: Tracked) -> Result<(), Unrouted> {
        match self {
            Self::Shards(shards) => shards.route(tracked).await,
            Self::Forward(forwarding) => forwarding.route(tracked).await,
        }
    }

    fn stop_hard(&self) {
        match self {
            Self::Shards(shards) => shards.stop_hard(),
            Self::Forward(forwarding) => forwarding.stop_hard(),
        }
    }

    async fn finish(
        self,
        deadline: Option<tokio::time::Instant>,
        stop: &mut StopCause,
    ) -> (u64, Option<Box<dyn std::any::Any + Send>>) {
        match self {
            Self::Shards(shards) => shards.finish(deadline, stop).await,
            Self::Forward(forwarding) => forwarding.finish(deadline, stop).await,
        }
    }
}

/// Where a running pipeline is in stopping: why, until when, and whether it still takes records.
struct Stopping {
    stop: StopCause,
    /// Set once stopping: first the sources' grace, then (if they had to be aborted) the drain's.
    deadline: Option<tokio::time::Instant>,
    intake_open: bool,
    /// Every sink is gone: nothing more can arrive.
    input_done: bool,
    grace: Duration,
    stop_sources: CancellationToken,
    stop_when_a_source_ends: bool,
}

impl Stopping {
    fn new(
        grace: Duration,
        stop_sources: CancellationToken,
        stop_when_a_source_ends: bool,
    ) -> Self {
        Self {
            stop: StopCause::InputEnded,
            deadline: None,
            intake_open: true,
            input_done: false,
            grace,
            stop_sources,
            stop_when_a_source_ends,
        }
    }

    /// Starts a graceful stop: the sources are asked to stop and given the grace period.
    fn begin(
        &mut self,
        cause: StopCause,
        running: &RunningSources,
        receiver: &mut mpsc::Receiver<Tracked>,
    ) {
        self.stop = cause;
        self.stop_sources.cancel();
        self.deadline = Some(tokio::time::Instant::now() + self.grace);
        if running.is_empty() {
            self.close_intake(receiver);
        }
    }

    /// Takes nothing more from the sinks; what is queued is still drained.
    fn close_intake(&mut self, receiver: &mut mpsc::Receiver<Tracked>) {
        receiver.close();
        self.intake_open = false;
    }

    /// A source returned: in a live run that stops the pipeline; once all have returned while stopping, the
    /// intake closes (they handed over what they accepted).
    fn source_ended(
        &mut self,
        name: String,
        running: &RunningSources,
        receiver: &mut mpsc::Receiver<Tracked>,
    ) {
        if self.stop_when_a_source_ends && self.stop == StopCause::InputEnded {
            self.begin(StopCause::SourceEnded(name), running, receiver);
        }
        if running.is_empty() && self.stop != StopCause::InputEnded && self.intake_open {
            self.close_intake(receiver);
        }
    }

    /// Every sink is gone while source tasks still run (a source dropped its sink before returning): nothing more
    /// can come in, so the sources are told to stop and get the grace period, in the same loop as any stop (a
    /// live source that ended is still named as the cause when its task is seen to finish).
    fn input_ended(&mut self) {
        self.input_done = true;
        self.stop_sources.cancel();
        if self.deadline.is_none() {
            self.deadline = Some(tokio::time::Instant::now() + self.grace);
        }
    }

    /// The deadline passed: first the sources are aborted and the drain gets another grace period; when that
    /// passes too, the pipeline stops hard (returns true).
    fn grace_ran_out(
        &mut self,
        running: &mut RunningSources,
        receiver: &mut mpsc::Receiver<Tracked>,
    ) -> bool {
        if self.input_done {
            warn!(grace = ?self.grace, "sources did not return within the shutdown grace after their input ended");
            running.abort_all("did not stop within the shutdown grace period");
            return true;
        }
        if self.intake_open {
            warn!(grace = ?self.grace, "sources did not stop within the shutdown grace: aborting them");
            running.abort_all("did not stop within the shutdown grace period");
            self.close_intake(receiver);
            self.deadline = Some(tokio::time::Instant::now() + self.grace);
            false
        } else {
            warn!(grace = ?self.grace, "the pipeline did not drain within the shutdown grace: stopping hard");
            self.stop = StopCause::HardStop;
            true
        }
    }

    /// After a hard stop: aborts the sources and counts the records left in the intake channel, which will not be
    /// processed (the shards count their own).
    fn abandon_if_hard(
        &mut self,
        running: &mut RunningSources,
        receiver: &mut mpsc::Receiver<Tracked>,
    ) -> u64 {
        if self.stop != StopCause::HardStop {
            return 0;
        }
        running.abort_all("stopped hard");
        self.close_intake(receiver);
        let mut abandoned = 0u64;
        while receiver.try_recv().is_ok() {
            abandoned += 1;
        }
        abandoned
    }
}

/// Waits for `work` (a stage draining what it holds). Once `stop` is cancelled, or past `deadline` (the shutdown
/// grace; then `stop` is cancelled here, logging that `what` did not drain), `cause` becomes
/// [`StopCause::HardStop`] and the wait goes on for the stage to drop what it still holds.
async fn drain_within<T>(
    work: impl std::future::Future<Output = T>,
    stop: &CancellationToken,
    deadline: Option<tokio::time::Instant>,
    cause: &mut StopCause,
    what: &str,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut stopped_hard = false;
    loop {
        tokio::select! {
            biased;
            done = &mut work => return done,
            () = stop.cancelled(), if !stopped_hard => {
                stopped_hard = true;
                *cause = StopCause::HardStop;
            }
            () = sleep_until_or_never(deadline), if !stopped_hard => {
                warn!("{what} did not drain within the shutdown grace: stopping hard");
                stopped_hard = true;
                *cause = StopCause::HardStop;
                stop.cancel();
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The tasks of the running sources, and the failures of those that have returned.
struct RunningSources {
    tasks: tokio::task::JoinSet<Result<(), SourceError>>,
    names: BTreeMap<tokio::task::Id, String>,
    failures: Vec<SourceFailure>,
}

impl RunningSources {
    fn start(
        sources: Vec<Box<dyn Source>>,
        intake: &Intake,
        stats: &Arc<PipelineStats>,
        stop: &CancellationToken,
    ) -> Self {
        let mut tasks = tokio::task::JoinSet::new();
        let mut names = BTreeMap::new();
        for source in sources {
            let name = source.name().to_owned();
            let sink: Arc<dyn ActivitySink> = Arc::new(ChannelSink {
                intake: intake.clone(),
                stats: stats.clone(),
                source: Arc::from(name.as_str()),
            });
            let handle = tasks.spawn(source.run(sink, stop.clone()));
            names.insert(handle.id(), name);
        }
        Self {
            tasks,
            names,
            failures: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits for the next source to return, records its failure if any, and returns its name.
    async fn next_finished(&mut self) -> String {
        let (id, failure) = match self.tasks.join_next_with_id().await {
            Some(Ok((id, result))) => (id, result.err().map(|err| error_chain(&err))),
            Some(Err(err)) => (err.id(), Some(format!("task failed: {err}"))),
            None => return std::future::pending().await,
        };
        // Absent when `abort_all` took it (and reported it).
        let Some(name) = self.names.remove(&id) else {
            return String::new();
        };
        if let Some(error) = failure {
            error!(source = %name, %error, "source failed");
            self.failures.push(SourceFailure {
                source: name.clone(),
                error,
            });
        }
        name
    }

    /// Aborts every source still running; each is reported with `why`.
    fn abort_all(&mut self, why: &str) {
        for name in std::mem::take(&mut self.names).into_values() {
            warn!(source = %name, "{why}");
            self.failures.push(SourceFailure {
                source: name,
                error: why.to_owned(),
            });
        }
        self.tasks.abort_all();
    }

    /// Waits for the sources still running (they were told to stop or aborted) and returns every failure.
    async fn finish(mut self) -> Vec<SourceFailure> {
        while !self.tasks.is_empty() {
            let _ = self.next_finished().await;
        }
        self.failures
    }
}

/// An error and its sources, as one line: `outer: inner: innermost`.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// One batch on its way to every exporter, with the tracked records whose spans it holds (or which made no span
/// and were processed since the previous batch). The records are delivered when the last exporter has exported the
/// batch; if any exporter gave up on it, they are dropped undelivered and their deliveries report the loss.
struct ExportBatch {
    spans: Vec<SpanRecord>,
    pending: Mutex<Vec<PendingRecord>>,
    /// When each record that made spans of this batch arrived (for [`PipelineStats::ingest_to_export`]).
    arrivals: Vec<Instant>,
    exported_by: AtomicU64,
    exporters: u64,
}

impl ExportBatch {
    /// One more exporter took the batch; `true` when it was the last.
    fn exported(&self) -> bool {
        self.exported_by.fetch_add(1, Relaxed) + 1 == self.exporters
    }
}

impl Drop for ExportBatch {
    fn drop(&mut self) {
        if *self.exported_by.get_mut() < self.exporters {
            return;
        }
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for record in pending.drain(..) {
            record.delivered();
        }
    }
}

/// One worker per exporter, each behind its own queue, bounded in batches and in bytes.
struct ExportWorkers {
    /// Shared by the shards; the workers end once every clone is gone.
    queues: Arc<ExportQueues>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// How much may wait for one exporter ([`PipelineLimits::exporter_queue`] and
/// [`PipelineLimits::exporter_queue_bytes`]).
#[derive(Clone, Copy)]
struct QueueBounds {
    batches: usize,
    bytes: usize,
}

/// The queue of each exporter's worker.
struct ExportQueues {
    queues: Vec<ExportQueue>,
}

/// One exporter's queue: its worker's channel, its counters, and the bytes its batches may hold until exported.
struct ExportQueue {
    sender: mpsc::Sender<QueuedBatch>,
    counters: Arc<ExporterStats>,
    /// [`QueueBounds::bytes`]; a batch holds its bytes until exported.
    room: ByteBudget,
}

/// A batch in one exporter's queue, with its share of the queue's byte budget.
struct QueuedBatch {
    batch: Arc<ExportBatch>,
    held: GaugedBytes<ExporterStats>,
}

/// Bytes held in a queue bounded by bytes (a batch in an exporter's queue, a record on its way to the stage):
/// released, and taken off the queue's gauge, when dropped.
struct GaugedBytes<S: 'static> {
    _held: HeldBytes,
    bytes: u64,
    stats: Arc<S>,
    gauge: fn(&S) -> &AtomicU64,
}

impl<S> GaugedBytes<S> {
    /// Keeps `held` for `bytes`, counted on `gauge` of `stats` until dropped.
    fn new(held: HeldBytes, bytes: usize, stats: &Arc<S>, gauge: fn(&S) -> &AtomicU64) -> Self {
        let bytes = bytes as u64;
        gauge(stats).fetch_add(bytes, Relaxed);
        Self {
            _held: held,
            bytes,
            stats: Arc::clone(stats),
            gauge,
        }
    }
}

impl<S> Drop for GaugedBytes<S> {
    fn drop(&mut self) {
        let bytes = self.bytes;
        let _ = (self.gauge)(&self.stats)
            .fetch_update(Relaxed, Relaxed, |now| Some(now.saturating_sub(bytes)));
    }
}

impl ExportWorkers {
    fn start(
        exporters: Vec<Arc<dyn Exporter>>,
        bounds: QueueBounds,
        stats: &Arc<PipelineStats>,
        retry: RetryPolicy,
    ) -> Self {
        let mut queues = Vec::with_capacity(exporters.len());
        let mut workers = Vec::with_capacity(exporters.len());
        for (index, exporter) in exporters.into_iter().enumerate() {
            let (sender, batches) = mpsc::channel::<QueuedBatch>(bounds.batches);
            let counters = stats
                .exporters()
                .get(index)
                .cloned()
                .unwrap_or_else(|| Arc::new(ExporterStats::new(exporter.name())));
            queues.push(ExportQueue {
                sender,
                counters: Arc::clone(&counters),
                room: ByteBudget::new(bounds.bytes),
            });
            workers.push(tokio::spawn(export_worker(
                exporter,
                batches,
                stats.clone(),
                counters,
                retry,
            )));
        }
        Self {
            queues: Arc::new(ExportQueues { queues }),
            workers,
        }
    }

    /// Closes the queues and waits until every worker has exported its queue and flushed (the shards, which hold
    /// the other handles on the queues, have returned).
    async fn finish(self) {
        drop(self.queues);
        for worker in self.workers {
            if let Err(err) = worker.await {
                error!(%err, "export worker failed");
            }
        }
    }
}

impl ExportQueues {
    /// Hands a shard's batch and tracked records to every exporter (nothing when both are empty).
    async fn dispatch(&self, batch: &mut Batch) {
        if batch.spans.is_empty() && batch.pending.is_empty() {
            return;
        }
        let capacity = batch.spans.capacity();
        let spans = std::mem::replace(&mut batch.spans, Vec::with_capacity(capacity));
        let bytes = std::mem::take(&mut batch.bytes);
        let export = Arc::new(ExportBatch {
            spans,
            pending: Mutex::new(std::mem::take(&mut batch.pending)),
            arrivals: std::mem::take(&mut batch.arrivals),
            exported_by: AtomicU64::new(0),
            exporters: self.queues.len() as u64,
        });
        for queue in &self.queues {
            // A batch larger than the whole budget takes all of it, and so goes alone. A budget is never closed; a
            // closed channel means its worker died, and it already counted and logged why.
            let Ok(permit) = queue.room.hold(bytes).await else {
                continue;
            };
            if let Ok(slot) = queue.sender.reserve().await {
                queue.counters.queued_batches.fetch_add(1, Relaxed);
                slot.send(QueuedBatch {
                    batch: export.clone(),
                    held: GaugedBytes::new(permit, bytes, &queue.counters, |counters| {
                        &counters.queued_bytes
                    }),
                });
            }
        }
    }
}

/// Hands one exporter its queued batches, up to [`Exporter::concurrent_exports`] at once, until the queue is closed
/// and every export finished; then flushes it.
async fn export_worker(
    exporter: Arc<dyn Exporter>,
    mut batches: mpsc::Receiver<QueuedBatch>,
    stats: Arc<PipelineStats>,
    counters: Arc<ExporterStats>,
    retry: RetryPolicy,
) {
    // A batch is taken from the queue only while fewer than the limit are being exported.
    let since_flush: u64 = futures::stream::poll_fn(|context| batches.poll_recv(context))
        .map(|queued| export_queued(exporter.as_ref(), queued, &stats, &counters, retry))
        .buffer_unordered(exporter.concurrent_exports().max(1))
        .fold(0, |sum, exported| async move { sum + exported })
        .await;
    if let Err(err) = exporter.flush().await {
        // What was exported since the last flush may not have been written.
        stats.spans_dropped.fetch_add(since_flush, Relaxed);
        counters.spans_dropped.fetch_add(since_flush, Relaxed);
        error!(exporter = exporter.name(), spans = since_flush, error = %error_chain(&err), "flush failed: spans not written");
    }
}

/// Exports one queued batch, with retries; the spans exported (0 when the exporter gave up on them).
async fn export_queued(
    exporter: &dyn Exporter,
    QueuedBatch { batch, held }: QueuedBatch,
    stats: &PipelineStats,
    counters: &ExporterStats,
    retry: RetryPolicy,
) -> u64 {
    decrement(&counters.queued_batches);
    if batch.spans.is_empty() {
        batch.exported();
        return 0;
    }
    let mut exported = 0;
    if export_with_retries(exporter, &batch.spans, stats, counters, retry).await {
        if batch.exported() {
            let now = Instant::now();
            for arrived in &batch.arrivals {
                stats
                    .ingest_to_export
                    .observe(now.saturating_duration_since(*arrived));
            }
        }
        exported = batch.spans.len() as u64;
    }
    // Only now is the batch's room in the queue free: while it is exported, its spans are still held.
    drop(held);
    exported
}

/// Exports one batch, retrying what may be retried; `false` when the exporter gave up (the spans are counted as
/// dropped).
async fn export_with_retries(
    exporter: &dyn Exporter,
    spans: &[SpanRecord],
    stats: &PipelineStats,
    counters: &ExporterStats,
    retry: RetryPolicy,
) -> bool {
    let mut delays = retry.delays();
    let mut attempt = 1;
    let started = Instant::now();
    loop {
        let Err(err) = exporter.export(spans).await else {
            counters.export_duration.observe(started.elapsed());
            counters.batches_exported.fetch_add(1, Relaxed);
            counters
                .spans_exported
                .fetch_add(spans.len() as u64, Relaxed);
            return true;
        };
        let wait = if err.is_retryable() {
            delays.next()
        } else {
            None
        };
        let Some(wait) = wait else {
            stats.spans_dropped.fetch_add(spans.len() as u64, Relaxed);
            counters
                .spans_dropped
                .fetch_add(spans.len() as u64, Relaxed);
            error!(exporter = exporter.name(), spans = spans.len(), error = %error_chain(&err), "dropped a batch of spans");
            return false;
        };
        counters.retries.fetch_add(1, Relaxed);
        debug!(exporter = exporter.name(), attempt, error = %error_chain(&err), "export failed, retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// A record on its way from a sink to the stage, with its delivery when the source tracks one.
struct Tracked {
    record: Record,
    pending: Option<PendingRecord>,
    /// When the sink took it.
    arrived: Instant,
    /// Its share of [`PipelineLimits::channel_bytes`], held until the stage has handled it.
    held: GaugedBytes<PipelineStats>,
}

/// The sinks' way into the intake channel, bounded in records (the channel) and in bytes.
#[derive(Clone)]
struct Intake {
    sender: mpsc::Sender<Tracked>,
    /// [`PipelineLimits::channel_bytes`].
    room: ByteBudget,
}

impl Intake {
    /// Waits for room for `record`, by bytes and then in the channel, and sends it. A send cancelled while waiting
    /// takes nothing.
    async fn send(
        &self,
        record: Record,
        pending: impl FnOnce() -> Option<PendingRecord>,
        stats: &Arc<PipelineStats>,
    ) -> Result<(), SinkClosed> {
        let bytes = record.approximate_size();
        let permit = self.room.hold(bytes).await.map_err(|_| SinkClosed)?;
        let slot = self.sender.reserve().await.map_err(|_| SinkClosed)?;
        stats.queued_records.fetch_add(1, Relaxed);
        slot.send(Tracked {
            record,
            pending: pending(),
            arrived: Instant::now(),
            held: GaugedBytes::new(permit, bytes, stats, |stats| &stats.queued_record_bytes),
        });
        Ok(())
    }
}

struct ChannelSink {
    intake: Intake,
    stats: Arc<PipelineStats>,
    /// The source's name, for counting its rejections.
    source: Arc<str>,
}

#[async_trait]
impl ActivitySink for ChannelSink {
    async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        self.stats.records.fetch_add(1, Relaxed);
        self.intake.send(record, || None, &self.stats).await
    }

    async fn send_tracked(&self, record: Record, delivery: &Delivery) -> Result<(), SinkClosed> {
        // Room first: a send cancelled while waiting takes nothing, so it leaves the delivery as it was.
        self.intake
            .send(record, || Some(delivery.pending()), &self.stats)
            .await?;
        self.stats.records.fetch_add(1, Relaxed);
        Ok(())
    }

    fn reject(&self, rejection: Rejection) {
        self.stats.record_rejection(rejection, &self.source);
    }

    fn progress(&self, bytes: u64) {
        self.stats.bytes_read.fetch_add(bytes, Relaxed);
    }
}
