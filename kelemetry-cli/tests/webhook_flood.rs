//! A flood of audit batches against the webhook of a `kelemetry run` process whose pipeline drains slowly (the
//! store syncs to disk for every span): the process must stay under its memory ceiling (`limits.memory`), answer
//! 429 for what does not fit, and lose nothing it accepted; once with a queue small enough to hold the ceiling by
//! itself, once with a queue too large, where the memory watch must. Prints the figures.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use kelemetry_testkit::{KelemetryProcess, free_loopback_port};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(12);
/// Audit events per request.
const BATCH: usize = 100;
/// Requests in flight.
const CLIENTS: usize = 12;

/// Resident memory of `pid` now (`VmRSS`) and at its peak (`VmHWM`), in bytes.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// An `EventList` of `BATCH` Deployment updates at level RequestResponse (each with a response body of about
/// 2 KB), unique by `client` and `round`.
fn batch(client: usize, round: u64) -> String {
    let items: Vec<serde_json::Value> = (0..BATCH)
        .map(|i| {
            let name = format!("flood-{client}-{}", i % 50);
            serde_json::json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
                "auditID": format!("{client}-{round}-{i}"), "stage": "ResponseComplete",
                "requestURI": format!("/apis/apps/v1/namespaces/default/deployments/{name}"),
                "verb": "update", "user": {"username": "system:serviceaccount:kube-system:deployment-controller"},
                "sourceIPs": ["127.0.0.1"], "userAgent": "kube-controller-manager/v1.34.4",
                "objectRef": {"resource": "deployments", "namespace": "default", "name": name,
                              "apiGroup": "apps", "apiVersion": "v1", "resourceVersion": round.to_string()},
                "responseStatus": {"metadata": {}, "code": 200},
                "responseObject": {
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                                 "resourceVersion": (round + 1).to_string(), "generation": round,
                                 "labels": {"app": name, "tier": "flood"},
                                 "annotations": {"deployment.kubernetes.io/revision": "1", "note": "x".repeat(600)}},
                    "spec": {"replicas": 2 + round % 3, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "main", "image": "alpine:3.17",
                                                                   "args": ["sleep", "infinity"]}]}}},
                    "status": {"observedGeneration": round, "replicas": 2, "readyReplicas": 2,
                               "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                               "message": "Deployment has minimum availability."}]}
                },
                "requestReceivedTimestamp": "2026-05-01T12:00:00.100000Z",
                "stageTimestamp": "2026-05-01T12:00:00.130000Z"
            })
        })
        .collect();
    serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

/// The number just before the last `label` in `text`.
fn number_after(text: &str, label: &str) -> u64 {
    let at = text
        .rfind(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|part| !part.is_empty())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {label:?} in {text}"))
}

/// One flood at a time: they measure the process's memory and compete for the same cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_stays_under_the_memory_ceiling_and_loses_nothing_accepted() {
    // The queue bounds alone keep the process well under the ceiling.
    flood("queueEvents: 2000\n    queueBytes: 16MiB", 256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_ceiling_holds_when_the_queue_alone_would_not() {
    // A queue of 50,000 activities would hold more than a GiB of these; the memory watch stops the webhook first.
    let summary = flood("queueEvents: 50000\n    queueBytes: 2GiB", 160).await;
    let memory = summary.lines().find(|l| l.starts_with("memory:")).unwrap();
    assert!(!memory.ends_with("near it 0 times"), "{memory}");
}

/// Floods a `kelemetry run` whose webhook queue is configured by `queue` and whose memory ceiling is
/// `ceiling_mib`; checks the ceiling, the 429s and that nothing accepted is lost; returns the summary.
async fn flood(queue: &str, ceiling_mib: u64) -> String {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ceiling = ceiling_mib << 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let port = free_loopback_port().unwrap();
    let config = dir.path().join("flood.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: flood\n\
             sources:\n  webhook:\n    listen: 127.0.0.1:{port}\n    {queue}\n    bodyLimit: 4MiB\n    concurrentReads: 4\n\
             linkers:\n  rules: none\n\
             exporters:\n  store:\n    path: store\n\
             limits:\n  channel: 256\n  batchSize: 1\n  exporterQueue: 4\n  shutdownGrace: 300s\n  memory: {ceiling_mib}MiB\n"
        ),
    )
    .unwrap();
    let kelemetry =
        KelemetryProcess::start(Path::new(env!("CARGO_BIN_EXE_kelemetry")), &config, "error");
    let pid = kelemetry.id();
    let (idle_rss, _) = memory(pid).unwrap();

    // Sample the memory while flooding.
    let flooding = Arc::new(AtomicBool::new(true));
    let peak_sampled = Arc::new(AtomicU64::new(0));
    let sampler = {
        let flooding = flooding.clone();
        let peak = peak_sampled.clone();
        std::thread::spawn(move || {
            while flooding.load(Relaxed) {
                if let Some((rss, _)) = memory(pid) {
                    peak.fetch_max(rss, Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let url = format!("http://127.0.0.1:{port}/audit/flood");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let throttled = Arc::new(AtomicU64::new(0));
    let offered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        let (accepted, throttled, offered) = (accepted.clone(), throttled.clone(), offered.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = 0u64;
            let mut body = bytes_of(batch(id, round));
            while started.elapsed() < FLOOD {
                offered.fetch_add(BATCH as u64, Relaxed);
                let response = client.post(&url).body(body.clone()).send().await;
                match response.map(|r| r.status().as_u16()) {
                    Ok(200) => {
                        accepted.fetch_add(BATCH as u64, Relaxed);
                        round += 1;
                        body = bytes_of(batch(id, round));
                    }
                    Ok(429) => {
                        throttled.fetch_add(1, Relaxed);
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let flood_seconds = started.elapsed().as_secs_f64();
    let (_, peak_during_flood) = memory(pid).unwrap();
    flooding.store(false, Relaxed);
    sampler.join().unwrap();

    // Stop: everything accepted must reach the store.
    let stop_started = Instant::now();
    let summary = kelemetry.stop_within(Duration::from_secs(600));
    let drain_seconds = stop_started.elapsed().as_secs_f64();

    let accepted = accepted.load(Relaxed);
    let throttled = throttled.load(Relaxed);
    let offered = offered.load(Relaxed);
    let drained_per_second = accepted as f64 / flood_seconds;
    let offered_per_second = offered as f64 / flood_seconds;
    println!(
        "flood {flood_seconds:.1}s by {CLIENTS} clients, {BATCH} events a request: offered {offered} events \
         ({offered_per_second:.0}/s), accepted {accepted} ({drained_per_second:.0}/s, ratio {:.1}), 429 answered \
         {throttled} times; memory: idle {} MiB, peak sampled {} MiB, peak (VmHWM) {} MiB, ceiling {} MiB; \
         drained the rest and stopped in {drain_seconds:.1}s\n{summary}",
        offered_per_second / drained_per_second.max(1.0),
        idle_rss >> 20,
        peak_sampled.load(Relaxed) >> 20,
        peak_during_flood >> 20,
        ceiling >> 20,
    );
    assert!(throttled > 0, "the flood must meet a full queue");
    assert!(
        offered_per_second >= 10.0 * drained_per_second,
        "the flood must offer at least 10 times what the pipeline drains"
    );
    assert!(
        peak_during_flood < ceiling,
        "peak {peak_during_flood} bytes"
    );
    // Nothing accepted is lost: the webhook delivered all it accepted, and every activity became an exported span.
    let webhook = summary.lines().find(|l| l.starts_with("webhook:")).unwrap();
    assert_eq!(number_after(webhook, " accepted,"), accepted, "{webhook}");
    assert_eq!(number_after(webhook, " delivered, "), accepted, "{webhook}");
    assert_eq!(number_after(webhook, " lost, "), 0, "{webhook}");
    let pipeline = summary
        .lines()
        .find(|l| l.starts_with("pipeline:"))
        .unwrap();
    assert_eq!(
        number_after(pipeline, " activities"),
        accepted,
        "{pipeline}"
    );
    assert_eq!(number_after(pipeline, " activity)"), accepted, "{pipeline}");
    assert_eq!(number_after(pipeline, " not exported"), 0, "{pipeline}");
    assert!(Path::new(&dir.path().join("store")).exists());
    summary
}

fn bytes_of(text: String) -> Vec<u8> {
    text.into_bytes()
}
