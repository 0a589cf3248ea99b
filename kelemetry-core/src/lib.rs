//! # kelemetry-core
//!
//! The model and the engine of Kelemetry for Rust: every Kubernetes object is a span, what happened to it are its
//! children, and relations between objects nest the object spans into one tree.
//!
//! This crate has no Kubernetes client, no network and no storage engine. It holds:
//!
//! - the model: [`ObjectKey`], [`ObjectRef`], [`Object`], [`Activity`], [`Windowing`] and deterministic
//!   [`TraceId`]/[`SpanId`]s ([`ids`] documents the algorithm);
//! - spans as data: [`SpanRecord`] and how objects, links and activities become spans ([`span`]);
//! - the extension points: [`Source`]/[`ActivitySink`] (with [`Delivery`] receipts for sources that must know
//!   when what they handed over was exported), [`Decorator`], [`Linker`]/[`ObjectLookup`], [`Exporter`],
//!   [`SpanLedger`]; and exporters for tests and tools: [`MemoryExporter`], [`DiscardExporter`] and
//!   [`GatedExporter`] (holds or refuses batches, for tests of what waits on exports);
//! - the mappings from outside data: apiserver audit events ([`audit`]), Kubernetes Events ([`kube_event`]), field
//!   diffs ([`diff`]) with redaction ([`redact`]), kinds to resources ([`resource_map`]);
//! - the [`Pipeline`] that wires sources through filter, decorators, windowing, linkers and exporters, owns the
//!   sources' lifecycle ([`lifecycle`] turns signals into [`CancellationToken`]s) and retries exports on one
//!   schedule ([`RetryPolicy`]); its sizes and intervals are [`PipelineLimits`];
//! - between processes: [`forward`] ([`RecordForwarder`], where a pipeline in the `ingest` role hands its records
//!   instead of making spans) and [`wire`], the versioned format those records travel in;
//! - which objects: [`ObjectSelector`], `RESOURCE[.GROUP]/NAMESPACE/NAME` ([`selector`]);
//! - for queues bounded by size: [`budget`] ([`budget::ByteBudget`]: estimated bytes an entry waits for and holds);
//! - for metrics: [`histogram`], durations counted in fixed buckets where they are measured (the pipeline's
//!   ingest-to-export and export latencies), read when a metrics endpoint is scraped;
//! - for the servers of other crates: [`connections`], the bookkeeping that keeps one client from taking every
//!   connection (no sockets: just counts, idle times and which connection to close);
//! - behind features: `config` (`Deserialize` for configuration types, and the `config` module's helpers for
//!   durations and sizes), `otlp` (`SpanRecord`s as OTLP messages and back, module `otlp`), `kube` (object keys of
//!   kube `Resource`s, [`context`]), `opentelemetry` (span contexts as OpenTelemetry types).
//!
//! ```
//! use kelemetry_core::{Activity, Object, ObjectKey, ObjectRef, SourceKind, TraceId, Windowing};
//!
//! let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
//! let at: jiff::Timestamp = "2024-05-01T12:34:56Z".parse().unwrap();
//! let window = Windowing::default().window_of(at);
//! // Any process computes the same trace for this object and window.
//! let trace = TraceId::for_object(&key, window);
//! let activity = Activity::new(Object::new(ObjectRef::new(key, "v1", None)), SourceKind::Audit, at, "alice update", "audit-1");
//! let span = kelemetry_core::span::activity_span(&activity, window);
//! assert_eq!(span.trace_id, trace);
//! assert_eq!(span.parent_span_id, Some(trace.object_span()));
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod activity;
pub mod audit;
pub mod body;
pub mod body_cache;
pub mod budget;
#[cfg(feature = "config")]
pub mod config;
pub mod connections;
pub mod context;
pub mod decorate;
pub mod delivery;
pub mod diff;
pub mod exporter;
pub mod filter;
pub mod forward;
pub mod histogram;
pub mod ids;
mod json_scan;
pub mod key;
pub mod kube_event;
pub mod ledger;
pub mod lifecycle;
pub mod link;
pub mod list_keys;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod pipeline;
pub mod redact;
pub mod resource_map;
pub mod selector;
pub mod source;
pub mod span;
pub mod vocabulary;
pub mod window;
pub mod wire;

pub use activity::{
    Activity, Attributes, Change, ChangeKind, LogKind, LogLine, Observation, Record, SmolStr,
    SourceKind,
};
pub use audit::{AuditEvent, AuditMapping, AuditOutcome};
pub use body_cache::BodyCache;
pub use context::ObjectSpanContext;
pub use decorate::{Decorator, DiffDecorator, DiffDecoratorWithKeys};
pub use delivery::{Delivery, NotDelivered, PendingRecord, Receipt};
pub use diff::DiffEntry;
pub use exporter::{DiscardExporter, ExportError, Exporter, GatedExporter, MemoryExporter};
pub use filter::Filter;
pub use forward::RecordForwarder;
pub use ids::{SpanId, TraceId};
pub use key::{Object, ObjectKey, ObjectRef};
pub use ledger::{BoundedLedger, SpanLedger};
pub use link::{Link, LinkError, LinkRole, Linker, NoLookup, ObjectLookup};
pub use list_keys::ListKeys;
pub use pipeline::{
    ExporterStats, Pipeline, PipelineBuilder, PipelineLimits, PipelineReport, PipelineStats,
    RetryPolicy, RunFailed, SourceFailure, StopCause,
};
pub use redact::Redactor;
pub use resource_map::{ResourceInfo, ResourceMap, ResourceScope};
pub use selector::{ObjectSelector, ParseSelectorError};
pub use source::{
    ActivitySink, CancellationToken, CollectingSink, Rejection, SinkClosed, Source, SourceError,
};
pub use span::{SpanKind, SpanLog, SpanRecord};
pub use window::{Window, Windowing};

/// The cause of a failure at an extension point (a source, an exporter, a linker): any error, or a message
/// (`"text".into()`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
