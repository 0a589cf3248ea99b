//! The Kubernetes Event mapping: bytes → JSON → `event_to_activity` with the built-in resource map. Checks: only
//! a `v1` or `events.k8s.io` Event maps; mapping is deterministic; the activity keeps the invariants of
//! `kelemetry_fuzz::check_activity`, its dedup key starts with `event:` and it carries at most one log.

#![no_main]

use kelemetry_core::SourceKind;
use kelemetry_core::kube_event::{event_api, event_to_activity};
use kelemetry_core::resource_map::ResourceMap;
use kelemetry_fuzz::{CLUSTER, check_activity};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static RESOURCES: LazyLock<ResourceMap> = LazyLock::new(ResourceMap::builtin);

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match event_to_activity(&value, CLUSTER, &RESOURCES) {
        Ok(activity) => {
            assert!(event_api(&value).is_some(), "only an Event maps");
            check_activity(&activity, &SourceKind::Event);
            assert!(
                activity.dedup_key.starts_with("event:"),
                "{}",
                activity.dedup_key
            );
            assert!(activity.logs.len() <= 1, "one message log at most");
            let again = event_to_activity(&value, CLUSTER, &RESOURCES).map_err(|e| e.to_string());
            assert_eq!(again.as_ref(), Ok(&activity), "mapping is deterministic");
        }
        Err(error) => {
            assert!(!error.class().is_empty());
            assert!(!error.to_string().is_empty());
        }
    }
});
