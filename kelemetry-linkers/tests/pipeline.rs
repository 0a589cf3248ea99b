//! The linkers inside a real pipeline: links are written both ways, linked objects get spans, and a malformed
//! annotation is counted while its object is still traced.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use kelemetry_core::{
    CancellationToken, MemoryExporter, Object, ObjectKey, ObjectRef, Observation, Pipeline,
    PipelineReport, ResourceMap, SpanKind, SpanRecord, TraceId, Windowing,
};
use serde_json::{Value, json};

fn observation(key: ObjectKey, body: Value) -> Observation {
    Observation {
        object: Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body)),
        time: "2024-05-01T12:00:00Z".parse().unwrap(),
    }
}

async fn run(observations: Vec<Observation>) -> (PipelineReport, Vec<SpanRecord>) {
    let exporter = Arc::new(MemoryExporter::new(10_000));
    let mut builder = Pipeline::builder().exporter(exporter.clone());
    for linker in kelemetry_linkers::default_linkers(Arc::new(ResourceMap::builtin())) {
        builder = builder.linker(linker);
    }
    let pipeline = builder.build();
    let sink = pipeline.sink();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown));
    for observation in observations {
        sink.send(observation.into()).await.unwrap();
    }
    drop(sink);
    let report = running.await.unwrap();
    (report, exporter.spans())
}

/// The links written in `key`'s trace of the test window: (other object, role, class).
fn links_of(spans: &[SpanRecord], key: &ObjectKey) -> Vec<(String, String, String)> {
    let window = Windowing::default().window_of("2024-05-01T12:00:00Z".parse().unwrap());
    let trace = TraceId::for_object(key, window);
    let mut links: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.kind == SpanKind::Link)
        .map(|s| {
            (
                s.linked_key().unwrap().to_string(),
                s.link_role().unwrap().as_str().to_owned(),
                s.attribute("linkClass").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    links.sort();
    links
}

fn has_object_span(spans: &[SpanRecord], key: &ObjectKey) -> bool {
    spans.iter().any(|s| {
        s.kind == SpanKind::Object
            && s.name == key.operation_name()
            && s.attribute("cluster") == Some(&key.cluster)
    })
}

#[tokio::test]
async fn pod_node_and_cross_cluster_parent_both_ways() {
    let pod = ObjectKey::new("member", "", "pods", "default", "web-1");
    let node = ObjectKey::new("member", "", "nodes", "", "worker-3");
    let parent = ObjectKey::new(
        "host",
        "types.kubefed.io",
        "federateddeployments",
        "default",
        "web",
    );
    let annotation = r#"{"cluster":"host","group":"types.kubefed.io","version":"v1beta1","resource":"federateddeployments","namespace":"default","name":"web"}"#;
    let (report, spans) = run(vec![observation(
        pod.clone(),
        json!({"metadata": {"name": "web-1", "annotations": {"kelemetry.kubewharf.io/parent-link": annotation}},
               "spec": {"nodeName": "worker-3", "serviceAccountName": "default"}}),
    )])
    .await;
    assert_eq!(report.link_errors, 0);
    assert_eq!(
        links_of(&spans, &pod),
        [
            (parent.to_string(), "parent".into(), "".into()),
            (
                "member//nodes//worker-3".into(),
                "parent".into(),
                "node".into()
            ),
            (
                "member//serviceaccounts/default/default".into(),
                "parent".into(),
                "serviceaccount".into()
            ),
        ]
    );
    // The backward links, in the other objects' own traces (the parent's in another cluster).
    assert_eq!(
        links_of(&spans, &node),
        [(pod.to_string(), "child".into(), "node".into())]
    );
    assert_eq!(
        links_of(&spans, &parent),
        [(pod.to_string(), "child".into(), "".into())]
    );
    assert!(has_object_span(&spans, &node));
    assert!(has_object_span(&spans, &parent));
}

#[tokio::test]
async fn malformed_annotation_is_counted_and_the_object_still_traced() {
    let pod = ObjectKey::new("member", "", "pods", "default", "broken");
    let (report, spans) = run(vec![observation(
        pod.clone(),
        json!({"metadata": {"annotations": {"kelemetry.kubewharf.io/parent-link": "{\"name\": \"x\""}},
               "spec": {"nodeName": "worker-3"}}),
    )])
    .await;
    assert_eq!(report.link_errors, 1);
    assert!(has_object_span(&spans, &pod));
    // The other linkers still did their work.
    assert_eq!(
        links_of(&spans, &pod),
        [(
            "member//nodes//worker-3".into(),
            "parent".into(),
            "node".into()
        )]
    );
}
