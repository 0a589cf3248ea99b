//! Display modes (reference §6.6, §2.7): how an assembled [`TraceView`] is shown, and the display-mode ids encoded
//! in the trace ids the read side hands out.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::{LogKind, ObjectKey, SpanId, SpanLog, SpanRecord, vocabulary as v};
use xxhash_rust::xxh3::xxh3_64;

use crate::assemble::{TraceView, ViewNode};
use crate::selector::LinkSelector;

/// The shape of the tree.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BaseMode {
    /// Every object a span, activities as child spans, link classes as virtual spans.
    Tree,
    /// The root object and every activity of the view as its children.
    Timeline,
    /// One span per object, hierarchy = relations, activities as logs on the object span (the default).
    Tracing,
    /// `tracing`, with the logs of each source but Kubernetes Events moved into a child span per source.
    Grouped,
}

impl BaseMode {
    /// Every base, the default (`tracing`) first.
    pub const ALL: [Self; 4] = [Self::Tracing, Self::Grouped, Self::Tree, Self::Timeline];

    /// The base's part of a display-mode id.
    pub fn id(self) -> u32 {
        match self {
            Self::Tree => 0x0000_0000,
            Self::Timeline => 0x1000_0000,
            Self::Tracing => 0x2000_0000,
            Self::Grouped => 0x3000_0000,
        }
    }

    /// The name shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tree => "tree",
            Self::Timeline => "timeline",
            Self::Tracing => "tracing",
            Self::Grouped => "grouped",
        }
    }

    /// Whether activities collapse into logs on their object span.
    fn collapses(self) -> bool {
        matches!(self, Self::Tracing | Self::Grouped)
    }
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

impl Modifier {
    /// Every modifier.
    pub const ALL: [Self; 3] = [Self::FullTree, Self::Ancestors, Self::OwnedObjects];

    /// The modifier's bit in a display-mode id.
    pub fn id(self) -> u32 {
        match self {
            Self::FullTree => 0x0100_0000,
            Self::Ancestors => 0x0200_0000,
            Self::OwnedObjects => 0x0400_0000,
        }
    }

    /// The name shown to people, in brackets after the base.
    pub fn name(self) -> &'static str {
        match self {
            Self::FullTree => "full tree",
            Self::Ancestors => "ancestors",
            Self::OwnedObjects => "owned objects",
        }
    }
}

/// A display mode: a base and at most one relation modifier (the original's modifiers of class `owner-ref` are
/// mutually exclusive). Its id follows the original's numbering.
///
/// ```
/// use kelemetry_query::display::{BaseMode, DisplayMode, Modifier};
/// let mode = DisplayMode { base: BaseMode::Tracing, modifier: Some(Modifier::FullTree) };
/// assert_eq!(mode.id(), 0x2100_0000);
/// assert_eq!(mode.to_string(), "tracing [full tree]");
/// assert_eq!(DisplayMode::from_id(0x2100_0000), Some(mode));
/// assert_eq!(DisplayMode::from_name("* tracing [full tree]"), Some(mode));
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

    /// The default mode (`tracing`).
    pub const DEFAULT: Self = Self::TRACING;

    /// Every mode, the default first: each base alone, then each base with each modifier.
    pub fn all() -> Vec<Self> {
        let mut modes: Vec<Self> = BaseMode::ALL
            .iter()
            .map(|&base| Self {
                base,
                modifier: None,
            })
            .collect();
        for base in BaseMode::ALL {
            for modifier in Modifier::ALL {
                modes.push(Self {
                    base,
                    modifier: Some(modifier),
                });
            }
        }
        modes
    }

    /// The mode called `name` (as [`Display`](fmt::Display) writes it; a leading `"* "` is ignored).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        let name = name.strip_prefix("* ").unwrap_or(name);
        Self::all()
            .into_iter()
            .find(|mode| mode.to_string() == name)
    }

    /// The 32-bit id: base `00000000` tree, `10000000` timeline, `20000000` tracing, `30000000` grouped; modifier
    /// `01000000` full tree, `02000000` ancestors, `04000000` owned objects.
    pub fn id(&self) -> u32 {
        self.base.id() | self.modifier.map_or(0, Modifier::id)
    }

    /// The mode with this id, if it is one this build knows.
    pub fn from_id(id: u32) -> Option<Self> {
        let base = BaseMode::ALL
            .into_iter()
            .find(|base| base.id() == id & 0xF000_0000)?;
        let rest = id & 0x0FFF_FFFF;
        let modifier = if rest == 0 {
            None
        } else {
            Some(Modifier::ALL.into_iter().find(|m| m.id() == rest)?)
        };
        Some(Self { base, modifier })
    }

    /// A trace id carrying this mode: high half `0xFF00000000E1E3E7 | id << 24`, low half `low`.
    pub fn trace_id(&self, low: u64) -> u128 {
        let high = TRACE_ID_MASK | (u64::from(self.id()) << 24);
        (u128::from(high) << 64) | u128::from(low)
    }

    /// The mode and the low half of a trace id handed out by [`DisplayMode::trace_id`].
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

impl Default for DisplayMode {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for DisplayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.name())?;
        match self.modifier {
            None => Ok(()),
            Some(modifier) => write!(f, " [{}]", modifier.name()),
        }
    }
}

/// One field of a display log or a tag of a display span.
pub type Field = (String, String);

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
pub enum DisplayKind {
    /// An object (its windows merged).
    Object,
    /// A virtual span between a parent object and its children of one link class (`tree`, `grouped`).
    LinkClass,
    /// A virtual span holding the collapsed activities of one source (`grouped`).
    SourceGroup,
    /// An activity (`tree`, `timeline`).
    Activity,
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
        pad(&mut root.span);
    }
    if view.truncated > 0 {
        root.span.warnings.push(format!(
            "{} linked objects left out: the budget of objects to fetch ran out",
            view.truncated
        ));
    }
    root.span.operation = format!(
        "{} / {}..{}",
        root.span.operation,
        root.span.start.strftime("%H:%M:%S"),
        root.span.end.strftime("%H:%M:%S")
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

/// The interval an object span shows before compaction: its windows, clipped to the range (reference §6.7 sets it
/// to the range; clipping to the windows keeps "all time" views finite).
fn object_interval(node: &ViewNode, range: Range) -> (Timestamp, Timestamp) {
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

fn object_span(node: &ViewNode, range: Range) -> DisplaySpan {
    let history = &node.history;
    let key = &history.key;
    let span_id = history
        .object_spans
        .first()
        .map(|s| s.span_id.to_u64())
        .unwrap_or_else(|| xxh3_64(key.to_string().as_bytes()));
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
    if tags.is_empty() {
        for (name, value) in [v::CLUSTER, v::GROUP, v::RESOURCE, v::NAMESPACE, v::NAME]
            .into_iter()
            .zip(key.fields())
        {
            tags.push((name.to_owned(), value.to_owned()));
        }
    }
    if !node.class.is_empty() {
        tags.push((v::LINK_CLASS.to_owned(), node.class.clone()));
    }
    let (start, end) = object_interval(node, range);
    DisplaySpan {
        span_id,
        parent: None,
        kind: DisplayKind::Object,
        service: key.resource.clone(),
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
/// pruned (reference §6.6 `PruneChildless`: a non-root object with nothing in the range and no children, unless it
/// is one of the `kept` objects).
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
    match base {
        BaseMode::Tree | BaseMode::Timeline => {
            out.children
                .extend(nested_activities(&node.history.activities));
        }
        BaseMode::Tracing => {
            out.span.logs = node.history.activities.iter().map(collapse).collect();
        }
        BaseMode::Grouped => {
            // Kubernetes Events stay as logs on the object; every other source gets a child span.
            let mut groups: BTreeMap<&str, Node> = BTreeMap::new();
            for activity in &node.history.activities {
                let source = activity.service_name();
                if source == "event" {
                    out.span.logs.push(collapse(activity));
                } else {
                    groups
                        .entry(source)
                        .or_insert_with(|| {
                            virtual_node(&out.span, DisplayKind::SourceGroup, source)
                        })
                        .span
                        .logs
                        .push(collapse(activity));
                }
            }
            out.children.extend(groups.into_values());
        }
    }
    if base == BaseMode::Tracing {
        // Link classes are extracted: children hang directly under their parent object.
        out.children
            .extend(children.into_iter().map(|(_, child)| child));
    } else {
        // One virtual span per class under each parent (the original makes one per child link, §14.13).
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
    Some(out)
}

/// `timeline`: the root object, every activity of the view under it by time (non-root object spans and link
/// classes extracted; the original leaves link-class spans, §14.13).
fn timeline_root(root: &ViewNode, range: Range) -> Node {
    let mut activities: Vec<&SpanRecord> = root
        .walk()
        .into_iter()
        .flat_map(|(_, node)| node.history.activities.iter())
        .collect();
    activities.sort_by(|a, b| a.start.cmp(&b.start).then(a.name.cmp(&b.name)));
    let mut out = bare_node(root, range);
    out.children = activities.into_iter().map(activity_node).collect();
    out
}

/// The activities of one object as child spans, each under its parent when that is another of them (a
/// controller's spans inside its reconcile span, exported by `kelemetry-tracing`), else under the object.
fn nested_activities(activities: &[SpanRecord]) -> Vec<Node> {
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
        .filter_map(|activity| nest(activity, &children, &mut placed, 0))
        .collect();
    // Spans whose parents form a cycle (never written so, but read from outside) stay visible, flat.
    for activity in activities {
        if placed.insert(activity.span_id) {
            out.push(activity_node(activity));
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
    depth: usize,
) -> Option<Node> {
    if !placed.insert(activity.span_id) {
        return None;
    }
    let mut node = activity_node(activity);
    for child in children.get(&activity.span_id).into_iter().flatten() {
        if depth < MAX_ACTIVITY_NESTING {
            node.children
                .extend(nest(child, children, placed, depth + 1));
            continue;
        }
        let mut stack = vec![*child];
        while let Some(span) = stack.pop() {
            if placed.insert(span.span_id) {
                node.children.push(activity_node(span));
                stack.extend(children.get(&span.span_id).into_iter().flatten());
            }
        }
    }
    Some(node)
}

/// An activity as a child span (`tree`, `timeline`): its tags without internal markers, its log lines.
fn activity_node(activity: &SpanRecord) -> Node {
    let tags = activity
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with(v::INTERNAL_PREFIX))
        .map(|(k, value)| (k.to_string(), value.clone()))
        .collect();
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

/// Compaction (reference §6.6 `CompactDurationVisitor`): each pseudo span covers its children and its logs (one
/// second each); a span with neither keeps its interval.
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

/// The root gets 5% of its length on each side.
fn pad(root: &mut DisplaySpan) {
    let length = root.end.duration_since(root.start);
    let pad = length / 20;
    root.start = root.start.saturating_sub(pad).unwrap_or(root.start);
    root.end = root.end.saturating_add(pad).unwrap_or(root.end);
}

/// Depth first into `out`; prefixes the service with the cluster where it differs from the nearest ancestor's
/// (reference §6.6 `ClusterNameVisitor`).
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

/// A diff class (reference §6.6): lines of an object diff are classified by their path; each class becomes one
/// field of the log.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DiffClass {
    /// What changed in the object (`diff`).
    Diff,
    /// Bookkeeping that changes with every write: `metadata.resourceVersion`, `metadata.generation`
    /// (`verbose diff`).
    Verbose,
    /// Not shown: `metadata.managedFields`.
    Hidden,
}

impl DiffClass {
    /// The class of one diff line (`path old -> new`): the longest configured prefix of its path decides.
    pub fn of_line(line: &str) -> Self {
        let path = line.split_once(' ').map_or(line, |(path, _)| path);
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        if under("metadata.managedFields") {
            Self::Hidden
        } else if under("metadata.resourceVersion") || under("metadata.generation") {
            Self::Verbose
        } else {
            Self::Diff
        }
    }

    /// The field name of the class, `None` when hidden.
    pub fn field_name(self) -> Option<&'static str> {
        match self {
            Self::Diff => Some("diff"),
            Self::Verbose => Some("verbose diff"),
            Self::Hidden => None,
        }
    }
}

/// The fields of one log line of an activity, by its log type: diffs split into classes (in ascending priority:
/// `diff`, then `verbose diff`), `event/message` → `message`, `audit/objectSnapshot` → `snapshot`, `realError`
/// → `error`, `realVerbose` → `""`, `kelemetryError` → `_debug`; unknown types are dropped.
fn log_fields(log: &SpanLog) -> Vec<Field> {
    let kind = log
        .attributes
        .iter()
        .find(|(k, _)| k == v::LOG_TYPE)
        .and_then(|(_, value)| LogKind::from_name(value));
    let name = match kind {
        Some(LogKind::ObjectDiff) => {
            let mut diff = Vec::new();
            let mut verbose = Vec::new();
            for line in log.message.lines() {
                match DiffClass::of_line(line) {
                    DiffClass::Diff => diff.push(line),
                    DiffClass::Verbose => verbose.push(line),
                    DiffClass::Hidden => {}
                }
            }
            let mut fields = Vec::new();
            if !diff.is_empty() {
                fields.push(("diff".to_owned(), diff.join("\n")));
            }
            if !verbose.is_empty() {
                fields.push(("verbose diff".to_owned(), verbose.join("\n")));
            }
            return fields;
        }
        Some(LogKind::EventMessage) => "message",
        Some(LogKind::ObjectSnapshot) => "snapshot",
        Some(LogKind::RealError) => "error",
        Some(LogKind::RealVerbose) => "",
        Some(LogKind::KelemetryError) => "_debug",
        None => return Vec::new(),
    };
    vec![(name.to_owned(), log.message.clone())]
}

/// An activity span collapsed into one log (reference §6.6, `CollapseNestingVisitor`): `<source>: <title>`, the
/// mapped tags, the diff classes (`diff` before `verbose diff`), the other log lines by type.
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
    let mut diffs: Vec<Field> = Vec::new();
    let mut others: Vec<Field> = Vec::new();
    for log in &activity.logs {
        for field in log_fields(log) {
            if field.0 == "diff" || field.0 == "verbose diff" {
                diffs.push(field);
            } else {
                others.push(field);
            }
        }
    }
    // Diff classes in ascending priority, each class one field even when several diff logs exist.
    for class in ["diff", "verbose diff"] {
        let lines: Vec<&str> = diffs
            .iter()
            .filter(|(k, _)| k == class)
            .map(|(_, value)| value.as_str())
            .collect();
        if !lines.is_empty() {
            fields.push((class.to_owned(), lines.join("\n")));
        }
    }
    fields.extend(others);
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
        for mode in DisplayMode::all() {
            let id = mode.trace_id(0xdead_beef);
            assert_eq!(DisplayMode::from_trace_id(id), Some((mode, 0xdead_beef)));
            assert_eq!(DisplayMode::from_name(&mode.to_string()), Some(mode));
        }
        assert_eq!(DisplayMode::all().len(), 16);
        assert_eq!(DisplayMode::all()[0], DisplayMode::DEFAULT);
        assert_eq!(DisplayMode::from_trace_id(1), None);
        assert_eq!(DisplayMode::from_id(0x2800_0000), None);
        assert_eq!(DisplayMode::from_id(0x4000_0000), None);
        assert_eq!(
            DisplayMode::from_id(0x2300_0000),
            None,
            "modifiers are exclusive"
        );
        let grouped_owned = DisplayMode::from_id(0x3400_0000);
        assert_eq!(
            grouped_owned.map(|m| m.to_string()).as_deref(),
            Some("grouped [owned objects]")
        );
        assert_eq!(DisplayMode::from_name("tree").map(|m| m.id()), Some(0));
        assert_eq!(DisplayMode::from_name("tracing [everything]"), None);
    }

    #[test]
    fn diff_lines_are_classified() {
        assert_eq!(DiffClass::of_line("spec.replicas 2 -> 4"), DiffClass::Diff);
        assert_eq!(
            DiffClass::of_line("metadata.generation 1 -> 2"),
            DiffClass::Verbose
        );
        assert_eq!(
            DiffClass::of_line("metadata.managedFields[0].time \"a\" -> \"b\""),
            DiffClass::Hidden
        );
        assert_eq!(
            DiffClass::of_line("metadata.generationX 1 -> 2"),
            DiffClass::Diff,
            "a prefix matches whole path components only"
        );
    }

    #[test]
    fn collapsed_diffs_split_into_classes() {
        let key = kelemetry_core::ObjectKey::new("c", "apps", "deployments", "ns", "d");
        let at: Timestamp = "2024-01-01T10:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let window = kelemetry_core::Windowing::default().window_of(at);
        let mut activity = kelemetry_core::Activity::new(
            kelemetry_core::Object::new(kelemetry_core::ObjectRef::new(key, "v1", None)),
            kelemetry_core::SourceKind::Audit,
            at,
            "alice update",
            "a1",
        );
        activity.logs.push(kelemetry_core::LogLine {
            kind: LogKind::ObjectDiff,
            message: "metadata.generation 1 -> 2\nspec.replicas 2 -> 4\nmetadata.managedFields[0].time a -> b"
                .into(),
        });
        let span = kelemetry_core::span::activity_span(&activity, window);
        let log = collapse(&span);
        assert_eq!(log.fields[0], ("audit".into(), "alice update".into()));
        assert_eq!(log.field("diff"), Some("spec.replicas 2 -> 4"));
        assert_eq!(
            log.field("verbose diff"),
            Some("metadata.generation 1 -> 2")
        );
        assert!(!log.fields.iter().any(|(_, v)| v.contains("managedFields")));
    }

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
        let nodes = nested_activities(&[reconcile, apply, audit, patch, cycle_a, cycle_b]);
        let names: Vec<&str> = nodes.iter().map(|n| n.span.operation.as_str()).collect();
        assert_eq!(names, ["reconcile", "audit", "cycle a", "cycle b"]);
        assert_eq!(nodes[0].children.len(), 1);
        assert_eq!(nodes[0].children[0].span.operation, "apply");
        assert_eq!(nodes[0].children[0].children[0].span.operation, "patch");
        assert!(nodes[1].children.is_empty());
    }
}
