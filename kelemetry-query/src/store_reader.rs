//! [`StoreReader`]: the [`Reader`] over the embedded store.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::{ObjectKey, SpanRecord, TraceId};
use kelemetry_store::{ObjectFilter, SpanStore, StoreError};

use crate::reader::{ObjectPattern, ObjectSearch, ReadError, Reader};

/// Reads the embedded store. Store reads are short and local; they run on a blocking thread.
#[derive(Clone, Debug)]
pub struct StoreReader {
    store: Arc<SpanStore>,
}

impl StoreReader {
    /// A reader over `store`.
    pub fn new(store: Arc<SpanStore>) -> Self {
        Self { store }
    }
}

fn backend(what: impl Into<String>) -> impl FnOnce(StoreError) -> ReadError {
    let what = what.into();
    move |err| ReadError::Backend {
        what,
        message: err.to_string(),
    }
}

async fn blocking<T: Send + 'static>(
    what: String,
    job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ReadError> {
    match tokio::task::spawn_blocking(job).await {
        Ok(result) => result.map_err(backend(what)),
        Err(err) => Err(ReadError::Backend {
            what,
            message: format!("store task failed: {err}"),
        }),
    }
}

#[async_trait]
impl Reader for StoreReader {
    async fn object_traces(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TraceId>, ReadError> {
        let store = self.store.clone();
        let key = key.clone();
        let what = format!("windows of {key}");
        let windows = blocking(what, move || store.windows_of(&key, from, to)).await?;
        Ok(windows.into_iter().map(|w| w.trace_id).collect())
    }

    async fn trace(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError> {
        let store = self.store.clone();
        blocking(format!("trace {id}"), move || store.spans_of_trace(id)).await
    }

    async fn find_objects(&self, pattern: &ObjectPattern) -> Result<Vec<ObjectKey>, ReadError> {
        let store = self.store.clone();
        let pattern = pattern.clone();
        let what = format!(
            "objects {}/{}/{}",
            pattern.resource, pattern.namespace, pattern.name
        );
        blocking(what, move || {
            store.find_objects(
                pattern.cluster.as_deref(),
                pattern.group.as_deref(),
                &pattern.resource,
                &pattern.namespace,
                &pattern.name,
            )
        })
        .await
    }

    /// One blocking task for all the objects.
    async fn object_traces_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceId>>, ReadError> {
        let store = self.store.clone();
        let keys = keys.to_vec();
        let what = format!("windows of {} objects", keys.len());
        let windows = blocking(what, move || store.windows_of_many(&keys, from, to)).await?;
        Ok(windows
            .into_iter()
            .map(|windows| windows.into_iter().map(|w| w.trace_id).collect())
            .collect())
    }

    /// One blocking task for all the traces.
    async fn traces(&self, ids: &[TraceId]) -> Result<Vec<Vec<SpanRecord>>, ReadError> {
        let store = self.store.clone();
        let ids = ids.to_vec();
        let what = format!("{} traces", ids.len());
        blocking(what, move || store.spans_of_traces(&ids)).await
    }

    async fn search_objects(
        &self,
        search: &ObjectSearch,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, ReadError> {
        let store = self.store.clone();
        let filter = ObjectFilter {
            cluster: search.cluster.clone(),
            group: search.group.clone(),
            resource: search.resource.clone(),
            namespace: search.namespace.clone(),
            name: search.name.clone(),
        };
        blocking("object search".into(), move || {
            store.search_objects(&filter, limit)
        })
        .await
    }

    /// Read from the object index: one entry per object, so this is a scan of every object.
    async fn clusters(&self) -> Result<Vec<String>, ReadError> {
        let store = self.store.clone();
        let objects = blocking("clusters".into(), move || {
            store.search_objects(&ObjectFilter::default(), usize::MAX)
        })
        .await?;
        let mut clusters: Vec<String> = objects.into_iter().map(|key| key.cluster).collect();
        clusters.sort();
        clusters.dedup();
        Ok(clusters)
    }
}
