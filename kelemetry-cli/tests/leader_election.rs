//! Leader election (`sources.leaderElection`, docs/scaling.md#leader-election).
//!
//! Without a cluster: `kelemetry run --check` takes the section and names the line of a mistake in it.
//!
//! On a live test cluster (`KELEMETRY_E2E=1`): two `kelemetry run` processes with the same Lease, the Events source
//! and the object watch (with watch activities) on, each writing its own JSON lines. Only the Lease's holder runs
//! them; the holder is killed with SIGKILL while Deployments are being created and scaled; the other must take the
//! Lease within the lease duration (plus two renew periods, the most the election allows) and carry on from the
//! dead holder's watermark. Then every Event the apiserver holds must be in one of the two outputs, with the span
//! id computed from it, and an Event exported by both must be the same span (same ids, same content), which a
//! store keeps once. Last, a holder stopped with SIGTERM releases the Lease and a third process takes it at its
//! next read. In between, another holder written into the Lease makes the successor stop its sources, and take the
//! Lease back with new ones once that record is stale. And the Helm chart's `leaderElection.enabled` writes the section and grants its service account what
//! the election calls on its Lease, and no more.

#![allow(clippy::unwrap_used)]

mod chart_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kelemetry_core::kube_event::event_to_activity;
use kelemetry_core::{ResourceMap, TraceId, Windowing};
use kelemetry_testkit::{KelemetryProcess, TestCluster, e2e_enabled, fault_line, wait_until};
use serde_json::Value;

const CLUSTER: &str = "leadertest";
/// The election's timing in these tests: short, to keep the test short.
const LEASE_SECONDS: u64 = 6;
const RENEW_SECONDS: u64 = 1;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kelemetry"))
}

/// `kelemetry run --config FILE --check` on `text`: whether it passed, and what it printed.
fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kelemetry.yaml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(binary())
        .args(["run", "--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[test]
fn run_check_takes_the_section_and_places_its_mistakes() {
    let with = |election: &str| {
        format!(
            "cluster: c\nsources:\n  events: {{}}\n  objectWatch: {{}}\n  leaderElection:\n{election}\
             exporters:\n  jsonLines:\n    path: spans.jsonl\n"
        )
    };
    let (ok, printed) = check(&with(
        "    lease: kelemetry-prod\n    namespace: kelemetry\n    leaseDuration: 20s\n    renewPeriod: 5s\n",
    ));
    assert!(ok, "{printed}");
    let (ok, printed) = check(&with(
        "    lease: kelemetry-prod\n    leaseDuration: 1500ms\n",
    ));
    assert!(!ok);
    assert!(
        printed.contains(
            "kelemetry.yaml:7: sources.leaderElection.leaseDuration: must be whole seconds"
        ),
        "{printed}"
    );
    let (ok, printed) = check(&with("    renewPeriod: 6s\n"));
    assert!(!ok);
    assert!(
        printed.contains("kelemetry.yaml:6: sources.leaderElection.renewPeriod: must be at least 100ms and at most a third of leaseDuration"),
        "{printed}"
    );
    let (ok, printed) = check(&with("    lease: Not_A_Name\n"));
    assert!(!ok);
    assert!(
        printed.contains(
            "kelemetry.yaml:6: sources.leaderElection.lease: \"Not_A_Name\" is no Lease name"
        ),
        "{printed}"
    );
    let (ok, printed) = check(&with("    renewEvery: 1s\n"));
    assert!(!ok);
    assert!(
        printed.contains("kelemetry.yaml:6: sources.leaderElection: unknown field `renewEvery`"),
        "{printed}"
    );
    // Nothing to elect a replica for.
    let (ok, printed) = check(
        "cluster: c\nsources:\n  webhook:\n    listen: 127.0.0.1:0\n  leaderElection: {}\n\
         exporters:\n  jsonLines:\n    path: spans.jsonl\n",
    );
    assert!(!ok);
    assert!(
        printed.contains("kelemetry.yaml:5: sources.leaderElection: elects the replica that runs events and objectWatch"),
        "{printed}"
    );
}

/// One `kelemetry run` replica: its folder (config, JSON lines) and its process while it runs.
struct Replica {
    dir: PathBuf,
    process: Option<KelemetryProcess>,
}

impl Replica {
    /// Writes the config of replica `identity` (Events, object watch with activities, the Lease `lease`).
    fn new(
        root: &Path,
        cluster: &TestCluster,
        identity: &str,
        lease: &str,
        watermark: &str,
    ) -> Self {
        let dir = root.join(identity);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("kelemetry.yaml"),
            format!(
                "cluster: {CLUSTER}\n\
                 kubernetes:\n  kubeconfig: {kubeconfig}\n\
                 sources:\n\
                 \x20 events:\n    watermark:\n      name: {watermark}\n      syncInterval: 4s\n\
                 \x20 objectWatch:\n    include: [deployments.apps, replicasets.apps]\n    watchActivities: true\n\
                 \x20 leaderElection:\n    lease: {lease}\n    identity: {identity}\n\
                 \x20   leaseDuration: {LEASE_SECONDS}s\n    renewPeriod: {RENEW_SECONDS}s\n\
                 exporters:\n  jsonLines:\n    path: spans.jsonl\n",
                kubeconfig = cluster.kubeconfig().display(),
            ),
        )
        .unwrap();
        Self { dir, process: None }
    }

    fn start(&mut self) {
        self.process = Some(KelemetryProcess::start(
            binary(),
            &self.dir.join("kelemetry.yaml"),
            "warn,kelemetry_sources::leader=info",
        ));
    }

    fn stderr(&self) -> String {
        self.process
            .as_ref()
            .map(KelemetryProcess::stderr)
            .unwrap_or_default()
    }

    fn spans(&self) -> Vec<Span> {
        spans(&self.dir.join("spans.jsonl"))
    }
}

/// An exported span: ids, operation name, and the whole OTLP JSON object.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
    json: Value,
}

impl Span {
    fn is_event(&self) -> bool {
        self.attributes.contains_key("eventName")
    }

    fn is_watch(&self) -> bool {
        self.name.starts_with("watch ")
    }
}

/// The spans of an OTLP/JSON lines file so far (a line being written is left out).
fn spans(path: &Path) -> Vec<Span> {
    fn collect(value: &Value, out: &mut Vec<Span>) {
        match value {
            Value::Object(map) if map.contains_key("spanId") => {
                let attributes = map
                    .get("attributes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|attribute| {
                        Some((
                            attribute["key"].as_str()?.to_owned(),
                            attribute["value"]["stringValue"].as_str()?.to_owned(),
                        ))
                    })
                    .collect();
                out.push(Span {
                    trace_id: map["traceId"].as_str().unwrap_or_default().to_owned(),
                    span_id: map["spanId"].as_str().unwrap_or_default().to_owned(),
                    name: map["name"].as_str().unwrap_or_default().to_owned(),
                    attributes,
                    json: value.clone(),
                });
            }
            Value::Object(map) => map.values().for_each(|v| collect(v, out)),
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut spans = Vec::new();
    for line in text.lines() {
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            collect(&value, &mut spans);
        }
    }
    spans
}

/// The holder of the Lease `default/name` (`None`: no Lease yet, or no holder).
fn holder(cluster: &TestCluster, name: &str) -> Option<String> {
    cluster.lease_holder("default", name).unwrap()
}

/// Polls (every 50 ms, `timeout` at most) until `identity` holds the Lease; how long that took.
fn wait_for_holder(
    cluster: &TestCluster,
    lease: &str,
    identity: &str,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if holder(cluster, lease).as_deref() == Some(identity) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{identity} did not take the Lease {lease} within {timeout:?} (holder: {:?})",
            holder(cluster, lease)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The floor of the Event watermark in the ConfigMap `default/name`, once it exists.
fn watermark_floor(cluster: &TestCluster, name: &str) -> jiff::Timestamp {
    let selector = format!("--field-selector=metadata.name={name}");
    wait_until("the Event watermark", Duration::from_secs(60), || {
        let list = cluster.kubectl_json(["get", "configmaps", "-n", "default", &selector])?;
        Ok(list["items"][0]["data"]["timestamp"]
            .as_str()
            .and_then(|floor| floor.parse().ok()))
    })
    .unwrap()
}

/// The watermark ConfigMap `default/name`'s `lastUpdated` and the Event keys it holds as handled.
fn stored_watermark(cluster: &TestCluster, name: &str) -> (String, BTreeSet<String>) {
    let map = cluster
        .kubectl_json(["get", "configmap", name, "-n", "default"])
        .unwrap();
    let keys = map["data"]["handled"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, key)| key.to_owned()))
        .collect();
    let updated = map["data"]["lastUpdated"].as_str().unwrap_or_default();
    (updated.to_owned(), keys)
}

/// The span id kelemetry computes for each Event the apiserver holds in `namespace` (events.k8s.io/v1, the API the
/// Events source watches): the activity span of its dedup key in its object's trace of the window of its time.
fn expected_event_spans(
    cluster: &TestCluster,
    namespace: &str,
) -> BTreeMap<String, (String, String)> {
    let list = cluster
        .kubectl_json(["get", "events.v1.events.k8s.io", "-n", namespace])
        .unwrap();
    let resources = ResourceMap::builtin();
    let windowing = Windowing::default();
    let mut expected = BTreeMap::new();
    for item in list["items"].as_array().unwrap() {
        let activity = event_to_activity(item, CLUSTER, &resources).unwrap();
        let trace = TraceId::for_object(activity.object.key(), windowing.window_of(activity.start));
        let span = trace.activity_span(&activity.dedup_key);
        let what = format!(
            "{} {} ({})",
            item["metadata"]["name"].as_str().unwrap_or_default(),
            item["reason"].as_str().unwrap_or_default(),
            activity.dedup_key
        );
        expected.insert(format!("{trace}/{span}"), (what, activity.dedup_key));
    }
    expected
}

fn span_key(span: &Span) -> String {
    format!("{}/{}", span.trace_id, span.span_id)
}

/// Creates a Deployment now and then and scales the ones there, until `stop`: Events all along.
fn produce_events(cluster: &TestCluster, namespace: &str, stop: &AtomicBool) -> u32 {
    let mut steps = 0u32;
    let mut deployments = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if steps.is_multiple_of(3) && deployments < 12 {
            let name = format!("le-{deployments}");
            cluster
                .kubectl([
                    "create",
                    "deployment",
                    &name,
                    "--image=alpine:3.16",
                    "--replicas=1",
                    "-n",
                    namespace,
                ])
                .unwrap();
            deployments += 1;
        } else if deployments > 0 {
            let name = format!("deployment/le-{}", steps % deployments);
            let replicas = format!("--replicas={}", 1 + steps % 3);
            cluster
                .kubectl(["scale", &name, &replicas, "-n", namespace])
                .unwrap();
        }
        steps += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    steps
}

#[test]
fn one_replica_runs_the_events_source_and_the_other_takes_over_when_it_dies() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let cluster = TestCluster::shared().unwrap();
    let suffix = std::process::id();
    let namespace = format!("leader-e2e-{suffix}");
    let lease = format!("leader-e2e-{suffix}");
    let watermark = format!("leader-e2e-{suffix}");
    let root = tempfile::tempdir().unwrap();
    let mut a = Replica::new(root.path(), cluster, "replica-a", &lease, &watermark);
    let mut b = Replica::new(root.path(), cluster, "replica-b", &lease, &watermark);

    // A first, so that it leads; then B, which follows.
    a.start();
    wait_for_holder(cluster, &lease, "replica-a", Duration::from_secs(30));
    b.start();
    wait_until("B to follow A", Duration::from_secs(30), || {
        Ok(b.stderr().contains("following").then_some(()))
    })
    .unwrap();
    // A's Events source has stored its first watermark, whose floor is its start: Events from before are not
    // traced by design, and core/v1 Event times have whole seconds, so the activity starts 2 s later.
    let floor = watermark_floor(cluster, &watermark);
    while jiff::Timestamp::now() < floor + jiff::SignedDuration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster
        .kubectl(["create", "namespace", &namespace])
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, namespace) = (Arc::clone(&stop), namespace.clone());
        std::thread::spawn(move || produce_events(cluster, &namespace, &stop))
    };
    // A runs the Events source and the object watch; B runs neither.
    wait_until(
        "A to export Events and watch activities",
        Duration::from_secs(60),
        || {
            let spans = a.spans();
            let events = spans.iter().filter(|s| s.is_event()).count();
            let watched = spans.iter().filter(|s| s.is_watch()).count();
            Ok((events >= 5 && watched >= 3).then_some(()))
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let b_before = b.spans();
    assert_eq!(
        b_before
            .iter()
            .filter(|s| s.is_event() || s.is_watch())
            .count(),
        0,
        "B exported Events or watch activities while following:\n{}",
        b.stderr()
    );
    assert_eq!(holder(cluster, &lease).as_deref(), Some("replica-a"));

    // kill -9 the holder, Events still coming, 3 s after it stored its watermark (every 4 s): what it exported in
    // those 3 s is handled again by the successor.
    let (first_update, _) = stored_watermark(cluster, &watermark);
    wait_until("A to store its watermark", Duration::from_secs(30), || {
        let (updated, keys) = stored_watermark(cluster, &watermark);
        Ok((updated != first_update && !keys.is_empty()).then_some(()))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let a_log = a.stderr();
    let pid = a.process.as_ref().unwrap().id().to_string();
    let killed_at = Instant::now();
    let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(status.success(), "kill -KILL {pid}");
    let a_process = a.process.take();
    drop(a_process);
    let (_, stored_keys) = stored_watermark(cluster, &watermark);
    wait_for_holder(cluster, &lease, "replica-b", Duration::from_secs(60));
    let handover = killed_at.elapsed();
    wait_until("B to run the sources", Duration::from_secs(30), || {
        Ok(b.stderr().contains("sources started").then_some(()))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(4));

    // Another holder writes itself into the Lease (as a replica whose clock says B's record expired would): B sees
    // it at its next renewal and stops its sources; the intruder never renews, so B takes the Lease back once the
    // record has been still for the lease duration, with new sources (term 2). Events keep coming meanwhile.
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ");
    let patch = format!(r#"{{"spec":{{"holderIdentity":"intruder","renewTime":"{now}"}}}}"#);
    cluster
        .kubectl([
            "patch",
            "leases.coordination.k8s.io",
            &lease,
            "-n",
            "default",
            "--type=merge",
            "-p",
            &patch,
        ])
        .unwrap();
    wait_until("B to stop its sources", Duration::from_secs(10), || {
        Ok(b.stderr().contains("the Lease was taken").then_some(()))
    })
    .unwrap();
    wait_for_holder(cluster, &lease, "replica-b", Duration::from_secs(30));
    wait_until("B to lead again", Duration::from_secs(10), || {
        Ok((b.stderr().matches("sources started").count() == 2).then_some(()))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let steps = producer.join().unwrap();

    // Every Event the apiserver holds is in one output or the other.
    let mut missing = BTreeMap::new();
    let mut expected = BTreeMap::new();
    let outcome = wait_until(
        "every Event to be exported",
        Duration::from_secs(60),
        || {
            expected = expected_event_spans(cluster, &namespace);
            let exported: BTreeSet<String> = a
                .spans()
                .iter()
                .chain(b.spans().iter())
                .map(span_key)
                .collect();
            missing = expected
                .iter()
                .filter(|(key, _)| !exported.contains(*key))
                .map(|(key, (what, _))| (key.clone(), what.clone()))
                .collect();
            Ok(missing.is_empty().then_some(()))
        },
    );
    if outcome.is_err() {
        let describe = |spans: Vec<Span>| {
            let mut lines: Vec<String> = spans
                .iter()
                .filter(|s| s.is_event())
                .map(|s| {
                    format!(
                        "{} {} {:?} count {:?} start {}",
                        span_key(s),
                        s.name,
                        s.attributes["eventName"],
                        s.attributes.get("count"),
                        s.json["startTimeUnixNano"]
                    )
                })
                .collect();
            lines.sort();
            lines.join("\n")
        };
        panic!(
            "{} of {} Events lost: {missing:#?}\nA:\n{a_log}\n{}\nB:\n{}\n{}",
            missing.len(),
            expected.len(),
            describe(a.spans()),
            b.stderr(),
            describe(b.spans()),
        );
    }

    // An Event exported more than once (by both, or by B in both its terms) is the same span each time: same
    // trace and span ids (by the key), the same content.
    let a_spans = a.spans();
    let b_spans = b.spans();
    let a_events: Vec<&Span> = a_spans.iter().filter(|s| s.is_event()).collect();
    let b_events: Vec<&Span> = b_spans.iter().filter(|s| s.is_event()).collect();
    let mut copies: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    for span in a_events.iter().chain(b_events.iter()) {
        copies.entry(span_key(span)).or_default().push(span);
    }
    let mut duplicates = 0;
    for same in copies.values() {
        duplicates += same.len() - 1;
        for copy in &same[1..] {
            assert_eq!(same[0].json, copy.json, "two copies of an Event differ");
        }
    }
    let across = a_events
        .iter()
        .filter(|span| {
            b_events
                .iter()
                .any(|other| span_key(other) == span_key(span))
        })
        .count();
    // Each Event version was exported under one id only: no second id for the same Event object version.
    let mut ids_by_version: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for span in a_events.iter().chain(b_events.iter()) {
        let version = (
            span.attributes["eventName"].clone(),
            span.attributes.get("count").cloned().unwrap_or_default(),
            span.json["startTimeUnixNano"].to_string(),
        );
        ids_by_version
            .entry(version)
            .or_default()
            .insert(span_key(span));
    }
    let split: Vec<_> = ids_by_version
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        split.is_empty(),
        "Event versions exported under two ids: {split:#?}"
    );
    // B resumed from the watermark A stored: no Event version A had stored as handled was taken again, and the
    // copies are the Events A exported after that store.
    let taken_again: Vec<&String> = b_events
        .iter()
        .filter_map(|span| expected.get(&span_key(span)))
        .map(|(_, dedup_key)| dedup_key)
        .filter(|dedup_key| stored_keys.contains(*dedup_key))
        .collect();
    assert!(
        taken_again.is_empty(),
        "B handled again Events A had stored as handled: {taken_again:?}"
    );
    assert!(
        across > 0,
        "A exported Events in the 3 s between its last watermark store and its death; B must have handled them \
         again"
    );
    let b_watched = b_spans.iter().filter(|s| s.is_watch()).count();
    assert!(
        b_watched > 0,
        "B's object watch filed nothing after the handover"
    );

    // A holder stopped with SIGTERM releases the Lease: a third replica takes it at its next read.
    let mut c = Replica::new(root.path(), cluster, "replica-c", &lease, &watermark);
    c.start();
    wait_until("C to follow B", Duration::from_secs(30), || {
        Ok(c.stderr().contains("following").then_some(()))
    })
    .unwrap();
    let b_summary = b.process.take().unwrap().stop();
    let released = wait_for_holder(cluster, &lease, "replica-c", Duration::from_secs(30));
    let c_summary = c.process.take().unwrap().stop();
    assert!(
        b_summary.contains(&format!(
            "leader election: Lease default/{lease}: no holder, led 2 terms"
        )),
        "{b_summary}"
    );
    assert!(c_summary.contains("led 1 terms"), "{c_summary}");
    assert_eq!(
        holder(cluster, &lease),
        None,
        "C released the Lease at its stop"
    );

    let events_seen = copies.len();
    let stored = expected
        .values()
        .filter(|(_, dedup_key)| stored_keys.contains(dedup_key))
        .count();
    fault_line(
        "leader election (kill -9 the holder)",
        &format!(
            "handover {:.1}s after the kill (lease {LEASE_SECONDS}s, renew {RENEW_SECONDS}s); {} Events in the \
             apiserver, {events_seen} seen ({} by the holder, {stored} of them in its stored watermark, {} by the \
             successor in 2 terms), lost 0, {duplicates} duplicate ids (identical spans; {across} across the kill \
             -9); {steps} kubectl writes; SIGTERM: Lease released, next holder in {:.1}s",
            handover.as_secs_f64(),
            expected.len(),
            a_events.len(),
            b_events.len(),
            released.as_secs_f64(),
        ),
    );
    // The bound the election promises: the dead holder's record is still for the lease duration, seen by a reader
    // that reads every renew period, plus the time of the writes.
    let bound = Duration::from_secs(LEASE_SECONDS + 2 * RENEW_SECONDS + 2);
    assert!(
        handover <= bound,
        "B took the Lease {handover:?} after the kill; the bound is {bound:?}"
    );
    assert!(
        released < Duration::from_secs(LEASE_SECONDS),
        "after a release C took the Lease only after {released:?}, as if it had expired"
    );
    cluster
        .kubectl(["delete", "namespace", &namespace, "--wait=false"])
        .unwrap();
}

/// Whether the service account `account` of `namespace` may `verb` `resource` there (`kubectl auth can-i`).
fn can(cluster: &TestCluster, namespace: &str, account: &str, verb: &str, resource: &str) -> bool {
    let user = format!("--as=system:serviceaccount:{namespace}:{account}");
    match cluster.kubectl(["auth", "can-i", verb, resource, "-n", namespace, &user]) {
        Ok(answer) => answer.trim() == "yes",
        // `no` is said with exit status 1.
        Err(err) => {
            assert!(
                err.to_string().contains("(exit status: 1)"),
                "kubectl auth can-i failed: {err}"
            );
            false
        }
    }
}

#[test]
fn the_chart_writes_the_section_and_grants_the_lease_and_no_more() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 (helm is built with the test cluster's binaries)");
        return;
    }
    let helm = chart_support::Helm::new();
    let namespace = format!("le-chart-{}", std::process::id());
    let sets = [
        "cluster=ci",
        "leaderElection.enabled=true",
        "leaderElection.leaseDuration=20s",
        "leaderElection.renewPeriod=5s",
    ];
    let docs = chart_support::documents(&helm.render("rel", &namespace, &sets));
    let config = chart_support::run_config(&docs, "rel");
    let election = &config["sources"]["leaderElection"];
    assert_eq!(election["lease"].as_str(), Some("rel-kelemetry"));
    assert_eq!(election["namespace"].as_str(), Some(namespace.as_str()));
    assert_eq!(election["leaseDuration"].as_str(), Some("20s"));
    let (ok, printed) = check(&serde_yaml_ng::to_string(&config).unwrap());
    assert!(
        ok,
        "kelemetry run --check refused the rendered file: {printed}"
    );
    // Nothing to elect for: refused at render time.
    let error = helm.render_error(
        "rel",
        &namespace,
        &[
            "cluster=ci",
            "leaderElection.enabled=true",
            "events.enabled=false",
            "objectWatch.enabled=false",
        ],
    );
    assert!(
        error.contains("leaderElection elects the pod that runs events and objectWatch"),
        "{error}"
    );

    // The Role, its binding and the service account in the test cluster: what they allow on Leases.
    let cluster = TestCluster::shared().unwrap();
    cluster
        .kubectl(["create", "namespace", &namespace])
        .unwrap();
    for kind in ["ServiceAccount", "Role", "RoleBinding"] {
        let object = chart_support::find(&docs, kind, "rel-kelemetry");
        cluster
            .kubectl_with_input(["apply", "-f", "-"], &object.to_string())
            .unwrap();
    }
    let lease = "leases.coordination.k8s.io/rel-kelemetry";
    let other = "leases.coordination.k8s.io/someone-elses";
    assert!(can(cluster, &namespace, "rel-kelemetry", "get", lease));
    assert!(can(cluster, &namespace, "rel-kelemetry", "update", lease));
    assert!(can(
        cluster,
        &namespace,
        "rel-kelemetry",
        "create",
        "leases.coordination.k8s.io"
    ));
    assert!(!can(cluster, &namespace, "rel-kelemetry", "update", other));
    assert!(!can(cluster, &namespace, "rel-kelemetry", "delete", lease));
    assert!(!can(cluster, &namespace, "rel-kelemetry", "patch", lease));
    assert!(!can(cluster, "default", "rel-kelemetry", "get", lease));
    cluster
        .kubectl(["delete", "namespace", &namespace, "--wait=false"])
        .unwrap();
}
