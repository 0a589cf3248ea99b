//! What the CLI's integration tests share: where the recorded fixtures are, and running the real binary.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// `../shared/fixtures` (or `KELEMETRY_FIXTURES`); `None` when it is missing, after saying so; a panic instead when
/// `KELEMETRY_REQUIRE_FIXTURES=1` (as in CI), so the conformance suite cannot pass by skipping.
pub(crate) use kelemetry_testkit::fixtures;

/// Runs `kelemetry ARGS --store STORE`: whether it succeeded, its standard output and its standard error.
pub(crate) fn kelemetry(args: &[&str], store: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .expect("run kelemetry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
