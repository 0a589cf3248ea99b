//! The shard harness: the throughput harness's pipeline (`AuditFileSource` → `Pipeline` with `DiffDecorator` and
//! `OwnerLinker` → `DiscardExporter`) over the same generated audit log, on a multi-threaded tokio runtime, with
//! 1 shard and with 2 (`PipelineLimits::shards`); runs alternate, the best of each is reported with the ratio.
//!
//! ```text
//! cargo run --release -p kelemetry-benches --bin shards -- [--events N] [--objects M] [--workers W]
//! ```
//!
//! Unlike `throughput`, this one is meant to use more than one core: run it without `taskset`. The source (reading,
//! parsing and mapping the audit lines) is one task whatever the shards, so it bounds what shards can gain. With
//! `--input records` the log is first read into records by the same source (not timed), and the timed part sends
//! them from memory through a sink: the stage alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kelemetry_benches::corpus::{
    CorpusError, CorpusSpec, Templates, fixtures_dir, write_corpus_to_temp,
};
use kelemetry_core::decorate::DiffDecorator;
use kelemetry_core::{
    CancellationToken, CollectingSink, DiscardExporter, Pipeline, PipelineReport, Record,
    ResourceMap, Source,
};
use kelemetry_linkers::OwnerLinker;
use kelemetry_sources::AuditFileSource;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Times the pipeline with 1 shard and with 2 on a generated audit log.
#[derive(Debug, Parser)]
#[command(name = "shards")]
struct Args {
    /// Audit events in the generated log.
    #[arg(long, env = "KELEMETRY_BENCH_EVENTS", default_value_t = 200_000)]
    events: u64,
    /// Distinct objects the log writes to.
    #[arg(long, env = "KELEMETRY_BENCH_OBJECTS", default_value_t = 20_000)]
    objects: u64,
    /// Worker threads of the tokio runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Runs of each shard count; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// What is timed: the file source and the pipeline, or the pipeline alone fed from memory.
    #[arg(long, value_enum, default_value_t = Input::File)]
    input: Input,
    /// The recorded fixtures (default: $KELEMETRY_FIXTURES, else ../shared/fixtures beside the workspace).
    #[arg(long)]
    fixtures: Option<PathBuf>,
}

/// What a timed run starts from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Input {
    /// The audit file, read by `AuditFileSource` inside the pipeline.
    File,
    /// The records the source makes of the file, read before the clock starts and sent through a sink.
    Records,
}

#[derive(Debug, thiserror::Error)]
enum HarnessError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the pipeline saw {seen} audit events, the log has {expected}")]
    Incomplete { seen: u64, expected: u64 },
    #[error("the records could not be sent: the pipeline closed its sink")]
    SinkClosed,
    #[error("the pipeline task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("{shards} shard(s) made {spans} spans, 1 shard made {expected}")]
    OtherOutput {
        shards: usize,
        spans: u64,
        expected: u64,
    },
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shards: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), HarnessError> {
    let fixtures = args.fixtures.clone().unwrap_or_else(fixtures_dir);
    let templates = Templates::load(&fixtures)?;
    let spec = CorpusSpec::sized(args.events, args.objects);
    let (corpus, summary) = write_corpus_to_temp(&spec, &templates)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .map_err(HarnessError::Runtime)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "kelemetry shard harness: {} events about {} objects ({:.1} MiB), timed from {}; tokio multi_thread \
         runtime with {} worker(s); this process may use {cores} core(s)",
        summary.events,
        summary.objects,
        summary.bytes as f64 / (1024.0 * 1024.0),
        match args.input {
            Input::File => "the file",
            Input::Records => "records in memory",
        },
        args.workers.max(1),
    );
    let counts = [1usize, 2];
    let mut best = [Duration::MAX; 2];
    let mut spans = [0u64; 2];
    for run in 1..=args.runs.max(1) {
        for (index, &shards) in counts.iter().enumerate() {
            let Timed {
                elapsed,
                cpu,
                report,
                read,
            } = match args.input {
                Input::File => runtime.block_on(timed(corpus.path(), shards)),
                Input::Records => runtime.block_on(timed_from_memory(corpus.path(), shards))?,
            };
            if read != summary.events {
                return Err(HarnessError::Incomplete {
                    seen: read,
                    expected: summary.events,
                });
            }
            let cpu = cpu.map_or(String::new(), |cpu| format!("; {cpu:.2} s of CPU"));
            println!(
                "run {run}: {shards} shard(s) {:>9.0} events/s ({} events in {:.2} s{cpu}; {} spans)",
                read as f64 / elapsed.as_secs_f64(),
                read,
                elapsed.as_secs_f64(),
                report.spans()
            );
            best[index] = best[index].min(elapsed);
            spans[index] = report.spans();
        }
    }
    if spans[1] != spans[0] {
        return Err(HarnessError::OtherOutput {
            shards: 2,
            spans: spans[1],
            expected: spans[0],
        });
    }
    let per_second = |elapsed: Duration| summary.events as f64 / elapsed.as_secs_f64();
    println!();
    println!("best of {} runs each:", args.runs.max(1));
    for (index, shards) in counts.iter().enumerate() {
        println!(
            "  {shards} shard(s): {:>9.0} events/s",
            per_second(best[index])
        );
    }
    println!(
        "  ratio 2 shards / 1 shard: {:.2}",
        per_second(best[1]) / per_second(best[0])
    );
    drop(corpus);
    Ok(())
}

/// One timed run.
struct Timed {
    elapsed: Duration,
    /// CPU time of the whole process meanwhile (every thread), when known.
    cpu: Option<f64>,
    report: PipelineReport,
    /// Audit events read.
    read: u64,
}

/// One run over the file with `shards` shards.
async fn timed(path: &Path, shards: usize) -> Timed {
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let source = AuditFileSource::new(path, "bench");
    let counters = source.counters();
    let pipeline = Pipeline::builder()
        .decorator(Arc::new(DiffDecorator))
        .linker(Arc::new(OwnerLinker::new(Arc::new(ResourceMap::builtin()))))
        .exporter(Arc::new(DiscardExporter))
        .source(Box::new(source))
        .shards(shards)
        .build();
    let report = pipeline.run(CancellationToken::new()).await;
    Timed {
        elapsed: start.elapsed(),
        cpu: cpu_since(cpu_before),
        report,
        read: counters.snapshot().records,
    }
}

/// CPU seconds used since `before` ([`process_cpu_seconds`]).
fn cpu_since(before: Option<f64>) -> Option<f64> {
    Some(process_cpu_seconds()? - before?)
}

/// The records `AuditFileSource` makes of the file, with the number of audit events it read.
async fn read_records(path: &Path) -> (Vec<Record>, u64) {
    let source = AuditFileSource::new(path, "bench");
    let counters = source.counters();
    let sink = Arc::new(CollectingSink::new(usize::MAX));
    // A file source returns when the file ends; what it could not read is in its counters, checked by the caller.
    let _ = Box::new(source)
        .run(sink.clone(), CancellationToken::new())
        .await;
    (sink.records(), counters.snapshot().records)
}

/// One run with `shards` shards over the file's records, read before the clock starts and sent through a sink.
async fn timed_from_memory(path: &Path, shards: usize) -> Result<Timed, HarnessError> {
    let (records, read) = read_records(path).await;
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let pipeline = Pipeline::builder()
        .decorator(Arc::new(DiffDecorator))
        .linker(Arc::new(OwnerLinker::new(Arc::new(ResourceMap::builtin()))))
        .exporter(Arc::new(DiscardExporter))
        .shards(shards)
        .build();
    let sink = pipeline.sink();
    let running = tokio::spawn(pipeline.run(CancellationToken::new()));
    for record in records {
        sink.send(record)
            .await
            .map_err(|_| HarnessError::SinkClosed)?;
    }
    drop(sink);
    let report = running.await?;
    Ok(Timed {
        elapsed: start.elapsed(),
        cpu: cpu_since(cpu_before),
        report,
        read,
    })
}

/// The CPU time (user and system) this process has used so far, from `/proc/self/stat` (Linux; `None` elsewhere).
/// Its `utime` and `stime` are in clock ticks of `USER_HZ`, which is 100 on Linux whatever the kernel's own rate.
fn process_cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it start past its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / USER_HZ)
}
