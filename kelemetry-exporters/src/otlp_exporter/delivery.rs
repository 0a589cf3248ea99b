//! The delivery task: takes requests' worth of spans from the buffer and sends each until it is delivered,
//! rejected or abandoned, retrying with exponential backoff; up to a number of requests at once.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::StreamExt;
use kelemetry_core::{ExportError, RetryPolicy};
use tracing::{debug, error, info, warn};

use super::buffer::{Shared, Taken};
use super::transport::{Prepared, Transport};

/// Runs until the exporter is dropped (the buffer closed and empty, and every request finished), with at most
/// `concurrent` requests in flight.
pub(super) async fn deliver(
    shared: Arc<Shared>,
    transport: Transport,
    retry: RetryPolicy,
    max_batch: usize,
    concurrent: usize,
) {
    // Spans are taken from the buffer only while fewer than `concurrent` requests are in flight.
    futures::stream::unfold((), |()| async {
        shared.next_batch(max_batch).await.map(|taken| (taken, ()))
    })
    .for_each_concurrent(concurrent, |taken| {
        deliver_taken(&shared, &transport, taken, retry)
    })
    .await;
}

/// Makes `taken` into a request, delivers it and settles its spans.
async fn deliver_taken(shared: &Shared, transport: &Transport, taken: Taken, retry: RetryPolicy) {
    let Taken {
        spans,
        first,
        bytes,
        abandon_epoch,
    } = taken;
    let count = spans.len() as u64;
    // Only the encoded request waits through retries, not the spans it was made of.
    let request = transport.request(spans);
    let delivered = deliver_one(shared, transport, &request, count, retry, abandon_epoch).await;
    shared.request_finished(first, first + count, bytes, delivered);
}

/// Sends one request until it is delivered, rejected or abandoned (a flush gave up after `abandon_epoch`),
/// counting the outcome; `true` when every span of it was delivered.
async fn deliver_one(
    shared: &Shared,
    transport: &Transport,
    request: &Prepared,
    spans: u64,
    retry: RetryPolicy,
    abandon_epoch: u64,
) -> bool {
    let stats = &shared.stats;
    let mut delays = retry.delays();
    let mut failures = 0u32;
    loop {
        let error = match transport.send(request.clone()).await {
            Ok(rejected) => {
                let rejected = rejected.min(spans);
                stats.requests_sent.fetch_add(1, Relaxed);
                stats.spans_exported.fetch_add(spans - rejected, Relaxed);
                stats.spans_rejected.fetch_add(rejected, Relaxed);
                if failures > 0 {
                    shared.failing.store(false, Relaxed);
                    info!(destination = %shared.destination, failures, "OTLP endpoint reachable again");
                }
                return rejected == 0;
            }
            Err(error) => error,
        };
        if !error.is_retryable() {
            stats.spans_rejected.fetch_add(spans, Relaxed);
            shared.failing.store(false, Relaxed);
            error!(destination = %shared.destination, spans, %error, "OTLP export rejected; spans dropped");
            return false;
        }
        failures += 1;
        shared.failing.store(true, Relaxed);
        stats.requests_retried.fetch_add(1, Relaxed);
        log_retry(shared, failures, spans, &error);
        // The policy is unlimited; a flush that timed out after the request was taken ends the retries.
        let wait = delays.next().unwrap_or(retry.max_backoff);
        if wait_or_abandon(shared, wait, abandon_epoch).await {
            stats.spans_dropped_undelivered.fetch_add(spans, Relaxed);
            shared.failing.store(false, Relaxed);
            return false;
        }
    }
}

fn log_retry(shared: &Shared, failures: u32, spans: u64, error: &ExportError) {
    if failures == 1 {
        warn!(destination = %shared.destination, spans, %error, "OTLP export failed; retrying with backoff");
    } else {
        debug!(destination = %shared.destination, failures, %error, "OTLP export failed again");
    }
}

/// Waits `wait` before the next attempt; `true` when a flush that timed out abandoned the request (taken at
/// `abandon_epoch`), before or meanwhile.
async fn wait_or_abandon(shared: &Shared, wait: Duration, abandon_epoch: u64) -> bool {
    let abandoned = shared.abandoned.notified();
    tokio::pin!(abandoned);
    abandoned.as_mut().enable();
    if shared.abandon.load(Relaxed) == abandon_epoch {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = abandoned => {}
        }
    }
    shared.abandon.load(Relaxed) != abandon_epoch
}
