//! `kelemetry run --config FILE` without a cluster: configuration errors name file, line and field; the example
//! configuration is valid; a webhook and an audit log follower feed the store, and SIGINT/SIGTERM stop the process
//! after everything accepted is stored.

#![allow(clippy::unwrap_used)]

mod support;

use support::{counts, exported_spans, line_after};

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kelemetry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kelemetry"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(config: &Path) -> Output {
    kelemetry()
        .args(["run", "--check", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn configuration_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.yaml");
    let cases = [
        (
            "cluster: c\nsources:\n  webhook:\n    listen: 0.0.0.0:8087\nexporters:\n  store: {path: s}\n",
            "run.yaml:4: sources.webhook.listen: 0.0.0.0:8087 is not a loopback address",
        ),
        (
            "cluster: c\nsources:\n  webhook:\n    queueBytes: 3 furlongs\nexporters:\n  store: {path: s}\n",
            "run.yaml:4: sources.webhook.queueBytes: unknown unit \"furlongs\"",
        ),
        (
            "cluster: c\nsources:\n  auditLog:\n    path: a.log\n    pollInterval: 5\nexporters:\n  store: {path: s}\n",
            "run.yaml:5: sources.auditLog.pollInterval: \"5\" has no unit",
        ),
        (
            "cluster: c\nsources:\n  webhook: {}\nexporters:\n  stor: {path: s}\n",
            "run.yaml:5: exporters: unknown field `stor`, expected one of `store`, `jsonLines`, `otlp`",
        ),
        (
            "cluster: c\nsources: {}\nexporters:\n  store: {path: s}\n",
            "run.yaml:2: sources: configure at least one of webhook, auditLog, events, objectWatch, kafka",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, text).unwrap();
        let out = check(&config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        let shown = stderr.replace(&format!("{}/", dir.path().display()), "");
        assert!(
            shown.contains(expected),
            "{text}\nexpected {expected:?}\ngot {shown}"
        );
    }
}

#[test]
fn the_example_configuration_checks() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kelemetry.example.yaml");
    let out = check(&example);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

/// A running `kelemetry run`.
struct Running {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
    _guard: KillOnPanic,
}

/// Kills the process `0` if the test panics before stopping it (so a failed test leaves nothing running).
struct KillOnPanic(u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

fn start(config: &Path) -> Running {
    let mut child = kelemetry()
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains("kelemetry: running") {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "kelemetry ended early: {seen}"
        );
        seen.push_str(&line);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    let stderr = std::thread::spawn(move || {
        let mut rest = seen;
        for line in lines.lines().map_while(Result::ok) {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let guard = KillOnPanic(child.id());
    Running {
        child,
        stderr,
        _guard: guard,
    }
}

fn stop(running: Running, signal: &str) -> (String, String) {
    let pid = running.child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = running.child.wait_with_output().unwrap();
    let stderr = running.stderr.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

fn audit(id: &str, verb: &str, rv: &str, replicas: u32, code: u16) -> serde_json::Value {
    let mut event = serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": id,
        "stage": "ResponseComplete", "verb": verb, "user": {"username": "alice"},
        "objectRef": {"resource": "deployments", "namespace": "default", "name": "web", "apiGroup": "apps",
                      "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-05-01T12:00:00.100000Z",
        "stageTimestamp": "2026-05-01T12:00:00.130000Z",
        "responseObject": {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": rv,
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"replicas": replicas}}
    });
    if verb != "create" {
        event["objectRef"]["resourceVersion"] =
            serde_json::json!((rv.parse::<u32>().unwrap() - 1).to_string());
    }
    event
}

fn write_config(dir: &Path, sources: &str) -> PathBuf {
    let config = dir.join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: local\nsources:\n{sources}exporters:\n  store:\n    path: store\n  jsonLines:\n    path: spans.jsonl\n"
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_feeds_the_store_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("  webhook:\n    listen: 127.0.0.1:{port}\n"),
    );
    let running = start(&config);
    let list = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
        audit("a1", "create", "10", 2, 201),
        audit("a2", "update", "11", 4, 200),
        audit("a3", "delete", "12", 4, 200),
    ]});
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/audit"))
        .body(list.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (stdout, _) = stop(running, "-TERM");
    let pipeline = counts(line_after(&stdout, "pipeline: "));
    assert_eq!(
        (
            pipeline["records"],
            pipeline["activities"],
            pipeline["rejected"]
        ),
        (3, 3, 0),
        "{stdout}"
    );
    assert_eq!(pipeline["not exported"], 0, "{stdout}");
    let webhook = counts(line_after(&stdout, "webhook: "));
    assert_eq!(
        (webhook["accepted"], webhook["delivered"], webhook["lost"]),
        (3, 3, 0),
        "{stdout}"
    );
    let tree = support::show(&dir.path().join("store"), "deployments/default/web");
    assert!(tree.contains("audit alice create"), "{tree}");
    assert!(tree.contains("diff: spec.replicas 2 -> 4"), "{tree}");
    assert!(tree.contains("audit alice delete"), "{tree}");
    assert!(!tree.contains("managedFields"), "{tree}");
    // The JSON lines exporter got the same three activities, each once.
    let mut exported: Vec<String> = exported_spans(&dir.path().join("spans.jsonl"))
        .into_iter()
        .filter(|span| span.is_of("deployments", "web") && span.name.starts_with("alice "))
        .map(|span| span.name)
        .collect();
    exported.sort();
    assert_eq!(exported, ["alice create", "alice delete", "alice update"]);
}

#[test]
fn the_audit_log_follower_resumes_after_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let append = |events: &[serde_json::Value]| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for event in events {
            writeln!(file, "{event}").unwrap();
        }
    };
    append(&[audit("f1", "create", "10", 2, 201)]);
    let config = write_config(
        dir.path(),
        "  auditLog:\n    path: audit.log\n    checkpoint: audit.checkpoint\n    pollInterval: 50ms\n",
    );
    let checkpoint = dir.path().join("audit.checkpoint");
    // The checkpoint's line: positive evidence of how far the running follower got.
    let checkpoint_reaches = |line: u64| {
        kelemetry_testkit::wait_until(
            &format!("the checkpoint at line {line}"),
            Duration::from_secs(30),
            || {
                let stored = std::fs::read_to_string(&checkpoint).unwrap_or_default();
                let stored: serde_json::Value =
                    serde_json::from_str(&stored).unwrap_or(serde_json::Value::Null);
                Ok((stored["line"] == line).then_some(()))
            },
        )
        .unwrap();
    };
    let running = start(&config);
    checkpoint_reaches(1);
    append(&[audit("f2", "update", "11", 3, 200)]);
    checkpoint_reaches(2);
    let (stdout, _) = stop(running, "-INT");
    let read = counts(line_after(&stdout, "audit log: "));
    assert_eq!((read["records"], read["sent"]), (2, 2), "{stdout}");
    checkpoint_reaches(2);

    append(&[audit("f3", "delete", "12", 3, 200)]);
    let running = start(&config);
    checkpoint_reaches(3);
    let (stdout, _) = stop(running, "-TERM");
    let read = counts(line_after(&stdout, "audit log: "));
    assert_eq!((read["records"], read["sent"]), (1, 1), "{stdout}");
    let tree = support::show(&dir.path().join("store"), "deployments/default/web");
    for expected in [
        "audit alice create",
        "audit alice update",
        "audit alice delete",
    ] {
        assert_eq!(tree.matches(expected).count(), 1, "{expected}: {tree}");
    }
}

#[test]
fn a_failing_source_stops_the_run_and_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("not-a-log")).unwrap();
    let config = write_config(dir.path(), "  auditLog:\n    path: not-a-log\n");
    let out = kelemetry()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}{stderr}");
    // The summary is still printed, with the failure; the error names the source and the cause.
    assert_eq!(
        counts(line_after(&stdout, "pipeline: "))["records"],
        0,
        "{stdout}"
    );
    assert!(
        stdout.contains("failed: audit-log-follower: ") && stdout.contains("not-a-log"),
        "{stdout}"
    );
    assert!(
        stderr.contains("kelemetry: source failed: audit-log-follower: "),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_reads_its_token_from_a_file_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("  webhook:\n    listen: 127.0.0.1:{port}\n    tokenFile: token\n"),
    );
    let running = start(&config);
    let list = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
        audit("t1", "create", "10", 2, 201),
    ]});
    let post = |token: Option<&str>| {
        let request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/audit"))
            .body(list.to_string());
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("s3cret")).await.unwrap().status(), 200);
    let (stdout, _) = stop(running, "-TERM");
    let webhook = counts(line_after(&stdout, "webhook: "));
    assert_eq!(
        (webhook["accepted"], webhook["delivered"]),
        (1, 1),
        "{stdout}"
    );
}
