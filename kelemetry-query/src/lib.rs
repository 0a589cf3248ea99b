//! # kelemetry-query
//!
//! The read side of Kelemetry for Rust: read the spans of an object's windows, follow its links, and show the
//! result.
//!
//! - [`reader`]: the [`Reader`] trait; the embedded store's [`kelemetry_store::SpanStore`] is one ([`store_reader`]);
//! - [`assemble`](mod@assemble): merge an object's windows, follow links through a [`LinkSelector`], clip to a time range, nest
//!   into a [`TraceView`];
//! - [`display`](mod@display): display modes and their ids ([`DisplayMode`]), the four bases and three modifiers, the displayed span tree ([`DisplayTrace`]);
//! - [`diagnose`]: known failure patterns found in objects' histories ([`diagnose::Diagnosis`], the
//!   [`diagnose::Diagnoser`] trait, the built-in diagnosers, rules declared in YAML);
//! - [`extension`]: extension traces, spans of other tracing backends (the kube-apiserver's, a controller's)
//!   grafted under the objects and activities of a view at read time ([`extension::Extensions`]); the HTTP
//!   providers with feature `extensions`;
//! - [`text`]: a terminal rendering of a displayed trace;
//! - [`budget`]: [`budget::QueryBudget`], how much one query may read (the HTTP API gives each heavy request one);
//! - [`trace_query`]: [`TraceQuery`], search and fetch by trace id for the serving side, remembering handed-out
//!   views in the store's bounded view table;
//! - [`jaeger_json`]: Jaeger's HTTP JSON model; `http` (feature `http`, on by default): the axum router of the
//!   Jaeger-shaped HTTP API; `viewer` (feature `http`): the web viewer's embedded page, served by that router;
//! - `jaeger_reader` (feature `jaeger-reader`): `JaegerReader`, the [`Reader`] over a Jaeger that received the spans
//!   over OTLP;
//! - `remote_storage` (feature `remote-storage`): Jaeger's remote storage gRPC API over [`TraceQuery`], so that a
//!   Jaeger Query and its UI show the assembled traces.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assemble;
pub mod budget;
pub mod diagnose;
pub mod display;
pub mod extension;
#[cfg(feature = "http")]
pub mod http;
pub mod jaeger_json;
#[cfg(feature = "jaeger-reader")]
pub mod jaeger_reader;
mod patterns;
pub mod reader;
#[cfg(feature = "remote-storage")]
pub mod remote_storage;
pub mod selector;
pub mod show;
pub mod store_reader;
pub mod text;
pub mod trace_query;
#[cfg(feature = "http")]
pub mod viewer;

pub use assemble::{
    AssembleError, ObjectHistory, TraceView, ViewNode, ViewRequest, assemble, assemble_components,
};
pub use display::{
    BaseMode, DisplayKind, DisplayMode, DisplaySpan, DisplayTrace, Modifier, display,
};
pub use reader::{ReadError, Reader, TraceParts};
pub use selector::LinkSelector;
pub use show::{ShowError, Shown, show};
pub use trace_query::{FindQuery, QueryError, RedirectTarget, TraceQuery, search_selector};
