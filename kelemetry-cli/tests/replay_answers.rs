//! Answers that were wrong with real data (issue 16): time ranges over several days, object recordings without
//! their changes, and a static Pod's mirror reached by two relations.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use support::{ReplaySummary, kelemetry, line_after};

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle")
}

fn replay(files: &[&Path], extra: &[&str], store: &Path) -> String {
    let mut args = vec!["replay", "--quiet"];
    args.extend(extra);
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let (ok, stdout, stderr) = kelemetry(&args, store);
    assert!(ok, "replay failed:\n{stdout}\n{stderr}");
    stdout
}

/// A ConfigMap recorded at each of `times` (kspan's `# {"time": ...}` comments), one resource version each: the
/// first version is an observation, each later one a change (an activity).
fn config_map_versions(dir: &Path, times: &[&str]) -> PathBuf {
    let mut text = String::new();
    for (i, time) in times.iter().enumerate() {
        text.push_str(&format!(
            "---\n# {{\"time\": \"{time}\"}}\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, \
             namespace: default, uid: u1, resourceVersion: \"{}\", creationTimestamp: \"{}\"}}\ndata: {{step: \
             \"{i}\"}}\n",
            i + 1,
            times[0]
        ));
    }
    let path = dir.join("settings.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The header of `show`'s output, split into the root span's name and the range printed after the mode.
fn header(output: &str) -> (String, String) {
    let first = output.lines().next().unwrap();
    let (name, range) = first.rsplit_once("]  ").unwrap();
    let name = name.rsplit_once("  [").unwrap().0;
    (name.to_owned(), range.to_owned())
}

#[test]
fn a_range_over_two_days_prints_both_dates_and_starts_at_the_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = config_map_versions(
        dir.path(),
        &[
            "2018-12-16T19:39:00Z",
            "2018-12-16T19:39:02Z",
            "2018-12-17T12:21:40Z",
        ],
    );
    let stdout = replay(&[&file], &[], &store);
    let summary = ReplaySummary::parse(&stdout);
    // The first version is an observation, the two after it changes; the range starts at the first change.
    assert_eq!(summary.count("activities"), 2, "{stdout}");
    assert_eq!(summary.count("object observations"), 1, "{stdout}");
    let output = support::show(&store, "configmaps/default/settings");
    let (name, range) = header(&output);
    assert_eq!(
        range, "2018-12-16 19:39:02..2018-12-17 12:21:41",
        "{output}"
    );
    assert_eq!(
        name,
        "local configmaps settings / 2018-12-16 19:39:02..2018-12-17 12:21:41"
    );
    assert!(
        output.contains("diff: data.step \"0\" -> \"1\""),
        "{output}"
    );
    assert!(
        output.contains("diff: data.step \"1\" -> \"2\""),
        "{output}"
    );
}

#[test]
fn recordings_five_years_apart_start_at_the_first_activity() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = config_map_versions(
        dir.path(),
        &[
            "2019-03-01T10:15:29Z",
            "2019-03-01T10:15:30Z",
            "2024-03-01T10:15:30Z",
        ],
    );
    replay(&[&file], &[], &store);
    let output = support::show(&store, "configmaps/default/settings");
    let (name, range) = header(&output);
    assert_eq!(
        range, "2019-03-01 10:15:30..2024-03-01 10:15:31",
        "{output}"
    );
    assert!(name.ends_with(&format!(" / {range}")), "{name}");
}

#[test]
fn a_days_range_prints_its_date_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = config_map_versions(
        dir.path(),
        &[
            "2024-05-01T11:59:50Z",
            "2024-05-01T11:59:57Z",
            "2024-05-01T12:00:43Z",
        ],
    );
    replay(&[&file], &[], &store);
    let (name, range) = header(&support::show(&store, "configmaps/default/settings"));
    assert_eq!(range, "2024-05-01 11:59:57..12:00:44");
    assert_eq!(
        name,
        "local configmaps settings / 2024-05-01 11:59:57..12:00:44"
    );
}

/// The watch recording of the project's real cluster alone: the Deployment's versions become changes with their
/// diffs; with the audit log beside it, the audit records are the changes and the summary says the versions were
/// not compared.
#[test]
fn object_recordings_become_changes_with_diffs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let objects = recording().join("objects.watch.yaml");
    let stdout = replay(&[&objects], &[], &store);
    let summary = ReplaySummary::parse(&stdout);
    // 111 watch events: 11 objects first seen (observations), 100 later versions and deletions.
    assert_eq!(summary.count("records read"), 111, "{stdout}");
    assert_eq!(summary.count("activities"), 100, "{stdout}");
    assert_eq!(summary.count("object observations"), 11, "{stdout}");
    assert!(!stdout.contains("not compared"), "{stdout}");
    let output = support::show(&store, "deployments/default/demo");
    let scaled = output
        .lines()
        .filter(|line| line.trim() == "diff: spec.replicas 2 -> 4")
        .count();
    assert_eq!(scaled, 1, "{output}");
    let updates = output.matches("watch watch update").count();
    let deletions = output.matches("watch watch delete").count();
    assert!(
        updates > 0 && deletions == 1,
        "{updates} {deletions}\n{output}"
    );

    let with_audit = dir.path().join("with-audit");
    let stdout = replay(&[&recording()], &[], &with_audit);
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("object versions were not compared"))
            .count(),
        1,
        "{stdout}"
    );
    let output = support::show(&with_audit, "deployments/default/demo");
    assert_eq!(output.matches("watch watch").count(), 0, "{output}");
    assert!(output.contains("diff: spec.replicas 4 -> 2"), "{output}");
}

/// A static Pod's mirror is owned by its Node (`ownerReferences` kind Node, as the kubelet writes it) and runs on
/// it: the Node's tree holds it once, as owned (`children`), never as `node`.
#[test]
fn a_mirror_pod_hangs_under_its_node_as_owned() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("static.yaml");
    let mut text = String::from(
        "---\n# {\"time\": \"2024-05-01T12:00:00Z\"}\napiVersion: v1\nkind: Node\nmetadata: {name: cp, uid: n1}\n",
    );
    for (i, name) in ["etcd-cp", "kube-apiserver-cp", "kube-scheduler-cp"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "---\n# {{\"time\": \"2024-05-01T12:00:0{}Z\"}}\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  \
             namespace: kube-system\n  uid: p{i}\n  ownerReferences:\n  - {{apiVersion: v1, kind: Node, name: cp, \
             uid: n1, controller: true}}\nspec: {{nodeName: cp}}\n",
            i + 1
        ));
    }
    text.push_str(
        "---\n# {\"time\": \"2024-05-01T12:00:05Z\"}\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: \
         default, uid: p9}\nspec: {nodeName: cp}\n",
    );
    std::fs::write(&file, text).unwrap();
    replay(&[&file], &[], &store);
    let (ok, output, stderr) = kelemetry(&["show", "nodes/cp", "--full-tree"], &store);
    assert!(ok, "{stderr}");
    let mut classes: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("pods "))
        .map(|line| line.rsplit_once('(').map_or("", |(_, class)| class))
        .collect();
    classes.sort_unstable();
    assert_eq!(
        classes,
        ["children)", "children)", "children)", "node)"],
        "{output}"
    );
    let line = line_after(&output, "local nodes cp");
    assert!(line.contains("2024-05-01 12:00:00"), "{line}");
}
