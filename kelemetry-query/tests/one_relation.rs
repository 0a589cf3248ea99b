//! One relation per pair of objects: a pair linked by ownership and by another class (a static Pod's mirror owned
//! by the Node it runs on, in a store written before the pod-node linker left such Pods out) is shown as owned,
//! whatever order the link spans come in.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::span::{link_span, object_span};
use kelemetry_core::{
    Link, ObjectKey, ObjectRef, ObjectSelector, SpanKind, SpanRecord, TraceId, Windowing,
};
use kelemetry_query::{LinkSelector, ReadError, Reader, ViewRequest, assemble};

/// Spans in memory, by trace, in the order they were added.
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
        Ok(self
            .0
            .values()
            .flatten()
            .filter(|s| s.kind == SpanKind::Object && s.object_key().as_ref() == Some(key))
            .filter(|s| s.start <= to && s.end > from)
            .map(|s| s.trace_id)
            .collect())
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

    /// `child`'s parent is `parent` by a link of each of `classes`, written both ways, in that order.
    fn links(&mut self, child: &ObjectKey, parent: &ObjectKey, classes: &[&str]) {
        let window = Windowing::default().window_of("2024-01-01T10:05:00Z".parse().unwrap());
        let (c, p) = (
            ObjectRef::new(child.clone(), "v1", None),
            ObjectRef::new(parent.clone(), "v1", None),
        );
        self.add(object_span(&c, window));
        self.add(object_span(&p, window));
        for class in classes {
            let up = Link::parent(p.clone())
                .with_class(*class)
                .with_dedup_id(*class);
            let down = Link::child(c.clone())
                .with_class(*class)
                .with_dedup_id(*class);
            self.add(link_span(&c, window, &up));
            self.add(link_span(&p, window, &down));
        }
    }
}

#[tokio::test]
async fn ownership_wins_over_another_class_for_the_same_pair() {
    let node = ObjectKey::new("c", "", "nodes", "", "cp");
    let pod = |name: &str| ObjectKey::new("c", "", "pods", "kube-system", name);
    let mut spans = Spans::default();
    spans.links(&pod("etcd-cp"), &node, &["node", "children"]);
    spans.links(&pod("kube-apiserver-cp"), &node, &["children", "node"]);
    spans.links(&pod("kindnet-x"), &node, &["node"]);
    let mut request = ViewRequest::new(node);
    request.selector = LinkSelector::full_tree();
    let view = assemble(&spans, &request).await.unwrap();
    let mut classes: Vec<(String, String)> = view
        .root
        .children
        .iter()
        .map(|child| (child.history.key.name.to_string(), child.class.clone()))
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        [
            ("etcd-cp".to_owned(), "children".to_owned()),
            ("kindnet-x".to_owned(), "node".to_owned()),
            ("kube-apiserver-cp".to_owned(), "children".to_owned()),
        ]
    );
}
