//! # kelemetry-linkers
//!
//! Linkers tell how Kubernetes objects relate, so the read side can nest object spans into one tree. Each
//! implements [`kelemetry_core::Linker`].
//!
//! - [`OwnerLinker`]: an object's controller owner is its parent (class `children`).
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry_core::Pipeline;
//! use kelemetry_linkers::OwnerLinker;
//!
//! let pipeline = Pipeline::builder().linker(Arc::new(OwnerLinker::default())).build();
//! # drop(pipeline);
//! ```

pub mod owner;

pub use owner::OwnerLinker;
