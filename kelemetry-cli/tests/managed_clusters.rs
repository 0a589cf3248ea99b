//! Audit logs as GKE, AKS and EKS deliver them (issue 12), replayed by the `kelemetry` binary from the records
//! under `fixtures/managed` (see its README for where each comes from) and read back from the store: each lands on
//! the right object of the right cluster, with the right user, verb, subresource and time, and the replay
//! summary counts the records of each envelope.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kelemetry_core::ObjectKey;
use kelemetry_query::display::{BaseMode, DisplayLog, Modifier};
use kelemetry_query::{DisplayMode, ViewRequest, assemble, display};
use kelemetry_store::SpanStore;
use support::{ReplaySummary, counts, kelemetry, line_after};

fn managed(file: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/managed")
        .join(file);
    path.display().to_string()
}

/// `kelemetry replay --quiet ARGS` into `store`; a panic with its output when it fails.
fn replay(args: &[&str], store: &Path) -> ReplaySummary {
    let mut all = vec!["replay", "--quiet"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = kelemetry(&all, store);
    assert!(ok, "{stdout}\n{stderr}");
    ReplaySummary::parse(&stdout)
}

/// The `records by envelope: gke 3, native 10` line of a replay's output, by envelope.
fn by_envelope(stdout: &str) -> BTreeMap<String, u64> {
    line_after(stdout, "records by envelope: ")
        .split(", ")
        .map(|piece| {
            let (envelope, count) = piece.trim().rsplit_once(' ').expect("ENVELOPE N");
            (envelope.to_owned(), count.parse().expect("a count"))
        })
        .collect()
}

/// What the store holds about one object, oldest first: `(time, audit title, diff)`.
async fn activities(store: &Path, key: ObjectKey) -> Vec<(String, String, Option<String>)> {
    let reader = SpanStore::open_read_only(store).unwrap();
    let mode = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(Modifier::FullTree),
    };
    let mut request = ViewRequest::new(key.clone());
    request.selector = mode.selector();
    let trace = display(&assemble(&reader, &request).await.unwrap(), mode);
    let span = trace
        .spans
        .iter()
        .find(|span| {
            span.tags
                .contains(&("resource".into(), key.resource.clone()))
                && span.tags.contains(&("name".into(), key.name.clone()))
        })
        .unwrap_or_else(|| panic!("no span of {key:?} in {trace:#?}"));
    let mut logs: Vec<&DisplayLog> = span
        .logs
        .iter()
        .filter(|log| log.field("audit").is_some())
        .collect();
    logs.sort_by_key(|log| log.time);
    logs.iter()
        .map(|log| {
            (
                log.time.to_string(),
                log.field("audit").unwrap().to_owned(),
                log.field("diff").map(str::to_owned),
            )
        })
        .collect()
}

/// The four recorded events every derived AKS/EKS/YAML fixture carries, as the store must show them in `cluster`.
async fn assert_lifecycle(store: &Path, cluster: &str) {
    let demo = ObjectKey::new(cluster, "apps", "deployments", "default", "demo");
    let deployment = activities(store, demo).await;
    let titles: Vec<(&str, &str)> = deployment
        .iter()
        .map(|(time, title, _)| (time.as_str(), title.as_str()))
        .collect();
    assert_eq!(
        titles,
        [
            ("2026-11-28T01:34:58.284549Z", "kelemetry-admin create"),
            ("2026-11-28T01:35:18.701003Z", "kelemetry-admin delete"),
        ],
        "{deployment:#?}"
    );
    let pod = ObjectKey::new(cluster, "", "pods", "default", "demo-fd6c564b7-lvvlz");
    let pod = activities(store, pod).await;
    assert_eq!(pod.len(), 2, "{pod:#?}");
    assert_eq!(
        (pod[0].0.as_str(), pod[0].1.as_str()),
        (
            "2026-11-28T01:34:58.33295Z",
            "system:serviceaccount:kube-system:replicaset-controller create"
        ),
        "{pod:#?}"
    );
    assert_eq!(
        (pod[1].0.as_str(), pod[1].1.as_str()),
        ("2026-11-28T01:34:58.356731Z", "kwok-admin patch status"),
        "{pod:#?}"
    );
    // The status patch's diff: its response against the create's response.
    let diff = pod[1].2.as_deref().expect("a diff on the status patch");
    let lines: Vec<&str> = diff.lines().map(str::trim).collect();
    for wanted in [
        r#"spec.nodeName null -> "kwok-node-0""#,
        r#"status.phase "Pending" -> "Running""#,
        r#"status.podIP null -> "10.244.0.1""#,
    ] {
        assert!(lines.contains(&wanted), "{wanted} not in:\n{diff}");
    }
}

const GKE_POD_NAMESPACE: &str = "1-2-deployment-update";
const GKE_POD: &str = "nginx-deployment-surge-8655b4b8c5-xf5f4";
const GKE_NODE: &str = "system:node:gke-sample-cluster-default-abcdefgh-abcd";

/// The three KHI LogEntries (a create and two status patches of one Pod), as the store must show them.
async fn assert_gke_pod(store: &Path) {
    let key = ObjectKey::new("sample-cluster", "", "pods", GKE_POD_NAMESPACE, GKE_POD);
    let pod = activities(store, key).await;
    // The publisher gave all three entries the same time, so the store's order among them is not theirs: compare
    // them sorted.
    let mut titles: Vec<(&str, &str)> = pod
        .iter()
        .map(|(time, title, _)| (time.as_str(), title.as_str()))
        .collect();
    titles.sort_unstable();
    let patch = format!("{GKE_NODE} patch status");
    assert_eq!(
        titles,
        [
            ("2024-01-01T01:00:00Z", patch.as_str()),
            ("2024-01-01T01:00:00Z", patch.as_str()),
            (
                "2024-01-01T01:00:00Z",
                "system:serviceaccount:kube-system:replicaset-controller create"
            ),
        ],
        "{pod:#?}"
    );
    // The patches carry their request (a strategic merge patch) but no response: nothing to diff against.
    assert!(pod.iter().all(|(_, _, diff)| diff.is_none()), "{pod:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gke_yaml_log_entries_land_on_the_pod_of_their_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let files = [
        managed("gke/pod-create.yaml"),
        managed("gke/pod-status-patch.yaml"),
        managed("gke/pod-status-patch-2.yaml"),
    ];
    let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
    // The envelope's cluster wins over the default one.
    args.extend(["--cluster", "not-this-one"]);
    let (ok, stdout, stderr) = kelemetry(&[&["replay", "--quiet"][..], &args].concat(), &store);
    assert!(ok, "{stdout}\n{stderr}");
    let summary = ReplaySummary::parse(&stdout);
    assert_eq!(summary.count("records read"), 3, "{stdout}");
    assert_eq!(summary.count("activities"), 3, "{stdout}");
    assert_eq!(summary.count("rejected"), 0, "{stdout}");
    assert_eq!(by_envelope(&stdout), BTreeMap::from([("gke".into(), 3)]));
    assert_gke_pod(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gke_json_log_entries_pretty_and_as_json_lines_read_alike() {
    for files in [
        vec![
            managed("gke/pod-create.json"),
            managed("gke/pod-status-patch.json"),
            managed("gke/pod-status-patch-2.json"),
        ],
        vec![managed("gke/export.jsonl")],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let args: Vec<&str> = files.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = kelemetry(&[&["replay", "--quiet"][..], &args].concat(), &store);
        assert!(ok, "{files:?}: {stdout}\n{stderr}");
        let summary = ReplaySummary::parse(&stdout);
        assert_eq!(summary.count("activities"), 3, "{stdout}");
        assert_eq!(summary.count("rejected"), 0, "{stdout}");
        assert_eq!(by_envelope(&stdout), BTreeMap::from([("gke".into(), 3)]));
        assert_gke_pod(&store).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn aks_records_with_the_log_as_a_string_and_as_an_object() {
    for file in [
        "aks/storage-log-string.jsonl",
        "aks/eventhub-log-object.json",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (ok, stdout, stderr) = kelemetry(&["replay", "--quiet", &managed(file)], &store);
        assert!(ok, "{file}: {stdout}\n{stderr}");
        let summary = ReplaySummary::parse(&stdout);
        assert_eq!(summary.count("activities"), 4, "{file}: {stdout}");
        assert_eq!(summary.count("rejected"), 0, "{file}: {stdout}");
        assert_eq!(by_envelope(&stdout), BTreeMap::from([("aks".into(), 4)]));
        // The cluster is the last segment of resourceId (`…/managedClusters/cluster`).
        assert_lifecycle(&store, "cluster").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eks_cloudwatch_events_and_subscription_records() {
    // CloudWatch events as `aws logs filter-log-events` lists them name no log group: the default cluster is used.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = managed("eks/cloudwatch-events.jsonl");
    let (ok, stdout, stderr) = kelemetry(
        &["replay", "--quiet", "--cluster", "eks-prod", &file],
        &store,
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        ReplaySummary::parse(&stdout).count("activities"),
        4,
        "{stdout}"
    );
    assert_eq!(
        by_envelope(&stdout),
        BTreeMap::from([("eks-cloudwatch".into(), 4)])
    );
    assert_lifecycle(&store, "eks-prod").await;

    // The subscription record, decoded and as Kinesis/Firehose deliver it (gzip, base64): the cluster comes from
    // its log group `/aws/eks/my-cluster/cluster`.
    for file in [
        "eks/subscription-record.json",
        "eks/subscription-record.b64",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (ok, stdout, stderr) = kelemetry(&["replay", "--quiet", &managed(file)], &store);
        assert!(ok, "{file}: {stdout}\n{stderr}");
        assert_eq!(
            ReplaySummary::parse(&stdout).count("activities"),
            4,
            "{file}: {stdout}"
        );
        assert_eq!(
            by_envelope(&stdout),
            BTreeMap::from([("eks-subscription".into(), 4)]),
            "{file}"
        );
        assert_lifecycle(&store, "my-cluster").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_written_as_yaml_single_and_multi_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let single = replay(
        &[
            "--cluster",
            "yaml",
            &managed("audit-yaml/pod-status-patch.yaml"),
        ],
        &store,
    );
    assert_eq!(single.count("records read"), 1);
    assert_eq!(single.count("activities"), 1);
    assert_eq!(single.count("rejected"), 0);
    let pod = ObjectKey::new("yaml", "", "pods", "default", "demo-fd6c564b7-lvvlz");
    assert_eq!(
        activities(&store, pod).await,
        [(
            "2026-11-28T01:34:58.356731Z".to_owned(),
            "kwok-admin patch status".to_owned(),
            None
        )]
    );

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (ok, stdout, stderr) = kelemetry(
        &[
            "replay",
            "--quiet",
            "--cluster",
            "yaml",
            &managed("audit-yaml/four-events.yaml"),
        ],
        &store,
    );
    assert!(ok, "{stdout}\n{stderr}");
    let summary = ReplaySummary::parse(&stdout);
    assert_eq!(summary.count("records read"), 4, "{stdout}");
    assert_eq!(summary.count("activities"), 4, "{stdout}");
    assert_eq!(by_envelope(&stdout), BTreeMap::from([("native".into(), 4)]));
    assert_lifecycle(&store, "yaml").await;
}

/// One replay of GKE, AKS and EKS records: each lands in the cluster its envelope names, all in one store. (No
/// permissively licensed export of two GKE clusters was found; see fixtures/managed/README.md.)
#[tokio::test(flavor = "multi_thread")]
async fn records_of_several_clusters_land_as_several_clusters_in_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let files = [
        managed("gke/export.jsonl"),
        managed("aks/storage-log-string.jsonl"),
        managed("eks/subscription-record.b64"),
    ];
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = kelemetry(&[&["replay", "--quiet"][..], &args].concat(), &store);
    assert!(ok, "{stdout}\n{stderr}");
    let summary = ReplaySummary::parse(&stdout);
    assert_eq!(summary.count("activities"), 11, "{stdout}");
    assert_eq!(
        by_envelope(&stdout),
        BTreeMap::from([
            ("aks".into(), 4),
            ("eks-subscription".into(), 4),
            ("gke".into(), 3)
        ])
    );
    assert_gke_pod(&store).await;
    assert_lifecycle(&store, "cluster").await;
    assert_lifecycle(&store, "my-cluster").await;
}

#[test]
fn a_replay_where_every_record_is_rejected_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    // The published AKS record whose audit event has no timestamp at all, and a real GKE entry without its
    // methodName.
    let entry = std::fs::read_to_string(managed("gke/export.jsonl")).unwrap();
    let mut entry: serde_json::Value = serde_json::from_str(entry.lines().next().unwrap()).unwrap();
    entry["protoPayload"]
        .as_object_mut()
        .unwrap()
        .remove("methodName");
    let broken = dir.path().join("gke-without-method.json");
    std::fs::write(&broken, format!("{entry}\n")).unwrap();
    let store = dir.path().join("store");
    let (ok, stdout, stderr) = kelemetry(
        &[
            "replay",
            "--quiet",
            &managed("aks/panther-privileged-pod.json"),
            &broken.display().to_string(),
        ],
        &store,
    );
    assert!(!ok, "{stdout}\n{stderr}");
    let summary = ReplaySummary::parse(&stdout);
    assert_eq!(summary.count("records read"), 2, "{stdout}");
    assert_eq!(summary.count("rejected"), 2, "{stdout}");
    assert_eq!(summary.count("activities"), 0, "{stdout}");
    assert!(
        stdout.contains("gke: protoPayload.methodName missing"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("panther-privileged-pod.json:") && line.contains("aks")),
        "the AKS rejection names its envelope: {stdout}"
    );
    let said = counts(line_after(&stderr, "kelemetry: nothing accepted: "));
    assert_eq!(said["rejected"], 2, "{stderr}");
}
