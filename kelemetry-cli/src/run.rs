//! `kelemetry run --config FILE`: a live pipeline from a configuration file (see [`crate::config`]).
//!
//! Sources (audit webhook, audit log follower, Kubernetes Events, object watch) feed one pipeline (filter,
//! redaction, diff decorators, owner and other linkers) that writes to the embedded store and/or JSON lines.
//!
//! Shutdown on SIGINT or SIGTERM: the sources stop taking input (the webhook answers 503 and closes, the follower
//! and the Events source store their checkpoint and watermark) and hand over everything they accepted; the
//! pipeline drains it and flushes the exporters; then a summary is printed. A second signal, or the configured
//! `limits.shutdownGrace` running out, stops the pipeline with what it has. Relative paths in the file are taken
//! from the file's folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::Args;
use kelemetry_core::decorate::DiffDecorator;
use kelemetry_core::redact::Redactor;
use kelemetry_core::{
    ActivitySink, Linker, Pipeline, PipelineReport, ResourceMap, Shutdown, Source, SourceError,
    Windowing,
};
use kelemetry_exporters::{JsonLinesExporter, OtlpConfig, OtlpExporter, StoreExporter};
use kelemetry_linkers::{AnnotationLinker, OwnerLinker, PodNodeLinker, RuleSet};
use kelemetry_sources::kube_events::{EventApiChoice, KubeEventOptions, KubeEventSource};
use kelemetry_sources::object_watch::{ObjectWatchOptions, ObjectWatchSource};
use kelemetry_sources::watch_store::{WatchDiffDecorator, WatchStore, WatchStoreLimits, WatchWait};
use kelemetry_sources::webhook::{AuditWebhook, TlsFiles, WebhookConfig, WebhookMetrics};
use kelemetry_sources::{
    AuditLogFollower, CheckpointFile, ReadCounters, ReadReport, StartPosition, kube_discovery,
};
use kelemetry_store::SpanStore;
use tokio::task::JoinHandle;

use crate::CliError;
use crate::config::{EventApiText, KubernetesConfig, OtlpProtocolName, RunConfig, StartText};

/// Arguments of `kelemetry run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (YAML; see kelemetry.example.yaml).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Only check the configuration file, then exit.
    #[arg(long)]
    pub check: bool,
}

/// What can be read about the sources while and after they run.
#[derive(Default)]
struct SourceReports {
    webhook: Option<Arc<WebhookMetrics>>,
    audit_log: Option<Arc<ReadCounters>>,
    events: Option<Arc<ReadCounters>>,
    watch: Option<Arc<WatchStore>>,
}

/// A pipeline and its sources, ready to run.
struct Plan {
    pipeline: Pipeline,
    sources: Vec<Box<dyn Source>>,
    reports: SourceReports,
    shutdown_grace: Duration,
    memory: Option<MemoryWatch>,
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

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

fn setup_error(file: &Path, what: &str, detail: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {what}: {detail}", file.display()))
}

async fn kube_client(settings: &KubernetesConfig, base: &Path) -> Result<kube::Client, String> {
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let options = KubeConfigOptions {
        context: settings.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = if settings.in_cluster {
        kube::Config::incluster().map_err(|err| err.to_string())?
    } else if let Some(path) = &settings.kubeconfig {
        let path = resolve(base, path);
        let kubeconfig = Kubeconfig::read_from(&path)
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

async fn plan(config: &RunConfig, file: &Path) -> Result<Plan, CliError> {
    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let resources = Arc::new(ResourceMap::builtin());
    let redactor =
        Redactor::new(&config.redaction).map_err(|err| setup_error(file, "redaction", err))?;
    let limits = &config.limits;
    let mut builder = Pipeline::builder()
        .filter(config.filter.clone())
        .redactor(redactor.clone())
        .decorator(Arc::new(DiffDecorator));
    if let Some(window) = config.window {
        let windowing =
            Windowing::new(window.0.as_secs()).map_err(|err| setup_error(file, "window", err))?;
        builder = builder.windowing(windowing);
    }
    if let Some(n) = limits.channel {
        builder = builder.channel_capacity(n);
    }
    if let Some(n) = limits.batch_size {
        builder = builder.batch_size(n);
    }
    if let Some(n) = limits.exporter_queue {
        builder = builder.exporter_queue(n);
    }
    if let Some(n) = limits.body_cache_objects {
        builder = builder.body_cache_capacity(n);
    }
    if let Some(n) = limits.ledger_ids {
        builder = builder.ledger_capacity(n);
    }
    if let Some(n) = limits.max_link_depth {
        builder = builder.max_link_depth(n);
    }
    if let Some(interval) = limits.flush_interval {
        builder = builder.flush_interval(interval.0);
    }

    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let mut reports = SourceReports::default();
    let cluster = config.cluster.clone();
    let memory = limits.memory.map(|ceiling| MemoryWatch {
        ceiling: ceiling.0 as u64,
        pressure: Arc::default(),
        times_pressed: Arc::default(),
    });

    if let Some(section) = &config.sources.webhook {
        let mut webhook = WebhookConfig::new(section.listen, cluster.clone());
        webhook.token = match (&section.token, &section.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => {
                let path = resolve(&base, path);
                let text = std::fs::read_to_string(&path).map_err(|err| {
                    setup_error(
                        file,
                        "sources.webhook.tokenFile",
                        format!("{}: {err}", path.display()),
                    )
                })?;
                Some(text.trim().to_owned())
            }
            (None, None) => None,
        };
        webhook.tls = section.tls.as_ref().map(|tls| TlsFiles {
            cert: resolve(&base, &tls.cert),
            key: resolve(&base, &tls.key),
        });
        if let Some(size) = section.body_limit {
            webhook.body_limit = size.0;
        }
        if let Some(n) = section.queue_events {
            webhook.queue_events = n;
        }
        if let Some(size) = section.queue_bytes {
            webhook.queue_bytes = size.0;
        }
        if let Some(n) = section.max_connections {
            webhook.max_connections = n;
        }
        if let Some(n) = section.concurrent_reads {
            webhook.concurrent_reads = n;
        }
        if let Some(timeout) = section.read_timeout {
            webhook.read_timeout = timeout.0;
        }
        webhook.memory_pressure = memory.as_ref().map(|watch| watch.pressure.clone());
        let webhook =
            AuditWebhook::bind(webhook).map_err(|err| setup_error(file, "sources.webhook", err))?;
        eprintln!(
            "kelemetry: audit webhook listening on {}://{}",
            if webhook.is_tls() { "https" } else { "http" },
            webhook.local_addr()
        );
        reports.webhook = Some(webhook.metrics());
        sources.push(Box::new(webhook));
    }

    if let Some(section) = &config.sources.audit_log {
        let path = resolve(&base, &section.path);
        let mut follower =
            AuditLogFollower::new(&path, cluster.clone()).with_start(match section.start {
                StartText::Beginning => StartPosition::Beginning,
                StartText::End => StartPosition::End,
            });
        if let Some(checkpoint) = &section.checkpoint {
            follower = follower.with_checkpoint(CheckpointFile::new(resolve(&base, checkpoint)));
        }
        if let Some(interval) = section.poll_interval {
            follower = follower.with_poll_interval(interval.0);
        }
        if let Some(limit) = section.line_limit {
            follower = follower.with_line_limit(limit.0);
        }
        eprintln!("kelemetry: following the audit log {}", path.display());
        reports.audit_log = Some(follower.counters());
        sources.push(Box::new(follower));
    }

    let needs_client = config.sources.events.is_some() || config.sources.object_watch.is_some();
    let client = if needs_client {
        let client = kube_client(&config.kubernetes, &base)
            .await
            .map_err(|err| setup_error(file, "kubernetes", err))?;
        Some(client)
    } else {
        None
    };
    let discovered = match &client {
        Some(client) => {
            let discovered = kube_discovery::discover_resources(client)
                .await
                .map_err(|err| {
                    setup_error(file, "kubernetes", format!("discovery failed: {err}"))
                })?;
            kube_discovery::register_resources(&resources, &discovered);
            Some(discovered)
        }
        None => None,
    };

    if let (Some(section), Some(client)) = (&config.sources.events, &client) {
        let mut options = KubeEventOptions {
            api: match section.api {
                EventApiText::Auto => EventApiChoice::Auto,
                EventApiText::EventsV1 => EventApiChoice::EventsV1,
                EventApiText::CoreV1 => EventApiChoice::CoreV1,
            },
            ..KubeEventOptions::default()
        };
        let watermark = &section.watermark;
        if let Some(namespace) = &watermark.namespace {
            options.watermark_namespace = namespace.clone();
        }
        if let Some(name) = &watermark.name {
            options.watermark_name = name.clone();
        }
        if let Some(lag) = watermark.lag {
            options.watermark_lag = lag.0;
        }
        if let Some(keys) = watermark.keys {
            options.watermark_keys = keys;
        }
        if let Some(interval) = watermark.sync_interval {
            options.sync_interval = interval.0;
        }
        if let Some(n) = section.remember {
            options.seen_capacity = n;
        }
        eprintln!(
            "kelemetry: watching Kubernetes Events (watermark ConfigMap {}/{})",
            options.watermark_namespace, options.watermark_name
        );
        let source =
            KubeEventSource::new(client.clone(), cluster.clone(), resources.clone(), options);
        reports.events = Some(source.counters());
        sources.push(Box::new(source));
    }

    if let (Some(section), Some(client)) = (&config.sources.object_watch, &client) {
        let defaults = WatchStoreLimits::default();
        let store_limits = WatchStoreLimits {
            max_objects: section.max_objects.unwrap_or(defaults.max_objects),
            max_body_bytes: section
                .max_body_bytes
                .map_or(defaults.max_body_bytes, |b| b.0),
            max_changes: section.max_changes.unwrap_or(defaults.max_changes),
            max_change_bytes: section
                .max_change_bytes
                .map_or(defaults.max_change_bytes, |b| b.0),
        };
        let store = Arc::new(WatchStore::new(store_limits, redactor.clone()));
        let default_options = ObjectWatchOptions::default();
        let options = ObjectWatchOptions {
            include: section.include.clone(),
            exclude: section.exclude.clone().unwrap_or(default_options.exclude),
            max_watches: section.max_watches.unwrap_or(default_options.max_watches),
            concurrent_lists: section
                .concurrent_lists
                .unwrap_or(default_options.concurrent_lists),
            emit_activities: section.watch_activities,
        };
        let wait_defaults = WatchWait::default();
        let wait = WatchWait {
            poll: section.wait.poll.map_or(wait_defaults.poll, |d| d.0),
            after_stage: section
                .wait
                .after_stage
                .map_or(wait_defaults.after_stage, |d| d.0),
            total: section.wait.total.map_or(wait_defaults.total, |d| d.0),
        };
        builder = builder
            .decorator(Arc::new(WatchDiffDecorator::new(store.clone(), wait)))
            .lookup(store.clone());
        let mut source =
            ObjectWatchSource::new(client.clone(), cluster.clone(), store.clone(), options);
        if let Some(discovered) = &discovered {
            source = source.with_resources(discovered.clone());
        }
        eprintln!("kelemetry: watching objects for diffs and snapshots");
        reports.watch = Some(store);
        sources.push(Box::new(source));
    }

    let linkers = &config.linkers;
    let mut chosen: Vec<Arc<dyn Linker>> = Vec::new();
    if linkers.owner {
        chosen.push(Arc::new(OwnerLinker::new(resources.clone())));
    }
    if linkers.annotation {
        chosen.push(Arc::new(AnnotationLinker));
    }
    if linkers.pod_node {
        chosen.push(Arc::new(PodNodeLinker));
    }
    let rules = match linkers.rules.as_str() {
        "default" => Some(RuleSet::default_rules()),
        "none" => None,
        path => Some(
            RuleSet::read(&resolve(&base, Path::new(path)))
                .map_err(|err| setup_error(file, "linkers.rules", err))?,
        ),
    };
    if let Some(rules) = rules {
        chosen.extend(rules.linkers(resources.clone()));
    }
    for linker in chosen {
        builder = builder.linker(linker);
    }

    if let Some(store) = &config.exporters.store {
        let path = resolve(&base, &store.path);
        let store = SpanStore::create(&path).map_err(|source| CliError::Store { path, source })?;
        builder = builder.exporter(Arc::new(StoreExporter::new(store)));
    }
    if let Some(lines) = &config.exporters.json_lines {
        let path = resolve(&base, &lines.path);
        let exporter = if lines.append {
            JsonLinesExporter::append(&path).await
        } else {
            JsonLinesExporter::create(&path).await
        }
        .map_err(|err| setup_error(file, "exporters.jsonLines", err))?;
        builder = builder.exporter(Arc::new(exporter));
    }

    if let Some(otlp) = &config.exporters.otlp {
        let mut settings = match otlp.protocol {
            OtlpProtocolName::Grpc => OtlpConfig::grpc(otlp.endpoint.clone()),
            OtlpProtocolName::Http => OtlpConfig::http(otlp.endpoint.clone()),
        }
        .with_gzip(otlp.gzip);
        for (name, value) in &otlp.headers {
            settings = settings.with_header(name.clone(), value.clone());
        }
        let exporter =
            OtlpExporter::new(settings).map_err(|err| setup_error(file, "exporters.otlp", err))?;
        builder = builder.exporter(Arc::new(exporter));
    }

    Ok(Plan {
        pipeline: builder.build(),
        sources,
        reports,
        shutdown_grace: limits
            .shutdown_grace
            .map_or(Duration::from_secs(30), |d| d.0),
        memory,
    })
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn signalled() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match &mut terminate {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        () = terminated => "SIGTERM",
    }
}

/// `kelemetry run`.
pub async fn run(args: RunArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.config).map_err(|source| CliError::Io {
        path: args.config.clone(),
        source,
    })?;
    let config =
        RunConfig::parse(&text, &args.config).map_err(|err| CliError::Usage(err.to_string()))?;
    if args.check {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    let Plan {
        pipeline,
        sources,
        reports,
        shutdown_grace,
        memory,
    } = plan(&config, &args.config).await?;
    let memory_task = memory.as_ref().map(MemoryWatch::spawn);

    let (stop_sources, source_shutdown) = Shutdown::new();
    let (stop_pipeline, pipeline_shutdown) = Shutdown::new();
    let stats = pipeline.stats();
    let mut tasks: Vec<(String, JoinHandle<Result<(), SourceError>>)> = Vec::new();
    for source in sources {
        let sink: Arc<dyn ActivitySink> = pipeline.sink();
        let name = source.name().to_owned();
        tasks.push((
            name,
            tokio::spawn(source.run(sink, source_shutdown.clone())),
        ));
    }
    let mut pipeline_task = tokio::spawn(pipeline.run(pipeline_shutdown));
    eprintln!(
        "kelemetry: running (cluster {}); stop with SIGINT or SIGTERM",
        config.cluster
    );

    // Run until a signal, or until a source ends (which a live source only does when it fails).
    let first_done = tokio::select! {
        _ = signalled() => None,
        finished = first_finished(&mut tasks) => Some(finished),
    };
    let mut failures: Vec<(String, String)> = Vec::new();
    let reason = match &first_done {
        Some((name, result)) => {
            if let Err(err) = result {
                failures.push((name.clone(), err.clone()));
            }
            format!("source {name} ended")
        }
        None => "signal".to_owned(),
    };
    eprintln!("kelemetry: stopping ({reason}): handing over what the sources accepted");
    stop_sources.fire();
    let deadline = tokio::time::Instant::now() + shutdown_grace;
    let mut hard_stop = false;
    for (name, task) in &mut tasks {
        if task.is_finished() && first_done.as_ref().is_some_and(|(done, _)| done == name) {
            continue;
        }
        let outcome = tokio::select! {
            outcome = tokio::time::timeout_at(deadline, &mut *task) => outcome,
            second = signalled() => {
                eprintln!("kelemetry: {second} again: stopping now");
                hard_stop = true;
                task.abort();
                continue;
            }
        };
        match outcome {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => failures.push((name.clone(), err.to_string())),
            Ok(Err(err)) => failures.push((name.clone(), format!("task failed: {err}"))),
            Err(_) => {
                eprintln!("kelemetry: source {name} did not stop within {shutdown_grace:?}");
                task.abort();
                hard_stop = true;
            }
        }
    }
    if hard_stop {
        stop_pipeline.fire();
    }
    let report = tokio::select! {
        report = &mut pipeline_task => report.ok(),
        () = tokio::time::sleep_until(deadline + shutdown_grace) => {
            eprintln!("kelemetry: the pipeline did not drain in time; stopping it");
            stop_pipeline.fire();
            (&mut pipeline_task).await.ok()
        }
    };
    let report = report.unwrap_or_else(|| stats.report());
    if let Some(task) = memory_task {
        task.abort();
    }
    print_summary(&report, &reports);
    if let Some((_, peak)) = resident_memory() {
        match &memory {
            Some(watch) => println!(
                "memory: peak {} MiB resident, ceiling {} MiB, near it {} times",
                peak >> 20,
                watch.ceiling >> 20,
                watch.times_pressed.load(Relaxed)
            ),
            None => println!("memory: peak {} MiB resident", peak >> 20),
        }
    }
    if !failures.is_empty() {
        let text: Vec<String> = failures
            .iter()
            .map(|(name, err)| format!("{name}: {err}"))
            .collect();
        return Err(CliError::Usage(format!(
            "source failed: {}",
            text.join("; ")
        )));
    }
    Ok(())
}

/// The first source task to finish: its name and result (errors as text). Pending forever without sources.
async fn first_finished(
    tasks: &mut [(String, JoinHandle<Result<(), SourceError>>)],
) -> (String, Result<(), String>) {
    if tasks.is_empty() {
        return std::future::pending().await;
    }
    let polled = std::future::poll_fn(|cx| {
        for (index, (_, task)) in tasks.iter_mut().enumerate() {
            if let std::task::Poll::Ready(result) = std::pin::Pin::new(task).poll(cx) {
                return std::task::Poll::Ready((index, result));
            }
        }
        std::task::Poll::Pending
    });
    let (index, result) = polled.await;
    let name = tasks[index].0.clone();
    let result = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(err) => Err(format!("task failed: {err}")),
    };
    (name, result)
}

fn reasons(report: &ReadReport) -> String {
    let mut parts = Vec::new();
    for (reason, count) in report.skipped.iter() {
        parts.push(format!("{reason} {count}"));
    }
    for (reason, count) in report.rejected.iter() {
        parts.push(format!("rejected {reason} {count}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn print_summary(report: &PipelineReport, sources: &SourceReports) {
    println!(
        "pipeline: {} records, {} activities, {} observations, {} filtered, {} rejected; {} spans ({} object, {} link, {} activity), {} not exported",
        report.records,
        report.activities,
        report.observations,
        report.filtered,
        report.rejected,
        report.spans(),
        report.object_spans,
        report.link_spans,
        report.activity_spans,
        report.spans_dropped,
    );
    if let Some(metrics) = &sources.webhook {
        let c = metrics.snapshot();
        println!(
            "webhook: {} requests, {} batches accepted, {} events received, {} accepted, {} delivered, {} lost, {} skipped, {} invalid; answered 429 {} times, 413 {}, 401 {}, 400/408 {}, 503 {}",
            c.requests,
            c.batches_accepted,
            c.events_received,
            c.events_accepted,
            c.events_delivered,
            c.events_lost,
            c.events_skipped,
            c.events_invalid,
            c.throttled,
            c.too_large,
            c.unauthorized,
            c.malformed,
            c.unavailable,
        );
    }
    if let Some(counters) = &sources.audit_log {
        let r = counters.snapshot();
        println!(
            "audit log: {} bytes, {} records, {} sent{}",
            r.bytes,
            r.records,
            r.sent,
            reasons(&r)
        );
    }
    if let Some(counters) = &sources.events {
        let r = counters.snapshot();
        println!("events: {} seen, {} sent{}", r.records, r.sent, reasons(&r));
    }
    if let Some(store) = &sources.watch {
        let c = store.counts();
        println!(
            "object watch: {} versions, {} diffs, {} creations, {} deletions; {} objects kept (~{} KiB), {} changes kept; decorated {} writes, {} missed, waited {} ms",
            c.versions_seen,
            c.diffs,
            c.creations,
            c.deletions,
            c.objects,
            c.body_bytes / 1024,
            c.changes,
            c.decorator_hits,
            c.decorator_misses,
            c.decorator_wait_ms,
        );
    }
    for (name, error) in &report.source_errors {
        println!("failed: {name}: {error}");
    }
}
