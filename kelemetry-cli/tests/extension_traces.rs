//! Extension traces for real (docs/extension-traces.md): the test cluster's kube-apiserver traces every request to
//! a real Jaeger over OTLP; the deployment scenario's audit log is replayed into a store; `kelemetry show` and
//! `kelemetry serve --extensions` graft the apiserver's own spans under each audit request, found by the audit id
//! the apiserver puts on its request span (`audit-id`). Seen in `show`, in the HTTP API, and in a Jaeger Query whose
//! storage is our remote storage service. A provider at a dead address, and one whose real answers exceed what it may
//! read, are named in the view, which stays intact.
//!
//! Runs with `KELEMETRY_E2E=1 KELEMETRY_JAEGER=1` (scripts/test sets both).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kelemetry-exporters/tests/support/jaeger.rs"]
mod jaeger;
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kelemetry_testkit::{ClusterOptions, TestCluster, e2e_enabled, fault_line};
use serde_json::Value;

/// The request span of a Deployment create, as the apiserver names it (route template, not the path).
const CREATE_REQUEST: &str = "POST /apis/apps/v1/namespaces/{:namespace}/deployments";

/// A Jaeger trace in the HTTP API's JSON: spans by id, parents, services.
struct Shown<'a> {
    spans: HashMap<&'a str, &'a Value>,
    parents: HashMap<&'a str, &'a str>,
    services: HashMap<&'a str, &'a str>,
}

impl<'a> Shown<'a> {
    fn new(trace: &'a Value) -> Self {
        let processes = &trace["processes"];
        let mut shown = Self {
            spans: HashMap::new(),
            parents: HashMap::new(),
            services: HashMap::new(),
        };
        for span in trace["spans"].as_array().unwrap() {
            let id = span["spanID"].as_str().unwrap();
            shown.spans.insert(id, span);
            if let Some(parent) = span["references"][0]["spanID"].as_str() {
                shown.parents.insert(id, parent);
            }
            let process = span["processID"].as_str().unwrap();
            shown
                .services
                .insert(id, processes[process]["serviceName"].as_str().unwrap());
        }
        shown
    }

    fn tag(&self, id: &str, key: &str) -> Option<&'a str> {
        self.spans[id]["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
    }

    fn children(&self, id: &str) -> Vec<&'a str> {
        self.parents
            .iter()
            .filter(|(_, parent)| **parent == id)
            .map(|(child, _)| *child)
            .collect()
    }

    fn descendants(&self, id: &str) -> Vec<&'a str> {
        let mut out = Vec::new();
        let mut stack = self.children(id);
        while let Some(next) = stack.pop() {
            out.push(next);
            stack.extend(self.children(next));
        }
        out
    }

    /// The span of the audit activity with `audit_id`, and the apiserver spans grafted below it.
    fn apiserver_spans_under(&self, audit_id: &str) -> Vec<&'a str> {
        let Some(activity) = self
            .spans
            .keys()
            .find(|id| self.tag(id, "auditId") == Some(audit_id))
        else {
            return Vec::new();
        };
        self.descendants(activity)
            .into_iter()
            .filter(|id| self.services[id] == "apiserver")
            .collect()
    }

    fn root_warnings(&self) -> String {
        self.spans
            .iter()
            .find(|(id, _)| !self.parents.contains_key(*id))
            .map(|(_, span)| span["warnings"].to_string())
            .unwrap_or_default()
    }
}

/// `kelemetry serve` on free ports (HTTP API and remote storage gRPC); killed on drop.
struct Serve {
    child: Child,
    http: String,
    grpc: String,
}

impl Serve {
    fn start(store: &Path, extensions: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--remote-storage-listen", "127.0.0.1:0", "--store"])
            .arg(store)
            .arg("--extensions")
            .arg(extensions)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut http, mut grpc) = (None, None);
        while http.is_none() || grpc.is_none() {
            let line = lines.next().expect("serve printed its addresses").unwrap();
            if let Some(rest) = line.strip_prefix("listening on http://") {
                http = Some(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("remote storage gRPC on ") {
                grpc = Some(rest.to_owned());
            }
        }
        Self {
            child,
            http: http.unwrap(),
            grpc: grpc.unwrap(),
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

/// The audit id of the scenario's `create` of the Deployment.
fn create_audit_id(cluster: &TestCluster) -> String {
    cluster
        .audit_entries()
        .unwrap()
        .into_iter()
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "deployments"
                && e["objectRef"]["name"] == "demo"
                && e["stage"] == "ResponseComplete"
        })
        .and_then(|e| e["auditID"].as_str().map(str::to_owned))
        .expect("the create is in the audit log")
}

#[tokio::test(flavor = "multi_thread")]
async fn apiserver_spans_are_grafted_under_their_audit_requests() {
    if !e2e_enabled() || !jaeger::enabled("apiserver_spans_are_grafted_under_their_audit_requests")
    {
        return;
    }
    let started = Instant::now();
    let traces = jaeger::Jaeger::start("apiserver-traces");
    let otlp = traces.otlp_grpc().trim_start_matches("http://").to_owned();
    let cluster = TestCluster::start_with(ClusterOptions {
        apiserver_tracing: Some(otlp),
        ..ClusterOptions::default()
    })
    .unwrap();
    cluster.deployment_scenario(Duration::from_secs(1)).unwrap();
    let audit_id = create_audit_id(&cluster);

    // The apiserver exports in batches: wait until Jaeger holds the create's trace.
    let search = format!(
        "{}/api/traces?service=apiserver&lookback=1h&limit=5&tags=%7B%22audit-id%22%3A%22{audit_id}%22%7D",
        traces.query_http()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = get_json(&search).await;
        if found["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no apiserver trace for {audit_id}:\n{}",
            traces.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (ok, out, err) = support::kelemetry(
        &[
            "replay",
            "--cluster",
            "test",
            cluster.audit_log().to_str().unwrap(),
        ],
        &store,
    );
    assert!(ok, "replay failed:\n{out}\n{err}");

    // The controllers go on requesting and the apiserver exports in batches, so the spans under the replayed audit
    // requests would keep growing between the views compared below. Stop the cluster, then wait until Jaeger's count
    // of apiserver spans holds still: every view reads the same spans.
    cluster.stop().unwrap();
    let everything = format!(
        "{}/api/traces?service=apiserver&lookback=1h&limit=100000",
        traces.query_http()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_count = None;
    loop {
        let answer = get_json(&everything).await;
        let count: usize = answer["data"].as_array().map_or(0, |found| {
            found
                .iter()
                .map(|trace| trace["spans"].as_array().map_or(0, Vec::len))
                .sum()
        });
        if last_count == Some(count) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the apiserver's spans in Jaeger did not settle ({count}):\n{}",
            traces.log_tail()
        );
        last_count = Some(count);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_address = dead.local_addr().unwrap();
    drop(dead);
    let extensions = dir.path().join("extensions.yaml");
    std::fs::write(
        &extensions,
        format!(
            "timeout: 10s\nproviders:\n\
             - name: apiserver\n  when: {{source: audit}}\n  jaeger:\n    url: {}\n    service: apiserver\n    tags: {{audit-id: '{{auditId}}'}}\n\
             - name: nowhere\n  http:\n    url: 'http://{dead_address}/traces?audit={{auditId}}'\n\
             - name: tiny\n  when: {{source: audit}}\n  maxResponseBytes: 200\n  jaeger:\n    url: {}\n    service: apiserver\n    tags: {{audit-id: '{{auditId}}'}}\n",
            traces.query_http(),
            traces.query_http()
        ),
    )
    .unwrap();

    // 1. `show`, with and without the providers.
    let show = |extra: &[&str]| {
        let mut args = vec!["show", "deployments/default/demo", "--mode", "tree"];
        args.extend_from_slice(extra);
        let (ok, out, err) = support::kelemetry(&args, &store);
        assert!(ok, "show failed:\n{out}\n{err}");
        out
    };
    let plain = show(&[]);
    let grafted = show(&["--extensions", extensions.to_str().unwrap()]);
    assert!(!plain.contains("apiserver "), "{plain}");
    let create_line = grafted
        .lines()
        .position(|l| l.contains("audit kelemetry-admin create"))
        .unwrap_or_else(|| panic!("no create activity:\n{grafted}"));
    let request_line = grafted
        .lines()
        .position(|l| l.contains(&format!("apiserver {CREATE_REQUEST}")))
        .unwrap_or_else(|| panic!("no apiserver request span:\n{grafted}"));
    assert!(request_line > create_line, "{grafted}");
    let apiserver_lines = grafted
        .lines()
        .filter(|l| l.contains("── apiserver "))
        .count();

    // 2. The HTTP API and 3. a Jaeger Query on our remote storage: the same grafts, and the dead provider named.
    let serve = Serve::start(&store, &extensions);
    let found = get_json(&format!(
        "http://{}/api/traces?service=tree&tags=%7B%22resource%22%3A%22deployments%22%2C%22name%22%3A%22demo%22%7D&limit=1",
        serve.http
    ))
    .await;
    let id = found["data"][0]["traceID"].as_str().unwrap().to_owned();
    let ui = jaeger::Jaeger::start_with("extension-ui", Some(&serve.grpc));
    let mut grafted_counts = Vec::new();
    let mut audit_requests = 0;
    for (name, base) in [
        ("API", format!("http://{}", serve.http)),
        ("Jaeger UI", ui.query_http()),
    ] {
        let answer = get_json(&format!("{base}/api/traces/{id}")).await;
        let trace = &answer["data"][0];
        let shown = Shown::new(trace);
        let under = shown.apiserver_spans_under(&audit_id);
        let request = under
            .iter()
            .find(|id| shown.spans[**id]["operationName"] == CREATE_REQUEST)
            .unwrap_or_else(|| panic!("{name}: no {CREATE_REQUEST} under the create: {trace}"));
        assert!(
            !shown.children(request).is_empty(),
            "{name}: the request span has no children"
        );
        assert!(
            under
                .iter()
                .all(|id| shown.tag(id, "kelemetry.extension") == Some("apiserver")),
            "{name}"
        );
        let warnings = shown.root_warnings();
        assert!(
            warnings.contains("extension provider \\\"nowhere\\\" failed")
                && warnings.contains(&dead_address.to_string()),
            "{name}: {warnings}"
        );
        // A real answer larger than the provider may read: refused and named, nothing of it grafted.
        assert!(
            warnings.contains("extension provider \\\"tiny\\\" failed")
                && warnings.contains("the answer exceeds 200 bytes"),
            "{name}: {warnings}"
        );
        assert!(
            !shown
                .spans
                .keys()
                .any(|id| shown.tag(id, "kelemetry.extension") == Some("tiny")),
            "{name}"
        );
        audit_requests = shown
            .spans
            .keys()
            .filter(|id| shown.tag(id, "auditId").is_some() && shown.services[*id] != "apiserver")
            .count();
        grafted_counts.push(
            shown
                .spans
                .values()
                .filter(|s| {
                    s["tags"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t["key"] == "kelemetry.extension"))
                })
                .count(),
        );
    }
    assert_eq!(
        grafted_counts[0], grafted_counts[1],
        "API and Jaeger UI show the same grafts"
    );
    drop(ui);
    drop(serve);

    // 4. An `http` provider pointed at Jaeger's own search finds the same spans.
    let http_only = dir.path().join("http.yaml");
    std::fs::write(
        &http_only,
        format!(
            "providers:\n- name: jaeger-http\n  when: {{source: audit}}\n  http:\n    url: '{}/api/traces?service=apiserver&lookback=2h&tags={{{{\"audit-id\":\"{{auditId}}\"}}}}'\n",
            traces.query_http()
        ),
    )
    .unwrap();
    let over_http = show(&["--extensions", http_only.to_str().unwrap()]);
    assert!(
        over_http.contains(&format!("apiserver {CREATE_REQUEST}")),
        "{over_http}"
    );

    fault_line(
        "apiserver tracing to a real Jaeger, audit requests grafted",
        &format!(
            "{apiserver_lines} apiserver spans in show's tree, {} grafted spans under {audit_requests} audit \
             requests in the API's and Jaeger UI's view; provider at {dead_address} and one over its 200-byte \
             answer limit named, view intact; {:.0} s",
            grafted_counts[0],
            started.elapsed().as_secs_f64()
        ),
    );
}
