//! `kelemetry serve` over loopback, on the kspan recording (`../shared/fixtures/events/kspan-kind-2021`): the
//! Jaeger JSON shape, every display mode of the `px` Deployment's view, switching modes by editing the trace id,
//! `/redirect`, and trace ids that survive a restart of the server.

#![allow(clippy::unwrap_used)]

mod support;

use support::{fixtures, kelemetry};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kelemetry_testkit::http_get;
use serde_json::Value;

/// A `kelemetry serve` process, killed on drop.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(store: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(store)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, address }
    }

    /// GET `path`: status, headers (lowercase), body.
    fn get(&self, path: &str) -> (u16, String, String) {
        http_get(&self.address, path)
    }

    fn json(&self, path: &str) -> Value {
        let (status, _, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The one trace of `/api/traces/{id}`.
    fn trace(&self, id: &str) -> Value {
        let answer = self.json(&format!("/api/traces/{id}"));
        assert_eq!(answer["total"], 1);
        answer["data"][0].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replayed_store(fixtures: &Path, dir: &Path) -> PathBuf {
    let store = dir.join("store");
    let recording = fixtures.join("events/kspan-kind-2021/deployment-2-pods.yaml");
    let (replayed, _, stderr) =
        kelemetry(&["replay", "--quiet", &recording.to_string_lossy()], &store);
    assert!(replayed, "{stderr}");
    store
}

/// Spans of a trace with their service names resolved.
struct Spans<'a> {
    trace: &'a Value,
}

impl<'a> Spans<'a> {
    fn all(&self) -> &'a Vec<Value> {
        self.trace["spans"].as_array().unwrap()
    }
    fn service(&self, span: &Value) -> String {
        let process = span["processID"].as_str().unwrap();
        self.trace["processes"][process]["serviceName"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    fn roots(&self) -> Vec<&'a Value> {
        self.all()
            .iter()
            .filter(|s| s["references"].as_array().unwrap().is_empty())
            .collect()
    }
    fn children(&self, parent: &Value) -> Vec<&'a Value> {
        let id = parent["spanID"].as_str().unwrap().to_owned();
        self.all()
            .iter()
            .filter(|s| {
                s["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["refType"] == "CHILD_OF" && r["spanID"] == id.as_str())
            })
            .collect()
    }
    fn with_service(&self, service: &str) -> Vec<&'a Value> {
        self.all()
            .iter()
            .filter(|s| self.service(s).ends_with(service))
            .collect()
    }
    fn log_count(&self) -> usize {
        self.all()
            .iter()
            .map(|s| s["logs"].as_array().unwrap().len())
            .sum()
    }
}

/// The trace id with the mode digits (characters 3..10) replaced.
fn with_mode(id: &str, mode: &str) -> String {
    format!("ff{mode}{}", &id[10..])
}

fn field<'a>(log: &'a Value, key: &str) -> Option<&'a str> {
    log["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key)
        .and_then(|f| f["value"].as_str())
}

#[test]
fn the_jaeger_api_serves_every_mode_of_the_px_deployment() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(&fixtures, dir.path());
    let server = Server::start(&store);

    // Services are the display modes, the default first; operations are the clusters.
    let services = server.json("/api/services");
    for key in ["data", "total", "limit", "offset", "errors"] {
        assert!(services.get(key).is_some(), "envelope lacks {key}");
    }
    assert_eq!(services["data"][0], "tracing");
    assert_eq!(services["total"], 16);
    assert!(services["errors"].is_null());
    let names: Vec<&str> = services["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(names.contains(&"tracing [full tree]") && names.contains(&"timeline [owned objects]"));
    assert_eq!(
        server.json("/api/services/tracing/operations")["data"],
        serde_json::json!(["local"])
    );
    assert_eq!(
        server.json("/api/operations?service=tree")["data"][0]["name"],
        "local"
    );

    // Search as the Jaeger UI does: tags as a JSON object, times in microseconds.
    let start = 1_621_416_000_000_000u64; // 2021-05-19T09:20:00Z
    let end = start + 3_600_000_000;
    let search = server.json(&format!(
        "/api/traces?service=tracing%20%5Bfull%20tree%5D&operation=local&limit=20&start={start}&end={end}\
         &tags=%7B%22resource%22%3A%22deployments%22%2C%22name%22%3A%22px%22%7D"
    ));
    assert_eq!(search["total"], 1, "{search}");
    let id = search["data"][0]["traceID"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ff21000000e1e3e7"), "{id}");
    assert_eq!(id.len(), 32);

    // tracing [full tree]: one root, the Deployment; its ReplicaSets; Pods under them; events as logs.
    let trace = server.trace(&id);
    assert_eq!(trace["traceID"], id.as_str());
    let spans = Spans { trace: &trace };
    let span = &spans.all()[0];
    for key in [
        "traceID",
        "spanID",
        "operationName",
        "references",
        "startTime",
        "duration",
        "tags",
        "logs",
        "processID",
        "warnings",
    ] {
        assert!(span.get(key).is_some(), "span lacks {key}: {span}");
    }
    assert!(span["startTime"].is_u64() && span["duration"].is_u64());
    assert_eq!(span["spanID"].as_str().unwrap().len(), 16);
    let tag = &span["tags"][0];
    assert_eq!(
        (tag["key"].as_str(), tag["type"].as_str()),
        (Some("cluster"), Some("string"))
    );
    let roots = spans.roots();
    assert_eq!(roots.len(), 1);
    let root = roots[0];
    assert_eq!(spans.service(root), "local deployments");
    assert!(root["operationName"].as_str().unwrap().starts_with("px / "));
    let root_logs = root["logs"].as_array().unwrap();
    assert_eq!(root_logs.len(), 4);
    assert!(root_logs[0]["timestamp"].is_u64());
    assert_eq!(field(&root_logs[0], "event"), Some("ScalingReplicaSet"));
    assert!(
        field(&root_logs[0], "message")
            .unwrap()
            .starts_with("Scaled up replica set")
    );
    let replicasets = spans.children(root);
    assert_eq!(replicasets.len(), 2);
    let mut pods = 0;
    for rs in &replicasets {
        assert_eq!(spans.service(rs), "replicasets");
        for pod in spans.children(rs) {
            assert_eq!(spans.service(pod), "pods");
            assert!(!pod["logs"].as_array().unwrap().is_empty());
            pods += 1;
        }
    }
    assert_eq!(pods, 4);
    assert_eq!(spans.all().len(), 7);
    let events = spans.log_count();
    assert_eq!(events, 19, "every recorded event is a log");

    // The same view in plain tracing: the Deployment alone.
    let alone = server.trace(&with_mode(&id, "20000000"));
    assert_eq!(alone["spans"].as_array().unwrap().len(), 1);
    assert_eq!(alone["traceID"], with_mode(&id, "20000000").as_str());

    // tree [full tree]: every object a span, events as child spans, link classes as virtual spans.
    let tree = server.trace(&with_mode(&id, "01000000"));
    let spans = Spans { trace: &tree };
    assert_eq!(spans.roots().len(), 1);
    assert_eq!(spans.with_service("event").len(), 19);
    assert_eq!(spans.with_service("pods").len(), 4);
    let classes = spans.with_service("children");
    assert_eq!(
        classes.len(),
        3,
        "one `children` span under the Deployment and under each ReplicaSet"
    );
    let root = spans.roots()[0];
    let under_root = spans.children(root);
    assert!(under_root.iter().any(|s| spans.service(s) == "event"));
    let class = under_root
        .iter()
        .find(|s| spans.service(s) == "children")
        .unwrap();
    assert_eq!(spans.children(class).len(), 2);
    let event = spans.with_service("event")[0];
    assert!(
        event["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "source")
    );
    assert!(
        !event["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"].as_str().unwrap().starts_with("zzz-")),
        "internal markers are stripped"
    );

    // timeline [full tree]: the root object and every event under it, no other object spans.
    let timeline = server.trace(&with_mode(&id, "11000000"));
    let spans = Spans { trace: &timeline };
    let root = spans.roots()[0];
    assert_eq!(spans.service(root), "local deployments");
    assert_eq!(spans.children(root).len(), 19);
    assert_eq!(spans.all().len(), 20);
    assert!(spans.with_service("pods").is_empty() && spans.with_service("replicasets").is_empty());

    // grouped [full tree]: events stay logs on their object, link classes stay; no audit in this recording.
    let grouped = server.trace(&with_mode(&id, "31000000"));
    let spans = Spans { trace: &grouped };
    assert_eq!(spans.roots().len(), 1);
    assert_eq!(spans.with_service("children").len(), 3);
    assert_eq!(spans.with_service("pods").len(), 4);
    assert_eq!(spans.log_count(), 19);
    assert!(spans.with_service("audit").is_empty());

    // Bad and unknown ids.
    let (status, _, body) = server.get("/api/traces/zz");
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = server.get(&format!("/api/traces/{}", with_mode(&id, "28000000")));
    assert_eq!(status, 400, "an unknown mode: {body}");
    let (status, _, body) = server.get("/api/traces/ff20000000e1e3e70000000000000001");
    assert_eq!(status, 404, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["errors"][0]["code"], 404);
    assert!(answer["data"].is_null());
    let (status, _, body) = server.get("/api/traces?tags=%7B%22auditId%22%3A%22x%22%7D");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("auditId"), "{body}");

    // /redirect: exactly one view → 302 to it; none → a placeholder; the redirected id resolves.
    let (status, head, body) = server.get(
        "/redirect?cluster=local&resource=deployments&namespace=default&name=px&ts=2021-05-19T09:43:00Z",
    );
    assert_eq!(status, 302, "{body}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .to_owned();
    let redirected = location.strip_prefix("/trace/").unwrap();
    assert!(redirected.starts_with("ff20000000e1e3e7"), "{redirected}");
    assert_eq!(
        server.trace(redirected)["spans"].as_array().unwrap().len(),
        1
    );
    let placeholder = server.json(
        "/redirect?cluster=local&resource=deployments&namespace=default&name=px&ts=2024-01-01T00:00:00Z",
    );
    assert_eq!(
        placeholder["data"][0]["spans"][0]["warnings"][0],
        "no events found"
    );
    let (status, _, _) = server.get("/redirect?cluster=elsewhere&resource=deployments&name=px");
    assert_eq!(status, 400);

    // The handed-out ids outlive the server: they are remembered in the store folder.
    drop(server);
    let server = Server::start(&store);
    let again = server.trace(&with_mode(&id, "01000000"));
    assert_eq!(
        again["spans"].as_array().unwrap().len(),
        tree["spans"].as_array().unwrap().len()
    );
}

#[test]
fn a_search_without_a_modifier_gives_one_result_per_object() {
    let Some(fixtures) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(&fixtures, dir.path());
    let server = Server::start(&store);
    let pods = server.json("/api/traces?service=tracing&tags=%7B%22resource%22%3A%22pods%22%7D");
    assert_eq!(pods["total"], 4, "one view per Pod");
    // With full tree, the Pods and their owners are one connected component.
    let tree = server.json(
        "/api/traces?service=tracing%20%5Bfull%20tree%5D&tags=%7B%22resource%22%3A%22pods%22%7D",
    );
    assert_eq!(tree["total"], 1, "{tree}");
    let spans = Spans {
        trace: &tree["data"][0],
    };
    assert_eq!(spans.service(spans.roots()[0]), "local deployments");
    assert_eq!(spans.with_service("pods").len(), 4);
    // The id of the component resolves to the same tree.
    let id = tree["data"][0]["traceID"].as_str().unwrap();
    assert_eq!(
        server.trace(id)["spans"].as_array().unwrap().len(),
        spans.all().len()
    );
}
