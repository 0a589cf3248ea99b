//! [`TraceOnFailure`]: when a test that ran `kelemetry` beside a cluster fails, the trace of the objects it touched
//! is written as one HTML file each (`kelemetry export --html`), so the failure can be read after the test
//! environment is gone (docs/e2e-tests.md).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where failed tests leave their traces: `KELEMETRY_ARTIFACTS`, else `target/test-artifacts` of this workspace.
pub const ARTIFACTS_ENV: &str = "KELEMETRY_ARTIFACTS";

/// The folder failed tests write their traces to ([`ARTIFACTS_ENV`]).
pub fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ARTIFACTS_ENV) {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from)
        .join("test-artifacts")
}

/// A guard for one test: the `kelemetry` binary, the store it wrote and the objects the test touched. Dropped
/// while the test panics, it exports each object's full tree to `<artifacts>/<test>/<object>.html` and says where
/// on standard error; dropped after a pass, it does nothing.
///
/// Declare it after the temporary folder holding the store, so that it is dropped (and exports) first:
///
/// ```no_run
/// # fn run() {
/// use kelemetry_testkit::TraceOnFailure;
/// let dir = tempfile::tempdir().unwrap();
/// let store = dir.path().join("store");
/// let _trace = TraceOnFailure::new("deployment_scenario", "target/debug/kelemetry".as_ref(), &store)
///     .object("deployments/default/demo");
/// // ... the test; a failed assertion leaves target/test-artifacts/deployment_scenario/deployments-default-demo.html
/// # }
/// ```
#[derive(Debug)]
pub struct TraceOnFailure {
    test: String,
    binary: PathBuf,
    store: PathBuf,
    objects: Vec<String>,
    dir: PathBuf,
}

impl TraceOnFailure {
    /// A guard for the test `test`, exporting from `store` with `binary`.
    pub fn new(test: &str, binary: &Path, store: &Path) -> Self {
        Self {
            test: test.to_owned(),
            binary: binary.to_owned(),
            store: store.to_owned(),
            objects: Vec::new(),
            dir: artifacts_dir(),
        }
    }

    /// Also export `object` (`RESOURCE/NAMESPACE/NAME` or `RESOURCE/NAME`) on failure.
    pub fn object(mut self, object: &str) -> Self {
        self.objects.push(object.to_owned());
        self
    }

    /// Writes into `dir` instead of [`artifacts_dir`].
    pub fn into_dir(mut self, dir: &Path) -> Self {
        self.dir = dir.to_owned();
        self
    }

    /// Exports every object now (what a drop during a panic does); returns the files written, and the objects
    /// that could not be exported with why.
    pub fn export(&self) -> (Vec<PathBuf>, Vec<String>) {
        let dir = self.dir.join(file_name(&self.test));
        let mut written = Vec::new();
        let mut failed = Vec::new();
        if let Err(err) = std::fs::create_dir_all(&dir) {
            failed.push(format!("{}: {err}", dir.display()));
            return (written, failed);
        }
        for object in &self.objects {
            let out = dir.join(format!("{}.html", file_name(object)));
            let result = Command::new(&self.binary)
                .arg("export")
                .arg("--html")
                .arg(&out)
                .arg(object)
                .arg("--full-tree")
                .arg("--store")
                .arg(&self.store)
                .output();
            match result {
                Ok(output) if output.status.success() => written.push(out),
                Ok(output) => failed.push(format!(
                    "{object}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )),
                Err(err) => failed.push(format!("{object}: {}: {err}", self.binary.display())),
            }
        }
        (written, failed)
    }
}

impl Drop for TraceOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (written, failed) = self.export();
        for file in written {
            eprintln!(
                "{}: trace of the failed test: {}",
                self.test,
                file.display()
            );
        }
        for why in failed {
            eprintln!("{}: no trace written: {why}", self.test);
        }
    }
}

/// A name safe as one path component: `deployments/default/demo` → `deployments-default-demo`.
fn file_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
