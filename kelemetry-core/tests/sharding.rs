//! The sharded stage: a record held back by a slow decorator delays only its own object; the records of one
//! object keep their order; the spans, and so their ids, do not depend on the number of shards.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::audit::{AuditOutcome, map_event, parse_document};
use kelemetry_core::{
    Activity, BodyCache, CancellationToken, Decorator, Delivery, DiffDecorator, Link, LinkError,
    Linker, MemoryExporter, NotDelivered, Object, ObjectKey, ObjectLookup, ObjectRef, Observation,
    Pipeline, PipelineReport, Record, ResourceMap, SmolStr, SourceKind, SpanKind, SpanRecord,
    StopCause,
};
use serde_json::Value;

/// The object whose first record the [`HoldBack`] decorator holds.
const HELD: &str = "held";
/// Other objects, each with [`ROUNDS`] activities.
const OTHERS: usize = 20;
const ROUNDS: usize = 3;

/// Holds the activity whose dedup key is `dedup_key` for `hold` before letting it through: the fault a lagging
/// object watch shows to the watch diff decorator, which waits for the watch to catch up (the real lag cannot be
/// made to happen on cue).
struct HoldBack {
    dedup_key: String,
    hold: Duration,
}

#[async_trait]
impl Decorator for HoldBack {
    fn name(&self) -> &str {
        "hold-back"
    }

    async fn decorate(&self, activity: &mut Activity, _bodies: &BodyCache) {
        if activity.dedup_key == self.dedup_key {
            tokio::time::sleep(self.hold).await;
        }
    }
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("c", "apps", "deployments", "ns", name)
}

/// Activity `round` of object `name`; its span's name is `update NAME ROUND`.
fn activity(name: &str, round: usize) -> Record {
    let at = format!("2024-05-01T12:00:{:02}Z", round);
    Activity::new(
        Object::new(ObjectRef::new(key(name), "v1", None)),
        SourceKind::Audit,
        at.parse().unwrap(),
        format!("update {name} {round}"),
        format!("{name}-{round}"),
    )
    .into()
}

fn other(index: usize) -> String {
    format!("other-{index}")
}

/// The held object's records first, interleaved with every other object's: `held 0`, the others' round 0,
/// `held 1`, the others' round 1, `held 2`, the others' round 2.
fn interleaved() -> Vec<(String, Record)> {
    let mut records = Vec::new();
    for round in 0..ROUNDS {
        records.push((HELD.to_owned(), activity(HELD, round)));
        for index in 0..OTHERS {
            records.push((other(index), activity(&other(index), round)));
        }
    }
    records
}

/// The activity spans in the order the exporter got them, by object name: the rounds of each.
fn activity_rounds(spans: &[SpanRecord]) -> BTreeMap<String, Vec<usize>> {
    let mut rounds: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for span in spans {
        if !matches!(span.kind, SpanKind::Activity(_)) {
            continue;
        }
        let mut words = span.name.split(' ').skip(1);
        let (Some(name), Some(round)) = (words.next(), words.next()) else {
            panic!("unexpected activity span {}", span.name);
        };
        rounds
            .entry(name.to_owned())
            .or_default()
            .push(round.parse().unwrap());
    }
    rounds
}

/// Sends the interleaved records to a pipeline of `shards` shards whose decorator holds `held 0` for 5 s; waits
/// until every other object's activities are exported and checks that none of the held object's is by then;
/// then waits for the end and checks that the held object's arrived too and that every object's activities are
/// in the order they were sent.
async fn a_held_object_delays_only_itself(shards: usize) {
    let exporter = Arc::new(MemoryExporter::new(10_000));
    let pipeline = Pipeline::builder()
        .decorator(Arc::new(HoldBack {
            dedup_key: format!("{HELD}-0"),
            hold: Duration::from_secs(5),
        }))
        .exporter(exporter.clone())
        .shards(shards)
        .flush_interval(Duration::from_millis(50))
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));
    for (_, record) in interleaved() {
        sink.send(record).await.unwrap();
    }

    loop {
        let rounds = activity_rounds(&exporter.spans());
        let others_done =
            (0..OTHERS).all(|index| rounds.get(&other(index)).is_some_and(|r| r.len() == ROUNDS));
        if others_done {
            assert_eq!(
                rounds.get(HELD),
                None,
                "{shards} shard(s): the held object's activities were exported before or with the others'"
            );
            break;
        }
        assert!(
            !rounds.contains_key(HELD),
            "{shards} shard(s): the held object came out before the others: {rounds:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.activities as usize, (OTHERS + 1) * ROUNDS);
    let rounds = activity_rounds(&exporter.spans());
    assert_eq!(rounds.len(), OTHERS + 1, "{rounds:?}");
    for (name, order) in &rounds {
        assert_eq!(
            order,
            &(0..ROUNDS).collect::<Vec<_>>(),
            "{shards} shard(s): {name}'s activities out of order"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn one_shard_a_held_object_delays_only_itself() {
    a_held_object_delays_only_itself(1).await;
}

#[tokio::test(start_paused = true)]
async fn four_shards_a_held_object_delays_only_itself() {
    a_held_object_delays_only_itself(4).await;
}

/// The same on a multi-threaded runtime, in real time, with one shard per core (the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_threads_in_real_time_a_held_object_delays_only_itself() {
    a_held_object_delays_only_itself(0).await;
}

/// A hard stop while a record is held: the held record finishes (as the one record in progress always did), the
/// records queued behind it are dropped and reported lost, the other objects' are delivered.
#[tokio::test(start_paused = true)]
async fn a_hard_stop_drops_what_waits_behind_a_held_record_and_reports_it() {
    let exporter = Arc::new(MemoryExporter::new(10_000));
    let pipeline = Pipeline::builder()
        .decorator(Arc::new(HoldBack {
            dedup_key: format!("{HELD}-0"),
            hold: Duration::from_secs(5),
        }))
        .exporter(exporter.clone())
        .shards(2)
        .flush_interval(Duration::from_millis(50))
        .build();
    let sink = pipeline.sink();
    let hard_stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run_until(CancellationToken::new(), hard_stop.clone()));
    let (held, held_receipt) = Delivery::new();
    let (others, others_receipt) = Delivery::new();
    for (name, record) in interleaved() {
        let delivery = if name == HELD { &held } else { &others };
        sink.send_tracked(record, delivery).await.unwrap();
    }
    drop((held, others));
    assert_eq!(
        others_receipt.await,
        Ok(()),
        "the other objects are delivered"
    );

    hard_stop.cancel();
    let report: PipelineReport = running.await.unwrap();
    assert_eq!(report.stop, StopCause::HardStop);
    assert_eq!(report.abandoned, (ROUNDS - 1) as u64, "{report:?}");
    assert_eq!(
        held_receipt.await,
        Err(NotDelivered {
            records: (ROUNDS - 1) as u64
        })
    );
    let rounds = activity_rounds(&exporter.spans());
    assert_eq!(rounds.get(HELD), Some(&vec![0]), "the held record finished");
    drop(sink);
}

/// Links an object to its owners (`metadata.ownerReferences`), found with the built-in resource map.
struct OwnerReferences {
    resources: ResourceMap,
}

#[async_trait]
impl Linker for OwnerReferences {
    fn name(&self) -> &str {
        "owner-references"
    }

    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        let body = match &object.body {
            Some(body) => body.clone(),
            None => match lookup.body(&object.object_ref).await {
                Some(body) => body,
                None => return Ok(Vec::new()),
            },
        };
        let owners = body
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array);
        let key = object.key();
        Ok(owners
            .into_iter()
            .flatten()
            .filter_map(|owner| {
                let api_version = owner.get("apiVersion")?.as_str()?;
                let kind = owner.get("kind")?.as_str()?;
                let name = owner.get("name")?.as_str()?;
                let info = self.resources.resolve(api_version, kind);
                let owner_key = info.object_key(&key.cluster, &key.namespace, name);
                let uid = owner.get("uid").and_then(Value::as_str).map(SmolStr::new);
                Some(
                    Link::parent(ObjectRef::new(owner_key, info.version, uid))
                        .with_class("children"),
                )
            })
            .collect())
    }
}

/// The recording of a Deployment's life on a real control plane (fixtures/recorded/deployment-lifecycle).
fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle")
}

/// The recording's audit events as activities and its object watch as observations, ordered by time.
fn recorded_records() -> Vec<Record> {
    let mut records: Vec<(jiff::Timestamp, Record)> = Vec::new();
    let audit = std::fs::read_to_string(recording().join("audit.log")).unwrap();
    for line in audit.lines().filter(|line| !line.trim().is_empty()) {
        for event in parse_document(line.as_bytes()).unwrap() {
            if let AuditOutcome::Activity(activity) = map_event(event, "c").unwrap() {
                records.push((activity.start, Record::Activity(activity)));
            }
        }
    }
    let resources = ResourceMap::builtin();
    let watch = std::fs::read_to_string(recording().join("objects.watch.yaml")).unwrap();
    let mut seen_at: Option<jiff::Timestamp> = None;
    for line in watch.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let time: Value = serde_json::from_str(comment).unwrap();
            seen_at = Some(time["time"].as_str().unwrap().parse().unwrap());
            continue;
        }
        if !line.starts_with('{') {
            continue;
        }
        let event: Value = serde_json::from_str(line).unwrap();
        let object = &event["object"];
        let metadata = &object["metadata"];
        let info = resources.resolve(
            object["apiVersion"].as_str().unwrap(),
            object["kind"].as_str().unwrap(),
        );
        let key = info.object_key(
            "c",
            metadata["namespace"].as_str().unwrap_or(""),
            metadata["name"].as_str().unwrap(),
        );
        let uid = metadata["uid"].as_str().map(SmolStr::new);
        let object_ref = ObjectRef::new(key, info.version, uid);
        let time = seen_at.take().unwrap();
        let observation = Observation {
            object: Object::with_body(object_ref, Arc::new(object.clone())),
            time,
        };
        records.push((time, observation.into()));
    }
    records.sort_by_key(|(time, _)| *time);
    records.into_iter().map(|(_, record)| record).collect()
}

/// Every span a pipeline of `shards` shards makes of the recording, sorted by trace and span id.
async fn spans_with(shards: usize, records: &[Record]) -> Vec<SpanRecord> {
    let exporter = Arc::new(MemoryExporter::new(100_000));
    let pipeline = Pipeline::builder()
        .decorator(Arc::new(DiffDecorator))
        .linker(Arc::new(OwnerReferences {
            resources: ResourceMap::builtin(),
        }))
        .exporter(exporter.clone())
        .shards(shards)
        .channel_capacity(64)
        .batch_size(16)
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));
    for record in records {
        sink.send(record.clone()).await.unwrap();
    }
    drop(sink);
    let report = running.await.unwrap();
    assert_eq!(report.check(), Ok(()));
    let mut spans = exporter.spans();
    spans.sort_by_key(|span| (span.trace_id, span.span_id));
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_spans_of_a_recording_are_the_same_with_one_shard_and_with_four() {
    let records = recorded_records();
    assert!(records.len() > 200, "{} records", records.len());
    let one = spans_with(1, &records).await;
    let ids = |spans: &[SpanRecord]| -> Vec<_> {
        spans
            .iter()
            .map(|span| (span.trace_id, span.span_id, span.parent_span_id))
            .collect()
    };
    let mut unique = ids(&one);
    unique.dedup();
    assert_eq!(unique.len(), one.len(), "a span was written twice");
    assert!(one.iter().any(|span| span.kind == SpanKind::Link));
    for attempt in 0..5 {
        let four = spans_with(4, &records).await;
        assert_eq!(
            four.len(),
            one.len(),
            "attempt {attempt}: another number of spans"
        );
        if let Some((a, b)) = one.iter().zip(&four).find(|(a, b)| a != b) {
            panic!(
                "attempt {attempt}: a span differs with four shards:\n one: {}\nfour: {}",
                summary(a),
                summary(b)
            );
        }
    }
}

/// A span in one line: ids, kind, name, attributes and the start of each log.
fn summary(span: &SpanRecord) -> String {
    let logs: Vec<String> = span
        .logs
        .iter()
        .map(|log| log.message.chars().take(120).collect())
        .collect();
    format!(
        "{}/{} {:?} {} {:?} logs {:?}",
        span.trace_id, span.span_id, span.kind, span.name, span.attributes, logs
    )
}
