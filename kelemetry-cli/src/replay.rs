//! `kelemetry replay` and `kelemetry demo`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kelemetry_core::decorate::DiffDecorator;
use kelemetry_core::{CancellationToken, Pipeline, PipelineReport, Redactor, ResourceMap, Source};
use kelemetry_exporters::StoreExporter;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{DisplayMode, FindQuery, TraceQuery};
use kelemetry_sources::{
    AuditFileSource, ObjectFileSource, ReadCounters, ReadReport, TimeOrderedSources,
};
use kelemetry_store::{SpanStore, StoreOptions, ViewLimits, WriteDurability};

/// The page cache of the store a replay writes.
const REPLAY_STORE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Batches of spans queued for the store (the pipeline's default is 16). Every 32 MiB of held writes the store
/// writes them to the file; a queue of 16 batches filled while it did and the stages stood still, through 128
/// (65,536 spans) they go on. A 1,000,000-line replay on two cores: 35.9-36.6 s against 41.2-42.1 s, peak
/// resident memory 20-55 MiB higher.
const REPLAY_EXPORTER_QUEUE_BATCHES: usize = 128;

/// ... and at most this many bytes of their spans, by the pipeline's estimate: what bounds the queue's memory
/// whatever the spans' size. The recorded-shape corpus estimates about 1,400 bytes a span, so 128 batches of it
/// take about 90 MiB and the batch count is what binds; spans with large diffs fill it with fewer batches.
const REPLAY_EXPORTER_QUEUE_BYTES: usize = 128 * 1024 * 1024;

/// Bytes of records between the file readers and the pipeline's stage (the pipeline's default is 256 MiB): the
/// recorded-shape corpus holds a few MiB in its 4,096 records, a log of large objects fills this first.
const REPLAY_CHANNEL_BYTES: usize = 64 * 1024 * 1024;

use crate::inputs::{self, InputKind, SkippedEntry};
use crate::show::{self, ShowArgs};
use crate::{CliError, DEFAULT_STORE};

/// Arguments of `kelemetry replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Files or folders to replay (a folder stands for every file below it).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// The name of the cluster the recordings come from.
    #[arg(long, default_value = "local")]
    pub(crate) cluster: String,
    /// The store folder (created if missing).
    #[arg(long, env = "KELEMETRY_STORE", default_value = DEFAULT_STORE)]
    pub(crate) store: PathBuf,
    /// What the files hold; `auto` looks at each file.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) format: InputKind,
    /// Print no progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Linking rules to use instead of the built-in ones (`kelemetry rules default` prints those).
    #[arg(long, value_name = "FILE")]
    pub(crate) rules: Option<PathBuf>,
    /// Whether successive versions of the same object in object recordings become change activities with their
    /// diffs (`watch update`, `watch delete`); `auto`: when no audit log is replayed with them (the audit records
    /// are the changes then, and get their diffs from those versions).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) object_changes: ObjectChanges,
    /// Succeed even when no record was accepted (by default such a replay fails, saying what was read and
    /// rejected).
    #[arg(long)]
    pub(crate) allow_empty: bool,
}

/// Arguments of `kelemetry demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Recordings to replay instead of the default demo data.
    pub(crate) files: Vec<PathBuf>,
    /// The object to show, as RESOURCE/NAMESPACE/NAME.
    #[arg(long, default_value = "deployments/default/demo")]
    pub(crate) object: String,
    /// Where the web viewer and the HTTP API listen after the tree is printed; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Print the tree and stop, without serving the viewer.
    #[arg(long)]
    pub(crate) no_serve: bool,
}

/// The recording the demo replays when no file is given: the original Kelemetry's deployment scenario, recorded
/// from the project's real test cluster (`fixtures/recorded/deployment-lifecycle`: audit log, Events, watched
/// objects).
fn default_demo_files() -> Vec<PathBuf> {
    vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle")]
}

/// Whether object recordings give change activities (`kelemetry replay --object-changes`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ObjectChanges {
    /// When no audit log is among the files.
    Auto,
    /// Always.
    On,
    /// Never: every version is an observation.
    Off,
}

struct PlannedSource {
    source: Box<dyn Source>,
    counters: Arc<ReadCounters>,
    path: PathBuf,
    kind: InputKind,
}

/// The sources of a replay, whether object versions become changes, and the folder entries left out (each
/// reported on stderr as it is found).
fn plan(
    files: &[PathBuf],
    cluster: &str,
    format: InputKind,
    object_changes: ObjectChanges,
) -> Result<(Vec<PlannedSource>, bool, Vec<SkippedEntry>), CliError> {
    let resources = Arc::new(ResourceMap::builtin());
    let mut planned = Vec::new();
    let expansion = inputs::expand(files)?;
    for skipped in &expansion.skipped {
        eprintln!("{skipped}");
    }
    let mut kinds = Vec::with_capacity(expansion.files.len());
    for path in expansion.files {
        let kind = match format {
            InputKind::Auto => inputs::detect(&path)?,
            other => other,
        };
        if kind == InputKind::AuditPolicy {
            eprintln!(
                "skipping {}: an audit policy, not a recording",
                path.display()
            );
            continue;
        }
        kinds.push((path, kind));
    }
    let changes = match object_changes {
        ObjectChanges::On => true,
        ObjectChanges::Off => false,
        ObjectChanges::Auto => !kinds.iter().any(|(_, kind)| *kind == InputKind::Audit),
    };
    for (path, kind) in kinds {
        let (source, counters): (Box<dyn Source>, _) = match kind {
            InputKind::Audit => {
                let source = AuditFileSource::new(&path, cluster);
                let counters = source.counters();
                (Box::new(source), counters)
            }
            _ => {
                let mut source =
                    ObjectFileSource::new(&path, cluster).with_resource_map(resources.clone());
                if changes {
                    // The pipeline's redactor is the default one: diffs never show what it hides.
                    source = source.with_change_activities(Redactor::default());
                }
                let counters = source.counters();
                (Box::new(source), counters)
            }
        };
        planned.push(PlannedSource {
            source,
            counters,
            path,
            kind,
        });
    }
    Ok((planned, changes, expansion.skipped))
}

/// What a replay did: the pipeline's report, what each file read, and the folder entries left out.
#[derive(Debug)]
pub(crate) struct Replayed {
    /// The pipeline's report.
    pub(crate) report: PipelineReport,
    /// Each file read, what it was read as and what it gave.
    pub(crate) files: Vec<(PathBuf, InputKind, ReadReport)>,
    /// Folder entries skipped (loops, dangling links, unreadable or special files, entries reached twice).
    pub(crate) skipped: Vec<SkippedEntry>,
    /// Whether successive object versions became change activities.
    pub(crate) object_changes: bool,
}

/// Replays files into the store and returns the pipeline's report and what each file read.
pub(crate) async fn run_replay(
    files: &[PathBuf],
    cluster: &str,
    format: InputKind,
    store_dir: &Path,
    quiet: bool,
) -> Result<Replayed, CliError> {
    let changes = ObjectChanges::Auto;
    run_replay_with_rules(files, cluster, format, store_dir, quiet, None, changes).await
}

/// [`run_replay`] linking with the rules of `rules_file` instead of the built-in ones.
pub(crate) async fn run_replay_with_rules(
    files: &[PathBuf],
    cluster: &str,
    format: InputKind,
    store_dir: &Path,
    quiet: bool,
    rules_file: Option<&Path>,
    object_changes: ObjectChanges,
) -> Result<Replayed, CliError> {
    let linkers = crate::rules::replay_linkers(Arc::new(ResourceMap::builtin()), rules_file)?;
    let (planned, object_changes, skipped) = plan(files, cluster, format, object_changes)?;
    let total_bytes: u64 = planned
        .iter()
        .filter_map(|p| std::fs::metadata(&p.path).ok())
        .map(|m| m.len())
        .sum();
    // A replay writes; the page cache serves reads. Held deferred writes (up to 32 MiB) and a 64 MiB cache keep
    // a replay's memory where it was before writes were held (389 MiB at 1M events against 613-805 MiB with the
    // default 256 MiB), at a few percent of its speed.
    let options = StoreOptions {
        cache_bytes: REPLAY_STORE_CACHE_BYTES,
        ..StoreOptions::default()
    };
    let store = SpanStore::create_with(store_dir, &options).map_err(|source| CliError::Store {
        path: store_dir.to_owned(),
        source,
    })?;
    crate::store_cmd::announce_repair(&store);
    let mut builder = Pipeline::builder()
        .exporter_queue(REPLAY_EXPORTER_QUEUE_BATCHES)
        .exporter_queue_bytes(REPLAY_EXPORTER_QUEUE_BYTES)
        .channel_bytes(REPLAY_CHANNEL_BYTES)
        .decorator(Arc::new(DiffDecorator))
        .exporter(Arc::new(
            // A replay can be repeated: batches reach the disk together when the pipeline flushes at the end.
            StoreExporter::new(store).with_durability(WriteDurability::Deferred),
        ));
    // Owner references, the parent-link annotation, Pod to Node, and the linking rules.
    for linker in linkers {
        builder = builder.linker(linker);
    }
    let mut files_read = Vec::new();
    let mut sources = Vec::with_capacity(planned.len());
    for planned in planned {
        files_read.push((planned.path, planned.kind, planned.counters));
        sources.push(planned.source);
    }
    // The files of one recording (audit log, Events, watched objects) interleave as they happened, the same way on
    // every replay: diffs and links then do not depend on which file was read faster.
    let pipeline = builder
        .source(Box::new(TimeOrderedSources::new(sources)))
        .build();
    let stats = pipeline.stats();
    let progress = progress_bar(quiet, total_bytes);
    let ticker = {
        let progress = progress.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            loop {
                let report = stats.report();
                progress.set_position(stats.bytes_read.load(std::sync::atomic::Ordering::Relaxed));
                progress.set_message(format!(
                    "{} records, {} spans",
                    report.records,
                    report.spans()
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The pipeline starts the sources and runs until they are done; nothing cancels a replay.
    let report = pipeline.run(CancellationToken::new()).await;
    ticker.abort();
    progress.finish_and_clear();
    let files_read = files_read
        .into_iter()
        .map(|(path, kind, counters)| (path, kind, counters.snapshot()))
        .collect();
    Ok(Replayed {
        report,
        files: files_read,
        skipped,
        object_changes,
    })
}

/// The replay's progress bar over `total_bytes` (hidden when `quiet`).
fn progress_bar(quiet: bool, total_bytes: u64) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template("{spinner} replaying [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `kelemetry replay`.
pub(crate) async fn replay(args: ReplayArgs) -> Result<(), CliError> {
    let replayed = run_replay_with_rules(
        &args.files,
        &args.cluster,
        args.format,
        &args.store,
        args.quiet,
        args.rules.as_deref(),
        args.object_changes,
    )
    .await?;
    print_summary(&replayed, &args.store);
    let report = &replayed.report;
    // Spans the store did not take (a full disk, an I/O error): the store does not hold what the summary counts.
    if report.spans_dropped > 0 {
        return Err(CliError::Usage(format!(
            "{} of {} spans were not written to the store {} (the errors above say why)",
            report.spans_dropped,
            report.spans(),
            args.store.display()
        )));
    }
    if !report.source_errors.is_empty() {
        return Err(CliError::Usage(format!(
            "{} file(s) could not be read",
            report.source_errors.len()
        )));
    }
    if !args.allow_empty {
        check_not_empty(&replayed)?;
    }
    Ok(())
}

/// Fails a replay that accepted no record, saying what was read and rejected.
fn check_not_empty(replayed: &Replayed) -> Result<(), CliError> {
    let report = &replayed.report;
    if report.activities + report.observations > 0 {
        return Ok(());
    }
    let read: u64 = replayed.files.iter().map(|(_, _, r)| r.records).sum();
    let skipped: u64 = replayed
        .files
        .iter()
        .map(|(_, _, r)| r.skipped_total())
        .sum();
    Err(CliError::Usage(format!(
        "nothing accepted: {} file(s) read, {read} records, {} rejected, {skipped} skipped by design, {} \
         filtered, {} folder entries skipped; pass --allow-empty if an empty replay is expected",
        replayed.files.len(),
        report.rejected,
        report.filtered,
        replayed.skipped.len(),
    )))
}

fn print_summary(replayed: &Replayed, store: &Path) {
    let Replayed {
        report,
        files,
        skipped: skipped_entries,
        object_changes,
    } = replayed;
    let read: u64 = files.iter().map(|(_, _, r)| r.records).sum();
    let skipped: u64 = files.iter().map(|(_, _, r)| r.skipped_total()).sum();
    println!(
        "replayed {} file(s): {read} records read, {} activities, {} object observations, {skipped} skipped, {} filtered, {} rejected",
        files.len(),
        report.activities,
        report.observations,
        report.filtered,
        report.rejected,
    );
    println!(
        "spans written: {} ({} object, {} link, {} activity) to {}",
        report.spans(),
        report.object_spans,
        report.link_spans,
        report.activity_spans,
        store.display()
    );
    // Audit records by the envelope they came in (`gke 3, native 10`), when any audit file was read.
    let mut envelopes = ReadReport::default();
    for (_, _, r) in files {
        for (envelope, count) in &r.by_envelope {
            *envelopes.by_envelope.entry(*envelope).or_default() += count;
        }
    }
    if !envelopes.by_envelope.is_empty() {
        println!("records by envelope: {}", envelopes.envelopes_text());
    }
    let mut skipped_by_reason = std::collections::BTreeMap::<&str, u64>::new();
    for (_, _, r) in files {
        for (reason, count) in &r.skipped {
            *skipped_by_reason.entry(reason).or_default() += count;
        }
    }
    if !skipped_by_reason.is_empty() {
        let reasons: Vec<String> = skipped_by_reason
            .iter()
            .map(|(r, c)| format!("{r}: {c}"))
            .collect();
        println!("skipped (not traced by design): {}", reasons.join(", "));
    }
    let objects_read = files.iter().any(|(_, kind, _)| *kind == InputKind::Objects);
    if objects_read && !object_changes {
        println!(
            "object versions were not compared: audit records are the changes (--object-changes on traces them too)"
        );
    }
    print_skipped_entries(skipped_entries);
    if report.rejected > 0 {
        println!("rejected:");
        for (reason, count) in &report.rejections_by_reason {
            println!("  {reason}: {count}");
        }
        for example in &report.rejection_examples {
            println!("  {example}");
        }
    }
    if report.link_errors > 0 {
        println!(
            "linker errors: {} (run with KELEMETRY_LOG=warn to see them)",
            report.link_errors
        );
    }
    if report.spans_dropped > 0 {
        println!("spans that could not be stored: {}", report.spans_dropped);
    }
    for failure in &report.source_errors {
        println!("failed: {failure}");
    }
}

/// `folder entries skipped: N (N symlink loops, ...)`, when any were.
fn print_skipped_entries(entries: &[SkippedEntry]) {
    if entries.is_empty() {
        return;
    }
    let mut by_kind = std::collections::BTreeMap::<inputs::SkipKind, u64>::new();
    for entry in entries {
        *by_kind.entry(entry.kind).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(kind, count)| format!("{count} {}", kind.counted()))
        .collect();
    println!(
        "folder entries skipped: {} ({})",
        entries.len(),
        kinds.join(", ")
    );
}

/// `kelemetry demo`: replays the recordings into a temporary store, prints the object's tree, then (unless
/// `--no-serve`) serves the web viewer and the HTTP API on `--listen` until Ctrl-C, with the link to the object's
/// trace printed. The temporary store is removed at the end.
pub(crate) async fn demo(args: DemoArgs) -> Result<(), CliError> {
    let files = if args.files.is_empty() {
        default_demo_files()
    } else {
        args.files.clone()
    };
    for file in &files {
        if !file.exists() {
            return Err(CliError::Usage(format!(
                "demo data {} not found; pass recordings to replay: kelemetry demo FILE...",
                file.display()
            )));
        }
    }
    let dir = std::env::temp_dir().join(format!("kelemetry-demo-{}", std::process::id()));
    let result = async {
        let replayed = run_replay(&files, "local", InputKind::Auto, &dir, true).await?;
        print_summary(&replayed, &dir);
        println!();
        show::show(ShowArgs::for_demo(&args.object, &dir)).await?;
        if args.no_serve {
            return Ok(());
        }
        serve_demo(&dir, &args.object, args.listen).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The mode the demo's link opens: the object with its owners and the objects it owns.
const DEMO_MODE: DisplayMode = DisplayMode {
    base: BaseMode::Tracing,
    modifier: Some(Modifier::FullTree),
};

/// Serves the viewer and the API over the demo's store until Ctrl-C, printing the link to `object`'s trace.
async fn serve_demo(dir: &Path, object: &str, listen: SocketAddr) -> Result<(), CliError> {
    let store_error = |source| CliError::Store {
        path: dir.to_owned(),
        source,
    };
    let store = SpanStore::open_read_only(dir).map_err(store_error)?;
    let views = store.views(ViewLimits::default()).map_err(store_error)?;
    let query = Arc::new(TraceQuery::new(Arc::new(store), Arc::new(views)));
    let found = query
        .find(&FindQuery::new(DEMO_MODE, show::parse_object(object, None)?).with_limit(1))
        .await
        .map_err(|err| CliError::Query(format!("searching {object} for the viewer: {err}")))?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| {
        CliError::Usage(format!(
            "cannot listen on {listen}: {source}; pick another address with --listen (port 0 picks a free one) or pass --no-serve"
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|source| CliError::Usage(format!("cannot listen on {listen}: {source}")))?;
    println!();
    match found.first() {
        Some(trace) => println!(
            "open http://{address}/#/trace/{:032x}   (the web viewer; Ctrl-C stops the demo)",
            trace.trace_id
        ),
        None => println!("open http://{address}/   (the web viewer; Ctrl-C stops the demo)"),
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
