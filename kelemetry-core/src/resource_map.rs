//! [`ResourceMap`]: API version and kind to resource (the lowercase plural) and back.
//!
//! Kubernetes Events name their object by `apiVersion` and `kind` (`involvedObject`, `regarding`), and so do owner
//! references; an [`ObjectKey`] needs the group and the resource. The map ships a table of the
//! built-in kinds ([`ResourceMap::builtin`]), accepts more at run time ([`ResourceMap::insert`], e.g. from the
//! apiserver's discovery or from CRDs), and for a kind nobody registered falls back to the plural that Kubernetes
//! itself guesses ([`guess_plural`]), marking the answer as [`guessed`](ResourceInfo::guessed).
//!
//! ```
//! use kelemetry_core::resource_map::{ResourceMap, ResourceScope};
//!
//! let map = ResourceMap::builtin();
//! let deployment = map.resolve("apps/v1", "Deployment");
//! assert_eq!((deployment.group.as_str(), deployment.resource.as_str()), ("apps", "deployments"));
//! assert_eq!(deployment.scope, ResourceScope::Namespaced);
//! assert!(!deployment.guessed);
//! assert_eq!(map.kind_of("apps", "deployments").as_deref(), Some("Deployment"));
//!
//! let widget = map.resolve("example.com/v1", "Policy");
//! assert_eq!(widget.resource, "policies");
//! assert!(widget.guessed);
//! ```

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::key::{ObjectKey, split_api_version};

/// Name of an activity attribute set to `true` when the object's resource was guessed from its kind
/// (see [`ResourceInfo::guessed`]).
pub const RESOURCE_GUESSED: &str = "resourceGuessed";

/// Whether objects of a resource live in a namespace.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResourceScope {
    /// Objects live in a namespace (Pods, Deployments...).
    Namespaced,
    /// Objects are cluster-wide (Nodes, Namespaces...).
    Cluster,
    /// Not known: the resource was guessed.
    Unknown,
}

/// One kind of one API group: what [`ResourceMap::insert`] takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceEntry {
    /// API group, `""` for the core group.
    pub group: String,
    /// The version to report when a lookup does not name one (the preferred version).
    pub version: String,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
    /// The resource, lowercase plural, e.g. `deployments`.
    pub resource: String,
    /// Namespaced or cluster-scoped.
    pub scope: ResourceScope,
    /// Whether a lookup by kind alone (an object reference with no `apiVersion`) may pick this group. False for
    /// legacy copies of a kind, such as `extensions` Deployments.
    pub preferred: bool,
}

impl ResourceEntry {
    /// A preferred entry.
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
        resource: impl Into<String>,
        scope: ResourceScope,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            resource: resource.into(),
            scope,
            preferred: true,
        }
    }

    /// The same entry, not picked by a lookup by kind alone.
    pub fn legacy(mut self) -> Self {
        self.preferred = false;
        self
    }
}

/// The answer of [`ResourceMap::resolve`]: where a kind lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceInfo {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version without the group: the one asked for, or the preferred one when none was given.
    pub version: String,
    /// The kind.
    pub kind: String,
    /// Lowercase plural resource.
    pub resource: String,
    /// Namespaced or cluster-scoped ([`ResourceScope::Unknown`] when guessed).
    pub scope: ResourceScope,
    /// The resource is Kubernetes' plural guess, not a registered entry.
    pub guessed: bool,
}

impl ResourceInfo {
    /// The key of an object of this resource. The namespace is dropped for cluster-scoped resources (an Event
    /// about a Node may still name a namespace).
    pub fn object_key(&self, cluster: &str, namespace: &str, name: &str) -> ObjectKey {
        let namespace = if self.scope == ResourceScope::Cluster {
            ""
        } else {
            namespace
        };
        ObjectKey::new(cluster, &self.group, &self.resource, namespace, name)
    }
}

#[derive(Clone, Debug)]
struct KindEntry {
    version: String,
    resource: String,
    scope: ResourceScope,
}

#[derive(Debug, Default)]
struct Tables {
    /// (group, kind) → entry.
    by_kind: HashMap<(String, String), KindEntry>,
    /// (group, resource) → kind.
    by_resource: HashMap<(String, String), String>,
    /// kind → preferred group, for references without an `apiVersion`. The first preferred entry wins.
    group_of_kind: HashMap<String, String>,
}

/// API version + kind → resource, and group + resource → kind. Safe to share between threads (`Arc<ResourceMap>`):
/// lookups take a read lock, [`insert`](Self::insert) a write lock.
///
/// Its size is bounded by what is inserted: the built-in table plus what discovery or configuration adds.
#[derive(Debug, Default)]
pub struct ResourceMap {
    tables: RwLock<Tables>,
}

/// The built-in kinds: (group, version, kind, resource, namespaced).
const BUILTIN: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "Pod", "pods", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "Endpoints", "endpoints", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Node", "nodes", false),
    ("", "v1", "Namespace", "namespaces", false),
    ("", "v1", "PersistentVolume", "persistentvolumes", false),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    ("", "v1", "Event", "events", true),
    ("", "v1", "LimitRange", "limitranges", true),
    ("", "v1", "ResourceQuota", "resourcequotas", true),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
    ),
    ("", "v1", "PodTemplate", "podtemplates", true),
    ("", "v1", "ComponentStatus", "componentstatuses", false),
    ("", "v1", "Binding", "bindings", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    (
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
    ),
    ("batch", "v1", "Job", "jobs", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
    ),
    ("networking.k8s.io", "v1", "IPAddress", "ipaddresses", false),
    (
        "networking.k8s.io",
        "v1",
        "ServiceCIDR",
        "servicecidrs",
        false,
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    ("coordination.k8s.io", "v1", "Lease", "leases", true),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
    ),
    ("storage.k8s.io", "v1", "CSIDriver", "csidrivers", false),
    ("storage.k8s.io", "v1", "CSINode", "csinodes", false),
    (
        "storage.k8s.io",
        "v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        true,
    ),
    (
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    (
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
    ),
    ("events.k8s.io", "v1", "Event", "events", true),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
    ),
    (
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        false,
    ),
    ("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", false),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "FlowSchema",
        "flowschemas",
        false,
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        false,
    ),
];

/// Legacy copies of kinds (served by old clusters, seen in old audit logs); never picked by kind alone.
const LEGACY: &[(&str, &str, &str, &str, bool)] = &[
    ("extensions", "v1beta1", "Deployment", "deployments", true),
    ("extensions", "v1beta1", "ReplicaSet", "replicasets", true),
    ("extensions", "v1beta1", "DaemonSet", "daemonsets", true),
    ("extensions", "v1beta1", "Ingress", "ingresses", true),
    (
        "extensions",
        "v1beta1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    (
        "extensions",
        "v1beta1",
        "PodSecurityPolicy",
        "podsecuritypolicies",
        false,
    ),
    (
        "policy",
        "v1beta1",
        "PodSecurityPolicy",
        "podsecuritypolicies",
        false,
    ),
];

fn scope_of(namespaced: bool) -> ResourceScope {
    if namespaced {
        ResourceScope::Namespaced
    } else {
        ResourceScope::Cluster
    }
}

impl ResourceMap {
    /// An empty map: every lookup is a guess until entries are inserted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map holding the built-in Kubernetes kinds (core, apps, batch, autoscaling, networking, RBAC, policy,
    /// coordination, discovery, storage, apiextensions, apiregistration, admissionregistration, events,
    /// scheduling, certificates, node, flowcontrol, and the legacy `extensions` group).
    pub fn builtin() -> Self {
        let map = Self::new();
        for &(group, version, kind, resource, namespaced) in BUILTIN {
            map.insert(ResourceEntry::new(
                group,
                version,
                kind,
                resource,
                scope_of(namespaced),
            ));
        }
        for &(group, version, kind, resource, namespaced) in LEGACY {
            map.insert(
                ResourceEntry::new(group, version, kind, resource, scope_of(namespaced)).legacy(),
            );
        }
        map
    }

    /// Adds or replaces the entry of one kind of one group.
    pub fn insert(&self, entry: ResourceEntry) {
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        let ResourceEntry {
            group,
            version,
            kind,
            resource,
            scope,
            preferred,
        } = entry;
        if let Some(old) = tables.by_kind.get(&(group.clone(), kind.clone()))
            && old.resource != resource
        {
            let old_key = (group.clone(), old.resource.clone());
            tables.by_resource.remove(&old_key);
        }
        tables
            .by_resource
            .insert((group.clone(), resource.clone()), kind.clone());
        if preferred && (group.is_empty() || !tables.group_of_kind.contains_key(&kind)) {
            tables.group_of_kind.insert(kind.clone(), group.clone());
        }
        tables.by_kind.insert(
            (group, kind),
            KindEntry {
                version,
                resource,
                scope,
            },
        );
    }

    /// The registered resource of a kind, or `None` when nobody registered it. An empty `api_version` looks the
    /// kind up in the core group first, then in the first preferred group that has it.
    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<ResourceInfo> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let (group, version) = if api_version.is_empty() {
            let group = tables.group_of_kind.get(kind)?;
            (group.as_str(), "")
        } else {
            split_api_version(api_version)
        };
        let entry = tables.by_kind.get(&(group.to_owned(), kind.to_owned()))?;
        Some(ResourceInfo {
            group: group.to_owned(),
            version: if version.is_empty() {
                entry.version.clone()
            } else {
                version.to_owned()
            },
            kind: kind.to_owned(),
            resource: entry.resource.clone(),
            scope: entry.scope,
            guessed: false,
        })
    }

    /// The resource of a kind: the registered one, else Kubernetes' plural guess ([`guess_plural`]) with
    /// [`guessed`](ResourceInfo::guessed) set and scope [`ResourceScope::Unknown`]. An empty `api_version` of an
    /// unregistered kind is taken as `v1` of the core group (as the original does).
    pub fn resolve(&self, api_version: &str, kind: &str) -> ResourceInfo {
        if let Some(info) = self.lookup(api_version, kind) {
            return info;
        }
        let (group, version) = if api_version.is_empty() {
            ("", "v1")
        } else {
            split_api_version(api_version)
        };
        ResourceInfo {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            resource: guess_plural(kind),
            scope: ResourceScope::Unknown,
            guessed: true,
        }
    }

    /// The kind of a registered resource of a group, e.g. `("apps", "deployments")` → `Deployment`.
    pub fn kind_of(&self, group: &str, resource: &str) -> Option<String> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        tables
            .by_resource
            .get(&(group.to_owned(), resource.to_owned()))
            .cloned()
    }

    /// The scope of a registered resource of a group.
    pub fn scope_of(&self, group: &str, resource: &str) -> Option<ResourceScope> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let kind = tables
            .by_resource
            .get(&(group.to_owned(), resource.to_owned()))?;
        tables
            .by_kind
            .get(&(group.to_owned(), kind.clone()))
            .map(|entry| entry.scope)
    }

    /// How many kinds are registered.
    pub fn len(&self) -> usize {
        self.tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_kind
            .len()
    }

    /// Whether no kind is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The plural Kubernetes guesses for a kind it has no discovery entry for: the lowercase kind, then `es` after a
/// final `s`, `ies` instead of a final `y` after a consonant, else `s`.
///
/// Kubernetes' own `UnsafeGuessKindToResource` turns every final `y` into `ies`; this one keeps a `y` after a
/// vowel (`Gateway` → `gateways`, which is what the Gateway API registers).
///
/// ```
/// use kelemetry_core::resource_map::guess_plural;
/// assert_eq!(guess_plural("Widget"), "widgets");
/// assert_eq!(guess_plural("Ingress"), "ingresses");
/// assert_eq!(guess_plural("NetworkPolicy"), "networkpolicies");
/// assert_eq!(guess_plural("Gateway"), "gateways");
/// ```
pub fn guess_plural(kind: &str) -> String {
    let singular = kind.to_lowercase();
    let mut chars = singular.chars().rev();
    match (chars.next(), chars.next()) {
        (None, _) => singular,
        (Some('s'), _) => singular + "es",
        (Some('y'), Some(before)) if !matches!(before, 'a' | 'e' | 'i' | 'o' | 'u') => {
            let stem = &singular[..singular.len() - 1];
            format!("{stem}ies")
        }
        _ => singular + "s",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn builtin_kinds_resolve() {
        let map = ResourceMap::builtin();
        let cases = [
            ("v1", "Pod", "", "pods", ResourceScope::Namespaced),
            ("v1", "Node", "", "nodes", ResourceScope::Cluster),
            (
                "v1",
                "Endpoints",
                "",
                "endpoints",
                ResourceScope::Namespaced,
            ),
            (
                "apps/v1",
                "ReplicaSet",
                "apps",
                "replicasets",
                ResourceScope::Namespaced,
            ),
            (
                "batch/v1",
                "CronJob",
                "batch",
                "cronjobs",
                ResourceScope::Namespaced,
            ),
            (
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                "autoscaling",
                "horizontalpodautoscalers",
                ResourceScope::Namespaced,
            ),
            (
                "networking.k8s.io/v1",
                "Ingress",
                "networking.k8s.io",
                "ingresses",
                ResourceScope::Namespaced,
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                ResourceScope::Cluster,
            ),
            (
                "storage.k8s.io/v1",
                "StorageClass",
                "storage.k8s.io",
                "storageclasses",
                ResourceScope::Cluster,
            ),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                ResourceScope::Cluster,
            ),
            (
                "events.k8s.io/v1",
                "Event",
                "events.k8s.io",
                "events",
                ResourceScope::Namespaced,
            ),
            (
                "extensions/v1beta1",
                "Deployment",
                "extensions",
                "deployments",
                ResourceScope::Namespaced,
            ),
        ];
        for (api_version, kind, group, resource, scope) in cases {
            let info = map.resolve(api_version, kind);
            assert_eq!(info.group, group, "{api_version} {kind}");
            assert_eq!(info.resource, resource, "{api_version} {kind}");
            assert_eq!(info.scope, scope, "{api_version} {kind}");
            assert!(!info.guessed, "{api_version} {kind}");
            assert_eq!(map.kind_of(group, resource).as_deref(), Some(kind));
        }
    }

    #[test]
    fn version_is_the_one_asked_or_the_preferred() {
        let map = ResourceMap::builtin();
        assert_eq!(map.resolve("apps/v1beta2", "Deployment").version, "v1beta2");
        assert_eq!(
            map.resolve("autoscaling/v1", "HorizontalPodAutoscaler")
                .version,
            "v1"
        );
        let by_kind = map.resolve("", "Deployment");
        assert_eq!(
            (by_kind.group.as_str(), by_kind.version.as_str()),
            ("apps", "v1")
        );
        assert!(!by_kind.guessed);
        // Core wins over events.k8s.io for a bare "Event".
        assert_eq!(map.resolve("", "Event").group, "");
    }

    #[test]
    fn unknown_kind_is_guessed() {
        let map = ResourceMap::builtin();
        let info = map.resolve("example.com/v1alpha1", "Widget");
        assert_eq!(info.group, "example.com");
        assert_eq!(info.version, "v1alpha1");
        assert_eq!(info.resource, "widgets");
        assert_eq!(info.scope, ResourceScope::Unknown);
        assert!(info.guessed);
        assert!(map.lookup("example.com/v1alpha1", "Widget").is_none());
        let bare = map.resolve("", "Widget");
        assert_eq!((bare.group.as_str(), bare.version.as_str()), ("", "v1"));
        // A kind known in another group is still a guess in an unknown group.
        assert!(map.resolve("example.com/v1", "Deployment").guessed);
    }

    #[test]
    fn plural_guess_follows_kubernetes() {
        assert_eq!(guess_plural("Pod"), "pods");
        assert_eq!(guess_plural("Status"), "statuses");
        assert_eq!(guess_plural("Policy"), "policies");
        assert_eq!(guess_plural("Key"), "keys");
        assert_eq!(guess_plural("Y"), "ys");
        assert_eq!(guess_plural(""), "");
    }

    #[test]
    fn insert_adds_and_replaces() {
        let map = ResourceMap::builtin();
        let before = map.len();
        map.insert(ResourceEntry::new(
            "example.com",
            "v1",
            "Widget",
            "widgetz",
            ResourceScope::Cluster,
        ));
        assert_eq!(map.len(), before + 1);
        let info = map.resolve("example.com/v2", "Widget");
        assert_eq!(
            (info.resource.as_str(), info.version.as_str()),
            ("widgetz", "v2")
        );
        assert!(!info.guessed);
        assert_eq!(
            map.kind_of("example.com", "widgetz").as_deref(),
            Some("Widget")
        );
        assert_eq!(
            map.scope_of("example.com", "widgetz"),
            Some(ResourceScope::Cluster)
        );
        map.insert(ResourceEntry::new(
            "example.com",
            "v1",
            "Widget",
            "widgets",
            ResourceScope::Namespaced,
        ));
        assert_eq!(map.len(), before + 1);
        assert_eq!(map.kind_of("example.com", "widgetz"), None);
        assert_eq!(map.resolve("example.com/v1", "Widget").resource, "widgets");
        assert_eq!(map.resolve("", "Widget").group, "example.com");
    }

    #[test]
    fn cluster_scoped_key_drops_namespace() {
        let map = ResourceMap::builtin();
        let node = map.resolve("v1", "Node").object_key("c", "default", "n1");
        assert_eq!(node.to_string(), "c//nodes//n1");
        let pod = map.resolve("v1", "Pod").object_key("c", "default", "p");
        assert_eq!(pod.to_string(), "c//pods/default/p");
    }

    #[test]
    fn readers_and_a_writer_share_the_map() {
        let map = Arc::new(ResourceMap::builtin());
        let writer = {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                for i in 0..200 {
                    map.insert(ResourceEntry::new(
                        "example.com",
                        "v1",
                        format!("Kind{i}"),
                        format!("kind{i}s"),
                        ResourceScope::Namespaced,
                    ));
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let map = Arc::clone(&map);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        assert_eq!(map.resolve("apps/v1", "Deployment").resource, "deployments");
                    }
                })
            })
            .collect();
        assert!(writer.join().is_ok());
        for reader in readers {
            assert!(reader.join().is_ok());
        }
        assert_eq!(
            map.kind_of("example.com", "kind199s").as_deref(),
            Some("Kind199")
        );
    }
}
