//! Tree shaping: an assembled [`TraceView`] into the span tree of a display mode (pruning, nesting, compaction,
//! cluster prefixes).

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::{ObjectKey, SmolStr, SpanId, SpanRecord, vocabulary as v};
use xxhash_rust::xxh3::xxh3_64;

use super::diff::{
    CONFLICT_RETRIED, CONFLICT_RETRY_WINDOW, OUTCOME, collapse, log_fields, retried_conflicts,
};
use super::mode::{BaseMode, DisplayMode};
use super::trace::{DisplayKind, DisplayLog, DisplaySpan, DisplayTrace, Field, field_name};
use crate::assemble::{ObjectHistory, TraceView, ViewNode};

/// Shows `view` in `mode`. The trace id's low half is [`TraceView::low_half`]: the same question (objects and
/// range) gets the same id in every mode.
pub fn display(view: &TraceView, mode: DisplayMode) -> DisplayTrace {
    let range = Range {
        from: view.from,
        to: view.to,
    };
    let kept = kept_objects(view);
    let mut root = match mode.base {
        BaseMode::Timeline => timeline_root(&view.root, range),
        base => object_node(&view.root, base, range, true, &kept)
            .unwrap_or_else(|| bare_node(&view.root, range)),
    };
    if mode.base.collapses() {
        compact(&mut root);
    }
    if view.truncated > 0 {
        root.span.warnings.push(format!(
            "{} linked objects left out: the budget of objects to fetch ran out",
            view.truncated
        ));
    }
    root.span.operation = format!(
        "{} / {}",
        root.span.operation,
        time_range_text(root.span.start, root.span.end)
    );
    let mut spans = Vec::new();
    flatten(root, None, None, &mut spans);
    DisplayTrace {
        trace_id: mode.trace_id(view.low_half()),
        mode,
        spans,
    }
}

/// The time range of the view.
#[derive(Copy, Clone, Debug)]
struct Range {
    from: Timestamp,
    to: Timestamp,
}

/// A span under construction, with its children.
#[derive(Debug)]
struct Node {
    span: DisplaySpan,
    /// Whether it is a pseudo span (object, link class, source group): compaction recomputes its interval.
    pseudo: bool,
    children: Vec<Node>,
}

/// The interval an object span shows before compaction: its windows, clipped to the range (the original sets it to
/// the range; clipping to the windows keeps "all time" views finite; docs/behaviour/display-modes.md#intervals).
fn object_interval(node: &ViewNode, range: Range) -> (Timestamp, Timestamp) {
    object_window(node, range.from, range.to)
}

/// An object's windows (or, without object spans, its activities) clipped to `from..to`: the interval its span
/// shows before compaction.
pub(crate) fn object_window(
    node: &ViewNode,
    from: Timestamp,
    to: Timestamp,
) -> (Timestamp, Timestamp) {
    let range = Range { from, to };
    let spans = &node.history.object_spans;
    let first = spans.iter().map(|s| s.start).min();
    let last = spans.iter().map(|s| s.end).max();
    let activity_first = node.history.activities.first().map(|a| a.start);
    let activity_last = node.history.activities.iter().map(|a| a.end).max();
    let start = first
        .or(activity_first)
        .unwrap_or(range.from)
        .max(range.from);
    let end = last.or(activity_last).unwrap_or(start).min(range.to);
    (start, end.max(start))
}

/// The id of an object's display span: its first window's object span, else a hash of its key.
pub(crate) fn object_display_span_id(history: &ObjectHistory) -> u64 {
    history
        .object_spans
        .first()
        .map(|s| s.span_id.to_u64())
        .unwrap_or_else(|| xxh3_64(history.key.to_string().as_bytes()))
}

fn object_span(node: &ViewNode, range: Range) -> DisplaySpan {
    let history = &node.history;
    let key = &history.key;
    let span_id = object_display_span_id(history);
    let operation = if key.namespace.is_empty() || key.namespace == "default" {
        key.name.to_string()
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
        // The value itself (shared or inline), as `ObjectHistory::attribute` finds it: the latest window's.
        let value = history.object_spans.iter().rev().find_map(|span| {
            span.attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, value)| value)
        });
        if let Some(value) = value {
            tags.push((SmolStr::new_static(name), value.clone()));
        }
    }
    if tags.is_empty() {
        for (name, value) in [v::CLUSTER, v::GROUP, v::RESOURCE, v::NAMESPACE, v::NAME]
            .into_iter()
            .zip(key.fields())
        {
            tags.push((SmolStr::new_static(name), SmolStr::new(value)));
        }
    }
    if !node.class.is_empty() {
        tags.push((
            SmolStr::new_static(v::LINK_CLASS),
            SmolStr::new(&node.class),
        ));
    }
    let (start, end) = object_interval(node, range);
    DisplaySpan {
        span_id,
        parent: None,
        kind: DisplayKind::Object,
        service: key.resource.to_string(),
        operation,
        start,
        end,
        tags,
        logs: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The root object with nothing under it: what a view shows when every step pruned it.
fn bare_node(node: &ViewNode, range: Range) -> Node {
    Node {
        span: object_span(node, range),
        pseudo: true,
        children: Vec::new(),
    }
}

/// A virtual span under `parent` (a link class or a source group).
fn virtual_node(parent: &DisplaySpan, kind: DisplayKind, name: &str) -> Node {
    let marker = match kind {
        DisplayKind::LinkClass => "linkClass",
        _ => "group",
    };
    let id = xxh3_64(format!("{:016x}\n{marker}\n{name}", parent.span_id).as_bytes());
    Node {
        span: DisplaySpan {
            span_id: if id == 0 { 1 } else { id },
            parent: None,
            kind,
            service: name.to_owned(),
            operation: if kind == DisplayKind::SourceGroup {
                name.to_owned()
            } else {
                String::new()
            },
            start: parent.start,
            end: parent.end,
            tags: Vec::new(),
            logs: Vec::new(),
            warnings: Vec::new(),
        },
        pseudo: true,
        children: Vec::new(),
    }
}

/// The objects a view shows even when nothing happened to them in the range: the queried objects and the objects
/// they are directly related to (a Pod's Node, a ReplicaSet's Deployment). Without this, a relation the user asked
/// for would vanish whenever the related object was quiet.
fn kept_objects(view: &TraceView) -> HashSet<&ObjectKey> {
    let queried: HashSet<&ObjectKey> = std::iter::once(&view.queried)
        .chain(&view.also_queried)
        .collect();
    let mut kept = queried.clone();
    for (_, node) in view.root.walk() {
        if queried.contains(&node.history.key) {
            kept.extend(node.history.links.iter().map(|link| &link.other));
        }
    }
    kept
}

/// The object `node` in a `tree`, `tracing` or `grouped` view, its related objects under it; `None` when it is
/// pruned (docs/behaviour/display-modes.md#quiet-objects: a non-root object with nothing in the range and no
/// children, unless it is one of the `kept` objects).
fn object_node(
    node: &ViewNode,
    base: BaseMode,
    range: Range,
    is_root: bool,
    kept: &HashSet<&ObjectKey>,
) -> Option<Node> {
    let children: Vec<(String, Node)> = node
        .children
        .iter()
        .filter_map(|child| {
            Some((
                child.class.clone(),
                object_node(child, base, range, false, kept)?,
            ))
        })
        .collect();
    if !is_root
        && children.is_empty()
        && node.history.activities.is_empty()
        && !kept.contains(&node.history.key)
    {
        return None;
    }
    let mut out = Node {
        span: object_span(node, range),
        pseudo: true,
        children: Vec::new(),
    };
    add_activities(&mut out, &node.history.activities, base);
    add_related(&mut out, children, base);
    Some(out)
}

/// The activities of an object under its span, as `base` shows them: child spans (`tree`), logs on the span
/// (`tracing`), or logs grouped into one child span per source but Kubernetes Events (`grouped`).
fn add_activities(out: &mut Node, activities: &[SpanRecord], base: BaseMode) {
    let retried = retried_conflicts(activities, CONFLICT_RETRY_WINDOW);
    match base {
        BaseMode::Tree | BaseMode::Timeline => {
            out.children.extend(nested_activities(activities, &retried));
        }
        BaseMode::Tracing => {
            out.span.logs = activities
                .iter()
                .map(|activity| collapse(activity, &retried))
                .collect();
        }
        BaseMode::Grouped => {
            // Kubernetes Events stay as logs on the object; every other source gets a child span.
            let mut groups: BTreeMap<&str, Node> = BTreeMap::new();
            for activity in activities {
                let source = activity.service_name();
                if source == "event" {
                    out.span.logs.push(collapse(activity, &retried));
                } else {
                    groups
                        .entry(source)
                        .or_insert_with(|| {
                            virtual_node(&out.span, DisplayKind::SourceGroup, source)
                        })
                        .span
                        .logs
                        .push(collapse(activity, &retried));
                }
            }
            out.children.extend(groups.into_values());
        }
    }
}

/// The related objects of an object under its span, each with the class of its link: directly (`tracing`), or
/// under one virtual span per link class (the other bases).
fn add_related(out: &mut Node, children: Vec<(String, Node)>, base: BaseMode) {
    if base == BaseMode::Tracing {
        // Link classes are extracted: children hang directly under their parent object.
        out.children
            .extend(children.into_iter().map(|(_, child)| child));
        return;
    }
    // One virtual span per class under each parent (the original makes one per child link;
    // docs/behaviour/display-modes.md#bases).
    let mut classes: Vec<Node> = Vec::new();
    for (class, child) in children {
        if class.is_empty() {
            out.children.push(child);
            continue;
        }
        match classes.iter_mut().find(|c| c.span.service == class) {
            Some(group) => group.children.push(child),
            None => {
                let mut group = virtual_node(&out.span, DisplayKind::LinkClass, &class);
                group.children.push(child);
                classes.push(group);
            }
        }
    }
    out.children.extend(classes);
}

/// `timeline`: the root object, every activity of the view under it by time (non-root object spans and link
/// classes extracted; the original leaves link-class spans; docs/behaviour/display-modes.md#bases).
fn timeline_root(root: &ViewNode, range: Range) -> Node {
    let nodes = root.walk();
    // Retried conflicts are a matter of one object's own activities.
    let retried: HashSet<SpanId> = nodes
        .iter()
        .flat_map(|(_, node)| retried_conflicts(&node.history.activities, CONFLICT_RETRY_WINDOW))
        .collect();
    let mut activities: Vec<&SpanRecord> = nodes
        .iter()
        .flat_map(|(_, node)| node.history.activities.iter())
        .collect();
    activities.sort_by(|a, b| a.start.cmp(&b.start).then(a.name.cmp(&b.name)));
    let mut out = bare_node(root, range);
    out.children = activities
        .into_iter()
        .map(|activity| activity_node(activity, &retried))
        .collect();
    out
}

/// The activities of one object as child spans, each under its parent when that is another of them (a
/// controller's spans inside its reconcile span, exported by `kelemetry-tracing`), else under the object.
/// `retried` are the object's retried conflicts ([`retried_conflicts`]).
fn nested_activities(activities: &[SpanRecord], retried: &HashSet<SpanId>) -> Vec<Node> {
    let ids: HashSet<SpanId> = activities.iter().map(|a| a.span_id).collect();
    let mut children: HashMap<SpanId, Vec<&SpanRecord>> = HashMap::new();
    let mut top = Vec::new();
    for activity in activities {
        match activity.parent_span_id {
            Some(parent) if parent != activity.span_id && ids.contains(&parent) => {
                children.entry(parent).or_default().push(activity);
            }
            _ => top.push(activity),
        }
    }
    let mut placed: HashSet<SpanId> = HashSet::new();
    let mut out: Vec<Node> = top
        .into_iter()
        .filter_map(|activity| nest(activity, &children, &mut placed, retried, 0))
        .collect();
    // Spans whose parents form a cycle (never written so, but read from outside) stay visible, flat.
    for activity in activities {
        if placed.insert(activity.span_id) {
            out.push(activity_node(activity, retried));
        }
    }
    out
}

/// How deep activities nest in a view; deeper descendants are shown flat under the deepest nested one.
const MAX_ACTIVITY_NESTING: usize = 32;

fn nest(
    activity: &SpanRecord,
    children: &HashMap<SpanId, Vec<&SpanRecord>>,
    placed: &mut HashSet<SpanId>,
    retried: &HashSet<SpanId>,
    depth: usize,
) -> Option<Node> {
    if !placed.insert(activity.span_id) {
        return None;
    }
    let mut node = activity_node(activity, retried);
    for child in children.get(&activity.span_id).into_iter().flatten() {
        if depth < MAX_ACTIVITY_NESTING {
            node.children
                .extend(nest(child, children, placed, retried, depth + 1));
            continue;
        }
        let mut stack = vec![*child];
        while let Some(span) = stack.pop() {
            if placed.insert(span.span_id) {
                node.children.push(activity_node(span, retried));
                stack.extend(children.get(&span.span_id).into_iter().flatten());
            }
        }
    }
    Some(node)
}

/// An activity as a child span (`tree`, `timeline`): its tags without internal markers, then [`OUTCOME`] when
/// it is one of the `retried` conflicts, its log lines.
fn activity_node(activity: &SpanRecord, retried: &HashSet<SpanId>) -> Node {
    let mut tags: Vec<Field> = activity
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with(v::INTERNAL_PREFIX))
        .map(|(k, value)| (field_name(k), value.clone()))
        .collect();
    if retried.contains(&activity.span_id) {
        tags.push((
            SmolStr::new_static(OUTCOME),
            SmolStr::new_static(CONFLICT_RETRIED),
        ));
    }
    let logs = activity
        .logs
        .iter()
        .map(|log| DisplayLog {
            time: log.time,
            fields: log_fields(log),
        })
        .filter(|log| !log.fields.is_empty())
        .collect();
    Node {
        span: DisplaySpan {
            span_id: activity.span_id.to_u64(),
            parent: None,
            kind: DisplayKind::Activity,
            service: activity.service_name().to_owned(),
            operation: activity.name.clone(),
            start: activity.start,
            end: activity.end.max(activity.start),
            tags,
            logs,
            warnings: Vec::new(),
        },
        pseudo: false,
        children: Vec::new(),
    }
}

/// Compaction (the original's `CompactDurationVisitor`; docs/behaviour/display-modes.md#intervals): each pseudo
/// span covers its children and its logs (one second each); a span with neither keeps its interval.
fn compact(node: &mut Node) -> bool {
    let busy: Vec<bool> = node.children.iter_mut().map(compact).collect();
    if !node.pseudo {
        return true;
    }
    let (mut start, mut end) = (Timestamp::MAX, Timestamp::MIN);
    for log in &node.span.logs {
        start = start.min(log.time);
        end = end.max(
            log.time
                .saturating_add(SignedDuration::from_secs(1))
                .unwrap_or(log.time),
        );
    }
    for (child, busy) in node.children.iter().zip(&busy) {
        // A quiet related object (kept because it was asked for) does not stretch its parent over its window.
        if *busy {
            start = start.min(child.span.start);
            end = end.max(child.span.end);
        }
    }
    let has_content = start <= end;
    if has_content {
        node.span.start = start;
        node.span.end = end;
    }
    for (child, busy) in node.children.iter_mut().zip(busy) {
        if !busy {
            fit(child, node.span.start, node.span.end);
        }
    }
    has_content
}

/// Gives a quiet subtree the interval of the span it hangs under.
fn fit(node: &mut Node, start: Timestamp, end: Timestamp) {
    node.span.start = start;
    node.span.end = end;
    for child in &mut node.children {
        fit(child, start, end);
    }
}

/// A displayed interval as text, in UTC: `2024-05-01 11:59:57..12:00:44` when both ends fall on the same date,
/// `2018-12-16 19:39:02..2018-12-17 12:21:40` when they do not. The root span's name ends with it and the text
/// rendering's header prints it, so both read the same.
pub fn time_range_text(start: Timestamp, end: Timestamp) -> String {
    const DAY_AND_TIME: &str = "%Y-%m-%d %H:%M:%S";
    let same_date = start.strftime("%Y-%m-%d").to_string() == end.strftime("%Y-%m-%d").to_string();
    let end_format = if same_date { "%H:%M:%S" } else { DAY_AND_TIME };
    format!(
        "{}..{}",
        start.strftime(DAY_AND_TIME),
        end.strftime(end_format)
    )
}

/// Depth first into `out`; prefixes the service with the cluster where it differs from the nearest ancestor's
/// (the original's `ClusterNameVisitor`; docs/behaviour/display-modes.md#objects-as-spans).
fn flatten(
    node: Node,
    parent: Option<u64>,
    parent_cluster: Option<&str>,
    out: &mut Vec<DisplaySpan>,
) {
    let Node {
        mut span, children, ..
    } = node;
    span.parent = parent;
    let cluster = span.tag(v::CLUSTER).map(str::to_owned);
    if let Some(cluster) = &cluster
        && parent_cluster != Some(cluster.as_str())
    {
        span.service = format!("{cluster} {}", span.service);
    }
    let id = span.span_id;
    out.push(span);
    let inherited = cluster.as_deref().or(parent_cluster).map(str::to_owned);
    for child in children {
        flatten(child, Some(id), inherited.as_deref(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activities_nest_under_their_parent_activity() {
        let key = kelemetry_core::ObjectKey::new("c", "example.io", "syncs", "ns", "s");
        let at: Timestamp = "2024-01-01T10:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let window = kelemetry_core::Windowing::default().window_of(at);
        let span_of = |dedup: &str| {
            let activity = kelemetry_core::Activity::new(
                kelemetry_core::Object::new(kelemetry_core::ObjectRef::new(
                    key.clone(),
                    "v1",
                    None,
                )),
                kelemetry_core::SourceKind::Custom("sync-controller".into()),
                at,
                dedup,
                dedup,
            );
            kelemetry_core::span::activity_span(&activity, window)
        };
        let reconcile = span_of("reconcile");
        let mut apply = span_of("apply");
        apply.parent_span_id = Some(reconcile.span_id);
        let mut patch = span_of("patch");
        patch.parent_span_id = Some(apply.span_id);
        let audit = span_of("audit");
        let mut cycle_a = span_of("cycle a");
        let mut cycle_b = span_of("cycle b");
        cycle_a.parent_span_id = Some(cycle_b.span_id);
        cycle_b.parent_span_id = Some(cycle_a.span_id);
        let nodes = nested_activities(
            &[reconcile, apply, audit, patch, cycle_a, cycle_b],
            &HashSet::new(),
        );
        let names: Vec<&str> = nodes.iter().map(|n| n.span.operation.as_str()).collect();
        assert_eq!(names, ["reconcile", "audit", "cycle a", "cycle b"]);
        assert_eq!(nodes[0].children.len(), 1);
        assert_eq!(nodes[0].children[0].span.operation, "apply");
        assert_eq!(nodes[0].children[0].children[0].span.operation, "patch");
        assert!(nodes[1].children.is_empty());
    }
}
