//! The serving side's connections: admitted through a [`ConnectionTable`] (a total and a per-client limit; a
//! newcomer over a limit takes the place of the connection idle the longest, or is closed at once), TLS within a
//! handshake timeout, HTTP/1.1 and HTTP/2, a watchdog that closes a connection without a request in flight once
//! its head or idle timeout passes, and a graceful close at shutdown.

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

use super::{ServeLimits, ServeMetrics};

/// How long requests in flight may take to finish once shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a connection closed for being idle may take to say goodbye before it is dropped.
const GOODBYE: Duration = Duration::from_secs(1);
/// Streams one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 16;

/// Serves `app` on `listener` within `limits` until `shutdown` completes.
pub(super) async fn serve_connections(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: &ServeLimits,
    metrics: Arc<ServeMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout + limits.idle_timeout);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let table = ConnectionTable::new(limits.max_connections, limits.per_peer);
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(%err, "serve: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = admit(&table, peer, &metrics) else {
            continue;
        };
        let connection = Connection {
            app: app.clone(),
            http: http.clone(),
            limits: limits.clone(),
            metrics: Arc::clone(&metrics),
            closing: closing.clone(),
            slot: Arc::new(slot),
            peer,
        };
        tokio::spawn(connection.serve(stream, tls.clone()));
    }
    drop(listener);
    closing.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, table.emptied())
        .await
        .is_err()
    {
        table.close_all();
        let _ = tokio::time::timeout(GOODBYE, table.emptied()).await;
    }
}

/// The table's decision about a connection from `peer`, counted; `None` when it is refused (and so closed).
fn admit(
    table: &Arc<ConnectionTable>,
    peer: SocketAddr,
    metrics: &ServeMetrics,
) -> Option<ConnectionSlot> {
    match table.admit(peer.ip()) {
        Admission::Open(slot) => {
            metrics.accepted.fetch_add(1, Relaxed);
            Some(slot)
        }
        Admission::OpenAfterClosing(slot, over) => {
            metrics.accepted.fetch_add(1, Relaxed);
            metrics.closed_for_room.fetch_add(1, Relaxed);
            debug!(%peer, ?over, "serve: an idle connection was closed to make room");
            Some(slot)
        }
        Admission::Refused(over) => {
            metrics.refused.fetch_add(1, Relaxed);
            let limit = match over {
                Over::Peer => "per-client",
                Over::Total => "total",
            };
            debug!(%peer, limit, "serve: connection refused, every place has a request in flight");
            None
        }
    }
}

/// What serving one connection needs.
struct Connection {
    app: Router,
    http: auto::Builder<TokioExecutor>,
    limits: ServeLimits,
    metrics: Arc<ServeMetrics>,
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
            Ok(Err(err)) => debug!(peer = %self.peer, %err, "serve: TLS handshake failed"),
            Err(_) => debug!(peer = %self.peer, "serve: TLS handshake timed out"),
        }
    }

    /// Serves HTTP on `io` until the client leaves, the watchdog or the table closes it, or the server closes.
    async fn drive<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (head_timeout, idle_timeout) = (self.limits.head_timeout, self.limits.idle_timeout);
        let (app, slot) = (self.app.clone(), Arc::clone(&self.slot));
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let in_flight = slot.begin_request();
                let mut app = app.clone();
                async move {
                    let Some(_in_flight) = in_flight else {
                        return Ok(closing_answer());
                    };
                    tower::Service::call(&mut app, request.map(Body::new)).await
                }
            });
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut goodbye: Option<Instant> = None;
        loop {
            let idle_deadline = self.slot.idle_deadline(head_timeout, idle_timeout);
            let wake = goodbye
                .or(idle_deadline)
                .unwrap_or_else(|| Instant::now() + idle_timeout);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(err) = served {
                        debug!(peer = %self.peer, %err, "serve: connection ended with an error");
                    }
                    return;
                }
                () = self.slot.closed().cancelled() => return,
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
                        self.metrics.idle_closed.fetch_add(1, Relaxed);
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
