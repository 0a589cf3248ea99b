//! The audit webhook over real HTTP on loopback: accepted batches, limits, backpressure, token, TLS, health and
//! shutdown.
#![cfg(feature = "webhook")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelemetry_core::{ActivitySink, CancellationToken, Record, Rejection, SinkClosed, Source};
use kelemetry_sources::webhook::{AuditWebhook, TlsFiles, WebhookConfig, WebhookMetrics};
use kelemetry_testkit::LoopbackCertificates;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Keeps what it is sent; `send` waits while the gate is closed.
struct GatedSink {
    records: Mutex<Vec<Record>>,
    rejections: Mutex<Vec<Rejection>>,
    gate: watch::Sender<bool>,
}

impl GatedSink {
    fn new(open: bool) -> Arc<Self> {
        Arc::new(Self {
            records: Mutex::default(),
            rejections: Mutex::default(),
            gate: watch::channel(open).0,
        })
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn titles(&self) -> Vec<String> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| match r {
                Record::Activity(a) => format!("{} {}", a.object.key(), a.title),
                Record::Observation(o) => format!("{} seen", o.object.key()),
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl ActivitySink for GatedSink {
    async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        self.records.lock().unwrap().push(record);
        Ok(())
    }

    fn reject(&self, rejection: Rejection) {
        self.rejections.lock().unwrap().push(rejection);
    }
}

fn event(id: &str, verb: &str, name: &str) -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "requestURI": format!("/apis/apps/v1/namespaces/default/deployments/{name}"),
        "verb": verb, "user": {"username": "alice"}, "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1.34",
        "objectRef": {"resource": "deployments", "namespace": "default", "name": name, "apiGroup": "apps",
                      "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2024-05-01T12:00:00.100000Z",
        "stageTimestamp": "2024-05-01T12:00:00.130000Z"
    })
}

fn event_list(items: Vec<Value>) -> String {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

struct Running {
    address: SocketAddr,
    metrics: Arc<WebhookMetrics>,
    trigger: CancellationToken,
    task: JoinHandle<Result<(), kelemetry_core::SourceError>>,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn start(config: WebhookConfig, sink: Arc<GatedSink>) -> Running {
    let webhook = AuditWebhook::bind(config).expect("the webhook binds");
    let address = webhook.local_addr();
    let metrics = webhook.metrics();
    let trigger = CancellationToken::new();
    let shutdown = trigger.clone();
    let task = tokio::spawn(Box::new(webhook).run(sink, shutdown));
    Running {
        address,
        metrics,
        trigger,
        task,
    }
}

async fn stop(running: Running) {
    running.trigger.cancel();
    tokio::time::timeout(Duration::from_secs(20), running.task)
        .await
        .expect("the webhook stops")
        .expect("the task ends")
        .expect("the webhook ends cleanly");
}

/// POSTs `body` to `url` with `client`.
async fn post(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client.post(url).body(body).send().await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

#[tokio::test]
async fn event_lists_are_accepted_and_delivered_with_the_cluster_of_the_path() {
    let sink = GatedSink::new(true);
    let running = start(
        WebhookConfig::new(loopback(), "default-cluster"),
        sink.clone(),
    );
    let base = format!("http://{}", running.address);
    let client = client();

    let body = event_list(vec![
        event("a1", "create", "web"),
        event("a2", "get", "web"),
        event("a3", "patch", "web"),
    ]);
    let response = post(&client, format!("{base}/audit/tracetest"), body).await;
    assert_eq!(response.status(), 200);
    let response = post(
        &client,
        format!("{base}/audit"),
        event_list(vec![event("a4", "delete", "api")]),
    )
    .await;
    assert_eq!(response.status(), 200);
    // A single Event document is taken too; a malformed event in a list is rejected, the rest delivered.
    let broken = event("broken", "", "x");
    let response = post(
        &client,
        format!("{base}/audit/other"),
        event_list(vec![broken, event("a5", "update", "db")]),
    )
    .await;
    assert_eq!(response.status(), 200);

    stop(running).await;
    assert_eq!(
        sink.titles(),
        [
            "tracetest/apps/deployments/default/web alice create",
            "tracetest/apps/deployments/default/web alice patch",
            "default-cluster/apps/deployments/default/api alice delete",
            "other/apps/deployments/default/db alice update",
        ]
    );
    let rejections = sink.rejections.lock().unwrap().clone();
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert!(
        rejections[0].origin.starts_with("webhook 127.0.0.1:"),
        "{}",
        rejections[0]
    );
    assert!(
        rejections[0].origin.ends_with("item 0"),
        "{}",
        rejections[0]
    );
}

#[tokio::test]
async fn counters_tell_what_happened() {
    let sink = GatedSink::new(true);
    let running = start(WebhookConfig::new(loopback(), "c"), sink.clone());
    let base = format!("http://{}", running.address);
    let client = client();
    let ok = post(
        &client,
        format!("{base}/audit/c"),
        event_list(vec![event("a1", "create", "w"), event("a2", "list", "w")]),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let garbage = post(&client, format!("{base}/audit/c"), "this is not JSON").await;
    assert_eq!(garbage.status(), 400);
    assert!(
        garbage
            .text()
            .await
            .unwrap()
            .contains("not an audit EventList")
    );
    let not_audit = post(
        &client,
        format!("{base}/audit/c"),
        r#"{"kind":"PodList","apiVersion":"v1","items":[]}"#,
    )
    .await;
    assert_eq!(not_audit.status(), 400);
    let metrics = running.metrics.clone();
    stop(running).await;
    let counts = metrics.snapshot();
    assert_eq!(counts.requests, 3);
    assert_eq!(counts.batches_accepted, 1);
    assert_eq!(counts.events_received, 2);
    assert_eq!(counts.events_accepted, 1);
    assert_eq!(counts.events_skipped, 1);
    assert_eq!(counts.events_delivered, 1);
    assert_eq!(counts.malformed, 2);
    assert_eq!(counts.queued_events, 0);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let sink = GatedSink::new(true);
    let mut config = WebhookConfig::new(loopback(), "c");
    config.body_limit = 2048;
    let running = start(config, sink.clone());
    let base = format!("http://{}", running.address);
    let items: Vec<Value> = (0..20)
        .map(|i| event(&format!("a{i}"), "create", "w"))
        .collect();
    let big = event_list(items);
    assert!(big.len() > 2048);
    let response = post(&client(), format!("{base}/audit/c"), big.clone()).await;
    assert_eq!(response.status(), 413);
    // Without a Content-Length (chunked), the limit holds while reading.
    let stream = futures_stream(big.into_bytes());
    let response = post(
        &client(),
        format!("{base}/audit/c"),
        reqwest::Body::wrap_stream(stream),
    )
    .await;
    assert_eq!(response.status(), 413);
    let small = event_list(vec![event("s", "create", "w")]);
    let response = post(&client(), format!("{base}/audit/c"), small).await;
    assert_eq!(response.status(), 200);
    let metrics = running.metrics.clone();
    stop(running).await;
    assert_eq!(metrics.snapshot().too_large, 2);
    assert_eq!(sink.titles().len(), 1);
}

/// The body in 512-byte chunks, so the request has no Content-Length.
fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
    futures::stream::iter(chunks)
}

#[tokio::test]
async fn a_full_queue_answers_429_and_loses_nothing_accepted() {
    let sink = GatedSink::new(false);
    let mut config = WebhookConfig::new(loopback(), "c");
    config.queue_events = 10;
    let running = start(config, sink.clone());
    let base = format!("http://{}", running.address);
    let client = client();
    let mut accepted = Vec::new();
    let mut throttled = 0;
    for batch in 0..12 {
        let items = (0..3)
            .map(|i| event(&format!("b{batch}-{i}"), "update", &format!("w{batch}-{i}")))
            .collect();
        let response = post(&client, format!("{base}/audit/c"), event_list(items)).await;
        match response.status().as_u16() {
            200 => accepted.push(batch),
            429 => {
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap()),
                    Some("1")
                );
                throttled += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The forwarder holds one activity waiting on the closed sink; the queue holds 10: 3 batches of 3 fit, the
    // 4th does not.
    assert_eq!(accepted, [0, 1, 2]);
    assert_eq!(throttled, 9);
    // Room comes back once the pipeline drains.
    sink.open();
    tokio::time::timeout(Duration::from_secs(10), async {
        while running.metrics.snapshot().queued_events > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the queue drains");
    let response = post(
        &client,
        format!("{base}/audit/c"),
        event_list(vec![event("late", "update", "late")]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let metrics = running.metrics.clone();
    stop(running).await;
    let titles = sink.titles();
    let expected: Vec<String> = accepted
        .iter()
        .flat_map(|b| {
            (0..3).map(move |i| format!("c/apps/deployments/default/w{b}-{i} alice update"))
        })
        .chain(["c/apps/deployments/default/late alice update".to_owned()])
        .collect();
    assert_eq!(titles, expected);
    let counts = metrics.snapshot();
    assert_eq!(counts.throttled, 9);
    assert_eq!(counts.events_accepted, 10);
    assert_eq!(counts.events_delivered, 10);
    assert_eq!(counts.events_lost, 0);
}

#[tokio::test]
async fn shutdown_delivers_what_was_accepted() {
    let sink = GatedSink::new(false);
    let running = start(WebhookConfig::new(loopback(), "c"), sink.clone());
    let base = format!("http://{}", running.address);
    let items = (0..50)
        .map(|i| event(&format!("s{i}"), "update", &format!("o{i}")))
        .collect();
    let response = post(&client(), format!("{base}/audit/c"), event_list(items)).await;
    assert_eq!(response.status(), 200);
    running.trigger.cancel();
    // Shutting down: health says so (503, or the connection is refused)...
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match client().get(format!("{base}/healthz")).send().await {
                Ok(health) if health.status() == 200 => {}
                Ok(health) => {
                    assert_eq!(health.status(), 503);
                    break;
                }
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("health reports the shutdown");
    // ... and new batches are refused with 503 (or the connection is refused).
    let late = client()
        .post(format!("{base}/audit/c"))
        .body(event_list(vec![event("late", "update", "late")]))
        .send()
        .await;
    assert!(late.is_err() || late.unwrap().status() == 503);
    sink.open();
    tokio::time::timeout(Duration::from_secs(20), running.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(sink.titles().len(), 50);
    assert_eq!(running.metrics.snapshot().events_lost, 0);
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let sink = GatedSink::new(true);
    let mut config = WebhookConfig::new(loopback(), "c");
    config.token = Some("s3cret-t0ken".into());
    let running = start(config, sink.clone());
    let base = format!("http://{}", running.address);
    let client = client();
    let body = event_list(vec![event("t1", "create", "w")]);
    let none = post(&client, format!("{base}/audit/c"), body.clone()).await;
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers().get("www-authenticate").unwrap(), "Bearer");
    let wrong = client
        .post(format!("{base}/audit/c"))
        .bearer_auth("s3cret-t0keN")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client
        .post(format!("{base}/audit/c"))
        .bearer_auth("s3cret-t0ken")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // Health needs no token.
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let metrics = running.metrics.clone();
    stop(running).await;
    assert_eq!(metrics.snapshot().unauthorized, 2);
    assert_eq!(sink.titles().len(), 1);
}

#[test]
fn listening_beyond_loopback_needs_a_token() {
    let config = WebhookConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)), "c");
    let err = AuditWebhook::bind(config).unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
    let mut config = WebhookConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)), "c");
    config.token = Some("t".into());
    assert!(AuditWebhook::bind(config).is_ok());
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = LoopbackCertificates::write_to(dir.path()).unwrap();
    let files = TlsFiles {
        cert: certificates.cert,
        key: certificates.key,
    };
    let pem = std::fs::read(certificates.ca_cert).unwrap();
    let sink = GatedSink::new(true);
    let mut config = WebhookConfig::new(loopback(), "c");
    config.tls = Some(files.clone());
    config.token = Some("tls-token".into());
    let running = start(config, sink.clone());
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/audit/secure", running.address.port());
    let response = client
        .post(&url)
        .bearer_auth("tls-token")
        .body(event_list(vec![event("tls1", "create", "w")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Plain HTTP to the TLS port does not get through.
    let plain = client
        .post(format!("http://{}/audit/secure", running.address))
        .bearer_auth("tls-token")
        .body(event_list(vec![event("tls2", "create", "w")]))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    stop(running).await;
    assert_eq!(
        sink.titles(),
        ["secure/apps/deployments/default/w alice create"]
    );

    // Bad files are named in the error.
    let mut config = WebhookConfig::new(loopback(), "c");
    config.tls = Some(TlsFiles {
        cert: files.key.clone(),
        key: files.key.clone(),
    });
    let err = AuditWebhook::bind(config).unwrap_err().to_string();
    assert!(
        err.contains("TLS certificate") && err.contains("tls.key"),
        "{err}"
    );
}

#[tokio::test]
async fn memory_pressure_answers_429_while_the_queue_holds_something() {
    let sink = GatedSink::new(false);
    let pressure = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut config = WebhookConfig::new(loopback(), "c");
    config.memory_pressure = Some(pressure.clone());
    let running = start(config, sink.clone());
    let url = format!("http://{}/audit/c", running.address);
    let client = client();
    let body = |id: &str| event_list(vec![event(id, "create", "w")]);
    // Under pressure, but nothing queued: the batch is taken (the pressure may be memory draining cannot free).
    let first = post(&client, &url, body("m1")).await;
    assert_eq!(first.status(), 200);
    // Something waits in the queue (the pipeline is stalled): refused.
    let refused = post(&client, &url, body("m2")).await;
    assert_eq!(refused.status(), 429);
    pressure.store(false, std::sync::atomic::Ordering::Relaxed);
    let accepted = post(&client, &url, body("m3")).await;
    assert_eq!(accepted.status(), 200);
    sink.open();
    let metrics = running.metrics.clone();
    stop(running).await;
    assert_eq!(metrics.snapshot().throttled, 1);
    assert_eq!(sink.titles().len(), 2);
}

/// `acknowledge: delivered`: a batch is answered only once the pipeline delivered all of it (here: forwarded and
/// acknowledged, as in the `ingest` role), and 503 when its records were not.
#[tokio::test]
async fn acknowledge_delivered_answers_once_the_batch_is_delivered() {
    use kelemetry_core::Pipeline;
    use kelemetry_core::forward::MemoryForwarder;
    use kelemetry_sources::webhook::Acknowledge;

    let forwarder = Arc::new(MemoryForwarder::default());
    let mut config = WebhookConfig::new(loopback(), "c");
    config.acknowledge = Acknowledge::Delivered;
    let webhook = AuditWebhook::bind(config).unwrap();
    let address = webhook.local_addr();
    let pipeline = Pipeline::builder()
        .forward(forwarder.clone())
        .source(Box::new(webhook))
        .build();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));
    let client = client();
    let url = format!("http://{address}/audit");

    let body = event_list(vec![
        event("a1", "create", "web"),
        event("a2", "update", "web"),
    ]);
    let answer = post(&client, &url, body).await;
    assert_eq!(answer.status(), 200);
    // Answered 200: both records are with the forwarder already, not merely queued.
    assert_eq!(forwarder.records().len(), 2);

    forwarder.refuse(true);
    let answer = post(
        &client,
        &url,
        event_list(vec![event("a3", "delete", "web")]),
    )
    .await;
    assert_eq!(answer.status(), 503);
    let text = answer.text().await.unwrap();
    assert!(text.contains("not delivered: 1 record(s)"), "{text}");
    forwarder.refuse(false);
    // The apiserver sends the batch again.
    let answer = post(
        &client,
        &url,
        event_list(vec![event("a3", "delete", "web")]),
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(forwarder.records().len(), 3);

    shutdown.cancel();
    let report = running.await.unwrap();
    assert_eq!((report.forwarded, report.forward_failed), (3, 1));
}
