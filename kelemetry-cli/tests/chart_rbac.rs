//! The chart's RBAC, proven on the real apiserver (`KELEMETRY_E2E=1`): the ServiceAccount, ClusterRole, Role and
//! bindings rendered by `deploy/helm/kelemetry` are created in a test cluster, a token of that ServiceAccount
//! (`kubectl create token`) goes into a kubeconfig, and the release `kelemetry run` — with the run file the chart
//! rendered, every live source on (audit webhook, Events, object watch), only paths and addresses changed to this
//! machine's — traces the original's Deployment scenario as that ServiceAccount. The apiserver's audit webhook
//! uses the chart's generated token and CA (its serving certificate made for 127.0.0.1 through
//! `webhook.tls.extraIPs`), so the TLS and bearer-token wiring is the chart's too.
//!
//! Then rules are taken away, and the failure must name the resource and the verb: without the `apps` rule of the
//! ClusterRole the object watch says, at error level, which resources it may not list and watch; without the Role
//! the Events source stops the process, naming the ConfigMap it may not read.

#![allow(clippy::unwrap_used)]

mod chart_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chart_support::{Helm, documents, find, run_config, secret_value};
use kelemetry_testkit::{
    ClusterOptions, KelemetryProcess, TestCluster, e2e_enabled, free_loopback_port, release_binary,
    wait_until,
};
use serde_json::Value;
use support::{counts, line_after, wait_until_exported};

const NAMESPACE: &str = "kelemetry-rbac";
const RELEASE: &str = "rbac";
const SERVICE_ACCOUNT: &str = "rbac-kelemetry";

/// The kinds the RBAC proof takes from the rendered chart.
const RBAC_KINDS: &[&str] = &[
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// `kubectl auth can-i VERB RESOURCE` as the chart's ServiceAccount, in all namespaces.
fn can_i(cluster: &TestCluster, verb: &str, resource: &str) -> bool {
    let user = format!("--as=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    // kubectl exits 1 with "no" when the answer is no.
    match cluster.kubectl(["auth", "can-i", verb, resource, "--all-namespaces", &user]) {
        Ok(answer) => answer.trim() == "yes",
        Err(_) => false,
    }
}

/// A kubeconfig for the apiserver of `cluster` (its CA taken from the admin kubeconfig) with `token`.
fn token_kubeconfig(cluster: &TestCluster, token: &str, path: &Path) {
    let admin: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(cluster.kubeconfig()).unwrap()).unwrap();
    let ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {SERVICE_ACCOUNT}\n  user:\n    token: {token}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: {SERVICE_ACCOUNT}\n\
         current-context: test\n",
        server = cluster.apiserver_url(),
    );
    std::fs::write(path, text).unwrap();
}

/// The chart's run file with this machine's paths and addresses: the kubeconfig instead of the in-cluster
/// account, the webhook on loopback with the chart's token and certificate as files, the store and a JSON lines
/// file (for the test to watch) in `dir`. Everything else (sources, watermark, watched resources, filter, limits)
/// is as rendered.
fn local_run_config(rendered: &serde_yaml_ng::Value, dir: &Path, port: u16) -> PathBuf {
    use serde_yaml_ng::Value as Yaml;
    let mut config = rendered.clone();
    let set = |value: &mut Yaml, path: &[&str], new: Yaml| {
        let mut at = value;
        for key in &path[..path.len() - 1] {
            at = at
                .get_mut(*key)
                .unwrap_or_else(|| panic!("no {key} in {path:?}"));
        }
        let mapping = at.as_mapping_mut().unwrap();
        mapping.insert(Yaml::from(path[path.len() - 1]), new);
    };
    let path = |name: &str| Yaml::from(dir.join(name).display().to_string());
    set(
        &mut config,
        &["kubernetes"],
        serde_yaml_ng::from_str(&format!(
            "kubeconfig: {}",
            dir.join("sa.kubeconfig").display()
        ))
        .unwrap(),
    );
    set(
        &mut config,
        &["sources", "webhook", "listen"],
        Yaml::from(format!("127.0.0.1:{port}")),
    );
    set(
        &mut config,
        &["sources", "webhook", "tokenFile"],
        path("webhook-token"),
    );
    set(
        &mut config,
        &["sources", "webhook", "tls", "cert"],
        path("tls.crt"),
    );
    set(
        &mut config,
        &["sources", "webhook", "tls", "key"],
        path("tls.key"),
    );
    set(&mut config, &["exporters", "store", "path"], path("store"));
    set(
        &mut config,
        &["exporters", "jsonLines"],
        serde_yaml_ng::from_str(&format!("path: {}", dir.join("spans.jsonl").display())).unwrap(),
    );
    if config.get("metrics").is_some() {
        let metrics_port = free_loopback_port().unwrap();
        set(
            &mut config,
            &["metrics", "listen"],
            Yaml::from(format!("127.0.0.1:{metrics_port}")),
        );
    }
    let file = dir.join("kelemetry.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    file
}

/// Applies the manifests `docs` (as admin).
fn apply(cluster: &TestCluster, docs: &[&Value]) {
    let text: String = docs
        .iter()
        .map(|doc| format!("---\n{}", serde_yaml_ng::to_string(doc).unwrap()))
        .collect();
    cluster
        .kubectl_with_input(["apply", "-f", "-"], &text)
        .unwrap();
}

#[test]
fn the_charts_service_account_traces_the_deployment_scenario_and_a_missing_rule_is_named() {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 to run against a live test cluster");
        return;
    }
    let helm = Helm::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_loopback_port().unwrap();
    let url = format!("https://127.0.0.1:{port}/audit/tracetest");
    let docs = documents(&helm.render(
        RELEASE,
        NAMESPACE,
        &[
            "cluster=tracetest",
            &format!("webhook.apiserverURL={url}"),
            "webhook.tls.extraIPs={127.0.0.1}",
        ],
    ));

    // The apiserver posts with the chart's webhook kubeconfig: its URL, CA and token.
    let webhook_kubeconfig: serde_yaml_ng::Value = serde_yaml_ng::from_str(&secret_value(
        &docs,
        "rbac-kelemetry-apiserver-audit",
        "audit-webhook.kubeconfig",
    ))
    .unwrap();
    let token = secret_value(&docs, "rbac-kelemetry-webhook-token", "token");
    let ca = secret_value(&docs, "rbac-kelemetry-webhook-tls", "ca.crt");
    assert_eq!(
        webhook_kubeconfig["clusters"][0]["cluster"]["server"].as_str(),
        Some(url.as_str())
    );
    assert_eq!(
        webhook_kubeconfig["users"][0]["user"]["token"].as_str(),
        Some(token.as_str())
    );
    std::fs::write(dir.path().join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.path().join("webhook-token"), &token).unwrap();
    for file in ["tls.crt", "tls.key"] {
        std::fs::write(
            dir.path().join(file),
            secret_value(&docs, "rbac-kelemetry-webhook-tls", file),
        )
        .unwrap();
    }
    let cluster = TestCluster::start_with(ClusterOptions {
        audit_webhook_url: Some(url.clone()),
        audit_webhook_token: Some(token.clone()),
        audit_webhook_ca_file: Some(dir.path().join("ca.crt")),
        ..ClusterOptions::default()
    })
    .unwrap();

    // The chart's RBAC objects, and a token of its ServiceAccount.
    cluster.kubectl(["create", "namespace", NAMESPACE]).unwrap();
    let rbac: Vec<&Value> = docs
        .iter()
        .filter(|d| RBAC_KINDS.contains(&d["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(rbac.len(), 5, "{rbac:#?}");
    apply(&cluster, &rbac);
    assert!(can_i(&cluster, "watch", "deployments.apps"));
    assert!(can_i(&cluster, "list", "events.events.k8s.io"));
    assert!(
        !can_i(&cluster, "list", "secrets"),
        "Secrets are not granted"
    );
    assert!(!can_i(&cluster, "create", "deployments.apps"));
    let sa_token = cluster
        .kubectl([
            "create",
            "token",
            SERVICE_ACCOUNT,
            "--namespace",
            NAMESPACE,
            "--duration=1h",
        ])
        .unwrap();
    token_kubeconfig(&cluster, sa_token.trim(), &dir.path().join("sa.kubeconfig"));
    let config = local_run_config(&run_config(&docs, RELEASE), dir.path(), port);

    // Every live source on, as the ServiceAccount, through the Deployment scenario.
    let binary = release_binary();
    let kelemetry = KelemetryProcess::start(&binary, &config, "warn");
    // The Events source stored its watermark (get, then a server-side apply that creates it): it watches now.
    wait_until("the watermark ConfigMap", Duration::from_secs(60), || {
        let found = cluster.kubectl_json([
            "get",
            "configmaps",
            "--namespace",
            NAMESPACE,
            "--field-selector=metadata.name=kelemetry-event-watermark",
        ])?;
        Ok(found["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
            .then_some(()))
    })
    .unwrap();
    cluster.deployment_scenario(Duration::from_secs(5)).unwrap();
    wait_until_exported(
        &dir.path().join("spans.jsonl"),
        &[
            ("deployments", "demo", " delete"),
            ("deployments", "demo", " update status"),
            ("deployments", "demo", "ScalingReplicaSet"),
        ],
        Duration::from_secs(60),
    );
    let log = kelemetry.stderr();
    let summary = kelemetry.stop();
    eprintln!("{summary}");
    // Whole words: a port or a temporary folder name may hold the digits 403.
    let refused = log
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| *word == "403" || word.eq_ignore_ascii_case("forbidden"));
    assert!(
        refused.is_none(),
        "the chart's RBAC let something be refused ({refused:?}):\n{log}"
    );
    let webhook = counts(line_after(&summary, "webhook: "));
    assert_eq!(webhook["lost"], 0, "{summary}");
    assert!(webhook["accepted"] > 0, "{summary}");
    assert_eq!(
        counts(line_after(&summary, "pipeline: "))["not exported"],
        0,
        "{summary}"
    );
    let events = counts(line_after(&summary, "events: "));
    assert!(
        events["sent"] >= 4,
        "Events of the scenario traced: {summary}"
    );
    let watch = counts(line_after(&summary, "object watch: "));
    assert!(
        watch["creations"] >= 7,
        "the Deployment, two ReplicaSets, four Pods: {summary}"
    );
    assert!(watch["deletions"] >= 1, "{summary}");
    assert!(watch["diffs"] >= 1, "{summary}");
    // The trace, read back from the store.
    let shown = Command::new(&binary)
        .args([
            "show",
            "deployments/default/demo",
            "--full-tree",
            "--cluster",
            "tracetest",
            "--store",
        ])
        .arg(dir.path().join("store"))
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{tree}");
    assert!(tree.contains("event ScalingReplicaSet"), "{tree}");
    assert!(
        tree.contains(
            "audit system:serviceaccount:kube-system:deployment-controller update status"
        ),
        "{tree}"
    );
    assert_eq!(
        tree.lines()
            .filter(|l| l.starts_with("├── replicasets ") || l.starts_with("└── replicasets "))
            .count(),
        2,
        "{tree}"
    );

    // One rule less: the ClusterRole without its `apps` rule. The object watch names what it may not list.
    let mut role = find(&docs, "ClusterRole", "rbac-kelemetry").clone();
    let rules = role["rules"].as_array_mut().unwrap();
    let before = rules.len();
    rules.retain(|rule| rule["apiGroups"] != serde_json::json!(["apps"]));
    assert_eq!(rules.len(), before - 1);
    apply(&cluster, &[&role]);
    wait_until(
        "the narrowed ClusterRole to take effect",
        Duration::from_secs(30),
        || Ok((!can_i(&cluster, "list", "deployments.apps")).then_some(())),
    )
    .unwrap();
    let second = tempfile::tempdir().unwrap();
    for file in ["sa.kubeconfig", "webhook-token", "tls.crt", "tls.key"] {
        std::fs::copy(dir.path().join(file), second.path().join(file)).unwrap();
    }
    let port = free_loopback_port().unwrap();
    let config = local_run_config(&run_config(&docs, RELEASE), second.path(), port);
    // At the binary's default log level (errors only), as an operator would first run it.
    let kelemetry = KelemetryProcess::start(&binary, &config, "error");
    let expected = format!(
        "object watch: forbidden to list and watch deployments.apps (resource \"deployments\" in API group \
         \"apps\"): deployments.apps is forbidden: User \"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}\" \
         cannot list resource \"deployments\" in API group \"apps\" at the cluster scope; grant the verbs list \
         and watch on it, or leave it out of the watch (include, exclude); retrying"
    );
    // Every apps resource is named (each watch fails on its own), nothing else is refused, and the process goes on.
    let apps = [
        "controllerrevisions",
        "daemonsets",
        "deployments",
        "replicasets",
        "statefulsets",
    ];
    let log = wait_until(
        "the object watch to name every refused resource",
        Duration::from_secs(60),
        || {
            let log = kelemetry.stderr();
            let all = apps.iter().all(|resource| {
                log.contains(&format!("forbidden to list and watch {resource}.apps ("))
            });
            Ok((all && log.contains(&expected)).then_some(log))
        },
    )
    .unwrap_or_else(|err| panic!("{err}:\n{}", kelemetry.stderr()));
    assert!(!log.contains("forbidden to list and watch pods"), "{log}");
    assert!(!log.contains("Kubernetes Events: forbidden"), "{log}");
    // The refused resources do not starve the others: every other watched resource (24 in all) completes its
    // first list, though the refused ones outnumber the 4 list slots.
    let metrics = line_after(&log, "kelemetry: metrics on http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    wait_until(
        "the 19 granted resources to be listed",
        Duration::from_secs(60),
        || {
            let (status, _, body) = kelemetry_testkit::http_get(&metrics, "/metrics");
            assert_eq!(status, 200, "{body}");
            let listed = body
                .lines()
                .find_map(|l| l.strip_prefix("kelemetry_watch_resources{state=\"listed\"} "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            let listing = body
                .lines()
                .find_map(|l| l.strip_prefix("kelemetry_watch_resources{state=\"listing\"} "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            Ok((listed == Some(19.0) && listing == Some(5.0)).then_some(()))
        },
    )
    .unwrap_or_else(|err| panic!("{err}:\n{}", kelemetry.stderr()));
    let summary = kelemetry.stop();
    assert_eq!(
        counts(line_after(&summary, "pipeline: "))["not exported"],
        0,
        "{summary}"
    );

    // Without the Role, the Events source cannot read its watermark: the run stops, naming the ConfigMap and verb.
    cluster
        .kubectl(["delete", "role", "rbac-kelemetry", "--namespace", NAMESPACE])
        .unwrap();
    wait_until("the Role to be gone", Duration::from_secs(30), || {
        let user = format!("--as=system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
        let answer = cluster.kubectl([
            "auth",
            "can-i",
            "get",
            "configmaps/kelemetry-event-watermark",
            "--namespace",
            NAMESPACE,
            &user,
        ]);
        Ok(answer.is_err().then_some(()))
    })
    .unwrap();
    let third = tempfile::tempdir().unwrap();
    for file in ["sa.kubeconfig", "webhook-token", "tls.crt", "tls.key"] {
        std::fs::copy(dir.path().join(file), third.path().join(file)).unwrap();
    }
    let config = local_run_config(
        &run_config(&docs, RELEASE),
        third.path(),
        free_loopback_port().unwrap(),
    );
    let mut child = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "kelemetry run went on without its watermark"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "kelemetry: source failed: kube-events: Kubernetes Events: reading the watermark: ApiError: configmaps \
             \"kelemetry-event-watermark\" is forbidden: User \"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}\" \
             cannot get resource \"configmaps\" in API group \"\" in the namespace \"{NAMESPACE}\""
        )),
        "{stderr}"
    );
}
