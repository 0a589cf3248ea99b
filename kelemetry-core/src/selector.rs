//! [`ObjectSelector`]: which objects a question is about, and its text form `RESOURCE[.GROUP]/NAMESPACE/NAME`.
//!
//! One type says "which objects" everywhere: `kelemetry show deployments.apps/default/web`, the search of the
//! HTTP API and of Jaeger's remote storage, the readers of the query side and the object index of the store.
//! A field left `None` matches anything; `Some("")` matches only the empty value (the core group, or no
//! namespace: a cluster-scoped object).
//!
//! # Text form
//!
//! | Text | Selects |
//! |---|---|
//! | `deployments/default/web` | resource `deployments` in any group, namespace `default`, name `web` |
//! | `deployments.apps/default/web` | the same in group `apps` (the group is everything after the first `.`) |
//! | `nodes/node-1` | the cluster-scoped object `node-1` of resource `nodes` (namespace `""`) |
//! | `nodes//node-1` | the same (an empty namespace is no namespace) |
//! | `pods/*/web` | `pods` named `web` in any namespace (`*` matches anything, in any field) |
//! | `pods./default/web` | `pods` of the core group only (an empty group after the `.`) |
//!
//! The resource and the group are lowercased, as Kubernetes writes them. The cluster is not part of the text; set
//! it with [`ObjectSelector::with_cluster`]. [`Display`](fmt::Display) writes the text back, so a parsed selector
//! round-trips:
//!
//! ```
//! use kelemetry_core::{ObjectKey, ObjectSelector};
//!
//! let selector: ObjectSelector = "deployments.apps/default/web".parse().unwrap();
//! assert_eq!(selector.to_string(), "deployments.apps/default/web");
//! assert!(selector.matches(&ObjectKey::new("prod", "apps", "deployments", "default", "web")));
//! assert!(!selector.matches(&ObjectKey::new("prod", "apps", "deployments", "other", "web")));
//!
//! let node: ObjectSelector = "nodes/node-1".parse().unwrap();
//! assert_eq!(node.namespace.as_deref(), Some(""));
//! assert!("deployments/a/b/c".parse::<ObjectSelector>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use crate::key::ObjectKey;
use crate::vocabulary as v;

/// The text that matches anything in one field of the text form.
pub const WILDCARD: &str = "*";

/// Which objects: every field left `None` matches anything, a field set matches exactly that value.
///
/// Build one with [`ObjectSelector::any`] and the `with_*` methods, [`ObjectSelector::object`] for one known
/// object, or parse the text form (see the [module documentation](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ObjectSelector {
    /// Cluster name.
    pub cluster: Option<String>,
    /// API group (`""` for the core group).
    pub group: Option<String>,
    /// Resource: the lowercase plural, e.g. `deployments`.
    pub resource: Option<String>,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
}

impl ObjectSelector {
    /// The names of the fields, as [`ObjectSelector::set_field`] takes them: the span attributes of the object's
    /// identity (`cluster`, `group`, `resource`, `namespace`, `name`).
    pub const FIELDS: [&'static str; 5] =
        [v::CLUSTER, v::GROUP, v::RESOURCE, v::NAMESPACE, v::NAME];

    /// Every object.
    pub fn any() -> Self {
        Self::default()
    }

    /// Exactly the object `key`.
    pub fn object(key: &ObjectKey) -> Self {
        Self {
            cluster: Some(key.cluster.to_string()),
            group: Some(key.group.to_string()),
            resource: Some(key.resource.to_string()),
            namespace: Some(key.namespace.to_string()),
            name: Some(key.name.to_string()),
        }
    }

    /// Only objects of `cluster`.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// Only objects of API group `group` (`""` for the core group).
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Only objects of `resource` (the lowercase plural).
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only objects in `namespace` (`""` for cluster-scoped objects).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only objects called `name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the field called `field` (one of [`ObjectSelector::FIELDS`]) to `value`, as a search by span tags
    /// does.
    pub fn set_field(
        &mut self,
        field: &str,
        value: impl Into<String>,
    ) -> Result<(), UnknownFieldError> {
        let slot = match field {
            v::CLUSTER => &mut self.cluster,
            v::GROUP => &mut self.group,
            v::RESOURCE => &mut self.resource,
            v::NAMESPACE => &mut self.namespace,
            v::NAME => &mut self.name,
            other => {
                return Err(UnknownFieldError {
                    field: other.to_owned(),
                });
            }
        };
        *slot = Some(value.into());
        Ok(())
    }

    /// Whether `key` is one of the selected objects.
    pub fn matches(&self, key: &ObjectKey) -> bool {
        let field =
            |want: &Option<String>, have: &str| want.as_deref().is_none_or(|want| want == have);
        field(&self.cluster, &key.cluster)
            && field(&self.group, &key.group)
            && field(&self.resource, &key.resource)
            && field(&self.namespace, &key.namespace)
            && field(&self.name, &key.name)
    }

    /// Whether the resource, the namespace and the name are all fixed: at most one object per cluster and
    /// group.
    pub fn names_one_object(&self) -> bool {
        self.resource.is_some() && self.namespace.is_some() && self.name.is_some()
    }
}

/// `field` is not one of [`ObjectSelector::FIELDS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field:?} is not a field of an object selector; the fields are cluster, group, resource, namespace, name"
)]
pub struct UnknownFieldError {
    /// The name given.
    pub field: String,
}

/// Why a text is not an [`ObjectSelector`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSelectorError {
    /// Not two or three `/`-separated fields.
    #[error(
        "{text:?} is not RESOURCE/NAMESPACE/NAME (or RESOURCE/NAME for a cluster-scoped object; RESOURCE may name \
         its group: deployments.apps): it has {found} '/'-separated fields"
    )]
    Fields {
        /// The text parsed.
        text: String,
        /// How many fields it has.
        found: usize,
    },
    /// The resource is empty.
    #[error(
        "{text:?} names no resource: write RESOURCE[.GROUP]/NAMESPACE/NAME, e.g. deployments.apps/default/web"
    )]
    EmptyResource {
        /// The text parsed.
        text: String,
    },
    /// The name is empty.
    #[error(
        "{text:?} names no object: the name after the last '/' is empty (write * for any name)"
    )]
    EmptyName {
        /// The text parsed.
        text: String,
    },
}

/// `None` for the wildcard, else the text.
fn field_of(text: &str) -> Option<String> {
    (text != WILDCARD).then(|| text.to_owned())
}

impl FromStr for ObjectSelector {
    type Err = ParseSelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = text.split('/').collect();
        let (resource, namespace, name) = match fields.as_slice() {
            [resource, namespace, name] => (*resource, *namespace, *name),
            [resource, name] => (*resource, "", *name),
            _ => {
                return Err(ParseSelectorError::Fields {
                    text: text.to_owned(),
                    found: fields.len(),
                });
            }
        };
        let (resource, group) = match resource.split_once('.') {
            Some((resource, group)) => (resource, field_of(&group.to_lowercase())),
            None => (resource, None),
        };
        if resource.is_empty() {
            return Err(ParseSelectorError::EmptyResource {
                text: text.to_owned(),
            });
        }
        if name.is_empty() {
            return Err(ParseSelectorError::EmptyName {
                text: text.to_owned(),
            });
        }
        Ok(Self {
            cluster: None,
            group,
            resource: field_of(&resource.to_lowercase()),
            namespace: field_of(namespace),
            name: field_of(name),
        })
    }
}

impl fmt::Display for ObjectSelector {
    /// The text form, without the cluster: `RESOURCE[.GROUP]/NAMESPACE/NAME`, or `RESOURCE[.GROUP]/NAME` when
    /// the namespace is `""`; `*` for a field that matches anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource.as_deref().unwrap_or(WILDCARD))?;
        if let Some(group) = &self.group {
            write!(f, ".{group}")?;
        }
        match self.namespace.as_deref() {
            Some("") => {}
            namespace => write!(f, "/{}", namespace.unwrap_or(WILDCARD))?,
        }
        write!(f, "/{}", self.name.as_deref().unwrap_or(WILDCARD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ObjectSelector {
        text.parse().unwrap()
    }

    #[test]
    fn canonical_texts_round_trip() {
        for text in [
            "deployments/default/web",
            "deployments.apps/default/web",
            "ingresses.networking.k8s.io/prod/edge",
            "nodes/node-1",
            "clusterroles.rbac.authorization.k8s.io/admin",
            "pods/*/web",
            "pods/default/*",
            "*.apps/default/web",
            "pods./default/web",
        ] {
            assert_eq!(parse(text).to_string(), text, "{text}");
            assert_eq!(parse(&parse(text).to_string()), parse(text), "{text}");
        }
    }

    #[test]
    fn fields_are_read_as_documented() {
        let selector = parse("Deployments.Apps/default/web");
        assert_eq!(
            selector,
            ObjectSelector::any()
                .with_group("apps")
                .with_resource("deployments")
                .with_namespace("default")
                .with_name("web")
        );
        let core_only = parse("pods./default/web");
        assert_eq!(core_only.group.as_deref(), Some(""));
        let any_group = parse("pods/default/web");
        assert_eq!(any_group.group, None);
        let wildcard = parse("pods/*/web");
        assert_eq!(
            (wildcard.namespace, wildcard.name.as_deref()),
            (None, Some("web"))
        );
    }

    /// The two parsers this type replaces disagreed on these; the decisions are the ones of `kelemetry show`,
    /// whose help text promised them.
    #[test]
    fn the_cases_the_old_parsers_disagreed_on() {
        // RESOURCE/NAME is a cluster-scoped object, not "any namespace" (write RESOURCE/*/NAME for that).
        let node = parse("nodes/node-1");
        assert_eq!(node.namespace.as_deref(), Some(""));
        assert!(node.matches(&ObjectKey::new("c", "", "nodes", "", "node-1")));
        assert!(!node.matches(&ObjectKey::new("c", "", "nodes", "default", "node-1")));
        // An empty namespace is no namespace, not any namespace.
        assert_eq!(parse("nodes//node-1"), node);
        assert_eq!(parse("nodes//node-1").to_string(), "nodes/node-1");
        // The resource is lowercased.
        assert_eq!(parse("Pods/default/web").resource.as_deref(), Some("pods"));
        // An empty resource or name is an error, not a search for the empty string.
        assert!(matches!(
            "/ns/web".parse::<ObjectSelector>(),
            Err(ParseSelectorError::EmptyResource { .. })
        ));
        assert!(matches!(
            "pods/ns/".parse::<ObjectSelector>(),
            Err(ParseSelectorError::EmptyName { .. })
        ));
    }

    #[test]
    fn wrong_field_counts_are_named() {
        for (text, found) in [("pods", 1), ("a/b/c/d", 4), ("", 1)] {
            let err = text.parse::<ObjectSelector>().unwrap_err();
            assert_eq!(
                err,
                ParseSelectorError::Fields {
                    text: text.to_owned(),
                    found
                }
            );
            assert!(err.to_string().contains("RESOURCE/NAMESPACE/NAME"), "{err}");
        }
    }

    #[test]
    fn matching_and_fields() {
        let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
        assert!(ObjectSelector::any().matches(&key));
        assert!(ObjectSelector::object(&key).matches(&key));
        assert!(
            !ObjectSelector::object(&key)
                .with_cluster("test")
                .matches(&key)
        );
        let mut selector = ObjectSelector::any();
        selector.set_field("namespace", "default").unwrap();
        selector.set_field(v::CLUSTER, "prod").unwrap();
        assert!(selector.matches(&key));
        assert!(!selector.names_one_object());
        let err = selector.set_field("kind", "Deployment").unwrap_err();
        assert!(err.to_string().contains("\"kind\""), "{err}");
        assert!(parse("deployments/default/web").names_one_object());
    }
}
