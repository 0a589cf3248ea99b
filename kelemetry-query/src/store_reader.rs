//! The [`Reader`] over the embedded store: [`SpanStore`] itself answers the read side's questions, so the store a
//! pipeline writes is handed to the query side as it is.
//!
//! ```
//! use kelemetry_core::{ObjectKey, ObjectRef, Windowing};
//! use kelemetry_query::{Reader, ViewRequest, assemble};
//! use kelemetry_store::SpanStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let store = SpanStore::create(dir.path()).unwrap();
//! let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
//! let window = Windowing::default().window_of("2024-05-01T12:34:56Z".parse().unwrap());
//! store.write_spans(&[kelemetry_core::span::object_span(&ObjectRef::new(key.clone(), "v1", None), window)]).unwrap();
//!
//! let found = store.find_objects(&"deployments/default/web".parse().unwrap(), 10).unwrap();
//! assert_eq!(found, vec![key.clone()]);
//! let view = assemble(&store, &ViewRequest::new(key)).await.unwrap();
//! assert_eq!(view.root.history.object_spans.len(), 1);
//! # }
//! ```

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::{ObjectKey, ObjectSelector, SpanRecord, TraceId};
use kelemetry_store::{SpanStore, StoreError};

use crate::reader::{ReadError, Reader, TraceParts};

fn backend(what: impl Into<String>) -> impl FnOnce(StoreError) -> ReadError {
    let what = what.into();
    move |err| ReadError::backend(what, err)
}

/// Runs a store read on Tokio's blocking pool: reads are short and local but block on disk I/O.
async fn blocking<T: Send + 'static>(
    what: String,
    job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ReadError> {
    match tokio::task::spawn_blocking(job).await {
        Ok(result) => result.map_err(backend(what)),
        Err(err) => Err(ReadError::backend(what, err)),
    }
}

/// Each question is one read on Tokio's blocking pool, over one snapshot of the store.
#[async_trait]
impl Reader for SpanStore {
    async fn object_traces(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TraceId>, ReadError> {
        let store = self.clone();
        let key = key.clone();
        let what = format!("windows of {key}");
        let windows = blocking(what, move || store.windows_of(&key, from, to)).await?;
        Ok(windows.into_iter().map(|w| w.trace_id).collect())
    }

    async fn trace(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError> {
        let store = self.clone();
        blocking(format!("trace {id}"), move || store.spans_of_trace(id)).await
    }

    async fn find_objects(
        &self,
        selector: &ObjectSelector,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, ReadError> {
        let store = self.clone();
        let selector = selector.clone();
        let what = format!("objects {selector}");
        blocking(what, move || store.find_objects(&selector, limit)).await
    }

    /// One blocking task for all the objects.
    async fn object_traces_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceId>>, ReadError> {
        let store = self.clone();
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
        let store = self.clone();
        let ids = ids.to_vec();
        let what = format!("{} traces", ids.len());
        blocking(what, move || store.spans_of_traces(&ids)).await
    }

    /// One blocking task for all the traces; link spans are decoded only as far as their links
    /// ([`SpanStore::contents_of_traces`]).
    async fn trace_parts(&self, ids: &[TraceId]) -> Result<Vec<TraceParts>, ReadError> {
        let store = self.clone();
        let ids = ids.to_vec();
        let what = format!("{} traces", ids.len());
        let contents = blocking(what, move || store.contents_of_traces(&ids)).await?;
        Ok(contents
            .into_iter()
            .map(|contents| TraceParts::new(contents.spans, contents.links))
            .collect())
    }

    /// Read from the object index: one entry per object, so this is a scan of every object.
    async fn clusters(&self) -> Result<Vec<String>, ReadError> {
        let store = self.clone();
        let objects = blocking("clusters".into(), move || {
            store.find_objects(&ObjectSelector::any(), usize::MAX)
        })
        .await?;
        let mut clusters: Vec<String> = objects.into_iter().map(|key| key.cluster.into()).collect();
        clusters.sort();
        clusters.dedup();
        Ok(clusters)
    }
}
