//! # kelemetry
//!
//! Control-plane tracing for Kubernetes, as an SDK in one dependency. Apiserver audit records, Kubernetes Events
//! and watched object changes become OpenTelemetry traces in which every Kubernetes object is a span, what
//! happened to it are its children, and relations between objects nest the object spans into one tree.
//!
//! This crate re-exports the project's crates behind cargo features, the way `kube` does:
//!
//! | what | where | feature |
//! |---|---|---|
//! | the model, the extension traits, the [`Pipeline`] and its lifecycle | the crate root (from `kelemetry-core`) | always |
//! | ready pipelines: the diff decorator and the built-in linkers in one call | [`presets`] | `linkers` (default) |
//! | built-in linkers; what a linker of your own needs is at the root ([`Link`], [`link::body_of`]) | [`linkers`] | `linkers` (default) |
//! | audit log, recorded object and Event files; the audit log follower | [`sources`] | `sources` (default) |
//! | the audit webhook; Kubernetes Events and the object watch | [`sources`] | `webhook`, `kube` |
//! | the embedded store | [`store`] | `store` (default) |
//! | store and JSON-lines exporters; OTLP | [`exporters`] | `exporters` (default), `otlp` |
//! | assemble and show an object's tree | [`query`] | `query` (default), `http`, `jaeger-reader`, `remote-storage`, `extensions` (extension traces from Jaeger or HTTP) |
//! | configuration types with `Deserialize` | each component's module | `config` |
//! | test helpers: a collecting sink, a linker harness | `testing` | `testing` |
//!
//! A linker of your own needs nothing else (plus `serde_json` to read bodies):
//!
//! ```
//! use kelemetry::{Link, LinkError, Linker, Object, ObjectKey, ObjectLookup, ObjectRef, async_trait};
//!
//! /// Every namespaced object is a child of its Namespace.
//! struct NamespaceLinker;
//!
//! #[async_trait]
//! impl Linker for NamespaceLinker {
//!     fn name(&self) -> &str {
//!         "namespace"
//!     }
//!
//!     async fn link(&self, object: &Object, _: &dyn ObjectLookup) -> Result<Vec<Link>, LinkError> {
//!         let key = object.key();
//!         if key.namespace.is_empty() {
//!             return Ok(vec![]);
//!         }
//!         let namespace = ObjectKey::new(&key.cluster, "", "namespaces", "", &key.namespace);
//!         Ok(vec![Link::parent(ObjectRef::new(namespace, "v1", None)).with_class("namespace")])
//!     }
//! }
//!
//! let pipeline = kelemetry::presets::standard().linker(std::sync::Arc::new(NamespaceLinker)).build();
//! # drop(pipeline);
//! ```
//!
//! `docs/compose-a-pipeline.md` in the repository walks through an own pipeline binary; `docs/architecture.md`
//! explains the crates and the decisions behind them.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use async_trait::async_trait;
pub use kelemetry_core::*;

#[cfg(feature = "exporters")]
pub use kelemetry_exporters as exporters;
#[cfg(feature = "linkers")]
pub use kelemetry_linkers as linkers;
#[cfg(feature = "query")]
pub use kelemetry_query as query;
#[cfg(feature = "sources")]
pub use kelemetry_sources as sources;
#[cfg(feature = "store")]
pub use kelemetry_store as store;

#[cfg(feature = "linkers")]
pub mod presets;
#[cfg(feature = "testing")]
pub mod testing;

/// The guide `docs/compose-a-pipeline.md`, whose snippets run as doc tests.
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../../docs/compose-a-pipeline.md")]
mod compose_a_pipeline {}

/// The guide `docs/linking.md`, whose snippets run as doc tests.
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../../docs/linking.md")]
mod linking {}
