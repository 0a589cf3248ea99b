//! What the metrics tests share: the `KELEMETRY_PROMETHEUS` gate, Prometheus and promtool built by
//! scripts/prometheus, a Prometheus started for a test and queried through its HTTP API, and reading the text of
//! `/metrics` with a Prometheus text parser.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kelemetry_testkit::http_get;
pub(crate) use kelemetry_testkit::scrape::{parse, value};

/// The gate of the tests that need Prometheus' binaries (set by scripts/test).
pub(crate) const PROMETHEUS_ENV: &str = "KELEMETRY_PROMETHEUS";

pub(crate) fn prometheus_enabled() -> bool {
    std::env::var(PROMETHEUS_ENV).is_ok_and(|value| value == "1")
}

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the CLI sits in the workspace")
        .to_owned()
}

/// The path of a binary named in scripts/prometheus/lib.sh (`PROMETHEUS_BIN`, `PROMTOOL_BIN`), built (cached) by
/// scripts/prometheus/build first. Panics when it cannot be built: with the gate set, a missing Prometheus fails.
pub(crate) fn prometheus_tool(variable: &str) -> PathBuf {
    let root = workspace();
    let build = Command::new(root.join("scripts/prometheus/build"))
        .output()
        .expect("run scripts/prometheus/build");
    assert!(
        build.status.success(),
        "scripts/prometheus/build failed ({PROMETHEUS_ENV}=1 needs Prometheus):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let printed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && printf %s \"${variable}\"",
            root.join("scripts/prometheus/lib.sh").display()
        ))
        .output()
        .expect("read scripts/prometheus/lib.sh");
    let path = PathBuf::from(String::from_utf8_lossy(&printed.stdout).into_owned());
    assert!(
        path.is_file(),
        "{variable} = {} is not built",
        path.display()
    );
    path
}

/// The address after `prefix` in `stderr`, up to the next slash or line end.
pub(crate) fn address_after(stderr: &str, prefix: &str) -> String {
    let start = stderr
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} not in:\n{stderr}"))
        + prefix.len();
    stderr[start..]
        .split(['/', '\n', ' '])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A Prometheus started by scripts/prometheus/up, stopped by `down` and its run dir removed when dropped.
pub(crate) struct Prometheus {
    name: String,
    address: String,
    run_dir: PathBuf,
}

impl Prometheus {
    pub(crate) fn start(target: &str) -> Self {
        let root = workspace();
        prometheus_tool("PROMETHEUS_BIN");
        let name = format!("metrics-test-{}", std::process::id());
        let up = Command::new(root.join("scripts/prometheus/up"))
            .args(["--name", &name, "--interval", "1s", "--target", target])
            .output()
            .expect("run scripts/prometheus/up");
        assert!(
            up.status.success(),
            "scripts/prometheus/up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let run_dir = std::env::var_os("KELEMETRY_PROMETHEUS_RUN")
            .map_or_else(|| PathBuf::from("/tmp/kelemetry-prometheus"), PathBuf::from);
        let run_dir = PathBuf::from(format!("{}-{name}", run_dir.display()));
        let ports = std::fs::read_to_string(run_dir.join("ports.env"))
            .expect("scripts/prometheus/up wrote ports.env");
        let address = ports
            .lines()
            .find_map(|line| line.strip_prefix("PROMETHEUS_HTTP="))
            .expect("PROMETHEUS_HTTP in ports.env")
            .to_owned();
        Self {
            name,
            address,
            run_dir,
        }
    }

    /// The instant vector of `query`: each series' labels and value.
    pub(crate) fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) = http_get(&self.address, &format!("/api/v1/query?query={encoded}"));
        assert_eq!(status, 200, "{query}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON from Prometheus");
        assert_eq!(answer["status"], "success", "{body}");
        answer["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|series| {
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("a sample value");
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// `query`'s single value, once it is `expected` (30 s at most: Prometheus scrapes every second).
    pub(crate) fn wait_for(&self, query: &str, expected: f64) {
        let started = Instant::now();
        loop {
            let result = self.query(query);
            if result.len() == 1 && result[0].1 == expected {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{query} = {result:?}, expected {expected}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("scripts/prometheus/down"))
            .args(["--name", &self.name])
            .status();
        // Its config, log and TSDB are of no use after the test.
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// `promtool check metrics` on `text` (lint problems fail too).
pub(crate) fn promtool_check(text: &str) {
    let promtool = prometheus_tool("PROMTOOL_BIN");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
