//! Relations between objects: [`Link`], the [`Linker`] trait and the [`ObjectLookup`] a linker may use.

use std::sync::Arc;

use async_trait::async_trait;

use crate::BoxError;
use crate::body::Body;
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

/// A relation found by a [`Linker`]: build it with [`Link::parent`] or [`Link::child`].
///
/// ```
/// use kelemetry_core::{Link, LinkRole, ObjectKey, ObjectRef};
///
/// let node = ObjectRef::new(ObjectKey::new("prod", "", "nodes", "", "node-1"), "v1", None);
/// let link = Link::parent(node).with_class("node").with_dedup_id("nodeName");
/// assert_eq!(link.role, LinkRole::Parent);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

impl Link {
    /// A link to `object` in the given role, without class or dedup id.
    pub fn new(object: ObjectRef, role: LinkRole) -> Self {
        Self {
            object,
            role,
            class: String::new(),
            dedup_id: String::new(),
        }
    }

    /// `object` is the parent of the object being linked (e.g. its owner).
    pub fn parent(object: ObjectRef) -> Self {
        Self::new(object, LinkRole::Parent)
    }

    /// `object` is a child of the object being linked.
    pub fn child(object: ObjectRef) -> Self {
        Self::new(object, LinkRole::Child)
    }

    /// Sets the class of the relation (a grouping span in tree views when not empty).
    pub fn with_class(mut self, class: impl Into<String>) -> Self {
        self.class = class.into();
        self
    }

    /// Sets the id that tells apart several links of one object in one window.
    pub fn with_dedup_id(mut self, dedup_id: impl Into<String>) -> Self {
        self.dedup_id = dedup_id.into();
        self
    }

    /// The same relation seen from `object`, the other side.
    pub fn reversed(&self, object: ObjectRef) -> Self {
        Self {
            object,
            role: self.role.reversed(),
            class: self.class.clone(),
            dedup_id: self.dedup_id.clone(),
        }
    }
}

/// A linker could not do its work for one object. The object is still traced; the error is logged and counted.
#[derive(Debug, thiserror::Error)]
#[error("linker {linker} failed on {object}: {source}")]
#[non_exhaustive]
pub struct LinkError {
    /// The linker's name.
    pub linker: String,
    /// The object, as canonical key text.
    pub object: String,
    /// What went wrong.
    #[source]
    pub source: BoxError,
}

impl LinkError {
    /// `linker` failed on `object` (anything printable, usually its [`ObjectKey`](crate::ObjectKey)) because of
    /// `source`: any error, or a message.
    pub fn new(
        linker: impl Into<String>,
        object: &dyn std::fmt::Display,
        source: impl Into<BoxError>,
    ) -> Self {
        Self {
            linker: linker.into(),
            object: object.to_string(),
            source: source.into(),
        }
    }
}

/// Finds the bodies of objects a linker needs: a cache, snapshots, an apiserver.
#[async_trait]
pub trait ObjectLookup: Send + Sync {
    /// The latest body known for `object`, if any.
    async fn body(&self, object: &ObjectRef) -> Option<Arc<Body>>;
}

/// The body of `object`: the one it carries, else the one `lookup` finds (the pipeline's body cache, then any
/// lookup configured on the pipeline, such as an apiserver GET). `None` when neither has it.
///
/// ```
/// use std::sync::Arc;
/// use kelemetry_core::{NoLookup, Object, ObjectKey, ObjectRef, link::body_of};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let key = ObjectKey::new("c", "", "pods", "ns", "p");
/// let object = Object::with_body(ObjectRef::new(key, "v1", None), serde_json::json!({"spec": {}}));
/// assert!(body_of(&object, &NoLookup).await.is_some());
/// # });
/// ```
pub async fn body_of(object: &Object, lookup: &dyn ObjectLookup) -> Option<Arc<Body>> {
    match &object.body {
        Some(body) => Some(body.clone()),
        None => lookup.body(&object.object_ref).await,
    }
}

/// A lookup that knows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLookup;

#[async_trait]
impl ObjectLookup for NoLookup {
    async fn body(&self, _object: &ObjectRef) -> Option<Arc<Body>> {
        None
    }
}

/// Finds how an object relates to others. Runs when an object gets its span in a window, and again once when its
/// body first becomes known in that window.
///
/// ```
/// use async_trait::async_trait;
/// use kelemetry_core::{Link, LinkError, Linker, Object, ObjectKey, ObjectLookup, ObjectRef};
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
///         Ok(vec![Link::parent(ObjectRef::new(ns, "v1", None)).with_class("namespace").with_dedup_id("namespace")])
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
