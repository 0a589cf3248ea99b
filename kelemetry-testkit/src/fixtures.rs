//! [`fixtures`] and [`fixture`]: where the shared recorded data is.

use std::path::{Path, PathBuf};

/// The environment variable naming the folder of the shared recorded data (default: `../shared/fixtures` beside
/// the workspace).
pub const FIXTURES_ENV: &str = "KELEMETRY_FIXTURES";

/// The environment variable that makes a missing fixtures folder fail the test instead of skipping it, when `1`
/// (CI sets it, so that no suite passes by skipping).
pub const REQUIRE_FIXTURES_ENV: &str = "KELEMETRY_REQUIRE_FIXTURES";

/// The folder of the shared recorded data: `$KELEMETRY_FIXTURES`, else `../shared/fixtures` beside the workspace.
/// `None`, after saying so on stderr, when it is not there, so the test can return early; a panic instead when
/// `KELEMETRY_REQUIRE_FIXTURES=1`.
///
/// ```
/// let Some(fixtures) = kelemetry_testkit::fixtures() else { return };
/// assert!(fixtures.join("audit").is_dir());
/// ```
pub fn fixtures() -> Option<PathBuf> {
    let dir = fixtures_dir();
    if dir.is_dir() {
        return Some(dir);
    }
    missing(&dir)
}

/// The file or folder `relative` inside the shared recorded data ([`fixtures`]). `None`, after saying so on
/// stderr, when the folder or that path in it is missing, so the test can return early; a panic naming the
/// missing path instead when `KELEMETRY_REQUIRE_FIXTURES=1`.
///
/// ```
/// let Some(audit) = kelemetry_testkit::fixture("audit/falco-minikube-2018") else { return };
/// assert!(audit.join("create_deployment.json").is_file());
/// ```
pub fn fixture(relative: impl AsRef<Path>) -> Option<PathBuf> {
    let path = fixtures_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    missing(&path)
}

fn fixtures_dir() -> PathBuf {
    std::env::var_os(FIXTURES_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

/// Skips (`None`) or, when fixtures are required, panics: `path` is not there.
fn missing(path: &Path) -> Option<PathBuf> {
    assert!(
        std::env::var(REQUIRE_FIXTURES_ENV).as_deref() != Ok("1"),
        "fixtures required ({REQUIRE_FIXTURES_ENV}=1) but {} is missing (set {FIXTURES_ENV} to the shared \
         fixtures folder)",
        path.display()
    );
    eprintln!(
        "fixture {} not found; skipping (set {FIXTURES_ENV} to run this test)",
        path.display()
    );
    None
}
