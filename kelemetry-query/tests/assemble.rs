//! Assembly over spans written by the core's own span builders: windows merge, selectors choose, the tree nests.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::span::{activity_span, link_span, object_span};
use kelemetry_core::{
    Activity, Link, Object, ObjectKey, ObjectRef, ObjectSelector, SourceKind, SpanKind, SpanRecord,
    TraceId, Windowing,
};
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{
    DisplayKind, DisplayMode, LinkSelector, ReadError, Reader, ViewNode, ViewRequest, assemble,
    assemble_components, display,
};

/// Spans in memory, by trace.
#[derive(Default)]
struct Spans(HashMap<TraceId, Vec<SpanRecord>>);

#[async_trait]
impl Reader for Spans {
    async fn object_traces(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TraceId>, ReadError> {
        let mut found: Vec<(Timestamp, TraceId)> = self
            .0
            .values()
            .flatten()
            .filter(|s| s.kind == SpanKind::Object && s.object_key().as_ref() == Some(key))
            .filter(|s| s.start <= to && s.end > from)
            .map(|s| (s.start, s.trace_id))
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, t)| t).collect())
    }
    async fn trace(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError> {
        Ok(self.0.get(&id).cloned().unwrap_or_default())
    }
    async fn find_objects(
        &self,
        _: &ObjectSelector,
        _: usize,
    ) -> Result<Vec<ObjectKey>, ReadError> {
        Ok(vec![])
    }
}

impl Spans {
    fn add(&mut self, span: SpanRecord) {
        let spans = self.0.entry(span.trace_id).or_default();
        if !spans.iter().any(|s| s.span_id == span.span_id) {
            spans.push(span);
        }
    }

    fn activity(&mut self, key: &ObjectKey, at: &str, title: &str) {
        let at: Timestamp = at.parse().unwrap();
        let window = Windowing::default().window_of(at);
        let object = ObjectRef::new(key.clone(), "v1", None);
        self.add(object_span(&object, window));
        let activity = Activity::new(
            Object::new(object),
            SourceKind::Event,
            at,
            title,
            format!("{key}{at}{title}"),
        );
        self.add(activity_span(&activity, window));
    }

    /// `child`'s parent is `parent`, written both ways, in the window of `at`.
    fn link(&mut self, child: &ObjectKey, parent: &ObjectKey, class: &str, at: &str) {
        let window = Windowing::default().window_of(at.parse().unwrap());
        let (c, p) = (
            ObjectRef::new(child.clone(), "v1", None),
            ObjectRef::new(parent.clone(), "v1", None),
        );
        self.add(object_span(&c, window));
        self.add(object_span(&p, window));
        let up = Link::parent(p.clone())
            .with_class(class)
            .with_dedup_id(class);
        let down = Link::child(c.clone())
            .with_class(class)
            .with_dedup_id(class);
        self.add(link_span(&c, window, &up));
        self.add(link_span(&p, window, &down));
    }
}

fn key(resource: &str, name: &str) -> ObjectKey {
    let group = match resource {
        "deployments" | "replicasets" => "apps",
        _ => "",
    };
    let namespace = if resource == "nodes" { "" } else { "ns" };
    ObjectKey::new("c", group, resource, namespace, name)
}

/// A Deployment, two ReplicaSets, two Pods each, all Pods on one Node; links and activities in two windows.
fn cluster() -> Spans {
    let mut spans = Spans::default();
    let d = key("deployments", "d");
    let node = key("nodes", "n");
    for (window, at) in [(0, "2024-01-01T10:05:00Z"), (1, "2024-01-01T10:35:00Z")] {
        spans.activity(&d, at, &format!("d{window}"));
        for rs in ["r1", "r2"] {
            let rs_key = key("replicasets", rs);
            spans.link(&rs_key, &d, "children", at);
            spans.activity(&rs_key, at, &format!("{rs}-{window}"));
            for pod in ["a", "b"] {
                let pod_key = key("pods", &format!("{rs}-{pod}"));
                spans.link(&pod_key, &rs_key, "children", at);
                spans.link(&pod_key, &node, "node", at);
                spans.activity(&pod_key, at, &format!("{rs}-{pod}-{window}"));
            }
        }
    }
    spans
}

fn request(root: ObjectKey, selector: LinkSelector) -> ViewRequest {
    let mut request = ViewRequest::new(root);
    request.selector = selector;
    request
}

fn all_keys(node: &ViewNode) -> BTreeSet<String> {
    node.walk()
        .into_iter()
        .map(|(_, n)| n.history.key.name.to_string())
        .collect()
}

#[tokio::test]
async fn windows_merge_into_one_object() {
    let spans = cluster();
    let view = assemble(
        &spans,
        &request(key("deployments", "d"), LinkSelector::none()),
    )
    .await
    .unwrap();
    assert!(view.root.children.is_empty());
    assert_eq!(view.root.history.object_spans.len(), 2);
    let titles: Vec<_> = view
        .root
        .history
        .activities
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(titles, ["d0", "d1"]);
}

#[tokio::test]
async fn the_time_range_clips_activities() {
    let spans = cluster();
    let mut req = request(key("deployments", "d"), LinkSelector::none());
    req.from = "2024-01-01T10:30:00Z".parse().unwrap();
    let view = assemble(&spans, &req).await.unwrap();
    let titles: Vec<_> = view
        .root
        .history
        .activities
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(titles, ["d1"]);
    req.from = "2025-01-01T00:00:00Z".parse().unwrap();
    req.to = "2025-01-02T00:00:00Z".parse().unwrap();
    assert!(
        assemble(&spans, &req).await.is_err(),
        "nothing in that range"
    );
}

#[tokio::test]
async fn full_tree_from_the_top_has_descendants_only() {
    let spans = cluster();
    let view = assemble(
        &spans,
        &request(key("deployments", "d"), LinkSelector::full_tree()),
    )
    .await
    .unwrap();
    assert_eq!(
        all_keys(&view.root),
        ["d", "r1", "r1-a", "r1-b", "r2", "r2-a", "r2-b"]
            .map(String::from)
            .into()
    );
    let rs: Vec<_> = view
        .root
        .children
        .iter()
        .map(|c| (c.history.key.name.as_str(), c.class.as_str()))
        .collect();
    assert_eq!(rs, [("r1", "children"), ("r2", "children")]);
}

#[tokio::test]
async fn full_tree_from_a_pod_reaches_its_owners_and_its_node_but_no_cousins() {
    let spans = cluster();
    let view = assemble(
        &spans,
        &request(key("pods", "r1-a"), LinkSelector::full_tree()),
    )
    .await
    .unwrap();
    // Ownership wins as the spine of the tree; the node hangs under the pod it was reached from.
    assert_eq!(view.root.history.key.name, "d");
    assert_eq!(
        all_keys(&view.root),
        ["d", "n", "r1", "r1-a"].map(String::from).into()
    );
    let pod = &view.root.children[0].children[0];
    assert_eq!(pod.history.key.name, "r1-a");
    assert_eq!(pod.children[0].history.key.name, "n");
    assert_eq!(pod.children[0].class, "node");
}

#[tokio::test]
async fn ancestors_take_owner_links_only() {
    let spans = cluster();
    let view = assemble(
        &spans,
        &request(key("replicasets", "r1"), LinkSelector::ancestors()),
    )
    .await
    .unwrap();
    assert_eq!(view.root.history.key.name, "d");
    assert_eq!(all_keys(&view.root), ["d", "r1"].map(String::from).into());
}

#[tokio::test]
async fn the_budget_bounds_the_fetches() {
    let spans = cluster();
    let mut req = request(key("deployments", "d"), LinkSelector::full_tree());
    req.budget = 3;
    let view = assemble(&spans, &req).await.unwrap();
    assert_eq!(all_keys(&view.root).len(), 4);
    assert_eq!(view.truncated, 3);
}

#[tokio::test]
async fn tracing_mode_shows_one_span_per_object_with_logs() {
    let spans = cluster();
    let mode = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(Modifier::FullTree),
    };
    let view = assemble(&spans, &request(key("deployments", "d"), mode.selector()))
        .await
        .unwrap();
    let trace = display(&view, mode);
    assert_eq!(trace.spans.len(), 7);
    let root = &trace.spans[0];
    assert_eq!(root.parent, None);
    assert_eq!(root.service, "c deployments");
    assert!(root.operation.starts_with("ns d / "), "{}", root.operation);
    assert_eq!(root.logs.len(), 2);
    assert_eq!(root.logs[0].field("event"), Some("d0"));
    // Children point at their parent, and each span covers its logs and its children.
    for span in &trace.spans[1..] {
        let parent = trace
            .spans
            .iter()
            .find(|s| Some(s.span_id) == span.parent)
            .unwrap();
        assert!(parent.start <= span.start && span.end <= parent.end);
        assert!(span.start < span.end);
    }
}

impl Spans {
    fn audit(&mut self, key: &ObjectKey, at: &str, title: &str) {
        let at: Timestamp = at.parse().unwrap();
        let window = Windowing::default().window_of(at);
        let object = ObjectRef::new(key.clone(), "v1", None);
        let activity = Activity::new(
            Object::new(object),
            SourceKind::Audit,
            at,
            title,
            format!("audit-{key}{at}{title}"),
        );
        self.add(activity_span(&activity, window));
    }
}

fn full_tree(base: BaseMode) -> DisplayMode {
    DisplayMode {
        base,
        modifier: Some(Modifier::FullTree),
    }
}

async fn shown(spans: &Spans, mode: DisplayMode) -> kelemetry_query::DisplayTrace {
    let view = assemble(spans, &request(key("deployments", "d"), mode.selector()))
        .await
        .unwrap();
    display(&view, mode)
}

#[tokio::test]
async fn grouped_mode_moves_audit_logs_into_an_audit_span() {
    let mut spans = cluster();
    spans.audit(
        &key("deployments", "d"),
        "2024-01-01T10:06:00Z",
        "alice update",
    );
    spans.audit(
        &key("deployments", "d"),
        "2024-01-01T10:07:00Z",
        "bob patch",
    );
    let trace = shown(&spans, full_tree(BaseMode::Grouped)).await;
    let root = &trace.spans[0];
    // Kubernetes Events stay on the object; the audit logs moved into one `audit` child.
    assert_eq!(root.logs.len(), 2);
    assert!(root.logs.iter().all(|l| l.field("event").is_some()));
    let audit: Vec<_> = trace
        .children_of(root.span_id)
        .filter(|s| s.kind == DisplayKind::SourceGroup)
        .collect();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].service.as_str(), audit[0].operation.as_str()),
        ("audit", "audit")
    );
    assert_eq!(audit[0].logs.len(), 2);
    assert_eq!(audit[0].logs[0].field("audit"), Some("alice update"));
    // Compacted to its logs.
    assert_eq!(audit[0].start, "2024-01-01T10:06:00Z".parse().unwrap());
    // Link classes stay in grouped mode.
    let class = trace
        .children_of(root.span_id)
        .find(|s| s.kind == DisplayKind::LinkClass)
        .unwrap();
    assert_eq!(class.service, "children");
    assert_eq!(trace.children_of(class.span_id).count(), 2);
    // In tracing mode the same audit records are logs on the Deployment, and there are no virtual spans.
    let tracing = shown(&spans, full_tree(BaseMode::Tracing)).await;
    assert_eq!(tracing.spans[0].logs.len(), 4);
    assert!(tracing.spans.iter().all(|s| s.kind == DisplayKind::Object));
}

#[tokio::test]
async fn tree_and_timeline_keep_activities_as_spans() {
    let spans = cluster();
    let tree = shown(&spans, full_tree(BaseMode::Tree)).await;
    let count = |trace: &kelemetry_query::DisplayTrace, kind| {
        trace.spans.iter().filter(|s| s.kind == kind).count()
    };
    // 7 objects with 2 activities each (one per window).
    assert_eq!(count(&tree, DisplayKind::Object), 7);
    assert_eq!(count(&tree, DisplayKind::Activity), 14);
    assert_eq!(count(&tree, DisplayKind::LinkClass), 3);
    for span in &tree.spans {
        if span.kind == DisplayKind::Activity {
            let parent = tree
                .spans
                .iter()
                .find(|p| Some(p.span_id) == span.parent)
                .unwrap();
            assert_eq!(
                parent.kind,
                DisplayKind::Object,
                "activities sit under their object"
            );
        }
    }
    // The root spans the two windows, not a compacted interval.
    assert_eq!(tree.spans[0].start, "2024-01-01T10:00:00Z".parse().unwrap());

    let timeline = shown(&spans, full_tree(BaseMode::Timeline)).await;
    assert_eq!(count(&timeline, DisplayKind::Object), 1);
    assert_eq!(count(&timeline, DisplayKind::LinkClass), 0);
    assert_eq!(count(&timeline, DisplayKind::Activity), 14);
    let root = timeline.spans[0].span_id;
    assert!(timeline.spans[1..].iter().all(|s| s.parent == Some(root)));
    let starts: Vec<_> = timeline.spans[1..].iter().map(|s| s.start).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "by time");

    // The same view has the same low half in every mode; only the mode digits differ.
    let low = |t: &kelemetry_query::DisplayTrace| t.trace_id as u64;
    assert_eq!(low(&tree), low(&timeline));
    assert_eq!(format!("{:032x}", timeline.trace_id)[..10], *"ff11000000");
}

#[tokio::test]
async fn objects_with_nothing_in_the_range_are_pruned() {
    let spans = cluster();
    let mut req = request(key("deployments", "d"), LinkSelector::full_tree());
    // Only the Deployment's own activity of the second window is in range: its children have nothing then.
    req.from = "2024-01-01T10:35:00Z".parse().unwrap();
    req.to = "2024-01-01T10:35:00Z".parse().unwrap();
    let view = assemble(&spans, &req).await.unwrap();
    assert_eq!(all_keys(&view.root).len(), 7, "assembled...");
    let trace = display(&view, full_tree(BaseMode::Tracing));
    // ...but every object has one activity at 10:35, so nothing is pruned; narrow to a time with none.
    assert_eq!(trace.spans.len(), 7);
    req.from = "2024-01-01T10:40:00Z".parse().unwrap();
    req.to = "2024-01-01T10:50:00Z".parse().unwrap();
    let view = assemble(&spans, &req).await.unwrap();
    let trace = display(&view, full_tree(BaseMode::Tracing));
    // The queried Deployment and its direct relations (the two ReplicaSets) stay even when quiet; the Pods, with
    // nothing in the range and nothing under them, are pruned.
    assert_eq!(
        trace.spans.len(),
        3,
        "quiet grandchildren are pruned, the root and its direct relations stay"
    );
    assert!(
        trace
            .spans
            .iter()
            .all(|s| s.service.ends_with("deployments") || s.service == "replicasets")
    );
}

#[tokio::test]
async fn a_search_splits_into_connected_components() {
    let spans = cluster();
    let pods: Vec<ObjectKey> = ["r1-a", "r2-b", "r1-b"]
        .iter()
        .map(|p| key("pods", p))
        .collect();
    let (from, to) = (Timestamp::MIN, Timestamp::MAX);
    let alone = assemble_components(&spans, &pods, from, to, &LinkSelector::none(), 100, 20)
        .await
        .unwrap();
    assert_eq!(alone.len(), 3);
    let joined = assemble_components(&spans, &pods, from, to, &LinkSelector::full_tree(), 100, 20)
        .await
        .unwrap();
    assert_eq!(joined.len(), 1, "the pods meet at their Deployment");
    assert_eq!(joined[0].root.history.key.name, "d");
    assert_eq!(joined[0].also_queried.len(), 2);
    // The view's request assembles it again, with the same id.
    let again = assemble(&spans, &joined[0].request(LinkSelector::full_tree()))
        .await
        .unwrap();
    assert_eq!(again.low_half(), joined[0].low_half());
    assert_eq!(all_keys(&again.root), all_keys(&joined[0].root));
}
