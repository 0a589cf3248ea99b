//! The project's own recording of the original's deployment scenario
//! (docs/behaviour/end-to-end.md#deployment-scenario), made on the real test cluster
//! (`fixtures/recorded/deployment-lifecycle`), replayed by the `kelemetry` binary: the trace view must say what the
//! original's end-to-end test asserts.

#![allow(clippy::unwrap_used)]

mod support;

use support::ReplaySummary;

use std::path::{Path, PathBuf};
use std::process::Command;

use kelemetry_core::ObjectKey;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{DisplayMode, DisplayTrace, ViewRequest, assemble, display};
use kelemetry_store::SpanStore;

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle")
}

fn replay(store: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["replay", "--quiet", "--cluster", "tracetest"])
        .arg(recording())
        .arg("--store")
        .arg(store)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = ReplaySummary::parse(&stdout);
    assert_eq!(summary.count("rejected"), 0, "{stdout}");
    assert_eq!(
        summary.count("records read"),
        summary.count("activities")
            + summary.count("object observations")
            + summary.count("skipped")
            + summary.count("rejected"),
        "every record read is accounted for:\n{stdout}"
    );
}

async fn view(store: &Path, key: ObjectKey, modifier: Modifier) -> DisplayTrace {
    let reader = SpanStore::open_read_only(store).unwrap();
    let mode = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(modifier),
    };
    let mut request = ViewRequest::new(key);
    request.selector = mode.selector();
    display(&assemble(&reader, &request).await.unwrap(), mode)
}

fn fields<'a>(trace: &'a DisplayTrace, span: usize, name: &str) -> Vec<&'a str> {
    trace.spans[span]
        .logs
        .iter()
        .filter_map(|log| log.field(name))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    replay(&store);
    let demo = ObjectKey::new("tracetest", "apps", "deployments", "default", "demo");
    let trace = view(&store, demo, Modifier::FullTree).await;

    // 1. One root: the Deployment.
    let roots: Vec<_> = trace.spans.iter().filter(|s| s.parent.is_none()).collect();
    assert_eq!(roots.len(), 1);
    let tags = &roots[0].tags;
    assert!(tags.contains(&("resource".into(), "deployments".into())));
    assert!(tags.contains(&("name".into(), "demo".into())));
    // 2, 3. The delete, with the deleted object's snapshot.
    let root = &trace.spans[0];
    let delete = root
        .logs
        .iter()
        .find(|log| log.field("audit").is_some_and(|a| a.ends_with(" delete")))
        .expect("a delete on the root");
    let snapshot: serde_json::Value =
        serde_json::from_str(delete.field("snapshot").unwrap()).unwrap();
    assert_eq!(snapshot["metadata"]["name"], "demo");
    // 4. The controller's status write (here the controller authenticates as its own service account).
    let audits = fields(&trace, 0, "audit");
    assert!(
        audits.contains(&"system:serviceaccount:kube-system:deployment-controller update status"),
        "{audits:?}"
    );
    // 5. Its diff.
    let diffs: Vec<&str> = trace
        .spans
        .iter()
        .enumerate()
        .flat_map(|(i, _)| fields(&trace, i, "diff"))
        .collect();
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("status.observedGeneration 1 -> 2")),
        "{diffs:#?}"
    );
    assert!(diffs.iter().any(|d| d.contains("spec.replicas 2 -> 4")));
    assert!(diffs.iter().any(|d| {
        d.contains(r#"spec.template.spec.containers[alpine].image "alpine:3.16" -> "alpine:3.17""#)
    }));
    // 6. No diff shows managedFields.
    assert!(diffs.iter().all(|d| !d.contains("metadata.managedFields")));
    // 7. Two ReplicaSets under the root, Pods under them.
    let children: Vec<_> = trace.children_of(root.span_id).collect();
    assert_eq!(children.len(), 2, "{children:#?}");
    assert!(children.iter().all(|c| c.service == "replicasets"));
    let pods: usize = children
        .iter()
        .map(|c| trace.children_of(c.span_id).count())
        .sum();
    assert_eq!(pods, 8, "4 Pods of each ReplicaSet");
}

#[tokio::test(flavor = "multi_thread")]
async fn ancestors_of_a_replicaset_leave_out_its_sibling() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    replay(&store);
    let first = ObjectKey::new(
        "tracetest",
        "apps",
        "replicasets",
        "default",
        "demo-fd6c564b7",
    );
    let trace = view(&store, first, Modifier::Ancestors).await;
    let roots: Vec<_> = trace.spans.iter().filter(|s| s.parent.is_none()).collect();
    assert_eq!(roots.len(), 1);
    assert!(roots[0].tags.contains(&("name".into(), "demo".into())));
    let children: Vec<_> = trace.children_of(roots[0].span_id).collect();
    assert_eq!(children.len(), 1);
    assert!(
        children[0]
            .tags
            .contains(&("name".into(), "demo-fd6c564b7".into()))
    );
}

/// The audit log, the Events and the watched objects are merged in time order: two replays write the very same
/// spans, content included (diffs do not depend on which file was read faster).
#[tokio::test(flavor = "multi_thread")]
async fn replays_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let spans = |store: &Path| -> Vec<String> {
        let store = SpanStore::open_read_only(store).unwrap();
        store
            .spans()
            .unwrap()
            .map(|s| serde_json::to_string(&s.unwrap()).unwrap())
            .collect()
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    replay(&a);
    replay(&b);
    let (a, b) = (spans(&a), spans(&b));
    assert!(a.len() > 200, "{}", a.len());
    assert!(a == b, "two replays of the same files differ");
}
