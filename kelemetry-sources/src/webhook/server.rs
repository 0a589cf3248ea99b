//! The webhook's connections: admitted through a [`ConnectionTable`] (a total and a per-client limit; a newcomer
//! over a limit takes the place of the connection idle the longest, or is closed at once), TLS within a handshake
//! timeout, HTTP/1.1 and HTTP/2, a watchdog that closes a connection without a request in flight once its head or
//! idle timeout passes, request bodies held to a minimum rate, and a graceful close at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use kelemetry_core::CancellationToken;
use kelemetry_core::connections::{Admission, ConnectionSlot, ConnectionTable, Over};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::WebhookConfig;
use super::WebhookMetrics;
use super::body_rate::{BodyRate, MinRateBody};
use super::limits::ConnectionLimits;
use super::receive::PeerAddr;

/// How long in-flight requests may take to finish once shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a connection closed for being idle may take to say goodbye (an HTTP/2 GOAWAY) before it is dropped.
const GOODBYE: Duration = Duration::from_secs(1);
/// Streams one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 32;

/// The listening side of a running webhook.
pub(super) struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    http: auto::Builder<TokioExecutor>,
    table: Arc<ConnectionTable>,
    limits: ConnectionLimits,
    metrics: Arc<WebhookMetrics>,
    closing: CancellationToken,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Serves `app` on `listener` within the limits of `config`, counting in `metrics`.
    pub(super) fn new(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        app: Router,
        config: &WebhookConfig,
        metrics: Arc<WebhookMetrics>,
    ) -> Self {
        let limits = config.connections.clone();
        let mut http = auto::Builder::new(TokioExecutor::new());
        // The watchdog closes a connection waiting for a head (and counts why); hyper's own header timeout, set
        // past the watchdog's deadlines, is only a backstop.
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout + limits.idle_timeout);
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .keep_alive_interval(limits.idle_timeout)
            .keep_alive_timeout(limits.head_timeout);
        Self {
            listener,
            tls,
            app,
            http,
            table: ConnectionTable::new(config.max_connections, limits.per_peer),
            limits,
            metrics,
            closing: CancellationToken::new(),
        }
    }

    /// Accepts and serves connections until `shutdown` is cancelled. A connection the table refuses is closed at
    /// once.
    pub(super) async fn accept_until(&self, shutdown: &CancellationToken) {
        let counters = &self.metrics.connections;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        warn!(%err, "audit webhook: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let slot = match self.table.admit(peer.ip()) {
                Admission::Open(slot) => slot,
                Admission::OpenAfterClosing(slot, over) => {
                    let counter = match over {
                        Over::Peer => &counters.peer_limit_closed_idle,
                        Over::Total => &counters.total_limit_closed_idle,
                    };
                    counter.fetch_add(1, Relaxed);
                    slot
                }
                Admission::Refused(over) => {
                    let counter = match over {
                        Over::Peer => &counters.peer_limit_refused,
                        Over::Total => &counters.total_limit_refused,
                    };
                    counter.fetch_add(1, Relaxed);
                    debug!(%peer, ?over, "audit webhook: connection refused, every place has a request in flight");
                    continue;
                }
            };
            counters.accepted.fetch_add(1, Relaxed);
            let connection = Connection {
                app: self.app.clone(),
                http: self.http.clone(),
                limits: self.limits.clone(),
                rate: BodyRate {
                    min_rate: self.limits.min_body_rate as u64,
                    grace: self.limits.body_grace,
                    metrics: Arc::clone(&self.metrics),
                },
                metrics: Arc::clone(&self.metrics),
                closing: self.closing.clone(),
                slot: Arc::new(slot),
                peer,
            };
            let tls = self.tls.clone();
            tokio::spawn(connection.serve(stream, tls));
        }
    }

    /// Stops listening; requests still in flight finish (and may still be accepted) within the grace period,
    /// then every connection left is dropped.
    pub(super) async fn close(self) {
        drop(self.listener);
        self.closing.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.table.emptied())
            .await
            .is_err()
        {
            warn!(
                open = self.table.len(),
                "audit webhook: connections still open after {SHUTDOWN_GRACE:?}; closing them"
            );
            self.table.close_all();
            let _ = tokio::time::timeout(GOODBYE, self.table.emptied()).await;
        }
    }
}

/// What serving one connection needs.
struct Connection {
    app: Router,
    http: auto::Builder<TokioExecutor>,
    limits: ConnectionLimits,
    rate: BodyRate,
    metrics: Arc<WebhookMetrics>,
    closing: CancellationToken,
    slot: Arc<ConnectionSlot>,
    peer: SocketAddr,
}

impl Connection {
    /// Serves the client (after the TLS handshake, with TLS).
    async fn serve(self, stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.drive(stream).await;
        };
        let handshake =
            tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            done = handshake => done,
            () = self.slot.closed().cancelled() => return,
            () = self.closing.cancelled() => return,
        };
        match stream {
            Ok(Ok(stream)) => self.drive(stream).await,
            Ok(Err(err)) => {
                self.metrics
                    .connections
                    .handshake_failures
                    .fetch_add(1, Relaxed);
                debug!(peer = %self.peer, %err, "audit webhook: TLS handshake failed");
            }
            Err(_) => {
                self.metrics
                    .connections
                    .handshake_failures
                    .fetch_add(1, Relaxed);
                debug!(peer = %self.peer, "audit webhook: TLS handshake timed out");
            }
        }
    }

    /// Serves HTTP on `io` until the client leaves, the watchdog or the table closes it, or the server closes.
    async fn drive<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (head_timeout, idle_timeout) = (self.limits.head_timeout, self.limits.idle_timeout);
        // The router, with each request marked in flight on the slot, the client's address in its extensions
        // and its body held to the minimum rate.
        let (app, rate, slot, peer) = (
            self.app.clone(),
            self.rate.clone(),
            Arc::clone(&self.slot),
            self.peer,
        );
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                let in_flight = slot.begin_request();
                let mut app = app.clone();
                let rate = rate.clone();
                async move {
                    let Some(_in_flight) = in_flight else {
                        return Ok(closing_answer());
                    };
                    request.extensions_mut().insert(PeerAddr(peer));
                    let request = request.map(|body| Body::new(MinRateBody::new(body, rate)));
                    tower::Service::call(&mut app, request).await
                }
            },
        );
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        // Once a goodbye started: when to drop the connection if it is still there.
        let mut goodbye: Option<Instant> = None;
        loop {
            let idle_deadline = self.slot.idle_deadline(head_timeout, idle_timeout);
            // While a request is in flight, look again after an idle timeout.
            let wake = goodbye
                .or(idle_deadline)
                .unwrap_or_else(|| Instant::now() + idle_timeout);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(err) = served {
                        debug!(peer = %self.peer, %err, "audit webhook: connection ended with an error");
                    }
                    return;
                }
                () = self.slot.closed().cancelled() => {
                    debug!(peer = %self.peer, "audit webhook: idle connection closed to make room");
                    return;
                }
                () = self.closing.cancelled(), if goodbye.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    goodbye = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                () = tokio::time::sleep_until(wake) => {
                    if goodbye.is_some() {
                        return;
                    }
                    // Requests may have come and gone since the deadline was computed: look again.
                    let idle_deadline = self.slot.idle_deadline(head_timeout, idle_timeout);
                    if idle_deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                        let counters = &self.metrics.connections;
                        let counter = if self.slot.requests() == 0 {
                            &counters.head_timeouts
                        } else {
                            &counters.idle_timeouts
                        };
                        counter.fetch_add(1, Relaxed);
                        debug!(peer = %self.peer, requests = self.slot.requests(), "audit webhook: idle connection closed");
                        connection.as_mut().graceful_shutdown();
                        goodbye = Some(Instant::now() + GOODBYE);
                    }
                }
            }
        }
    }
}

/// The answer to a request that arrives on a connection being closed.
fn closing_answer() -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, "connection closing\n").into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
