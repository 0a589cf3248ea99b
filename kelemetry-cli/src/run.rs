//! `kelemetry run --config FILE`: a live pipeline from a configuration file (see [`crate::config`]).
//!
//! Sources (audit webhook, audit log follower, Kafka topics, Kubernetes Events, object watch) feed one pipeline (filter,
//! redaction, diff decorators, owner and other linkers) that writes to the embedded store, JSON lines and/or OTLP.
//! Each configured component is made by its configuration type's `build()`.
//!
//! The pipeline owns the lifecycle ([`Pipeline::run_until`]): on SIGINT or SIGTERM the sources stop taking input
//! (the webhook answers 503 and closes, the follower and the Events source store their checkpoint and watermark,
//! the Kafka source commits the offsets of what was exported)
//! and hand over everything they accepted; the pipeline drains it and flushes the exporters; then a summary is
//! printed. A second signal, or `limits.shutdownGrace` running out, stops the pipeline with what it has. A source
//! that ends (a live source only does when it fails) stops the pipeline the same way, and the process exits with
//! an error. Relative paths in the file are taken from the file's folder.
//!
//! With `metrics:` in the file (or `--metrics-listen`), `/metrics`, `/healthz` and `/readyz` are served on an
//! address of their own (docs/metrics.md), and every audit event the audit sources see is counted by the audit
//! request metrics, through the observer of their `AuditMapping`: the one place every audit event of every audit
//! source passes, reads included, before it is mapped.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::Args;
use kelemetry_core::audit::AuditMapping;
use kelemetry_core::decorate::DiffDecorator;
use kelemetry_core::lifecycle::{ShutdownSignals, shutdown_on_signals};
use kelemetry_core::redact::Redactor;
use kelemetry_core::{
    CancellationToken, Exporter, Pipeline, PipelineBuilder, PipelineReport, ResourceMap, Source,
    Windowing,
};
use kelemetry_exporters::OtlpStats;
use kelemetry_metrics::{
    AuditRequests, Metrics, OtlpCollector, PipelineCollector, SourceReadCollector, WatchCollector,
    WebhookCollector,
};
use kelemetry_sources::kube_discovery;
use kelemetry_sources::webhook::{Acknowledge, ReadinessCheck, WebhookMetrics};
use kelemetry_sources::{
    LeaderElected, Leadership, ObjectWatchOptions, ObjectWatchSource, ReadCounters, TermSource,
    WatchStore,
};
use tokio::task::JoinHandle;

use crate::CliError;
use crate::config::{ExportersConfig, KubernetesConfig, MetricsConfig, Role, RunConfig};
use crate::readiness::{LOSS_MEMORY, Readiness};

/// Arguments of `kelemetry run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The configuration file (YAML; see kelemetry.example.yaml).
    #[arg(long, short)]
    pub(crate) config: std::path::PathBuf,
    /// Only check the configuration file, then exit.
    #[arg(long)]
    pub(crate) check: bool,
    /// Serve /metrics, /healthz and /readyz on this address (instead of `metrics.listen`; turns metrics on when
    /// the file has no `metrics:` section).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
}

/// What can be read about the sources while and after they run.
#[derive(Default)]
struct SourceReports {
    webhook: Option<Arc<WebhookMetrics>>,
    audit_log: Option<Arc<ReadCounters>>,
    events: Option<Arc<ReadCounters>>,
    kafka: Option<Arc<ReadCounters>>,
    watch: Option<Arc<WatchStore>>,
    otlp: Option<Arc<OtlpStats>>,
    /// The Lease (`namespace/name`) and where this process is in its election.
    leadership: Option<(String, Arc<Leadership>)>,
}

/// A pipeline with its sources, ready to run.
struct Plan {
    pipeline: Pipeline,
    reports: SourceReports,
    memory: Option<MemoryWatch>,
    readiness: Arc<Readiness>,
    metrics: Option<MetricsEndpoint>,
}

/// The metrics endpoint of a run: its bound listener and what it renders.
struct MetricsEndpoint {
    listener: std::net::TcpListener,
    metrics: Metrics,
}

/// The audit request metrics of `config`, when metrics are on and they are enabled.
fn audit_requests(config: &RunConfig) -> Option<Arc<AuditRequests>> {
    let metrics = config.metrics.as_ref()?;
    metrics
        .audit
        .enabled
        .then(|| Arc::new(AuditRequests::new(&metrics.audit)))
}

/// `mapping`, with the audit request metrics (if any) seeing every event it maps.
fn observed(mapping: AuditMapping, requests: Option<&Arc<AuditRequests>>) -> AuditMapping {
    match requests {
        Some(requests) => mapping.with_observer(Arc::clone(requests) as _),
        None => mapping,
    }
}

/// Binds the metrics endpoint's address now, so that a taken port fails the start.
fn bind_metrics(metrics: &MetricsConfig, file: &Path) -> Result<std::net::TcpListener, CliError> {
    let listener = std::net::TcpListener::bind(metrics.listen)
        .map_err(|err| setup_error(file, "metrics.listen", format!("{}: {err}", metrics.listen)))?;
    listener
        .set_nonblocking(true)
        .map_err(|err| setup_error(file, "metrics.listen", err))?;
    Ok(listener)
}

/// The collectors of everything `plan` built.
fn collectors(
    config: &RunConfig,
    pipeline: &Pipeline,
    reports: &SourceReports,
    requests: Option<Arc<AuditRequests>>,
) -> Metrics {
    let mut metrics = Metrics::new();
    metrics.register(PipelineCollector::new(pipeline, &config.limits.pipeline));
    let mut read = SourceReadCollector::default();
    if let Some(counters) = &reports.audit_log {
        read = read.source("audit_log", Arc::clone(counters));
    }
    if let Some(counters) = &reports.events {
        read = read.source("events", Arc::clone(counters));
    }
    if let Some(counters) = &reports.kafka {
        read = read.source("kafka", Arc::clone(counters));
    }
    if !read.is_empty() {
        metrics.register(read);
    }
    if let Some(webhook) = &reports.webhook {
        metrics.register(WebhookCollector::new(Arc::clone(webhook)));
    }
    if let Some(store) = &reports.watch {
        metrics.register(WatchCollector::new(Arc::clone(store)));
    }
    if let Some(otlp) = &reports.otlp {
        metrics.register(OtlpCollector::new(Arc::clone(otlp)));
    }
    if let Some(requests) = requests {
        metrics.register(requests);
    }
    metrics
}

/// Watches the process's resident memory against a ceiling and raises the webhook's pressure flag near it.
struct MemoryWatch {
    ceiling: u64,
    pressure: Arc<AtomicBool>,
    times_pressed: Arc<AtomicU64>,
}

/// Resident memory (`VmRSS`) and its peak (`VmHWM`) of this process, in bytes.
fn resident_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let kib = status
            .lines()
            .find(|line| line.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

impl MemoryWatch {
    /// A watch of `ceiling` bytes, not started.
    fn new(ceiling: usize) -> Self {
        Self {
            ceiling: ceiling as u64,
            pressure: Arc::default(),
            times_pressed: Arc::default(),
        }
    }

    /// Samples every 20 ms: pressure on at 85% of the ceiling, off again under 75%.
    fn spawn(&self) -> JoinHandle<()> {
        let (ceiling, pressure, times) = (
            self.ceiling,
            self.pressure.clone(),
            self.times_pressed.clone(),
        );
        tokio::spawn(async move {
            let high = ceiling / 100 * 85;
            let low = ceiling / 100 * 75;
            loop {
                if let Some((resident, _)) = resident_memory() {
                    let pressed = pressure.load(Relaxed);
                    if !pressed && resident >= high {
                        pressure.store(true, Relaxed);
                        times.fetch_add(1, Relaxed);
                        tracing::warn!(
                            resident_mib = resident >> 20,
                            ceiling_mib = ceiling >> 20,
                            "memory near the ceiling: the webhook answers 429"
                        );
                    } else if pressed && resident < low {
                        pressure.store(false, Relaxed);
                        tracing::info!(
                            resident_mib = resident >> 20,
                            "memory back under the ceiling"
                        );
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }
}

fn setup_error(file: &Path, what: &str, detail: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {what}: {detail}", file.display()))
}

async fn kube_client(settings: &KubernetesConfig) -> Result<kube::Client, String> {
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let options = KubeConfigOptions {
        context: settings.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = if settings.in_cluster {
        kube::Config::incluster().map_err(|err| err.to_string())?
    } else if let Some(path) = &settings.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path)
            .map_err(|err| format!("kubeconfig {}: {err}", path.display()))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|err| format!("kubeconfig {}: {err}", path.display()))?
    } else if settings.context.is_some() {
        kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|err| err.to_string())?
    } else {
        kube::Config::infer().await.map_err(|err| err.to_string())?
    };
    kube::Client::try_from(config).map_err(|err| err.to_string())
}

/// The pipeline of `config` (read from `file`), each configured component made by its `build()`.
async fn plan(config: &RunConfig, file: &Path) -> Result<Plan, CliError> {
    let resources = Arc::new(ResourceMap::builtin());
    let redactor =
        Redactor::new(&config.redaction).map_err(|err| setup_error(file, "redaction", err))?;
    let windowing =
        Windowing::new(config.window.as_secs()).map_err(|err| setup_error(file, "window", err))?;
    let mut builder = Pipeline::builder()
        .limits(config.limits.pipeline.clone())
        .filter(config.filter.clone())
        .redactor(redactor.clone())
        .windowing(windowing)
        .stop_when_a_source_ends(true);
    // An ingest process decorates nothing: its records are diffed where they become spans.
    if config.role != Role::Ingest {
        builder = builder.decorator(Arc::new(DiffDecorator));
    }
    let memory = config.limits.memory.map(MemoryWatch::new);
    let mut reports = SourceReports::default();
    let readiness = Readiness::new(LOSS_MEMORY);
    let metrics_listener = match &config.metrics {
        Some(metrics) => Some(bind_metrics(metrics, file)?),
        None => None,
    };
    let requests = audit_requests(config);

    if let Some(webhook) = &config.sources.webhook {
        let mut webhook = webhook.clone();
        webhook.default_cluster.clone_from(&config.cluster);
        webhook.memory_pressure = memory.as_ref().map(|watch| watch.pressure.clone());
        webhook.mapping = observed(webhook.mapping, requests.as_ref());
        // An ingest process has no store to write ahead to: a batch is answered 200 once Kafka holds it.
        if config.role == Role::Ingest && webhook.wal.as_ref().is_none_or(|wal| !wal.enabled) {
            webhook.acknowledge = Acknowledge::Delivered;
        }
        // `GET /readyz`: the sources started and no span lost lately (crate::readiness).
        let ready = Arc::clone(&readiness);
        webhook.readiness = Some(ReadinessCheck::new(move || ready.check()));
        let webhook = webhook
            .build()
            .map_err(|err| setup_error(file, "sources.webhook", err))?;
        eprintln!(
            "kelemetry: audit webhook listening on {}://{}",
            if webhook.is_tls() { "https" } else { "http" },
            webhook.local_addr()
        );
        match webhook.write_ahead_log() {
            Some(folder) => eprintln!(
                "kelemetry: audit webhook writes ahead into {} (200 once a batch is on disk)",
                folder.display()
            ),
            None if config.role == Role::Ingest => eprintln!(
                "kelemetry: audit webhook answers 200 once Kafka acknowledged every record of the batch"
            ),
            None => eprintln!(
                "kelemetry: audit webhook without a write-ahead log: accepted batches wait in memory only"
            ),
        }
        reports.webhook = Some(webhook.metrics());
        builder = builder.source(Box::new(webhook));
    }
    if let Some(audit_log) = &config.sources.audit_log {
        let follower = audit_log
            .build(config.cluster.clone())
            .with_mapping(observed(AuditMapping::default(), requests.as_ref()));
        eprintln!(
            "kelemetry: following the audit log {}",
            audit_log.path.display()
        );
        reports.audit_log = Some(follower.counters());
        builder = builder.source(Box::new(follower));
    }
    #[cfg(feature = "kafka")]
    if let Some(kafka) = &config.sources.kafka {
        let mut kafka = kafka.clone();
        if kafka.default_cluster.is_empty() {
            kafka.default_cluster.clone_from(&config.cluster);
        }
        let source = kafka
            .build()
            .map_err(|err| setup_error(file, "sources.kafka", err))?
            .with_mapping(observed(AuditMapping::default(), requests.as_ref()));
        eprintln!(
            "kelemetry: reading audit documents from Kafka topics {} (group {}, brokers {})",
            kafka.topics.join(", "),
            kafka.group_id,
            kafka.bootstrap_servers
        );
        reports.kafka = Some(source.counters());
        builder = builder.source(Box::new(source));
    }
    builder = add_kube_sources(config, file, builder, &resources, &redactor, &mut reports).await?;

    if config.role == Role::Ingest {
        builder = add_forwarder(config, file, builder)?;
    } else {
        let linkers = config
            .linkers
            .build(resources)
            .map_err(|err| setup_error(file, "linkers.rules", err))?;
        for linker in linkers {
            builder = builder.linker(linker);
        }
    }
    for exporter in build_exporters(&config.exporters, file, &mut reports).await? {
        builder = builder.exporter(exporter);
    }
    let pipeline = builder.build();
    readiness.attach(pipeline.stats());
    let metrics = metrics_listener.map(|listener| MetricsEndpoint {
        listener,
        metrics: collectors(config, &pipeline, &reports, requests),
    });
    Ok(Plan {
        pipeline,
        reports,
        memory,
        readiness,
        metrics,
    })
}

/// Makes `builder` forward its records to `forward.kafka` (role `ingest`).
fn add_forwarder(
    config: &RunConfig,
    file: &Path,
    builder: PipelineBuilder,
) -> Result<PipelineBuilder, CliError> {
    #[cfg(feature = "kafka")]
    if let Some(kafka) = &config.forward.kafka {
        let forwarder = kafka
            .build()
            .map_err(|err| setup_error(file, "forward.kafka", err))?;
        eprintln!(
            "kelemetry: role ingest: forwarding records to Kafka topic {} (brokers {}; idempotent, acks=all: a \
             source's input counts as delivered once the brokers hold it)",
            kafka.topic, kafka.bootstrap_servers
        );
        return Ok(builder.forward(Arc::new(forwarder)));
    }
    let _ = builder;
    Err(setup_error(
        file,
        "forward",
        "role ingest needs forward.kafka (this build has no feature kafka)",
    ))
}

/// Adds the sources that read the apiserver (Events, the object watch) to `builder`, teaching `resources` the
/// kinds the apiserver serves. With `sources.leaderElection`, both run inside one [`LeaderElected`] source: only
/// while this process holds the Lease (the object watch's decorator and store are part of the pipeline on every
/// replica; where the watch does not run, the decorator does not wait for it).
async fn add_kube_sources(
    config: &RunConfig,
    file: &Path,
    mut builder: PipelineBuilder,
    resources: &Arc<ResourceMap>,
    redactor: &Redactor,
    reports: &mut SourceReports,
) -> Result<PipelineBuilder, CliError> {
    let sources = &config.sources;
    if sources.events.is_none() && sources.object_watch.is_none() {
        return Ok(builder);
    }
    let client = kube_client(&config.kubernetes)
        .await
        .map_err(|err| setup_error(file, "kubernetes", err))?;
    let discovered = kube_discovery::discover_resources(&client)
        .await
        .map_err(|err| setup_error(file, "kubernetes", format!("discovery failed: {err}")))?;
    kube_discovery::register_resources(resources, &discovered);
    let mut elected = sources
        .leader_election
        .clone()
        .map(|election| LeaderElected::new(client.clone(), election));
    if let Some(events) = &sources.events {
        eprintln!(
            "kelemetry: watching Kubernetes Events (watermark ConfigMap {}/{})",
            events.watermark.namespace, events.watermark.name
        );
        let counters = Arc::new(ReadCounters::default());
        let build = {
            let (options, client, cluster, resources, counters) = (
                events.clone(),
                client.clone(),
                config.cluster.clone(),
                Arc::clone(resources),
                Arc::clone(&counters),
            );
            move || {
                options
                    .clone()
                    .build(client.clone(), cluster.clone(), resources.clone())
                    .with_counters(Arc::clone(&counters))
            }
        };
        let source = build();
        reports.events = Some(counters);
        match elected {
            // Every term builds its source anew (the first runs the one built here); all count into one place.
            Some(election) => {
                let mut first = Some(source);
                elected = Some(election.source(move || -> Box<dyn Source> {
                    Box::new(first.take().unwrap_or_else(&build))
                }));
            }
            None => builder = builder.source(Box::new(source)),
        }
    }
    if let Some(watch_config) = &sources.object_watch {
        let watch = watch_config.build(client.clone(), config.cluster.clone(), redactor.clone());
        eprintln!("kelemetry: watching objects for diffs and snapshots");
        reports.watch = Some(Arc::clone(&watch.store));
        // An ingest process decorates nothing (its records are diffed where they become spans); its watch still
        // files watch activities, forwarded like the others.
        if config.role != Role::Ingest {
            builder = builder
                .decorator(Arc::new(watch.decorator))
                .lookup(Arc::clone(&watch.store) as _);
        }
        let source = watch.source.with_resources(discovered);
        match elected {
            Some(election) => {
                elected = Some(election.source(WatchTerms {
                    client,
                    cluster: config.cluster.clone(),
                    store: watch.store,
                    options: watch_config.options(),
                    first: Some(source),
                }));
            }
            None => builder = builder.source(Box::new(source)),
        }
    }
    if let Some(elected) = elected {
        let election = sources.leader_election.as_ref();
        let lease = election.map_or_else(String::new, |e| format!("{}/{}", e.namespace, e.lease));
        eprintln!(
            "kelemetry: leader election: Events and the object watch run while this process holds the Lease \
             {lease} (identity {})",
            elected.identity()
        );
        reports.leadership = Some((lease, elected.status()));
        builder = builder.source(Box::new(elected));
    }
    Ok(builder)
}

/// The object watch's source for each term of leadership; when a term ends, the store stops counting its
/// resources as watched, so that the decorator does not wait for a watch that no longer runs here.
struct WatchTerms {
    client: kube::Client,
    cluster: String,
    store: Arc<WatchStore>,
    options: ObjectWatchOptions,
    /// The first term's source, with the resources discovered at start; later terms discover again.
    first: Option<ObjectWatchSource>,
}

impl TermSource for WatchTerms {
    fn build(&mut self) -> Box<dyn Source> {
        let source = self.first.take().unwrap_or_else(|| {
            ObjectWatchSource::new(
                self.client.clone(),
                self.cluster.clone(),
                Arc::clone(&self.store),
                self.options.clone(),
            )
        });
        Box::new(source)
    }

    fn stopped(&mut self) {
        self.store.watch_stopped();
    }
}

/// The configured exporters, in the order store, JSON lines, OTLP.
async fn build_exporters(
    exporters: &ExportersConfig,
    file: &Path,
    reports: &mut SourceReports,
) -> Result<Vec<Arc<dyn Exporter>>, CliError> {
    let mut built: Vec<Arc<dyn Exporter>> = Vec::new();
    if let Some(store) = &exporters.store {
        // Shared with readers: `kelemetry serve` and `show` read it while this process writes.
        let exporter = store.build().map_err(|source| CliError::Store {
            path: store.path.clone(),
            source,
        })?;
        crate::store_cmd::announce_repair(exporter.store());
        built.push(Arc::new(exporter));
    }
    if let Some(lines) = &exporters.json_lines {
        let exporter = lines
            .build()
            .await
            .map_err(|err| setup_error(file, "exporters.jsonLines", err))?;
        built.push(Arc::new(exporter));
    }
    if let Some(otlp) = &exporters.otlp {
        let exporter = otlp
            .clone()
            .build()
            .map_err(|err| setup_error(file, "exporters.otlp", err))?;
        reports.otlp = Some(exporter.stats());
        built.push(Arc::new(exporter));
    }
    Ok(built)
}

/// Serves the metrics endpoint (`/metrics`, `/healthz`, `/readyz`) until `stop` is cancelled, within the same
/// connection limits as `kelemetry serve`.
fn serve_metrics(
    endpoint: MetricsEndpoint,
    readiness: &Arc<Readiness>,
    stop: &CancellationToken,
) -> Result<JoinHandle<()>, CliError> {
    let address = endpoint
        .listener
        .local_addr()
        .map_err(|source| CliError::Usage(format!("metrics.listen: {source}")))?;
    let listener = tokio::net::TcpListener::from_std(endpoint.listener)
        .map_err(|source| CliError::Usage(format!("metrics.listen {address}: {source}")))?;
    let ready = Arc::clone(readiness);
    let routes = kelemetry_metrics::metrics_router(Arc::new(endpoint.metrics)).merge(
        kelemetry_metrics::health_router(Arc::new(move || ready.check())),
    );
    eprintln!("kelemetry: metrics on http://{address}/metrics (and /healthz, /readyz)");
    let stop = stop.clone();
    Ok(tokio::spawn(async move {
        let options = kelemetry_query::http::ServeOptions::default();
        kelemetry_query::http::serve_routes(listener, routes, options, async move {
            stop.cancelled().await;
        })
        .await;
    }))
}

/// Says on stderr when the signals arrive; the pipeline does the stopping.
fn announce_signals(signals: &ShutdownSignals) {
    let (graceful, immediate) = (signals.graceful.clone(), signals.immediate.clone());
    tokio::spawn(async move {
        graceful.cancelled().await;
        eprintln!("kelemetry: stopping (signal): handing over what the sources accepted");
        immediate.cancelled().await;
        eprintln!("kelemetry: signal again: stopping now");
    });
}

/// `kelemetry run`.
pub(crate) async fn run(args: RunArgs) -> Result<(), CliError> {
    let mut config = RunConfig::load(&args.config)?;
    if let Some(listen) = args.metrics_listen {
        config
            .metrics
            .get_or_insert_with(MetricsConfig::default)
            .listen = listen;
    }
    if args.check {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    let Plan {
        pipeline,
        reports,
        memory,
        readiness,
        metrics,
    } = plan(&config, &args.config).await?;
    let metrics_stop = CancellationToken::new();
    let metrics_task = match metrics {
        Some(endpoint) => Some(serve_metrics(endpoint, &readiness, &metrics_stop)?),
        None => None,
    };
    let memory_task = memory.as_ref().map(MemoryWatch::spawn);
    let loss_watch = readiness.spawn_watch();
    let signals = shutdown_on_signals();
    announce_signals(&signals);
    eprintln!(
        "kelemetry: running (cluster {}); stop with SIGINT or SIGTERM",
        config.cluster
    );
    // The sources start as the pipeline runs.
    readiness.mark_started();
    let report = pipeline
        .run_until(signals.graceful, signals.immediate)
        .await;
    loss_watch.abort();
    if let Some(task) = memory_task {
        task.abort();
    }
    metrics_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    eprintln!("kelemetry: stopped ({})", report.stop);
    print_summary(&report, &reports);
    print_memory(memory.as_ref());
    // A failed source, spans not exported or records abandoned fail the run.
    report
        .check()
        .map_err(|lost| CliError::Usage(lost.to_string()))
}

/// The peak resident memory, and how often the ceiling was near.
fn print_memory(watch: Option<&MemoryWatch>) {
    let Some((_, peak)) = resident_memory() else {
        return;
    };
    match watch {
        Some(watch) => println!(
            "memory: peak {} MiB resident, ceiling {} MiB, near it {} times",
            peak >> 20,
            watch.ceiling >> 20,
            watch.times_pressed.load(Relaxed)
        ),
        None => println!("memory: peak {} MiB resident", peak >> 20),
    }
}

fn print_summary(report: &PipelineReport, sources: &SourceReports) {
    println!("pipeline: {report}");
    if let Some(metrics) = &sources.webhook {
        println!("webhook: {}", metrics.snapshot());
    }
    if let Some(counters) = &sources.audit_log {
        println!("audit log: {}", counters.snapshot());
    }
    if let Some(counters) = &sources.events {
        println!("events: {}", counters.snapshot());
    }
    if let Some(counters) = &sources.kafka {
        println!("kafka: {}", counters.snapshot());
    }
    if let Some(store) = &sources.watch {
        println!("object watch: {}", store.counts());
    }
    if let Some((lease, status)) = &sources.leadership {
        println!("leader election: Lease {lease}: {status}");
    }
    for failure in &report.source_errors {
        println!("failed: {failure}");
    }
}
