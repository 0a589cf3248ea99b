//! `AuditFileSource` against real audit logs: falco's minikube traces (one malformed) and audit2rbac's demo log.

mod common;

use std::io::Write;

use common::run;
use kelemetry_core::SourceKind;
use kelemetry_sources::AuditFileSource;
use kelemetry_testkit::fixture;

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

fn non_blank_lines(text: &str) -> u64 {
    text.lines().filter(|line| !line.trim().is_empty()).count() as u64
}

#[tokio::test]
async fn every_audit_fixture_reads() {
    let Some(audit) = fixture("audit") else {
        return;
    };
    let mut files = Vec::new();
    for folder in ["falco-minikube-2018", "audit2rbac-2017"] {
        for entry in std::fs::read_dir(audit.join(folder)).expect("folder") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 49);
    let mut activities = 0;
    for path in files {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("")
            .to_owned();
        let text = std::fs::read_to_string(&path).expect("text");
        let source = AuditFileSource::new(&path, "minikube");
        let counters = source.counters();
        let sink = run(Box::new(source)).await;
        let report = counters.snapshot();
        let rejections = sink.rejections();
        for rejection in &rejections {
            assert!(
                rejection
                    .origin
                    .starts_with(&format!("{}:", path.display())),
                "{rejection}"
            );
        }
        assert_eq!(report.bytes, text.len() as u64, "{name}");
        assert_eq!(
            report.sent + report.skipped_total() + report.rejected_total(),
            report.records,
            "{name}"
        );
        match name.as_str() {
            "fal_01_003.json" => {
                assert_eq!(report.records, 1);
                assert_eq!(rejections.len(), 1);
                assert_eq!(rejections[0].origin, format!("{}:1", path.display()));
                assert_eq!(rejections[0].reason, "not an audit event");
                assert!(
                    rejections[0].detail.contains("kind 0"),
                    "{}",
                    rejections[0].detail
                );
            }
            "demo-policy.yaml" => {
                // A policy, not a log: one YAML document, so one rejection at its first line; nothing is sent.
                assert_eq!(report.sent, 0);
                assert_eq!(report.records, 1);
                assert_eq!(rejections.len(), 1);
                assert_eq!(rejections[0].origin, format!("{}:1", path.display()));
                assert_eq!(rejections[0].reason, "not an audit event");
                assert_eq!(
                    rejections[0].detail,
                    "kind \"Policy\" is not an audit Event or EventList"
                );
            }
            "demo.log" => {
                // Only reads (get, list), some of them denied: all skipped, none rejected.
                assert_eq!(report.records, 37);
                assert_eq!(rejections, vec![]);
                assert_eq!(report.sent, 0);
                assert_eq!(
                    report.skipped.get("unsupported verb"),
                    Some(&37),
                    "{report:?}"
                );
            }
            _ => {
                assert_eq!(rejections, vec![], "{name}");
                assert_eq!(report.records, non_blank_lines(&text), "{name}");
            }
        }
        for activity in sink.activities() {
            assert_eq!(activity.source, SourceKind::Audit);
            assert_eq!(activity.object.key().cluster, "minikube");
            activities += 1;
        }
    }
    assert!(activities >= 40, "{activities} activities");
}

/// A malformed document, a truncated line and garbage do not stop the reading; each is reported at its line.
#[tokio::test]
async fn bad_lines_are_reported_and_the_rest_is_read() {
    let Some(falco) = fixture("audit/falco-minikube-2018") else {
        return;
    };
    let malformed = std::fs::read_to_string(falco.join("fal_01_003.json")).expect("fal_01_003");
    let deployment =
        std::fs::read_to_string(falco.join("create_deployment.json")).expect("deployment");
    let deployment = deployment.trim_end();
    let cut = &deployment[..deployment.len() / 2];
    let text = format!("{malformed}\n\n{deployment}\n{cut}\nnot json at all\n{deployment}\n");
    let file = write_temp(&text);
    let source = AuditFileSource::new(file.path(), "minikube");
    let counters = source.counters();
    let sink = run(Box::new(source)).await;
    let origin = file.path().display().to_string();
    let found: Vec<(String, String)> = sink
        .rejections()
        .into_iter()
        .map(|rejection| (rejection.origin, rejection.reason))
        .collect();
    assert_eq!(
        found,
        vec![
            (format!("{origin}:1"), "not an audit event".to_owned()),
            (format!("{origin}:4"), "truncated JSON".to_owned()),
            (format!("{origin}:5"), "invalid JSON".to_owned()),
        ]
    );
    let activities = sink.activities();
    assert_eq!(activities.len(), 2);
    assert_eq!(activities[0].dedup_key, activities[1].dedup_key);
    assert_eq!(activities[0].object.key().resource, "deployments");
    let report = counters.snapshot();
    assert_eq!(
        (report.records, report.sent, report.rejected_total()),
        (5, 2, 3)
    );
}

/// All of falco's events as JSON lines, then rewritten as a pretty-printed `EventList` followed by a
/// pretty-printed single event: the same activities either way.
#[tokio::test]
async fn event_lists_and_pretty_events_read_like_lines() {
    let Some(falco) = fixture("audit/falco-minikube-2018") else {
        return;
    };
    let mut paths: Vec<_> = std::fs::read_dir(&falco)
        .expect("falco")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| !path.ends_with("fal_01_003.json"))
        .collect();
    paths.sort();
    let mut lines = String::new();
    for path in paths {
        lines.push_str(&std::fs::read_to_string(path).expect("text"));
        lines.push('\n');
    }
    let lines_file = write_temp(&lines);
    let lines_sink = run(Box::new(AuditFileSource::new(lines_file.path(), "c"))).await;
    assert_eq!(lines_sink.rejections(), vec![]);
    let expected = lines_sink.activities();
    assert!(expected.len() >= 40, "{}", expected.len());

    let mut events: Vec<serde_json::Value> = lines
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("event"))
        .collect();
    let count = events.len() as u64;
    let last = events.pop().expect("events");
    let list = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events});
    let pretty = format!(
        "{}\n{}\n",
        serde_json::to_string_pretty(&list).expect("pretty"),
        serde_json::to_string_pretty(&last).expect("pretty")
    );
    let file = write_temp(&pretty);
    let source = AuditFileSource::new(file.path(), "c");
    let counters = source.counters();
    let sink = run(Box::new(source)).await;
    assert_eq!(sink.rejections(), vec![]);
    assert_eq!(sink.activities(), expected);
    assert_eq!(counters.snapshot().records, count);
}
