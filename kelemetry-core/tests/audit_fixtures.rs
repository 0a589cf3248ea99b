//! Audit parsing, mapping, redaction and the diff decorator over the real recorded audit logs in
//! `../shared/fixtures/audit` (see its README). Skipped, with a note, when the folder is absent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kelemetry_core::audit::{
    AuditEvent, AuditMappingError, AuditOutcome, SkipReason, activity_title, map_event,
    parse_document,
};
use kelemetry_core::redact::{FieldRedaction, REDACTED, Redactor};
use kelemetry_core::{Activity, BodyCache, ChangeKind, DiffDecorator, LogKind, vocabulary};
use serde_json::{Value, json};

const CLUSTER: &str = "minikube";

/// The audit fixture files (`.json` and `.log`), their non-blank lines (one event each, or a document rejected
/// whole), and the activities they map to.
const TOTAL_FILES: usize = 48;
const TOTAL_LINES: usize = 89;
const TOTAL_ACTIVITIES: usize = 48;

/// The lines of the audit fixtures that are not traced, by reason.
fn total_skipped() -> BTreeMap<SkipReason, usize> {
    BTreeMap::from([
        (SkipReason::UnsupportedVerb, 38),
        (SkipReason::IncompleteStage, 2),
    ])
}

/// The recorded audit logs (`audit` in the shared fixtures), or `None` when the fixtures are absent (a panic
/// instead when `KELEMETRY_REQUIRE_FIXTURES=1`).
fn fixtures() -> Option<PathBuf> {
    kelemetry_testkit::fixture("audit")
}

/// Every `.json` and `.log` file under `dir`, sorted.
fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture folder is readable") {
            let path = entry.expect("fixture entry").path();
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

/// One line of a fixture file and what became of it.
struct Line {
    file: String,
    number: usize,
    text: String,
}

fn lines(dir: &Path) -> Vec<Line> {
    let mut out = Vec::new();
    for path in audit_files(dir) {
        let text = std::fs::read_to_string(&path).expect("fixture file is text");
        let file = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        for (index, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                out.push(Line {
                    file: file.clone(),
                    number: index + 1,
                    text: line.to_owned(),
                });
            }
        }
    }
    out
}

/// Redaction as a user would configure it: the default Secret rules plus ConfigMap data.
fn redactor() -> Redactor {
    Redactor::new(&[FieldRedaction {
        group: Some(String::new()),
        resource: "configmaps".into(),
        path: "data.*".into(),
    }])
    .expect("rule is valid")
}

/// What the pipeline does with an audit activity: redact its body, decorate it, then remember the body.
fn process(activity: &mut Activity, redactor: &Redactor, bodies: &BodyCache) {
    if let Some(body) = activity.object.body.as_mut() {
        let key = activity.object.object_ref.key.clone();
        if redactor.applies_to(&key, body) {
            redactor.redact(&key, Arc::make_mut(body).make_mut());
        }
    }
    DiffDecorator.decorate_now(activity, bodies);
    if let Some(body) = &activity.object.body {
        bodies.insert(activity.object.key(), Arc::clone(body));
    }
}

/// Everything of an activity that ends up in a span, as text.
fn visible_text(activity: &Activity) -> String {
    let mut text = activity.title.clone();
    for (name, value) in &activity.attributes {
        text.push_str(&format!("\n{name}={value}"));
    }
    for log in &activity.logs {
        text.push('\n');
        text.push_str(&log.message);
    }
    if let Some(body) = &activity.object.body {
        text.push('\n');
        text.push_str(&body.to_string());
    }
    text
}

/// Values found under `data`/`stringData` of Secrets and `data` of ConfigMaps anywhere in a document.
fn sensitive_values(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            let kind = map.get("kind").and_then(Value::as_str);
            let fields: &[&str] = match kind {
                Some("Secret") => &["data", "stringData"],
                Some("ConfigMap") => &["data"],
                _ => &[],
            };
            for field in fields {
                if let Some(Value::Object(data)) = map.get(*field) {
                    for v in data.values().filter_map(Value::as_str) {
                        // Search for each line of multi-line values, so a value re-rendered inside a JSON
                        // string (with escaped newlines) is still found.
                        out.extend(v.lines().filter(|l| l.trim().len() >= 4).map(str::to_owned));
                    }
                }
            }
            map.values().for_each(|v| sensitive_values(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| sensitive_values(v, out)),
        _ => {}
    }
}

/// A Secret written at RequestResponse level, shaped like `create_secret.json` (which is recorded at Metadata level
/// and so carries no values).
fn secret_create_line(fixture_line: &str) -> String {
    let mut event: Value = serde_json::from_str(fixture_line).expect("fixture line is JSON");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "example-secret", "namespace": "default", "uid": "5e1a7f5c", "resourceVersion": "901",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                        "{\"apiVersion\":\"v1\",\"data\":{\"password\":\"czNjcjN0LXBhc3N3b3Jk\"},\"kind\":\"Secret\"}"}},
        "data": {"password": "czNjcjN0LXBhc3N3b3Jk", "username": "YWRtaW4tdXNlcg=="},
        "stringData": {"token": "plain-text-token-value"},
        "type": "Opaque"
    });
    event["level"] = json!("RequestResponse");
    event["requestObject"] = secret.clone();
    event["responseObject"] = secret;
    event.to_string()
}

#[derive(Default)]
struct Tally {
    events: usize,
    activities: Vec<(String, Activity)>,
    skipped: BTreeMap<SkipReason, usize>,
    rejected_documents: Vec<(String, String)>,
    rejected_events: Vec<(String, AuditMappingError)>,
}

fn map_all(lines: &[Line]) -> Tally {
    let mut tally = Tally::default();
    let redactor = redactor();
    let bodies = BodyCache::new(1024);
    for line in lines {
        let origin = format!("{}:{}", line.file, line.number);
        let events = match parse_document(line.text.as_bytes()) {
            Ok(events) => events,
            Err(err) => {
                tally.rejected_documents.push((origin, err.to_string()));
                continue;
            }
        };
        for event in events {
            tally.events += 1;
            match map_event(event, CLUSTER) {
                Ok(AuditOutcome::Activity(mut activity)) => {
                    process(&mut activity, &redactor, &bodies);
                    tally.activities.push((origin.clone(), *activity));
                }
                Ok(AuditOutcome::Skipped(reason)) => *tally.skipped.entry(reason).or_default() += 1,
                Err(err) => tally.rejected_events.push((origin.clone(), err)),
            }
        }
    }
    tally
}

/// What became of the lines of one fixture file.
#[derive(Debug, Default, PartialEq, Eq)]
struct FileAccount {
    /// Non-blank lines: each is one audit event, or one document rejected whole.
    lines: usize,
    activities: usize,
    skipped: BTreeMap<SkipReason, usize>,
    rejected: usize,
}

impl FileAccount {
    fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

/// Each file's account, counted from the mapping's outcomes (not from the tally's lists).
fn accounts(lines: &[Line]) -> BTreeMap<String, FileAccount> {
    let mut accounts = BTreeMap::<String, FileAccount>::new();
    for line in lines {
        let account = accounts.entry(line.file.clone()).or_default();
        account.lines += 1;
        match parse_document(line.text.as_bytes()) {
            Err(_) => account.rejected += 1,
            Ok(events) => {
                for event in events {
                    match map_event(event, CLUSTER) {
                        Ok(AuditOutcome::Activity(_)) => account.activities += 1,
                        Ok(AuditOutcome::Skipped(reason)) => {
                            *account.skipped.entry(reason).or_default() += 1;
                        }
                        Err(_) => account.rejected += 1,
                    }
                }
            }
        }
    }
    accounts
}

#[test]
fn every_fixture_line_is_accounted_for_per_file() {
    let Some(dir) = fixtures() else { return };
    let lines = lines(&dir);
    let accounts = accounts(&lines);
    // Every line of every file is an activity, a skip with its reason, or a rejection: nothing vanishes.
    for (file, account) in &accounts {
        assert_eq!(
            account.lines,
            account.activities + account.skipped_total() + account.rejected,
            "{file}: {account:?}"
        );
    }
    let rejected: Vec<(&str, usize)> = accounts
        .iter()
        .filter(|(_, a)| a.rejected > 0)
        .map(|(file, a)| (file.as_str(), a.rejected))
        .collect();
    assert_eq!(rejected, [("falco-minikube-2018/fal_01_003.json", 1)]);
    // audit2rbac's recording is all reads (get/list) at Metadata level: every line skipped, none traced.
    assert_eq!(
        accounts["audit2rbac-2017/demo.log"],
        FileAccount {
            lines: 37,
            activities: 0,
            skipped: BTreeMap::from([(SkipReason::UnsupportedVerb, 37)]),
            rejected: 0,
        }
    );
    // The whole recording, exactly.
    let total = |count: fn(&FileAccount) -> usize| accounts.values().map(count).sum::<usize>();
    let mut skipped = BTreeMap::<SkipReason, usize>::new();
    for account in accounts.values() {
        for (reason, count) in &account.skipped {
            *skipped.entry(*reason).or_default() += count;
        }
    }
    assert_eq!(accounts.len(), TOTAL_FILES);
    assert_eq!(total(|a| a.lines), TOTAL_LINES);
    assert_eq!(total(|a| a.activities), TOTAL_ACTIVITIES);
    assert_eq!(skipped, total_skipped());
    assert_eq!(total(|a| a.rejected), 1);
}

#[test]
fn every_fixture_line_maps_without_panic_and_only_the_bad_file_is_rejected() {
    let Some(dir) = fixtures() else { return };
    let lines = lines(&dir);
    assert_eq!(lines.len(), TOTAL_LINES);
    let tally = map_all(&lines);

    assert_eq!(
        tally.rejected_documents,
        [(
            "falco-minikube-2018/fal_01_003.json:1".to_owned(),
            "kind 0 is not an audit Event or EventList".to_owned()
        )]
    );
    assert!(
        tally.rejected_events.is_empty(),
        "{:?}",
        tally.rejected_events
    );
    let skipped: usize = tally.skipped.values().sum();
    assert_eq!(tally.events, tally.activities.len() + skipped);
    assert_eq!(tally.events + tally.rejected_documents.len(), TOTAL_LINES);
    assert_eq!(tally.activities.len(), TOTAL_ACTIVITIES);
    assert_eq!(tally.skipped, total_skipped());
    for (origin, activity) in &tally.activities {
        assert!(activity.dedup_key.starts_with("audit:"), "{origin}");
        assert!(activity.change.is_some(), "{origin}");
        assert_eq!(activity.object.key().cluster, CLUSTER);
        assert!(!activity.object.key().name.is_empty(), "{origin}");
    }
}

#[test]
fn extensions_deployment_is_created_and_deleted() {
    let Some(dir) = fixtures() else { return };
    let tally = map_all(&lines(&dir));
    let deployment: Vec<&Activity> = tally
        .activities
        .iter()
        .map(|(_, a)| a)
        .filter(|a| {
            let key = a.object.key();
            key.resource == "deployments"
                && key.namespace == "default"
                && key.name == "nginx-deployment"
        })
        .collect();
    // Exactly one create and one delete, in that order: no duplicate, nothing else on it.
    let kinds: Vec<Option<ChangeKind>> = deployment
        .iter()
        .map(|a| a.change.as_ref().map(|c| c.kind))
        .collect();
    assert_eq!(kinds, [Some(ChangeKind::Create), Some(ChangeKind::Delete)]);
    for activity in &deployment {
        assert_eq!(activity.object.key().group, "extensions");
        assert_eq!(activity.object.object_ref.version, "v1beta1");
        assert_eq!(
            activity.object.object_ref.api_version(),
            "extensions/v1beta1"
        );
        assert_eq!(activity.source.as_str(), "audit");
        assert_eq!(
            activity.attribute_value(vocabulary::USERNAME),
            Some("minikube-user")
        );
        assert!(
            activity.title.starts_with("minikube-user "),
            "{}",
            activity.title
        );
    }
    // The deletion is recorded at Request level: the apiserver's answer is not there, so no body.
    let delete = deployment
        .iter()
        .find(|a| {
            a.change
                .as_ref()
                .is_some_and(|c| c.kind == ChangeKind::Delete)
        })
        .expect("a delete");
    assert_eq!(delete.title, "minikube-user delete");
    assert_eq!(
        delete.attribute_value(vocabulary::RESPONSE_CODE),
        Some("200")
    );
    assert_eq!(
        delete.start,
        "2018-10-26T13:09:27.540198Z".parse().expect("timestamp")
    );
}

#[test]
fn configmap_creates_are_snapshotted_without_their_values() {
    let Some(dir) = fixtures() else { return };
    let lines = lines(&dir);
    let mut sensitive = BTreeSet::new();
    for line in &lines {
        if let Ok(value) = serde_json::from_str::<Value>(&line.text) {
            sensitive_values(&value, &mut sensitive);
        }
    }
    assert!(
        sensitive.contains("aws_secret_access_key = MY-KEY"),
        "{sensitive:?}"
    );
    let tally = map_all(&lines);
    let mut snapshots = 0;
    for (origin, activity) in &tally.activities {
        let text = visible_text(activity);
        for value in &sensitive {
            assert!(
                !text.contains(value.as_str()),
                "{origin}: {value:?} appears in\n{text}"
            );
        }
        if activity.object.key().resource == "configmaps"
            && activity
                .logs
                .iter()
                .any(|l| l.kind == LogKind::ObjectSnapshot)
        {
            snapshots += 1;
            assert!(text.contains(REDACTED), "{origin}");
            assert!(
                text.contains(r#""ui.properties":"<redacted>""#),
                "keys stay visible: {origin}"
            );
        }
    }
    assert_eq!(
        snapshots, 9,
        "the ConfigMap writes recorded with their object are snapshotted"
    );
}

#[test]
fn secret_values_never_reach_an_activity() {
    let Some(dir) = fixtures() else { return };
    let fixture = std::fs::read_to_string(dir.join("falco-minikube-2018/create_secret.json"))
        .expect("create_secret.json");
    let first = fixture
        .lines()
        .find(|l| !l.trim().is_empty())
        .expect("one event");
    let created = secret_create_line(first);
    // The same Secret updated (a changed value, a new key) and deleted with the object returned.
    let mut updated: Value = serde_json::from_str(&created).expect("JSON");
    updated["verb"] = json!("update");
    updated["auditID"] = json!("update-1");
    updated["objectRef"]["resourceVersion"] = json!("901");
    updated["responseObject"]["metadata"]["resourceVersion"] = json!("902");
    updated["responseObject"]["data"]["password"] = json!("bmV3LXMzY3IzdC12YWx1ZQ==");
    updated["responseObject"]["data"]["apikey"] = json!("YXBpLWtleS12YWx1ZQ==");
    let mut deleted = updated.clone();
    deleted["verb"] = json!("delete");
    deleted["auditID"] = json!("delete-1");
    let documents = [created.clone(), updated.to_string(), deleted.to_string()];

    let mut sensitive = BTreeSet::new();
    for document in &documents {
        sensitive_values(
            &serde_json::from_str(document).expect("JSON"),
            &mut sensitive,
        );
    }
    assert!(sensitive.len() >= 4);
    let redactor = redactor();
    let bodies = BodyCache::new(16);
    let mut activities = Vec::new();
    for document in &documents {
        for event in parse_document(document.as_bytes()).expect("parses") {
            let AuditOutcome::Activity(mut activity) = map_event(event, CLUSTER).expect("maps")
            else {
                panic!("a write on a named Secret is traced");
            };
            process(&mut activity, &redactor, &bodies);
            activities.push(*activity);
        }
    }
    assert_eq!(activities.len(), 3);
    for activity in &activities {
        let text = visible_text(activity);
        for value in &sensitive {
            assert!(
                !text.contains(value.as_str()),
                "{value:?} appears in\n{text}"
            );
        }
        let mut serialized = serde_json::to_string(&activity.logs).expect("logs serialize");
        serialized.push_str(&format!("{:?}", activity.attributes));
        for value in &sensitive {
            assert!(
                !serialized.contains(value.as_str()),
                "{value:?} appears in {serialized}"
            );
        }
    }
    // The creation snapshot shows the keys; the update's diff names the key that was added.
    assert!(
        activities[0].logs[0]
            .message
            .contains("\"password\":\"<redacted>\"")
    );
    let diff = activities[1]
        .logs
        .iter()
        .find(|l| l.kind == LogKind::ObjectDiff)
        .expect("update has a diff");
    assert!(
        diff.message.contains(r#"data.apikey null -> "<redacted>""#),
        "{}",
        diff.message
    );
    assert_eq!(activities[2].logs[0].kind, LogKind::ObjectSnapshot);
}

#[test]
fn impersonated_metadata_level_reads_name_the_impersonated_user() {
    let Some(dir) = fixtures() else { return };
    let text = std::fs::read_to_string(dir.join("audit2rbac-2017/demo.log")).expect("demo.log");
    let mut events: Vec<AuditEvent<'_>> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        events.extend(parse_document(line.as_bytes()).expect("demo.log line parses"));
    }
    assert_eq!(events.len(), 37);
    let mut forbidden = 0;
    for event in &events {
        let impersonated = event
            .impersonated_user
            .as_ref()
            .map(|u| &*u.username)
            .expect("every demo request impersonates");
        assert_eq!(event.acting_user(), Some(impersonated));
        assert_eq!(
            event.user.as_ref().map(|u| &*u.username),
            Some("system:admin")
        );
        let subresource = event
            .object_ref
            .as_ref()
            .and_then(|o| o.subresource.as_deref());
        let title = activity_title(
            impersonated,
            &event.verb,
            subresource,
            event.response_code(),
        );
        if event.response_code() == Some(403) {
            forbidden += 1;
            assert!(title.ends_with(" (Forbidden)"), "{title}");
        } else {
            assert!(!title.contains('('), "{title}");
        }
        // The recording holds only reads, which are not traced.
        assert_eq!(
            map_event(event.clone(), CLUSTER),
            Ok(AuditOutcome::Skipped(SkipReason::UnsupportedVerb))
        );
    }
    assert_eq!(forbidden, 11);

    // The first request (bob listing pods, forbidden), turned into a write on one pod, maps in full.
    let first = text.lines().next().expect("a line");
    let mut write: Value = serde_json::from_str(first).expect("JSON");
    write["verb"] = json!("delete");
    write["objectRef"]["name"] = json!("web-0");
    let write = write.to_string();
    let event = parse_document(write.as_bytes()).expect("parses").remove(0);
    let AuditOutcome::Activity(activity) = map_event(event, CLUSTER).expect("maps") else {
        panic!("a delete is traced");
    };
    assert_eq!(activity.title, "bob delete (Forbidden)");
    assert_eq!(activity.attribute_value(vocabulary::USERNAME), Some("bob"));
    assert_eq!(
        activity.attribute_value(vocabulary::IMPERSONATED_BY),
        Some("system:admin")
    );
    assert_eq!(activity.attribute_value(vocabulary::SOURCE_IP), Some("::1"));
    // Metadata level, v1 with only the v1beta1-style `timestamp`: the start falls back to it.
    assert_eq!(
        activity.start,
        "2017-09-11T19:55:05Z".parse().expect("timestamp")
    );
    assert_eq!(activity.logs.len(), 1);
    assert_eq!(activity.logs[0].kind, LogKind::RealError);
    assert_eq!(
        activity.logs[0].message,
        "Forbidden: pods is forbidden: User \"bob\" cannot list pods in the namespace \"default\""
    );
}

#[test]
fn damaged_fixture_events_never_panic() {
    let Some(dir) = fixtures() else { return };
    // Every top-level field of every recorded event, removed or replaced by null, an empty object, a number or
    // a string: each variant parses to an error or maps to an outcome, never a panic.
    let replacements = [Value::Null, json!({}), json!(7), json!("x"), json!([])];
    let mut variants = 0;
    for line in lines(&dir) {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&line.text) else {
            continue;
        };
        for field in event.keys() {
            let mut removed = event.clone();
            removed.remove(field);
            let mut candidates = vec![Value::Object(removed)];
            for replacement in &replacements {
                let mut changed = event.clone();
                changed.insert(field.clone(), replacement.clone());
                candidates.push(Value::Object(changed));
            }
            for candidate in candidates {
                variants += 1;
                if let Ok(events) = parse_document(candidate.to_string().as_bytes()) {
                    for event in events {
                        let _ = map_event(event, CLUSTER);
                    }
                }
            }
        }
    }
    assert!(variants > 1000, "{variants}");
}
