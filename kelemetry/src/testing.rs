//! Test helpers for linkers, sources and exporters of your own (feature `testing`).
//!
//! - [`CollectingSink`] (from `kelemetry-core`): an `ActivitySink` that keeps what a source sends, rejects and
//!   reports as progress, for testing a source;
//! - [`object`], [`seen`]: objects with bodies and their sightings, the input a linker test needs;
//! - [`trace_tree`] / [`LinkerHarness`]: runs records through a real [`Pipeline`] with your linkers, writes the
//!   spans into a temporary embedded store, assembles the full tree of one object from it, and returns it as an
//!   [`ObjectTree`], whose text form is easy to compare.
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry::testing::{object, seen, trace_tree};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let rs = object("apps", "replicasets", "default", "web-1", json!({}));
//! let pod = object("", "pods", "default", "web-1-x", json!({"metadata": {"ownerReferences": [
//!     {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "controller": true}]}}));
//! let tree = trace_tree(
//!     kelemetry::linkers::default_linkers(Arc::new(kelemetry::ResourceMap::builtin())),
//!     [seen(&rs, "2024-05-01T12:00:00Z"), seen(&pod, "2024-05-01T12:00:01Z")],
//!     rs.key(),
//! )
//! .await
//! .unwrap();
//! assert_eq!(tree.to_string(), "replicasets/web-1\n  pods/web-1-x (children)\n");
//! # });
//! ```

use std::fmt;
use std::sync::Arc;

pub use kelemetry_core::CollectingSink;
use kelemetry_core::{
    BoxError, CancellationToken, Linker, Object, ObjectKey, ObjectRef, Observation, Pipeline,
    PipelineReport, Record, RunFailed, SinkClosed,
};
use kelemetry_exporters::StoreExporter;
use kelemetry_query::{LinkSelector, ViewNode, ViewRequest, assemble};
use kelemetry_store::SpanStore;

/// The cluster of the objects made by [`object`].
pub const TEST_CLUSTER: &str = "test";

/// An object of cluster [`TEST_CLUSTER`] with `body` (apiVersion `v1`).
pub fn object(
    group: &str,
    resource: &str,
    namespace: &str,
    name: &str,
    body: serde_json::Value,
) -> Object {
    let key = ObjectKey::new(TEST_CLUSTER, group, resource, namespace, name);
    Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body))
}

/// `object` seen at `at` (RFC 3339) with its body: an [`Observation`]. Panics on a malformed time, which is the
/// test's own input.
pub fn seen(object: &Object, at: &str) -> Record {
    #[allow(clippy::expect_used)]
    let time = at.parse().expect("an RFC 3339 time");
    Observation {
        object: object.clone(),
        time,
    }
    .into()
}

/// The assembled tree of one object, reduced to what a test compares: the objects, their relation classes and
/// their activities' titles. Its [`Display`](fmt::Display) is one line per object, `resource/name` (with the
/// namespace when it differs from the root's, and ` (class)` when the link has a class), indented two spaces
/// per level.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectTree {
    /// The object.
    pub key: ObjectKey,
    /// The class of the link from its parent (empty for the root and for links without class).
    pub class: String,
    /// The titles of its activities, in time order.
    pub activities: Vec<String>,
    /// Its children.
    pub children: Vec<ObjectTree>,
}

impl ObjectTree {
    fn from_view(node: &ViewNode) -> Self {
        Self {
            key: node.history.key.clone(),
            class: node.class.clone(),
            activities: node
                .history
                .activities
                .iter()
                .map(|a| a.name.clone())
                .collect(),
            children: node.children.iter().map(Self::from_view).collect(),
        }
    }

    /// The first object in the tree (depth first) with this resource and name.
    pub fn find(&self, resource: &str, name: &str) -> Option<&ObjectTree> {
        if self.key.resource == resource && self.key.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(resource, name))
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, depth: usize, namespace: &str) -> fmt::Result {
        write!(
            f,
            "{:indent$}{}/",
            "",
            self.key.resource,
            indent = depth * 2
        )?;
        if self.key.namespace != namespace {
            write!(f, "{}/", self.key.namespace)?;
        }
        f.write_str(&self.key.name)?;
        if !self.class.is_empty() {
            write!(f, " ({})", self.class)?;
        }
        writeln!(f)?;
        for child in &self.children {
            child.write(f, depth + 1, namespace)?;
        }
        Ok(())
    }
}

impl fmt::Display for ObjectTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0, &self.key.namespace)
    }
}

/// Why the harness could not produce a tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The temporary store could not be made.
    #[error("temporary store: {0}")]
    Store(#[source] BoxError),
    /// The pipeline did not take every record.
    #[error("the pipeline closed before taking every record")]
    Closed(#[from] SinkClosed),
    /// [`LinkerHarness::run`] was called a second time; a harness runs once.
    #[error("this harness has run already")]
    AlreadyRun,
    /// The pipeline's task panicked or was cancelled.
    #[error("the pipeline's task failed: {0}")]
    Pipeline(#[source] tokio::task::JoinError),
    /// The run lost something: a source failed, spans were not exported, records were abandoned.
    #[error(transparent)]
    Lost(#[from] RunFailed),
    /// The tree could not be assembled (e.g. the root object has no span).
    #[error("assembling the tree: {0}")]
    Assemble(#[source] BoxError),
}

/// A real [`Pipeline`] with the given linkers, a temporary embedded store, and the read side.
#[derive(Debug)]
pub struct LinkerHarness {
    pipeline: Option<Pipeline>,
    store: SpanStore,
    _dir: tempfile::TempDir,
}

impl LinkerHarness {
    /// A harness over a pipeline with these linkers (and no decorator).
    pub fn new(linkers: impl IntoIterator<Item = Arc<dyn Linker>>) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Store(e.into()))?;
        let store = SpanStore::create(dir.path()).map_err(|e| HarnessError::Store(e.into()))?;
        let mut builder = Pipeline::builder().exporter(Arc::new(StoreExporter::new(store.clone())));
        for linker in linkers {
            builder = builder.linker(linker);
        }
        Ok(Self {
            pipeline: Some(builder.build()),
            store,
            _dir: dir,
        })
    }

    /// Runs `records` through the pipeline to the end and returns its report. A harness runs once.
    pub async fn run(
        &mut self,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<PipelineReport, HarnessError> {
        let Some(pipeline) = self.pipeline.take() else {
            return Err(HarnessError::AlreadyRun);
        };
        let sink = pipeline.sink();
        let running = tokio::spawn(pipeline.run(CancellationToken::new()));
        for record in records {
            sink.send(record).await?;
        }
        drop(sink);
        let report = running.await.map_err(HarnessError::Pipeline)?;
        report.check()?;
        Ok(report)
    }

    /// The full tree (every relation, any depth) of `root`, as stored.
    pub async fn tree(&self, root: &ObjectKey) -> Result<ObjectTree, HarnessError> {
        let mut request = ViewRequest::new(root.clone());
        request.selector = LinkSelector::full_tree();
        let view = assemble(&self.store, &request)
            .await
            .map_err(|e| HarnessError::Assemble(e.into()))?;
        Ok(ObjectTree::from_view(&view.root))
    }
}

/// Runs `future` to completion on a new multi-threaded Tokio runtime: for tests that are plain `#[test]`
/// functions. Panics if the runtime cannot be built.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    #[allow(clippy::expect_used)]
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(future)
}

/// Runs `records` through a real pipeline with `linkers` and returns the full tree of `root`.
pub async fn trace_tree(
    linkers: impl IntoIterator<Item = Arc<dyn Linker>>,
    records: impl IntoIterator<Item = Record>,
    root: &ObjectKey,
) -> Result<ObjectTree, HarnessError> {
    let mut harness = LinkerHarness::new(linkers)?;
    harness.run(records).await?;
    harness.tree(root).await
}
