//! [`AuditFileSource`]: apiserver audit logs read from a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kelemetry_core::audit::AuditMapping;
use kelemetry_core::{ActivitySink, CancellationToken, Source, SourceError};
use tokio::io::AsyncBufRead;

use crate::DEFAULT_DOCUMENT_LIMIT;
use crate::audit_envelope::is_encoded_line;
use crate::audit_intake::{AuditIntake, AuditItems};
use crate::audit_intake::{RecordRejection, RejectReason};
use crate::json_stream::{JsonPiece, JsonSplitter};
use crate::lines::{LineReader, open_buffered};
use crate::outlet::{Flow, Outlet};
use crate::report::ReadCounters;
use crate::yaml_stream::{YamlPiece, YamlSplitter};

/// How a file is written, decided from its first line that is not blank.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
    /// gzip data: rejected once, not read.
    Compressed,
}

impl Format {
    /// YAML when the line is a `---` separator, a `%` directive, a `#` comment or a mapping key (`kind: Event`,
    /// `"auditID": x`); JSON otherwise, so that a damaged JSON log still reads as JSON.
    fn of_first_line(line: &[u8]) -> Self {
        let line = line.trim_ascii();
        if line.starts_with(b"---") || line.starts_with(b"%") || line.starts_with(b"#") {
            return Self::Yaml;
        }
        if matches!(line.first(), Some(b'{' | b'[')) {
            return Self::Json;
        }
        let key_end = line
            .iter()
            .position(|&byte| byte == b':')
            .filter(|&at| matches!(line.get(at + 1), None | Some(b' ' | b'\t')));
        let plain_key = |key: &[u8]| {
            let key = key.trim_ascii();
            let key = key
                .strip_prefix(b"\"")
                .and_then(|k| k.strip_suffix(b"\""))
                .or_else(|| key.strip_prefix(b"'").and_then(|k| k.strip_suffix(b"'")))
                .unwrap_or(key);
            !key.is_empty()
                && key.iter().all(|&b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'/')
                })
        };
        match key_end {
            Some(at) if plain_key(&line[..at]) => Self::Yaml,
            _ => Self::Json,
        }
    }
}

/// Reads an apiserver audit log and sends the activities of its audit events.
///
/// Accepted input: what `--audit-log-path` writes (one JSON `Event` per line, `audit.k8s.io/v1` or `v1beta1`),
/// whole `EventList` documents, events or lists pretty-printed over many lines, and JSON arrays of them, in any
/// mix; or YAML, one document or several separated by `---` lines. Each document may be a native audit
/// document or the envelope of a managed cluster (GKE LogEntries, AKS diagnostic records, EKS CloudWatch events
/// and subscription records: see [`audit_envelope`](crate::audit_envelope)). Blank lines are skipped silently.
/// The file is YAML when its first line that is not blank is a YAML mapping key (`kind: Event`), a `---`
/// separator or a `#` comment, else JSON.
///
/// Each document goes through the [`AuditIntake`] (with an [`AuditMapping`]): writes become activities; reads,
/// watches and intermediate stages are counted as skipped (by [`SkipCause`](crate::audit_intake::SkipCause)),
/// not rejected. A line or document that is not JSON (or YAML), not an audit event, or a malformed event is
/// reported as a rejection (by [`RejectReason`](crate::audit_intake::RejectReason)) with `file:line` (the line
/// where the document starts; for YAML that does not parse, the line of the error), once per document, and the
/// rest of the file is still read. A document larger than the document limit (default
/// [`DEFAULT_DOCUMENT_LIMIT`], 16 MiB) is rejected; the file is read as a stream, one document at a time.
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
        let mut yaml = YamlSplitter::new(self.document_limit);
        let mut yaml_pieces = Vec::new();
        let mut format = None;
        let line_limit = self.document_limit.saturating_add(1);
        while let Some(info) = lines
            .next_line(&mut line, line_limit)
            .await
            .map_err(|error| SourceError::io(origin, error))?
        {
            outlet.consumed(info.bytes);
            let format = match format {
                Some(format) => format,
                None if line.trim_ascii().is_empty() && !info.overflow => continue,
                None if line.starts_with(&[0x1f, 0x8b]) => {
                    outlet.found();
                    outlet.reject_record(
                        info.number,
                        RecordRejection::new(
                            RejectReason::InvalidEnvelope,
                            "the file is gzip-compressed: decompress it first (gunzip, or `zcat FILE > FILE.json`)",
                        ),
                    );
                    *format.insert(Format::Compressed)
                }
                None => *format.insert(Format::of_first_line(&line)),
            };
            if format == Format::Compressed {
                // Rejected once above; the rest is only counted.
                continue;
            }
            if format == Format::Yaml {
                // A line over the limit makes its document too large.
                if info.overflow {
                    yaml.feed_oversized_line(info.number, info.bytes);
                } else {
                    yaml.feed_line(
                        info.number,
                        &String::from_utf8_lossy(&line),
                        &mut yaml_pieces,
                    );
                }
                if self.deliver_yaml(&mut outlet, &mut yaml_pieces).await == Flow::Stop {
                    outlet.flush_progress();
                    return Ok(());
                }
                continue;
            }
            if info.overflow {
                pieces.push(JsonPiece::Oversized {
                    line: info.number,
                    size: info.bytes,
                });
                splitter = JsonSplitter::new(self.document_limit);
            } else if splitter.is_between_documents() && is_encoded_line(&line) {
                // A base64 record (a Kinesis or Firehose delivery saved a line each): a document of its own.
                let taken = self.intake.take(&line, &self.cluster);
                let flow = match taken {
                    Ok(items) => outlet.deliver_audit(info.number, items).await,
                    Err(rejection) => {
                        outlet.found();
                        outlet.reject_record(info.number, rejection);
                        Flow::Continue
                    }
                };
                if flow == Flow::Stop {
                    outlet.flush_progress();
                    return Ok(());
                }
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
        yaml.finish(&mut yaml_pieces);
        self.deliver_yaml(&mut outlet, &mut yaml_pieces).await;
        outlet.flush_progress();
        Ok(())
    }

    /// Hands over what the YAML splitter found: each document as JSON through the intake, or its rejection.
    async fn deliver_yaml(&self, outlet: &mut Outlet, pieces: &mut Vec<YamlPiece>) -> Flow {
        for piece in pieces.drain(..) {
            if outlet.stopping() {
                return Flow::Stop;
            }
            let (line, json) = match piece {
                YamlPiece::Document(document) => {
                    match serde_yaml_ng::from_str::<serde_json::Value>(&document.text) {
                        Ok(value) => (document.line, serde_json::to_vec(&value)),
                        Err(error) => {
                            let line = error.location().map_or(document.line, |location| {
                                document.first_text_line + location.line() as u64 - 1
                            });
                            outlet.found();
                            outlet.reject_record(
                                line,
                                RecordRejection::new(RejectReason::InvalidYaml, error.to_string()),
                            );
                            continue;
                        }
                    }
                }
                YamlPiece::Oversized { line, size } => {
                    outlet.found();
                    outlet
                        .reject_record(line, RecordRejection::too_large(size, self.document_limit));
                    continue;
                }
            };
            let json = match json {
                Ok(json) => json,
                Err(error) => {
                    outlet.found();
                    outlet.reject_record(
                        line,
                        RecordRejection::new(RejectReason::InvalidYaml, error.to_string()),
                    );
                    continue;
                }
            };
            match self.intake.take(&json, &self.cluster) {
                Ok(items) => {
                    if outlet.deliver_audit(line, items).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Err(rejection) => {
                    outlet.found();
                    outlet.reject_record(line, rejection);
                }
            }
        }
        Flow::Continue
    }

    /// Hands over what the splitter found: the events of each document, the rejection of anything else.
    async fn deliver(&self, outlet: &mut Outlet, pieces: &mut Vec<JsonPiece>) -> Flow {
        for piece in pieces.drain(..) {
            if outlet.stopping() {
                return Flow::Stop;
            }
            let (line, text) = match piece.into_document(self.document_limit) {
                Ok(document) => document,
                Err((line, rejection)) => {
                    outlet.found();
                    outlet.reject_record(line, rejection);
                    continue;
                }
            };
            match self.intake.take(&text, &self.cluster) {
                Ok(items) => {
                    if outlet.deliver_audit(line, items).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Err(rejection) => {
                    outlet.found();
                    outlet.reject_record(line, rejection);
                }
            }
        }
        Flow::Continue
    }

    /// The events of `line` when it holds exactly one complete JSON document that parses as audit events; `None`
    /// sends the line through the splitter, which finds and reports whatever is wrong with it.
    fn one_line_document<'a>(&'a self, line: &'a [u8]) -> Option<AuditItems<'a>> {
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
