//! What the store tests share (`store_sharing.rs`, `fault_store.rs`): audit logs to feed, a `kelemetry run` that
//! follows one into a store, a `kelemetry serve` beside it, and one-shot commands.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kelemetry_testkit::http_get;

/// One audit event: user `alice` creates ConfigMap `cm-{index}` in namespace `ns{index % 50}`, at 2024-05-01
/// 12:00:00 plus `index` seconds.
pub(crate) fn audit_line(index: u32) -> String {
    let at = jiff::Timestamp::from_second(1_714_564_800 + i64::from(index)).unwrap();
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": format!("id-{index}"),
        "stage": "ResponseComplete", "verb": "create", "user": {"username": "alice"},
        "requestURI": format!("/api/v1/namespaces/ns{}/configmaps", index % 50),
        "objectRef": {"resource": "configmaps", "namespace": format!("ns{}", index % 50),
                      "name": format!("cm-{index}"), "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": at.to_string(), "stageTimestamp": at.to_string(),
    })
    .to_string()
}

/// Appends the audit events `indices` to the log `path`.
pub(crate) fn append_audit(path: &Path, indices: std::ops::Range<u32>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for index in indices {
        text.push_str(&audit_line(index));
        text.push('\n');
    }
    file.write_all(text.as_bytes()).unwrap();
}

/// `kelemetry show` of ConfigMap `index`.
pub(crate) fn object_of(index: u32) -> String {
    format!("configmaps/ns{}/cm-{index}", index % 50)
}

/// Runs `binary ARGS`.
pub(crate) fn command(binary: &Path, args: &[&str]) -> Output {
    Command::new(binary).args(args).output().unwrap()
}

/// A child process that collects its standard error, killed on drop.
pub(crate) struct Process {
    pub(crate) child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    fn spawn(binary: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .env("KELEMETRY_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = collected.lock().unwrap_or_else(PoisonError::into_inner);
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { child, stderr }
    }

    /// What it wrote to its standard error so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (30 s at most) until its standard error holds `text`.
    pub(crate) fn wait_for_stderr(&mut self, text: &str) {
        let started = Instant::now();
        while !self.stderr().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited with {status} before saying {text:?}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "did not say {text:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`, and waits for the end.
    pub(crate) fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the end: whether it exited successfully, its standard output, its standard error.
    pub(crate) fn terminate(mut self) -> (bool, String, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let mut stdout = String::new();
        if let Some(mut pipe) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stdout).unwrap();
        }
        let status = self.child.wait().unwrap();
        // The collecting thread ends with the pipe; give it the last lines.
        std::thread::sleep(Duration::from_millis(100));
        (status.success(), stdout, self.stderr())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the configuration of a `kelemetry run` that follows `audit.log` in `dir` (every 50 ms) into the store
/// `dir/store`, and returns the configuration file.
pub(crate) fn follower_config(dir: &Path) -> PathBuf {
    let config = dir.join("run.yaml");
    std::fs::write(
        &config,
        "cluster: local\nsources:\n  auditLog:\n    path: audit.log\n    pollInterval: 50ms\n\
         exporters:\n  store:\n    path: store\n",
    )
    .unwrap();
    config
}

/// `binary run --config CONFIG`, once it says it runs.
pub(crate) fn start_run(binary: &Path, config: &Path) -> Process {
    let mut run = Process::spawn(binary, &["run", "--config", &config.to_string_lossy()]);
    run.wait_for_stderr("kelemetry: running");
    run
}

/// A `kelemetry serve` on a free loopback port.
pub(crate) struct Serve {
    pub(crate) process: Process,
    pub(crate) address: String,
}

impl Serve {
    /// `binary serve --store STORE`, once it listens.
    pub(crate) fn start(binary: &Path, store: &Path) -> Self {
        let mut process = Process::spawn(
            binary,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &store.to_string_lossy(),
            ],
        );
        let mut line = String::new();
        BufReader::new(process.child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}: {}", process.stderr()))
            .to_owned();
        Self { process, address }
    }

    /// How many traces the search for ConfigMap `index` finds, or the status and body of a failed search.
    pub(crate) fn search(&self, index: u32) -> Result<u64, (u16, String)> {
        let tags = format!("%7B%22name%22%3A%22cm-{index}%22%7D");
        let (status, _, body) = http_get(
            &self.address,
            &format!("/api/traces?service=tracing&tags={tags}"),
        );
        if status != 200 {
            return Err((status, body));
        }
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        Ok(answer["total"].as_u64().unwrap())
    }
}

/// The spans `kelemetry store check DIR` counted, or its standard error when it failed.
pub(crate) fn checked_spans(binary: &Path, store: &Path) -> Result<u64, String> {
    let out = command(binary, &["store", "check", &store.to_string_lossy()]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let spans = stdout
        .split("; ")
        .nth(1)
        .and_then(|part| part.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected store check output {stdout:?}"));
    Ok(spans)
}

/// POSTs `body` to `path` on the server at `address` over plain HTTP/1.1: the status.
pub(crate) fn http_post(address: &str, path: &str, body: &str) -> u16 {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// An audit `EventList` of the events `indices` (see [`audit_line`]).
pub(crate) fn event_list(indices: std::ops::Range<u32>) -> String {
    let items: Vec<String> = indices.map(audit_line).collect();
    format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{}]}}",
        items.join(",")
    )
}
