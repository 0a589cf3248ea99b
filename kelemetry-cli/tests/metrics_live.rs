//! The live deployment scenario watched by a real Prometheus: the test cluster's apiserver sends its audit batches
//! to the webhook of a `kelemetry run` (the release binary) that serves `/metrics`; a Prometheus built by
//! scripts/prometheus scrapes it every second while a Deployment is created, scaled, given a new image, scaled
//! down and deleted. Read back through Prometheus' query API: the write requests on `deployments` by verb equal
//! those of the apiserver's own audit log (same policy), every span the pipeline made is the store exporter's,
//! and the ingest-to-export histogram counts at least every activity. The text of the live `/metrics`, with the
//! Events source and the object watch on, passes promtool. Needs `KELEMETRY_E2E=1` and `KELEMETRY_PROMETHEUS=1`
//! (both set by scripts/test).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kelemetry_testkit::{
    ClusterOptions, KelemetryProcess, TestCluster, e2e_enabled, free_loopback_port, http_get,
    release_binary,
};
use metrics_support::{
    PROMETHEUS_ENV, Prometheus, address_after, parse, prometheus_enabled, promtool_check, value,
};

mod metrics_support;

/// The verbs compared: writes. The cluster is this test's own, so the only Deployment written is the scenario's,
/// after `kelemetry run` started; reads of deployments (the controllers' lists at start) may predate it.
const WRITES: [&str; 4] = ["create", "update", "patch", "delete"];

/// Write requests on deployments (their subresources included) by verb, as the apiserver logged them: each
/// request once, at its last stage.
fn logged_deployment_requests(cluster: &TestCluster) -> BTreeMap<String, f64> {
    let mut verbs = BTreeMap::new();
    for entry in cluster.audit_entries().expect("the apiserver's audit log") {
        let last_stage = matches!(entry["stage"].as_str(), Some("ResponseComplete" | "Panic"));
        let write = WRITES.contains(&entry["verb"].as_str().unwrap_or_default());
        if last_stage && write && entry["objectRef"]["resource"] == "deployments" {
            let verb = entry["verb"].as_str().unwrap_or_default().to_owned();
            *verbs.entry(verb).or_insert(0.0) += 1.0;
        }
    }
    verbs
}

/// The same, as Prometheus scraped it from `kelemetry run`.
fn scraped_deployment_requests(prometheus: &Prometheus) -> BTreeMap<String, f64> {
    prometheus
        .query(
            "sum by (verb) (kelemetry_audit_requests_total{resource=\"deployments\",\
             verb=~\"create|update|patch|delete\"})",
        )
        .into_iter()
        .map(|(labels, value)| {
            (
                labels["verb"].as_str().unwrap_or_default().to_owned(),
                value,
            )
        })
        .collect()
}

#[test]
fn prometheus_scrapes_run_through_the_live_deployment_scenario() {
    if !e2e_enabled() || !prometheus_enabled() {
        eprintln!(
            "skipped: set KELEMETRY_E2E=1 and {PROMETHEUS_ENV}=1 to watch the live scenario with Prometheus"
        );
        return;
    }
    let port = free_loopback_port().expect("a free port");
    let cluster = TestCluster::start_with(ClusterOptions {
        audit_webhook_url: Some(format!("http://127.0.0.1:{port}/audit/tracetest")),
        ..ClusterOptions::default()
    })
    .expect("the test cluster starts");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = dir.path().join("kelemetry.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: tracetest\nkubernetes:\n  kubeconfig: {kubeconfig}\n\
             sources:\n  webhook:\n    listen: 127.0.0.1:{port}\n  events:\n    watermark:\n      name: metrics-{port}\n\
             \x20 objectWatch: {{}}\n\
             filter:\n  excludeResources: [leases.coordination.k8s.io]\n\
             exporters:\n  store:\n    path: store\n\
             metrics:\n  listen: 127.0.0.1:0\n  audit:\n    labels: [cluster, verb, resource, subresource, code]\n",
            kubeconfig = cluster.kubeconfig().display(),
        ),
    )
    .expect("write the config");
    let kelemetry = KelemetryProcess::start(&release_binary(), &config, "warn");
    let metrics = address_after(&kelemetry.stderr(), "metrics on http://");
    let prometheus = Prometheus::start(&metrics);
    prometheus.wait_for("up{job=\"kelemetry\"}", 1.0);

    cluster.deployment_scenario(Duration::from_secs(2)).unwrap();

    // The webhook's batches and Prometheus' scrapes trail the audit log by a few seconds: wait until they agree.
    let started = Instant::now();
    let (logged, scraped) = loop {
        let logged = logged_deployment_requests(&cluster);
        let scraped = scraped_deployment_requests(&prometheus);
        if logged == scraped || started.elapsed() > Duration::from_secs(60) {
            break (logged, scraped);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        scraped, logged,
        "write requests on deployments by verb: Prometheus vs the audit log"
    );
    for verb in ["create", "patch", "delete"] {
        assert!(
            logged.get(verb).is_some_and(|n| *n >= 1.0),
            "{verb}: {logged:?}"
        );
    }
    eprintln!("audit requests on deployments by verb: {logged:?}");
    // At a quiet moment every span made is exported, as the pipeline and the exporter count them; the
    // ingest-to-export histogram has counted every activity (and the observations that made spans).
    prometheus.wait_for(
        "sum(kelemetry_pipeline_spans_total) - on() kelemetry_exporter_spans_total{exporter=\"store\"}",
        0.0,
    );
    prometheus.wait_for(
        "kelemetry_pipeline_ingest_to_export_seconds_count >= bool on() kelemetry_pipeline_activities_total",
        1.0,
    );
    let activities = prometheus.query("kelemetry_pipeline_activities_total");
    assert!(
        activities.first().is_some_and(|(_, n)| *n > 0.0),
        "{activities:?}"
    );
    let (status, _, ready) = http_get(&metrics, "/readyz");
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
    // Every source's collector on a live run: the text passes promtool, the watch listed its resources and saw
    // versions, the Events source read Events.
    let (status, _, text) = http_get(&metrics, "/metrics");
    assert_eq!(status, 200);
    promtool_check(&text);
    let scrape = parse(&text);
    assert!(
        value(&scrape, "kelemetry_watch_resources", &[("state", "listed")]) > 10.0,
        "{text}"
    );
    assert!(
        value(&scrape, "kelemetry_watch_versions_total", &[]) > 0.0,
        "{text}"
    );
    assert!(
        value(
            &scrape,
            "kelemetry_source_records_total",
            &[("source", "events")]
        ) > 0.0,
        "{text}"
    );

    drop(prometheus);
    let summary = kelemetry.stop();
    assert!(summary.contains(", 0 not exported"), "{summary}");
    drop(cluster);
}
