//! The HTTP API in Jaeger's JSON shape (docs/behaviour/query-api.md#http-api), over a [`TraceQuery`]:
//!
//! - `GET /api/services`: the display-mode names, the default first;
//! - `GET /api/operations?service=` and `GET /api/services/{service}/operations`: the clusters in the store;
//! - `GET /api/traces?service=&operation=&tags=&start=&end=&limit=`: search (`tags` a JSON object as the Jaeger UI
//!   sends it, or repeated `tag=key:value`; `start`/`end` in microseconds);
//! - `GET /api/traces/{id}`: one trace, in the mode its digits 3–10 name;
//! - `GET /redirect?cluster=&resource=&namespace=&name=&ts=`: `302` to `/trace/<id>` when exactly one view
//!   matches, a placeholder trace when none, `409` when several;
//! - `GET /`, `/trace/{id}`, `/viewer.js`, `/viewer.css`: the web viewer ([`crate::viewer`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use jiff::Timestamp;

use crate::display::DisplayMode;
use crate::jaeger_json::{Operation, Response, Trace};
use crate::trace_query::{FindQuery, QueryError, RedirectTarget, TraceQuery, search_selector};

/// The router of the API and the web viewer. Serve it with `axum::serve`.
pub fn router(query: Arc<TraceQuery>) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/operations", get(operations))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/traces", get(find_traces))
        .route("/api/traces/{id}", get(get_trace))
        .route("/redirect", get(redirect))
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

fn query_failure(err: &QueryError) -> HttpResponse {
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

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    query: Arc<TraceQuery>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(query))
        .with_graceful_shutdown(shutdown)
        .await
}
