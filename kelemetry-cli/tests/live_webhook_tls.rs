//! The apiserver of a live test cluster (`KELEMETRY_E2E=1`) sends its audit batches over HTTPS with a bearer
//! token to the webhook of `kelemetry run` (TLS from PEM files, the token from a file): the batches are accepted,
//! none is refused, and the writes reach the store.

#![allow(clippy::unwrap_used)]

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
             exporters:\n  store:\n    path: store\n",
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
    // Batches leave every second; the apiserver retries what failed while the webhook was starting.
    let store = dir.path().join("store");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let summary = kelemetry.stop();
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
