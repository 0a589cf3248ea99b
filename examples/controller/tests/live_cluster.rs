//! End to end on a live test cluster (`KELEMETRY_E2E=1`; see kelemetry-testkit): the apiserver sends its audit
//! batches to a `kelemetry run` process (webhook, Events, object watch, embedded store); the example controller
//! runs against the cluster as the source of an in-process pipeline, its spans exported through a `TracerSetup`;
//! a `ConfigMapSync` is created and changed with kubectl. Then the controller's pipeline is shut down through its
//! token, kelemetry is stopped, the controller's spans are written into the same store (a
//! store has one writer at a time; in production both write to Jaeger or Tempo over OTLP), and the trace view of
//! the `ConfigMapSync` must show the controller's reconcile spans inside the resource's span, next to the audit
//! records of the same writes, and the ConfigMap it writes under it with the controller's activity.
//!
//! The `kelemetry` binary is taken from the target dir of this test (built by `cargo test --workspace`), or built
//! with cargo first.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use configmap_sync::{FIELD_MANAGER, SyncController};
use kelemetry_core::{CancellationToken, MemoryExporter, ObjectKey, Pipeline, StopCause};
use kelemetry_query::display::{BaseMode, DisplayKind, Modifier};
use kelemetry_query::{DisplayMode, DisplayTrace, ViewRequest, assemble, display};
use kelemetry_store::SpanStore;
use kelemetry_testkit::{
    ClusterOptions, KelemetryProcess, TestCluster, e2e_enabled, free_loopback_port, wait_until,
};
use kelemetry_tracing::TracerSetup;
use tracing_subscriber::layer::SubscriberExt;

/// The `kelemetry` binary of this workspace's target dir, built when missing.
fn kelemetry_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/kelemetry
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join("kelemetry");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", "kelemetry-cli", "--bin", "kelemetry"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status()
            .unwrap();
        assert!(status.success(), "building kelemetry failed");
    }
    assert!(
        binary.exists(),
        "no kelemetry binary at {}",
        binary.display()
    );
    binary
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn synced_generation(cluster: &TestCluster, name: &str) -> Option<i64> {
    let sync = cluster
        .kubectl_json(["get", "configmapsyncs.example.kelemetry.io", name])
        .ok()?;
    sync["status"]["syncedGeneration"].as_i64()
}

fn wait_synced(cluster: &TestCluster, generation: i64) {
    wait_until(
        &format!("the controller synced generation {generation}"),
        Duration::from_secs(60),
        || Ok((synced_generation(cluster, "demo-sync") == Some(generation)).then_some(())),
    )
    .unwrap();
}

fn view(trace: &kelemetry_query::TraceView, base: BaseMode) -> DisplayTrace {
    display(
        trace,
        DisplayMode {
            base,
            modifier: Some(Modifier::FullTree),
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_spans_show_inside_the_custom_resource_next_to_the_audit_records() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let port = free_loopback_port().unwrap();
    let cluster = TestCluster::start_with(ClusterOptions {
        audit_webhook_url: Some(format!("http://127.0.0.1:{port}/audit/tracetest")),
        ..ClusterOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kelemetry.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: tracetest\n\
             kubernetes:\n  kubeconfig: {kubeconfig}\n\
             sources:\n  webhook:\n    listen: 127.0.0.1:{port}\n  events:\n    watermark:\n      name: e2e-controller\n  objectWatch: {{}}\n\
             exporters:\n  store:\n    path: store\n",
            kubeconfig = cluster.kubeconfig().display(),
        ),
    )
    .unwrap();

    // The CRD first, so that kelemetry's discovery knows the resource.
    let crd = serde_json::to_string(&configmap_sync::crd()).unwrap();
    cluster
        .kubectl_with_input(["apply", "-f", "-"], &crd)
        .unwrap();
    cluster
        .kubectl([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/configmapsyncs.example.kelemetry.io",
        ])
        .unwrap();
    let kelemetry = KelemetryProcess::start(&kelemetry_binary(), &config, "warn");
    // Ready once its Events source has stored its watermark (it does so before it watches).
    kelemetry_testkit::wait_until("the Events watermark", Duration::from_secs(60), || {
        let found = cluster.kubectl_json([
            "get",
            "configmaps",
            "--field-selector=metadata.name=e2e-controller",
        ])?;
        Ok(found["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
            .then_some(()))
    })
    .unwrap();

    // The controller, in this process, as the source of a pipeline: its spans and activities into memory.
    let spans = Arc::new(MemoryExporter::new(100_000));
    let telemetry = TracerSetup::new("tracetest", FIELD_MANAGER)
        .with_exporter(spans.clone())
        .build()
        .unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(telemetry.layer()))
        .unwrap();
    let pipeline = Pipeline::builder()
        .exporter(spans.clone())
        .source(Box::new(SyncController::new(
            client(cluster.kubeconfig()).await,
            telemetry.objects().clone(),
        )))
        .stop_when_a_source_ends(true)
        .build();
    let shutdown = CancellationToken::new();
    let controller = tokio::spawn(pipeline.run(shutdown.clone()));

    // Create, then change, the custom resource.
    let resource = serde_json::json!({
        "apiVersion": "example.kelemetry.io/v1",
        "kind": "ConfigMapSync",
        "metadata": {"name": "demo-sync", "namespace": "default"},
        "spec": {"configMap": "demo-settings", "data": {"color": "blue"}},
    });
    let cluster_ref = &cluster;
    let resource_text = resource.to_string();
    tokio::task::block_in_place(|| {
        cluster_ref
            .kubectl_with_input(["apply", "-f", "-"], &resource_text)
            .unwrap();
        wait_synced(cluster_ref, 1);
        // Pacing: the change comes a while after the creation, as a user's would.
        std::thread::sleep(Duration::from_secs(3));
        cluster_ref
            .kubectl([
                "patch",
                "configmapsyncs.example.kelemetry.io",
                "demo-sync",
                "--type=merge",
                "-p",
                r#"{"spec":{"data":{"color":"green","size":"large"}}}"#,
            ])
            .unwrap();
        wait_synced(cluster_ref, 2);
        let data = cluster_ref
            .kubectl_json(["get", "configmap", "demo-settings"])
            .unwrap();
        assert_eq!(data["data"]["size"], "large");
        // The apiserver sends audit batches every second: wait until the patch's audit span is in the store (read
        // beside the running kelemetry).
        let written = dir.path().join("store");
        kelemetry_testkit::wait_until("the patch in the store", Duration::from_secs(60), || {
            let Ok(store) = SpanStore::open_read_only(&written) else {
                return Ok(None);
            };
            let found = store.spans().unwrap().filter_map(Result::ok).any(|span| {
                span.name.ends_with(" patch")
                    && span
                        .attributes
                        .iter()
                        .any(|(key, value)| key == "name" && value == "demo-sync")
            });
            Ok(found.then_some(()))
        })
        .unwrap();
    });

    shutdown.cancel();
    let report = controller.await.unwrap();
    assert_eq!(report.stop, StopCause::Shutdown);
    assert!(report.source_errors.is_empty(), "{report:#?}");
    assert!(report.activities >= 4, "{report:#?}");
    telemetry.flush().await.unwrap();
    let summary = tokio::task::block_in_place(|| kelemetry.stop());
    eprintln!("{summary}");
    let webhook = summary
        .lines()
        .find_map(|line| line.strip_prefix("webhook: "))
        .unwrap_or_else(|| panic!("no webhook line in {summary}"));
    let lost = webhook
        .split([',', ';'])
        .find_map(|piece| piece.trim().strip_suffix(" lost")?.parse::<u64>().ok());
    assert_eq!(lost, Some(0), "{webhook}");

    // The controller's spans join kelemetry's in the store.
    let controller_spans = spans.spans();
    assert!(
        controller_spans
            .iter()
            .filter(|s| s.name == "reconcile")
            .count()
            >= 2,
        "{controller_spans:#?}"
    );
    let store_dir = dir.path().join("store");
    {
        let store = SpanStore::open(&store_dir).unwrap();
        store.write_spans(&controller_spans).unwrap();
        store.sync().unwrap();
    }
    let reader = SpanStore::open_read_only(&store_dir).unwrap();
    let key = ObjectKey::new(
        "tracetest",
        "example.kelemetry.io",
        "configmapsyncs",
        "default",
        "demo-sync",
    );
    let mut request = ViewRequest::new(key);
    request.selector = DisplayMode {
        base: BaseMode::Tree,
        modifier: Some(Modifier::FullTree),
    }
    .selector();
    let assembled = assemble(&reader, &request).await.unwrap();

    // tree: the reconcile spans are children of the resource's span, with the spans they opened under them, next
    // to the audit records of the creation, the change and the controller's own status writes.
    let tree = view(&assembled, BaseMode::Tree);
    for span in &tree.spans {
        let depth = std::iter::successors(span.parent, |parent| {
            tree.spans.iter().find(|s| s.span_id == *parent)?.parent
        })
        .count();
        eprintln!("{}{} {}", "  ".repeat(depth), span.service, span.operation);
    }
    let root = tree.root().unwrap();
    assert_eq!(root.tag("name"), Some("demo-sync"), "{tree:#?}");
    let children: Vec<_> = tree.children_of(root.span_id).collect();
    let reconciles: Vec<_> = children
        .iter()
        .filter(|s| s.service == FIELD_MANAGER && s.operation == "reconcile")
        .collect();
    assert!(reconciles.len() >= 2, "{children:#?}");
    let opened: Vec<&str> = reconciles
        .iter()
        .flat_map(|r| tree.children_of(r.span_id))
        .map(|s| s.operation.as_str())
        .collect();
    assert!(opened.contains(&"apply ConfigMap"), "{opened:?}");
    assert!(opened.contains(&"update status"), "{opened:?}");
    let audits: Vec<&str> = children
        .iter()
        .filter(|s| s.service == "audit")
        .map(|s| s.operation.as_str())
        .collect();
    assert!(audits.iter().any(|a| a.ends_with(" create")), "{audits:?}");
    assert!(audits.iter().any(|a| a.ends_with(" patch")), "{audits:?}");
    assert!(audits.iter().any(|a| a.ends_with(" status")), "{audits:?}");
    let told: Vec<&str> = children
        .iter()
        .filter(|s| s.service == FIELD_MANAGER && s.kind == DisplayKind::Activity)
        .map(|s| s.operation.as_str())
        .collect();
    assert!(
        told.contains(&"synced generation 2 into ConfigMap demo-settings"),
        "{told:?}"
    );
    // Each reconcile lies inside the resource's span.
    for reconcile in &reconciles {
        assert!(reconcile.start >= root.start && reconcile.end <= root.end);
    }

    // The ConfigMap it writes hangs under the resource (owner reference), with the controller's activity next to
    // the audit record of the write.
    let config_map = tree
        .spans
        .iter()
        .find(|s| s.kind == DisplayKind::Object && s.tag("name") == Some("demo-settings"))
        .unwrap_or_else(|| panic!("no ConfigMap in the full tree: {tree:#?}"));
    let under_config_map: Vec<(&str, &str)> = tree
        .children_of(config_map.span_id)
        .map(|s| (s.service.as_str(), s.operation.as_str()))
        .collect();
    assert!(
        under_config_map
            .iter()
            .any(|(service, title)| *service == FIELD_MANAGER
                && title.starts_with("synced 2 keys from default/demo-sync")),
        "{under_config_map:?}"
    );
    assert!(
        under_config_map
            .iter()
            .any(|(service, title)| *service == "audit" && title.ends_with(" patch")),
        "{under_config_map:?}"
    );

    // tracing: the same, collapsed into logs of the resource's span.
    let tracing_view = view(&assembled, BaseMode::Tracing);
    let logs = &tracing_view.spans[0].logs;
    assert!(
        logs.iter()
            .any(|l| l.field(FIELD_MANAGER) == Some("reconcile"))
    );
    assert!(logs.iter().any(|l| l.field("audit").is_some()));
}
