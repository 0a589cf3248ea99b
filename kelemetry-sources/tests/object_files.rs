//! `ObjectFileSource` against real recorded data: kspan's kind recording and k8s-openapi's apiserver replays.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use common::{replay_bodies, run};
use jiff::Timestamp;
use kelemetry_core::{SourceKind, vocabulary};
use kelemetry_sources::ObjectFileSource;
use kelemetry_testkit::fixture;

fn time(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

#[tokio::test]
async fn kspan_recording_yields_events_and_objects() {
    let Some(path) = fixture("events/kspan-kind-2021/deployment-2-pods.yaml") else {
        return;
    };
    let source = ObjectFileSource::new(&path, "kind");
    let counters = source.counters();
    let sink = run(Box::new(source)).await;

    assert_eq!(sink.rejections(), vec![]);
    let activities = sink.activities();
    assert_eq!(activities.len(), 19);
    let mut reasons = BTreeMap::new();
    for activity in &activities {
        assert_eq!(activity.source, SourceKind::Event);
        assert_eq!(activity.end, None);
        assert!(activity.dedup_key.starts_with("event:"));
        assert_eq!(activity.logs.len(), 1, "{}", activity.title);
        *reasons.entry(activity.title.as_str()).or_insert(0) += 1;
    }
    let expected: BTreeMap<&str, i32> = [
        ("Created", 2),
        ("Killing", 2),
        ("Pulled", 2),
        ("Pulling", 1),
        ("Scheduled", 2),
        ("ScalingReplicaSet", 4),
        ("Started", 2),
        ("SuccessfulCreate", 2),
        ("SuccessfulDelete", 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(reasons, expected);

    let first = &activities[0];
    assert_eq!(first.title, "ScalingReplicaSet");
    assert_eq!(
        first.object.key().to_string(),
        "kind/apps/deployments/default/px"
    );
    assert_eq!(first.start, time("2021-05-19T09:42:58Z"));
    assert_eq!(
        first.dedup_key,
        "event:e8acdb85-7a28-4ce1-9c5d-1d89467a17b6:5361642"
    );
    assert_eq!(
        first.attribute_value(vocabulary::EVENT_SOURCE),
        Some("deployment-controller")
    );
    assert_eq!(
        first.attribute_value(vocabulary::EVENT_TYPE),
        Some("Normal")
    );
    assert_eq!(first.attribute_value(vocabulary::EVENT_COUNT), Some("1"));
    assert_eq!(
        first.attribute_value(vocabulary::EVENT_NAME),
        Some("px.16806e83e5b82d63")
    );
    assert_eq!(
        first.logs[0].message,
        "Scaled up replica set px-5d567cc74c to 1"
    );

    // The scheduler's Event has an eventTime (microseconds), which wins over the missing lastTimestamp.
    let scheduled = activities
        .iter()
        .find(|activity| activity.title == "Scheduled")
        .expect("a Scheduled event");
    assert_eq!(
        scheduled.object.key().to_string(),
        "kind//pods/default/px-5d567cc74c-ss4lb"
    );
    assert_eq!(scheduled.start, time("2021-05-19T09:42:58.638469Z"));

    let observations = sink.observations();
    let seen: Vec<(String, Timestamp)> = observations
        .iter()
        .map(|observation| (observation.object.key().to_string(), observation.time))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "kind/apps/replicasets/default/px-5d567cc74c".to_owned(),
                time("2021-05-19T09:42:58.650959062Z")
            ),
            (
                "kind/apps/deployments/default/px".to_owned(),
                time("2021-05-19T09:42:58.655577144Z")
            ),
            (
                "kind//pods/default/px-5d567cc74c-ss4lb".to_owned(),
                time("2021-05-19T09:42:58.664843487Z")
            ),
            (
                "kind//pods/default/px-7df978b9bf-jm22q".to_owned(),
                time("2021-05-19T09:43:06.205375953Z")
            ),
            (
                "kind/apps/replicasets/default/px-7df978b9bf".to_owned(),
                time("2021-05-19T09:43:06.225314506Z")
            ),
            (
                "kind//pods/default/px-5d567cc74c-pmvzr".to_owned(),
                time("2021-05-19T09:43:06.253973869Z")
            ),
            (
                "kind//pods/default/px-7df978b9bf-bfdrj".to_owned(),
                time("2021-05-19T09:43:07.199181099Z")
            ),
        ]
    );
    let deployment = &observations[1];
    assert_eq!(deployment.object.object_ref.version, "v1");
    assert_eq!(
        deployment.object.object_ref.uid.as_deref(),
        Some("71c42017-61a7-418e-8e2c-897cf237d6e3")
    );
    let body = deployment.object.body.as_ref().expect("a body");
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["metadata"]["name"], "px");
    assert!(body["spec"]["template"].is_object());

    let report = counters.snapshot();
    assert_eq!(
        (report.records, report.sent, report.rejected_total()),
        (26, 26, 0)
    );
    let size = std::fs::metadata(&path).expect("size").len();
    assert_eq!(report.bytes, size);
    assert_eq!(sink.progress_bytes(), size);
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

#[tokio::test]
async fn watch_streams_become_observations() {
    let Some(replays) = fixture("apiserver-replays/k8s-openapi-v1-36") else {
        return;
    };
    for (file, pods, bookmarks) in [
        ("watch_event-watch_pods.json", 5, 0),
        ("watch_event-watch_pods_without_initial_events.json", 8, 1),
    ] {
        let bodies = replay_bodies(&replays.join(file));
        assert_eq!(bodies.len(), 1);
        let stream = write_temp(&bodies[0]);
        let source = ObjectFileSource::new(stream.path(), "kind");
        let counters = source.counters();
        let sink = run(Box::new(source)).await;
        assert_eq!(sink.rejections(), vec![], "{file}");
        let observations = sink.observations();
        assert_eq!(observations.len(), pods, "{file}");
        for observation in &observations {
            let key = observation.object.key();
            assert_eq!((key.group.as_str(), key.resource.as_str()), ("", "pods"));
            assert_eq!(key.namespace, "kube-system");
            let body = observation.object.body.as_ref().expect("body");
            let created = body["metadata"]["creationTimestamp"]
                .as_str()
                .expect("created");
            assert_eq!(observation.time, time(created));
        }
        assert!(
            observations
                .iter()
                .any(|o| o.object.key().name == "coredns-589f44dc88-4fpns")
        );
        let report = counters.snapshot();
        assert_eq!(
            report.skipped.get("watch bookmark").copied().unwrap_or(0),
            bookmarks,
            "{file}"
        );
        assert_eq!(report.records, pods as u64 + bookmarks, "{file}");
    }
}

#[tokio::test]
async fn custom_resource_watch_guesses_the_plural() {
    let Some(replay) =
        fixture("apiserver-replays/k8s-openapi-v1-36/custom_resource_definition-test.json")
    else {
        return;
    };
    let bodies = replay_bodies(&replay);
    let watch = bodies
        .iter()
        .find(|body| body.starts_with("{\"type\":"))
        .expect("a watch response");
    let stream = write_temp(watch);
    let sink = run(Box::new(ObjectFileSource::new(stream.path(), "kind"))).await;
    assert_eq!(sink.rejections(), vec![]);
    let observations = sink.observations();
    assert!(!observations.is_empty());
    for observation in observations {
        let key = observation.object.key();
        assert_eq!(
            key.group,
            "k8s-openapi-tests-custom-resource-definition.com"
        );
        assert_eq!(key.resource, "foobars");
    }
}

/// Every response body of every replay, pretty-printed one after another (as `kubectl get -w -o json` writes):
/// objects and list items become observations; `Status` and `APIGroupList` (no name) are rejected at their line.
#[tokio::test]
async fn pretty_json_stream_of_all_replays() {
    let Some(replays) = fixture("apiserver-replays/k8s-openapi-v1-36") else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(replays)
        .expect("replays")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    let mut stream = String::new();
    let mut expected_observations = 0;
    let mut expected_rejection_lines = Vec::new();
    for file in files {
        for body in replay_bodies(&file) {
            let documents: Vec<serde_json::Value> = match serde_json::from_str(&body) {
                Ok(value) => vec![value],
                Err(_) => body
                    .lines()
                    .filter(|line| !line.trim().is_empty())
                    .map(|line| serde_json::from_str(line).expect("watch event"))
                    .collect(),
            };
            for document in documents {
                let line = stream.lines().count() as u64 + 1;
                if let Some(items) = document["items"].as_array() {
                    expected_observations += items.len();
                } else if document["type"] == "BOOKMARK" {
                } else if document["metadata"]["name"].is_string() || document["object"].is_object()
                {
                    expected_observations += 1;
                } else {
                    expected_rejection_lines.push(line);
                }
                stream.push_str(&serde_json::to_string_pretty(&document).expect("pretty"));
                stream.push('\n');
            }
        }
    }
    let file = write_temp(&stream);
    let sink = run(Box::new(ObjectFileSource::new(file.path(), "kind"))).await;
    let origin = file.path().display().to_string();
    let rejections = sink.rejections();
    let lines: Vec<u64> = rejections
        .iter()
        .map(|rejection| {
            let (path, line) = rejection.origin.rsplit_once(':').expect("file:line");
            assert_eq!(path, origin);
            assert_eq!(rejection.reason, "missing name");
            line.parse().expect("a line number")
        })
        .collect();
    assert_eq!(lines, expected_rejection_lines);
    assert!(!lines.is_empty());
    assert_eq!(sink.observations().len(), expected_observations);
    assert!(expected_observations > 30);
}

/// The pod list of a replay written as multi-document YAML (one Pod per document) and as a YAML `PodList`.
#[tokio::test]
async fn yaml_documents_and_yaml_lists() {
    let Some(pod_list) = fixture("apiserver-replays/k8s-openapi-v1-36/pod-list.json") else {
        return;
    };
    let bodies = replay_bodies(&pod_list);
    let list: serde_json::Value = serde_json::from_str(&bodies[0]).expect("pod list");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 8);

    let mut documents = String::new();
    for item in items {
        let mut pod = item.clone();
        pod["apiVersion"] = "v1".into();
        pod["kind"] = "Pod".into();
        documents.push_str("---\n");
        documents.push_str(&serde_yaml_ng::to_string(&pod).expect("yaml"));
    }
    // A broken document in the middle is rejected with its line; the others are read.
    let broken_line = documents.lines().count() as u64 + 2;
    documents.push_str("---\nkind: Pod\nmetadata: {name: [unclosed\n");
    documents.push_str("---\n");
    documents.push_str(&serde_yaml_ng::to_string(&list).expect("yaml"));
    let file = write_temp(&documents);
    let sink = run(Box::new(ObjectFileSource::new(file.path(), "kind"))).await;
    let observations = sink.observations();
    assert_eq!(observations.len(), 16);
    assert_eq!(observations[0].object.key(), observations[8].object.key());
    assert_eq!(observations[0].object.body, observations[8].object.body);
    let rejections = sink.rejections();
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(rejections[0].reason, "invalid YAML");
    let line: u64 = rejections[0]
        .origin
        .rsplit_once(':')
        .and_then(|(_, line)| line.parse().ok())
        .expect("line");
    assert!(
        (broken_line..=broken_line + 2).contains(&line),
        "line {line} near {broken_line}"
    );
}

#[tokio::test]
async fn oversized_documents_are_rejected_and_reading_goes_on() {
    let big = format!(
        "{{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"x\":\"{}\"}}}}",
        "a".repeat(5000)
    );
    let small = "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"small\",\"creationTimestamp\":\"2024-01-01T00:00:00Z\"}}";
    let file = write_temp(&format!("{big}\n{small}\n"));
    let source = ObjectFileSource::new(file.path(), "c").with_document_limit(1024);
    let counters = source.counters();
    let sink = run(Box::new(source)).await;
    let rejections = sink.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].reason, "document too large");
    assert!(rejections[0].origin.ends_with(":1"));
    assert_eq!(sink.observations().len(), 1);
    assert_eq!(
        counters.snapshot().rejected.get("document too large"),
        Some(&1)
    );
}

#[tokio::test]
async fn missing_file_is_an_error() {
    let shutdown = kelemetry_core::CancellationToken::new();
    let sink = std::sync::Arc::new(common::CollectingSink::default());
    let error = kelemetry_core::Source::run(
        Box::new(ObjectFileSource::new("does/not/exist.yaml", "c")),
        sink,
        shutdown,
    )
    .await
    .expect_err("no file");
    assert!(error.to_string().starts_with("does/not/exist.yaml: "));
}

/// A sink that never takes a record (a pipeline that is full for good).
struct StuckSink;

#[async_trait::async_trait]
impl kelemetry_core::ActivitySink for StuckSink {
    async fn send(
        &self,
        _record: kelemetry_core::Record,
    ) -> Result<(), kelemetry_core::SinkClosed> {
        std::future::pending().await
    }

    fn reject(&self, _rejection: kelemetry_core::Rejection) {}
}

/// Backpressure holds the source; shutdown still ends it.
#[tokio::test]
async fn shutdown_ends_a_source_waiting_on_a_full_pipeline() {
    let object = "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\",\"creationTimestamp\":\"2024-01-01T00:00:00Z\"}}\n";
    let file = write_temp(&object.repeat(10));
    let source = ObjectFileSource::new(file.path(), "c");
    let counters = source.counters();
    let trigger = kelemetry_core::CancellationToken::new();
    let shutdown = trigger.clone();
    let run = tokio::spawn(kelemetry_core::Source::run(
        Box::new(source),
        std::sync::Arc::new(StuckSink),
        shutdown,
    ));
    // Positive evidence that it is held: it has read the first object and waits to hand it over.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while counters.snapshot().records == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the source reads the first object");
    assert!(!run.is_finished());
    assert_eq!(counters.snapshot().sent, 0);
    trigger.cancel();
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), run)
        .await
        .expect("stops after shutdown")
        .expect("no panic");
    assert!(result.is_ok());
    let report = counters.snapshot();
    assert_eq!(report.sent, 0);
    assert_eq!(report.records, 1);
}
