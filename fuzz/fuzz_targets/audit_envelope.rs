//! Envelopes of managed clusters: bytes → `kelemetry_sources::audit_envelope::unwrap_document` (GKE LogEntries and
//! Pub/Sub messages, AKS records and batches, EKS CloudWatch events and subscription records; gzip and base64
//! layers) and → `AuditIntake::take`, with small limits (1 MiB decompressed, 1,000 entries, 4 layers). Checks:
//! unwrapping is deterministic and within its limits; a native document gives exactly the events the native
//! parser finds; every event has an audit id, every named cluster a name; a rejection of a recognised envelope
//! names it; the intake refuses exactly the documents unwrapping refuses and yields one item per entry, each
//! activity in the cluster its envelope named (else the source's) and keeping the activity checks.

#![no_main]

use kelemetry_core::SourceKind;
use kelemetry_core::audit::parse_document;
use kelemetry_fuzz::{CLUSTER, check_activity};
use kelemetry_sources::audit_envelope::{
    Envelope, EnvelopeLimits, Enveloped, EnvelopedContent, unwrap_document,
};
use kelemetry_sources::audit_intake::{AuditIntake, AuditItem, RecordRejection};
use libfuzzer_sys::fuzz_target;

const MAX_ENTRIES: usize = 1_000;

fn limits() -> EnvelopeLimits {
    EnvelopeLimits::new(1024 * 1024, MAX_ENTRIES, 4)
}

/// A rejection of a recognised envelope names it at the start of its detail (after any `item N: `).
fn check_rejection(rejection: &RecordRejection) {
    assert!(!rejection.detail.is_empty(), "a rejection says why");
    if let Some(envelope) = rejection.envelope.filter(|e| *e != Envelope::Native) {
        assert!(
            rejection.detail.contains(&format!("{envelope}: ")),
            "{envelope}: {}",
            rejection.detail
        );
    }
}

fn check_entry(entry: &Enveloped) {
    if let Some(cluster) = &entry.cluster {
        assert!(!cluster.is_empty(), "a named cluster has a name");
    }
    match &entry.content {
        EnvelopedContent::Event(event) => {
            assert!(!event.audit_id.is_empty(), "an event without an audit id");
        }
        EnvelopedContent::Rejected(rejection) => {
            check_rejection(rejection);
            assert_eq!(rejection.envelope, Some(entry.envelope));
        }
        EnvelopedContent::Skipped(skip) => assert!(!skip.as_str().is_empty()),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    let unwrapped = unwrap_document(data, &limits);
    let again = unwrap_document(data, &limits);
    assert_eq!(
        format!("{unwrapped:?}"),
        format!("{again:?}"),
        "unwrapping is deterministic"
    );
    if let Ok(events) = parse_document(data)
        && events.len() <= MAX_ENTRIES
    {
        let entries = unwrapped.as_ref().expect("a native document is read");
        assert_eq!(entries.len(), events.len());
        assert!(
            entries
                .iter()
                .all(|e| e.envelope == Envelope::Native && e.cluster.is_none())
        );
    }
    let entries = match &unwrapped {
        Ok(entries) => {
            assert!(entries.len() <= MAX_ENTRIES, "{} entries", entries.len());
            entries.iter().for_each(check_entry);
            entries
        }
        Err(rejection) => {
            check_rejection(rejection);
            let intake = AuditIntake::default().with_envelope_limits(limits);
            let refused = intake
                .take(data, CLUSTER)
                .expect_err("the intake refuses it too");
            assert_eq!(&refused, rejection);
            return;
        }
    };

    let intake = AuditIntake::default().with_envelope_limits(limits);
    let mut items = intake.take(data, CLUSTER).expect("the intake reads it too");
    assert_eq!(items.len(), entries.len(), "one item per entry");
    for entry in entries {
        let (envelope, item) = items.next_enveloped().expect("an item per entry");
        assert_eq!(envelope, entry.envelope);
        match item {
            AuditItem::Activity(mut activity) => {
                let expected = entry.cluster.as_deref().unwrap_or(CLUSTER);
                assert_eq!(
                    activity.object.key().cluster,
                    expected,
                    "the envelope's cluster"
                );
                assert!(activity.dedup_key.starts_with("audit:"));
                // The shared checks are written for CLUSTER.
                activity.object.object_ref.key.cluster = CLUSTER.into();
                check_activity(&activity, &SourceKind::Audit);
            }
            AuditItem::Skipped(cause) => assert!(!cause.as_str().is_empty()),
            AuditItem::Rejected(rejection) => check_rejection(&rejection),
            _ => {}
        }
    }
    assert!(items.next().is_none());
});
