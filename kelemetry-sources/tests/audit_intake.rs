//! Audit intake written once: the same bad input gets the same rejection reason from the file source, the log
//! follower and the webhook.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{CollectingSink, run};
use kelemetry_core::{CancellationToken, Source};
use kelemetry_sources::{AuditFileSource, AuditLogFollower, RejectReason};

/// The start of an audit event of `audit.k8s.io/v1`.
const EVENT: &str = r#""kind":"Event","apiVersion":"audit.k8s.io/v1""#;

/// Bad audit input, one line each, and the reason every source gives it.
fn bad_inputs() -> Vec<(&'static str, String, RejectReason)> {
    let complete = r#""stage":"ResponseComplete","user":{"username":"alice"},"requestReceivedTimestamp":"2024-05-01T12:00:00Z",
        "objectRef":{"resource":"configmaps","namespace":"default","name":"cm"}"#
        .replace('\n', "");
    vec![
        (
            "not JSON",
            "this is not JSON".to_owned(),
            RejectReason::InvalidJson,
        ),
        (
            "broken JSON",
            "{not json}".to_owned(),
            RejectReason::InvalidJson,
        ),
        (
            "a cut line",
            format!(r#"{{{EVENT},"auditID":"#),
            RejectReason::TruncatedJson,
        ),
        (
            "another kind",
            r#"{"kind":"PodList","apiVersion":"v1","items":[]}"#.to_owned(),
            RejectReason::NotAnAuditEvent,
        ),
        (
            "another apiVersion",
            r#"{"kind":"Event","apiVersion":"v1","involvedObject":{}}"#.to_owned(),
            RejectReason::NotAnAuditEvent,
        ),
        (
            "no kind",
            r#"{"apiVersion":"audit.k8s.io/v1","auditID":"a"}"#.to_owned(),
            RejectReason::NotAnAuditEvent,
        ),
        (
            "an array",
            "[1, 2]".to_owned(),
            RejectReason::NotAnAuditEvent,
        ),
        (
            "no auditID",
            format!(r#"{{{EVENT},"verb":"create",{complete}}}"#),
            RejectReason::InvalidAuditEvent,
        ),
        (
            "no verb",
            format!(r#"{{{EVENT},"auditID":"a",{complete}}}"#),
            RejectReason::InvalidAuditEvent,
        ),
        (
            "no user",
            format!(
                r#"{{{EVENT},"auditID":"a","verb":"create",{}}}"#,
                complete.replace(r#""user":{"username":"alice"},"#, "")
            ),
            RejectReason::InvalidAuditEvent,
        ),
        (
            "an unknown stage",
            format!(
                r#"{{{EVENT},"auditID":"a","verb":"create",{}}}"#,
                complete.replace("ResponseComplete", "Bogus")
            ),
            RejectReason::InvalidAuditEvent,
        ),
        (
            "a stage of the wrong type",
            format!(
                r#"{{{EVENT},"auditID":"a","verb":"create",{}}}"#,
                complete.replace(r#""ResponseComplete""#, "5")
            ),
            RejectReason::InvalidAuditEvent,
        ),
    ]
}

/// The reasons of the rejections in `sink`, after checking they were found at line 1 of `path`.
fn reasons_at_line_1(sink: &CollectingSink, path: &Path) -> Vec<String> {
    sink.rejections()
        .into_iter()
        .map(|rejection| {
            assert_eq!(rejection.origin, format!("{}:1", path.display()));
            rejection.reason
        })
        .collect()
}

async fn from_the_file_source(dir: &Path, line: &str) -> Vec<String> {
    let path = dir.join("file.log");
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let source = AuditFileSource::new(&path, "c");
    let counters = source.counters();
    let sink = run(Box::new(source)).await;
    let report = counters.snapshot();
    assert_eq!((report.records, report.sent), (1, 0), "{line}");
    reasons_at_line_1(&sink, &path)
}

async fn from_the_follower(dir: &Path, line: &str) -> Vec<String> {
    let path = dir.join("followed.log");
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let follower = AuditLogFollower::new(&path, "c").with_poll_interval(Duration::from_millis(10));
    let sink = Arc::new(CollectingSink::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Box::new(follower).run(sink.clone(), shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(10), async {
        while sink.rejections().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the follower did not reject {line}"));
    shutdown.cancel();
    task.await.unwrap().unwrap();
    reasons_at_line_1(&sink, &path)
}

#[tokio::test]
async fn the_file_source_and_the_follower_give_the_same_reasons() {
    for (what, line, reason) in bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let expected = vec![reason.as_str().to_owned()];
        assert_eq!(
            from_the_file_source(dir.path(), &line).await,
            expected,
            "file source, {what}: {line}"
        );
        assert_eq!(
            from_the_follower(dir.path(), &line).await,
            expected,
            "follower, {what}: {line}"
        );
    }
}

#[cfg(feature = "webhook")]
#[tokio::test]
async fn the_webhook_gives_the_same_reasons() {
    use kelemetry_sources::webhook::{AuditWebhook, WebhookConfig};

    let webhook = AuditWebhook::bind(WebhookConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        "c",
    ))
    .unwrap();
    let url = format!("http://{}/audit/c", webhook.local_addr());
    let sink = Arc::new(CollectingSink::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Box::new(webhook).run(sink.clone(), shutdown.clone()));
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for (what, line, reason) in bad_inputs() {
        let response = client.post(&url).body(line.clone()).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        answers.push((what, line, reason, status, text));
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    // A body that is not a usable audit document is refused with 400 naming the reason; a malformed event in a
    // well-formed document is accepted and reported as a rejection through the sink.
    let mut rejections = sink.rejections().into_iter();
    for (what, line, reason, status, text) in answers {
        match status {
            400 => assert!(
                text.contains(&format!("({reason})")),
                "webhook, {what}: {line}: {text}"
            ),
            200 => {
                let rejection = rejections.next().unwrap();
                assert_eq!(rejection.reason, reason.as_str(), "webhook, {what}: {line}");
                assert!(rejection.origin.ends_with("item 0"), "{rejection}");
            }
            other => panic!("webhook, {what}: {line}: status {other}: {text}"),
        }
    }
    assert_eq!(rejections.next(), None);
}
