//! # kelemetry-tracing
//!
//! Kelemetry for controller authors: a kube-rs controller's own reconcile spans and activities land inside the
//! span of the object they worked on, next to the apiserver requests, Events and changes Kelemetry recorded for it.
//!
//! Object span ids are deterministic (`kelemetry_core::ids`): from an object and a time any process computes the
//! span context of the object's span ([`kelemetry_core::ObjectSpanContext`]) and can parent its own spans under
//! it, with no call to anyone. This crate does that for the `tracing` ecosystem through tracing-opentelemetry:
//!
//! - [`ObjectTracing`]: the settings (cluster name, windowing, controller name) and the calls:
//!   [`ObjectTracing::reconciler`] wraps a reconcile function for `kube::runtime::Controller::run` (one line);
//!   [`ObjectTracing::reconcile_span`] / [`ObjectTracing::traced`] / [`ObjectTracing::attach_current`] do it by
//!   hand; [`Attachment::Link`] links instead of parenting;
//! - custom activities ("scaled to 3 because queue depth 40"): [`ObjectTracing::record_on`], through an
//!   [`ActivityRecorder`] that feeds a Kelemetry pipeline in the same process or goes straight to an exporter
//!   (OTLP with `kelemetry_exporters::otlp_exporter::OtlpExporter`, or the embedded store);
//! - [`SpanRecordExporter`]: an OpenTelemetry SDK span exporter that writes the controller's spans through any
//!   Kelemetry exporter, for setups without an OTLP backend (the embedded store).
//!
//! The spans themselves are exported by the controller's own tracer provider (OTLP to Jaeger or Tempo, where
//! Kelemetry's spans go too; or [`SpanRecordExporter`]). See `docs/tracing-your-controller.md`.
//!
//! ```
//! use std::sync::Arc;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kelemetry_core::{MemoryExporter, Windowing};
//! use kelemetry_tracing::{ActivityRecorder, ObjectTracing};
//! use opentelemetry::trace::TracerProvider;
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() {
//! // The controller's tracer provider (here: exporting into memory through Kelemetry's span records).
//! let spans = Arc::new(MemoryExporter::new(1_000));
//! let provider = SdkTracerProvider::builder()
//!     .with_batch_exporter(kelemetry_tracing::SpanRecordExporter::new(spans.clone(), tokio::runtime::Handle::current()))
//!     .build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("controller")));
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let objects = ObjectTracing::new("prod", "configmap-sync")
//!     .with_activities(ActivityRecorder::exporter(spans.clone(), Windowing::default()));
//! let mut config_map = ConfigMap::default();
//! config_map.metadata.name = Some("settings".into());
//! config_map.metadata.namespace = Some("default".into());
//!
//! // In reconcile: work inside the object's span, and say what you did.
//! objects.traced(&config_map, async {
//!     objects.record_on(&config_map, "synced 3 keys", [("keys", "3")]).await
//! }).await.unwrap();
//! # drop(_guard);
//! # tokio::task::spawn_blocking(move || provider.shutdown()).await.unwrap().unwrap();
//! let spans = spans.spans();
//! let object = spans.iter().find(|s| s.kind == kelemetry_core::SpanKind::Object).unwrap();
//! let reconcile = spans.iter().find(|s| s.name == "reconcile").unwrap();
//! assert_eq!(reconcile.trace_id, object.trace_id);
//! assert_eq!(reconcile.parent_span_id, Some(object.span_id));
//! # }
//! ```

pub mod activities;
pub mod objects;
pub mod span_records;

pub use activities::{ActivityRecorder, RecordError};
pub use kelemetry_core::ObjectSpanContext;
pub use kelemetry_core::context::ObjectRefError;
pub use objects::{Attached, Attachment, ObjectTracing, TracedReconcile};
pub use span_records::{SpanRecordExporter, span_record};
