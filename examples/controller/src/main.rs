//! `configmap-sync`: the example controller as a program. Its reconcile spans and activities go over OTLP to the
//! backend Kelemetry writes to (Jaeger, Tempo, a Collector), where they appear inside the objects' traces.
//!
//! ```text
//! configmap-sync --print-crd | kubectl apply -f -
//! configmap-sync --cluster prod --otlp-endpoint http://127.0.0.1:4317
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use configmap_sync::{FIELD_MANAGER, SyncController};
use kelemetry_core::{Exporter, Pipeline, lifecycle};
use kelemetry_exporters::{OtlpConfig, OtlpExporter};
use kelemetry_tracing::{TracerSetup, Windowing};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps ConfigMaps in sync with ConfigMapSync resources, traced into Kelemetry.
#[derive(Debug, Parser)]
struct Args {
    /// Print the CustomResourceDefinition as JSON and exit.
    #[arg(long)]
    print_crd: bool,
    /// The cluster name Kelemetry runs with (`cluster:` in its configuration).
    #[arg(long, default_value = "default")]
    cluster: String,
    /// The kubeconfig (default: $KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where spans go: an OTLP gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    otlp_endpoint: String,
    /// Kelemetry's window length in seconds (it must match).
    #[arg(long, default_value_t = 1800)]
    window_secs: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.print_crd {
        println!("{}", serde_json::to_string_pretty(&configmap_sync::crd())?);
        return Ok(());
    }
    let windowing = Windowing::new(args.window_secs)?;
    let otlp: Arc<dyn Exporter> = Arc::new(OtlpExporter::new(
        OtlpConfig::grpc(&args.otlp_endpoint)
            .with_resource_attribute("service.name", FIELD_MANAGER),
    )?);

    // 1. The controller's tracing: its spans over OTLP, inside the objects' spans of Kelemetry's windows.
    let telemetry = TracerSetup::new(&args.cluster, FIELD_MANAGER)
        .with_windowing(windowing)
        .with_exporter(otlp.clone())
        .build()?;
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(tracing_subscriber::fmt::layer())
        .with(telemetry.layer())
        .init();

    // 2. The controller runs as the source of a Kelemetry pipeline, which takes its custom activities and owns
    //    its lifecycle: the first SIGINT/SIGTERM lets the reconciles in flight finish, then drains and flushes;
    //    a second one stops at once.
    let controller = SyncController::new(
        client(args.kubeconfig.as_deref()).await?,
        telemetry.objects().clone(),
    );
    let pipeline = Pipeline::builder()
        .windowing(telemetry.objects().windowing())
        .exporter(otlp)
        .source(Box::new(controller))
        .stop_when_a_source_ends(true)
        .build();
    let signals = lifecycle::shutdown_on_signals();
    let report = pipeline
        .run_until(signals.graceful, signals.immediate)
        .await;
    tracing::info!(stop = %report.stop, activities = report.activities, "stopped");

    // 3. The reconcile spans still buffered.
    telemetry.shutdown().await?;
    report.check()?;
    Ok(())
}

/// The apiserver client of `kubeconfig`, or of the default configuration.
async fn client(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Client, Box<dyn std::error::Error>> {
    let Some(path) = kubeconfig else {
        return Ok(kube::Client::try_default().await?);
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}
