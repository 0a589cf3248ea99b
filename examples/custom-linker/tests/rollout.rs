//! The linker in a real pipeline, the spans in the embedded store, the tree assembled by kelemetry-query.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use custom_linker::RolloutServiceLinker;
use kelemetry_core::{
    Activity, CancellationToken, MemoryExporter, Object, ObjectKey, ObjectRef, Observation,
    Pipeline, PipelineReport, Record, ResourceMap, SourceKind,
};
use kelemetry_query::{LinkSelector, ViewRequest, assemble};
use kelemetry_store::SpanStore;
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

async fn run(records: Vec<Record>) -> (PipelineReport, MemoryExporter) {
    let exporter = Arc::new(MemoryExporter::new(10_000));
    let mut builder = Pipeline::builder()
        .exporter(exporter.clone())
        .linker(Arc::new(RolloutServiceLinker));
    for linker in kelemetry_linkers::default_linkers(Arc::new(ResourceMap::builtin())) {
        builder = builder.linker(linker);
    }
    let pipeline = builder.build();
    let sink = pipeline.sink();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown));
    for record in records {
        sink.send(record).await.unwrap();
    }
    drop(sink);
    let report = running.await.unwrap();
    let exporter = Arc::try_unwrap(exporter).unwrap();
    (report, exporter)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollouts_tree_shows_its_services_and_replica_sets() {
    let (report, exporter) = run(rollout_demo(json!("rollouts-demo-stable"))).await;
    assert_eq!(report.link_errors, 0);

    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    store.write_spans(&exporter.spans()).unwrap();
    let reader = store;
    let mut request = ViewRequest::new(ObjectKey::new(
        "prod",
        "argoproj.io",
        "rollouts",
        "default",
        "rollouts-demo",
    ));
    request.selector = LinkSelector::full_tree();
    let view = assemble(&reader, &request).await.unwrap();

    let root = &view.root;
    assert_eq!(root.history.key.name, "rollouts-demo");
    assert_eq!(root.history.activities.len(), 1);
    let children: BTreeSet<(String, String)> = root
        .children
        .iter()
        .map(|c| (c.history.key.operation_name(), c.class.clone()))
        .collect();
    assert_eq!(
        children,
        BTreeSet::from([
            (
                "replicasets/rollouts-demo-687d76d795".into(),
                "children".into()
            ),
            ("services/rollouts-demo-canary".into(), "canary".into()),
            ("services/rollouts-demo-stable".into(), "stable".into()),
        ])
    );
    let replica_set = root
        .children
        .iter()
        .find(|c| c.history.key.resource == "replicasets")
        .unwrap();
    assert_eq!(
        replica_set.children[0].history.key.name,
        "rollouts-demo-687d76d795-6ppnh"
    );
}

#[tokio::test]
async fn a_malformed_rollout_is_counted_and_still_traced() {
    let (report, exporter) = run(rollout_demo(json!(["not", "a", "name"]))).await;
    assert_eq!(report.link_errors, 1);
    assert!(
        exporter
            .spans()
            .iter()
            .any(|s| s.name == "rollouts/rollouts-demo")
    );
}
