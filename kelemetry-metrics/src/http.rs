//! The routes: `/metrics` ([`metrics_router`]), and `/healthz` and `/readyz` ([`health_router`]); and
//! [`ServeCollector`], the counters of `kelemetry serve`'s connection and query limits.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kelemetry_query::http::ServeMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::{CONTENT_TYPE, Metrics, encode};

/// `GET /metrics`: `metrics` in the Prometheus text format (version 0.0.4).
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                match metrics.render() {
                    Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
                    Err(err) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the metrics could not be written: {err}\n"),
                    )
                        .into_response(),
                }
            }
        }),
    )
}

/// Whether the process is ready: `Ok`, or why not.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// `GET /healthz`: 200 `ok` while the process answers. `GET /readyz`: 200 `ready` when `ready` says so, else 503
/// with its reason.
pub fn health_router(ready: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move { readiness_answer(ready()) }
            }),
        )
}

fn readiness_answer(ready: Result<(), String>) -> Response {
    match ready {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// The counters of `kelemetry serve` ([`ServeMetrics`]): connections and the requests its limits cut.
#[derive(Debug)]
pub struct ServeCollector {
    counters: Arc<ServeMetrics>,
}

impl ServeCollector {
    /// Reads `counters` (given to the server with `ServeOptions::with_counters`).
    pub fn new(counters: Arc<ServeMetrics>) -> Self {
        Self { counters }
    }
}

impl Collector for ServeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = self.counters.snapshot();
        let e = &mut encoder;
        encode::counter(
            e,
            "kelemetry_serve_connections_accepted",
            "Connections the server accepted.",
            c.accepted,
        )?;
        encode::counter(
            e,
            "kelemetry_serve_connections_refused",
            "Connections refused at once: over a limit with every connection in use.",
            c.refused,
        )?;
        encode::counters(
            e,
            "kelemetry_serve_connections_closed",
            "Connections the server closed, by reason: room (an idle one, for a newcomer) or timeout.",
            [("room", c.closed_for_room), ("timeout", c.idle_closed)]
                .map(|(reason, n)| ([("reason", reason)], n)),
        )?;
        encode::counters(
            e,
            "kelemetry_serve_requests_refused",
            "Requests the limits refused, by reason: busy (503, as many heavy queries ran), over_budget (422), \
             over_time (503), unauthorized (401).",
            [
                ("busy", c.busy),
                ("over_budget", c.over_budget),
                ("over_time", c.over_time),
                ("unauthorized", c.unauthorized),
            ]
            .map(|(reason, n)| ([("reason", reason)], n)),
        )
    }
}
