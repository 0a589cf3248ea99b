//! [`ListKeys`]: which fields identify the elements of a list, so that diffs match list elements by identity
//! rather than by position (docs/behaviour/diffs-and-redaction.md#lists-matched-by-key).
//!
//! Kubernetes names these fields in its OpenAPI schema: `x-kubernetes-list-map-keys` (server-side apply) and
//! `x-kubernetes-patch-merge-key` (strategic merge patch). A Deployment's `status.conditions` are keyed by `type`,
//! its containers by `name`, a container's ports by `containerPort` and `protocol`, its volume mounts by
//! `mountPath`. [`ListKeys::kubernetes`] holds those of the built-in types whose objects Kelemetry traces most;
//! [`ListKeys::insert`] adds more at run time (e.g. from a CRD's `x-kubernetes-list-map-keys`).
//!
//! A list is named by its **list path**: the diff path of the list field with every list element written `[*]`,
//! e.g. `spec.template.spec.containers[*].ports`. Field names are written as in diff paths: plain when they have
//! only ASCII letters, digits and underscores, else in brackets as a JSON string (`metadata["odd-name"]`).
//!
//! ```
//! use kelemetry_core::list_keys::ListKeys;
//!
//! let keys = ListKeys::kubernetes();
//! let deployments = keys.for_resource("apps", "deployments");
//! assert_eq!(deployments.keys_of("status.conditions"), Some(&["type".to_owned()][..]));
//! assert_eq!(
//!     deployments.keys_of("spec.template.spec.containers[*].ports"),
//!     Some(&["containerPort".to_owned(), "protocol".to_owned()][..])
//! );
//! ```

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use crate::diff::push_field;

/// List path → the fields that key its elements (empty: match by index).
type ListRules = HashMap<String, Vec<String>>;

/// Which fields key the elements of which lists, by API group and resource (the lowercase plural), plus rules
/// that hold for every resource (`metadata.ownerReferences`).
///
/// Looking a list up ([`ResourceListKeys::keys_of`]) tries the resource's own rules, then the rules of every
/// resource. A rule with no key fields says "match this list by index" (a list Kubernetes declares atomic whose
/// elements would otherwise be keyed by the general rule of [`keyed_diff`](crate::diff::keyed_diff)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListKeys {
    /// group → resource → list rules.
    by_resource: HashMap<String, HashMap<String, ListRules>>,
    /// Rules of every resource.
    every_resource: ListRules,
}

/// A table that several parts share and one may extend while the pipeline runs (see
/// [`DiffDecoratorWithKeys`](crate::decorate::DiffDecoratorWithKeys)).
pub type SharedListKeys = Arc<RwLock<ListKeys>>;

/// A rule [`ListKeys::insert`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListKeysError {
    /// The list path is not a list path (see the module documentation for its form).
    #[error("list path {path:?}: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// One of the key fields has an empty name.
    #[error("list path {path:?}: a key field name is empty")]
    EmptyKeyName {
        /// The path as given.
        path: String,
    },
}

static BUILTIN: LazyLock<ListKeys> = LazyLock::new(ListKeys::kubernetes);

/// Where the pod spec sits in the objects that hold one (a Pod's own, or a template's).
const POD_SPEC_HOLDERS: &[(&str, &str, &str)] = &[
    ("", "pods", "spec"),
    ("", "podtemplates", "template.spec"),
    ("", "replicationcontrollers", "spec.template.spec"),
    ("apps", "deployments", "spec.template.spec"),
    ("apps", "replicasets", "spec.template.spec"),
    ("apps", "statefulsets", "spec.template.spec"),
    ("apps", "daemonsets", "spec.template.spec"),
    ("batch", "jobs", "spec.template.spec"),
    ("batch", "cronjobs", "spec.jobTemplate.spec.template.spec"),
];

/// Lists of a pod spec, relative to it, and their keys (core/v1 `PodSpec`).
const POD_SPEC_LISTS: &[(&str, &[&str])] = &[
    ("volumes", &["name"]),
    ("imagePullSecrets", &["name"]),
    ("hostAliases", &["ip"]),
    (
        "topologySpreadConstraints",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    ("resourceClaims", &["name"]),
    ("schedulingGates", &["name"]),
];

/// The container lists of a pod spec (core/v1 `PodSpec`), keyed by `name`.
const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// Lists of a container, relative to it, and their keys (core/v1 `Container`).
const CONTAINER_LISTS_INSIDE: &[(&str, &[&str])] = &[
    ("ports", &["containerPort", "protocol"]),
    ("env", &["name"]),
    ("volumeMounts", &["mountPath"]),
    ("volumeDevices", &["devicePath"]),
];

/// Lists of a Pod's status and their keys (core/v1 `PodStatus`).
const POD_STATUS_LISTS: &[(&str, &[&str])] = &[
    ("status.containerStatuses", &["name"]),
    ("status.initContainerStatuses", &["name"]),
    ("status.ephemeralContainerStatuses", &["name"]),
    ("status.podIPs", &["ip"]),
    ("status.hostIPs", &["ip"]),
    ("status.resourceClaimStatuses", &["name"]),
];

/// Resources whose `status.conditions` are keyed by `type`.
const CONDITIONS_BY_TYPE: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "nodes"),
    ("", "namespaces"),
    ("", "persistentvolumeclaims"),
    ("", "replicationcontrollers"),
    ("", "services"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("policy", "poddisruptionbudgets"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"),
    ("certificates.k8s.io", "certificatesigningrequests"),
];

/// Other lists of single resources.
const OTHER_LISTS: &[(&str, &str, &str, &[&str])] = &[
    ("", "services", "spec.ports", &["port", "protocol"]),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "webhooks",
        &["name"],
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "webhooks",
        &["name"],
    ),
];

impl ListKeys {
    /// An empty table: every list is matched by the general rule or by index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys Kubernetes declares (`x-kubernetes-list-map-keys`, else `x-kubernetes-patch-merge-key`) for the
    /// lists of the built-in types that matter most to a trace: the pod spec of Pods and of every workload's
    /// template (containers, init and ephemeral containers by `name`; their `ports` by `containerPort` and
    /// `protocol`, `env` by `name`, `volumeMounts` by `mountPath`, `volumeDevices` by `devicePath`; `volumes`,
    /// `imagePullSecrets`, `resourceClaims`, `schedulingGates` by `name`; `hostAliases` by `ip`;
    /// `topologySpreadConstraints` by `topologyKey` and `whenUnsatisfiable`), a Pod's container statuses (by
    /// `name`) and IPs (by `ip`), `status.conditions` of the core, apps, batch and other built-in resources that
    /// have them (by `type`), a Service's `spec.ports` (by `port` and `protocol`), webhook configurations'
    /// `webhooks` (by `name`), and every object's `metadata.ownerReferences` (by `uid`).
    pub fn kubernetes() -> Self {
        let mut keys = Self::new();
        for (group, resource, spec) in POD_SPEC_HOLDERS {
            for (list, fields) in POD_SPEC_LISTS {
                keys.insert_canonical(group, resource, format!("{spec}.{list}"), fields);
            }
            for containers in CONTAINER_LISTS {
                let list = format!("{spec}.{containers}");
                for (inside, fields) in CONTAINER_LISTS_INSIDE {
                    keys.insert_canonical(group, resource, format!("{list}[*].{inside}"), fields);
                }
                keys.insert_canonical(group, resource, list, &["name"]);
            }
        }
        for (list, fields) in POD_STATUS_LISTS {
            keys.insert_canonical("", "pods", (*list).to_owned(), fields);
        }
        for (group, resource) in CONDITIONS_BY_TYPE {
            keys.insert_canonical(group, resource, "status.conditions".to_owned(), &["type"]);
        }
        for (group, resource, list, fields) in OTHER_LISTS {
            keys.insert_canonical(group, resource, (*list).to_owned(), fields);
        }
        keys.every_resource.insert(
            "metadata.ownerReferences".to_owned(),
            vec!["uid".to_owned()],
        );
        keys
    }

    /// [`ListKeys::kubernetes`], built once and shared: what the diff decorator uses.
    pub fn builtin() -> &'static ListKeys {
        &BUILTIN
    }

    /// Says that the elements of the list at `list_path` in objects of `group`/`resource` are keyed by the fields
    /// `keys` (together, in this order; none: by index), replacing what the table said of that list. A source can
    /// fill this from a CRD's `x-kubernetes-list-map-keys`.
    ///
    /// ```
    /// use kelemetry_core::list_keys::ListKeys;
    ///
    /// let mut keys = ListKeys::kubernetes();
    /// keys.insert("example.io", "widgets", "spec.parts[*].bolts", &["size", "thread"]).unwrap();
    /// let widgets = keys.for_resource("example.io", "widgets");
    /// assert_eq!(widgets.keys_of("spec.parts[*].bolts").map(<[String]>::len), Some(2));
    /// assert!(keys.insert("example.io", "widgets", "spec..parts", &["name"]).is_err());
    /// ```
    pub fn insert(
        &mut self,
        group: &str,
        resource: &str,
        list_path: &str,
        keys: &[&str],
    ) -> Result<(), ListKeysError> {
        let path = checked(list_path, keys)?;
        self.insert_canonical(group, resource, path, keys);
        Ok(())
    }

    /// Like [`ListKeys::insert`], for the list at `list_path` in objects of every resource (a resource's own rule
    /// for the same list wins).
    pub fn insert_for_every_resource(
        &mut self,
        list_path: &str,
        keys: &[&str],
    ) -> Result<(), ListKeysError> {
        let path = checked(list_path, keys)?;
        self.every_resource
            .insert(path, keys.iter().map(|k| (*k).to_owned()).collect());
        Ok(())
    }

    /// The rules that apply to objects of `group`/`resource`, for a diff.
    pub fn for_resource<'k>(&'k self, group: &str, resource: &str) -> ResourceListKeys<'k> {
        let own = self
            .by_resource
            .get(group)
            .and_then(|resources| resources.get(resource));
        ResourceListKeys {
            own,
            every: (!self.every_resource.is_empty()).then_some(&self.every_resource),
            general_rule: true,
        }
    }

    fn insert_canonical(&mut self, group: &str, resource: &str, path: String, keys: &[&str]) {
        self.by_resource
            .entry(group.to_owned())
            .or_default()
            .entry(resource.to_owned())
            .or_default()
            .insert(path, keys.iter().map(|k| (*k).to_owned()).collect());
    }
}

/// How [`keyed_diff`](crate::diff::keyed_diff) matches the list elements of one resource's objects: the table's
/// rules for that resource (from [`ListKeys::for_resource`]) and whether the general rule keys the other lists.
#[derive(Clone, Copy, Debug)]
pub struct ResourceListKeys<'k> {
    own: Option<&'k ListRules>,
    every: Option<&'k ListRules>,
    general_rule: bool,
}

/// How one list's elements are matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListMatching<'k> {
    /// By these key fields (never empty).
    Keys(&'k [String]),
    /// By `name`, else `type`, when every element has a unique one; else by index.
    GeneralRule,
    /// By position.
    Index,
}

impl ResourceListKeys<'static> {
    /// Every list by index: the structural diff of [`diff`](crate::diff::diff).
    pub const BY_INDEX: Self = Self {
        own: None,
        every: None,
        general_rule: false,
    };

    /// No table, the general rule only: for objects whose resource is unknown.
    pub const GENERAL_RULE_ONLY: Self = Self {
        own: None,
        every: None,
        general_rule: true,
    };
}

impl<'k> ResourceListKeys<'k> {
    /// The key fields of the list at `list_path` (written as the module documentation says) by the table,
    /// `None` when the table has no rule for it; an empty slice when the table says "by index".
    pub fn keys_of(&self, list_path: &str) -> Option<&'k [String]> {
        self.own
            .and_then(|rules| rules.get(list_path))
            .or_else(|| self.every.and_then(|rules| rules.get(list_path)))
            .map(Vec::as_slice)
    }

    /// Whether any list has a rule, i.e. whether list paths must be tracked during a diff.
    pub(crate) fn has_rules(&self) -> bool {
        self.own.is_some() || self.every.is_some()
    }

    /// How the list at `list_path` is matched.
    pub(crate) fn matching(&self, list_path: &str) -> ListMatching<'k> {
        match self.keys_of(list_path) {
            Some([]) => ListMatching::Index,
            Some(keys) => ListMatching::Keys(keys),
            None if self.general_rule => ListMatching::GeneralRule,
            None => ListMatching::Index,
        }
    }
}

/// The canonical form of `list_path` when it and `keys` are acceptable.
fn checked(list_path: &str, keys: &[&str]) -> Result<String, ListKeysError> {
    let path = canonical_list_path(list_path)?;
    if keys.iter().any(|k| k.is_empty()) {
        return Err(ListKeysError::EmptyKeyName {
            path: list_path.to_owned(),
        });
    }
    Ok(path)
}

/// A list path as the diff renders it: fields through [`push_field`], list elements as `[*]`.
fn canonical_list_path(list_path: &str) -> Result<String, ListKeysError> {
    let bad = |reason| ListKeysError::BadPath {
        path: list_path.to_owned(),
        reason,
    };
    let mut out = String::new();
    let mut rest = list_path;
    let mut last_was_element = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[*]") {
            if out.is_empty() {
                return Err(bad(
                    "an object is not a list: the path must start with a field",
                ));
            }
            out.push_str("[*]");
            rest = after;
            last_was_element = true;
            continue;
        }
        if let Some(quoted) = rest.strip_prefix('[') {
            let mut names = serde_json::Deserializer::from_str(quoted).into_iter::<String>();
            let Some(Ok(name)) = names.next() else {
                return Err(bad("a bracket holds `*` or a field name as a JSON string"));
            };
            let after = &quoted[names.byte_offset()..];
            rest = after
                .strip_prefix(']')
                .ok_or_else(|| bad("a bracketed field name must be followed by `]`"))?;
            push_field(&mut out, &name);
            last_was_element = false;
            continue;
        }
        if !out.is_empty() {
            rest = rest
                .strip_prefix('.')
                .ok_or_else(|| bad("expected `.`, `[*]` or `[\"field\"]`"))?;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty() {
            return Err(bad("empty field name"));
        }
        push_field(&mut out, name);
        rest = &rest[end..];
        last_was_element = false;
    }
    if out.is_empty() {
        return Err(bad("empty path"));
    }
    if last_was_element {
        return Err(bad("ends with `[*]`: name the list field"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_paths_are_canonical_and_keys_non_empty() {
        let keys = ListKeys::kubernetes();
        let mut count = 0;
        let every = keys.every_resource.iter();
        let own = keys
            .by_resource
            .values()
            .flat_map(HashMap::values)
            .flat_map(HashMap::iter);
        for (path, fields) in own.chain(every) {
            assert_eq!(canonical_list_path(path).as_deref(), Ok(path.as_str()));
            assert!(
                !fields.is_empty() && fields.iter().all(|f| !f.is_empty()),
                "{path}"
            );
            count += 1;
        }
        assert!(count > 100, "{count}");
    }

    #[test]
    fn workload_templates_and_pods_share_the_pod_spec_keys() {
        let keys = ListKeys::builtin();
        let pods = keys.for_resource("", "pods");
        let cronjobs = keys.for_resource("batch", "cronjobs");
        let deployments = keys.for_resource("apps", "deployments");
        let name = ["name".to_owned()];
        assert_eq!(pods.keys_of("spec.containers"), Some(&name[..]));
        assert_eq!(
            cronjobs.keys_of("spec.jobTemplate.spec.template.spec.initContainers"),
            Some(&name[..])
        );
        assert_eq!(
            deployments.keys_of("spec.template.spec.containers[*].volumeMounts"),
            Some(&["mountPath".to_owned()][..])
        );
        assert_eq!(pods.keys_of("status.podIPs"), Some(&["ip".to_owned()][..]));
        // Owner references hold for every resource, even unknown ones.
        let unknown = keys.for_resource("example.io", "widgets");
        assert_eq!(
            unknown.keys_of("metadata.ownerReferences"),
            Some(&["uid".to_owned()][..])
        );
        assert_eq!(unknown.keys_of("status.conditions"), None);
        assert_eq!(
            unknown.matching("status.conditions"),
            ListMatching::GeneralRule
        );
        // A Deployment's pod spec is in its template, not at `spec`.
        assert_eq!(deployments.keys_of("spec.containers"), None);
    }

    #[test]
    fn inserted_rules_are_canonical_and_win_over_every_resource_rules() {
        let mut keys = ListKeys::new();
        keys.insert("example.io", "widgets", "spec[\"odd-list\"]", &["id"])
            .unwrap();
        keys.insert("example.io", "widgets", "spec.items[*][\"plain\"]", &["k"])
            .unwrap();
        keys.insert_for_every_resource("spec.things", &["a"])
            .unwrap();
        keys.insert("example.io", "widgets", "spec.things", &[])
            .unwrap();
        let widgets = keys.for_resource("example.io", "widgets");
        assert_eq!(
            widgets.keys_of("spec[\"odd-list\"]").map(<[String]>::len),
            Some(1)
        );
        assert_eq!(
            widgets.keys_of("spec.items[*].plain").map(<[String]>::len),
            Some(1)
        );
        assert_eq!(widgets.matching("spec.things"), ListMatching::Index);
        let gadgets = keys.for_resource("example.io", "gadgets");
        assert_eq!(gadgets.keys_of("spec.things").map(<[String]>::len), Some(1));
    }

    #[test]
    fn bad_list_paths_are_refused_with_the_path_named() {
        let mut keys = ListKeys::new();
        for bad in [
            "",
            "[*].a",
            "a.",
            "a..b",
            "a[*]",
            "a[0]",
            "a[\"b\"",
            "a[\"b\"]c",
            ".a",
        ] {
            let err = keys.insert("g", "r", bad, &["k"]);
            match err {
                Err(ListKeysError::BadPath { path, .. }) => assert_eq!(path, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(
            keys.insert("g", "r", "a", &[""]),
            Err(ListKeysError::EmptyKeyName { .. })
        ));
        assert_eq!(keys, ListKeys::new());
    }
}
