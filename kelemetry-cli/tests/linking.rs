//! Relations end to end: the `kelemetry` binary replays recordings with the linkers of `kelemetry-linkers` (owner
//! references, the parent-link annotation, Pod to Node, the default rules), and the assembled trees show them.
//!
//! Recorded data comes from `../shared/fixtures` (through `KELEMETRY_FIXTURES`); without it those tests say so and
//! pass, unless `KELEMETRY_REQUIRE_FIXTURES=1`. No recording holds Services with their EndpointSlices, so
//! `tests/data/linking` has audit events built by hand after real object shapes (its README says how).

#![allow(clippy::unwrap_used)]

mod support;

use support::{ReplaySummary, fixtures, kelemetry};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kelemetry_core::ObjectKey;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{DisplayMode, TraceView, ViewNode, ViewRequest, assemble};
use kelemetry_store::SpanStore;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/linking")
        .join(name)
}

fn replay(files: &[&Path], extra: &[&str], store: &Path) -> String {
    let mut args = vec!["replay", "--quiet"];
    args.extend(extra);
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let (ok, stdout, stderr) = kelemetry(&args, store);
    assert!(ok, "replay failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("linker errors"), "{stdout}");
    stdout
}

async fn full_tree(store: &Path, key: ObjectKey) -> TraceView {
    let reader = SpanStore::open_read_only(store).unwrap();
    let mut request = ViewRequest::new(key);
    request.selector = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(Modifier::FullTree),
    }
    .selector();
    assemble(&reader, &request).await.unwrap()
}

/// Every node of the tree as `(depth, "resource/name", class)`.
fn outline(view: &TraceView) -> Vec<(usize, String, String)> {
    view.root
        .walk()
        .into_iter()
        .map(|(depth, node)| {
            let key = &node.history.key;
            (
                depth,
                format!("{}/{}", key.resource, key.name),
                node.class.clone(),
            )
        })
        .collect()
}

fn children(node: &ViewNode) -> Vec<(String, String)> {
    node.children
        .iter()
        .map(|c| (c.history.key.to_string(), c.class.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pods_full_tree_reaches_its_node_and_the_node_lists_its_pods() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    replay(
        &[&fixtures.join("events/kspan-kind-2021/deployment-2-pods.yaml")],
        &[],
        &store,
    );

    let pod = ObjectKey::new("local", "", "pods", "default", "px-5d567cc74c-ss4lb");
    let view = full_tree(&store, pod).await;
    assert_eq!(
        outline(&view),
        [
            (0, "deployments/px".into(), "".into()),
            (1, "replicasets/px-5d567cc74c".into(), "children".into()),
            (2, "pods/px-5d567cc74c-ss4lb".into(), "children".into()),
            (3, "nodes/kind-control-plane".into(), "node".into()),
            (3, "serviceaccounts/default".into(), "serviceaccount".into()),
        ]
    );
    // The displayed tree leaves out related objects with nothing in the range and nothing under them (the
    // original's PruneChildless), except the queried object's direct relations: the Pod's quiet Node is shown.
    let (ok, stdout, stderr) = kelemetry(
        &["show", "pods/default/px-5d567cc74c-ss4lb", "--full-tree"],
        &store,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("── nodes kind-control-plane  (node)"),
        "{stdout}"
    );
    let (ok, stdout, stderr) =
        kelemetry(&["show", "nodes/kind-control-plane", "--full-tree"], &store);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("local nodes kind-control-plane"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("── pods px-").count(), 4, "{stdout}");
    assert_eq!(stdout.matches("  (node)\n").count(), 4, "{stdout}");

    // The Node's tree: the four pods that ran on it, each with its events.
    let node = ObjectKey::new("local", "", "nodes", "", "kind-control-plane");
    let view = full_tree(&store, node).await;
    assert_eq!(view.root.history.key.resource, "nodes");
    let pods: BTreeSet<String> = view
        .root
        .children
        .iter()
        .map(|c| {
            assert_eq!(c.class, "node");
            c.history.key.name.to_string()
        })
        .collect();
    assert_eq!(
        pods,
        BTreeSet::from(
            [
                "px-5d567cc74c-pmvzr",
                "px-5d567cc74c-ss4lb",
                "px-7df978b9bf-bfdrj",
                "px-7df978b9bf-jm22q"
            ]
            .map(str::to_owned)
        )
    );
    let started = view
        .root
        .children
        .iter()
        .find(|c| c.history.key.name == "px-5d567cc74c-ss4lb")
        .unwrap();
    assert!(
        started
            .history
            .activities
            .iter()
            .any(|a| a.name.contains("Scheduled"))
    );

    // The Deployment's tree goes down only: no node, no account.
    let (ok, stdout, _) = kelemetry(&["show", "deployments/default/px", "--full-tree"], &store);
    assert!(ok);
    assert!(!stdout.contains("nodes "), "{stdout}");
    assert!(!stdout.contains("serviceaccounts "), "{stdout}");
}

/// The pod list of a real Kubernetes 1.36 kind cluster (control plane pods, CoreDNS, kindnet, kube-proxy).
#[tokio::test(flavor = "multi_thread")]
async fn every_recorded_pod_reaches_its_node() {
    let Some(fixtures) = fixtures() else { return };
    let replay_file =
        std::fs::read_to_string(fixtures.join("apiserver-replays/k8s-openapi-v1-36/pod-list.json"))
            .unwrap();
    let pairs: serde_json::Value = serde_json::from_str(&replay_file).unwrap();
    let list = pairs[0]["response_body"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pods_file = dir.path().join("pods.json");
    std::fs::write(&pods_file, list).unwrap();
    let store = dir.path().join("store");
    replay(&[&pods_file], &["--cluster", "kind"], &store);

    let items: serde_json::Value = serde_json::from_str(list).unwrap();
    let items = items["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    let mut nodes = BTreeSet::new();
    for item in items {
        let name = item["metadata"]["name"].as_str().unwrap();
        let node = item["spec"]["nodeName"].as_str().unwrap();
        nodes.insert(node.to_owned());
        let view = full_tree(
            &store,
            ObjectKey::new("kind", "", "pods", "kube-system", name),
        )
        .await;
        // Static pods are owned by their Node (a controller owner reference), the others by a ReplicaSet or
        // DaemonSet: either way the Node is in the tree.
        let found = outline(&view);
        assert!(
            found.iter().any(|(_, n, _)| *n == format!("nodes/{node}")),
            "{name}: {found:?}"
        );
    }
    assert_eq!(nodes.len(), 1);
    let node = nodes.into_iter().next().unwrap();
    let view = full_tree(&store, ObjectKey::new("kind", "", "nodes", "", &node)).await;
    assert_eq!(view.root.children.len(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_services_tree_shows_its_endpointslices() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let summary = replay(&[&data("services-audit.log")], &[], &store);
    let counted = ReplaySummary::parse(&summary);
    assert_eq!(counted.count("activities"), 6, "{summary}");
    assert_eq!(counted.count("rejected"), 0, "{summary}");

    // The EndpointSlice controller's slice (owner reference) and the Endpoints (default rule, by name).
    let view = full_tree(
        &store,
        ObjectKey::new("local", "", "services", "default", "web"),
    )
    .await;
    assert_eq!(view.root.history.key.name, "web");
    assert_eq!(
        children(&view.root),
        [
            (
                "local/discovery.k8s.io/endpointslices/default/web-7xk2p".into(),
                "children".into()
            ),
            ("local//endpoints/default/web".into(), "endpoints".into()),
        ]
    );
    let slice = &view.root.children[0];
    assert_eq!(slice.history.activities.len(), 2);
    // A slice made by hand for a Service without a selector: only its label names the Service (default rule).
    let (ok, stdout, stderr) = kelemetry(&["show", "services/default/db", "--full-tree"], &store);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("└── endpointslices db-1  (endpoints)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("audit kubernetes-admin create"), "{stdout}");
    // And from the slice, up to its Service.
    let (ok, stdout, _) = kelemetry(
        &[
            "show",
            "endpointslices.discovery.k8s.io/default/db-1",
            "--full-tree",
        ],
        &store,
    );
    assert!(ok);
    assert!(stdout.starts_with("local services db"), "{stdout}");
}

/// A FederatedDeployment in a host cluster; the member cluster's Deployment (the real recording, with the
/// annotation added) names it as its parent. Two replays with different `--cluster` into one store make one tree.
#[tokio::test(flavor = "multi_thread")]
async fn an_annotation_chain_across_two_clusters_is_one_tree() {
    let Some(fixtures) = fixtures() else { return };
    let recording =
        std::fs::read_to_string(fixtures.join("events/kspan-kind-2021/deployment-2-pods.yaml"))
            .unwrap();
    let anchor = "kind: Deployment\nmetadata:\n  annotations:\n";
    assert_eq!(recording.matches(anchor).count(), 1);
    let annotation = "    kelemetry.kubewharf.io/parent-link: '{\"cluster\":\"host\",\"group\":\"types.kubefed.io\",\
                      \"version\":\"v1beta1\",\"resource\":\"federateddeployments\",\"namespace\":\"default\",\"name\":\"px\"}'\n";
    let dir = tempfile::tempdir().unwrap();
    let member = dir.path().join("member.yaml");
    std::fs::write(
        &member,
        recording.replace(anchor, &format!("{anchor}{annotation}")),
    )
    .unwrap();
    let store = dir.path().join("store");
    replay(
        &[&data("federation-host.yaml")],
        &["--cluster", "host"],
        &store,
    );
    replay(&[&member], &["--cluster", "member"], &store);

    let host = ObjectKey::new(
        "host",
        "types.kubefed.io",
        "federateddeployments",
        "default",
        "px",
    );
    let view = full_tree(&store, host.clone()).await;
    let clusters: Vec<(usize, String, String)> = view
        .root
        .walk()
        .into_iter()
        .map(|(depth, node)| {
            let key = &node.history.key;
            (depth, key.cluster.to_string(), key.resource.to_string())
        })
        .collect();
    assert_eq!(
        clusters,
        [
            (0, "host".into(), "federateddeployments".into()),
            (1, "member".into(), "deployments".into()),
            (2, "member".into(), "replicasets".into()),
            (3, "member".into(), "pods".into()),
            (3, "member".into(), "pods".into()),
            (2, "member".into(), "replicasets".into()),
            (3, "member".into(), "pods".into()),
            (3, "member".into(), "pods".into()),
        ]
    );
    // From the member's Pod, up through both clusters.
    let pod = ObjectKey::new("member", "", "pods", "default", "px-7df978b9bf-bfdrj");
    let view = full_tree(&store, pod).await;
    assert_eq!(view.root.history.key, host);
    let (ok, stdout, stderr) = kelemetry(
        &[
            "show",
            "federateddeployments.types.kubefed.io/default/px",
            "--full-tree",
        ],
        &store,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("host federateddeployments px"),
        "{stdout}"
    );
    assert!(stdout.contains("└── member deployments px\n"), "{stdout}");
}

#[test]
fn a_rule_file_with_mistakes_is_rejected_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:
  - name: claims
    match: {group: \"\", resource: persistentvolumeclaims}
    target: {group: \"\", resource: persistentvolumes, name: $.spec.volumeName}
    role: child
  - match:
      group: discovery.k8s.io
      resource: endpointslices
    target:
      group: \"\"
      resource: services
      name: {path: \"$.metadata.labels.kubernetes.io/service-name\"}
    role: parent
  - match: {group: apps, resource: Deployment}
    target: {group: \"\", resource: configmaps, name: \"$.spec.template.spec.volumes[*].configMap.name\"}
    role: uses
",
    )
    .unwrap();
    let store = dir.path().join("store");
    let path = rules.display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["rules", "check", &path])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{path}:12:20: rule 2 (endpointslices→services): invalid JSONPath \
             \"$.metadata.labels.kubernetes.io/service-name\""
        )),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        format!(
            "{path}:14:36: rule 3 (Deployment→configmaps): resource \"Deployment\" is not a resource name: write \
             the lowercase plural (services, not Service)"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{path}:16:11: rule 3 (Deployment→configmaps): unknown role \"uses\" (expected parent or child: the \
             related object's role)"
        )
    );
    assert_eq!(
        lines[3],
        format!("kelemetry: {path}: 3 error(s); no rule was accepted")
    );

    // A replay with that file stops before writing anything.
    let (ok, _, stderr) = kelemetry(&["replay", "--quiet", "--rules", &path, &path], &store);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("{path}:16:11: rule 3")),
        "{stderr}"
    );
    assert!(!store.exists());

    // The built-in rules pass the check.
    let out = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["rules", "check"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../kelemetry-linkers/rules/default.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("OK, "))
            .collect::<Vec<_>>(),
        [format!(
            "{}: OK, 10 rule(s)",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../kelemetry-linkers/rules/default.yaml")
                .display()
        )],
        "{stdout}"
    );
    assert!(
        stdout.contains("6 pods→serviceaccounts: pods → serviceaccounts named by path $.spec.serviceAccountName, \
                         as parent (class serviceaccount)"),
        "{stdout}"
    );
}

/// `--rules FILE` replaces the built-in rules: the recorded Pods mount their token Secret.
#[tokio::test(flavor = "multi_thread")]
async fn replay_with_a_rule_file_of_ones_own() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: pod-secrets\n    match: {group: \"\", resource: pods}\n    \
         target: {group: \"\", resource: secrets, name: \"$.spec.volumes[*].secret.secretName\"}\n    \
         role: child\n    class: mounts\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    replay(
        &[&fixtures.join("events/kspan-kind-2021/deployment-2-pods.yaml")],
        &["--rules", &rules.display().to_string()],
        &store,
    );
    let pod = ObjectKey::new("local", "", "pods", "default", "px-7df978b9bf-bfdrj");
    let view = full_tree(&store, pod).await;
    let found = outline(&view);
    assert!(
        found.contains(&(3, "secrets/default-token-kx75m".into(), "mounts".into())),
        "{found:?}"
    );
    assert!(found.contains(&(3, "nodes/kind-control-plane".into(), "node".into())));
    assert!(
        !found
            .iter()
            .any(|(_, n, _)| n.starts_with("serviceaccounts/")),
        "{found:?}"
    );
}
