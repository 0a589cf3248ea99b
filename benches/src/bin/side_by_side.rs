//! Side by side: the same recorded-shape audit batches posted to an audit webhook, the spans counted at an OTLP/gRPC
//! sink this binary serves, and the CPU time and memory of the process under test.
//!
//! ```text
//! cargo build --release --locked -p kelemetry-cli --bin kelemetry
//! cargo build --release -p kelemetry-benches --bin side_by_side
//! target/release/side_by_side --target ours [--events 50000,200000] [--rounds 3]
//! target/release/side_by_side --target external --webhook http://127.0.0.1:8080/audit/tracetest --pid PID \
//!     --sink-listen 127.0.0.1:4317 [--events 50000] [--rounds 1]
//! ```
//!
//! Two targets:
//!
//! - `ours`: a fresh `kelemetry run` per round, from a configuration this binary writes into a temporary folder:
//!   the audit webhook (no write-ahead log) and the `otlp` exporter (gRPC) to the sink;
//! - `external`: a process that already runs (e.g. another audit-webhook implementation), given by the webhook's URL
//!   and its pid; it must export OTLP/gRPC to `--sink-listen`. Its rounds run on that same process.
//!
//! The events are copies of `fixtures/recorded/deployment-lifecycle/audit.log` (see `audit_batches.rs`), posted as
//! `EventList`s of `--batch` events, closed loop: `--connections` keep-alive connections each post the next batch
//! as soon as the previous one is answered. A `429` is retried after `--retry-ms` (as the apiserver's webhook
//! backend retries) and counted; any other answer but `200` is counted and not retried.
//!
//! With `--verbatim` the lines of `--fixture` (an audit log, one event per line, such as `throughput --write-corpus`
//! writes) are posted as they are, once each and in order, and the sink tells the events apart by their own audit
//! ids: the webhook then reads the very bytes another harness read. A line owes a span if the project's audit
//! mapping makes it an activity (reads do not).
//!
//! Per round it reports: events answered `200`; events per second from the first post to the last span arriving at
//! the sink (the end is when no span arrived for `--quiet-seconds`); the process's CPU seconds (`/proc/PID/stat`,
//! user and system, up to the last span) per thousand accepted events; its peak resident memory (`VmHWM` of
//! `/proc/PID/status`, at the end of the drain) and its resident memory `--settle-seconds` later (`VmRSS`); the spans
//! the sink received and how many of the posted events have a span carrying their audit id.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hyper::StatusCode;
use hyper::body::Bytes;
use kelemetry_benches::audit_batches::{Templates, cpu_seconds, memory_kib};
use kelemetry_benches::harness::{
    self, HarnessError, KelemetryProcess, Poster, START_TIMEOUT, WEBHOOK_SOURCE_YAML, WebhookUrl,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use tokio::net::TcpListener;

/// The audit ids this generator gives its events: this prefix and the event's number.
const AUDIT_ID_PREFIX: &str = "side-by-side-";
/// How many lines of the recording the report of events without a span names at most.
const MISSING_LINES_SHOWN: usize = 20;
/// An `EventList` without events: what the readiness probe posts.
const EMPTY_EVENT_LIST: &str = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#;

/// Posts recorded-shape audit batches to a webhook and counts the spans that come out at an OTLP/gRPC sink.
#[derive(Debug, Parser)]
#[command(name = "side_by_side")]
struct Args {
    /// What is measured.
    #[arg(long, value_enum, default_value = "ours")]
    target: Target,
    /// Events per round; each count is measured `--rounds` times.
    #[arg(long, value_delimiter = ',', default_value = "50000,200000")]
    events: Vec<u64>,
    /// Rounds per event count (target ours: a fresh process each round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Audit events per posted `EventList`.
    #[arg(long, default_value_t = 50)]
    batch: u64,
    /// Keep-alive connections posting batches at the same time.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to wait before posting a batch again that was answered 429, in milliseconds.
    #[arg(long, default_value_t = 50)]
    retry_ms: u64,
    /// The load is over once every batch is answered and no span arrived for this long.
    #[arg(long, default_value_t = 10)]
    quiet_seconds: u64,
    /// The longest wait for spans after the last answer.
    #[arg(long, default_value_t = 600)]
    drain_timeout_seconds: u64,
    /// How long after the drain the settled resident memory is read.
    #[arg(long, default_value_t = 10)]
    settle_seconds: u64,
    /// Where the OTLP/gRPC sink listens (target external: the endpoint that process exports to).
    #[arg(long, default_value = "127.0.0.1:0")]
    sink_listen: SocketAddr,
    /// Target external: the webhook's URL, `http://IP:PORT/PATH`.
    #[arg(long)]
    webhook: Option<String>,
    /// Target external: the pid of the process behind the webhook.
    #[arg(long)]
    pid: Option<u32>,
    /// Target ours: the `kelemetry` binary (default: target/release/kelemetry of this repository).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The recorded audit log the events are copies of (default: this repository's
    /// fixtures/recorded/deployment-lifecycle/audit.log).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Post the lines of `--fixture` as they are, once each, instead of copies of them (events named by their own
    /// audit ids; `--events` at most the log's events).
    #[arg(long)]
    verbatim: bool,
    /// The name of the target in the printed rows (default: `ours` or `external`).
    #[arg(long)]
    label: Option<String>,
    /// Target ours: keep the temporary folders (configuration, standard error) for a look.
    #[arg(long)]
    keep: bool,
}

/// The `--target` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// A fresh `kelemetry run` per round.
    Ours,
    /// A process already running, given by `--webhook` and `--pid`.
    External,
}

fn main() -> ExitCode {
    harness::exit_code("side_by_side", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), HarnessError> {
    if args.batch == 0 || args.connections == 0 || args.rounds == 0 {
        return Err(HarnessError::Setup(
            "--batch, --connections and --rounds must be at least 1".to_owned(),
        ));
    }
    if args.events.is_empty() || args.events.contains(&0) {
        return Err(HarnessError::Setup(
            "--events needs positive counts".to_owned(),
        ));
    }
    let fixture = harness::recorded_fixture(args.fixture.as_deref());
    let templates = Arc::new(if args.verbatim {
        Templates::verbatim(&fixture)?
    } else {
        Templates::load(&fixture, AUDIT_ID_PREFIX)?
    });
    if let Some(max) = templates.max_events() {
        if let Some(too_many) = args.events.iter().find(|&&events| events > max) {
            return Err(HarnessError::Setup(format!(
                "--events {too_many} is more than the {max} events of {} posted verbatim",
                fixture.display()
            )));
        }
        if args.target == Target::External && args.rounds * args.events.len() > 1 {
            return Err(HarnessError::Setup(
                "--verbatim against an external process posts each line once: one count and one round".to_owned(),
            ));
        }
    }
    let target = match args.target {
        Target::Ours => {
            let binary = harness::kelemetry_binary(args.binary.as_deref())?;
            TargetSpec::Ours { binary }
        }
        Target::External => {
            let (Some(url), Some(pid)) = (args.webhook.as_deref(), args.pid) else {
                return Err(HarnessError::Setup(
                    "--target external needs --webhook and --pid".to_owned(),
                ));
            };
            let webhook = WebhookUrl::parse(url)?;
            if cpu_seconds(pid).is_none() {
                return Err(HarnessError::Setup(format!(
                    "no process {pid} to measure (/proc/{pid}/stat)"
                )));
            }
            TargetSpec::External { webhook, pid }
        }
    };
    let label = args.label.clone().unwrap_or_else(|| {
        match args.target {
            Target::Ours => "ours",
            Target::External => "external",
        }
        .to_owned()
    });
    let runtime = harness::runtime()?;
    let (sink, sink_address, sink_task) =
        runtime.block_on(Sink::serve(args.sink_listen, Arc::clone(&templates)))?;
    println!(
        "side_by_side: {} events {} {}, batches of {}, {} connections; OTLP/gRPC sink on {sink_address}",
        templates.events_per_copy(),
        if args.verbatim {
            "posted verbatim from"
        } else {
            "per copy of"
        },
        fixture.display(),
        args.batch,
        args.connections,
    );
    let mut rows = Vec::new();
    let mut outcome = Ok(());
    let mut first_event = 0;
    'counts: for &events in &args.events {
        for round in 1..=args.rounds {
            let measured = match &target {
                TargetSpec::Ours { binary } => measure_ours(
                    args,
                    &runtime,
                    binary,
                    sink_address,
                    &sink,
                    &templates,
                    events,
                ),
                TargetSpec::External { webhook, pid } => runtime.block_on(measure(
                    args,
                    webhook,
                    *pid,
                    &sink,
                    &templates,
                    first_event,
                    events,
                )),
            };
            match measured {
                Ok(figures) => {
                    let row = Row {
                        label: label.clone(),
                        events,
                        round,
                        figures,
                    };
                    print_row(&row);
                    rows.push(row);
                }
                Err(err) => {
                    outcome = Err(err);
                    break 'counts;
                }
            }
            // An external process keeps what it saw: later rounds get objects of their own.
            if args.target == Target::External {
                first_event += events.div_ceil(args.batch) * args.batch;
            }
        }
    }
    sink_task.abort();
    print_table(&rows);
    outcome
}

/// What is measured, resolved.
#[derive(Debug)]
enum TargetSpec {
    /// A fresh `kelemetry run` of this binary per round.
    Ours { binary: PathBuf },
    /// A running process.
    External { webhook: WebhookUrl, pid: u32 },
}

// ---------------------------------------------------------------------------------------------------------------
// The OTLP/gRPC sink.

/// What the sink has received since its last reset.
#[derive(Debug, Default)]
struct SinkCounts {
    spans: AtomicU64,
    requests: AtomicU64,
    /// The posted events that some span carries the audit id of.
    events_seen: Mutex<HashSet<u64>>,
    /// When the last span arrived.
    last_span: Mutex<Option<Instant>>,
}

/// The sink's service: counts spans and notes which posted events they are of.
#[derive(Debug)]
struct Sink {
    counts: Arc<SinkCounts>,
    templates: Arc<Templates>,
}

impl Sink {
    /// Serves the sink on `listen`; the counts, the bound address and the server's task.
    async fn serve(
        listen: SocketAddr,
        templates: Arc<Templates>,
    ) -> Result<(Arc<SinkCounts>, SocketAddr, tokio::task::JoinHandle<()>), HarnessError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(HarnessError::io(format!("cannot listen on {listen}")))?;
        let address = listener
            .local_addr()
            .map_err(HarnessError::io("the sink's address"))?;
        let counts = Arc::new(SinkCounts::default());
        let service = TraceServiceServer::new(Sink {
            counts: Arc::clone(&counts),
            templates,
        })
        .max_decoding_message_size(256 << 20);
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            if let Err(err) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("side_by_side: the OTLP sink stopped: {err}");
            }
        });
        Ok((counts, address, task))
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let mut spans = 0u64;
        let mut events = Vec::new();
        let all_spans = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| &scope.spans);
        for span in all_spans {
            spans += 1;
            // Whatever the attribute's name, a string value that is one of our audit ids names the event.
            let audit_ids = span.attributes.iter().filter_map(|attribute| {
                match attribute.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(text) => self.templates.event_of_audit_id(text),
                    _ => None,
                }
            });
            events.extend(audit_ids);
        }
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        if spans > 0 {
            self.counts.spans.fetch_add(spans, Ordering::Relaxed);
            self.counts
                .events_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(events);
            *self
                .counts
                .last_span
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl SinkCounts {
    fn reset(&self) {
        self.spans.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.events_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        *self
            .last_span
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn last_span(&self) -> Option<Instant> {
        *self
            .last_span
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Of the events `first..first + count` that owe a span, how many no span names, by line of the recording
    /// (from 1).
    fn missing_by_line(&self, first: u64, count: u64, templates: &Templates) -> BTreeMap<u64, u64> {
        let lines = templates.events_per_copy() as u64;
        let seen = self
            .events_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut missing = BTreeMap::new();
        for event in first..first + count {
            if templates.traced(event) && !seen.contains(&event) {
                *missing.entry(event % lines + 1).or_default() += 1;
            }
        }
        missing
    }

    /// Of the events `first..first + count`, how many some span names.
    fn events_seen_in(&self, first: u64, count: u64) -> u64 {
        let seen = self
            .events_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.iter()
            .filter(|&&event| event >= first && event < first + count)
            .count() as u64
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Our process.

/// The configuration of our process: the webhook and the OTLP/gRPC exporter to the sink, defaults otherwise.
fn ours_config(sink: SocketAddr) -> String {
    format!(
        "cluster: tracetest\nrole: allInOne\nsources:\n{WEBHOOK_SOURCE_YAML}exporters:\n  otlp:\n    \
         endpoint: http://{sink}\n    protocol: grpc\n"
    )
}

/// One round against a fresh `kelemetry run`.
fn measure_ours(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    sink_address: SocketAddr,
    sink: &SinkCounts,
    templates: &Arc<Templates>,
    events: u64,
) -> Result<Figures, HarnessError> {
    let dir = tempfile::Builder::new()
        .prefix("side-by-side-")
        .tempdir()
        .map_err(HarnessError::io("cannot create a temporary folder"))?;
    let config = dir.path().join("kelemetry.yaml");
    std::fs::write(&config, ours_config(sink_address)).map_err(HarnessError::io(format!(
        "cannot write {}",
        config.display()
    )))?;
    let process = KelemetryProcess::start("all-in-one", binary, &config, dir.path())?;
    let webhook = WebhookUrl::kelemetry(process.webhook_address()?);
    let pid = process.pid();
    let figures = runtime.block_on(measure(args, &webhook, pid, sink, templates, 0, events));
    process.stop();
    if args.keep {
        let kept = dir.keep();
        println!("side_by_side: kept {}", kept.display());
    }
    figures
}

// ---------------------------------------------------------------------------------------------------------------
// The load.

/// Posts an empty `EventList` until it is answered 200 (the webhook is up), for at most [`START_TIMEOUT`].
async fn wait_until_ready(webhook: &WebhookUrl) -> Result<(), HarnessError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match harness::connect(webhook.address).await {
            Ok(mut sender) => {
                match harness::post(
                    &mut sender,
                    webhook,
                    Bytes::from_static(EMPTY_EVENT_LIST.as_bytes()),
                )
                .await
                {
                    Ok(StatusCode::OK) => return Ok(()),
                    Ok(status) => last = format!("answered {status}"),
                    Err(err) => last = err.to_string(),
                }
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(HarnessError::Setup(format!(
        "the webhook {}{} never answered an empty EventList with 200: {last}",
        webhook.address, webhook.path
    )))
}

/// What the posting connections have counted.
#[derive(Debug, Default)]
struct Answers {
    /// Events in batches answered 200.
    accepted: AtomicU64,
    /// Answers 429 (each retried).
    too_many: AtomicU64,
    /// Other answers by status (`None`: the connection failed), in batches.
    other: Mutex<BTreeMap<Option<u16>, u64>>,
}

/// One round's load, shared by its connections.
#[derive(Debug)]
struct Load {
    webhook: WebhookUrl,
    templates: Arc<Templates>,
    /// The number of the next batch to post.
    next_batch: AtomicU64,
    batches: u64,
    first_event: u64,
    events: u64,
    batch_size: u64,
    /// The wait before a batch answered 429 is posted again.
    retry: Duration,
    answers: Answers,
}

/// One connection: takes the next batch number until there is none, posts it, retries a 429.
async fn post_worker(load: Arc<Load>) {
    let mut poster = Poster::new(load.webhook.clone());
    loop {
        let number = load.next_batch.fetch_add(1, Ordering::Relaxed);
        if number >= load.batches {
            return;
        }
        let first = load.first_event + number * load.batch_size;
        let count = load.batch_size.min(load.first_event + load.events - first);
        let body = Bytes::from(load.templates.event_list(first, count));
        loop {
            match poster.post(body.clone()).await {
                Some(StatusCode::OK) => {
                    load.answers.accepted.fetch_add(count, Ordering::Relaxed);
                }
                Some(StatusCode::TOO_MANY_REQUESTS) => {
                    load.answers.too_many.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(load.retry).await;
                    continue;
                }
                other => {
                    *load
                        .answers
                        .other
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(other.map(|status| status.as_u16()))
                        .or_default() += 1;
                }
            }
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The measurement.

/// The figures of one round.
#[derive(Debug)]
struct Figures {
    accepted: u64,
    /// Answers 429, each retried.
    too_many: u64,
    /// Other answers by status, in batches.
    other: BTreeMap<Option<u16>, u64>,
    /// Seconds from the first post to the last answer.
    post_seconds: f64,
    /// Seconds from the first post to the last span at the sink.
    seconds: f64,
    /// CPU seconds of the process from the first post to the last span.
    cpu_seconds: f64,
    /// CPU seconds of this generator and sink from the first post to the end of the drain.
    generator_cpu_seconds: f64,
    peak_rss_kib: u64,
    settled_rss_kib: u64,
    spans: u64,
    /// Posted events that owe a span (all but those the audit mapping skips, such as reads).
    traced: u64,
    /// Posted events that a span names by audit id.
    events_with_span: u64,
    /// Whether the drain ended by `--drain-timeout-seconds` rather than quiet.
    timed_out: bool,
    /// Events without a span by line of the recording (from 1).
    missing_by_line: BTreeMap<u64, u64>,
}

impl Figures {
    /// `note` when the drain timed out, nothing otherwise.
    fn timed_out_note(&self, note: &'static str) -> &'static str {
        if self.timed_out { note } else { "" }
    }
}

/// One round: events `first_event..first_event + events` posted to `webhook`, `pid` watched.
async fn measure(
    args: &Args,
    webhook: &WebhookUrl,
    pid: u32,
    sink: &SinkCounts,
    templates: &Arc<Templates>,
    first_event: u64,
    events: u64,
) -> Result<Figures, HarnessError> {
    let gone = || HarnessError::Setup(format!("the process {pid} is gone"));
    wait_until_ready(webhook).await?;
    // Let what the readiness probe or an earlier round left come out before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sink.reset();
    let cpu_before = cpu_seconds(pid).ok_or_else(gone)?;
    let own_cpu_before = cpu_seconds(std::process::id()).unwrap_or_default();
    let load = Arc::new(Load {
        webhook: webhook.clone(),
        templates: Arc::clone(templates),
        next_batch: AtomicU64::new(0),
        batches: events.div_ceil(args.batch),
        first_event,
        events,
        batch_size: args.batch,
        retry: Duration::from_millis(args.retry_ms),
        answers: Answers::default(),
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(post_worker(Arc::clone(&load))))
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let posted = Instant::now();
    // The drain: until no span arrived for --quiet-seconds; the CPU time is read as of the last span.
    let quiet = Duration::from_secs(args.quiet_seconds);
    let drain_deadline = posted + Duration::from_secs(args.drain_timeout_seconds);
    let mut cpu_at_last_span = cpu_seconds(pid).ok_or_else(gone)?;
    let mut spans_seen = sink.spans.load(Ordering::Relaxed);
    let timed_out = loop {
        let now = Instant::now();
        let spans = sink.spans.load(Ordering::Relaxed);
        if spans != spans_seen {
            spans_seen = spans;
            cpu_at_last_span = cpu_seconds(pid).ok_or_else(gone)?;
        }
        let last_activity = sink.last_span().map_or(posted, |last| last.max(posted));
        if now.duration_since(last_activity) >= quiet {
            break false;
        }
        if now >= drain_deadline {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let own_cpu = cpu_seconds(std::process::id()).unwrap_or_default() - own_cpu_before;
    let memory = memory_kib(pid).ok_or_else(gone)?;
    let end = sink.last_span().unwrap_or(posted).max(posted);
    tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;
    let settled = memory_kib(pid).ok_or_else(gone)?;
    let answers = &load.answers;
    let other = std::mem::take(&mut *answers.other.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(Figures {
        accepted: answers.accepted.load(Ordering::Relaxed),
        too_many: answers.too_many.load(Ordering::Relaxed),
        other,
        post_seconds: posted.duration_since(started).as_secs_f64(),
        seconds: end.duration_since(started).as_secs_f64(),
        cpu_seconds: cpu_at_last_span - cpu_before,
        generator_cpu_seconds: own_cpu,
        peak_rss_kib: memory.peak_resident_kib,
        settled_rss_kib: settled.resident_kib,
        spans: sink.spans.load(Ordering::Relaxed),
        traced: (first_event..first_event + events)
            .filter(|&event| templates.traced(event))
            .count() as u64,
        events_with_span: sink.events_seen_in(first_event, events),
        missing_by_line: sink.missing_by_line(first_event, events, templates),
        timed_out,
    })
}

/// One printed row.
#[derive(Debug)]
struct Row {
    label: String,
    events: u64,
    round: usize,
    figures: Figures,
}

impl Row {
    fn events_per_second(&self) -> f64 {
        self.figures.accepted as f64 / self.figures.seconds.max(f64::EPSILON)
    }

    fn cpu_per_thousand(&self) -> f64 {
        self.figures.cpu_seconds * 1000.0 / (self.figures.accepted.max(1) as f64)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Answers other than 200 and 429, in batches by status.
fn other_text(other: &BTreeMap<Option<u16>, u64>) -> String {
    harness::status_counts_text(other, "none", "failed", " ")
}

fn print_row(row: &Row) {
    let figures = &row.figures;
    if !figures.missing_by_line.is_empty() {
        let lines: Vec<String> = figures
            .missing_by_line
            .iter()
            .take(MISSING_LINES_SHOWN)
            .map(|(line, events)| format!("{line}:{events}"))
            .collect();
        let more = figures
            .missing_by_line
            .len()
            .saturating_sub(MISSING_LINES_SHOWN);
        println!(
            "side_by_side: events without a span by line of the recording (line:events): {}{}",
            lines.join(" "),
            if more > 0 {
                format!(" and {more} more lines")
            } else {
                String::new()
            }
        );
    }
    println!(
        "side_by_side: {} {} events round {}: {} accepted in {:.1} s of posting, last span at {:.1} s{}: {:.0} events/s, \
         {:.3} CPU s per 1k events ({:.1} CPU s; generator and sink {:.1} CPU s), peak RSS {:.0} MiB, settled \
         {:.0} MiB, {} spans, {} of {} traced events with a span, {} answers 429, other answers {}",
        row.label,
        row.events,
        row.round,
        figures.accepted,
        figures.post_seconds,
        figures.seconds,
        figures.timed_out_note(" (drain timed out)"),
        row.events_per_second(),
        row.cpu_per_thousand(),
        figures.cpu_seconds,
        figures.generator_cpu_seconds,
        mib(figures.peak_rss_kib),
        mib(figures.settled_rss_kib),
        figures.spans,
        figures.events_with_span,
        figures.traced,
        figures.too_many,
        other_text(&figures.other),
    );
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| target | events | round | events/s | posting s | CPU s / 1k events | peak RSS MiB | settled RSS MiB | \
         spans | traced events | with a span | 429 | other answers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let figures = &row.figures;
        println!(
            "| {} | {} | {} | {:.0}{} | {:.1} | {:.3} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            row.label,
            row.events,
            row.round,
            row.events_per_second(),
            figures.timed_out_note(" (timed out)"),
            figures.post_seconds,
            row.cpu_per_thousand(),
            mib(figures.peak_rss_kib),
            mib(figures.settled_rss_kib),
            figures.spans,
            figures.traced,
            figures.events_with_span,
            figures.too_many,
            other_text(&figures.other),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_configuration_names_the_sink() {
        let config = ours_config(SocketAddr::from(([127, 0, 0, 1], 4317)));
        assert!(config.contains("endpoint: http://127.0.0.1:4317"));
        assert!(config.contains("protocol: grpc"));
    }
}
