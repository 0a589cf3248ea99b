//! `kelemetry_testkit::TraceOnFailure` (docs/e2e-tests.md): a test that fails leaves the HTML trace of the objects
//! it touched; one that passes leaves nothing. Over the recorded deployment scenario.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use kelemetry_testkit::TraceOnFailure;

fn recorded_store(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let recording =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle");
    let (ok, out, err) = support::kelemetry(&["replay", recording.to_str().unwrap()], &store);
    assert!(ok, "replay failed:\n{out}\n{err}");
    store
}

#[test]
fn a_failing_test_leaves_the_trace_and_a_passing_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = recorded_store(dir.path());
    let artifacts = dir.path().join("artifacts");
    let binary = Path::new(env!("CARGO_BIN_EXE_kelemetry"));

    // Passes: the guard is dropped without a panic.
    drop(
        TraceOnFailure::new("passing", binary, &store)
            .object("deployments/default/demo")
            .into_dir(&artifacts),
    );
    assert!(!artifacts.join("passing").exists());

    // Fails: a panic in a thread that holds the guard.
    let failed = std::thread::spawn({
        let (store, artifacts) = (store.clone(), artifacts.clone());
        move || {
            let _trace = TraceOnFailure::new("failing test", binary, &store)
                .object("deployments/default/demo")
                .object("deployments/default/nowhere")
                .into_dir(&artifacts);
            panic!("the test's assertion failed");
        }
    })
    .join();
    assert!(failed.is_err());
    let page = artifacts.join("failing-test/deployments-default-demo.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<html") && html.contains("demo"),
        "{}",
        &html[..html.len().min(300)]
    );
    assert!(
        !artifacts
            .join("failing-test/deployments-default-nowhere.html")
            .exists()
    );

    // What could not be exported is said, not hidden.
    let (written, not) = TraceOnFailure::new("again", binary, &store)
        .object("deployments/default/nowhere")
        .into_dir(&artifacts)
        .export();
    assert!(written.is_empty());
    assert!(
        not[0].starts_with("deployments/default/nowhere: "),
        "{not:?}"
    );
}
