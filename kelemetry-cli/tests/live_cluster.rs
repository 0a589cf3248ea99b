//! End to end on a live test cluster (`KELEMETRY_E2E=1`; see kelemetry-testkit): the apiserver sends its audit
//! batches to the webhook of a `kelemetry run` process, which also watches Kubernetes Events and objects; the
//! original's two scenarios (docs/behaviour/end-to-end.md) run with kubectl; then the process is stopped with
//! SIGTERM and our own trace views of the store must say what the original's end-to-end tests assert.

#![allow(clippy::unwrap_used)]

mod support;

use support::{counts, line_after, wait_until_exported};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use kelemetry_core::ObjectKey;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{DisplayMode, DisplayTrace, ViewRequest, assemble, display};
use kelemetry_store::SpanStore;
use kelemetry_testkit::{
    ClusterOptions, KelemetryProcess, TestCluster, TraceOnFailure, e2e_enabled, free_loopback_port,
    wait_until,
};

/// The cluster of this test binary and the port its apiserver sends audit batches to.
fn cluster() -> Option<&'static (TestCluster, u16)> {
    static CLUSTER: OnceLock<Result<(TestCluster, u16), String>> = OnceLock::new();
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return None;
    }
    let started = CLUSTER.get_or_init(|| {
        let port = free_loopback_port().map_err(|err| err.to_string())?;
        let options = ClusterOptions {
            audit_webhook_url: Some(format!("http://127.0.0.1:{port}/audit/tracetest")),
            ..ClusterOptions::default()
        };
        TestCluster::start_with(options)
            .map(|cluster| (cluster, port))
            .map_err(|err| err.to_string())
    });
    match started {
        Ok(cluster) => Some(cluster),
        Err(err) => panic!("the test cluster did not start: {err}"),
    }
}

fn write_config(dir: &Path, cluster: &TestCluster, port: u16) -> PathBuf {
    let config = dir.join("kelemetry.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: tracetest\n\
             kubernetes:\n  kubeconfig: {kubeconfig}\n\
             sources:\n  webhook:\n    listen: 127.0.0.1:{port}\n  events:\n    watermark:\n      name: e2e-{port}\n  objectWatch: {{}}\n\
             exporters:\n  store:\n    path: store\n  jsonLines:\n    path: spans.jsonl\n",
            kubeconfig = cluster.kubeconfig().display(),
        ),
    )
    .unwrap();
    config
}

async fn view(store: &Path, key: ObjectKey, modifier: Modifier) -> DisplayTrace {
    let reader = SpanStore::open_read_only(store).unwrap();
    let mode = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(modifier),
    };
    let mut request = ViewRequest::new(key);
    request.selector = mode.selector();
    display(&assemble(&reader, &request).await.unwrap(), mode)
}

fn fields<'a>(trace: &'a DisplayTrace, name: &str) -> Vec<&'a str> {
    trace
        .spans
        .iter()
        .flat_map(|span| span.logs.iter().filter_map(|log| log.field(name)))
        .collect()
}

fn root_fields<'a>(trace: &'a DisplayTrace, name: &str) -> Vec<&'a str> {
    trace.spans[0]
        .logs
        .iter()
        .filter_map(|log| log.field(name))
        .collect()
}

/// Pacing between the steps of the original's scripts (the controllers act in between), not readiness.
fn pause(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

/// Waits until the ConfigMap `name` exists in `default`: the Events source stores its watermark once it has
/// loaded it, before it watches.
fn wait_for_configmap(cluster: &TestCluster, name: &str) {
    let selector = format!("--field-selector=metadata.name={name}");
    wait_until(
        &format!("the ConfigMap {name}"),
        Duration::from_secs(60),
        || {
            let found = cluster.kubectl_json(["get", "configmaps", selector.as_str()])?;
            Ok(found["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
                .then_some(()))
        },
    )
    .unwrap();
}

/// The script of the original's `e2e/ancestors`; returns the name of the first ReplicaSet.
fn ancestors_script(cluster: &TestCluster) -> String {
    cluster
        .kubectl([
            "create",
            "deployment",
            "ancestors",
            "--image=alpine:3.16",
            "--replicas=2",
        ])
        .unwrap();
    let first = wait_until(
        "the first ReplicaSet of ancestors",
        Duration::from_secs(30),
        || {
            let list = cluster.kubectl_json(["get", "replicasets", "--selector=app=ancestors"])?;
            Ok(list["items"][0]["metadata"]["name"]
                .as_str()
                .map(str::to_owned))
        },
    )
    .unwrap();
    pause(5);
    cluster
        .kubectl(["set", "image", "deployment/ancestors", "alpine=alpine:3.17"])
        .unwrap();
    pause(10);
    cluster
        .kubectl(["delete", "deployment", "ancestors"])
        .unwrap();
    first
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_and_ancestors_scenarios_through_the_webhook_and_the_watchers() {
    let Some((cluster, port)) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Dropped after the process and before the folder: a failure leaves the HTML traces (docs/e2e-tests.md).
    let _trace = TraceOnFailure::new(
        "live_deployment_and_ancestors",
        Path::new(env!("CARGO_BIN_EXE_kelemetry")),
        &dir.path().join("store"),
    )
    .object("deployments/default/demo")
    .object("deployments/default/ancestors");
    let config = write_config(dir.path(), cluster, *port);
    let kelemetry = KelemetryProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kelemetry")),
        &config,
        &std::env::var("KELEMETRY_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
    );
    // The Events source has stored its watermark: it is about to watch.
    wait_for_configmap(cluster, &format!("e2e-{port}"));

    let deployment = std::thread::scope(|scope| {
        let deployment =
            scope.spawn(|| cluster.deployment_scenario(Duration::from_secs(5)).unwrap());
        let ancestors = scope.spawn(|| ancestors_script(cluster));
        deployment.join().unwrap();
        ancestors.join().unwrap()
    });
    let first_replicaset = deployment;
    // The apiserver sends batches every second: wait until the last writes and the Events were exported.
    wait_until_exported(
        &dir.path().join("spans.jsonl"),
        &[
            ("deployments", "demo", " delete"),
            ("deployments", "demo", " update status"),
            ("deployments", "demo", "ScalingReplicaSet"),
            ("deployments", "ancestors", " delete"),
        ],
        Duration::from_secs(60),
    );
    let summary = kelemetry.stop();
    eprintln!("{summary}");
    assert_eq!(
        counts(line_after(&summary, "webhook: "))["lost"],
        0,
        "{summary}"
    );
    assert_eq!(
        counts(line_after(&summary, "pipeline: "))["not exported"],
        0,
        "{summary}"
    );

    let store = dir.path().join("store");
    let demo = ObjectKey::new("tracetest", "apps", "deployments", "default", "demo");
    let trace = view(&store, demo, Modifier::FullTree).await;
    // 1. One root: the Deployment.
    let roots: Vec<_> = trace.spans.iter().filter(|s| s.parent.is_none()).collect();
    assert_eq!(roots.len(), 1);
    assert!(
        roots[0]
            .tags
            .contains(&("resource".into(), "deployments".into()))
    );
    assert!(roots[0].tags.contains(&("name".into(), "demo".into())));
    // 2, 3. The delete, with the deleted object's snapshot.
    let delete = trace.spans[0]
        .logs
        .iter()
        .find(|log| log.field("audit").is_some_and(|a| a.ends_with(" delete")))
        .unwrap_or_else(|| panic!("no delete on the root: {:?}", root_fields(&trace, "audit")));
    let snapshot: serde_json::Value = serde_json::from_str(
        delete
            .field("snapshot")
            .expect("the delete carries a snapshot"),
    )
    .unwrap();
    assert_eq!(snapshot["metadata"]["name"], "demo");
    // 4. The deployment controller's status write (it authenticates as its service account here).
    let audits = root_fields(&trace, "audit");
    assert!(
        audits.contains(&"system:serviceaccount:kube-system:deployment-controller update status"),
        "{audits:?}"
    );
    // 5. Its diff.
    let diffs = fields(&trace, "diff");
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("status.observedGeneration 1 -> 2")),
        "{diffs:#?}"
    );
    assert!(diffs.iter().any(|d| {
        d.contains(r#"spec.template.spec.containers[alpine].image "alpine:3.16" -> "alpine:3.17""#)
    }));
    // 6. No diff shows managedFields.
    assert!(diffs.iter().all(|d| !d.contains("metadata.managedFields")));
    // The Kubernetes Events of the Deployment are there too.
    let events = root_fields(&trace, "event");
    assert!(events.contains(&"ScalingReplicaSet"), "{events:?}");
    // 7. Exactly two ReplicaSets under the root.
    let children: Vec<_> = trace.children_of(trace.spans[0].span_id).collect();
    assert_eq!(children.len(), 2, "{children:#?}");
    assert!(children.iter().all(|c| c.service == "replicasets"));
    let pods: usize = children
        .iter()
        .map(|c| trace.children_of(c.span_id).count())
        .sum();
    assert!(pods >= 4, "Pods nest under their ReplicaSets: {pods}");

    // The ancestors view of the first ReplicaSet: its Deployment as root, and only it below.
    let first = ObjectKey::new(
        "tracetest",
        "apps",
        "replicasets",
        "default",
        &first_replicaset,
    );
    let trace = view(&store, first, Modifier::Ancestors).await;
    let roots: Vec<_> = trace.spans.iter().filter(|s| s.parent.is_none()).collect();
    assert_eq!(roots.len(), 1);
    assert!(
        roots[0]
            .tags
            .contains(&("resource".into(), "deployments".into()))
    );
    assert!(roots[0].tags.contains(&("name".into(), "ancestors".into())));
    let children: Vec<_> = trace.children_of(roots[0].span_id).collect();
    assert_eq!(children.len(), 1, "{children:#?}");
    assert!(
        children[0]
            .tags
            .contains(&("name".into(), first_replicaset.as_str().into()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_audit_the_watch_traces_the_changes() {
    let Some((cluster, _)) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _trace = TraceOnFailure::new(
        "live_watch_without_audit",
        Path::new(env!("CARGO_BIN_EXE_kelemetry")),
        &dir.path().join("store"),
    )
    .object("deployments/default/watched");
    let config = dir.path().join("kelemetry.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: tracetest\n\
             kubernetes:\n  kubeconfig: {}\n\
             sources:\n  objectWatch:\n    include: [deployments.apps, replicasets.apps]\n    watchActivities: true\n\
             exporters:\n  store:\n    path: store\n  jsonLines:\n    path: spans.jsonl\n",
            cluster.kubeconfig().display()
        ),
    )
    .unwrap();
    let kelemetry = KelemetryProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kelemetry")),
        &config,
        &std::env::var("KELEMETRY_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
    );
    // Ready once the watch reports a Deployment created now.
    let exported = dir.path().join("spans.jsonl");
    cluster
        .kubectl(["create", "deployment", "watch-ready", "--image=alpine:3.16"])
        .unwrap();
    wait_until_exported(
        &exported,
        &[("deployments", "watch-ready", "watch create")],
        Duration::from_secs(60),
    );
    cluster
        .kubectl([
            "create",
            "deployment",
            "watched",
            "--image=alpine:3.16",
            "--replicas=1",
        ])
        .unwrap();
    pause(3);
    cluster
        .kubectl(["scale", "deployment", "watched", "--replicas=2"])
        .unwrap();
    pause(3);
    cluster
        .kubectl(["delete", "deployment", "watched"])
        .unwrap();
    wait_until_exported(
        &exported,
        &[("deployments", "watched", "watch delete")],
        Duration::from_secs(60),
    );
    let summary = kelemetry.stop();
    assert_eq!(
        counts(line_after(&summary, "pipeline: "))["not exported"],
        0,
        "{summary}"
    );

    let key = ObjectKey::new("tracetest", "apps", "deployments", "default", "watched");
    let trace = view(&dir.path().join("store"), key, Modifier::FullTree).await;
    let titles = root_fields(&trace, "watch");
    assert!(titles.contains(&"watch create"), "{titles:?}");
    assert!(titles.contains(&"watch update"), "{titles:?}");
    assert!(titles.contains(&"watch delete"), "{titles:?}");
    let diffs = fields(&trace, "diff");
    assert!(
        diffs.iter().any(|d| d.contains("spec.replicas 1 -> 2")),
        "{diffs:#?}"
    );
    assert!(diffs.iter().all(|d| !d.contains("metadata.managedFields")));
    let snapshots = fields(&trace, "snapshot");
    assert!(
        snapshots.len() >= 2,
        "creation and deletion snapshots: {snapshots:?}"
    );
    // The ReplicaSet is linked under its Deployment from the watched bodies.
    let children: Vec<_> = trace.children_of(trace.spans[0].span_id).collect();
    assert_eq!(children.len(), 1, "{children:#?}");
    assert_eq!(children[0].service, "replicasets");
}
