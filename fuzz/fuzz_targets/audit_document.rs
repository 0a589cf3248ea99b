//! The audit parser and mapping: bytes → `parse_document` → every event through `AuditMapping::map` (both
//! impersonation settings). Checks: a parsed event has an audit id; mapping is deterministic; an activity keeps
//! the invariants of `kelemetry_fuzz::check_activity` and its dedup key is `audit:<auditID>`.

#![no_main]

use kelemetry_core::SourceKind;
use kelemetry_core::audit::{AuditMapping, AuditOutcome, parse_document};
use kelemetry_fuzz::{CLUSTER, check_activity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let events = match parse_document(data) {
        Ok(events) => events,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    for event in events {
        assert!(
            !event.audit_id.is_empty(),
            "a parsed event without an audit id"
        );
        let dedup_key = format!("audit:{}", event.audit_id);
        for use_impersonated_user in [true, false] {
            let mut mapping = AuditMapping::default();
            mapping.use_impersonated_user = use_impersonated_user;
            let outcome = mapping.map(event.clone(), CLUSTER);
            assert_eq!(
                outcome,
                mapping.map(event.clone(), CLUSTER),
                "mapping is deterministic"
            );
            match outcome {
                Ok(AuditOutcome::Activity(activity)) => {
                    check_activity(&activity, &SourceKind::Audit);
                    assert_eq!(activity.dedup_key, dedup_key);
                    assert!(activity.change.is_some(), "an audit activity is a write");
                }
                Ok(AuditOutcome::Skipped(reason)) => assert!(!reason.as_str().is_empty()),
                Err(error) => assert!(!error.to_string().is_empty()),
            }
        }
    }
});
