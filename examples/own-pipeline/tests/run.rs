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
    // `pipeline: N records, N activities, N observations, N filtered, N rejected; N spans (...), N not exported`.
    let report = stderr
        .lines()
        .find_map(|line| line.strip_prefix("pipeline: "))
        .unwrap_or_else(|| panic!("no pipeline report in {stderr}"));
    let count = |label: &str| -> u64 {
        report
            .split([',', ';', '(', ')'])
            .find_map(|piece| piece.trim().strip_suffix(label)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in {report}"))
    };
    assert_eq!(count(" not exported"), 0, "{report}");
    assert_eq!(count(" rejected"), 0, "{report}");
    assert!(count(" activities") > 0, "{report}");
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
