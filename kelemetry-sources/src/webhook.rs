//! [`AuditWebhook`]: the apiserver's audit webhook backend, an HTTP(S) server that takes `EventList` batches.
//!
//! The apiserver (`--audit-webhook-config-file`) POSTs batches of audit events to `/audit/{cluster}` (or `/audit`,
//! which uses the configured default cluster). Unlike the original, which always answered 200 and queued without
//! bound (reference §14.19, §3.1), this server:
//!
//! - answers **200 only once every activity of the batch is in its bounded queue**, from where a forwarder hands
//!   them to the pipeline's sink in order: an accepted event is never dropped, even when the pipeline is slow;
//! - answers **429** (`Retry-After: 1`) when the queue has no room for the batch, without keeping the body when it
//!   is already full or when [`WebhookConfig::memory_pressure`] says so; the apiserver's webhook backend retries
//!   with backoff. The queue is bounded twice: by
//!   activities ([`WebhookConfig::queue_events`]) and by the bytes of the request bodies they came from
//!   ([`WebhookConfig::queue_bytes`]), an estimate of the memory they hold;
//! - answers **413** for a body over [`WebhookConfig::body_limit`], **400** for a body that is not an audit
//!   `Event`/`EventList`, **401** without the bearer token, **503** while shutting down;
//! - requires a bearer token unless it listens on a loopback address (binding elsewhere without one is refused),
//!   and serves TLS from PEM certificate and key files when configured;
//! - bounds connections and the request bodies read at once, with a timeout on headers and bodies;
//! - answers `GET /healthz` with `ok` (no token needed).
//!
//! Well-formed events that are not traced (reads, intermediate stages) are counted as skipped; malformed events
//! are reported as rejections through the sink, like the file sources do. [`WebhookMetrics`] counts it all.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kelemetry_core::{Pipeline, Shutdown};
//! use kelemetry_sources::webhook::{AuditWebhook, WebhookConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = WebhookConfig::new("127.0.0.1:8087".parse()?, "prod");
//! let webhook = AuditWebhook::bind(config)?;
//! println!("listening on {}", webhook.local_addr());
//! let metrics = webhook.metrics();
//! let pipeline = Pipeline::builder().source(Box::new(webhook)).build();
//! let (_trigger, shutdown) = Shutdown::new();
//! pipeline.run(shutdown).await;
//! println!("accepted {} events", metrics.snapshot().events_accepted);
//! # Ok(()) }
//! ```

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use kelemetry_core::audit::{AuditMapping, AuditOutcome, parse_document};
use kelemetry_core::{ActivitySink, Record, Rejection, Shutdown, Source, SourceError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

/// Default largest request body: 16 MiB (the apiserver's batches are at most 400 events by default).
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Default queue room, in activities.
pub const DEFAULT_QUEUE_EVENTS: usize = 10_000;
/// Default queue room, in bytes of the request bodies the queued activities came from.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Default largest number of open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default largest number of request bodies read and parsed at the same time.
pub const DEFAULT_CONCURRENT_READS: usize = 8;

/// PEM files of the server's certificate chain and private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How an [`AuditWebhook`] listens and how much it holds.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Cluster of batches posted to `/audit` (without a cluster in the path).
    pub default_cluster: String,
    /// The bearer token clients must send; required unless `listen` is a loopback address.
    pub token: Option<String>,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Largest request body, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// Queue room in activities; a batch that does not fit gets 429.
    pub queue_events: usize,
    /// Queue room in bytes of request bodies; a batch that does not fit gets 429.
    pub queue_bytes: usize,
    /// Open connections at most; further clients wait to be accepted.
    pub max_connections: usize,
    /// Request bodies read and parsed at once at most; further requests get 429.
    pub concurrent_reads: usize,
    /// Longest time to receive request headers, and separately the body.
    pub read_timeout: Duration,
    /// How audit events become activities.
    pub mapping: AuditMapping,
    /// Memory pressure: while it reads `true` and activities wait in the queue, new batches get 429 without their
    /// body being read into memory. Whoever watches the process's memory sets it (the `kelemetry` binary does,
    /// with `limits.memory`).
    pub memory_pressure: Option<Arc<AtomicBool>>,
}

impl WebhookConfig {
    /// The defaults, listening on `listen`, naming batches without a cluster `default_cluster`.
    pub fn new(listen: SocketAddr, default_cluster: impl Into<String>) -> Self {
        Self {
            listen,
            default_cluster: default_cluster.into(),
            token: None,
            tls: None,
            body_limit: DEFAULT_BODY_LIMIT,
            queue_events: DEFAULT_QUEUE_EVENTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            concurrent_reads: DEFAULT_CONCURRENT_READS,
            read_timeout: Duration::from_secs(30),
            mapping: AuditMapping::default(),
            memory_pressure: None,
        }
    }
}

/// Why an [`AuditWebhook`] cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Listening on a non-loopback address without a token would let anyone write into the traces.
    #[error(
        "the audit webhook listens on {listen}, which is not a loopback address, but has no bearer token: \
         configure a token (the apiserver's webhook kubeconfig sends it), or listen on 127.0.0.1"
    )]
    TokenRequired {
        /// The address configured.
        listen: SocketAddr,
    },
    /// The token is empty or not usable in an HTTP header.
    #[error("the audit webhook's bearer token must be non-empty visible ASCII")]
    BadToken,
    /// A size or count is zero.
    #[error("the audit webhook's {0} must be at least 1")]
    Zero(&'static str),
    /// The address could not be bound.
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        /// The address.
        listen: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read or used.
    #[error("TLS {what} {}: {detail}", path.display())]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

/// What the webhook did, counted while it runs. Read with [`WebhookMetrics::snapshot`].
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    requests: AtomicU64,
    batches_accepted: AtomicU64,
    events_received: AtomicU64,
    events_accepted: AtomicU64,
    events_skipped: AtomicU64,
    events_invalid: AtomicU64,
    events_delivered: AtomicU64,
    events_lost: AtomicU64,
    throttled: AtomicU64,
    unauthorized: AtomicU64,
    too_large: AtomicU64,
    malformed: AtomicU64,
    unavailable: AtomicU64,
    queued_events: AtomicU64,
}

/// A copy of the [`WebhookMetrics`] counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookCounts {
    /// Requests to `/audit` and `/audit/{cluster}`.
    pub requests: u64,
    /// Batches answered 200.
    pub batches_accepted: u64,
    /// Audit events in the bodies read.
    pub events_received: u64,
    /// Activities put into the queue (of batches answered 200).
    pub events_accepted: u64,
    /// Well-formed events not traced (reads, intermediate stages...).
    pub events_skipped: u64,
    /// Malformed events (reported as rejections).
    pub events_invalid: u64,
    /// Activities handed to the pipeline.
    pub events_delivered: u64,
    /// Accepted activities the pipeline did not take because it had closed (only at shutdown).
    pub events_lost: u64,
    /// Requests answered 429 (queue full, or too many bodies being read).
    pub throttled: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Requests answered 413.
    pub too_large: u64,
    /// Requests answered 400 or 408.
    pub malformed: u64,
    /// Requests answered 503 (shutting down).
    pub unavailable: u64,
    /// Activities in the queue now.
    pub queued_events: u64,
}

impl WebhookMetrics {
    /// A copy of the counters.
    pub fn snapshot(&self) -> WebhookCounts {
        WebhookCounts {
            requests: self.requests.load(Relaxed),
            batches_accepted: self.batches_accepted.load(Relaxed),
            events_received: self.events_received.load(Relaxed),
            events_accepted: self.events_accepted.load(Relaxed),
            events_skipped: self.events_skipped.load(Relaxed),
            events_invalid: self.events_invalid.load(Relaxed),
            events_delivered: self.events_delivered.load(Relaxed),
            events_lost: self.events_lost.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            unauthorized: self.unauthorized.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            unavailable: self.unavailable.load(Relaxed),
            queued_events: self.queued_events.load(Relaxed),
        }
    }
}

/// The audit webhook, bound to its address and ready to run as a [`Source`]. See the module documentation.
pub struct AuditWebhook {
    listener: StdTcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: WebhookConfig,
    metrics: Arc<WebhookMetrics>,
}

impl std::fmt::Debug for AuditWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWebhook")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl AuditWebhook {
    /// Checks the configuration, loads the TLS files and binds the address. Refuses a non-loopback address
    /// without a token.
    pub fn bind(config: WebhookConfig) -> Result<Self, WebhookError> {
        match &config.token {
            None if !config.listen.ip().is_loopback() => {
                return Err(WebhookError::TokenRequired {
                    listen: config.listen,
                });
            }
            Some(token)
                if token.is_empty()
                    || !token.bytes().all(|b| b.is_ascii_graphic())
                    || HeaderValue::from_str(token).is_err() =>
            {
                return Err(WebhookError::BadToken);
            }
            _ => {}
        }
        for (value, what) in [
            (config.body_limit, "body limit"),
            (config.queue_events, "queue size in events"),
            (config.queue_bytes, "queue size in bytes"),
            (config.max_connections, "connection limit"),
            (config.concurrent_reads, "concurrent reads"),
        ] {
            if value == 0 {
                return Err(WebhookError::Zero(what));
            }
        }
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let bind_error = |source| WebhookError::Bind {
            listen: config.listen,
            source,
        };
        let listener = StdTcpListener::bind(config.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            tls,
            config,
            metrics: Arc::default(),
        })
    }

    /// The address it listens on (with the actual port when port 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The counters; read them while it runs or after.
    pub fn metrics(&self) -> Arc<WebhookMetrics> {
        Arc::clone(&self.metrics)
    }
}

fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, WebhookError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_error = |detail: String| WebhookError::Tls {
        what: "certificate",
        path: files.cert.clone(),
        detail,
    };
    let key_error = |detail: String| WebhookError::Tls {
        what: "key",
        path: files.key.clone(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|err| cert_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_error(err.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no CERTIFICATE block found".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| key_error(err.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| cert_error(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| {
            key_error(format!(
                "does not match the certificate or is unusable: {err}"
            ))
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Activities of one accepted batch, with the queue room they hold until delivered.
struct QueuedBatch {
    records: Vec<Record>,
    rejections: Vec<Rejection>,
    _events: Option<OwnedSemaphorePermit>,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// What the request handlers share.
struct Shared {
    default_cluster: String,
    token: Option<String>,
    body_limit: usize,
    read_timeout: Duration,
    mapping: AuditMapping,
    memory_pressure: Option<Arc<AtomicBool>>,
    queue: mpsc::Sender<QueuedBatch>,
    event_room: Arc<Semaphore>,
    byte_room: Arc<Semaphore>,
    queue_events: usize,
    queue_bytes: usize,
    reads: Arc<Semaphore>,
    accepting: AtomicBool,
    metrics: Arc<WebhookMetrics>,
}

/// The client's address, put into each request's extensions by the connection.
#[derive(Copy, Clone, Debug)]
struct PeerAddr(SocketAddr);

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/audit", post(audit_default))
        .route("/audit/{cluster}", post(audit_cluster))
        .with_state(shared)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.accepting.load(Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn audit_default(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let cluster = shared.default_cluster.clone();
    receive(shared, cluster, request).await
}

async fn audit_cluster(
    State(shared): State<Arc<Shared>>,
    UrlPath(cluster): UrlPath<String>,
    request: Request,
) -> Response {
    receive(shared, cluster, request).await
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, text).into_response()
}

fn retry_later(status: StatusCode, text: &str) -> Response {
    let mut response = plain(status, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Compares without an early exit, so response times do not tell how much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        difference |= usize::from(given.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(scheme) = value.get(..7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ")
        && same_secret(value[7..].trim_ascii(), token.as_bytes())
}

/// Reads and drops a request body (at most `limit` bytes, within `timeout`), so that a refusal reaches a client
/// still sending it and the connection stays usable; memory use does not grow with the body.
async fn discard(mut body: Body, limit: usize, timeout: Duration) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > limit {
                    break;
                }
            }
        }
    })
    .await;
}

async fn receive(shared: Arc<Shared>, cluster: String, request: Request) -> Response {
    let metrics = &shared.metrics;
    metrics.requests.fetch_add(1, Relaxed);
    let (parts, body) = request.into_parts();
    let (limit, timeout) = (shared.body_limit, shared.read_timeout);
    let refuse = |response: Response, body: Body| async move {
        discard(body, limit, timeout).await;
        response
    };
    if !shared.accepting.load(Relaxed) {
        metrics.unavailable.fetch_add(1, Relaxed);
        return refuse(
            retry_later(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
            body,
        )
        .await;
    }
    if let Some(token) = &shared.token
        && !authorized(&parts.headers, token)
    {
        metrics.unauthorized.fetch_add(1, Relaxed);
        let mut response = plain(StatusCode::UNAUTHORIZED, "a bearer token is required");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return refuse(response, body).await;
    }
    let peer = parts
        .extensions
        .get::<PeerAddr>()
        .map(|p| p.0.to_string())
        .unwrap_or_else(|| "unknown client".to_owned());
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > shared.body_limit as u64) {
        metrics.too_large.fetch_add(1, Relaxed);
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over the limit of {} bytes", shared.body_limit),
        );
    }
    // Full already, or short of memory: say so without keeping the body.
    // Only while something waits in the queue: memory that draining cannot give back (the allocator may keep
    // what was freed) must not keep the webhook refusing forever.
    let pressed = shared
        .memory_pressure
        .as_ref()
        .is_some_and(|pressure| pressure.load(Relaxed))
        && metrics.queued_events.load(Relaxed) > 0;
    if pressed
        || shared.event_room.available_permits() == 0
        || shared.byte_room.available_permits() == 0
    {
        metrics.throttled.fetch_add(1, Relaxed);
        return refuse(
            retry_later(StatusCode::TOO_MANY_REQUESTS, "queue full"),
            body,
        )
        .await;
    }
    let Ok(_reading) = shared.reads.clone().try_acquire_owned() else {
        metrics.throttled.fetch_add(1, Relaxed);
        return refuse(
            retry_later(StatusCode::TOO_MANY_REQUESTS, "too many batches being read"),
            body,
        )
        .await;
    };
    let bytes = match tokio::time::timeout(
        shared.read_timeout,
        axum::body::to_bytes(body, shared.body_limit),
    )
    .await
    {
        Err(_) => {
            metrics.malformed.fetch_add(1, Relaxed);
            return plain(StatusCode::REQUEST_TIMEOUT, "the body took too long");
        }
        Ok(Err(err)) => {
            let error = err.into_inner();
            if error.is::<http_body_util::LengthLimitError>() {
                metrics.too_large.fetch_add(1, Relaxed);
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body over the limit of {} bytes", shared.body_limit),
                );
            }
            metrics.malformed.fetch_add(1, Relaxed);
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {error}"),
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    let events = match parse_document(&bytes) {
        Ok(events) => events,
        Err(err) => {
            metrics.malformed.fetch_add(1, Relaxed);
            debug!(%peer, %err, "audit webhook: unusable body");
            return plain(
                StatusCode::BAD_REQUEST,
                format!("not an audit EventList: {err}"),
            );
        }
    };
    metrics
        .events_received
        .fetch_add(events.len() as u64, Relaxed);
    let mut records = Vec::with_capacity(events.len());
    let mut rejections = Vec::new();
    let mut skipped = 0u64;
    for (index, event) in events.into_iter().enumerate() {
        match shared.mapping.map(event, &cluster) {
            Ok(AuditOutcome::Activity(activity)) => records.push(Record::Activity(activity)),
            Ok(AuditOutcome::Skipped(_)) => skipped += 1,
            Err(err) => rejections.push(Rejection {
                origin: format!("webhook {peer} item {index}"),
                reason: "invalid audit event".to_owned(),
                detail: err.to_string(),
            }),
        }
    }
    metrics.events_skipped.fetch_add(skipped, Relaxed);
    if records.is_empty() && rejections.is_empty() {
        metrics.batches_accepted.fetch_add(1, Relaxed);
        return plain(StatusCode::OK, "ok");
    }
    let count = records.len();
    if count > shared.queue_events {
        metrics.too_large.fetch_add(1, Relaxed);
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "batch of {count} activities is larger than the queue ({})",
                shared.queue_events
            ),
        );
    }
    let byte_cost = bytes.len().clamp(1, shared.queue_bytes);
    drop(bytes);
    let events_permit = match count {
        0 => None,
        n => match shared
            .event_room
            .clone()
            .try_acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
        {
            Ok(permit) => Some(permit),
            Err(_) => {
                metrics.throttled.fetch_add(1, Relaxed);
                return retry_later(StatusCode::TOO_MANY_REQUESTS, "queue full");
            }
        },
    };
    let bytes_permit = match shared
        .byte_room
        .clone()
        .try_acquire_many_owned(u32::try_from(byte_cost).unwrap_or(u32::MAX))
    {
        Ok(permit) => Some(permit),
        Err(_) => {
            metrics.throttled.fetch_add(1, Relaxed);
            return retry_later(StatusCode::TOO_MANY_REQUESTS, "queue full");
        }
    };
    let invalid = rejections.len() as u64;
    let batch = QueuedBatch {
        records,
        rejections,
        _events: events_permit,
        _bytes: bytes_permit,
    };
    // The permits guarantee room in the channel (it holds as many batches as the queue holds activities).
    metrics.queued_events.fetch_add(count as u64, Relaxed);
    if let Err(err) = shared.queue.try_send(batch) {
        metrics.queued_events.fetch_sub(count as u64, Relaxed);
        return match err {
            mpsc::error::TrySendError::Full(_) => {
                metrics.throttled.fetch_add(1, Relaxed);
                retry_later(StatusCode::TOO_MANY_REQUESTS, "queue full")
            }
            mpsc::error::TrySendError::Closed(_) => {
                metrics.unavailable.fetch_add(1, Relaxed);
                retry_later(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            }
        };
    }
    metrics.events_invalid.fetch_add(invalid, Relaxed);
    metrics.events_accepted.fetch_add(count as u64, Relaxed);
    metrics.batches_accepted.fetch_add(1, Relaxed);
    plain(StatusCode::OK, "ok")
}

/// Hands queued batches to the sink, in order, until told to stop taking new ones and the queue is empty.
async fn forward(
    mut queue: mpsc::Receiver<QueuedBatch>,
    sink: Arc<dyn ActivitySink>,
    metrics: Arc<WebhookMetrics>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut closed = false;
    loop {
        let batch = tokio::select! {
            biased;
            _ = &mut stop, if !closed => {
                // No new batches: the server has stopped. Deliver what was accepted.
                queue.close();
                closed = true;
                continue;
            }
            batch = queue.recv() => batch,
        };
        let Some(batch) = batch else { break };
        for rejection in batch.rejections {
            sink.reject(rejection);
        }
        let count = batch.records.len() as u64;
        let mut records = batch.records.into_iter();
        for record in records.by_ref() {
            if sink.send(record).await.is_err() {
                metrics.events_lost.fetch_add(1, Relaxed);
                break;
            }
            metrics.events_delivered.fetch_add(1, Relaxed);
        }
        let lost = records.len() as u64;
        if lost > 0 {
            metrics.events_lost.fetch_add(lost, Relaxed);
            warn!(
                lost,
                "audit webhook: the pipeline closed before taking accepted events"
            );
        }
        metrics.queued_events.fetch_sub(count, Relaxed);
    }
}

/// How long in-flight requests may take to finish once shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[async_trait]
impl Source for AuditWebhook {
    fn name(&self) -> &str {
        "audit-webhook"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        mut shutdown: Shutdown,
    ) -> Result<(), SourceError> {
        let AuditWebhook {
            listener,
            local_addr,
            tls,
            config,
            metrics,
        } = *self;
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|source| SourceError::Io {
                origin: format!("audit webhook {local_addr}"),
                source,
            })?;
        let (queue, receiver) = mpsc::channel(config.queue_events);
        let shared = Arc::new(Shared {
            default_cluster: config.default_cluster.clone(),
            token: config.token.clone(),
            body_limit: config.body_limit,
            read_timeout: config.read_timeout,
            mapping: config.mapping.clone(),
            memory_pressure: config.memory_pressure.clone(),
            queue,
            event_room: Arc::new(Semaphore::new(config.queue_events)),
            byte_room: Arc::new(Semaphore::new(config.queue_bytes)),
            queue_events: config.queue_events,
            queue_bytes: config.queue_bytes,
            reads: Arc::new(Semaphore::new(config.concurrent_reads)),
            accepting: AtomicBool::new(true),
            metrics: Arc::clone(&metrics),
        });
        let (stop_forwarding, stop) = oneshot::channel();
        let forwarder = tokio::spawn(forward(receiver, sink, Arc::clone(&metrics), stop));
        let app = router(Arc::clone(&shared));
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.read_timeout);
        let graceful = GracefulShutdown::new();
        let connections = Arc::new(Semaphore::new(config.max_connections));
        info!(address = %local_addr, tls = tls.is_some(), "audit webhook listening");
        loop {
            let permit = tokio::select! {
                permit = connections.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = shutdown.requested() => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        warn!(%err, "audit webhook: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.requested() => break,
            };
            let app = app.clone();
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(PeerAddr(peer));
                    let mut app = app.clone();
                    async move { tower::Service::call(&mut app, request.map(Body::new)).await }
                },
            );
            let watcher = graceful.watcher();
            let http = http.clone();
            let tls = tls.clone();
            let handshake_timeout = config.read_timeout;
            tokio::spawn(async move {
                let _permit = permit;
                let served = match tls {
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(err)) => {
                                    debug!(%peer, %err, "audit webhook: TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    debug!(%peer, "audit webhook: TLS handshake timed out");
                                    return;
                                }
                            };
                        let connection = http
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(connection).await
                    }
                    None => {
                        let connection = http
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(connection).await
                    }
                };
                if let Err(err) = served {
                    debug!(%peer, %err, "audit webhook: connection ended with an error");
                }
            });
        }
        // Stop: no new connections; requests still in flight finish (and may still be accepted) within the grace.
        shared.accepting.store(false, Relaxed);
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("audit webhook: connections still open after {SHUTDOWN_GRACE:?}; closing");
        }
        let _ = stop_forwarding.send(());
        if let Err(err) = forwarder.await {
            return Err(SourceError::Other(format!(
                "audit webhook forwarder failed: {err}"
            )));
        }
        let counts = metrics.snapshot();
        info!(
            accepted = counts.events_accepted,
            delivered = counts.events_delivered,
            throttled = counts.throttled,
            "audit webhook stopped"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn bearer_header_is_checked() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "t0ken"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ken"),
        );
        assert!(authorized(&headers, "t0ken"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t0ken "),
        );
        assert!(authorized(&headers, "t0ken"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic t0ken"),
        );
        assert!(!authorized(&headers, "t0ken"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ke"),
        );
        assert!(!authorized(&headers, "t0ken"));
    }

    #[test]
    fn non_loopback_without_token_is_refused() {
        let config = WebhookConfig::new(
            "0.0.0.0:0"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            "c",
        );
        assert!(matches!(
            AuditWebhook::bind(config),
            Err(WebhookError::TokenRequired { .. })
        ));
        let mut config = WebhookConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "c");
        config.token = Some("has space".into());
        assert!(matches!(
            AuditWebhook::bind(config),
            Err(WebhookError::BadToken)
        ));
        let mut config = WebhookConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "c");
        config.queue_events = 0;
        assert!(matches!(
            AuditWebhook::bind(config),
            Err(WebhookError::Zero(_))
        ));
    }
}
