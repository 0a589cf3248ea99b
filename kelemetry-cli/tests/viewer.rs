//! `kelemetry demo` serving the web viewer: the page and its assets, the link it prints, the API behind it, the
//! temporary store removed on Ctrl-C; `--no-serve`; and, with `KELEMETRY_BROWSER=1`, the viewer in headless
//! Chromium (`scripts/browser-test`: search, rows and marks, a diff in the side panel, the display-mode switch,
//! 1,000 Pods, the apiserver's spans grafted under their audit requests, the exported page from disk,
//! screenshots).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kelemetry_testkit::http_get;
use serde_json::Value;

/// A `kelemetry demo` process serving on a free port; interrupted (as by Ctrl-C) on drop.
struct Demo {
    child: Child,
    address: String,
    link: String,
    printed: Vec<String>,
}

impl Demo {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
            .args(["demo", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut printed = Vec::new();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let link = loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "the demo stopped before printing a link:\n{}",
                printed.join("")
            );
            if let Some(rest) = line.strip_prefix("open ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            printed.push(line);
        };
        let address = link
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap()
            .to_owned();
        Self {
            child,
            address,
            link,
            printed,
        }
    }

    /// GET `path`: status, headers (lowercase), body.
    fn get(&self, path: &str) -> (u16, String, String) {
        http_get(&self.address, path)
    }

    /// Sends SIGINT, as Ctrl-C does, and waits for the process to end.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the demo did not stop on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.interrupt();
        }
    }
}

/// The body of a chunked HTTP/1.1 response, joined.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

fn json(demo: &Demo, path: &str) -> Value {
    let (status, head, body) = demo.get(path);
    assert_eq!(status, 200, "{path}: {body}");
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&body)
    } else {
        body
    };
    serde_json::from_str(&body).unwrap()
}

#[test]
fn demo_prints_the_tree_then_serves_the_viewer_and_the_api() {
    let mut demo = Demo::start();
    let text = demo.printed.join("");
    assert!(text.contains("deployments demo"), "the tree first:\n{text}");
    assert!(text.contains("replicasets demo-"));
    // The link opens the Deployment's full tree in the viewer.
    let id = demo
        .link
        .split("#/trace/")
        .nth(1)
        .unwrap_or_else(|| panic!("no trace in the link {}", demo.link))
        .to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(&id[..10], "ff21000000", "tracing [full tree]");

    // The page and its assets, embedded.
    let (status, head, page) = demo.get("/");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"));
    assert!(page.contains(r#"<script src="/viewer.js">"#));
    let (status, head, script) = demo.get("/viewer.js");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"));
    assert!(script.contains("/api/traces/"));
    let (status, head, _) = demo.get("/viewer.css");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/css"));
    // Where /redirect points: the same page, which moves the path into its hash.
    let (status, _, same) = demo.get(&format!("/trace/{id}"));
    assert_eq!((status, same.as_str()), (200, page.as_str()));

    // The trace the link names: the Deployment, two ReplicaSets, their Pods.
    let trace = json(&demo, &format!("/api/traces/{id}"));
    let spans = trace["data"][0]["spans"].as_array().unwrap();
    let count = |resource: &str| {
        spans
            .iter()
            .filter(|s| {
                s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["key"] == "resource" && t["value"] == resource)
            })
            .count()
    };
    assert_eq!(count("deployments"), 1);
    assert_eq!(count("replicasets"), 2);
    assert!(count("pods") >= 4);
    // The viewer's mode switch: the same view with other mode digits.
    let tree = json(&demo, &format!("/api/traces/ff01000000{}", &id[10..]));
    assert!(tree["data"][0]["spans"].as_array().unwrap().len() > spans.len());

    // Ctrl-C stops the server and removes the temporary store.
    let store = std::env::temp_dir().join(format!("kelemetry-demo-{}", demo.child.id()));
    assert!(store.exists(), "the demo's store is at {}", store.display());
    assert!(demo.interrupt().success());
    assert!(!store.exists(), "{} is removed", store.display());
}

#[test]
fn demo_without_serving_prints_and_exits() {
    let output = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["demo", "--no-serve"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("deployments demo"));
    assert!(!text.contains("open http://"));
}

#[test]
fn demo_says_which_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["demo", "--listen", &address])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(
        error.contains(&format!("cannot listen on {address}")) && error.contains("--listen"),
        "{error}"
    );
}

/// The viewer in headless Chromium; needs Node.js and Debian's chromium (the script installs it as root), so it
/// runs only with `KELEMETRY_BROWSER=1` (as in CI).
#[test]
fn viewer_in_headless_chromium() {
    if std::env::var("KELEMETRY_BROWSER").as_deref() != Ok("1") {
        eprintln!("KELEMETRY_BROWSER is not 1: the Chromium test of the viewer is skipped");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new("bash")
        .arg(root.join("scripts/browser-test"))
        .env("KELEMETRY_BIN", env!("CARGO_BIN_EXE_kelemetry"))
        .status()
        .unwrap();
    assert!(status.success(), "scripts/browser-test failed");
}
