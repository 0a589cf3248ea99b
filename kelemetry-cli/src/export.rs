//! `kelemetry export`: one object's view written to files that need no Kelemetry to read: a self-contained HTML
//! page (the web viewer with the trace and its findings inlined, opening from disk and loading nothing) and the
//! view's spans as OTLP JSON (an `ExportTraceServiceRequest` in the protocol's JSON mapping) for any OpenTelemetry
//! backend.

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use kelemetry_core::otlp::opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::CliError;
use crate::diagnose::load_diagnosis;
use crate::show::ViewArgs;

/// Arguments of `kelemetry export`: the object and its view as `kelemetry show` takes them, and at least one file
/// to write.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("output").required(true).multiple(true).args(["html", "otlp_json"])))]
pub(crate) struct ExportArgs {
    /// The object and its view.
    #[command(flatten)]
    pub(crate) view: ViewArgs,
    /// Write the view as one HTML page: the web viewer with its style sheet, its script, the trace and the
    /// findings of the automatic diagnosis about its objects inlined. It opens from disk and loads nothing from the
    /// network.
    #[arg(long, value_name = "OUT.html")]
    pub(crate) html: Option<PathBuf>,
    /// The diagnosis of the page's findings: thresholds, built-in diagnosers to leave out, rules of your own (YAML,
    /// as `kelemetry diagnose --config`; docs/diagnose.md). Default: the built-in diagnosers.
    #[arg(long, value_name = "FILE", requires = "html")]
    pub(crate) diagnose_config: Option<PathBuf>,
    /// Write the view's spans as OTLP JSON (one `ExportTraceServiceRequest`), for any OpenTelemetry backend.
    #[arg(long, value_name = "OUT.json")]
    pub(crate) otlp_json: Option<PathBuf>,
}

/// `kelemetry export`.
pub(crate) async fn export(args: ExportArgs) -> Result<(), CliError> {
    // A bad configuration is said before the view is read.
    let diagnosis = args
        .html
        .as_ref()
        .map(|_| load_diagnosis(args.diagnose_config.as_deref()))
        .transpose()?;
    let (shown, store) = args.view.shown_with_store().await?;
    let spans = shown.trace.spans.len();
    let trace_id = format!("{:032x}", shown.trace.trace_id);
    if let (Some(path), Some(diagnosis)) = (&args.html, diagnosis) {
        let findings = diagnosis
            .view(&store, &shown.view)
            .await
            .map_err(|err| CliError::Query(format!("cannot diagnose trace {trace_id}: {err}")))?;
        let page =
            kelemetry_query::viewer::offline_page(&shown.trace, &findings).map_err(|err| {
                CliError::Query(format!("cannot write the trace {trace_id} as JSON: {err}"))
            })?;
        write(path, page.as_bytes())?;
        println!(
            "wrote {}: the viewer with trace {trace_id} ({spans} spans, {}) and {}",
            path.display(),
            shown.trace.mode,
            match findings.len() {
                0 => "no finding".to_owned(),
                1 => "1 finding".to_owned(),
                n => format!("{n} findings"),
            }
        );
    }
    if let Some(path) = &args.otlp_json {
        let request = ExportTraceServiceRequest {
            resource_spans: kelemetry_query::remote_storage::traces_data(&shown.trace)
                .resource_spans,
        };
        let json = serde_json::to_vec(&request).map_err(|err| {
            CliError::Query(format!(
                "cannot write the trace {trace_id} as OTLP JSON: {err}"
            ))
        })?;
        write(path, &json)?;
        println!(
            "wrote {}: {spans} spans of trace {trace_id} as OTLP JSON",
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path`, the error naming the file.
fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })
}
