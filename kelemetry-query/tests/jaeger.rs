//! The read side with a real Jaeger v2 (built from its Go module by `scripts/jaeger/build`), on the kspan recording
//! (`../shared/fixtures/events/kspan-kind-2021/deployment-2-pods.yaml`):
//!
//! 1. the recording replayed through the pipeline into the embedded store and, over OTLP gRPC and HTTP, into two
//!    Jaegers; the `JaegerReader` assembles the same views as the store (same spans, same tree);
//! 2. Jaeger Query running on our remote storage service: `/api/traces/{id}` **from Jaeger** in every display mode
//!    has the tree and the logs the mode promises.
//!
//! Runs only with `KELEMETRY_JAEGER=1` and the fixtures present.
#![cfg(all(feature = "jaeger-reader", feature = "remote-storage"))]
#![allow(clippy::unwrap_used)]

#[path = "../../kelemetry-exporters/tests/support/jaeger.rs"]
mod jaeger;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::{
    CancellationToken, DiffDecorator, ObjectKey, ObjectSelector, Pipeline, PipelineReport,
    ResourceMap, Windowing,
};
use kelemetry_exporters::{OtlpConfig, OtlpExporter, StoreExporter};
use kelemetry_linkers::OwnerLinker;
use kelemetry_query::jaeger_reader::JaegerReader;
use kelemetry_query::{
    DisplayKind, DisplayMode, LinkSelector, Reader, TraceQuery, ViewRequest, assemble, display,
};
use kelemetry_sources::ObjectFileSource;
use kelemetry_store::{SpanStore, ViewLimits};
use serde_json::Value;

fn recording() -> Option<PathBuf> {
    kelemetry_testkit::fixture("events/kspan-kind-2021/deployment-2-pods.yaml")
}

/// Replays the recording (cluster `local`, owner links, diffs) into the store at `dir` and `otlp` exporters.
async fn replay(
    file: &Path,
    dir: &Path,
    otlp: Vec<Arc<OtlpExporter>>,
) -> (SpanStore, PipelineReport) {
    let store = SpanStore::create(dir).unwrap();
    let resources = Arc::new(ResourceMap::builtin());
    let mut builder = Pipeline::builder()
        .source(Box::new(
            ObjectFileSource::new(file, "local").with_resource_map(resources.clone()),
        ))
        .decorator(Arc::new(DiffDecorator))
        .linker(Arc::new(OwnerLinker::new(resources)))
        .exporter(Arc::new(StoreExporter::new(store.clone())));
    for exporter in otlp {
        builder = builder.exporter(exporter);
    }
    let report = builder.build().run(CancellationToken::new()).await;
    (store, report)
}

async fn px(reader: &dyn Reader) -> ObjectKey {
    let found = reader
        .find_objects(
            &ObjectSelector::any()
                .with_resource("deployments")
                .with_name("px"),
            10,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "one px Deployment: {found:?}");
    found[0].clone()
}

/// The range of the recording: the px Deployment's windows, a minute either side.
async fn recorded_range(reader: &dyn Reader, key: &ObjectKey) -> (Timestamp, Timestamp) {
    let traces = reader
        .object_traces(key, Timestamp::MIN, Timestamp::MAX)
        .await
        .unwrap();
    let mut spans = Vec::new();
    for trace in traces {
        spans.extend(reader.trace(trace).await.unwrap());
    }
    let from = spans.iter().map(|s| s.start).min().unwrap();
    let to = spans.iter().map(|s| s.end).max().unwrap();
    let minute = SignedDuration::from_mins(1);
    (
        from.saturating_sub(minute).unwrap(),
        to.saturating_add(minute).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_exported_over_otlp_reads_back_as_the_same_views() {
    if !jaeger::enabled("a_replay_exported_over_otlp_reads_back_as_the_same_views") {
        return;
    }
    let Some(file) = recording() else { return };
    let over_grpc = jaeger::Jaeger::start("query-grpc");
    let over_http = jaeger::Jaeger::start("query-http");
    let grpc = Arc::new(
        OtlpExporter::new(OtlpConfig::grpc(over_grpc.otlp_grpc()).with_gzip(true)).unwrap(),
    );
    let http = Arc::new(
        OtlpExporter::new(OtlpConfig::http(over_http.otlp_http()).with_gzip(true)).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = replay(&file, dir.path(), vec![grpc.clone(), http.clone()]).await;
    assert_eq!(report.spans_dropped, 0, "{report:?}");
    for exporter in [&grpc, &http] {
        let otlp = exporter.stats().report();
        assert_eq!(
            otlp.spans_exported,
            report.spans(),
            "{}: {otlp:?}",
            exporter.destination()
        );
        assert_eq!(otlp.spans_lost(), 0);
    }

    let store_reader = store;
    let deployment = px(&store_reader).await;
    let range = recorded_range(&store_reader, &deployment).await;
    let pods = ObjectSelector::any().with_resource("pods");
    let stored_pods: BTreeSet<ObjectKey> = store_reader
        .find_objects(&pods, 100)
        .unwrap()
        .into_iter()
        .collect();
    assert!(stored_pods.len() >= 2, "{stored_pods:?}");

    for jaeger in [&over_grpc, &over_http] {
        let reader = JaegerReader::new(jaeger.query_http(), Windowing::default()).unwrap();
        // Jaeger stores what its receiver took after a short batching delay.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = reader.find_objects(&pods, 100).await.unwrap();
            if found.len() == stored_pods.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            found.into_iter().collect::<BTreeSet<_>>(),
            stored_pods,
            "{}",
            jaeger.log_tail()
        );
        assert_eq!(px(&reader).await, deployment);
        for selector in [
            LinkSelector::none(),
            LinkSelector::full_tree(),
            LinkSelector::ancestors(),
        ] {
            for (from, to) in [range, (Timestamp::MIN, Timestamp::MAX)] {
                let request = ViewRequest {
                    from,
                    to,
                    selector: selector.clone(),
                    ..ViewRequest::new(deployment.clone())
                };
                let expected = assemble(&store_reader, &request).await.unwrap();
                let got = assemble(&reader, &request).await.unwrap();
                assert_eq!(got, expected, "view of {deployment} from {}", jaeger.name);
                for mode in DisplayMode::all() {
                    assert_eq!(display(&got, mode), display(&expected, mode), "{mode}");
                }
            }
        }
        // The full tree of the Deployment: its ReplicaSet(s) under it and both Pods below.
        let request = ViewRequest {
            from: range.0,
            to: range.1,
            selector: LinkSelector::full_tree(),
            ..ViewRequest::new(deployment.clone())
        };
        let view = assemble(&reader, &request).await.unwrap();
        let below: BTreeSet<String> = view
            .root
            .walk()
            .iter()
            .map(|(_, n)| n.history.key.resource.to_string())
            .collect();
        assert_eq!(
            below,
            BTreeSet::from(["deployments".into(), "replicasets".into(), "pods".into()])
        );
        assert!(!view.root.history.activities.is_empty());
    }
}

/// A Jaeger JSON trace: spans by id, children by parent.
struct JaegerTrace {
    spans: BTreeMap<String, Value>,
    services: BTreeMap<String, String>,
}

impl JaegerTrace {
    fn new(trace: &Value) -> Self {
        let mut spans = BTreeMap::new();
        let mut services = BTreeMap::new();
        for span in trace["spans"].as_array().unwrap() {
            let id = span["spanID"].as_str().unwrap().to_owned();
            let process = span["processID"].as_str().unwrap();
            services.insert(
                id.clone(),
                trace["processes"][process]["serviceName"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            spans.insert(id, span.clone());
        }
        Self { spans, services }
    }

    fn parent(&self, id: &str) -> Option<String> {
        self.spans[id]["references"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["refType"] == "CHILD_OF")
            .map(|r| r["spanID"].as_str().unwrap().to_owned())
    }

    fn tag(&self, id: &str, key: &str) -> Option<String> {
        self.spans[id]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| t["value"].to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_query_on_our_remote_storage_shows_every_display_mode() {
    if !jaeger::enabled("jaeger_query_on_our_remote_storage_shows_every_display_mode") {
        return;
    }
    let Some(file) = recording() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = replay(&file, dir.path(), Vec::new()).await;
    let views = store.views(ViewLimits::default()).unwrap();
    let query = Arc::new(TraceQuery::new(Arc::new(store), Arc::new(views)));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kelemetry_query::remote_storage::serve(
        listener,
        query.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let jaeger = jaeger::Jaeger::start_with("remote-storage", Some(&address));
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{}{path}", jaeger.query_http());
        async move {
            let response = client.get(&url).send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert!(status.is_success(), "{url}: {status} {body}");
            body
        }
    };

    // Jaeger's services are our display modes, the default first.
    let services = get("/api/services".into()).await;
    let services: Vec<&str> = services["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(services.len(), DisplayMode::all().len(), "{services:?}");
    assert!(
        services.contains(&"tracing") && services.contains(&"tracing [full tree]"),
        "{services:?}"
    );
    let operations = get("/api/services/tracing/operations".into()).await;
    assert_eq!(operations["data"], serde_json::json!(["local"]));

    // Search as a person does in Jaeger's form: mode, cluster, tags, the recording's time range.
    let found = get(format!(
        "/api/traces?service={}&operation=local&tags={}&start=1600000000000000&end=1700000000000000&limit=5",
        "tracing%20%5Bfull%20tree%5D",
        "%7B%22resource%22%3A%22deployments%22%2C%22name%22%3A%22px%22%7D"
    ))
    .await;
    let data = found["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{found}");
    let id = data[0]["traceID"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ff21000000e1e3e7"), "{id}");

    for mode in DisplayMode::all() {
        let id = format!("ff{:08x}{}", mode.id(), &id[10..]);
        let answer = get(format!("/api/traces/{id}")).await;
        assert_eq!(
            answer["data"].as_array().unwrap().len(),
            1,
            "{mode}: {answer}"
        );
        let shown = JaegerTrace::new(&answer["data"][0]);
        assert_eq!(answer["data"][0]["traceID"], id.as_str());
        let ours = query
            .get(u128::from_str_radix(&id, 16).unwrap())
            .await
            .unwrap();
        // The same tree: every span with its parent, service, operation and number of logs.
        assert_eq!(shown.spans.len(), ours.spans.len(), "{mode}");
        for span in &ours.spans {
            let sid = format!("{:016x}", span.span_id);
            let got = &shown.spans[&sid];
            assert_eq!(
                shown.parent(&sid),
                span.parent.map(|p| format!("{p:016x}")),
                "{mode}: parent of {sid}"
            );
            assert_eq!(shown.services[&sid], span.service, "{mode}");
            assert_eq!(got["operationName"], span.operation.as_str(), "{mode}");
            assert_eq!(
                got["logs"].as_array().unwrap().len(),
                span.logs.len(),
                "{mode}: logs of {}",
                span.operation
            );
            for (key, value) in &span.tags {
                assert_eq!(
                    shown.tag(&sid, key),
                    Some(Value::String(value.to_string()).to_string()),
                    "{mode}: {key}"
                );
            }
        }
        // What each mode promises.
        let count = |kind: DisplayKind| ours.spans.iter().filter(|s| s.kind == kind).count();
        let root = ours.spans.first().unwrap();
        assert!(
            root.parent.is_none() && root.operation.starts_with("px"),
            "{mode}: root {}",
            root.operation
        );
        match mode.base {
            kelemetry_query::BaseMode::Tracing => {
                assert_eq!(count(DisplayKind::Activity), 0, "{mode}");
                assert!(
                    ours.spans.iter().any(|s| !s.logs.is_empty()),
                    "{mode}: activities as logs"
                );
            }
            kelemetry_query::BaseMode::Grouped => {
                // The recording has Kubernetes Events only: they stay as logs on the objects, so no source
                // group spans and no activity spans.
                assert_eq!(
                    count(DisplayKind::SourceGroup) + count(DisplayKind::Activity),
                    0,
                    "{mode}"
                );
                assert!(
                    ours.spans.iter().any(|s| !s.logs.is_empty()),
                    "{mode}: events as logs"
                );
            }
            kelemetry_query::BaseMode::Tree | kelemetry_query::BaseMode::Timeline => {
                assert!(count(DisplayKind::Activity) > 0, "{mode}")
            }
        }
        if mode
            == (DisplayMode {
                base: kelemetry_query::BaseMode::Tracing,
                modifier: Some(kelemetry_query::Modifier::FullTree),
            })
        {
            // One root (the Deployment), its ReplicaSet(s) as children, the Pods under them, events as logs.
            let children: Vec<_> = ours.children_of(root.span_id).collect();
            assert!(
                !children.is_empty() && children.iter().all(|c| c.service.contains("replicasets")),
                "{mode}"
            );
            let pods: usize = children
                .iter()
                .map(|c| {
                    ours.children_of(c.span_id)
                        .filter(|p| p.service.contains("pods"))
                        .count()
                })
                .sum();
            assert!(pods >= 2, "{mode}: {pods} pods");
            let event_logs = shown
                .spans
                .values()
                .flat_map(|s| s["logs"].as_array().unwrap().iter())
                .count();
            assert!(event_logs > 0);
        }
    }

    drop(jaeger);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
