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

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod annotation;
pub mod body;
pub mod lookup_cache;
pub mod node;
pub mod owner;
pub mod rules;

#[cfg(test)]
mod fixtures;

use std::path::PathBuf;
use std::sync::Arc;

use kelemetry_core::{BoxError, LinkError, Linker, Object, ResourceMap};

pub use annotation::{AnnotationLinker, PARENT_LINK_ANNOTATION, ParentLink};
pub use lookup_cache::{CachingLookup, LookupStats};
pub use node::PodNodeLinker;
pub use owner::OwnerLinker;
pub use rules::{Rule, RuleError, RuleLinker, RuleSet, RuleSetError};

/// Which built-in linkers a pipeline runs; [`LinkerSetConfig::build`] makes them.
///
/// [`Default`] turns every one on, with the built-in rules. With the feature `config` it is read from
/// configuration files (the `linkers` section of `kelemetry run`'s file): camelCase keys, unknown keys refused.
///
/// ```
/// use std::sync::Arc;
/// use kelemetry_core::ResourceMap;
/// use kelemetry_linkers::{LinkerSetConfig, RuleChoice};
///
/// let mut config = LinkerSetConfig::default();
/// config.pod_node = false;
/// config.rules = RuleChoice::None;
/// let linkers = config.build(Arc::new(ResourceMap::builtin()))?;
/// assert_eq!(linkers.len(), 2); // owner references and the parent-link annotation
/// # Ok::<(), kelemetry_linkers::RuleSetError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct LinkerSetConfig {
    /// [`OwnerLinker`]: an object's controller owner is its parent.
    pub owner: bool,
    /// [`AnnotationLinker`]: the parent named in the parent-link annotation, also across clusters.
    pub annotation: bool,
    /// [`PodNodeLinker`]: a Pod is a child of its Node.
    pub pod_node: bool,
    /// Which linking rules (one [`RuleLinker`] per rule).
    pub rules: RuleChoice,
}

impl Default for LinkerSetConfig {
    fn default() -> Self {
        Self {
            owner: true,
            annotation: true,
            pod_node: true,
            rules: RuleChoice::Default,
        }
    }
}

impl LinkerSetConfig {
    /// The linkers turned on, with the rules of [`LinkerSetConfig::rules`] (a rule file is read now).
    pub fn build(&self, resources: Arc<ResourceMap>) -> Result<Vec<Arc<dyn Linker>>, RuleSetError> {
        Ok(self.linkers_with(resources, &self.rules.load()?))
    }

    /// The linkers turned on, with `rules` instead of [`LinkerSetConfig::rules`].
    pub fn linkers_with(
        &self,
        resources: Arc<ResourceMap>,
        rules: &RuleSet,
    ) -> Vec<Arc<dyn Linker>> {
        let mut linkers: Vec<Arc<dyn Linker>> = Vec::new();
        if self.owner {
            linkers.push(Arc::new(OwnerLinker::new(resources.clone())));
        }
        if self.annotation {
            linkers.push(Arc::new(AnnotationLinker));
        }
        if self.pod_node {
            linkers.push(Arc::new(PodNodeLinker));
        }
        linkers.extend(rules.linkers(resources));
        linkers
    }
}

/// Which linking rules a [`LinkerSetConfig`] adds. In a configuration file: `default`, `none`, or the path of a
/// rule file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(serde::Deserialize), serde(from = "String"))]
#[non_exhaustive]
pub enum RuleChoice {
    /// The built-in rules ([`RuleSet::default_rules`]).
    #[default]
    Default,
    /// No rules.
    None,
    /// The rules of this file ([`RuleSet::read`]).
    File(PathBuf),
}

impl From<String> for RuleChoice {
    /// `default`, `none`, or a file.
    fn from(text: String) -> Self {
        match text.as_str() {
            "default" => Self::Default,
            "none" => Self::None,
            _ => Self::File(PathBuf::from(text)),
        }
    }
}

impl RuleChoice {
    /// The rules chosen; a rule file is read now.
    pub fn load(&self) -> Result<RuleSet, RuleSetError> {
        match self {
            Self::Default => Ok(RuleSet::default_rules()),
            Self::None => Ok(RuleSet::default()),
            Self::File(path) => RuleSet::read(path),
        }
    }
}

/// The built-in linkers: owner references, the parent-link annotation, Pod to Node, and `rules` (one linker per
/// rule; pass [`RuleSet::default_rules`] for the built-in set).
pub fn linkers_with_rules(resources: Arc<ResourceMap>, rules: &RuleSet) -> Vec<Arc<dyn Linker>> {
    LinkerSetConfig::default().linkers_with(resources, rules)
}

/// [`linkers_with_rules`] with the default rules.
pub fn default_linkers(resources: Arc<ResourceMap>) -> Vec<Arc<dyn Linker>> {
    linkers_with_rules(resources, &RuleSet::default_rules())
}

/// The error of linker `linker` on `object`: the pipeline counts it and logs it with the object's key; the object
/// is still traced.
pub fn link_error(linker: &str, object: &Object, cause: impl Into<BoxError>) -> LinkError {
    LinkError::new(linker, object.key(), cause)
}
