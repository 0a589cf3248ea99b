//! The apiserver of a live test cluster (`KELEMETRY_E2E=1`) sends its audit batches over HTTPS with a bearer
//! token to the webhook of `kelemetry run` (TLS from PEM files, the token from a file): the batches are accepted,
//! none is refused, and the writes reach the store.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kelemetry_testkit::{ClusterOptions, TestCluster, e2e_enabled, free_loopback_port};

/// A CA and a serving certificate for 127.0.0.1 signed by it, made with `openssl`: (cert, key, CA cert).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    let (ca_key, ca_crt, key, csr, crt, ext) = (
        path("ca.key"),
        path("ca.crt"),
        path("tls.key"),
        path("tls.csr"),
        path("tls.crt"),
        path("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=webhook-ca",
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
    ]);
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &crt,
    ]);
    (crt.into(), key.into(), ca_crt.into())
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

#[test]
fn the_apiserver_posts_over_tls_with_a_token() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = certificates(dir.path());
    let token = "e2e-webhook-token-1234";
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    let port = free_loopback_port().unwrap();
    let cluster = TestCluster::start_with(ClusterOptions {
        audit_webhook_url: Some(format!("https://127.0.0.1:{port}/audit/secure")),
        audit_webhook_token: Some(token.to_owned()),
        audit_webhook_ca_file: Some(ca),
        ..ClusterOptions::default()
    })
    .unwrap();
    let config = dir.path().join("kelemetry.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: unused-default\n\
             sources:\n  webhook:\n    listen: 127.0.0.1:{port}\n    tokenFile: token\n    tls:\n      cert: {}\n      key: {}\n\
             exporters:\n  store:\n    path: store\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnPanic(child.id());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("kelemetry: running") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "kelemetry did not start"
        );
    }
    std::thread::spawn(move || for _ in stderr.lines() {});

    cluster
        .kubectl(["create", "configmap", "over-tls", "--from-literal=k=v"])
        .unwrap();
    cluster
        .kubectl(["delete", "configmap", "over-tls"])
        .unwrap();
    // Batches leave every second; the apiserver retries what failed while the webhook was starting.
    let store = dir.path().join("store");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{summary}");
    eprintln!("after {:?}: {summary}", started.elapsed());
    let webhook = summary.lines().find(|l| l.starts_with("webhook:")).unwrap();
    assert!(webhook.contains(" 0 lost"), "{webhook}");
    assert!(webhook.contains("401 0"), "{webhook}");
    assert!(!webhook.contains(" 0 batches accepted"), "{webhook}");

    let shown = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args([
            "show",
            "configmaps/default/over-tls",
            "--cluster",
            "secure",
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{tree}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(tree.contains(" create"), "{tree}");
    assert!(tree.contains(" delete"), "{tree}");
}
