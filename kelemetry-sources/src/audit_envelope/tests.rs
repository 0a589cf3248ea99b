//! The envelopes, one by one and in every form, on small examples shaped as the clouds document them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::GzEncoder;
use kelemetry_core::Activity;
use kelemetry_core::vocabulary;

use super::*;
use crate::audit_intake::{AuditIntake, AuditItem, SkipCause};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// What the intake makes of `document` for the default cluster `fallback`: (envelope, item) each.
fn take(document: &[u8]) -> Vec<(Envelope, AuditItem)> {
    let intake = AuditIntake::default();
    let mut items = intake
        .take(document, "fallback")
        .expect("the document is read");
    let mut out = Vec::new();
    while let Some(item) = items.next_enveloped() {
        out.push(item);
    }
    out
}

fn rejected(document: &[u8]) -> RecordRejection {
    match AuditIntake::default().take(document, "fallback") {
        Ok(items) => panic!("read: {:?}", items.collect::<Vec<_>>()),
        Err(rejection) => rejection,
    }
}

fn activity_of(item: &(Envelope, AuditItem)) -> &Activity {
    match &item.1 {
        AuditItem::Activity(activity) => activity,
        other => panic!("not an activity: {other:?}"),
    }
}

fn attribute<'a>(activity: &'a Activity, key: &str) -> Option<&'a str> {
    activity
        .attributes
        .iter()
        .find(|(k, _)| k.as_ref() == key)
        .map(|(_, v)| v.as_str())
}

/// A GKE LogEntry of the Kubernetes API, as Cloud Logging exports it.
fn gke_entry(method: &str, resource_name: &str, extra_payload: &str, cluster: &str) -> String {
    format!(
        r#"{{"protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo":{{"principalEmail":"alice@example.com"}},
        "authorizationInfo":[{{"granted":true,"permission":"{method}","resource":"{resource_name}"}}],
        "methodName":"{method}","resourceName":"{resource_name}","serviceName":"k8s.io",
        "requestMetadata":{{"callerIp":"203.0.113.7","callerSuppliedUserAgent":"kubectl/v1.30.0 (linux/amd64)"}},
        "status":{{"code":0}}{extra_payload}}},
        "insertId":"6c1e-insert","resource":{{"type":"k8s_cluster","labels":{{"project_id":"acme-prod",
        "location":"europe-west1","cluster_name":"{cluster}"}}}},"timestamp":"2024-05-01T12:00:00.250Z",
        "labels":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}},
        "logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity",
        "operation":{{"id":"6c1e-{method}","producer":"k8s.io","first":true,"last":true}},
        "receiveTimestamp":"2024-05-01T12:00:31.5Z"}}"#
    )
    .replace('\n', "")
}

#[test]
fn gke_create_with_its_response_body() {
    let response = r#","request":{"@type":"apps.k8s.io/v1.Deployment","apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"web","namespace":"default"}},"response":{"@type":"apps.k8s.io/v1.Deployment",
        "apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default",
        "uid":"u-1","resourceVersion":"100"},"spec":{"replicas":2}}"#;
    let entry = gke_entry(
        "io.k8s.apps.v1.deployments.create",
        "apps/v1/namespaces/default/deployments/web",
        response,
        "prod-eu",
    );
    let items = take(entry.as_bytes());
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, Envelope::Gke);
    let activity = activity_of(&items[0]);
    assert_eq!(
        activity.object.key().to_string(),
        "prod-eu/apps/deployments/default/web"
    );
    assert_eq!(activity.title, "alice@example.com create");
    assert_eq!(activity.start.to_string(), "2024-05-01T12:00:00.25Z");
    assert_eq!(
        activity.end,
        Some(activity.start),
        "receiveTimestamp is not the end"
    );
    assert_eq!(
        activity.dedup_key,
        "audit:6c1e-io.k8s.apps.v1.deployments.create"
    );
    assert_eq!(
        attribute(activity, vocabulary::USERNAME),
        Some("alice@example.com")
    );
    assert_eq!(
        attribute(activity, vocabulary::SOURCE_IP),
        Some("203.0.113.7")
    );
    assert_eq!(
        attribute(activity, vocabulary::USER_AGENT),
        Some("kubectl/v1.30.0 (linux/amd64)")
    );
    assert_eq!(attribute(activity, vocabulary::RESPONSE_CODE), Some("201"));
    let body = activity
        .object
        .body
        .as_ref()
        .expect("the response is the body");
    assert_eq!(body["spec"]["replicas"], 2);
    assert!(body.get("@type").is_none(), "@type is dropped: {body}");
    assert_eq!(activity.object.object_ref.uid.as_deref(), Some("u-1"));
}

#[test]
fn gke_status_patch_and_delete() {
    let patch = gke_entry(
        "io.k8s.core.v1.pods.status.patch",
        "core/v1/namespaces/default/pods/web-1/status",
        "",
        "prod-eu",
    );
    let items = take(patch.as_bytes());
    let activity = activity_of(&items[0]);
    assert_eq!(
        activity.object.key().to_string(),
        "prod-eu//pods/default/web-1"
    );
    assert_eq!(activity.title, "alice@example.com patch status");
    assert_eq!(attribute(activity, vocabulary::SUBRESOURCE), Some("status"));
    assert_eq!(attribute(activity, vocabulary::TAG), Some("patch"));
    assert_eq!(attribute(activity, vocabulary::RESPONSE_CODE), Some("200"));

    let delete = gke_entry(
        "io.k8s.core.v1.namespaces.delete",
        "core/v1/namespaces/team-a",
        "",
        "prod-eu",
    );
    let items = take(delete.as_bytes());
    let activity = activity_of(&items[0]);
    assert_eq!(
        activity.object.key().to_string(),
        "prod-eu//namespaces//team-a"
    );
    assert_eq!(activity.title, "alice@example.com delete");
}

#[test]
fn gke_failures_carry_http_codes() {
    let forbidden = gke_entry(
        "io.k8s.core.v1.secrets.delete",
        "core/v1/namespaces/default/secrets/db",
        "",
        "c",
    )
    .replace(
        r#""status":{"code":0}"#,
        r#""status":{"code":7,"message":"Forbidden"}"#,
    );
    let items = take(forbidden.as_bytes());
    let activity = activity_of(&items[0]);
    assert_eq!(activity.title, "alice@example.com delete (Forbidden)");
    assert_eq!(attribute(activity, vocabulary::RESPONSE_CODE), Some("403"));
    assert_eq!(activity.logs[0].message, "Forbidden");

    let conflict = gke_entry(
        "io.k8s.apps.v1.deployments.update",
        "apps/v1/namespaces/default/deployments/web",
        r#","response":{"@type":"core.k8s.io/v1.Status","apiVersion":"v1","kind":"Status","status":"Failure",
        "reason":"Conflict","code":409,"message":"the object has been modified"}"#,
        "c",
    )
    .replace('\n', "")
    .replace(r#""status":{"code":0}"#, r#""status":{"code":10,"message":"Conflict"}"#);
    let items = take(conflict.as_bytes());
    let activity = activity_of(&items[0]);
    assert_eq!(activity.title, "alice@example.com update (Conflict)");
    assert_eq!(attribute(activity, vocabulary::RESPONSE_CODE), Some("409"));
    assert_eq!(
        activity.logs[0].message,
        "Conflict: the object has been modified"
    );
}

#[test]
fn gke_rejections_name_the_field() {
    let entry = gke_entry(
        "io.k8s.core.v1.pods.create",
        "core/v1/namespaces/d/pods/p",
        "",
        "c",
    );
    let cases = [
        (
            entry.replace(r#""methodName":"io.k8s.core.v1.pods.create","#, ""),
            RejectReason::InvalidEnvelope,
            "gke: protoPayload.methodName missing",
        ),
        (
            entry
                .replace(r#""insertId":"6c1e-insert","#, "")
                .replace(r#""id":"6c1e-io.k8s.core.v1.pods.create","#, ""),
            RejectReason::InvalidEnvelope,
            "gke: operation.id and insertId missing",
        ),
        (
            entry.replace("2024-05-01T12:00:00.250Z", "yesterday"),
            RejectReason::InvalidEnvelope,
            r#"gke: timestamp "yesterday" is not an RFC 3339 time"#,
        ),
        (
            entry.replace(
                r#""methodName":"io.k8s.core.v1.pods.create""#,
                r#""methodName":"pods.create""#,
            ),
            RejectReason::InvalidEnvelope,
            r#"gke: protoPayload.methodName "pods.create" is not io.k8s.<group>.<version>.<resource>.<verb>"#,
        ),
        (
            entry.replace(
                r#""resourceName":"core/v1/namespaces/d/pods/p""#,
                r#""resourceName":"core/v1""#,
            ),
            RejectReason::InvalidEnvelope,
            r#"gke: protoPayload.resourceName "core/v1" is not <group>/<version>/[namespaces/<ns>/]<resource>[/<name>]"#,
        ),
    ];
    for (document, reason, detail) in cases {
        let rejection = rejected(document.as_bytes());
        assert_eq!(
            (rejection.reason, rejection.detail.as_str()),
            (reason, detail)
        );
        assert_eq!(rejection.envelope, Some(Envelope::Gke));
    }

    // A write without a user is an event the mapping refuses: the field is named as GKE writes it.
    let no_user = entry.replace(
        r#""authenticationInfo":{"principalEmail":"alice@example.com"},"#,
        "",
    );
    let items = take(no_user.as_bytes());
    let AuditItem::Rejected(rejection) = &items[0].1 else {
        panic!("{items:?}")
    };
    assert_eq!(rejection.reason, RejectReason::InvalidAuditEvent);
    assert_eq!(
        rejection.detail,
        "gke: protoPayload.authenticationInfo.principalEmail missing (audit event 6c1e-io.k8s.core.v1.pods.create)"
    );
}

#[test]
fn gke_skips_what_is_not_a_finished_kubernetes_request() {
    // An audit entry of another Google service in the same export.
    let cluster_op = r#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog",
        "serviceName":"container.googleapis.com","methodName":"google.container.v1.ClusterManager.UpdateCluster"},
        "insertId":"x","timestamp":"2024-05-01T12:00:00Z",
        "logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity"}"#;
    let items = take(cluster_op.as_bytes());
    assert!(
        matches!(
            items[..],
            [(
                Envelope::Gke,
                AuditItem::Skipped(SkipCause::Envelope(EnvelopeSkip::OtherLog))
            )]
        ),
        "{items:?}"
    );
    // The first entry of a long-running request.
    let opening = gke_entry(
        "io.k8s.core.v1.pods.exec.create",
        "core/v1/namespaces/d/pods/p/exec",
        "",
        "c",
    )
    .replace(r#""first":true,"last":true"#, r#""first":true"#);
    let items = take(opening.as_bytes());
    let AuditItem::Skipped(skip) = &items[0].1 else {
        panic!("{items:?}")
    };
    assert_eq!(skip.as_str(), "stage not ResponseComplete");
    // A read.
    let read = gke_entry(
        "io.k8s.core.v1.pods.list",
        "core/v1/namespaces/d/pods",
        "",
        "c",
    );
    let AuditItem::Skipped(skip) = &take(read.as_bytes())[0].1 else {
        panic!("a read is skipped")
    };
    assert_eq!(skip.as_str(), "unsupported verb");
}

#[test]
fn gke_in_pubsub_messages_arrays_and_two_clusters() {
    let first = gke_entry(
        "io.k8s.apps.v1.deployments.update",
        "apps/v1/namespaces/a/deployments/x",
        "",
        "east",
    );
    let second = gke_entry(
        "io.k8s.apps.v1.deployments.update",
        "apps/v1/namespaces/a/deployments/x",
        "",
        "west",
    )
    .replace("6c1e-io.k8s", "7d2f-io.k8s");
    // Push delivery.
    let push = format!(
        r#"{{"message":{{"data":"{}","messageId":"1","attributes":{{"logging.googleapis.com/timestamp":"x"}}}},
        "subscription":"projects/p/subscriptions/kelemetry"}}"#,
        b64(first.as_bytes())
    );
    let items = take(push.as_bytes());
    assert_eq!(activity_of(&items[0]).object.key().cluster, "east");
    // A pull response with both.
    let pull = format!(
        r#"{{"receivedMessages":[{{"ackId":"a","message":{{"data":"{}"}}}},{{"ackId":"b","message":{{"data":"{}"}}}}]}}"#,
        b64(first.as_bytes()),
        b64(second.as_bytes())
    );
    let clusters: Vec<String> = take(pull.as_bytes())
        .iter()
        .map(|item| activity_of(item).object.key().cluster.to_string())
        .collect();
    assert_eq!(clusters, ["east", "west"]);
    // What `gcloud logging read --format=json` prints: an array, here with one bad element.
    let array = format!(
        "[\n  {first},\n  {{\"protoPayload\":{{\"serviceName\":\"k8s.io\"}}}},\n  {second}\n]"
    );
    let items = take(array.as_bytes());
    assert_eq!(items.len(), 3);
    assert_eq!(activity_of(&items[0]).object.key().cluster, "east");
    let AuditItem::Rejected(rejection) = &items[1].1 else {
        panic!("{items:?}")
    };
    assert_eq!(
        rejection.detail,
        "item 1: gke: protoPayload.methodName missing"
    );
    assert_eq!(activity_of(&items[2]).object.key().cluster, "west");
    // Without a cluster name the source's cluster is used.
    let nameless = first.replace(r#","cluster_name":"east""#, "");
    assert_eq!(
        activity_of(&take(nameless.as_bytes())[0])
            .object
            .key()
            .cluster,
        "fallback"
    );
}

/// A native audit event of a write, as JSON.
fn native_event(audit_id: &str, verb: &str, subresource: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{audit_id}",
        "stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods/web-1","verb":"{verb}",
        "user":{{"username":"system:node:aks-node-1"}},"sourceIPs":["10.0.0.4"],
        "objectRef":{{"resource":"pods","namespace":"default","name":"web-1","apiVersion":"v1","subresource":"{subresource}"}},
        "responseStatus":{{"code":200}},"requestReceivedTimestamp":"2024-05-01T12:00:01.000000Z",
        "stageTimestamp":"2024-05-01T12:00:01.020000Z"}}"#
    )
    .replace('\n', "")
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

const AKS_ID: &str = "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/Shop-AKS";

fn aks_record(category: &str, log: &str) -> String {
    format!(
        r#"{{"operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read","category":"{category}",
        "ccpNamespace":"abc","resourceId":"{AKS_ID}","properties":{{"log":{log},"stream":"stdout",
        "pod":"kube-apiserver-1"}},"time":"2024-05-01T12:00:01.5Z","Cloud":"AzureCloud"}}"#
    )
    .replace('\n', "")
}

#[test]
fn aks_records_with_the_log_as_string_or_object() {
    let event = native_event("a-1", "patch", "status");
    for log in [json_string(&event), event.clone()] {
        let record = aks_record("kube-audit", &log);
        let items = take(record.as_bytes());
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, Envelope::Aks);
        let activity = activity_of(&items[0]);
        assert_eq!(
            activity.object.key().to_string(),
            "shop-aks//pods/default/web-1"
        );
        assert_eq!(activity.title, "system:node:aks-node-1 patch status");
        assert_eq!(activity.start.to_string(), "2024-05-01T12:00:01Z");
    }
    // Log Analytics' AzureDiagnostics.
    let diagnostics = format!(
        r#"{{"TimeGenerated":"2024-05-01T12:00:02Z","Category":"kube-audit-admin","ResourceId":"{AKS_ID}","log_s":{}}}"#,
        json_string(&event)
    );
    assert_eq!(
        activity_of(&take(diagnostics.as_bytes())[0])
            .object
            .key()
            .cluster,
        "shop-aks"
    );
    // Event Hubs batch: an audit record, another category, a broken one.
    let batch = format!(
        r#"{{"records":[{},{},{}]}}"#,
        aks_record("kube-audit-admin", &json_string(&event)),
        aks_record(
            "kube-apiserver",
            &json_string("I0501 12:00:01.000 1 trace.go:1] slow")
        ),
        aks_record("kube-audit", &json_string("{\"kind\":\"Event\""))
    );
    let items = take(batch.as_bytes());
    assert_eq!(items.len(), 3);
    assert!(matches!(items[0].1, AuditItem::Activity(_)));
    assert!(matches!(
        items[1].1,
        AuditItem::Skipped(SkipCause::Envelope(EnvelopeSkip::OtherLog))
    ));
    let AuditItem::Rejected(rejection) = &items[2].1 else {
        panic!("{items:?}")
    };
    assert_eq!(rejection.reason, RejectReason::TruncatedJson);
    assert!(
        rejection
            .detail
            .starts_with("item 2: aks: properties.log: invalid audit JSON: EOF"),
        "{}",
        rejection.detail
    );
    // Missing log.
    let no_log = aks_record("kube-audit", "1").replace(r#""log":1,"#, "");
    let rejection = rejected(no_log.as_bytes());
    assert_eq!(
        (rejection.reason, rejection.detail.as_str()),
        (RejectReason::InvalidEnvelope, "aks: properties.log missing")
    );
    let wrong = aks_record("kube-audit", "[1]");
    assert_eq!(
        rejected(wrong.as_bytes()).detail,
        "aks: properties.log is neither a JSON string nor an object"
    );
}

fn cloudwatch_event(stream: &str, message: &str) -> String {
    format!(
        r#"{{"logStreamName":"{stream}","timestamp":1714564801000,"message":{},"ingestionTime":1714564802000,
        "eventId":"3781"}}"#,
        json_string(message)
    )
    .replace('\n', "")
}

#[test]
fn eks_cloudwatch_events() {
    let event = native_event("e-1", "update", "");
    let single = cloudwatch_event("kube-apiserver-audit-0a1b", &event).replace(
        r#""eventId""#,
        r#""logGroup":"/aws/eks/payments/cluster","eventId""#,
    );
    let items = take(single.as_bytes());
    assert_eq!(items[0].0, Envelope::EksCloudWatch);
    let activity = activity_of(&items[0]);
    assert_eq!(
        activity.object.key().to_string(),
        "payments//pods/default/web-1"
    );
    assert_eq!(activity.title, "system:node:aks-node-1 update");
    // `aws logs filter-log-events` output: no log group, so the source's cluster; another stream is skipped.
    let listed = format!(
        r#"{{"events":[{},{}],"searchedLogStreams":[]}}"#,
        cloudwatch_event("kube-apiserver-audit-0a1b", &event),
        cloudwatch_event("authenticator-0a1b", "time=x level=info msg=access granted")
    );
    let items = take(listed.as_bytes());
    assert_eq!(activity_of(&items[0]).object.key().cluster, "fallback");
    assert!(matches!(
        items[1].1,
        AuditItem::Skipped(SkipCause::Envelope(EnvelopeSkip::OtherLog))
    ));
    // A Logs Insights export.
    let insights = format!(
        r#"{{"@timestamp":"2024-05-01 12:00:01.000","@message":{},"@log":"123456789012:/aws/eks/payments/cluster"}}"#,
        json_string(&event)
    );
    assert_eq!(
        activity_of(&take(insights.as_bytes())[0])
            .object
            .key()
            .cluster,
        "payments"
    );
    // A message that is not an audit event.
    let bad = cloudwatch_event("kube-apiserver-audit-0a1b", "{\"kind\":\"Pod\"}");
    let rejection = rejected(bad.as_bytes());
    assert_eq!(rejection.reason, RejectReason::NotAnAuditEvent);
    assert_eq!(
        rejection.detail,
        "eks-cloudwatch: message: kind \"Pod\" is not an audit Event or EventList"
    );
}

fn subscription(log_events: &[String]) -> String {
    let events: Vec<String> = log_events
        .iter()
        .enumerate()
        .map(|(i, message)| {
            format!(
                r#"{{"id":"3{i:055}","timestamp":1714564801000,"message":{}}}"#,
                json_string(message)
            )
        })
        .collect();
    format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/eks/payments/cluster",
        "logStream":"kube-apiserver-audit-0a1b","subscriptionFilters":["to-kinesis"],"logEvents":[{}]}}"#,
        events.join(",")
    )
    .replace('\n', "")
}

fn keys(items: &[(Envelope, AuditItem)]) -> Vec<String> {
    items
        .iter()
        .map(|item| match &item.1 {
            AuditItem::Activity(activity) => format!("{} {}", item.0, activity.object.key()),
            AuditItem::Skipped(skip) => format!("{} skipped {skip}", item.0),
            AuditItem::Rejected(rejection) => format!("{} rejected {}", item.0, rejection.detail),
        })
        .collect()
}

#[test]
fn eks_subscription_records_in_every_encoding() {
    let record = subscription(&[
        native_event("s-1", "create", ""),
        "not an audit event".to_owned(),
        native_event("s-2", "delete", ""),
    ]);
    let expected = [
        "eks-subscription payments//pods/default/web-1",
        "eks-subscription rejected eks-subscription: logEvents[1].message: invalid audit JSON: expected ident at line 1 column 2",
        "eks-subscription payments//pods/default/web-1",
    ];
    let gzipped = gzip(record.as_bytes());
    let encodings: Vec<(&str, Vec<u8>)> = vec![
        ("plain", record.clone().into_bytes()),
        ("gzip (Kinesis record data)", gzipped.clone()),
        ("base64 of gzip", b64(&gzipped).into_bytes()),
        (
            "Lambda subscription",
            format!(r#"{{"awslogs":{{"data":"{}"}}}}"#, b64(&gzipped)).into_bytes(),
        ),
        (
            "Firehose HTTP delivery",
            format!(
                r#"{{"requestId":"r","timestamp":1,"records":[{{"data":"{}"}}]}}"#,
                b64(&gzipped)
            )
            .into_bytes(),
        ),
        (
            "Kinesis to Lambda",
            format!(
                r#"{{"Records":[{{"kinesis":{{"data":"{}"}}}}]}}"#,
                b64(&gzipped)
            )
            .into_bytes(),
        ),
    ];
    for (form, bytes) in encodings {
        assert_eq!(keys(&take(&bytes)), expected, "{form}");
    }
    // Firehose to S3 without decompression: gzip members back to back.
    let mut two = gzipped.clone();
    two.extend(gzip(
        subscription(&[native_event("s-3", "update", "")]).as_bytes(),
    ));
    assert_eq!(take(&two).len(), 4);
    // A control message is skipped.
    let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"",
        "subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
    assert_eq!(
        keys(&take(&gzip(control.as_bytes()))),
        ["eks-subscription skipped control message"]
    );
    // Another stream of the group is skipped.
    let other = subscription(&[native_event("s-1", "create", "")])
        .replace("kube-apiserver-audit-0a1b", "kube-scheduler-0a1b");
    assert_eq!(
        keys(&take(other.as_bytes())),
        ["eks-subscription skipped not an audit log record"]
    );
}

#[test]
fn hostile_subscription_records() {
    // A gzip bomb: 64 MiB of spaces in 64 KiB.
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    assert!(bomb.len() < 128 * 1024);
    let rejection = rejected(&bomb);
    assert_eq!(rejection.reason, RejectReason::DocumentTooLarge);
    assert_eq!(
        rejection.detail,
        "gzip data decompresses to more than 16777216 bytes (the limit)"
    );
    let wrapped = format!(r#"{{"awslogs":{{"data":"{}"}}}}"#, b64(&bomb));
    let rejection = rejected(wrapped.as_bytes());
    assert_eq!(
        (rejection.reason, rejection.detail.as_str()),
        (
            RejectReason::DocumentTooLarge,
            "eks-subscription: awslogs.data: gzip data decompresses to more than 16777216 bytes (the limit)"
        )
    );
    // Base64 garbage.
    for (data, detail) in [
        (
            "%%%not base64%%%",
            "eks-subscription: awslogs.data: neither JSON nor gzip nor base64 of either",
        ),
        (
            &b64(b"\x00\x01binary"),
            "eks-subscription: awslogs.data: neither JSON nor gzip nor base64 of either",
        ),
    ] {
        let document = format!(r#"{{"awslogs":{{"data":"{data}"}}}}"#);
        let rejection = rejected(document.as_bytes());
        assert_eq!(
            (rejection.reason, rejection.detail.as_str()),
            (RejectReason::InvalidEnvelope, detail)
        );
    }
    // Damaged gzip.
    let mut cut = gzip(subscription(&[native_event("s-1", "create", "")]).as_bytes());
    cut.truncate(cut.len() / 2);
    let rejection = rejected(&cut);
    assert_eq!(rejection.reason, RejectReason::InvalidEnvelope);
    assert!(
        rejection.detail.starts_with("damaged gzip data: "),
        "{}",
        rejection.detail
    );
    // Huge logEvents: one over the limit is rejected whole, at the limit is read.
    let limits = EnvelopeLimits::default();
    let tiny = |n: usize| {
        let events = vec![r#"{"id":"","timestamp":0,"message":""}"#; n].join(",");
        format!(
            r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/c/cluster","logEvents":[{events}]}}"#
        )
    };
    let rejection = rejected(tiny(10_001).as_bytes());
    assert_eq!(
        (rejection.reason, rejection.detail.as_str()),
        (
            RejectReason::DocumentTooLarge,
            "eks-subscription: logEvents holds 10001 log events, more than the limit of 10000"
        )
    );
    let document = tiny(10_000);
    let entries = unwrap_document(document.as_bytes(), &limits).unwrap();
    assert_eq!(entries.len(), 10_000);
    // Two records of 6,000 each in one Firehose batch: over the limit of the document together.
    let half = b64(&gzip(tiny(6_000).as_bytes()));
    let batch = format!(r#"{{"records":[{{"data":"{half}"}},{{"data":"{half}"}}]}}"#);
    let rejection = rejected(batch.as_bytes());
    assert_eq!(rejection.reason, RejectReason::DocumentTooLarge);
    assert_eq!(
        rejection.detail,
        "the document holds 6000 entries, more than the limit of 10000 entries per document (6000 before it)"
    );
    // Layers nested too deep: a Lambda subscription event inside another, six times.
    let mut nested = subscription(&[native_event("s-1", "create", "")]);
    for _ in 0..6 {
        nested = format!(r#"{{"awslogs":{{"data":"{}"}}}}"#, b64(nested.as_bytes()));
    }
    let rejection = rejected(nested.as_bytes());
    assert_eq!(
        (rejection.reason, rejection.detail.as_str()),
        (
            RejectReason::InvalidEnvelope,
            "eks-subscription: awslogs.data: more than 4 nested layers"
        )
    );
    // Two are fine.
    let mut nested = subscription(&[native_event("s-1", "create", "")]);
    for _ in 0..2 {
        nested = format!(r#"{{"awslogs":{{"data":"{}"}}}}"#, b64(nested.as_bytes()));
    }
    assert_eq!(take(nested.as_bytes()).len(), 1);
}

#[test]
fn native_documents_are_unchanged_and_counted_as_native() {
    let event = native_event("n-1", "create", "");
    let items = take(event.as_bytes());
    assert_eq!(keys(&items), ["native fallback//pods/default/web-1"]);
    let list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{event},{event}]}}"#
    );
    assert_eq!(take(list.as_bytes()).len(), 2);
    // An array of native events, one of them bad.
    let array = format!(r#"[{event}, {{"kind":"Event"}}]"#);
    let items = keys(&take(array.as_bytes()));
    assert_eq!(items[0], "native fallback//pods/default/web-1");
    assert_eq!(items[1], "native rejected item 1: missing auditID");
    // Rejections of what is no audit document at all are the native parser's.
    for (document, reason, detail) in [
        (
            "[1, 2]",
            RejectReason::NotAnAuditEvent,
            "item 0: invalid audit JSON: invalid type: integer `1`, expected struct Document at line 1 column 1",
        ),
        (
            "{\"kind\":\"PodList\",\"apiVersion\":\"v1\"}",
            RejectReason::NotAnAuditEvent,
            "apiVersion \"v1\" is not a version of audit.k8s.io",
        ),
        (
            "{\"message\":{\"x\":1}}",
            RejectReason::NotAnAuditEvent,
            "the document has no kind (expected an audit Event or EventList)",
        ),
        (
            "bm90IGpzb24=",
            RejectReason::InvalidJson,
            "invalid audit JSON: expected value at line 1 column 1",
        ),
    ] {
        let rejection = rejected(document.as_bytes());
        assert_eq!(
            (rejection.reason, rejection.detail.as_str()),
            (reason, detail),
            "{document}"
        );
    }
}

#[test]
fn envelope_names_are_stable_and_distinct() {
    let names: Vec<&str> = Envelope::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(
        names,
        ["native", "gke", "aks", "eks-cloudwatch", "eks-subscription"]
    );
}
