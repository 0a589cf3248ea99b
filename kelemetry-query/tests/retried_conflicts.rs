//! 409 Conflicts that their writer retried successfully are expected optimistic concurrency, shown apart from
//! real failures (docs/behaviour/display-modes.md#retried-conflicts): checked on the project's own recording of
//! the deployment scenario (`fixtures/recorded/deployment-lifecycle/audit.log`, made on the real test cluster),
//! put through the pipeline (diffs, owner links) into a store and read back.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kelemetry_core::{CancellationToken, DiffDecorator, ObjectKey, Pipeline, ResourceMap};
use kelemetry_linkers::OwnerLinker;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{DisplayKind, DisplayMode, DisplayTrace, ViewRequest, assemble, display};
use kelemetry_sources::AuditFileSource;
use kelemetry_store::SpanStore;

const OUTCOME: &str = "outcome";
const RETRIED: &str = "conflict, retried";

fn audit_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/recorded/deployment-lifecycle/audit.log")
}

/// The recording's audit log through the pipeline into a store at `dir`.
async fn replay(dir: &Path) -> SpanStore {
    let store = SpanStore::create(dir).unwrap();
    let resources = Arc::new(ResourceMap::builtin());
    let report = Pipeline::builder()
        .source(Box::new(AuditFileSource::new(audit_log(), "tracetest")))
        .decorator(Arc::new(DiffDecorator))
        .linker(Arc::new(OwnerLinker::new(resources)))
        .exporter(Arc::new(kelemetry_exporters::StoreExporter::new(
            store.clone(),
        )))
        .build()
        .run(CancellationToken::new())
        .await;
    assert!(report.source_errors.is_empty(), "{report:?}");
    store
}

async fn view(store: &SpanStore, base: BaseMode) -> DisplayTrace {
    let demo = ObjectKey::new("tracetest", "apps", "deployments", "default", "demo");
    let mode = DisplayMode {
        base,
        modifier: Some(Modifier::FullTree),
    };
    let mut request = ViewRequest::new(demo);
    request.selector = mode.selector();
    display(&assemble(store, &request).await.unwrap(), mode)
}

/// (response code, outcome) of every audit activity that failed, as the view shows it: from the collapsed logs
/// (`tracing`) or the activity spans' tags (`tree`).
fn failures(trace: &DisplayTrace) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for span in &trace.spans {
        if span.kind == DisplayKind::Activity {
            let code = span.tag("responseCode").unwrap_or_default();
            if code.parse::<u16>().is_ok_and(|c| c >= 400) {
                out.push((code.to_owned(), span.tag(OUTCOME).map(str::to_owned)));
            }
        }
        for log in &span.logs {
            let code = log.field("responseCode").unwrap_or_default();
            if log.field("audit").is_some() && code.parse::<u16>().is_ok_and(|c| c >= 400) {
                out.push((code.to_owned(), log.field(OUTCOME).map(str::to_owned)));
            }
        }
    }
    out.sort();
    out
}

fn count(failures: &[(String, Option<String>)], code: &str, outcome: Option<&str>) -> usize {
    failures
        .iter()
        .filter(|(c, o)| c == code && o.as_deref() == outcome)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_conflicts_are_retried_and_the_failed_deletes_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = replay(&dir.path().join("store")).await;
    for base in [
        BaseMode::Tracing,
        BaseMode::Tree,
        BaseMode::Grouped,
        BaseMode::Timeline,
    ] {
        let failures = failures(&view(&store, base).await);
        // 5 on the Deployment (deployment-controller), 3 on the second ReplicaSet (replicaset-controller), each
        // followed by the same controller's successful status update within a second.
        assert_eq!(
            count(&failures, "409", Some(RETRIED)),
            8,
            "{base:?}: {failures:#?}"
        );
        assert_eq!(count(&failures, "409", None), 0, "{base:?}: {failures:#?}");
        // The 404s (kwok deleting Pods already gone) stay failures.
        assert_eq!(count(&failures, "404", None), 7, "{base:?}: {failures:#?}");
        assert_eq!(failures.len(), 15, "{base:?}: {failures:#?}");
    }
    // The Deployment alone: its "5 failed".
    let tracing = view(&store, BaseMode::Tracing).await;
    let root = &tracing.spans[0];
    let retried = root
        .logs
        .iter()
        .filter(|log| log.field(OUTCOME) == Some(RETRIED))
        .count();
    assert_eq!(retried, 5);
}
