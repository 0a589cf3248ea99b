#![allow(clippy::unwrap_used)]

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::span::activity_span;
use kelemetry_core::{
    Activity, LogKind, LogLine, Object, ObjectKey, ObjectRef, SourceKind, SpanRecord, Windowing,
    vocabulary as v,
};

use super::builtin::{self, spoken};
use super::facts::{DiffLine, Fact};
use super::*;

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("c", "", "configmaps", "default", name)
}

fn at(secs: i64) -> Timestamp {
    "2024-01-01T10:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(secs)
}

/// An audit write of `name` by `user` at second `secs`, answered `code`, with diff lines.
fn write(name: &str, secs: i64, user: &str, verb: &str, code: u16, diff: &[&str]) -> SpanRecord {
    let object = Object::new(ObjectRef::new(key(name), "v1", None));
    let mut activity = Activity::new(
        object,
        SourceKind::Audit,
        at(secs),
        format!("{user} {verb}"),
        format!("{name}{secs}{user}{verb}{code}"),
    );
    activity.attribute(v::USERNAME, user);
    activity.attribute(v::TAG, verb);
    activity.attribute(v::RESPONSE_CODE, code.to_string());
    activity.attribute(v::AUDIT_ID, format!("{name}-{secs}"));
    if !diff.is_empty() {
        activity
            .logs
            .push(LogLine::new(LogKind::ObjectDiff, diff.join("\n")));
    }
    activity_span(&activity, Windowing::default().window_of(at(secs)))
}

fn history(name: &str, mut activities: Vec<SpanRecord>) -> ObjectHistory {
    activities.sort_by_key(|a| a.start);
    ObjectHistory {
        key: key(name),
        object_spans: Vec::new(),
        activities,
        links: Vec::new(),
    }
}

fn context() -> Context {
    Context {
        thresholds: Thresholds::default(),
        leases: Vec::new(),
        last_seen: at(600),
    }
}

#[test]
fn diff_lines_and_durations_read_as_written() {
    assert_eq!(
        DiffLine::parse("data.mode \"a\" -> \"b\""),
        Some(DiffLine {
            path: "data.mode",
            old: "\"a\"",
            new: "\"b\""
        })
    );
    assert_eq!(DiffLine::parse("no arrow here"), None);
    assert_eq!(spoken(Duration::from_millis(1500)), "1.5 s");
    assert_eq!(spoken(Duration::from_secs(45)), "45 s");
    assert_eq!(spoken(Duration::from_secs(303)), "5 min 3 s");
    assert_eq!(spoken(Duration::from_secs(7800)), "2 h 10 min");
}

#[test]
fn repeated_refusals_make_one_finding_per_user_and_code() {
    let mut activities: Vec<SpanRecord> = (0..5)
        .map(|n| write("target", n * 3, "alice", "patch", 403, &[]))
        .collect();
    activities.push(write("target", 1, "bob", "patch", 403, &[]));
    // Conflicts the writer made good are left out; ones it did not make good within the minute count.
    activities.push(write("target", 2, "ctrl", "update", 409, &[]));
    activities.push(write("target", 3, "ctrl", "update", 200, &[]));
    for n in 0..3 {
        activities.push(write("target", 10 + n, "late", "update", 409, &[]));
    }
    activities.push(write("target", 200, "late", "update", 200, &[]));
    let findings = builtin::FailedRequests.diagnose(&history("target", activities), &context());
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(
        findings[1]
            .title
            .starts_with("late: 3 requests failed with 409 Conflict")
    );
    assert!(
        findings[0]
            .title
            .starts_with("alice: 5 requests failed with 403 Forbidden")
    );
    assert_eq!(findings[0].evidence.len(), 5);
}

#[test]
fn two_writers_undoing_each_other_are_a_fight_and_one_writer_is_not() {
    let mut fight = Vec::new();
    for n in 0..6 {
        let (user, old, new) = if n % 2 == 0 {
            ("writer-a", "\"b\"", "\"a\"")
        } else {
            ("writer-b", "\"a\"", "\"b\"")
        };
        let line = format!("data.mode {old} -> {new}");
        fight.push(write("fought", n * 2, user, "patch", 200, &[line.as_str()]));
    }
    let findings = builtin::ControllerFight.diagnose(&history("fought", fight), &context());
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0]
            .title
            .contains("writer-a and writer-b keep changing data.mode")
    );

    let calm: Vec<SpanRecord> = (0..6)
        .map(|n| {
            let line = format!("data.n \"{n}\" -> \"{}\"", n + 1);
            write("calm", n * 2, "writer-a", "patch", 200, &[line.as_str()])
        })
        .collect();
    assert!(
        builtin::ControllerFight
            .diagnose(&history("calm", calm), &context())
            .is_empty()
    );
}

#[test]
fn a_busy_minute_is_a_hot_loop_and_a_busy_rollout_below_the_threshold_is_not() {
    let hot: Vec<SpanRecord> = (0..70)
        .map(|n| {
            write(
                "hot",
                n * 45 / 70,
                "writer-a",
                "update",
                200,
                &["metadata.labels.n \"1\" -> \"2\""],
            )
        })
        .collect();
    let findings = builtin::HotLoop.diagnose(&history("hot", hot), &context());
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].title.contains("70 times"),
        "{}",
        findings[0].title
    );

    let rollout: Vec<SpanRecord> = (0..22)
        .map(|n| {
            write(
                "demo",
                n * 15 / 22,
                "deployment-controller",
                "update",
                200,
                &[],
            )
        })
        .collect();
    assert!(
        builtin::HotLoop
            .diagnose(&history("demo", rollout), &context())
            .is_empty()
    );
}

#[test]
fn declared_rules_count_matches_in_their_window() {
    let config: DiagnoseConfig = serde_yaml_ng::from_str(
        "disable: [failed-requests]\nrules:\n- name: many-forbidden\n  match: {source: audit, responseCode: '403'}\n  groupBy: [username]\n  atLeast: 3\n  within: 10s\n  title: '{username} refused {count} times on {object}'\n  explanation: Refused.\n",
    )
    .unwrap();
    let diagnosis = config.build().unwrap();
    assert!(
        diagnosis
            .diagnosers()
            .iter()
            .all(|d| d.name() != "failed-requests")
    );
    let rule = diagnosis
        .diagnosers()
        .iter()
        .find(|d| d.name() == "many-forbidden")
        .unwrap();
    let spread: Vec<SpanRecord> = (0..4)
        .map(|n| write("target", n * 20, "alice", "patch", 403, &[]))
        .collect();
    assert!(
        rule.diagnose(&history("target", spread), &context())
            .is_empty(),
        "20 s apart"
    );
    let close: Vec<SpanRecord> = (0..4)
        .map(|n| write("target", n * 3, "alice", "patch", 403, &[]))
        .collect();
    let findings = rule.diagnose(&history("target", close), &context());
    assert_eq!(findings.len(), 1);
    assert_eq!(
        findings[0].title,
        "alice refused 4 times on configmaps default/target (c)"
    );

    for (yaml, expected) in [
        (
            "rules:\n- {name: r, match: {title: '('}, atLeast: 1, title: t, explanation: e}\n",
            "rule \"r\": match.title:",
        ),
        (
            "rules:\n- {name: r, match: {}, atLeast: 1, title: t, explanation: e}\n",
            "rule \"r\": needs at least one field",
        ),
        (
            "rules:\n- {name: r, match: {a: b}, atLeast: 0, title: t, explanation: e}\n",
            "rule \"r\": atLeast must be 1",
        ),
    ] {
        let config: DiagnoseConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let err = config.build().unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
    }
}

#[test]
fn facts_read_the_verb_user_and_code() {
    let span = write("x", 0, "alice", "patch", 403, &["a 1 -> 2"]);
    let fact = Fact::new(&span);
    assert_eq!(
        (
            fact.verb(),
            fact.user(),
            fact.code(),
            fact.is_write(),
            fact.succeeded()
        ),
        (Some("patch"), Some("alice"), Some(403), true, false)
    );
    assert_eq!(fact.diff_lines().count(), 1);
}

/// A Kubernetes Event `reason` on ReplicaSet `name` at second `secs`.
fn event(name: &str, secs: i64, reason: &str, kind: &str) -> SpanRecord {
    let object = Object::new(ObjectRef::new(
        ObjectKey::new("c", "apps", "replicasets", "default", name),
        "v1",
        None,
    ));
    let mut activity = Activity::new(
        object,
        SourceKind::Event,
        at(secs),
        reason,
        format!("{name}{secs}{reason}"),
    );
    activity.attribute(v::EVENT_TYPE, kind);
    activity.attribute(v::EVENT_NAME, format!("{name}.{secs}"));
    activity.attribute(v::EVENT_COUNT, "1");
    activity_span(&activity, Windowing::default().window_of(at(secs)))
}

#[test]
fn creates_every_five_minutes_are_named_as_the_expectations_timeout() {
    let mut create = write("flaky", 0, "admin", "create", 201, &[]);
    create.logs.push(kelemetry_core::SpanLog {
        time: at(0),
        message: r#"{"spec":{"replicas":1},"status":{"replicas":0}}"#.to_owned(),
        attributes: vec![(v::LOG_TYPE.into(), LogKind::ObjectSnapshot.as_str().into())],
    });
    let mut activities = vec![create];
    for n in 0..5 {
        activities.push(event("flaky", 1 + n * 300, "SuccessfulCreate", "Normal"));
    }
    let mut history = history("flaky", activities);
    history.key = ObjectKey::new("c", "apps", "replicasets", "default", "flaky");
    let findings = builtin::UnobservedCreates.diagnose(&history, &context());
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0]
            .title
            .contains("created 5 children but never counted more than 0 (it wants 1)")
    );
    assert!(
        findings[0]
            .explanation
            .contains("A new one every 5 min matches the controller expectations timeout"),
        "{}",
        findings[0].explanation
    );

    // What it wants, created once each: no finding.
    let mut healthy = history.clone();
    healthy.activities.truncate(2);
    assert!(
        builtin::UnobservedCreates
            .diagnose(&healthy, &context())
            .is_empty()
    );
}
