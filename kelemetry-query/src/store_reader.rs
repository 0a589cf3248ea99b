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
use kelemetry_store::{SpanStore, StoreError, TraceChunks};

use crate::reader::{ReadError, Reader, TraceParts, parts_by_object};

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

/// The parts of each trace of `chunks`, decoded on the calling thread.
fn parts(chunks: &TraceChunks) -> Result<Vec<TraceParts>, StoreError> {
    Ok(chunks
        .contents()?
        .into_iter()
        .map(|contents| TraceParts::new(contents.spans, contents.links))
        .collect())
}

/// Each question is one read on Tokio's blocking pool, over one snapshot of the store; spans are decoded on the
/// calling thread.
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

    /// One blocking task reads the chunks of all the traces; they are decoded on the calling thread, as in
    /// [`Reader::trace_parts`].
    async fn traces(&self, ids: &[TraceId]) -> Result<Vec<Vec<SpanRecord>>, ReadError> {
        let store = self.clone();
        let ids = ids.to_vec();
        let what = format!("{} traces", ids.len());
        let chunks = blocking(what.clone(), move || store.chunks_of_traces(&ids)).await?;
        chunks.spans().map_err(backend(what))
    }

    /// One blocking task reads the chunks of all the traces ([`SpanStore::chunks_of_traces`]); they are decoded on
    /// the calling thread, which goes on to use the spans ([`TraceChunks::contents`]: link spans
    /// only as far as their links). Decoded on the blocking pool, the spans were made by one thread and used and
    /// freed by another, on another core when there is one: the 1,000-Pod view took 13.6 ms that way on two
    /// cores against 10.9 ms now (docs/store.md).
    async fn trace_parts(&self, ids: &[TraceId]) -> Result<Vec<TraceParts>, ReadError> {
        let store = self.clone();
        let ids = ids.to_vec();
        let what = format!("{} traces", ids.len());
        let chunks = blocking(what.clone(), move || store.chunks_of_traces(&ids)).await?;
        parts(&chunks).map_err(backend(what))
    }

    /// One blocking task reads the windows of all the objects and the chunks of their traces, from one snapshot
    /// ([`SpanStore::windows_and_chunks_of_many`]); the chunks are decoded on the calling thread, as in
    /// [`Reader::trace_parts`]. One hand-over to the blocking pool and back instead of two.
    async fn object_trace_parts_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceParts>>, ReadError> {
        let store = self.clone();
        let keys = keys.to_vec();
        let what = format!("windows and spans of {} objects", keys.len());
        let (windows, chunks) = blocking(what.clone(), move || {
            store.windows_and_chunks_of_many(&keys, from, to)
        })
        .await?;
        let parts = parts(&chunks).map_err(backend(what))?;
        Ok(parts_by_object(windows.iter().map(Vec::len), parts))
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

#[cfg(test)]
mod tests {
    use kelemetry_core::span::{link_span, object_span};
    use kelemetry_core::{Link, ObjectRef, Windowing};

    use super::*;
    use crate::display::{BaseMode, DisplayMode, Modifier};
    use crate::{ViewRequest, assemble};

    /// A Deployment with three Pods under it.
    fn store(dir: &std::path::Path) -> (SpanStore, ObjectKey) {
        let store = SpanStore::create(dir).expect("a store");
        let window =
            Windowing::default().window_of("2024-05-01T12:34:56Z".parse().expect("a time"));
        let deployment = ObjectRef::new(
            ObjectKey::new("prod", "apps", "deployments", "default", "web"),
            "v1",
            None,
        );
        let mut spans = vec![object_span(&deployment, window)];
        for i in 0..3 {
            let pod = ObjectRef::new(
                ObjectKey::new("prod", "", "pods", "default", format!("web-{i}")),
                "v1",
                None,
            );
            spans.push(object_span(&pod, window));
            let up = Link::parent(deployment.clone()).with_class("children");
            let down = Link::child(pod.clone()).with_class("children");
            spans.push(link_span(&pod, window, &up));
            spans.push(link_span(&deployment, window, &down));
        }
        store.write_spans(&spans).expect("written");
        (store, deployment.key)
    }

    /// The objects of the full tree of `key`, and how many spans its traces hold.
    async fn objects(store: SpanStore, key: ObjectKey) -> (Vec<ObjectKey>, usize) {
        let mut request = ViewRequest::new(key.clone());
        request.selector = DisplayMode {
            base: BaseMode::Tracing,
            modifier: Some(Modifier::FullTree),
        }
        .selector();
        let view = assemble(&store, &request).await.expect("a view");
        let mut keys: Vec<ObjectKey> = view
            .root
            .walk()
            .into_iter()
            .map(|(_, node)| node.history.key.clone())
            .collect();
        keys.sort();
        let traces = store
            .object_traces(&key, Timestamp::MIN, Timestamp::MAX)
            .await
            .expect("windows");
        let spans = store.traces(&traces).await.expect("spans");
        (keys, spans.iter().map(Vec::len).sum())
    }

    #[test]
    fn the_store_answers_on_every_kind_of_runtime_and_thread() {
        let dir = tempfile::tempdir().expect("a folder");
        let (store, key) = store(dir.path());
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let expected = current.block_on(objects(store.clone(), key.clone()));
        assert_eq!(expected.0.len(), 4, "{expected:?}");
        assert_eq!(
            expected.1, 4,
            "the Deployment's object span and its three links"
        );
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a runtime");
        // On the thread that blocks on the runtime, on a worker, in a set of local tasks, and in a current-thread
        // runtime on one of its blocking threads.
        assert_eq!(
            multi.block_on(objects(store.clone(), key.clone())),
            expected
        );
        let spawned = multi.spawn(objects(store.clone(), key.clone()));
        assert_eq!(multi.block_on(spawned).expect("joined"), expected);
        let local = tokio::task::LocalSet::new();
        assert_eq!(
            multi.block_on(local.run_until(objects(store.clone(), key.clone()))),
            expected
        );
        let nested = multi.spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime")
                .block_on(objects(store, key))
        });
        assert_eq!(multi.block_on(nested).expect("joined"), expected);
    }
}
