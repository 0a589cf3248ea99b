//! Object identity: [`ObjectKey`], [`ObjectRef`] and [`Object`].

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::body::{Body, IntoBody};

/// Identity of one Kubernetes object: cluster, API group, resource, namespace and name.
///
/// The group is `""` for the core group, the resource is the lowercase plural (`deployments`), the namespace is
/// `""` for cluster-scoped objects. The API version is not part of the identity (see [`ObjectRef`]).
///
/// The fields are [`SmolStr`]s: a field of up to 23 bytes is stored inline and one longer is shared, so cloning a
/// key (which the pipeline does for every span of an object) never allocates.
///
/// The canonical text is `cluster/group/resource/namespace/name`, always five fields:
///
/// ```
/// use kelemetry_core::ObjectKey;
/// let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
/// assert_eq!(key.to_string(), "prod/apps/deployments/default/web");
/// assert_eq!(key.to_string().parse::<ObjectKey>().unwrap(), key);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct ObjectKey {
    /// Name of the cluster the object lives in.
    pub cluster: SmolStr,
    /// API group, `""` for the core group.
    pub group: SmolStr,
    /// Lowercase plural resource name, e.g. `pods`.
    pub resource: SmolStr,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: SmolStr,
    /// Object name.
    pub name: SmolStr,
}

impl ObjectKey {
    /// A key from its five fields.
    pub fn new(
        cluster: impl AsRef<str>,
        group: impl AsRef<str>,
        resource: impl AsRef<str>,
        namespace: impl AsRef<str>,
        name: impl AsRef<str>,
    ) -> Self {
        Self {
            cluster: SmolStr::new(cluster),
            group: SmolStr::new(group),
            resource: SmolStr::new(resource),
            namespace: SmolStr::new(namespace),
            name: SmolStr::new(name),
        }
    }

    /// An object of another resource in the same cluster and namespace, e.g. the Service an Ingress names:
    /// `ingress.sibling("", "services", "web")`.
    pub fn sibling(
        &self,
        group: impl AsRef<str>,
        resource: impl AsRef<str>,
        name: impl AsRef<str>,
    ) -> Self {
        Self {
            cluster: self.cluster.clone(),
            group: SmolStr::new(group),
            resource: SmolStr::new(resource),
            namespace: self.namespace.clone(),
            name: SmolStr::new(name),
        }
    }

    /// Whether the object is of this group and resource.
    pub fn is(&self, group: &str, resource: &str) -> bool {
        self.group == group && self.resource == resource
    }

    /// The five fields in canonical order.
    pub fn fields(&self) -> [&str; 5] {
        [
            &self.cluster,
            &self.group,
            &self.resource,
            &self.namespace,
            &self.name,
        ]
    }

    /// The key as bytes whose order is the key's order (field by field: cluster, group, resource, namespace,
    /// name): to sort many keys with one byte comparison each, e.g. with `sort_by_cached_key`. Each field's bytes
    /// are written with a zero byte doubled as `0x00 0xFF`, and end with `0x00 0x00`, which sorts before anything
    /// a longer field could go on with.
    ///
    /// ```
    /// use kelemetry_core::ObjectKey;
    ///
    /// let a = ObjectKey::new("prod", "apps", "deployments", "default", "web");
    /// let b = ObjectKey::new("prod", "apps", "deployments", "default", "web-2");
    /// assert_eq!(a.cmp(&b), a.ordered_bytes().cmp(&b.ordered_bytes()));
    /// ```
    pub fn ordered_bytes(&self) -> Vec<u8> {
        let fields = self.fields();
        let mut out = Vec::with_capacity(fields.iter().map(|field| field.len() + 2).sum());
        for field in fields {
            let mut rest = field.as_bytes();
            while let Some(zero) = memchr::memchr(0, rest) {
                out.extend_from_slice(&rest[..zero]);
                out.extend_from_slice(&[0x00, 0xff]);
                rest = &rest[zero + 1..];
            }
            out.extend_from_slice(rest);
            out.extend_from_slice(&[0x00, 0x00]);
        }
        out
    }

    /// `resource/name`, the operation name of object spans (docs/behaviour/spans.md#operation-names).
    pub fn operation_name(&self) -> String {
        format!("{}/{}", self.resource, self.name)
    }

    /// `resource.group` (or just `resource` for the core group), as kubectl prints it.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.cluster, self.group, self.resource, self.namespace, self.name
        )
    }
}

/// Why a text is not a canonical [`ObjectKey`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "object key {text:?} must have five '/'-separated fields (cluster/group/resource/namespace/name), found {found}"
)]
pub struct ParseKeyError {
    /// The text that was parsed.
    pub text: String,
    /// How many fields it had.
    pub found: usize,
}

impl std::str::FromStr for ObjectKey {
    type Err = ParseKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = text.split('/').collect();
        match fields.as_slice() {
            [cluster, group, resource, namespace, name] => {
                Ok(Self::new(*cluster, *group, *resource, *namespace, *name))
            }
            _ => Err(ParseKeyError {
                text: text.to_owned(),
                found: fields.len(),
            }),
        }
    }
}

/// An [`ObjectKey`] with the API version and uid a source saw. Neither is part of the identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct ObjectRef {
    /// The identity.
    pub key: ObjectKey,
    /// API version without the group, e.g. `v1`; may be empty when unknown.
    pub version: SmolStr,
    /// The object's uid when known.
    pub uid: Option<SmolStr>,
}

impl ObjectRef {
    /// A reference from a key, a version and an optional uid.
    pub fn new(key: ObjectKey, version: impl Into<SmolStr>, uid: Option<SmolStr>) -> Self {
        Self {
            key,
            version: version.into(),
            uid,
        }
    }

    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.key.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.key.group, self.version)
        }
    }
}

/// An [`ObjectRef`] with the body (the JSON object) the source saw, if any. Cloning is cheap.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Object {
    /// Which object.
    pub object_ref: ObjectRef,
    /// The full object, when the source had it.
    pub body: Option<Arc<Body>>,
}

impl Object {
    /// An object without a body.
    pub fn new(object_ref: ObjectRef) -> Self {
        Self {
            object_ref,
            body: None,
        }
    }

    /// An object with a body: a [`Body`] or a parsed `serde_json::Value`, either possibly in an `Arc`.
    pub fn with_body(object_ref: ObjectRef, body: impl IntoBody) -> Self {
        Self {
            object_ref,
            body: Some(body.into_body()),
        }
    }

    /// The identity of the object.
    pub fn key(&self) -> &ObjectKey {
        &self.object_ref.key
    }
}

/// Splits an `apiVersion` such as `apps/v1` into group and version (`("apps", "v1")`; `v1` gives `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_bytes_sort_as_the_keys_do() {
        // Fields that are prefixes of each other, empty, holding zero bytes and bytes above them.
        let texts = [
            "", "a", "a\0", "a\0b", "a\u{1}", "ab", "b", "\0", "\u{ff}", "a\0\0",
        ];
        let mut keys = Vec::new();
        for (i, first) in texts.iter().enumerate() {
            for second in texts {
                let third = texts[(i * 7) % texts.len()];
                keys.push(ObjectKey::new(first, second, third, second, first));
                keys.push(ObjectKey::new(first, "", second, "", third));
            }
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    a.ordered_bytes().cmp(&b.ordered_bytes()),
                    a.cmp(b),
                    "{a:?} against {b:?}"
                );
            }
        }
    }

    #[test]
    fn parse_rejects_wrong_field_count() {
        let err = "a/b/c".parse::<ObjectKey>().unwrap_err();
        assert_eq!(err.found, 3);
        assert!(err.to_string().contains("five"));
    }

    #[test]
    fn cluster_scoped_key_round_trips() {
        let key = ObjectKey::new("c", "", "nodes", "", "n1");
        assert_eq!(key.to_string(), "c//nodes//n1");
        assert_eq!("c//nodes//n1".parse::<ObjectKey>().unwrap(), key);
    }

    #[test]
    fn api_version_split() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}
