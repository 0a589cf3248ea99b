//! [`AuditFileSource`]: apiserver audit logs read from a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kelemetry_core::audit::AuditMapping;
use kelemetry_core::{ActivitySink, CancellationToken, Source, SourceError};
use tokio::io::AsyncBufRead;

use crate::DEFAULT_DOCUMENT_LIMIT;
use crate::audit_intake::{AuditIntake, AuditItems};
use crate::json_stream::{JsonPiece, JsonSplitter};
use crate::lines::{LineReader, open_buffered};
use crate::outlet::{Flow, Outlet};
use crate::report::ReadCounters;

/// Reads an apiserver audit log and sends the activities of its audit events.
///
/// Accepted input: what `--audit-log-path` writes (one JSON `Event` per line, `audit.k8s.io/v1` or `v1beta1`),
/// whole `EventList` documents, and events or lists pretty-printed over many lines, in any mix. Blank lines are
/// skipped silently.
///
/// Each document goes through the [`AuditIntake`] (with an [`AuditMapping`]): writes become activities; reads,
/// watches and intermediate stages are counted as skipped (by [`SkipReason`](kelemetry_core::audit::SkipReason)),
/// not rejected. A line or document that is not JSON, not an audit event, or a malformed event is reported as a
/// rejection (by [`RejectReason`](crate::audit_intake::RejectReason)) with `file:line` (the line where the
/// document starts), and the rest of the file is still read. A document larger
/// than the document limit (default [`DEFAULT_DOCUMENT_LIMIT`], 16 MiB) is rejected; the file is read as a stream,
/// one document at a time.
#[derive(Debug)]
pub struct AuditFileSource {
    path: PathBuf,
    cluster: String,
    intake: AuditIntake,
    document_limit: usize,
    counters: Arc<ReadCounters>,
}

impl AuditFileSource {
    /// A source reading `path`, whose events come from `cluster`, with the default [`AuditMapping`].
    pub fn new(path: impl Into<PathBuf>, cluster: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            cluster: cluster.into(),
            intake: AuditIntake::default(),
            document_limit: DEFAULT_DOCUMENT_LIMIT,
            counters: Arc::default(),
        }
    }

    /// Uses this mapping of audit events to activities.
    pub fn with_mapping(mut self, mapping: AuditMapping) -> Self {
        self.intake = AuditIntake::new(mapping);
        self
    }

    /// Rejects documents (lines) larger than `bytes`.
    pub fn with_document_limit(mut self, bytes: usize) -> Self {
        self.document_limit = bytes;
        self
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counters this source updates while it runs; read them during or after the run.
    pub fn counters(&self) -> Arc<ReadCounters> {
        Arc::clone(&self.counters)
    }

    /// Reads audit events from any buffered reader, naming it `origin` in rejections. [`Source::run`] calls this
    /// with the file.
    pub async fn read_from<R>(
        &self,
        reader: R,
        origin: &str,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError>
    where
        R: AsyncBufRead + Unpin + Send,
    {
        let mut outlet = Outlet::new(
            sink,
            Arc::clone(&self.counters),
            origin.to_owned(),
            shutdown,
        );
        let mut lines = LineReader::new(reader);
        let mut line = Vec::new();
        let mut splitter = JsonSplitter::new(self.document_limit);
        let mut pieces = Vec::new();
        let line_limit = self.document_limit.saturating_add(1);
        while let Some(info) = lines
            .next_line(&mut line, line_limit)
            .await
            .map_err(|error| SourceError::io(origin, error))?
        {
            outlet.consumed(info.bytes);
            if info.overflow {
                pieces.push(JsonPiece::Oversized {
                    line: info.number,
                    size: info.bytes,
                });
                splitter = JsonSplitter::new(self.document_limit);
            } else if splitter.is_between_documents()
                && let Some(items) = self.one_line_document(&line)
            {
                // The common case, an audit log line: parse it in place, without the splitter's copy.
                if outlet.deliver_audit(info.number, items).await == Flow::Stop {
                    outlet.flush_progress();
                    return Ok(());
                }
            } else {
                splitter.feed_line(info.number, &line, &mut pieces);
            }
            if self.deliver(&mut outlet, &mut pieces).await == Flow::Stop {
                outlet.flush_progress();
                return Ok(());
            }
        }
        splitter.finish(&mut pieces);
        self.deliver(&mut outlet, &mut pieces).await;
        outlet.flush_progress();
        Ok(())
    }

    /// Hands over what the splitter found: the events of each document, the rejection of anything else.
    async fn deliver(&self, outlet: &mut Outlet, pieces: &mut Vec<JsonPiece>) -> Flow {
        for piece in pieces.drain(..) {
            if outlet.stopping() {
                return Flow::Stop;
            }
            let taken = piece
                .into_document(self.document_limit)
                .and_then(|(line, text)| {
                    let items = self.intake.take(&text, &self.cluster);
                    items
                        .map(|items| (line, items))
                        .map_err(|rejection| (line, rejection))
                });
            match taken {
                Ok((line, items)) => {
                    if outlet.deliver_audit(line, items).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Err((line, rejection)) => {
                    outlet.found();
                    outlet.reject_record(line, rejection);
                }
            }
        }
        Flow::Continue
    }

    /// The events of `line` when it holds exactly one complete JSON document that parses as audit events; `None`
    /// sends the line through the splitter, which finds and reports whatever is wrong with it.
    fn one_line_document(&self, line: &[u8]) -> Option<AuditItems<'_>> {
        let trimmed = line.trim_ascii();
        if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
            return None;
        }
        // Only a document that parses goes this way; the splitter classifies and reports the others, once.
        let events = kelemetry_core::audit::parse_document(trimmed).ok()?;
        Some(self.intake.items(events, &self.cluster))
    }
}

#[async_trait]
impl Source for AuditFileSource {
    fn name(&self) -> &str {
        "audit-file"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let (reader, origin) = open_buffered(&self.path).await?;
        self.read_from(reader, &origin, sink, shutdown).await
    }
}
