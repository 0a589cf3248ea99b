//! The linker in a real pipeline, the spans in the embedded store, the tree assembled by the read side
//! (`kelemetry::testing::LinkerHarness`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use custom_linker::RolloutServiceLinker;
use kelemetry::testing::{LinkerHarness, ObjectTree};
use kelemetry::{
    Activity, Object, ObjectKey, ObjectRef, Observation, PipelineReport, Record, ResourceMap,
    SourceKind,
};
use serde_json::{Value, json};

fn object(group: &str, resource: &str, name: &str, body: Value) -> Object {
    let key = ObjectKey::new("prod", group, resource, "default", name);
    Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body))
}

fn seen(object: Object, at: &str) -> Record {
    Observation {
        object,
        time: at.parse().unwrap(),
    }
    .into()
}

/// Objects shaped as Argo Rollouts' getting-started example leaves them: the Rollout, the two Services it names,
/// the ReplicaSet it owns, a Pod of it.
fn rollout_demo(stable_service: Value) -> Vec<Record> {
    let owner = |kind: &str, api: &str, name: &str| json!([{"apiVersion": api, "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true}]);
    let rollout = object(
        "argoproj.io",
        "rollouts",
        "rollouts-demo",
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "rollouts-demo", "namespace": "default", "uid": "uid-rollouts-demo"},
               "spec": {"replicas": 1, "strategy": {"canary": {
                   "canaryService": "rollouts-demo-canary", "stableService": stable_service,
                   "steps": [{"setWeight": 20}, {"pause": {}}]}}},
               "status": {"stableRS": "687d76d795", "currentPodHash": "687d76d795"}}),
    );
    let service = |name: &str| {
        object(
            "",
            "services",
            name,
            json!({"metadata": {"name": name,
            "annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "rollouts-demo"}},
            "spec": {"selector": {"app": "rollouts-demo", "rollouts-pod-template-hash": "687d76d795"}}}),
        )
    };
    let replica_set = object(
        "apps",
        "replicasets",
        "rollouts-demo-687d76d795",
        json!({"metadata": {"name": "rollouts-demo-687d76d795",
               "labels": {"app": "rollouts-demo", "rollouts-pod-template-hash": "687d76d795"},
               "ownerReferences": owner("Rollout", "argoproj.io/v1alpha1", "rollouts-demo")}}),
    );
    let pod = object(
        "",
        "pods",
        "rollouts-demo-687d76d795-6ppnh",
        json!({"metadata": {"ownerReferences": owner("ReplicaSet", "apps/v1", "rollouts-demo-687d76d795")},
               "spec": {"nodeName": "worker-1"}}),
    );
    let update = Activity::new(
        Object::new(rollout.object_ref.clone()),
        SourceKind::Audit,
        "2024-05-01T12:00:05Z".parse().unwrap(),
        "system:serviceaccount:argo-rollouts:argo-rollouts update",
        "audit-1",
    );
    vec![
        seen(rollout, "2024-05-01T12:00:00Z"),
        seen(service("rollouts-demo-canary"), "2024-05-01T12:00:01Z"),
        seen(service("rollouts-demo-stable"), "2024-05-01T12:00:01Z"),
        seen(replica_set, "2024-05-01T12:00:02Z"),
        seen(pod, "2024-05-01T12:00:03Z"),
        update.into(),
    ]
}

/// The records through a real pipeline with the built-in linkers and ours, into a temporary store; the
/// Rollout's full tree read back.
async fn run(records: Vec<Record>) -> (PipelineReport, ObjectTree) {
    let mut linkers = kelemetry::linkers::default_linkers(Arc::new(ResourceMap::builtin()));
    linkers.push(Arc::new(RolloutServiceLinker));
    let mut harness = LinkerHarness::new(linkers).unwrap();
    let report = harness.run(records).await.unwrap();
    let rollout = ObjectKey::new(
        "prod",
        "argoproj.io",
        "rollouts",
        "default",
        "rollouts-demo",
    );
    (report, harness.tree(&rollout).await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollouts_tree_shows_its_services_and_replica_sets() {
    let (report, tree) = run(rollout_demo(json!("rollouts-demo-stable"))).await;
    assert_eq!(report.link_errors, 0);
    assert_eq!(tree.activities.len(), 1, "the Rollout's update");
    let mut children: Vec<String> = tree.children.iter().map(ToString::to_string).collect();
    children.sort();
    assert_eq!(
        children,
        [
            "replicasets/rollouts-demo-687d76d795 (children)\n  pods/rollouts-demo-687d76d795-6ppnh (children)\n",
            "services/rollouts-demo-canary (canary)\n",
            "services/rollouts-demo-stable (stable)\n",
        ]
    );
}

#[tokio::test]
async fn a_malformed_rollout_is_counted_and_still_traced() {
    let (report, tree) = run(rollout_demo(json!(["not", "a", "name"]))).await;
    assert_eq!(report.link_errors, 1);
    assert_eq!(tree.key.name, "rollouts-demo");
    assert!(
        tree.find("replicasets", "rollouts-demo-687d76d795")
            .is_some()
    );
}
