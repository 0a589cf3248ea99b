//! Whether `kelemetry run` is ready, as its audit webhook's `GET /readyz` tells (docs/store.md#failures-are-said-out-loud).
//!
//! Ready means: the pipeline has started its sources, and no span was lost in the last [`LOSS_MEMORY`], that is,
//! every exporter took every batch it was handed in that time (after its retries), and every flush succeeded. A
//! full disk under the store, an OTLP collector that stays away past the retries or a store that fails its writes
//! makes `run` unready at the first lost batch (in the `ingest` role: the first record Kafka did not acknowledge),
//! and ready again once nothing has been lost for [`LOSS_MEMORY`].
//! Each loss is also logged with its count, at error level, which the default log filter shows.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kelemetry_core::PipelineStats;
use tokio::task::JoinHandle;

/// How long a lost span keeps `kelemetry run` unready: 5 minutes.
pub(crate) const LOSS_MEMORY: Duration = Duration::from_secs(5 * 60);

/// How often the watch looks for new losses to log.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The readiness of a running pipeline: made before the pipeline (the webhook takes its check when it is built),
/// attached to the pipeline's counters once the pipeline is built, started when the pipeline runs.
#[derive(Debug)]
pub(crate) struct Readiness {
    stats: OnceLock<Arc<PipelineStats>>,
    started: AtomicBool,
    memory: Duration,
    losses: Mutex<Losses>,
}

/// The spans lost so far, as last seen and as last logged, and when a loss was last seen.
#[derive(Debug, Default)]
struct Losses {
    seen: u64,
    logged: u64,
    last: Option<Instant>,
}

impl Readiness {
    /// Not ready until attached and started; a loss keeps it unready for `memory`.
    pub(crate) fn new(memory: Duration) -> Arc<Self> {
        Arc::new(Self {
            stats: OnceLock::new(),
            started: AtomicBool::new(false),
            memory,
            losses: Mutex::default(),
        })
    }

    /// Reads losses from the counters of the pipeline.
    pub(crate) fn attach(&self, stats: Arc<PipelineStats>) {
        // Attached once, right after the pipeline is built; a second call changes nothing.
        let _ = self.stats.set(stats);
    }

    /// The pipeline has started its sources.
    pub(crate) fn mark_started(&self) {
        self.started.store(true, Relaxed);
    }

    /// `Ok` when ready; otherwise why not.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), String> {
        if !self.started.load(Relaxed) {
            return Err("the pipeline has not started its sources yet".to_owned());
        }
        let (_, total, last) = self.observe(now);
        match last {
            Some(last) if now.saturating_duration_since(last) < self.memory => Err(format!(
                "{total} spans were not exported since the start, the last {}s ago; ready again {}s after the \
                 last loss",
                now.saturating_duration_since(last).as_secs(),
                self.memory.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// Reads the lost-span counter at `now`: the spans lost and not logged yet (counted as logged), in all, and
    /// when the last loss was seen.
    fn observe(&self, now: Instant) -> (u64, u64, Option<Instant>) {
        let total = self.stats.get().map_or(0, |stats| {
            stats.spans_dropped.load(Relaxed) + stats.forward_failed.load(Relaxed)
        });
        let mut losses = self
            .losses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if total > losses.seen {
            losses.seen = total;
            losses.last = Some(now);
        }
        (total.saturating_sub(losses.logged), total, losses.last)
    }

    /// [`Readiness::observe`], counting what it returns as logged.
    fn observe_for_log(&self, now: Instant) -> (u64, u64) {
        let (new, total, _) = self.observe(now);
        let mut losses = self
            .losses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        losses.logged = losses.logged.max(total);
        (new, total)
    }

    /// Logs each new loss with its count, once a second at most, until aborted.
    pub(crate) fn spawn_watch(self: &Arc<Self>) -> JoinHandle<()> {
        let readiness = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                tick.tick().await;
                let (new, total) = readiness.observe_for_log(Instant::now());
                if new > 0 {
                    tracing::error!(
                        lost = new,
                        lost_in_all = total,
                        unready_for_secs = readiness.memory.as_secs(),
                        "{new} spans were not exported ({total} since the start); /readyz answers not ready"
                    );
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_started_unready_for_the_memory_after_a_loss() {
        let readiness = Readiness::new(Duration::from_secs(300));
        let stats = Arc::new(PipelineStats::default());
        readiness.attach(Arc::clone(&stats));
        let start = Instant::now();
        assert!(readiness.check_at(start).is_err(), "not started");
        readiness.mark_started();
        assert_eq!(readiness.check_at(start), Ok(()));

        stats.spans_dropped.fetch_add(512, Relaxed);
        let lost_at = start + Duration::from_secs(10);
        let unready = readiness.check_at(lost_at).unwrap_err();
        assert!(
            unready.starts_with("512 spans were not exported"),
            "{unready}"
        );
        assert!(
            readiness
                .check_at(lost_at + Duration::from_secs(299))
                .is_err()
        );
        assert_eq!(
            readiness.check_at(lost_at + Duration::from_secs(300)),
            Ok(())
        );

        // A new loss starts the memory again, and the count is the total.
        stats.spans_dropped.fetch_add(10, Relaxed);
        let again = lost_at + Duration::from_secs(400);
        let unready = readiness.check_at(again).unwrap_err();
        assert!(
            unready.starts_with("522 spans were not exported"),
            "{unready}"
        );
        // What /readyz saw is still logged once, with the total.
        assert_eq!(readiness.observe_for_log(again), (522, 522));
        assert_eq!(
            readiness.observe_for_log(again),
            (0, 522),
            "nothing new since"
        );
    }
}
