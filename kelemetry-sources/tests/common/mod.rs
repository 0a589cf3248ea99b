//! Shared by the integration tests: a sink that collects what it gets, and running a source into it. (The fixture
//! folder is `kelemetry_testkit::fixtures`.)

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kelemetry_core::{
    Activity, ActivitySink, CancellationToken, Observation, Record, Rejection, SinkClosed, Source,
};

/// Keeps every record, rejection and progress report.
#[derive(Default)]
pub(crate) struct CollectingSink {
    /// Records sent.
    pub(crate) records: Mutex<Vec<Record>>,
    /// Rejections reported.
    pub(crate) rejections: Mutex<Vec<Rejection>>,
    /// Bytes reported as progress.
    pub(crate) progress: AtomicU64,
}

#[async_trait::async_trait]
impl ActivitySink for CollectingSink {
    async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        self.records.lock().expect("lock").push(record);
        Ok(())
    }

    fn reject(&self, rejection: Rejection) {
        self.rejections.lock().expect("lock").push(rejection);
    }

    fn progress(&self, bytes: u64) {
        self.progress.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl CollectingSink {
    /// The activities sent, in order.
    pub(crate) fn activities(&self) -> Vec<Activity> {
        self.records
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|record| match record {
                Record::Activity(activity) => Some((**activity).clone()),
                Record::Observation(_) => None,
            })
            .collect()
    }

    /// The observations sent, in order.
    pub(crate) fn observations(&self) -> Vec<Observation> {
        self.records
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|record| match record {
                Record::Observation(observation) => Some((**observation).clone()),
                Record::Activity(_) => None,
            })
            .collect()
    }

    /// The rejections reported, in order.
    pub(crate) fn rejections(&self) -> Vec<Rejection> {
        self.rejections.lock().expect("lock").clone()
    }
}

/// Runs a source to its end into a new collecting sink.
pub(crate) async fn run(source: Box<dyn Source>) -> Arc<CollectingSink> {
    let sink = Arc::new(CollectingSink::default());
    let shutdown = CancellationToken::new();
    source
        .run(sink.clone(), shutdown)
        .await
        .expect("the source runs");
    sink
}

/// The `response_body` strings of an apiserver replay file (a JSON array of request/response pairs).
pub(crate) fn replay_bodies(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("replay file");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).expect("replay JSON");
    entries
        .iter()
        .map(|entry| {
            entry["response_body"]
                .as_str()
                .expect("response_body")
                .to_owned()
        })
        .collect()
}
