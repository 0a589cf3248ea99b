//! The webhook's connections: accepting them (bounded in number), TLS, HTTP/1.1 and HTTP/2, and closing them
//! gracefully at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use kelemetry_core::CancellationToken;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::WebhookConfig;
use super::receive::PeerAddr;

/// How long in-flight requests may take to finish once shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The listening side of a running webhook.
pub(super) struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    http: auto::Builder<TokioExecutor>,
    connections: Arc<Semaphore>,
    graceful: GracefulShutdown,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Serves `app` on `listener` as `config` says (connection limit, header and handshake timeouts).
    pub(super) fn new(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        app: Router,
        config: &WebhookConfig,
    ) -> Self {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.read_timeout);
        Self {
            listener,
            tls,
            app,
            http,
            connections: Arc::new(Semaphore::new(config.max_connections)),
            graceful: GracefulShutdown::new(),
            handshake_timeout: config.read_timeout,
        }
    }

    /// Accepts and serves connections until `shutdown` is cancelled; beyond the connection limit, clients wait
    /// to be accepted.
    pub(super) async fn accept_until(&self, shutdown: &CancellationToken) {
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&self.connections).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = shutdown.cancelled() => return,
            };
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
            let connection = Connection {
                app: self.app.clone(),
                http: self.http.clone(),
                tls: self.tls.clone(),
                watcher: self.graceful.watcher(),
                handshake_timeout: self.handshake_timeout,
            };
            tokio::spawn(async move {
                let _permit = permit;
                connection.serve(stream, peer).await;
            });
        }
    }

    /// Stops listening; requests still in flight finish (and may still be accepted) within the grace period.
    pub(super) async fn close(self) {
        drop(self.listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, self.graceful.shutdown())
            .await
            .is_err()
        {
            warn!("audit webhook: connections still open after {SHUTDOWN_GRACE:?}; closing");
        }
    }
}

/// What serving one connection needs.
struct Connection {
    app: Router,
    http: auto::Builder<TokioExecutor>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    watcher: Watcher,
    handshake_timeout: Duration,
}

impl Connection {
    /// Serves the requests of the client at `peer` (after the TLS handshake, with TLS), each request carrying
    /// the client's address as a [`PeerAddr`].
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let app = self.app;
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                let mut app = app.clone();
                async move { tower::Service::call(&mut app, request.map(Body::new)).await }
            },
        );
        let served = match self.tls {
            Some(acceptor) => {
                let stream =
                    match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream))
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
                let connection = self
                    .http
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                self.watcher.watch(connection).await
            }
            None => {
                let connection = self
                    .http
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                self.watcher.watch(connection).await
            }
        };
        if let Err(err) = served {
            debug!(%peer, %err, "audit webhook: connection ended with an error");
        }
    }
}
