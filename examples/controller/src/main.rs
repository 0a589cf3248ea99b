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
use kelemetry_core::Windowing;
use kelemetry_exporters::otlp_exporter::{OtlpConfig, OtlpExporter};
use kelemetry_tracing::{ActivityRecorder, ObjectTracing, SpanRecordExporter};
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
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
    let otlp = Arc::new(OtlpExporter::new(
        OtlpConfig::grpc(&args.otlp_endpoint)
            .with_resource_attribute("service.name", configmap_sync::FIELD_MANAGER),
    )?);

    // 1. The controller's own tracer provider, its spans exported over OTLP.
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(configmap_sync::FIELD_MANAGER)
                .build(),
        )
        .with_batch_exporter(SpanRecordExporter::new(
            otlp.clone(),
            tokio::runtime::Handle::current(),
        ))
        .build();
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(tracing_subscriber::fmt::layer())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("configmap-sync")))
        .init();

    // 2. Which cluster, and where activities go.
    let objects = ObjectTracing::new(&args.cluster, configmap_sync::FIELD_MANAGER)
        .with_windowing(windowing)
        .with_activities(ActivityRecorder::exporter(otlp.clone(), windowing));

    let client = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            let config = kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?;
            kube::Client::try_from(config)?
        }
        None => kube::Client::try_default().await?,
    };
    tokio::select! {
        () = configmap_sync::run(client, objects) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    kelemetry_core::Exporter::flush(&*otlp).await?;
    Ok(())
}
