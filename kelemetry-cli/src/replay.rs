//! `kelemetry replay` and `kelemetry demo`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kelemetry_core::decorate::DiffDecorator;
use kelemetry_core::{CancellationToken, Pipeline, PipelineReport, ResourceMap, Source};
use kelemetry_exporters::StoreExporter;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{DisplayMode, FindQuery, TraceQuery};
use kelemetry_sources::{
    AuditFileSource, ObjectFileSource, ReadCounters, ReadReport, TimeOrderedSources,
};
use kelemetry_store::{SpanStore, ViewLimits, WriteDurability};

use crate::inputs::{self, InputKind};
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

struct PlannedSource {
    source: Box<dyn Source>,
    counters: Arc<ReadCounters>,
    path: PathBuf,
    kind: InputKind,
}

fn plan(
    files: &[PathBuf],
    cluster: &str,
    format: InputKind,
) -> Result<Vec<PlannedSource>, CliError> {
    let resources = Arc::new(ResourceMap::builtin());
    let mut planned = Vec::new();
    for path in inputs::expand(files)? {
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
        let (source, counters): (Box<dyn Source>, _) = match kind {
            InputKind::Audit => {
                let source = AuditFileSource::new(&path, cluster);
                let counters = source.counters();
                (Box::new(source), counters)
            }
            _ => {
                let source =
                    ObjectFileSource::new(&path, cluster).with_resource_map(resources.clone());
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
    Ok(planned)
}

/// Replays files into the store and returns the pipeline's report and what each file read.
pub(crate) async fn run_replay(
    files: &[PathBuf],
    cluster: &str,
    format: InputKind,
    store_dir: &Path,
    quiet: bool,
) -> Result<(PipelineReport, Vec<(PathBuf, InputKind, ReadReport)>), CliError> {
    run_replay_with_rules(files, cluster, format, store_dir, quiet, None).await
}

/// [`run_replay`] linking with the rules of `rules_file` instead of the built-in ones.
pub(crate) async fn run_replay_with_rules(
    files: &[PathBuf],
    cluster: &str,
    format: InputKind,
    store_dir: &Path,
    quiet: bool,
    rules_file: Option<&Path>,
) -> Result<(PipelineReport, Vec<(PathBuf, InputKind, ReadReport)>), CliError> {
    let linkers = crate::rules::replay_linkers(Arc::new(ResourceMap::builtin()), rules_file)?;
    let planned = plan(files, cluster, format)?;
    let total_bytes: u64 = planned
        .iter()
        .filter_map(|p| std::fs::metadata(&p.path).ok())
        .map(|m| m.len())
        .sum();
    let store = SpanStore::create(store_dir).map_err(|source| CliError::Store {
        path: store_dir.to_owned(),
        source,
    })?;
    let mut builder = Pipeline::builder()
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
    let progress = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} replaying [{bar:30}] {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
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
    Ok((report, files_read))
}

/// `kelemetry replay`.
pub(crate) async fn replay(args: ReplayArgs) -> Result<(), CliError> {
    let (report, files) = run_replay_with_rules(
        &args.files,
        &args.cluster,
        args.format,
        &args.store,
        args.quiet,
        args.rules.as_deref(),
    )
    .await?;
    print_summary(&report, &files, &args.store);
    if !report.source_errors.is_empty() {
        return Err(CliError::Usage(format!(
            "{} file(s) could not be read",
            report.source_errors.len()
        )));
    }
    Ok(())
}

fn print_summary(
    report: &PipelineReport,
    files: &[(PathBuf, InputKind, ReadReport)],
    store: &Path,
) {
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
        let (report, read) = run_replay(&files, "local", InputKind::Auto, &dir, true).await?;
        print_summary(&report, &read, &dir);
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
