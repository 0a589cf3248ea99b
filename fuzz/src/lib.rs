//! What the fuzz targets share: the invariants every activity and span must keep, whatever the input.
//!
//! Each target under `fuzz_targets/` feeds libFuzzer's bytes to one parser of outside input and asserts what must
//! hold of its answer (see docs/fuzzing.md); a failed assertion is a crash libFuzzer keeps.

use kelemetry_core::span::activity_span;
use kelemetry_core::{Activity, ObjectKey, SourceKind, Windowing};

/// The cluster name the targets map input for.
pub const CLUSTER: &str = "fuzz";

/// Checks what holds of every activity a mapping of `source` produces for [`CLUSTER`]: the key names the cluster
/// and a resource and reads back from its text form, the dedup key is set, the activity lies in the window that
/// holds its start, and its span is under its object's span, carries its key and does not end before it starts.
pub fn check_activity(activity: &Activity, source: &SourceKind) {
    let key = activity.object.key();
    assert_eq!(key.cluster, CLUSTER, "the activity's cluster");
    assert!(
        !key.resource.is_empty(),
        "an activity without a resource: {key}"
    );
    assert_eq!(&activity.source, source);
    assert!(
        !activity.dedup_key.is_empty(),
        "an activity without a dedup key"
    );
    check_key_round_trip(key);

    let window = Windowing::default().window_of(activity.start);
    // The last window's end saturates at the latest time a timestamp holds, which its last instant reaches.
    let before_end = activity.start < window.end() || window.end() == jiff::Timestamp::MAX;
    assert!(
        window.start() <= activity.start && before_end,
        "{} is outside its window {}..{}",
        activity.start,
        window.start(),
        window.end()
    );
    let span = activity_span(activity, window);
    assert_eq!(span.parent_span_id, Some(span.trace_id.object_span()));
    assert!(span.end >= span.start, "span ends before it starts");
    assert_eq!(span.object_key().as_ref(), Some(key), "the span's key");
}

/// An object key without `/` in its fields reads back from its text form unchanged.
pub fn check_key_round_trip(key: &ObjectKey) {
    if key.fields().iter().any(|field| field.contains('/')) {
        return;
    }
    let text = key.to_string();
    let parsed: ObjectKey = text.parse().expect("a key's text form parses");
    assert_eq!(&parsed, key, "{text}");
}

/// Objects with bodies the rules target links: a Pod with a claim and an account, an EndpointSlice of a
/// Service, a bound claim, a Job of a CronJob, an autoscaler, a Helm release Secret.
pub fn sample_objects() -> Vec<kelemetry_core::Object> {
    use kelemetry_core::{Object, ObjectRef};
    use serde_json::json;
    let object = |group: &str, resource: &str, version: &str, body: serde_json::Value| {
        let name = body["metadata"]["name"].as_str().unwrap_or("x").to_owned();
        let namespace = body["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let key = ObjectKey::new(CLUSTER, group, resource, namespace, name);
        Object::with_body(
            ObjectRef::new(key, version, None),
            std::sync::Arc::new(body),
        )
    };
    let meta = |name: &str, labels: serde_json::Value| {
        json!({"name": name, "namespace": "default", "labels": labels,
               "annotations": {"meta.helm.sh/release-name": "web"},
               "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly"}]})
    };
    vec![
        object(
            "",
            "pods",
            "v1",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web-1", json!({"app": "web"})),
            "spec": {"serviceAccountName": "web", "nodeName": "node-1",
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}),
        ),
        object(
            "discovery.k8s.io",
            "endpointslices",
            "v1",
            json!({"apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice", "metadata": meta("web-abc", json!({"kubernetes.io/service-name": "web"}))}),
        ),
        object(
            "",
            "persistentvolumeclaims",
            "v1",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": meta("data", json!({})), "spec": {"volumeName": "pv-1"}}),
        ),
        object(
            "batch",
            "jobs",
            "v1",
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("nightly-1", json!({}))}),
        ),
        object(
            "autoscaling",
            "horizontalpodautoscalers",
            "v2",
            json!({"apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler", "metadata": meta("web", json!({})),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}),
        ),
        object(
            "",
            "secrets",
            "v1",
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": meta("sh.helm.release.v1.web.v1", json!({"owner": "helm", "name": "web"}))}),
        ),
    ]
}
