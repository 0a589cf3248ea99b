//! [`StoreExporter`]: spans into the embedded [`SpanStore`].

use std::path::PathBuf;

use async_trait::async_trait;
use kelemetry_core::{ExportError, Exporter, SpanRecord};
use kelemetry_store::{PreparedBatch, SpanStore, StoreError, StoreOptions, WriteDurability};

/// Writes each batch into a [`SpanStore`] in one transaction. Idempotent: a batch exported twice leaves the store
/// as after the first time.
///
/// redb's writes block on disk I/O, so each write runs on Tokio's blocking pool (`spawn_blocking`) rather than
/// with `block_in_place`: `block_in_place` panics on a current-thread runtime and stalls the other tasks of its
/// worker, while `spawn_blocking` works on any runtime. The batch is encoded first, on the calling task
/// ([`PreparedBatch`]), so only the encoded bytes move to the blocking thread and no span is cloned.
///
/// By default every batch is durable when `export` returns, so a source may checkpoint after it. With
/// [`StoreExporter::with_durability`]`(`[`WriteDurability::Deferred`]`)` batches are durable only at
/// [`Exporter::flush`], which is much faster for bulk loads (a replay that flushes at the end).
#[derive(Debug, Clone)]
pub struct StoreExporter {
    store: SpanStore,
    durability: WriteDurability,
}

impl StoreExporter {
    /// Exports into `store`, durably per batch.
    pub fn new(store: SpanStore) -> Self {
        Self {
            store,
            durability: WriteDurability::Immediate,
        }
    }

    /// Chooses when batches become durable.
    pub fn with_durability(mut self, durability: WriteDurability) -> Self {
        self.durability = durability;
        self
    }

    /// The store written to.
    pub fn store(&self) -> &SpanStore {
        &self.store
    }
}

/// Which store a [`StoreExporter`] writes; [`StoreConfig::build`] opens it. With the feature `config` it is read
/// from configuration files (the `exporters.store` section of `kelemetry run`'s file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The store folder (created if missing). Empty by default: give one.
    pub path: PathBuf,
}

impl StoreConfig {
    /// The store in the folder `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Creates or opens the store, shared with readers (other processes, such as `kelemetry serve`, may read it
    /// while it is written, and see each batch once it is written), and exports into it, durably per batch. A
    /// store whose last writer stopped in the middle of a write is repaired as it opens
    /// ([`SpanStore::repaired_on_open`]).
    pub fn build(&self) -> Result<StoreExporter, StoreError> {
        let options = StoreOptions {
            shared_with_readers: true,
            ..StoreOptions::default()
        };
        SpanStore::create_with(&self.path, &options).map(StoreExporter::new)
    }
}

fn export_error(error: StoreError) -> ExportError {
    if error.is_transient() {
        ExportError::retryable(error)
    } else {
        ExportError::permanent(error)
    }
}

async fn run_blocking(
    store: &SpanStore,
    work: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
) -> Result<(), ExportError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(export_error),
        Err(join) => Err(ExportError::permanent(format!(
            "span store {}: the write task failed: {join}",
            store.path().display()
        ))),
    }
}

#[async_trait]
impl Exporter for StoreExporter {
    fn name(&self) -> &str {
        "store"
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let prepared = PreparedBatch::new(batch);
        let store = self.store.clone();
        let durability = self.durability;
        run_blocking(&self.store, move || store.write(&prepared, durability)).await
    }

    async fn flush(&self) -> Result<(), ExportError> {
        let store = self.store.clone();
        run_blocking(&self.store, move || store.sync()).await
    }
}
