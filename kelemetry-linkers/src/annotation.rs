//! [`AnnotationLinker`]: a parent named in the `kelemetry.kubewharf.io/parent-link` annotation, possibly in another
//! cluster (docs/behaviour/linking.md#parent-link-annotation).

use async_trait::async_trait;
use kelemetry_core::{
    Link, LinkError, Linker, Object, ObjectKey, ObjectLookup, ObjectRef, SmolStr,
};
use serde::{Deserialize, Serialize};

use crate::body::body_of;
use crate::link_error;

/// The annotation that names an object's parent, as the original Kelemetry defines it.
pub const PARENT_LINK_ANNOTATION: &str = "kelemetry.kubewharf.io/parent-link";
/// The dedup id of annotation links (the original's).
pub const ANNOTATION_DEDUP_ID: &str = "annotation";

/// The value of the [`PARENT_LINK_ANNOTATION`]: a JSON object naming the parent.
///
/// `cluster` defaults to the annotated object's cluster; an absent `namespace` means a cluster-scoped parent (as
/// in the original: the namespace is not taken from the child). `uid` is informational.
///
/// ```
/// use kelemetry_linkers::ParentLink;
///
/// let link: ParentLink = serde_json::from_str(
///     r#"{"cluster": "host", "group": "types.kubefed.io", "version": "v1beta1",
///         "resource": "federateddeployments", "namespace": "default", "name": "web"}"#,
/// ).unwrap();
/// assert_eq!(link.key("member-1").to_string(), "host/types.kubefed.io/federateddeployments/default/web");
/// // What a controller writes on the objects it creates:
/// let text = link.to_annotation_value();
/// assert!(text.contains(r#""resource":"federateddeployments""#));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent's cluster; empty or absent for the child's own cluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// API group, `""` for the core group.
    #[serde(default)]
    pub group: String,
    /// API version without the group.
    #[serde(default)]
    pub version: String,
    /// Resource, lowercase plural.
    #[serde(default)]
    pub resource: String,
    /// Namespace; empty or absent for a cluster-scoped parent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// The parent's uid, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ParentLink {
    /// The parent's key, `child_cluster` standing for an empty cluster.
    pub fn key(&self, child_cluster: &str) -> ObjectKey {
        let cluster = if self.cluster.is_empty() {
            child_cluster
        } else {
            &self.cluster
        };
        ObjectKey::new(
            cluster,
            &self.group,
            &self.resource,
            &self.namespace,
            &self.name,
        )
    }

    /// The JSON text to put in the annotation.
    pub fn to_annotation_value(&self) -> String {
        // A struct of strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What is wrong with the link, if anything: `resource` and `name` are required, and no field may contain `/`
    /// (Kubernetes forbids it in names and it separates the fields of a canonical key).
    fn problem(&self) -> Option<String> {
        for (field, value) in [("resource", &self.resource), ("name", &self.name)] {
            if value.is_empty() {
                return Some(format!("the parent's {field} is missing or empty"));
            }
        }
        for (field, value) in [
            ("cluster", &self.cluster),
            ("group", &self.group),
            ("resource", &self.resource),
            ("namespace", &self.namespace),
            ("name", &self.name),
        ] {
            if value.contains('/') {
                return Some(format!("the parent's {field} {value:?} contains '/'"));
            }
        }
        None
    }
}

/// Links an object to the parent named in its [`PARENT_LINK_ANNOTATION`]: role parent, class `""` (no grouping
/// span), dedup id `annotation`. The parent may be in another cluster; the pipeline writes the backward link into
/// the parent's trace, so the parent's tree shows the child.
///
/// A malformed annotation is a [`LinkError`] that names the object and what is wrong; the pipeline counts it and
/// the object is still traced.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnnotationLinker;

#[async_trait]
impl Linker for AnnotationLinker {
    fn name(&self) -> &str {
        "annotation"
    }

    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        let Some(body) = body_of(object, lookup).await else {
            return Ok(Vec::new());
        };
        // That one annotation, not the whole metadata: nearly every object has none.
        let Some(value) = body.field_at(&["metadata", "annotations", PARENT_LINK_ANNOTATION])
        else {
            return Ok(Vec::new());
        };
        let Some(text) = value.as_str() else {
            return Err(link_error(
                self.name(),
                object,
                format!("annotation {PARENT_LINK_ANNOTATION} is not a string: {value}"),
            ));
        };
        let parent: ParentLink = serde_json::from_str(text).map_err(|err| {
            link_error(
                self.name(),
                object,
                format!(
                    "annotation {PARENT_LINK_ANNOTATION} is not a parent link ({{\"cluster\"?, \"group\", \
                     \"version\", \"resource\", \"namespace\"?, \"name\", \"uid\"?}}): {err}: {text:?}"
                ),
            )
        })?;
        if let Some(problem) = parent.problem() {
            return Err(link_error(
                self.name(),
                object,
                format!("annotation {PARENT_LINK_ANNOTATION}: {problem}: {text:?}"),
            ));
        }
        let key = parent.key(&object.key().cluster);
        let uid = (!parent.uid.is_empty()).then(|| SmolStr::new(&parent.uid));
        Ok(vec![
            Link::parent(ObjectRef::new(key, parent.version, uid))
                .with_dedup_id(ANNOTATION_DEDUP_ID),
        ])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use kelemetry_core::NoLookup;
    use kelemetry_core::body::{Body, IntoBody};
    use serde_json::{Value, json};

    fn annotated(body: impl IntoBody) -> Object {
        let key = ObjectKey::new("member", "apps", "deployments", "default", "web");
        Object::with_body(ObjectRef::new(key, "v1", None), body)
    }

    /// The links of an object annotated with `value`, its body read from its text as the pipeline reads it; the
    /// same as from the parsed body, and without parsing the body.
    async fn link(value: Value) -> Result<Vec<Link>, LinkError> {
        let body = json!({"metadata": {"name": "web", "labels": {"a": "b"},
            "annotations": {"other": "x", PARENT_LINK_ANNOTATION: value}}, "spec": {"replicas": 1}});
        let parsed = AnnotationLinker
            .link(&annotated(Arc::new(body.clone())), &NoLookup)
            .await;
        let text = Arc::new(Body::from_text(body.to_string()).unwrap());
        let links = AnnotationLinker
            .link(&annotated(text.clone()), &NoLookup)
            .await;
        assert_eq!(format!("{links:?}"), format!("{parsed:?}"));
        assert!(!text.is_parsed());
        links
    }

    #[tokio::test]
    async fn parent_in_another_cluster() {
        let links = link(json!(r#"{"cluster":"host","group":"types.kubefed.io","version":"v1beta1","resource":"federateddeployments","namespace":"default","name":"web","uid":"u-1"}"#))
            .await
            .unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(
            links[0].object.key.to_string(),
            "host/types.kubefed.io/federateddeployments/default/web"
        );
        assert_eq!(links[0].object.version, "v1beta1");
        assert_eq!(links[0].object.uid.as_deref(), Some("u-1"));
        assert_eq!(links[0].role, kelemetry_core::LinkRole::Parent);
        assert_eq!(links[0].class, "");
        assert_eq!(links[0].dedup_id, "annotation");
    }

    #[tokio::test]
    async fn cluster_defaults_to_the_childs_and_namespace_to_none() {
        let links = link(json!(
            r#"{"group":"","version":"v1","resource":"namespaces","name":"team-a"}"#
        ))
        .await
        .unwrap();
        assert_eq!(
            links[0].object.key,
            ObjectKey::new("member", "", "namespaces", "", "team-a")
        );
        assert_eq!(links[0].object.uid, None);
    }

    #[tokio::test]
    async fn malformed_annotations_name_the_object_and_the_fault() {
        for (value, expected) in [
            (json!("{not json"), "is not a parent link"),
            (json!(r#"{"resource":"pods"}"#), "name is missing"),
            (json!(r#"{"name":"x"}"#), "resource is missing"),
            (json!(r#"{"resource":"pods","name":3}"#), "invalid type"),
            (json!(r#"{"resource":"pods","name":"a/b"}"#), "contains '/'"),
            (json!({"resource": "pods"}), "is not a string"),
        ] {
            let err = link(value.clone()).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("member/apps/deployments/default/web"),
                "{text}"
            );
            assert!(text.contains(expected), "{value}: {text}");
            assert_eq!(err.linker, "annotation");
        }
    }

    #[tokio::test]
    async fn no_annotation_no_links() {
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        let plain = Object::with_body(
            ObjectRef::new(key.clone(), "v1", None),
            Arc::new(json!({"metadata": {"annotations": {"other": "x"}}})),
        );
        assert!(
            AnnotationLinker
                .link(&plain, &NoLookup)
                .await
                .unwrap()
                .is_empty()
        );
        let bodiless = Object::new(ObjectRef::new(key, "v1", None));
        assert!(
            AnnotationLinker
                .link(&bodiless, &NoLookup)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn annotation_value_round_trips() {
        let link = ParentLink {
            cluster: "host".into(),
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: String::new(),
        };
        let text = link.to_annotation_value();
        assert!(!text.contains("uid"), "{text}");
        assert_eq!(serde_json::from_str::<ParentLink>(&text).unwrap(), link);
    }
}
