//! The apiserver of a live test cluster (`KELEMETRY_E2E=1`) sends its audit batches over HTTPS with a bearer
//! token to the webhook of `kelemetry run` (TLS from PEM files, the token from a file): the batches are accepted,
//! none is refused, and the writes reach the store.

#![allow(clippy::unwrap_used)]

mod support;

use support::{answered, counts, wait_until_exported};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kelemetry_testkit::{
    ClusterOptions, KelemetryProcess, LoopbackCertificates, TestCluster, e2e_enabled,
    free_loopback_port,
};

#[test]
fn the_apiserver_posts_over_tls_with_a_token() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let LoopbackCertificates {
        ca_cert: ca,
        cert,
        key,
    } = LoopbackCertificates::write_to(dir.path()).unwrap();
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
             exporters:\n  store:\n    path: store\n  jsonLines:\n    path: spans.jsonl\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let kelemetry =
        KelemetryProcess::start(Path::new(env!("CARGO_BIN_EXE_kelemetry")), &config, "error");

    cluster
        .kubectl(["create", "configmap", "over-tls", "--from-literal=k=v"])
        .unwrap();
    cluster
        .kubectl(["delete", "configmap", "over-tls"])
        .unwrap();
    // Batches leave every second: wait until both writes were exported (the JSON lines file shows them while the
    // store is in use).
    let store = dir.path().join("store");
    let started = Instant::now();
    wait_until_exported(
        &dir.path().join("spans.jsonl"),
        &[
            ("configmaps", "over-tls", " create"),
            ("configmaps", "over-tls", " delete"),
        ],
        Duration::from_secs(60),
    );
    let summary = kelemetry.stop();
    eprintln!("after {:?}: {summary}", started.elapsed());
    let webhook = summary
        .lines()
        .find_map(|l| l.strip_prefix("webhook: "))
        .unwrap();
    let webhook_counts = counts(webhook);
    assert_eq!(webhook_counts["lost"], 0, "{webhook}");
    assert_eq!(answered(webhook, "401"), 0, "{webhook}");
    assert!(webhook_counts["batches accepted"] > 0, "{webhook}");
    assert_eq!(
        webhook_counts["accepted"], webhook_counts["delivered"],
        "{webhook}"
    );

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
    assert_eq!(tree.matches(" create\n").count(), 1, "{tree}");
    assert_eq!(tree.matches(" delete\n").count(), 1, "{tree}");
}
