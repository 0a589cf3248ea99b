//! [`SpanStore`]: spans and the object index in one redb file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kelemetry_core::{ObjectKey, ObjectSelector, SpanId, SpanKind, SpanRecord, TraceId};
use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::chunk::{ChunkReader, ChunkWriter, Decoders, piece_lengths, with_thread_reader};
use crate::codec::{DecodeError, DecodedSpan, SpanDecoder, StoredLink, decode_span, encode_span};
use crate::error::StoreError;

/// The name of the store file inside the store directory.
pub const STORE_FILE_NAME: &str = "spans.redb";

/// The table layout written and read by this build. A store with another layout is refused, not guessed at
/// and not converted (docs/store.md#what-is-in-the-file-and-old-stores-layout-version-2). Version 1 kept one
/// entry per span; version 2 keeps the spans of a trace in compressed chunks (see docs/store.md).
pub const LAYOUT_VERSION: u32 = 2;

/// `"layout"` → [`LAYOUT_VERSION`].
const META: TableDefinition<'_, &str, u32> = TableDefinition::new("meta");
/// (trace id, id of the chunk's first span) → a compressed chunk of spans of that trace ([`crate::chunk`]).
const CHUNKS: TableDefinition<'_, (u128, u64), &[u8]> = TableDefinition::new("span_chunks");
/// [`SPANS_COUNT`] and [`TRACES_COUNT`] → how many are stored.
const COUNTS: TableDefinition<'_, &str, u64> = TableDefinition::new("counts");
const SPANS_COUNT: &str = "spans";
const TRACES_COUNT: &str = "traces";
/// Dictionary id → a zstd dictionary trained on the store's first spans.
const DICTIONARIES: TableDefinition<'_, u32, &[u8]> = TableDefinition::new("dictionaries");
/// (cluster, group, resource, namespace, name, window start secs) → (trace id, window length secs).
type WindowKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, i64);
const WINDOWS: TableDefinition<'_, WindowKey<'_>, (u128, u64)> =
    TableDefinition::new("object_windows");
/// (resource, namespace, name, cluster, group): every object with an object span, ordered for lookups that
/// know the resource, namespace and name but not the cluster or the group.
type ObjectIndexKey<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);
const OBJECTS: TableDefinition<'_, ObjectIndexKey<'_>, ()> = TableDefinition::new("objects");

/// Tuning of a [`SpanStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of page cache the store may hold in memory.
    pub cache_bytes: usize,
    /// Let other processes open the store with [`SpanStore::open_read_only`] while this one writes (for example
    /// a `serve` process beside a `run` process). Every write is then durable at once
    /// ([`WriteDurability::Deferred`] acts as `Immediate`), because a deferred commit would be invisible to
    /// them. When off (the default), this process has the store to itself.
    pub shared_with_readers: bool,
}

impl Default for StoreOptions {
    /// 256 MiB of page cache, not shared with other processes.
    fn default() -> Self {
        Self {
            cache_bytes: 256 * 1024 * 1024,
            shared_with_readers: false,
        }
    }
}

/// When a write becomes durable.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum WriteDurability {
    /// On disk when the write returns (one fsync per write).
    #[default]
    Immediate,
    /// Visible to readers at once, on disk at the next [`SpanStore::sync`] or `Immediate` write. A crash may
    /// lose deferred writes, never corrupt the store. For bulk loads such as a replay. Acts as `Immediate` in a
    /// store opened with [`StoreOptions::shared_with_readers`].
    ///
    /// Deferred writes are held in memory (up to 32 MiB of encoded spans) and written to the file together, when
    /// that is full or at the next sync, `Immediate` write or read of this store (which sees them at once), or
    /// when the store's last handle is dropped. A write that fails is not held; what was held before it stays
    /// held and is written by a later write or the sync, which fails while it cannot be written.
    Deferred,
}

/// Spans encoded and indexed, ready to be written by [`SpanStore::write`].
///
/// Preparing does the CPU work (encoding) without touching the store, so an async caller can prepare on its own
/// thread and hand only the write to a blocking thread. Entries are sorted by key, which makes the B-tree
/// inserts local.
#[derive(Clone, Debug, Default)]
pub struct PreparedBatch {
    bytes: Vec<u8>,
    spans: Vec<(u128, u64, Range<usize>)>,
    windows: Vec<(ObjectKey, i64, u128, u64)>,
}

impl PreparedBatch {
    /// Encodes `spans` and extracts the object index entries of their object spans.
    pub fn new(spans: &[SpanRecord]) -> Self {
        let mut batch = Self {
            bytes: Vec::with_capacity(spans.len() * 256),
            spans: Vec::with_capacity(spans.len()),
            windows: Vec::new(),
        };
        for span in spans {
            batch.push(span);
        }
        // A stable sort: of two spans with the same ids in one batch, the later is written last and stays, as it
        // would across two batches, so which copy a store keeps never depends on where a batch was cut.
        batch.spans.sort_by_key(|(trace, span, _)| (*trace, *span));
        batch
    }

    fn push(&mut self, span: &SpanRecord) {
        let begin = self.bytes.len();
        encode_span(span, &mut self.bytes);
        let trace = span.trace_id.to_u128();
        self.spans
            .push((trace, span.span_id.to_u64(), begin..self.bytes.len()));
        if span.kind == SpanKind::Object
            && let Some(key) = span.object_key()
        {
            let start = floor_secs(span.start);
            let length = floor_secs(span.end).saturating_sub(start).max(1);
            self.windows
                .push((key, start, trace, u64::try_from(length).unwrap_or(1)));
        }
    }

    /// Appends the spans and index entries of `other` (this batch is then no longer sorted: see
    /// [`PreparedBatch::sorted_spans`]).
    fn append(&mut self, other: &PreparedBatch) {
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.spans.extend(
            other.spans.iter().map(|(trace, span, range)| {
                (*trace, *span, range.start + offset..range.end + offset)
            }),
        );
        self.windows.extend_from_slice(&other.windows);
    }

    /// Where the batch ends now, to [`PreparedBatch::truncate`] back to.
    fn mark(&self) -> (usize, usize, usize) {
        (self.bytes.len(), self.spans.len(), self.windows.len())
    }

    /// Empties the batch, keeping its buffers for the next spans.
    fn clear(&mut self) {
        self.truncate((0, 0, 0));
    }

    /// Drops everything appended after `mark` was taken.
    fn truncate(&mut self, (bytes, spans, windows): (usize, usize, usize)) {
        self.bytes.truncate(bytes);
        self.spans.truncate(spans);
        self.windows.truncate(windows);
    }

    /// The span entries sorted by key; a stable sort, so of two copies of a span the one appended later stays last.
    fn sorted_spans(&self) -> Vec<(u128, u64, Range<usize>)> {
        let mut spans = self.spans.clone();
        spans.sort_by_key(|(trace, span, _)| (*trace, *span));
        spans
    }

    /// The batch as written, its entries in the order they are (sorted for a batch made by [`PreparedBatch::new`]).
    fn as_write(&self) -> BatchToWrite<'_> {
        BatchToWrite {
            bytes: &self.bytes,
            spans: &self.spans,
            windows: &self.windows,
        }
    }

    /// How many spans the batch holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes of encoded spans in the batch.
    pub fn encoded_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the batch holds no span.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// What one write transaction writes: encoded spans with their entries sorted by key, and index entries.
struct BatchToWrite<'a> {
    bytes: &'a [u8],
    spans: &'a [(u128, u64, Range<usize>)],
    windows: &'a [(ObjectKey, i64, u128, u64)],
}

/// Deferred writes are held in memory and written together once they hold this many bytes of encoded spans (or at
/// the next sync, `Immediate` write or read). Writing a trace's chunk costs a decompression and a compression of
/// the whole chunk, so a span written alone costs as much as the chunk it joins; held together, the spans a bulk
/// load brings to a trace join its chunk in one rewrite, and each B-tree page is copied once per write instead of
/// once per batch (benches/README.md, "Replay into the store"). What is held costs this much memory plus 40 bytes
/// per span (and the index entries of its object spans), twice that while it is written; 32 MiB is as fast as 64 on
/// the corpus of one million events and holds less.
const HELD_BYTES: usize = 32 * 1024 * 1024;

/// The spans of one trace with its link spans read as links, from [`SpanStore::contents_of_traces`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TraceContents {
    /// The object and activity spans, by span id.
    pub spans: Vec<SpanRecord>,
    /// The links of the link spans, by span id.
    pub links: Vec<StoredLink>,
    /// How many link spans lack the fields of a link ([`StoredLink::of_span`]).
    pub unusable_links: usize,
}

/// The stored chunks of some traces, not decoded yet ([`SpanStore::chunks_of_traces`]). Holds the chunks'
/// compressed bytes, and the store's dictionaries of the snapshot they were read from.
pub struct TraceChunks {
    store: SpanStore,
    decoders: Arc<Decoders>,
    /// The chunks, each trace's in a run.
    chunks: Vec<StoredChunk>,
    /// Per trace asked for, in the order asked.
    traces: Vec<TraceSlot>,
    /// The indices of `traces` in trace id order: a trace asked for twice comes after its first.
    order: Vec<usize>,
}

/// A chunk of [`TraceChunks`].
struct StoredChunk {
    /// The id of its first span (the second half of its key).
    first: u64,
    /// Its stored value (a copy: a chunk of a few hundred bytes allocated alone costs less than the copies of
    /// one growing buffer).
    bytes: Box<[u8]>,
}

/// A trace of [`TraceChunks`].
enum TraceSlot {
    /// Its chunks (none when nothing is stored).
    Chunks {
        trace: u128,
        chunks: std::ops::Range<usize>,
    },
    /// The same trace as the one at this index, asked for before.
    SameAs(usize),
}

impl std::fmt::Debug for TraceChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceChunks")
            .field("traces", &self.traces.len())
            .field("chunks", &self.chunks.len())
            .field(
                "bytes",
                &self.chunks.iter().map(|c| c.bytes.len()).sum::<usize>(),
            )
            .finish()
    }
}

impl TraceChunks {
    /// The contents of each trace (in the order asked for), link spans read as links: what
    /// [`SpanStore::contents_of_traces`] answers.
    pub fn contents(&self) -> Result<Vec<TraceContents>, StoreError> {
        self.decode(|reader, decoder, chunk, value, contents| {
            (self.store).decode_contents(reader, &self.decoders, decoder, chunk, value, contents)
        })
    }

    /// The spans of each trace (in the order asked for): what [`SpanStore::spans_of_traces`] answers.
    pub fn spans(&self) -> Result<Vec<Vec<SpanRecord>>, StoreError> {
        self.decode(|reader, decoder, chunk, value, spans| {
            (self.store).decode_chunk(reader, &self.decoders, decoder, chunk, value, spans)
        })
    }

    /// Each trace's chunks decoded by `chunk` into one `T`, in the order asked for; a trace asked for twice is
    /// decoded once.
    fn decode<T: Clone + Default>(
        &self,
        chunk: impl Fn(
            &mut ChunkReader,
            &mut SpanDecoder,
            (u128, u64),
            &[u8],
            &mut T,
        ) -> Result<(), StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut all: Vec<Option<T>> = vec![None; self.traces.len()];
        with_thread_reader(|reader| {
            let mut decoder = SpanDecoder::new();
            for &i in &self.order {
                let (trace, chunks) = match &self.traces[i] {
                    TraceSlot::SameAs(at) => {
                        all[i] = all[*at].clone();
                        continue;
                    }
                    TraceSlot::Chunks { trace, chunks } => (*trace, chunks.clone()),
                };
                let mut out = T::default();
                for stored in &self.chunks[chunks] {
                    chunk(
                        reader,
                        &mut decoder,
                        (trace, stored.first),
                        &stored.bytes,
                        &mut out,
                    )?;
                }
                all[i] = Some(out);
            }
            Ok(all.into_iter().map(Option::unwrap_or_default).collect())
        })
    }
}

/// Entries of other traces a sweep of the chunks table ([`SpanStore::contents_of_traces`]) reads past before it
/// seeks to the next trace it wants instead.
const SWEEP_SKIPS: usize = 8;

/// One window of an object, as the index knows it: when it starts and ends, and the trace that holds it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StoredWindow {
    /// Start of the window (the start of its object span).
    pub start: Timestamp,
    /// End of the window (exclusive).
    pub end: Timestamp,
    /// The trace whose root is the object span of this window.
    pub trace_id: TraceId,
}

enum Handle {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
    /// A writable database closed after an I/O error, not open again yet.
    Closed,
}

/// The dictionary of a writable store, or what it collects to train one.
struct Compression {
    /// The dictionary new chunks are compressed with, once there is one.
    encoder: Option<(u32, Arc<EncoderDictionary<'static>>)>,
    /// A dictionary trained and not committed yet: the next write stores it.
    pending: Option<(u32, Vec<u8>)>,
    /// Encoded spans collected to train the dictionary, end to end, and their lengths.
    samples: Vec<u8>,
    sample_sizes: Vec<usize>,
    /// Train once this many spans are collected; `usize::MAX` after giving up.
    train_at: usize,
}

impl Compression {
    fn new() -> Self {
        Self {
            encoder: None,
            pending: None,
            samples: Vec::new(),
            sample_sizes: Vec::new(),
            train_at: TRAINING_SPANS,
        }
    }

    /// Collects the spans of `batch` as samples, and trains the dictionary once there are enough.
    fn collect(&mut self, batch: &PreparedBatch) {
        if self.encoder.is_some() || self.pending.is_some() || self.train_at == usize::MAX {
            return;
        }
        for (_, _, range) in &batch.spans {
            if self.samples.len() + range.len() > MAX_SAMPLE_BYTES {
                break;
            }
            self.samples
                .extend_from_slice(batch.bytes.get(range.clone()).unwrap_or_default());
            self.sample_sizes.push(range.len());
        }
        let full = self.samples.len() + 4096 > MAX_SAMPLE_BYTES;
        if self.sample_sizes.len() < self.train_at && !full {
            return;
        }
        match zstd::dict::from_continuous(&self.samples, &self.sample_sizes, DICTIONARY_BYTES) {
            Ok(dictionary) => {
                self.pending = Some((1, dictionary));
                self.samples = Vec::new();
                self.sample_sizes = Vec::new();
            }
            // Too few or too uniform samples: try again with twice as many, then give up (chunks are still
            // compressed, without a dictionary).
            Err(_) if !full && self.train_at < MAX_TRAINING_SPANS => self.train_at *= 2,
            Err(_) => {
                self.train_at = usize::MAX;
                self.samples = Vec::new();
                self.sample_sizes = Vec::new();
            }
        }
    }
}

/// The page cache a compaction runs with at least ([`SpanStore::compact`]): it reads every page of the tree several
/// times, and through replay's 64 MiB cache it took twice as long as through this one (8.1 against 3.8 s for a
/// 411 MB store file).
const COMPACTION_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Spans collected before the dictionary is first trained.
const TRAINING_SPANS: usize = 4096;
/// The most spans collected for one training before giving up.
const MAX_TRAINING_SPANS: usize = 65_536;
/// The most bytes of samples held for training.
const MAX_SAMPLE_BYTES: usize = 8 * 1024 * 1024;
/// The size of the trained dictionary.
const DICTIONARY_BYTES: usize = 32 * 1024;

struct Inner {
    path: PathBuf,
    /// The dictionary writes use (and its training).
    compression: Mutex<Compression>,
    /// The decoder dictionaries read so far, by id.
    decoders: RwLock<Arc<Decoders>>,
    /// Replaced only by [`SpanStore::reopen_if_failed`].
    handle: RwLock<Handle>,
    /// The options of a writable store, to open it again after an I/O error.
    options: StoreOptions,
    /// An I/O error was met: redb refuses every later operation on this database until it is closed.
    io_failed: AtomicBool,
    /// Deferred writes were made since the last [`SpanStore::sync`]: a bulk load, which the sync compacts.
    deferred_since_sync: AtomicBool,
    /// Deferred writes not in the file yet. Locked after `compression`, never before it.
    held: Mutex<PreparedBatch>,
    /// Held deferred writes are written once they hold this many bytes of encoded spans ([`HELD_BYTES`]).
    held_bytes: usize,
    /// How long the last open took when it had to repair the store.
    repaired_on_open: Mutex<Option<Duration>>,
    /// Snapshots handed out that outlive the call that took them ([`AllSpans`]): the database is not closed under
    /// them.
    open_snapshots: AtomicUsize,
}

/// One snapshot counted in [`Inner::open_snapshots`] while this lives.
struct CountedSnapshot(Arc<Inner>);

impl CountedSnapshot {
    fn new(inner: &Arc<Inner>) -> Self {
        inner.open_snapshots.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(inner))
    }
}

impl Drop for CountedSnapshot {
    fn drop(&mut self) {
        self.0.open_snapshots.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The embedded span store: one redb file, `spans.redb`, inside a store directory.
///
/// It holds the spans by (trace id, span id), in compressed chunks of the spans of one trace (docs/store.md), and
/// an index from each object to its windows (filled from object spans) that answers "which traces hold this
/// object between these times" and "which objects are called `deployments/default/nginx`" without a scan. Writes are idempotent: a span written twice (same trace and span
/// id) is kept once, so replaying the same input leaves the same store.
///
/// Cloning is cheap and shares the open database. Reads run on a snapshot (redb's MVCC) and proceed while a
/// writer writes, in this process or, through [`SpanStore::open_read_only`], in another one. The methods block on
/// disk I/O; call them from a blocking thread in async code.
#[derive(Clone)]
pub struct SpanStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SpanStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanStore")
            .field("path", &self.inner.path)
            .field("read_only", &matches!(*self.handle(), Handle::ReadOnly(_)))
            .finish()
    }
}

impl Drop for SpanStore {
    /// The last handle of a store writes the deferred writes it still holds in memory into the file, where closing
    /// the database makes them durable, as it does the deferred writes already in the file. (Two last handles
    /// dropped at the same moment on two threads may both leave that to the other: deferred writes are only
    /// promised to be durable after [`SpanStore::sync`].) An error here has no one to go to and is dropped.
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) == 1 {
            let _ = self.write_held();
        }
    }
}

fn builder(options: &StoreOptions) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes);
    if options.shared_with_readers {
        // One writing process, any number of reading processes following its commits.
        builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    }
    builder
}

/// A writable open of `path` made by `open` (create or open), timed, noting whether redb had to repair the file.
fn open_writable(
    path: &Path,
    options: &StoreOptions,
    open: impl FnOnce(&redb::Builder, &Path) -> Result<Database, redb::DatabaseError>,
) -> Result<(Database, Option<Duration>), StoreError> {
    let repairing = Arc::new(AtomicBool::new(false));
    let mut builder = builder(options);
    let seen = Arc::clone(&repairing);
    // redb calls this during a repair only (at least once when the file needs one).
    builder.set_repair_callback(move |_| seen.store(true, Ordering::Relaxed));
    let started = Instant::now();
    let db = open(&builder, path).map_err(|source| open_error(path, source))?;
    let repaired = repairing.load(Ordering::Relaxed).then(|| started.elapsed());
    Ok((db, repaired))
}

/// The [`StoreError`] of a failed open of the store file `path`.
fn open_error(path: &Path, source: redb::DatabaseError) -> StoreError {
    let path = path.to_path_buf();
    match source {
        redb::DatabaseError::RepairAborted => StoreError::NeedsRepair { path },
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path },
        source => StoreError::Open { path, source },
    }
}

/// What [`SpanStore::repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The store file.
    pub path: PathBuf,
    /// The store had not been closed cleanly, and opening it repaired it.
    pub repaired_on_open: bool,
    /// The integrity check (the checksum of every page of the committed trees) found damage and repaired it.
    pub repaired_by_check: bool,
    /// Spans in the store after the repair.
    pub spans: u64,
    /// How long the open, the repair and the check took.
    pub took: Duration,
}

/// What [`SpanStore::check`] found in a store that opened for reading.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The store file.
    pub path: PathBuf,
    /// Spans read and decoded, every one of them.
    pub spans: u64,
    /// Traces holding at least one span.
    pub traces: u64,
    /// Objects in the index.
    pub objects: u64,
    /// How long the check took.
    pub took: Duration,
}

impl SpanStore {
    /// Opens the store in directory `dir`, creating the directory and an empty store if missing.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::create_with(dir, &StoreOptions::default())
    }

    /// [`SpanStore::create`] with explicit options.
    pub fn create_with(dir: impl AsRef<Path>, options: &StoreOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(STORE_FILE_NAME);
        let (db, repaired) = open_writable(&path, options, |builder, path| builder.create(path))?;
        Self::writable(path, db, options, repaired)
    }

    /// Opens the existing store in directory `dir` for reading and writing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// [`SpanStore::open`] with explicit options.
    pub fn open_with(dir: impl AsRef<Path>, options: &StoreOptions) -> Result<Self, StoreError> {
        let path = existing_file(dir.as_ref())?;
        let (db, repaired) = open_writable(&path, options, |builder, path| builder.open(path))?;
        Self::writable(path, db, options, repaired)
    }

    /// Opens the existing store in directory `dir` for reading only. Works while another process writes it if
    /// that process opened it with [`StoreOptions::shared_with_readers`], and then sees each of its commits as it
    /// lands; a writer that has the store to itself makes this fail with [`StoreError::InUse`]. A store whose
    /// writer stopped in the middle of a write, with no writer open now, fails with [`StoreError::NeedsRepair`]:
    /// a read-only open cannot repair it.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = existing_file(dir.as_ref())?;
        let options = StoreOptions {
            shared_with_readers: true,
            ..StoreOptions::default()
        };
        let db = builder(&options)
            .open_read_only(&path)
            .map_err(|source| open_error(&path, source))?;
        let store = Self {
            inner: Arc::new(Inner {
                path,
                compression: Mutex::new(Compression::new()),
                decoders: RwLock::new(Arc::default()),
                handle: RwLock::new(Handle::ReadOnly(db)),
                options,
                io_failed: AtomicBool::new(false),
                deferred_since_sync: AtomicBool::new(false),
                held: Mutex::new(PreparedBatch::default()),
                held_bytes: HELD_BYTES,
                repaired_on_open: Mutex::new(None),
                open_snapshots: AtomicUsize::new(0),
            }),
        };
        let txn = store.begin_read()?;
        let meta = txn
            .open_table(META)
            .map_err(|e| store.storage("open the meta table", e))?;
        let layout = meta
            .get("layout")
            .map_err(|e| store.storage("read the layout version", e))?
            .map(|v| v.value());
        store.check_layout(layout)?;
        Ok(store)
    }

    fn writable(
        path: PathBuf,
        db: Database,
        options: &StoreOptions,
        repaired_on_open: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let store = Self {
            inner: Arc::new(Inner {
                path,
                compression: Mutex::new(Compression::new()),
                decoders: RwLock::new(Arc::default()),
                handle: RwLock::new(Handle::Writable(db)),
                options: options.clone(),
                io_failed: AtomicBool::new(false),
                deferred_since_sync: AtomicBool::new(false),
                held: Mutex::new(PreparedBatch::default()),
                held_bytes: HELD_BYTES,
                repaired_on_open: Mutex::new(repaired_on_open),
                open_snapshots: AtomicUsize::new(0),
            }),
        };
        store.with_writer(|db| store.initialise(db))?;
        Ok(store)
    }

    /// Repairs the store in directory `dir` if it needs it, and checks its integrity: opens it for writing (which
    /// repairs a store whose writer stopped in the middle of a write), verifies the checksum of every page of
    /// its committed trees (repairing what it can), and counts its spans. Reads the whole file.
    ///
    /// Fails with [`StoreError::InUse`] while another process has the store open (a running writer repairs the
    /// store itself when it opens it), and with [`StoreError::Damaged`] when the damage cannot be repaired.
    pub fn repair(dir: impl AsRef<Path>) -> Result<RepairReport, StoreError> {
        let started = Instant::now();
        let path = existing_file(dir.as_ref())?;
        let (mut db, repaired) =
            open_writable(&path, &StoreOptions::default(), |builder, path| {
                builder.open(path)
            })?;
        let clean = db.check_integrity().map_err(|source| StoreError::Damaged {
            path: path.clone(),
            source,
        })?;
        let store = Self::writable(path.clone(), db, &StoreOptions::default(), repaired)?;
        let spans = store.span_count()?;
        Ok(RepairReport {
            path,
            repaired_on_open: repaired.is_some(),
            repaired_by_check: !clean,
            spans,
            took: started.elapsed(),
        })
    }

    /// Checks the store in directory `dir` without changing it: opens it read-only (so it works beside a writer
    /// that shares the store with readers, and fails with [`StoreError::NeedsRepair`] when it needs a repair),
    /// then reads and decodes every span of one snapshot, and counts traces and objects. Reads the whole file.
    pub fn check(dir: impl AsRef<Path>) -> Result<CheckReport, StoreError> {
        let started = Instant::now();
        let store = Self::open_read_only(dir)?;
        let mut spans = 0;
        for span in store.spans()? {
            span?;
            spans += 1;
        }
        Ok(CheckReport {
            path: store.inner.path.clone(),
            spans,
            traces: store.trace_count()?,
            objects: store.object_count()?,
            took: started.elapsed(),
        })
    }

    /// A store that holds at most `bytes` of deferred writes in memory, for tests of what happens beyond the bound.
    #[cfg(test)]
    pub(crate) fn with_held_bytes(mut self, bytes: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.held_bytes = bytes;
        }
        self
    }

    /// Bytes of encoded spans held in memory now (deferred writes not in the file yet).
    #[cfg(test)]
    pub(crate) fn held_now(&self) -> usize {
        self.held().encoded_bytes()
    }

    /// How long this store's open took, when the open had to repair it (its last writer stopped in the middle of
    /// a write); `None` when the store was clean, and for a read-only store.
    pub fn repaired_on_open(&self) -> Option<Duration> {
        *self
            .inner
            .repaired_on_open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the tables of a new store and checks the layout version of an existing one.
    fn initialise(&self, db: &Database) -> Result<(), StoreError> {
        let txn = db
            .begin_write()
            .map_err(|e| self.storage("begin a write", e))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| self.storage("open the meta table", e))?;
            let layout = meta
                .get("layout")
                .map_err(|e| self.storage("read the layout version", e))?
                .map(|v| v.value());
            match layout {
                None => {
                    meta.insert("layout", LAYOUT_VERSION)
                        .map_err(|e| self.storage("write the layout version", e))?;
                }
                found => self.check_layout(found)?,
            }
            txn.open_table(CHUNKS)
                .map_err(|e| self.storage("create the span chunks table", e))?;
            txn.open_table(COUNTS)
                .map_err(|e| self.storage("create the counts table", e))?;
            let dictionaries = txn
                .open_table(DICTIONARIES)
                .map_err(|e| self.storage("create the dictionaries table", e))?;
            let newest = dictionaries
                .last()
                .map_err(|e| self.storage("read the dictionaries", e))?;
            if let Some((id, bytes)) = newest {
                let id = id.value();
                let encoder =
                    EncoderDictionary::copy(bytes.value(), crate::chunk::COMPRESSION_LEVEL);
                self.compression().encoder.replace((id, Arc::new(encoder)));
            }
            txn.open_table(WINDOWS)
                .map_err(|e| self.storage("create the windows table", e))?;
            txn.open_table(OBJECTS)
                .map_err(|e| self.storage("create the objects table", e))?;
        }
        txn.commit().map_err(|e| self.storage("commit", e))
    }

    fn check_layout(&self, found: Option<u32>) -> Result<(), StoreError> {
        match found {
            Some(LAYOUT_VERSION) => Ok(()),
            other => Err(StoreError::UnsupportedLayout {
                path: self.inner.path.clone(),
                found: other.unwrap_or(0),
                supported: LAYOUT_VERSION,
            }),
        }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn storage(&self, operation: &'static str, error: impl Into<redb::Error>) -> StoreError {
        StoreError::Storage {
            path: self.inner.path.clone(),
            operation,
            source: Box::new(error.into()),
        }
    }

    fn handle(&self) -> std::sync::RwLockReadGuard<'_, Handle> {
        self.inner
            .handle
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the writable database, after opening it again if an I/O error closed it; notes the I/O
    /// errors `work` meets.
    fn with_writer<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.reopen_if_failed()?;
        let result = match &*self.handle() {
            Handle::Writable(db) => work(db),
            Handle::ReadOnly(_) => Err(StoreError::ReadOnly {
                path: self.inner.path.clone(),
            }),
            Handle::Closed => Err(StoreError::Closed {
                path: self.inner.path.clone(),
            }),
        };
        if let Err(err) = &result
            && err.is_io_failure()
        {
            self.inner.io_failed.store(true, Ordering::Relaxed);
        }
        result
    }

    /// After an I/O error (a full disk, a failing device), redb refuses every operation on the database until it is
    /// closed. A writable store then closes it and opens the store again with the same options, repairing it if
    /// the failed write left it needing a repair. When that fails too (the disk is still full), the store stays
    /// closed and the next write tries again.
    fn reopen_if_failed(&self) -> Result<(), StoreError> {
        if !self.inner.io_failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut handle = self
            .inner
            .handle
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.inner.io_failed.load(Ordering::Relaxed) || matches!(*handle, Handle::ReadOnly(_)) {
            return Ok(());
        }
        // Closes the failed database first: its file locks go with it.
        *handle = Handle::Closed;
        let (db, repaired) = self.open_existing(&self.inner.options)?;
        *handle = Handle::Writable(db);
        self.inner.io_failed.store(false, Ordering::Relaxed);
        *self
            .inner
            .repaired_on_open
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = repaired;
        Ok(())
    }

    /// This store's file opened for writing once more, with `options` (see [`open_writable`]).
    fn open_existing(
        &self,
        options: &StoreOptions,
    ) -> Result<(Database, Option<Duration>), StoreError> {
        open_writable(&self.inner.path, options, |builder, path| {
            builder.open(path)
        })
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        // Deferred writes are visible to reads at once: what is held in memory is written first.
        self.write_held()?;
        let txn = match &*self.handle() {
            Handle::Writable(db) => db.begin_read(),
            Handle::ReadOnly(db) => db.begin_read(),
            Handle::Closed => {
                return Err(StoreError::Closed {
                    path: self.inner.path.clone(),
                });
            }
        };
        txn.map_err(|e| self.storage("begin a read", e))
    }

    /// Writes `spans` in one transaction, durable when it returns.
    pub fn write_spans(&self, spans: &[SpanRecord]) -> Result<(), StoreError> {
        self.write(&PreparedBatch::new(spans), WriteDurability::Immediate)
    }

    /// Writes a prepared batch in one transaction. A span already stored (same trace and span id) is replaced
    /// by the new copy, so writing the same spans again changes nothing; of two copies in one batch, the later
    /// stays.
    ///
    /// After an I/O error (a full disk), the next write first closes the database and opens it again (see
    /// [`StoreError::is_transient`]): once the disk has room again, writes succeed without restarting the process.
    pub fn write(
        &self,
        batch: &PreparedBatch,
        durability: WriteDurability,
    ) -> Result<(), StoreError> {
        self.with_writer(|db| self.write_to(db, batch, durability))
    }

    fn write_to(
        &self,
        db: &Database,
        batch: &PreparedBatch,
        durability: WriteDurability,
    ) -> Result<(), StoreError> {
        let mut compression = self.compression();
        compression.collect(batch);
        let deferred =
            durability == WriteDurability::Deferred && !self.inner.options.shared_with_readers;
        let mut held = self.held();
        if held.is_empty() && !deferred {
            return self.commit(db, &mut compression, batch.as_write(), durability);
        }
        // Held deferred writes are written before this batch (in the same transaction): of two copies of a span,
        // the later written stays.
        let mark = held.mark();
        held.append(batch);
        if deferred {
            self.inner
                .deferred_since_sync
                .store(true, Ordering::Relaxed);
            if held.encoded_bytes() < self.inner.held_bytes {
                return Ok(());
            }
        }
        match self.commit_held(db, &mut compression, &held, durability) {
            Ok(()) => {
                // The buffers are kept for the next deferred writes (growing them again would cost as much as
                // the copy into them), and freed by the next sync.
                held.clear();
                Ok(())
            }
            Err(err) => {
                // This batch failed and is not kept; what was held before it stays held for the next write.
                held.truncate(mark);
                Err(err)
            }
        }
    }

    /// Writes the held deferred writes, sorted, in one transaction.
    fn commit_held(
        &self,
        db: &Database,
        compression: &mut Compression,
        held: &PreparedBatch,
        durability: WriteDurability,
    ) -> Result<(), StoreError> {
        let spans = held.sorted_spans();
        let batch = BatchToWrite {
            spans: &spans,
            ..held.as_write()
        };
        self.commit(db, compression, batch, durability)
    }

    /// Writes what deferred writes hold in memory into the file (without making it durable), so that a read sees
    /// it. Nothing to do in a store that holds none (a read-only one never does).
    fn write_held(&self) -> Result<(), StoreError> {
        if self.held().is_empty() {
            return Ok(());
        }
        self.with_writer(|db| {
            let mut compression = self.compression();
            let mut held = self.held();
            if held.is_empty() {
                return Ok(());
            }
            self.commit_held(db, &mut compression, &held, WriteDurability::Deferred)?;
            held.clear();
            Ok(())
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, PreparedBatch> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `batch` (its span entries sorted by key) in one transaction.
    fn commit(
        &self,
        db: &Database,
        compression: &mut Compression,
        batch: BatchToWrite<'_>,
        durability: WriteDurability,
    ) -> Result<(), StoreError> {
        let mut txn = db
            .begin_write()
            .map_err(|e| self.storage("begin a write", e))?;
        if durability == WriteDurability::Deferred && !self.inner.options.shared_with_readers {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.storage("defer durability", e))?;
        }
        let committed_dictionary = {
            let mut dictionaries = txn
                .open_table(DICTIONARIES)
                .map_err(|e| self.storage("open the dictionaries table", e))?;
            let new_dictionary = match &compression.pending {
                Some((id, bytes)) => {
                    dictionaries
                        .insert(*id, bytes.as_slice())
                        .map_err(|e| self.storage("write a dictionary", e))?;
                    let encoder = EncoderDictionary::copy(bytes, crate::chunk::COMPRESSION_LEVEL);
                    Some((*id, Arc::new(encoder)))
                }
                None => None,
            };
            let decoders = self.decoders_from(&dictionaries)?;
            let encoder = new_dictionary
                .clone()
                .or_else(|| compression.encoder.clone());
            let mut chunks = txn
                .open_table(CHUNKS)
                .map_err(|e| self.storage("open the span chunks table", e))?;
            let mut merge = ChunkMerge {
                store: self,
                writer: ChunkWriter::new(encoder.as_ref().map(|(id, d)| (*id, &**d))),
                reader: ChunkReader::new(),
                decoders: &decoders,
                added_spans: 0,
                added_traces: 0,
            };
            let mut rest = batch.spans;
            while let Some((trace, _, _)) = rest.first() {
                let len = rest.partition_point(|(t, _, _)| t == trace);
                let (same, others) = rest.split_at(len);
                // Sorted by span id, the later of two copies last: keep the later.
                let mut spans: Vec<(u64, &[u8])> = Vec::with_capacity(same.len());
                for (_, span, range) in same {
                    let bytes = batch.bytes.get(range.clone()).unwrap_or_default();
                    match spans.last_mut() {
                        Some(last) if last.0 == *span => *last = (*span, bytes),
                        _ => spans.push((*span, bytes)),
                    }
                }
                merge.trace(&mut chunks, *trace, &spans)?;
                rest = others;
            }
            let mut counts = txn
                .open_table(COUNTS)
                .map_err(|e| self.storage("open the counts table", e))?;
            for (name, added) in [
                (SPANS_COUNT, merge.added_spans),
                (TRACES_COUNT, merge.added_traces),
            ] {
                if added == 0 {
                    continue;
                }
                let before = counts
                    .get(name)
                    .map_err(|e| self.storage("read a count", e))?
                    .map_or(0, |v| v.value());
                counts
                    .insert(name, before + added)
                    .map_err(|e| self.storage("write a count", e))?;
            }
            let mut windows = txn
                .open_table(WINDOWS)
                .map_err(|e| self.storage("open the windows table", e))?;
            let mut objects = txn
                .open_table(OBJECTS)
                .map_err(|e| self.storage("open the objects table", e))?;
            for (key, start, trace, length) in batch.windows {
                let [cluster, group, resource, namespace, name] = key.fields();
                windows
                    .insert(
                        (cluster, group, resource, namespace, name, *start),
                        (*trace, *length),
                    )
                    .map_err(|e| self.storage("write a window", e))?;
                objects
                    .insert((resource, namespace, name, cluster, group), ())
                    .map_err(|e| self.storage("write an object", e))?;
            }
            new_dictionary
        };
        txn.commit().map_err(|e| self.storage("commit", e))?;
        if let Some(dictionary) = committed_dictionary {
            compression.pending = None;
            compression.encoder = Some(dictionary);
        }
        Ok(())
    }

    fn compression(&self) -> std::sync::MutexGuard<'_, Compression> {
        self.inner
            .compression
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The decoder dictionaries of the store, read from `table` when it holds some this store has not read yet.
    fn decoders_from(
        &self,
        table: &impl ReadableTable<u32, &'static [u8]>,
    ) -> Result<Arc<Decoders>, StoreError> {
        let known = Arc::clone(
            &self
                .inner
                .decoders
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let stored = table
            .len()
            .map_err(|e| self.storage("count the dictionaries", e))?;
        if stored == known.len() as u64 {
            return Ok(known);
        }
        let mut decoders = Decoders::new();
        for entry in table
            .iter()
            .map_err(|e| self.storage("read the dictionaries", e))?
        {
            let (id, bytes) = entry.map_err(|e| self.storage("read the dictionaries", e))?;
            let id = id.value();
            let decoder = match known.get(&id) {
                Some(decoder) => Arc::clone(decoder),
                None => Arc::new(DecoderDictionary::copy(bytes.value())),
            };
            decoders.insert(id, decoder);
        }
        let decoders = Arc::new(decoders);
        *self
            .inner
            .decoders
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&decoders);
        Ok(decoders)
    }

    /// The decoder dictionaries of the snapshot `txn`.
    fn decoders(&self, txn: &ReadTransaction) -> Result<Arc<Decoders>, StoreError> {
        match txn.open_table(DICTIONARIES) {
            Ok(table) => self.decoders_from(&table),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Arc::default()),
            Err(e) => Err(self.storage("open the dictionaries table", e)),
        }
    }

    fn corrupt_chunk(&self, trace: u128, first: u64, source: DecodeError) -> StoreError {
        match (TraceId::from_u128(trace), SpanId::from_u64(first)) {
            (Some(trace_id), Some(first_span_id)) => StoreError::CorruptChunk {
                path: self.inner.path.clone(),
                trace_id,
                first_span_id,
                source,
            },
            _ => StoreError::ZeroId {
                path: self.inner.path.clone(),
                table: "span_chunks",
            },
        }
    }

    /// Decodes every span of the chunk `value` (of `trace`, from span `first` on) into `out`.
    fn decode_chunk(
        &self,
        reader: &mut ChunkReader,
        decoders: &Decoders,
        decoder: &mut SpanDecoder,
        chunk: (u128, u64),
        value: &[u8],
        out: &mut Vec<SpanRecord>,
    ) -> Result<(), StoreError> {
        self.each_span_of_chunk(
            reader,
            decoders,
            chunk,
            value,
            |trace_id, span_id, bytes| {
                let span = decoder
                    .decode_span(trace_id, span_id, bytes)
                    .map_err(|source| self.corrupt_span(trace_id, span_id, source))?;
                out.push(span);
                Ok(())
            },
        )
    }

    /// Opens the chunk `value` (of `trace`, from span `first` on) and hands each of its spans, with its ids, to
    /// `each`.
    fn each_span_of_chunk(
        &self,
        reader: &mut ChunkReader,
        decoders: &Decoders,
        (trace, first): (u128, u64),
        value: &[u8],
        mut each: impl FnMut(TraceId, SpanId, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        reader
            .load(value, decoders)
            .map_err(|source| self.corrupt_chunk(trace, first, source))?;
        for entry in reader.spans() {
            let (span, bytes) = entry.map_err(|source| self.corrupt_chunk(trace, first, source))?;
            let (trace_id, span_id) = self.ids(trace, span)?;
            each(trace_id, span_id, bytes)?;
        }
        Ok(())
    }

    /// A span whose bytes do not decode.
    fn corrupt_span(&self, trace_id: TraceId, span_id: SpanId, source: DecodeError) -> StoreError {
        StoreError::Corrupt {
            path: self.inner.path.clone(),
            trace_id,
            span_id,
            source,
        }
    }

    /// Makes every write so far durable (the deferred ones included). After deferred writes (a bulk load such as
    /// a replay), also compacts the store ([`SpanStore::compact`]): a bulk load leaves much of the file free.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.with_writer(|db| {
            let mut compression = self.compression();
            let mut held = self.held();
            if held.is_empty() {
                let txn = db
                    .begin_write()
                    .map_err(|e| self.storage("begin a write", e))?;
                txn.commit().map_err(|e| self.storage("commit", e))?;
            } else {
                // On failure, what is held stays held: the next sync tries again.
                self.commit_held(db, &mut compression, &held, WriteDurability::Immediate)?;
            }
            // The held buffers are freed until the next deferred writes.
            *held = PreparedBatch::default();
            Ok(())
        })?;
        if self
            .inner
            .deferred_since_sync
            .swap(false, Ordering::Relaxed)
        {
            self.compact()?;
        }
        Ok(())
    }

    /// Gives the free space of the store file back to the file system: moves the pages in use to the front of
    /// the file and truncates it (redb's compaction). Reads and rewrites much of the file, and waits for the
    /// reads of this process to end. Does nothing in a store shared with readers (another process may be
    /// reading it) or while this process holds a read open (an [`AllSpans`]). Returns whether it compacted.
    ///
    /// It runs with a page cache of at least 256 MiB: a store opened with a smaller one
    /// ([`StoreOptions::cache_bytes`]) is closed, opened with that cache for the compaction, and opened with its own
    /// again after it.
    pub fn compact(&self) -> Result<bool, StoreError> {
        if self.inner.options.shared_with_readers {
            return Ok(false);
        }
        self.reopen_if_failed()?;
        let mut handle = self
            .inner
            .handle
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Handle::Writable(db) = &mut *handle else {
            return Ok(false);
        };
        // A snapshot of this process in the way: redb would refuse, and the database must not be closed under it.
        if self.inner.open_snapshots.load(Ordering::SeqCst) > 0 {
            return Ok(false);
        }
        if self.inner.options.cache_bytes >= COMPACTION_CACHE_BYTES {
            let compacted = self.compact_database(db);
            if let Err(err) = &compacted
                && err.is_io_failure()
            {
                self.inner.io_failed.store(true, Ordering::Relaxed);
            }
            return compacted;
        }
        // Through a small cache most of the compaction's reads go to the file again: it runs on the store opened
        // with a larger cache. Until the store is open with its own again, it is closed as after an I/O error, so
        // that should an open fail the next write opens it (and a failed compaction goes with its database).
        *handle = Handle::Closed;
        self.inner.io_failed.store(true, Ordering::Relaxed);
        let larger = StoreOptions {
            cache_bytes: COMPACTION_CACHE_BYTES,
            ..self.inner.options.clone()
        };
        let (mut larger_db, _) = self.open_existing(&larger)?;
        let compacted = self.compact_database(&mut larger_db);
        drop(larger_db);
        let (db, _) = self.open_existing(&self.inner.options)?;
        *handle = Handle::Writable(db);
        self.inner.io_failed.store(false, Ordering::Relaxed);
        compacted
    }

    /// redb's compaction of `db`; `false` when a read or a savepoint is in the way.
    fn compact_database(&self, db: &mut Database) -> Result<bool, StoreError> {
        match db.compact() {
            Ok(_) => Ok(true),
            Err(
                redb::CompactionError::TransactionInProgress
                | redb::CompactionError::EphemeralSavepointExists
                | redb::CompactionError::PersistentSavepointExists,
            ) => Ok(false),
            Err(e) => Err(self.storage("compact", e)),
        }
    }

    /// Every span of `trace`, ordered by span id. Empty when the trace is unknown.
    pub fn spans_of_trace(&self, trace: TraceId) -> Result<Vec<SpanRecord>, StoreError> {
        let mut all = self.spans_of_traces(&[trace])?;
        Ok(all.pop().unwrap_or_default())
    }

    /// The spans of each trace of `traces` (in the same order), read from one snapshot in one transaction: what the
    /// read side asks for when it follows the links of a whole level of a tree. The same as
    /// [`SpanStore::chunks_of_traces`] and then [`TraceChunks::spans`].
    pub fn spans_of_traces(&self, traces: &[TraceId]) -> Result<Vec<Vec<SpanRecord>>, StoreError> {
        self.chunks_of_traces(traces)?.spans()
    }

    /// [`SpanStore::spans_of_traces`] with the link spans read as links: what the read side needs to merge an
    /// object's windows and follow its links. A link span costs the strings of its link only, where
    /// [`SpanStore::spans_of_traces`] copies its ten or more attributes. The same as
    /// [`SpanStore::chunks_of_traces`] and then [`TraceChunks::contents`].
    pub fn contents_of_traces(&self, traces: &[TraceId]) -> Result<Vec<TraceContents>, StoreError> {
        self.chunks_of_traces(traces)?.contents()
    }

    /// The stored chunks of each trace of `traces`, read from one snapshot in one transaction and not decoded yet:
    /// the part of [`SpanStore::contents_of_traces`] that may wait for the disk. [`TraceChunks::contents`] is the
    /// rest, work for the processor only; a caller can do each where it fits (the read on a blocking pool, the
    /// decoding on the thread that goes on to use the spans, so they are made, used and freed by one thread).
    pub fn chunks_of_traces(&self, traces: &[TraceId]) -> Result<TraceChunks, StoreError> {
        let txn = self.begin_read()?;
        self.chunks_of_traces_in(&txn, traces)
    }

    /// [`SpanStore::chunks_of_traces`] in the snapshot of `txn`.
    fn chunks_of_traces_in(
        &self,
        txn: &ReadTransaction,
        traces: &[TraceId],
    ) -> Result<TraceChunks, StoreError> {
        let decoders = self.decoders(txn)?;
        let table = txn
            .open_table(CHUNKS)
            .map_err(|e| self.storage("open the span chunks table", e))?;
        // The traces in id order, each read once, by one cursor that sweeps the table and seeks again only past
        // a run of other traces' chunks: a seek costs as much as reading a few dozen entries.
        let mut order: Vec<usize> = (0..traces.len()).collect();
        order.sort_by_key(|&i| traces[i]);
        let mut out = TraceChunks {
            store: self.clone(),
            decoders,
            chunks: Vec::new(),
            // Each is set as the sweep reaches it; until then, a trace of which nothing is stored.
            traces: traces
                .iter()
                .map(|trace| TraceSlot::Chunks {
                    trace: trace.to_u128(),
                    chunks: 0..0,
                })
                .collect(),
            order,
        };
        let mut sweep = None;
        let mut previous: Option<(TraceId, usize)> = None;
        for &i in &out.order {
            let trace = traces[i];
            if let Some((same, at)) = previous
                && same == trace
            {
                out.traces[i] = TraceSlot::SameAs(at);
                continue;
            }
            let t = trace.to_u128();
            let first_chunk = out.chunks.len();
            let mut skipped = 0;
            loop {
                let range = match &mut sweep {
                    Some(range) => range,
                    None => sweep.insert(
                        table
                            .range((t, 0u64)..)
                            .map_err(|e| self.storage("read spans", e))?
                            .peekable(),
                    ),
                };
                let next_trace = match range.peek() {
                    None => break,
                    Some(Ok((key, _))) => key.value().0,
                    Some(Err(_)) => match range.next() {
                        Some(Err(e)) => return Err(self.storage("read spans", e)),
                        _ => break,
                    },
                };
                if next_trace > t {
                    break;
                }
                if next_trace < t {
                    skipped += 1;
                    if skipped > SWEEP_SKIPS {
                        // Seek: the next range starts at this trace.
                        sweep = None;
                        skipped = 0;
                    } else {
                        range.next();
                    }
                    continue;
                }
                let Some(entry) = range.next() else {
                    break;
                };
                let (key, value) = entry.map_err(|e| self.storage("read spans", e))?;
                out.chunks.push(StoredChunk {
                    first: key.value().1,
                    bytes: value.value().into(),
                });
            }
            out.traces[i] = TraceSlot::Chunks {
                trace: t,
                chunks: first_chunk..out.chunks.len(),
            };
            previous = Some((trace, i));
        }
        Ok(out)
    }

    /// Decodes the chunk `value` (of `trace`, from span `first` on) into `contents`, link spans as links.
    fn decode_contents(
        &self,
        reader: &mut ChunkReader,
        decoders: &Decoders,
        decoder: &mut SpanDecoder,
        chunk: (u128, u64),
        value: &[u8],
        contents: &mut TraceContents,
    ) -> Result<(), StoreError> {
        self.each_span_of_chunk(
            reader,
            decoders,
            chunk,
            value,
            |trace_id, span_id, bytes| {
                let decoded = decoder
                    .decode_span_or_link(trace_id, span_id, bytes)
                    .map_err(|source| self.corrupt_span(trace_id, span_id, source))?;
                match decoded {
                    DecodedSpan::Span(span) => contents.spans.push(span),
                    DecodedSpan::Link(Some(link)) => contents.links.push(link),
                    DecodedSpan::Link(None) => contents.unusable_links += 1,
                }
                Ok(())
            },
        )
    }

    /// One span, if stored.
    pub fn span(&self, trace: TraceId, span: SpanId) -> Result<Option<SpanRecord>, StoreError> {
        let txn = self.begin_read()?;
        let decoders = self.decoders(&txn)?;
        let table = txn
            .open_table(CHUNKS)
            .map_err(|e| self.storage("open the span chunks table", e))?;
        let (t, wanted) = (trace.to_u128(), span.to_u64());
        // The chunk that would hold it: the last one of the trace starting at or before it.
        let Some(entry) = table
            .range((t, 0u64)..=(t, wanted))
            .map_err(|e| self.storage("read a span", e))?
            .next_back()
        else {
            return Ok(None);
        };
        let (key, value) = entry.map_err(|e| self.storage("read a span", e))?;
        let first = key.value().1;
        with_thread_reader(|reader| {
            reader
                .load(value.value(), &decoders)
                .map_err(|source| self.corrupt_chunk(t, first, source))?;
            for entry in reader.spans() {
                let (id, bytes) = entry.map_err(|source| self.corrupt_chunk(t, first, source))?;
                if id == wanted {
                    return self.decode(t, id, bytes).map(Some);
                }
            }
            Ok(None)
        })
    }

    /// The ids of a stored span, which are never zero.
    fn ids(&self, trace: u128, span: u64) -> Result<(TraceId, SpanId), StoreError> {
        match (TraceId::from_u128(trace), SpanId::from_u64(span)) {
            (Some(trace_id), Some(span_id)) => Ok((trace_id, span_id)),
            _ => Err(StoreError::ZeroId {
                path: self.inner.path.clone(),
                table: "spans",
            }),
        }
    }

    fn decode(&self, trace: u128, span: u64, bytes: &[u8]) -> Result<SpanRecord, StoreError> {
        let (trace_id, span_id) = self.ids(trace, span)?;
        decode_span(trace_id, span_id, bytes)
            .map_err(|source| self.corrupt_span(trace_id, span_id, source))
    }

    /// The windows of `key` that overlap `[from, to]` and the trace of each, oldest first.
    ///
    /// A window overlaps when it starts at or before `to` and ends after `from`. The search walks back from `to`
    /// and stops at the first window that ended by `from`, which is exact when the store was written with one
    /// window length (the normal case).
    pub fn windows_of(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let mut all = self.windows_of_many(std::slice::from_ref(key), from, to)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`SpanStore::windows_of`] for each of `keys` (in the same order), from one snapshot in one transaction.
    pub fn windows_of_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<StoredWindow>>, StoreError> {
        let txn = self.begin_read()?;
        self.windows_of_many_in(&txn, keys, from, to)
    }

    /// The windows of each of `keys` in `[from, to]` ([`SpanStore::windows_of_many`]) and the chunks of the traces
    /// of those windows, in the same order ([`SpanStore::chunks_of_traces`]), from one snapshot: what the read
    /// side needs of one level of a tree, in one read.
    pub fn windows_and_chunks_of_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(Vec<Vec<StoredWindow>>, TraceChunks), StoreError> {
        let txn = self.begin_read()?;
        let windows = self.windows_of_many_in(&txn, keys, from, to)?;
        let traces: Vec<TraceId> = windows.iter().flatten().map(|w| w.trace_id).collect();
        let chunks = self.chunks_of_traces_in(&txn, &traces)?;
        Ok((windows, chunks))
    }

    /// [`SpanStore::windows_of_many`] in the snapshot of `txn`.
    fn windows_of_many_in(
        &self,
        txn: &ReadTransaction,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<StoredWindow>>, StoreError> {
        if to < from {
            return Ok(vec![Vec::new(); keys.len()]);
        }
        let table = txn
            .open_table(WINDOWS)
            .map_err(|e| self.storage("open the windows table", e))?;
        // The objects in index order, each read once, by one cursor that sweeps the index and seeks again (walking
        // back from `to`, as `windows_in` does) only past a run of entries it does not want.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        // The key's order is the index's (cluster, group, resource, namespace, name): one byte comparison each.
        order.sort_by_cached_key(|&i| keys[i].ordered_bytes());
        let upper = floor_secs(to);
        let mut all: Vec<Vec<StoredWindow>> = vec![Vec::new(); keys.len()];
        let mut sweep = None;
        let mut previous: Option<usize> = None;
        for &i in &order {
            let key = &keys[i];
            if let Some(at) = previous
                && keys[at] == *key
            {
                all[i] = all[at].clone();
                continue;
            }
            previous = Some(i);
            let fields = key.fields();
            // (start secs, trace, length) of the windows that start by `to`, oldest first.
            let mut found: Vec<(i64, u128, u64)> = Vec::new();
            let mut skipped = 0;
            let mut sought = false;
            loop {
                let range = match &mut sweep {
                    Some(range) => range,
                    None => {
                        let [cluster, group, resource, namespace, name] = fields;
                        sweep.insert(
                            table
                                .range((cluster, group, resource, namespace, name, i64::MIN)..)
                                .map_err(|e| self.storage("read windows", e))?
                                .peekable(),
                        )
                    }
                };
                let (relation, start_secs, trace, length) = match range.peek() {
                    None => break,
                    Some(Ok((entry_key, value))) => {
                        let (cluster, group, resource, namespace, name, start) = entry_key.value();
                        let relation = [cluster, group, resource, namespace, name].cmp(&fields);
                        let (trace, length) = value.value();
                        (relation, start, trace, length)
                    }
                    Some(Err(_)) => match range.next() {
                        Some(Err(e)) => return Err(self.storage("read windows", e)),
                        _ => break,
                    },
                };
                if relation == std::cmp::Ordering::Greater {
                    break;
                }
                let wanted = relation == std::cmp::Ordering::Equal && start_secs <= upper;
                if wanted {
                    found.push((start_secs, trace, length));
                }
                if !wanted || window_end(start_secs, length) <= from {
                    skipped += 1;
                }
                if skipped > SWEEP_SKIPS {
                    sought = true;
                    sweep = None;
                    break;
                }
                range.next();
            }
            all[i] = if sought {
                self.windows_in(&table, key, from, to)?
            } else {
                let mut windows = Vec::new();
                for &(start_secs, trace, length) in found.iter().rev() {
                    let Some(window) = self.window_entry(start_secs, trace, length, from)? else {
                        break;
                    };
                    windows.push(window);
                }
                windows.reverse();
                windows
            };
        }
        Ok(all)
    }

    /// The windows of `key` that overlap `[from, to]`, walking back from `to` in the index.
    fn windows_in(
        &self,
        table: &redb::ReadOnlyTable<WindowKey<'static>, (u128, u64)>,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let [cluster, group, resource, namespace, name] = key.fields();
        let lower = (cluster, group, resource, namespace, name, i64::MIN);
        let upper = (cluster, group, resource, namespace, name, floor_secs(to));
        let range = table
            .range(lower..=upper)
            .map_err(|e| self.storage("read windows", e))?;
        let mut out = Vec::new();
        for entry in range.rev() {
            let (key, value) = entry.map_err(|e| self.storage("read windows", e))?;
            let (trace, length) = value.value();
            let Some(window) = self.window_entry(key.value().5, trace, length, from)? else {
                break;
            };
            out.push(window);
        }
        out.reverse();
        Ok(out)
    }

    /// The window of an index entry; `None` when it ended by `from`.
    fn window_entry(
        &self,
        start_secs: i64,
        trace: u128,
        length: u64,
        from: Timestamp,
    ) -> Result<Option<StoredWindow>, StoreError> {
        let start = Timestamp::from_second(start_secs).unwrap_or(Timestamp::MIN);
        let end = window_end(start_secs, length);
        if end <= from {
            return Ok(None);
        }
        let trace_id = TraceId::from_u128(trace).ok_or_else(|| StoreError::ZeroId {
            path: self.inner.path.clone(),
            table: "object_windows",
        })?;
        Ok(Some(StoredWindow {
            start,
            end,
            trace_id,
        }))
    }

    /// Up to `limit` objects that `selector` selects, in index order (resource, namespace, name, cluster, group).
    /// This is how `show deployments/default/nginx` finds the object without knowing its group or cluster.
    ///
    /// The index is ordered by resource, then namespace, then name: a selector that fixes a prefix of these reads
    /// only that part of the index; otherwise the whole object index is scanned (one entry per object, not per
    /// span).
    pub fn find_objects(
        &self,
        selector: &ObjectSelector,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(OBJECTS)
            .map_err(|e| self.storage("open the objects table", e))?;
        let prefix: Vec<&str> = [&selector.resource, &selector.namespace, &selector.name]
            .into_iter()
            .map_while(|f| f.as_deref())
            .collect();
        let field = |i: usize| prefix.get(i).copied().unwrap_or("");
        let lower = (field(0), field(1), field(2), "", "");
        let range = table
            .range(lower..)
            .map_err(|e| self.storage("read objects", e))?;
        let mut out = Vec::new();
        for entry in range {
            if out.len() >= limit {
                break;
            }
            let (key, _) = entry.map_err(|e| self.storage("read objects", e))?;
            let (resource, namespace, name, cluster, group) = key.value();
            let leading = [resource, namespace, name];
            if prefix.iter().zip(leading).any(|(want, have)| *want != have) {
                break;
            }
            let key = ObjectKey::new(cluster, group, resource, namespace, name);
            if selector.matches(&key) {
                out.push(key);
            }
        }
        Ok(out)
    }

    /// How many spans are stored.
    pub fn span_count(&self) -> Result<u64, StoreError> {
        self.count(SPANS_COUNT)
    }

    /// How many traces hold at least one span.
    pub fn trace_count(&self) -> Result<u64, StoreError> {
        self.count(TRACES_COUNT)
    }

    fn count(&self, name: &str) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(COUNTS)
            .map_err(|e| self.storage("open the counts table", e))?;
        let count = table
            .get(name)
            .map_err(|e| self.storage("read a count", e))?
            .map_or(0, |v| v.value());
        Ok(count)
    }

    /// How many objects have at least one window.
    pub fn object_count(&self) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(OBJECTS)
            .map_err(|e| self.storage("open the objects table", e))?;
        table.len().map_err(|e| self.storage("count objects", e))
    }

    /// Every stored span, ordered by trace id then span id, read from one snapshot taken now.
    pub fn spans(&self) -> Result<AllSpans, StoreError> {
        // Counted before the read begins, so that a compaction either sees it or runs before it.
        let counted = CountedSnapshot::new(&self.inner);
        let txn = self.begin_read()?;
        let decoders = self.decoders(&txn)?;
        let table = txn
            .open_table(CHUNKS)
            .map_err(|e| self.storage("open the span chunks table", e))?;
        let range = table
            .range_owned::<(u128, u64)>(..)
            .map_err(|e| self.storage("read spans", e))?;
        Ok(AllSpans {
            store: self.clone(),
            range,
            decoders,
            reader: ChunkReader::new(),
            decoder: SpanDecoder::new(),
            decoded: Vec::new().into_iter(),
            _counted: counted,
        })
    }
}

/// The merge of a batch's spans into the chunks of their traces, within one write transaction.
struct ChunkMerge<'a> {
    store: &'a SpanStore,
    writer: ChunkWriter<'a>,
    reader: ChunkReader,
    decoders: &'a Decoders,
    added_spans: u64,
    added_traces: u64,
}

impl ChunkMerge<'_> {
    /// Writes `spans` (sorted by span id, no two alike) into the chunks of `trace`: each into the chunk that
    /// covers its id (the last one starting at or before it, else the first), replacing a span with the same id;
    /// a chunk grown beyond the limits is split.
    fn trace(
        &mut self,
        chunks: &mut redb::Table<'_, (u128, u64), &'static [u8]>,
        trace: u128,
        spans: &[(u64, &[u8])],
    ) -> Result<(), StoreError> {
        let store = self.store;
        let firsts = chunks
            .range((trace, 0u64)..=(trace, u64::MAX))
            .map_err(|e| store.storage("read span chunks", e))?
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|e| store.storage("read span chunks", e))?;
        if firsts.is_empty() {
            self.added_traces += 1;
            self.added_spans += spans.len() as u64;
            return self.put(chunks, trace, spans);
        }
        let mut rest = spans;
        while let Some((first_new, _)) = rest.first() {
            let index = firsts
                .partition_point(|first| first <= first_new)
                .saturating_sub(1);
            let covered = match firsts.get(index + 1) {
                Some(next) => rest.partition_point(|(id, _)| id < next),
                None => rest.len(),
            };
            let (into, others) = rest.split_at(covered);
            let first = firsts[index];
            {
                let old = chunks
                    .remove((trace, first))
                    .map_err(|e| store.storage("read a span chunk", e))?;
                let value = old.as_ref().map(|v| v.value()).unwrap_or_default();
                self.reader
                    .load(value, self.decoders)
                    .map_err(|source| store.corrupt_chunk(trace, first, source))?;
            }
            let old: Vec<(u64, &[u8])> = self
                .reader
                .spans()
                .collect::<Result<_, _>>()
                .map_err(|source| store.corrupt_chunk(trace, first, source))?;
            let mut merged = Vec::with_capacity(old.len() + into.len());
            let (mut a, mut b) = (old.iter().peekable(), into.iter().peekable());
            loop {
                match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x.0 < y.0 => merged.extend(a.next()),
                    (Some(x), Some(y)) if x.0 == y.0 => {
                        a.next();
                        merged.extend(b.next());
                    }
                    (_, Some(_)) => {
                        self.added_spans += 1;
                        merged.extend(b.next());
                    }
                    (Some(_), None) => merged.extend(a.next()),
                    (None, None) => break,
                }
            }
            let merged: Vec<(u64, &[u8])> = merged.into_iter().copied().collect();
            Self::put_with(&mut self.writer, store, chunks, trace, &merged)?;
            rest = others;
        }
        Ok(())
    }

    fn put(
        &mut self,
        chunks: &mut redb::Table<'_, (u128, u64), &'static [u8]>,
        trace: u128,
        spans: &[(u64, &[u8])],
    ) -> Result<(), StoreError> {
        Self::put_with(&mut self.writer, self.store, chunks, trace, spans)
    }

    /// Writes `spans` as one chunk, or as several when they exceed the limits.
    fn put_with(
        writer: &mut ChunkWriter<'_>,
        store: &SpanStore,
        chunks: &mut redb::Table<'_, (u128, u64), &'static [u8]>,
        trace: u128,
        spans: &[(u64, &[u8])],
    ) -> Result<(), StoreError> {
        let bytes = spans.iter().map(|(_, b)| b.len() + 10).sum();
        let mut rest = spans;
        for length in piece_lengths(spans.len(), bytes) {
            let (piece, others) = rest.split_at(length.min(rest.len()));
            let Some((first, _)) = piece.first() else {
                break;
            };
            let value =
                writer
                    .encode(piece.iter().copied())
                    .map_err(|reason| StoreError::Compression {
                        path: store.inner.path.clone(),
                        reason,
                    })?;
            chunks
                .insert((trace, *first), value.as_slice())
                .map_err(|e| store.storage("write a span chunk", e))?;
            rest = others;
        }
        Ok(())
    }
}

/// Iterator over every stored span, from [`SpanStore::spans`]. Holds its snapshot until dropped.
pub struct AllSpans {
    store: SpanStore,
    range: redb::OwnedRange<(u128, u64), &'static [u8]>,
    decoders: Arc<Decoders>,
    reader: ChunkReader,
    decoder: SpanDecoder,
    /// The spans of the chunk read last, not returned yet.
    decoded: std::vec::IntoIter<SpanRecord>,
    /// Dropped after `range`, whose snapshot it counts.
    _counted: CountedSnapshot,
}

impl std::fmt::Debug for AllSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllSpans")
            .field("store", &self.store)
            .finish()
    }
}

impl Iterator for AllSpans {
    type Item = Result<SpanRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(span) = self.decoded.next() {
                return Some(Ok(span));
            }
            let entry = self.range.next()?;
            let mut spans = Vec::new();
            let decoded = entry
                .map_err(|e| self.store.storage("read spans", e))
                .and_then(|(key, value)| {
                    self.store.decode_chunk(
                        &mut self.reader,
                        &self.decoders,
                        &mut self.decoder,
                        key.value(),
                        value.value(),
                        &mut spans,
                    )
                });
            if let Err(err) = decoded {
                return Some(Err(err));
            }
            self.decoded = spans.into_iter();
        }
    }
}

fn existing_file(dir: &Path) -> Result<PathBuf, StoreError> {
    let path = dir.join(STORE_FILE_NAME);
    match path.try_exists() {
        Ok(true) => Ok(path),
        Ok(false) => Err(StoreError::Missing { path }),
        Err(source) => Err(StoreError::Directory {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The end of a window that starts at `start_secs` and lasts `length` seconds (the latest time when out of range).
fn window_end(start_secs: i64, length: u64) -> Timestamp {
    i64::try_from(length)
        .ok()
        .and_then(|length| start_secs.checked_add(length))
        .and_then(|end| Timestamp::from_second(end).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Whole Unix seconds at or before `t`.
fn floor_secs(t: Timestamp) -> i64 {
    let secs = t.as_second();
    if t.subsec_nanosecond() < 0 {
        secs - 1
    } else {
        secs
    }
}
