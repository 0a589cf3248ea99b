//! The displayed trace: a Jaeger-like span tree ([`DisplayTrace`]) of [`DisplaySpan`]s with [`DisplayLog`]s.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use kelemetry_core::SmolStr;

use super::mode::DisplayMode;

/// One field of a display log or a tag of a display span: its name and its value. Both are [`SmolStr`]s, so a tag
/// copied from a span's attribute shares or inlines its text instead of allocating it again.
pub type Field = (SmolStr, SmolStr);

/// An attribute's name as a field name: a name from the vocabulary (`'static`) is referenced, not copied.
#[allow(
    clippy::ptr_arg,
    reason = "a `&str` would not say whether the name is `'static`"
)]
pub(crate) fn field_name(name: &Cow<'static, str>) -> SmolStr {
    match name {
        Cow::Borrowed(name) => SmolStr::new_static(name),
        Cow::Owned(name) => SmolStr::new(name),
    }
}

/// A log on a display span: an activity collapsed into fields, or a log line of an activity span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayLog {
    /// When.
    pub time: Timestamp,
    /// Fields, e.g. `("audit", "alice update")`, `("diff", "spec.replicas 2 -> 4")`.
    pub fields: Vec<Field>,
}

impl DisplayLog {
    /// The value of a field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, val)| val.as_str())
    }
}

/// What a display span stands for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisplayKind {
    /// An object (its windows merged).
    Object,
    /// A virtual span between a parent object and its children of one link class (`tree`, `grouped`).
    LinkClass,
    /// A virtual span holding the collapsed activities of one source (`grouped`).
    SourceGroup,
    /// An activity (`tree`, `timeline`).
    Activity,
    /// A span of another tracing backend, grafted by an extension provider (`crate::extension`).
    Extension,
}

/// A span of a displayed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplaySpan {
    /// Span id, unique in the trace.
    pub span_id: u64,
    /// Parent span id.
    pub parent: Option<u64>,
    /// What the span stands for.
    pub kind: DisplayKind,
    /// Service name (the resource, with the cluster where it changes; the source of an activity; the link
    /// class of a link-class span).
    pub service: String,
    /// Operation name (namespace and name of an object, title of an activity).
    pub operation: String,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// Tags, without internal markers.
    pub tags: Vec<Field>,
    /// Logs, by time.
    pub logs: Vec<DisplayLog>,
    /// Notes for the reader (objects left out, ...).
    pub warnings: Vec<String>,
}

impl DisplaySpan {
    /// The value of a tag.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, val)| val.as_str())
    }
}

/// A displayed trace: spans in depth-first order, the root first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayTrace {
    /// The trace id carrying the display mode.
    pub trace_id: u128,
    /// The mode.
    pub mode: DisplayMode,
    /// Spans, depth first.
    pub spans: Vec<DisplaySpan>,
}

impl DisplayTrace {
    /// The children of a span.
    pub fn children_of(&self, span_id: u64) -> impl Iterator<Item = &DisplaySpan> {
        self.spans.iter().filter(move |s| s.parent == Some(span_id))
    }

    /// The root span.
    pub fn root(&self) -> Option<&DisplaySpan> {
        self.spans.first()
    }
}

impl fmt::Display for DisplayTrace {
    /// The terminal rendering of [`crate::text::render`] with the default [`TextOptions`](crate::text::TextOptions).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::text::render(
            self,
            crate::text::TextOptions::default(),
        ))
    }
}
