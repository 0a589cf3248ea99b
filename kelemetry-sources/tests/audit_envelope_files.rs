//! Audit files in every form through `AuditFileSource`: JSON lines, pretty-printed JSON and arrays, YAML (one
//! document and `---` streams), native events and the envelopes of managed clusters mixed; the counts by
//! envelope, and one rejection per bad document at its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::run;
use kelemetry_sources::{AuditFileSource, Envelope, ReadReport};

/// A GKE LogEntry (as Cloud Logging exports it to Cloud Storage, one per line) of `method` on `resource_name`.
fn gke_line(id: &str, method: &str, resource_name: &str, cluster: &str) -> String {
    format!(
        r#"{{"protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{{"principalEmail":"system:serviceaccount:kube-system:deployment-controller"}},"methodName":"{method}","resourceName":"{resource_name}","serviceName":"k8s.io","requestMetadata":{{"callerIp":"10.128.0.2","callerSuppliedUserAgent":"kube-controller-manager/v1.29.4"}},"status":{{"code":0}}}},"insertId":"{id}","resource":{{"type":"k8s_cluster","labels":{{"project_id":"acme","location":"us-central1","cluster_name":"{cluster}"}}}},"timestamp":"2024-05-01T12:00:0{}.000Z","logName":"projects/acme/logs/cloudaudit.googleapis.com%2Factivity","operation":{{"id":"{id}","producer":"k8s.io","first":true,"last":true}},"receiveTimestamp":"2024-05-01T12:00:30Z"}}"#,
        id.len() % 10
    )
}

async fn read(
    name: &str,
    text: &str,
) -> (ReadReport, std::sync::Arc<common::CollectingSink>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let source = AuditFileSource::new(&path, "default-cluster");
    let counters = source.counters();
    let sink = run(Box::new(source)).await;
    let report = counters.snapshot();
    assert_eq!(report.bytes, text.len() as u64);
    assert_eq!(
        report.sent + report.skipped_total() + report.rejected_total(),
        report.records,
        "every record is sent, skipped or rejected once: {report}"
    );
    (report, sink, path.display().to_string())
}

fn keys(sink: &common::CollectingSink) -> Vec<String> {
    sink.activities()
        .iter()
        .map(|a| format!("{} {} {}", a.start, a.object.key(), a.title))
        .collect()
}

#[tokio::test]
async fn gke_json_lines_of_two_clusters() {
    let text = [
        gke_line(
            "a1",
            "io.k8s.apps.v1.deployments.create",
            "apps/v1/namespaces/shop/deployments/web",
            "east",
        ),
        gke_line(
            "b22",
            "io.k8s.apps.v1.deployments.status.update",
            "apps/v1/namespaces/shop/deployments/web/status",
            "west",
        ),
        gke_line(
            "c333",
            "io.k8s.core.v1.pods.list",
            "core/v1/namespaces/shop/pods",
            "west",
        ),
        gke_line(
            "d4444",
            "io.k8s.apps.v1.deployments.delete",
            "apps/v1/namespaces/shop/deployments/web",
            "east",
        ),
    ]
    .join("\n");
    let (report, sink, _) = read("gke.json", &text).await;
    assert_eq!(
        keys(&sink),
        [
            "2024-05-01T12:00:02Z east/apps/deployments/shop/web system:serviceaccount:kube-system:deployment-controller create",
            "2024-05-01T12:00:03Z west/apps/deployments/shop/web system:serviceaccount:kube-system:deployment-controller update status",
            "2024-05-01T12:00:05Z east/apps/deployments/shop/web system:serviceaccount:kube-system:deployment-controller delete",
        ]
    );
    assert_eq!((report.records, report.sent), (4, 3));
    assert_eq!(report.skipped.get("unsupported verb"), Some(&1));
    assert_eq!(report.by_envelope, BTreeMap::from([(Envelope::Gke, 4)]));
    assert_eq!(report.envelopes_text(), "gke 4");
}

#[tokio::test]
async fn pretty_json_arrays_and_mixed_envelopes() {
    let gke = gke_line(
        "a1",
        "io.k8s.core.v1.configmaps.update",
        "core/v1/namespaces/ns/configmaps/cm",
        "east",
    );
    let pretty: serde_json::Value = serde_json::from_str(&gke).unwrap();
    let native = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"n1","stage":"ResponseComplete","verb":"patch","user":{"username":"bob"},"objectRef":{"resource":"secrets","namespace":"ns","name":"s","apiVersion":"v1"},"requestReceivedTimestamp":"2024-05-01T12:00:09Z"}"#;
    let aks = format!(
        r#"{{"category":"kube-audit","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-1","properties":{{"log":{}}}}}"#,
        serde_json::to_string(&native.replace("n1", "n2")).unwrap()
    );
    // gcloud's array, pretty-printed; then an AKS record line; then a pretty native event; a broken array.
    let text = format!(
        "{}\n{aks}\n{}\n[\n  {{\"protoPayload\": {{\"serviceName\": \"k8s.io\"}}}}\n]\n",
        serde_json::to_string_pretty(&vec![pretty.clone(), pretty]).unwrap(),
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(native).unwrap())
            .unwrap()
    );
    let array_lines = 2 * gke_line_count(&gke) + 2;
    let (report, sink, path) = read("mixed.json", &text).await;
    assert_eq!(
        keys(&sink),
        [
            "2024-05-01T12:00:02Z east//configmaps/ns/cm system:serviceaccount:kube-system:deployment-controller update",
            "2024-05-01T12:00:02Z east//configmaps/ns/cm system:serviceaccount:kube-system:deployment-controller update",
            "2024-05-01T12:00:09Z aks-1//secrets/ns/s bob patch",
            "2024-05-01T12:00:09Z default-cluster//secrets/ns/s bob patch",
        ]
    );
    let rejections = sink.rejections();
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    let native_lines =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(native).unwrap())
            .unwrap()
            .lines()
            .count() as u64;
    let broken_line = array_lines as u64 + 1 + native_lines + 1;
    assert_eq!(rejections[0].origin, format!("{path}:{broken_line}"));
    assert_eq!(rejections[0].reason, "invalid envelope");
    assert_eq!(
        rejections[0].detail,
        "item 0: gke: protoPayload.methodName missing"
    );
    assert_eq!(
        report.by_envelope,
        BTreeMap::from([
            (Envelope::Native, 1),
            (Envelope::Gke, 3),
            (Envelope::Aks, 1)
        ])
    );
    assert_eq!(report.envelopes_text(), "aks 1, gke 3, native 1");
}

/// Lines of a pretty-printed entry inside an array (indented one level).
fn gke_line_count(gke: &str) -> usize {
    let value: serde_json::Value = serde_json::from_str(gke).unwrap();
    serde_json::to_string_pretty(&value)
        .unwrap()
        .lines()
        .count()
}

#[tokio::test]
async fn yaml_audit_events_and_yaml_log_entries() {
    // One YAML audit Event, as `yq -P` prints an audit log line.
    let single = "\
apiVersion: audit.k8s.io/v1
kind: Event
level: RequestResponse
auditID: 5b1c2a
stage: ResponseComplete
requestURI: /api/v1/namespaces/default/pods/web-0/status
verb: patch
user:
  username: system:node:node-1
  groups:
  - system:nodes
sourceIPs:
- 10.0.0.9
objectRef:
  resource: pods
  namespace: default
  name: web-0
  apiVersion: v1
  subresource: status
responseStatus:
  code: 200
requestReceivedTimestamp: '2024-05-01T12:00:00.120000Z'
stageTimestamp: '2024-05-01T12:00:00.150000Z'
";
    let (report, sink, _) = read("event.yaml", single).await;
    assert_eq!(
        keys(&sink),
        [
            "2024-05-01T12:00:00.12Z default-cluster//pods/default/web-0 system:node:node-1 patch status"
        ]
    );
    assert_eq!(
        (report.records, report.sent, report.rejected_total()),
        (1, 1, 0)
    );

    // `gcloud logging read` prints YAML documents separated by `---`; the second one is broken YAML, the third
    // misses its method.
    let stream = "\
---
insertId: 0f7e
logName: projects/acme/logs/cloudaudit.googleapis.com%2Factivity
operation:
  first: true
  id: 0f7e
  last: true
  producer: k8s.io
protoPayload:
  '@type': type.googleapis.com/google.cloud.audit.AuditLog
  authenticationInfo:
    principalEmail: dev@acme.example
  methodName: io.k8s.core.v1.pods.create
  resourceName: core/v1/namespaces/default/pods/debug
  serviceName: k8s.io
  status:
    code: 0
receiveTimestamp: '2024-05-01T12:01:00.5Z'
resource:
  labels:
    cluster_name: east
    location: us-central1
    project_id: acme
  type: k8s_cluster
timestamp: '2024-05-01T12:00:59.5Z'
---
protoPayload:
  methodName: [unclosed
---
insertId: 11aa
protoPayload:
  serviceName: k8s.io
timestamp: '2024-05-01T12:01:00Z'
";
    let (report, sink, path) = read("gke.yaml", stream).await;
    assert_eq!(
        keys(&sink),
        ["2024-05-01T12:00:59.5Z east//pods/default/debug dev@acme.example create"]
    );
    let rejections: Vec<String> = sink
        .rejections()
        .iter()
        .map(|r| format!("{} {}", r.origin, r.reason))
        .collect();
    assert_eq!(
        rejections,
        [
            format!("{path}:29 invalid YAML"),
            format!("{path}:30 invalid envelope")
        ],
        "one rejection per bad document"
    );
    assert_eq!(
        sink.rejections()[1].detail,
        "gke: protoPayload.methodName missing"
    );
    assert_eq!((report.records, report.sent), (3, 1));
    assert_eq!(report.by_envelope, BTreeMap::from([(Envelope::Gke, 2)]));
}

#[tokio::test]
async fn eks_records_as_firehose_writes_them() {
    let event = |id: &str, verb: &str| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"{id}","stage":"ResponseComplete","verb":"{verb}","user":{{"username":"kubernetes-admin"}},"objectRef":{{"resource":"configmaps","namespace":"kube-system","name":"aws-auth","apiVersion":"v1"}},"requestReceivedTimestamp":"2024-05-01T12:00:00Z"}}"#
        )
    };
    let record = |ids: &[(&str, &str)]| {
        let events: Vec<String> = ids
            .iter()
            .map(|(id, verb)| {
                format!(
                    r#"{{"id":"1","timestamp":1714564800000,"message":{}}}"#,
                    serde_json::to_string(&event(id, verb)).unwrap()
                )
            })
            .collect();
        format!(
            r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/aws/eks/prod/cluster","logStream":"kube-apiserver-audit-1","subscriptionFilters":["f"],"logEvents":[{}]}}"#,
            events.join(",")
        )
    };
    // Firehose with decompression on writes records back to back; a control message among them.
    let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[]}"#;
    let text = format!(
        "{}{control}{}\n",
        record(&[("e1", "update"), ("e2", "get")]),
        record(&[("e3", "delete")])
    );
    let (report, sink, _) = read("firehose", &text).await;
    assert_eq!(sink.activities().len(), 2);
    assert!(
        sink.activities()
            .iter()
            .all(|a| a.object.key().cluster == "prod")
    );
    assert_eq!(report.records, 4);
    assert_eq!(report.skipped.get("control message"), Some(&1));
    assert_eq!(report.skipped.get("unsupported verb"), Some(&1));
    assert_eq!(
        report.by_envelope,
        BTreeMap::from([(Envelope::EksSubscription, 4)])
    );
}

#[tokio::test]
async fn a_gzip_file_is_rejected_once() {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&b"{\"kind\":\"Event\"}\n".repeat(5000))
        .unwrap();
    let data = encoder.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.json.gz");
    std::fs::write(&path, &data).unwrap();
    let source = AuditFileSource::new(&path, "c");
    let counters = source.counters();
    let sink = run(Box::new(source)).await;
    let report = counters.snapshot();
    assert_eq!(
        (report.bytes, report.records, report.rejected_total()),
        (data.len() as u64, 1, 1)
    );
    let rejections = sink.rejections();
    assert_eq!(rejections[0].origin, format!("{}:1", path.display()));
    assert_eq!(
        rejections[0].detail,
        "the file is gzip-compressed: decompress it first (gunzip, or `zcat FILE > FILE.json`)"
    );
}

/// The real and derived records of `fixtures/managed` (see its README), each read into the right objects, users,
/// verbs, subresources, times and clusters.
#[tokio::test]
async fn managed_fixtures_read_into_the_right_objects() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/managed");
    if !root.is_dir() {
        eprintln!("skipping: {} is missing", root.display());
        return;
    }
    let four = |cluster: &str| {
        [
            format!("2026-11-28T01:34:58.284549Z {cluster}/apps/deployments/default/demo kelemetry-admin create"),
            format!(
                "2026-11-28T01:34:58.33295Z {cluster}//pods/default/demo-fd6c564b7-lvvlz \
                 system:serviceaccount:kube-system:replicaset-controller create"
            ),
            format!("2026-11-28T01:34:58.356731Z {cluster}//pods/default/demo-fd6c564b7-lvvlz kwok-admin patch status"),
            format!("2026-11-28T01:35:18.701003Z {cluster}/apps/deployments/default/demo kelemetry-admin delete"),
        ]
        .to_vec()
    };
    let pod = "sample-cluster//pods/1-2-deployment-update/nginx-deployment-surge-8655b4b8c5-xf5f4";
    let gke_create = format!(
        "2024-01-01T01:00:00Z {pod} system:serviceaccount:kube-system:replicaset-controller create"
    );
    let gke_patch = format!(
        "2024-01-01T01:00:00Z {pod} system:node:gke-sample-cluster-default-abcdefgh-abcd patch status"
    );
    let cases: Vec<(&str, Vec<String>, Envelope)> = vec![
        (
            "aks/storage-log-string.jsonl",
            four("cluster"),
            Envelope::Aks,
        ),
        (
            "aks/eventhub-log-object.json",
            four("cluster"),
            Envelope::Aks,
        ),
        (
            "eks/cloudwatch-events.jsonl",
            four("default-cluster"),
            Envelope::EksCloudWatch,
        ),
        (
            "eks/subscription-record.json",
            four("my-cluster"),
            Envelope::EksSubscription,
        ),
        (
            "eks/subscription-record.b64",
            four("my-cluster"),
            Envelope::EksSubscription,
        ),
        (
            "audit-yaml/four-events.yaml",
            four("default-cluster"),
            Envelope::Native,
        ),
        (
            "gke/pod-create.yaml",
            vec![gke_create.clone()],
            Envelope::Gke,
        ),
        (
            "gke/pod-create.json",
            vec![gke_create.clone()],
            Envelope::Gke,
        ),
        (
            "gke/pod-status-patch.yaml",
            vec![gke_patch.clone()],
            Envelope::Gke,
        ),
        (
            "gke/pod-status-patch.json",
            vec![gke_patch.clone()],
            Envelope::Gke,
        ),
        (
            "gke/export.jsonl",
            vec![gke_create, gke_patch.clone(), gke_patch],
            Envelope::Gke,
        ),
    ];
    for (name, expected, envelope) in cases {
        let path = root.join(name);
        if !path.is_file() {
            eprintln!("skipping {name}: missing");
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (report, sink, _) = read(name.rsplit('/').next().unwrap(), &text).await;
        assert_eq!(keys(&sink), expected, "{name}");
        assert_eq!(sink.rejections(), vec![], "{name}");
        assert_eq!(
            report.by_envelope,
            BTreeMap::from([(envelope, expected.len() as u64)]),
            "{name}"
        );
    }
}
