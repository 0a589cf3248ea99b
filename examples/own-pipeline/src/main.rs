//! An own pipeline binary: an apiserver audit log → field diffs, the owner and built-in linkers and a custom one,
//! a filter → the embedded store and OTLP/JSON lines → the Deployment's tree printed. From the repository's root:
//! `cargo run -p own-pipeline [AUDIT_LOG [CLUSTER [RESOURCE/NAMESPACE/NAME]]]` (default: the project's recording).
use std::sync::Arc;

use kelemetry::exporters::{JsonLinesExporter, StoreExporter};
use kelemetry::query::{DisplayMode, show};
use kelemetry::{CancellationToken, Filter, sources::AuditFileSource, store::SpanStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |n, default: &str| std::env::args().nth(n).unwrap_or(default.into());
    let audit_log = arg(1, "fixtures/recorded/deployment-lifecycle/audit.log");
    let out = tempfile::tempdir()?;
    let store = SpanStore::create(out.path().join("store"))?;
    let lines = JsonLinesExporter::create(out.path().join("spans.jsonl")).await?;
    let pipeline = kelemetry::presets::standard() // the diff decorator and the built-in linkers
        .linker(Arc::new(ingress_linker::IngressServiceLinker))
        .filter(Filter::default().exclude_resource("leases.coordination.k8s.io"))
        .source(Box::new(AuditFileSource::new(audit_log, arg(2, "local"))))
        .exporter(Arc::new(StoreExporter::new(store.clone())))
        .exporter(Arc::new(lines))
        .build();
    let report = pipeline.run(CancellationToken::new()).await;
    eprintln!("pipeline: {report}");
    report.check()?; // a source failed or spans were not exported: fail loudly
    let object = arg(3, "deployments/default/demo").parse()?;
    print!(
        "{}",
        show(&store, &object, DisplayMode::FULL_TREE, (None, None)).await?
    );
    Ok(())
}
