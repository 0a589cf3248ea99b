//! [`Reader`]: where the read side gets spans from.

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::{ObjectKey, SpanRecord, TraceId};

/// Reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The backend failed.
    #[error("reading {what} failed: {message}")]
    Backend {
        /// What was being read.
        what: String,
        /// The backend's error.
        message: String,
    },
}

/// A partial object key: empty fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectPattern {
    /// Cluster, or `None` for any.
    pub cluster: Option<String>,
    /// Group, or `None` for any.
    pub group: Option<String>,
    /// Resource (plural, lowercase).
    pub resource: String,
    /// Namespace (`""` for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Spans by trace id, and the objects a store knows. Because ids are deterministic, the read side computes which
/// traces hold an object's windows; a reader only has to say which of them exist.
#[async_trait]
pub trait Reader: Send + Sync {
    /// The traces (one per window) that hold spans of `key` and overlap `[from, to]`, oldest first.
    async fn object_traces(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TraceId>, ReadError>;

    /// Every span of one trace; empty when the trace is unknown.
    async fn trace(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError>;

    /// The objects whose key matches `pattern`.
    async fn find_objects(&self, pattern: &ObjectPattern) -> Result<Vec<ObjectKey>, ReadError>;
}
