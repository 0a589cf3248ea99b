//! Display modes (reference §6.6, §2.7): how an assembled [`TraceView`] is shown, and the display-mode ids encoded
//! in the trace ids the read side hands out.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::{LogKind, SpanRecord, vocabulary as v};
use xxhash_rust::xxh3::xxh3_64;

use crate::assemble::{TraceView, ViewNode};
use crate::selector::LinkSelector;

/// The shape of the tree. Only `tracing` is built so far.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BaseMode {
    /// One span per object, hierarchy = relations, activities as logs on the object span (the default).
    Tracing,
}

/// Which related objects a view includes besides the queried one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Modifier {
    /// Ancestors and descendants.
    FullTree,
    /// Owners, upwards.
    Ancestors,
    /// Owned objects, downwards.
    OwnedObjects,
}

/// A display mode: a base and at most one relation modifier. Its id follows the original's numbering.
///
/// ```
/// use kelemetry_query::display::{BaseMode, DisplayMode, Modifier};
/// let mode = DisplayMode { base: BaseMode::Tracing, modifier: Some(Modifier::FullTree) };
/// assert_eq!(mode.id(), 0x2100_0000);
/// assert_eq!(mode.to_string(), "tracing [full tree]");
/// assert_eq!(DisplayMode::from_id(0x2100_0000), Some(mode));
/// assert!(format!("{:032x}", mode.trace_id(7)).starts_with("ff21000000e1e3e7"));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct DisplayMode {
    /// The base.
    pub base: BaseMode,
    /// The relation modifier.
    pub modifier: Option<Modifier>,
}

const TRACE_ID_MASK: u64 = 0xFF00_0000_00E1_E3E7;

impl DisplayMode {
    /// `tracing` alone.
    pub const TRACING: Self = Self {
        base: BaseMode::Tracing,
        modifier: None,
    };

    /// The 32-bit id: `20000000` tracing, `01000000` full tree, `02000000` ancestors, `04000000` owned objects.
    pub fn id(&self) -> u32 {
        let base = match self.base {
            BaseMode::Tracing => 0x2000_0000,
        };
        base | match self.modifier {
            None => 0,
            Some(Modifier::FullTree) => 0x0100_0000,
            Some(Modifier::Ancestors) => 0x0200_0000,
            Some(Modifier::OwnedObjects) => 0x0400_0000,
        }
    }

    /// The mode with this id, if it is one this build knows.
    pub fn from_id(id: u32) -> Option<Self> {
        let base = match id & 0xF000_0000 {
            0x2000_0000 => BaseMode::Tracing,
            _ => return None,
        };
        let modifier = match id & 0x0FFF_FFFF {
            0 => None,
            0x0100_0000 => Some(Modifier::FullTree),
            0x0200_0000 => Some(Modifier::Ancestors),
            0x0400_0000 => Some(Modifier::OwnedObjects),
            _ => return None,
        };
        Some(Self { base, modifier })
    }

    /// A trace id carrying this mode: high half `0xFF00000000E1E3E7 | id << 24`, low half `low`.
    pub fn trace_id(&self, low: u64) -> u128 {
        let high = TRACE_ID_MASK | (u64::from(self.id()) << 24);
        (u128::from(high) << 64) | u128::from(low)
    }

    /// The mode encoded in a trace id minted by [`DisplayMode::trace_id`], and its low half.
    pub fn from_trace_id(trace_id: u128) -> Option<(Self, u64)> {
        let high = (trace_id >> 64) as u64;
        if high & !(0xFFFF_FFFF << 24) != TRACE_ID_MASK {
            return None;
        }
        let id = ((high >> 24) & 0xFFFF_FFFF) as u32;
        Some((Self::from_id(id)?, trace_id as u64))
    }

    /// The links this mode follows.
    pub fn selector(&self) -> LinkSelector {
        match self.modifier {
            None => LinkSelector::none(),
            Some(Modifier::FullTree) => LinkSelector::full_tree(),
            Some(Modifier::Ancestors) => LinkSelector::ancestors(),
            Some(Modifier::OwnedObjects) => LinkSelector::owned_objects(),
        }
    }
}

impl fmt::Display for DisplayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.base {
            BaseMode::Tracing => "tracing",
        })?;
        match self.modifier {
            None => Ok(()),
            Some(Modifier::FullTree) => f.write_str(" [full tree]"),
            Some(Modifier::Ancestors) => f.write_str(" [ancestors]"),
            Some(Modifier::OwnedObjects) => f.write_str(" [owned objects]"),
        }
    }
}

/// One field of a display log.
pub type Field = (String, String);

/// A log on a display span: an activity collapsed into fields.
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

/// A span of a displayed trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplaySpan {
    /// Span id, unique in the trace.
    pub span_id: u64,
    /// Parent span id.
    pub parent: Option<u64>,
    /// Service name (the resource, with the cluster where it changes).
    pub service: String,
    /// Operation name (namespace and name).
    pub operation: String,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// Tags, without internal markers.
    pub tags: Vec<Field>,
    /// Logs, by time.
    pub logs: Vec<DisplayLog>,
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
}

/// Shows `view` in `mode`. The trace id's low half is a hash of the queried object and range, so the same
/// question gets the same id.
pub fn display(view: &TraceView, mode: DisplayMode) -> DisplayTrace {
    let low = xxh3_64(format!("{}\n{}\n{}", view.queried, view.from, view.to).as_bytes());
    let mut spans = Vec::new();
    match mode.base {
        BaseMode::Tracing => tracing_spans(&view.root, None, None, &mut spans),
    }
    if let Some(root) = spans.first_mut() {
        pad_root(root);
        root.operation = format!(
            "{} / {}..{}",
            root.operation,
            root.start.strftime("%H:%M:%S"),
            root.end.strftime("%H:%M:%S")
        );
    }
    DisplayTrace {
        trace_id: mode.trace_id(low),
        mode,
        spans,
    }
}

/// Tracing mode: one span per object, activities as logs, each span shrunk to its activity and its children.
fn tracing_spans(
    node: &ViewNode,
    parent: Option<u64>,
    parent_cluster: Option<&str>,
    out: &mut Vec<DisplaySpan>,
) {
    let history = &node.history;
    let key = &history.key;
    let span_id = history
        .object_spans
        .first()
        .map(|s| s.span_id.to_u64())
        .unwrap_or_else(|| xxh3_64(key.to_string().as_bytes()));
    let mut service = key.resource.clone();
    if parent_cluster != Some(key.cluster.as_str()) {
        service = format!("{} {}", key.cluster, service);
    }
    let operation = if key.namespace.is_empty() || key.namespace == "default" {
        key.name.clone()
    } else {
        format!("{} {}", key.namespace, key.name)
    };
    let mut tags: Vec<Field> = Vec::new();
    for name in [
        v::CLUSTER,
        v::GROUP,
        v::VERSION,
        v::RESOURCE,
        v::NAMESPACE,
        v::NAME,
        v::UID,
    ] {
        if let Some(value) = history.attribute(name) {
            tags.push((name.to_owned(), value.to_owned()));
        }
    }
    if !node.class.is_empty() {
        tags.push((v::LINK_CLASS.to_owned(), node.class.clone()));
    }
    let logs: Vec<DisplayLog> = history.activities.iter().map(collapse).collect();
    let index = out.len();
    out.push(DisplaySpan {
        span_id,
        parent,
        service,
        operation,
        start: Timestamp::MAX,
        end: Timestamp::MIN,
        tags,
        logs,
    });
    for child in &node.children {
        tracing_spans(child, Some(span_id), Some(&key.cluster), out);
    }
    // Compact: the span covers its logs (one second each) and its descendants.
    let (mut start, mut end) = (Timestamp::MAX, Timestamp::MIN);
    for log in &out[index].logs {
        start = start.min(log.time);
        end = end.max(
            log.time
                .saturating_add(SignedDuration::from_secs(1))
                .unwrap_or(log.time),
        );
    }
    for span in &out[index + 1..] {
        if span.start <= span.end {
            start = start.min(span.start);
            end = end.max(span.end);
        }
    }
    if start > end {
        // Nothing happened in the range: keep the object's window.
        start = history
            .object_spans
            .first()
            .map(|s| s.start)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        end = history.object_spans.last().map(|s| s.end).unwrap_or(start);
    }
    out[index].start = start;
    out[index].end = end;
}

fn pad_root(root: &mut DisplaySpan) {
    let length = root.end.duration_since(root.start);
    let pad = length / 20;
    root.start = root.start.saturating_sub(pad).unwrap_or(root.start);
    root.end = root.end.saturating_add(pad).unwrap_or(root.end);
}

/// Which diff class a line belongs to (reference §6.6): `None` when hidden.
fn diff_class(line: &str) -> Option<&'static str> {
    let path = line.split_once(' ').map_or(line, |(path, _)| path);
    if path.starts_with("metadata.managedFields") {
        None
    } else if path.starts_with("metadata.resourceVersion")
        || path.starts_with("metadata.generation")
    {
        Some("verbose diff")
    } else {
        Some("diff")
    }
}

/// An activity span collapsed into one log (reference §6.6, `CollapseNestingVisitor`).
fn collapse(activity: &SpanRecord) -> DisplayLog {
    let source = activity.service_name().to_owned();
    let mut fields: Vec<Field> = vec![(source.clone(), activity.name.clone())];
    let mapped: &[&str] = match source.as_str() {
        "audit" => &[v::USER_AGENT, v::SOURCE_IP, v::RESPONSE_CODE],
        "event" => &[
            v::EVENT_ACTION,
            v::EVENT_SOURCE,
            v::EVENT_TYPE,
            v::EVENT_COUNT,
        ],
        _ => &[],
    };
    for name in mapped {
        if let Some(value) = activity.attribute(name).filter(|value| !value.is_empty()) {
            fields.push(((*name).to_owned(), value.to_owned()));
        }
    }
    let mut diff = Vec::new();
    let mut verbose = Vec::new();
    for log in &activity.logs {
        let kind = log
            .attributes
            .iter()
            .find(|(k, _)| k == v::LOG_TYPE)
            .and_then(|(_, value)| LogKind::from_name(value));
        match kind {
            Some(LogKind::ObjectDiff) => {
                for line in log.message.lines() {
                    match diff_class(line) {
                        Some("diff") => diff.push(line),
                        Some(_) => verbose.push(line),
                        None => {}
                    }
                }
            }
            Some(LogKind::EventMessage) => fields.push(("message".into(), log.message.clone())),
            Some(LogKind::ObjectSnapshot) => fields.push(("snapshot".into(), log.message.clone())),
            Some(LogKind::RealError) => fields.push(("error".into(), log.message.clone())),
            Some(LogKind::RealVerbose) => fields.push((String::new(), log.message.clone())),
            Some(LogKind::KelemetryError) => fields.push(("_debug".into(), log.message.clone())),
            None => {}
        }
    }
    if !diff.is_empty() {
        fields.push(("diff".into(), diff.join("\n")));
    }
    if !verbose.is_empty() {
        fields.push(("verbose diff".into(), verbose.join("\n")));
    }
    DisplayLog {
        time: activity.start,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_ids_round_trip_through_trace_ids() {
        for modifier in [
            None,
            Some(Modifier::FullTree),
            Some(Modifier::Ancestors),
            Some(Modifier::OwnedObjects),
        ] {
            let mode = DisplayMode {
                base: BaseMode::Tracing,
                modifier,
            };
            let id = mode.trace_id(0xdead_beef);
            assert_eq!(DisplayMode::from_trace_id(id), Some((mode, 0xdead_beef)));
        }
        assert_eq!(DisplayMode::from_trace_id(1), None);
        assert_eq!(DisplayMode::from_id(0x2800_0000), None);
    }

    #[test]
    fn diff_lines_are_classified() {
        assert_eq!(diff_class("spec.replicas 2 -> 4"), Some("diff"));
        assert_eq!(
            diff_class("metadata.generation 1 -> 2"),
            Some("verbose diff")
        );
        assert_eq!(
            diff_class("metadata.managedFields[0].time \"a\" -> \"b\""),
            None
        );
    }
}
