//! The example binary on the project's recording: the Deployment's tree with its diffs, ReplicaSets and Pods.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_own_pipeline_prints_the_deployments_tree_with_diffs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = Command::new(env!("CARGO_BIN_EXE_own-pipeline"))
        .current_dir(root)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(", 0 not exported"), "{stderr}");
    assert!(stderr.contains(", 0 rejected;"), "{stderr}");
    assert!(
        stdout.starts_with("local deployments demo"),
        "the Deployment is the root: {stdout}"
    );
    assert!(stdout.contains("diff: spec.replicas 2 -> 4"), "{stdout}");
    assert!(
        stdout.contains("├── replicasets demo-fd6c564b7  (children)"),
        "{stdout}"
    );
    assert!(stdout.contains("pods demo-fd6c564b7-"), "{stdout}");
}

#[test]
fn a_missing_audit_log_is_a_failure_that_names_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_own-pipeline"))
        .arg("/nonexistent/audit.log")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a failed source fails the run");
    assert!(stderr.contains("/nonexistent/audit.log"), "{stderr}");
}
