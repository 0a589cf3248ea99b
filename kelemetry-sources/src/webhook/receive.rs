//! The webhook's routes, and [`receive`]: one audit batch through admission, body read, intake and queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kelemetry_core::{Record, Rejection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use super::admission::{
    Refusal, authenticate, check_declared_length, check_room, discard, plain, read_body,
};
use super::queue::BatchQueue;
use super::{WebhookConfig, WebhookMetrics};
use crate::audit_intake::{AuditIntake, AuditItem};

/// What the request handlers share.
#[derive(Debug)]
pub(super) struct Shared {
    default_cluster: String,
    token: Option<String>,
    body_limit: usize,
    read_timeout: Duration,
    intake: AuditIntake,
    memory_pressure: Option<Arc<AtomicBool>>,
    queue: BatchQueue,
    reads: Arc<Semaphore>,
    accepting: AtomicBool,
    metrics: Arc<WebhookMetrics>,
}

impl Shared {
    /// The handlers' state for `config`, queueing into `queue`.
    pub(super) fn new(
        config: &WebhookConfig,
        queue: BatchQueue,
        metrics: Arc<WebhookMetrics>,
    ) -> Self {
        Self {
            default_cluster: config.default_cluster.clone(),
            token: config.token.clone(),
            body_limit: config.body_limit,
            read_timeout: config.read_timeout,
            intake: AuditIntake::new(config.mapping.clone()),
            memory_pressure: config.memory_pressure.clone(),
            queue,
            reads: Arc::new(Semaphore::new(config.concurrent_reads)),
            accepting: AtomicBool::new(true),
            metrics,
        }
    }

    /// New batches get 503 from now on; the health check says so.
    pub(super) fn stop_accepting(&self) {
        self.accepting.store(false, Relaxed);
    }

    /// Admission, before the body is read: shutting down, authentication, declared length, room in the queue,
    /// and a slot for reading the body (held until the batch is queued or refused).
    fn admit(&self, parts: &Parts) -> Result<OwnedSemaphorePermit, Refusal> {
        if !self.accepting.load(Relaxed) {
            return Err(Refusal::ShuttingDown);
        }
        authenticate(self.token.as_deref(), &parts.headers)?;
        check_declared_length(&parts.headers, self.body_limit)?;
        let memory_pressed = self
            .memory_pressure
            .as_ref()
            .is_some_and(|pressure| pressure.load(Relaxed));
        check_room(
            self.queue.is_full(),
            memory_pressed,
            self.metrics.queued_events.load(Relaxed),
        )?;
        Arc::clone(&self.reads)
            .try_acquire_owned()
            .map_err(|_| Refusal::Throttled("too many batches being read"))
    }
}

/// The client's address, put into each request's extensions by the connection.
#[derive(Copy, Clone, Debug)]
pub(super) struct PeerAddr(pub(super) SocketAddr);

/// `GET /healthz`, `POST /audit` and `POST /audit/{cluster}`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/audit", post(audit_default))
        .route("/audit/{cluster}", post(audit_cluster))
        .with_state(shared)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.accepting.load(Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn audit_default(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let cluster = shared.default_cluster.clone();
    receive(shared, cluster, request).await
}

async fn audit_cluster(
    State(shared): State<Arc<Shared>>,
    UrlPath(cluster): UrlPath<String>,
    request: Request,
) -> Response {
    receive(shared, cluster, request).await
}

/// One batch: admitted, its body read, taken in by the audit intake, queued. 200 once all of it is queued.
async fn receive(shared: Arc<Shared>, cluster: String, request: Request) -> Response {
    let metrics = &shared.metrics;
    metrics.requests.fetch_add(1, Relaxed);
    let (parts, body) = request.into_parts();
    let _reading = match shared.admit(&parts) {
        Ok(permit) => permit,
        Err(refusal) => {
            if refusal.drains_body() {
                discard(body, shared.body_limit, shared.read_timeout).await;
            }
            return refuse(refusal, metrics);
        }
    };
    let peer = parts
        .extensions
        .get::<PeerAddr>()
        .map(|p| p.0.to_string())
        .unwrap_or_else(|| "unknown client".to_owned());
    let taken = match read_body(body, shared.body_limit, shared.read_timeout).await {
        // The body is dropped here, before its activities take room in the queue.
        Ok(bytes) => take_batch(&shared.intake, &bytes, &cluster, &peer, metrics)
            .map(|batch| (batch, bytes.len())),
        Err(refusal) => Err(refusal),
    };
    let queued =
        taken.and_then(|(batch, body_bytes)| batch.enqueue(&shared.queue, body_bytes, metrics));
    match queued {
        Ok(()) => {
            metrics.batches_accepted.fetch_add(1, Relaxed);
            plain(StatusCode::OK, "ok")
        }
        Err(refusal) => refuse(refusal, metrics),
    }
}

fn refuse(refusal: Refusal, metrics: &WebhookMetrics) -> Response {
    refusal.count(metrics);
    refusal.into_response()
}

/// What one body held, taken in: activities to queue, malformed events to report.
#[derive(Debug, Default)]
struct TakenBatch {
    records: Vec<Record>,
    rejections: Vec<Rejection>,
}

/// The audit intake of one body from `peer`: its events, counted as received and skipped in `metrics`, their
/// activities and the rejections of malformed ones (origin `webhook PEER item N`). A body that is not an audit
/// `Event`/`EventList` is refused, its [`RejectReason`](crate::audit_intake::RejectReason) in the answer.
fn take_batch(
    intake: &AuditIntake,
    body: &[u8],
    cluster: &str,
    peer: &str,
    metrics: &WebhookMetrics,
) -> Result<TakenBatch, Refusal> {
    let items = intake.take(body, cluster).map_err(|rejection| {
        debug!(%peer, %rejection, "audit webhook: unusable body");
        Refusal::Malformed(format!(
            "not an audit EventList ({}): {}",
            rejection.reason, rejection.detail
        ))
    })?;
    metrics
        .events_received
        .fetch_add(items.len() as u64, Relaxed);
    let mut batch = TakenBatch {
        records: Vec::with_capacity(items.len()),
        rejections: Vec::new(),
    };
    let mut skipped = 0u64;
    for (index, item) in items.enumerate() {
        match item {
            AuditItem::Activity(activity) => batch.records.push(Record::Activity(activity)),
            AuditItem::Skipped(_) => skipped += 1,
            AuditItem::Rejected(rejection) => batch
                .rejections
                .push(rejection.into_rejection(format!("webhook {peer} item {index}"))),
        }
    }
    metrics.events_skipped.fetch_add(skipped, Relaxed);
    Ok(batch)
}

impl TakenBatch {
    /// Queues the batch (nothing to queue when it has neither activities nor rejections), holding room for a
    /// body of `body_bytes`; counts what was accepted.
    fn enqueue(
        self,
        queue: &BatchQueue,
        body_bytes: usize,
        metrics: &WebhookMetrics,
    ) -> Result<(), Refusal> {
        if self.records.is_empty() && self.rejections.is_empty() {
            return Ok(());
        }
        let (count, invalid) = (self.records.len() as u64, self.rejections.len() as u64);
        queue.push(self.records, self.rejections, body_bytes, metrics)?;
        metrics.events_invalid.fetch_add(invalid, Relaxed);
        metrics.events_accepted.fetch_add(count, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_audit_is_refused_with_its_reason() {
        let metrics = WebhookMetrics::default();
        let intake = AuditIntake::default();
        for (body, reason) in [
            ("this is not JSON", "invalid JSON"),
            (
                r#"{"kind":"PodList","apiVersion":"v1","items":[]}"#,
                "not an audit event",
            ),
            (
                r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1"}"#,
                "invalid audit event",
            ),
        ] {
            match take_batch(&intake, body.as_bytes(), "c", "peer", &metrics) {
                Err(Refusal::Malformed(text)) => {
                    assert!(
                        text.starts_with(&format!("not an audit EventList ({reason}): ")),
                        "{text}"
                    );
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(metrics.snapshot().events_received, 0);
    }

    #[test]
    fn malformed_events_are_rejected_with_their_item() {
        let metrics = WebhookMetrics::default();
        let body = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[
            {"auditID":"a","verb":"get","stage":"ResponseComplete"},
            {"auditID":"b","verb":"create"}]}"#;
        let batch = take_batch(
            &AuditIntake::default(),
            body.as_bytes(),
            "c",
            "peer",
            &metrics,
        )
        .unwrap_or_default();
        assert!(batch.records.is_empty());
        assert_eq!(batch.rejections.len(), 1);
        assert_eq!(batch.rejections[0].origin, "webhook peer item 1");
        assert_eq!(batch.rejections[0].reason, "invalid audit event");
        let counts = metrics.snapshot();
        assert_eq!((counts.events_received, counts.events_skipped), (2, 1));
    }
}
