//! A controller's reconcile spans and custom activities, through the real tracing → tracing-opentelemetry →
//! OpenTelemetry SDK path, into the embedded store next to Kelemetry's own spans, read back by the query side.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kelemetry_core::context::object_ref_of;
use kelemetry_core::{
    Activity, CancellationToken, MemoryExporter, Object, ObjectRef, Pipeline, SourceKind, SpanKind,
    SpanRecord,
};
use kelemetry_query::display::{BaseMode, DisplayKind};
use kelemetry_query::{DisplayMode, ViewRequest, assemble, display};
use kelemetry_store::SpanStore;
use kelemetry_tracing::{
    ActivityRecorder, Attached, Attachment, ControllerTracing, ObjectTracing, RecordError,
    SetupError, TracerSetup, Windowing,
};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn config_map(name: &str) -> ConfigMap {
    let mut object = ConfigMap::default();
    object.metadata.name = Some(name.into());
    object.metadata.namespace = Some("default".into());
    object.metadata.uid = Some(format!("uid-{name}"));
    object.metadata.resource_version = Some("42".into());
    object
}

/// A controller's tracing exporting through Kelemetry span records into memory, and the subscriber using it.
struct Controller {
    spans: Arc<MemoryExporter>,
    telemetry: ControllerTracing,
    guard: Option<tracing::subscriber::DefaultGuard>,
}

impl Controller {
    fn start() -> Self {
        Self::start_with(TracerSetup::new("tracetest", "configmap-sync"))
    }

    fn start_with(setup: TracerSetup) -> Self {
        let spans = Arc::new(MemoryExporter::new(10_000));
        let telemetry = setup.with_exporter(spans.clone()).build().unwrap();
        let subscriber = tracing_subscriber::registry().with(telemetry.layer());
        let guard = Some(tracing::subscriber::set_default(subscriber));
        Self {
            spans,
            telemetry,
            guard,
        }
    }

    /// Ends tracing and flushes the provider.
    async fn finish(mut self) -> Vec<SpanRecord> {
        self.guard.take();
        self.telemetry.flush().await.unwrap();
        self.spans.spans()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the ConfigMap is broken")]
struct Broken;

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_spans_are_children_of_the_object_span_and_show_inside_it() {
    let controller = Controller::start();
    // Custom activities go to the setup's exporter too.
    let objects = controller.telemetry.objects().clone();
    let settings = Arc::new(config_map("settings"));
    let context = Arc::new(());

    // The Controller helper wraps the reconcile function: the common case.
    let mut reconcile = objects.reconciler(|object: Arc<ConfigMap>, _ctx: Arc<()>| {
        let objects = objects.clone();
        async move {
            async {
                tracing::info!("applying");
            }
            .instrument(tracing::info_span!("apply ConfigMap"))
            .await;
            objects
                .record_on(
                    &*object,
                    "scaled to 3 because queue depth 40",
                    [("replicas", "3")],
                )
                .await
                .unwrap();
            Ok::<_, Broken>("done")
        }
    });
    assert_eq!(
        reconcile(settings.clone(), context.clone()).await.unwrap(),
        "done"
    );
    // A failing reconcile of another object.
    let mut failing =
        objects.reconciler(|_: Arc<ConfigMap>, _: Arc<()>| async { Err::<(), _>(Broken) });
    assert!(
        failing(Arc::new(config_map("other")), context)
            .await
            .is_err()
    );

    let spans = controller.finish().await;
    let expected = objects
        .span_context(&*settings, jiff::Timestamp::now())
        .unwrap();
    let reconcile = spans
        .iter()
        .find(|s| s.name == "reconcile" && s.trace_id == expected.trace_id)
        .unwrap_or_else(|| panic!("no reconcile span in the object's trace: {spans:#?}"));
    assert_eq!(reconcile.parent_span_id, Some(expected.span_id));
    assert_eq!(reconcile.kind, SpanKind::Activity("configmap-sync".into()));
    assert_eq!(
        reconcile.attribute("object"),
        Some("tracetest//configmaps/default/settings")
    );
    assert_eq!(reconcile.attribute("resourceVersion"), Some("42"));
    assert_eq!(reconcile.attribute("otel.status_code"), Some("OK"));
    let apply = spans.iter().find(|s| s.name == "apply ConfigMap").unwrap();
    assert_eq!(apply.trace_id, expected.trace_id);
    assert_eq!(apply.parent_span_id, Some(reconcile.span_id));
    assert!(
        apply
            .logs
            .iter()
            .any(|log| log.message.contains("applying"))
    );
    let failed = spans
        .iter()
        .find(|s| {
            s.name == "reconcile" && s.attribute("object").is_some_and(|o| o.ends_with("/other"))
        })
        .unwrap();
    assert_eq!(failed.attribute("otel.status_code"), Some("ERROR"));
    assert_eq!(
        failed.attribute("otel.status_description"),
        Some("the ConfigMap is broken")
    );
    // The custom activity, with the object span the exporter route writes beside it.
    let activity = spans
        .iter()
        .find(|s| s.name == "scaled to 3 because queue depth 40")
        .unwrap();
    assert_eq!(activity.trace_id, expected.trace_id);
    assert_eq!(activity.parent_span_id, Some(expected.span_id));
    assert_eq!(activity.attribute("replicas"), Some("3"));
    assert!(
        spans
            .iter()
            .any(|s| s.kind == SpanKind::Object && s.span_id == expected.span_id)
    );

    // Kelemetry's own activity for the same object (an audit record), then everything into one store.
    let window = Windowing::default().window_of(jiff::Timestamp::now());
    let object_ref = object_ref_of("tracetest", &*settings).unwrap();
    let audit = Activity::new(
        Object::new(object_ref.clone()),
        SourceKind::Audit,
        jiff::Timestamp::now(),
        "configmap-sync update",
        "audit-1",
    );
    let mut all = vec![
        kelemetry_core::span::object_span(&object_ref, window),
        kelemetry_core::span::activity_span(&audit, window),
    ];
    all.extend(spans);
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    store.write_spans(&all).unwrap();
    let reader = store;
    let view = assemble(&reader, &ViewRequest::new(object_ref.key.clone()))
        .await
        .unwrap();

    // tree: the reconcile span is a child of the object, the span it opened nests under it.
    let tree = display(
        &view,
        DisplayMode {
            base: BaseMode::Tree,
            modifier: None,
        },
    );
    let root = tree.root().unwrap();
    let under_root: Vec<(&str, &str)> = tree
        .children_of(root.span_id)
        .map(|s| (s.service.as_str(), s.operation.as_str()))
        .collect();
    assert!(
        under_root.contains(&("configmap-sync", "reconcile")),
        "{under_root:?}"
    );
    assert!(
        under_root.contains(&("audit", "configmap-sync update")),
        "{under_root:?}"
    );
    assert!(
        under_root.contains(&("configmap-sync", "scaled to 3 because queue depth 40")),
        "{under_root:?}"
    );
    let reconcile_span = tree
        .children_of(root.span_id)
        .find(|s| s.operation == "reconcile")
        .unwrap();
    assert_eq!(reconcile_span.kind, DisplayKind::Activity);
    let nested: Vec<&str> = tree
        .children_of(reconcile_span.span_id)
        .map(|s| s.operation.as_str())
        .collect();
    assert_eq!(nested, ["apply ConfigMap"]);

    // tracing: activities collapse into logs of the object span, the controller's among them.
    let tracing_view = display(
        &view,
        DisplayMode {
            base: BaseMode::Tracing,
            modifier: None,
        },
    );
    let fields: Vec<&str> = tracing_view.spans[0]
        .logs
        .iter()
        .filter_map(|log| log.field("configmap-sync"))
        .collect();
    assert!(fields.contains(&"reconcile"), "{fields:?}");
    assert!(fields.contains(&"apply ConfigMap"), "{fields:?}");
    assert!(
        tracing_view.spans[0]
            .logs
            .iter()
            .any(|log| log.field("audit").is_some())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attaching_a_started_span_links_it_and_link_mode_keeps_the_own_trace() {
    let controller = Controller::start();
    let objects = ObjectTracing::new("tracetest", "configmap-sync");
    let linked = objects.clone().with_attachment(Attachment::Link);
    let settings = config_map("settings");
    let expected = objects
        .span_context(&settings, jiff::Timestamp::now())
        .unwrap();

    // Inside an entered span (as in `#[instrument]` or kube's own span) the parent can no longer change.
    let outer = tracing::info_span!("my own reconcile");
    let attached = outer.in_scope(|| objects.attach_current(&settings).unwrap());
    assert_eq!(attached, Attached::Linked(expected));
    // A fresh span is parented.
    let fresh = tracing::info_span!("fresh");
    assert_eq!(
        objects.attach(&fresh, &settings).unwrap(),
        Attached::Parented(expected)
    );
    fresh.in_scope(|| {});
    drop(fresh);
    // Link mode never parents.
    linked
        .traced(&settings, async { Ok::<_, Broken>(()) })
        .await
        .unwrap();
    drop(outer);
    // Without a name there is no object span.
    let mut unnamed = ConfigMap::default();
    unnamed.metadata.generate_name = Some("x-".into());
    assert!(objects.attach_current(&unnamed).is_err());

    let spans = controller.finish().await;
    let own = spans.iter().find(|s| s.name == "my own reconcile").unwrap();
    assert_ne!(own.trace_id, expected.trace_id);
    assert_eq!(
        own.attribute("link.0"),
        Some(format!("{}-{}", expected.trace_id, expected.span_id).as_str())
    );
    let fresh = spans.iter().find(|s| s.name == "fresh").unwrap();
    assert_eq!(fresh.parent_span_id, Some(expected.span_id));
    let link_mode = spans.iter().find(|s| s.name == "reconcile").unwrap();
    assert_ne!(link_mode.trace_id, expected.trace_id);
    assert!(link_mode.attribute("link.0").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn activities_through_a_pipeline_get_their_object_span_from_the_pipeline() {
    let exporter = Arc::new(MemoryExporter::new(1_000));
    let pipeline = Pipeline::builder().exporter(exporter.clone()).build();
    let objects = ObjectTracing::new("tracetest", "configmap-sync")
        .with_activities(ActivityRecorder::pipeline(pipeline.sink()));
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));
    let settings = config_map("settings");
    objects
        .record_on(&settings, "synced 3 keys", [("keys", "3")])
        .await
        .unwrap();
    // Without a recorder, recording says so.
    let bare = ObjectTracing::new("tracetest", "configmap-sync");
    assert!(matches!(
        bare.record(bare.activity(&settings, "x").unwrap()).await,
        Err(RecordError::NoRecorder)
    ));
    drop(objects);
    let report = running.await.unwrap();
    assert_eq!(report.activities, 1);
    let spans = exporter.spans();
    let activity = spans.iter().find(|s| s.name == "synced 3 keys").unwrap();
    assert_eq!(activity.service_name(), "configmap-sync");
    assert_eq!(activity.attribute("keys"), Some("3"));
    assert_eq!(activity.attribute("resourceVersion"), Some("42"));
    let object = spans.iter().find(|s| s.kind == SpanKind::Object).unwrap();
    assert_eq!(activity.parent_span_id, Some(object.span_id));
    assert_eq!(object.attribute("uid"), Some("uid-settings"));
    assert_eq!(
        ObjectRef::new(object.object_key().unwrap(), "v1", None).key,
        ObjectTracing::new("tracetest", "x")
            .object_key(&settings)
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_windowing_given_once_places_reconcile_spans_and_activities_alike() {
    let windowing = Windowing::new(60).unwrap();
    let controller = Controller::start_with(
        TracerSetup::new("tracetest", "configmap-sync").with_windowing(windowing),
    );
    let objects = controller.telemetry.objects().clone();
    assert_eq!(objects.windowing(), windowing);
    let settings = config_map("settings");
    let before = jiff::Timestamp::now();
    objects
        .traced(&settings, async {
            objects
                .record_on(&settings, "synced 3 keys", [("keys", "3")])
                .await
        })
        .await
        .unwrap();
    let after = jiff::Timestamp::now();
    let spans = controller.finish().await;
    // The minute-long window of the run (or the next one, when the run crossed a minute).
    let traces: Vec<_> = [before, after]
        .iter()
        .map(|at| objects.span_context(&settings, *at).unwrap().trace_id)
        .collect();
    let default_window = ObjectTracing::new("tracetest", "configmap-sync")
        .span_context(&settings, before)
        .unwrap();
    for name in ["reconcile", "synced 3 keys"] {
        let span = spans.iter().find(|s| s.name == name).unwrap();
        assert!(traces.contains(&span.trace_id), "{name}: {span:#?}");
        assert_ne!(span.trace_id, default_window.trace_id, "{name}");
    }
}

#[test]
fn an_exporter_needs_a_runtime_and_a_bare_setup_does_not() {
    let with_exporter = TracerSetup::new("tracetest", "configmap-sync")
        .with_exporter(Arc::new(MemoryExporter::new(10)))
        .build();
    assert!(matches!(with_exporter, Err(SetupError::NoRuntime)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let given = TracerSetup::new("tracetest", "configmap-sync")
        .with_exporter(Arc::new(MemoryExporter::new(10)))
        .with_runtime(runtime.handle().clone())
        .build()
        .unwrap();
    assert!(format!("{given:?}").contains("memory"), "{given:?}");
    let bare = TracerSetup::new("tracetest", "configmap-sync")
        .build()
        .unwrap();
    assert!(matches!(
        runtime.block_on(
            bare.objects()
                .record_on(&config_map("x"), "x", [("a", "b")])
        ),
        Err(RecordError::NoRecorder)
    ));
    runtime.block_on(bare.shutdown()).unwrap();
    drop(given);
}
