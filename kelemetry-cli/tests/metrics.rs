//! `/metrics` of a running `kelemetry run` (the release binary) after known audit traffic to its webhook: valid
//! Prometheus text (parsed here; checked by `promtool check metrics` when `KELEMETRY_PROMETHEUS=1`), with the
//! pipeline, webhook and audit request metrics at exactly the counts the traffic makes; `/healthz` and `/readyz`;
//! `kelemetry serve`'s `/metrics`. With `KELEMETRY_PROMETHEUS=1`, a real Prometheus (scripts/prometheus) scrapes
//! the run every second and the figures are read back through its query API.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kelemetry_testkit::scrape::Scrape;
use kelemetry_testkit::{KelemetryProcess, http_get, release_binary};
use metrics_support::{
    PROMETHEUS_ENV, Prometheus, address_after, parse, prometheus_enabled, promtool_check, value,
};

mod metrics_support;

/// A `kelemetry run` with the webhook and the metrics endpoint on free ports, exporting into a store.
struct Running {
    process: KelemetryProcess,
    webhook: String,
    metrics: String,
    dir: tempfile::TempDir,
}

fn start_run(labels: &str, max_series: usize) -> Running {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: local\nsources:\n  webhook:\n    listen: 127.0.0.1:0\nexporters:\n  store:\n    path: store\n\
             metrics:\n  listen: 127.0.0.1:0\n  audit:\n    labels: {labels}\n    maxSeries: {max_series}\n"
        ),
    )
    .expect("write the config");
    let process = KelemetryProcess::start(&release_binary(), &config, "warn");
    let stderr = process.stderr();
    let webhook = address_after(&stderr, "audit webhook listening on http://");
    let metrics = address_after(&stderr, "metrics on http://");
    Running {
        process,
        webhook,
        metrics,
        dir,
    }
}

/// An audit event of `verb` on `resource` at `stage`, 30 ms from request to stage.
fn event(id: &str, verb: &str, resource: &str, stage: &str, code: u16) -> serde_json::Value {
    let mut event = serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": stage, "verb": verb, "user": {"username": "alice"},
        "objectRef": {"resource": resource, "namespace": "default", "name": "web", "apiGroup": "apps",
                      "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-05-01T12:00:00.100000Z",
        "stageTimestamp": "2026-05-01T12:00:00.130000Z",
    });
    if verb == "list" {
        event["objectRef"]
            .as_object_mut()
            .map(|object| object.remove("name"));
    }
    event
}

/// The known traffic: 3 writes on deployments (traced), 3 reads (skipped), 1 event at an earlier stage (skipped,
/// not a request yet), 1 patch without a user (invalid, still a request).
fn traffic() -> serde_json::Value {
    let mut bad = event("x", "patch", "deployments", "ResponseComplete", 200);
    bad.as_object_mut().map(|object| object.remove("user"));
    serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
        event("a1", "create", "deployments", "ResponseComplete", 201),
        event("a2", "update", "deployments", "ResponseComplete", 200),
        event("a3", "delete", "deployments", "ResponseComplete", 200),
        event("r1", "get", "deployments", "ResponseComplete", 200),
        event("r2", "get", "deployments", "ResponseComplete", 200),
        event("r3", "list", "pods", "ResponseComplete", 200),
        event("s1", "create", "deployments", "RequestReceived", 0),
        bad,
    ]})
}

/// POSTs `body` to `/audit` with plain HTTP/1.1; the status.
fn post_audit(address: &str, body: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the webhook");
    write!(
        stream,
        "POST /audit HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the batch");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("read the answer");
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// GETs `/metrics` until `ready` holds for the parsed text (20 s at most); the text.
fn scrape_until(address: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> String {
    let started = Instant::now();
    loop {
        let (status, head, text) = http_get(address, "/metrics");
        assert_eq!(status, 200, "{head}{text}");
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        if ready(&parse(&text)) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} never held:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_serves_exact_metrics_health_and_readiness_after_webhook_traffic() {
    let running = start_run("[cluster, verb, resource, code]", 10_000);
    let (status, _, body) = http_get(&running.metrics, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = http_get(&running.metrics, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    assert_eq!(post_audit(&running.webhook, &traffic().to_string()), 200);
    // The three writes are exported once the batch is flushed (every second).
    let text = scrape_until(&running.metrics, "3 records exported", |s| {
        value(s, "kelemetry_pipeline_ingest_to_export_seconds_count", &[]) == 3.0
    });
    let scrape = parse(&text);
    let v = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);
    assert_eq!(v("kelemetry_pipeline_records_total", &[]), 3.0);
    assert_eq!(v("kelemetry_pipeline_activities_total", &[]), 3.0);
    assert_eq!(
        v("kelemetry_pipeline_spans_total", &[("kind", "activity")]),
        3.0
    );
    assert_eq!(
        v("kelemetry_pipeline_spans_total", &[("kind", "object")]),
        1.0
    );
    let rejected = [
        ("source", "audit-webhook"),
        ("reason", "invalid audit event"),
    ];
    assert_eq!(v("kelemetry_pipeline_rejections_total", &rejected), 1.0);
    assert_eq!(
        v("kelemetry_exporter_spans_total", &[("exporter", "store")]),
        4.0
    );
    assert_eq!(
        v(
            "kelemetry_exporter_spans_dropped_total",
            &[("exporter", "store")]
        ),
        0.0
    );
    assert_eq!(v("kelemetry_webhook_requests_total", &[]), 1.0);
    assert_eq!(v("kelemetry_webhook_events_received_total", &[]), 8.0);
    assert_eq!(
        v("kelemetry_webhook_events_total", &[("outcome", "accepted")]),
        3.0
    );
    assert_eq!(
        v("kelemetry_webhook_events_total", &[("outcome", "skipped")]),
        4.0
    );
    assert_eq!(
        v("kelemetry_webhook_events_total", &[("outcome", "invalid")]),
        1.0
    );
    assert_eq!(v("kelemetry_webhook_events_delivered_total", &[]), 3.0);
    // Seven requests (the RequestReceived event is not one yet), by verb; 30 ms each.
    let requests = |verb: &str, resource: &str, code: &str| {
        let labels = [
            ("cluster", "local"),
            ("verb", verb),
            ("resource", resource),
            ("code", code),
        ];
        (
            v("kelemetry_audit_requests_total", &labels),
            v("kelemetry_audit_request_duration_seconds_count", &labels),
        )
    };
    assert_eq!(requests("create", "deployments", "201"), (1.0, 1.0));
    assert_eq!(requests("update", "deployments", "200"), (1.0, 1.0));
    assert_eq!(requests("delete", "deployments", "200"), (1.0, 1.0));
    assert_eq!(requests("get", "deployments", "200"), (2.0, 2.0));
    assert_eq!(requests("patch", "deployments", "200"), (1.0, 1.0));
    assert_eq!(requests("list", "pods", "200"), (1.0, 1.0));
    assert_eq!(v("kelemetry_audit_request_series", &[]), 6.0);
    assert_eq!(v("kelemetry_audit_request_overflow_total", &[]), 0.0);
    let get_bucket = "kelemetry_audit_request_duration_seconds_bucket{cluster=\"local\",verb=\"get\",\
                      resource=\"deployments\",code=\"200\",le=\"0.025\"} 0\n";
    assert!(text.contains(get_bucket), "{text}");
    assert!(
        text.contains(&get_bucket.replace("0.025\"} 0", "0.05\"} 2")),
        "{text}"
    );
    assert_eq!(v("kelemetry_build_info", &[]), 1.0);
    if prometheus_enabled() {
        promtool_check(&text);
    } else {
        eprintln!("promtool check metrics skipped: set {PROMETHEUS_ENV}=1 (scripts/test does)");
    }

    let summary = running.process.stop();
    assert!(
        summary.contains(
            "pipeline: 3 records, 3 activities, 0 observations, 0 filtered, 1 rejected; 4 spans"
        ),
        "{summary}"
    );
    serve_metrics(&running.dir.path().join("store"));
}

/// `kelemetry serve` on the store the run wrote: its `/metrics` counts the connections it accepted.
fn serve_metrics(store: &Path) {
    let mut serve = Command::new(release_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kelemetry serve");
    let stdout = serve.stdout.take().expect("serve's stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("serve says where it listens");
    let address = address_after(&line, "listening on http://");
    let guard = KillOnDrop(serve);
    let (status, _, _) = http_get(&address, "/api/services");
    assert_eq!(status, 200);
    let (status, _, text) = http_get(&address, "/metrics");
    assert_eq!(status, 200, "{text}");
    let scrape = parse(&text);
    // The /api/services connection, and this one.
    assert_eq!(
        value(&scrape, "kelemetry_serve_connections_accepted_total", &[]),
        2.0
    );
    assert_eq!(
        value(
            &scrape,
            "kelemetry_serve_requests_refused_total",
            &[("reason", "busy")]
        ),
        0.0
    );
    if prometheus_enabled() {
        promtool_check(&text);
    }
    drop(guard);
}

/// Kills and reaps the child when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_run_and_reads_the_figures_back() {
    if !prometheus_enabled() {
        eprintln!("skipped: set {PROMETHEUS_ENV}=1 to scrape kelemetry run with a real Prometheus");
        return;
    }
    let running = start_run("[verb, resource, code]", 10_000);
    let prometheus = Prometheus::start(&running.metrics);
    prometheus.wait_for("up{job=\"kelemetry\"}", 1.0);
    assert_eq!(post_audit(&running.webhook, &traffic().to_string()), 200);
    assert_eq!(post_audit(&running.webhook, &traffic().to_string()), 200);

    // Audit requests on deployments by verb, as Prometheus scraped them: two batches of the same traffic.
    let by_verb = "sum by (verb) (kelemetry_audit_requests_total{resource=\"deployments\"})";
    prometheus.wait_for(
        "sum(kelemetry_audit_requests_total{resource=\"deployments\"})",
        12.0,
    );
    let mut verbs: Vec<(String, f64)> = prometheus
        .query(by_verb)
        .into_iter()
        .map(|(labels, value)| {
            (
                labels["verb"].as_str().unwrap_or_default().to_owned(),
                value,
            )
        })
        .collect();
    verbs.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(String, f64)> = [
        ("create", 2.0),
        ("delete", 2.0),
        ("get", 4.0),
        ("patch", 2.0),
        ("update", 2.0),
    ]
    .into_iter()
    .map(|(verb, n)| (verb.to_owned(), n))
    .collect();
    assert_eq!(verbs, expected);
    // The second batch repeats the first: the same activity ids make the same spans, so 3 activity spans are
    // exported per batch, and the latency histogram of the traced writes counts as many requests.
    prometheus.wait_for("kelemetry_pipeline_ingest_to_export_seconds_count", 6.0);
    prometheus.wait_for(
        "sum(kelemetry_pipeline_spans_total{kind=\"activity\"})",
        6.0,
    );
    prometheus.wait_for(
        "sum(kelemetry_audit_request_duration_seconds_count{resource=\"deployments\",verb=~\"create|update|delete\"})",
        6.0,
    );
    prometheus.wait_for("kelemetry_webhook_events_received_total", 16.0);

    let summary = running.process.stop();
    assert!(
        summary.contains("pipeline: 6 records, 6 activities"),
        "{summary}"
    );
    drop(prometheus);
}

#[test]
fn a_flood_of_label_combinations_stays_within_the_cap_and_is_counted() {
    let running = start_run("[user]", 100);
    // 1,000 reads, each by another user: 100 combinations, then 900 requests under `other`.
    let items: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            let mut read = event(&format!("r{i}"), "get", "pods", "ResponseComplete", 200);
            read["user"]["username"] =
                serde_json::json!(format!("user-{i:04}-{}", "x".repeat(300)));
            read
        })
        .collect();
    let list =
        serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items});
    assert_eq!(post_audit(&running.webhook, &list.to_string()), 200);
    let text = scrape_until(&running.metrics, "1,000 requests counted", |s| {
        value(s, "kelemetry_audit_request_overflow_total", &[]) == 900.0
    });
    let scrape = parse(&text);
    assert_eq!(value(&scrape, "kelemetry_audit_request_series", &[]), 101.0);
    assert_eq!(
        value(
            &scrape,
            "kelemetry_audit_requests_total",
            &[("user", "other")]
        ),
        900.0
    );
    let counted = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "kelemetry_audit_requests_total")
        .count();
    assert_eq!(counted, 101);
    // Each user name was cut to 128 bytes.
    let first = format!(
        "user=\"user-0000-{}\"",
        "x".repeat(128 - "user-0000-".len())
    );
    assert!(text.contains(&first), "{}", &text[..text.len().min(2000)]);
    if prometheus_enabled() {
        promtool_check(&text);
    }
    running.process.stop();
}
