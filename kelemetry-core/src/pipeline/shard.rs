//! The sharded stage: records are routed by their object's key to one of N shard tasks; in a shard, the records
//! of one object are handled one after the other, in arrival order, and those of different objects side by side.
//!
//! ```text
//!  intake channel ─▶ router ── hash(ObjectKey) % N ──▶ shard 0 ─┐
//!  (sinks write)     (the run loop)                  ─▶ shard 1 ─┼─▶ export queues ─▶ exporters
//!                                                    ─▶ ...     ─┘
//!  shard: inbox ─▶ per object: one record in progress, the next ones waiting behind it ─▶ batch
//! ```
//!
//! A record whose decorator or lookup waits (the watch diff decorator waiting for a lagging watch) holds back
//! only the later records of its own object; the shard goes on with every other object. Each shard is a tokio
//! task, so on a multi-threaded runtime the shards run on as many cores. Every shard owns its batch of spans
//! and the tracked records delivered with it; they share the [`Stage`], hence one ledger and one body cache.
//!
//! Memory: a shard holds at most its budget of records (in its inbox, waiting behind their object, or in
//! progress); the router waits for room in the record's shard, so the intake channel, then the sources, feel the
//! back-pressure as before.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};

use super::stage::Stage;
use super::{ExportQueues, PipelineStats, StopCause, Tracked, decrement, drain_within};
use crate::activity::Record;
use crate::delivery::PendingRecord;
use crate::source::CancellationToken;
use crate::span::SpanRecord;

/// How many emptied span vectors a shard keeps to reuse for the next records.
const SPARE_SPAN_VECTORS: usize = 64;
/// How many records a shard takes from its inbox at one wake-up at most (fewer once its batch is full).
const RECORDS_PER_WAKE_UP: usize = 64;

/// The hash of a record's object key, with `foldhash` (SipHash here was a percent of the pipeline). The same in
/// every run (a fixed seed), though nothing depends on that: ids do not depend on shards.
fn route_hash(record: &Record) -> u64 {
    foldhash::fast::FixedState::with_seed(0).hash_one(record.object().key())
}

/// How the pipeline's `channel` records are split: the intake channel the sinks write to takes half, and each
/// of `shards` shards may hold an equal part of the other half (at least one record each).
pub(super) fn split_channel(channel: usize, shards: usize) -> (usize, usize) {
    let shards = shards.max(1);
    let per_shard = (channel / (2 * shards)).max(1);
    let intake = channel.saturating_sub(per_shard * shards).max(1);
    (intake, per_shard)
}

/// The number of shards `configured` stands for: itself, or with 0 the cores this process may use.
pub(super) fn shard_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    }
}

/// A record on its way to its shard, with its route hash (which also tells its object apart in the shard).
struct Routed {
    tracked: Tracked,
    key: u64,
}

/// A record routing could not hand to its shard: the shards were stopped hard, or a shard's task is gone (it
/// panicked). The record is dropped (a tracked one counts as lost).
#[derive(Debug)]
pub(super) struct Unrouted;

/// What a shard made of one record.
struct Done {
    key: u64,
    spans: Vec<SpanRecord>,
    pending: Option<PendingRecord>,
    arrived: Instant,
}

type Work = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Spans made since the last dispatch, with the tracked records they are delivered with.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) spans: Vec<SpanRecord>,
    /// Tracked records processed since the last dispatch: delivered with `spans`.
    pub(super) pending: Vec<PendingRecord>,
    /// When the records that made the spans of `spans` arrived: at most one per span.
    pub(super) arrivals: Vec<Instant>,
    /// The spans' [`SpanRecord::approximate_size`], summed.
    pub(super) bytes: usize,
}

/// How the shards are sized and flushed.
pub(super) struct ShardSettings {
    pub(super) count: usize,
    /// Records one shard may hold at once.
    pub(super) budget: usize,
    pub(super) batch_size: usize,
    /// Estimated bytes of spans at which a batch is handed on, whatever its span count.
    pub(super) batch_bytes: usize,
    pub(super) flush_interval: Duration,
}

/// The router's side of one shard.
struct Inbox {
    sender: mpsc::UnboundedSender<Routed>,
    /// One permit per record the shard may still take; the shard gives it back once the record is handled.
    room: Arc<Semaphore>,
}

/// The running shards, seen from the run loop.
pub(super) struct Shards {
    inboxes: Vec<Inbox>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
    /// Cancelled on a hard stop: each shard finishes the records in progress, drops the rest and returns.
    stop: CancellationToken,
}

impl Shards {
    /// Starts `settings.count` shard tasks over `stage`, handing batches to `exports`. `stop` stops them hard.
    pub(super) fn start(
        settings: &ShardSettings,
        stage: &Arc<Stage>,
        exports: &Arc<ExportQueues>,
        stats: &Arc<PipelineStats>,
        stop: CancellationToken,
    ) -> Self {
        let count = settings.count.max(1);
        let mut inboxes = Vec::with_capacity(count);
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let (sender, receiver) = mpsc::unbounded_channel();
            let room = Arc::new(Semaphore::new(settings.budget.max(1)));
            let shard = Shard {
                stage: stage.clone(),
                exports: exports.clone(),
                stats: stats.clone(),
                inbox: receiver,
                room: room.clone(),
                batch_size: settings.batch_size.max(1),
                batch_bytes: settings.batch_bytes.max(1),
                batch: Batch {
                    spans: Vec::with_capacity(settings.batch_size.max(1)),
                    ..Batch::default()
                },
                in_progress: FuturesUnordered::new(),
                waiting: HashMap::new(),
                handled: 0,
                spare: Vec::new(),
            };
            tasks.push(tokio::spawn(
                shard.run(settings.flush_interval, stop.clone()),
            ));
            inboxes.push(Inbox { sender, room });
        }
        Self {
            inboxes,
            tasks,
            stop,
        }
    }

    /// Hands `tracked` to the shard of its object, waiting for room there (the back-pressure that reaches the
    /// intake channel and the sources). Records of one object always go to the same shard, in the order routed.
    pub(super) async fn route(&self, tracked: Tracked) -> Result<(), Unrouted> {
        let key = route_hash(&tracked.record);
        let inbox = &self.inboxes[(key % self.inboxes.len() as u64) as usize];
        let permit = match inbox.room.try_acquire() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Unrouted),
            Err(tokio::sync::TryAcquireError::NoPermits) => tokio::select! {
                biased;
                () = self.stop.cancelled() => return Err(Unrouted),
                permit = inbox.room.acquire() => permit.map_err(|_| Unrouted)?,
            },
        };
        // The shard gives the permit back once it has handled the record.
        permit.forget();
        inbox
            .sender
            .send(Routed { tracked, key })
            .map_err(|_| Unrouted)
    }

    /// Stops the shards hard: each finishes what is in progress, drops what waits, hands on its last batch.
    pub(super) fn stop_hard(&self) {
        self.stop.cancel();
    }

    /// Closes the shards' inboxes and waits until every shard has handled what it holds and handed on its last
    /// batch. Past `deadline` (the shutdown grace), or once the shards are stopped hard, what still waits is
    /// dropped and `stop` becomes [`StopCause::HardStop`]. Returns the records dropped, and the panic of a shard
    /// task if one panicked (to be raised once the exporters are flushed).
    pub(super) async fn finish(
        self,
        deadline: Option<tokio::time::Instant>,
        stop: &mut StopCause,
    ) -> (u64, Option<Box<dyn std::any::Any + Send>>) {
        drop(self.inboxes);
        let results = drain_within(
            futures::future::join_all(self.tasks),
            &self.stop,
            deadline,
            stop,
            "the pipeline",
        )
        .await;
        let mut dropped = 0;
        let mut panic = None;
        for result in results {
            match result {
                Ok(count) => dropped += count,
                Err(err) if err.is_panic() => panic = panic.or(Some(err.into_panic())),
                Err(err) => tracing::error!(%err, "a shard of the pipeline failed"),
            }
        }
        (dropped, panic)
    }
}

/// One shard: its inbox, its records in progress and waiting, its batch.
struct Shard {
    stage: Arc<Stage>,
    exports: Arc<ExportQueues>,
    stats: Arc<PipelineStats>,
    inbox: mpsc::UnboundedReceiver<Routed>,
    room: Arc<Semaphore>,
    batch_size: usize,
    batch_bytes: usize,
    batch: Batch,
    /// One record per object at most.
    in_progress: FuturesUnordered<Work>,
    /// By route hash: the records waiting behind the one of their object in progress. A hash is here exactly
    /// while a record with it is in progress (with an empty queue when none waits).
    waiting: HashMap<u64, VecDeque<Routed>>,
    /// Records handled (or dropped) since their permits were last given back.
    handled: usize,
    /// Emptied span vectors, to hand to the next records.
    spare: Vec<Vec<SpanRecord>>,
}

impl Shard {
    /// Runs until its inbox is closed and everything is handled, or until stopped hard; hands on its last batch.
    /// Returns how many records it dropped (on a hard stop).
    async fn run(mut self, flush_interval: Duration, stop: CancellationToken) -> u64 {
        let mut ticker = tokio::time::interval(flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        let mut stopping_hard = false;
        let mut dropped = 0u64;
        while open || !self.in_progress.is_empty() {
            tokio::select! {
                biased;
                () = stop.cancelled(), if !stopping_hard => {
                    stopping_hard = true;
                    open = false;
                    dropped += self.drop_waiting();
                }
                Some(done) = self.in_progress.next(), if !self.in_progress.is_empty() => {
                    decrement(&self.stats.in_progress_records);
                    let key = done.key;
                    self.record(done);
                    self.start_next(key);
                }
                routed = self.inbox.recv(), if open => match routed {
                    Some(routed) => {
                        self.admit(routed);
                        self.admit_more();
                    }
                    None => open = false,
                },
                _ = ticker.tick() => {
                    self.exports.dispatch(&mut self.batch).await;
                }
            }
            self.give_back_room();
            if self.batch_full() {
                self.exports.dispatch(&mut self.batch).await;
            }
        }
        self.exports.dispatch(&mut self.batch).await;
        dropped
    }

    /// Whether the batch is due to be handed on.
    fn batch_full(&self) -> bool {
        self.batch.spans.len() >= self.batch_size
            || self.batch.pending.len() >= self.batch_size
            || self.batch.bytes >= self.batch_bytes
    }

    /// Admits what is already in the inbox, up to [`RECORDS_PER_WAKE_UP`] records or a full batch.
    fn admit_more(&mut self) {
        for _ in 1..RECORDS_PER_WAKE_UP {
            if self.batch_full() {
                return;
            }
            match self.inbox.try_recv() {
                Ok(routed) => self.admit(routed),
                Err(_) => return,
            }
        }
    }

    /// Starts `routed`, or queues it behind the record of its object in progress.
    fn admit(&mut self, routed: Routed) {
        // Nothing in progress is the common case: no lookup then.
        if !self.waiting.is_empty()
            && let Some(queue) = self.waiting.get_mut(&routed.key)
        {
            queue.push_back(routed);
            return;
        }
        let key = routed.key;
        if self.start(routed) {
            self.waiting.insert(key, VecDeque::new());
        }
    }

    /// Starts the next record waiting behind `key`'s, if any; starts more while they finish at once.
    fn start_next(&mut self, key: u64) {
        loop {
            let Some(queue) = self.waiting.get_mut(&key) else {
                return;
            };
            let Some(next) = queue.pop_front() else {
                self.waiting.remove(&key);
                return;
            };
            if self.start(next) {
                return;
            }
        }
    }

    /// Runs `routed` through the stage; `true` when it has to wait (it is then in progress), `false` when it
    /// was handled at once (the common case: no decorator or lookup waited).
    fn start(&mut self, routed: Routed) -> bool {
        let spans = self.spare.pop().unwrap_or_default();
        let mut work: Work = Box::pin(handle(self.stage.clone(), routed, spans));
        match (&mut work).now_or_never() {
            Some(done) => {
                self.record(done);
                false
            }
            None => {
                self.stats.in_progress_records.fetch_add(1, Relaxed);
                self.in_progress.push(work);
                true
            }
        }
    }

    /// Adds what a record made to the batch.
    fn record(&mut self, done: Done) {
        let Done {
            mut spans,
            pending,
            arrived,
            ..
        } = done;
        if !spans.is_empty() {
            self.batch.bytes += spans
                .iter()
                .map(SpanRecord::approximate_size)
                .sum::<usize>();
            self.batch.arrivals.push(arrived);
            self.batch.spans.append(&mut spans);
        }
        if self.spare.len() < SPARE_SPAN_VECTORS {
            self.spare.push(spans);
        }
        self.batch.pending.extend(pending);
        self.handled += 1;
    }

    /// Drops every record not yet in progress (a hard stop); how many.
    fn drop_waiting(&mut self) -> u64 {
        self.inbox.close();
        let mut dropped = 0usize;
        while self.inbox.try_recv().is_ok() {
            dropped += 1;
        }
        for queue in self.waiting.values_mut() {
            dropped += queue.len();
            queue.clear();
        }
        self.handled += dropped;
        dropped as u64
    }

    /// Gives the permits of the records handled back to the router, and takes them off the queue gauge.
    fn give_back_room(&mut self) {
        if self.handled == 0 {
            return;
        }
        self.room.add_permits(self.handled);
        let handled = self.handled as u64;
        let _ = self
            .stats
            .queued_records
            .fetch_update(Relaxed, Relaxed, |now| Some(now.saturating_sub(handled)));
        self.handled = 0;
    }
}

impl Drop for Shard {
    /// A shard that is gone (returned or panicked) takes nothing more: the router sees it at once.
    fn drop(&mut self) {
        self.room.close();
    }
}

/// One record through the stage.
async fn handle(stage: Arc<Stage>, routed: Routed, mut spans: Vec<SpanRecord>) -> Done {
    let Routed {
        tracked:
            Tracked {
                record,
                pending,
                arrived,
                held,
            },
        key,
    } = routed;
    stage.process(record, &mut spans).await;
    // The record is handled: its bytes are free (its spans count in the batch's).
    drop(held);
    Done {
        key,
        spans,
        pending,
        arrived,
    }
}
