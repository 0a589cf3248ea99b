//! Issue 15, a controller's own traces: the example controller (`configmap-sync`, traced with kelemetry-tracing)
//! exports its reconcile spans over OTLP to a real Jaeger that Kelemetry does not write to, while `kelemetry run`
//! follows the test cluster's audit log into an embedded store. `kelemetry show --extensions` with a `jaeger`
//! provider `for: objects` finds the controller's traces by the `object` attribute of its reconcile spans (the
//! object's key, templated as `{cluster}/{group}/{resource}/{namespace}/{name}`) and grafts them under the
//! ConfigMapSync's span; without `--extensions` nothing of the controller is there. The same providers through the
//! library show the grafted spans' `kelemetry.extension` tag, and a provider at a dead port is named in the view's
//! warnings while the view stays whole.
//!
//! Runs with `KELEMETRY_E2E=1 KELEMETRY_JAEGER=1` (scripts/test sets both). The controller is the binary
//! `cargo test --workspace` builds next to `kelemetry` (the example has integration tests, so cargo builds its
//! binary); it is built here with cargo when missing or older than its sources.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kelemetry-exporters/tests/support/jaeger.rs"]
mod jaeger;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kelemetry_core::ObjectSelector;
use kelemetry_query::display::BaseMode;
use kelemetry_query::extension::{EXTENSION_TAG, Extensions, ExtensionsConfig, GraftReport};
use kelemetry_query::{DisplayKind, DisplayMode, DisplayTrace};
use kelemetry_store::SpanStore;
use kelemetry_testkit::{KelemetryProcess, TestCluster, e2e_enabled, fault_line, wait_until};
use serde_json::Value;

/// The cluster name Kelemetry and the controller run with.
const CLUSTER: &str = "tracetest";
/// The example controller: its package, its binary and its service name.
const CONTROLLER: &str = "configmap-sync";
/// The ConfigMapSync the test creates, as `kelemetry show` names it.
const SYNC: &str = "configmapsyncs.example.kelemetry.io/default/demo-sync";
/// The provider's name, carried by every grafted span.
const PROVIDER: &str = "controller";

/// The example controller's binary next to `kelemetry`, built with cargo when missing or older than the example's
/// or kelemetry-tracing's sources.
fn controller_binary() -> PathBuf {
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_kelemetry")).parent().unwrap();
    let binary = profile_dir.join(CONTROLLER);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources = [
        workspace.join("examples/controller"),
        workspace.join("kelemetry-tracing"),
    ];
    let newest_source = sources
        .iter()
        .flat_map(walkdir::WalkDir::new)
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok()?.modified().ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    if built.is_none_or(|built| built < newest_source) {
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build
            .current_dir(workspace)
            .args(["build", "-p", CONTROLLER, "--bin", CONTROLLER]);
        match profile_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(profile) => {
                build.args(["--profile", profile]);
            }
        }
        let output = build.output().expect("run cargo build");
        assert!(
            output.status.success(),
            "cargo build -p {CONTROLLER} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(binary.exists(), "no {CONTROLLER} at {}", binary.display());
    binary
}

/// The controller as a child process, its output in a log file; killed on drop.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    fn start(binary: &Path, kubeconfig: &Path, otlp: &str, log: PathBuf) -> Self {
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .args([
                "--cluster",
                CLUSTER,
                "--otlp-endpoint",
                otlp,
                "--kubeconfig",
            ])
            .arg(kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (the controller lets its reconciles finish, flushes its spans and exits); panics with its log
    /// unless it exits successfully within a minute.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let status = wait_until("the controller to exit", Duration::from_secs(60), || {
            Ok(self.child.try_wait().expect("wait for the controller"))
        })
        .unwrap_or_else(|err| panic!("{err}:\n{}", self.log()));
        assert!(status.success(), "{CONTROLLER}: {status}\n{}", self.log());
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn synced_generation(cluster: &TestCluster) -> Option<i64> {
    let sync = cluster
        .kubectl_json([
            "get",
            "configmapsyncs.example.kelemetry.io",
            "demo-sync",
            "-n",
            "default",
        ])
        .ok()?;
    sync["status"]["syncedGeneration"].as_i64()
}

fn wait_synced(cluster: &TestCluster, controller: &Controller, generation: i64) {
    wait_until(
        &format!("the controller to sync generation {generation}"),
        Duration::from_secs(60),
        || Ok((synced_generation(cluster) == Some(generation)).then_some(())),
    )
    .unwrap_or_else(|err| panic!("{err}:\n{}", controller.log()));
}

/// How many audit spans of the ConfigMapSync's status writes the store holds (read beside the running kelemetry).
fn status_writes_in_store(store: &Path) -> usize {
    let Ok(store) = SpanStore::open_read_only(store) else {
        return 0;
    };
    let Ok(spans) = store.spans() else { return 0 };
    spans
        .filter_map(Result::ok)
        .filter(|span| {
            span.name.ends_with(" status")
                && span
                    .attributes
                    .iter()
                    .any(|(key, value)| key == "name" && value == "demo-sync")
        })
        .count()
}

/// The reconcile spans Jaeger holds for the controller (any trace of the last hour).
async fn reconciles_in_jaeger(query: &str) -> usize {
    let url =
        format!("{query}/api/traces?service={CONTROLLER}&operation=reconcile&lookback=1h&limit=20");
    let Ok(response) = reqwest::get(&url).await else {
        return 0;
    };
    let Ok(answer) = response.json::<Value>().await else {
        return 0;
    };
    answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|trace| trace["spans"].as_array().into_iter().flatten())
        .filter(|span| span["operationName"] == "reconcile")
        .count()
}

/// The extensions file: one `jaeger` provider for objects, finding the controller's traces by the `object`
/// attribute its reconcile spans carry.
fn extensions_yaml(jaeger_url: &str) -> String {
    format!(
        "timeout: 10s\n\
         providers:\n\
         - name: {PROVIDER}\n\
         \x20 for: objects\n\
         \x20 jaeger:\n\
         \x20   url: {jaeger_url}\n\
         \x20   service: {CONTROLLER}\n\
         \x20   tags: {{object: '{{cluster}}/{{group}}/{{resource}}/{{namespace}}/{{name}}'}}\n"
    )
}

/// `kelemetry show SYNC --mode tree [EXTRA...]`; panics with the output when it fails.
fn show_tree(store: &Path, extra: &[&str]) -> String {
    let mut args = vec!["show", SYNC, "--mode", "tree"];
    args.extend_from_slice(extra);
    let (ok, out, err) = support::kelemetry(&args, store);
    assert!(ok, "show failed:\n{out}\n{err}");
    out
}

/// A span of the controller's service in show's text tree.
#[derive(Debug)]
struct TreeLine {
    /// How deep it is below the root (its children are 1).
    depth: usize,
    /// Its operation.
    operation: String,
    /// Whether it is a grafted span (the text tree gives those their duration).
    grafted: bool,
}

/// The lines of spans of the controller's service in show's text tree.
fn controller_lines(tree: &str) -> Vec<TreeLine> {
    let marker = format!("── {CONTROLLER} ");
    tree.lines()
        .filter_map(|line| {
            let at = line.find(&marker)?;
            let rest = &line[at + marker.len()..];
            let (operation, after) = rest.split_once("  ").unwrap_or((rest, ""));
            Some(TreeLine {
                depth: line[..at].chars().count() / 4 + 1,
                operation: operation.to_owned(),
                grafted: after.ends_with(" ms"),
            })
        })
        .collect()
}

/// The ConfigMapSync's tree view through the library, with `extensions` grafted.
async fn grafted_view(store: &Path, extensions: &str) -> (DisplayTrace, GraftReport) {
    let config: ExtensionsConfig = serde_yaml_ng::from_str(extensions).unwrap();
    let extensions: Extensions = config.build().unwrap();
    let reader = SpanStore::open_read_only(store).unwrap();
    let selector: ObjectSelector = SYNC.parse().unwrap();
    let mode = DisplayMode {
        base: BaseMode::Tree,
        modifier: None,
    };
    let mut shown = kelemetry_query::show(&reader, &selector, mode, (None, None))
        .await
        .unwrap();
    let report = shown.graft(&extensions).await;
    (shown.trace, report)
}

/// Whether `span_id`'s chain of parents in `trace` reaches `ancestor`.
fn descends_from(trace: &DisplayTrace, span_id: u64, ancestor: u64) -> bool {
    let mut parent = trace
        .spans
        .iter()
        .find(|s| s.span_id == span_id)
        .and_then(|s| s.parent);
    while let Some(id) = parent {
        if id == ancestor {
            return true;
        }
        parent = trace
            .spans
            .iter()
            .find(|s| s.span_id == id)
            .and_then(|s| s.parent);
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controllers_own_spans_in_jaeger_are_grafted_under_its_object() {
    if !e2e_enabled()
        || !jaeger::enabled("a_controllers_own_spans_in_jaeger_are_grafted_under_its_object")
    {
        return;
    }
    let started = Instant::now();
    let controller_binary = controller_binary();
    let traces = jaeger::Jaeger::start("extension-controller");
    let cluster = TestCluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");

    // The CRD, from the controller itself.
    let crd = Command::new(&controller_binary)
        .arg("--print-crd")
        .output()
        .unwrap();
    assert!(crd.status.success(), "{CONTROLLER} --print-crd failed");
    cluster
        .kubectl_with_input(
            ["apply", "-f", "-"],
            &String::from_utf8(crd.stdout).unwrap(),
        )
        .unwrap();
    cluster
        .kubectl([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/configmapsyncs.example.kelemetry.io",
        ])
        .unwrap();

    // Kelemetry follows the audit log into its store; it never sees the controller's spans.
    let config = dir.path().join("kelemetry.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: {CLUSTER}\n\
             sources:\n  auditLog:\n    path: {audit_log}\n    start: beginning\n    pollInterval: 200ms\n\
             exporters:\n  store:\n    path: store\n",
            audit_log = cluster.audit_log().display(),
        ),
    )
    .unwrap();
    let kelemetry = KelemetryProcess::start(
        Path::new(env!("CARGO_BIN_EXE_kelemetry")),
        &config,
        &std::env::var("KELEMETRY_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
    );

    // The controller exports to Jaeger only.
    let mut controller = Controller::start(
        &controller_binary,
        cluster.kubeconfig(),
        &traces.otlp_grpc(),
        dir.path().join("controller.log"),
    );
    let resource = serde_json::json!({
        "apiVersion": "example.kelemetry.io/v1",
        "kind": "ConfigMapSync",
        "metadata": {"name": "demo-sync", "namespace": "default"},
        "spec": {"configMap": "demo-settings", "data": {"color": "blue"}},
    });
    cluster
        .kubectl_with_input(["apply", "-f", "-"], &resource.to_string())
        .unwrap();
    wait_synced(&cluster, &controller, 1);
    cluster
        .kubectl([
            "patch",
            "configmapsyncs.example.kelemetry.io",
            "demo-sync",
            "-n",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"data":{"color":"green","size":"large"}}}"#,
        ])
        .unwrap();
    wait_synced(&cluster, &controller, 2);
    // Both status writes (generations 1 and 2) followed from the audit log into the store.
    wait_until(
        "the status writes in the store",
        Duration::from_secs(60),
        || Ok((status_writes_in_store(&store) >= 2).then_some(())),
    )
    .unwrap_or_else(|err| panic!("{err}:\n{}", kelemetry.stderr()));
    controller.stop();
    let summary = kelemetry.stop();
    eprintln!("{summary}");
    assert_eq!(
        support::counts(support::line_after(&summary, "pipeline: "))["not exported"],
        0,
        "{summary}"
    );

    // Jaeger ingests in the background: wait until it holds the reconciles.
    let query = traces.query_http();
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_jaeger = loop {
        let found = reconciles_in_jaeger(&query).await;
        if found >= 2 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "{found} reconcile spans in Jaeger:\n{}\n{}",
            traces.log_tail(),
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Kelemetry's store has nothing of the controller.
    let reader = SpanStore::open_read_only(&store).unwrap();
    let of_controller = reader
        .spans()
        .unwrap()
        .filter_map(Result::ok)
        .filter(|span| span.name == "reconcile")
        .count();
    assert_eq!(of_controller, 0, "the controller wrote to Jaeger only");
    drop(reader);

    let extensions = dir.path().join("extensions.yaml");
    let extensions_text = extensions_yaml(&query);
    std::fs::write(&extensions, &extensions_text).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_address = dead.local_addr().unwrap();
    drop(dead);
    let dead_extensions = dir.path().join("dead.yaml");
    let dead_text = extensions_yaml(&format!("http://{dead_address}"));
    std::fs::write(&dead_extensions, &dead_text).unwrap();

    // 1. `kelemetry show`: without the providers, nothing of the controller; with them, its reconciles under the
    //    ConfigMapSync's span with the spans they opened below them.
    let plain = show_tree(&store, &[]);
    assert!(controller_lines(&plain).is_empty(), "{plain}");
    let show_started = Instant::now();
    let grafted = show_tree(&store, &["--extensions", extensions.to_str().unwrap()]);
    let show_time = show_started.elapsed();
    eprintln!("{grafted}");
    let lines = controller_lines(&grafted);
    assert!(lines.iter().all(|line| line.grafted), "{lines:#?}");
    let reconciles: Vec<usize> = lines
        .iter()
        .filter(|line| line.operation == "reconcile")
        .map(|line| line.depth)
        .collect();
    assert!(reconciles.len() >= 2, "{grafted}");
    assert!(reconciles.iter().all(|depth| *depth >= 1), "{grafted}");
    // Each reconcile's `apply ConfigMap` right below it.
    let applies = lines
        .windows(2)
        .filter(|pair| {
            pair[0].operation == "reconcile"
                && pair[1].operation == "apply ConfigMap"
                && pair[1].depth == pair[0].depth + 1
        })
        .count();
    assert_eq!(applies, reconciles.len(), "{grafted}");
    // A dead provider fails no `show`, and grafts nothing.
    let with_dead = show_tree(&store, &["--extensions", dead_extensions.to_str().unwrap()]);
    assert!(controller_lines(&with_dead).is_empty(), "{with_dead}");

    // 2. The same through the library: every grafted span carries the provider's name, the reconciles descend
    //    from the ConfigMapSync's object span, and a provider at a dead port is named in the view's warnings.
    let (trace, report) = grafted_view(&store, &extensions_text).await;
    let root = &trace.spans[0];
    assert_eq!(root.kind, DisplayKind::Object, "{trace:#?}");
    assert_eq!(root.tag("name"), Some("demo-sync"));
    let (_, counts) = &report.providers[0];
    assert_eq!((counts.failed, counts.late), (0, 0), "{report:#?}");
    let extension_spans: Vec<_> = trace
        .spans
        .iter()
        .filter(|s| s.kind == DisplayKind::Extension)
        .collect();
    assert_eq!(extension_spans.len(), counts.spans, "{report:#?}");
    assert!(
        extension_spans
            .iter()
            .all(|s| s.tag(EXTENSION_TAG) == Some(PROVIDER)),
        "{extension_spans:#?}"
    );
    let grafted_reconciles: Vec<_> = extension_spans
        .iter()
        .filter(|s| s.service == CONTROLLER && s.operation == "reconcile")
        .collect();
    assert!(grafted_reconciles.len() >= 2, "{extension_spans:#?}");
    assert!(
        grafted_reconciles
            .iter()
            .all(|s| descends_from(&trace, s.span_id, root.span_id)
                && s.tag("object")
                    == Some("tracetest/example.kelemetry.io/configmapsyncs/default/demo-sync")),
        "{grafted_reconciles:#?}"
    );
    assert!(root.warnings.is_empty(), "{:?}", root.warnings);

    let (dead_trace, dead_report) = grafted_view(&store, &dead_text).await;
    let (_, dead_counts) = &dead_report.providers[0];
    assert!(dead_counts.failed >= 1, "{dead_report:#?}");
    let warnings = dead_trace.spans[0].warnings.join("\n");
    assert!(
        warnings.contains(&format!("extension provider {PROVIDER:?} failed"))
            && warnings.contains(&dead_address.to_string()),
        "{warnings}"
    );
    assert!(
        dead_trace
            .spans
            .iter()
            .all(|s| s.kind != DisplayKind::Extension)
    );
    assert_eq!(
        dead_trace.spans.len(),
        trace.spans.len() - counts.spans,
        "the view stays whole"
    );

    fault_line(
        "a controller's own spans in Jaeger, grafted under its object",
        &format!(
            "{in_jaeger} reconcile spans in Jaeger; show's tree: {} reconciles, {} controller spans; {} spans \
             grafted ({} fetches asked); provider at {dead_address} named, view intact; show with extensions \
             {:.2} s; {:.0} s in all",
            reconciles.len(),
            lines.len(),
            counts.spans,
            counts.asked,
            show_time.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
    );
}
