//! `kelemetry serve`: the Jaeger-shaped HTTP API over the embedded store, within connection limits and query
//! budgets (docs/limits.md), optionally behind a bearer token and TLS. `GET /metrics` gives its connection and
//! query-limit counters in the Prometheus text format (docs/metrics.md), behind the token when there is one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kelemetry_query::TraceQuery;
use kelemetry_query::budget::QueryBudget;
use kelemetry_query::http::{ServeLimits, ServeOptions};
use kelemetry_sources::webhook::TlsFiles;
use kelemetry_store::{SpanStore, ViewLimits};

use crate::{CliError, DEFAULT_STORE};

/// Arguments of `kelemetry serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The store folder. It is opened read-only, so a `kelemetry` process writing it may run beside; the views
    /// handed out are remembered in `views.redb` in the same folder.
    #[arg(long, env = "KELEMETRY_STORE", default_value = DEFAULT_STORE)]
    pub(crate) store: PathBuf,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Most trace ids remembered; the oldest are forgotten first.
    #[arg(long, default_value_t = ViewLimits::default().max_entries)]
    pub(crate) max_views: u64,
    /// Also serve Jaeger's remote storage gRPC API (`jaeger.storage.v2`) on this address, so that a Jaeger Query
    /// configured with a `grpc` remote storage shows Kelemetry's assembled traces.
    #[arg(long)]
    pub(crate) remote_storage_listen: Option<SocketAddr>,
    /// A file holding a bearer token every request but `/healthz` must carry (`Authorization: Bearer TOKEN`);
    /// surrounding white space is ignored. The web viewer sends none: put a proxy that adds it in front.
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Most connections open at once; a newcomer takes the place of the one idle the longest.
    #[arg(long, default_value_t = ServeLimits::default().max_connections)]
    pub(crate) max_connections: usize,
    /// Most connections open from one client address.
    #[arg(long, default_value_t = ServeLimits::default().per_peer)]
    pub(crate) max_connections_per_client: usize,
    /// Seconds a connection may stay without a request (10 s for a new one's first request).
    #[arg(long, default_value_t = ServeLimits::default().idle_timeout.as_secs())]
    pub(crate) idle_timeout_secs: u64,
    /// Most searches, traces and redirects answered at once; more get 503 with Retry-After.
    #[arg(long, default_value_t = ServeLimits::default().heavy_queries)]
    pub(crate) heavy_queries: usize,
    /// Most spans one search, trace or redirect may read; beyond, 422 saying how to narrow it.
    #[arg(long, default_value_t = ServeLimits::default().query_budget.spans)]
    pub(crate) query_spans: usize,
    /// Most MiB of spans (in memory) one search, trace or redirect may read; beyond, 422.
    #[arg(long, default_value_t = ServeLimits::default().query_budget.bytes >> 20)]
    pub(crate) query_mib: usize,
    /// Seconds one search, trace or redirect may take; beyond, 503 saying how to narrow it.
    #[arg(long, default_value_t = ServeLimits::default().query_time.as_secs())]
    pub(crate) query_timeout_secs: u64,
    /// Graft spans of other tracing backends (the apiserver's, a controller's) into every trace shown, with the
    /// providers of this YAML file (docs/extension-traces.md).
    #[arg(long)]
    pub(crate) extensions: Option<PathBuf>,
}

impl ServeArgs {
    /// The serving options the flags give: limits, token, TLS.
    fn options(&self) -> Result<ServeOptions, CliError> {
        let mut limits = ServeLimits::default();
        limits.max_connections = self.max_connections.max(1);
        limits.per_peer = self.max_connections_per_client.max(1);
        limits.idle_timeout = Duration::from_secs(self.idle_timeout_secs.max(1));
        limits.heavy_queries = self.heavy_queries.max(1);
        limits.query_budget =
            QueryBudget::new(self.query_spans, self.query_mib.saturating_mul(1 << 20));
        limits.query_time = Duration::from_secs(self.query_timeout_secs.max(1));
        let mut options = ServeOptions::new(limits);
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path).map_err(|source| CliError::Io {
                path: path.clone(),
                source,
            })?;
            let token = token.trim();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(CliError::Usage(format!(
                    "the token in {} must be non-empty visible ASCII",
                    path.display()
                )));
            }
            options = options.with_token(token);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let acceptor = files
                .acceptor()
                .map_err(|err| CliError::Usage(err.to_string()))?;
            options = options.with_tls(acceptor);
        }
        Ok(options)
    }
}

/// Says on standard error when `address` is reachable from other machines, and what protects it.
fn warn_beyond_loopback(address: SocketAddr, options: &ServeOptions) {
    if address.ip().is_loopback() {
        return;
    }
    let protection = match (options.token.is_some(), options.tls.is_some()) {
        (true, true) => "requests need the bearer token, over TLS",
        (true, false) => {
            "requests need the bearer token, but travel unencrypted (the token too): add --tls-cert/--tls-key"
        }
        (false, true) => {
            "over TLS, but anyone who reaches it may read every trace: add --token-file"
        }
        (false, false) => {
            "without authentication or TLS: anyone who reaches it may read every trace (add --token-file, \
             --tls-cert/--tls-key, or listen on 127.0.0.1)"
        }
    };
    eprintln!(
        "kelemetry serve: warning: listening on {address}, beyond this machine; {protection}"
    );
}

/// `kelemetry serve`.
pub(crate) async fn serve(args: ServeArgs) -> Result<(), CliError> {
    if !args.store.exists() {
        return Err(CliError::Usage(format!(
            "no store at {}; replay recordings first (kelemetry replay FILE...) or pass --store",
            args.store.display()
        )));
    }
    let store_error = |source| CliError::Store {
        path: args.store.clone(),
        source,
    };
    let store = SpanStore::open_read_only(&args.store).map_err(store_error)?;
    let views = store
        .views(ViewLimits {
            max_entries: args.max_views,
            ..ViewLimits::default()
        })
        .map_err(store_error)?;
    let counters = Arc::new(kelemetry_query::http::ServeMetrics::default());
    let mut metrics = kelemetry_metrics::Metrics::new();
    metrics.register(kelemetry_metrics::ServeCollector::new(Arc::clone(
        &counters,
    )));
    let options = args
        .options()?
        .with_counters(counters)
        .with_routes(kelemetry_metrics::metrics_router(Arc::new(metrics)));
    let mut query = TraceQuery::new(Arc::new(store), Arc::new(views));
    if let Some(path) = &args.extensions {
        let extensions = crate::config::load_extensions(path)?;
        eprintln!(
            "kelemetry serve: extension providers: {}",
            extensions
                .providers()
                .iter()
                .map(|p| p.name().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        );
        query = query.with_extensions(Arc::new(extensions));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| CliError::Usage(format!("cannot listen on {}: {source}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|source| CliError::Usage(format!("cannot listen on {}: {source}", args.listen)))?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{address}");
    warn_beyond_loopback(address, &options);
    let query = Arc::new(query);
    if let Some(grpc) = args.remote_storage_listen {
        let listener = tokio::net::TcpListener::bind(grpc)
            .await
            .map_err(|source| CliError::Usage(format!("cannot listen on {grpc}: {source}")))?;
        let grpc = listener
            .local_addr()
            .map_err(|source| CliError::Usage(format!("cannot listen on {grpc}: {source}")))?;
        println!("remote storage gRPC on {grpc}");
        let query = query.clone();
        tokio::spawn(async move {
            if let Err(err) =
                kelemetry_query::remote_storage::serve(listener, query, std::future::pending())
                    .await
            {
                tracing::error!(%err, "the remote storage gRPC server stopped");
            }
        });
    }
    let shutdown = async {
        // Without a signal handler the server runs until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let counts = kelemetry_query::http::serve_with(listener, query, options, shutdown).await;
    eprintln!("kelemetry serve: stopped: {counts}");
    Ok(())
}
