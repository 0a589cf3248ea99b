//! The throughput harness: on one audit file, in one process, on one core, plain `serde_json` parsing of each line
//! against the full pipeline into a discarding exporter; then the memory the pipeline keeps per tracked
//! object-window.
//!
//! ```text
//! cargo run --release -p kelemetry-benches --bin throughput -- [--events N] [--objects M]
//! ```
//!
//! The audit file is built from the real recorded audit events (see `kelemetry_benches::corpus`) into a temporary
//! file that is removed at the end. Everything runs on one tokio `current_thread` runtime, so the pipeline's
//! stages, its source and its exporter share one thread; tokio's file reads still go through its blocking pool
//! (another thread, mostly waiting on the page cache), so run the harness under `taskset -c 0` to hold the whole
//! process to one core, as the figures in `benches/README.md` were measured.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Parser;
use kelemetry_benches::corpus::{
    CorpusError, CorpusSpec, CorpusSummary, DEFAULT_EVENTS, DEFAULT_OBJECTS, Templates,
    fixtures_dir, write_corpus_to_temp,
};
use kelemetry_benches::counting_alloc::CountingAllocator;
use kelemetry_core::decorate::DiffDecorator;
use kelemetry_core::{
    BoundedLedger, CancellationToken, DiscardExporter, Pipeline, PipelineLimits, PipelineReport,
    ResourceMap,
};
use kelemetry_linkers::OwnerLinker;
use kelemetry_sources::{AuditFileSource, ReadReport};

/// Counts live heap bytes, only during the memory measurement (the timed runs do not pay for counting).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

/// Targets of the issues: the ratio is issue 17's (0.6 at full size), the others an earlier issue's.
const TARGET_RATIO: f64 = 0.6;
const TARGET_EVENTS_PER_SEC: f64 = 150_000.0;
const TARGET_BYTES_PER_WINDOW: f64 = 300.0;

/// Measures plain parsing against the full pipeline on a large audit log built from the recorded fixtures.
#[derive(Debug, Parser)]
#[command(name = "throughput")]
struct Args {
    /// Audit events in the generated log.
    #[arg(long, env = "KELEMETRY_BENCH_EVENTS", default_value_t = DEFAULT_EVENTS)]
    events: u64,
    /// Distinct objects the log writes to.
    #[arg(long, env = "KELEMETRY_BENCH_OBJECTS", default_value_t = DEFAULT_OBJECTS)]
    objects: u64,
    /// Percent of the lines that are recorded reads (parsed, then skipped by the pipeline).
    #[arg(long, default_value_t = 10)]
    read_percent: u8,
    /// Write every line at the `Metadata` level (no bodies), as most managed clusters' audit policies record.
    #[arg(long)]
    metadata_only: bool,
    /// Runs of each throughput measurement; the best is reported.
    #[arg(long, default_value_t = 2)]
    runs: u32,
    /// Skip the memory measurement.
    #[arg(long)]
    skip_memory: bool,
    /// Only write the generated audit log to this file, and measure nothing (e.g. to time `kelemetry replay`
    /// on the same input).
    #[arg(long)]
    write_corpus: Option<PathBuf>,
    /// Time only one side (for profiling); no ratio is printed then.
    #[arg(long, value_enum)]
    only: Option<Side>,
    /// The recorded fixtures (default: $KELEMETRY_FIXTURES, else ../shared/fixtures beside the workspace).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// The pipeline's channel: records held between the source and the batches (default: the pipeline's,
    /// `PipelineLimits::channel`). For measuring what the records in flight cost; the run then says that its
    /// verdicts are not for the default limits.
    #[arg(long)]
    channel: Option<usize>,
    /// Spans per batch handed to the exporter (default: the pipeline's, `PipelineLimits::batch_size`).
    #[arg(long)]
    batch_size: Option<usize>,
}

impl Args {
    /// The pipeline's limits for the throughput runs: the defaults, with `--channel` and `--batch-size`.
    fn pipeline_limits(&self) -> PipelineLimits {
        let defaults = PipelineLimits::default();
        PipelineLimits {
            channel: self.channel.unwrap_or(defaults.channel),
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            ..defaults
        }
    }
}

/// One side of the throughput comparison.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Side {
    /// Plain `serde_json` parsing of each line.
    Baseline,
    /// The full pipeline.
    Pipeline,
}

#[derive(Debug, thiserror::Error)]
enum HarnessError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error("cannot read the generated log {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the pipeline task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the pipeline saw {seen} audit events, the log has {expected}")]
    Incomplete { seen: u64, expected: u64 },
}

/// The pipeline's default body cache size, the one the memory figures are for.
fn default_body_cache() -> usize {
    PipelineLimits::default().body_cache_objects
}

/// The pipeline's default ledger capacity.
fn default_ledger_capacity() -> usize {
    PipelineLimits::default().ledger_ids
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("throughput: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), HarnessError> {
    let (spec, templates) = load_templates(args)?;
    let started = Instant::now();
    if let Some(target) = &args.write_corpus {
        let file = File::create(target).map_err(|source| HarnessError::Create {
            path: target.clone(),
            source,
        })?;
        let summary = kelemetry_benches::corpus::write_corpus(
            &spec,
            &templates,
            std::io::BufWriter::with_capacity(1 << 20, file),
        )?;
        print_corpus(&summary, started.elapsed());
        println!("written to {}", target.display());
        return Ok(());
    }
    let (corpus, summary) = write_corpus_to_temp(&spec, &templates)?;
    print_corpus(&summary, started.elapsed());
    let path = corpus.path().to_owned();
    let runtime = single_thread_runtime()?;

    let runs = args.runs.max(1);
    let (best_parse, best_pipeline) = time_runs(args, runs, &runtime, &path, &summary)?;
    let (Some(parse), Some(pipeline)) = (best_parse, best_pipeline) else {
        return Ok(());
    };
    let mut verdicts = compare(runs, &parse, &pipeline);
    if !args.skip_memory {
        println!();
        let per_window = runtime.block_on(memory(&spec, &templates, &path, &summary))?;
        verdicts.push(verdict(
            "bytes held per tracked object-window",
            per_window <= TARGET_BYTES_PER_WINDOW,
            format!("{per_window:.0} (target <= {TARGET_BYTES_PER_WINDOW:.0})"),
        ));
    }
    println!();
    println!("targets:");
    for line in verdicts {
        println!("  {line}");
    }
    drop(corpus);
    Ok(())
}

/// Loads the recorded templates and says what was found; the spec of the corpus to build from them.
fn load_templates(args: &Args) -> Result<(CorpusSpec, Templates), HarnessError> {
    let fixtures = args.fixtures.clone().unwrap_or_else(fixtures_dir);
    let templates = Templates::load(&fixtures)?;
    let (creates, updates, deletes, reads, files) = templates.counts();
    let spec = CorpusSpec {
        read_percent: args.read_percent,
        metadata_only: args.metadata_only,
        ..CorpusSpec::sized(args.events, args.objects)
    };
    println!(
        "kelemetry throughput harness; templates: {creates} creates, {updates} patches, {deletes} deletes, {reads} \
         reads from {files} recorded files under {}",
        fixtures.display()
    );
    Ok((spec, templates))
}

/// The tokio `current_thread` runtime everything runs on, announced with the cores the process may use.
fn single_thread_runtime() -> Result<tokio::runtime::Runtime, HarnessError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HarnessError::Runtime)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "runtime: tokio current_thread (one thread runs the source, every stage and the exporter); this process \
         may use {cores} core(s){}",
        if cores == 1 {
            ""
        } else {
            " (run under `taskset -c 0` to hold it to one)"
        }
    );
    println!();
    Ok(runtime)
}

/// Times `runs` runs of each side asked for (printing each run, then the last pipeline's report); the best
/// (fastest) run of each side.
fn time_runs(
    args: &Args,
    runs: u32,
    runtime: &tokio::runtime::Runtime,
    path: &Path,
    summary: &CorpusSummary,
) -> Result<(Option<Measured>, Option<Measured>), HarnessError> {
    if args.channel.is_some() || args.batch_size.is_some() {
        let defaults = PipelineLimits::default();
        let limits = args.pipeline_limits();
        println!(
            "pipeline limits: channel {}, batch size {} (the defaults are {} and {}; the throughput figures and \
             verdicts below are for these limits, not the defaults; the memory measurement keeps the defaults)",
            limits.channel, limits.batch_size, defaults.channel, defaults.batch_size
        );
    }
    let mut best_parse: Option<Measured> = None;
    let mut best_pipeline: Option<Measured> = None;
    let mut last_report = None;
    for run in 1..=runs {
        if args.only != Some(Side::Pipeline) {
            let parse = parse_baseline(path)?;
            println!("run {run}: plain serde_json   {}", parse.describe());
            if best_parse
                .as_ref()
                .is_none_or(|best| parse.elapsed < best.elapsed)
            {
                best_parse = Some(parse);
            }
        }
        if args.only == Some(Side::Baseline) {
            continue;
        }
        let (pipeline, report, read) = runtime.block_on(pipeline_throughput(path, args))?;
        println!("run {run}: full pipeline      {}", pipeline.describe());
        if read.records != summary.events {
            return Err(HarnessError::Incomplete {
                seen: read.records,
                expected: summary.events,
            });
        }
        if best_pipeline
            .as_ref()
            .is_none_or(|best| pipeline.elapsed < best.elapsed)
        {
            best_pipeline = Some(pipeline);
        }
        last_report = Some((report, read));
    }
    if let Some((report, read)) = &last_report {
        print_pipeline_report(report, read);
    }
    Ok((best_parse, best_pipeline))
}

/// Prints the best runs of both sides and their ratio; the verdicts on the throughput targets.
fn compare(runs: u32, parse: &Measured, pipeline: &Measured) -> Vec<String> {
    let ratio = pipeline.per_second() / parse.per_second();
    println!();
    println!("best of {runs} runs each:");
    println!(
        "  plain serde_json parse of each line: {:>10.0} events/s",
        parse.per_second()
    );
    println!(
        "  full pipeline (DiffDecorator, OwnerLinker, DiscardExporter): {:>10.0} events/s",
        pipeline.per_second()
    );
    println!("  ratio pipeline / plain parse: {ratio:.2}");
    vec![
        verdict(
            "pipeline at least 0.6 times as fast as plain parsing",
            ratio >= TARGET_RATIO,
            format!("{ratio:.2} (target >= {TARGET_RATIO})"),
        ),
        verdict(
            "pipeline events per second",
            pipeline.per_second() >= TARGET_EVENTS_PER_SEC,
            format!(
                "{:.0} (target >= {TARGET_EVENTS_PER_SEC:.0})",
                pipeline.per_second()
            ),
        ),
    ]
}

fn verdict(what: &str, met: bool, figure: String) -> String {
    format!("{} {what}: {figure}", if met { "MET   " } else { "MISSED" })
}

fn print_corpus(summary: &CorpusSummary, took: Duration) {
    let windows = match (summary.first, summary.last) {
        (Some(first), Some(last)) => {
            let length = 30 * 60;
            (last.as_second().div_euclid(length) - first.as_second().div_euclid(length) + 1)
                .to_string()
        }
        _ => "0".to_owned(),
    };
    println!(
        "generated {} events ({} writes, {} reads; {} conflicts) about {} objects ({} with a body, {} deleted), \
         {:.1} MiB, over {windows} 30-minute windows, in {:.1} s",
        summary.events,
        summary.writes,
        summary.reads,
        summary.conflicts,
        summary.objects,
        summary.objects_with_body,
        summary.deleted_objects,
        summary.bytes as f64 / (1024.0 * 1024.0),
        took.as_secs_f64()
    );
}

fn print_pipeline_report(report: &PipelineReport, read: &ReadReport) {
    let skipped: Vec<String> = read
        .skipped
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect();
    println!(
        "pipeline output: {} activities, {} spans ({} object, {} link, {} activity), {} rejected, {} link errors; \
         skipped: {}",
        report.activities,
        report.spans(),
        report.object_spans,
        report.link_spans,
        report.activity_spans,
        report.rejected,
        report.link_errors,
        skipped.join(", ")
    );
}

/// One timed run over the whole file.
#[derive(Debug)]
struct Measured {
    events: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn describe(&self) -> String {
        format!(
            "{:>9.0} events/s, {:>6.1} MiB/s ({} events in {:.2} s)",
            self.per_second(),
            self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64(),
            self.events,
            self.elapsed.as_secs_f64(),
        )
    }
}

/// The baseline: read the file line by line and parse each line into a `serde_json::Value` (then drop it).
fn parse_baseline(path: &Path) -> Result<Measured, HarnessError> {
    let failed = |source| HarnessError::Read {
        path: path.to_owned(),
        source,
    };
    let start = Instant::now();
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path).map_err(failed)?);
    let mut line = String::new();
    let (mut events, mut bytes) = (0, 0);
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(failed)?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            black_box(&value);
            events += 1;
        }
    }
    Ok(Measured {
        events,
        bytes,
        elapsed: start.elapsed(),
    })
}

/// Times the full pipeline over the file: `AuditFileSource` → `Pipeline` (`DiffDecorator`, `OwnerLinker`) →
/// `DiscardExporter`, composed as `kelemetry replay` composes it.
async fn pipeline_throughput(
    path: &Path,
    args: &Args,
) -> Result<(Measured, PipelineReport, ReadReport), HarnessError> {
    let start = Instant::now();
    let source = AuditFileSource::new(path, "bench");
    let counters = source.counters();
    let pipeline = Pipeline::builder()
        .decorator(Arc::new(DiffDecorator))
        .linker(Arc::new(OwnerLinker::new(Arc::new(ResourceMap::builtin()))))
        .exporter(Arc::new(DiscardExporter))
        .source(Box::new(source))
        .limits(args.pipeline_limits())
        .build();
    let shutdown = CancellationToken::new();
    let report = pipeline.run(shutdown).await;
    let elapsed = start.elapsed();
    let read = counters.snapshot();
    Ok((
        Measured {
            events: read.records,
            bytes: read.bytes,
            elapsed,
        },
        report,
        read,
    ))
}

/// What a pipeline holds once it has processed a whole file and waits, still running, for more input.
#[derive(Debug)]
struct Retained {
    /// Live heap bytes allocated since just before the pipeline was built.
    bytes: i64,
    /// Object-windows tracked: object spans emitted (each a distinct object in a distinct window, linked owners
    /// included).
    object_windows: u64,
    /// Ids in the ledger.
    ledger_ids: usize,
}

/// Runs the same pipeline over `path` while holding one of its sinks, so it stays alive (with all its state) after
/// the file is read; measures the live heap once it is idle.
async fn retained_state(path: &Path, body_cache: usize) -> Result<Retained, HarnessError> {
    let file_len = std::fs::metadata(path)
        .map_err(|source| HarnessError::Read {
            path: path.to_owned(),
            source,
        })?
        .len();
    let before = ALLOCATOR.live_bytes();
    // The default ledger, made here only so its size can be read.
    let ledger = Arc::new(BoundedLedger::new(default_ledger_capacity()));
    let pipeline = Pipeline::builder()
        .decorator(Arc::new(DiffDecorator))
        .linker(Arc::new(OwnerLinker::new(Arc::new(ResourceMap::builtin()))))
        .exporter(Arc::new(DiscardExporter))
        .source(Box::new(AuditFileSource::new(path, "bench")))
        .ledger(ledger.clone())
        .body_cache_capacity(body_cache)
        .flush_interval(Duration::from_millis(10))
        .build();
    let stats = pipeline.stats();
    let sink = pipeline.sink();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown));
    let mut last = (u64::MAX, u64::MAX);
    let mut quiet_polls = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let report = stats.report();
        let bytes = stats.bytes_read.load(Relaxed);
        let drained = report.records == report.activities + report.observations + report.filtered;
        let now = (bytes, report.records);
        quiet_polls = if drained && now == last {
            quiet_polls + 1
        } else {
            0
        };
        last = now;
        if (bytes >= file_len && quiet_polls >= 3) || quiet_polls >= 50 {
            break;
        }
    }
    // Let the flush ticker hand the last partial batch to the exporter.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bytes = (ALLOCATOR.live_bytes() - before) as i64;
    let ledger_ids = ledger.len();
    drop(sink);
    let report = running.await?;
    Ok(Retained {
        bytes,
        object_windows: report.object_spans,
        ledger_ids,
    })
}

/// Measures and prints the memory held per tracked object-window, and the body cache apart; returns the figure
/// held against the target (the larger of the marginal and the average cost per object-window).
async fn memory(
    spec: &CorpusSpec,
    templates: &Templates,
    path: &Path,
    summary: &CorpusSummary,
) -> Result<f64, HarnessError> {
    let small_spec = CorpusSpec {
        events: (spec.events / 10).max(1),
        objects: (spec.objects / 10).max(1),
        ..spec.clone()
    };
    let (small, _) = write_corpus_to_temp(&small_spec, templates)?;
    ALLOCATOR.start_counting();
    let measured = async {
        let small_state = retained_state(small.path(), 1).await?;
        let big = retained_state(path, 1).await?;
        let cached = retained_state(path, default_body_cache()).await?;
        Ok::<_, HarnessError>((small_state, big, cached))
    }
    .await;
    ALLOCATOR.stop_counting();
    drop(small);
    let (small_state, big, cached) = measured?;
    let figures = MemoryFigures::new(&small_state, &big, &cached, summary);
    print_memory(&figures, &small_state, &big, summary);
    Ok(figures.average.max(figures.marginal))
}

/// The memory figures derived from the retained states of a tenth of the input, of the whole input, and of the
/// whole input with the default body cache.
#[derive(Debug)]
struct MemoryFigures {
    /// Object-windows of the whole input (at least 1).
    windows: f64,
    /// Bytes per object-window, fixed costs included.
    average: f64,
    /// Bytes per object-window added from a tenth of the input to the whole of it.
    marginal: f64,
    /// Bytes per ledger id.
    per_id: f64,
    /// Bytes the default body cache adds.
    cache_bytes: i64,
    /// Bytes per cached body.
    per_body: f64,
}

impl MemoryFigures {
    fn new(
        small_state: &Retained,
        big: &Retained,
        cached: &Retained,
        summary: &CorpusSummary,
    ) -> Self {
        let windows = big.object_windows.max(1) as f64;
        let average = big.bytes as f64 / windows;
        let marginal = (big.bytes - small_state.bytes) as f64
            / (big
                .object_windows
                .saturating_sub(small_state.object_windows))
            .max(1) as f64;
        let per_id = big.bytes as f64 / big.ledger_ids.max(1) as f64;
        let cache_bytes = cached.bytes - big.bytes;
        let cached_bodies = (default_body_cache() as u64)
            .min(summary.objects_with_body)
            .max(2);
        let per_body = cache_bytes as f64 / (cached_bodies - 1) as f64;
        Self {
            windows,
            average,
            marginal,
            per_id,
            cache_bytes,
            per_body,
        }
    }
}

/// Prints what the memory figures count, then the figures.
fn print_memory(
    figures: &MemoryFigures,
    small_state: &Retained,
    big: &Retained,
    summary: &CorpusSummary,
) {
    let MemoryFigures {
        windows,
        average,
        marginal,
        per_id,
        cache_bytes,
        per_body,
    } = *figures;
    let mib = |bytes: i64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "memory held per tracked object-window (live heap bytes, counted by a global allocator)"
    );
    println!(
        "  what is counted: the bytes Rust asked the allocator for and had not freed, from just before the"
    );
    println!(
        "  pipeline was built until it had read the whole file and sat idle, one of its sinks still held so"
    );
    println!(
        "  that it and all its state stay alive (the system allocator's own per-block overhead is not"
    );
    println!(
        "  counted). The body cache is held to one object in these runs, so what grows with the input is"
    );
    println!(
        "  the ledger of emitted span ids (object spans, link spans both ways, the linked-with-body marker);"
    );
    println!(
        "  an object-window is an object span emitted (one object in one 30-minute window, linked owners"
    );
    println!("  included). The body cache is measured apart, below.");
    println!(
        "  average: {average:.0} bytes per object-window ({:.1} MiB for {} object-windows, fixed costs included);",
        mib(big.bytes),
        big.object_windows,
    );
    println!(
        "           {} ledger ids, {:.2} per object-window, {per_id:.0} bytes per id",
        big.ledger_ids,
        big.ledger_ids as f64 / windows,
    );
    println!(
        "  marginal: {marginal:.0} bytes per object-window from {} object-windows ({:.1} MiB; a tenth of the input)",
        small_state.object_windows,
        mib(small_state.bytes),
    );
    println!(
        "           to {} (hash sets and queues grow by doubling, so this moves with where the sizes fall)",
        big.object_windows
    );
    if big.ledger_ids >= default_ledger_capacity() {
        println!(
            "  note: the ledger reached its capacity of {} ids; it forgets the oldest",
            default_ledger_capacity()
        );
    }
    println!(
        "  body cache (apart: bounded by object count, not by windows): {:.1} MiB at the default capacity of",
        mib(cache_bytes)
    );
    println!(
        "           {} objects ({} objects of the input carry a body): {per_body:.0} bytes per cached body",
        default_body_cache(),
        summary.objects_with_body
    );
}
