//! Support for the fault suite: the release binary the attacks run against, and one summary line per attack.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Environment variable naming a `kelemetry` binary for the fault suite; when unset, [`release_binary`] builds
/// `target/release/kelemetry`.
pub const BIN_ENV: &str = "KELEMETRY_BIN";

/// Environment variable naming a file that [`fault_line`] appends each attack's summary line to (`scripts/test`
/// prints it at the end of the run).
pub const FAULT_SUMMARY_ENV: &str = "KELEMETRY_FAULT_SUMMARY";

static BUILD: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The release `kelemetry` binary the attacks run against: `KELEMETRY_BIN` when set, else
/// `target/release/kelemetry` of this workspace, built once per test process with
/// `cargo build --release -p kelemetry-cli --bin kelemetry` (a no-op when it is up to date).
///
/// Test support: panics with cargo's output when the build fails.
pub fn release_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        return PathBuf::from(path);
    }
    let mut built = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit sits in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "kelemetry-cli",
            "--bin",
            "kelemetry",
        ])
        .output()
        .expect("run cargo build --release");
    assert!(
        output.status.success(),
        "cargo build --release failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    let path = target.join("release").join("kelemetry");
    *built = Some(path.clone());
    path
}

/// Reports one attack's outcome: `attack: figures`. Printed to standard error, and appended to the file named by
/// [`FAULT_SUMMARY_ENV`] when set, so that a CI run ends with one line per attack.
pub fn fault_line(attack: &str, figures: &str) {
    let line = format!("{attack}: {figures}");
    eprintln!("fault suite: {line}");
    if let Some(path) = std::env::var_os(FAULT_SUMMARY_ENV) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(err) = appended {
            eprintln!(
                "fault suite: cannot append to {}: {err}",
                Path::new(&path).display()
            );
        }
    }
}
