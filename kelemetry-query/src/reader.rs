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
    /// The reader cannot answer this kind of question.
    #[error("this reader does not support {what}")]
    Unsupported {
        /// The question.
        what: String,
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

/// Which objects a search wants: every field left `None` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectSearch {
    /// Cluster.
    pub cluster: Option<String>,
    /// Group (`""` for the core group).
    pub group: Option<String>,
    /// Resource (plural, lowercase).
    pub resource: Option<String>,
    /// Namespace (`""` for cluster-scoped).
    pub namespace: Option<String>,
    /// Name.
    pub name: Option<String>,
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

    /// Up to `limit` objects matching `search`. By default only searches that name the resource, the namespace
    /// and the name are answered (through [`Reader::find_objects`]); a reader with an index answers any.
    async fn search_objects(
        &self,
        search: &ObjectSearch,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, ReadError> {
        let (Some(resource), Some(namespace), Some(name)) =
            (&search.resource, &search.namespace, &search.name)
        else {
            return Err(ReadError::Unsupported {
                what: "a search that does not name the resource, namespace and name".into(),
            });
        };
        let pattern = ObjectPattern {
            cluster: search.cluster.clone(),
            group: search.group.clone(),
            resource: resource.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let mut found = self.find_objects(&pattern).await?;
        found.truncate(limit);
        Ok(found)
    }

    /// [`Reader::object_traces`] of several objects at once (a reader may answer in one round trip).
    async fn object_traces_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceId>>, ReadError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.object_traces(key, from, to).await?);
        }
        Ok(out)
    }

    /// [`Reader::trace`] of several traces at once (a reader may answer in one round trip).
    async fn traces(&self, ids: &[TraceId]) -> Result<Vec<Vec<SpanRecord>>, ReadError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.trace(*id).await?);
        }
        Ok(out)
    }

    /// The clusters the reader holds objects of; empty when it cannot tell.
    async fn clusters(&self) -> Result<Vec<String>, ReadError> {
        Ok(Vec::new())
    }
}
