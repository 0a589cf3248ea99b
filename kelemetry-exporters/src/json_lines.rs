//! [`JsonLinesExporter`]: OTLP/JSON, one `ExportTraceServiceRequest` per line.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use kelemetry_core::{ExportError, Exporter, SpanRecord};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::Mutex;

use kelemetry_core::otlp::export_request;

/// How many spans one line holds at most, by default. A larger batch is written as several lines, so a reader
/// never needs more than a bounded line buffer.
pub const DEFAULT_SPANS_PER_LINE: usize = 512;

/// Bytes buffered before they are written to the destination.
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The JSON lines file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open OTLP/JSON lines file {path}: {source}")]
pub struct OpenJsonLinesError {
    /// The file.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

/// Writing or flushing the destination failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {destination}")]
pub struct JsonLinesIoError {
    /// What was being done: `cannot write to`, `cannot flush`.
    action: &'static str,
    /// The destination's name.
    destination: String,
    /// The I/O error.
    #[source]
    source: std::io::Error,
}

/// Which file a [`JsonLinesExporter`] writes and how; [`JsonLinesConfig::build`] opens it. With the feature
/// `config` it is read from configuration files (the `exporters.jsonLines` section of `kelemetry run`'s file).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct JsonLinesConfig {
    /// The file. Empty by default: give one.
    pub path: PathBuf,
    /// Append to the file instead of replacing it.
    pub append: bool,
}

impl Default for JsonLinesConfig {
    /// No path yet; appending.
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            append: true,
        }
    }
}

impl JsonLinesConfig {
    /// Appends to the file `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Opens the file: [`JsonLinesExporter::append`] or [`JsonLinesExporter::create`].
    pub async fn build(&self) -> Result<JsonLinesExporter, OpenJsonLinesError> {
        if self.append {
            JsonLinesExporter::append(&self.path).await
        } else {
            JsonLinesExporter::create(&self.path).await
        }
    }
}

type Destination = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

/// Writes spans as OTLP/JSON lines: each line is one `ExportTraceServiceRequest` in the OpenTelemetry protocol's
/// JSON encoding (the format of the OpenTelemetry Collector's file exporter), with one `resourceSpans` entry per
/// service name (`object`, `link`, `audit`, `event`, ...); see `kelemetry_core::otlp`.
///
/// Writes go through a buffer of [`WRITE_BUFFER_BYTES`], pushed out to the destination at the end of every
/// [`Exporter::export`] (a batch reported exported is in the file, as far as this process is concerned; it is not
/// synced to disk). Each line is serialised completely before any of it is written, so a serialisation problem
/// never leaves half a line; an I/O failure part way through a line can.
pub struct JsonLinesExporter {
    destination_name: String,
    destination: Mutex<Destination>,
    spans_per_line: usize,
    resource_attributes: Vec<(String, String)>,
}

impl std::fmt::Debug for JsonLinesExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesExporter")
            .field("destination", &self.destination_name)
            .field("spans_per_line", &self.spans_per_line)
            .finish()
    }
}

impl JsonLinesExporter {
    /// Writes to `writer`; `destination_name` names it in errors (a path, `stdout`, ...).
    pub fn new(
        writer: impl AsyncWrite + Send + Unpin + 'static,
        destination_name: impl Into<String>,
    ) -> Self {
        let writer: Box<dyn AsyncWrite + Send + Unpin> = Box::new(writer);
        Self {
            destination_name: destination_name.into(),
            destination: Mutex::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer)),
            spans_per_line: DEFAULT_SPANS_PER_LINE,
            resource_attributes: Vec::new(),
        }
    }

    /// Writes to a new file at `path`, replacing any file there.
    pub async fn create(path: impl AsRef<Path>) -> Result<Self, OpenJsonLinesError> {
        let path = path.as_ref();
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|source| OpenJsonLinesError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::new(file, path.display().to_string()))
    }

    /// Appends to the file at `path`, creating it if missing.
    pub async fn append(path: impl AsRef<Path>) -> Result<Self, OpenJsonLinesError> {
        let path = path.as_ref();
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|source| OpenJsonLinesError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::new(file, path.display().to_string()))
    }

    /// At most `spans` spans per line (at least one).
    pub fn with_spans_per_line(mut self, spans: usize) -> Self {
        self.spans_per_line = spans.max(1);
        self
    }

    /// Adds a resource attribute to every resource, after `service.name` (for example `k8s.cluster.name`).
    pub fn with_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> ExportError {
        ExportError::retryable(JsonLinesIoError {
            action,
            destination: self.destination_name.clone(),
            source,
        })
    }
}

#[async_trait]
impl Exporter for JsonLinesExporter {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn export(&self, batch: &[SpanRecord]) -> Result<(), ExportError> {
        let mut destination = self.destination.lock().await;
        let mut line = Vec::new();
        for chunk in batch.chunks(self.spans_per_line) {
            line.clear();
            let request = export_request(chunk, &self.resource_attributes);
            serde_json::to_writer(&mut line, &request).map_err(ExportError::permanent)?;
            line.push(b'\n');
            destination
                .write_all(&line)
                .await
                .map_err(|e| self.io_error("cannot write to", e))?;
        }
        // An exported batch is acknowledged to the sources: hand it to the OS now, not at the next flush, so that a
        // crash of this process cannot lose it and a reader of the file sees it.
        destination
            .flush()
            .await
            .map_err(|e| self.io_error("cannot write to", e))
    }

    async fn flush(&self) -> Result<(), ExportError> {
        let mut destination = self.destination.lock().await;
        destination
            .flush()
            .await
            .map_err(|e| self.io_error("cannot flush", e))
    }
}
