//! What the load generators (`latency`, `side_by_side`) share besides their events: the repository's default
//! paths, a `kelemetry run` child process watched through its standard error, keep-alive HTTP/1.1 posts to an audit
//! webhook, and the error all of these (and the making of batches) fail with.
//!
//! A [`KelemetryProcess`] runs `kelemetry run --config FILE` in a folder of its own, copies its standard error to
//! `NAME.stderr` there and waits until it says it runs; the addresses it printed before are read from that copy
//! ([`KelemetryProcess::webhook_address`], [`KelemetryProcess::metrics_address`]). A [`Poster`] posts batches to a
//! [`WebhookUrl`] on one keep-alive connection, opening a new one after a failure.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::audit_batches::BatchesError;

/// What `kelemetry run` prints on standard error before the webhook's address.
pub const WEBHOOK_PREFIX: &str = "audit webhook listening on http://";
/// What `kelemetry run` prints on standard error before the metrics address.
pub const METRICS_PREFIX: &str = "metrics on http://";
/// What `kelemetry run` prints on standard error once its sources run.
pub const RUNNING_LINE: &str = "kelemetry: running";
/// How long a process may take to start (and, for the generators, a webhook to answer or a warm-up to come out).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// The `sources:` entry of an audit webhook on a free local port without a write-ahead log, as configuration YAML.
pub const WEBHOOK_SOURCE_YAML: &str =
    "  webhook:\n    listen: 127.0.0.1:0\n    wal:\n      enabled: false\n";
/// The recording the generators copy their events from, relative to the repository's root.
const RECORDED_FIXTURE: &str = "fixtures/recorded/deployment-lifecycle/audit.log";
/// The `kelemetry` binary the generators start, relative to the repository's root.
const RELEASE_BINARY: &str = "target/release/kelemetry";

/// Why a generator could not make its batches, or start, reach or watch what it measures.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file, pipe, socket or child process failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// An HTTP exchange failed below the status code.
    #[error("{context}: {source}")]
    Http {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: hyper::Error,
    },
    /// The recording could not be made into batches.
    #[error(transparent)]
    Batches(#[from] BatchesError),
    /// Anything else that stops the run, said in words.
    #[error("{0}")]
    Setup(String),
}

impl HarnessError {
    /// For `map_err`: an I/O error while doing `context`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// For `map_err`: an HTTP error while doing `context`.
    pub fn http(context: impl Into<String>) -> impl FnOnce(hyper::Error) -> Self {
        let context = context.into();
        move |source| Self::Http { context, source }
    }
}

/// `main`'s end: success, or the error printed after `program: ` and failure.
pub fn exit_code(program: &str, outcome: Result<(), impl Display>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Counts by HTTP status as `STATUS:COUNT` joined by `separator`, `failed` standing for the status of a failed
/// connection (`None`); `none` when there are no counts.
pub fn status_counts_text(
    counts: &BTreeMap<Option<u16>, u64>,
    none: &str,
    failed: &str,
    separator: &str,
) -> String {
    if counts.is_empty() {
        return none.to_owned();
    }
    counts
        .iter()
        .map(|(status, count)| match status {
            Some(code) => format!("{code}:{count}"),
            None => format!("{failed}:{count}"),
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// This repository's root (the folder above this crate), so the generators run from any folder.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The recording to copy events from: `chosen`, or the repository's `deployment-lifecycle` recording.
pub fn recorded_fixture(chosen: Option<&Path>) -> PathBuf {
    chosen.map_or_else(
        || repository_root().join(RECORDED_FIXTURE),
        Path::to_path_buf,
    )
}

/// The `kelemetry` binary to start: `chosen`, or the repository's release build; made absolute, since the child
/// runs in a folder of its own where a relative path would be taken from.
pub fn kelemetry_binary(chosen: Option<&Path>) -> Result<PathBuf, HarnessError> {
    let binary = chosen.map_or_else(|| repository_root().join(RELEASE_BINARY), Path::to_path_buf);
    if !binary.is_file() {
        return Err(HarnessError::Setup(format!(
            "no kelemetry binary at {} (cargo build --release --locked -p kelemetry-cli --bin kelemetry, or --binary)",
            binary.display()
        )));
    }
    std::fs::canonicalize(&binary).map_err(HarnessError::io(format!(
        "cannot resolve {}",
        binary.display()
    )))
}

/// The generators' tokio runtime: two worker threads, timers and I/O.
pub fn runtime() -> Result<tokio::runtime::Runtime, HarnessError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(HarnessError::io("cannot start the tokio runtime"))
}

// ---------------------------------------------------------------------------------------------------------------
// The process.

/// A `kelemetry run` child, its standard error copied to a file and watched for lines; stopped when dropped.
#[derive(Debug)]
pub struct KelemetryProcess {
    /// What it is called in messages and in its log's name (e.g. `all-in-one`, `ingest`).
    name: &'static str,
    child: Child,
    /// Lines of standard error, as they come.
    lines: mpsc::Receiver<String>,
    /// Where standard error is copied.
    log: PathBuf,
    copier: Option<JoinHandle<()>>,
}

impl KelemetryProcess {
    /// Starts `binary run --config config` in `dir` (with `KELEMETRY_LOG=warn`), copies its standard error to
    /// `dir/NAME.stderr` and waits until it prints that it runs.
    pub fn start(
        name: &'static str,
        binary: &Path,
        config: &Path,
        dir: &Path,
    ) -> Result<Self, HarnessError> {
        let log = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("KELEMETRY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(HarnessError::io(format!(
                "cannot start {}",
                binary.display()
            )))?;
        let Some(pipe) = child.stderr.take() else {
            return Err(HarnessError::Setup(
                "the child's standard error is not piped".to_owned(),
            ));
        };
        let mut copy = File::create(&log)
            .map_err(HarnessError::io(format!("cannot create {}", log.display())))?;
        let (sender, lines) = mpsc::channel();
        let copier = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = writeln!(copy, "{line}");
                let _ = sender.send(line);
            }
        });
        let mut process = Self {
            name,
            child,
            lines,
            log,
            copier: Some(copier),
        };
        process.wait_for(RUNNING_LINE)?;
        Ok(process)
    }

    /// The rest of the first line of standard error holding `needle`, after it (lines read before are only in the
    /// log file); fails when the process exits or [`START_TIMEOUT`] passes first.
    pub fn wait_for(&mut self, needle: &str) -> Result<String, HarnessError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => {
                    if let Some((_, rest)) = line.split_once(needle) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(self.failed(&format!("exited with {status}")));
                    }
                }
                Err(_) => return Err(self.failed(&format!("never printed {needle:?}"))),
            }
        }
    }

    /// What it is called (the name it was started with).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The audit webhook's address, printed before it ran.
    pub fn webhook_address(&self) -> Result<SocketAddr, HarnessError> {
        self.address_after(WEBHOOK_PREFIX, "webhook")
    }

    /// The metrics address, printed before it ran.
    pub fn metrics_address(&self) -> Result<SocketAddr, HarnessError> {
        self.address_after(METRICS_PREFIX, "metrics")
    }

    /// The address after `prefix` in the copy of standard error; `what` names it in the error.
    fn address_after(&self, prefix: &str, what: &str) -> Result<SocketAddr, HarnessError> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        address_in(&log, prefix)
            .ok_or_else(|| self.failed(&format!("printed no {what} address before it ran")))
    }

    /// The error that it did `what`, with all it printed on standard error.
    pub fn failed(&self, what: &str) -> HarnessError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        HarnessError::Setup(format!("kelemetry {} {what}:\n{log}", self.name))
    }

    /// SIGTERM (through `kill`), then SIGKILL after 40 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(copier) = self.copier.take() {
            let _ = copier.join();
        }
    }
}

impl Drop for KelemetryProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The socket address after `prefix` on a line of `log` (up to white space or `/`).
fn address_in(log: &str, prefix: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let (_, rest) = line.split_once(prefix)?;
        rest.split(|c: char| c.is_whitespace() || c == '/')
            .next()?
            .parse()
            .ok()
    })
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP.

/// `http://IP:PORT/PATH`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// `IP:PORT`.
    pub address: SocketAddr,
    /// `/PATH` (`/` when the URL has none).
    pub path: String,
}

impl WebhookUrl {
    /// The `/audit` path of the webhook at `address`, where `kelemetry run` serves it.
    pub fn kelemetry(address: SocketAddr) -> Self {
        Self {
            address,
            path: "/audit".to_owned(),
        }
    }

    /// Takes `http://IP:PORT/PATH` apart; https and host names are refused.
    pub fn parse(url: &str) -> Result<Self, HarnessError> {
        let invalid = || {
            HarnessError::Setup(format!(
                "--webhook {url:?} is no http://IP:PORT/PATH (https and host names are not supported)"
            ))
        };
        let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let address = authority.parse().map_err(|_| invalid())?;
        let path = if path.is_empty() { "/" } else { path };
        Ok(Self {
            address,
            path: path.to_owned(),
        })
    }
}

/// A keep-alive HTTP/1.1 connection to `address`, with `TCP_NODELAY`.
pub async fn connect(address: SocketAddr) -> Result<SendRequest<Full<Bytes>>, HarnessError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(HarnessError::io(format!("cannot connect to {address}")))?;
    stream
        .set_nodelay(true)
        .map_err(HarnessError::io("cannot set TCP_NODELAY"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(HarnessError::http(format!("HTTP handshake with {address}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `method path` with `body` (JSON, for a POST) on `sender` to `address`; the status and the whole answer.
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    address: SocketAddr,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), HarnessError> {
    sender
        .ready()
        .await
        .map_err(HarnessError::http("connection not ready"))?;
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(HOST, address.to_string());
    if method == Method::POST {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(body))
        .map_err(|err| HarnessError::Setup(format!("cannot build a request: {err}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(HarnessError::http(format!("{method} {path}")))?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(HarnessError::http(format!(
            "reading the answer to {method} {path}"
        )))?
        .to_bytes();
    Ok((status, answer))
}

/// Posts `body` to the webhook on `sender`; the status once the whole answer is read.
pub async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    webhook: &WebhookUrl,
    body: Bytes,
) -> Result<StatusCode, HarnessError> {
    let (status, _) = exchange(sender, webhook.address, Method::POST, &webhook.path, body).await?;
    Ok(status)
}

/// Posts to one webhook on one keep-alive connection, opened when first needed and again after a failure.
#[derive(Debug)]
pub struct Poster {
    webhook: WebhookUrl,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Poster {
    /// A poster to `webhook`, not connected yet.
    pub fn new(webhook: WebhookUrl) -> Self {
        Self {
            webhook,
            sender: None,
        }
    }

    /// Posts `body`; the status, or `None` when the connection could not be opened or failed (it is then dropped,
    /// and the next post opens a new one).
    pub async fn post(&mut self, body: Bytes) -> Option<StatusCode> {
        if self.sender.is_none() {
            self.sender = connect(self.webhook.address).await.ok();
        }
        let status = post(self.sender.as_mut()?, &self.webhook, body).await.ok();
        if status.is_none() {
            self.sender = None;
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_url_is_taken_apart() {
        let url = WebhookUrl::parse("http://127.0.0.1:8080/audit/tracetest").expect("a URL");
        assert_eq!(url.address, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(url.path, "/audit/tracetest");
        let bare = WebhookUrl::parse("http://127.0.0.1:8080").expect("a URL without a path");
        assert_eq!(bare.path, "/");
        assert!(WebhookUrl::parse("https://127.0.0.1:8080/audit").is_err());
        assert!(WebhookUrl::parse("http://localhost:8080/audit").is_err());
    }

    #[test]
    fn addresses_are_read_from_what_kelemetry_printed() {
        let log = "2026 INFO audit webhook listening on http://127.0.0.1:41234/audit\n\
                   2026 INFO metrics on http://127.0.0.1:9090/metrics\nkelemetry: running\n";
        assert_eq!(
            address_in(log, WEBHOOK_PREFIX),
            Some(SocketAddr::from(([127, 0, 0, 1], 41234)))
        );
        assert_eq!(
            address_in(log, METRICS_PREFIX),
            Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
        );
        assert_eq!(address_in("kelemetry: running\n", WEBHOOK_PREFIX), None);
    }

    #[test]
    fn status_counts_are_listed_in_order() {
        let counts = BTreeMap::from([(Some(429), 3), (None, 1), (Some(500), 2)]);
        assert_eq!(
            status_counts_text(&counts, "-", "conn", ","),
            "conn:1,429:3,500:2"
        );
        assert_eq!(
            status_counts_text(&BTreeMap::new(), "none", "failed", " "),
            "none"
        );
    }

    #[test]
    fn a_missing_binary_is_said_in_words() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let err = kelemetry_binary(Some(&dir.path().join("kelemetry")))
            .expect_err("there is no binary in an empty folder");
        assert!(err.to_string().contains("no kelemetry binary at"));
    }
}
