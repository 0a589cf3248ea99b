//! `WatchStore` and `WatchDiffDecorator`: diffs and snapshots from watched versions, matched to audit writes by
//! resource version, with the original's wait logic, redaction and bounds.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kelemetry_core::activity::{Activity, Change, ChangeKind, LogKind, SourceKind};
use kelemetry_core::decorate::{DiffDecorator, REDACTED_MESSAGE};
use kelemetry_core::redact::Redactor;
use kelemetry_core::{BodyCache, Decorator, Object, ObjectKey, ObjectRef, vocabulary};
use kelemetry_sources::watch_store::{
    ChangeContent, ChangeSlot, WatchDiffDecorator, WatchPhase, WatchStore, WatchStoreLimits,
    WatchWait, WatchedChange,
};
use serde_json::{Value, json};

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("c", "apps", "deployments", "default", name)
}

fn object(name: &str) -> ObjectRef {
    ObjectRef::new(key(name), "v1", Some(format!("uid-{name}").into()))
}

fn deployment(name: &str, rv: &str, generation: u32, observed: Option<u32>) -> Value {
    let mut body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": rv,
                     "generation": generation,
                     "managedFields": [{"manager": "kube-controller-manager", "time": rv}]},
        "spec": {"replicas": generation * 2}
    });
    if let Some(observed) = observed {
        body["status"] = json!({"observedGeneration": observed});
    }
    body
}

/// Files Deployment `name` at resource version `rv` (with its generation and observed generation) as seen in
/// `phase`; the change it made, if any.
fn see(
    store: &WatchStore,
    name: &str,
    rv: &str,
    generation: u32,
    observed: Option<u32>,
    phase: WatchPhase,
) -> Option<Arc<WatchedChange>> {
    store.seen(
        object(name),
        deployment(name, rv, generation, observed),
        phase,
        now(),
    )
}

fn store() -> Arc<WatchStore> {
    Arc::new(WatchStore::new(
        WatchStoreLimits::default(),
        Redactor::default(),
    ))
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn write(
    name: &str,
    kind: ChangeKind,
    old_rv: Option<&str>,
    subresource: Option<&str>,
) -> Activity {
    let mut activity = Activity::new(
        Object::new(object(name)),
        SourceKind::Audit,
        now(),
        "system:kube-controller-manager update status",
        "audit:x",
    );
    activity.end = Some(now());
    activity.attribute(vocabulary::RESPONSE_CODE, "200");
    activity.change = Some(Change {
        kind,
        old_resource_version: old_rv.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    });
    activity
}

fn quick() -> WatchWait {
    WatchWait {
        poll: Duration::from_millis(20),
        after_stage: Duration::from_secs(15),
        total: Duration::from_millis(600),
    }
}

#[test]
fn updates_are_diffed_and_filed_by_both_resource_versions() {
    let store = store();
    assert!(see(&store, "web", "10", 1, None, WatchPhase::InitialList).is_none());
    let change = see(&store, "web", "11", 1, Some(1), WatchPhase::Live).unwrap();
    assert_eq!(
        change.content,
        ChangeContent::Diff("status null -> {\"observedGeneration\":1}".into())
    );
    let change = see(&store, "web", "12", 2, Some(1), WatchPhase::Live).unwrap();
    assert_eq!(
        change.content,
        ChangeContent::Diff("metadata.generation 1 -> 2\nspec.replicas 2 -> 4".into())
    );
    let change = see(&store, "web", "13", 2, Some(2), WatchPhase::Live).unwrap();
    assert_eq!(
        change.content,
        ChangeContent::Diff("status.observedGeneration 1 -> 2".into())
    );
    for slot in [
        ChangeSlot::NewVersion("13".into()),
        ChangeSlot::OldVersion("12".into()),
    ] {
        assert_eq!(store.change(&key("web"), &slot).unwrap(), change);
    }
    // The same version again (a re-delivery) files nothing.
    assert!(see(&store, "web", "13", 2, Some(2), WatchPhase::Relist).is_none());
    assert_eq!(store.counts().diffs, 3);
    assert_eq!(
        store
            .body(&key("web"))
            .unwrap()
            .pointer("/metadata/resourceVersion")
            .unwrap(),
        "13"
    );
}

#[test]
fn creations_after_the_list_and_deletions_are_snapshotted_without_managed_fields() {
    let store = store();
    let created = see(&store, "api", "5", 1, None, WatchPhase::Live).unwrap();
    let ChangeContent::Snapshot(text) = &created.content else {
        panic!("a snapshot")
    };
    let snapshot: Value = serde_json::from_str(text).unwrap();
    assert_eq!(snapshot["metadata"]["name"], "api");
    assert!(snapshot["metadata"].get("managedFields").is_none());
    let deleted = store.deleted(object("api"), deployment("api", "9", 1, Some(1)), now());
    assert_eq!(deleted.kind, ChangeKind::Delete);
    assert!(store.body(&key("api")).is_none());
    assert_eq!(
        store
            .change(&key("api"), &ChangeSlot::Deletion)
            .unwrap()
            .resource_version
            .as_deref(),
        Some("9")
    );
    assert!(store.change(&key("api"), &ChangeSlot::Creation).is_some());
}

#[test]
fn a_relist_finds_objects_deleted_meanwhile() {
    let store = store();
    for name in ["a", "b", "c"] {
        see(&store, name, "1", 1, None, WatchPhase::InitialList);
    }
    let listed: HashSet<ObjectKey> = [key("a"), key("c")].into_iter().collect();
    let gone = store.relisted("apps", "deployments", &listed, now());
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].object.key, key("b"));
    assert_eq!(gone[0].object.uid.as_deref(), Some("uid-b"));
    assert!(store.body(&key("b")).is_none());
    assert!(store.body(&key("a")).is_some());
}

#[test]
fn secrets_are_redacted_and_labelled_objects_are_hidden_whole() {
    let store = store();
    let secret_key = ObjectKey::new("c", "", "secrets", "default", "db");
    let secret = |rv: &str, password: &str, extra: bool| {
        let mut body = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default", "resourceVersion": rv},
            "data": {"password": password}});
        if extra {
            body["data"]["user"] = json!("YWRtaW4=");
        }
        body
    };
    let secret_ref = ObjectRef::new(secret_key.clone(), "v1", None);
    store.seen(
        secret_ref.clone(),
        secret("1", "aHVudGVyMg==", false),
        WatchPhase::InitialList,
        now(),
    );
    let change = store
        .seen(
            secret_ref.clone(),
            secret("2", "c2VjcmV0", true),
            WatchPhase::Live,
            now(),
        )
        .unwrap();
    // The changed value is not shown; the added key is, with its value redacted.
    assert_eq!(
        change.content,
        ChangeContent::Diff("data.user null -> \"<redacted>\"".into())
    );
    let body = store.body(&secret_key).unwrap();
    assert_eq!(body["data"]["password"], "<redacted>");
    let deleted = store.deleted(secret_ref, secret("3", "c2VjcmV0", true), now());
    let ChangeContent::Snapshot(text) = &deleted.content else {
        panic!("a snapshot")
    };
    assert!(
        !text.contains("c2VjcmV0") && !text.contains("YWRtaW4="),
        "{text}"
    );

    let mut labelled = deployment("hidden", "1", 1, None);
    labelled["metadata"]["labels"] = json!({"kelemetry.kubewharf.io/diff-redacted": "true"});
    store.seen(
        object("hidden"),
        labelled.clone(),
        WatchPhase::InitialList,
        now(),
    );
    labelled["metadata"]["resourceVersion"] = json!("2");
    labelled["spec"]["replicas"] = json!(7);
    let change = store
        .seen(object("hidden"), labelled, WatchPhase::Live, now())
        .unwrap();
    assert_eq!(change.content, ChangeContent::Redacted);
}

#[test]
fn bodies_and_changes_are_bounded() {
    let limits = WatchStoreLimits {
        max_objects: 3,
        max_body_bytes: usize::MAX,
        max_changes: 4,
        max_change_bytes: usize::MAX,
    };
    let store = WatchStore::new(limits, Redactor::default());
    for i in 0..10 {
        let name = format!("d{i}");
        see(&store, &name, "1", 1, None, WatchPhase::InitialList);
        see(&store, &name, "2", 2, None, WatchPhase::Live);
    }
    let counts = store.counts();
    assert_eq!(counts.objects, 3);
    assert_eq!(counts.bodies_evicted, 7);
    assert_eq!(counts.changes, 4);
    assert!(counts.changes_evicted >= 16, "{counts:?}");

    // By memory: each body is about 2,700 bytes by the estimate; 6,000 bytes hold two.
    let limits = WatchStoreLimits {
        max_objects: 100,
        max_body_bytes: 6000,
        max_changes: 100,
        max_change_bytes: 1000,
    };
    let store = WatchStore::new(limits, Redactor::default());
    for i in 0..10 {
        let name = format!("d{i}");
        see(&store, &name, "1", 1, None, WatchPhase::InitialList);
    }
    let counts = store.counts();
    assert_eq!(counts.objects, 2, "{counts:?}");
    assert!(counts.body_bytes <= 6000, "{counts:?}");
    assert_eq!(counts.bodies_evicted, 8);
}

#[tokio::test]
async fn metadata_level_writes_get_the_watched_diff_by_old_version() {
    let store = store();
    store.listed("apps", "deployments", now());
    see(&store, "web", "12", 2, Some(1), WatchPhase::InitialList);
    see(&store, "web", "13", 2, Some(2), WatchPhase::Live);
    let decorator = WatchDiffDecorator::new(store.clone(), quick());
    // Level Metadata: no body; the request named the version it was based on.
    let mut activity = write("web", ChangeKind::Update, Some("12"), Some("status"));
    decorator.decorate(&mut activity, &BodyCache::new(1)).await;
    assert_eq!(activity.logs.len(), 1);
    assert_eq!(activity.logs[0].kind, LogKind::ObjectDiff);
    assert_eq!(activity.logs[0].message, "status.observedGeneration 1 -> 2");
    assert_eq!(
        activity.attribute_value(vocabulary::NEW_RESOURCE_VERSION),
        Some("13")
    );
    assert_eq!(store.counts().decorator_hits, 1);
}

#[tokio::test]
async fn the_first_write_seen_gets_the_watched_diff_by_new_version_after_the_core_decorator() {
    let store = store();
    store.listed("apps", "deployments", now());
    see(&store, "web", "12", 2, Some(1), WatchPhase::InitialList);
    see(&store, "web", "13", 2, Some(2), WatchPhase::Live);
    let bodies = BodyCache::new(10);
    // Level RequestResponse, but the pipeline never saw an earlier body: core's decorator adds no diff.
    let mut activity = write("web", ChangeKind::Update, Some("12"), Some("status"));
    activity.object.body = Some(Arc::new(deployment("web", "13", 2, Some(2)).into()));
    DiffDecorator.decorate(&mut activity, &bodies).await;
    assert!(activity.logs.is_empty());
    WatchDiffDecorator::new(store, quick())
        .decorate(&mut activity, &bodies)
        .await;
    assert_eq!(activity.logs[0].message, "status.observedGeneration 1 -> 2");
}

#[tokio::test]
async fn the_decorator_waits_for_a_lagging_watch() {
    let store = store();
    store.listed("apps", "deployments", now());
    see(&store, "web", "20", 1, None, WatchPhase::InitialList);
    let late = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        late.deleted(
            object("web"),
            deployment("web", "21", 1, None),
            Timestamp::now(),
        );
    });
    let mut activity = write("web", ChangeKind::Delete, None, None);
    let started = std::time::Instant::now();
    WatchDiffDecorator::new(store.clone(), quick())
        .decorate(&mut activity, &BodyCache::new(1))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert_eq!(activity.logs.len(), 1);
    assert_eq!(activity.logs[0].kind, LogKind::ObjectSnapshot);
    assert!(
        activity.logs[0]
            .message
            .contains("\"resourceVersion\":\"21\"")
    );
    assert!(store.counts().decorator_wait_ms >= 140);
}

#[tokio::test]
async fn the_decorator_gives_up_within_its_bounds() {
    let store = store();
    store.listed("apps", "deployments", now());
    let decorator = WatchDiffDecorator::new(store.clone(), quick());
    // The total bound.
    let mut activity = write("nothing", ChangeKind::Create, None, None);
    let started = std::time::Instant::now();
    decorator.decorate(&mut activity, &BodyCache::new(1)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(activity.logs.is_empty());
    // The deadline relative to stageTimestamp: a record that finished long ago is tried once.
    let mut old = write("nothing", ChangeKind::Create, None, None);
    old.end = Some("2024-05-01T12:00:00Z".parse().unwrap());
    let started = std::time::Instant::now();
    decorator.decorate(&mut old, &BodyCache::new(1)).await;
    assert!(started.elapsed() < Duration::from_millis(100));
    // Resources the watch does not cover are not waited for.
    let mut pod = write("nothing", ChangeKind::Create, None, None);
    pod.object = Object::new(ObjectRef::new(
        ObjectKey::new("c", "", "pods", "default", "p"),
        "v1",
        None,
    ));
    let started = std::time::Instant::now();
    decorator.decorate(&mut pod, &BodyCache::new(1)).await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(store.counts().decorator_misses, 2);
}

#[tokio::test]
async fn writes_that_need_nothing_are_left_alone() {
    let store = store();
    store.listed("apps", "deployments", now());
    see(&store, "web", "1", 1, None, WatchPhase::InitialList);
    see(&store, "web", "2", 2, None, WatchPhase::Live);
    let decorator = WatchDiffDecorator::new(store.clone(), quick());
    // A failed request.
    let mut failed = write("web", ChangeKind::Update, Some("1"), None);
    failed
        .attributes
        .retain(|(k, _)| k != vocabulary::RESPONSE_CODE);
    failed.attribute(vocabulary::RESPONSE_CODE, "409");
    // A write that already has its diff, and a no-op update.
    let mut diffed = write("web", ChangeKind::Update, Some("1"), None);
    diffed.logs.push(kelemetry_core::LogLine::new(
        LogKind::ObjectDiff,
        "spec.replicas 2 -> 4",
    ));
    let mut no_op = write("web", ChangeKind::Update, Some("1"), None);
    no_op.logs.push(kelemetry_core::LogLine::new(
        LogKind::RealVerbose,
        "No-op update",
    ));
    // A create of a subresource.
    let mut scale = write("web", ChangeKind::Create, None, Some("scale"));
    let mut redacted = write("web", ChangeKind::Update, Some("1"), None);
    redacted.logs.push(kelemetry_core::LogLine::new(
        LogKind::KelemetryError,
        REDACTED_MESSAGE,
    ));
    let started = std::time::Instant::now();
    for activity in [
        &mut failed,
        &mut diffed,
        &mut no_op,
        &mut scale,
        &mut redacted,
    ] {
        let before = activity.logs.len();
        decorator.decorate(activity, &BodyCache::new(1)).await;
        assert_eq!(activity.logs.len(), before);
    }
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn writes_from_before_the_first_list_are_not_waited_for() {
    let store = store();
    let list_done: Timestamp = "2026-05-01T12:00:10Z".parse().unwrap();
    store.listed("apps", "deployments", list_done);
    let decorator = WatchDiffDecorator::new(store.clone(), quick());
    // Finished 10 s before the list (an old batch the apiserver delivered late): tried once.
    let mut old = write("web", ChangeKind::Update, Some("3"), None);
    old.end = Some("2026-05-01T12:00:00Z".parse().unwrap());
    let started = std::time::Instant::now();
    decorator.decorate(&mut old, &BodyCache::new(1)).await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(store.counts().decorator_misses, 1);
    // Finished after the list: waited for.
    let mut recent = write("web", ChangeKind::Create, None, None);
    let started = std::time::Instant::now();
    decorator.decorate(&mut recent, &BodyCache::new(1)).await;
    assert!(started.elapsed() >= Duration::from_millis(550));
}

#[tokio::test]
async fn a_patch_that_created_its_object_gets_the_creation_snapshot() {
    let store = store();
    store.listed("apps", "deployments", now());
    see(&store, "applied", "41", 1, None, WatchPhase::Live);
    let mut patch = write("applied", ChangeKind::Update, None, None);
    patch.attribute(vocabulary::NEW_RESOURCE_VERSION, "41");
    WatchDiffDecorator::new(store, quick())
        .decorate(&mut patch, &BodyCache::new(1))
        .await;
    assert_eq!(patch.logs.len(), 1);
    assert_eq!(patch.logs[0].kind, LogKind::ObjectSnapshot);
}

#[tokio::test]
async fn a_patch_that_changed_nothing_is_not_waited_for() {
    let store = store();
    store.listed("apps", "deployments", now());
    see(&store, "web", "7", 1, None, WatchPhase::InitialList);
    // A patch (no old version in the request) answered with the version already watched.
    let mut patch = write("web", ChangeKind::Update, None, Some("status"));
    patch.attribute(vocabulary::NEW_RESOURCE_VERSION, "7");
    let started = std::time::Instant::now();
    WatchDiffDecorator::new(store.clone(), quick())
        .decorate(&mut patch, &BodyCache::new(1))
        .await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(patch.logs.is_empty());
    assert_eq!(store.counts().decorator_misses, 1);
}
