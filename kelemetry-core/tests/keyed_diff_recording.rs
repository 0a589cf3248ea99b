//! Keyed list diffs on the project's own recording of the deployment scenario
//! (`fixtures/recorded/deployment-lifecycle/audit.log`, made on the real test cluster): the Deployment's status
//! updates reorder and change `status.conditions`, which an index-based diff shows as every field of every
//! condition and the keyed diff as what changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kelemetry_core::audit::{AuditOutcome, map_event, parse_document};
use kelemetry_core::diff::{AUDIT_EXCLUDED_FIELDS, diff_excluding};
use kelemetry_core::{Activity, BodyCache, DiffDecorator, LogKind};
use serde_json::Value;

/// One write of the Deployment `demo`, as the diff decorator saw it.
struct Write {
    /// The activity's title, e.g. `system:serviceaccount:kube-system:deployment-controller update status`.
    title: String,
    /// When it finished (the audit event's `stageTimestamp`).
    stage: String,
    /// The lines of its diff log (keyed), empty without one.
    keyed: Vec<String>,
    /// The lines the index-based diff of the same two bodies gives.
    by_index: Vec<String>,
}

/// Every write of `apps/deployments/default/demo` in the recording, through the diff decorator as the pipeline
/// runs it (bodies cached after decoration).
fn deployment_writes() -> Vec<Write> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/recorded/deployment-lifecycle/audit.log");
    let text = std::fs::read_to_string(&path).expect("the recording is in the repository");
    let bodies = BodyCache::new(1_000);
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let stage = serde_json::from_str::<Value>(line).unwrap()["stageTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for event in parse_document(line.as_bytes()).unwrap() {
            let AuditOutcome::Activity(activity) = map_event(event, "tracetest").unwrap() else {
                continue;
            };
            let mut activity: Activity = *activity;
            let key = activity.object.key().clone();
            let is_demo = key.is("apps", "deployments") && key.name == "demo";
            let previous = activity.object.body.as_ref().and_then(|body| {
                let rv = body.pointer("/metadata/resourceVersion")?.as_str()?;
                bodies.before(&key, Some(rv))
            });
            DiffDecorator.decorate_now(&mut activity, &bodies);
            if is_demo {
                let keyed = activity
                    .logs
                    .iter()
                    .filter(|l| l.kind == LogKind::ObjectDiff)
                    .flat_map(|l| l.message.lines().map(str::to_owned))
                    .collect();
                let by_index = match (&previous, &activity.object.body) {
                    (Some(old), Some(new)) if !keyed_is_empty(&activity) => {
                        diff_excluding(old, new, AUDIT_EXCLUDED_FIELDS)
                            .iter()
                            .map(ToString::to_string)
                            .collect()
                    }
                    _ => Vec::new(),
                };
                out.push(Write {
                    title: activity.title.clone(),
                    stage: stage.clone(),
                    keyed,
                    by_index,
                });
            }
            if let Some(body) = &activity.object.body {
                bodies.insert(&key, body.clone());
            }
        }
    }
    out
}

fn keyed_is_empty(activity: &Activity) -> bool {
    !activity.logs.iter().any(|l| l.kind == LogKind::ObjectDiff)
}

#[test]
fn the_status_update_after_scaling_reads_as_the_conditions_that_changed() {
    let writes = deployment_writes();
    let update = writes
        .iter()
        .find(|w| w.stage == "2026-11-28T01:35:03.394043Z")
        .expect("the status update that follows the scale to 4");
    assert_eq!(
        update.title,
        "system:serviceaccount:kube-system:deployment-controller update status"
    );
    // The controller wrote the conditions in the other order: by index, every field of both reads as changed.
    let conditions_by_index = update
        .by_index
        .iter()
        .filter(|l| l.starts_with("status.conditions["))
        .count();
    assert_eq!(update.by_index.len(), 12, "{:#?}", update.by_index);
    assert_eq!(conditions_by_index, 9, "{:#?}", update.by_index);
    assert!(
        update
            .by_index
            .iter()
            .any(|l| l.starts_with(r#"status.conditions[0].type "Available" -> "Progressing""#))
    );
    // Keyed by type, only the Available condition changed.
    assert_eq!(
        update.keyed,
        [
            "metadata.generation 1 -> 2",
            "spec.replicas 2 -> 4",
            r#"status.conditions[Available].lastTransitionTime "2026-11-28T01:34:58Z" -> "2026-11-28T01:35:03Z""#,
            r#"status.conditions[Available].lastUpdateTime "2026-11-28T01:34:58Z" -> "2026-11-28T01:35:03Z""#,
            r#"status.conditions[Available].message "Deployment has minimum availability." -> "Deployment does not have minimum availability.""#,
            r#"status.conditions[Available].reason "MinimumReplicasAvailable" -> "MinimumReplicasUnavailable""#,
            r#"status.conditions[Available].status "True" -> "False""#,
            "status.observedGeneration 1 -> 2",
        ],
        "{:#?}",
        update.keyed
    );
}

#[test]
fn the_status_update_after_the_image_change_reads_as_the_progressing_condition() {
    let writes = deployment_writes();
    let update = writes
        .iter()
        .find(|w| w.stage == "2026-11-28T01:35:08.534270Z")
        .expect("the status update that follows `kubectl set image`");
    assert_eq!(update.by_index.len(), 11, "{:#?}", update.by_index);
    assert_eq!(
        update.keyed,
        [
            r#"metadata.annotations["deployment.kubernetes.io/revision"] "1" -> "2""#,
            r#"status.conditions[Progressing].lastUpdateTime "2026-11-28T01:34:58Z" -> "2026-11-28T01:35:08Z""#,
            r#"status.conditions[Progressing].message "ReplicaSet \"demo-fd6c564b7\" has successfully progressed." -> "Created new replica set \"demo-56bdb4fc9d\"""#,
            r#"status.conditions[Progressing].reason "NewReplicaSetAvailable" -> "NewReplicaSetCreated""#,
        ],
        "{:#?}",
        update.keyed
    );
}

#[test]
fn no_keyed_diff_of_the_deployment_has_an_index_into_a_keyed_list() {
    let writes = deployment_writes();
    let diffed: Vec<&Write> = writes.iter().filter(|w| !w.keyed.is_empty()).collect();
    assert!(diffed.len() > 20, "{}", diffed.len());
    for write in &diffed {
        for line in &write.keyed {
            let path = line.split_once(' ').map_or(line.as_str(), |(p, _)| p);
            assert!(
                !path.contains("conditions[0")
                    && !path.contains("conditions[1")
                    && !path.contains("containers[0"),
                "{}: {line}",
                write.stage
            );
        }
        // Keying never shows more than the index-based diff of the same bodies.
        assert!(
            write.keyed.len() <= write.by_index.len(),
            "{}: {:#?} vs {:#?}",
            write.stage,
            write.keyed,
            write.by_index
        );
    }
    let total_keyed: usize = diffed.iter().map(|w| w.keyed.len()).sum();
    let total_by_index: usize = diffed.iter().map(|w| w.by_index.len()).sum();
    assert!(
        total_keyed < total_by_index,
        "{total_keyed} vs {total_by_index}"
    );
    // The image change is written against the container's name.
    assert!(writes.iter().flat_map(|w| &w.keyed).any(|l| {
        l == r#"spec.template.spec.containers[alpine].image "alpine:3.16" -> "alpine:3.17""#
    }));
}
