//! `kelemetry run` split in two roles around a real Apache Kafka (`scripts/kafka`, one broker for this test binary
//! through `kelemetry_testkit::TestKafka`): an `ingest` process takes the recorded deployment scenario's audit log
//! through its webhook and forwards the records; a `process` process makes the spans into a store. `show` of that
//! store prints the same tree as `replay` of the same file. Runs only with `KELEMETRY_KAFKA=1`; then a broker that
//! cannot be started or reached fails the test.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kelemetry_testkit::{
    KelemetryProcess, TestKafka, fault_line, http_post, kafka_enabled, wait_until,
};

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle")
}

fn ingest_config(dir: &Path, bootstrap: &str, topic: &str) -> PathBuf {
    let config = dir.join("ingest.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: tracetest\nrole: ingest\nsources:\n  webhook:\n    listen: 127.0.0.1:0\nforward:\n  kafka:\n    \
             bootstrapServers: {bootstrap}\n    topic: {topic}\n"
        ),
    )
    .unwrap();
    config
}

fn process_config(dir: &Path, bootstrap: &str, topic: &str) -> PathBuf {
    let config = dir.join("process.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: tracetest\nrole: process\nsources:\n  kafka:\n    bootstrapServers: {bootstrap}\n    \
             topics: [{topic}]\n    groupId: {topic}-process\n    format: records\n    commitInterval: 200ms\n\
             exporters:\n  store:\n    path: store\n  jsonLines:\n    path: spans.jsonl\nlimits:\n  \
             flushInterval: 100ms\n"
        ),
    )
    .unwrap();
    config
}

/// The audit log's lines posted as `EventList`s of `per_batch` events; every batch must be answered 200.
fn post_lines(webhook: &str, lines: &[&str], per_batch: usize) {
    for batch in lines.chunks(per_batch) {
        let body = format!(
            "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{}]}}",
            batch.join(",")
        );
        let (status, _, answer) = http_post(webhook, "/audit", body.as_bytes());
        assert_eq!(status, 200, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_process_through_kafka_show_what_replay_shows() {
    if !kafka_enabled() {
        eprintln!("skipped: set KELEMETRY_KAFKA=1 to run it against a real Kafka (scripts/kafka)");
        return;
    }
    let kafka = TestKafka::shared().unwrap_or_else(|err| panic!("KELEMETRY_KAFKA=1 but {err}"));
    let topic = support::fresh_topic("split");
    support::create_topic(kafka.bootstrap(), &topic, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_kelemetry"));

    let process = KelemetryProcess::start(
        binary,
        &process_config(dir.path(), kafka.bootstrap(), &topic),
        "info",
    );
    let ingest = KelemetryProcess::start(
        binary,
        &ingest_config(dir.path(), kafka.bootstrap(), &topic),
        "info",
    );
    let webhook = support::address_after(&ingest.stderr(), "audit webhook listening on http://");
    let audit_log = std::fs::read_to_string(recording().join("audit.log")).unwrap();
    let lines: Vec<&str> = audit_log.lines().filter(|l| !l.trim().is_empty()).collect();
    post_lines(&webhook, &lines, 16);
    let ingest_out = ingest.stop();
    let summary = support::line_after(&ingest_out, "pipeline: ");
    let counts = support::counts(summary);
    let forwarded = counts["forwarded"];
    assert_eq!(counts["not forwarded"], 0, "{ingest_out}");
    assert!(forwarded > 50, "{ingest_out}");

    let spans = dir.path().join("spans.jsonl");
    wait_until(
        "every forwarded record exported",
        Duration::from_secs(60),
        || {
            let exported: std::collections::BTreeSet<String> = support::exported_spans(&spans)
                .into_iter()
                .filter_map(|span| span.attributes.get("auditId").cloned())
                .collect();
            Ok((exported.len() as u64 >= forwarded).then_some(()))
        },
    )
    .unwrap_or_else(|err| panic!("{err}\n{}\n{}", process.stderr(), kafka.log_tail(20)));
    let process_out = process.stop();
    let kafka_line = support::line_after(&process_out, "kafka: ");
    assert_eq!(
        support::counts(kafka_line)["sent"],
        forwarded,
        "{process_out}"
    );

    let replayed = dir.path().join("replayed");
    let out = std::process::Command::new(binary)
        .args(["replay", "--quiet", "--cluster", "tracetest"])
        .arg(recording().join("audit.log"))
        .arg("--store")
        .arg(&replayed)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The JSON lines the process wrote, imported into a store of their own, show the same.
    let imported = dir.path().join("imported");
    let out = std::process::Command::new(binary)
        .args(["store", "import"])
        .arg(&imported)
        .arg(&spans)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(support::counts(&stdout)["spans"] > forwarded, "{stdout}");
    let split = support::show(&dir.path().join("store"), "deployments/default/demo");
    assert_eq!(
        support::show(&imported, "deployments/default/demo"),
        split,
        "imported from JSON lines"
    );
    let replay = support::show(&replayed, "deployments/default/demo");
    assert!(split.lines().count() > 10, "{split}");
    assert_eq!(split, replay, "split roles:\n{split}\nreplay:\n{replay}");
    fault_line(
        "ingest and process through Kafka",
        &format!(
            "{forwarded} records forwarded and exported; the Deployment's tree, {} lines, equal to replay's and to \
             the JSON lines imported with store import",
            split.lines().count()
        ),
    );
}
