//! What `kelemetry-tracing` costs a controller per reconcile, beside baselines measured in the same run.
//!
//! Every case runs one reconcile of a ConfigMap (an async body that opens one child span) under a subscriber with
//! the tracing-opentelemetry layer and an SDK tracer provider whose batch exporter discards:
//!
//! - `plain span`: the baseline, the reconcile inside an ordinary `info_span!("reconcile")` (a controller that
//!   already traces pays this);
//! - `ObjectTracing::reconciler`: the same body wrapped by the integration (object key, window, deterministic ids,
//!   `set_parent`, outcome recording, one boxed future);
//! - `+ custom activity`: the wrapped reconcile also records one activity through the exporter route;
//! - the pieces alone: `span_context` (key and ids of the object span) and `span_record` (one finished SDK span
//!   to a `SpanRecord`).
//!
//! ```text
//! cargo bench -p kelemetry-benches --bench controller_tracing
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::ConfigMap;
use kelemetry_core::DiscardExporter;
use kelemetry_tracing::{ActivityRecorder, ObjectTracing, SpanRecordExporter, span_record};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanEvents, SpanLinks};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

fn config_map() -> ConfigMap {
    let mut object = ConfigMap::default();
    object.metadata.name = Some("settings".into());
    object.metadata.namespace = Some("default".into());
    object.metadata.uid = Some("6f1c1a4e-8c1e-4c55-9f43-5a8e0d9f2b11".into());
    object.metadata.resource_version = Some("4711".into());
    object.metadata.generation = Some(3);
    object
}

/// The reconcile body every case runs: one child span, one event.
async fn body(object: Arc<ConfigMap>, _context: Arc<()>) -> Result<usize, Never> {
    async {
        tracing::info!("applying");
    }
    .instrument(tracing::info_span!("apply ConfigMap"))
    .await;
    Ok(object.metadata.name.as_deref().map_or(0, str::len))
}

fn reconcile(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            println!("skipping: no tokio runtime: {err}");
            return;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(SpanRecordExporter::new(
            Arc::new(DiscardExporter),
            runtime.handle().clone(),
        ))
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let object = Arc::new(config_map());
    let context = Arc::new(());
    let objects = ObjectTracing::new("prod", "configmap-sync")
        .with_activities(ActivityRecorder::exporter(Arc::new(DiscardExporter)));

    let mut group = c.benchmark_group("reconcile");
    group.bench_function("plain span", |b| {
        b.iter(|| {
            let span = tracing::info_span!("reconcile");
            let future = body(object.clone(), context.clone()).instrument(span);
            black_box(futures::executor::block_on(future))
        })
    });
    let mut traced = objects.reconciler(body);
    group.bench_function("ObjectTracing::reconciler", |b| {
        b.iter(|| {
            let future = traced(object.clone(), context.clone());
            black_box(futures::executor::block_on(future))
        })
    });
    let recording = objects.clone();
    let mut with_activity = objects.reconciler(move |object: Arc<ConfigMap>, context: Arc<()>| {
        let objects = recording.clone();
        async move {
            let told = objects
                .record_on(
                    &*object,
                    "scaled to 3 because queue depth 40",
                    [("replicas", "3")],
                )
                .await;
            black_box(told.is_ok());
            body(object, context).await
        }
    });
    group.bench_function("ObjectTracing::reconciler + custom activity", |b| {
        b.iter(|| {
            let future = with_activity(object.clone(), context.clone());
            black_box(futures::executor::block_on(future))
        })
    });
    group.finish();

    let mut pieces = c.benchmark_group("pieces");
    let at = jiff::Timestamp::now();
    pieces.bench_function("span_context", |b| {
        b.iter(|| black_box(objects.span_context(black_box(&*object), at)))
    });
    let data = span_data();
    pieces.bench_function("span_record", |b| {
        b.iter(|| black_box(span_record(black_box(&data), "configmap-sync")))
    });
    pieces.finish();
    drop(_guard);
    let _ = provider.shutdown();
}

/// A finished reconcile span as the SDK hands it to exporters.
fn span_data() -> SpanData {
    let context = |trace: u128, span: u64| {
        SpanContext::new(
            TraceId::from_bytes(trace.to_be_bytes()),
            SpanId::from_bytes(span.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        )
    };
    let start = SystemTime::now();
    SpanData {
        span_context: context(
            0x41a8_89b2_b708_ffd2_038c_1a4f_ef84_1c7e,
            0x1234_5678_9abc_def0,
        ),
        parent_span_id: SpanId::from_bytes(0x045c_44c0_a5a5_b7b5_u64.to_be_bytes()),
        parent_span_is_remote: true,
        span_kind: SpanKind::Internal,
        name: "reconcile".into(),
        start_time: start,
        end_time: start + Duration::from_millis(12),
        attributes: vec![
            KeyValue::new("object", "prod//configmaps/default/settings"),
            KeyValue::new("resourceVersion", "4711"),
            KeyValue::new("generation", 3),
            KeyValue::new("otel.status_code", "OK"),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Ok,
        instrumentation_scope: InstrumentationScope::builder("bench").build(),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = reconcile
}
criterion_main!(benches);
