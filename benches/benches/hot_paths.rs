//! Criterion benches of the hot pieces of the pipeline, each beside a baseline measured in the same run so ratios
//! can be read: audit line parse and mapping (beside plain `serde_json::Value` parsing), deterministic ids (beside
//! std's SipHash of the same key), span building (beside cloning the activity), the diff of two Deployment bodies
//! (beside the equality of two equal bodies), and `BoundedLedger::first_sighting` (beside a bare `HashSet` insert and remove).
//!
//! Inputs are the real recorded fixtures (`$KELEMETRY_FIXTURES` or `../shared/fixtures`); a bench whose fixture
//! is missing prints so and measures nothing.
//!
//! ```text
//! cargo bench -p kelemetry-benches --bench hot_paths
//! ```

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kelemetry_benches::corpus::fixtures_dir;
use kelemetry_core::audit::{AuditOutcome, map_event, parse_document};
use kelemetry_core::diff::audit_diff;
use kelemetry_core::{
    Activity, BoundedLedger, Link, ObjectKey, ObjectRef, SpanId, SpanLedger, TraceId, Windowing,
    span,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The first line of a recorded audit file, if the fixtures are there.
fn recorded_line(relative: &str) -> Option<String> {
    let path = fixtures_dir().join("audit").join(relative);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.lines().next().map(str::to_owned),
        Err(err) => {
            println!("skipping: cannot read {}: {err}", path.display());
            None
        }
    }
}

/// The activity of a recorded write.
fn recorded_activity(line: &str) -> Option<Activity> {
    let event = parse_document(line.as_bytes()).ok()?.into_iter().next()?;
    match map_event(event, "bench").ok()? {
        AuditOutcome::Activity(activity) => Some(*activity),
        AuditOutcome::Skipped(_) => None,
    }
}

fn audit_line(c: &mut Criterion) {
    let inputs = [
        (
            "pod create, RequestResponse",
            "falco-minikube-2018/create_nginx_pod_privileged.json",
        ),
        (
            "deployment create, Request",
            "falco-minikube-2018/create_deployment.json",
        ),
        ("list, Metadata (skipped)", "audit2rbac-2017/demo.log"),
    ];
    let mut group = c.benchmark_group("audit_line");
    for (name, file) in inputs {
        let Some(line) = recorded_line(file) else {
            continue;
        };
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("serde_json::Value (baseline)", name),
            &line,
            |b, line| b.iter(|| serde_json::from_str::<Value>(black_box(line)).ok()),
        );
        group.bench_with_input(
            BenchmarkId::new("parse_document + map_event", name),
            &line,
            |b, line| {
                b.iter(|| {
                    let events = parse_document(black_box(line).as_bytes()).ok()?;
                    let mut kept = 0;
                    for event in events {
                        if let Ok(AuditOutcome::Activity(activity)) = map_event(event, "bench") {
                            black_box(&activity);
                            kept += 1;
                        }
                    }
                    Some(kept)
                })
            },
        );
    }
    group.finish();
}

fn ids(c: &mut Criterion) {
    let key = ObjectKey::new(
        "bench",
        "apps",
        "deployments",
        "default",
        "nginx-deployment-5cdcc99dbf",
    );
    let owner = ObjectKey::new(
        "bench",
        "apps",
        "replicasets",
        "default",
        "nginx-deployment-5cdcc99dbf-x7k2p",
    );
    let window = Windowing::default().window_of(jiff::Timestamp::constant(1_540_559_256, 0));
    let trace = TraceId::for_object(&key, window);
    let mut group = c.benchmark_group("ids");
    group.bench_function("SipHash of the key and window (baseline)", |b| {
        b.iter(|| {
            let mut hasher = DefaultHasher::new();
            black_box(&key).fields().hash(&mut hasher);
            window.start_secs().hash(&mut hasher);
            hasher.finish()
        })
    });
    group.bench_function("TraceId::for_object", |b| {
        b.iter(|| TraceId::for_object(black_box(&key), window))
    });
    group.bench_function("object span id", |b| {
        b.iter(|| black_box(trace).object_span())
    });
    group.bench_function("activity span id", |b| {
        b.iter(|| black_box(trace).activity_span("audit:a362d22b-db3c-4590-9505-23782f12925f"))
    });
    group.bench_function("link span id", |b| {
        b.iter(|| black_box(trace).link_span("owner", &owner))
    });
    group.finish();
}

fn span_building(c: &mut Criterion) {
    let Some(activity) = recorded_line("falco-minikube-2018/create_nginx_pod_privileged.json")
        .and_then(|l| recorded_activity(&l))
    else {
        return;
    };
    let window = Windowing::default().window_of(activity.start);
    let owner = ObjectRef::new(
        ObjectKey::new(
            "bench",
            "apps",
            "replicasets",
            "default",
            "nginx-deployment-5cdcc99dbf",
        ),
        "v1",
        None,
    );
    let link = Link::parent(owner)
        .with_class("children")
        .with_dedup_id("owner");
    let mut group = c.benchmark_group("span_building");
    group.bench_function("Activity clone (baseline)", |b| {
        b.iter(|| black_box(&activity).clone())
    });
    group.bench_function("span::activity_span", |b| {
        b.iter(|| span::activity_span(black_box(&activity), window))
    });
    group.bench_function("span::object_span", |b| {
        b.iter(|| span::object_span(black_box(&activity.object.object_ref), window))
    });
    group.bench_function("span::link_span", |b| {
        b.iter(|| span::link_span(black_box(&activity.object.object_ref), window, &link))
    });
    group.finish();
}

/// The recorded Deployment of the kspan fixture, and the same Deployment one scale-up later (what the controller
/// writes: replicas, generation, resource version, status and the managed-fields time change).
fn deployment_bodies() -> Option<(Value, Value)> {
    let path = fixtures_dir().join("events/kspan-kind-2021/deployment-2-pods.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            println!("skipping: cannot read {}: {err}", path.display());
            return None;
        }
    };
    let before = serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|document| Value::deserialize(document).ok())
        .find(|doc| doc.get("kind").and_then(Value::as_str) == Some("Deployment"))?;
    let mut after = before.clone();
    let set = |value: &mut Value, pointer: &str, new: Value| {
        if let Some(slot) = value.pointer_mut(pointer) {
            *slot = new;
        }
    };
    set(&mut after, "/metadata/generation", json!(4));
    set(&mut after, "/metadata/resourceVersion", json!("5361702"));
    set(
        &mut after,
        "/metadata/managedFields/0/time",
        json!("2021-05-19T09:44:10Z"),
    );
    set(&mut after, "/spec/replicas", json!(3));
    set(&mut after, "/status/observedGeneration", json!(4));
    set(&mut after, "/status/replicas", json!(3));
    set(&mut after, "/status/unavailableReplicas", json!(1));
    set(
        &mut after,
        "/status/conditions/1/lastUpdateTime",
        json!("2021-05-19T09:44:10Z"),
    );
    set(
        &mut after,
        "/status/conditions/1/message",
        json!("ReplicaSet \"px-5d567cc74c\" is progressing."),
    );
    set(
        &mut after,
        "/status/conditions/1/reason",
        json!("ReplicaSetUpdated"),
    );
    Some((before, after))
}

fn diff(c: &mut Criterion) {
    let Some((before, after)) = deployment_bodies() else {
        return;
    };
    let copy = before.clone();
    let mut group = c.benchmark_group("diff_deployment");
    // Equality of two equal bodies walks both whole, as a diff must.
    group.bench_function("Value equality of equal bodies (baseline)", |b| {
        b.iter(|| black_box(&before) == black_box(&copy))
    });
    group.bench_function("audit_diff", |b| {
        b.iter(|| audit_diff(black_box(&before), black_box(&after)))
    });
    group.bench_function("audit_diff rendered as log lines", |b| {
        b.iter(|| {
            audit_diff(black_box(&before), black_box(&after))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
    });
    group.finish();
}

fn ledger(c: &mut Criterion) {
    const CAPACITY: u64 = 100_000;
    let id = |n: u64| {
        SpanId::from_u64(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
            .unwrap_or_else(|| unreachable!())
    };
    let mut group = c.benchmark_group("ledger_at_100k");

    let mut set: HashSet<u64> = (0..CAPACITY).map(|n| id(n).to_u64()).collect();
    let mut next = CAPACITY;
    group.bench_function("HashSet insert new + remove oldest (baseline)", |b| {
        b.iter(|| {
            let fresh = set.insert(id(next).to_u64());
            set.remove(&id(next - CAPACITY).to_u64());
            next += 1;
            fresh
        })
    });

    let bounded = BoundedLedger::new(CAPACITY as usize);
    for n in 0..CAPACITY {
        bounded.first_sighting(id(n));
    }
    let mut next = CAPACITY;
    group.bench_function("first_sighting new id (evicts the oldest)", |b| {
        b.iter(|| {
            next += 1;
            bounded.first_sighting(black_box(id(next)))
        })
    });
    let known = id(next);
    group.bench_function("first_sighting known id", |b| {
        b.iter(|| bounded.first_sighting(black_box(known)))
    });
    group.finish();
}

/// Short runs: these are for reading ratios, not for publishing nanoseconds.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = audit_line, ids, span_building, diff, ledger
}
criterion_main!(hot_paths);
