//! `kelemetry diagnose`: known failure patterns in the history of one object (and, with `--full-tree`, of its
//! relatives), or of every object in the store (`--all`), printed as findings with their evidence
//! (docs/diagnose.md).

use std::path::PathBuf;

use clap::Args;
use jiff::Timestamp;
use kelemetry_query::DisplayMode;
use kelemetry_query::diagnose::{DiagnoseConfig, Diagnosis, Finding};
use kelemetry_query::display::Modifier;

use crate::show::{open_store, parse_object, query_error};
use crate::{CliError, DEFAULT_STORE};

/// Arguments of `kelemetry diagnose`.
#[derive(Debug, Args)]
pub(crate) struct DiagnoseArgs {
    /// The object: RESOURCE/NAMESPACE/NAME, or RESOURCE/NAME for cluster-scoped objects (RESOURCE may name its
    /// group: `deployments.apps/default/web`). Leave it out with --all.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) object: Option<String>,
    /// Every object in the store (at most --limit).
    #[arg(long)]
    pub(crate) all: bool,
    /// Most objects looked at with --all.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) limit: usize,
    /// The cluster, when the store holds several with this object.
    #[arg(long)]
    pub(crate) cluster: Option<String>,
    /// Start of the time range (RFC 3339); default: the beginning.
    #[arg(long)]
    pub(crate) from: Option<Timestamp>,
    /// End of the time range (RFC 3339); default: the end.
    #[arg(long)]
    pub(crate) to: Option<Timestamp>,
    /// Also its owners and the objects it owns (the whole tree).
    #[arg(long)]
    pub(crate) full_tree: bool,
    /// Thresholds, built-in diagnosers to leave out, and rules of your own (YAML; docs/diagnose.md).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Print the findings as JSON (one array) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// The store folder.
    #[arg(long, env = "KELEMETRY_STORE", default_value = DEFAULT_STORE)]
    pub(crate) store: PathBuf,
}

/// The diagnose configuration in `path` (YAML), or the defaults.
pub(crate) fn load_diagnosis(path: Option<&std::path::Path>) -> Result<Diagnosis, CliError> {
    let Some(path) = path else {
        return Ok(Diagnosis::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })?;
    let config: DiagnoseConfig = serde_yaml_ng::from_str(&text)
        .map_err(|err| CliError::Usage(format!("{}: {err}", path.display())))?;
    config
        .build()
        .map_err(|err| CliError::Usage(format!("{}: {err}", path.display())))
}

/// `kelemetry diagnose`.
pub(crate) async fn diagnose(args: DiagnoseArgs) -> Result<(), CliError> {
    let diagnosis = load_diagnosis(args.config.as_deref())?;
    let store = open_store(&args.store)?;
    let read_error = |err: kelemetry_query::ReadError| CliError::Query(err.to_string());
    let (findings, looked_at) = match &args.object {
        Some(object) => {
            let selector = parse_object(object, args.cluster.clone())?;
            let mode = if args.full_tree {
                DisplayMode::TRACING.with_modifier(Modifier::FullTree)
            } else {
                DisplayMode::TRACING
            };
            let shown = kelemetry_query::show(&store, &selector, mode, (args.from, args.to))
                .await
                .map_err(|err| query_error(err, &args.store))?;
            let objects = shown.view.root.walk().len();
            let findings = diagnosis
                .view(&store, &shown.view)
                .await
                .map_err(read_error)?;
            (findings, objects)
        }
        None => diagnosis
            .all(
                &store,
                args.from.unwrap_or(Timestamp::MIN),
                args.to.unwrap_or(Timestamp::MAX),
                args.limit,
            )
            .await
            .map_err(read_error)?,
    };
    print!("{}", render(&findings, looked_at, args.json));
    Ok(())
}

/// The findings as `kelemetry diagnose` prints them.
fn render(findings: &[Finding], looked_at: usize, json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(findings).unwrap_or_else(|_| "[]".into()) + "\n";
    }
    let mut out = String::new();
    for finding in findings {
        out.push_str(&finding.to_string());
        out.push('\n');
    }
    out.push_str(&match findings.len() {
        0 => format!("no finding in {looked_at} objects\n"),
        1 => format!("1 finding in {looked_at} objects\n"),
        n => format!("{n} findings in {looked_at} objects\n"),
    });
    out
}
