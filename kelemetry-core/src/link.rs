//! Relations between objects: [`Link`], the [`Linker`] trait and the [`ObjectLookup`] a linker may use.

use std::sync::Arc;

use async_trait::async_trait;

use crate::key::{Object, ObjectRef};

/// The role of the *other* object of a link, relative to the object the linker was given.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinkRole {
    /// The other object is the parent (e.g. the owner).
    Parent,
    /// The other object is a child.
    Child,
}

impl LinkRole {
    /// `parent` or `child`, as written in the `linkRole` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parent => "parent",
            Self::Child => "child",
        }
    }

    /// Parses [`LinkRole::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "parent" => Some(Self::Parent),
            "child" => Some(Self::Child),
            _ => None,
        }
    }

    /// The role seen from the other side.
    pub fn reversed(self) -> Self {
        match self {
            Self::Parent => Self::Child,
            Self::Child => Self::Parent,
        }
    }
}

/// A relation found by a [`Linker`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    /// The other object.
    pub object: ObjectRef,
    /// Its role relative to the object the linker was given.
    pub role: LinkRole,
    /// Class of the relation, e.g. `children` for owner references; empty for none. A non-empty class becomes a
    /// grouping span between parent and child in the tree views.
    pub class: String,
    /// Tells apart several links of one object in one window, e.g. `ownerReference`. It takes part in the link
    /// span's id.
    pub dedup_id: String,
}

/// A linker could not do its work for one object. The object is still traced; the error is logged and counted.
#[derive(Debug, thiserror::Error)]
#[error("linker {linker} failed on {object}: {message}")]
pub struct LinkError {
    /// The linker's name.
    pub linker: String,
    /// The object, as canonical key text.
    pub object: String,
    /// What went wrong.
    pub message: String,
}

/// Finds the bodies of objects a linker needs: a cache, snapshots, an apiserver.
#[async_trait]
pub trait ObjectLookup: Send + Sync {
    /// The latest body known for `object`, if any.
    async fn body(&self, object: &ObjectRef) -> Option<Arc<serde_json::Value>>;
}

/// A lookup that knows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLookup;

#[async_trait]
impl ObjectLookup for NoLookup {
    async fn body(&self, _object: &ObjectRef) -> Option<Arc<serde_json::Value>> {
        None
    }
}

/// Finds how an object relates to others. Runs when an object gets its span in a window, and again once when its
/// body first becomes known in that window.
///
/// ```
/// use async_trait::async_trait;
/// use kelemetry_core::{Link, LinkError, LinkRole, Linker, Object, ObjectKey, ObjectLookup, ObjectRef};
///
/// /// Every object of namespace `ns` is a child of that Namespace.
/// struct NamespaceLinker;
///
/// #[async_trait]
/// impl Linker for NamespaceLinker {
///     fn name(&self) -> &str { "namespace" }
///     async fn link(&self, object: &Object, _: &dyn ObjectLookup) -> Result<Vec<Link>, LinkError> {
///         let key = object.key();
///         if key.namespace.is_empty() { return Ok(vec![]); }
///         let ns = ObjectKey::new(&key.cluster, "", "namespaces", "", &key.namespace);
///         Ok(vec![Link { object: ObjectRef::new(ns, "v1", None), role: LinkRole::Parent,
///                        class: "namespace".into(), dedup_id: "namespace".into() }])
///     }
/// }
/// ```
#[async_trait]
pub trait Linker: Send + Sync {
    /// A short name, used in logs and metrics.
    fn name(&self) -> &str;

    /// The links of `object`. Its body is set when the pipeline has one; `lookup` finds other bodies.
    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError>;
}
