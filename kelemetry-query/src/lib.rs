//! # kelemetry-query
//!
//! The read side of Kelemetry for Rust: read the spans of an object's windows, follow its links, and show the
//! result.
//!
//! - [`reader`]: the [`Reader`] trait, and its implementation over the embedded store ([`StoreReader`]);
//! - [`assemble`](mod@assemble): merge an object's windows, follow links through a [`LinkSelector`], clip to a time range, nest
//!   into a [`TraceView`];
//! - [`display`](mod@display): display modes and their ids ([`DisplayMode`]), and the `tracing` mode's shape ([`DisplayTrace`]);
//! - [`text`]: a terminal rendering of a displayed trace.

pub mod assemble;
pub mod display;
pub mod reader;
pub mod selector;
pub mod store_reader;
pub mod text;

pub use assemble::{
    AssembleError, ObjectHistory, TraceView, ViewNode, ViewRequest, assemble, assemble_components,
};
pub use display::{
    BaseMode, DisplayKind, DisplayMode, DisplaySpan, DisplayTrace, Modifier, display,
};
pub use reader::{ObjectPattern, ReadError, Reader};
pub use selector::LinkSelector;
pub use store_reader::StoreReader;
