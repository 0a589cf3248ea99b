//! The audit webhook against slow, silent and greedy clients, in process over loopback: idle connections make room
//! for a newcomer, silent ones are closed after the head timeout (also without TLS handshake, or with only an
//! HTTP/2 preface), keep-alive ones after the idle timeout, slow bodies are cut with 408 while a legitimate batch
//! waits for its read slot, unauthenticated requests never take a read slot, and `/readyz` says what the readiness
//! check says.
#![cfg(feature = "webhook")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use kelemetry_core::{CancellationToken, CollectingSink, Source, SourceError};
use kelemetry_sources::webhook::{
    AuditWebhook, ConnectionCounts, ReadinessCheck, TlsFiles, WebhookConfig, WebhookCounts,
    WebhookMetrics,
};
use kelemetry_testkit::{LoopbackCertificates, wait_until};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The first bytes an HTTP/2 client sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Running {
    address: SocketAddr,
    metrics: Arc<WebhookMetrics>,
    sink: Arc<CollectingSink>,
    trigger: CancellationToken,
    task: JoinHandle<Result<(), SourceError>>,
}

impl Running {
    fn start(config: WebhookConfig) -> Self {
        let webhook = AuditWebhook::bind(config).unwrap();
        let (address, metrics) = (webhook.local_addr(), webhook.metrics());
        let sink = Arc::new(CollectingSink::default());
        let trigger = CancellationToken::new();
        let task = tokio::spawn(Box::new(webhook).run(sink.clone(), trigger.clone()));
        Self {
            address,
            metrics,
            sink,
            trigger,
            task,
        }
    }

    fn counts(&self) -> WebhookCounts {
        self.metrics.snapshot()
    }

    fn connections(&self) -> ConnectionCounts {
        self.metrics.snapshot().connections
    }

    /// Waits (10 s at most) until `check` holds for the counters.
    async fn wait_for(&self, what: &str, check: impl Fn(&WebhookCounts) -> bool + Send + 'static) {
        let metrics = Arc::clone(&self.metrics);
        let what = what.to_owned();
        tokio::task::spawn_blocking(move || {
            wait_until(&what, Duration::from_secs(10), || {
                Ok(check(&metrics.snapshot()).then_some(()))
            })
            .unwrap_or_else(|err| panic!("{err}: {:?}", metrics.snapshot()));
        })
        .await
        .unwrap();
    }

    async fn stop(self) -> Arc<CollectingSink> {
        self.trigger.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the webhook stops")
            .expect("the task ends")
            .expect("the webhook ends cleanly");
        self.sink
    }
}

fn config() -> WebhookConfig {
    WebhookConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "c")
}

fn batch(id: &str) -> String {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [{
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "requestURI": "/apis/apps/v1/namespaces/default/deployments/web",
        "verb": "create", "user": {"username": "alice"}, "sourceIPs": ["127.0.0.1"],
        "objectRef": {"resource": "deployments", "namespace": "default", "name": "web", "apiGroup": "apps",
                      "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2024-05-01T12:00:00.100000Z",
        "stageTimestamp": "2024-05-01T12:00:00.130000Z"
    }]})
    .to_string()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Whether the server closes `stream` (end of stream or reset) within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 512];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Opens a connection and sends `first` on it.
async fn connect_sending(address: SocketAddr, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_make_room_and_a_batch_gets_through_at_once() {
    let mut config = config();
    config.max_connections = 16;
    config.connections.per_peer = 8;
    let running = Running::start(config);
    // 40 connections from the same address as the legitimate client: nothing, one byte, or an HTTP/2 preface.
    let mut idle = Vec::new();
    for i in 0..40 {
        let first: &[u8] = match i % 3 {
            0 => b"",
            1 => b"P",
            _ => H2_PREFACE,
        };
        idle.push(connect_sending(running.address, first).await);
    }
    running
        .wait_for("40 connections accepted", |c| c.connections.accepted == 40)
        .await;
    let counts = running.connections();
    assert_eq!(
        (
            counts.peer_limit_closed_idle,
            counts.peer_limit_refused,
            counts.total_limit_refused
        ),
        (32, 0, 0),
        "{counts:?}"
    );
    // The 32 oldest were closed by the server; the 8 newest are still open.
    let mut closed = 0;
    for stream in &mut idle {
        if closed_by_server(stream, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 32);

    // One client: the batch's connection takes the place of one more idle one.
    let client = client();
    let started = Instant::now();
    let url = format!("http://{}/audit", running.address);
    let answer = client.post(&url).body(batch("a1")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    // Read whole, the answer gives its connection back to the client's pool.
    assert_eq!(answer.text().await.unwrap(), "ok\n");
    let health = client
        .get(format!("http://{}/healthz", running.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Each of the client's connections made room: the batch's, and the health check's when the client's pool had
    // not got the batch's connection back in time (seen on a loaded machine).
    let counts = running.connections();
    let own = counts.accepted - 40;
    assert!((1..=2).contains(&own), "{counts:?}");
    assert_eq!(counts.peer_limit_closed_idle, 32 + own, "{counts:?}");
    assert_eq!(running.counts().batches_accepted, 1);
    drop(idle);
    let sink = running.stop().await;
    assert_eq!(sink.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_with_every_place_busy_are_refused_at_once() {
    let mut config = config();
    config.max_connections = 2;
    config.concurrent_reads = 4;
    let running = Running::start(config);
    // Two requests whose bodies are still arriving hold both places.
    let head = "POST /audit HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(connect_sending(running.address, head.as_bytes()).await);
    }
    running.wait_for("2 requests", |c| c.requests == 2).await;
    let mut third =
        connect_sending(running.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(closed_by_server(&mut third, Duration::from_secs(5)).await);
    assert_eq!(running.connections().total_limit_refused, 1);
    drop(busy);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_head_timeout_and_idle_ones_after_the_idle_timeout()
{
    let mut config = config();
    config.connections.head_timeout = Duration::from_millis(300);
    config.connections.idle_timeout = Duration::from_millis(600);
    let running = Running::start(config);
    let mut silent = Vec::new();
    for first in [&b""[..], b"P", b"POST /audit HTTP/1.1\r\nHo", H2_PREFACE] {
        silent.push(connect_sending(running.address, first).await);
    }
    for stream in &mut silent {
        assert!(closed_by_server(stream, Duration::from_secs(5)).await);
    }
    running
        .wait_for("4 head timeouts", |c| c.connections.head_timeouts == 4)
        .await;

    // A keep-alive connection that made a request is closed once idle for the idle timeout.
    let mut kept =
        connect_sending(running.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(closed_by_server(&mut kept, Duration::from_secs(5)).await);
    running
        .wait_for("1 idle timeout", |c| c.connections.idle_timeouts == 1)
        .await;
    assert_eq!(running.connections().head_timeouts, 4);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_is_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = LoopbackCertificates::write_to(dir.path()).unwrap();
    let mut config = config();
    config.tls = Some(TlsFiles {
        cert: certificates.cert,
        key: certificates.key,
    });
    config.connections.handshake_timeout = Duration::from_millis(300);
    let running = Running::start(config);
    let mut silent = connect_sending(running.address, b"").await;
    assert!(closed_by_server(&mut silent, Duration::from_secs(5)).await);
    running
        .wait_for("1 handshake failure", |c| {
            c.connections.handshake_failures == 1
        })
        .await;
    running.stop().await;
}

/// Sends a head declaring a body of 1,000 bytes, then one byte every 200 ms until the answer comes; returns the
/// answer's status line.
async fn slow_body(address: SocketAddr, token: Option<&str>) -> String {
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /audit HTTP/1.1\r\nHost: x\r\n{authorization}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut stream = connect_sending(address, head.as_bytes()).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(2).any(|w| w == b"\r\n") {
                        break;
                    }
                }
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_with_408_and_a_batch_waits_for_its_read_slot() {
    let mut config = config();
    config.concurrent_reads = 2;
    config.connections.body_grace = Duration::from_millis(500);
    config.connections.min_body_rate = 1024;
    let running = Running::start(config);
    let slow: Vec<_> = (0..4)
        .map(|_| tokio::spawn(slow_body(running.address, None)))
        .collect();
    // The slow ones arrive first and take both read slots.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = format!("http://{}/audit", running.address);
    let answer = client().post(&url).body(batch("b1")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    for task in slow {
        assert_eq!(task.await.unwrap(), "HTTP/1.1 408 Request Timeout");
    }
    let counts = running.counts();
    assert_eq!(counts.connections.slow_bodies, 4);
    assert_eq!(counts.connections.read_slot_timeouts, 0);
    assert_eq!((counts.batches_accepted, counts.throttled), (1, 0));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_never_take_a_read_slot() {
    let mut config = config();
    config.token = Some("s3cret".into());
    config.concurrent_reads = 1;
    config.connections.read_slot_wait = Duration::from_millis(200);
    config.connections.body_grace = Duration::from_secs(2);
    let running = Running::start(config);
    // Slow bodies without the token: refused before a read slot, their bodies drained until they fall behind
    // the minimum rate, then answered 401.
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(slow_body(running.address, None)))
        .collect();
    running.wait_for("3 requests", |c| c.requests == 3).await;
    // While they drain, the only read slot is free: a batch with the token gets it at once.
    let url = format!("http://{}/audit", running.address);
    let answer = client()
        .post(&url)
        .bearer_auth("s3cret")
        .body(batch("c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(slow.iter().all(|task| !task.is_finished()));
    for task in slow {
        assert_eq!(task.await.unwrap(), "HTTP/1.1 401 Unauthorized");
    }
    let counts = running.counts();
    assert_eq!((counts.unauthorized, counts.throttled), (3, 0));
    assert_eq!(counts.connections.read_slot_timeouts, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_what_the_readiness_check_says() {
    let lost = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&lost);
    let mut config = config();
    config.readiness = Some(ReadinessCheck::new(move || match seen.load(Relaxed) {
        0 => Ok(()),
        n => Err(format!("{n} spans lost")),
    }));
    let running = Running::start(config);
    let url = format!("http://{}/readyz", running.address);
    let answer = client().get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ready\n");
    lost.store(3, Relaxed);
    let answer = client().get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.text().await.unwrap(), "not ready: 3 spans lost\n");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_keep_alive_connection_outlives_the_head_timeout() {
    // Found by the flood test: the watchdog judged idleness from the deadline it computed when the connection
    // opened, so a connection busy with requests was closed once the head timeout had passed.
    let mut config = config();
    config.connections.head_timeout = Duration::from_millis(300);
    config.connections.idle_timeout = Duration::from_secs(5);
    let running = Running::start(config);
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer).await.unwrap();
        assert!(
            answer[..read].starts_with(b"HTTP/1.1 200"),
            "request {answered} on the connection: {:?}",
            String::from_utf8_lossy(&answer[..read])
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered > 20, "{answered}");
    let connections = running.connections();
    assert_eq!(
        connections.head_timeouts + connections.idle_timeouts,
        0,
        "{connections:?}"
    );
    running.stop().await;
}
