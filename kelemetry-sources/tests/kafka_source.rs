//! `KafkaSource` against a real Apache Kafka (`scripts/kafka`, started once for this test binary by
//! `kelemetry_testkit::TestKafka`), through a real `Pipeline`. Runs only with `KELEMETRY_KAFKA=1`; then a broker that
//! cannot be started or reached fails the tests.
//!
//! - a topic holding native audit documents, GKE, AKS and EKS envelopes and poison messages is read with exact
//!   counts, the poison rejected with its topic, partition and offset, the rest read on;
//! - a restarted source of the same group reads only what was produced while it was stopped, over three
//!   partitions;
//! - offsets of messages whose spans an exporter refused are not committed, so the next start reads them again.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use kelemetry_core::pipeline::PipelineStats;
use kelemetry_core::{CancellationToken, Exporter, GatedExporter, Pipeline, PipelineReport};
use kelemetry_sources::ReadCounters;
use kelemetry_sources::audit_intake::{AuditIntake, AuditItem};
use kelemetry_sources::kafka::rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, TopicReplication,
};
use kelemetry_sources::kafka::rdkafka::client::DefaultClientContext;
use kelemetry_sources::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use kelemetry_sources::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use kelemetry_sources::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use kelemetry_sources::kafka::{KafkaConfig, KafkaSource};
use kelemetry_testkit::kafka::{SASL_PASSWORD, SASL_USER};
use kelemetry_testkit::{TestKafka, kafka_enabled};

const CLUSTER: &str = "kafka-test";

/// The shared broker, or `None` (with a line saying why) when the Kafka tests are off.
fn kafka(test: &str) -> Option<&'static TestKafka> {
    if !kafka_enabled() {
        eprintln!(
            "{test}: skipped, set KELEMETRY_KAFKA=1 to run it against a real Kafka (scripts/kafka)"
        );
        return None;
    }
    Some(TestKafka::shared().unwrap_or_else(|err| panic!("KELEMETRY_KAFKA=1 but {err}")))
}

/// A topic or group name no earlier run used.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// One native audit event (`ResponseComplete`) as a JSON line.
fn audit_event(id: &str, verb: &str, name: &str) -> String {
    format!(
        concat!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","#,
            r#""stage":"ResponseComplete","verb":"{verb}","user":{{"username":"alice"}},"#,
            r#""objectRef":{{"resource":"configmaps","namespace":"default","name":"{name}","apiVersion":"v1"}},"#,
            r#""responseStatus":{{"code":200}},"requestReceivedTimestamp":"2024-05-01T12:00:00.000000Z","#,
            r#""stageTimestamp":"2024-05-01T12:00:00.010000Z"}}"#
        ),
        id = id,
        verb = verb,
        name = name
    )
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    for result in created {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
}

/// Produces `values` to `partition` of `topic` in order, each acknowledged by the broker; returns their offsets.
async fn produce(bootstrap: &str, topic: &str, partition: i32, values: &[Vec<u8>]) -> Vec<i64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "20971520")
        .create()
        .unwrap();
    let mut offsets = Vec::new();
    for value in values {
        let record: FutureRecord<'_, (), [u8]> =
            FutureRecord::to(topic).partition(partition).payload(value);
        let delivered = producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(err, _)| panic!("producing to {topic}/{partition}: {err}"));
        assert_eq!(delivered.partition, partition);
        offsets.push(delivered.offset);
    }
    offsets
}

/// The group's committed offsets of partitions `0..partitions` of `topic` (`None` where nothing is committed).
async fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let found = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        (0..partitions)
            .map(
                |partition| match found.find_partition(&topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                },
            )
            .collect()
    })
    .await
    .unwrap()
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<PipelineReport>,
    counters: Arc<ReadCounters>,
    stats: Arc<PipelineStats>,
}

fn start(source: KafkaSource, exporter: Arc<dyn Exporter>) -> Running {
    let counters = source.counters();
    let pipeline = Pipeline::builder()
        .source(Box::new(source))
        .exporter(exporter)
        .flush_interval(Duration::from_millis(50))
        .build();
    let stats = pipeline.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(stop.clone()));
    Running {
        stop,
        task,
        counters,
        stats,
    }
}

impl Running {
    async fn stop(self) -> PipelineReport {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the pipeline stops within 60 s")
            .unwrap()
    }
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(kafka: &TestKafka, topic: &str, group: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(kafka.bootstrap(), [topic]);
    config.group_id = group.to_owned();
    config.default_cluster = CLUSTER.to_owned();
    config.commit_interval = Duration::from_millis(100);
    config
}

/// Audit ids of the activity spans exported, each with how often it was.
fn exported_audit_ids(exporter: &GatedExporter) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for span in exporter.spans() {
        if let Some(id) = span.attribute("auditId") {
            *ids.entry(id.to_owned()).or_default() += 1;
        }
    }
    ids
}

fn managed_fixture(path: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/managed")
        .join(path);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// What the intake makes of one document: (records, activities, skipped, rejections by reason).
#[derive(Default, Debug, PartialEq, Eq)]
struct Expected {
    records: u64,
    sent: u64,
    skipped: u64,
    rejected: BTreeMap<String, u64>,
}

impl Expected {
    fn add(&mut self, document: &[u8], limit: usize) -> u64 {
        if document.len() > limit {
            self.records += 1;
            *self
                .rejected
                .entry("document too large".to_owned())
                .or_default() += 1;
            return 0;
        }
        if document.trim_ascii().is_empty() {
            // The source rejects a message without a value before the intake sees it.
            self.records += 1;
            *self.rejected.entry("invalid JSON".to_owned()).or_default() += 1;
            return 0;
        }
        let intake = AuditIntake::default();
        match intake.take(document, CLUSTER) {
            Err(rejection) => {
                self.records += 1;
                *self
                    .rejected
                    .entry(rejection.reason.as_str().to_owned())
                    .or_default() += 1;
                0
            }
            Ok(items) => {
                let mut activities = 0;
                for item in items {
                    self.records += 1;
                    match item {
                        AuditItem::Activity(_) => activities += 1,
                        AuditItem::Rejected(rejection) => {
                            *self
                                .rejected
                                .entry(rejection.reason.as_str().to_owned())
                                .or_default() += 1;
                        }
                        _ => self.skipped += 1,
                    }
                }
                self.sent += activities;
                activities
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_of_mixed_envelopes_is_read_with_exact_counts() {
    let Some(kafka) = kafka("a_topic_of_mixed_envelopes_is_read_with_exact_counts") else {
        return;
    };
    let (topic, group) = (unique("mixed"), unique("mixed-group"));
    let limit = 64 * 1024;
    let event_list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{},{}]}}"#,
        audit_event("list-1", "create", "cm-list"),
        audit_event("list-2", "patch", "cm-list"),
        audit_event("list-3", "get", "cm-list"),
    );
    let mut huge = audit_event("huge-1", "update", "cm-huge");
    huge.insert_str(1, &format!(r#""padding":"{}","#, "x".repeat(100 * 1024)));
    let eks_line = managed_fixture("eks/cloudwatch-events.jsonl");
    let eks_first = eks_line.split(|b| *b == b'\n').next().unwrap().to_vec();
    let messages: Vec<(&str, Vec<u8>)> = vec![
        (
            "native line",
            audit_event("native-1", "update", "cm-a").into_bytes(),
        ),
        ("EventList", event_list.into_bytes()),
        ("not JSON", b"this is not JSON at all".to_vec()),
        ("huge", huge.into_bytes()),
        ("no value", Vec::new()),
        ("GKE LogEntry", managed_fixture("gke/pod-create.json")),
        (
            "AKS Event Hubs message",
            managed_fixture("aks/eventhub-log-object.json"),
        ),
        (
            "EKS subscription record",
            managed_fixture("eks/subscription-record.b64"),
        ),
        ("EKS CloudWatch event", eks_first),
        (
            "PodList",
            br#"{"kind":"PodList","apiVersion":"v1","items":[]}"#.to_vec(),
        ),
        (
            "native line after the poison",
            audit_event("native-2", "delete", "cm-z").into_bytes(),
        ),
    ];
    let mut expected = Expected::default();
    for (what, value) in &messages {
        let activities = expected.add(value, limit);
        if what.starts_with("GKE") || what.starts_with("AKS") || what.starts_with("EKS") {
            assert!(activities > 0, "the intake makes no activity of the {what}");
        }
    }
    // The native documents alone, counted by hand: 1 + (2 + a skipped get) + 1 activities.
    assert!(expected.sent >= 4 && expected.skipped >= 1, "{expected:?}");
    let values: Vec<Vec<u8>> = messages.iter().map(|(_, value)| value.clone()).collect();
    let offsets = produce(kafka.bootstrap(), &topic, 0, &values).await;
    assert_eq!(offsets, (0..messages.len() as i64).collect::<Vec<_>>());

    let mut config = config(kafka, &topic, &group);
    config.document_limit = limit;
    let exporter = Arc::new(GatedExporter::new(10_000));
    exporter.open(10_000);
    let running = start(config.build().unwrap(), exporter.clone());
    let counters = running.counters.clone();
    let records = expected.records;
    wait_for("every message read", Duration::from_secs(60), || {
        counters.snapshot().records >= records
    })
    .await;
    let all = messages.len() as i64;
    let (bootstrap, group_name) = (kafka.bootstrap().to_owned(), group.clone());
    let started = Instant::now();
    while committed(&bootstrap, &group_name, &topic, 1).await != vec![Some(all)] {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the offset was never committed past the last message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = running.stop().await;
    report.check().unwrap();

    let read = counters.snapshot();
    assert_eq!(read.records, expected.records, "{read}");
    assert_eq!(read.sent, expected.sent, "{read}");
    assert_eq!(read.skipped_total(), expected.skipped, "{read}");
    assert_eq!(read.rejected, expected.rejected, "{read}");
    assert_eq!(
        read.bytes,
        values.iter().map(|v| v.len() as u64).sum::<u64>()
    );
    assert_eq!(report.activity_spans, expected.sent, "{report}");
    let ids = exported_audit_ids(&exporter);
    for id in ["native-1", "list-1", "list-2", "native-2"] {
        assert_eq!(ids.get(id), Some(&1), "{id} exported once: {ids:?}");
    }
    assert!(
        !ids.contains_key("list-3") && !ids.contains_key("huge-1"),
        "{ids:?}"
    );

    // The poison messages are rejected with where they are; the reasons name what is wrong.
    let origins: BTreeMap<String, String> = report
        .rejection_examples
        .iter()
        .map(|r| (r.origin.clone(), r.reason.clone()))
        .collect();
    let at = |offset: i64| format!("kafka:{topic}/0@{offset}");
    assert_eq!(
        origins.get(&at(2)).map(String::as_str),
        Some("invalid JSON"),
        "{origins:?}"
    );
    assert_eq!(
        origins.get(&at(3)).map(String::as_str),
        Some("document too large"),
        "{origins:?}"
    );
    assert!(origins.contains_key(&at(4)), "{origins:?}");
    assert_eq!(
        origins.get(&at(9)).map(String::as_str),
        Some("not an audit event"),
        "{origins:?}"
    );
    let too_large = report
        .rejection_examples
        .iter()
        .find(|r| r.origin == at(3))
        .unwrap();
    assert!(
        too_large
            .detail
            .contains("exceeds the limit of 65536 bytes"),
        "{too_large}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_source_reads_each_record_once() {
    let Some(kafka) = kafka("a_restarted_source_reads_each_record_once") else {
        return;
    };
    let (topic, group) = (unique("restart"), unique("restart-group"));
    create_topic(kafka.bootstrap(), &topic, 3).await;
    let batch = |prefix: &str, count: usize| -> Vec<(i32, Vec<u8>)> {
        (0..count)
            .map(|i| {
                let id = format!("{prefix}-{i}");
                ((i % 3) as i32, audit_event(&id, "update", &id).into_bytes())
            })
            .collect()
    };
    let produce_all = async |messages: Vec<(i32, Vec<u8>)>| {
        for partition in 0..3 {
            let values: Vec<Vec<u8>> = messages
                .iter()
                .filter(|(p, _)| *p == partition)
                .map(|(_, value)| value.clone())
                .collect();
            produce(kafka.bootstrap(), &topic, partition, &values).await;
        }
    };

    // First run: 30 records, all exported, then a graceful stop. No periodic commit comes in between: what is
    // committed, the stop committed.
    produce_all(batch("first", 30)).await;
    let exporter = Arc::new(GatedExporter::new(10_000));
    exporter.open(10_000);
    let mut first = config(kafka, &topic, &group);
    first.commit_interval = Duration::from_secs(3600);
    let running = start(first.build().unwrap(), exporter.clone());
    let counters = running.counters.clone();
    wait_for("30 records read", Duration::from_secs(60), || {
        counters.snapshot().records == 30
    })
    .await;
    let stats = running.stats.clone();
    wait_for(
        "30 activity spans exported",
        Duration::from_secs(30),
        || exported_audit_ids(&exporter).len() == 30,
    )
    .await;
    let report = running.stop().await;
    report.check().unwrap();
    assert_eq!(stats.activity_spans.load(Relaxed), 30);
    assert_eq!(
        committed(kafka.bootstrap(), &group, &topic, 3).await,
        vec![Some(10); 3]
    );

    // Stopped: 7 more are produced. The next start reads those 7 and nothing else.
    produce_all(batch("second", 7)).await;
    let exporter = Arc::new(GatedExporter::new(10_000));
    exporter.open(10_000);
    let running = start(
        config(kafka, &topic, &group).build().unwrap(),
        exporter.clone(),
    );
    let counters = running.counters.clone();
    wait_for("7 records read", Duration::from_secs(60), || {
        counters.snapshot().records >= 7
    })
    .await;
    wait_for("7 activity spans exported", Duration::from_secs(30), || {
        exported_audit_ids(&exporter).len() >= 7
    })
    .await;
    // Time for anything read twice to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = running.stop().await;
    report.check().unwrap();
    let read = counters.snapshot();
    assert_eq!((read.records, read.sent), (7, 7), "{read}");
    let ids = exported_audit_ids(&exporter);
    let expected: BTreeSet<String> = (0..7).map(|i| format!("second-{i}")).collect();
    assert_eq!(ids.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(ids.values().all(|count| *count == 1), "{ids:?}");
    assert_eq!(
        committed(kafka.bootstrap(), &group, &topic, 3).await,
        vec![Some(13), Some(12), Some(12)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_refused_spans_are_not_committed_and_are_read_again() {
    let Some(kafka) = kafka("offsets_of_refused_spans_are_not_committed_and_are_read_again") else {
        return;
    };
    let (topic, group) = (unique("refused"), unique("refused-group"));
    let values: Vec<Vec<u8>> = (0..5)
        .map(|i| audit_event(&format!("refused-{i}"), "update", &format!("cm-{i}")).into_bytes())
        .collect();
    produce(kafka.bootstrap(), &topic, 0, &values).await;

    // The exporter refuses every batch: the spans are dropped, and no offset may be committed.
    let refusing = Arc::new(GatedExporter::new(10_000));
    refusing.refuse(true);
    let running = start(
        config(kafka, &topic, &group).build().unwrap(),
        refusing.clone(),
    );
    let (counters, stats) = (running.counters.clone(), running.stats.clone());
    wait_for("5 records read", Duration::from_secs(60), || {
        counters.snapshot().sent == 5
    })
    .await;
    wait_for(
        "the exporter to give up on the spans",
        Duration::from_secs(30),
        || stats.spans_dropped.load(Relaxed) >= 10,
    )
    .await;
    // A few commit intervals pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = running.stop().await;
    assert_eq!(
        report.spans_dropped, 10,
        "5 object and 5 activity spans: {report}"
    );
    assert_eq!(
        committed(kafka.bootstrap(), &group, &topic, 1).await,
        vec![None]
    );

    // The next start reads the 5 again; exported this time, they are committed.
    let accepting = Arc::new(GatedExporter::new(10_000));
    accepting.open(10_000);
    let running = start(
        config(kafka, &topic, &group).build().unwrap(),
        accepting.clone(),
    );
    let counters = running.counters.clone();
    wait_for("5 records read again", Duration::from_secs(60), || {
        counters.snapshot().sent == 5
    })
    .await;
    let started = Instant::now();
    while committed(kafka.bootstrap(), &group, &topic, 1).await != vec![Some(5)] {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the offset was never committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = running.stop().await;
    report.check().unwrap();
    let ids = exported_audit_ids(&accepting);
    assert_eq!(ids.len(), 5, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_exporter_holds_the_consumer_at_max_in_flight() {
    let Some(kafka) = kafka("a_stalled_exporter_holds_the_consumer_at_max_in_flight") else {
        return;
    };
    let (topic, group) = (unique("stalled"), unique("stalled-group"));
    let values: Vec<Vec<u8>> = (0..20)
        .map(|i| audit_event(&format!("stalled-{i}"), "update", &format!("cm-{i}")).into_bytes())
        .collect();
    produce(kafka.bootstrap(), &topic, 0, &values).await;

    // The exporter lets nothing through: the source reads 3 messages and waits.
    let gated = Arc::new(GatedExporter::new(10_000));
    let mut config = config(kafka, &topic, &group);
    config.max_in_flight = 3;
    let running = start(config.build().unwrap(), gated.clone());
    let counters = running.counters.clone();
    wait_for("3 records read", Duration::from_secs(60), || {
        counters.snapshot().records >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counters.snapshot().records, 3, "read past max_in_flight");
    assert_eq!(
        committed(kafka.bootstrap(), &group, &topic, 1).await,
        vec![None]
    );

    // Open: the rest flows, and everything is committed.
    gated.open(10_000);
    wait_for("20 records read", Duration::from_secs(60), || {
        counters.snapshot().records == 20
    })
    .await;
    let started = Instant::now();
    while committed(kafka.bootstrap(), &group, &topic, 1).await != vec![Some(20)] {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the offset was never committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await.check().unwrap();
    assert_eq!(exported_audit_ids(&gated).len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_partitions_over_without_losing_a_record() {
    let Some(kafka) = kafka("a_second_member_takes_partitions_over_without_losing_a_record") else {
        return;
    };
    let (topic, group) = (unique("rebalance"), unique("rebalance-group"));
    create_topic(kafka.bootstrap(), &topic, 4).await;
    let produce_batch = async |prefix: &str| {
        for partition in 0..4 {
            let values: Vec<Vec<u8>> = (0..10)
                .map(|i| {
                    let id = format!("{prefix}-{partition}-{i}");
                    audit_event(&id, "update", &id).into_bytes()
                })
                .collect();
            produce(kafka.bootstrap(), &topic, partition, &values).await;
        }
    };
    produce_batch("before").await;
    let first_exporter = Arc::new(GatedExporter::new(10_000));
    first_exporter.open(10_000);
    let first = start(
        config(kafka, &topic, &group).build().unwrap(),
        first_exporter.clone(),
    );
    let first_counters = first.counters.clone();
    wait_for(
        "40 records read by the first member",
        Duration::from_secs(60),
        || first_counters.snapshot().records == 40,
    )
    .await;

    // A second member joins: the group rebalances (the first commits what it settled for the partitions it gives
    // up). One record a partition is produced every 200 ms until the second member has read some.
    let second_exporter = Arc::new(GatedExporter::new(10_000));
    second_exporter.open(10_000);
    let second = start(
        config(kafka, &topic, &group).build().unwrap(),
        second_exporter.clone(),
    );
    let second_counters = second.counters.clone();
    let mut expected: BTreeSet<String> = (0..4)
        .flat_map(|partition| (0..10).map(move |i| format!("before-{partition}-{i}")))
        .collect();
    let started = Instant::now();
    let mut round = 0;
    while second_counters.snapshot().records == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second member got no partition within 60 s"
        );
        for partition in 0..4 {
            let id = format!("after-{partition}-{round}");
            produce(
                kafka.bootstrap(),
                &topic,
                partition,
                &[audit_event(&id, "update", &id).into_bytes()],
            )
            .await;
            expected.insert(id);
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let union = || -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = exported_audit_ids(&first_exporter).into_keys().collect();
        ids.extend(exported_audit_ids(&second_exporter).into_keys());
        ids
    };
    wait_for(
        "every record exported by one member or the other",
        Duration::from_secs(60),
        || union() == expected,
    )
    .await;
    let per_partition = 10 + round;
    let started = Instant::now();
    while committed(kafka.bootstrap(), &group, &topic, 4).await != vec![Some(per_partition); 4] {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the offsets were never all committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.stop().await.check().unwrap();
    first.stop().await.check().unwrap();
    assert!(
        second_counters.snapshot().records > 0,
        "the second member read nothing"
    );
    // At least once: a record in flight during the rebalance may be read twice, never lost.
    let read = first_counters.snapshot().records + second_counters.snapshot().records;
    assert!(
        read >= expected.len() as u64,
        "{read} read, {} produced",
        expected.len()
    );
}

/// SASL PLAIN, the mechanism Azure Event Hubs takes (there over TLS): the client properties pass through, a wrong
/// password is refused by the broker and nothing is read, the right one reads the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_credentials_pass_through_the_properties() {
    let Some(kafka) = kafka("sasl_plain_credentials_pass_through_the_properties") else {
        return;
    };
    let sasl = kafka.sasl_bootstrap().unwrap_or_else(|| {
        panic!(
            "KELEMETRY_KAFKA_BOOTSTRAP names a broker without KELEMETRY_KAFKA_SASL_BOOTSTRAP (a SASL_PLAINTEXT \
             listener with PLAIN user {SASL_USER})"
        )
    });
    let (topic, group) = (unique("sasl"), unique("sasl-group"));
    let values: Vec<Vec<u8>> = (0..3)
        .map(|i| audit_event(&format!("sasl-{i}"), "update", &format!("cm-{i}")).into_bytes())
        .collect();
    produce(kafka.bootstrap(), &topic, 0, &values).await;
    let over_sasl = |password: &str| {
        let mut config = config(kafka, &topic, &group);
        config.bootstrap_servers = sasl.to_owned();
        for (name, value) in [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", SASL_USER),
            ("sasl.password", password),
        ] {
            config.properties.insert(name.to_owned(), value.to_owned());
        }
        config.build().unwrap()
    };

    let exporter = Arc::new(GatedExporter::new(10_000));
    exporter.open(10_000);
    let refused = start(over_sasl("not-the-password"), exporter.clone());
    let counters = refused.counters.clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    refused.stop().await.check().unwrap();
    assert_eq!(counters.snapshot().records, 0, "read with a wrong password");

    let accepted = start(over_sasl(SASL_PASSWORD), exporter.clone());
    let counters = accepted.counters.clone();
    wait_for("3 records read over SASL", Duration::from_secs(60), || {
        counters.snapshot().sent == 3
    })
    .await;
    accepted.stop().await.check().unwrap();
    assert_eq!(
        committed(kafka.bootstrap(), &group, &topic, 1).await,
        vec![Some(3)]
    );
}

/// The broker goes away under a running source with offsets still to commit: a stop still ends the source within
/// its 10 s bound for the last commit, inside the pipeline's shutdown grace (librdkafka alone waits out its 45 s
/// session timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_broker_died_still_stops() {
    if !kafka_enabled() {
        eprintln!(
            "a_source_whose_broker_died_still_stops: skipped, set KELEMETRY_KAFKA=1 to run it"
        );
        return;
    }
    // A broker of its own, to kill.
    let own = TestKafka::start().unwrap();
    let (topic, group) = (unique("dying"), unique("dying-group"));
    let values: Vec<Vec<u8>> = (0..3)
        .map(|i| audit_event(&format!("dying-{i}"), "update", &format!("cm-{i}")).into_bytes())
        .collect();
    produce(own.bootstrap(), &topic, 0, &values).await;
    let exporter = Arc::new(GatedExporter::new(10_000));
    exporter.open(10_000);
    // Nothing is committed while it runs: the stop has offsets to commit, to a broker that is gone.
    let mut settings = config(&own, &topic, &group);
    settings.commit_interval = Duration::from_secs(3600);
    let running = start(settings.build().unwrap(), exporter.clone());
    let counters = running.counters.clone();
    wait_for("3 records read", Duration::from_secs(60), || {
        counters.snapshot().sent == 3
    })
    .await;
    let bootstrap = own.bootstrap().to_owned();
    own.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = Instant::now();
    let report = running.stop().await;
    let took = stopping.elapsed();
    eprintln!("stopped {took:?} after the broker went away");
    assert!(report.source_errors.is_empty(), "{report}");
    assert!(
        took < Duration::from_secs(15),
        "stopping took {took:?} ({bootstrap} gone)"
    );
    assert_eq!(exported_audit_ids(&exporter).len(), 3);
}

/// A record in the wire format, as an `ingest` process forwards it: `name`'s write at resource version `rv` with
/// `data.k = value` (a create at `rv` 1).
fn configmap_record(name: &str, rv: u32, value: &str) -> Vec<u8> {
    use kelemetry_core::{
        Activity, Change, ChangeKind, Object, ObjectKey, ObjectRef, Record, SourceKind,
    };
    let key = ObjectKey::new(CLUSTER, "", "configmaps", "default", name);
    let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
        "data": {"k": value}});
    let mut activity = Activity::new(
        Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body)),
        SourceKind::Audit,
        format!("2024-05-01T12:00:{rv:02}Z").parse().unwrap(),
        "alice update",
        format!("{name}-{rv}"),
    );
    activity.attribute("auditId", format!("{name}-{rv}"));
    activity.change = Some(Change {
        kind: if rv == 1 {
            ChangeKind::Create
        } else {
            ChangeKind::Update
        },
        old_resource_version: (rv > 1).then(|| (rv - 1).to_string()),
        subresource: None,
    });
    kelemetry_core::wire::encode(&Record::from(activity))
}

/// A member given a partition reads the messages before the committed offset again for their bodies, so the first
/// new write after a restart (or a rebalance) is diffed against the last body the previous member saw; with
/// `warmup: 0` it cannot be. The warm-up makes no activity span twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_warms_up_before_the_committed_offset() {
    let Some(kafka) = kafka("a_new_member_warms_up_before_the_committed_offset") else {
        return;
    };
    for (warmup, diffed) in [(kelemetry_sources::kafka::DEFAULT_WARMUP, true), (0, false)] {
        let topic = unique("warmup");
        let group = unique("warmup-group");
        create_topic(kafka.bootstrap(), &topic, 1).await;
        let earlier: Vec<Vec<u8>> = (1..=3)
            .map(|rv| configmap_record("settings", rv, &format!("v{rv}")))
            .collect();
        produce(kafka.bootstrap(), &topic, 0, &earlier).await;
        let mut settings = config(kafka, &topic, &group);
        settings.format = kelemetry_sources::MessageFormat::Records;
        settings.warmup = warmup;
        let run = |settings: &KafkaConfig| {
            let exporter = Arc::new(GatedExporter::new(10_000));
            exporter.open(1_000_000);
            let pipeline = Pipeline::builder()
                .source(Box::new(settings.build().unwrap()))
                .decorator(Arc::new(kelemetry_core::DiffDecorator))
                .exporter(exporter.clone())
                .flush_interval(Duration::from_millis(50))
                .build();
            let stop = CancellationToken::new();
            (exporter, stop.clone(), tokio::spawn(pipeline.run(stop)))
        };
        let (first, stop, task) = run(&settings);
        wait_for("the first three exported", Duration::from_secs(60), || {
            exported_audit_ids(&first).len() == 3
        })
        .await;
        stop.cancel();
        task.await.unwrap().check().unwrap();
        assert_eq!(
            committed(kafka.bootstrap(), &group, &topic, 1).await,
            [Some(3)]
        );

        // A new member of the group, with empty caches: the next write of the object.
        produce(
            kafka.bootstrap(),
            &topic,
            0,
            &[configmap_record("settings", 4, "v4")],
        )
        .await;
        let (second, stop, task) = run(&settings);
        wait_for("the fourth exported", Duration::from_secs(60), || {
            exported_audit_ids(&second).contains_key("settings-4")
        })
        .await;
        stop.cancel();
        task.await.unwrap().check().unwrap();
        let ids = exported_audit_ids(&second);
        assert_eq!(ids.len(), 1, "the warm-up made no activity span: {ids:?}");
        let fourth = second
            .spans()
            .into_iter()
            .find(|span| span.attribute("auditId") == Some("settings-4"))
            .unwrap();
        let diff = fourth
            .logs
            .iter()
            .any(|log| log.message.contains("data.k \"v3\" -> \"v4\""));
        assert_eq!(diff, diffed, "warmup {warmup}: {:?}", fourth.logs);
    }
}
