//! What the CLI's integration tests share: where the recorded fixtures are, and running the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/fixtures` (or `KELEMETRY_FIXTURES`). `None` when it is missing, after saying so; a panic instead when
/// `KELEMETRY_REQUIRE_FIXTURES=1` (as in CI), so the conformance suite cannot pass by skipping.
pub fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("KELEMETRY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("KELEMETRY_REQUIRE_FIXTURES").as_deref() == Ok("1") {
        panic!("fixtures required but not found at {}", dir.display());
    }
    eprintln!("fixtures not found at {}; skipping", dir.display());
    None
}

/// Runs `kelemetry ARGS --store STORE`: whether it succeeded, its standard output and its standard error.
pub fn kelemetry(args: &[&str], store: &Path) -> (bool, String, String) {
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
