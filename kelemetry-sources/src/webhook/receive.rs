//! The webhook's routes, and [`receive`]: one audit batch through admission, body read, intake, room in the
//! queue, the write-ahead log (when there is one) and the queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kelemetry_core::{NotDelivered, Record, Rejection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::debug;

use super::admission::{
    Refusal, authenticate, check_declared_length, check_room, discard, plain, read_body,
};
use super::queue::BatchQueue;
use super::wal::{AppendError, SegmentId, WalHandle};
use super::{Acknowledge, ReadinessCheck, WebhookConfig, WebhookMetrics};
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
    queue_wait: Duration,
    wal: Option<WalHandle>,
    acknowledge: Acknowledge,
    reads: Arc<Semaphore>,
    read_slot_wait: Duration,
    readiness: Option<ReadinessCheck>,
    accepting: AtomicBool,
    metrics: Arc<WebhookMetrics>,
}

impl Shared {
    /// The handlers' state for `config`, queueing into `queue` after writing ahead into `wal` when given.
    pub(super) fn new(
        config: &WebhookConfig,
        queue: BatchQueue,
        wal: Option<WalHandle>,
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
            queue_wait: config.queue_wait,
            wal,
            acknowledge: config.acknowledge,
            reads: Arc::new(Semaphore::new(config.concurrent_reads)),
            read_slot_wait: config.connections.read_slot_wait,
            readiness: config.readiness.clone(),
            accepting: AtomicBool::new(true),
            metrics,
        }
    }

    /// New batches get 503 from now on; the health check says so.
    pub(super) fn stop_accepting(&self) {
        self.accepting.store(false, Relaxed);
    }

    /// Admission, before the body is read: shutting down, authentication, declared length, room in the queue,
    /// and a slot for reading the body (held until the batch is queued or refused; waited for in arrival order, at
    /// most the configured wait).
    async fn admit(&self, parts: &Parts) -> Result<OwnedSemaphorePermit, Refusal> {
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
        if self.wal.as_ref().is_some_and(WalHandle::is_full) {
            self.metrics.wal_full.fetch_add(1, Relaxed);
            return Err(Refusal::Throttled(WAL_FULL));
        }
        match tokio::time::timeout(self.read_slot_wait, Arc::clone(&self.reads).acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => {
                self.metrics
                    .connections
                    .read_slot_timeouts
                    .fetch_add(1, Relaxed);
                Err(Refusal::Throttled("too many batches being read"))
            }
        }
    }
}

/// The client's address, put into each request's extensions by the connection.
#[derive(Copy, Clone, Debug)]
pub(super) struct PeerAddr(pub(super) SocketAddr);

/// `GET /healthz`, `GET /readyz`, `POST /audit` and `POST /audit/{cluster}`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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

/// `ready`, or 503 with the reason: shutting down, or what the [`ReadinessCheck`] says.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if !shared.accepting.load(Relaxed) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down");
    }
    match shared
        .readiness
        .as_ref()
        .map_or(Ok(()), ReadinessCheck::check)
    {
        Ok(()) => plain(StatusCode::OK, "ready"),
        Err(reason) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
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

/// What a 429 for a full write-ahead log says.
const WAL_FULL: &str = "write-ahead log full";

/// One batch: admitted, its body read, taken in by the audit intake, written ahead, queued. 200 once all of it is
/// queued (and, with a write-ahead log, its body synced to disk).
async fn receive(shared: Arc<Shared>, cluster: String, request: Request) -> Response {
    let metrics = &shared.metrics;
    metrics.requests.fetch_add(1, Relaxed);
    let (parts, body) = request.into_parts();
    let _reading = match shared.admit(&parts).await {
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
    let queued = match read_body(body, shared.body_limit, shared.read_timeout).await {
        Ok(bytes) => match take_batch(&shared.intake, &bytes, &cluster, &peer, metrics) {
            Ok(batch) => batch.enqueue(&shared, &cluster, bytes, metrics).await,
            Err(refusal) => Err(refusal),
        },
        Err(refusal) => Err(refusal),
    };
    // `acknowledge: delivered`: the answer waits until the pipeline delivered the whole batch.
    let queued = match queued {
        Ok(Some(delivered)) => match delivered.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(lost)) => Err(Refusal::NotDelivered(lost.to_string())),
            Err(_) => Err(Refusal::NotDelivered("the pipeline stopped".to_owned())),
        },
        Ok(None) => Ok(()),
        Err(refusal) => Err(refusal),
    };
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

/// The webhook's handling of one POSTed body for `cluster`, without the HTTP server, with the default audit
/// mapping: the records it would queue and the rejections it would report, or the message of its 400 answer.
/// Counts into `metrics` as a request does. For the fuzz targets (`fuzz/`); not part of the API.
#[doc(hidden)]
pub fn take_body(
    body: &[u8],
    cluster: &str,
    metrics: &WebhookMetrics,
) -> Result<(Vec<Record>, Vec<Rejection>), String> {
    match take_batch(&AuditIntake::default(), body, cluster, "fuzz", metrics) {
        Ok(batch) => Ok((batch.records, batch.rejections)),
        Err(Refusal::Malformed(message)) => Err(message),
        Err(other) => Err(format!("{other:?}")),
    }
}

impl TakenBatch {
    /// Queues the batch (nothing to queue when it has neither activities nor rejections), holding room for its
    /// `body`; with a write-ahead log, a batch with activities is first written ahead (the body is dropped then).
    /// Counts what was accepted. With `acknowledge: delivered` and no write-ahead log, returns what tells when the
    /// batch was delivered.
    async fn enqueue(
        self,
        shared: &Shared,
        cluster: &str,
        body: Bytes,
        metrics: &WebhookMetrics,
    ) -> Result<Option<oneshot::Receiver<Result<(), NotDelivered>>>, Refusal> {
        if self.records.is_empty() && self.rejections.is_empty() {
            return Ok(None);
        }
        let (count, invalid) = (self.records.len() as u64, self.rejections.len() as u64);
        // Room first: once the body is on disk, the batch must be answered 200.
        let room = shared
            .queue
            .reserve(self.records.len(), body.len(), shared.queue_wait)
            .await?;
        let segment = match &shared.wal {
            Some(wal) if count > 0 => Some(write_ahead(wal, cluster, &body, metrics).await?),
            _ => None,
        };
        drop(body);
        let (answer, delivered) = match (&segment, shared.acknowledge) {
            (None, Acknowledge::Delivered) if count > 0 => {
                let (answer, delivered) = oneshot::channel();
                (Some(answer), Some(delivered))
            }
            _ => (None, None),
        };
        shared.queue.push(
            room,
            self.records,
            self.rejections,
            segment,
            answer,
            metrics,
        )?;
        metrics.events_invalid.fetch_add(invalid, Relaxed);
        metrics.events_accepted.fetch_add(count, Relaxed);
        Ok(delivered)
    }
}

/// Writes `body` (posted for `cluster`) to the write-ahead log and waits until it is synced.
async fn write_ahead(
    wal: &WalHandle,
    cluster: &str,
    body: &[u8],
    metrics: &WebhookMetrics,
) -> Result<SegmentId, Refusal> {
    if !wal.could_fit(cluster, body.len()) {
        return Err(Refusal::TooLarge(
            "the batch is larger than the write-ahead log".to_owned(),
        ));
    }
    match wal.append(cluster, body).await {
        Ok(segment) => {
            metrics.wal_batches.fetch_add(1, Relaxed);
            Ok(segment)
        }
        Err(AppendError::Full { .. }) => Err(Refusal::Throttled(WAL_FULL)),
        Err(AppendError::Closed) => Err(Refusal::ShuttingDown),
        Err(error @ AppendError::Write { .. }) => Err(Refusal::NotDurable(error.to_string())),
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
