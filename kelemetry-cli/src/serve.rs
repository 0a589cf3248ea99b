//! `kelemetry serve`: the Jaeger-shaped HTTP API over the embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use kelemetry_query::TraceQuery;
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
    let query = TraceQuery::new(Arc::new(store), Arc::new(views));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| CliError::Usage(format!("cannot listen on {}: {source}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|source| CliError::Usage(format!("cannot listen on {}: {source}", args.listen)))?;
    println!("listening on http://{address}");
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
    kelemetry_query::http::serve(listener, query, shutdown)
        .await
        .map_err(|source| CliError::Usage(format!("serving on {address} failed: {source}")))
}
