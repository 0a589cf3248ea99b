//! The kill -9 attack, against the release binary: 4 clients post 20-event audit batches to `kelemetry run`'s
//! webhook; in the middle of the load the process is killed with SIGKILL and started again on the same store (and
//! so the same write-ahead log), the clients carry on (retrying what was not answered 200, as the apiserver does),
//! then it is stopped gracefully. Every audit event of every batch answered 200 must be in the store.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kelemetry_core::vocabulary::AUDIT_ID;
use kelemetry_store::SpanStore;
use kelemetry_testkit::{KelemetryProcess, fault_line, free_loopback_port, release_binary};
use serde_json::{Value, json};

/// Clients posting at once.
const CLIENTS: usize = 4;
/// Audit events per batch.
const EVENTS: usize = 20;
/// How long the load runs before the kill, and again after the restart.
const HALF_LOAD: Duration = Duration::from_secs(2);

/// One ConfigMap update at level RequestResponse, shaped like the apiserver's (the recorded fixtures'): unique by
/// `client`, `round` and `i`.
fn event(client: usize, round: u64, i: usize) -> Value {
    let name = format!("kill-{client}-{}", i % 10);
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": audit_id(client, round, i), "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/default/configmaps/{name}"),
        "verb": "update", "user": {"username": "system:serviceaccount:default:writer", "groups": ["system:authenticated"]},
        "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1.34.4 (linux/amd64) kubernetes/abcdef0",
        "objectRef": {"resource": "configmaps", "namespace": "default", "name": name, "apiVersion": "v1",
                      "resourceVersion": round.to_string()},
        "responseStatus": {"metadata": {}, "code": 200},
        "responseObject": {
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": (round + 1).to_string(), "labels": {"app": "kill-test"}},
            "data": {"round": round.to_string(), "payload": "x".repeat(400)}
        },
        "requestReceivedTimestamp": "2026-05-01T12:00:00.100000Z",
        "stageTimestamp": "2026-05-01T12:00:00.130000Z"
    })
}

fn audit_id(client: usize, round: u64, i: usize) -> String {
    format!("kill-{client}-{round}-{i}")
}

fn batch(client: usize, round: u64) -> String {
    let items: Vec<Value> = (0..EVENTS).map(|i| event(client, round, i)).collect();
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

/// The batches answered 200, as (client, round).
type Accepted = Arc<Mutex<Vec<(usize, u64)>>>;

/// Four clients posting to `port` until `stop`: each posts its next batch once the previous one was answered
/// 200, and posts the same batch again after any other answer or error (as the apiserver retries).
fn clients(
    port: u16,
    accepted: &Accepted,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let url = format!("http://127.0.0.1:{port}/audit/fault");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    (0..CLIENTS)
        .map(|client| {
            let (http, url, accepted, stop) =
                (http.clone(), url.clone(), accepted.clone(), stop.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                let mut body = batch(client, round);
                while !stop.load(Relaxed) {
                    let answer = http.post(&url).body(body.clone()).send().await;
                    if answer.is_ok_and(|answer| answer.status().as_u16() == 200) {
                        accepted.lock().unwrap().push((client, round));
                        round += 1;
                        body = batch(client, round);
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect()
}

/// The audit ids of every span in the store at `path`.
fn stored_audit_ids(path: &Path) -> HashSet<String> {
    let store = SpanStore::open_read_only(path).unwrap();
    store
        .spans()
        .unwrap()
        .map(|span| span.unwrap())
        .filter_map(|span| span.attribute(AUDIT_ID).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_answered_200() {
    let binary = tokio::task::spawn_blocking(release_binary).await.unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let port = free_loopback_port().unwrap();
    let config = dir.path().join("run.yaml");
    // The store turns the write-ahead log on, in store/webhook-wal.
    std::fs::write(
        &config,
        format!(
            "cluster: fault\n\
             sources:\n  webhook:\n    listen: 127.0.0.1:{port}\n\
             linkers:\n  rules: none\n\
             exporters:\n  store:\n    path: store\n"
        ),
    )
    .unwrap();

    let accepted: Accepted = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let first = KelemetryProcess::start(&binary, &config, "error");
    assert!(
        first.stderr().contains("audit webhook writes ahead into"),
        "{}",
        first.stderr()
    );
    let load = clients(port, &accepted, &stop);
    tokio::time::sleep(HALF_LOAD).await;
    let before_kill = accepted.lock().unwrap().len();
    let started_killing = Instant::now();
    // SIGKILL, then wait for the process to be gone (dropping the process does both).
    drop(first);
    let killed_in = started_killing.elapsed();

    let second = KelemetryProcess::start(&binary, &config, "error");
    tokio::time::sleep(HALF_LOAD).await;
    stop.store(true, Relaxed);
    for client in load {
        client.await.unwrap();
    }
    let summary = second.stop_within(Duration::from_secs(120));

    let accepted = accepted.lock().unwrap().clone();
    let stored = stored_audit_ids(&dir.path().join("store"));
    let lost_batches: Vec<&(usize, u64)> = accepted
        .iter()
        .filter(|(client, round)| {
            (0..EVENTS).any(|i| !stored.contains(&audit_id(*client, *round, i)))
        })
        .collect();
    let lost_events: usize = accepted
        .iter()
        .map(|(client, round)| {
            (0..EVENTS)
                .filter(|i| !stored.contains(&audit_id(*client, *round, *i)))
                .count()
        })
        .sum();
    let webhook = support::line_after(&summary, "webhook: ");
    let counts = support::counts(webhook);
    let replayed = counts.get("replayed").copied().unwrap_or_default();
    fault_line(
        "kill -9 under load",
        &format!(
            "{} batches answered 200 ({} events; {before_kill} before the kill), {} lost after restart ({lost_events} \
             events), {replayed} replayed from the WAL",
            accepted.len(),
            accepted.len() * EVENTS,
            lost_batches.len(),
        ),
    );
    eprintln!("killed in {killed_in:?}\n{summary}");
    assert!(before_kill > 0, "the kill must come under load");
    assert!(
        accepted.len() > before_kill,
        "the restarted process must take batches too"
    );
    assert_eq!(
        lost_batches,
        Vec::<&(usize, u64)>::new(),
        "batches answered 200 but not stored"
    );
    assert!(replayed > 0, "the restart must replay the log: {webhook}");
    assert_eq!(counts.get("not delivered"), Some(&0), "{webhook}");
}

/// Batches answered 200 per second by 4 clients for 4 s, with and without the write-ahead log. A measurement for
/// the record, not a test: `cargo test -p kelemetry-cli --test fault_kill -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn throughput_with_and_without_the_write_ahead_log() {
    let binary = tokio::task::spawn_blocking(release_binary).await.unwrap();
    for wal in ["", "    wal:\n      enabled: false\n"] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let port = free_loopback_port().unwrap();
        let config = dir.path().join("run.yaml");
        std::fs::write(
            &config,
            format!(
                "cluster: fault\n\
                 sources:\n  webhook:\n    listen: 127.0.0.1:{port}\n{wal}\
                 linkers:\n  rules: none\n\
                 exporters:\n  store:\n    path: store\n"
            ),
        )
        .unwrap();
        let process = KelemetryProcess::start(&binary, &config, "error");
        let accepted: Accepted = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let load = clients(port, &accepted, &stop);
        tokio::time::sleep(2 * HALF_LOAD).await;
        stop.store(true, Relaxed);
        for client in load {
            client.await.unwrap();
        }
        let batches = accepted.lock().unwrap().len();
        let summary = process.stop_within(Duration::from_secs(120));
        let webhook = support::line_after(&summary, "webhook: ");
        println!(
            "{}: {batches} batches answered 200 in {:?} ({:.0}/s)\n  {webhook}",
            if wal.is_empty() {
                "with the write-ahead log"
            } else {
                "memory only"
            },
            2 * HALF_LOAD,
            batches as f64 / (2 * HALF_LOAD).as_secs_f64()
        );
    }
}
