//! [`JaegerReader`]: the [`Reader`] over a Jaeger that received Kelemetry's spans over OTLP.
//!
//! Because trace ids are deterministic (docs/architecture.md#deterministic-ids), an object's traces are computed,
//! not searched: [`Reader::object_traces`] derives [`TraceId::for_object`] for every window of the range (at most
//! [`JaegerReader::with_max_windows`] of them) and fetches those traces by id. Only a range too long for that, and
//! the object searches, use Jaeger's search.
//!
//! Two of Jaeger Query's HTTP APIs are used:
//!
//! - `GET /api/v3/traces/{id}?raw_traces=true`: a trace as OTLP/JSON, with nanosecond times, typed resource
//!   attributes and untouched spans (no adjusters), so every [`SpanRecord`] comes back exactly as exported;
//! - `GET /api/traces?service=object&tags={...}&start=&end=&limit=`: the search of the classic JSON API, the only
//!   one that filters by tags, over object spans (service `object`), whose identity tags name the object.
//!
//! Fetched traces are kept briefly (a bounded cache) so that the `object_traces` then `trace` sequence of the
//! assembly fetches each trace once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use kelemetry_core::otlp::span_records;
use kelemetry_core::{
    ObjectKey, ObjectSelector, SpanKind, SpanRecord, TraceId, Windowing, vocabulary as v,
};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use serde::Deserialize;

use crate::reader::{ReadError, Reader};

/// The service name of object spans, searched for objects.
const OBJECT_SERVICE: &str = "object";

/// How many fetched traces are kept, and for how long.
const CACHE_TRACES: usize = 512;
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Reads Kelemetry's spans back from a Jaeger Query.
///
/// ```no_run
/// use kelemetry_core::Windowing;
/// use kelemetry_query::jaeger_reader::JaegerReader;
/// use kelemetry_query::{ViewRequest, assemble};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let reader = JaegerReader::new("http://127.0.0.1:16686", Windowing::default())?;
/// let key = "prod/apps/deployments/default/web".parse()?;
/// let view = assemble(&reader, &ViewRequest::new(key)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JaegerReader {
    client: reqwest::Client,
    base: String,
    windowing: Windowing,
    max_windows: usize,
    search_limit: usize,
    search_from: Timestamp,
    search_to: Option<Timestamp>,
    cache: Mutex<TraceCache>,
}

/// The reader cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot read from Jaeger at {base:?}: {reason}")]
pub struct JaegerReaderError {
    /// The base URL given.
    pub base: String,
    /// What is wrong.
    pub reason: String,
}

impl JaegerReader {
    /// Reads from the Jaeger Query HTTP API at `base` (e.g. `http://127.0.0.1:16686`); `windowing` must be the
    /// one the spans were written with. Defaults: at most 96 windows are computed per object (two days of 30-minute
    /// windows), searches return at most 1,000 traces and cover all time up to now plus a day.
    pub fn new(base: impl Into<String>, windowing: Windowing) -> Result<Self, JaegerReaderError> {
        let base = base.into().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(JaegerReaderError {
                base,
                reason: "the URL must start with http:// or https://".into(),
            });
        }
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| JaegerReaderError {
                base: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            base,
            windowing,
            max_windows: 96,
            search_limit: 1_000,
            search_from: Timestamp::UNIX_EPOCH,
            search_to: None,
            cache: Mutex::new(TraceCache::default()),
        })
    }

    /// Computes the trace ids of at most `windows` windows per object; a longer range is searched instead.
    pub fn with_max_windows(mut self, windows: usize) -> Self {
        self.max_windows = windows.max(1);
        self
    }

    /// Object searches look at spans starting in `[from, to]` (default: the Unix epoch to a day from now) and
    /// return at most `limit` traces.
    pub fn with_search(mut self, from: Timestamp, to: Option<Timestamp>, limit: usize) -> Self {
        self.search_from = from;
        self.search_to = to;
        self.search_limit = limit.max(1);
        self
    }

    fn backend(&self, what: impl Into<String>, message: impl std::fmt::Display) -> ReadError {
        ReadError::backend(what, format!("Jaeger at {}: {message}", self.base))
    }

    /// One trace by id, from the cache or from Jaeger; empty when Jaeger does not have it.
    async fn fetch(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError> {
        if let Some(spans) = self.cache_get(id) {
            return Ok(spans);
        }
        let what = format!("trace {id}");
        let url = format!("{}/api/v3/traces/{id}?raw_traces=true", self.base);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| self.backend(&what, e))?;
        let status = response.status();
        let spans = if status == reqwest::StatusCode::NOT_FOUND {
            Vec::new()
        } else if status.is_success() {
            let body: V3Response = response.json().await.map_err(|e| {
                self.backend(&what, format!("{url} is not an OTLP/JSON trace: {e}"))
            })?;
            let mut spans =
                span_records(&body.result.resource_spans).map_err(|e| self.backend(&what, e))?;
            spans.retain(|span| span.trace_id == id);
            // In span id order, as the embedded store answers, so both readers assemble identical views.
            spans.sort_by_key(|span| span.span_id.to_u64());
            spans
        } else {
            let text = response.text().await.unwrap_or_default();
            return Err(self.backend(&what, format!("{url} answered {status}: {}", clip(&text))));
        };
        self.cache_put(id, &spans);
        Ok(spans)
    }

    fn cache_get(&self, id: TraceId) -> Option<Vec<SpanRecord>> {
        let mut cache = self.cache.lock().ok()?;
        cache.get(id)
    }

    fn cache_put(&self, id: TraceId, spans: &[SpanRecord]) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(id, spans.to_vec());
        }
    }

    /// Root object spans of traces whose object spans carry every tag in `tags`, from Jaeger's tag search.
    async fn search(
        &self,
        tags: &[(&str, &str)],
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<(TraceId, ObjectKey)>, ReadError> {
        let tags_json: serde_json::Map<String, serde_json::Value> = tags
            .iter()
            .map(|(k, val)| {
                (
                    (*k).to_owned(),
                    serde_json::Value::String((*val).to_owned()),
                )
            })
            .collect();
        let tags_text = serde_json::Value::Object(tags_json).to_string();
        let start = micros(from).to_string();
        let end = micros(to).to_string();
        let limit = limit.min(self.search_limit).to_string();
        let what = format!("objects with {tags_text}");
        let url = format!("{}/api/traces", self.base);
        let response = self
            .client
            .get(&url)
            .query(&[
                ("service", OBJECT_SERVICE),
                ("tags", tags_text.as_str()),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("limit", limit.as_str()),
            ])
            .send()
            .await
            .map_err(|e| self.backend(&what, e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(self.backend(&what, format!("search answered {status}: {}", clip(&text))));
        }
        let body: SearchResponse = response
            .json()
            .await
            .map_err(|e| self.backend(&what, format!("search answer is not Jaeger JSON: {e}")))?;
        let mut found = Vec::new();
        for trace in body.data.unwrap_or_default() {
            let Ok(id) = parse_trace_id(&trace.trace_id) else {
                continue;
            };
            let object = trace.spans.iter().find_map(|span| {
                let tag = |name: &str| {
                    span.tags
                        .iter()
                        .find(|t| t.key == name)
                        .and_then(|t| t.value.as_str())
                };
                if tag(v::PSEUDO_TYPE) != Some(v::OBJECT) {
                    return None;
                }
                Some(ObjectKey::new(
                    tag(v::CLUSTER)?,
                    tag(v::GROUP)?,
                    tag(v::RESOURCE)?,
                    tag(v::NAMESPACE)?,
                    tag(v::NAME)?,
                ))
            });
            if let Some(object) = object {
                found.push((id, object));
            }
        }
        Ok(found)
    }

    fn search_to(&self) -> Timestamp {
        self.search_to.unwrap_or_else(|| {
            Timestamp::now()
                .saturating_add(SignedDuration::from_hours(24))
                .unwrap_or(Timestamp::MAX)
        })
    }

    /// The objects `selector` selects, from Jaeger's tag search over object spans.
    async fn search_objects(
        &self,
        selector: &ObjectSelector,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, ReadError> {
        let fields = [
            (v::CLUSTER, &selector.cluster),
            (v::GROUP, &selector.group),
            (v::RESOURCE, &selector.resource),
            (v::NAMESPACE, &selector.namespace),
            (v::NAME, &selector.name),
        ];
        let tags: Vec<(&str, &str)> = fields
            .iter()
            .filter_map(|(k, val)| val.as_deref().map(|val| (*k, val)))
            .collect();
        let found = self
            .search(&tags, self.search_from, self.search_to(), self.search_limit)
            .await?;
        let objects: BTreeSet<ObjectKey> = found.into_iter().map(|(_, key)| key).collect();
        Ok(objects.into_iter().take(limit).collect())
    }
}

#[async_trait]
impl Reader for JaegerReader {
    async fn object_traces(
        &self,
        key: &ObjectKey,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TraceId>, ReadError> {
        if to < from {
            return Ok(Vec::new());
        }
        let window_secs = self.windowing.length_secs() as i128;
        let span_secs = (to.as_second() as i128 - from.as_second() as i128) / window_secs + 1;
        if span_secs <= self.max_windows as i128 {
            let mut traces = Vec::new();
            for window in self.windowing.windows_between(from, to) {
                let id = TraceId::for_object(key, window);
                if !self.fetch(id).await?.is_empty() {
                    traces.push(id);
                }
            }
            return Ok(traces);
        }
        // Too many windows to compute: search the object spans (each starts at its window's start, so the search
        // starts one window earlier) within what Jaeger's search covers.
        let from = from
            .max(self.search_from)
            .saturating_sub(SignedDuration::from_secs(
                self.windowing.length_secs() as i64
            ))
            .unwrap_or(from);
        let to = to.min(self.search_to());
        let tags = [
            (v::CLUSTER, key.cluster.as_str()),
            (v::GROUP, key.group.as_str()),
            (v::RESOURCE, key.resource.as_str()),
            (v::NAMESPACE, key.namespace.as_str()),
            (v::NAME, key.name.as_str()),
        ];
        let found = self
            .search(&tags, from, to, self.max_windows.max(self.search_limit))
            .await?;
        // Keep the hits that are windows of this object overlapping the range, oldest first.
        let mut windows: Vec<(i64, TraceId)> = Vec::new();
        for (id, object) in found {
            if &object != key {
                continue;
            }
            let spans = self.fetch(id).await?;
            let Some(object_span) = spans.iter().find(|s| s.kind == SpanKind::Object) else {
                continue;
            };
            let window = self.windowing.window_of(object_span.start);
            if TraceId::for_object(key, window) == id && window.end() > from && window.start() <= to
            {
                windows.push((window.start_secs(), id));
            }
        }
        windows.sort();
        windows.dedup();
        Ok(windows.into_iter().map(|(_, id)| id).collect())
    }

    async fn trace(&self, id: TraceId) -> Result<Vec<SpanRecord>, ReadError> {
        self.fetch(id).await
    }

    async fn find_objects(
        &self,
        selector: &ObjectSelector,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, ReadError> {
        self.search_objects(selector, limit).await
    }
}

/// A bounded, short-lived cache of fetched traces, oldest evicted first.
#[derive(Debug, Default)]
struct TraceCache {
    entries: HashMap<TraceId, (Instant, Vec<SpanRecord>)>,
    order: VecDeque<TraceId>,
}

impl TraceCache {
    fn get(&mut self, id: TraceId) -> Option<Vec<SpanRecord>> {
        match self.entries.get(&id) {
            Some((at, spans)) if at.elapsed() < CACHE_TTL => Some(spans.clone()),
            Some(_) => {
                self.entries.remove(&id);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, id: TraceId, spans: Vec<SpanRecord>) {
        if self.entries.insert(id, (Instant::now(), spans)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > CACHE_TRACES {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

/// `{"result": <OTLP/JSON TracesData>}`, the answer of `/api/v3/traces/{id}`.
#[derive(Deserialize)]
struct V3Response {
    result: TracesData,
}

/// The parts of the classic JSON API's search answer that are read.
#[derive(Deserialize)]
struct SearchResponse {
    data: Option<Vec<SearchTrace>>,
}

#[derive(Deserialize)]
struct SearchTrace {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(default)]
    spans: Vec<SearchSpan>,
}

#[derive(Deserialize)]
struct SearchSpan {
    #[serde(default)]
    tags: Vec<SearchTag>,
}

#[derive(Deserialize)]
struct SearchTag {
    key: String,
    value: serde_json::Value,
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond().max(0)
}

/// A trace id as Jaeger prints it (without leading zeros in the classic API).
fn parse_trace_id(text: &str) -> Result<TraceId, String> {
    format!("{text:0>32}")
        .parse()
        .map_err(|e| format!("trace id {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kelemetry_core::{Object, ObjectRef, SourceKind, span};

    #[test]
    fn api_v3_answers_read_back_into_equal_span_records() {
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        let at: Timestamp = "2021-05-19T09:42:58.123456789Z".parse().unwrap();
        let window = Windowing::default().window_of(at);
        let object = ObjectRef::new(key, "v1", Some("uid".into()));
        let mut activity = kelemetry_core::Activity::new(
            Object::new(object.clone()),
            SourceKind::Event,
            at,
            "Scheduled",
            "e1",
        );
        activity.logs.push(kelemetry_core::LogLine::new(
            kelemetry_core::LogKind::EventMessage,
            "assigned to node-1",
        ));
        let spans = vec![
            span::object_span(&object, window),
            span::activity_span(&activity, window),
        ];
        // Jaeger's API v3 answers in its own shape: one resource per span, no scope, every attribute a string;
        // encoded here without `kelemetry_core::otlp`, so that a fault of that module's writing and reading
        // alike cannot hide.
        let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans: spans_as_resource_spans(&spans),
        };
        let json = format!(
            r#"{{"result":{}}}"#,
            serde_json::to_string(&request).unwrap()
        );
        let answer: V3Response = serde_json::from_str(&json).unwrap();
        assert_eq!(span_records(&answer.result.resource_spans).unwrap(), spans);
    }

    fn spans_as_resource_spans(
        spans: &[SpanRecord],
    ) -> Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans> {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
        let string = |k: &str, val: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(val.into())),
            }),
            key_strindex: 0,
        };
        spans
            .iter()
            .map(|s| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string("service.name", s.service_name())],
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![Span {
                        trace_id: s.trace_id.to_bytes().to_vec(),
                        span_id: s.span_id.to_bytes().to_vec(),
                        parent_span_id: s
                            .parent_span_id
                            .map(|p| p.to_bytes().to_vec())
                            .unwrap_or_default(),
                        name: s.name.clone(),
                        start_time_unix_nano: s.start.as_nanosecond() as u64,
                        end_time_unix_nano: s.end.as_nanosecond() as u64,
                        attributes: s.attributes.iter().map(|(k, val)| string(k, val)).collect(),
                        events: s
                            .logs
                            .iter()
                            .map(|l| Event {
                                time_unix_nano: l.time.as_nanosecond() as u64,
                                name: l.message.clone(),
                                attributes: l
                                    .attributes
                                    .iter()
                                    .map(|(k, val)| string(k, val))
                                    .collect(),
                                dropped_attributes_count: 0,
                            })
                            .collect(),
                        ..Span::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect()
    }

    #[test]
    fn short_trace_ids_are_padded() {
        let id = parse_trace_id("1a2b").unwrap();
        assert_eq!(id.to_string(), format!("{:0>32}", "1a2b"));
        assert!(parse_trace_id("xyz").is_err());
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = TraceCache::default();
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        let mut window = Windowing::default().window_of(Timestamp::UNIX_EPOCH);
        let first = TraceId::for_object(&key, window);
        for _ in 0..CACHE_TRACES + 5 {
            cache.put(TraceId::for_object(&key, window), Vec::new());
            window = window.next();
        }
        assert_eq!(cache.entries.len(), CACHE_TRACES);
        assert!(cache.get(first).is_none());
    }
}
