//! `AuditLogFollower` on the audit log of a live test cluster (`KELEMETRY_E2E=1`; see kelemetry-testkit): writes
//! made with kubectl arrive as activities, with their response bodies; a restart from the checkpoint sends only
//! what was written meanwhile.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::CollectingSink;
use kelemetry_core::{CancellationToken, LogKind, Source};
use kelemetry_sources::{AuditLogFollower, CheckpointFile, StartPosition};
use kelemetry_testkit::{TestCluster, e2e_enabled};

/// Titles of the activities on ConfigMap `name`.
fn titles_of(sink: &CollectingSink, name: &str) -> Vec<String> {
    sink.activities()
        .iter()
        .filter(|a| a.object.key().resource == "configmaps" && a.object.key().name == name)
        .map(|a| a.title.clone())
        .collect()
}

async fn wait_for(sink: &CollectingSink, name: &str, count: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while titles_of(sink, name).len() < count {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "expected {count} activities on {name}, got {:?}",
        titles_of(sink, name)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_the_apiserver_audit_log_and_resumes_from_the_checkpoint() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let cluster = TestCluster::shared().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("audit.checkpoint");
    let follower = || {
        AuditLogFollower::new(cluster.audit_log(), "tracetest")
            .with_checkpoint(CheckpointFile::new(&checkpoint))
            .with_start(StartPosition::End)
            .with_poll_interval(Duration::from_millis(100))
    };

    let first = Arc::new(CollectingSink::default());
    let trigger = CancellationToken::new();
    let shutdown = trigger.clone();
    let task = tokio::spawn(Box::new(follower()).run(first.clone(), shutdown));
    // Ready once it reads the end of the log: a write made now arrives.
    cluster
        .kubectl(["create", "configmap", "follow-ready", "--from-literal=a=1"])
        .unwrap();
    wait_for(&first, "follow-ready", 1).await;
    cluster
        .kubectl(["create", "configmap", "followed", "--from-literal=a=1"])
        .unwrap();
    cluster
        .kubectl(["label", "configmap", "followed", "step=two"])
        .unwrap();
    wait_for(&first, "followed", 2).await;
    trigger.cancel();
    task.await.unwrap().unwrap();
    let titles = titles_of(&first, "followed");
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert!(titles[0].ends_with(" create"), "{titles:?}");
    assert!(titles[1].ends_with(" patch"), "{titles:?}");
    // Level RequestResponse: the create carries the object, so the core decorator can snapshot it.
    // The first activity of the ConfigMap (other objects' writes of the same moments may come before it).
    let created = first
        .activities()
        .iter()
        .find(|a| a.object.key().resource == "configmaps" && a.object.key().name == "followed")
        .cloned()
        .expect("the ConfigMap's create");
    let body = created.object.body.as_ref().expect("the response body");
    assert_eq!(body["data"]["a"], "1");
    assert!(first.rejections().is_empty());
    assert!(
        created
            .logs
            .iter()
            .all(|log| log.kind != LogKind::RealError)
    );

    // Written while stopped: only that comes after the restart.
    cluster
        .kubectl(["delete", "configmap", "followed"])
        .unwrap();
    let second = Arc::new(CollectingSink::default());
    let trigger = CancellationToken::new();
    let shutdown = trigger.clone();
    let task = tokio::spawn(Box::new(follower()).run(second.clone(), shutdown));
    wait_for(&second, "followed", 1).await;
    // A write made after the delete has arrived: whatever the restart would send again came before it.
    cluster
        .kubectl(["delete", "configmap", "follow-ready"])
        .unwrap();
    wait_for(&second, "follow-ready", 1).await;
    trigger.cancel();
    task.await.unwrap().unwrap();
    let titles = titles_of(&second, "followed");
    assert_eq!(titles.len(), 1, "{titles:?}");
    assert!(titles[0].ends_with(" delete"), "{titles:?}");
    let titles = titles_of(&second, "follow-ready");
    assert_eq!(titles.len(), 1, "{titles:?}");
    assert!(titles[0].ends_with(" delete"), "{titles:?}");
}
