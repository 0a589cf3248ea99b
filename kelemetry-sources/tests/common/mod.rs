//! Shared by the integration tests: running a source into a `kelemetry_core::CollectingSink`. (The fixture folder
//! is `kelemetry_testkit::fixtures`.)

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

pub(crate) use kelemetry_core::CollectingSink;
use kelemetry_core::{CancellationToken, Source};

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
