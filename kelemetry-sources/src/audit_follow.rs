//! [`AuditLogFollower`]: tails the apiserver's audit log file (`--audit-log-path`) through rotations, and resumes
//! where it stopped.
//!
//! The log is JSON lines, one audit `Event` per line (an `EventList` on one line is taken too). The follower reads
//! what is there, then polls for more:
//!
//! - **rotation by rename** (the apiserver's own `--audit-log-maxsize` rotation, or logrotate without
//!   `copytruncate`): when the path names a new file, the old one is read to its end first (the apiserver may
//!   have written its last lines after our last read), then the new one from its start;
//! - **copytruncate**: when the file becomes shorter than what was read, it was truncated; reading starts again at
//!   its beginning;
//! - a line is only handled once its `\n` arrived; a line longer than the limit is rejected (with `file:line`)
//!   and skipped.
//!
//! With a [`CheckpointFile`], the follower stores the inode of the file being read and the offset just past the
//! last line whose spans every exporter acknowledged (looked at every `checkpoint_interval` and on rotation; on
//! shutdown it waits, within the pipeline's grace period, for what is still in the pipeline). It sends each
//! stretch of lines with a [`kelemetry_core::Delivery`]; a stretch whose spans were lost holds the checkpoint
//! before it, so those lines are read again at the next start.
//! On start it resumes there: in the same file if the path still names that inode (from the beginning if the file
//! is now shorter: it was truncated), else in the rotated file that still has that inode in the same folder (read
//! to its end, then the current file from its start). A line is handled at least once: a crash between exporting
//! and storing the checkpoint re-reads a few lines, whose activities have the same ids, so nothing is duplicated in
//! the traces. Without a checkpoint the follower starts at [`StartPosition`] (default: the beginning).
//!
//! Limitation, as with any copytruncate reader: lines written between logrotate's copy and its truncation, and a
//! file truncated and rewritten past our offset between two polls, cannot be told apart from data already read.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kelemetry_core::audit::AuditMapping;
use kelemetry_core::{ActivitySink, CancellationToken, Delivery, Receipt, Source, SourceError};
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tracing::{debug, error, info, warn};

use crate::DEFAULT_DOCUMENT_LIMIT;
use crate::audit_intake::{AuditIntake, RecordRejection, RejectReason};
use crate::checkpoint::{CheckpointFile, FileCheckpoint};
use crate::outlet::{Flow, Outlet};
use crate::report::ReadCounters;

/// Where to start when there is no checkpoint (`beginning` or `end` in a configuration file).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
pub enum StartPosition {
    /// Read the whole file.
    #[default]
    Beginning,
    /// Only what is written from now on.
    End,
}

/// What an [`AuditLogFollower`] follows and how; [`AuditLogConfig::build`] makes the follower.
///
/// [`Default`] holds the defaults (its `path` is empty: give one). With the feature `config` it is read from
/// configuration files (the `sources.auditLog` section of `kelemetry run`'s file): camelCase keys, unknown keys
/// refused, durations like `200ms`, sizes like `16MiB`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct AuditLogConfig {
    /// The audit log (the apiserver's `--audit-log-path`).
    pub path: PathBuf,
    /// Where to store progress and resume from; without it, every start begins at [`AuditLogConfig::start`].
    pub checkpoint: Option<PathBuf>,
    /// Where to start without a checkpoint.
    pub start: StartPosition,
    /// How often to look for new lines and rotations.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub poll_interval: Duration,
    /// Lines longer than this many bytes are rejected.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub line_limit: usize,
}

impl Default for AuditLogConfig {
    /// No path yet, no checkpoint, from the beginning, polling every 200 ms, lines of at most
    /// [`DEFAULT_DOCUMENT_LIMIT`] bytes.
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            checkpoint: None,
            start: StartPosition::default(),
            poll_interval: Duration::from_millis(200),
            line_limit: DEFAULT_DOCUMENT_LIMIT,
        }
    }
}

impl AuditLogConfig {
    /// Follows `path` with the defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The follower of [`AuditLogConfig::path`], whose events come from `cluster`.
    pub fn build(&self, cluster: impl Into<String>) -> AuditLogFollower {
        let follower = AuditLogFollower::new(&self.path, cluster)
            .with_start(self.start)
            .with_poll_interval(self.poll_interval)
            .with_line_limit(self.line_limit);
        match &self.checkpoint {
            Some(checkpoint) => follower.with_checkpoint(CheckpointFile::new(checkpoint)),
            None => follower,
        }
    }
}

/// Tails an apiserver audit log. See the module documentation.
#[derive(Debug)]
pub struct AuditLogFollower {
    path: PathBuf,
    cluster: String,
    intake: AuditIntake,
    checkpoint: Option<CheckpointFile>,
    start: StartPosition,
    poll_interval: Duration,
    checkpoint_interval: Duration,
    line_limit: usize,
    counters: Arc<ReadCounters>,
}

impl AuditLogFollower {
    /// Follows `path`, whose events come from `cluster`, with the defaults of [`AuditLogConfig`]: no checkpoint,
    /// from the beginning, polling every 200 ms.
    pub fn new(path: impl Into<PathBuf>, cluster: impl Into<String>) -> Self {
        let defaults = AuditLogConfig::default();
        Self {
            path: path.into(),
            cluster: cluster.into(),
            intake: AuditIntake::default(),
            checkpoint: None,
            start: defaults.start,
            poll_interval: defaults.poll_interval,
            checkpoint_interval: Duration::from_secs(1),
            line_limit: defaults.line_limit,
            counters: Arc::default(),
        }
    }

    /// Stores progress in, and resumes from, this checkpoint.
    pub fn with_checkpoint(mut self, checkpoint: CheckpointFile) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// Where to start without a checkpoint.
    pub fn with_start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// How often to look for new lines and rotations.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How often to store the checkpoint while reading (it is also stored on rotation and shutdown).
    pub fn with_checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Uses this mapping of audit events to activities.
    pub fn with_mapping(mut self, mapping: AuditMapping) -> Self {
        self.intake = AuditIntake::new(mapping);
        self
    }

    /// Rejects lines longer than `bytes`.
    pub fn with_line_limit(mut self, bytes: usize) -> Self {
        self.line_limit = bytes.max(1);
        self
    }

    /// The counters this source updates while it runs.
    pub fn counters(&self) -> Arc<ReadCounters> {
        Arc::clone(&self.counters)
    }
}

/// One file being read.
struct Reading {
    reader: BufReader<tokio::fs::File>,
    path: PathBuf,
    inode: u64,
    /// Offset just past the last complete line handled.
    committed: u64,
    /// Lines handled.
    line: u64,
    /// The line being assembled (bytes after `committed`), at most the line limit.
    pending: Vec<u8>,
    /// Bytes of the line being assembled read so far (more than `pending` holds when it is too long).
    pending_bytes: u64,
    /// Discard everything up to the next line end (started in the middle of a line).
    skip_partial: bool,
    outlet: Outlet,
}

impl Reading {
    fn read_offset(&self) -> u64 {
        self.committed + self.pending_bytes
    }

    fn checkpoint(&self, followed: &Path) -> FileCheckpoint {
        FileCheckpoint {
            path: followed.to_owned(),
            inode: self.inode,
            offset: self.committed,
            line: self.line,
        }
    }
}

/// How many stretches of the file may wait for their export at once; past it, the current stretch grows.
const MAX_STRETCHES: usize = 256;

/// What of the followed file is in the pipeline, and the checkpoint it may store: stretches of lines, oldest first,
/// each with the position just past it. A stretch's position becomes the checkpoint once the spans of its lines,
/// and of every stretch before it, were exported; a stretch that was not exported stops the checkpoint there, so
/// its lines are read again at the next start.
struct Progress {
    file: Option<CheckpointFile>,
    /// The receipt of the stretch being read.
    current: Option<Receipt>,
    waiting: VecDeque<(FileCheckpoint, Receipt)>,
    stored: Option<FileCheckpoint>,
    /// A stretch was lost: the checkpoint stays before it until the next start.
    held: bool,
}

impl Progress {
    fn new(file: Option<CheckpointFile>) -> Self {
        Self {
            file,
            current: None,
            waiting: VecDeque::new(),
            stored: None,
            held: false,
        }
    }

    /// Ends the stretch being read at `reading`'s position and starts the next; stores what was exported since.
    async fn mark(&mut self, reading: &mut Reading, followed: &Path) {
        if self.file.is_none() {
            return;
        }
        if self.waiting.len() < MAX_STRETCHES || self.current.is_none() {
            let (delivery, receipt) = Delivery::new();
            drop(reading.outlet.track(Some(delivery)));
            if let Some(ended) = self.current.replace(receipt) {
                self.waiting
                    .push_back((reading.checkpoint(followed), ended));
            }
        }
        self.store_exported().await;
    }

    /// Stores the position past the newest stretch exported with all before it.
    async fn store_exported(&mut self) {
        let mut exported = None;
        while let Some((_, receipt)) = self.waiting.front_mut() {
            match receipt.try_settled() {
                None => break,
                Some(Ok(())) => exported = self.waiting.pop_front().map(|(at, _)| at),
                Some(Err(lost)) => {
                    self.waiting.clear();
                    if !self.held {
                        error!(%lost, "audit log lines were not exported; the checkpoint stays before them, so they are read again at the next start");
                    }
                    self.held = true;
                    break;
                }
            }
        }
        if let Some(checkpoint) = exported.filter(|_| !self.held) {
            self.store(checkpoint).await;
        }
    }

    async fn store(&mut self, checkpoint: FileCheckpoint) {
        let Some(file) = &self.file else {
            return;
        };
        if self.stored.as_ref() == Some(&checkpoint) {
            return;
        }
        match file.store(&checkpoint).await {
            Ok(()) => self.stored = Some(checkpoint),
            Err(err) => warn!(%err, "could not store the audit log checkpoint"),
        }
    }

    /// At the end of a run: ends the last stretch, waits until the pipeline exported (or lost) every stretch,
    /// and stores the checkpoint past what was exported.
    async fn finish(&mut self, reading: &mut Reading, followed: &Path) {
        if self.file.is_none() {
            return;
        }
        drop(reading.outlet.track(None));
        if let Some(ended) = self.current.take() {
            self.waiting
                .push_back((reading.checkpoint(followed), ended));
        }
        while let Some((at, receipt)) = self.waiting.pop_front() {
            match receipt.await {
                Ok(()) if !self.held => self.store(at).await,
                Ok(()) => {}
                Err(lost) => {
                    error!(%lost, "audit log lines were not exported; the checkpoint stays before them");
                    self.held = true;
                }
            }
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> SourceError + '_ {
    move |error| SourceError::io(path.display().to_string(), error)
}

/// The file in `dir` whose inode is `inode`, if any (a rotated log keeps its inode when renamed).
async fn find_by_inode(dir: &Path, inode: u64) -> Option<PathBuf> {
    let mut entries = tokio::fs::read_dir(dir).await.ok()?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        if let Ok(meta) = entry.metadata().await
            && meta.is_file()
            && meta.ino() == inode
        {
            return Some(entry.path());
        }
    }
    None
}

impl AuditLogFollower {
    fn outlet(
        &self,
        path: &Path,
        sink: &Arc<dyn ActivitySink>,
        shutdown: &CancellationToken,
    ) -> Outlet {
        Outlet::new(
            Arc::clone(sink),
            Arc::clone(&self.counters),
            path.display().to_string(),
            shutdown.clone(),
        )
    }

    /// Opens `path` at `offset`.
    async fn open_at(
        &self,
        path: &Path,
        offset: u64,
        line: u64,
        sink: &Arc<dyn ActivitySink>,
        shutdown: &CancellationToken,
    ) -> Result<Reading, SourceError> {
        let mut file = tokio::fs::File::open(path).await.map_err(io_error(path))?;
        let inode = file.metadata().await.map_err(io_error(path))?.ino();
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_error(path))?;
        Ok(Reading {
            reader: BufReader::with_capacity(64 * 1024, file),
            path: path.to_owned(),
            inode,
            committed: offset,
            line,
            pending: Vec::new(),
            pending_bytes: 0,
            skip_partial: false,
            outlet: self.outlet(path, sink, shutdown),
        })
    }

    /// Waits until the followed file exists; `None` if shutdown comes first.
    async fn wait_for_file(&self, shutdown: &CancellationToken) -> Option<std::fs::Metadata> {
        let mut logged = false;
        loop {
            if let Ok(meta) = tokio::fs::metadata(&self.path).await {
                return Some(meta);
            }
            if !logged {
                info!(path = %self.path.display(), "audit log does not exist yet; waiting for it");
                logged = true;
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// The first file to read: from the checkpoint, else from the start position. The second value is the
    /// current file to switch to once a rotated file found through the checkpoint is read to its end.
    async fn open_first(
        &self,
        sink: &Arc<dyn ActivitySink>,
        shutdown: &CancellationToken,
    ) -> Result<Option<(Reading, bool)>, SourceError> {
        let stored = match &self.checkpoint {
            Some(file) => file
                .load()
                .await
                .map_err(|err| SourceError::other(self.path.display().to_string(), err))?,
            None => None,
        };
        let Some(current) = self.wait_for_file(shutdown).await else {
            return Ok(None);
        };
        if let Some(stored) = stored {
            if stored.path == self.path {
                return self
                    .open_at_checkpoint(&stored, &current, sink, shutdown)
                    .await
                    .map(Some);
            }
            warn!(
                checkpoint = %stored.path.display(),
                path = %self.path.display(),
                "the checkpoint is of another file; ignoring it"
            );
        }
        let offset = match self.start {
            StartPosition::Beginning => 0,
            StartPosition::End => current.len(),
        };
        let mut reading = self.open_at(&self.path, offset, 0, sink, shutdown).await?;
        reading.skip_partial = offset > 0 && !self.ends_a_line(offset).await?;
        Ok(Some((reading, false)))
    }

    /// Where the checkpoint `stored` of the followed path says to resume, `current` being the path's file now:
    /// in the same file (from its start if it was truncated), else in the rotated file that still has the inode
    /// (then `true`), else in the current file from its start.
    async fn open_at_checkpoint(
        &self,
        stored: &FileCheckpoint,
        current: &std::fs::Metadata,
        sink: &Arc<dyn ActivitySink>,
        shutdown: &CancellationToken,
    ) -> Result<(Reading, bool), SourceError> {
        if stored.inode == current.ino() {
            let (offset, line) = if current.len() >= stored.offset {
                (stored.offset, stored.line)
            } else {
                info!(path = %self.path.display(), "the audit log was truncated since the checkpoint");
                (0, 0)
            };
            let reading = self
                .open_at(&self.path, offset, line, sink, shutdown)
                .await?;
            return Ok((reading, false));
        }
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Some(rotated) = find_by_inode(dir, stored.inode).await {
            info!(rotated = %rotated.display(), "resuming in the rotated audit log");
            let reading = self
                .open_at(&rotated, stored.offset, stored.line, sink, shutdown)
                .await?;
            return Ok((reading, true));
        }
        warn!(
            path = %self.path.display(),
            "the file of the checkpoint is gone (rotated away); reading the current file from its start"
        );
        let reading = self.open_at(&self.path, 0, 0, sink, shutdown).await?;
        Ok((reading, false))
    }

    /// Whether the byte before `offset` (at least 1) in the followed file is a line end.
    async fn ends_a_line(&self, offset: u64) -> Result<bool, SourceError> {
        use tokio::io::AsyncReadExt;
        let mut probe = tokio::fs::File::open(&self.path)
            .await
            .map_err(io_error(&self.path))?;
        probe
            .seek(std::io::SeekFrom::Start(offset - 1))
            .await
            .map_err(io_error(&self.path))?;
        let mut last = [0u8; 1];
        probe
            .read_exact(&mut last)
            .await
            .map_err(io_error(&self.path))?;
        Ok(last[0] == b'\n')
    }

    /// Reads and handles complete lines until the end of what is written.
    async fn read_available(
        &self,
        reading: &mut Reading,
        last_store: &mut Instant,
        progress: &mut Progress,
    ) -> Result<Flow, SourceError> {
        loop {
            let chunk = reading
                .reader
                .fill_buf()
                .await
                .map_err(io_error(&reading.path))?;
            if chunk.is_empty() {
                return Ok(Flow::Continue);
            }
            let (content, used, complete) = match memchr::memchr(b'\n', chunk) {
                Some(end) => (&chunk[..end], end + 1, true),
                None => (chunk, chunk.len(), false),
            };
            if !reading.skip_partial {
                let room = self.line_limit.saturating_sub(reading.pending.len());
                reading
                    .pending
                    .extend_from_slice(&content[..content.len().min(room)]);
            }
            reading.pending_bytes += used as u64;
            reading.reader.consume(used);
            if !complete {
                continue;
            }
            let bytes = reading.pending_bytes;
            let number = reading.line + 1;
            if reading.skip_partial {
                reading.skip_partial = false;
            } else if self.handle_line(reading, number, bytes).await == Flow::Stop {
                return Ok(Flow::Stop);
            }
            reading.committed += bytes;
            reading.line = number;
            reading.pending.clear();
            reading.pending_bytes = 0;
            if last_store.elapsed() >= self.checkpoint_interval {
                progress.mark(reading, &self.path).await;
                *last_store = Instant::now();
            }
        }
    }

    async fn handle_line(&self, reading: &mut Reading, number: u64, bytes: u64) -> Flow {
        reading.outlet.consumed(bytes);
        let too_long = bytes > self.line_limit as u64 + 2;
        let line = reading.pending.trim_ascii();
        if line.is_empty() && !too_long {
            return Flow::Continue;
        }
        let taken = if too_long {
            Err(RecordRejection::too_large(bytes, self.line_limit))
        } else {
            self.intake.take(line, &self.cluster)
        };
        match taken {
            Ok(items) => reading.outlet.deliver_audit(number, items).await,
            Err(rejection) => {
                reading.outlet.found();
                reading.outlet.reject_record(number, rejection);
                Flow::Continue
            }
        }
    }
}

#[async_trait]
impl Source for AuditLogFollower {
    fn name(&self) -> &str {
        "audit-log-follower"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let Some((mut reading, mut draining_rotated)) = self.open_first(&sink, &shutdown).await?
        else {
            return Ok(());
        };
        let mut progress = Progress::new(self.checkpoint.clone());
        progress.mark(&mut reading, &self.path).await;
        let mut last_store = Instant::now();
        loop {
            if self
                .read_available(&mut reading, &mut last_store, &mut progress)
                .await?
                == Flow::Stop
            {
                break;
            }
            reading.outlet.flush_progress();
            if draining_rotated {
                // The rotated file found through the checkpoint is read to its end: on to the current file.
                self.finish_file(&mut reading);
                reading = self.open_at(&self.path, 0, 0, &sink, &shutdown).await?;
                draining_rotated = false;
                progress.mark(&mut reading, &self.path).await;
                continue;
            }
            progress.mark(&mut reading, &self.path).await;
            match tokio::fs::metadata(&self.path).await {
                Ok(meta) if meta.ino() != reading.inode => {
                    // Renamed away and replaced: read what the old file got last, then switch.
                    if self
                        .read_available(&mut reading, &mut last_store, &mut progress)
                        .await?
                        == Flow::Stop
                    {
                        break;
                    }
                    self.finish_file(&mut reading);
                    info!(path = %self.path.display(), "audit log rotated; following the new file");
                    reading = self.open_at(&self.path, 0, 0, &sink, &shutdown).await?;
                    progress.mark(&mut reading, &self.path).await;
                    continue;
                }
                Ok(meta) if meta.len() < reading.read_offset() => {
                    info!(path = %self.path.display(), "audit log truncated; reading it from its start");
                    reading
                        .reader
                        .seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(io_error(&self.path))?;
                    reading.committed = 0;
                    reading.line = 0;
                    reading.pending.clear();
                    reading.pending_bytes = 0;
                    reading.skip_partial = false;
                    progress.mark(&mut reading, &self.path).await;
                    continue;
                }
                Ok(_) => {}
                Err(err) => {
                    debug!(%err, path = %self.path.display(), "audit log not there (rotating?)")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
        reading.outlet.flush_progress();
        progress.finish(&mut reading, &self.path).await;
        Ok(())
    }
}

impl AuditLogFollower {
    /// A file is done: a line without its end at that point will never be completed.
    fn finish_file(&self, reading: &mut Reading) {
        if reading.pending_bytes > 0 && !reading.skip_partial {
            reading.outlet.found();
            reading.outlet.reject_record(
                reading.line + 1,
                RecordRejection::new(
                    RejectReason::TruncatedJson,
                    "the file ends in the middle of a line",
                ),
            );
        }
        reading.outlet.flush_progress();
    }
}
