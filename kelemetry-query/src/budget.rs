//! [`QueryBudget`]: how much one query of the serving side may read, so that a question about a large part of the
//! store is refused with a clear answer instead of taking the server's memory.
//!
//! [`TraceQuery`](crate::TraceQuery) reads through a [`BudgetedReader`]. Outside a budget's scope it passes every
//! question on unchanged; inside [`QueryBudget::scope`], it reads the spans of many traces in chunks and counts
//! the spans and their approximate size in memory, and once either goes over the budget the read fails with
//! [`OverBudget`] (as the source of a [`ReadError`]). The HTTP API gives each heavy request its own budget.
//!
//! ```
//! use kelemetry_query::budget::{OverBudget, QueryBudget};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let budget = QueryBudget::new(1_000, 1 << 20);
//! let spans_read = budget.scope(async { /* a TraceQuery call */ 0 }).await;
//! assert_eq!(spans_read, 0);
//! # }
//! ```

use std::cell::Cell;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::{ObjectKey, ObjectSelector, SpanRecord, TraceId};

use crate::reader::{ReadError, Reader, TraceParts, object_trace_parts_in_turn};

/// Traces read at once inside a budget: the budget is checked between chunks, so one chunk is what a query may
/// read past it.
const CHUNK: usize = 32;
/// Bytes counted for a span besides its strings (ids, times, vectors, map entries).
const SPAN_OVERHEAD: usize = 160;
/// Bytes counted for an attribute besides its key and value.
const ATTRIBUTE_OVERHEAD: usize = 48;

tokio::task_local! {
    static BUDGET: Spent;
}

/// What one query may read: spans, and their approximate size in memory.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QueryBudget {
    /// Spans at most.
    pub spans: usize,
    /// Approximate bytes of spans in memory at most.
    pub bytes: usize,
}

impl QueryBudget {
    /// At most `spans` spans and `bytes` bytes of them.
    pub fn new(spans: usize, bytes: usize) -> Self {
        Self { spans, bytes }
    }

    /// Runs `query` with this budget: reads through a [`BudgetedReader`] inside it fail with [`OverBudget`] once
    /// they went over it.
    pub async fn scope<F: Future>(self, query: F) -> F::Output {
        BUDGET
            .scope(
                Spent {
                    budget: self,
                    spans: Cell::new(0),
                    bytes: Cell::new(0),
                },
                query,
            )
            .await
    }
}

/// What the query of a scope has read so far.
#[derive(Debug)]
struct Spent {
    budget: QueryBudget,
    spans: Cell<usize>,
    bytes: Cell<usize>,
}

/// A query read more than its [`QueryBudget`] allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the query read more than its budget of {} spans and {} MiB ({spans} spans, about {} MiB, so far)",
    budget.spans, budget.bytes >> 20, bytes >> 20
)]
#[non_exhaustive]
pub struct OverBudget {
    /// The budget.
    pub budget: QueryBudget,
    /// Spans read when it was stopped.
    pub spans: usize,
    /// Approximate bytes read when it was stopped.
    pub bytes: usize,
}

impl OverBudget {
    /// The [`OverBudget`] in `error`'s chain of sources, if any.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a OverBudget> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(over) = error.downcast_ref::<OverBudget>() {
                return Some(over);
            }
            next = error.source();
        }
        None
    }
}

/// The approximate size of `span` in memory.
fn span_bytes(span: &SpanRecord) -> usize {
    let attributes = |attributes: &kelemetry_core::Attributes| {
        attributes
            .iter()
            .map(|(key, value)| key.len() + value.len() + ATTRIBUTE_OVERHEAD)
            .sum::<usize>()
    };
    SPAN_OVERHEAD
        + span.name.len()
        + attributes(&span.attributes)
        + span
            .logs
            .iter()
            .map(|log| SPAN_OVERHEAD + log.message.len() + attributes(&log.attributes))
            .sum::<usize>()
}

/// Counts `traces` against the budget in scope, if any.
fn charge(traces: &[Vec<SpanRecord>]) -> Result<(), ReadError> {
    let over = BUDGET.try_with(|spent| {
        let spans = spent.spans.get() + traces.iter().map(Vec::len).sum::<usize>();
        let bytes = spent.bytes.get() + traces.iter().flatten().map(span_bytes).sum::<usize>();
        spent.spans.set(spans);
        spent.bytes.set(bytes);
        (spans > spent.budget.spans || bytes > spent.budget.bytes).then_some(OverBudget {
            budget: spent.budget,
            spans,
            bytes,
        })
    });
    match over {
        Ok(Some(over)) => Err(ReadError::backend("spans within the query's budget", over)),
        Ok(None) | Err(_) => Ok(()),
    }
}

/// A [`Reader`] that counts what it reads against the [`QueryBudget`] in scope (see the module documentation).
#[derive(Clone)]
pub struct BudgetedReader {
    inner: Arc<dyn Reader>,
}

impl std::fmt::Debug for BudgetedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetedReader").finish_non_exhaustive()
    }
}

impl BudgetedReader {
    /// Reads from `inner`.
    pub fn new(inner: Arc<dyn Reader>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Reader for BudgetedReader {
    async fn object_traces(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TraceId>, ReadError> {
        self.inner.object_traces(key, from, to).await
    }

    async fn trace(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError> {
        let spans = self.inner.trace(id).await?;
        charge(std::slice::from_ref(&spans))?;
        Ok(spans)
    }

    async fn find_objects(
        &self,
        selector: &ObjectSelector,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, ReadError> {
        self.inner.find_objects(selector, limit).await
    }

    async fn object_traces_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceId>>, ReadError> {
        self.inner.object_traces_many(keys, from, to).await
    }

    /// In one read outside a budget; in chunks, each charged before the next is read, inside one.
    async fn traces(&self, ids: &[TraceId]) -> Result<Vec<Vec<SpanRecord>>, ReadError> {
        if BUDGET.try_with(|_| ()).is_err() {
            return self.inner.traces(ids).await;
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let traces = self.inner.traces(chunk).await?;
            charge(&traces)?;
            out.extend(traces);
        }
        Ok(out)
    }

    /// Outside a budget, what the inner reader answers; inside one, the spans as [`BudgetedReader::traces`] reads
    /// and charges them, then split (so a budget counts every span in full, as before).
    async fn trace_parts(&self, ids: &[TraceId]) -> Result<Vec<TraceParts>, ReadError> {
        if BUDGET.try_with(|_| ()).is_err() {
            return self.inner.trace_parts(ids).await;
        }
        let traces = self.traces(ids).await?;
        Ok(traces.into_iter().map(TraceParts::of_spans).collect())
    }

    /// Outside a budget, what the inner reader answers; inside one, the windows and then the parts as
    /// [`BudgetedReader::trace_parts`] reads and charges them.
    async fn object_trace_parts_many(
        &self,
        keys: &[ObjectKey],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Vec<TraceParts>>, ReadError> {
        if BUDGET.try_with(|_| ()).is_err() {
            return self.inner.object_trace_parts_many(keys, from, to).await;
        }
        object_trace_parts_in_turn(self, keys, from, to).await
    }

    async fn clusters(&self) -> Result<Vec<String>, ReadError> {
        self.inner.clusters().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kelemetry_core::{ObjectRef, Windowing};

    /// A reader whose every trace holds the same `n` object spans.
    struct Repeating(Vec<SpanRecord>);

    #[async_trait]
    impl Reader for Repeating {
        async fn object_traces(
            &self,
            _: &ObjectKey,
            _: Timestamp,
            _: Timestamp,
        ) -> Result<Vec<TraceId>, ReadError> {
            Ok(Vec::new())
        }
        async fn trace(&self, _: TraceId) -> Result<Vec<SpanRecord>, ReadError> {
            Ok(self.0.clone())
        }
        async fn find_objects(
            &self,
            _: &ObjectSelector,
            _: usize,
        ) -> Result<Vec<ObjectKey>, ReadError> {
            Ok(Vec::new())
        }
    }

    fn reader(spans_per_trace: usize) -> BudgetedReader {
        let key = ObjectKey::new("c", "", "pods", "default", "p");
        let window = Windowing::default().window_of(Timestamp::UNIX_EPOCH);
        let span = kelemetry_core::span::object_span(&ObjectRef::new(key, "v1", None), window);
        BudgetedReader::new(Arc::new(Repeating(vec![span; spans_per_trace])))
    }

    #[tokio::test]
    async fn outside_a_budget_everything_is_read() {
        let ids: Vec<TraceId> = (1..=100u128).filter_map(TraceId::from_u128).collect();
        let read = reader(10).traces(&ids).await.map(|t| t.len());
        assert_eq!(read.ok(), Some(100));
    }

    #[tokio::test]
    async fn a_budget_stops_the_read_after_the_chunk_that_went_over() {
        let ids: Vec<TraceId> = (1..=100u128).filter_map(TraceId::from_u128).collect();
        let reader = reader(10);
        let read = QueryBudget::new(500, usize::MAX)
            .scope(reader.traces(&ids))
            .await;
        let error = read.expect_err("over budget");
        let over = OverBudget::find(&error).cloned();
        // Two chunks of 32 traces of 10 spans: 320, then 640 > 500.
        assert_eq!(over.map(|o| o.spans), Some(640));
        let within = QueryBudget::new(1_000, usize::MAX)
            .scope(reader.traces(&ids))
            .await;
        assert_eq!(within.map(|t| t.len()).ok(), Some(100));
    }

    #[tokio::test]
    async fn bytes_count_too() {
        let reader = reader(10);
        let read = QueryBudget::new(usize::MAX, 1_000)
            .scope(reader.trace(TraceId::from_u128(1).expect("not zero")))
            .await;
        let error = read.expect_err("over budget");
        let over = OverBudget::find(&error)
            .cloned()
            .expect("an OverBudget source");
        assert_eq!(over.spans, 10);
        assert!(over.bytes > 1_000, "{over:?}");
    }
}
