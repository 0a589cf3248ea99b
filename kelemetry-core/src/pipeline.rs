//! The [`Pipeline`]: sources → filter → redact → decorate → window → link → exporters, through bounded channels.
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry_core::{Activity, MemoryExporter, Object, ObjectKey, ObjectRef, Pipeline, Shutdown, SourceKind};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let exporter = Arc::new(MemoryExporter::new(1_000));
//! let pipeline = Pipeline::builder().exporter(exporter.clone()).build();
//! let sink = pipeline.sink();
//! let (_trigger, shutdown) = Shutdown::new();
//! let running = tokio::spawn(pipeline.run(shutdown));
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use crate::activity::Record;
use crate::body_cache::BodyCache;
use crate::decorate::Decorator;
use crate::exporter::{ExportError, Exporter};
use crate::filter::Filter;
use crate::ids::TraceId;
use crate::key::Object;
use crate::ledger::{BoundedLedger, SpanLedger};
use crate::link::{Link, Linker, ObjectLookup};
use crate::redact::Redactor;
use crate::source::{ActivitySink, Rejection, Shutdown, SinkClosed, Source};
use crate::span::{self, SpanRecord};
use crate::window::{Window, Windowing};

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
    rejections: Mutex<RejectionLog>,
}

#[derive(Debug, Default)]
struct RejectionLog {
    by_reason: BTreeMap<String, u64>,
    examples: Vec<Rejection>,
}

impl PipelineStats {
    fn record_rejection(&self, rejection: Rejection) {
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
            rejections_by_reason: by_reason,
            rejection_examples: examples,
            source_errors: Vec::new(),
        }
    }
}

/// What a pipeline did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Rejections counted by reason.
    pub rejections_by_reason: BTreeMap<String, u64>,
    /// The first rejections, with where they were.
    pub rejection_examples: Vec<Rejection>,
    /// Sources that failed as a whole: name and error.
    pub source_errors: Vec<(String, String)>,
}

impl PipelineReport {
    /// All spans emitted.
    pub fn spans(&self) -> u64 {
        self.object_spans + self.link_spans + self.activity_spans
    }
}

/// Retry of retryable export failures: `attempts` tries, waiting `initial_backoff` and doubling up to `max_backoff`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least one).
    pub attempts: u32,
    /// First wait.
    pub initial_backoff: Duration,
    /// Longest wait.
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

/// Configures a [`Pipeline`].
pub struct PipelineBuilder {
    windowing: Windowing,
    filter: Filter,
    redactor: Redactor,
    decorators: Vec<Arc<dyn Decorator>>,
    linkers: Vec<Arc<dyn Linker>>,
    lookup: Option<Arc<dyn ObjectLookup>>,
    exporters: Vec<Arc<dyn Exporter>>,
    ledger: Option<Arc<dyn SpanLedger>>,
    sources: Vec<Box<dyn Source>>,
    channel_capacity: usize,
    batch_size: usize,
    exporter_queue: usize,
    body_cache_capacity: usize,
    ledger_capacity: usize,
    max_link_depth: usize,
    flush_interval: Duration,
    retry: RetryPolicy,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        Self {
            windowing: Windowing::default(),
            filter: Filter::default(),
            redactor: Redactor::default(),
            decorators: Vec::new(),
            linkers: Vec::new(),
            lookup: None,
            exporters: Vec::new(),
            ledger: None,
            sources: Vec::new(),
            channel_capacity: 4096,
            batch_size: 512,
            exporter_queue: 16,
            body_cache_capacity: 10_000,
            ledger_capacity: 1_000_000,
            max_link_depth: 8,
            flush_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        }
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

    /// Records buffered between sources and the pipeline (default 4096).
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity.max(1);
        self
    }

    /// Spans per batch handed to exporters (default 512).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// Batches buffered per exporter (default 16).
    pub fn exporter_queue(mut self, batches: usize) -> Self {
        self.exporter_queue = batches.max(1);
        self
    }

    /// Objects whose latest body is kept for diffs and linkers (default 10,000).
    pub fn body_cache_capacity(mut self, objects: usize) -> Self {
        self.body_cache_capacity = objects;
        self
    }

    /// Ids the default ledger remembers (default 1,000,000).
    pub fn ledger_capacity(mut self, ids: usize) -> Self {
        self.ledger_capacity = ids;
        self
    }

    /// How many link hops one record may cause (default 8).
    pub fn max_link_depth(mut self, depth: usize) -> Self {
        self.max_link_depth = depth;
        self
    }

    /// How long spans may wait in a partial batch when input is slow (default 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Retry of retryable export failures.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The pipeline, ready to run.
    pub fn build(self) -> Pipeline {
        let (sender, receiver) = mpsc::channel(self.channel_capacity);
        let stats = Arc::new(PipelineStats::default());
        let bodies = Arc::new(BodyCache::new(self.body_cache_capacity));
        let ledger = self
            .ledger
            .unwrap_or_else(|| Arc::new(BoundedLedger::new(self.ledger_capacity)));
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
            max_link_depth: self.max_link_depth,
            stats: stats.clone(),
            batch: Vec::with_capacity(self.batch_size),
        };
        Pipeline {
            stage,
            sources: self.sources,
            exporters: self.exporters,
            sender,
            receiver,
            stats,
            batch_size: self.batch_size,
            exporter_queue: self.exporter_queue,
            flush_interval: self.flush_interval,
            retry: self.retry,
        }
    }
}

/// Sources → filter → redact → decorate → window → link → exporters. Build it with [`Pipeline::builder`], take
/// [`Pipeline::sink`]s for records you produce yourself, then [`Pipeline::run`] it.
pub struct Pipeline {
    stage: Stage,
    sources: Vec<Box<dyn Source>>,
    exporters: Vec<Arc<dyn Exporter>>,
    sender: mpsc::Sender<Record>,
    receiver: mpsc::Receiver<Record>,
    stats: Arc<PipelineStats>,
    batch_size: usize,
    exporter_queue: usize,
    flush_interval: Duration,
    retry: RetryPolicy,
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

    /// The bounded cache of the latest body per object, which the diff decorator and the linkers' lookups read
    /// first; [`BodyCache::hits_and_misses`] tells how often a linker found a body there.
    pub fn body_cache(&self) -> Arc<BodyCache> {
        self.stage.bodies.clone()
    }

    /// A sink to push records into the pipeline. The pipeline runs until shutdown, or until its sources are done
    /// and every sink taken here is dropped.
    pub fn sink(&self) -> Arc<dyn ActivitySink> {
        Arc::new(ChannelSink {
            sender: self.sender.clone(),
            stats: self.stats.clone(),
        })
    }

    /// Runs sources and the pipeline until the input ends or `shutdown` fires, then flushes every exporter.
    pub async fn run(self, shutdown: Shutdown) -> PipelineReport {
        let Pipeline {
            mut stage,
            sources,
            exporters,
            sender,
            mut receiver,
            stats,
            batch_size,
            exporter_queue,
            flush_interval,
            retry,
        } = self;

        let mut source_tasks = Vec::with_capacity(sources.len());
        for source in sources {
            let sink: Arc<dyn ActivitySink> = Arc::new(ChannelSink {
                sender: sender.clone(),
                stats: stats.clone(),
            });
            let name = source.name().to_owned();
            let shutdown = shutdown.clone();
            source_tasks.push((name, tokio::spawn(source.run(sink, shutdown))));
        }
        drop(sender);

        let mut workers = Vec::with_capacity(exporters.len());
        let mut queues = Vec::with_capacity(exporters.len());
        for exporter in exporters {
            let (queue, batches) = mpsc::channel::<Arc<Vec<SpanRecord>>>(exporter_queue);
            queues.push(queue);
            workers.push(tokio::spawn(export_worker(
                exporter,
                batches,
                stats.clone(),
                retry,
            )));
        }

        let mut shutdown_signal = shutdown.clone();
        let mut ticker = tokio::time::interval(flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                biased;
                record = receiver.recv() => {
                    let Some(record) = record else { break };
                    stage.process(record).await;
                    if stage.batch.len() >= batch_size {
                        dispatch(&mut stage.batch, &queues).await;
                    }
                }
                _ = shutdown_signal.requested(), if !shutting_down => {
                    // Take no new records; drain what is buffered.
                    shutting_down = true;
                    receiver.close();
                }
                _ = ticker.tick() => {
                    if !stage.batch.is_empty() {
                        dispatch(&mut stage.batch, &queues).await;
                    }
                }
            }
        }
        dispatch(&mut stage.batch, &queues).await;
        drop(queues);
        for worker in workers {
            if let Err(err) = worker.await {
                error!(%err, "export worker failed");
            }
        }

        let mut report = stats.report();
        for (name, task) in source_tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => report.source_errors.push((name, err.to_string())),
                Err(err) => report
                    .source_errors
                    .push((name, format!("task failed: {err}"))),
            }
        }
        report
    }
}

async fn dispatch(batch: &mut Vec<SpanRecord>, queues: &[mpsc::Sender<Arc<Vec<SpanRecord>>>]) {
    if batch.is_empty() {
        return;
    }
    let capacity = batch.capacity();
    let full = Arc::new(std::mem::replace(batch, Vec::with_capacity(capacity)));
    for queue in queues {
        // A closed queue means its worker died; it already counted and logged why.
        let _ = queue.send(full.clone()).await;
    }
}

async fn export_worker(
    exporter: Arc<dyn Exporter>,
    mut batches: mpsc::Receiver<Arc<Vec<SpanRecord>>>,
    stats: Arc<PipelineStats>,
    retry: RetryPolicy,
) {
    while let Some(batch) = batches.recv().await {
        let mut backoff = retry.initial_backoff;
        let mut attempt = 1;
        loop {
            match exporter.export(&batch).await {
                Ok(()) => break,
                Err(ExportError::Retryable(message)) if attempt < retry.attempts.max(1) => {
                    debug!(exporter = exporter.name(), attempt, %message, "export failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(retry.max_backoff);
                    attempt += 1;
                }
                Err(err) => {
                    stats.spans_dropped.fetch_add(batch.len() as u64, Relaxed);
                    error!(exporter = exporter.name(), spans = batch.len(), %err, "dropped a batch of spans");
                    break;
                }
            }
        }
    }
    if let Err(err) = exporter.flush().await {
        error!(exporter = exporter.name(), %err, "flush failed");
    }
}

struct ChannelSink {
    sender: mpsc::Sender<Record>,
    stats: Arc<PipelineStats>,
}

#[async_trait]
impl ActivitySink for ChannelSink {
    async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        self.stats.records.fetch_add(1, Relaxed);
        self.sender.send(record).await.map_err(|_| SinkClosed)
    }

    fn reject(&self, rejection: Rejection) {
        self.stats.record_rejection(rejection);
    }

    fn progress(&self, bytes: u64) {
        self.stats.bytes_read.fetch_add(bytes, Relaxed);
    }
}

/// The pipeline's body cache first, then the configured lookup.
struct CachedLookup {
    bodies: Arc<BodyCache>,
    fallback: Option<Arc<dyn ObjectLookup>>,
}

#[async_trait]
impl ObjectLookup for CachedLookup {
    async fn body(&self, object: &crate::ObjectRef) -> Option<Arc<serde_json::Value>> {
        if let Some(body) = self.bodies.get(&object.key) {
            return Some(body);
        }
        match &self.fallback {
            Some(fallback) => fallback.body(object).await,
            None => None,
        }
    }
}

/// The single-threaded heart of the pipeline: records in arrival order become spans.
struct Stage {
    windowing: Windowing,
    filter: Filter,
    redactor: Redactor,
    decorators: Vec<Arc<dyn Decorator>>,
    linkers: Vec<Arc<dyn Linker>>,
    lookup: CachedLookup,
    bodies: Arc<BodyCache>,
    ledger: Arc<dyn SpanLedger>,
    max_link_depth: usize,
    stats: Arc<PipelineStats>,
    batch: Vec<SpanRecord>,
}

impl Stage {
    async fn process(&mut self, record: Record) {
        if !self.filter.is_empty() && !self.filter.admits(&record) {
            self.stats.filtered.fetch_add(1, Relaxed);
            return;
        }
        match record {
            Record::Activity(mut activity) => {
                self.redact(&mut activity.object);
                for decorator in &self.decorators {
                    decorator.decorate(&mut activity, &self.bodies).await;
                }
                let window = self.windowing.window_of(activity.start);
                self.ensure_object(&activity.object, window).await;
                if let Some(body) = &activity.object.body {
                    self.bodies
                        .insert(activity.object.key().clone(), body.clone());
                }
                self.batch.push(span::activity_into_span(*activity, window));
                self.stats.activity_spans.fetch_add(1, Relaxed);
                self.stats.activities.fetch_add(1, Relaxed);
            }
            Record::Observation(mut observation) => {
                self.redact(&mut observation.object);
                self.stats.observations.fetch_add(1, Relaxed);
                if let Some(body) = &observation.object.body {
                    self.bodies
                        .insert(observation.object.key().clone(), body.clone());
                }
                let window = self.windowing.window_of(observation.time);
                self.ensure_object(&observation.object, window).await;
            }
        }
    }

    fn redact(&self, object: &mut Object) {
        if let Some(body) = &mut object.body
            && self.redactor.applies_to(&object.object_ref.key, body)
        {
            let key = object.object_ref.key.clone();
            self.redactor.redact(&key, Arc::make_mut(body));
        }
    }

    /// Emits the object's span for `window` unless already emitted, and runs the linkers when the span is new or
    /// when this is the first time a body is known for it in this window.
    async fn ensure_object(&mut self, object: &Object, window: Window) {
        let trace = TraceId::for_object(object.key(), window);
        let new_span = self.ledger.first_sighting(trace.object_span());
        if new_span {
            self.batch
                .push(span::object_span(&object.object_ref, window));
            self.stats.object_spans.fetch_add(1, Relaxed);
        }
        if self.linkers.is_empty() {
            return;
        }
        let body = match &object.body {
            Some(body) => Some(body.clone()),
            None if new_span => self.lookup.body(&object.object_ref).await,
            None => None,
        };
        let first_with_body = body.is_some() && self.ledger.first_sighting(trace.body_marker());
        if new_span || first_with_body {
            let object = Object {
                object_ref: object.object_ref.clone(),
                body,
            };
            self.link(object, window).await;
        }
    }

    async fn link(&mut self, object: Object, window: Window) {
        let mut work = vec![(object, 0usize)];
        while let Some((object, depth)) = work.pop() {
            for linker in &self.linkers {
                let links = match linker.link(&object, &self.lookup).await {
                    Ok(links) => links,
                    Err(err) => {
                        self.stats.link_errors.fetch_add(1, Relaxed);
                        warn!(%err, "linker failed");
                        continue;
                    }
                };
                for link in links {
                    if link.object.key == object.object_ref.key {
                        continue;
                    }
                    let linked_trace = TraceId::for_object(&link.object.key, window);
                    let linked_new = self.ledger.first_sighting(linked_trace.object_span());
                    if linked_new {
                        self.batch.push(span::object_span(&link.object, window));
                        self.stats.object_spans.fetch_add(1, Relaxed);
                    }
                    let forward = span::link_span(&object.object_ref, window, &link);
                    if self.ledger.first_sighting(forward.span_id) {
                        self.batch.push(forward);
                        self.stats.link_spans.fetch_add(1, Relaxed);
                    }
                    let backward_link = Link {
                        object: object.object_ref.clone(),
                        role: link.role.reversed(),
                        class: link.class.clone(),
                        dedup_id: link.dedup_id.clone(),
                    };
                    let backward = span::link_span(&link.object, window, &backward_link);
                    if self.ledger.first_sighting(backward.span_id) {
                        self.batch.push(backward);
                        self.stats.link_spans.fetch_add(1, Relaxed);
                    }
                    if linked_new && depth + 1 < self.max_link_depth {
                        let body = self.lookup.body(&link.object).await;
                        if body.is_some() {
                            self.ledger.first_sighting(linked_trace.body_marker());
                        }
                        work.push((
                            Object {
                                object_ref: link.object,
                                body,
                            },
                            depth + 1,
                        ));
                    }
                }
            }
        }
    }
}
