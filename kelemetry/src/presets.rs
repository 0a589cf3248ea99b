//! Ready pipelines: what the README draws, in one call.
//!
//! [`standard`] is a [`PipelineBuilder`] with the field-diff decorator and the built-in linkers (owner references,
//! the parent-link annotation, Pod to Node, and the default declarative rules) over the built-in resource map.
//! Add sources, exporters, a filter or linkers of your own to it; or start from [`Pipeline::builder`] for a bare
//! pipeline that has none of these.

use std::sync::Arc;

use kelemetry_core::{DiffDecorator, Pipeline, PipelineBuilder, ResourceMap};

/// The field-diff decorator and the built-in linkers, over [`ResourceMap::builtin`].
///
/// ```
/// let pipeline = kelemetry::presets::standard().build();
/// # drop(pipeline);
/// ```
pub fn standard() -> PipelineBuilder {
    standard_with(Arc::new(ResourceMap::builtin()))
}

/// [`standard`] over a resource map of your own (e.g. one extended by discovery, so that owner references to
/// custom resources resolve).
pub fn standard_with(resources: Arc<ResourceMap>) -> PipelineBuilder {
    let mut builder = Pipeline::builder().decorator(Arc::new(DiffDecorator));
    for linker in kelemetry_linkers::default_linkers(resources) {
        builder = builder.linker(linker);
    }
    builder
}
