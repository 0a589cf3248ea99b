//! Assembling a full-tree view of a Deployment with 1,000 Pods over two windows from the embedded store (issue 4:
//! the target is 20 ms), beside a baseline measured in the same run: reading the same spans trace by trace
//! through the same reader, without assembling.
//!
//! The store is built in a temporary folder from spans made by the core's span builders: a Deployment, two
//! ReplicaSets of 500 Pods each, owner links written both ways, one Kubernetes Event per object per window.
//!
//! ```text
//! cargo bench -p kelemetry-benches --bench assembly
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use kelemetry_core::span::{activity_span, link_span, object_span};
use kelemetry_core::{
    Activity, Link, Object, ObjectKey, ObjectRef, SourceKind, SpanRecord, Windowing,
};
use kelemetry_query::display::{BaseMode, DisplayMode, Modifier};
use kelemetry_query::{Reader, ViewRequest, assemble, display};
use kelemetry_store::SpanStore;

const PODS: usize = 1_000;

fn owner_links(
    child: &ObjectRef,
    parent: &ObjectRef,
    window: kelemetry_core::Window,
) -> [SpanRecord; 2] {
    let up = Link::parent(parent.clone())
        .with_class("children")
        .with_dedup_id("owner");
    let down = Link::child(child.clone())
        .with_class("children")
        .with_dedup_id("owner");
    [
        link_span(child, window, &up),
        link_span(parent, window, &down),
    ]
}

fn event(
    object: &ObjectRef,
    at: Timestamp,
    window: kelemetry_core::Window,
    title: &str,
) -> SpanRecord {
    let activity = Activity::new(
        Object::new(object.clone()),
        SourceKind::Event,
        at,
        title,
        format!("{}-{at}-{title}", object.key),
    );
    activity_span(&activity, window)
}

/// The store and the Deployment's key.
fn build_store(dir: &std::path::Path) -> (SpanStore, ObjectKey) {
    let store = SpanStore::create(dir).expect("create the store");
    let windowing = Windowing::default();
    let deployment = ObjectRef::new(
        ObjectKey::new("bench", "apps", "deployments", "default", "web"),
        "v1",
        None,
    );
    let first: Timestamp = "2024-05-01T12:10:00Z".parse().expect("a time");
    for (w, at) in [first, first + SignedDuration::from_mins(30)]
        .into_iter()
        .enumerate()
    {
        let window = windowing.window_of(at);
        let mut spans = vec![
            object_span(&deployment, window),
            event(&deployment, at, window, "ScalingReplicaSet"),
        ];
        for r in 0..2 {
            let rs = ObjectRef::new(
                ObjectKey::new(
                    "bench",
                    "apps",
                    "replicasets",
                    "default",
                    format!("web-{r}"),
                ),
                "v1",
                None,
            );
            spans.push(object_span(&rs, window));
            spans.push(event(&rs, at, window, "SuccessfulCreate"));
            spans.extend(owner_links(&rs, &deployment, window));
            for p in 0..PODS / 2 {
                let pod = ObjectRef::new(
                    ObjectKey::new("bench", "", "pods", "default", format!("web-{r}-{p:04}")),
                    "v1",
                    None,
                );
                let at = at + SignedDuration::from_millis(i64::try_from(p).unwrap_or(0));
                spans.push(object_span(&pod, window));
                spans.push(event(
                    &pod,
                    at,
                    window,
                    if w == 0 { "Scheduled" } else { "Killing" },
                ));
                spans.extend(owner_links(&pod, &rs, window));
            }
        }
        store.write_spans(&spans).expect("write spans");
    }
    (store, deployment.key)
}

fn assembly(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (store, deployment) = build_store(dir.path());
    let reader = store;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let mode = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(Modifier::FullTree),
    };
    let mut request = ViewRequest::new(deployment.clone());
    request.selector = mode.selector();

    // Sanity: the view holds every object.
    let view = runtime
        .block_on(assemble(&reader, &request))
        .expect("assemble");
    let trace = display(&view, mode);
    assert_eq!(trace.spans.len(), 1 + 2 + PODS, "every object is a span");
    let keys: Vec<ObjectKey> = view
        .root
        .walk()
        .into_iter()
        .map(|(_, n)| n.history.key.clone())
        .collect();

    let mut group = c.benchmark_group("assembly");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(
        "full tree of 1,000 pods, 2 windows: assemble + display",
        |b| {
            b.iter(|| {
                let view = runtime
                    .block_on(assemble(&reader, &request))
                    .expect("assemble");
                black_box(display(&view, mode))
            })
        },
    );
    for base in [BaseMode::Tree, BaseMode::Grouped] {
        let mode = DisplayMode {
            base,
            modifier: Some(Modifier::FullTree),
        };
        group.bench_function(format!("display only: {mode}"), |b| {
            b.iter(|| black_box(display(&view, mode)))
        });
    }
    group.bench_function("baseline: read the same traces, no assembly", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let (from, to) = (Timestamp::MIN, Timestamp::MAX);
                let mut spans = 0;
                for key in &keys {
                    for trace in reader.object_traces(key, from, to).await.expect("windows") {
                        spans += reader.trace(trace).await.expect("spans").len();
                    }
                }
                black_box(spans)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, assembly);
criterion_main!(benches);
