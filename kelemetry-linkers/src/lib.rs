//! # kelemetry-linkers
//!
//! Linkers tell how Kubernetes objects relate, so the read side can nest object spans into one tree. Each
//! implements [`kelemetry_core::Linker`]; the pipeline runs them when an object gets its span in a window (and
//! again once when its body first becomes known), writes each link both ways and gives linked objects their own
//! spans.
//!
//! - [`OwnerLinker`]: an object's controller owner is its parent (class `children`);
//! - [`AnnotationLinker`]: the parent named in the `kelemetry.kubewharf.io/parent-link` annotation, possibly in
//!   another cluster ([`ParentLink`]);
//! - [`PodNodeLinker`]: a Pod is a child of its Node (class `node`);
//! - [`rules`]: declarative rules from YAML ([`RuleSet`], one [`RuleLinker`] per rule), with a default set
//!   ([`RuleSet::default_rules`]);
//! - [`CachingLookup`]: a bounded cache with hit and miss counters in front of a slow body lookup;
//! - [`body`]: what a linker of your own needs to read bodies ([`body::body_of`]), and [`link_error`].
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry_core::{Pipeline, ResourceMap};
//!
//! let resources = Arc::new(ResourceMap::builtin());
//! let mut builder = Pipeline::builder();
//! for linker in kelemetry_linkers::default_linkers(resources) {
//!     builder = builder.linker(linker);
//! }
//! let pipeline = builder.build();
//! # drop(pipeline);
//! ```

pub mod annotation;
pub mod body;
pub mod lookup_cache;
pub mod node;
pub mod owner;
pub mod rules;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use kelemetry_core::{LinkError, Linker, Object, ResourceMap};

pub use annotation::{AnnotationLinker, PARENT_LINK_ANNOTATION, ParentLink};
pub use lookup_cache::{CachingLookup, LookupStats};
pub use node::PodNodeLinker;
pub use owner::OwnerLinker;
pub use rules::{Rule, RuleError, RuleLinker, RuleSet, RuleSetError};

/// The built-in linkers: owner references, the parent-link annotation, Pod to Node, and `rules` (one linker per
/// rule; pass [`RuleSet::default_rules`] for the built-in set).
pub fn linkers_with_rules(resources: Arc<ResourceMap>, rules: &RuleSet) -> Vec<Arc<dyn Linker>> {
    let mut linkers: Vec<Arc<dyn Linker>> = vec![
        Arc::new(OwnerLinker::new(resources.clone())),
        Arc::new(AnnotationLinker),
        Arc::new(PodNodeLinker),
    ];
    linkers.extend(rules.linkers(resources));
    linkers
}

/// [`linkers_with_rules`] with the default rules.
pub fn default_linkers(resources: Arc<ResourceMap>) -> Vec<Arc<dyn Linker>> {
    linkers_with_rules(resources, &RuleSet::default_rules())
}

/// The error of linker `linker` on `object`: the pipeline counts it and logs it with the object's key; the object
/// is still traced.
pub fn link_error(linker: &str, object: &Object, message: impl Into<String>) -> LinkError {
    LinkError {
        linker: linker.to_owned(),
        object: object.key().to_string(),
        message: message.into(),
    }
}
