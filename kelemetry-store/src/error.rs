//! [`StoreError`]: what can go wrong with a span store, naming its file.

use std::path::PathBuf;

use kelemetry_core::{SpanId, TraceId};

use crate::codec::DecodeError;

/// A span store operation failed. Every variant names the store file (or directory) involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store directory could not be created or read.
    #[error("span store directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `open` was asked for a store that does not exist.
    #[error("no span store at {path} (create one first)")]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A write was asked of a store opened read-only.
    #[error("span store {path} is open read-only")]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },
    /// The store was not closed cleanly (its writer stopped in the middle of a write: killed, crashed, power lost)
    /// and no writer has it open now. A read-only open cannot repair it; a writable open
    /// ([`crate::SpanStore::open`], [`crate::SpanStore::repair`]) does.
    #[error(
        "span store {path} was not closed cleanly (its writer stopped in the middle of a write) and must be \
         repaired by opening it for writing before it can be read"
    )]
    NeedsRepair {
        /// The store file.
        path: PathBuf,
    },
    /// Another process has the store open in a way that excludes this open: a writer that has it to itself, or
    /// a second writer (a store has at most one writing process).
    #[error(
        "span store {path} is in use by another process (one process may write a store; readers may join it only \
         if it opened the store shared with readers)"
    )]
    InUse {
        /// The store file.
        path: PathBuf,
    },
    /// A writable store closed its database after an I/O error and could not open it again yet; the next write
    /// tries again.
    #[error("span store {path} is closed after an I/O error (the next write opens it again)")]
    Closed {
        /// The store file.
        path: PathBuf,
    },
    /// The full integrity check of [`crate::SpanStore::repair`] found damage it could not repair.
    #[error("span store {path} is damaged beyond repair: {source}")]
    Damaged {
        /// The store file.
        path: PathBuf,
        /// What the check found.
        source: redb::DatabaseError,
    },
    /// The database could not be opened or created (not a redb file, an I/O error, ...).
    #[error("span store {path}: cannot open: {source}")]
    Open {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        source: redb::DatabaseError,
    },
    /// A read or write failed in the storage engine.
    #[error("span store {path}: {operation} failed: {source}")]
    Storage {
        /// The store file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        source: Box<redb::Error>,
    },
    /// The store was written in a layout this build does not read (an older build's, or a newer one's). It is
    /// refused, not converted: replay the recordings into a new store, or read it with the build that wrote it.
    #[error(
        "span store {path} has layout version {found}, but this build reads and writes layout version \
         {supported} only; it is not converted: replay its input into a new store (or read it with the build \
         that wrote it)"
    )]
    UnsupportedLayout {
        /// The store file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A stored span cannot be decoded.
    #[error("span store {path}: span {trace_id}/{span_id} is corrupt: {source}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Trace of the span.
        trace_id: TraceId,
        /// The span.
        span_id: SpanId,
        /// What is wrong.
        source: DecodeError,
    },
    /// A stored chunk of spans (the spans of one trace from `first_span_id` on) cannot be decompressed or
    /// decoded.
    #[error(
        "span store {path}: the chunk of trace {trace_id} from span {first_span_id} is corrupt: {source}"
    )]
    CorruptChunk {
        /// The store file.
        path: PathBuf,
        /// Trace of the chunk.
        trace_id: TraceId,
        /// The first span of the chunk (its key).
        first_span_id: SpanId,
        /// What is wrong.
        source: DecodeError,
    },
    /// A chunk of spans could not be compressed (zstd failed, which only a lack of memory should cause).
    #[error("span store {path}: cannot compress a chunk of spans: {reason}")]
    Compression {
        /// The store file.
        path: PathBuf,
        /// What zstd said.
        reason: String,
    },
    /// A stored view ([`crate::ViewStore`]) cannot be decoded.
    #[error("view store {path}: view {id:016x} is corrupt: {reason}")]
    CorruptView {
        /// The views file.
        path: PathBuf,
        /// The view id.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// A key in the store holds a zero id, which no writer produces.
    #[error("span store {path}: a {table} entry has a zero id")]
    ZeroId {
        /// The store file.
        path: PathBuf,
        /// The table holding it.
        table: &'static str,
    },
}

impl StoreError {
    /// Whether trying the same operation again may succeed: an I/O failure (disk full, a transient device error)
    /// rather than a property of the data or of the store. A writable store opens its database again before the
    /// next write after such a failure, so a retry does not meet redb's "previous I/O error" refusal.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Directory { .. } | Self::Closed { .. }) || self.is_io_failure()
    }

    /// An I/O error of the storage engine, or its refusal to go on after one.
    pub(crate) fn is_io_failure(&self) -> bool {
        match self {
            Self::Storage { source, .. } => {
                matches!(**source, redb::Error::Io(_) | redb::Error::PreviousIo)
            }
            Self::Open {
                source: redb::DatabaseError::Storage(redb::StorageError::Io(_)),
                ..
            } => true,
            _ => false,
        }
    }
}
