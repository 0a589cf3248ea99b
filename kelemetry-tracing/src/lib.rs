//! # kelemetry-tracing
//!
//! Kelemetry for controller authors: a kube-rs controller's own reconcile spans and activities land inside the
//! span of the object they worked on, next to the apiserver requests, Events and changes Kelemetry recorded for it.
//!
//! Object span ids are deterministic (`kelemetry_core::ids`): from an object and a time any process computes the
//! span context of the object's span ([`kelemetry_core::ObjectSpanContext`]) and can parent its own spans under
//! it, with no call to anyone. This crate does that for the `tracing` ecosystem through tracing-opentelemetry:
//!
//! - [`TracerSetup`]: the one call that builds the controller's OpenTelemetry tracer provider (spans exported
//!   through any Kelemetry exporter), the `tracing` layer to add to the subscriber, and the [`ObjectTracing`] —
//!   from the cluster name, the controller's name and the windowing, each given once;
//! - [`ObjectTracing`]: the settings (cluster name, windowing, controller name) and the calls:
//!   [`ObjectTracing::reconciler`] wraps a reconcile function for `kube::runtime::Controller::run` (one line);
//!   [`ObjectTracing::reconcile_span`] / [`ObjectTracing::traced`] / [`ObjectTracing::attach_current`] do it by
//!   hand; [`Attachment::Link`] links instead of parenting;
//! - custom activities ("scaled to 3 because queue depth 40"): [`ObjectTracing::record_on`], through an
//!   [`ActivityRecorder`] that feeds a Kelemetry pipeline in the same process or goes straight to an exporter
//!   (OTLP with `kelemetry_exporters::OtlpExporter`, or the embedded store);
//! - [`SpanRecordExporter`]: the OpenTelemetry SDK span exporter under [`TracerSetup`], which writes the
//!   controller's spans through any Kelemetry exporter.
//!
//! The OpenTelemetry crates this crate is built against are re-exported ([`opentelemetry`],
//! [`opentelemetry_sdk`], [`tracing_opentelemetry`]): a controller needs none of them in its own `Cargo.toml`, so
//! there is no version to keep in step. The guide, `docs/tracing-your-controller.md`, is compiled and run as doc
//! tests of this crate.
//!
//! ```
//! use std::sync::Arc;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kelemetry_core::MemoryExporter;
//! use kelemetry_tracing::TracerSetup;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The controller's tracing (here: exporting into memory through Kelemetry's span records).
//! let spans = Arc::new(MemoryExporter::new(1_000));
//! let telemetry = TracerSetup::new("prod", "configmap-sync").with_exporter(spans.clone()).build()?;
//! let subscriber = tracing_subscriber::registry().with(telemetry.layer());
//! let _guard = tracing::subscriber::set_default(subscriber);
//!
//! let objects = telemetry.objects();
//! let mut config_map = ConfigMap::default();
//! config_map.metadata.name = Some("settings".into());
//! config_map.metadata.namespace = Some("default".into());
//!
//! // In reconcile: work inside the object's span, and say what you did.
//! objects.traced(&config_map, async {
//!     objects.record_on(&config_map, "synced 3 keys", [("keys", "3")]).await
//! }).await?;
//! # drop(_guard);
//! telemetry.shutdown().await?;
//! let spans = spans.spans();
//! let object = spans.iter().find(|s| s.kind == kelemetry_core::SpanKind::Object).unwrap();
//! let reconcile = spans.iter().find(|s| s.name == "reconcile").unwrap();
//! assert_eq!(reconcile.trace_id, object.trace_id);
//! assert_eq!(reconcile.parent_span_id, Some(object.span_id));
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod activities;
pub mod objects;
pub mod setup;
pub mod span_records;

/// The guide `docs/tracing-your-controller.md`, whose snippets run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/tracing-your-controller.md")]
mod guide {}

pub use activities::{ActivityRecorder, RecordError};
pub use kelemetry_core::context::ObjectRefError;
pub use kelemetry_core::{Activity, Exporter, ObjectKey, ObjectSpanContext, Windowing};
pub use objects::{Attached, Attachment, ObjectTracing, TracedReconcile};
pub use setup::{ControllerTracing, FlushError, SetupError, TracerSetup};
pub use span_records::{SpanRecordExporter, span_record};
pub use {opentelemetry, opentelemetry_sdk, tracing_opentelemetry};
