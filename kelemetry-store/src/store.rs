//! [`SpanStore`]: spans and the object index in one redb file.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kelemetry_core::{ObjectKey, ObjectSelector, SpanId, SpanKind, SpanRecord, TraceId};
use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use crate::codec::{decode_span, encode_span};
use crate::error::StoreError;

/// The name of the store file inside the store directory.
pub const STORE_FILE_NAME: &str = "spans.redb";

/// The table layout written and read by this build. A store with another layout is refused, not guessed at.
pub const LAYOUT_VERSION: u32 = 1;

/// `"layout"` → [`LAYOUT_VERSION`].
const META: TableDefinition<'_, &str, u32> = TableDefinition::new("meta");
/// (trace id, span id) → encoded span ([`crate::codec`]).
const SPANS: TableDefinition<'_, (u128, u64), &[u8]> = TableDefinition::new("spans");
/// Every trace id that holds at least one span.
const TRACES: TableDefinition<'_, u128, ()> = TableDefinition::new("traces");
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

struct Inner {
    path: PathBuf,
    /// Replaced only by [`SpanStore::reopen_if_failed`].
    handle: RwLock<Handle>,
    /// The options of a writable store, to open it again after an I/O error.
    options: StoreOptions,
    /// An I/O error was met: redb refuses every later operation on this database until it is closed.
    io_failed: AtomicBool,
    /// How long the last open took when it had to repair the store.
    repaired_on_open: Mutex<Option<Duration>>,
}

/// The embedded span store: one redb file, `spans.redb`, inside a store directory.
///
/// It holds the spans keyed by (trace id, span id), and an index from each object to its windows (filled from
/// object spans) that answers "which traces hold this object between these times" and "which objects are called
/// `deployments/default/nginx`" without a scan. Writes are idempotent: a span written twice (same trace and span
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
                handle: RwLock::new(Handle::ReadOnly(db)),
                options,
                io_failed: AtomicBool::new(false),
                repaired_on_open: Mutex::new(None),
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
                handle: RwLock::new(Handle::Writable(db)),
                options: options.clone(),
                io_failed: AtomicBool::new(false),
                repaired_on_open: Mutex::new(repaired_on_open),
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
            txn.open_table(SPANS)
                .map_err(|e| self.storage("create the spans table", e))?;
            txn.open_table(TRACES)
                .map_err(|e| self.storage("create the traces table", e))?;
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
        let (db, repaired) =
            open_writable(&self.inner.path, &self.inner.options, |builder, path| {
                builder.open(path)
            })?;
        *handle = Handle::Writable(db);
        self.inner.io_failed.store(false, Ordering::Relaxed);
        *self
            .inner
            .repaired_on_open
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = repaired;
        Ok(())
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
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
        let mut txn = db
            .begin_write()
            .map_err(|e| self.storage("begin a write", e))?;
        if durability == WriteDurability::Deferred && !self.inner.options.shared_with_readers {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.storage("defer durability", e))?;
        }
        {
            let mut spans = txn
                .open_table(SPANS)
                .map_err(|e| self.storage("open the spans table", e))?;
            let mut traces = txn
                .open_table(TRACES)
                .map_err(|e| self.storage("open the traces table", e))?;
            let mut last_trace = None;
            for (trace, span, range) in &batch.spans {
                let bytes = batch.bytes.get(range.clone()).unwrap_or_default();
                spans
                    .insert((*trace, *span), bytes)
                    .map_err(|e| self.storage("write a span", e))?;
                // Entries are sorted by trace: insert each trace once per batch.
                if last_trace != Some(*trace) {
                    traces
                        .insert(*trace, ())
                        .map_err(|e| self.storage("write a trace", e))?;
                    last_trace = Some(*trace);
                }
            }
            let mut windows = txn
                .open_table(WINDOWS)
                .map_err(|e| self.storage("open the windows table", e))?;
            let mut objects = txn
                .open_table(OBJECTS)
                .map_err(|e| self.storage("open the objects table", e))?;
            for (key, start, trace, length) in &batch.windows {
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
        }
        txn.commit().map_err(|e| self.storage("commit", e))
    }

    /// Makes every write so far durable (the deferred ones included).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.with_writer(|db| {
            let txn = db
                .begin_write()
                .map_err(|e| self.storage("begin a write", e))?;
            txn.commit().map_err(|e| self.storage("commit", e))
        })
    }

    /// Every span of `trace`, ordered by span id. Empty when the trace is unknown.
    pub fn spans_of_trace(&self, trace: TraceId) -> Result<Vec<SpanRecord>, StoreError> {
        let mut all = self.spans_of_traces(&[trace])?;
        Ok(all.pop().unwrap_or_default())
    }

    /// The spans of each trace of `traces` (in the same order), read from one snapshot in one transaction: what the
    /// read side asks for when it follows the links of a whole level of a tree.
    pub fn spans_of_traces(&self, traces: &[TraceId]) -> Result<Vec<Vec<SpanRecord>>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(SPANS)
            .map_err(|e| self.storage("open the spans table", e))?;
        let mut all = Vec::with_capacity(traces.len());
        for trace in traces {
            let t = trace.to_u128();
            let range = table
                .range((t, 0u64)..=(t, u64::MAX))
                .map_err(|e| self.storage("read spans", e))?;
            let mut out = Vec::new();
            for entry in range {
                let (key, value) = entry.map_err(|e| self.storage("read spans", e))?;
                let (_, span) = key.value();
                out.push(self.decode(t, span, value.value())?);
            }
            all.push(out);
        }
        Ok(all)
    }

    /// One span, if stored.
    pub fn span(&self, trace: TraceId, span: SpanId) -> Result<Option<SpanRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(SPANS)
            .map_err(|e| self.storage("open the spans table", e))?;
        let value = table
            .get((trace.to_u128(), span.to_u64()))
            .map_err(|e| self.storage("read a span", e))?;
        value
            .map(|v| self.decode(trace.to_u128(), span.to_u64(), v.value()))
            .transpose()
    }

    fn decode(&self, trace: u128, span: u64, bytes: &[u8]) -> Result<SpanRecord, StoreError> {
        let (Some(trace_id), Some(span_id)) = (TraceId::from_u128(trace), SpanId::from_u64(span))
        else {
            return Err(StoreError::ZeroId {
                path: self.inner.path.clone(),
                table: "spans",
            });
        };
        decode_span(trace_id, span_id, bytes).map_err(|source| StoreError::Corrupt {
            path: self.inner.path.clone(),
            trace_id,
            span_id,
            source,
        })
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
        if to < from {
            return Ok(vec![Vec::new(); keys.len()]);
        }
        let txn = self.begin_read()?;
        let table = txn
            .open_table(WINDOWS)
            .map_err(|e| self.storage("open the windows table", e))?;
        keys.iter()
            .map(|key| self.windows_in(&table, key, from, to))
            .collect()
    }

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
            let start_secs = key.value().5;
            let (trace, length) = value.value();
            let start = Timestamp::from_second(start_secs).unwrap_or(Timestamp::MIN);
            let end = i64::try_from(length)
                .ok()
                .and_then(|length| start_secs.checked_add(length))
                .and_then(|end| Timestamp::from_second(end).ok())
                .unwrap_or(Timestamp::MAX);
            if end <= from {
                break;
            }
            let trace_id = TraceId::from_u128(trace).ok_or_else(|| StoreError::ZeroId {
                path: self.inner.path.clone(),
                table: "object_windows",
            })?;
            out.push(StoredWindow {
                start,
                end,
                trace_id,
            });
        }
        out.reverse();
        Ok(out)
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
        let txn = self.begin_read()?;
        let table = txn
            .open_table(SPANS)
            .map_err(|e| self.storage("open the spans table", e))?;
        table.len().map_err(|e| self.storage("count spans", e))
    }

    /// How many traces hold at least one span.
    pub fn trace_count(&self) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(TRACES)
            .map_err(|e| self.storage("open the traces table", e))?;
        table.len().map_err(|e| self.storage("count traces", e))
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
        let txn = self.begin_read()?;
        let table = txn
            .open_table(SPANS)
            .map_err(|e| self.storage("open the spans table", e))?;
        let range = table
            .range_owned::<(u128, u64)>(..)
            .map_err(|e| self.storage("read spans", e))?;
        Ok(AllSpans {
            store: self.clone(),
            range,
        })
    }
}

/// Iterator over every stored span, from [`SpanStore::spans`]. Holds its snapshot until dropped.
pub struct AllSpans {
    store: SpanStore,
    range: redb::OwnedRange<(u128, u64), &'static [u8]>,
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
        let entry = self.range.next()?;
        Some(
            entry
                .map_err(|e| self.store.storage("read spans", e))
                .and_then(|(key, value)| {
                    let (trace, span) = key.value();
                    self.store.decode(trace, span, value.value())
                }),
        )
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

/// Whole Unix seconds at or before `t`.
fn floor_secs(t: Timestamp) -> i64 {
    let secs = t.as_second();
    if t.subsec_nanosecond() < 0 {
        secs - 1
    } else {
        secs
    }
}
