//! The delivery task: takes requests' worth of spans from the buffer and sends each until it is delivered,
//! rejected or abandoned, retrying with exponential backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use kelemetry_core::{ExportError, RetryPolicy};
use tracing::{debug, error, info, warn};

use super::buffer::Shared;
use super::transport::{Prepared, Transport};

/// Runs until the exporter is dropped (the buffer closed and empty).
pub(super) async fn deliver(
    shared: Arc<Shared>,
    transport: Transport,
    retry: RetryPolicy,
    max_batch: usize,
) {
    while let Some((batch, first)) = shared.next_batch(max_batch).await {
        shared.abandon.store(false, Relaxed);
        let spans = batch.len() as u64;
        // Only the encoded request waits through retries, not the spans it was made of.
        let request = transport.request(batch);
        let delivered = deliver_one(&shared, &transport, &request, spans, retry).await;
        shared.request_finished(first, first + spans, delivered);
    }
}

/// Sends one request until it is delivered, rejected or abandoned, counting the outcome; `true` when every span
/// of it was delivered.
async fn deliver_one(
    shared: &Shared,
    transport: &Transport,
    request: &Prepared,
    spans: u64,
    retry: RetryPolicy,
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
        // The policy is unlimited; the buffer's abandon flag (a flush that timed out) ends the retries.
        let wait = delays.next().unwrap_or(retry.max_backoff);
        if wait_or_abandon(shared, wait).await {
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

/// Waits `wait` before the next attempt; `true` when a flush that timed out abandoned the request meanwhile.
async fn wait_or_abandon(shared: &Shared, wait: Duration) -> bool {
    let abandoned = shared.abandoned.notified();
    tokio::pin!(abandoned);
    abandoned.as_mut().enable();
    if !shared.abandon.load(Relaxed) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = abandoned => {}
        }
    }
    shared.abandon.swap(false, Relaxed)
}
