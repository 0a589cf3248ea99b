//! `kelemetry run` with `sources.kafka`, against a real Apache Kafka (`scripts/kafka`, one broker for this test
//! binary through `kelemetry_testkit::TestKafka`). Runs only with `KELEMETRY_KAFKA=1`; then a broker that cannot
//! be started or reached fails the test.
//!
//! A topic holding native audit events, a GKE LogEntry and a poison message is read into the store; SIGTERM
//! commits what was exported; the next start of the same group reads only what was produced meanwhile.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use kelemetry_sources::audit_intake::{AuditIntake, AuditItem};
use kelemetry_sources::kafka::rdkafka::ClientConfig;
use kelemetry_sources::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use kelemetry_testkit::{KelemetryProcess, TestKafka, kafka_enabled, wait_until};

fn audit(id: &str, verb: &str, rv: u32, replicas: u32) -> String {
    let mut event = serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": id,
        "stage": "ResponseComplete", "verb": verb, "user": {"username": "alice"},
        "objectRef": {"resource": "deployments", "namespace": "default", "name": "web", "apiGroup": "apps",
                      "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-05-01T12:00:00.100000Z",
        "stageTimestamp": "2026-05-01T12:00:00.130000Z",
        "responseObject": {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": rv.to_string()},
            "spec": {"replicas": replicas}}
    });
    if verb != "create" {
        event["objectRef"]["resourceVersion"] = serde_json::json!((rv - 1).to_string());
    }
    event.to_string()
}

async fn produce(bootstrap: &str, topic: &str, values: &[Vec<u8>]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    for value in values {
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(value);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(err, _)| panic!("producing to {topic}: {err}"));
    }
}

/// `(records, sent)` of the summary line `kafka: [N bytes, ]N records, N sent[ (...)]`.
fn kafka_counts(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("kafka: "))
        .unwrap_or_else(|| panic!("no kafka: line in\n{stdout}"));
    let number_before = |word: &str| -> u64 {
        let at = line.find(word).unwrap_or_else(|| panic!("{word}: {line}"));
        line[..at]
            .trim_end()
            .rsplit([' ', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number_before(" records"), number_before(" sent"))
}

/// The lines of the JSON-lines exporter's file that name `audit_id`.
fn exported(spans: &Path, audit_id: &str) -> bool {
    std::fs::read_to_string(spans)
        .unwrap_or_default()
        .contains(&format!("\"{audit_id}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kelemetry_run_reads_a_topic_into_the_store_and_resumes_after_a_restart() {
    if !kafka_enabled() {
        eprintln!("skipped: set KELEMETRY_KAFKA=1 to run it against a real Kafka (scripts/kafka)");
        return;
    }
    let kafka = TestKafka::shared().unwrap_or_else(|err| panic!("KELEMETRY_KAFKA=1 but {err}"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("run-{}-{nanos}", std::process::id());
    let gke = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/managed/gke/pod-create.json"),
    )
    .unwrap();
    let gke_activities = match AuditIntake::default().take(&gke, "local") {
        Ok(items) => items
            .filter(|item| matches!(item, AuditItem::Activity(_)))
            .count() as u64,
        Err(rejection) => panic!("the GKE fixture is rejected: {rejection}"),
    };
    assert_eq!(gke_activities, 1, "one Pod create");
    produce(
        kafka.bootstrap(),
        &topic,
        &[
            audit("k1", "create", 10, 2).into_bytes(),
            b"{ poison".to_vec(),
            gke,
            audit("k2", "update", 11, 3).into_bytes(),
        ],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: local\nsources:\n  kafka:\n    bootstrapServers: {}\n    topics: [{topic}]\n    \
             groupId: {topic}-group\n    commitInterval: 200ms\nexporters:\n  store:\n    path: store\n  \
             jsonLines:\n    path: spans.jsonl\nlimits:\n  flushInterval: 100ms\n",
            kafka.bootstrap()
        ),
    )
    .unwrap();
    let spans = dir.path().join("spans.jsonl");
    let binary = Path::new(env!("CARGO_BIN_EXE_kelemetry"));

    let running = KelemetryProcess::start(binary, &config, "info");
    assert!(
        running.stderr().contains(&format!(
            "reading audit documents from Kafka topics {topic}"
        )),
        "{}",
        running.stderr()
    );
    wait_until("k2 exported", Duration::from_secs(60), || {
        Ok(exported(&spans, "k2").then_some(()))
    })
    .unwrap_or_else(|err| panic!("{err}\n{}\n{}", running.stderr(), kafka.log_tail(20)));
    let stdout = running.stop();
    assert_eq!(kafka_counts(&stdout), (4, 3), "{stdout}");
    let poison = AuditIntake::default()
        .take(b"{ poison", "local")
        .map(|_| ())
        .unwrap_err();
    assert!(
        stdout.contains(&format!("rejected {} 1", poison.reason)),
        "{stdout}"
    );

    // Stopped: one more is produced. The next start reads it alone.
    produce(
        kafka.bootstrap(),
        &topic,
        &[audit("k3", "delete", 12, 3).into_bytes()],
    )
    .await;
    let running = KelemetryProcess::start(binary, &config, "info");
    wait_until("k3 exported", Duration::from_secs(60), || {
        Ok(exported(&spans, "k3").then_some(()))
    })
    .unwrap_or_else(|err| panic!("{err}\n{}", running.stderr()));
    // Time for anything read twice to arrive.
    std::thread::sleep(Duration::from_secs(1));
    let stdout = running.stop();
    assert_eq!(kafka_counts(&stdout), (1, 1), "{stdout}");

    let tree = support::show(&dir.path().join("store"), "deployments/default/web");
    for expected in [
        "audit alice create",
        "audit alice update",
        "audit alice delete",
    ] {
        assert_eq!(tree.matches(expected).count(), 1, "{expected}: {tree}");
    }
}
