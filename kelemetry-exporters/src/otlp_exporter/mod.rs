//! [`OtlpExporter`]: spans to an OpenTelemetry Protocol endpoint (a Jaeger, a Tempo, a Collector, a vendor) over
//! gRPC or HTTP/protobuf.
//!
//! Spans are built as data: each [`SpanRecord`] becomes an OTLP span through [`kelemetry_core::otlp`], with its
//! trace id, span id, parent and times exactly as computed, one resource per service name (`object`, `link`,
//! `audit`, `event`, ...). Nothing goes through a tracer, so nothing is re-timed or re-numbered. Each span is encoded
//! once, as it is buffered ([`kelemetry_core::otlp::encode_span`]), and a request is put together from those bytes
//! ([`kelemetry_core::otlp::encode_export_request`]).
//!
//! # Delivery
//!
//! [`Exporter::export`] puts a batch into a bounded buffer (at most [`OtlpConfig::buffer_spans`] spans and
//! [`OtlpConfig::buffer_bytes`] bytes of them); one background task per exporter sends the buffer in requests of at
//! most [`OtlpConfig::max_batch_spans`] spans, at most [`OtlpConfig::concurrent_requests`] of them at once (the
//! pipeline hands the exporter as many batches at once: [`Exporter::concurrent_exports`]). By default
//! ([`OtlpConfig::confirm_delivery`]) `export` then waits until the endpoint confirmed every span of the batch, so
//! the pipeline acknowledges to its sources only what was delivered; it fails at once, retryably, while the endpoint
//! is failing, so the pipeline's own retries and counts apply rather than a long wait. Without confirmation,
//! `export` returns once the batch is buffered, and an endpoint that is down for a while does not hold the pipeline
//! up:
//!
//! - a retryable failure (the endpoint is unreachable, gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
//!   `RESOURCE_EXHAUSTED`..., HTTP 408, 429, 502, 503, 504) is retried with exponential backoff, from
//!   [`OtlpConfig::initial_backoff`] up to [`OtlpConfig::max_backoff`], for as long as it takes, while new spans
//!   wait in the buffer;
//! - a batch that does not fit in the buffer any more is refused with a permanent [`ExportError`], so the pipeline
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
//!
//! # Layout
//!
//! [`config`] holds [`OtlpConfig`]; the buffer and the state shared with the delivery task are in `buffer`, the
//! task in `delivery`, the two protocols in `grpc` and `http` behind `transport`, the counters in `stats`.

mod buffer;
pub mod config;
mod delivery;
mod grpc;
mod http;
mod stats;
mod transport;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::{ExportError, Exporter, SpanRecord};
use tracing::{error, info, warn};

pub use config::{OtlpConfig, OtlpConfigError, OtlpProtocol, OtlpTls};
pub use grpc::grpc_code_is_retryable;
pub use http::{http_status_is_retryable, http_traces_url};
pub use stats::{OtlpReport, OtlpStats};

use buffer::{Buffer, Shared};
use delivery::deliver;
use kelemetry_core::RetryPolicy;
use transport::Transport;

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
    capacity_bytes: usize,
    flush_timeout: Duration,
    confirm_delivery: bool,
    concurrent_requests: usize,
    worker: tokio::task::JoinHandle<()>,
}

impl OtlpExporter {
    /// An exporter for `config`; starts its delivery task, so it must be called inside a Tokio runtime. Nothing
    /// is connected yet: an unreachable endpoint shows up as retried requests.
    pub fn new(config: OtlpConfig) -> Result<Self, OtlpConfigError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| OtlpConfigError::NoRuntime)?;
        let transport = Transport::new(&config)?;
        let shared = Arc::new(Shared::new(format!(
            "{} ({})",
            config.endpoint, config.protocol
        )));
        let concurrent_requests = config.concurrent_requests.max(1);
        let worker = runtime.spawn(deliver(
            shared.clone(),
            transport,
            RetryPolicy::unlimited(config.initial_backoff, config.max_backoff),
            config.max_batch_spans.max(1),
            concurrent_requests,
        ));
        Ok(Self {
            shared,
            capacity: config.buffer_spans.max(1),
            capacity_bytes: config.buffer_bytes,
            flush_timeout: config.flush_timeout,
            confirm_delivery: config.confirm_delivery,
            concurrent_requests,
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

    /// Counts and logs a batch refused because the buffer is full; the error the pipeline gets.
    fn refuse(&self, buffer: &mut Buffer, batch: usize) -> ExportError {
        let waiting = buffer.waiting();
        let waiting_bytes = buffer.waiting_bytes();
        self.shared
            .stats
            .spans_dropped_buffer_full
            .fetch_add(batch as u64, Relaxed);
        if !buffer.overflowing {
            buffer.overflowing = true;
            warn!(
                destination = %self.shared.destination,
                waiting,
                waiting_bytes,
                capacity = self.capacity,
                capacity_bytes = self.capacity_bytes,
                "OTLP buffer full: dropping new batches until it drains"
            );
        }
        ExportError::permanent(format!(
            "OTLP buffer for {} is full ({waiting} of {} spans, {waiting_bytes} of {} bytes waiting): a batch of \
             {batch} spans was dropped",
            self.shared.destination, self.capacity, self.capacity_bytes,
        ))
    }

    /// Puts `batch` into the buffer, with a ticket to wait on when exports are confirmed; refuses it when full.
    fn buffer(
        &self,
        batch: &[SpanRecord],
    ) -> Result<Option<tokio::sync::oneshot::Receiver<bool>>, ExportError> {
        // Converted before the lock is taken, so that the delivery task does not wait on it.
        let converted = buffer::BufferedSpan::convert(batch);
        let bytes = converted
            .iter()
            .map(buffer::BufferedSpan::bytes)
            .sum::<usize>();
        let mut buffer = self.shared.lock();
        let over_bytes =
            buffer.waiting() > 0 && buffer.waiting_bytes() + bytes > self.capacity_bytes;
        if buffer.waiting() + batch.len() > self.capacity || over_bytes {
            return Err(self.refuse(&mut buffer, batch.len()));
        }
        if buffer.overflowing {
            buffer.overflowing = false;
            info!(
                destination = %self.shared.destination,
                dropped_so_far = self.shared.stats.spans_dropped_buffer_full.load(Relaxed),
                "OTLP buffer has room again"
            );
        }
        buffer.push(converted, bytes);
        let start = buffer.pushed;
        let end = start + batch.len() as u64;
        buffer.pushed = end;
        let confirmed = self.confirm_delivery.then(|| {
            let (done, confirmed) = tokio::sync::oneshot::channel();
            buffer
                .tickets
                .push_back(buffer::Ticket::new(start, end, done));
            confirmed
        });
        self.shared.set_buffered(&buffer);
        drop(buffer);
        self.shared
            .stats
            .spans_accepted
            .fetch_add(batch.len() as u64, Relaxed);
        self.shared.arrived.notify_one();
        Ok(confirmed)
    }

    /// Waits until the endpoint confirmed a batch of `spans` spans (at most the flush timeout).
    async fn confirmed(
        &self,
        confirmed: tokio::sync::oneshot::Receiver<bool>,
        spans: usize,
    ) -> Result<(), ExportError> {
        match tokio::time::timeout(self.flush_timeout, confirmed).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false) | Err(_)) => Err(ExportError::permanent(format!(
                "{} did not take every span of a batch of {spans} (rejected or dropped; see the OTLP counters)",
                self.shared.destination
            ))),
            Err(_) => Err(ExportError::permanent(format!(
                "{} did not confirm a batch of {spans} spans within {:?}; they stay buffered and may still arrive",
                self.shared.destination, self.flush_timeout
            ))),
        }
    }

    /// Drops what is still undelivered when a flush timed out; the error the flush returns.
    fn give_up(&self) -> ExportError {
        let mut buffer = self.shared.lock();
        let queued = buffer.spans.len();
        let in_flight = buffer.in_flight;
        buffer.clear_queued();
        buffer.taken = buffer.pushed;
        buffer.fail_all();
        self.shared.set_buffered(&buffer);
        drop(buffer);
        self.shared
            .stats
            .spans_dropped_undelivered
            .fetch_add(queued as u64, Relaxed);
        if in_flight > 0 {
            // The delivery task counts the requests it drops.
            self.shared.abandon.fetch_add(1, Relaxed);
            self.shared.abandoned.notify_waiters();
        }
        error!(
            destination = %self.shared.destination,
            spans = queued + in_flight,
            timeout = ?self.flush_timeout,
            "OTLP flush timed out; undelivered spans dropped"
        );
        ExportError::retryable(format!(
            "{} spans were not delivered to {} within {:?} and were dropped",
            queued + in_flight,
            self.shared.destination,
            self.flush_timeout
        ))
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        let mut buffer = self.shared.lock();
        let undelivered = buffer.waiting();
        buffer.clear_queued();
        buffer.clear_in_flight();
        buffer.closed = true;
        buffer.fail_all();
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

    fn concurrent_exports(&self) -> usize {
        self.concurrent_requests
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.confirm_delivery && self.shared.failing.load(Relaxed) {
            // Waiting would hold the pipeline for as long as the endpoint is down: refuse now, retryably.
            return Err(ExportError::retryable(format!(
                "the OTLP endpoint {} is failing; a batch of {} spans was not taken",
                self.shared.destination,
                batch.len()
            )));
        }
        let confirmed = self.buffer(batch)?;
        match confirmed {
            None => Ok(()),
            Some(confirmed) => self.confirmed(confirmed, batch.len()).await,
        }
    }

    async fn flush(&self) -> Result<(), ExportError> {
        let deadline = tokio::time::Instant::now() + self.flush_timeout;
        loop {
            let progressed = self.shared.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.shared.lock().waiting() == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return Err(self.give_up());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

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

    /// Spans of `objects` objects, one object span each with a diff-sized attribute of `bytes` bytes.
    fn large_spans(objects: usize, bytes: usize) -> Vec<SpanRecord> {
        let window = kelemetry_core::window::Windowing::new(1800)
            .unwrap()
            .window_of(jiff::Timestamp::UNIX_EPOCH);
        (0..objects)
            .map(|n| {
                let key =
                    kelemetry_core::ObjectKey::new("c", "", "configmaps", "ns", format!("o{n}"));
                let mut span = kelemetry_core::span::object_span(
                    &kelemetry_core::ObjectRef::new(key, "v1", None),
                    window,
                );
                span.attributes
                    .push(("blob".into(), "x".repeat(bytes).into()));
                span
            })
            .collect()
    }

    /// An exporter of unconfirmed spans to a port where nothing listens: every span stays buffered, retried.
    fn to_nowhere(buffer_bytes: usize) -> OtlpExporter {
        let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", nowhere.local_addr().unwrap());
        drop(nowhere);
        OtlpExporter::new(
            OtlpConfig::grpc(endpoint)
                .with_buffer_bytes(buffer_bytes)
                .with_confirm_delivery(false)
                .with_backoff(Duration::from_millis(10), Duration::from_millis(50)),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_buffer_holds_at_most_its_bytes_whatever_its_span_count() {
        // Batches of 2 spans of a little over 100 KB each, and 1 MB of buffer: the fifth or sixth batch does not
        // fit, where the span count (65,536) would take 32,000 such batches.
        let exporter = to_nowhere(1_000_000);
        let mut accepted = 0;
        let refused = loop {
            match exporter.export(&large_spans(2, 100_000)).await {
                Ok(()) => accepted += 1,
                Err(err) => break err,
            }
            assert!(accepted < 100, "a hundred batches of 200 KB were taken");
        };
        assert!(!refused.is_retryable());
        assert!(refused.to_string().contains("full"), "{refused}");
        assert!(refused.to_string().contains("bytes"), "{refused}");
        assert!((4..=5).contains(&accepted), "{accepted} batches taken");
        let report = exporter.stats().report();
        assert_eq!(report.spans_dropped_buffer_full, 2, "{report:?}");
        assert_eq!(report.spans_buffered, accepted * 2, "{report:?}");
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_buffers_bytes_goes_when_the_buffer_is_empty() {
        let exporter = to_nowhere(1000);
        exporter.export(&large_spans(2, 10_000)).await.unwrap();
        let refused = exporter.export(&large_spans(1, 10)).await.unwrap_err();
        assert!(refused.to_string().contains("full"), "{refused}");
        assert_eq!(exporter.stats().report().spans_buffered, 2);
    }

    /// What [`holding_endpoint`] counts.
    #[derive(Default)]
    struct HeldRequests {
        /// Requests waiting for their answer now.
        waiting: AtomicUsize,
        /// The most that waited at once.
        most: AtomicUsize,
        /// Requests answered.
        answered: AtomicUsize,
    }

    /// An OTLP/HTTP endpoint on loopback that holds each request's answer until `hold` requests wait at once (or
    /// a while has passed), then answers 200 with an empty `ExportTraceServiceResponse`; the most requests it saw
    /// waiting at once, and the requests it answered. (A real endpoint answers too fast to show overlapping round
    /// trips on cue.)
    async fn holding_endpoint(hold: usize) -> (String, Arc<HeldRequests>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let counts = Arc::new(HeldRequests::default());
        let arrived = Arc::new(tokio::sync::Notify::new());
        let shared = Arc::clone(&counts);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (counts, arrived) = (Arc::clone(&shared), Arc::clone(&arrived));
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':')
                                && name.eq_ignore_ascii_case("content-length")
                            {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if stream.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let waiting = counts.waiting.fetch_add(1, Relaxed) + 1;
                        counts.most.fetch_max(waiting, Relaxed);
                        arrived.notify_waiters();
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                        while counts.waiting.load(Relaxed) < hold {
                            if tokio::time::timeout_at(deadline, arrived.notified())
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                        counts.waiting.fetch_sub(1, Relaxed);
                        counts.answered.fetch_add(1, Relaxed);
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{address}"), counts)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn confirmed_exports_overlap_up_to_the_concurrent_requests() {
        for concurrent in [1, 3] {
            let (endpoint, counts) = holding_endpoint(concurrent).await;
            let exporter = OtlpExporter::new(
                OtlpConfig::http(endpoint)
                    .with_max_batch_spans(2)
                    .with_concurrent_requests(concurrent),
            )
            .unwrap();
            assert_eq!(exporter.concurrent_exports(), concurrent);
            // Six batches of two spans, handed over at once as the pipeline does up to `concurrent_exports`.
            let batches: Vec<_> = (0..6).map(|n| large_spans(2, 10 + n)).collect();
            let exports = batches.iter().map(|batch| exporter.export(batch));
            for result in futures::future::join_all(exports).await {
                result.unwrap();
            }
            assert_eq!(
                counts.most.load(Relaxed),
                concurrent,
                "requests waiting at once"
            );
            assert_eq!(counts.answered.load(Relaxed), 6, "one request per batch");
            let report = exporter.stats().report();
            assert_eq!(report.spans_exported, 12, "{report:?}");
            assert_eq!(report.spans_buffered, 0, "{report:?}");
        }
    }

    #[test]
    fn creating_outside_a_runtime_is_an_error() {
        let err = OtlpExporter::new(OtlpConfig::grpc("http://127.0.0.1:4317")).unwrap_err();
        assert!(matches!(err, OtlpConfigError::NoRuntime));
    }
}
