//! # kelemetry-store
//!
//! The embedded span store of Kelemetry (redb): written by the exporter, read by the query side. It exists as a
//! crate of its own so that `kelemetry-exporters` (which writes it) and `kelemetry-query` (which reads it) do not
//! depend on each other.
//!
//! - [`SpanStore`]: a store directory holding one redb file, [`STORE_FILE_NAME`]. The spans of a trace are kept
//!   in zstd-compressed chunks ordered by span id (layout version [`LAYOUT_VERSION`]; a store of another layout
//!   is refused); an index maps each object to its windows and traces, filled from object spans; writes are
//!   idempotent and batched in one transaction ([`PreparedBatch`], [`WriteDurability`]); deferred writes (a bulk
//!   load) are held in memory, up to a bound, and written together; a bulk load is compacted when it is made
//!   durable ([`SpanStore::sync`], [`SpanStore::compact`]).
//! - Reads: [`SpanStore::spans_of_trace`], [`SpanStore::windows_of`] ([`StoredWindow`]),
//!   [`SpanStore::find_objects`] (by [`kelemetry_core::ObjectSelector`]), counts, and every span
//!   through [`SpanStore::spans`] ([`AllSpans`]). Reads of many traces come in two parts, so each can run where
//!   it fits: finding the chunks, which may wait for the disk ([`SpanStore::chunks_of_traces`],
//!   [`SpanStore::windows_and_chunks_of_many`]), and decoding them ([`TraceChunks`]).
//! - [`ViewStore`]: the bounded, persistent map from the view ids in the read side's trace ids to the questions
//!   they answered ([`StoredView`], [`ViewLimits`]), in its own file beside the spans ([`SpanStore::views`]).
//! - [`codec`]: the stored, versioned binary form of a span; [`codec::SpanDecoder`] decodes many, sharing the values
//!   that repeat.
//! - Sharing and repair: one process writes a store; with [`StoreOptions::shared_with_readers`] other processes
//!   read it at the same time ([`SpanStore::open_read_only`]) and see its commits. A store whose writer stopped
//!   in the middle of a write is repaired by the next writable open ([`SpanStore::repaired_on_open`] says so) or
//!   by [`SpanStore::repair`]; until then read-only opens fail with [`StoreError::NeedsRepair`].
//!   [`SpanStore::check`] reads and decodes a whole store without changing it.
//! - [`StoreError`]: every error names the store file.
//!
//! ```
//! use kelemetry_core::{ObjectKey, ObjectRef, Windowing};
//! use kelemetry_store::SpanStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SpanStore::create(dir.path()).unwrap();
//! let key = ObjectKey::new("prod", "apps", "deployments", "default", "nginx");
//! let at: jiff::Timestamp = "2024-05-01T12:34:56Z".parse().unwrap();
//! let window = Windowing::default().window_of(at);
//! let span = kelemetry_core::span::object_span(&ObjectRef::new(key.clone(), "v1", None), window);
//! store.write_spans(&[span.clone(), span.clone()]).unwrap();
//! assert_eq!(store.span_count().unwrap(), 1);
//!
//! // Without knowing the cluster or the group:
//! let found = store.find_objects(&"deployments/default/nginx".parse().unwrap(), usize::MAX).unwrap();
//! assert_eq!(found, vec![key.clone()]);
//! let windows = store.windows_of(&key, at, at).unwrap();
//! assert_eq!(windows[0].trace_id, span.trace_id);
//! assert_eq!(store.spans_of_trace(span.trace_id).unwrap(), vec![span]);
//! ```

mod chunk;
pub mod codec;
mod error;
mod store;
mod views;

pub use error::StoreError;
pub use store::{
    AllSpans, CheckReport, LAYOUT_VERSION, PreparedBatch, RepairReport, STORE_FILE_NAME, SpanStore,
    StoreOptions, StoredWindow, TraceChunks, TraceContents, WriteDurability,
};
pub use views::{StoredView, VIEWS_FILE_NAME, ViewLimits, ViewStore};

#[cfg(test)]
mod tests;
