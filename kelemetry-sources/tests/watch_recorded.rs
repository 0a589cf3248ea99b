//! The watch diffs matched to audit records of level `Metadata`, on the project's recording of the deployment
//! scenario (`fixtures/recorded/deployment-lifecycle`, a real control plane): the recorded watch stream fills a
//! `WatchStore`; the recorded audit log, with its bodies stripped as level `Metadata` would have it, goes through
//! core's mapping, `DiffDecorator` and `WatchDiffDecorator`. The controller's status updates must get their diffs
//! (by the resource version they were based on), creations and deletions their snapshots.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kelemetry_core::activity::{Activity, ChangeKind, LogKind};
use kelemetry_core::audit::{AuditOutcome, map_event, parse_document};
use kelemetry_core::redact::Redactor;
use kelemetry_core::{BodyCache, Decorator, DiffDecorator, ObjectKey, ObjectRef};
use kelemetry_sources::watch_store::{
    WatchDiffDecorator, WatchPhase, WatchStore, WatchStoreLimits, WatchWait,
};
use serde_json::Value;

/// The recording, part of the repository: never skipped.
fn recording() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle");
    assert!(
        dir.is_dir(),
        "{} is part of the repository and missing",
        dir.display()
    );
    dir
}

fn resource_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" => "deployments",
        "ReplicaSet" => "replicasets",
        "Pod" => "pods",
        other => panic!("unexpected kind {other}"),
    }
}

fn object_ref(object: &Value) -> ObjectRef {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let metadata = &object["metadata"];
    ObjectRef::new(
        ObjectKey::new(
            "tracetest",
            group,
            resource_of(object["kind"].as_str().unwrap()),
            metadata["namespace"].as_str().unwrap_or(""),
            metadata["name"].as_str().unwrap(),
        ),
        version,
        metadata["uid"].as_str().map(Into::into),
    )
}

/// Replays `objects.watch.yaml` (documents of compact JSON watch events, each after a `# {"time": ...}` comment).
fn fill(store: &WatchStore, dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join("objects.watch.yaml")).unwrap();
    let mut time = Timestamp::UNIX_EPOCH;
    let mut events = 0;
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let meta: Value = serde_json::from_str(comment).unwrap();
            time = meta["time"].as_str().unwrap().parse().unwrap();
        } else if line.starts_with('{') {
            let event: Value = serde_json::from_str(line).unwrap();
            let object = event["object"].clone();
            let reference = object_ref(&object);
            match event["type"].as_str().unwrap() {
                "ADDED" | "MODIFIED" => {
                    store.seen(reference, object, WatchPhase::Live, time);
                }
                "DELETED" => {
                    store.deleted(reference, object, time);
                }
                other => panic!("unexpected watch event {other}"),
            }
            events += 1;
        }
    }
    events
}

/// The recorded audit events as level `Metadata` would have logged them (no request or response bodies), mapped
/// and decorated.
async fn metadata_level_activities(store: Arc<WatchStore>, dir: &Path) -> Vec<Activity> {
    let decorator = WatchDiffDecorator::new(
        store,
        WatchWait {
            poll: Duration::from_millis(1),
            after_stage: Duration::ZERO,
            total: Duration::ZERO,
        },
    );
    let bodies = BodyCache::new(1000);
    let mut activities = Vec::new();
    for line in std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
    {
        let mut event: Value = serde_json::from_str(line).unwrap();
        let fields = event.as_object_mut().unwrap();
        fields.remove("requestObject");
        fields.remove("responseObject");
        fields.insert("level".into(), "Metadata".into());
        for event in parse_document(event.to_string().as_bytes()).unwrap() {
            let AuditOutcome::Activity(mut activity) = map_event(event, "tracetest").unwrap()
            else {
                continue;
            };
            DiffDecorator.decorate(&mut activity, &bodies).await;
            decorator.decorate(&mut activity, &bodies).await;
            activities.push(*activity);
        }
    }
    activities
}

fn log(activity: &Activity, kind: LogKind) -> Option<&str> {
    activity
        .logs
        .iter()
        .find(|l| l.kind == kind)
        .map(|l| l.message.as_str())
}

#[tokio::test]
async fn metadata_level_audit_gets_the_watched_diffs_and_snapshots() {
    let dir = recording();
    let store = Arc::new(WatchStore::new(
        WatchStoreLimits::default(),
        Redactor::default(),
    ));
    for resource in ["deployments", "replicasets"] {
        store.listed("apps", resource, Timestamp::UNIX_EPOCH);
    }
    store.listed("", "pods", Timestamp::UNIX_EPOCH);
    assert_eq!(fill(&store, &dir), 111);
    let activities = metadata_level_activities(store.clone(), &dir).await;
    let demo =
        |a: &&Activity| a.object.key().resource == "deployments" && a.object.key().name == "demo";

    // The deployment controller's status writes: every successful one finds the diff of the version it was based
    // on, among them the one the original's end-to-end test asserts.
    let status_writes: Vec<&Activity> = activities
        .iter()
        .filter(demo)
        .filter(|a| {
            a.title == "system:serviceaccount:kube-system:deployment-controller update status"
        })
        .collect();
    assert!(status_writes.len() >= 10, "{}", status_writes.len());
    for write in &status_writes {
        assert!(
            log(write, LogKind::ObjectDiff).is_some(),
            "no diff for {} based on {:?}",
            write.dedup_key,
            write
                .change
                .as_ref()
                .and_then(|c| c.old_resource_version.clone())
        );
    }
    let diffs: Vec<&str> = activities
        .iter()
        .filter_map(|a| log(a, LogKind::ObjectDiff))
        .collect();
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("status.observedGeneration 1 -> 2")),
        "{diffs:#?}"
    );
    assert!(diffs.iter().all(|d| !d.contains("managedFields")));

    // The creation and the deletion of the Deployment carry snapshots from the watch.
    for (kind, verb) in [
        (ChangeKind::Create, "create"),
        (ChangeKind::Delete, "delete"),
    ] {
        let write = activities
            .iter()
            .filter(demo)
            .find(|a| a.change.as_ref().is_some_and(|c| c.kind == kind))
            .unwrap_or_else(|| panic!("no {verb} of the Deployment"));
        let snapshot: Value = serde_json::from_str(
            log(write, LogKind::ObjectSnapshot)
                .unwrap_or_else(|| panic!("no snapshot on the {verb}: {:?}", write.logs)),
        )
        .unwrap();
        assert_eq!(snapshot["metadata"]["name"], "demo");
        assert!(snapshot["metadata"].get("managedFields").is_none());
    }

    // Every successful update based on a known version found its change.
    let updates: Vec<&Activity> = activities
        .iter()
        .filter(|a| {
            a.change.as_ref().is_some_and(|c| {
                c.kind == ChangeKind::Update
                    && c.old_resource_version.is_some()
                    && c.subresource.as_deref().is_none_or(|s| s == "status")
            }) && a.attribute_value("responseCode") == Some("200")
        })
        .collect();
    let counts = store.counts();
    println!(
        "{} activities; {} successful updates with a base version; watch store: {counts:?}",
        activities.len(),
        updates.len()
    );
    let matched = updates
        .iter()
        .filter(|a| a.attribute_value("newResourceVersion").is_some())
        .count();
    assert_eq!(
        matched,
        updates.len(),
        "every update found its watched change"
    );
}
