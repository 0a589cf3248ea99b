//! [`RemoteStorage`]: Jaeger's remote storage gRPC API over [`TraceQuery`], so that a real Jaeger Query (and its
//! UI) shows Kelemetry's assembled traces, as the original plugs into Jaeger as a storage plugin
//! (docs/behaviour/query-api.md#jaeger-remote-storage).
//!
//! Jaeger v2 reads a `grpc` storage backend through the `jaeger.storage.v2.TraceReader` and
//! `jaeger.storage.v2.DependencyReader` services (the protocol is in `proto/`, generated at build time). The
//! search form maps as follows (docs/behaviour/query-api.md#search-form):
//!
//! | Jaeger | Kelemetry |
//! |---|---|
//! | services | the display modes, the default first (`tracing`, `grouped`, ..., `tracing [full tree]`, ...) |
//! | operations | the clusters |
//! | tags | `cluster`, `group`, `resource`, `namespace`, `name` |
//! | time range, limit | the range of the view, the number of views |
//!
//! Each result is one displayed trace: its id carries the display mode
//! (docs/behaviour/display-modes.md#mode-digits-in-trace-ids), so `/api/traces/{id}` of Jaeger shows the same view
//! in the mode its digits name. Every display span becomes an OTLP span whose resource
//! `service.name` is the span's service, with its tags as attributes, its logs as events (their fields as event
//! attributes) and its warnings in Jaeger's `@jaeger@warnings` attribute. Writes are not served; dependencies are
//! empty.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use jiff::Timestamp;
use kelemetry_core::otlp;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue as OtlpAnyValue, ArrayValue as OtlpArrayValue, KeyValue as OtlpKeyValue, any_value,
};
use opentelemetry_proto::tonic::trace::v1::{Span, Status as SpanStatus, TracesData, span};
use tonic::{Request, Response, Status};

use crate::display::{DisplayMode, DisplaySpan, DisplayTrace};
use crate::reader::ReadError;
use crate::trace_query::{FindQuery, QueryError, TraceQuery, search_selector};

/// The generated protocol code of `jaeger.storage.v2` (messages, clients and servers).
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod proto {
    tonic::include_proto!("jaeger.storage.v2");
}

use proto::dependency_reader_server::{DependencyReader, DependencyReaderServer};
use proto::trace_reader_server::{TraceReader, TraceReaderServer};

/// The span attribute in which Jaeger keeps a span's warnings.
pub const JAEGER_WARNINGS_ATTRIBUTE: &str = "@jaeger@warnings";

/// Default number of results of a search that asks for none.
const DEFAULT_LIMIT: usize = 20;

/// Serves `jaeger.storage.v2.TraceReader` and `DependencyReader` over a [`TraceQuery`].
#[derive(Clone, Debug)]
pub struct RemoteStorage {
    query: Arc<TraceQuery>,
}

impl RemoteStorage {
    /// Answers from `query`.
    pub fn new(query: Arc<TraceQuery>) -> Self {
        Self { query }
    }

    /// The two gRPC services, to add to a [`tonic::transport::Server`] (or to
    /// [`tonic::service::Routes`]).
    pub fn services(self) -> (TraceReaderServer<Self>, DependencyReaderServer<Self>) {
        (
            TraceReaderServer::new(self.clone()).max_encoding_message_size(64 * 1024 * 1024),
            DependencyReaderServer::new(self),
        )
    }
}

/// Serves the remote storage API on `listener` until `shutdown` completes. Point Jaeger's `grpc` storage backend
/// at the listener's address (`jaeger_storage.backends.NAME.grpc.endpoint`, `tls.insecure: true` on loopback).
pub async fn serve(
    listener: tokio::net::TcpListener,
    query: Arc<TraceQuery>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (traces, dependencies) = RemoteStorage::new(query).services();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .add_service(traces)
        .add_service(dependencies)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

type TracesStream = Pin<Box<dyn Stream<Item = Result<TracesData, Status>> + Send>>;

fn status_of(error: QueryError) -> Status {
    match error {
        QueryError::BadRequest(message) => Status::invalid_argument(message),
        QueryError::NotFound(message) => Status::not_found(message),
        QueryError::Read(ReadError::Unsupported { what }) => {
            Status::invalid_argument(format!("unsupported: {what}"))
        }
        other => Status::internal(other.to_string()),
    }
}

fn timestamp_of(t: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    let t = t?;
    Timestamp::new(t.seconds, t.nanos).ok()
}

fn proto_timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn text_of(value: Option<&proto::AnyValue>) -> String {
    use proto::any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) | None => String::new(),
    }
}

/// The search of a `TraceQueryParameters`.
pub fn find_query(params: &proto::TraceQueryParameters) -> Result<FindQuery, Status> {
    let mode = if params.service_name.is_empty() {
        DisplayMode::DEFAULT
    } else {
        DisplayMode::from_name(&params.service_name).ok_or_else(|| {
            Status::invalid_argument(format!(
                "unknown display mode {:?}; the services are the display modes",
                params.service_name
            ))
        })?
    };
    let tags: Vec<(String, String)> = params
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), text_of(kv.value.as_ref())))
        .collect();
    let objects = search_selector(
        Some(params.operation_name.as_str()),
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(status_of)?;
    Ok(FindQuery::new(mode, objects)
        .with_range(
            timestamp_of(params.start_time_min.as_ref()).unwrap_or(Timestamp::UNIX_EPOCH),
            timestamp_of(params.start_time_max.as_ref()).unwrap_or_else(Timestamp::now),
        )
        .with_limit(
            usize::try_from(params.search_depth)
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_LIMIT),
        ))
}

/// A displayed trace as OTLP: one resource per span (its service), spans in the trace's depth-first order.
pub fn traces_data(trace: &DisplayTrace) -> TracesData {
    let trace_id = trace.trace_id.to_be_bytes().to_vec();
    let resource_spans = trace
        .spans
        .iter()
        .map(|display| {
            let span = display_span(display, trace_id.clone());
            otlp::resource_spans(&display.service, &[], vec![span])
        })
        .collect();
    TracesData { resource_spans }
}

/// One display span as an OTLP span: tags as attributes, warnings in [`JAEGER_WARNINGS_ATTRIBUTE`], logs as
/// events with their fields as attributes.
fn display_span(display: &DisplaySpan, trace_id: Vec<u8>) -> Span {
    let mut attributes: Vec<OtlpKeyValue> = display
        .tags
        .iter()
        .map(|(k, val)| otlp::string_attribute(k.as_str(), val.as_str()))
        .collect();
    if !display.warnings.is_empty() {
        let warnings = display
            .warnings
            .iter()
            .map(|w| OtlpAnyValue {
                value: Some(any_value::Value::StringValue(w.clone())),
            })
            .collect();
        attributes.push(OtlpKeyValue {
            key: JAEGER_WARNINGS_ATTRIBUTE.to_owned(),
            value: Some(OtlpAnyValue {
                value: Some(any_value::Value::ArrayValue(OtlpArrayValue {
                    values: warnings,
                })),
            }),
            key_strindex: 0,
        });
    }
    let events = display
        .logs
        .iter()
        .map(|log| span::Event {
            time_unix_nano: otlp::unix_nanos(log.time),
            name: String::new(),
            attributes: log
                .fields
                .iter()
                .map(|(k, val)| otlp::string_attribute(k.as_str(), val.as_str()))
                .collect(),
            dropped_attributes_count: 0,
        })
        .collect();
    Span {
        trace_id,
        span_id: display.span_id.to_be_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: display
            .parent
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        flags: 0,
        name: display.operation.clone(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: otlp::unix_nanos(display.start),
        end_time_unix_nano: otlp::unix_nanos(display.end),
        attributes,
        dropped_attributes_count: 0,
        events,
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(SpanStatus::default()),
    }
}

fn trace_id_of(bytes: &[u8]) -> Result<u128, Status> {
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| {
        Status::invalid_argument(format!("a trace id has 16 bytes, not {}", bytes.len()))
    })?;
    Ok(u128::from_be_bytes(bytes))
}

fn stream_of(traces: Vec<TracesData>) -> TracesStream {
    Box::pin(futures::stream::iter(traces.into_iter().map(Ok)))
}

#[tonic::async_trait]
impl TraceReader for RemoteStorage {
    type GetTracesStream = TracesStream;
    type FindTracesStream = TracesStream;

    async fn get_traces(
        &self,
        request: Request<proto::GetTracesRequest>,
    ) -> Result<Response<Self::GetTracesStream>, Status> {
        let mut found = Vec::new();
        for params in &request.get_ref().query {
            let id = trace_id_of(&params.trace_id)?;
            match self.query.get(id).await {
                Ok(trace) => found.push(traces_data(&trace)),
                // Jaeger answers "trace not found" for an id with no spans.
                Err(QueryError::NotFound(_) | QueryError::BadRequest(_)) => {}
                Err(other) => return Err(status_of(other)),
            }
        }
        Ok(Response::new(stream_of(found)))
    }

    async fn get_services(
        &self,
        _request: Request<proto::GetServicesRequest>,
    ) -> Result<Response<proto::GetServicesResponse>, Status> {
        Ok(Response::new(proto::GetServicesResponse {
            services: DisplayMode::all().iter().map(ToString::to_string).collect(),
        }))
    }

    async fn get_operations(
        &self,
        _request: Request<proto::GetOperationsRequest>,
    ) -> Result<Response<proto::GetOperationsResponse>, Status> {
        let clusters = self.query.clusters().await.map_err(status_of)?;
        Ok(Response::new(proto::GetOperationsResponse {
            operations: clusters
                .into_iter()
                .map(|name| proto::Operation {
                    name,
                    span_kind: String::new(),
                })
                .collect(),
        }))
    }

    async fn find_traces(
        &self,
        request: Request<proto::FindTracesRequest>,
    ) -> Result<Response<Self::FindTracesStream>, Status> {
        let params = request.get_ref().query.clone().unwrap_or_default();
        let query = find_query(&params)?;
        let traces = self.query.find(&query).await.map_err(status_of)?;
        Ok(Response::new(stream_of(
            traces.iter().map(traces_data).collect(),
        )))
    }

    async fn find_trace_i_ds(
        &self,
        request: Request<proto::FindTracesRequest>,
    ) -> Result<Response<proto::FindTraceIDsResponse>, Status> {
        let params = request.get_ref().query.clone().unwrap_or_default();
        let query = find_query(&params)?;
        let traces = self.query.find(&query).await.map_err(status_of)?;
        Ok(Response::new(proto::FindTraceIDsResponse {
            trace_ids: traces
                .iter()
                .map(|trace| proto::FoundTraceId {
                    trace_id: trace.trace_id.to_be_bytes().to_vec(),
                    start: trace.spans.first().map(|s| proto_timestamp(s.start)),
                    end: trace.spans.first().map(|s| proto_timestamp(s.end)),
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl DependencyReader for RemoteStorage {
    async fn get_dependencies(
        &self,
        _request: Request<proto::GetDependenciesRequest>,
    ) -> Result<Response<proto::GetDependenciesResponse>, Status> {
        Ok(Response::new(proto::GetDependenciesResponse {
            dependencies: Vec::new(),
        }))
    }
}
