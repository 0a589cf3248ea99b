//! [`AuditFileSource`]: apiserver audit logs read from a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kelemetry_core::audit::{
    AuditEvent, AuditMapping, AuditOutcome, AuditParseError, parse_document,
};
use kelemetry_core::{ActivitySink, Shutdown, Source, SourceError};
use serde_json::error::Category;
use tokio::io::AsyncBufRead;

use crate::DEFAULT_DOCUMENT_LIMIT;
use crate::json_stream::{JsonPiece, JsonSplitter};
use crate::lines::LineReader;
use crate::outlet::{Flow, Outlet};
use crate::report::ReadCounters;

/// Reads an apiserver audit log and sends the activities of its audit events.
///
/// Accepted input: what `--audit-log-path` writes (one JSON `Event` per line, `audit.k8s.io/v1` or `v1beta1`),
/// whole `EventList` documents, and events or lists pretty-printed over many lines, in any mix. Blank lines are
/// skipped silently.
///
/// Each audit event goes through [`AuditMapping`]: writes become activities; reads, watches and intermediate
/// stages are counted as skipped (by [`SkipReason`](kelemetry_core::audit::SkipReason)), not rejected. A line or
/// document that is not JSON, not an audit event, or a malformed event is reported as a rejection with
/// `file:line` (the line where the document starts), and the rest of the file is still read. A document larger
/// than the document limit (default [`DEFAULT_DOCUMENT_LIMIT`], 16 MiB) is rejected; the file is read as a stream,
/// one document at a time.
#[derive(Debug)]
pub struct AuditFileSource {
    path: PathBuf,
    cluster: String,
    mapping: AuditMapping,
    document_limit: usize,
    counters: Arc<ReadCounters>,
}

impl AuditFileSource {
    /// A source reading `path`, whose events come from `cluster`, with the default [`AuditMapping`].
    pub fn new(path: impl Into<PathBuf>, cluster: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            cluster: cluster.into(),
            mapping: AuditMapping::default(),
            document_limit: DEFAULT_DOCUMENT_LIMIT,
            counters: Arc::default(),
        }
    }

    /// Uses this mapping of audit events to activities.
    pub fn with_mapping(mut self, mapping: AuditMapping) -> Self {
        self.mapping = mapping;
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
        shutdown: Shutdown,
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
            .map_err(|source| SourceError::Io {
                origin: origin.to_owned(),
                source,
            })?
        {
            outlet.consumed(info.bytes);
            if info.overflow {
                pieces.push(JsonPiece::Oversized {
                    line: info.number,
                    size: info.bytes,
                });
                splitter = JsonSplitter::new(self.document_limit);
            } else if splitter.is_between_documents()
                && let Some(events) = one_line_document(&line)
            {
                // The common case, an audit log line: parse it in place, without the splitter's copy.
                if self.deliver_events(&mut outlet, info.number, events).await == Flow::Stop {
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

    async fn deliver(&self, outlet: &mut Outlet, pieces: &mut Vec<JsonPiece>) -> Flow {
        for piece in pieces.drain(..) {
            if outlet.stopping() {
                return Flow::Stop;
            }
            let (line, text) = match piece {
                JsonPiece::Document { line, text } => (line, text),
                JsonPiece::Garbage { line, text } => {
                    outlet.found();
                    outlet.reject(line, "invalid JSON", format!("not JSON: {text:?}"));
                    continue;
                }
                JsonPiece::Truncated { line } => {
                    outlet.found();
                    outlet.reject(
                        line,
                        "truncated JSON",
                        "the document ends before it is complete",
                    );
                    continue;
                }
                JsonPiece::Oversized { line, size } => {
                    outlet.found();
                    outlet.reject(
                        line,
                        "document too large",
                        format!(
                            "document of {size} bytes exceeds the limit of {} bytes",
                            self.document_limit
                        ),
                    );
                    continue;
                }
            };
            let events = match parse_document(&text) {
                Ok(events) => events,
                Err(error) => {
                    outlet.found();
                    outlet.reject(line, parse_error_class(&error), error.to_string());
                    continue;
                }
            };
            if self.deliver_events(outlet, line, events).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    async fn deliver_events(
        &self,
        outlet: &mut Outlet,
        line: u64,
        events: Vec<AuditEvent>,
    ) -> Flow {
        for event in events {
            outlet.found();
            match self.mapping.map(event, &self.cluster) {
                Ok(AuditOutcome::Activity(activity)) => {
                    if outlet.send((*activity).into()).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Ok(AuditOutcome::Skipped(reason)) => outlet.skip(reason.as_str()),
                Err(error) => outlet.reject(line, "invalid audit event", error.to_string()),
            }
        }
        Flow::Continue
    }
}

/// The events of `line` when it holds exactly one complete JSON document that parses as audit events; `None`
/// sends the line through the splitter, which finds and reports whatever is wrong with it.
fn one_line_document(line: &[u8]) -> Option<Vec<AuditEvent>> {
    let trimmed = line.trim_ascii();
    if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
        return None;
    }
    parse_document(trimmed).ok()
}

/// The rejection class of a document that did not parse.
fn parse_error_class(error: &AuditParseError) -> &'static str {
    match error {
        AuditParseError::Json(json) => match json.classify() {
            Category::Syntax | Category::Eof | Category::Io => "invalid JSON",
            Category::Data => "invalid audit event",
        },
        AuditParseError::MissingAuditId { .. } => "invalid audit event",
        AuditParseError::MissingKind
        | AuditParseError::UnexpectedKind { .. }
        | AuditParseError::UnexpectedApiVersion { .. } => "not an audit event",
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
        shutdown: Shutdown,
    ) -> Result<(), SourceError> {
        let origin = self.path.display().to_string();
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(|source| SourceError::Io {
                origin: origin.clone(),
                source,
            })?;
        let reader = tokio::io::BufReader::with_capacity(64 * 1024, file);
        self.read_from(reader, &origin, sink, shutdown).await
    }
}
