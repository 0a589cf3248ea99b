//! [`OtlpExporter`]: spans to an OpenTelemetry Protocol endpoint (a Jaeger, a Tempo, a Collector, a vendor) over
//! gRPC or HTTP/protobuf.
//!
//! Spans are built as data (DESIGN §5.2): each [`SpanRecord`] becomes an OTLP span through [`crate::otlp`], with its
//! trace id, span id, parent and times exactly as computed, one resource per service name (`object`, `link`,
//! `audit`, `event`, ...). Nothing goes through a tracer, so nothing is re-timed or re-numbered.
//!
//! # Delivery
//!
//! [`Exporter::export`] only puts a batch into a bounded buffer (at most [`OtlpConfig::buffer_spans`] spans) and
//! returns; one background task per exporter sends the buffer in requests of at most
//! [`OtlpConfig::max_batch_spans`] spans. So an endpoint that is down for a while does not hold the pipeline up:
//!
//! - a retryable failure (the endpoint is unreachable, gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
//!   `RESOURCE_EXHAUSTED`..., HTTP 408, 429, 502, 503, 504) is retried with exponential backoff, from
//!   [`OtlpConfig::initial_backoff`] up to [`OtlpConfig::max_backoff`], for as long as it takes, while new spans
//!   wait in the buffer;
//! - a batch that does not fit in the buffer any more is refused with [`ExportError::Permanent`], so the pipeline
//!   counts it as dropped, and it is counted in [`OtlpStats::spans_dropped_buffer_full`]; a warning is logged when
//!   the buffer becomes full and a note when it has room again;
//! - a permanent failure (gRPC `INVALID_ARGUMENT`, `UNAUTHENTICATED`..., other HTTP statuses) drops the request's
//!   spans, counted in [`OtlpStats::spans_rejected`] and logged, as are spans the endpoint reports as rejected in a
//!   partial success;
//! - [`Exporter::flush`] waits until the buffer is delivered, at most [`OtlpConfig::flush_timeout`]; what is
//!   still undelivered then is counted in [`OtlpStats::spans_dropped_undelivered`] and reported as an error.
//!
//! Nothing is dropped without being counted: accepted = exported + rejected + dropped undelivered + buffered.
//!
//! # Endpoints
//!
//! gRPC: `http://host:4317` or `https://host:4317` (TLS with the web PKI roots, or [`OtlpTls`]). HTTP:
//! `http(s)://host:4318`; `/v1/traces` is appended unless the endpoint already ends with it. Headers (for
//! example `authorization` or a tenant header such as Tempo's `x-scope-orgid`) go on every request; gzip compresses
//! request bodies on both protocols.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::{ExportError, Exporter, SpanRecord};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_client::TraceServiceClient,
};
use tokio::sync::Notify;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, error, info, warn};

use crate::otlp::export_request;

/// How spans travel.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`), usually port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`), usually port 4318.
    HttpProtobuf,
}

impl std::fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

/// TLS settings beyond the defaults (the web PKI roots, the endpoint's host name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpTls {
    /// A PEM bundle of certificate authorities to trust in addition to the web PKI roots.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// The client certificate chain (PEM), for mutual TLS; needs [`OtlpTls::client_key_pem`].
    pub client_certificate_pem: Option<Vec<u8>>,
    /// The client's private key (PEM), for mutual TLS.
    pub client_key_pem: Option<Vec<u8>>,
    /// The name to verify the server certificate against instead of the endpoint's host (gRPC only).
    pub server_name: Option<String>,
}

/// Where and how an [`OtlpExporter`] sends spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The endpoint URL (see the [module documentation](self)).
    pub endpoint: String,
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// Headers sent with every request, e.g. `("authorization", "Bearer ...")`.
    pub headers: Vec<(String, String)>,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// TLS settings; `https` endpoints use TLS even when this is `None`.
    pub tls: Option<OtlpTls>,
    /// Timeout of one request (and of connecting).
    pub timeout: Duration,
    /// At most this many spans wait for delivery; a batch that does not fit is dropped and counted.
    pub buffer_spans: usize,
    /// At most this many spans per request.
    pub max_batch_spans: usize,
    /// First wait after a retryable failure.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// How long [`Exporter::flush`] waits for the buffer to drain.
    pub flush_timeout: Duration,
    /// Resource attributes added after `service.name` to every resource (e.g. `k8s.cluster.name`).
    pub resource_attributes: Vec<(String, String)>,
}

impl OtlpConfig {
    /// OTLP/gRPC to `endpoint` (e.g. `http://127.0.0.1:4317`), with the default limits.
    pub fn grpc(endpoint: impl Into<String>) -> Self {
        Self::new(endpoint, OtlpProtocol::Grpc)
    }

    /// OTLP/HTTP with protobuf bodies to `endpoint` (e.g. `http://127.0.0.1:4318`), with the default limits.
    pub fn http(endpoint: impl Into<String>) -> Self {
        Self::new(endpoint, OtlpProtocol::HttpProtobuf)
    }

    /// `endpoint` over `protocol` with the defaults: no headers, no gzip, 10 s timeout, a buffer of 65,536 spans,
    /// requests of at most 512 spans, backoff from 200 ms to 30 s, 30 s to flush.
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            headers: Vec::new(),
            gzip: false,
            tls: None,
            timeout: Duration::from_secs(10),
            buffer_spans: 65_536,
            max_batch_spans: 512,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(30),
            resource_attributes: Vec::new(),
        }
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Compresses request bodies with gzip.
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Uses these TLS settings.
    pub fn with_tls(mut self, tls: OtlpTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Keeps at most `spans` spans waiting (at least one).
    pub fn with_buffer_spans(mut self, spans: usize) -> Self {
        self.buffer_spans = spans.max(1);
        self
    }

    /// Sends at most `spans` spans per request (at least one).
    pub fn with_max_batch_spans(mut self, spans: usize) -> Self {
        self.max_batch_spans = spans.max(1);
        self
    }

    /// Waits `initial` after the first retryable failure, doubling up to `max`.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Times out one request after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Waits at most `timeout` in [`Exporter::flush`].
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Adds a resource attribute to every resource.
    pub fn with_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }
}

/// An [`OtlpConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpConfigError {
    /// The endpoint is not a usable URL.
    #[error("OTLP endpoint {endpoint:?} is not usable: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value cannot be sent.
    #[error("OTLP header {name:?} cannot be sent: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings cannot be used.
    #[error("OTLP TLS settings for {endpoint:?} are not usable: {reason}")]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// No Tokio runtime is running; the exporter needs one for its delivery task.
    #[error("an OTLP exporter must be created inside a Tokio runtime")]
    NoRuntime,
}

/// Counters of an [`OtlpExporter`], shared with whoever reports metrics. All counts are spans unless named
/// otherwise.
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// Taken into the buffer.
    pub spans_accepted: AtomicU64,
    /// Delivered and accepted by the endpoint.
    pub spans_exported: AtomicU64,
    /// Refused because the buffer was full (also reported to the pipeline as a permanent failure).
    pub spans_dropped_buffer_full: AtomicU64,
    /// Refused by the endpoint: a permanent failure or the rejected part of a partial success.
    pub spans_rejected: AtomicU64,
    /// Still undelivered when a flush timed out or the exporter was dropped.
    pub spans_dropped_undelivered: AtomicU64,
    /// Waiting in the buffer or in the request being sent (a gauge).
    pub spans_buffered: AtomicU64,
    /// Requests that failed and were retried.
    pub requests_retried: AtomicU64,
    /// Requests that succeeded.
    pub requests_sent: AtomicU64,
}

/// A copy of [`OtlpStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtlpReport {
    /// See [`OtlpStats::spans_accepted`].
    pub spans_accepted: u64,
    /// See [`OtlpStats::spans_exported`].
    pub spans_exported: u64,
    /// See [`OtlpStats::spans_dropped_buffer_full`].
    pub spans_dropped_buffer_full: u64,
    /// See [`OtlpStats::spans_rejected`].
    pub spans_rejected: u64,
    /// See [`OtlpStats::spans_dropped_undelivered`].
    pub spans_dropped_undelivered: u64,
    /// See [`OtlpStats::spans_buffered`].
    pub spans_buffered: u64,
    /// See [`OtlpStats::requests_retried`].
    pub requests_retried: u64,
    /// See [`OtlpStats::requests_sent`].
    pub requests_sent: u64,
}

impl OtlpReport {
    /// Every span that will never arrive: dropped because the buffer was full, rejected, or undelivered.
    pub fn spans_lost(&self) -> u64 {
        self.spans_dropped_buffer_full + self.spans_rejected + self.spans_dropped_undelivered
    }
}

impl OtlpStats {
    /// The counters now.
    pub fn report(&self) -> OtlpReport {
        OtlpReport {
            spans_accepted: self.spans_accepted.load(Relaxed),
            spans_exported: self.spans_exported.load(Relaxed),
            spans_dropped_buffer_full: self.spans_dropped_buffer_full.load(Relaxed),
            spans_rejected: self.spans_rejected.load(Relaxed),
            spans_dropped_undelivered: self.spans_dropped_undelivered.load(Relaxed),
            spans_buffered: self.spans_buffered.load(Relaxed),
            requests_retried: self.requests_retried.load(Relaxed),
            requests_sent: self.requests_sent.load(Relaxed),
        }
    }
}

/// The spans waiting for delivery.
#[derive(Debug, Default)]
struct Buffer {
    spans: VecDeque<SpanRecord>,
    /// Spans taken by the delivery task and not yet delivered or dropped.
    in_flight: usize,
    /// A batch was refused since the buffer last had room (for logging the transitions only).
    overflowing: bool,
    /// The exporter is gone: the delivery task ends once the buffer is empty.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the delivery task: spans arrived, or it is closed.
    arrived: Notify,
    /// Wakes flushes: a request finished.
    progressed: Notify,
    /// Tells the delivery task to drop the request it keeps retrying (a flush timed out).
    abandon: AtomicBool,
    abandoned: Notify,
    stats: Arc<OtlpStats>,
    destination: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // A panic while holding the lock cannot leave the buffer inconsistent (every update is one step), so a
        // poisoned lock is still used.
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_buffered(&self, buffer: &Buffer) {
        self.stats
            .spans_buffered
            .store((buffer.spans.len() + buffer.in_flight) as u64, Relaxed);
    }
}

/// Sends spans to an OTLP endpoint; see the [module documentation](self) for delivery, retry and the buffer.
///
/// ```no_run
/// use kelemetry_exporters::otlp_exporter::{OtlpConfig, OtlpExporter};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = OtlpConfig::grpc("https://tempo.example:4317")
///     .with_header("x-scope-orgid", "team-a")
///     .with_gzip(true);
/// let exporter = OtlpExporter::new(config)?;
/// // Hand it to a pipeline: `Pipeline::builder().exporter(std::sync::Arc::new(exporter))`.
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OtlpExporter {
    shared: Arc<Shared>,
    capacity: usize,
    flush_timeout: Duration,
    worker: tokio::task::JoinHandle<()>,
}

impl OtlpExporter {
    /// An exporter for `config`; starts its delivery task, so it must be called inside a Tokio runtime. Nothing
    /// is connected yet: an unreachable endpoint shows up as retried requests.
    pub fn new(config: OtlpConfig) -> Result<Self, OtlpConfigError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| OtlpConfigError::NoRuntime)?;
        let transport = Transport::new(&config)?;
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            arrived: Notify::new(),
            progressed: Notify::new(),
            abandon: AtomicBool::new(false),
            abandoned: Notify::new(),
            stats: Arc::new(OtlpStats::default()),
            destination: format!("{} ({})", config.endpoint, config.protocol),
        });
        let worker = runtime.spawn(deliver(
            shared.clone(),
            transport,
            Backoff {
                initial: config.initial_backoff,
                max: config.max_backoff.max(config.initial_backoff),
            },
            config.max_batch_spans.max(1),
        ));
        Ok(Self {
            shared,
            capacity: config.buffer_spans.max(1),
            flush_timeout: config.flush_timeout,
            worker,
        })
    }

    /// The counters, shared: they keep counting after this call.
    pub fn stats(&self) -> Arc<OtlpStats> {
        self.shared.stats.clone()
    }

    /// Where spans go, for logs: the endpoint and the protocol.
    pub fn destination(&self) -> &str {
        &self.shared.destination
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        let mut buffer = self.shared.lock();
        let undelivered = buffer.spans.len() + buffer.in_flight;
        buffer.spans.clear();
        buffer.in_flight = 0;
        buffer.closed = true;
        self.shared.set_buffered(&buffer);
        drop(buffer);
        self.worker.abort();
        if undelivered > 0 {
            self.shared
                .stats
                .spans_dropped_undelivered
                .fetch_add(undelivered as u64, Relaxed);
            warn!(
                destination = %self.shared.destination,
                spans = undelivered,
                "OTLP exporter dropped with spans undelivered"
            );
        }
    }
}

#[async_trait]
impl Exporter for OtlpExporter {
    fn name(&self) -> &str {
        "otlp"
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buffer = self.shared.lock();
        let waiting = buffer.spans.len() + buffer.in_flight;
        if waiting + batch.len() > self.capacity {
            let stats = &self.shared.stats;
            stats
                .spans_dropped_buffer_full
                .fetch_add(batch.len() as u64, Relaxed);
            if !buffer.overflowing {
                buffer.overflowing = true;
                warn!(
                    destination = %self.shared.destination,
                    waiting,
                    capacity = self.capacity,
                    "OTLP buffer full: dropping new batches until it drains"
                );
            }
            return Err(ExportError::Permanent(format!(
                "OTLP buffer for {} is full ({waiting} of {} spans waiting): a batch of {} spans was dropped",
                self.shared.destination,
                self.capacity,
                batch.len()
            )));
        }
        if buffer.overflowing {
            buffer.overflowing = false;
            info!(
                destination = %self.shared.destination,
                dropped_so_far = self.shared.stats.spans_dropped_buffer_full.load(Relaxed),
                "OTLP buffer has room again"
            );
        }
        buffer.spans.extend(batch.iter().cloned());
        self.shared.set_buffered(&buffer);
        drop(buffer);
        self.shared
            .stats
            .spans_accepted
            .fetch_add(batch.len() as u64, Relaxed);
        self.shared.arrived.notify_one();
        Ok(())
    }

    async fn flush(&self) -> Result<(), ExportError> {
        let deadline = tokio::time::Instant::now() + self.flush_timeout;
        loop {
            let progressed = self.shared.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            {
                let buffer = self.shared.lock();
                if buffer.spans.is_empty() && buffer.in_flight == 0 {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                let mut buffer = self.shared.lock();
                let queued = buffer.spans.len();
                let in_flight = buffer.in_flight;
                buffer.spans.clear();
                self.shared.set_buffered(&buffer);
                drop(buffer);
                self.shared
                    .stats
                    .spans_dropped_undelivered
                    .fetch_add(queued as u64, Relaxed);
                if in_flight > 0 {
                    // The delivery task counts the request it drops.
                    self.shared.abandon.store(true, Relaxed);
                    self.shared.abandoned.notify_one();
                }
                error!(
                    destination = %self.shared.destination,
                    spans = queued + in_flight,
                    timeout = ?self.flush_timeout,
                    "OTLP flush timed out; undelivered spans dropped"
                );
                return Err(ExportError::Retryable(format!(
                    "{} spans were not delivered to {} within {:?} and were dropped",
                    queued + in_flight,
                    self.shared.destination,
                    self.flush_timeout
                )));
            }
        }
    }
}

#[derive(Copy, Clone, Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

/// The delivery task: takes requests' worth of spans from the buffer and sends each until it is delivered,
/// rejected or abandoned.
async fn deliver(shared: Arc<Shared>, transport: Transport, backoff: Backoff, max_batch: usize) {
    loop {
        let batch: Vec<SpanRecord> = loop {
            {
                let mut buffer = shared.lock();
                if !buffer.spans.is_empty() {
                    let take = buffer.spans.len().min(max_batch);
                    let batch: Vec<SpanRecord> = buffer.spans.drain(..take).collect();
                    buffer.in_flight = batch.len();
                    break batch;
                }
                if buffer.closed {
                    return;
                }
            }
            shared.arrived.notified().await;
        };
        shared.abandon.store(false, Relaxed);
        let request = transport.request(&batch);
        let mut wait = backoff.initial;
        let mut failures = 0u32;
        loop {
            match transport.send(request.clone()).await {
                Ok(rejected) => {
                    let rejected = rejected.min(batch.len() as u64);
                    let stats = &shared.stats;
                    stats.requests_sent.fetch_add(1, Relaxed);
                    stats
                        .spans_exported
                        .fetch_add(batch.len() as u64 - rejected, Relaxed);
                    stats.spans_rejected.fetch_add(rejected, Relaxed);
                    if failures > 0 {
                        info!(destination = %shared.destination, failures, "OTLP endpoint reachable again");
                    }
                    break;
                }
                Err(ExportError::Permanent(message)) => {
                    shared
                        .stats
                        .spans_rejected
                        .fetch_add(batch.len() as u64, Relaxed);
                    error!(destination = %shared.destination, spans = batch.len(), %message, "OTLP export rejected; spans dropped");
                    break;
                }
                Err(ExportError::Retryable(message)) => {
                    failures += 1;
                    shared.stats.requests_retried.fetch_add(1, Relaxed);
                    if failures == 1 {
                        warn!(destination = %shared.destination, spans = batch.len(), %message, "OTLP export failed; retrying with backoff");
                    } else {
                        debug!(destination = %shared.destination, failures, %message, "OTLP export failed again");
                    }
                    let abandoned = shared.abandoned.notified();
                    tokio::pin!(abandoned);
                    abandoned.as_mut().enable();
                    if !shared.abandon.load(Relaxed) {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = abandoned => {}
                        }
                    }
                    if shared.abandon.swap(false, Relaxed) {
                        shared
                            .stats
                            .spans_dropped_undelivered
                            .fetch_add(batch.len() as u64, Relaxed);
                        break;
                    }
                    wait = (wait * 2).min(backoff.max);
                }
            }
        }
        let mut buffer = shared.lock();
        buffer.in_flight = 0;
        shared.set_buffered(&buffer);
        drop(buffer);
        shared.progressed.notify_waiters();
    }
}

/// A prepared request, cheap to send again.
#[derive(Clone)]
enum Prepared {
    Grpc(ExportTraceServiceRequest),
    /// The encoded (and maybe compressed) body, shared between retries.
    Http(Arc<Vec<u8>>),
}

enum Transport {
    Grpc {
        client: Box<TraceServiceClient<Channel>>,
        headers: MetadataMap,
        timeout: Duration,
        resource_attributes: Vec<(String, String)>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        gzip: bool,
        resource_attributes: Vec<(String, String)>,
    },
}

fn endpoint_error(endpoint: &str, reason: impl std::fmt::Display) -> OtlpConfigError {
    OtlpConfigError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_string(),
    }
}

fn tls_error(endpoint: &str, reason: impl std::fmt::Display) -> OtlpConfigError {
    OtlpConfigError::Tls {
        endpoint: endpoint.to_owned(),
        reason: reason.to_string(),
    }
}

/// The HTTP URL of the traces signal: the endpoint with `/v1/traces` appended unless it already ends with it.
pub fn http_traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

impl Transport {
    fn new(config: &OtlpConfig) -> Result<Self, OtlpConfigError> {
        let endpoint = config.endpoint.as_str();
        let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !scheme_ok {
            return Err(endpoint_error(
                endpoint,
                "it must start with http:// or https://",
            ));
        }
        let https = endpoint.starts_with("https://");
        match config.protocol {
            OtlpProtocol::Grpc => {
                let mut channel = Endpoint::from_shared(endpoint.to_owned())
                    .map_err(|e| endpoint_error(endpoint, e))?
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout);
                if https || config.tls.is_some() {
                    channel = channel
                        .tls_config(grpc_tls(endpoint, config.tls.as_ref())?)
                        .map_err(|e| tls_error(endpoint, e))?;
                }
                let mut client = TraceServiceClient::new(channel.connect_lazy())
                    .max_decoding_message_size(4 * 1024 * 1024);
                if config.gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                let mut headers = MetadataMap::new();
                for (name, value) in &config.headers {
                    let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|e| header_error(name, e))?;
                    let value = MetadataValue::try_from(value.as_str())
                        .map_err(|e| header_error(name, e))?;
                    headers.insert(key, value);
                }
                Ok(Self::Grpc {
                    client: Box::new(client),
                    headers,
                    timeout: config.timeout,
                    resource_attributes: config.resource_attributes.clone(),
                })
            }
            OtlpProtocol::HttpProtobuf => {
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &config.headers {
                    let key = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| header_error(name, e))?;
                    let value = reqwest::header::HeaderValue::from_str(value)
                        .map_err(|e| header_error(name, e))?;
                    headers.insert(key, value);
                }
                let mut builder = reqwest::Client::builder()
                    .use_rustls_tls()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout)
                    .default_headers(headers);
                if let Some(tls) = &config.tls {
                    if let Some(ca) = &tls.ca_certificate_pem {
                        for certificate in reqwest::Certificate::from_pem_bundle(ca)
                            .map_err(|e| tls_error(endpoint, e))?
                        {
                            builder = builder.add_root_certificate(certificate);
                        }
                    }
                    match (&tls.client_certificate_pem, &tls.client_key_pem) {
                        (Some(certificate), Some(key)) => {
                            let mut pem = certificate.clone();
                            pem.push(b'\n');
                            pem.extend_from_slice(key);
                            builder = builder.identity(
                                reqwest::Identity::from_pem(&pem)
                                    .map_err(|e| tls_error(endpoint, e))?,
                            );
                        }
                        (None, None) => {}
                        _ => {
                            return Err(tls_error(
                                endpoint,
                                "a client certificate needs its key and a key needs its certificate",
                            ));
                        }
                    }
                }
                let client = builder.build().map_err(|e| endpoint_error(endpoint, e))?;
                Ok(Self::Http {
                    client,
                    url: http_traces_url(endpoint),
                    gzip: config.gzip,
                    resource_attributes: config.resource_attributes.clone(),
                })
            }
        }
    }

    fn request(&self, batch: &[SpanRecord]) -> Prepared {
        match self {
            Self::Grpc {
                resource_attributes,
                ..
            } => Prepared::Grpc(export_request(batch, resource_attributes)),
            Self::Http {
                gzip,
                resource_attributes,
                ..
            } => {
                let body =
                    prost::Message::encode_to_vec(&export_request(batch, resource_attributes));
                let body = if *gzip { gzip_bytes(&body) } else { body };
                Prepared::Http(Arc::new(body))
            }
        }
    }

    /// Sends one request; `Ok` carries how many spans the endpoint rejected in a partial success.
    async fn send(&self, prepared: Prepared) -> Result<u64, ExportError> {
        match (self, prepared) {
            (
                Self::Grpc {
                    client,
                    headers,
                    timeout,
                    ..
                },
                Prepared::Grpc(message),
            ) => {
                let mut request = tonic::Request::new(message);
                *request.metadata_mut() = headers.clone();
                request.set_timeout(*timeout);
                let response = client
                    .as_ref()
                    .clone()
                    .export(request)
                    .await
                    .map_err(|status| grpc_error(&status))?;
                Ok(rejected_spans(response.get_ref()))
            }
            (
                Self::Http {
                    client, url, gzip, ..
                },
                Prepared::Http(body),
            ) => {
                let mut request = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(body.as_ref().clone());
                if *gzip {
                    request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
                let response = request.send().await.map_err(|e| http_send_error(&e))?;
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                if status.is_success() {
                    let parsed: Option<ExportTraceServiceResponse> =
                        prost::Message::decode(bytes.as_ref()).ok();
                    return Ok(parsed.as_ref().map(rejected_spans).unwrap_or(0));
                }
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.chars().take(300).collect();
                Err(http_status_error(status.as_u16(), &text))
            }
            _ => Err(ExportError::Permanent(
                "internal: a request prepared for another protocol".into(),
            )),
        }
    }
}

fn header_error(name: &str, reason: impl std::fmt::Display) -> OtlpConfigError {
    OtlpConfigError::Header {
        name: name.to_owned(),
        reason: reason.to_string(),
    }
}

fn grpc_tls(endpoint: &str, tls: Option<&OtlpTls>) -> Result<ClientTlsConfig, OtlpConfigError> {
    let mut config = ClientTlsConfig::new().with_webpki_roots();
    let Some(tls) = tls else {
        return Ok(config);
    };
    if let Some(ca) = &tls.ca_certificate_pem {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    match (&tls.client_certificate_pem, &tls.client_key_pem) {
        (Some(certificate), Some(key)) => {
            config = config.identity(Identity::from_pem(certificate, key));
        }
        (None, None) => {}
        _ => {
            return Err(tls_error(
                endpoint,
                "a client certificate needs its key and a key needs its certificate",
            ));
        }
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

fn rejected_spans(response: &ExportTraceServiceResponse) -> u64 {
    match &response.partial_success {
        Some(partial) if partial.rejected_spans > 0 => {
            warn!(
                rejected = partial.rejected_spans,
                message = %partial.error_message,
                "OTLP endpoint rejected part of a request"
            );
            u64::try_from(partial.rejected_spans).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Which gRPC statuses are worth retrying (the OTLP specification's list, plus `RESOURCE_EXHAUSTED` and
/// `UNKNOWN`, which tonic reports for broken connections).
pub fn grpc_code_is_retryable(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

fn grpc_error(status: &tonic::Status) -> ExportError {
    let message = format!("gRPC {:?}: {}", status.code(), status.message());
    if grpc_code_is_retryable(status.code()) {
        ExportError::Retryable(message)
    } else {
        ExportError::Permanent(message)
    }
}

/// Which HTTP statuses are worth retrying (the OTLP specification's list: 429, 502, 503, 504, and 408).
pub fn http_status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 502 | 503 | 504)
}

fn http_status_error(status: u16, body: &str) -> ExportError {
    let message = format!("HTTP {status}: {body}");
    if http_status_is_retryable(status) {
        ExportError::Retryable(message)
    } else {
        ExportError::Permanent(message)
    }
}

fn http_send_error(error: &reqwest::Error) -> ExportError {
    if error.is_builder() {
        ExportError::Permanent(format!("cannot build the request: {error}"))
    } else {
        // Connecting, timing out, a reset connection: the endpoint may come back.
        ExportError::Retryable(format!("{error}"))
    }
}

fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    match encoder.write_all(body).and_then(|()| encoder.finish()) {
        Ok(compressed) => compressed,
        Err(_) => body.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_and_statuses_follow_the_specification() {
        assert!(grpc_code_is_retryable(tonic::Code::Unavailable));
        assert!(grpc_code_is_retryable(tonic::Code::DeadlineExceeded));
        assert!(!grpc_code_is_retryable(tonic::Code::InvalidArgument));
        assert!(!grpc_code_is_retryable(tonic::Code::Unauthenticated));
        for status in [408, 429, 502, 503, 504] {
            assert!(http_status_is_retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 500] {
            assert!(!http_status_is_retryable(status), "{status}");
        }
    }

    #[test]
    fn http_url_gets_the_signal_path_once() {
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("https://vendor.example/otlp/v1/traces"),
            "https://vendor.example/otlp/v1/traces"
        );
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = b"hello hello hello hello".repeat(20);
        let compressed = gzip_bytes(&body);
        assert!(compressed.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    #[tokio::test]
    async fn bad_configuration_is_named() {
        let err = OtlpExporter::new(OtlpConfig::grpc("127.0.0.1:4317")).unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        let err = OtlpExporter::new(
            OtlpConfig::http("http://127.0.0.1:4318").with_header("bad header", "x"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad header"), "{err}");
        let tls = OtlpTls {
            client_certificate_pem: Some(b"x".to_vec()),
            ..OtlpTls::default()
        };
        let err =
            OtlpExporter::new(OtlpConfig::http("https://x.example").with_tls(tls)).unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
    }

    #[test]
    fn creating_outside_a_runtime_is_an_error() {
        let err = OtlpExporter::new(OtlpConfig::grpc("http://127.0.0.1:4317")).unwrap_err();
        assert!(matches!(err, OtlpConfigError::NoRuntime));
    }
}
