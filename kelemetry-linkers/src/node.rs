//! [`PodNodeLinker`]: a Pod is a child of the Node it was scheduled to.

use async_trait::async_trait;
use kelemetry_core::body::Body;
use kelemetry_core::{Link, LinkError, Linker, Object, ObjectKey, ObjectLookup, ObjectRef};

use crate::body::body_of;
use crate::link_error;

/// The class of pod-to-node links; the tree views show a `node` grouping span.
pub const NODE_CLASS: &str = "node";
/// The dedup id of pod-to-node links.
pub const NODE_DEDUP_ID: &str = "node";

/// Links a Pod to the Node named in its `spec.nodeName`, the Node being the parent (class `node`).
///
/// Why the Node is the parent: a Node's full tree then lists the pods that ran on it (downwards), and a Pod's full
/// tree reaches its Node (upwards), while the tree of a Deployment, which only goes down, is not cluttered with
/// nodes. The query side nests ownership first, so in a Pod's tree the Node is placed under the Pod it was reached
/// from, not above the Deployment.
///
/// Pods not yet scheduled have no `spec.nodeName` and no link; the link appears in the window where the Pod's
/// body first shows a node (the pipeline runs linkers again when a body first becomes known).
///
/// One relation per pair: a Pod whose controller owner reference is the very Node it runs on (a static Pod's
/// mirror, as the kubelet writes it) gets no `node` link, because the [`OwnerLinker`](crate::OwnerLinker) already
/// links the same two objects as owner and owned (class `children`), and ownership wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodNodeLinker;

#[async_trait]
impl Linker for PodNodeLinker {
    fn name(&self) -> &str {
        "pod-node"
    }

    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        let key = object.key();
        if !key.is("", "pods") {
            return Ok(Vec::new());
        }
        let Some(body) = body_of(object, lookup).await else {
            return Ok(Vec::new());
        };
        // The one field, not the whole body: most Pods are read for nothing else.
        let node = body.field_at(&["spec", "nodeName"]);
        let node = match node.as_deref() {
            None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
            Some(serde_json::Value::String(node)) if node.is_empty() => return Ok(Vec::new()),
            Some(serde_json::Value::String(node)) if !node.contains('/') => node,
            Some(other) => {
                return Err(link_error(
                    self.name(),
                    object,
                    format!("spec.nodeName is not a node name: {other}"),
                ));
            }
        };
        if owned_by_node(&body, node) {
            return Ok(Vec::new());
        }
        let node = ObjectKey::new(&key.cluster, "", "nodes", "", node);
        Ok(vec![
            Link::parent(ObjectRef::new(node, "v1", None))
                .with_class(NODE_CLASS)
                .with_dedup_id(NODE_DEDUP_ID),
        ])
    }
}

/// Whether `body`'s controller owner reference is core Node `node` (the owner linker's relation for the pair).
fn owned_by_node(body: &Body, node: &str) -> bool {
    let owners = kelemetry_core::body::metadata_field(body, "ownerReferences");
    let Some(owners) = owners.as_deref().and_then(serde_json::Value::as_array) else {
        return false;
    };
    owners.iter().any(|owner| {
        let field = |name: &str| owner.get(name).and_then(serde_json::Value::as_str);
        owner.get("controller").and_then(serde_json::Value::as_bool) == Some(true)
            && field("kind") == Some("Node")
            && field("apiVersion") == Some("v1")
            && field("name") == Some(node)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use kelemetry_core::NoLookup;
    use serde_json::{Value, json};

    /// An object whose body is read from its text, as the pipeline reads bodies.
    fn object(resource: &str, body: Value) -> Object {
        let key = ObjectKey::new("kind", "", resource, "default", "p");
        let body = Body::from_text(body.to_string()).unwrap();
        Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body))
    }

    #[tokio::test]
    async fn scheduled_pod_is_a_child_of_its_node() {
        let links = PodNodeLinker
            .link(
                &object("pods", json!({"spec": {"nodeName": "kind-control-plane"}})),
                &NoLookup,
            )
            .await
            .unwrap();
        assert_eq!(
            links,
            vec![
                Link::parent(ObjectRef::new(
                    ObjectKey::new("kind", "", "nodes", "", "kind-control-plane"),
                    "v1",
                    None
                ))
                .with_class("node")
                .with_dedup_id("node")
            ]
        );
    }

    #[tokio::test]
    async fn unscheduled_pods_and_other_resources_have_no_node() {
        for (resource, body) in [
            ("pods", json!({"spec": {}})),
            ("pods", json!({"spec": {"nodeName": ""}})),
            ("services", json!({"spec": {"nodeName": "n"}})),
        ] {
            assert!(
                PodNodeLinker
                    .link(&object(resource, body), &NoLookup)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }

    /// A static Pod's mirror is owned by its Node: the owner link is the only relation of the pair; a Pod owned
    /// by another Node (or by its Node without `controller`) still gets its `node` link.
    #[tokio::test]
    async fn mirror_pod_owned_by_its_node_has_no_node_link() {
        let mirror = |owner: &str, controller: bool| {
            object(
                "pods",
                json!({
                    "metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": owner,
                        "uid": "u", "controller": controller}]},
                    "spec": {"nodeName": "kind-control-plane"}
                }),
            )
        };
        let links = |pod: Object| async move { PodNodeLinker.link(&pod, &NoLookup).await.unwrap() };
        assert_eq!(links(mirror("kind-control-plane", true)).await, vec![]);
        assert_eq!(links(mirror("other-node", true)).await.len(), 1);
        assert_eq!(links(mirror("kind-control-plane", false)).await.len(), 1);
    }

    #[tokio::test]
    async fn malformed_node_name_is_an_error() {
        let err = PodNodeLinker
            .link(&object("pods", json!({"spec": {"nodeName": 7}})), &NoLookup)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("kind//pods/default/p"), "{err}");
        assert!(err.to_string().contains("spec.nodeName"), "{err}");
    }

    /// Real Pods listed from a Kubernetes 1.36 kind cluster: the four scheduled Pods owned by a ReplicaSet or a
    /// DaemonSet link to their Node; the four static Pods' mirrors (etcd, apiserver, controller manager,
    /// scheduler), owned by that Node, do not (the owner link is their relation to it).
    #[tokio::test]
    async fn recorded_pod_list() {
        let Some(list) =
            crate::fixtures::replay_body("apiserver-replays/k8s-openapi-v1-36/pod-list.json")
        else {
            return;
        };
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 8);
        let mut linked = Vec::new();
        for item in items {
            let name = item["metadata"]["name"].as_str().unwrap();
            let key = ObjectKey::new("kind", "", "pods", "kube-system", name);
            let parsed = Object::with_body(
                ObjectRef::new(key.clone(), "v1", None),
                Arc::new(item.clone()),
            );
            let body = Arc::new(Body::from_text(item.to_string()).unwrap());
            let pod = Object::with_body(ObjectRef::new(key, "v1", None), body.clone());
            let links = PodNodeLinker.link(&pod, &NoLookup).await.unwrap();
            // Read from the text, the two fields the linker needs: the same links, the body left unparsed.
            assert_eq!(links, PodNodeLinker.link(&parsed, &NoLookup).await.unwrap());
            assert!(!body.is_parsed(), "{name}");
            for link in &links {
                assert_eq!(link.object.key.resource, "nodes");
                assert_eq!(
                    link.object.key.name,
                    item["spec"]["nodeName"].as_str().unwrap()
                );
            }
            if !links.is_empty() {
                linked.push(name);
            }
        }
        assert_eq!(
            linked,
            [
                "coredns-589f44dc88-4fpns",
                "coredns-589f44dc88-lxdzt",
                "kindnet-4pxt7",
                "kube-proxy-hsdvx"
            ]
        );
    }
}
