//! Assembly of a [`TraceView`]: an object's windows merged, links followed through a [`LinkSelector`], clipped to a
//! time range, nested into one tree (docs/behaviour/assembly.md).

use jiff::Timestamp;
use kelemetry_core::{LinkRole, ObjectKey, SpanKind, SpanRecord};

// foldhash: assembly's maps (object keys, span ids, index pairs) hash a tenth of a large view with SipHash.
use crate::reader::{ReadError, Reader, TraceParts};
use crate::selector::{Direction, LinkSelector, PathState};
use foldhash::{HashMap as FastMap, HashSet as FastSet};
use xxhash_rust::xxh3::xxh3_64;

/// What to assemble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewRequest {
    /// The object asked about.
    pub root: ObjectKey,
    /// Further objects asked about: the other matches of a search that fall in the same connected component as
    /// `root`. Their links are followed like the root's; the tree still grows from the top ancestor of `root`.
    pub also_queried: Vec<ObjectKey>,
    /// Start of the time range.
    pub from: Timestamp,
    /// End of the time range.
    pub to: Timestamp,
    /// Which links to follow.
    pub selector: LinkSelector,
    /// How many objects may be fetched besides the root.
    pub budget: usize,
}

impl ViewRequest {
    /// A request for `root` over all time, following nothing, with a budget of 2,000 objects.
    pub fn new(root: ObjectKey) -> Self {
        Self {
            root,
            also_queried: Vec::new(),
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            selector: LinkSelector::none(),
            budget: 2_000,
        }
    }

    /// The low half of the trace ids of this request's views: a hash of the objects asked about and the range,
    /// independent of the display mode (see [`TraceView::low_half`]).
    pub fn low_half(&self) -> u64 {
        view_low_half(&self.root, &self.also_queried, self.from, self.to)
    }
}

/// `xxh3_64` of `kelemetry.view.v1`, the root's key, the other queried keys sorted, and the range; never zero.
fn view_low_half(root: &ObjectKey, also: &[ObjectKey], from: Timestamp, to: Timestamp) -> u64 {
    let mut also: Vec<String> = also.iter().map(ToString::to_string).collect();
    also.sort();
    also.dedup();
    let text = format!(
        "kelemetry.view.v1\n{root}\n{}\n{from}\n{to}",
        also.join("\n")
    );
    match xxh3_64(text.as_bytes()) {
        0 => 1,
        low => low,
    }
}

/// An object as people name it: `RESOURCE[.GROUP]/NAMESPACE/NAME in cluster CLUSTER` (the text `kelemetry show`
/// takes, see [`kelemetry_core::ObjectSelector`]).
pub(crate) fn object_text(key: &ObjectKey) -> String {
    let name = if key.namespace.is_empty() {
        key.name.to_string()
    } else {
        format!("{}/{}", key.namespace, key.name)
    };
    format!("{}/{name} in cluster {}", key.group_resource(), key.cluster)
}

/// A time range as people read it: RFC 3339 bounds, an open end left out (`at any time`, `since ...`,
/// `until ...`, `between ... and ...`).
pub(crate) fn range_text(from: Timestamp, to: Timestamp) -> String {
    match (from == Timestamp::MIN, to == Timestamp::MAX) {
        (true, true) => "at any time".to_owned(),
        (true, false) => format!("until {to}"),
        (false, true) => format!("since {from}"),
        (false, false) => format!("between {from} and {to}"),
    }
}

/// Assembly failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// Nothing is stored for the object in the range.
    #[error("nothing is stored of {} {}", object_text(object), range_text(*from, *to))]
    NotFound {
        /// The object.
        object: ObjectKey,
        /// Range start.
        from: Timestamp,
        /// Range end.
        to: Timestamp,
    },
    /// The reader failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A relation as stored in a link span: the store's [`StoredLink`](kelemetry_store::codec::StoredLink), which
/// every reader gives assembly ([`crate::TraceParts`]).
pub use kelemetry_store::codec::StoredLink as LinkRef;

/// One object's windows merged: its identity, its activities in the range, its links.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectHistory {
    /// Identity.
    pub key: ObjectKey,
    /// The object spans of its windows, oldest first.
    pub object_spans: Vec<SpanRecord>,
    /// Activity spans in the range, by start time.
    pub activities: Vec<SpanRecord>,
    /// Links, without duplicates.
    pub links: Vec<LinkRef>,
}

impl ObjectHistory {
    /// The value of an attribute of the object's spans (the latest window that has it).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.object_spans
            .iter()
            .rev()
            .find_map(|span| span.attribute(name))
    }
}

/// A node of the assembled tree.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewNode {
    /// The object.
    pub history: ObjectHistory,
    /// Class of the link from the parent (empty for none and for the root).
    pub class: String,
    /// Children, in the order of their first activity.
    pub children: Vec<ViewNode>,
}

impl ViewNode {
    /// Every node of the subtree, depth first, with its depth.
    pub fn walk(&self) -> Vec<(usize, &ViewNode)> {
        let mut out = Vec::new();
        let mut stack = vec![(0usize, self)];
        while let Some((depth, node)) = stack.pop() {
            out.push((depth, node));
            for child in node.children.iter().rev() {
                stack.push((depth + 1, child));
            }
        }
        out
    }
}

/// An assembled trace view: a tree of objects with their activities.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceView {
    /// The object asked about.
    pub queried: ObjectKey,
    /// The other objects asked about that the tree holds (see [`ViewRequest::also_queried`]).
    pub also_queried: Vec<ObjectKey>,
    /// The top of the tree (the queried object or its top ancestor).
    pub root: ViewNode,
    /// Range start.
    pub from: Timestamp,
    /// Range end.
    pub to: Timestamp,
    /// Objects that were linked but left out because the budget ran out.
    pub truncated: usize,
}

impl TraceView {
    /// The low half of this view's trace ids: the same objects asked about over the same range give the same
    /// value in every display mode, so a trace id can be resolved back into a [`ViewRequest`].
    pub fn low_half(&self) -> u64 {
        view_low_half(&self.queried, &self.also_queried, self.from, self.to)
    }

    /// The request that assembles this view again, following `selector`.
    pub fn request(&self, selector: LinkSelector) -> ViewRequest {
        ViewRequest {
            root: self.queried.clone(),
            also_queried: self.also_queried.clone(),
            from: self.from,
            to: self.to,
            selector,
            budget: ViewRequest::new(self.queried.clone()).budget,
        }
    }
}

/// Reads one object's windows in `[from, to]` and merges them. `None` when nothing is stored.
pub async fn read_history(
    reader: &dyn Reader,
    key: &ObjectKey,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<ObjectHistory>, ReadError> {
    let mut histories = read_histories(reader, std::slice::from_ref(key), from, to).await?;
    Ok(histories.pop().flatten())
}

/// [`read_history`] of several objects, in one batched read ([`Reader::object_trace_parts_many`]: their windows and
/// the spans of those windows).
pub async fn read_histories(
    reader: &dyn Reader,
    keys: &[ObjectKey],
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Option<ObjectHistory>>, ReadError> {
    let parts = reader.object_trace_parts_many(keys, from, to).await?;
    Ok(keys
        .iter()
        .zip(parts)
        .map(|(key, traces)| merge_history(key, traces.into_iter(), from, to))
        .collect())
}

/// Merges the spans of an object's windows (docs/behaviour/assembly.md#merging-windows).
fn merge_history(
    key: &ObjectKey,
    traces: impl Iterator<Item = TraceParts>,
    from: Timestamp,
    to: Timestamp,
) -> Option<ObjectHistory> {
    let mut history = ObjectHistory {
        key: key.clone(),
        object_spans: Vec::new(),
        activities: Vec::new(),
        links: Vec::new(),
    };
    let mut links = Vec::new();
    for trace in traces {
        links.extend(trace.links);
        for span in trace.spans {
            match &span.kind {
                SpanKind::Object => history.object_spans.push(span),
                // A reader's parts hold no link spans; one that did is read as its link.
                SpanKind::Link => links.extend(LinkRef::of_span(&span)),
                SpanKind::Activity(_) => {
                    if span.start >= from && span.start <= to {
                        history.activities.push(span);
                    }
                }
            }
        }
    }
    // An activity stored in two windows' traces counts once (the first seen).
    keep_first_of_each(&mut history.activities, |span| &span.span_id);
    // Links without duplicates, in the order first seen.
    keep_first_of_each(&mut links, |link| link);
    history.links = links;
    if history.object_spans.is_empty() && history.activities.is_empty() && history.links.is_empty()
    {
        return None;
    }
    history.object_spans.sort_by_key(|s| s.start);
    history
        .activities
        .sort_by(|a, b| a.start.cmp(&b.start).then(a.name.cmp(&b.name)));
    Some(history)
}

/// Keeps the first of the items with equal `identity`, in order. Most lists here are short (an object's links and
/// activities in one or two windows): up to [`LINEAR_DEDUP`] items are compared pairwise, more through a set.
fn keep_first_of_each<T, K: Eq + std::hash::Hash + ?Sized>(
    items: &mut Vec<T>,
    identity: impl Fn(&T) -> &K,
) {
    if items.len() < 2 {
        return;
    }
    let first_seen: Vec<bool> = if items.len() <= LINEAR_DEDUP {
        (0..items.len())
            .map(|i| {
                let this = identity(&items[i]);
                !items[..i].iter().any(|earlier| identity(earlier) == this)
            })
            .collect()
    } else {
        let mut seen = FastSet::with_capacity_and_hasher(items.len(), Default::default());
        items
            .iter()
            .map(|item| seen.insert(identity(item)))
            .collect()
    };
    if first_seen.iter().all(|&first| first) {
        return;
    }
    let mut first = first_seen.into_iter();
    items.retain(|_| first.next().unwrap_or(true));
}

/// Up to this many items, [`keep_first_of_each`] compares them pairwise rather than hashing them.
const LINEAR_DEDUP: usize = 8;

/// The objects reached from some starting objects, with their histories.
struct Reached {
    known: FastMap<ObjectKey, ObjectHistory>,
    truncated: usize,
}

/// Reads the starting objects and follows their links through `selector`, each start with its own path state,
/// fetching at most `budget` further objects in all. A link the selector refuses costs nothing (the original
/// spends budget on it; docs/behaviour/assembly.md#following-links).
async fn reach(
    reader: &dyn Reader,
    starts: &[ObjectKey],
    from: Timestamp,
    to: Timestamp,
    selector: &LinkSelector,
    budget: usize,
) -> Result<Reached, ReadError> {
    let mut known: FastMap<ObjectKey, ObjectHistory> = FastMap::default();
    let mut unique_starts: Vec<ObjectKey> = Vec::new();
    for start in starts {
        if !unique_starts.contains(start) {
            unique_starts.push(start.clone());
        }
    }
    let mut frontier = Vec::new();
    for (key, history) in unique_starts
        .iter()
        .zip(read_histories(reader, &unique_starts, from, to).await?)
    {
        if let Some(history) = history {
            known.insert(key.clone(), history);
            frontier.push((key.clone(), PathState::default()));
        }
    }
    let mut budget = budget;
    let mut truncated = 0;
    let mut refused: FastSet<ObjectKey> = FastSet::default();
    // Breadth first, one batched read per level.
    while !frontier.is_empty() {
        let mut next: Vec<(ObjectKey, PathState)> = Vec::new();
        let mut wanted: FastSet<ObjectKey> = FastSet::default();
        for (key, state) in &frontier {
            let Some(history) = known.get(key) else {
                continue;
            };
            for link in &history.links {
                if known.contains_key(&link.other) || wanted.contains(&link.other) {
                    continue;
                }
                let direction = match link.role {
                    LinkRole::Parent => Direction::Up,
                    LinkRole::Child => Direction::Down,
                };
                let Some(after) = selector.admit(*state, direction, &link.class) else {
                    continue;
                };
                if budget == 0 {
                    if refused.insert(link.other.clone()) {
                        truncated += 1;
                    }
                    continue;
                }
                budget -= 1;
                wanted.insert(link.other.clone());
                next.push((link.other.clone(), after));
            }
        }
        let keys: Vec<ObjectKey> = next.iter().map(|(key, _)| key.clone()).collect();
        let histories = read_histories(reader, &keys, from, to).await?;
        frontier = Vec::with_capacity(next.len());
        for ((key, state), history) in next.into_iter().zip(histories) {
            if let Some(history) = history {
                known.insert(key.clone(), history);
                frontier.push((key, state));
            }
        }
    }
    Ok(Reached { known, truncated })
}

/// Assembles the trace view of `request.root` (and of `request.also_queried`).
pub async fn assemble(
    reader: &dyn Reader,
    request: &ViewRequest,
) -> Result<TraceView, AssembleError> {
    let (from, to) = (request.from, request.to);
    let mut starts = vec![request.root.clone()];
    starts.extend(request.also_queried.iter().cloned());
    let mut reached = reach(reader, &starts, from, to, &request.selector, request.budget).await?;
    if !reached.known.contains_key(&request.root) {
        return Err(AssembleError::NotFound {
            object: request.root.clone(),
            from,
            to,
        });
    }
    let (root, also_queried) = build_tree(&request.root, &request.also_queried, &mut reached.known);
    Ok(TraceView {
        queried: request.root.clone(),
        also_queried,
        root,
        from,
        to,
        truncated: reached.truncated,
    })
}

/// The views of a search (docs/behaviour/assembly.md#searches-and-components): the `found` objects with something
/// in `[from, to]`, their links followed through `selector` (`budget` objects in all), one view per connected
/// component, in the order of each component's first found object; at most `limit` views.
pub async fn assemble_components(
    reader: &dyn Reader,
    found: &[ObjectKey],
    from: Timestamp,
    to: Timestamp,
    selector: &LinkSelector,
    budget: usize,
    limit: usize,
) -> Result<Vec<TraceView>, ReadError> {
    let mut reached = reach(reader, found, from, to, selector, budget).await?;
    let mut views = Vec::new();
    for (index, start) in found.iter().enumerate() {
        if views.len() >= limit {
            break;
        }
        if !reached.known.contains_key(start) {
            continue;
        }
        let (root, also_queried) = build_tree(start, &found[index + 1..], &mut reached.known);
        views.push(TraceView {
            queried: start.clone(),
            also_queried,
            root,
            from,
            to,
            truncated: reached.truncated,
        });
    }
    Ok(views)
}

/// Nests the connected component of `queried` among the `known` objects, taking their histories out of `known`:
/// from the top ancestor of `queried` (following ownership first), children by links, each object placed once.
/// Objects only reachable against the direction of their links (a Node that is the parent of a Pod in the tree)
/// are placed under the object they link to, so every object of the component appears. Returns the tree and
/// those of `also` that it holds (in their order).
fn build_tree(
    queried: &ObjectKey,
    also: &[ObjectKey],
    known: &mut FastMap<ObjectKey, ObjectHistory>,
) -> (ViewNode, Vec<ObjectKey>) {
    if !known.contains_key(queried) {
        return (empty_node(queried.clone(), None), Vec::new());
    }
    // The objects by key, taken out of `known`; the ones not placed go back.
    let mut entries: Vec<(ObjectKey, ObjectHistory)> = known.drain().collect();
    // In the keys' order, compared as bytes once each key is encoded.
    entries.sort_by_cached_key(|(key, _)| key.ordered_bytes());
    let (order, assigned, classes, also_placed) = {
        let index: FastMap<&ObjectKey, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (key, i))
            .collect();
        let start = index.get(queried).copied().unwrap_or_default();
        let edges = Edges::of(&entries, &index);
        let (order, assigned) = edges.placement(edges.top_of(start));
        let mut placed = vec![false; entries.len()];
        for &i in &order {
            placed[i] = true;
        }
        let also_placed: Vec<ObjectKey> = also
            .iter()
            .filter(|key| index.get(key).is_some_and(|&i| placed[i]))
            .cloned()
            .collect();
        (order, assigned, edges.classes, also_placed)
    };
    let mut slots: Vec<Option<ObjectHistory>> = entries
        .into_iter()
        .map(|(_, history)| Some(history))
        .collect();
    let root = nest_nodes(&order, &assigned, &classes, &mut slots);
    known.extend(
        slots
            .into_iter()
            .flatten()
            .map(|history| (history.key.clone(), history)),
    );
    (root, also_placed)
}

/// Per object, the other ends of its child (or parent) edges: `(other end, class)`, the class an index into
/// [`Edges::classes`], objects by index into the sorted keys.
type EdgeLists = Vec<Vec<(usize, usize)>>;

/// The links between the known objects, from the link spans of either side, without duplicates.
struct Edges {
    children_of: EdgeLists,
    parents_of: EdgeLists,
    /// The link classes, each once.
    classes: Vec<String>,
    /// The index of [`OWNERSHIP_CLASS`] in `classes`.
    ownership: usize,
}

impl Edges {
    fn of(entries: &[(ObjectKey, ObjectHistory)], index: &FastMap<&ObjectKey, usize>) -> Self {
        let count = entries.len();
        let mut edges = Self {
            children_of: vec![Vec::new(); count],
            parents_of: vec![Vec::new(); count],
            classes: vec![OWNERSHIP_CLASS.to_owned()],
            ownership: 0,
        };
        let mut seen = FastSet::default();
        for (i, (_, history)) in entries.iter().enumerate() {
            for link in &history.links {
                let Some(&j) = index.get(&link.other) else {
                    continue;
                };
                let (parent, child) = match link.role {
                    LinkRole::Parent => (j, i),
                    LinkRole::Child => (i, j),
                };
                if seen.insert((parent, child)) {
                    let class = edges.class_index(&link.class);
                    edges.children_of[parent].push((child, class));
                    edges.parents_of[child].push((parent, class));
                } else if link.class == OWNERSHIP_CLASS {
                    // One relation per pair, whatever order the spans came in: ownership wins (a mirror Pod
                    // linked to its Node both as owned and as `node` by stores written before the pod-node
                    // linker left such Pods out).
                    edges.own(parent, child);
                }
            }
        }
        edges
    }

    /// The index of `class` in [`Edges::classes`], added when new.
    fn class_index(&mut self, class: &str) -> usize {
        match self.classes.iter().position(|known| known == class) {
            Some(index) => index,
            None => {
                self.classes.push(class.to_owned());
                self.classes.len() - 1
            }
        }
    }

    /// Makes the edge from `parent` to `child` one of ownership.
    fn own(&mut self, parent: usize, child: usize) {
        let ownership = self.ownership;
        for (other, class) in &mut self.children_of[parent] {
            if *other == child {
                *class = ownership;
            }
        }
        for (other, class) in &mut self.parents_of[child] {
            if *other == parent {
                *class = ownership;
            }
        }
    }

    /// The top ancestor of `start`, following ownership first, stopping at a cycle.
    fn top_of(&self, start: usize) -> usize {
        let parent_of = |child: usize| {
            let parents = &self.parents_of[child];
            parents
                .iter()
                .find(|(_, class)| *class == self.ownership)
                .or_else(|| parents.first())
                .map(|(parent, _)| *parent)
        };
        let mut top = start;
        let mut visited = FastSet::default();
        visited.insert(top);
        while let Some(parent) = parent_of(top) {
            if !visited.insert(parent) {
                break;
            }
            top = parent;
        }
        top
    }

    /// Breadth first from `top` along child edges; then what is left is attached to a placed neighbour. Returns
    /// the objects in placement order and the parent (and link class) each was placed under.
    fn placement(&self, top: usize) -> (Vec<usize>, Vec<Option<(usize, usize)>>) {
        let count = self.children_of.len();
        let mut assigned: Vec<Option<(usize, usize)>> = vec![None; count];
        let mut placed = vec![false; count];
        let mut order = vec![top];
        placed[top] = true;
        let mut next = 0;
        loop {
            while next < order.len() {
                let parent = order[next];
                next += 1;
                for &(child, class) in &self.children_of[parent] {
                    if !placed[child] {
                        placed[child] = true;
                        assigned[child] = Some((parent, class));
                        order.push(child);
                    }
                }
            }
            let attach = (0..count).find_map(|i| {
                if placed[i] {
                    return None;
                }
                self.children_of[i]
                    .iter()
                    .find(|(child, _)| placed[*child])
                    .map(|&(child, class)| (i, child, class))
            });
            let Some((i, under, class)) = attach else {
                return (order, assigned);
            };
            placed[i] = true;
            assigned[i] = Some((under, class));
            order.push(i);
        }
    }
}

/// Builds the nodes children first, in reverse placement order, moving each history out of `slots` (by index
/// into the sorted keys). Returns the node of `order[0]`, the top.
fn nest_nodes(
    order: &[usize],
    assigned: &[Option<(usize, usize)>],
    classes: &[String],
    slots: &mut [Option<ObjectHistory>],
) -> ViewNode {
    let mut children: Vec<Vec<ViewNode>> = vec![Vec::new(); slots.len()];
    let mut top = None;
    for &i in order.iter().rev() {
        let Some(history) = slots[i].take() else {
            continue;
        };
        let mut node = ViewNode {
            history,
            class: String::new(),
            children: std::mem::take(&mut children[i]),
        };
        node.children.sort_by(|a, b| {
            first_time(a)
                .cmp(&first_time(b))
                .then(a.history.key.cmp(&b.history.key))
        });
        match assigned[i] {
            Some((parent, class)) => {
                node.class.clone_from(&classes[class]);
                children[parent].push(node);
            }
            None => top = Some(node),
        }
    }
    top.unwrap_or_else(|| empty_node(ObjectKey::default(), None))
}

/// The link class of ownership, preferred when an object has several parents.
const OWNERSHIP_CLASS: &str = "children";

fn empty_node(key: ObjectKey, history: Option<ObjectHistory>) -> ViewNode {
    ViewNode {
        history: history.unwrap_or_else(|| ObjectHistory {
            key,
            object_spans: Vec::new(),
            activities: Vec::new(),
            links: Vec::new(),
        }),
        class: String::new(),
        children: Vec::new(),
    }
}

fn first_time(node: &ViewNode) -> Option<Timestamp> {
    node.history
        .activities
        .first()
        .map(|a| a.start)
        .or_else(|| node.history.object_spans.first().map(|s| s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_is_kept_in_order_whether_compared_pairwise_or_hashed() {
        for len in 0..3 * LINEAR_DEDUP {
            // Every third item repeats an earlier one.
            let mut items: Vec<(usize, &str)> = (0..len)
                .map(|i| {
                    if i % 3 == 2 {
                        (i / 2, "again")
                    } else {
                        (i, "first")
                    }
                })
                .collect();
            let mut expected = Vec::new();
            for item in &items {
                if !expected.iter().any(|(id, _): &(usize, &str)| *id == item.0) {
                    expected.push(*item);
                }
            }
            keep_first_of_each(&mut items, |item| &item.0);
            assert_eq!(items, expected, "{len} items");
        }
    }
}
