//! The HTTP API in Jaeger's JSON shape (docs/behaviour/query-api.md#http-api), over a [`TraceQuery`]:
//!
//! - `GET /api/services`: the display-mode names, the default first;
//! - `GET /api/operations?service=` and `GET /api/services/{service}/operations`: the clusters in the store;
//! - `GET /api/traces?service=&operation=&tags=&start=&end=&limit=`: search (`tags` a JSON object as the Jaeger UI
//!   sends it, or repeated `tag=key:value`; `start`/`end` in microseconds);
//! - `GET /api/traces/{id}`: one trace, in the mode its digits 3–10 name;
//! - `GET /api/diagnose/{id}`: the findings about the objects of the view a trace id stands for; `GET
//!   /api/diagnose?cluster=&resource=&namespace=&name=&start=&end=&fullTree=`: about one object (and its tree);
//!   both answer `{"data": [findings], ...}` (docs/diagnose.md);
//! - `GET /redirect?cluster=&resource=&namespace=&name=&ts=`: `302` to `/trace/<id>` when exactly one view
//!   matches, a placeholder trace when none, `409` when several;
//! - `GET /`, `/trace/{id}`, `/viewer.js`, `/viewer.css`: the web viewer ([`crate::viewer`]);
//! - `GET /healthz`: `ok` (with [`serve_with`]; no token needed).
//!
//! [`serve_with`] serves it within [`ServeLimits`]: connections bounded in all and per client (an idle one makes
//! room for a newcomer), closed when silent past a head or idle timeout; searches, traces and redirects (the
//! heavy requests) limited in number at once (503 with `Retry-After` beyond), each within a [`QueryBudget`] of
//! spans and bytes read (422 beyond) and a time budget (503 beyond), the answers saying which budget and how to
//! narrow the query; optionally behind a bearer token and TLS.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use jiff::Timestamp;
use tokio::sync::Semaphore;

use crate::budget::{OverBudget, QueryBudget};
use crate::display::DisplayMode;
use crate::jaeger_json::{Operation, Response, Trace};
use crate::trace_query::{FindQuery, QueryError, RedirectTarget, TraceQuery, search_selector};

/// The router of the API and the web viewer. Serve it with `axum::serve`.
pub fn router(query: Arc<TraceQuery>) -> Router {
    heavy_routes(Arc::clone(&query)).merge(light_routes(query))
}

/// The routes that assemble views: search, trace, redirect.
fn heavy_routes(query: Arc<TraceQuery>) -> Router {
    Router::new()
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{id}", get(get_trace))
        .route("/api/diagnose", get(diagnose_object))
        .route("/api/diagnose/{id}", get(diagnose_trace))
        .route("/redirect", get(redirect))
        .with_state(query)
}

/// The others: services, operations, the web viewer.
fn light_routes(query: Arc<TraceQuery>) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/operations", get(operations))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .with_state(query)
        .merge(crate::viewer::router())
}

type Params = Vec<(String, String)>;

fn answer<T: serde::Serialize>(status: StatusCode, body: Response<T>) -> HttpResponse {
    (status, Json(body)).into_response()
}

fn failure(code: u16, msg: impl Into<String>) -> HttpResponse {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer::<()>(status, Response::error(code, msg))
}

/// The answer to a failed query; a query over its [`QueryBudget`] gets 422 saying so and how to narrow it.
fn query_failure(err: &QueryError) -> HttpResponse {
    if let Some(over) = OverBudget::find(err) {
        return failure(
            422,
            format!(
                "{over}; the query was stopped. Narrow it: a shorter time range (start, end), fewer results \
                 (limit), a more specific search (namespace, name tags), or a display mode that follows fewer links"
            ),
        );
    }
    failure(err.status(), err.to_string())
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

async fn services() -> HttpResponse {
    let names: Vec<String> = DisplayMode::all().iter().map(ToString::to_string).collect();
    let total = names.len();
    answer(StatusCode::OK, Response::ok(names, total))
}

async fn operations(
    State(query): State<Arc<TraceQuery>>,
    Query(params): Query<Params>,
) -> HttpResponse {
    if let Some(service) = param(&params, "service")
        && DisplayMode::from_name(service).is_none()
    {
        return failure(404, format!("unknown display mode {service:?}"));
    }
    match query.clusters().await {
        Ok(clusters) => {
            let operations: Vec<Operation> = clusters
                .into_iter()
                .map(|name| Operation {
                    name,
                    span_kind: String::new(),
                })
                .collect();
            let total = operations.len();
            answer(StatusCode::OK, Response::ok(operations, total))
        }
        Err(err) => query_failure(&err),
    }
}

async fn service_operations(
    State(query): State<Arc<TraceQuery>>,
    Path(service): Path<String>,
) -> HttpResponse {
    if DisplayMode::from_name(&service).is_none() {
        return failure(404, format!("unknown display mode {service:?}"));
    }
    match query.clusters().await {
        Ok(clusters) => {
            let total = clusters.len();
            answer(StatusCode::OK, Response::ok(clusters, total))
        }
        Err(err) => query_failure(&err),
    }
}

/// Microseconds since the epoch, as Jaeger sends `start` and `end`.
fn micros_param(params: &Params, name: &str) -> Result<Option<Timestamp>, String> {
    let Some(text) = param(params, name) else {
        return Ok(None);
    };
    let micros: i64 = text
        .parse()
        .map_err(|e| format!("{name}={text:?} is not microseconds since the epoch: {e}"))?;
    Timestamp::from_microsecond(micros)
        .map(Some)
        .map_err(|e| format!("{name}={text:?}: {e}"))
}

/// The search of a `/api/traces` request.
fn find_query(params: &Params) -> Result<FindQuery, String> {
    let mode = match param(params, "service") {
        None => DisplayMode::DEFAULT,
        Some(name) => DisplayMode::from_name(name)
            .ok_or_else(|| format!("unknown display mode {name:?}; /api/services lists them"))?,
    };
    let mut tags = BTreeMap::new();
    if let Some(json) = param(params, "tags") {
        let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|e| format!("tags={json:?} is not a JSON object of strings: {e}"))?;
        for (key, value) in object {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            tags.insert(key, value);
        }
    }
    for (name, value) in params {
        if name == "tag" {
            let (key, value) = value
                .split_once(':')
                .ok_or_else(|| format!("tag={value:?} is not key:value"))?;
            tags.insert(key.to_owned(), value.to_owned());
        }
    }
    let limit = match param(params, "limit") {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|e| format!("limit={text:?} is not a count: {e}"))?,
    };
    let objects = search_selector(
        param(params, "operation"),
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(|e| e.to_string())?;
    Ok(FindQuery::new(mode, objects)
        .with_range(
            micros_param(params, "start")?.unwrap_or(Timestamp::MIN),
            micros_param(params, "end")?.unwrap_or(Timestamp::MAX),
        )
        .with_limit(limit))
}

/// The search a `/api/traces` request's query parameters ask for, or the message of its 400 answer: what the
/// handler runs. For the fuzz targets (`fuzz/`); not part of the API.
#[doc(hidden)]
pub fn parse_find_query(params: Vec<(String, String)>) -> Result<FindQuery, String> {
    find_query(&params)
}

async fn find_traces(
    State(query): State<Arc<TraceQuery>>,
    Query(params): Query<Params>,
) -> HttpResponse {
    let find = match find_query(&params) {
        Ok(find) => find,
        Err(msg) => return failure(400, msg),
    };
    match query.find(&find).await {
        Ok(traces) => {
            let traces: Vec<Trace> = traces.iter().map(Trace::from).collect();
            let total = traces.len();
            answer(StatusCode::OK, Response::ok(traces, total))
        }
        Err(err) => query_failure(&err),
    }
}

async fn get_trace(State(query): State<Arc<TraceQuery>>, Path(id): Path<String>) -> HttpResponse {
    let Ok(trace_id) = u128::from_str_radix(id.trim(), 16) else {
        return failure(400, format!("{id:?} is not a hexadecimal trace id"));
    };
    match query.get(trace_id).await {
        Ok(trace) => answer(StatusCode::OK, Response::ok(vec![Trace::from(&trace)], 1)),
        Err(err) => query_failure(&err),
    }
}

async fn diagnose_trace(
    State(query): State<Arc<TraceQuery>>,
    Path(id): Path<String>,
) -> HttpResponse {
    let Ok(trace_id) = u128::from_str_radix(id.trim(), 16) else {
        return failure(400, format!("{id:?} is not a hexadecimal trace id"));
    };
    match query.diagnose_trace(trace_id).await {
        Ok(findings) => {
            let total = findings.len();
            answer(StatusCode::OK, Response::ok(findings, total))
        }
        Err(err) => query_failure(&err),
    }
}

async fn diagnose_object(
    State(query): State<Arc<TraceQuery>>,
    Query(params): Query<Params>,
) -> HttpResponse {
    let mut tags = Vec::new();
    for field in ["resource", "namespace", "name", "group"] {
        if let Some(value) = param(&params, field) {
            tags.push((field, value));
        }
    }
    if param(&params, "resource").is_none() || param(&params, "name").is_none() {
        return failure(
            400,
            "/api/diagnose needs resource= and name= (and namespace= for namespaced objects)",
        );
    }
    let objects = match search_selector(param(&params, "cluster"), tags) {
        Ok(objects) => objects,
        Err(err) => return query_failure(&err),
    };
    let time = |name: &str, default: Timestamp| match param(&params, name) {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .and_then(|micros| Timestamp::from_microsecond(micros).ok())
            .or_else(|| text.parse::<Timestamp>().ok())
            .ok_or_else(|| {
                format!("{name}={text:?} is neither microseconds since the epoch nor RFC 3339")
            }),
    };
    let (from, to) = match (time("start", Timestamp::MIN), time("end", Timestamp::MAX)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return failure(400, e),
    };
    let full_tree = matches!(param(&params, "fullTree"), Some("true" | "1"));
    match query.diagnose_object(&objects, from, to, full_tree).await {
        Ok(findings) => {
            let total = findings.len();
            answer(StatusCode::OK, Response::ok(findings, total))
        }
        Err(err) => query_failure(&err),
    }
}

async fn redirect(
    State(query): State<Arc<TraceQuery>>,
    Query(params): Query<Params>,
) -> HttpResponse {
    let required = |name: &str| {
        param(&params, name)
            .map(str::to_owned)
            .ok_or_else(|| format!("/redirect needs {name}="))
    };
    let (cluster, resource, name) =
        match (required("cluster"), required("resource"), required("name")) {
            (Ok(c), Ok(r), Ok(n)) => (c, r, n),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(400, e),
        };
    let namespace = param(&params, "namespace").unwrap_or_default();
    let at = match param(&params, "ts") {
        None => Timestamp::now(),
        Some(text) => match text.parse::<Timestamp>() {
            Ok(at) => at,
            Err(e) => return failure(400, format!("ts={text:?} is not an RFC 3339 time: {e}")),
        },
    };
    match query
        .redirect(&cluster, &resource, namespace, &name, at)
        .await
    {
        Ok(RedirectTarget::One(trace_id)) => {
            let location = format!("/trace/{trace_id:032x}");
            match HeaderValue::from_str(&location) {
                Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
                Err(e) => failure(500, e.to_string()),
            }
        }
        Ok(RedirectTarget::None(trace)) => {
            answer(StatusCode::OK, Response::ok(vec![Trace::from(&trace)], 1))
        }
        Ok(RedirectTarget::Many(count)) => failure(
            409,
            format!(
                "{count} separate traces match {resource} {namespace}/{name} in {cluster} around {at}; use the search"
            ),
        ),
        Err(err) => query_failure(&err),
    }
}

/// Serves [`router`] on `listener` until `shutdown` completes, with the default [`ServeOptions`]: the
/// [`ServeLimits`] defaults, no token, no TLS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    query: Arc<TraceQuery>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, query, ServeOptions::default(), shutdown).await;
    Ok(())
}

/// Serves [`router`] on `listener` until `shutdown` completes, as `options` say (see the module documentation).
/// Returns what the limits cut.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    query: Arc<TraceQuery>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> ServeCounts {
    let metrics = options.counters.clone().unwrap_or_default();
    let app = guarded_router(query, &options, Arc::clone(&metrics));
    serve_app(listener, app, options, metrics, shutdown).await
}

/// Serves `routes` (e.g. a metrics endpoint) on `listener` until `shutdown` completes, within the same
/// connection limits, token and TLS as [`serve_with`] (the query limits do not apply: there are no heavy routes).
/// Returns what the limits cut.
pub async fn serve_routes(
    listener: tokio::net::TcpListener,
    routes: Router,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> ServeCounts {
    let metrics = options.counters.clone().unwrap_or_default();
    let app = with_token(routes, &options, &metrics);
    serve_app(listener, app, options, metrics, shutdown).await
}

/// Serves `app` within the connection limits and TLS of `options`, counting into `metrics`, until `shutdown`.
async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    options: ServeOptions,
    metrics: Arc<ServeMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> ServeCounts {
    connections::serve_connections(
        listener,
        app,
        options.tls,
        &options.limits,
        Arc::clone(&metrics),
        shutdown,
    )
    .await;
    metrics.snapshot()
}

mod connections;

/// Default most connections open at once.
const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default most connections open from one client address.
const DEFAULT_PER_PEER: usize = 64;
/// Default most heavy requests (search, trace, redirect) answered at once.
const DEFAULT_HEAVY_QUERIES: usize = 4;
/// Default most spans one query may read.
const DEFAULT_QUERY_SPANS: usize = 100_000;
/// Default most bytes (approximately, in memory) of spans one query may read.
const DEFAULT_QUERY_BYTES: usize = 64 << 20;

/// How [`serve_with`] protects the server from slow, silent, greedy and heavy clients.
///
/// Memory: a query holds at most [`query_budget`](Self::query_budget) of spans read (plus one chunk of 32 traces
/// read past it before it is stopped), and what it builds from them (the assembled tree, the displayed trace and
/// its JSON, a few times the spans' size); [`heavy_queries`](Self::heavy_queries) of them run at once. With the
/// defaults that is 4 x 64 MiB of spans read, which keeps the process under 1 GiB whatever is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeLimits {
    /// Most connections open at once; a further one takes the place of the connection idle the longest, or is
    /// closed at once when every connection has a request in flight.
    pub max_connections: usize,
    /// Most connections open from one client address (same rule).
    pub per_peer: usize,
    /// Time a new connection has to send its first request head.
    pub head_timeout: Duration,
    /// Time a connection may stay without a request in flight once it has made one.
    pub idle_timeout: Duration,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Most heavy requests (search, trace, redirect) answered at once; more get 503 with `Retry-After`.
    pub heavy_queries: usize,
    /// What one heavy request may read; beyond it, 422.
    pub query_budget: QueryBudget,
    /// Time one heavy request may take; beyond it, 503.
    pub query_time: Duration,
}

impl Default for ServeLimits {
    /// 256 connections, 64 per client, a head timeout of 10 s, an idle timeout of 60 s, a handshake timeout of
    /// 10 s; 4 heavy requests at once, each within 100,000 spans, 64 MiB and 15 s.
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            per_peer: DEFAULT_PER_PEER,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            heavy_queries: DEFAULT_HEAVY_QUERIES,
            query_budget: QueryBudget::new(DEFAULT_QUERY_SPANS, DEFAULT_QUERY_BYTES),
            query_time: Duration::from_secs(15),
        }
    }
}

/// How [`serve_with`] serves: its [`ServeLimits`], an optional bearer token, optional TLS.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The limits.
    pub limits: ServeLimits,
    /// When set, every request but `GET /healthz` must carry `Authorization: Bearer TOKEN` (401 otherwise). The
    /// web viewer sends none: use it through a proxy that adds the header.
    pub token: Option<String>,
    /// Serve HTTPS with this acceptor (for example `kelemetry_sources::webhook::TlsFiles::acceptor`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// More routes beside the API, behind the token when there is one (e.g. `/metrics`).
    pub routes: Option<Router>,
    /// The counters to count in (default: new ones), so that they can be read while serving.
    pub counters: Option<Arc<ServeMetrics>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("limits", &self.limits)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tls", &self.tls.is_some())
            .field("routes", &self.routes.is_some())
            .finish_non_exhaustive()
    }
}

impl ServeOptions {
    /// These limits, no token, no TLS.
    pub fn new(limits: ServeLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Serves `routes` too, beside the API.
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.routes = Some(routes);
        self
    }

    /// Counts in `counters`, which can be read while serving ([`ServeMetrics::snapshot`]).
    pub fn with_counters(mut self, counters: Arc<ServeMetrics>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Requires `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Serves HTTPS.
    pub fn with_tls(mut self, tls: tokio_rustls::TlsAcceptor) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// The counters of [`serve_with`] and [`serve_routes`]: give them in [`ServeOptions::with_counters`] to read them
/// while serving.
#[derive(Debug, Default)]
pub struct ServeMetrics {
    accepted: AtomicU64,
    refused: AtomicU64,
    closed_for_room: AtomicU64,
    idle_closed: AtomicU64,
    busy: AtomicU64,
    over_budget: AtomicU64,
    over_time: AtomicU64,
    unauthorized: AtomicU64,
}

impl ServeMetrics {
    /// A copy of the counters now.
    pub fn snapshot(&self) -> ServeCounts {
        ServeCounts {
            accepted: self.accepted.load(Relaxed),
            refused: self.refused.load(Relaxed),
            closed_for_room: self.closed_for_room.load(Relaxed),
            idle_closed: self.idle_closed.load(Relaxed),
            busy: self.busy.load(Relaxed),
            over_budget: self.over_budget.load(Relaxed),
            over_time: self.over_time.load(Relaxed),
            unauthorized: self.unauthorized.load(Relaxed),
        }
    }
}

/// What the limits of [`serve_with`] cut, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused (closed at once): over a limit, every connection with a request in flight.
    pub refused: u64,
    /// Idle connections closed to make room for a newcomer.
    pub closed_for_room: u64,
    /// Connections closed after their head or idle timeout.
    pub idle_closed: u64,
    /// Heavy requests answered 503 because as many were running.
    pub busy: u64,
    /// Heavy requests answered 422 for reading more than their budget.
    pub over_budget: u64,
    /// Heavy requests answered 503 for taking longer than their time budget.
    pub over_time: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
}

/// One line: connections, then requests cut by reason.
impl std::fmt::Display for ServeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections accepted, {} refused, {} idle ones closed to make room, {} closed after their timeout; \
             heavy requests refused {} times while others ran, {} over their budget, {} over their time; {} \
             unauthorized",
            self.accepted,
            self.refused,
            self.closed_for_room,
            self.idle_closed,
            self.busy,
            self.over_budget,
            self.over_time,
            self.unauthorized,
        )
    }
}

/// What the heavy requests share: the slots and the budgets.
#[derive(Debug)]
struct Heavy {
    slots: Semaphore,
    at_once: usize,
    budget: QueryBudget,
    time: Duration,
    metrics: Arc<ServeMetrics>,
}

/// [`router`] with its heavy routes gated, behind the token when there is one, and `/healthz`.
fn guarded_router(
    query: Arc<TraceQuery>,
    options: &ServeOptions,
    metrics: Arc<ServeMetrics>,
) -> Router {
    let limits = &options.limits;
    let heavy = Arc::new(Heavy {
        slots: Semaphore::new(limits.heavy_queries.max(1)),
        at_once: limits.heavy_queries.max(1),
        budget: limits.query_budget,
        time: limits.query_time,
        metrics: Arc::clone(&metrics),
    });
    let mut app = heavy_routes(Arc::clone(&query))
        .layer(middleware::from_fn_with_state(heavy, heavy_gate))
        .merge(light_routes(query));
    if let Some(routes) = options.routes.clone() {
        app = app.merge(routes);
    }
    with_token(app, options, &metrics).route("/healthz", get(|| async { "ok\n" }))
}

/// `app` behind the token of `options`, when there is one.
fn with_token(app: Router, options: &ServeOptions, metrics: &Arc<ServeMetrics>) -> Router {
    match options.token.clone() {
        Some(token) => {
            let token = Arc::new(Token {
                token,
                metrics: Arc::clone(metrics),
            });
            app.layer(middleware::from_fn_with_state(token, require_token))
        }
        None => app,
    }
}

/// A heavy request: a slot or 503, then the handler within the query budget and the time budget.
async fn heavy_gate(State(heavy): State<Arc<Heavy>>, request: Request, next: Next) -> HttpResponse {
    let Ok(_slot) = heavy.slots.try_acquire() else {
        heavy.metrics.busy.fetch_add(1, Relaxed);
        return retry_later(format!(
            "{} heavy requests (searches, traces, redirects) are running, the most this server answers at once; \
             try again in a moment",
            heavy.at_once
        ));
    };
    let answer = tokio::time::timeout(heavy.time, heavy.budget.scope(next.run(request))).await;
    match answer {
        Ok(answer) => {
            if answer.status() == StatusCode::UNPROCESSABLE_ENTITY {
                heavy.metrics.over_budget.fetch_add(1, Relaxed);
            }
            answer
        }
        Err(_) => {
            heavy.metrics.over_time.fetch_add(1, Relaxed);
            retry_later(format!(
                "the query took longer than its time budget of {:?} and was stopped. Narrow it: a shorter time \
                 range (start, end), fewer results (limit), a more specific search (namespace, name tags), or a \
                 display mode that follows fewer links",
                heavy.time
            ))
        }
    }
}

/// 503 with `Retry-After: 1` and `message` in Jaeger's error shape.
fn retry_later(message: String) -> HttpResponse {
    let mut answer = failure(503, message);
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    answer
}

/// The bearer token requests must carry.
#[derive(Debug)]
struct Token {
    token: String,
    metrics: Arc<ServeMetrics>,
}

/// 401 unless the request carries the token.
async fn require_token(
    State(token): State<Arc<Token>>,
    request: Request,
    next: Next,
) -> HttpResponse {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(|value| {
            let scheme = value.get(..7)?;
            scheme
                .eq_ignore_ascii_case(b"bearer ")
                .then(|| value[7..].trim_ascii())
        });
    if given.is_some_and(|given| same_secret(given, token.token.as_bytes())) {
        return next.run(request).await;
    }
    token.metrics.unauthorized.fetch_add(1, Relaxed);
    let mut answer = failure(
        401,
        "a bearer token is required (Authorization: Bearer TOKEN)",
    );
    answer
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    answer
}

/// Compares without an early exit, so response times do not tell how much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        difference |= usize::from(given.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}
