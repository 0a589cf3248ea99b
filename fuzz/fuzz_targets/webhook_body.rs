//! The webhook's body path: bytes as a POSTed body → `kelemetry_sources::webhook::take_body` (what the
//! `/audit` handler runs once the body is read: the audit intake, counting, rejections). Checks: a refused body
//! is exactly one the audit intake's unwrapping (`unwrap_document`: native documents and the envelopes of managed
//! clusters) refuses, counts no event and says why; an accepted body accounts for every record (received =
//! activities + skipped + rejected, as many as unwrapping found); rejections name their item; activities are in
//! the webhook's cluster or one an envelope named, and keep the invariants of `kelemetry_fuzz::check_activity`.

#![no_main]

use kelemetry_core::{Record, SourceKind};
use kelemetry_fuzz::{CLUSTER, check_activity};
use kelemetry_sources::audit_envelope::{EnvelopeLimits, unwrap_document};
use kelemetry_sources::webhook::{WebhookMetrics, take_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let metrics = WebhookMetrics::default();
    let unwrapped = unwrap_document(data, &EnvelopeLimits::default());
    let clusters: Vec<String> = unwrapped
        .iter()
        .flatten()
        .filter_map(|entry| entry.cluster.as_deref().map(str::to_owned))
        .collect();
    let parsed = unwrapped.map(|entries| entries.len());
    match take_body(data, CLUSTER, &metrics) {
        Ok((records, rejections)) => {
            let counts = metrics.snapshot();
            assert_eq!(
                parsed.ok(),
                Some(counts.events_received as usize),
                "events received"
            );
            assert_eq!(
                counts.events_received,
                records.len() as u64 + rejections.len() as u64 + counts.events_skipped,
                "every event is an activity, a skip or a rejection: {counts}"
            );
            for record in &records {
                let Record::Activity(activity) = record else {
                    panic!("the webhook queues activities only: {record:?}");
                };
                let mut activity = activity.clone();
                let cluster = &activity.object.key().cluster;
                assert!(
                    cluster == CLUSTER || clusters.iter().any(|c| c == cluster),
                    "cluster {cluster}"
                );
                // The shared checks are written for CLUSTER.
                activity.object.object_ref.key.cluster = CLUSTER.into();
                check_activity(&activity, &SourceKind::Audit);
            }
            for rejection in &rejections {
                let item = rejection
                    .origin
                    .strip_prefix("webhook fuzz item ")
                    .and_then(|item| item.parse::<u64>().ok());
                assert!(
                    item.is_some_and(|item| item < counts.events_received),
                    "{}",
                    rejection.origin
                );
            }
        }
        Err(message) => {
            assert!(
                parsed.is_err(),
                "a body the intake takes was refused: {message}"
            );
            assert!(message.starts_with("not an audit EventList ("), "{message}");
            assert_eq!(metrics.snapshot().events_received, 0);
        }
    }
});
