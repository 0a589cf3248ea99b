//! [`Reader`]: where the read side gets spans from.

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::{BoxError, ObjectKey, ObjectSelector, SpanKind, SpanRecord, TraceId};

use crate::assemble::LinkRef;

/// Reading failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The backend failed.
    #[error("reading {what} failed: {source}")]
    Backend {
        /// What was being read.
        what: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The reader cannot answer this kind of question.
    #[error("this reader does not support {what}")]
    Unsupported {
        /// The question.
        what: String,
    },
}

impl ReadError {
    /// Reading `what` failed because of `source` (any error, or a message).
    pub fn backend(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Spans by trace id, and the objects a store knows. Because ids are deterministic, the read side computes which
/// traces hold an object's windows; a reader only has to say which of them exist.
#[async_trait]
pub trait Reader: Send + Sync {
    /// The traces (one per window) that hold spans of `key` and overlap `[from, to]`, oldest first.
    async fn object_traces(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TraceId>, ReadError>;

    /// Every span of one trace; empty when the trace is unknown.
    async fn trace(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError>;

    /// Up to `limit` objects that `selector` selects. A reader without an index of objects may answer only
    /// selectors that name the resource, the namespace and the name ([`ObjectSelector::names_one_object`]) and
    /// fail the others with [`ReadError::Unsupported`].
    async fn find_objects(
        &self,
        selector: &ObjectSelector,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, ReadError>;

    /// [`Reader::object_traces`] of several objects at once (a reader may answer in one round trip).
    async fn object_traces_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceId>>, ReadError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.object_traces(key, from, to).await?);
        }
        Ok(out)
    }

    /// [`Reader::trace`] of several traces at once (a reader may answer in one round trip).
    async fn traces(&self, ids: &[TraceId]) -> Result<Vec<Vec<SpanRecord>>, ReadError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.trace(*id).await?);
        }
        Ok(out)
    }

    /// [`Reader::traces`] as assembly reads them: each trace's object and activity spans, and its link spans as
    /// the links they stand for ([`TraceParts::of_spans`]). A reader that can read a link span's link without the
    /// rest of the span (the embedded store) answers this with less work than [`Reader::traces`]; the default
    /// splits what [`Reader::traces`] returns.
    async fn trace_parts(&self, ids: &[TraceId]) -> Result<Vec<TraceParts>, ReadError> {
        let traces = self.traces(ids).await?;
        Ok(traces.into_iter().map(TraceParts::of_spans).collect())
    }

    /// For each of `keys`, the parts of its traces in `[from, to]`, oldest first: [`Reader::object_traces_many`],
    /// then [`Reader::trace_parts`] of every trace found, which is what this default asks in turn. A reader that
    /// can answer both at once (the embedded store, in one read of one snapshot) overrides it.
    async fn object_trace_parts_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceParts>>, ReadError> {
        object_trace_parts_in_turn(self, keys, from, to).await
    }

    /// The clusters the reader holds objects of; empty when it cannot tell.
    async fn clusters(&self) -> Result<Vec<String>, ReadError> {
        Ok(Vec::new())
    }
}

/// The default of [`Reader::object_trace_parts_many`]: the windows, then the parts of their traces.
pub(crate) async fn object_trace_parts_in_turn<R: Reader + ?Sized>(
    reader: &R,
    keys: &[ObjectKey],
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Vec<TraceParts>>, ReadError> {
    let windows = reader.object_traces_many(keys, from, to).await?;
    let all: Vec<TraceId> = windows.iter().flatten().copied().collect();
    let parts = reader.trace_parts(&all).await?;
    Ok(parts_by_object(windows.iter().map(Vec::len), parts))
}

/// The parts of every object's traces, read as one list, split back per object: `counts` says how many traces
/// each object has, in order.
pub(crate) fn parts_by_object(
    counts: impl Iterator<Item = usize>,
    parts: Vec<TraceParts>,
) -> Vec<Vec<TraceParts>> {
    let mut parts = parts.into_iter();
    counts
        .map(|count| parts.by_ref().take(count).collect())
        .collect()
}

/// One trace as assembly reads it ([`Reader::trace_parts`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TraceParts {
    /// The object and activity spans, in the order of [`Reader::trace`].
    pub spans: Vec<SpanRecord>,
    /// The links of the link spans, in the same order; a link span without the other object's identity or a
    /// valid role stands for no link.
    pub links: Vec<LinkRef>,
}

impl TraceParts {
    /// Object and activity spans and links.
    pub fn new(spans: Vec<SpanRecord>, links: Vec<LinkRef>) -> Self {
        Self { spans, links }
    }

    /// Splits the spans of a trace: link spans become links, the others are kept.
    pub fn of_spans(spans: Vec<SpanRecord>) -> Self {
        let mut parts = Self::default();
        for span in spans {
            if span.kind == SpanKind::Link {
                parts.links.extend(LinkRef::of_span(&span));
            } else {
                parts.spans.push(span);
            }
        }
        parts
    }
}
