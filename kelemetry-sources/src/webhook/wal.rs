//! The webhook's write-ahead log: a batch's request body is on disk before the batch is answered 200, and stays
//! there until the exporters have exported every span made from it.
//!
//! The log is a folder of segment files named by a growing number (`00000000000000000007.wal`), each a header and
//! framed entries ([`format`]), and a `lock` file held while a process uses the folder. One writer thread appends:
//! it takes every entry waiting, writes them, syncs the file once for all of them (group commit), then answers
//! each; creating a segment also syncs the folder. The log is bounded in bytes: an entry that does not fit is
//! refused ([`AppendError::Full`]), and the webhook answers 429. A segment is deleted once it is no longer the one
//! being written and every entry in it was acknowledged ([`WalHandle::ack`]). At start ([`open`]) the segments
//! left by the previous process are checked: a torn tail is reported and cut off, a damaged stretch in the middle is
//! reported and skipped, and their entries are replayed ([`ReplaySegment`]) before new ones.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::WebhookMetrics;

pub(crate) mod format;
pub(crate) mod replay;

/// Default bound of the write-ahead log: 1 GiB on disk.
pub const DEFAULT_WAL_MAX_BYTES: usize = 1024 * 1024 * 1024;
/// Default size after which the write-ahead log starts a new segment: 16 MiB.
pub const DEFAULT_WAL_SEGMENT_BYTES: usize = 16 * 1024 * 1024;

/// The name of the lock file in the log's folder.
const LOCK_FILE: &str = "lock";
/// The extension of segment files.
const SEGMENT_EXTENSION: &str = "wal";
/// The most bytes of entries written and synced together.
const GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Commands waiting for the writer at most.
const COMMANDS: usize = 1024;

/// The webhook's write-ahead log (`wal: {path, maxBytes, segmentBytes}` in the webhook's section of a
/// configuration file): where it is and how large it may grow. See `docs/durability.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct WalConfig {
    /// Whether to use it; `false` keeps accepted batches in memory only (`kelemetry run` turns the log on by
    /// default when it has a store, and this turns it off).
    pub enabled: bool,
    /// The folder of the segment files (created if missing). Empty by default: give one.
    pub path: PathBuf,
    /// Bytes on disk at most, all segments together; a batch that does not fit gets 429.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub max_bytes: usize,
    /// Size after which a new segment is started; segments are deleted whole, so the log holds up to one segment
    /// of batches already exported. At most half of `max_bytes`.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub segment_bytes: usize,
}

impl Default for WalConfig {
    /// Enabled, without a folder, bounded by [`DEFAULT_WAL_MAX_BYTES`] in segments of
    /// [`DEFAULT_WAL_SEGMENT_BYTES`].
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::new(),
            max_bytes: DEFAULT_WAL_MAX_BYTES,
            segment_bytes: DEFAULT_WAL_SEGMENT_BYTES,
        }
    }
}

impl WalConfig {
    /// The defaults, in the folder `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The checks that need no file: a folder, and sizes that leave room for a segment being written while
    /// another waits for its acknowledgements.
    pub fn check(&self) -> Result<(), WalError> {
        if self.path.as_os_str().is_empty() {
            return Err(WalError::NoPath);
        }
        if self.segment_bytes == 0 || self.max_bytes < self.segment_bytes.saturating_mul(2) {
            return Err(WalError::TooSmall {
                max_bytes: self.max_bytes,
                segment_bytes: self.segment_bytes,
            });
        }
        Ok(())
    }
}

/// Why the write-ahead log cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// No folder was given.
    #[error("the write-ahead log needs a folder: give `path`")]
    NoPath,
    /// The bound is not at least two segments.
    #[error(
        "the write-ahead log's maxBytes ({max_bytes}) must be at least twice its segmentBytes ({segment_bytes}), \
         and segmentBytes at least 1"
    )]
    TooSmall {
        /// The bound configured.
        max_bytes: usize,
        /// The segment size configured.
        segment_bytes: usize,
    },
    /// The folder cannot be created, read or written.
    #[error("cannot use the write-ahead log folder {}: {source}", path.display())]
    Folder {
        /// The folder, or the file in it that could not be made.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the folder's lock.
    #[error(
        "the write-ahead log folder {} is in use by another process (it holds {LOCK_FILE}); two processes cannot \
         share one log",
        path.display()
    )]
    InUse {
        /// The folder.
        path: PathBuf,
    },
    /// A segment left by a previous process cannot be read or repaired.
    #[error("cannot read or repair the write-ahead log segment {}: {source}", path.display())]
    Segment {
        /// The segment file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Which segment an entry went to: what acknowledges it.
pub(super) type SegmentId = u64;

/// Why an entry was not written.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum AppendError {
    /// No room: the log holds `used` of its `max` bytes.
    #[error("the write-ahead log is full ({used} of {max} bytes)")]
    Full {
        /// Bytes on disk now.
        used: u64,
        /// The bound.
        max: u64,
    },
    /// Writing or syncing failed.
    #[error("cannot write the write-ahead log segment {}: {source}", path.display())]
    Write {
        /// The segment file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The writer has stopped (the webhook is stopping).
    #[error("the write-ahead log is closed")]
    Closed,
}

/// A segment left by the previous process whose entries are to be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReplaySegment {
    /// Its number.
    pub(super) id: SegmentId,
    /// Its file.
    pub(super) path: PathBuf,
    /// The valid entries found in it when the log was opened.
    pub(super) entries: u64,
}

/// What was left behind when the writer stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Remaining {
    /// Segments kept because some of their entries were not acknowledged.
    pub(super) segments: usize,
    /// Entries not acknowledged.
    pub(super) entries: u64,
}

enum Command {
    Append {
        frame: Vec<u8>,
        answer: oneshot::Sender<Result<SegmentId, AppendError>>,
    },
    Ack(SegmentId),
    Close {
        answer: oneshot::Sender<Remaining>,
    },
}

/// The asynchronous side of the log: appends, acknowledgements, closing.
#[derive(Clone, Debug)]
pub(super) struct WalHandle {
    commands: mpsc::Sender<Command>,
    metrics: Arc<WebhookMetrics>,
    max_bytes: u64,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append { frame, .. } => write!(f, "Append({} bytes)", frame.len()),
            Self::Ack(id) => write!(f, "Ack({id})"),
            Self::Close { .. } => f.write_str("Close"),
        }
    }
}

impl WalHandle {
    /// Whether the log is full now, before anything else is written or deleted: a request need not be read.
    pub(super) fn is_full(&self) -> bool {
        self.metrics.wal_bytes.load(Relaxed) >= self.max_bytes
    }

    /// Whether an entry for `cluster` and a body of `body_len` bytes could ever fit.
    pub(super) fn could_fit(&self, cluster: &str, body_len: usize) -> bool {
        let len = format::encoded_len(cluster, body_len);
        len <= format::MAX_PAYLOAD && (len + format::SEGMENT_HEADER.len()) as u64 <= self.max_bytes
    }

    /// Writes the batch `body` posted for `cluster`; returns once it is synced to disk, with its segment.
    pub(super) async fn append(
        &self,
        cluster: &str,
        body: &[u8],
    ) -> Result<SegmentId, AppendError> {
        let frame = format::encode(cluster, body);
        let (answer, answered) = oneshot::channel();
        self.commands
            .send(Command::Append { frame, answer })
            .await
            .map_err(|_| AppendError::Closed)?;
        answered.await.unwrap_or(Err(AppendError::Closed))
    }

    /// Every span made from one entry of segment `id` was exported.
    pub(super) async fn ack(&self, id: SegmentId) {
        if self.commands.send(Command::Ack(id)).await.is_err() {
            debug!(
                segment = id,
                "write-ahead log closed before an acknowledgement"
            );
        }
    }

    /// Stops the writer: deletes every segment whose entries were all acknowledged (the one being written too)
    /// and says what stays for the next start.
    pub(super) async fn close(&self) -> Remaining {
        let (answer, answered) = oneshot::channel();
        if self.commands.send(Command::Close { answer }).await.is_err() {
            return Remaining::default();
        }
        answered.await.unwrap_or_default()
    }
}

/// A log opened and checked, its writer not started yet.
#[derive(Debug)]
pub(super) struct OpenedWal {
    writer: Writer,
    /// The segments left by the previous process, oldest first.
    pub(super) replay: Vec<ReplaySegment>,
}

impl OpenedWal {
    /// Starts the writer thread; the handle is how the webhook talks to it.
    pub(super) fn start(self) -> Result<(WalHandle, Vec<ReplaySegment>), WalError> {
        let (handle, start, replay) = self.prepare();
        start()?;
        Ok((handle, replay))
    }

    /// The handle, a function starting the writer thread, and the segments to replay: commands sent before the
    /// writer starts wait for it.
    fn prepare(
        self,
    ) -> (
        WalHandle,
        impl FnOnce() -> Result<(), WalError>,
        Vec<ReplaySegment>,
    ) {
        let (commands, receiver) = mpsc::channel(COMMANDS);
        let handle = WalHandle {
            commands,
            metrics: Arc::clone(&self.writer.metrics),
            max_bytes: self.writer.max_bytes,
        };
        let writer = self.writer;
        let start = move || {
            let dir = writer.dir.clone();
            std::thread::Builder::new()
                .name("webhook-wal".to_owned())
                .spawn(move || writer.run(receiver))
                .map(drop)
                .map_err(|source| WalError::Folder { path: dir, source })
        };
        (handle, start, self.replay)
    }
}

/// One segment file known to the writer.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes on disk.
    bytes: u64,
    /// Entries written and not acknowledged yet.
    unacked: u64,
}

/// The segment being written.
#[derive(Debug)]
struct Current {
    id: SegmentId,
    file: File,
}

/// Entries taken for the segment being written, not written yet.
#[derive(Debug, Default)]
struct Group {
    frames: Vec<Vec<u8>>,
    answers: Vec<oneshot::Sender<Result<SegmentId, AppendError>>>,
    bytes: u64,
}

/// The writer thread's state: the only one that writes, syncs and deletes segment files.
#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    folder: File,
    _lock: File,
    max_bytes: u64,
    segment_bytes: u64,
    segments: BTreeMap<SegmentId, Segment>,
    current: Option<Current>,
    next_id: SegmentId,
    used: u64,
    metrics: Arc<WebhookMetrics>,
}

/// Opens the log in `config.path`: creates the folder, takes its lock, checks the segments left behind (reporting
/// and cutting off torn tails, counting damage into `metrics`), and lists them for replay.
pub(super) fn open(
    config: &WalConfig,
    metrics: Arc<WebhookMetrics>,
) -> Result<OpenedWal, WalError> {
    config.check()?;
    let dir = config.path.clone();
    let folder_error = |path: &Path| {
        let path = path.to_owned();
        move |source| WalError::Folder { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(folder_error(&dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(folder_error(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(WalError::InUse { path: dir }),
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(WalError::Folder {
                path: lock_path,
                source,
            });
        }
    }
    let folder = File::open(&dir).map_err(folder_error(&dir))?;
    let mut writer = Writer {
        dir,
        folder,
        _lock: lock,
        max_bytes: config.max_bytes as u64,
        segment_bytes: config.segment_bytes as u64,
        segments: BTreeMap::new(),
        current: None,
        next_id: 0,
        used: 0,
        metrics,
    };
    let replay = writer.recover()?;
    writer.publish_used();
    Ok(OpenedWal { writer, replay })
}

/// The segment files in `dir`, by number.
fn segment_files(dir: &Path) -> Result<Vec<(SegmentId, PathBuf)>, WalError> {
    let folder_error = |source| WalError::Folder {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(folder_error)? {
        let path = entry.map_err(folder_error)?.path();
        if path.extension().is_none_or(|ext| ext != SEGMENT_EXTENSION) {
            continue;
        }
        let id = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse::<SegmentId>().ok());
        match id {
            Some(id) => found.push((id, path)),
            None => warn!(file = %path.display(), "write-ahead log: not a segment name; ignored"),
        }
    }
    found.sort();
    Ok(found)
}

fn segment_name(id: SegmentId) -> String {
    format!("{id:020}.{SEGMENT_EXTENSION}")
}

impl Writer {
    /// Checks the segments left behind; see [`open`].
    fn recover(&mut self) -> Result<Vec<ReplaySegment>, WalError> {
        let mut replay = Vec::new();
        let mut changed = false;
        for (id, path) in segment_files(&self.dir)? {
            self.next_id = self.next_id.max(id.saturating_add(1));
            let segment_error = |source| WalError::Segment {
                path: path.clone(),
                source,
            };
            let bytes = std::fs::read(&path).map_err(segment_error)?;
            let scan = format::scan(&bytes);
            self.report_damage(&path, &scan.damage);
            if scan.entries.is_empty() {
                std::fs::remove_file(&path).map_err(segment_error)?;
                changed = true;
                continue;
            }
            if scan.valid_len < bytes.len() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(segment_error)?;
                file.set_len(scan.valid_len as u64).map_err(segment_error)?;
                file.sync_all().map_err(segment_error)?;
            }
            let entries = scan.entries.len() as u64;
            self.used += scan.valid_len as u64;
            self.segments.insert(
                id,
                Segment {
                    path: path.clone(),
                    bytes: scan.valid_len as u64,
                    unacked: entries,
                },
            );
            replay.push(ReplaySegment { id, path, entries });
        }
        if changed {
            self.folder.sync_all().map_err(|source| WalError::Folder {
                path: self.dir.clone(),
                source,
            })?;
        }
        if !replay.is_empty() {
            let entries: u64 = replay.iter().map(|segment| segment.entries).sum();
            info!(
                segments = replay.len(),
                entries,
                bytes = self.used,
                folder = %self.dir.display(),
                "write-ahead log: replaying what the previous run did not acknowledge"
            );
        }
        Ok(replay)
    }

    fn report_damage(&self, path: &Path, damage: &[format::Damage]) {
        for stretch in damage {
            self.metrics.wal_damaged.fetch_add(1, Relaxed);
            let what = if stretch.tail {
                "torn tail (a write the crash interrupted), cut off"
            } else {
                "damaged entry (checksum or framing does not hold), skipped"
            };
            warn!(
                segment = %path.display(),
                offset = stretch.offset,
                bytes = stretch.bytes,
                "write-ahead log: {what}"
            );
        }
    }

    fn publish_used(&self) {
        self.metrics.wal_bytes.store(self.used, Relaxed);
    }

    /// Takes commands until closed: appends are grouped, written and synced together.
    fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut closing = None;
        while let Some(command) = commands.blocking_recv() {
            let mut group = Group::default();
            closing = self.take(command, &mut group);
            while closing.is_none() && group.bytes < GROUP_BYTES as u64 {
                match commands.try_recv() {
                    Ok(command) => closing = self.take(command, &mut group),
                    Err(_) => break,
                }
            }
            self.flush(&mut group);
            self.publish_used();
            if closing.is_some() {
                break;
            }
        }
        // Appends still waiting are refused: their senders see the channel close.
        drop(commands);
        let remaining = self.close();
        // The files and the folder's lock are released before anyone hears that the log is closed.
        drop(self);
        if let Some(answer) = closing {
            let _ = answer.send(remaining);
        }
    }

    /// Handles one command; returns the answer of a `Close`.
    fn take(&mut self, command: Command, group: &mut Group) -> Option<oneshot::Sender<Remaining>> {
        match command {
            Command::Append { frame, answer } => self.take_append(frame, answer, group),
            Command::Ack(id) => self.ack(id),
            Command::Close { answer } => return Some(answer),
        }
        None
    }

    fn take_append(
        &mut self,
        frame: Vec<u8>,
        answer: oneshot::Sender<Result<SegmentId, AppendError>>,
        group: &mut Group,
    ) {
        let len = frame.len() as u64;
        if !self.make_room(len, group) {
            self.metrics.wal_full.fetch_add(1, Relaxed);
            let _ = answer.send(Err(AppendError::Full {
                used: self.used,
                max: self.max_bytes,
            }));
            return;
        }
        let header = SEGMENT_HEADER_BYTES.len() as u64;
        let in_segment = self
            .current
            .as_ref()
            .and_then(|current| self.segments.get(&current.id))
            .map_or(header, |segment| segment.bytes)
            + group.bytes;
        if in_segment > header && in_segment + len > self.segment_bytes {
            // The segment is full: write what waits for it, then start the next one.
            self.flush(group);
            self.seal();
        }
        self.used += len;
        group.bytes += len;
        group.frames.push(frame);
        group.answers.push(answer);
    }

    /// Whether `len` more bytes (and a segment header) fit; when not, deletes what acknowledged segments it can
    /// (the one being written too, if nothing waits for it) and looks again.
    fn make_room(&mut self, len: u64, group: &Group) -> bool {
        let max_bytes = self.max_bytes;
        let fits = |used: u64| used + len + format::SEGMENT_HEADER.len() as u64 <= max_bytes;
        if fits(self.used) {
            return true;
        }
        let current_done = self
            .current
            .as_ref()
            .and_then(|current| self.segments.get(&current.id))
            .is_some_and(|segment| segment.unacked == 0);
        if group.frames.is_empty() && current_done {
            self.seal();
        }
        self.delete_acknowledged();
        fits(self.used)
    }

    /// Writes and syncs the group's entries, then answers each.
    fn flush(&mut self, group: &mut Group) {
        if group.frames.is_empty() {
            return;
        }
        let group = std::mem::take(group);
        match self.write(&group.frames) {
            Ok(id) => {
                self.metrics.wal_syncs.fetch_add(1, Relaxed);
                // The size is published before anyone hears of the append, so a caller never reads an older one.
                self.publish_used();
                for answer in group.answers {
                    let _ = answer.send(Ok(id));
                }
            }
            Err((path, source)) => {
                error!(segment = %path.display(), %source, entries = group.frames.len(), "write-ahead log: write failed");
                self.used -= group.bytes;
                self.metrics
                    .wal_failed
                    .fetch_add(group.frames.len() as u64, Relaxed);
                // What is on disk after a failed write or sync is unknown: the next entries go to a new segment.
                self.seal();
                self.publish_used();
                let source = Arc::new(source);
                for answer in group.answers {
                    let _ = answer.send(Err(AppendError::Write {
                        path: path.clone(),
                        source: Arc::clone(&source),
                    }));
                }
            }
        }
    }

    /// Appends `frames` to the segment being written (starting one if needed) and syncs it.
    fn write(&mut self, frames: &[Vec<u8>]) -> Result<SegmentId, (PathBuf, std::io::Error)> {
        let id = self.current_segment()?;
        let Some(Current { file, .. }) = self.current.as_mut() else {
            return Err((self.dir.clone(), std::io::ErrorKind::NotFound.into()));
        };
        let Some(segment) = self.segments.get_mut(&id) else {
            return Err((self.dir.clone(), std::io::ErrorKind::NotFound.into()));
        };
        let written = frames
            .iter()
            .try_for_each(|frame| file.write_all(frame))
            .and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Best effort: leave no partial entry behind (the scan at the next start would cut it off anyway).
            let _ = file.set_len(segment.bytes);
            return Err((segment.path.clone(), error));
        }
        segment.bytes += frames.iter().map(|frame| frame.len() as u64).sum::<u64>();
        segment.unacked += frames.len() as u64;
        Ok(id)
    }

    /// The segment being written, created (header written, folder synced) if there is none.
    fn current_segment(&mut self) -> Result<SegmentId, (PathBuf, std::io::Error)> {
        if let Some(current) = &self.current {
            return Ok(current.id);
        }
        let id = self.next_id;
        let path = self.dir.join(segment_name(id));
        let created = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .and_then(|mut file| file.write_all(SEGMENT_HEADER_BYTES).map(|()| file))
            .and_then(|file| file.sync_all().map(|()| file))
            .and_then(|file| self.folder.sync_all().map(|()| file));
        let file = match created {
            Ok(file) => file,
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                return Err((path, error));
            }
        };
        self.next_id += 1;
        let header = SEGMENT_HEADER_BYTES.len() as u64;
        self.used += header;
        self.segments.insert(
            id,
            Segment {
                path,
                bytes: header,
                unacked: 0,
            },
        );
        self.current = Some(Current { id, file });
        Ok(id)
    }

    /// Stops writing to the current segment; deletes it if nothing in it waits for an acknowledgement.
    fn seal(&mut self) {
        if let Some(current) = self.current.take()
            && self
                .segments
                .get(&current.id)
                .is_some_and(|segment| segment.unacked == 0)
        {
            self.delete(current.id);
        }
    }

    fn ack(&mut self, id: SegmentId) {
        let Some(segment) = self.segments.get_mut(&id) else {
            debug!(
                segment = id,
                "write-ahead log: acknowledgement for a segment already gone"
            );
            return;
        };
        segment.unacked = segment.unacked.saturating_sub(1);
        let sealed = self.current.as_ref().is_none_or(|current| current.id != id);
        if segment.unacked == 0 && sealed {
            self.delete(id);
        }
    }

    /// Deletes every sealed segment whose entries were all acknowledged (again, if deleting failed before).
    fn delete_acknowledged(&mut self) {
        let current = self.current.as_ref().map(|current| current.id);
        let done: Vec<SegmentId> = self
            .segments
            .iter()
            .filter(|(id, segment)| segment.unacked == 0 && Some(**id) != current)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.delete(id);
        }
    }

    fn delete(&mut self, id: SegmentId) {
        let Some(segment) = self.segments.get(&id) else {
            return;
        };
        match std::fs::remove_file(&segment.path) {
            Ok(()) => {
                self.used -= segment.bytes.min(self.used);
                self.segments.remove(&id);
                self.publish_used();
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.used -= segment.bytes.min(self.used);
                self.segments.remove(&id);
            }
            Err(error) => {
                warn!(segment = %segment.path.display(), %error, "write-ahead log: cannot delete an acknowledged segment; will retry");
            }
        }
    }

    /// Seals the current segment and deletes every acknowledged one; says what stays.
    fn close(&mut self) -> Remaining {
        self.seal();
        self.delete_acknowledged();
        self.publish_used();
        let remaining = Remaining {
            segments: self.segments.len(),
            entries: self.segments.values().map(|segment| segment.unacked).sum(),
        };
        if remaining.entries > 0 {
            warn!(
                segments = remaining.segments,
                entries = remaining.entries,
                folder = %self.dir.display(),
                "write-ahead log: batches not acknowledged stay on disk and are replayed at the next start"
            );
        }
        remaining
    }
}

/// The segment header, as bytes to write.
const SEGMENT_HEADER_BYTES: &[u8] = format::SEGMENT_HEADER;

/// Reads a segment left behind, for replay: its valid entries (the damage was reported when the log was opened).
pub(super) async fn read_segment(path: &Path) -> std::io::Result<(Vec<u8>, format::Scan)> {
    let bytes = tokio::fs::read(path).await?;
    let scan = format::scan(&bytes);
    Ok((bytes, scan))
}

#[cfg(test)]
mod tests;
