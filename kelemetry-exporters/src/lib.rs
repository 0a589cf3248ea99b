//! # kelemetry-exporters
//!
//! Exporters for Kelemetry: where finished spans go. Each implements [`kelemetry_core::Exporter`].
//!
//! - [`StoreExporter`] ([`store`]): into the embedded [`kelemetry_store::SpanStore`], one transaction per batch,
//!   idempotent.
//! - [`JsonLinesExporter`] ([`json_lines`]): OTLP/JSON lines, one `ExportTraceServiceRequest` per line, readable
//!   by the OpenTelemetry Collector's file receiver and by people.
//! - The conversion of [`kelemetry_core::SpanRecord`]s to OTLP messages, shared by every OTLP-speaking exporter,
//!   is [`kelemetry_core::otlp`].
//! - `OtlpExporter` (`otlp_exporter`, feature `otlp`): OTLP over gRPC or HTTP/protobuf to Jaeger, Tempo, a
//!   Collector or a vendor, with a bounded buffer, retry with backoff, TLS, headers and gzip.
//!
//! ```
//! use kelemetry_core::{Exporter, ObjectKey, ObjectRef, Windowing};
//! use kelemetry_exporters::{JsonLinesExporter, StoreExporter};
//! use kelemetry_store::SpanStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let key = ObjectKey::new("prod", "apps", "deployments", "default", "nginx");
//! let window = Windowing::default().window_of("2024-05-01T12:34:56Z".parse().unwrap());
//! let span = kelemetry_core::span::object_span(&ObjectRef::new(key, "v1", None), window);
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = StoreExporter::new(SpanStore::create(dir.path()).unwrap());
//! store.export(&[span.clone()]).await.unwrap();
//! store.flush().await.unwrap();
//! assert_eq!(store.store().span_count().unwrap(), 1);
//!
//! let jsonl = JsonLinesExporter::create(dir.path().join("spans.jsonl")).await.unwrap();
//! jsonl.export(&[span]).await.unwrap();
//! jsonl.flush().await.unwrap();
//! let text = std::fs::read_to_string(dir.path().join("spans.jsonl")).unwrap();
//! assert!(text.starts_with(r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name""#));
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod json_lines;
#[cfg(feature = "otlp")]
pub mod otlp_exporter;
pub mod store;

pub use json_lines::{JsonLinesConfig, JsonLinesExporter, OpenJsonLinesError};
#[cfg(feature = "otlp")]
pub use otlp_exporter::{
    OtlpConfig, OtlpConfigError, OtlpExporter, OtlpProtocol, OtlpReport, OtlpStats, OtlpTls,
};
pub use store::{StoreConfig, StoreExporter};

#[cfg(test)]
mod tests;
