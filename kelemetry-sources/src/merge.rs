//! [`TimeOrderedSources`]: several recorded sources replayed as one, in time order.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::budget::{ByteBudget, HeldBytes};
use kelemetry_core::{
    ActivitySink, BoxError, CancellationToken, Record, Rejection, SinkClosed, Source, SourceError,
};
use tokio::sync::mpsc;

/// How many records each inner source may read ahead of the merge.
const READ_AHEAD: usize = 256;

/// How many records all inner sources together may read ahead: with many sources, each reads ahead less (at least
/// one record), so a folder of many files does not hold hundreds of records per file.
const TOTAL_READ_AHEAD: usize = 4096;

/// How many bytes of records ([`Record::approximate_size`]) each inner source may read ahead of the merge, whatever
/// their count.
const READ_AHEAD_BYTES: usize = 16 << 20;

/// How many bytes of records all inner sources together may read ahead. A record larger than its source's share
/// is read ahead alone, so every source can always offer the merge its next record.
const TOTAL_READ_AHEAD_BYTES: usize = 64 << 20;

/// Runs several sources of recorded data and hands their records on in time order (activity start, observation
/// time; ties keep the order of the sources), so a replay sees an audit log, the Events and the watched objects of
/// the same period interleaved as they happened, the same way every time. Each source must itself yield its records
/// in time order, as recordings do.
///
/// Each inner source reads at most a few hundred records (16 MiB of them) ahead, and all of them together at most a
/// few thousand (64 MiB; one record each beyond that): the merge waits until every source still running has a
/// record to offer before it hands on the earliest one.
pub struct TimeOrderedSources {
    sources: Vec<Box<dyn Source>>,
}

impl TimeOrderedSources {
    /// Merges `sources`.
    pub fn new(sources: Vec<Box<dyn Source>>) -> Self {
        Self { sources }
    }
}

impl std::fmt::Debug for TimeOrderedSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|s| s.name()).collect();
        f.debug_struct("TimeOrderedSources")
            .field("sources", &names)
            .finish()
    }
}

/// The time a record is placed at.
fn time_of(record: &Record) -> Timestamp {
    match record {
        Record::Activity(activity) => activity.start,
        Record::Observation(observation) => observation.time,
    }
}

/// A record read ahead, holding its bytes of its lane's budget.
type ReadAhead = (Record, HeldBytes);

/// Where an inner source writes: its own channel, bounded in records and in bytes; rejections and progress go
/// straight through.
struct Lane {
    records: mpsc::Sender<ReadAhead>,
    /// The bytes the lane may hold.
    room: ByteBudget,
    outer: Arc<dyn ActivitySink>,
}

#[async_trait]
impl ActivitySink for Lane {
    async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        let permit = self
            .room
            .hold(record.approximate_size())
            .await
            .map_err(|_| SinkClosed)?;
        self.records
            .send((record, permit))
            .await
            .map_err(|_| SinkClosed)
    }

    fn reject(&self, rejection: Rejection) {
        self.outer.reject(rejection);
    }

    fn progress(&self, bytes: u64) {
        self.outer.progress(bytes);
    }
}

#[async_trait]
impl Source for TimeOrderedSources {
    fn name(&self) -> &str {
        "time-ordered recordings"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut lanes = Vec::with_capacity(self.sources.len());
        let mut tasks = Vec::with_capacity(self.sources.len());
        let read_ahead = (TOTAL_READ_AHEAD / self.sources.len().max(1)).clamp(1, READ_AHEAD);
        let read_ahead_bytes =
            (TOTAL_READ_AHEAD_BYTES / self.sources.len().max(1)).clamp(1, READ_AHEAD_BYTES);
        for source in self.sources {
            let (records, receiver) = mpsc::channel(read_ahead);
            let lane: Arc<dyn ActivitySink> = Arc::new(Lane {
                records,
                room: ByteBudget::new(read_ahead_bytes),
                outer: sink.clone(),
            });
            let name = source.name().to_owned();
            tasks.push((name, tokio::spawn(source.run(lane, shutdown.clone()))));
            lanes.push(receiver);
        }

        // heads[i]: the next record of source i; open[i]: source i may still send.
        let mut heads: Vec<Option<ReadAhead>> = lanes.iter().map(|_| None).collect();
        let mut open = vec![true; lanes.len()];
        loop {
            for (i, lane) in lanes.iter_mut().enumerate() {
                if open[i] && heads[i].is_none() {
                    match lane.recv().await {
                        Some(record) => heads[i] = Some(record),
                        None => open[i] = false,
                    }
                }
            }
            let earliest = heads
                .iter()
                .enumerate()
                .filter_map(|(i, head)| head.as_ref().map(|(r, _)| (time_of(r), i)))
                .min();
            let Some((_, i)) = earliest else { break };
            // The record's bytes stay held until the pipeline has taken it.
            let Some((record, _held)) = heads[i].take() else {
                break;
            };
            if sink.send(record).await.is_err() {
                // The pipeline stopped taking records: stop reading.
                for lane in &mut lanes {
                    lane.close();
                }
                break;
            }
        }

        let mut failures: Vec<(String, BoxError)> = Vec::new();
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => failures.push((name, err.into())),
                Err(err) => failures.push((name, format!("task failed: {err}").into())),
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 => {
                let (name, error) = failures.remove(0);
                Err(SourceError::other(name, error))
            }
            _ => Err(SourceError::other(
                "time-ordered recordings",
                Failures(failures),
            )),
        }
    }
}

/// The failures of several merged sources, each with the source's name.
#[derive(Debug)]
struct Failures(Vec<(String, BoxError)>);

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (name, error)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{name}: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failures {}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use kelemetry_core::{Activity, Object, ObjectKey, ObjectRef, SourceKind};

    /// Sends activities at the given minutes past ten.
    struct Minutes(&'static str, Vec<i64>);

    #[async_trait]
    impl Source for Minutes {
        fn name(&self) -> &str {
            self.0
        }
        async fn run(
            self: Box<Self>,
            sink: Arc<dyn ActivitySink>,
            _: CancellationToken,
        ) -> Result<(), SourceError> {
            for minute in &self.1 {
                let at: Timestamp = format!("2024-01-01T10:{minute:02}:00Z").parse().unwrap();
                let key = ObjectKey::new("c", "", "pods", "ns", "p");
                let activity = Activity::new(
                    Object::new(ObjectRef::new(key, "v1", None)),
                    SourceKind::Audit,
                    at,
                    format!("{} {minute}", self.0),
                    format!("{}{minute}", self.0),
                );
                sink.send(activity.into())
                    .await
                    .map_err(|e| SourceError::other(self.0, e))?;
            }
            Ok(())
        }
    }

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    #[async_trait]
    impl ActivitySink for Collect {
        async fn send(&self, record: Record) -> Result<(), SinkClosed> {
            if let Record::Activity(a) = record {
                self.0.lock().unwrap().push(a.title);
            }
            Ok(())
        }
        fn reject(&self, _: Rejection) {}
    }

    #[tokio::test]
    async fn records_come_out_in_time_order_whatever_the_sources_race() {
        let many: Vec<i64> = (0..600).map(|i| i % 60).collect::<Vec<_>>();
        let mut sorted = many.clone();
        sorted.sort();
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(Minutes("audit", vec![1, 5, 9, 30])),
            Box::new(Minutes("watch", vec![0, 5, 6, 40, 59])),
            Box::new(Minutes("events", sorted)),
        ];
        let sink = Arc::new(Collect::default());
        Box::new(TimeOrderedSources::new(sources))
            .run(sink.clone(), CancellationToken::new())
            .await
            .unwrap();
        let seen = sink.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 4 + 5 + 600);
        let minute = |t: &String| t.rsplit(' ').next().unwrap().parse::<i64>().unwrap();
        assert!(
            seen.windows(2).all(|w| minute(&w[0]) <= minute(&w[1])),
            "{seen:?}"
        );
        // Ties keep the order of the sources: audit before watch at minute 5.
        let at5: Vec<&String> = seen.iter().filter(|t| minute(t) == 5).collect();
        assert_eq!(at5[0], "audit 5");
        assert_eq!(at5[1], "watch 5");
    }

    /// Sends `count` activities with bodies of `bytes` bytes, one a minute, counting what it has sent.
    struct Bodies {
        count: i64,
        bytes: usize,
        sent: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[async_trait]
    impl Source for Bodies {
        fn name(&self) -> &str {
            "bodies"
        }
        async fn run(
            self: Box<Self>,
            sink: Arc<dyn ActivitySink>,
            _: CancellationToken,
        ) -> Result<(), SourceError> {
            for minute in 0..self.count {
                let at: Timestamp = format!("2024-01-01T10:{minute:02}:00Z").parse().unwrap();
                let key = ObjectKey::new("c", "", "configmaps", "ns", "big");
                let body = serde_json::json!({"data": {"blob": "x".repeat(self.bytes)}});
                let activity = Activity::new(
                    Object::with_body(ObjectRef::new(key, "v1", None), body),
                    SourceKind::Audit,
                    at,
                    format!("bodies {minute}"),
                    format!("bodies{minute}"),
                );
                sink.send(activity.into())
                    .await
                    .map_err(|e| SourceError::other("bodies", e))?;
                self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        }
    }

    /// Takes records slowly, noting how far the source had read ahead of each.
    struct Slow {
        sent: Arc<std::sync::atomic::AtomicUsize>,
        taken: Mutex<Vec<String>>,
        most_ahead: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl ActivitySink for Slow {
        async fn send(&self, record: Record) -> Result<(), SinkClosed> {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let mut taken = self.taken.lock().unwrap();
            if let Record::Activity(a) = record {
                taken.push(a.title);
            }
            let ahead = self
                .sent
                .load(std::sync::atomic::Ordering::SeqCst)
                .saturating_sub(taken.len());
            self.most_ahead
                .fetch_max(ahead, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn reject(&self, _: Rejection) {}
    }

    async fn merge_bodies(count: i64, bytes: usize, others: Vec<i64>) -> Arc<Slow> {
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sources: Vec<Box<dyn Source>> = vec![
            Box::new(Bodies {
                count,
                bytes,
                sent: sent.clone(),
            }),
            Box::new(Minutes("audit", others)),
        ];
        let sink = Arc::new(Slow {
            sent,
            taken: Mutex::new(Vec::new()),
            most_ahead: 0.into(),
        });
        Box::new(TimeOrderedSources::new(sources))
            .run(sink.clone(), CancellationToken::new())
            .await
            .unwrap();
        sink
    }

    #[tokio::test]
    async fn a_source_reads_ahead_at_most_its_bytes_of_records() {
        // 2 MiB records and 16 MiB for each of the two sources: about 8 ahead, where 256 records would fit.
        let sink = merge_bodies(40, 2 << 20, vec![]).await;
        assert_eq!(sink.taken.lock().unwrap().len(), 40);
        let ahead = sink.most_ahead.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=9).contains(&ahead), "{ahead} records read ahead");
    }

    #[tokio::test]
    async fn a_record_larger_than_its_sources_bytes_is_read_ahead_alone_and_the_merge_goes_on() {
        let sink = merge_bodies(3, 20 << 20, vec![0, 1, 2, 3]).await;
        let taken = sink.taken.lock().unwrap().clone();
        assert_eq!(
            taken,
            [
                "bodies 0", "audit 0", "bodies 1", "audit 1", "bodies 2", "audit 2", "audit 3"
            ]
        );
        let ahead = sink.most_ahead.load(std::sync::atomic::Ordering::SeqCst);
        assert!(ahead <= 2, "{ahead} records read ahead");
    }
}
