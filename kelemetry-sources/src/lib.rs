//! # kelemetry-sources
//!
//! Sources of activities for Kelemetry: where [`Record`](kelemetry_core::Record)s come from. Each implements
//! [`kelemetry_core::Source`] and pushes into an [`ActivitySink`](kelemetry_core::ActivitySink), which applies
//! backpressure; a record a source cannot use is reported through
//! [`ActivitySink::reject`](kelemetry_core::ActivitySink::reject) with its `file:line`, and the reading goes on.
//!
//! Recordings:
//! - [`ObjectFileSource`]: recorded Kubernetes objects and Events (YAML streams, JSON streams, lists, watch
//!   events) → Event activities and object observations.
//! - [`AuditFileSource`]: apiserver audit logs (JSON lines, pretty JSON, arrays, YAML; native events or the
//!   envelopes of managed clusters) → audit activities.
//! - [`audit_envelope`]: the wrappings GKE, AKS and EKS deliver audit events in ([`Envelope`]), recognised per
//!   document and unwrapped by every audit source.
//! - [`ReadReport`]/[`ReadCounters`]: what a source read, skipped and rejected.
//! - [`audit_intake`]: audit input written once ([`AuditIntake`]: a document's bytes → activities, skips and
//!   rejections), with one set of rejection reasons ([`RejectReason`]) for the three audit sources (file,
//!   follower, webhook); the object-file and Events sources name their own reasons (`invalid YAML`, `malformed
//!   Event`, ...).
//!
//! Live:
//! - [`AuditLogFollower`]: tails the apiserver's audit log through rotations, resuming from a [`CheckpointFile`].
//! - `webhook::AuditWebhook` (feature `webhook`): the apiserver's audit webhook backend, with a bounded queue that
//!   answers 429 when full, a body limit, TLS and a bearer token.
//! - `kube_events::KubeEventSource` (feature `kube`): Kubernetes Events from the watch API, with a restart
//!   watermark in a ConfigMap.
//! - `object_watch::ObjectWatchSource` (feature `kube`): watches objects and files their field diffs and
//!   snapshots in a [`WatchStore`], which [`WatchDiffDecorator`] attaches to audit activities by resource version.
//! - `leader::LeaderElected` (feature `kube`): runs the Events source and the object watch on one replica at a
//!   time, the one holding a `coordination.k8s.io` Lease, and hands them over when it dies or stops.
//! - `kafka::KafkaSource` (feature `kafka`): audit documents from Kafka topics (or Azure Event Hubs) as a consumer
//!   group member, each offset committed once its spans are exported; with `format: records`, the records
//!   `ingest` processes wrote (the input of the `process` role).
//! - `kafka_forward::KafkaForwarder` (feature `kafka`): the output of the `ingest` role, records produced to a
//!   topic keyed by object key (idempotent, `acks=all`), each delivery settled by the brokers' acknowledgement.
//! - `kube_discovery` (feature `kube`): the resources the apiserver serves, and teaching a
//!   [`ResourceMap`](kelemetry_core::ResourceMap) their kinds.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use kelemetry_core::{ActivitySink, CancellationToken, Record, Rejection, SinkClosed, Source};
//! use kelemetry_sources::ObjectFileSource;
//!
//! /// Keeps what it is sent.
//! #[derive(Default)]
//! struct Collect(Mutex<Vec<Record>>);
//!
//! #[async_trait::async_trait]
//! impl ActivitySink for Collect {
//!     async fn send(&self, record: Record) -> Result<(), SinkClosed> {
//!         self.0.lock().unwrap().push(record);
//!         Ok(())
//!     }
//!     fn reject(&self, rejection: Rejection) {
//!         eprintln!("{rejection}");
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("objects.yaml");
//! std::fs::write(&path, "\
//! ## {\"time\": \"2024-05-01T12:00:00Z\"}
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: web, namespace: default}
//! ")?;
//!
//! let source = ObjectFileSource::new(&path, "prod");
//! let counters = source.counters();
//! let sink = Arc::new(Collect::default());
//! Box::new(source).run(sink.clone(), CancellationToken::new()).await?;
//!
//! let records = sink.0.lock().unwrap();
//! let Record::Observation(seen) = &records[0] else { panic!("an observation") };
//! assert_eq!(seen.object.key().to_string(), "prod/apps/deployments/default/web");
//! assert_eq!(seen.time.to_string(), "2024-05-01T12:00:00Z");
//! assert_eq!(counters.snapshot().sent, 1);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit_envelope;
mod audit_file;
pub mod audit_follow;
pub mod audit_intake;
pub mod checkpoint;
mod json_stream;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod kafka_forward;
#[cfg(feature = "kube")]
pub mod kube_discovery;
#[cfg(feature = "kube")]
pub mod kube_events;
#[cfg(feature = "kube")]
pub mod leader;
mod lines;
pub mod merge;
mod object_file;
mod object_versions;
#[cfg(feature = "kube")]
pub mod object_watch;
mod outlet;
pub mod report;
pub mod watch_store;
#[cfg(feature = "webhook")]
pub mod webhook;
mod yaml_stream;

pub use audit_envelope::{Envelope, EnvelopeLimits};
pub use audit_file::AuditFileSource;
pub use audit_follow::{AuditLogConfig, AuditLogFollower, StartPosition};
pub use audit_intake::{AuditIntake, RejectReason, SkipCause};
pub use checkpoint::{CheckpointFile, FileCheckpoint};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaConfig, KafkaSource, MessageFormat};
#[cfg(feature = "kafka")]
pub use kafka_forward::{KafkaForwarder, KafkaForwarderConfig};
#[cfg(feature = "kube")]
pub use kube_events::{KubeEventOptions, KubeEventSource};
#[cfg(feature = "kube")]
pub use leader::{LeaderElected, LeaderElection, Leadership, TermSource};
pub use merge::TimeOrderedSources;
pub use object_file::ObjectFileSource;
#[cfg(feature = "kube")]
pub use object_watch::{ObjectWatch, ObjectWatchConfig, ObjectWatchOptions, ObjectWatchSource};
pub use report::{ReadCounters, ReadReport};
pub use watch_store::{WatchDiffDecorator, WatchStore, WatchStoreLimits, WatchWait};
#[cfg(feature = "webhook")]
pub use webhook::{AuditWebhook, WebhookConfig, WebhookMetrics};

/// The largest document (one YAML document, one JSON object or one JSON line) a file source holds by default:
/// 16 MiB. Larger ones are rejected as `document too large`.
pub const DEFAULT_DOCUMENT_LIMIT: usize = 16 * 1024 * 1024;
