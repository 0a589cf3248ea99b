//! `KubeEventSource` through a real `Pipeline` on a live test cluster (`KELEMETRY_E2E=1`): the watermark in the
//! ConfigMap moves past an Event only once the exporters acknowledged its span.
#![cfg(feature = "kube")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kelemetry_core::{CancellationToken, GatedExporter, Pipeline, ResourceMap};
use kelemetry_sources::kube_events::{KubeEventOptions, KubeEventSource, StoredWatermark};
use kelemetry_testkit::{TestCluster, e2e_enabled};

async fn client(cluster: &TestCluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The keys the stored watermark holds as handled (empty while there is no ConfigMap).
async fn handled_keys(client: &kube::Client, name: &str) -> Vec<String> {
    let maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "default");
    let Some(map) = maps.get_opt(name).await.unwrap() else {
        return Vec::new();
    };
    let stored = StoredWatermark::from_data(&map.data.unwrap_or_default()).unwrap();
    stored.handled.into_iter().map(|(_, key)| key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watermark_waits_for_the_exporters() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a test cluster");
        return;
    }
    let cluster = TestCluster::shared().unwrap();
    let client = client(cluster).await;
    let watermark = "kelemetry-watermark-delivery";

    let mut options = KubeEventOptions::default();
    options.watermark.name = watermark.to_owned();
    options.watermark.sync_interval = Duration::from_millis(200);
    let source = KubeEventSource::new(
        client.clone(),
        "tracetest",
        Arc::new(ResourceMap::builtin()),
        options,
    );
    let exporter = Arc::new(GatedExporter::new(1000));
    let pipeline = Pipeline::builder()
        .source(Box::new(source))
        .exporter(exporter.clone())
        .flush_interval(Duration::from_millis(50))
        .build();
    let stats = pipeline.stats();
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(stop.clone()));
    // The source writes its watermark (floor = now) before it watches: then the Event is newer than the floor.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        let maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "default");
        while maps.get_opt(watermark).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the source never wrote its watermark");

    let event = serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "delivery-1", "namespace": "default"},
        "eventTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "reportingController": "kelemetry.test/delivery", "reportingInstance": "test-1",
        "action": "Testing", "reason": "DeliveryTest", "type": "Normal", "note": "held in export",
        "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "delivery-subject"}
    });
    cluster
        .kubectl_with_input(["create", "-f", "-"], &event.to_string())
        .unwrap();

    // The pipeline has the Event, and ten watermark syncs pass while its span waits in export: not handled yet.
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while stats.records.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the pipeline never got the Event");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = handled_keys(&client, watermark).await;
    assert!(
        before.iter().all(|key| !key.starts_with("event:")),
        "the watermark moved past an Event not exported: {before:?}"
    );

    exporter.open(1000);
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let keys = handled_keys(&client, watermark).await;
            if keys.iter().any(|key| key.starts_with("event:")) {
                return keys;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let after = waited.expect("the watermark never took the exported Event");
    assert_eq!(after.len(), 1, "{after:?}");
    stop.cancel();
    running.await.unwrap().check().unwrap();
    assert!(
        exporter
            .spans()
            .iter()
            .any(|span| span.name.contains("DeliveryTest")),
        "the Event's span was exported"
    );
}
