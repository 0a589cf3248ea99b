//! [`OwnerLinker`]: an object's controller owner is its parent (docs/behaviour/linking.md#owner-references).

use std::sync::Arc;

use async_trait::async_trait;
use kelemetry_core::resource_map::ResourceMap;
use kelemetry_core::{Link, LinkError, Linker, Object, ObjectLookup, ObjectRef, SmolStr};
use serde_json::Value;

/// The class of owner links: the tree views group an owner's children under it.
pub const OWNER_CLASS: &str = "children";
/// The dedup id of owner links.
pub const OWNER_DEDUP_ID: &str = "ownerReference";

/// Links an object to the owners in `metadata.ownerReferences` that have `controller: true`.
///
/// The owner is in the object's cluster and, unless its resource is cluster-scoped, in the object's namespace
/// (Kubernetes forbids cross-namespace owners). The owner's kind is mapped to its resource with a [`ResourceMap`].
/// Without a body (neither on the object nor from the lookup) it finds nothing.
#[derive(Debug, Clone)]
pub struct OwnerLinker {
    resources: Arc<ResourceMap>,
}

impl OwnerLinker {
    /// A linker that maps owner kinds with `resources`.
    pub fn new(resources: Arc<ResourceMap>) -> Self {
        Self { resources }
    }
}

impl Default for OwnerLinker {
    fn default() -> Self {
        Self::new(Arc::new(ResourceMap::builtin()))
    }
}

#[async_trait]
impl Linker for OwnerLinker {
    fn name(&self) -> &str {
        "owner"
    }

    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        let body = match &object.body {
            Some(body) => body.clone(),
            None => match lookup.body(&object.object_ref).await {
                Some(body) => body,
                None => return Ok(Vec::new()),
            },
        };
        // Only this field of the metadata is parsed (and not kept with the body, which the body cache holds).
        let Some(owners) = kelemetry_core::body::metadata_field(&body, "ownerReferences") else {
            return Ok(Vec::new());
        };
        let Some(owners) = owners.as_array() else {
            return Err(self.error(object, "metadata.ownerReferences is not a list"));
        };
        let key = object.key();
        let mut links = Vec::new();
        for (i, owner) in owners.iter().enumerate() {
            if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let field = |name: &str| {
                owner
                    .get(name)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            let (Some(api_version), Some(kind), Some(name)) =
                (field("apiVersion"), field("kind"), field("name"))
            else {
                return Err(self.error(
                    object,
                    &format!("metadata.ownerReferences[{i}] lacks apiVersion, kind or name"),
                ));
            };
            let info = self.resources.resolve(api_version, kind);
            let parent = info.object_key(&key.cluster, &key.namespace, name);
            links.push(
                Link::parent(ObjectRef::new(
                    parent,
                    info.version.clone(),
                    field("uid").map(SmolStr::new),
                ))
                .with_class(OWNER_CLASS)
                .with_dedup_id(OWNER_DEDUP_ID),
            );
        }
        Ok(links)
    }
}

impl OwnerLinker {
    fn error(&self, object: &Object, message: &str) -> LinkError {
        crate::link_error(self.name(), object, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kelemetry_core::{NoLookup, ObjectKey};
    use serde_json::json;

    fn pod(body: Value) -> Object {
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body))
    }

    #[tokio::test]
    async fn controller_owner_becomes_parent() {
        let object = pod(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-a-controller", "uid": "u2"}
        ]}}));
        let links = OwnerLinker::default()
            .link(&object, &NoLookup)
            .await
            .unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(
            links[0].object.key,
            ObjectKey::new("c", "apps", "replicasets", "ns", "rs")
        );
        assert_eq!(links[0].object.uid.as_deref(), Some("u1"));
        assert_eq!(links[0].role, kelemetry_core::LinkRole::Parent);
        assert_eq!(links[0].class, "children");
    }

    #[tokio::test]
    async fn cluster_scoped_owner_has_no_namespace() {
        let object = pod(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u", "controller": true}
        ]}}));
        let links = OwnerLinker::default()
            .link(&object, &NoLookup)
            .await
            .unwrap();
        assert_eq!(
            links[0].object.key,
            ObjectKey::new("c", "", "nodes", "", "n1")
        );
    }

    #[tokio::test]
    async fn malformed_owner_references_are_errors_that_name_the_object() {
        let err = OwnerLinker::default()
            .link(
                &pod(json!({"metadata": {"ownerReferences": {"a": 1}}})),
                &NoLookup,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("c//pods/ns/p"), "{err}");
        let err = OwnerLinker::default()
            .link(
                &pod(json!({"metadata": {"ownerReferences": [{"controller": true, "kind": "X"}]}})),
                &NoLookup,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ownerReferences[0]"), "{err}");
    }

    #[tokio::test]
    async fn no_body_no_links() {
        let object = Object::new(ObjectRef::new(
            ObjectKey::new("c", "", "pods", "ns", "p"),
            "v1",
            None,
        ));
        assert!(
            OwnerLinker::default()
                .link(&object, &NoLookup)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
