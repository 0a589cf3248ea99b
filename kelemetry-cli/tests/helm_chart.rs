//! The Helm chart `deploy/helm/kelemetry` (`KELEMETRY_E2E=1`: helm is built by `scripts/helm/build`, which
//! `scripts/test` runs in its full run): `helm lint`; what it renders, RBAC rule by rule; every variant's
//! `kelemetry run` file accepted by `kelemetry run --check`; a server-side dry run of the rendered manifests
//! against the real test apiserver; `helm install`, `upgrade` (the generated token and certificate kept) and
//! `uninstall` in the test cluster. kwok runs no containers: installed objects are checked through the API, not
//! by running the pod (that is `chart_rbac.rs`, with the binary outside the cluster).

#![allow(clippy::unwrap_used)]

mod chart_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chart_support::{Helm, chart, documents, find, kinds_and_names, run_config, secret_value};
use kelemetry_testkit::{TestCluster, e2e_enabled, wait_until};
use serde_json::{Value, json};

fn enabled() -> bool {
    if !e2e_enabled() {
        eprintln!("skipped: set KELEMETRY_E2E=1 (helm is built with the test cluster's binaries)");
    }
    e2e_enabled()
}

/// `kelemetry run --config FILE --check` on `config`: panics with its output unless it says `FILE: ok`.
fn check_run_config(config: &serde_yaml_ng::Value, variant: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kelemetry.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(config).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["run", "--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == format!("{}: ok", file.display()),
        "{variant}: kelemetry run --check refused the rendered file:\n{}\n{stdout}{}",
        serde_yaml_ng::to_string(config).unwrap(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The containers of the StatefulSet's pod by name, with `init/` before the init containers' names.
fn containers(statefulset: &Value) -> Vec<(String, &Value)> {
    let spec = &statefulset["spec"]["template"]["spec"];
    let named = |prefix: &str, list: &'static str| -> Vec<(String, &Value)> {
        spec[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (format!("{prefix}{}", c["name"].as_str().unwrap()), c))
            .collect()
    };
    let mut all = named("init/", "initContainers");
    all.extend(named("", "containers"));
    all
}

#[test]
fn lint_passes_and_the_rendered_manifests_are_least_privilege_and_accepted_by_kelemetry() {
    if !enabled() {
        return;
    }
    let helm = Helm::new();
    let chart = chart().display().to_string();

    let (ok, stdout, stderr) = helm.run(["lint", &chart, "--strict", "--set", "cluster=ci"]);
    assert!(ok, "helm lint failed:\n{stdout}{stderr}");
    assert!(
        stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{stdout}"
    );
    // The cluster name is required, and said so (lint lets `required` pass; a render does not).
    let error = helm.render_error("rel", "tracing", &[]);
    assert!(
        error.contains("cluster is required: the name of this cluster"),
        "{error}"
    );

    // The defaults.
    let text = helm.render("rel", "tracing", &["cluster=ci"]);
    let docs = documents(&text);
    assert_eq!(
        kinds_and_names(&docs),
        [
            "ServiceAccount/rel-kelemetry",
            "Secret/rel-kelemetry-webhook-token",
            "Secret/rel-kelemetry-webhook-tls",
            "Secret/rel-kelemetry-apiserver-audit",
            "ConfigMap/rel-kelemetry",
            "ClusterRole/rel-kelemetry",
            "ClusterRoleBinding/rel-kelemetry",
            "Role/rel-kelemetry",
            "RoleBinding/rel-kelemetry",
            "Service/rel-kelemetry-webhook",
            "Service/rel-kelemetry",
            "Service/rel-kelemetry-pods",
            "StatefulSet/rel-kelemetry",
        ]
    );
    // Every namespaced object names the release namespace (so `helm template | kubectl apply` puts it there).
    for doc in &docs {
        if !doc["kind"].as_str().unwrap().starts_with("Cluster") {
            assert_eq!(doc["metadata"]["namespace"], "tracing", "{doc}");
        }
    }
    let cluster_role = find(&docs, "ClusterRole", "rel-kelemetry");
    let watched = |group: &str, resources: &[&str]| json!({"apiGroups": [group], "resources": resources, "verbs": ["list", "watch"]});
    assert_eq!(
        cluster_role["rules"],
        json!([
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["list", "watch"]},
            watched("", &["configmaps", "limitranges", "namespaces", "nodes", "persistentvolumeclaims",
                "persistentvolumes", "pods", "replicationcontrollers", "resourcequotas", "serviceaccounts",
                "services"]),
            watched("apps", &["controllerrevisions", "daemonsets", "deployments", "replicasets", "statefulsets"]),
            watched("batch", &["cronjobs", "jobs"]),
            watched("autoscaling", &["horizontalpodautoscalers"]),
            watched("policy", &["poddisruptionbudgets"]),
            watched("networking.k8s.io", &["ingresses", "ingressclasses", "networkpolicies"]),
            watched("storage.k8s.io", &["storageclasses"]),
        ])
    );
    assert_eq!(
        find(&docs, "Role", "rel-kelemetry")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kelemetry-event-watermark"],
             "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        ])
    );
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        assert_eq!(
            find(&docs, binding, "rel-kelemetry")["subjects"],
            json!([{"kind": "ServiceAccount", "name": "rel-kelemetry", "namespace": "tracing"}])
        );
    }
    // The run file: what the sources need, the watermark in the release namespace, the object watch narrowed to
    // exactly what the ClusterRole grants.
    let config = run_config(&docs, "rel");
    assert_eq!(config["cluster"].as_str(), Some("ci"));
    assert_eq!(config["kubernetes"]["inCluster"].as_bool(), Some(true));
    assert_eq!(
        config["sources"]["events"]["watermark"]["namespace"].as_str(),
        Some("tracing")
    );
    let include: Vec<&str> = config["sources"]["objectWatch"]["include"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(include.len(), 24, "{include:?}");
    assert!(include.contains(&"deployments.apps") && include.contains(&"pods"));
    assert!(!include.iter().any(|name| name.starts_with("secrets")));
    assert_eq!(
        config["sources"]["webhook"]["listen"].as_str(),
        Some("0.0.0.0:8087")
    );
    check_run_config(&config, "defaults");
    // One writer: one replica; `run` a sidecar that starts before `serve`; non-root, read-only root filesystem.
    let statefulset = find(&docs, "StatefulSet", "rel-kelemetry");
    assert_eq!(statefulset["spec"]["replicas"], 1);
    let pod = &statefulset["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["serviceAccountName"], "rel-kelemetry");
    let all = containers(statefulset);
    let names: Vec<&str> = all.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["init/run", "serve"]);
    for (name, container) in &all {
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"], false,
            "{name}"
        );
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
    }
    assert_eq!(all[0].1["restartPolicy"], "Always");
    assert_eq!(
        all[0].1["startupProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics", "scheme": "HTTP"})
    );
    assert_eq!(config["metrics"]["listen"].as_str(), Some("0.0.0.0:9464"));
    assert_eq!(
        all[1].1["args"],
        json!([
            "serve",
            "--store",
            "/var/lib/kelemetry/store",
            "--listen",
            "0.0.0.0:8080"
        ])
    );
    assert_eq!(
        statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "20Gi"
    );

    // The apiserver's side: its webhook kubeconfig carries the generated token and CA.
    let kubeconfig: serde_yaml_ng::Value = serde_yaml_ng::from_str(&secret_value(
        &docs,
        "rel-kelemetry-apiserver-audit",
        "audit-webhook.kubeconfig",
    ))
    .unwrap();
    let token = secret_value(&docs, "rel-kelemetry-webhook-token", "token");
    assert_eq!(token.len(), 32);
    assert_eq!(
        kubeconfig["users"][0]["user"]["token"].as_str(),
        Some(token.as_str())
    );
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"].as_str(),
        Some("https://rel-kelemetry-webhook.tracing.svc:8087/audit/ci")
    );
    let ca = secret_value(&docs, "rel-kelemetry-webhook-tls", "ca.crt");
    assert_eq!(
        chart_support::base64_decode(
            kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap()
        ),
        ca.as_bytes()
    );
    let policy: serde_yaml_ng::Value = serde_yaml_ng::from_str(&secret_value(
        &docs,
        "rel-kelemetry-apiserver-audit",
        "audit-policy.yaml",
    ))
    .unwrap();
    assert_eq!(policy["kind"].as_str(), Some("Policy"));
    assert_eq!(policy["rules"].as_sequence().unwrap().len(), 5);

    // Variants: each renders a file `kelemetry run` accepts, and the RBAC follows the sources.
    let variants: &[(&str, &[&str])] = &[
        (
            "every resource",
            &["cluster=ci", "objectWatch.allResources=true"],
        ),
        ("no viewer", &["cluster=ci", "viewer.enabled=false"]),
        ("no metrics", &["cluster=ci", "metrics.enabled=false"]),
        (
            "no webhook, core Events",
            &["cluster=ci", "webhook.enabled=false", "events.api=v1"],
        ),
        (
            "webhook only",
            &[
                "cluster=ci",
                "events.enabled=false",
                "objectWatch.enabled=false",
            ],
        ),
        (
            "settings and an OTLP exporter",
            &[
                "cluster=ci",
                "webhook.settings.queueEvents=20000",
                "webhook.settings.wal.maxBytes=2GiB",
                "objectWatch.settings.maxObjects=100000",
                "events.settings.remember=50000",
                "config.exporters.otlp.endpoint=http://jaeger-collector.tracing:4317",
                "config.limits.ledgerIds=2000000",
                "webhook.service.clusterIP=10.96.0.50",
            ],
        ),
        (
            "lease and service monitor",
            &[
                "cluster=ci",
                "rbac.leaderElectionLease=true",
                "serviceMonitor.enabled=true",
            ],
        ),
    ];
    for (variant, sets) in variants {
        let docs = documents(&helm.render("rel", "tracing", sets));
        let config = run_config(&docs, "rel");
        check_run_config(&config, variant);
        let kinds = kinds_and_names(&docs);
        match *variant {
            "every resource" => {
                assert!(config["sources"]["objectWatch"].get("include").is_none());
                let rules = &find(&docs, "ClusterRole", "rel-kelemetry")["rules"];
                assert_eq!(
                    rules[1],
                    json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["list", "watch"]})
                );
                assert_eq!(rules.as_array().unwrap().len(), 2);
            }
            "no viewer" => {
                let statefulset = find(&docs, "StatefulSet", "rel-kelemetry");
                let names: Vec<String> = containers(statefulset).into_iter().map(|c| c.0).collect();
                assert_eq!(names, ["run"]);
                assert!(containers(statefulset)[0].1.get("restartPolicy").is_none());
            }
            "no metrics" => {
                assert!(config.get("metrics").is_none());
                let statefulset = find(&docs, "StatefulSet", "rel-kelemetry");
                assert_eq!(
                    containers(statefulset)[0].1["readinessProbe"]["httpGet"],
                    json!({"path": "/readyz", "port": "webhook", "scheme": "HTTPS"})
                );
                let ports = &find(&docs, "Service", "rel-kelemetry")["spec"]["ports"];
                assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
            }
            "no webhook, core Events" => {
                assert!(config["sources"].get("webhook").is_none());
                assert!(!kinds.iter().any(|k| k.contains("webhook")), "{kinds:?}");
                assert!(!kinds.iter().any(|k| k.contains("apiserver-audit")));
                let rules = &find(&docs, "ClusterRole", "rel-kelemetry")["rules"];
                assert_eq!(
                    rules[0],
                    json!({"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]})
                );
                assert_eq!(config["sources"]["events"]["api"].as_str(), Some("v1"));
            }
            "webhook only" => {
                // Nothing read from the apiserver: no roles at all.
                assert!(
                    !kinds.iter().any(|k| k.contains("Role")),
                    "no RBAC is needed for the webhook alone: {kinds:?}"
                );
                assert!(config["sources"].get("events").is_none());
            }
            "settings and an OTLP exporter" => {
                assert_eq!(
                    config["sources"]["webhook"]["queueEvents"].as_u64(),
                    Some(20_000)
                );
                assert_eq!(config["limits"]["ledgerIds"].as_u64(), Some(2_000_000));
                // The chart's own keys are kept beside the settings.
                assert_eq!(
                    config["sources"]["webhook"]["tokenFile"].as_str(),
                    Some("/etc/kelemetry/webhook-token/token")
                );
                let kubeconfig: serde_yaml_ng::Value = serde_yaml_ng::from_str(&secret_value(
                    &docs,
                    "rel-kelemetry-apiserver-audit",
                    "audit-webhook.kubeconfig",
                ))
                .unwrap();
                assert_eq!(
                    kubeconfig["clusters"][0]["cluster"]["server"].as_str(),
                    Some("https://10.96.0.50:8087/audit/ci")
                );
                assert_eq!(
                    find(&docs, "Service", "rel-kelemetry-webhook")["spec"]["clusterIP"],
                    "10.96.0.50"
                );
                // The serving certificate is valid for that address.
                let dir = tempfile::tempdir().unwrap();
                let cert = dir.path().join("tls.crt");
                std::fs::write(
                    &cert,
                    secret_value(&docs, "rel-kelemetry-webhook-tls", "tls.crt"),
                )
                .unwrap();
                let out = Command::new("openssl")
                    .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
                    .arg(&cert)
                    .output()
                    .unwrap();
                let names = String::from_utf8_lossy(&out.stdout);
                assert!(names.contains("IP Address:10.96.0.50"), "{names}");
                assert!(
                    names.contains("DNS:rel-kelemetry-webhook.tracing.svc"),
                    "{names}"
                );
            }
            "lease and service monitor" => {
                let rules = &find(&docs, "Role", "rel-kelemetry")["rules"];
                assert_eq!(
                    rules[2],
                    json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                           "verbs": ["get", "create", "update"]})
                );
                let monitor = find(&docs, "ServiceMonitor", "rel-kelemetry");
                assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
            }
            other => panic!("no checks for {other}"),
        }
    }
    // Mistakes are refused at render time, naming what to fix.
    let error = helm.render_error(
        "rel",
        "tracing",
        &[
            "cluster=ci",
            "webhook.enabled=false",
            "events.enabled=false",
            "objectWatch.enabled=false",
        ],
    );
    assert!(error.contains("no source is enabled"), "{error}");
    let error = helm.render_error(
        "rel",
        "tracing",
        &[
            "cluster=ci",
            "serviceMonitor.enabled=true",
            "metrics.enabled=false",
        ],
    );
    assert!(
        error.contains("serviceMonitor.enabled needs metrics.enabled"),
        "{error}"
    );
}

/// A stand-in for the Prometheus Operator's ServiceMonitor CRD (group, kind and version only; any spec), so the
/// apiserver can dry-run the chart's ServiceMonitor.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#;

/// `kubectl apply --dry-run=server -f -` of `manifests`: the lines kubectl printed.
fn server_dry_run(cluster: &TestCluster, manifests: &str) -> Vec<String> {
    let out = cluster
        .kubectl_with_input(["apply", "--dry-run=server", "-f", "-"], manifests)
        .unwrap_or_else(|err| panic!("the server-side dry run failed: {err}"));
    out.lines().map(str::to_owned).collect()
}

#[test]
fn server_side_dry_run_install_upgrade_and_uninstall_in_the_test_cluster() {
    if !enabled() {
        return;
    }
    let cluster = TestCluster::shared().unwrap();
    let helm = Helm::new();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let chart = chart().display().to_string();
    cluster
        .kubectl(["create", "namespace", "chart-test"])
        .unwrap();

    // Every rendered manifest, validated and admitted by the real apiserver without being stored.
    let text = helm.render("dry", "chart-test", &["cluster=tracetest"]);
    let docs = documents(&text);
    let printed = server_dry_run(cluster, &text);
    assert_eq!(printed.len(), docs.len(), "{printed:#?}");
    for (line, doc) in printed.iter().zip(&docs) {
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert!(
            line.ends_with(&format!("/{name} created (server dry run)")),
            "{line}"
        );
    }
    let stored = cluster.kubectl_json(["get", "clusterroles"]).unwrap();
    assert!(
        !stored["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["metadata"]["name"] == "dry-kelemetry"),
        "a dry run stores nothing"
    );
    // The same with every resource watched, without the viewer, and with a ServiceMonitor (its CRD stood in).
    cluster
        .kubectl_with_input(["apply", "-f", "-"], SERVICE_MONITOR_CRD)
        .unwrap();
    wait_until(
        "the ServiceMonitor CRD to be served",
        Duration::from_secs(30),
        || {
            let crd =
                cluster.kubectl_json(["get", "crd", "servicemonitors.monitoring.coreos.com"])?;
            Ok(crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
                .then_some(()))
        },
    )
    .unwrap();
    let text = helm.render(
        "dry",
        "chart-test",
        &[
            "cluster=tracetest",
            "objectWatch.allResources=true",
            "viewer.enabled=false",
            "serviceMonitor.enabled=true",
            "rbac.leaderElectionLease=true",
            "persistence.storageClassName=-",
        ],
    );
    let printed = server_dry_run(cluster, &text);
    assert_eq!(printed.len(), documents(&text).len(), "{printed:#?}");
    assert!(
        printed.contains(
            &"servicemonitor.monitoring.coreos.com/dry-kelemetry created (server dry run)"
                .to_owned()
        ),
        "{printed:#?}"
    );

    // helm install: the objects exist in the cluster. kwok runs no containers, and no storage provisioner runs, so
    // the pod stays Pending on its claim: what is checked is what the API holds.
    let (ok, stdout, stderr) = helm.run([
        "install",
        "kel",
        &chart,
        "--namespace",
        "chart-test",
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "cluster=tracetest",
    ]);
    assert!(ok, "helm install failed:\n{stdout}{stderr}");
    assert!(stdout.contains("STATUS: deployed"), "{stdout}");
    assert!(
        stdout.contains("https://kel-kelemetry-webhook.chart-test.svc:8087/audit/tracetest"),
        "the notes give the webhook URL:\n{stdout}"
    );
    let rendered = documents(&helm.render("kel", "chart-test", &["cluster=tracetest"]));
    for doc in &rendered {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        let found = if kind.starts_with("Cluster") {
            cluster.kubectl_json(["get", kind, name])
        } else {
            cluster.kubectl_json(["get", kind, name, "--namespace", "chart-test"])
        }
        .unwrap_or_else(|err| panic!("{kind}/{name} is not in the cluster: {err}"));
        assert_eq!(
            found["metadata"]["labels"]["app.kubernetes.io/instance"],
            "kel"
        );
    }
    // The StatefulSet's controller made the claim and the pod from the chart's templates.
    let pod = wait_until("the StatefulSet's pod", Duration::from_secs(30), || {
        let pods = cluster.kubectl_json([
            "get",
            "pods",
            "--namespace",
            "chart-test",
            "--selector=app.kubernetes.io/instance=kel",
        ])?;
        Ok(pods["items"].as_array().and_then(|p| p.first().cloned()))
    })
    .unwrap();
    assert_eq!(pod["metadata"]["name"], "kel-kelemetry-0");
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "run");
    assert_eq!(pod["spec"]["containers"][0]["name"], "serve");
    let claim = cluster
        .kubectl_json([
            "get",
            "pvc",
            "data-kel-kelemetry-0",
            "--namespace",
            "chart-test",
        ])
        .unwrap();
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");

    // helm upgrade: the generated token and certificate are read back and kept; the config changes.
    let secret = |name: &str| {
        cluster
            .kubectl_json(["get", "secret", name, "--namespace", "chart-test"])
            .unwrap()["data"]
            .clone()
    };
    let (token, tls) = (
        secret("kel-kelemetry-webhook-token"),
        secret("kel-kelemetry-webhook-tls"),
    );
    let (ok, stdout, stderr) = helm.run([
        "upgrade",
        "kel",
        &chart,
        "--namespace",
        "chart-test",
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "cluster=tracetest",
        "--set",
        "events.watermarkName=renamed-watermark",
    ]);
    assert!(ok, "helm upgrade failed:\n{stdout}{stderr}");
    assert_eq!(secret("kel-kelemetry-webhook-token"), token);
    assert_eq!(secret("kel-kelemetry-webhook-tls"), tls);
    let role = cluster
        .kubectl_json(["get", "role", "kel-kelemetry", "--namespace", "chart-test"])
        .unwrap();
    assert_eq!(
        role["rules"][0]["resourceNames"],
        json!(["renamed-watermark"])
    );
    let audit = cluster
        .kubectl_json([
            "get",
            "secret",
            "kel-kelemetry-apiserver-audit",
            "--namespace",
            "chart-test",
        ])
        .unwrap();
    let kubeconfig_text = String::from_utf8(chart_support::base64_decode(
        audit["data"]["audit-webhook.kubeconfig"].as_str().unwrap(),
    ))
    .unwrap();
    let token_text = String::from_utf8(chart_support::base64_decode(
        token["token"].as_str().unwrap(),
    ))
    .unwrap();
    assert!(
        kubeconfig_text.contains(&format!("token: \"{token_text}\"")),
        "the apiserver's kubeconfig keeps the token:\n{kubeconfig_text}"
    );

    // helm uninstall: the cluster-wide objects go too.
    let (ok, stdout, stderr) = helm.run([
        "uninstall",
        "kel",
        "--namespace",
        "chart-test",
        "--kubeconfig",
        &kubeconfig,
        "--wait",
    ]);
    assert!(ok, "helm uninstall failed:\n{stdout}{stderr}");
    let roles = cluster.kubectl_json(["get", "clusterroles"]).unwrap();
    assert!(
        !roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["metadata"]["name"] == "kel-kelemetry")
    );
    assert!(Path::new(&chart).join("Chart.yaml").is_file());
}
