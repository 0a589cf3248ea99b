//! Display modes (docs/behaviour/display-modes.md): how an assembled [`TraceView`](crate::TraceView) is shown, and the display-mode
//! ids encoded in the trace ids the read side hands out.
//!
//! A displayed trace is a Jaeger-like span tree ([`DisplayTrace`]). The four bases shape it:
//!
//! - `tree` (`00000000`): every object is a span; its activities are child spans with their tags; objects nest
//!   under their parent through a virtual span named after the link class (`children`);
//! - `timeline` (`10000000`): the queried tree's root alone, every activity of every object as its direct child;
//! - `tracing` (`20000000`, the default): one span per object, nested by relation, activities collapsed into
//!   logs on the object span, each span shrunk to what happened in it;
//! - `grouped` (`30000000`): like `tracing`, but the logs of every source other than Kubernetes Events move into
//!   one child span per source (`audit`), and link-class spans stay.
//!
//! A modifier adds related objects: `full tree` (`01000000`), `ancestors` (`02000000`), `owned objects`
//! (`04000000`). The mode id sits in bits 24..56 of the trace id, so editing those hex digits of a trace id
//! switches the mode of the same view.
//!
//! The module is in four parts: the mode codec ([`DisplayMode`], [`BaseMode`], [`Modifier`]), the displayed trace
//! ([`DisplayTrace`]), the tree shaping ([`display`]) and the diff classes ([`DiffClass`]).

mod diff;
mod mode;
mod trace;
mod tree;

pub use diff::{CONFLICT_RETRY_WINDOW, DiffClass, retried_conflicts};
pub use mode::{BaseMode, DisplayMode, Modifier, ParseModeError};
pub use trace::{DisplayKind, DisplayLog, DisplaySpan, DisplayTrace, Field};
pub use tree::{display, time_range_text};
pub(crate) use tree::{object_display_span_id, object_window};
