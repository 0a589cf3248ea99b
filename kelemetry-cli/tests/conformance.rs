//! Conformance over real recorded data (`../shared/fixtures`): the `kelemetry` binary replays recordings made by
//! real clusters, and the store and the printed tree must say what happened.
//!
//! The folder is found through `KELEMETRY_FIXTURES`, else beside the repository. Without it the tests say so and
//! pass, unless `KELEMETRY_REQUIRE_FIXTURES=1` (as in CI).

#![allow(clippy::unwrap_used)]

mod support;

use support::{ReplaySummary, fixture, fixtures, kelemetry};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kelemetry_core::audit::{AuditOutcome, map_event, parse_document};
use kelemetry_core::{ObjectKey, SpanKind, SpanRecord};
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{DisplayMode, ViewNode, ViewRequest, assemble, display};
use kelemetry_store::SpanStore;

fn replay(files: &[PathBuf], store: &Path) -> String {
    let mut args = vec!["replay", "--quiet"];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let (ok, stdout, stderr) = kelemetry(&args, store);
    assert!(ok, "replay failed:\n{stdout}\n{stderr}");
    stdout
}

fn names(node: &ViewNode) -> Vec<String> {
    node.children
        .iter()
        .map(|c| c.history.key.name.to_string())
        .collect()
}

fn titles(node: &ViewNode) -> BTreeSet<String> {
    node.history
        .activities
        .iter()
        .map(|a| a.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kspan_deployment_tree() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let summary = replay(
        &[fixtures.join("events/kspan-kind-2021/deployment-2-pods.yaml")],
        &store,
    );
    let counted = ReplaySummary::parse(&summary);
    // The recording's 26 records: 19 Events and 7 objects, nothing rejected.
    for (label, count) in [
        ("records read", 26),
        ("activities", 19),
        ("object observations", 7),
        ("skipped", 0),
        ("rejected", 0),
    ] {
        assert_eq!(counted.count(label), count, "{label}:\n{summary}");
    }

    let (ok, stdout, stderr) =
        kelemetry(&["show", "deployments/default/px", "--full-tree"], &store);
    assert!(ok, "{stderr}");
    for expected in [
        "local deployments px",
        "├── replicasets px-5d567cc74c  (children)",
        "└── replicasets px-7df978b9bf  (children)",
        "pods px-5d567cc74c-ss4lb",
        "pods px-7df978b9bf-bfdrj",
        "event ScalingReplicaSet",
        "message: Scaled up replica set px-5d567cc74c to 1",
        "event Killing",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }

    let reader = SpanStore::open_read_only(&store).unwrap();
    let mode = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(Modifier::FullTree),
    };
    let mut request = ViewRequest::new(ObjectKey::new(
        "local",
        "apps",
        "deployments",
        "default",
        "px",
    ));
    request.selector = mode.selector();
    let view = assemble(&reader, &request).await.unwrap();
    let root = &view.root;
    assert_eq!(root.history.key.resource, "deployments");
    assert_eq!(
        titles(root),
        BTreeSet::from(["ScalingReplicaSet".to_owned()])
    );
    assert_eq!(root.history.activities.len(), 4);
    assert_eq!(names(root), ["px-5d567cc74c", "px-7df978b9bf"]);
    let new_rs = &root.children[0];
    let old_rs = &root.children[1];
    assert_eq!(
        titles(new_rs),
        BTreeSet::from(["SuccessfulCreate".to_owned()])
    );
    assert_eq!(
        titles(old_rs),
        BTreeSet::from(["SuccessfulDelete".to_owned()])
    );
    assert_eq!(
        names(new_rs),
        ["px-5d567cc74c-ss4lb", "px-5d567cc74c-pmvzr"]
    );
    assert_eq!(
        names(old_rs),
        ["px-7df978b9bf-jm22q", "px-7df978b9bf-bfdrj"]
    );
    let started = &new_rs.children[0];
    for title in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(
            titles(started).contains(title),
            "{title} missing under the pod"
        );
    }
    for pod in &old_rs.children {
        assert_eq!(titles(pod), BTreeSet::from(["Killing".to_owned()]));
    }

    // The display-mode id travels in the trace id; the tracing mode puts events as logs on one span per object.
    let trace = display(&view, mode);
    assert!(format!("{:032x}", trace.trace_id).starts_with("ff21000000e1e3e7"));
    assert_eq!(trace.spans.len(), 7);
    assert_eq!(trace.spans.iter().filter(|s| s.parent.is_none()).count(), 1);
    assert_eq!(trace.spans[0].logs.len(), 4);

    // Without --full-tree, the Deployment alone.
    let (ok, stdout, _) = kelemetry(&["show", "deployments/default/px"], &store);
    assert!(ok);
    assert!(!stdout.contains("replicasets"), "{stdout}");
    // From a Pod, its ancestors.
    let (ok, stdout, _) = kelemetry(
        &["show", "pods/default/px-7df978b9bf-bfdrj", "--ancestors"],
        &store,
    );
    assert!(ok);
    assert!(stdout.starts_with("local deployments px"), "{stdout}");
    assert!(
        stdout.contains("replicasets px-7df978b9bf")
            && !stdout.contains("replicasets px-5d567cc74c"),
        "{stdout}"
    );
}

/// Every `.json` and `.log` file under `dir`, sorted (the audit policy beside them is not a recording).
fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "log")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// What one audit file holds, counted by core's parser and mapping, independently of the binary: each non-blank
/// line is one document, whose events are activities or skipped by reason, or which is rejected whole.
#[derive(Debug, Default, PartialEq, Eq)]
struct AuditAccount {
    records: u64,
    activities: u64,
    skipped: BTreeMap<String, u64>,
    rejected: u64,
}

impl AuditAccount {
    fn of(path: &Path) -> Self {
        let mut account = Self::default();
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(events) = parse_document(line.as_bytes()) else {
                account.records += 1;
                account.rejected += 1;
                continue;
            };
            for event in events {
                account.records += 1;
                match map_event(event, "local") {
                    Ok(AuditOutcome::Activity(_)) => account.activities += 1,
                    Ok(AuditOutcome::Skipped(reason)) => {
                        *account
                            .skipped
                            .entry(reason.as_str().to_owned())
                            .or_default() += 1;
                    }
                    Err(_) => account.rejected += 1,
                }
            }
        }
        account
    }

    /// What the binary printed for the file, in the same terms.
    fn printed(summary: &ReplaySummary) -> Self {
        Self {
            records: summary.count("records read"),
            activities: summary.count("activities"),
            skipped: summary.skipped.clone(),
            rejected: summary.count("rejected"),
        }
    }

    fn add(&mut self, other: &Self) {
        self.records += other.records;
        self.activities += other.activities;
        for (reason, count) in &other.skipped {
            *self.skipped.entry(reason.clone()).or_default() += count;
        }
        self.rejected += other.rejected;
    }
}

/// Each audit fixture file replayed on its own: the binary's account of it is exactly what core's mapping makes of
/// it, and adds up (records read = activities + skipped by reason + rejected); a file that gave nothing fails the
/// replay.
#[test]
fn every_audit_fixture_file_is_accounted_for() {
    let Some(audit) = fixture("audit") else {
        return;
    };
    let files = audit_files(&audit);
    assert_eq!(files.len(), 48);
    let dir = tempfile::tempdir().unwrap();
    let mut total = AuditAccount::default();
    for (index, file) in files.iter().enumerate() {
        let name = file.strip_prefix(&audit).unwrap().display().to_string();
        let store = dir.path().join(format!("store-{index}"));
        let (ok, stdout, stderr) =
            kelemetry(&["replay", "--quiet", file.to_str().unwrap()], &store);
        let summary = ReplaySummary::parse(&stdout);
        let printed = AuditAccount::printed(&summary);
        let expected = AuditAccount::of(file);
        assert_eq!(printed, expected, "{name}:\n{stdout}");
        assert_eq!(summary.count("file"), 1, "{name}");
        assert_eq!(
            summary.count("records read"),
            summary.count("activities") + summary.count("skipped") + summary.count("rejected"),
            "{name}: every record is an activity, skipped or rejected:\n{stdout}"
        );
        assert_eq!(
            summary.count("skipped"),
            summary.skipped.values().sum::<u64>(),
            "{name}"
        );
        assert_eq!(summary.count("object observations"), 0, "{name}");
        assert_eq!(summary.count("filtered"), 0, "{name}");
        // A replay that accepted nothing fails, saying so.
        assert_eq!(ok, expected.activities > 0, "{name}:\n{stdout}\n{stderr}");
        total.add(&printed);
    }
    assert_eq!(
        total,
        AuditAccount {
            records: 89,
            activities: 48,
            skipped: BTreeMap::from([
                ("stage not ResponseComplete".to_owned(), 2),
                ("unsupported verb".to_owned(), 38),
            ]),
            rejected: 1,
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_audit_fixture_replays_and_nothing_is_lost() {
    let Some(audit) = fixture("audit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let stdout = replay(&[audit], &store);
    let summary = ReplaySummary::parse(&stdout);
    // The folder at once: the same account as its files one by one.
    for (label, count) in [
        ("file", 48),
        ("records read", 89),
        ("activities", 48),
        ("object observations", 0),
        ("skipped", 40),
        ("filtered", 0),
        ("rejected", 1),
    ] {
        assert_eq!(summary.count(label), count, "{label}:\n{stdout}");
    }
    // The one malformed record is reported with its file and line; nothing else is rejected.
    assert_eq!(
        summary.rejected,
        BTreeMap::from([("missing kind".to_owned(), 1)]),
        "{stdout}"
    );
    assert_eq!(stdout.matches("fal_01_003.json:1:").count(), 1, "{stdout}");

    // The deployment's create and delete, each once, under the Deployment.
    let (ok, stdout, stderr) = kelemetry(&["show", "deployments/default/nginx-deployment"], &store);
    assert!(ok, "{stderr}");
    for title in ["audit minikube-user create", "audit minikube-user delete"] {
        assert_eq!(stdout.matches(title).count(), 1, "{title}:\n{stdout}");
    }
    assert_eq!(stdout.matches("audit ").count(), 2, "{stdout}");
    // Where the audit level carried the response, a create carries the object it made.
    let (ok, stdout, stderr) = kelemetry(&["show", "configmaps/default/my-config"], &store);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("snapshot: {"), "{stdout}");

    let store = SpanStore::open_read_only(&store).unwrap();
    let everything = store_text(&store);
    assert!(everything.contains("nginx-deployment"));
}

/// Every stored span as JSON, concatenated.
fn store_text(store: &SpanStore) -> String {
    store
        .spans()
        .unwrap()
        .map(|s| serde_json::to_string(&s.unwrap()).unwrap())
        .collect()
}

/// The recorded Secret events are at level Metadata (no bodies). So that the check can fail, the recorded create
/// and delete of `example-secret` are replayed as a `RequestResponse` policy would have written them: with the
/// Secret in `responseObject`, and an update in between that changes a value.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_value_reaches_the_store() {
    let Some(fixtures) = fixtures() else { return };
    let falco = fixtures.join("audit/falco-minikube-2018");
    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(falco.join(name)).unwrap();
        serde_json::from_str(text.lines().find(|l| !l.trim().is_empty()).unwrap()).unwrap()
    };
    let (create, delete) = (read("create_secret.json"), read("delete_secret.json"));
    let secret = |rv: &str, password: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "example-secret", "namespace": "default", "uid": "7d5e3c1a", "resourceVersion": rv,
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                             format!("{{\"data\":{{\"password\":\"{password}\"}}}}")}},
            "data": {"password": password, "username": "YWRtaW4tdXNlcg=="},
        })
    };
    let mut events = Vec::new();
    let mut created = create.clone();
    created["level"] = "RequestResponse".into();
    created["responseObject"] = secret("100", "Zmlyc3QtcGFzc3dvcmQ=");
    events.push(created.clone());
    let mut updated = created.clone();
    updated["auditID"] = "0b7f3c52-secret-update".into();
    updated["verb"] = "update".into();
    updated["objectRef"]["resourceVersion"] = "100".into();
    updated["requestReceivedTimestamp"] = "2020-04-21T17:58:00.000000Z".into();
    updated["stageTimestamp"] = "2020-04-21T17:58:00.010000Z".into();
    updated["responseStatus"]["code"] = 200.into();
    updated["responseObject"] = secret("101", "c2Vjb25kLXBhc3N3b3Jk");
    events.push(updated);
    let mut deleted = delete.clone();
    deleted["level"] = "RequestResponse".into();
    deleted["responseObject"] = secret("102", "c2Vjb25kLXBhc3N3b3Jk");
    events.push(deleted);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("secrets.log");
    let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    std::fs::write(&log, lines.join("\n")).unwrap();
    let store_dir = dir.path().join("store");
    let summary = replay(&[log], &store_dir);
    let counted = ReplaySummary::parse(&summary);
    assert_eq!(
        (counted.count("activities"), counted.count("rejected")),
        (3, 0),
        "{summary}"
    );

    let store = SpanStore::open_read_only(&store_dir).unwrap();
    let everything = store_text(&store);
    assert!(everything.contains("example-secret"));
    assert!(
        everything.contains("snapshot") || everything.contains("objectSnapshot"),
        "snapshots were written"
    );
    for value in [
        "Zmlyc3QtcGFzc3dvcmQ=",
        "c2Vjb25kLXBhc3N3b3Jk",
        "YWRtaW4tdXNlcg==",
    ] {
        assert!(
            !everything.contains(value),
            "secret value {value:?} reached the store"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_twice_leaves_the_same_spans() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let files = [
        fixtures.join("events/kspan-kind-2021/deployment-2-pods.yaml"),
        fixtures.join("audit"),
    ];
    // Every span whole (ids, parent, kind, name, times, attributes, logs; link spans included), in id order.
    let spans = |store: &Path| {
        let store = SpanStore::open_read_only(store).unwrap();
        let mut spans: Vec<SpanRecord> = store.spans().unwrap().map(Result::unwrap).collect();
        spans.sort_by_key(|s| (s.trace_id, s.span_id));
        spans
    };
    replay(&files, &store_dir);
    let first = spans(&store_dir);
    replay(&files, &store_dir);
    let second = spans(&store_dir);
    // Positive evidence that both replays wrote the recordings' objects, links and activities.
    let of_kind = |wanted: fn(&SpanKind) -> bool| first.iter().filter(|s| wanted(&s.kind)).count();
    let objects = of_kind(|k| *k == SpanKind::Object);
    let links = of_kind(|k| *k == SpanKind::Link);
    let activities = of_kind(|k| matches!(k, SpanKind::Activity(_)));
    assert!(
        objects > 10 && links > 10 && activities > 10,
        "{objects} object, {links} link, {activities} activity spans"
    );
    assert_eq!(first.len(), second.len());
    for (one, two) in first.iter().zip(&second) {
        assert_eq!(one, two, "a span changed between the two replays");
    }
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (ok, _, stderr) = kelemetry(&["replay", "--quiet", "no/such/file.log"], &store);
    assert!(!ok);
    assert!(stderr.contains("no/such/file.log"), "{stderr}");
    let (ok, _, stderr) = kelemetry(&["show", "deployments/default/x"], &store);
    assert!(!ok);
    assert!(stderr.contains("no store at"), "{stderr}");
    let (ok, _, stderr) = kelemetry(&["show", "a/b/c/d"], &store);
    assert!(!ok);
    assert!(stderr.contains("RESOURCE/NAMESPACE/NAME"), "{stderr}");
}
