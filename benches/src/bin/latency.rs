//! The end-to-end latency load generator: audit batches posted to a running `kelemetry run` at a fixed offered rate,
//! and the time from each batch's `200` to the moment its spans are in the `jsonLines` exporter's file.
//!
//! ```text
//! cargo build --release --locked -p kelemetry-cli --bin kelemetry
//! cargo build --release -p kelemetry-benches --bin latency
//! target/release/latency [--layout all-in-one|split|both] [--shards 1,2] [--rates 1000,5000,20000] [--seconds 20]
//! ```
//!
//! Two layouts, each a fresh process (or two) in a temporary folder, configured by a YAML file written there:
//!
//! - `all-in-one`: one `kelemetry run` whose audit webhook (no write-ahead log) feeds the pipeline, which writes
//!   spans with the `jsonLines` exporter;
//! - `split`: an `ingest` process (the webhook; every record forwarded to a Kafka topic of `--partitions`
//!   partitions) and a `process` process (that topic with `format: records`, the `jsonLines` exporter). The broker
//!   is started with `scripts/kafka/up --name latency-bench` and stopped with `scripts/kafka/down` at the end.
//!
//! The events are copies of the recorded `fixtures/recorded/deployment-lifecycle/audit.log` (152 lines): copy `k`
//! gets unique audit ids, the namespace `bench-k` instead of `default`, and uids of its own, so every copy writes
//! objects of its own. They are posted as `EventList`s of `--batch` events, open loop: a scheduler hands each batch
//! to a pool of keep-alive connections at its planned instant, whether the earlier batches were answered or not.
//! A thread tails the spans file every `--poll-ms` and notes when each audit id (the span attribute `auditId`) is
//! first seen; an event's latency is that instant minus the instant its batch's `200` arrived. Answers other than
//! `200` are counted by status and not retried; their events are not expected in the file.
//!
//! Per rate it also reports the mean of `kelemetry_pipeline_ingest_to_export_seconds` over the rate (scraped from
//! `/metrics` of the process that makes spans, before and after), and the cores each process and the whole machine
//! used (`/proc/PID/stat`, `/proc/stat`) with the kelemetry processes' CPU time per accepted event.
//!
//! Every path defaults to the repository this crate is in, so the binary runs from any folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use kelemetry_benches::audit_batches::{Templates, clock_ticks_per_second, cpu_seconds};
use kelemetry_benches::harness::{
    self, HarnessError, KelemetryProcess, Poster, START_TIMEOUT, WEBHOOK_SOURCE_YAML, WebhookUrl,
};
use kelemetry_core::vocabulary::AUDIT_ID;
use kelemetry_sources::kafka::rdkafka::ClientConfig;
use kelemetry_sources::kafka::rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, TopicReplication,
};
use kelemetry_sources::kafka::rdkafka::client::DefaultClientContext;
use serde::Deserialize;
use tokio::sync::mpsc as async_mpsc;

/// The histogram of the pipeline's own share of the latency (kelemetry-metrics `pipeline.rs`).
const PIPELINE_HISTOGRAM: &str = "kelemetry_pipeline_ingest_to_export_seconds";
/// The audit ids this generator gives its events: this prefix and the event's number (the tail of the spans
/// file reads the number back).
const AUDIT_ID_PREFIX: &str = "latency-";
/// Measures the latency from an audit batch's `200` to its spans in the exporter's file, at fixed offered rates.
#[derive(Debug, Parser)]
#[command(name = "latency")]
struct Args {
    /// Which process layout to measure.
    #[arg(long, value_enum, default_value = "both")]
    layout: LayoutChoice,
    /// `limits.shards` of the process that makes spans; each layout is run once per value.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    shards: Vec<usize>,
    /// Offered rates in audit events per second, each run for `--seconds`, in this order on the same process.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,20000")]
    rates: Vec<u64>,
    /// Seconds of load at each rate.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Audit events per posted `EventList`.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Keep-alive connections the batches are posted on (more batches in flight wait for a free one).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// After the last batch of a rate, how long to wait for spans still missing before counting them unseen.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// How often the spans file is read, in milliseconds (the resolution of the measured latencies).
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// `limits.flushInterval` of the process that makes spans.
    #[arg(long, default_value = "50ms")]
    flush_interval: String,
    /// Partitions of the Kafka topic of the split layout.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// The `kelemetry` binary (default: target/release/kelemetry of this repository).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The recorded audit log the events are copied from (default: this repository's
    /// fixtures/recorded/deployment-lifecycle/audit.log).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Keep the temporary folders (configs, spans files, standard error of the processes) for a look.
    #[arg(long)]
    keep: bool,
}

/// The `--layout` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LayoutChoice {
    /// One process: webhook, pipeline and exporter.
    AllInOne,
    /// An ingest process and a process process around Kafka.
    Split,
    /// Both, all-in-one first.
    Both,
}

/// One of the two layouts measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One process.
    AllInOne,
    /// Ingest and process around Kafka.
    Split,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Self::AllInOne => "all-in-one",
            Self::Split => "split",
        }
    }
}

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
enum LatencyError {
    /// The batches could not be made, or a process, a socket or a file could not be started, reached or written.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// Creating the Kafka topic failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: kelemetry_sources::kafka::rdkafka::error::KafkaError,
    },
    /// Anything else that stops the run, said in words.
    #[error("{0}")]
    Setup(String),
}

fn main() -> ExitCode {
    harness::exit_code("latency", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), LatencyError> {
    if args.batch == 0 || args.connections == 0 || args.seconds == 0 || args.poll_ms == 0 {
        return Err(LatencyError::Setup(
            "--batch, --connections, --seconds and --poll-ms must be at least 1".to_owned(),
        ));
    }
    if args.rates.is_empty() || args.rates.contains(&0) || args.shards.is_empty() {
        return Err(LatencyError::Setup(
            "--rates needs positive rates and --shards at least one value".to_owned(),
        ));
    }
    let binary = harness::kelemetry_binary(args.binary.as_deref())?;
    let fixture = harness::recorded_fixture(args.fixture.as_deref());
    let templates =
        Arc::new(Templates::load(&fixture, AUDIT_ID_PREFIX).map_err(HarnessError::from)?);
    let runtime = harness::runtime()?;

    let layouts: &[Layout] = match args.layout {
        LayoutChoice::AllInOne => &[Layout::AllInOne],
        LayoutChoice::Split => &[Layout::Split],
        LayoutChoice::Both => &[Layout::AllInOne, Layout::Split],
    };
    println!(
        "latency: {} template lines from {}, batches of {}, {} connections, {} s per rate, poll every {} ms",
        templates.events_per_copy(),
        fixture.display(),
        args.batch,
        args.connections,
        args.seconds,
        args.poll_ms
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut kafka: Option<Kafka> = None;
    let mut outcome = Ok(());
    'layouts: for &layout in layouts {
        if layout == Layout::Split && kafka.is_none() {
            match Kafka::up(&harness::repository_root()) {
                Ok(broker) => kafka = Some(broker),
                Err(err) => {
                    outcome = Err(err);
                    break;
                }
            }
        }
        for &shards in &args.shards {
            let setup = Setup {
                layout,
                shards,
                binary: &binary,
                kafka: kafka.as_ref(),
                args,
                templates: Arc::clone(&templates),
            };
            match runtime.block_on(measure_setup(setup)) {
                Ok(mut measured) => rows.append(&mut measured),
                Err(err) => {
                    outcome = Err(err);
                    break 'layouts;
                }
            }
        }
    }
    if let Some(kafka) = kafka {
        kafka.down();
    }
    print_table(&rows);
    println!(
        "latency: whole run took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    outcome
}

// ---------------------------------------------------------------------------------------------------------------
// The processes.

/// The broker of `scripts/kafka/up --name latency-bench`.
#[derive(Debug)]
struct Kafka {
    scripts: PathBuf,
    bootstrap: String,
    /// The broker's process (`KAFKA_PID`), for its CPU time.
    pid: Option<u32>,
}

/// The `--name` of the broker this generator starts.
const KAFKA_NAME: &str = "latency-bench";

impl Kafka {
    fn up(root: &Path) -> Result<Self, LatencyError> {
        let scripts = root.join("scripts/kafka");
        println!("latency: starting Kafka (scripts/kafka/up --name {KAFKA_NAME})");
        let output = Command::new(scripts.join("up"))
            .args(["--name", KAFKA_NAME])
            // The script's watcher stops the broker if this process dies before it runs `down`.
            .env("KELEMETRY_OWNER_PID", std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .map_err(HarnessError::io("cannot run scripts/kafka/up"))?;
        let printed = String::from_utf8_lossy(&output.stdout);
        let value_of = |name: &str| {
            printed
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let kafka = Self {
            scripts,
            bootstrap: value_of("KAFKA_BOOTSTRAP="),
            pid: value_of("KAFKA_PID=").parse().ok(),
        };
        if !output.status.success() || kafka.bootstrap.is_empty() {
            kafka.down();
            return Err(LatencyError::Setup(format!(
                "scripts/kafka/up --name {KAFKA_NAME} failed ({}) or printed no KAFKA_BOOTSTRAP",
                output.status
            )));
        }
        Ok(kafka)
    }

    /// A new topic of `partitions` partitions.
    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), LatencyError> {
        let context = format!("cannot create the topic {topic} on {}", self.bootstrap);
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .map_err(|source| LatencyError::Kafka {
                context: context.clone(),
                source,
            })?;
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .map_err(|source| LatencyError::Kafka {
                context: context.clone(),
                source,
            })?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(LatencyError::Setup(format!("{context}: {code}")));
            }
        }
        Ok(())
    }

    fn down(&self) {
        let status = Command::new(self.scripts.join("down"))
            .args(["--name", KAFKA_NAME])
            .stdout(Stdio::null())
            .status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("latency: scripts/kafka/down --name {KAFKA_NAME} failed: {status:?}");
        }
    }
}

/// One layout at one shard count.
struct Setup<'a> {
    layout: Layout,
    shards: usize,
    binary: &'a Path,
    kafka: Option<&'a Kafka>,
    args: &'a Args,
    templates: Arc<Templates>,
}

/// The running processes of one setup.
struct Running {
    /// The webhook's address (of the all-in-one or ingest process).
    webhook: SocketAddr,
    /// The metrics address of the process that makes spans.
    span_metrics: SocketAddr,
    /// The processes, stopped in this order (ingest before process).
    processes: Vec<KelemetryProcess>,
}

fn limits_yaml(shards: usize, flush_interval: &str) -> String {
    format!("limits:\n  flushInterval: {flush_interval}\n  shards: {shards}\n")
}

const METRICS_YAML: &str = "metrics:\n  listen: 127.0.0.1:0\n";
const EXPORTER_YAML: &str = "exporters:\n  jsonLines:\n    path: spans.jsonl\n";

fn write_config(dir: &Path, name: &str, text: &str) -> Result<PathBuf, LatencyError> {
    let path = dir.join(name);
    std::fs::write(&path, text)
        .map_err(HarnessError::io(format!("cannot write {}", path.display())))?;
    Ok(path)
}

async fn start_processes(setup: &Setup<'_>, dir: &Path) -> Result<Running, LatencyError> {
    let limits = limits_yaml(setup.shards, &setup.args.flush_interval);
    match setup.layout {
        Layout::AllInOne => {
            let config = write_config(
                dir,
                "all-in-one.yaml",
                &format!(
                    "cluster: bench\nrole: allInOne\nsources:\n{WEBHOOK_SOURCE_YAML}{EXPORTER_YAML}{limits}{METRICS_YAML}"
                ),
            )?;
            let process = KelemetryProcess::start("all-in-one", setup.binary, &config, dir)?;
            Ok(Running {
                webhook: process.webhook_address()?,
                span_metrics: process.metrics_address()?,
                processes: vec![process],
            })
        }
        Layout::Split => {
            let Some(kafka) = setup.kafka else {
                return Err(LatencyError::Setup(
                    "the split layout needs Kafka".to_owned(),
                ));
            };
            let topic = format!(
                "latency-{}-{}-{}",
                std::process::id(),
                setup.shards,
                jiff::Timestamp::now().as_millisecond()
            );
            kafka.create_topic(&topic, setup.args.partitions).await?;
            let bootstrap = &kafka.bootstrap;
            let process_config = write_config(
                dir,
                "process.yaml",
                &format!(
                    "cluster: bench\nrole: process\nsources:\n  kafka:\n    bootstrapServers: {bootstrap}\n    \
                     topics: [{topic}]\n    groupId: {topic}-process\n    format: records\n    \
                     commitInterval: 200ms\n{EXPORTER_YAML}{limits}{METRICS_YAML}"
                ),
            )?;
            let ingest_config = write_config(
                dir,
                "ingest.yaml",
                &format!(
                    "cluster: bench\nrole: ingest\nsources:\n{WEBHOOK_SOURCE_YAML}forward:\n  kafka:\n    \
                     bootstrapServers: {bootstrap}\n    topic: {topic}\n{limits}{METRICS_YAML}"
                ),
            )?;
            let process = KelemetryProcess::start("process", setup.binary, &process_config, dir)?;
            let span_metrics = process.metrics_address()?;
            let ingest = KelemetryProcess::start("ingest", setup.binary, &ingest_config, dir)?;
            let webhook = ingest.webhook_address()?;
            Ok(Running {
                webhook,
                span_metrics,
                processes: vec![ingest, process],
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The tail of the spans file.

/// When each event's audit id was first seen in the spans file; indexed by event number.
#[derive(Debug)]
struct Sightings {
    first_seen: Mutex<Vec<Option<Instant>>>,
    /// Lines of the file that were no OTLP/JSON export request.
    bad_lines: std::sync::atomic::AtomicU64,
}

impl Sightings {
    fn new(events: usize) -> Self {
        Self {
            first_seen: Mutex::new(vec![None; events]),
            bad_lines: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Instant>>> {
        self.first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The part of an OTLP/JSON export request the tail reads: each span's attributes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest {
    #[serde(default)]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans {
    #[serde(default)]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Debug, Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Vec<SpanAttributes>,
}

#[derive(Debug, Deserialize)]
struct SpanAttributes {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue {
    #[serde(default)]
    string_value: Option<String>,
}

/// Reads what was appended to `path` every `poll`, until `stop`; notes each audit id's first sighting.
fn tail_spans(
    path: PathBuf,
    poll: Duration,
    templates: Arc<Templates>,
    sightings: Arc<Sightings>,
    stop: Arc<AtomicBool>,
) {
    let mut file: Option<File> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut events: Vec<u64> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if file.is_none() {
            file = File::open(&path).ok();
        }
        if let Some(open) = file.as_mut() {
            loop {
                match open.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => pending.extend_from_slice(&chunk[..read]),
                }
            }
            let seen_at = Instant::now();
            let complete = pending
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |at| at + 1);
            for line in pending[..complete].split(|&b| b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<ExportRequest>(line) {
                    Ok(request) => collect_audit_ids(&request, &templates, &mut events),
                    Err(_) => {
                        sightings.bad_lines.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            pending.drain(..complete);
            if !events.is_empty() {
                let mut first_seen = sightings.lock();
                for &event in &events {
                    if let Some(slot) = usize::try_from(event)
                        .ok()
                        .and_then(|at| first_seen.get_mut(at))
                    {
                        slot.get_or_insert(seen_at);
                    }
                }
                events.clear();
            }
        }
        std::thread::sleep(poll);
    }
}

fn collect_audit_ids(request: &ExportRequest, templates: &Templates, events: &mut Vec<u64>) {
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| &scope.spans);
    for span in spans {
        for attribute in &span.attributes {
            if attribute.key == AUDIT_ID
                && let Some(event) = attribute
                    .value
                    .as_ref()
                    .and_then(|value| value.string_value.as_deref())
                    .and_then(|audit_id| templates.event_of_audit_id(audit_id))
            {
                events.push(event);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The load.

/// One posted batch: events `first..first + count`.
#[derive(Debug)]
struct Batch {
    first: u64,
    count: u64,
    /// When the schedule wanted it sent.
    planned: Instant,
    body: Bytes,
}

/// What became of a batch.
#[derive(Debug)]
struct Answer {
    first: u64,
    count: u64,
    planned: Instant,
    /// When a connection started sending it.
    sent: Instant,
    /// When its answer arrived.
    answered: Instant,
    /// The status, or `None` when the connection failed.
    status: Option<StatusCode>,
}

/// One connection's worker: takes batches off the shared queue until it is closed and empty.
async fn post_worker(
    webhook: WebhookUrl,
    queue: Arc<tokio::sync::Mutex<async_mpsc::UnboundedReceiver<Batch>>>,
    answers: Arc<Mutex<Vec<Answer>>>,
) {
    let mut poster = Poster::new(webhook);
    loop {
        let next = queue.lock().await.recv().await;
        let Some(batch) = next else { return };
        let sent = Instant::now();
        let status = poster.post(batch.body).await;
        let answer = Answer {
            first: batch.first,
            count: batch.count,
            planned: batch.planned,
            sent,
            answered: Instant::now(),
            status,
        };
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(answer);
    }
}

/// Posts events `first..first + rate * seconds` at `rate` events per second in batches of `batch`; every answer.
async fn offer_load(
    address: SocketAddr,
    templates: &Arc<Templates>,
    first: u64,
    rate: u64,
    seconds: u64,
    batch: u64,
    connections: usize,
) -> (Vec<Answer>, Instant) {
    let total = rate * seconds;
    let batches = total.div_ceil(batch);
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let (queue_in, queue_out) = async_mpsc::unbounded_channel();
    let queue = Arc::new(tokio::sync::Mutex::new(queue_out));
    let answers = Arc::new(Mutex::new(Vec::with_capacity(batches as usize)));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(post_worker(
                WebhookUrl::kelemetry(address),
                Arc::clone(&queue),
                Arc::clone(&answers),
            ))
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(20);
    for number in 0..batches {
        let planned = start + interval.mul_f64(number as f64);
        tokio::time::sleep_until(planned.into()).await;
        let from = first + number * batch;
        let count = batch.min(first + total - from);
        let body = Bytes::from(templates.event_list(from, count));
        let _ = queue_in.send(Batch {
            first: from,
            count,
            planned,
            body,
        });
    }
    drop(queue_in);
    for worker in workers {
        let _ = worker.await;
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(PoisonError::into_inner));
    (answers, start)
}

/// Scrapes `/metrics` and returns the sum and count of the pipeline's ingest-to-export histogram.
async fn scrape_pipeline_histogram(address: SocketAddr) -> Result<(f64, f64), LatencyError> {
    let mut sender = harness::connect(address).await?;
    let (_, body) =
        harness::exchange(&mut sender, address, Method::GET, "/metrics", Bytes::new()).await?;
    let text = String::from_utf8_lossy(&body);
    let value_of = |suffix: &str| {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                let name = name.split('{').next()?;
                (name == format!("{PIPELINE_HISTOGRAM}{suffix}"))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .unwrap_or(0.0)
    };
    Ok((value_of("_sum"), value_of("_count")))
}

// ---------------------------------------------------------------------------------------------------------------
// The measurement.

/// The figures of one (layout, shards, rate).
#[derive(Debug)]
struct Row {
    layout: Layout,
    shards: usize,
    offered: u64,
    /// Events answered 200, per second of the load.
    achieved: f64,
    /// Events seen in the file, per second from the first planned batch to the last sighting.
    exported: f64,
    accepted: u64,
    /// Latencies in milliseconds, sorted.
    latencies: Vec<f64>,
    unseen: u64,
    /// Answers other than 200 by status; `None`: the connection failed.
    refused: BTreeMap<Option<u16>, u64>,
    /// 95th percentile of how late batches were sent after their planned instant, in ms.
    send_lag_p95: f64,
    /// Median of sent to answered, in ms.
    answer_p50: f64,
    /// The pipeline histogram's mean over this rate, in ms, and how many records it counted.
    pipeline_mean: Option<(f64, f64)>,
    /// Load average when the rate started.
    load: String,
    /// Cores used by each process from the start of the load to the end of the drain.
    cpu: String,
    /// CPU time of the kelemetry processes per accepted event, in microseconds.
    cpu_micros_per_event: f64,
}

async fn measure_setup(setup: Setup<'_>) -> Result<Vec<Row>, LatencyError> {
    let args = setup.args;
    let dir = tempfile::Builder::new()
        .prefix(&format!(
            "latency-{}-{}-",
            setup.layout.name(),
            setup.shards
        ))
        .tempdir()
        .map_err(HarnessError::io("cannot create a temporary folder"))?;
    println!(
        "latency: {} with {} shard(s) in {}",
        setup.layout.name(),
        setup.shards,
        dir.path().display()
    );
    let running = start_processes(&setup, dir.path()).await?;
    let lines = setup.templates.events_per_copy() as u64;
    let batch = args.batch as u64;
    let warmup = lines;
    let planned: u64 = args
        .rates
        .iter()
        .map(|rate| (rate * args.seconds).div_ceil(batch) * batch)
        .sum();
    let sightings = Arc::new(Sightings::new((warmup + planned) as usize));
    let stop = Arc::new(AtomicBool::new(false));
    let tail = {
        let path = dir.path().join("spans.jsonl");
        let poll = Duration::from_millis(args.poll_ms);
        let sightings = Arc::clone(&sightings);
        let stop = Arc::clone(&stop);
        let templates = Arc::clone(&setup.templates);
        std::thread::spawn(move || tail_spans(path, poll, templates, sightings, stop))
    };
    let result = measure_rates(&setup, &running, &sightings, warmup).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tail.join();
    for process in running.processes {
        process.stop();
    }
    let bad = sightings.bad_lines.load(Ordering::Relaxed);
    if bad > 0 {
        println!("latency: {bad} lines of spans.jsonl were no OTLP/JSON export request");
    }
    if args.keep {
        let kept = dir.keep();
        println!("latency: kept {}", kept.display());
    }
    result
}

async fn measure_rates(
    setup: &Setup<'_>,
    running: &Running,
    sightings: &Sightings,
    warmup: u64,
) -> Result<Vec<Row>, LatencyError> {
    let args = setup.args;
    let batch = args.batch as u64;
    // Warm-up: one copy, until all of it is out (the split layout's consumer joins its group meanwhile).
    let (answers, _) = offer_load(
        running.webhook,
        &setup.templates,
        0,
        warmup,
        1,
        batch,
        args.connections,
    )
    .await;
    let accepted = accepted_events(&answers);
    if accepted.is_empty() {
        return Err(LatencyError::Setup(format!(
            "the warm-up batches were refused: {:?}",
            answers.iter().map(|a| a.status).collect::<Vec<_>>()
        )));
    }
    let deadline = Instant::now() + START_TIMEOUT;
    while unseen(sightings, &accepted) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing = unseen(sightings, &accepted);
    if missing > 0 {
        return Err(LatencyError::Setup(format!(
            "{missing} of {} warm-up events never reached spans.jsonl within {} s",
            accepted.len(),
            START_TIMEOUT.as_secs()
        )));
    }
    println!(
        "latency: warm-up of {warmup} events exported; measuring {:?} events/s",
        args.rates
    );

    let mut rows = Vec::new();
    let mut first = warmup;
    for &rate in &args.rates {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default();
        let before = scrape_pipeline_histogram(running.span_metrics).await.ok();
        let cpu_before = cpu_sample(setup, running);
        let (answers, start) = offer_load(
            running.webhook,
            &setup.templates,
            first,
            rate,
            args.seconds,
            batch,
            args.connections,
        )
        .await;
        first += (rate * args.seconds).div_ceil(batch) * batch;
        let accepted = accepted_events(&answers);
        let last_answer = answers
            .iter()
            .map(|answer| answer.answered)
            .max()
            .unwrap_or(start);
        let deadline = last_answer + Duration::from_secs(args.drain_seconds);
        while unseen(sightings, &accepted) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = scrape_pipeline_histogram(running.span_metrics).await.ok();
        let (cpu, kelemetry_cpu_seconds) = cpu_used(&cpu_before, &cpu_sample(setup, running));
        let mut row = figures(
            setup,
            rate,
            &answers,
            &accepted,
            sightings,
            start,
            load,
            before.zip(after),
        );
        row.cpu = cpu;
        row.cpu_micros_per_event = if row.accepted > 0 {
            kelemetry_cpu_seconds * 1e6 / row.accepted as f64
        } else {
            0.0
        };
        print_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// The CPU time of each process of the measurement (user and system, all threads) and of the whole machine, with
/// the instant it was read.
type CpuSample = (Instant, Vec<(&'static str, Option<f64>)>);

/// The machine's CPU seconds from `/proc/stat`: busy (user, nice, system, irq, softirq), waiting for I/O, stolen by
/// the hypervisor.
fn machine_cpu_seconds() -> Option<[f64; 3]> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    let field = |at: usize| ticks.get(at).copied().unwrap_or(0.0);
    let per_second = clock_ticks_per_second();
    // user nice system idle iowait irq softirq steal
    Some([
        (field(0) + field(1) + field(2) + field(5) + field(6)) / per_second,
        field(4) / per_second,
        field(7) / per_second,
    ])
}

fn cpu_sample(setup: &Setup<'_>, running: &Running) -> CpuSample {
    let mut processes = vec![("generator", std::process::id())];
    processes.extend(running.processes.iter().map(|p| (p.name(), p.pid())));
    if setup.layout == Layout::Split
        && let Some(pid) = setup.kafka.and_then(|kafka| kafka.pid)
    {
        processes.push(("kafka", pid));
    }
    let mut seconds: Vec<_> = processes
        .into_iter()
        .map(|(name, pid)| (name, cpu_seconds(pid)))
        .collect();
    let machine = machine_cpu_seconds();
    seconds.push(("machine busy", machine.map(|[busy, _, _]| busy)));
    seconds.push(("iowait", machine.map(|[_, iowait, _]| iowait)));
    seconds.push(("steal", machine.map(|[_, _, steal]| steal)));
    (Instant::now(), seconds)
}

/// The cores each process used between two samples (CPU seconds per second), as text.
/// Also the CPU seconds the kelemetry processes (all-in-one, or ingest and process) used together.
fn cpu_used(before: &CpuSample, after: &CpuSample) -> (String, f64) {
    let wall = after.0.saturating_duration_since(before.0).as_secs_f64();
    if wall <= 0.0 {
        return ("-".to_owned(), 0.0);
    }
    let mut kelemetry_seconds = 0.0;
    let text = before
        .1
        .iter()
        .zip(&after.1)
        .map(|((name, from), (_, to))| match from.zip(*to) {
            Some((from, to)) => {
                if KELEMETRY_PROCESSES.contains(name) {
                    kelemetry_seconds += to - from;
                }
                format!("{name} {:.2}", (to - from) / wall)
            }
            None => format!("{name} ?"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    (text, kelemetry_seconds)
}

/// The names of the `kelemetry run` processes in a [`CpuSample`].
const KELEMETRY_PROCESSES: [&str; 3] = ["all-in-one", "ingest", "process"];

/// Per accepted event: its number and the instant its batch's 200 arrived.
fn accepted_events(answers: &[Answer]) -> Vec<(u64, Instant)> {
    answers
        .iter()
        .filter(|answer| answer.status == Some(StatusCode::OK))
        .flat_map(|answer| {
            (answer.first..answer.first + answer.count).map(|e| (e, answer.answered))
        })
        .collect()
}

fn unseen(sightings: &Sightings, accepted: &[(u64, Instant)]) -> usize {
    let first_seen = sightings.lock();
    accepted
        .iter()
        .filter(|(event, _)| {
            usize::try_from(*event)
                .ok()
                .and_then(|at| first_seen.get(at))
                .is_none_or(Option::is_none)
        })
        .count()
}

#[allow(clippy::too_many_arguments)]
fn figures(
    setup: &Setup<'_>,
    rate: u64,
    answers: &[Answer],
    accepted: &[(u64, Instant)],
    sightings: &Sightings,
    start: Instant,
    load: String,
    histogram: Option<((f64, f64), (f64, f64))>,
) -> Row {
    let first_seen = sightings.lock();
    let mut latencies = Vec::with_capacity(accepted.len());
    let mut last_seen = start;
    for &(event, answered) in accepted {
        let seen = usize::try_from(event)
            .ok()
            .and_then(|at| first_seen.get(at).copied().flatten());
        if let Some(seen) = seen {
            let millis = if seen >= answered {
                seen.duration_since(answered).as_secs_f64() * 1000.0
            } else {
                -(answered.duration_since(seen).as_secs_f64() * 1000.0)
            };
            latencies.push(millis);
            last_seen = last_seen.max(seen);
        }
    }
    drop(first_seen);
    latencies.sort_by(f64::total_cmp);
    let mut refused = BTreeMap::new();
    for answer in answers {
        if answer.status != Some(StatusCode::OK) {
            *refused
                .entry(answer.status.map(|status| status.as_u16()))
                .or_insert(0) += answer.count;
        }
    }
    let last_answer = answers
        .iter()
        .map(|answer| answer.answered)
        .max()
        .unwrap_or(start);
    let load_seconds = last_answer
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(setup.args.seconds as f64);
    let mut send_lags: Vec<f64> = answers
        .iter()
        .map(|a| a.sent.saturating_duration_since(a.planned).as_secs_f64() * 1000.0)
        .collect();
    send_lags.sort_by(f64::total_cmp);
    let mut answer_times: Vec<f64> = answers
        .iter()
        .map(|a| a.answered.saturating_duration_since(a.sent).as_secs_f64() * 1000.0)
        .collect();
    answer_times.sort_by(f64::total_cmp);
    let export_seconds = last_seen.saturating_duration_since(start).as_secs_f64();
    Row {
        layout: setup.layout,
        shards: setup.shards,
        offered: rate,
        achieved: accepted.len() as f64 / load_seconds,
        exported: if export_seconds > 0.0 {
            latencies.len() as f64 / export_seconds
        } else {
            0.0
        },
        accepted: accepted.len() as u64,
        unseen: (accepted.len() - latencies.len()) as u64,
        latencies,
        refused,
        send_lag_p95: percentile(&send_lags, 0.95),
        answer_p50: percentile(&answer_times, 0.5),
        pipeline_mean: histogram.and_then(|((sum0, count0), (sum1, count1))| {
            let count = count1 - count0;
            (count > 0.0).then(|| ((sum1 - sum0) / count * 1000.0, count))
        }),
        load,
        cpu: String::new(),
        cpu_micros_per_event: 0.0,
    }
}

/// The `q` quantile of sorted values (nearest rank); 0 for none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Events refused, by status.
fn refused_text(row: &Row) -> String {
    harness::status_counts_text(&row.refused, "-", "conn", ",")
}

fn print_row(row: &Row) {
    println!(
        "latency: {} shards={} offered={} ev/s: accepted {} ({:.0} ev/s), exported {:.0} ev/s, latency ms p50 {:.1} \
         p99 {:.1} p99.9 {:.1} max {:.1}, unseen {}, refused {}, send lag p95 {:.1} ms, answer p50 {:.1} ms, \
         pipeline mean {}, load {}, kelemetry CPU {:.0} µs/event, cores: {}",
        row.layout.name(),
        row.shards,
        row.offered,
        row.accepted,
        row.achieved,
        row.exported,
        percentile(&row.latencies, 0.5),
        percentile(&row.latencies, 0.99),
        percentile(&row.latencies, 0.999),
        row.latencies.last().copied().unwrap_or(0.0),
        row.unseen,
        refused_text(row),
        row.send_lag_p95,
        row.answer_p50,
        pipeline_text(row),
        row.load,
        row.cpu_micros_per_event,
        row.cpu,
    );
}

fn pipeline_text(row: &Row) -> String {
    row.pipeline_mean
        .map_or_else(|| "-".to_owned(), |(mean, _)| format!("{mean:.1}"))
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| layout | shards | offered ev/s | achieved ev/s | exported ev/s | p50 ms | p99 ms | p99.9 ms | max ms | \
         unseen | refused (status:events) | answer p50 ms | pipeline mean ms | load | kelemetry CPU µs/event | cores used |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {} | {} | {:.0} | {} |",
            row.layout.name(),
            row.shards,
            row.offered,
            row.achieved,
            row.exported,
            percentile(&row.latencies, 0.5),
            percentile(&row.latencies, 0.99),
            percentile(&row.latencies, 0.999),
            row.latencies.last().copied().unwrap_or(0.0),
            row.unseen,
            refused_text(row),
            row.answer_p50,
            pipeline_text(row),
            row.load,
            row.cpu_micros_per_event,
            row.cpu,
        );
    }
}
