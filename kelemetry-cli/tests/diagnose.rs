//! `kelemetry diagnose` over recordings of the real test control plane (`fixtures/recorded/`, made by
//! `scripts/cluster/record-scenario`): each scenario's pattern is found, with its evidence, and nothing else — the
//! healthy look-alikes in the same recordings, the deployment lifecycle and every file under `../shared/fixtures`
//! give no finding (docs/diagnose.md).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{fixtures, kelemetry};

fn recording(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/recorded")
        .join(name)
}

/// Replays `inputs` into a fresh store in `dir`.
fn replayed(dir: &Path, inputs: &[PathBuf]) -> PathBuf {
    let store = dir.join("store");
    let mut args = vec!["replay".to_owned()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out, err) = kelemetry(&args, &store);
    assert!(store.exists(), "replay wrote no store:\n{out}\n{err}");
    store
}

/// `kelemetry diagnose ARGS --json`'s findings.
fn findings(store: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["diagnose", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = kelemetry(&all, store);
    assert!(ok, "diagnose failed:\n{out}\n{err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The findings of a recording, as `(diagnoser, object)` pairs, sorted.
fn found(store: &Path) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = findings(store, &["--all"])
        .iter()
        .map(|f| {
            (
                f["diagnoser"].as_str().unwrap().to_owned(),
                f["object"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

fn finding<'a>(all: &'a [Value], diagnoser: &str, object: &str) -> &'a Value {
    all.iter()
        .find(|f| f["diagnoser"] == diagnoser && f["object"] == object)
        .unwrap_or_else(|| panic!("no {diagnoser} finding on {object}: {all:#?}"))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|(d, o)| ((*d).to_owned(), (*o).to_owned()))
        .collect();
    out.sort();
    out
}

#[test]
fn stuck_deletion_names_the_finalizer_and_leaves_the_released_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[recording("stuck-deletion")]);
    let stuck = "configmaps default/stuck (local)";
    assert_eq!(found(&store), pairs(&[("stuck-deletion", stuck)]));
    let all = findings(&store, &["configmaps/default/stuck"]);
    let f = finding(&all, "stuck-deletion", stuck);
    assert!(
        f["title"]
            .as_str()
            .unwrap()
            .contains("example.com/never-removed"),
        "{f}"
    );
    assert!(
        f["evidence"][0]["note"]
            .as_str()
            .unwrap()
            .starts_with("delete accepted"),
        "{f}"
    );
    assert!(findings(&store, &["configmaps/default/released"]).is_empty());
    // The text form names the finding and its evidence.
    let (ok, text, _) = kelemetry(&["diagnose", "configmaps/default/stuck"], &store);
    assert!(ok && text.starts_with("finding: deletion stuck:"), "{text}");
    assert!(
        text.contains("evidence:") && text.contains("check next:"),
        "{text}"
    );
    assert!(text.ends_with("1 finding in 1 objects\n"), "{text}");
}

#[test]
fn failed_requests_are_grouped_by_user_and_code_and_a_retried_conflict_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[recording("failed-requests")]);
    let target = "configmaps default/target (local)";
    let web = "deployments.apps default/web (local)";
    assert_eq!(
        found(&store),
        pairs(&[("failed-requests", target), ("failed-requests", web)])
    );
    let all = findings(&store, &["--all"]);
    let refused = finding(&all, "failed-requests", target);
    assert!(
        refused["title"]
            .as_str()
            .unwrap()
            .starts_with("alice: 5 requests failed with 403 Forbidden")
    );
    assert_eq!(refused["evidence"].as_array().unwrap().len(), 5);
    let invalid = finding(&all, "failed-requests", web);
    assert!(
        invalid["title"]
            .as_str()
            .unwrap()
            .contains("4 requests failed with 422 Invalid"),
        "{invalid}"
    );
}

#[test]
fn a_controller_fight_names_both_writers_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[recording("controller-fight")]);
    let all = findings(&store, &["--all"]);
    let fight = finding(
        &all,
        "controller-fight",
        "configmaps default/fought (local)",
    );
    let title = fight["title"].as_str().unwrap();
    assert!(
        title.contains("writer-a and writer-b keep changing data.mode"),
        "{title}"
    );
    assert!(fight["evidence"].as_array().unwrap().len() >= 3);
    for (diagnoser, object) in found(&store) {
        assert!(
            !object.contains("default/calm"),
            "the calm ConfigMap gave a {diagnoser} finding"
        );
    }
}

#[test]
fn warning_bursts_are_counted_per_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[recording("warning-burst")]);
    let all = findings(&store, &["--all"]);
    let scheduling: Vec<&Value> = all
        .iter()
        .filter(|f| f["title"].as_str().unwrap().contains("FailedScheduling"))
        .collect();
    assert_eq!(scheduling.len(), 3, "one per Pod of greedy: {all:#?}");
    assert!(
        scheduling
            .iter()
            .all(|f| f["object"].as_str().unwrap().contains("default/greedy-"))
    );
    let create = all
        .iter()
        .find(|f| f["title"].as_str().unwrap().contains("FailedCreate"))
        .unwrap();
    assert!(
        create["object"]
            .as_str()
            .unwrap()
            .contains("default/unbounded-"),
        "{create}"
    );
    for f in &all {
        let object = f["object"].as_str().unwrap();
        assert!(
            !object.contains("default/normal") && !object.contains("default/batch-"),
            "a healthy Pod gave a finding: {f}"
        );
    }
}

#[test]
fn healthy_recordings_give_no_finding() {
    for name in ["deployment-lifecycle", "apiserver-traces"] {
        let dir = tempfile::tempdir().unwrap();
        let store = replayed(dir.path(), &[recording(name)]);
        assert_eq!(found(&store), Vec::new(), "{name}");
    }
    let Some(shared) = fixtures() else { return };
    let mut files = Vec::new();
    let mut stack = vec![shared.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "README.md") {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() > 20,
        "{} files under {}",
        files.len(),
        shared.display()
    );
    let mut diagnosed = 0;
    for file in &files {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (_, _, _) = kelemetry(&["replay", file.to_str().unwrap()], &store);
        if !store.exists() {
            continue;
        }
        diagnosed += 1;
        assert_eq!(found(&store), Vec::new(), "{}", file.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[shared]);
    assert_eq!(
        found(&store),
        Vec::new(),
        "all of ../shared/fixtures together"
    );
    assert!(
        diagnosed > 20,
        "only {diagnosed} files replayed into a store"
    );
}

#[test]
fn an_elected_holder_that_stops_writing_is_found_by_its_lease_renewals() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[recording("stale-leader")]);
    let heartbeat = "configmaps default/heartbeat (local)";
    assert_eq!(found(&store), pairs(&[("stale-holder", heartbeat)]));
    let all = findings(&store, &["configmaps/default/heartbeat"]);
    let f = finding(&all, "stale-holder", heartbeat);
    let title = f["title"].as_str().unwrap();
    assert!(
        title.starts_with("system:serviceaccount:default:demo-controller renews leases.coordination.k8s.io default/demo-controller"),
        "{title}"
    );
    assert!(title.contains("(it wrote every 5 s before)"), "{title}");
    let evidence = f["evidence"].as_array().unwrap();
    assert!(evidence.iter().any(|e| e["note"] == "the last write"));
    assert!(evidence.iter().any(|e| e["note"] == "Lease renewed"));
}

#[test]
fn creates_the_owner_never_counts_are_found_and_a_steady_replicaset_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[recording("unobserved-creates")]);
    let flaky = "replicasets.apps default/flaky (local)";
    let all = findings(&store, &["--all"]);
    let f = finding(&all, "unobserved-creates", flaky);
    assert!(
        f["title"]
            .as_str()
            .unwrap()
            .contains("created 23 children but never counted more than 0 (it wants 1)"),
        "{f}"
    );
    assert_eq!(found(&store), pairs(&[("unobserved-creates", flaky)]));
    assert!(findings(&store, &["replicasets/default/steady"]).is_empty());
}

#[test]
fn a_hot_loop_names_its_writer_and_the_busiest_minute() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), &[recording("controller-fight")]);
    let hot = "configmaps default/hot (local)";
    let fought = "configmaps default/fought (local)";
    assert_eq!(
        found(&store),
        pairs(&[("controller-fight", fought), ("hot-loop", hot)])
    );
    let all = findings(&store, &["configmaps/default/hot"]);
    let f = finding(&all, "hot-loop", hot);
    let title = f["title"].as_str().unwrap();
    assert!(
        title.starts_with("hot loop: writer-a wrote configmaps default/hot (local)"),
        "{title}"
    );
    assert!(
        f["explanation"]
            .as_str()
            .unwrap()
            .contains("metadata.annotations"),
        "names the field that changed: {f}"
    );
}
