//! The recorded object streams: bytes as a file → `ObjectFileSource::read_from` (YAML and JSON stream splitting,
//! lists, watch events, Events), once with the default document limit and once with a limit of 64 bytes. Checks
//! the accounting: every record found is sent, skipped or rejected exactly once; every byte is counted and
//! reported as progress; every rejection reaches the sink; each record keeps the activity invariants.

#![no_main]

use std::sync::{Arc, LazyLock};

use kelemetry_core::{CancellationToken, CollectingSink, Record, SourceKind};
use kelemetry_fuzz::{CLUSTER, check_activity};
use kelemetry_sources::{DEFAULT_DOCUMENT_LIMIT, ObjectFileSource};
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

/// The sources, made once (a source builds its resource map, which costs more than reading most inputs): reading
/// only resolves kinds in the map and never learns one, so the inputs stay independent. Their counters add up
/// over the inputs, so each input is checked on the difference it made.
static SOURCES: LazyLock<[ObjectFileSource; 2]> = LazyLock::new(|| {
    [DEFAULT_DOCUMENT_LIMIT, 64]
        .map(|limit| ObjectFileSource::new("fuzz.yaml", CLUSTER).with_document_limit(limit))
});

fn read(data: &[u8], source: &ObjectFileSource) {
    let before = source.counters().snapshot();
    let sink = Arc::new(CollectingSink::default());
    let result = RUNTIME.block_on(source.read_from(
        data,
        "fuzz.yaml",
        sink.clone(),
        CancellationToken::new(),
    ));
    assert!(result.is_ok(), "reading memory cannot fail: {result:?}");

    let after = source.counters().snapshot();
    let found = after.records - before.records;
    let sent = after.sent - before.sent;
    let skipped = after.skipped_total() - before.skipped_total();
    let rejected = after.rejected_total() - before.rejected_total();
    let records = sink.records();
    let rejections = sink.rejections();
    assert_eq!(
        after.bytes - before.bytes,
        data.len() as u64,
        "bytes counted"
    );
    assert_eq!(sink.progress_bytes(), data.len() as u64, "bytes reported");
    assert_eq!(sent, records.len() as u64, "records sent");
    assert_eq!(rejected, rejections.len() as u64, "rejections reported");
    assert_eq!(
        found,
        sent + skipped + rejected,
        "every record found is sent, skipped or rejected once: {found} found, {sent} sent, {skipped} skipped, \
         {rejected} rejected"
    );
    for rejection in &rejections {
        assert!(
            rejection.origin.starts_with("fuzz.yaml:"),
            "{}",
            rejection.origin
        );
        assert!(!rejection.reason.is_empty());
    }
    for record in &records {
        match record {
            Record::Activity(activity) => check_activity(activity, &SourceKind::Event),
            Record::Observation(seen) => {
                assert_eq!(seen.object.key().cluster, CLUSTER);
                assert!(
                    seen.object.body.is_some(),
                    "an observation carries its body"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for source in SOURCES.iter() {
        read(data, source);
    }
});
