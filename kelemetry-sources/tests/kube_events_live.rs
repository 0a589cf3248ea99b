//! `KubeEventSource` on a live test cluster (`KELEMETRY_E2E=1`; see kelemetry-testkit): a restart replays no
//! Event handled before it and misses none created while it was down, including one with the very same time as a
//! handled one and one older than the newest handled (arrived late); an updated Event is a new occurrence; the
//! core/v1 API works too.
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::CollectingSink;
use jiff::{SignedDuration, Timestamp};
use kelemetry_core::{CancellationToken, ResourceMap, Source, vocabulary};
use kelemetry_sources::ReadCounters;
use kelemetry_sources::ReadReport;
use kelemetry_sources::kube_events::{EventApiChoice, KubeEventOptions, KubeEventSource};
use kelemetry_testkit::{TestCluster, e2e_enabled, wait_until};

/// `(event name, message and count)` of what was sent about `subject`.
fn seen_of(sink: &CollectingSink, subject: &str) -> Vec<(String, String)> {
    sink.activities()
        .iter()
        .filter(|a| a.object.key().name == subject)
        .map(|a| {
            (
                a.attribute_value(vocabulary::EVENT_NAME)
                    .unwrap_or("")
                    .to_owned(),
                {
                    let message = a.logs.first().map(|l| l.message.as_str()).unwrap_or("");
                    match a.attribute_value(vocabulary::EVENT_COUNT) {
                        Some(count) => format!("{message} x{count}"),
                        None => message.to_owned(),
                    }
                },
            )
        })
        .collect()
}

async fn client(cluster: &TestCluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn micro_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Creates an `events.k8s.io/v1` Event `name` about ConfigMap `subject`, at `at`, with note `note`.
fn create_event(cluster: &TestCluster, name: &str, subject: &str, at: Timestamp, note: &str) {
    let event = serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "eventTime": micro_time(at),
        "reportingController": "kelemetry.test/restart", "reportingInstance": "test-1",
        "action": "Testing", "reason": "RestartTest", "type": "Normal", "note": note,
        "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": subject}
    });
    cluster
        .kubectl_with_input(["create", "-f", "-"], &event.to_string())
        .unwrap();
}

struct Running {
    trigger: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), kelemetry_core::SourceError>>,
    counters: Arc<ReadCounters>,
}

fn start(
    client: &kube::Client,
    watermark: &str,
    api: EventApiChoice,
    sink: Arc<CollectingSink>,
) -> Running {
    let mut options = KubeEventOptions::default();
    options.api = api;
    options.watermark.name = watermark.to_owned();
    options.watermark.sync_interval = Duration::from_millis(500);
    let source = KubeEventSource::new(
        client.clone(),
        "tracetest",
        Arc::new(ResourceMap::builtin()),
        options,
    );
    let counters = source.counters();
    let trigger = CancellationToken::new();
    let shutdown = trigger.clone();
    let task = tokio::spawn(Box::new(source).run(sink, shutdown));
    Running {
        trigger,
        task,
        counters,
    }
}

/// Waits until the source's counters satisfy `ready`: positive evidence that it listed what is there.
async fn wait_counters(running: &Running, what: &str, ready: impl Fn(&ReadReport) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !ready(&running.counters.snapshot()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: {}", running.counters.snapshot());
}

/// Events the source skipped because a previous run had handled them.
fn already_handled(report: &ReadReport) -> u64 {
    report.skipped.get("already handled").copied().unwrap_or(0)
}

async fn stop(running: Running) {
    running.trigger.cancel();
    tokio::time::timeout(Duration::from_secs(30), running.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn wait_for(sink: &CollectingSink, subject: &str, count: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while seen_of(sink, subject).len() < count {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "expected {count} Events, got {:?}",
        seen_of(sink, subject)
    );
}

/// Waits until the watermark ConfigMap `name` exists: the source has set the floor below which Events count as
/// handled, so an Event made from now on is new to it.
async fn wait_until_watermark(cluster: &'static TestCluster, name: &'static str) {
    tokio::task::spawn_blocking(move || {
        wait_until(
            &format!("the watermark ConfigMap {name}"),
            Duration::from_secs(30),
            || {
                let selector = format!("--field-selector=metadata.name={name}");
                let found = cluster.kubectl_json(["get", "configmaps", selector.as_str()])?;
                Ok(found["items"]
                    .as_array()
                    .is_some_and(|items| !items.is_empty())
                    .then_some(()))
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
}

fn names(seen: &[(String, String)]) -> BTreeSet<String> {
    seen.iter()
        .map(|(name, note)| format!("{name}:{note}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_replays_no_old_event_and_misses_no_new_one() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let cluster = TestCluster::shared().unwrap();
    let client = client(cluster).await;
    let subject = "restart-subject";

    let first = Arc::new(CollectingSink::default());
    let running = start(&client, "restart-test", EventApiChoice::Auto, first.clone());
    // Ready once it has listed the Events already there and stored its first watermark.
    wait_until_watermark(cluster, "restart-test").await;
    let t1 = Timestamp::now();
    create_event(cluster, "a1", subject, t1, "first");
    let t2 = t1.checked_add(SignedDuration::from_millis(800)).unwrap();
    create_event(cluster, "a2", subject, t2, "second");
    wait_for(&first, subject, 2).await;
    stop(running).await;
    assert_eq!(
        names(&seen_of(&first, subject)),
        BTreeSet::from(["a1:first".to_owned(), "a2:second".to_owned()])
    );
    let stored = cluster
        .kubectl_json(["get", "configmap", "restart-test"])
        .unwrap();
    let handled = stored["data"]["handled"].as_str().unwrap();
    assert!(handled.lines().count() >= 2, "{stored}");
    assert!(stored["data"]["timestamp"].as_str().is_some());

    // While the source is down: new Events, one at the very time of a2, one older than a2 (late), and an
    // update of a1 (a new occurrence of it).
    create_event(cluster, "b1", subject, Timestamp::now(), "new");
    create_event(cluster, "b2", subject, t2, "same time as a2");
    let late = t1.checked_add(SignedDuration::from_millis(300)).unwrap();
    create_event(cluster, "b3", subject, late, "between a1 and a2");
    let series = serde_json::json!({"series": {"count": 2, "lastObservedTime": micro_time(Timestamp::now())}});
    cluster
        .kubectl([
            "patch",
            "events.events.k8s.io",
            "a1",
            "--type=merge",
            "-p",
            &series.to_string(),
        ])
        .unwrap();

    let second = Arc::new(CollectingSink::default());
    let running = start(
        &client,
        "restart-test",
        EventApiChoice::Auto,
        second.clone(),
    );
    wait_for(&second, subject, 4).await;
    // Anything replayed would come with the initial list, before an Event created now: once that one is seen,
    // everything the restart would send about the subject has been sent.
    create_event(
        cluster,
        "probe-2",
        subject,
        Timestamp::now(),
        "after the restart",
    );
    wait_for(&second, subject, 5).await;
    stop(running).await;
    let details: Vec<String> = second
        .activities()
        .iter()
        .filter(|a| a.object.key().name == subject)
        .map(|a| format!("{} {} {:?}", a.dedup_key, a.start, a.attributes))
        .collect();
    eprintln!("second run: {details:#?}");
    assert_eq!(
        names(&seen_of(&second, subject)),
        BTreeSet::from([
            "a1:first x2".to_owned(),
            "b1:new".to_owned(),
            "b2:same time as a2".to_owned(),
            "b3:between a1 and a2".to_owned(),
            "probe-2:after the restart".to_owned(),
        ])
    );
    assert_eq!(
        seen_of(&second, subject).len(),
        5,
        "nothing twice: {:?}",
        seen_of(&second, subject)
    );
    assert!(second.rejections().is_empty());

    // A third start with nothing new sends nothing old about the subject. Positive evidence that it ran: it
    // skips the subject's six Events as already handled, and an Event created after it started arrives (and
    // anything old it would send comes with the initial list, before that one).
    let third = Arc::new(CollectingSink::default());
    let running = start(&client, "restart-test", EventApiChoice::Auto, third.clone());
    wait_counters(
        &running,
        "the third start lists the handled Events",
        |report| already_handled(report) >= 6,
    )
    .await;
    create_event(
        cluster,
        "probe-3",
        subject,
        Timestamp::now(),
        "after the third start",
    );
    wait_for(&third, subject, 1).await;
    stop(running).await;
    assert_eq!(
        seen_of(&third, subject),
        [("probe-3".to_owned(), "after the third start".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn core_v1_events_are_watched_too() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let cluster = TestCluster::shared().unwrap();
    let client = client(cluster).await;
    let subject = "core-subject";
    let sink = Arc::new(CollectingSink::default());
    let running = start(&client, "core-test", EventApiChoice::CoreV1, sink.clone());
    wait_until_watermark(cluster, "core-test").await;
    create_event(cluster, "c1", subject, Timestamp::now(), "through core v1");
    wait_for(&sink, subject, 1).await;
    stop(running).await;
    assert_eq!(
        names(&seen_of(&sink, subject)),
        BTreeSet::from(["c1:through core v1".to_owned()])
    );
    let activity = sink
        .activities()
        .iter()
        .find(|a| a.object.key().name == subject)
        .cloned()
        .unwrap();
    assert_eq!(
        activity.object.key().to_string(),
        "tracetest//configmaps/default/core-subject"
    );
    assert_eq!(activity.title, "RestartTest");
}
