//! `kelemetry export`: the project's recording of the deployment scenario (`fixtures/recorded/deployment-lifecycle`)
//! replayed and exported as one self-contained HTML page (nothing a browser would fetch) and as OTLP JSON (every
//! span of the view); and the apiserver's recorded spans (`fixtures/recorded/apiserver-traces`) grafted into an
//! export by an `http` extension provider; the findings of the automatic diagnosis embedded in the page (none for
//! the healthy deployment scenario, one for a user refused again and again). The page in headless Chromium, from a
//! `file://` URL, is `viewer-tests/viewer.test.mjs` (`scripts/browser-test`).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use kelemetry_core::otlp::opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use kelemetry_core::otlp::opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value;

/// `fixtures/recorded/NAME`.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/recorded")
        .join(name)
}

/// Runs `kelemetry ARGS`: whether it succeeded, and what it printed (standard output, then standard error).
fn kelemetry(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `kelemetry ARGS`'s output; a panic with it when the command fails.
fn run(args: &[&str]) -> String {
    let (ok, output) = kelemetry(args);
    assert!(ok, "kelemetry {}:\n{output}", args.join(" "));
    output
}

/// `fixtures/recorded/NAME` replayed into `DIR/store`.
fn replayed(dir: &Path, name: &str) -> String {
    let store = dir.join("store").to_str().unwrap().to_owned();
    run(&[
        "replay",
        "--quiet",
        "--store",
        &store,
        fixture(name).to_str().unwrap(),
    ]);
    store
}

/// The contents of the elements named `tag` (`script`, `style`): (the opening tag, the text inside), in order.
fn elements<'a>(html: &'a str, tag: &str) -> Vec<(&'a str, &'a str)> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at..];
        let head_end = after.find('>').unwrap() + 1;
        let body_end = after[head_end..].find(&close).unwrap() + head_end;
        found.push((&after[..head_end], &after[head_end..body_end]));
        rest = &after[body_end + close.len()..];
    }
    found
}

/// The page without the text inside its `<script>` and `<style>` elements: what the browser reads as markup.
fn markup(html: &str) -> String {
    let mut out = html.to_owned();
    for tag in ["script", "style"] {
        for (_, body) in elements(html, tag) {
            if !body.is_empty() {
                out = out.replacen(body, "", 1);
            }
        }
    }
    out
}

/// Every value of an attribute through which a browser loads something (`src`, `href`, ...) that is not a
/// fragment (`#...`) or a `data:` URL.
fn loading_attributes(markup: &str) -> Vec<String> {
    let lower = markup.to_ascii_lowercase();
    let mut found = Vec::new();
    for name in [
        "src",
        "href",
        "srcset",
        "action",
        "formaction",
        "poster",
        "data",
        "background",
        "manifest",
        "ping",
    ] {
        let pattern = format!(" {name}=");
        for (at, _) in lower.match_indices(&pattern) {
            let value = &markup[at + pattern.len()..];
            let value = match value.chars().next() {
                Some(quote @ ('"' | '\'')) => value[1..].split(quote).next().unwrap_or(""),
                _ => value.split([' ', '>']).next().unwrap_or(""),
            };
            if !(value.starts_with('#') || value.starts_with("data:")) {
                found.push(format!("{name}={value}"));
            }
        }
    }
    found
}

/// The `/api/traces/{id}` answer the page carries.
fn embedded_answer(html: &str) -> Value {
    embedded(html, "kelemetry-trace")
}

/// The JSON of the page's `<script>` element with this id.
fn embedded(html: &str, id: &str) -> Value {
    let (_, data) = elements(html, "script")
        .into_iter()
        .find(|(head, _)| head.contains(&format!(r#"id="{id}""#)))
        .unwrap_or_else(|| panic!("the page has no element {id}"));
    serde_json::from_str(data).unwrap()
}

/// The spans of an OTLP JSON export, parsed by OpenTelemetry's own message types (the JSON mapping).
fn otlp_spans(path: &Path) -> Vec<(String, Span)> {
    let request: ExportTraceServiceRequest =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| kelemetry_core::otlp::attribute_text(kv.value.as_ref()))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push((service.clone(), span));
            }
        }
    }
    spans
}

/// The value of the span's attribute `key`, as text.
fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kelemetry_core::otlp::attribute_text(kv.value.as_ref()))
}

/// Ids unique, one root, every other span's parent among them, all of the trace `trace_id`.
fn assert_one_tree(spans: &[(String, Span)], trace_id: &str) {
    let ids: HashSet<&[u8]> = spans.iter().map(|(_, s)| s.span_id.as_slice()).collect();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");
    let roots = spans
        .iter()
        .filter(|(_, s)| s.parent_span_id.is_empty())
        .count();
    assert_eq!(roots, 1, "one root");
    for (_, span) in spans {
        assert!(span.parent_span_id.is_empty() || ids.contains(span.parent_span_id.as_slice()));
        let hex: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, trace_id);
    }
}

#[test]
fn the_deployment_scenario_exports_to_a_self_contained_page_and_to_otlp_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), "deployment-lifecycle");
    let html_path = dir.path().join("demo.html");
    let otlp_path = dir.path().join("demo.otlp.json");
    let printed = run(&[
        "export",
        "deployments/default/demo",
        "--full-tree",
        "--store",
        &store,
        "--html",
        html_path.to_str().unwrap(),
        "--otlp-json",
        otlp_path.to_str().unwrap(),
    ]);
    assert!(printed.contains("demo.html") && printed.contains("demo.otlp.json"));

    // The page: the viewer's style sheet and script inline, nothing a browser would fetch.
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains(kelemetry_query::viewer::VIEWER_JS));
    assert!(html.contains(kelemetry_query::viewer::VIEWER_CSS));
    let markup = markup(&html);
    assert_eq!(loading_attributes(&markup), Vec::<String>::new());
    assert!(!markup.contains("http://") && !markup.contains("https://"));
    for (_, css) in elements(&html, "style") {
        assert!(!css.contains("url(") && !css.contains("@import"));
    }
    let scripts = elements(&html, "script");
    assert_eq!(
        scripts.len(),
        3,
        "the trace, its findings and the viewer's script"
    );
    for (head, body) in &scripts {
        assert!(!head.contains("src"), "{head}");
        if !head.contains("application/json") {
            assert!(!body.contains("http://") && !body.contains("https://"));
        }
    }
    assert!(
        markup.contains("default-src 'none'"),
        "a content security policy forbids every load"
    );

    // The trace it carries: the Deployment's full tree, as `/api/traces/{id}` answers.
    let answer = embedded_answer(&html);
    let trace = &answer["data"][0];
    let trace_id = trace["traceID"].as_str().unwrap();
    assert!(trace_id.starts_with("ff21000000"), "tracing [full tree]");
    let embedded_spans = trace["spans"].as_array().unwrap();
    let by_resource = |spans: &[Value]| {
        let mut counts = BTreeMap::new();
        for span in spans {
            for tag in span["tags"].as_array().unwrap() {
                if tag["key"] == "resource" {
                    *counts
                        .entry(tag["value"].as_str().unwrap().to_owned())
                        .or_insert(0) += 1;
                }
            }
        }
        counts
    };
    let objects = by_resource(embedded_spans);
    assert_eq!(
        objects,
        BTreeMap::from([
            ("deployments".to_owned(), 1),
            ("pods".to_owned(), 8),
            ("replicasets".to_owned(), 2)
        ]),
        "the Deployment, its two ReplicaSets and their eight Pods"
    );
    let logs: usize = embedded_spans
        .iter()
        .map(|s| s["logs"].as_array().unwrap().len())
        .sum();
    assert_eq!(logs, 152, "every audit event and Event of the recording");
    // The findings beside it: a healthy rollout has none, and the page says so.
    assert!(printed.contains("and no finding"), "{printed}");
    let findings = embedded(&html, "kelemetry-findings");
    assert_eq!(findings["data"], Value::Array(Vec::new()));
    assert_eq!(findings["total"], 0);

    // OTLP JSON: the same spans, the activities as span events.
    let spans = otlp_spans(&otlp_path);
    assert_eq!(spans.len(), 11);
    assert_eq!(spans.len(), embedded_spans.len());
    assert_one_tree(&spans, trace_id);
    let events: usize = spans.iter().map(|(_, s)| s.events.len()).sum();
    assert_eq!(events, logs);
    let pods = spans
        .iter()
        .filter(|(service, s)| {
            service == "pods" && attribute(s, "resource").as_deref() == Some("pods")
        })
        .count();
    assert_eq!(pods, 8);
}

#[test]
fn tree_mode_exports_each_activity_as_a_span() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), "deployment-lifecycle");
    let otlp_path = dir.path().join("tree.json");
    run(&[
        "export",
        "deployments/default/demo",
        "--full-tree",
        "--mode",
        "tree",
        "--store",
        &store,
        "--otlp-json",
        otlp_path.to_str().unwrap(),
    ]);
    let spans = otlp_spans(&otlp_path);
    let count = |service: &str| spans.iter().filter(|(s, _)| s == service).count();
    // 11 objects, 152 activities (119 audit events, 33 Events) and one `children` span under each parent.
    assert_eq!(count("audit") + count("event"), 152);
    assert_eq!(count("children"), 3);
    assert_eq!(spans.len(), 11 + 152 + 3);
    let trace_id: String = spans[0]
        .1
        .trace_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(trace_id.starts_with("ff01000000"), "tree [full tree]");
    assert_one_tree(&spans, &trace_id);
}

/// A stand-in for a tracing backend: answers `GET /traces?audit=ID` with the recorded Jaeger answer of that
/// audit id (`{"data": []}` for others), on a thread, until the test ends; records the ids asked.
fn serve_recorded_traces(answers: BTreeMap<String, Value>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // The headers, up to the blank line.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("");
            let id = target
                .split_once("audit=")
                .map(|(_, id)| percent_decoded(id.split('&').next().unwrap_or("")))
                .unwrap_or_default();
            record.lock().unwrap().push(id.clone());
            let body = answers
                .get(&id)
                .map(Value::to_string)
                .unwrap_or_else(|| r#"{"data":[]}"#.to_owned());
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (address, asked)
}

/// A query value with its `%XX` escapes decoded (the provider escapes every character but letters and digits).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn export_grafts_the_apiservers_spans_with_an_extension_provider() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), "apiserver-traces");
    let answers: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture("apiserver-traces").join("traces.json")).unwrap(),
    )
    .unwrap();
    let (address, asked) = serve_recorded_traces(answers.clone());
    let config = dir.path().join("extensions.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  - name: apiserver\n    when: {{source: audit}}\n    http:\n      url: \"http://{address}/traces?audit={{auditId}}\"\n"
        ),
    )
    .unwrap();
    let html_path = dir.path().join("grafted.html");
    let otlp_path = dir.path().join("grafted.json");
    run(&[
        "export",
        "deployments/default/demo",
        "--store",
        &store,
        "--extensions",
        config.to_str().unwrap(),
        "--html",
        html_path.to_str().unwrap(),
        "--otlp-json",
        otlp_path.to_str().unwrap(),
    ]);

    // Each traced request of the Deployment was asked about once (the two GETs are not traced by design).
    let mut asked = asked.lock().unwrap().clone();
    asked.sort();
    let audit = std::fs::read_to_string(fixture("apiserver-traces").join("audit.log")).unwrap();
    let mut writes: Vec<String> = audit
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| event["verb"] != "get")
        .map(|event| event["auditID"].as_str().unwrap().to_owned())
        .collect();
    writes.sort();
    assert_eq!(asked, writes);
    let expected: usize = asked
        .iter()
        .map(|id| answers[id]["data"][0]["spans"].as_array().unwrap().len())
        .sum();

    // Every span of the answers, in the OTLP JSON and on the page, marked with the provider.
    let spans = otlp_spans(&otlp_path);
    let grafted: Vec<&Span> = spans
        .iter()
        .filter(|(_, s)| attribute(s, "kelemetry.extension").as_deref() == Some("apiserver"))
        .map(|(_, s)| s)
        .collect();
    assert_eq!(grafted.len(), expected);
    assert_eq!(spans.len(), expected + 1, "and the Deployment's span");
    assert!(
        grafted
            .iter()
            .any(|s| s.name == "POST /apis/apps/v1/namespaces/{:namespace}/deployments")
    );
    let trace_id: String = spans[0]
        .1
        .trace_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_one_tree(&spans, &trace_id);
    let page_spans =
        embedded_answer(&std::fs::read_to_string(&html_path).unwrap())["data"][0]["spans"]
            .as_array()
            .unwrap()
            .len();
    assert_eq!(page_spans, spans.len());
}

/// An audit log (JSON lines of `audit.k8s.io/v1` Events at `ResponseComplete`): the admin creates ConfigMap
/// `default/target`, then user `alice` patches it `refused` times, 3 s apart, and is refused each time (403).
fn refused_patches(refused: usize) -> String {
    let start: jiff::Timestamp = "2026-11-28T03:00:00Z".parse().unwrap();
    let event = |n: usize, verb: &str, user: &str, code: u16, request: Value, response: Value| {
        let at = start + jiff::SignedDuration::from_secs(3 * n as i64);
        serde_json::json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "RequestResponse",
            "auditID": format!("00000000-0000-4000-9000-{n:012}"),
            "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/configmaps/target",
            "verb": verb,
            "user": {"username": user},
            "sourceIPs": ["127.0.0.1"],
            "userAgent": "export-test",
            "objectRef": {"resource": "configmaps", "namespace": "default", "name": "target", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": code},
            "requestObject": request,
            "responseObject": response,
            "requestReceivedTimestamp": at.to_string(),
            "stageTimestamp": (at + jiff::SignedDuration::from_millis(4)).to_string(),
        })
        .to_string()
    };
    let config_map = serde_json::json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "target", "namespace": "default", "uid": "00000000-0000-4000-9000-000000000001",
            "resourceVersion": "700"},
        "data": {"purpose": "labelled-by-alice"},
    });
    let mut lines = vec![event(
        0,
        "create",
        "kelemetry-admin",
        201,
        config_map.clone(),
        config_map,
    )];
    for n in 1..=refused {
        lines.push(event(
            n,
            "patch",
            "alice",
            403,
            serde_json::json!({"metadata": {"labels": {"reviewed": n.to_string()}}}),
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                "code": 403, "message": "configmaps \"target\" is forbidden: User \"alice\" cannot patch resource"}),
        ));
    }
    lines.join("\n") + "\n"
}

#[test]
fn the_exported_page_carries_the_findings_kelemetry_diagnose_gives() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, refused_patches(4)).unwrap();
    let store = dir.path().join("store").to_str().unwrap().to_owned();
    run(&[
        "replay",
        "--quiet",
        "--store",
        &store,
        log.to_str().unwrap(),
    ]);
    let html_path = dir.path().join("target.html");
    let printed = run(&[
        "export",
        "configmaps/default/target",
        "--store",
        &store,
        "--html",
        html_path.to_str().unwrap(),
    ]);
    assert!(printed.contains("and 1 finding"), "{printed}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    let answer = embedded(&html, "kelemetry-findings");
    assert_eq!(answer["total"], 1);
    let findings = answer["data"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{answer:#}");
    let finding = &findings[0];
    assert_eq!(finding["diagnoser"], "failed-requests");
    assert_eq!(
        finding["title"],
        "alice: 4 requests failed with 403 Forbidden on configmaps default/target (local)"
    );
    let evidence = finding["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 4, "each refused patch");
    for line in evidence {
        let span_id = line["spanId"].as_str().unwrap();
        assert!(
            span_id.len() == 16 && span_id.chars().all(|c| c.is_ascii_hexdigit()),
            "{span_id}"
        );
        assert_eq!(line["activity"], "audit alice patch (Forbidden)");
    }
    assert!(
        finding["nextSteps"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    // The same findings `kelemetry diagnose --json` prints for the same view.
    let printed = run(&[
        "diagnose",
        "configmaps/default/target",
        "--store",
        &store,
        "--json",
    ]);
    let diagnosed: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(answer["data"], diagnosed);

    // --diagnose-config: the diagnosis as `kelemetry diagnose --config` reads it.
    let config = dir.path().join("diagnose.yaml");
    std::fs::write(&config, "thresholds:\n  failedRequests: 5\n").unwrap();
    let printed = run(&[
        "export",
        "configmaps/default/target",
        "--store",
        &store,
        "--html",
        html_path.to_str().unwrap(),
        "--diagnose-config",
        config.to_str().unwrap(),
    ]);
    assert!(printed.contains("and no finding"), "{printed}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(
        embedded(&html, "kelemetry-findings")["data"],
        Value::Array(Vec::new())
    );
    std::fs::write(&config, "thresholds:\n  noSuchThreshold: 5\n").unwrap();
    let (ok, output) = kelemetry(&[
        "export",
        "configmaps/default/target",
        "--store",
        &store,
        "--html",
        dir.path().join("not-written.html").to_str().unwrap(),
        "--diagnose-config",
        config.to_str().unwrap(),
    ]);
    assert!(!ok && output.contains("diagnose.yaml"), "{output}");
    assert!(!dir.path().join("not-written.html").exists());
}

#[test]
fn export_needs_somewhere_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed(dir.path(), "deployment-lifecycle");
    let (ok, output) = kelemetry(&["export", "deployments/default/demo", "--store", &store]);
    assert!(!ok);
    assert!(
        output.contains("--html") && output.contains("--otlp-json"),
        "{output}"
    );
    let (ok, output) = kelemetry(&[
        "export",
        "deployments/default/nothing",
        "--store",
        &store,
        "--html",
        dir.path().join("x.html").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(output.contains("no object"), "{output}");
    assert!(!dir.path().join("x.html").exists());
}
