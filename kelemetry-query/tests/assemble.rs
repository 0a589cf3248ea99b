//! Assembly over spans written by the core's own span builders: windows merge, selectors choose, the tree nests.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::span::{activity_span, link_span, object_span};
use kelemetry_core::{
    Activity, Link, LinkRole, Object, ObjectKey, ObjectRef, SourceKind, SpanKind, SpanRecord,
    TraceId, Windowing,
};
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::{
    DisplayMode, LinkSelector, ObjectPattern, ReadError, Reader, ViewNode, ViewRequest, assemble,
    display,
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
    async fn find_objects(&self, _: &ObjectPattern) -> Result<Vec<ObjectKey>, ReadError> {
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
        let up = Link {
            object: p.clone(),
            role: LinkRole::Parent,
            class: class.into(),
            dedup_id: class.into(),
        };
        let down = Link {
            object: c.clone(),
            role: LinkRole::Child,
            class: class.into(),
            dedup_id: class.into(),
        };
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
        .map(|(_, n)| n.history.key.name.clone())
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
