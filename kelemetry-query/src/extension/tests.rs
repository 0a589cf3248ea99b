#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kelemetry_core::span::{activity_span, object_span};
use kelemetry_core::{Activity, Object, ObjectKey, ObjectRef, SourceKind, Windowing};
use kelemetry_store::SpanStore;

use super::*;
use crate::display::{BaseMode, DisplayMode};
use crate::jaeger_json::{KeyValue, Process, RefType, Reference, Span, Trace};
use crate::{ViewRequest, assemble, display};

/// A provider of the test's own: a canned answer for audit id `a1`, a failure for `a2`, a sleep for `slow`.
#[derive(Debug)]
struct Canned;

fn jaeger_span(id: &str, parent: Option<&str>, operation: &str, start: u64) -> Span {
    Span {
        trace_id: "t1".into(),
        span_id: id.into(),
        flags: 1,
        operation_name: operation.into(),
        references: parent
            .map(|parent| Reference {
                ref_type: RefType::ChildOf,
                trace_id: "t1".into(),
                span_id: parent.into(),
            })
            .into_iter()
            .collect(),
        start_time: start,
        duration: 1_000,
        tags: vec![KeyValue::string("audit-id", "a1")],
        logs: Vec::new(),
        process_id: "p1".into(),
        warnings: None,
    }
}

#[async_trait::async_trait]
impl ExtensionProvider for Canned {
    fn name(&self) -> &str {
        "canned"
    }

    fn wants(&self, target: &ExtensionTarget) -> bool {
        target.field("auditId").is_some()
    }

    async fn fetch(&self, target: &ExtensionTarget) -> Result<Vec<Trace>, ExtensionError> {
        match target.field("auditId") {
            Some("a1") => Ok(vec![Trace {
                trace_id: "t1".into(),
                // Children before their parent, a reference to a span not in the trace: order is ours.
                spans: vec![
                    jaeger_span("c2", Some("r"), "Create etcd3", 1_704_103_200_000_300),
                    jaeger_span("c1", Some("r"), "admission", 1_704_103_200_000_100),
                    jaeger_span(
                        "r",
                        Some("absent"),
                        "POST /apis/apps/v1/deployments",
                        1_704_103_200_000_000,
                    ),
                ],
                processes: BTreeMap::from([(
                    "p1".to_owned(),
                    Process {
                        service_name: "apiserver".into(),
                        tags: Vec::new(),
                    },
                )]),
                warnings: None,
            }]),
            Some("slow") => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Vec::new())
            }
            _ => Err(ExtensionError::Other("backend said no".into())),
        }
    }
}

/// A store with one Deployment: two audit requests (`a1`, `a2`), one with audit id `slow`, and an Event.
fn store(dir: &std::path::Path) -> (SpanStore, ObjectKey) {
    let store = SpanStore::create(dir).unwrap();
    let key = ObjectKey::new("c", "apps", "deployments", "default", "web");
    let object = ObjectRef::new(key.clone(), "v1", None);
    let at: Timestamp = "2024-01-01T10:00:00Z".parse().unwrap();
    let window = Windowing::default().window_of(at);
    let mut spans = vec![object_span(&object, window)];
    for (n, (source, audit_id)) in [
        (SourceKind::Audit, Some("a1")),
        (SourceKind::Audit, Some("a2")),
        (SourceKind::Audit, Some("slow")),
        (SourceKind::Event, None),
    ]
    .into_iter()
    .enumerate()
    {
        let start = at + jiff::SignedDuration::from_secs(i64::try_from(n).unwrap());
        let mut activity = Activity::new(
            Object::new(object.clone()),
            source,
            start,
            format!("activity {n}"),
            format!("dedup {n}"),
        );
        if let Some(id) = audit_id {
            activity.attribute(v::AUDIT_ID, id);
        }
        spans.push(activity_span(&activity, window));
    }
    store.write_spans(&spans).unwrap();
    (store, key)
}

async fn view_in(store: &SpanStore, key: &ObjectKey, base: BaseMode) -> (TraceView, DisplayTrace) {
    let mode = DisplayMode {
        base,
        ..DisplayMode::DEFAULT
    };
    let mut request = ViewRequest::new(key.clone());
    request.selector = mode.selector();
    let view = assemble(store, &request).await.unwrap();
    let trace = display(&view, mode);
    (view, trace)
}

fn limits(timeout: Duration) -> ExtensionLimits {
    ExtensionLimits {
        timeout,
        ..ExtensionLimits::default()
    }
}

/// Every span's parent comes before it (depth first, as `DisplayTrace` promises).
fn assert_parents_first(trace: &DisplayTrace) {
    let mut seen = std::collections::HashSet::new();
    for span in &trace.spans {
        if let Some(parent) = span.parent {
            assert!(
                seen.contains(&parent),
                "{} before its parent",
                span.operation
            );
        }
        assert!(seen.insert(span.span_id), "span id {} twice", span.span_id);
    }
}

#[tokio::test]
async fn spans_are_grafted_under_their_activity_and_failures_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store(dir.path());
    let (view, mut trace) = view_in(&store, &key, BaseMode::Tree).await;
    let before = trace.spans.len();
    let extensions = Extensions::new(vec![Arc::new(Canned)], limits(Duration::from_millis(300)));
    let report = extensions.graft(&view, &mut trace).await;

    let (_, counts) = &report.providers[0];
    assert_eq!(
        (counts.asked, counts.answered, counts.failed, counts.late),
        (3, 1, 1, 1)
    );
    assert_eq!(counts.spans, 3);
    assert_eq!(trace.spans.len(), before + 3);
    assert_parents_first(&trace);

    let activity = trace
        .spans
        .iter()
        .find(|s| s.kind == DisplayKind::Activity && s.tag(v::AUDIT_ID) == Some("a1"))
        .unwrap();
    let roots: Vec<&DisplaySpan> = trace.children_of(activity.span_id).collect();
    assert_eq!(roots.len(), 1);
    let root = roots[0];
    assert_eq!(
        (root.kind, root.service.as_str()),
        (DisplayKind::Extension, "apiserver")
    );
    assert_eq!(root.operation, "POST /apis/apps/v1/deployments");
    assert_eq!(root.tag(EXTENSION_TAG), Some("canned"));
    let children: Vec<&str> = trace
        .children_of(root.span_id)
        .map(|s| s.operation.as_str())
        .collect();
    assert_eq!(children, ["admission", "Create etcd3"], "by start time");

    let warnings = &trace.spans[0].warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("\"canned\" failed 1 of 3 fetches: backend said no")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("1 of 3 fetches had not answered")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn activities_shown_as_logs_graft_under_their_object() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store(dir.path());
    let (view, mut trace) = view_in(&store, &key, BaseMode::Tracing).await;
    let extensions = Extensions::new(vec![Arc::new(Canned)], limits(Duration::from_millis(100)));
    extensions.graft(&view, &mut trace).await;
    assert_parents_first(&trace);
    let object = &trace.spans[0];
    let root = trace
        .children_of(object.span_id)
        .find(|s| s.kind == DisplayKind::Extension)
        .unwrap();
    let a1_start: Timestamp = "2024-01-01T10:00:00Z".parse().unwrap();
    assert_eq!(
        root.tag(EXTENSION_ACTIVITY_TAG),
        Some(a1_start.as_microsecond().to_string().as_str())
    );
}

#[tokio::test]
async fn span_and_fetch_limits_cut_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store(dir.path());
    let (view, mut trace) = view_in(&store, &key, BaseMode::Tree).await;
    let extensions = Extensions::new(
        vec![Arc::new(Canned)],
        ExtensionLimits {
            timeout: Duration::from_millis(100),
            max_fetches: 2,
            max_spans: 2,
            ..ExtensionLimits::default()
        },
    );
    let report = extensions.graft(&view, &mut trace).await;
    assert_eq!((report.fetches_skipped, report.spans_dropped), (1, 1));
    assert_parents_first(&trace);
    let warnings = trace.spans[0].warnings.join("\n");
    assert!(
        warnings.contains("1 fetches not made, the view's limit is 2"),
        "{warnings}"
    );
    assert!(
        warnings.contains("1 spans left out, the view's limit is 2"),
        "{warnings}"
    );
}

#[tokio::test]
async fn no_providers_leave_the_view_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store(dir.path());
    let (view, mut trace) = view_in(&store, &key, BaseMode::Tree).await;
    let before = trace.clone();
    Extensions::default().graft(&view, &mut trace).await;
    assert_eq!(trace, before);
}

#[test]
fn targets_carry_the_object_and_activity_fields() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store(dir.path());
    let (view, trace) = runtime.block_on(view_in(&store, &key, BaseMode::Tree));
    let shown = trace.spans.iter().map(|s| s.span_id).collect();
    let targets = targets(&view, &shown);
    assert_eq!(targets.len(), 5, "the object and its four activities");
    let object = &targets[0];
    assert_eq!(object.kind, TargetKind::Object);
    assert_eq!(
        object.field("objectApiPath"),
        Some("/apis/apps/v1/namespaces/default/deployments/web")
    );
    assert_eq!(object.field("groupResource"), Some("deployments.apps"));
    let audit = targets
        .iter()
        .find(|t| t.field("auditId") == Some("a1"))
        .unwrap();
    assert_eq!(audit.field("source"), Some("audit"));
    assert_eq!(audit.field("name"), Some("web"));
    assert_eq!(audit.field("start"), Some("2024-01-01T10:00:00Z"));
    assert_eq!(audit.field("startMicros"), Some("1704103200000000"));
}

#[test]
fn configs_are_checked_and_name_the_provider() {
    let parse = |yaml: &str| serde_yaml_ng::from_str::<ExtensionsConfig>(yaml);
    let config = parse(
        "timeout: 2s\nproviders:\n- name: apiserver\n  when: {source: audit}\n  jaeger:\n    url: http://127.0.0.1:1\n    service: apiserver\n    tags: {audit-id: '{auditId}'}\n",
    )
    .unwrap();
    #[cfg(feature = "extensions")]
    {
        let built = config.build().unwrap();
        assert_eq!(built.limits().timeout, Duration::from_secs(2));
        assert_eq!(built.providers()[0].name(), "apiserver");
    }
    #[cfg(not(feature = "extensions"))]
    assert!(
        config
            .build()
            .unwrap_err()
            .to_string()
            .contains("built without the `extensions` feature")
    );

    for (yaml, expected) in [
        (
            "providers:\n- name: x\n",
            "extension provider \"x\": needs one of `jaeger` or `http`",
        ),
        (
            "providers:\n- name: x\n  when: {source: '('}\n  http: {url: 'http://a'}\n",
            "extension provider \"x\": when.source:",
        ),
        (
            "providers:\n- name: x\n  http: {url: 'http://a'}\n- name: x\n  http: {url: 'http://b'}\n",
            "extension provider \"x\": is configured twice",
        ),
    ] {
        let err = parse(yaml).unwrap().build().unwrap_err().to_string();
        assert!(err.starts_with(expected), "{yaml}: {err}");
    }
    #[cfg(feature = "extensions")]
    {
        let err = parse("providers:\n- name: x\n  jaeger: {url: 'not a url', service: s}\n")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("extension provider \"x\": jaeger.url \"not a url\""),
            "{err}"
        );
    }
    let err = parse("providers:\n- name: x\n  http: {url: 'http://a/{b'}\n").unwrap_err();
    assert!(err.to_string().contains("an unclosed placeholder"), "{err}");
    assert!(parse("providers:\n- name: x\n  colour: red\n").is_err());
}

#[cfg(feature = "extensions")]
#[tokio::test]
async fn a_provider_at_a_dead_address_leaves_the_view_intact() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let config: ExtensionsConfig = serde_yaml_ng::from_str(&format!(
        "providers:\n- name: nowhere\n  http: {{url: 'http://{address}/api/traces?audit={{auditId}}'}}\n"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store(dir.path());
    let (view, mut trace) = view_in(&store, &key, BaseMode::Tree).await;
    let before = trace.spans.clone();
    config.build().unwrap().graft(&view, &mut trace).await;
    assert_eq!(trace.spans.len(), before.len());
    let warnings = trace.spans[0].warnings.join("\n");
    assert!(
        warnings.contains(&format!(
            "extension provider \"nowhere\" failed 3 of 3 fetches: http://{address}/api/traces?audit="
        )),
        "{warnings}"
    );
}

/// Answers, for each object, a trace holding that object's own span (as a controller traced with
/// kelemetry-tracing exports it) and a reconcile span under it.
#[derive(Debug)]
struct ControllerTraces;

#[async_trait::async_trait]
impl ExtensionProvider for ControllerTraces {
    fn name(&self) -> &str {
        "controller"
    }

    fn wants(&self, target: &ExtensionTarget) -> bool {
        target.kind == TargetKind::Object
    }

    async fn fetch(&self, target: &ExtensionTarget) -> Result<Vec<Trace>, ExtensionError> {
        let object = format!("{:016x}", target.attach_to);
        let mut own = jaeger_span(&object, None, "object", 1_704_103_200_000_000);
        own.trace_id = "t2".into();
        let mut reconcile = jaeger_span("ab", Some(&object), "reconcile", 1_704_103_200_000_500);
        reconcile.trace_id = "t2".into();
        Ok(vec![Trace {
            trace_id: "t2".into(),
            spans: vec![own, reconcile],
            processes: BTreeMap::from([(
                "p1".to_owned(),
                Process {
                    service_name: "configmap-sync".into(),
                    tags: Vec::new(),
                },
            )]),
            warnings: None,
        }])
    }
}

#[tokio::test]
async fn a_span_the_view_shows_already_is_not_grafted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store(dir.path());
    let (view, mut trace) = view_in(&store, &key, BaseMode::Tracing).await;
    let before = trace.spans.len();
    let extensions = Extensions::new(vec![Arc::new(ControllerTraces)], ExtensionLimits::default());
    let report = extensions.graft(&view, &mut trace).await;
    assert_eq!(report.providers[0].1.spans, 1);
    assert_eq!(trace.spans.len(), before + 1);
    let object = trace.spans[0].span_id;
    let reconcile = trace
        .spans
        .iter()
        .find(|s| s.operation == "reconcile")
        .unwrap();
    assert_eq!(reconcile.parent, Some(object));
    assert_parents_first(&trace);
}
