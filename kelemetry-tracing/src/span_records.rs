//! [`SpanRecordExporter`]: an OpenTelemetry SDK span exporter that hands a controller's finished spans, as
//! [`SpanRecord`]s, to a Kelemetry [`Exporter`] — the embedded store, JSON lines, OTLP — so they land in the same
//! storage as the object spans they are children of.
//!
//! A reconcile span becomes a span of kind [`SpanKind::Activity`] named by the controller's `service.name`: that
//! is how the read side sees a span of an unknown service read back from Jaeger too, so both paths show the same.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use jiff::Timestamp;
use kelemetry_core::{
    Attributes, Exporter, SmolStr, SpanId, SpanKind, SpanLog, SpanRecord, TraceId, vocabulary as v,
};
use opentelemetry::trace::Status;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// The service name used when the tracer provider's resource has none.
pub const DEFAULT_SERVICE_NAME: &str = "controller";

/// Converts finished OpenTelemetry spans to [`SpanRecord`]s and exports them through a Kelemetry [`Exporter`].
///
/// The SDK's batch processor calls exporters on its own thread, outside any async runtime; the Kelemetry exporter
/// runs on the tokio runtime given here. Install it with
/// `SdkTracerProvider::builder().with_batch_exporter(SpanRecordExporter::new(exporter, Handle::current()))`.
pub struct SpanRecordExporter {
    exporter: Arc<dyn Exporter>,
    runtime: tokio::runtime::Handle,
    service: String,
}

impl std::fmt::Debug for SpanRecordExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanRecordExporter")
            .field("exporter", &self.exporter.name())
            .field("service", &self.service)
            .finish()
    }
}

impl SpanRecordExporter {
    /// Exports through `exporter`, run on `runtime`.
    pub fn new(exporter: Arc<dyn Exporter>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            exporter,
            runtime,
            service: DEFAULT_SERVICE_NAME.to_owned(),
        }
    }

    /// The service name the spans get (taken from the provider's resource `service.name` when it is installed).
    pub fn service(&self) -> &str {
        &self.service
    }
}

impl SpanExporter for SpanRecordExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let records: Vec<SpanRecord> = batch
            .iter()
            .filter_map(|data| span_record(data, &self.service))
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        let exporter = self.exporter.clone();
        let task = self
            .runtime
            .spawn(async move { exporter.export(&records).await });
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(OTelSdkError::InternalFailure(format!(
                "kelemetry exporter {}: {err}",
                self.exporter.name()
            ))),
            Err(err) => Err(OTelSdkError::InternalFailure(format!(
                "kelemetry exporter {} task failed: {err}",
                self.exporter.name()
            ))),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(name) = resource.get(&opentelemetry::Key::from_static_str("service.name")) {
            self.service = name.as_str().into_owned();
        }
    }
}

fn timestamp(time: SystemTime) -> Timestamp {
    Timestamp::try_from(time).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One finished OpenTelemetry span as a [`SpanRecord`] of the service `service`; `None` when its ids are invalid
/// (zero). Attributes become text; the span's status becomes `otel.status_code` (and `error` = `true` on an error,
/// as Jaeger shows it) with `otel.status_description`; span events become logs; links become
/// `link.<n>` = `<trace id>-<span id>` attributes.
pub fn span_record(data: &SpanData, service: &str) -> Option<SpanRecord> {
    let trace_id =
        TraceId::from_u128(u128::from_be_bytes(data.span_context.trace_id().to_bytes()))?;
    let span_id = SpanId::from_u64(u64::from_be_bytes(data.span_context.span_id().to_bytes()))?;
    let parent_span_id = SpanId::from_u64(u64::from_be_bytes(data.parent_span_id.to_bytes()));
    let mut attributes: Attributes = Vec::with_capacity(data.attributes.len() + 6);
    attributes.push((
        Cow::Borrowed(v::NOT_PSEUDO),
        SmolStr::new_static(v::NOT_PSEUDO),
    ));
    attributes.push((Cow::Borrowed(v::TRACE_SOURCE), SmolStr::new(service)));
    for kv in &data.attributes {
        attributes.push((
            Cow::Owned(kv.key.to_string()),
            SmolStr::from(kv.value.as_str()),
        ));
    }
    match &data.status {
        Status::Unset => {}
        Status::Ok => {
            attributes.push((Cow::Borrowed("otel.status_code"), SmolStr::new_static("OK")))
        }
        Status::Error { description } => {
            attributes.push((
                Cow::Borrowed("otel.status_code"),
                SmolStr::new_static("ERROR"),
            ));
            attributes.push((Cow::Borrowed("error"), SmolStr::new_static("true")));
            if !description.is_empty() {
                attributes.push((
                    Cow::Borrowed("otel.status_description"),
                    SmolStr::new(description),
                ));
            }
        }
    }
    let scope = data.instrumentation_scope.name();
    if !scope.is_empty() {
        attributes.push((Cow::Borrowed("otel.scope.name"), SmolStr::new(scope)));
    }
    for (n, link) in data.links.iter().enumerate() {
        attributes.push((
            Cow::Owned(format!("link.{n}")),
            SmolStr::from(format!(
                "{}-{}",
                link.span_context.trace_id(),
                link.span_context.span_id()
            )),
        ));
    }
    let logs = data
        .events
        .iter()
        .map(|event| SpanLog {
            time: timestamp(event.timestamp),
            message: event.name.to_string(),
            attributes: event
                .attributes
                .iter()
                .map(|kv| {
                    (
                        Cow::Owned(kv.key.to_string()),
                        SmolStr::from(kv.value.as_str()),
                    )
                })
                .collect(),
        })
        .collect();
    let start = timestamp(data.start_time);
    Some(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        kind: SpanKind::Activity(service.into()),
        name: data.name.to_string(),
        start,
        end: timestamp(data.end_time).max(start),
        attributes,
        logs,
    })
}
