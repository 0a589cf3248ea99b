//! Assembly of a [`TraceView`]: an object's windows merged, links followed through a [`LinkSelector`], clipped to a
//! time range, nested into one tree (reference §6.4, §6.5, §6.7).

use std::collections::{HashMap, HashSet, VecDeque};

use jiff::Timestamp;
use kelemetry_core::{LinkRole, ObjectKey, SpanKind, SpanRecord, vocabulary as v};

use crate::reader::{ReadError, Reader};
use crate::selector::{Direction, LinkSelector, PathState};

/// What to assemble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewRequest {
    /// The object asked about.
    pub root: ObjectKey,
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
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            selector: LinkSelector::none(),
            budget: 2_000,
        }
    }
}

/// Assembly failed.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// Nothing is stored for the object in the range.
    #[error("no spans of {object} between {from} and {to}")]
    NotFound {
        /// The object, as canonical key text.
        object: String,
        /// Range start.
        from: Timestamp,
        /// Range end.
        to: Timestamp,
    },
    /// The reader failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A relation as stored in a link span.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkRef {
    /// The other object.
    pub other: ObjectKey,
    /// Role of the other object.
    pub role: LinkRole,
    /// Class of the relation (may be empty).
    pub class: String,
}

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
    /// The top of the tree (the queried object or its top ancestor).
    pub root: ViewNode,
    /// Range start.
    pub from: Timestamp,
    /// Range end.
    pub to: Timestamp,
    /// Objects that were linked but left out because the budget ran out.
    pub truncated: usize,
}

/// Reads one object's windows in `[from, to]` and merges them. `None` when nothing is stored.
pub async fn read_history(
    reader: &dyn Reader,
    key: &ObjectKey,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<ObjectHistory>, ReadError> {
    let traces = reader.object_traces(key, from, to).await?;
    let mut history = ObjectHistory {
        key: key.clone(),
        object_spans: Vec::new(),
        activities: Vec::new(),
        links: Vec::new(),
    };
    let mut seen_links = HashSet::new();
    let mut seen_activities = HashSet::new();
    for trace in traces {
        for span in reader.trace(trace).await? {
            match &span.kind {
                SpanKind::Object => history.object_spans.push(span),
                SpanKind::Link => {
                    let (Some(other), Some(role)) = (span.linked_key(), span.link_role()) else {
                        continue;
                    };
                    let class = span.attribute(v::LINK_CLASS).unwrap_or_default().to_owned();
                    let link = LinkRef { other, role, class };
                    if seen_links.insert(link.clone()) {
                        history.links.push(link);
                    }
                }
                SpanKind::Activity(_) => {
                    if span.start >= from
                        && span.start <= to
                        && seen_activities.insert(span.span_id)
                    {
                        history.activities.push(span);
                    }
                }
            }
        }
    }
    if history.object_spans.is_empty() && history.activities.is_empty() && history.links.is_empty()
    {
        return Ok(None);
    }
    history.object_spans.sort_by_key(|s| s.start);
    history
        .activities
        .sort_by(|a, b| a.start.cmp(&b.start).then(a.name.cmp(&b.name)));
    Ok(Some(history))
}

/// Assembles the trace view of `request.root`.
pub async fn assemble(
    reader: &dyn Reader,
    request: &ViewRequest,
) -> Result<TraceView, AssembleError> {
    let (from, to) = (request.from, request.to);
    let root = read_history(reader, &request.root, from, to)
        .await?
        .ok_or_else(|| AssembleError::NotFound {
            object: request.root.to_string(),
            from,
            to,
        })?;

    let mut known: HashMap<ObjectKey, ObjectHistory> = HashMap::new();
    let mut queue = VecDeque::from([(request.root.clone(), PathState::default())]);
    known.insert(request.root.clone(), root);
    let mut budget = request.budget;
    let mut truncated = 0;
    while let Some((key, state)) = queue.pop_front() {
        let links = known.get(&key).map(|h| h.links.clone()).unwrap_or_default();
        for link in links {
            if known.contains_key(&link.other) {
                continue;
            }
            let direction = match link.role {
                LinkRole::Parent => Direction::Up,
                LinkRole::Child => Direction::Down,
            };
            let Some(next) = request.selector.admit(state, direction, &link.class) else {
                continue;
            };
            if budget == 0 {
                truncated += 1;
                continue;
            }
            budget -= 1;
            if let Some(history) = read_history(reader, &link.other, from, to).await? {
                known.insert(link.other.clone(), history);
                queue.push_back((link.other, next));
            }
        }
    }
    let root = build_tree(&request.root, &known);
    Ok(TraceView {
        queried: request.root.clone(),
        root,
        from,
        to,
        truncated,
    })
}

/// Nests the known objects: from the top ancestor of `queried` (following ownership first), children by links,
/// each object placed once. Objects only reachable against the direction of their links (a Node that is the
/// parent of a Pod in the tree) are placed under the object they link to, so every fetched object appears.
fn build_tree(queried: &ObjectKey, known: &HashMap<ObjectKey, ObjectHistory>) -> ViewNode {
    let mut keys: Vec<&ObjectKey> = known.keys().collect();
    keys.sort();
    // (parent, child) edges with their class, from the link spans of either side.
    let mut edges: Vec<(&ObjectKey, &ObjectKey, &str)> = Vec::new();
    let mut seen = HashSet::new();
    for &key in &keys {
        let Some(history) = known.get(key) else {
            continue;
        };
        for link in &history.links {
            let Some((other, _)) = known.get_key_value(&link.other) else {
                continue;
            };
            let (parent, child) = match link.role {
                LinkRole::Parent => (other, key),
                LinkRole::Child => (key, other),
            };
            if seen.insert((parent, child)) {
                edges.push((parent, child, link.class.as_str()));
            }
        }
    }
    let parent_of = |child: &ObjectKey| {
        let mut parents = edges.iter().filter(|(_, c, _)| *c == child);
        let all: Vec<_> = parents.by_ref().collect();
        all.iter()
            .find(|(_, _, class)| *class == OWNERSHIP_CLASS)
            .or_else(|| all.first())
            .map(|(parent, _, _)| *parent)
    };
    let mut top = queried;
    let mut visited = HashSet::from([top]);
    while let Some(parent) = parent_of(top) {
        if !visited.insert(parent) {
            break;
        }
        top = parent;
    }

    // Breadth first from the top along child edges; then attach what is left to a placed neighbour.
    let mut assigned: HashMap<&ObjectKey, (&ObjectKey, &str)> = HashMap::new();
    let mut order = vec![top];
    let mut placed = HashSet::from([top]);
    let mut next = 0;
    loop {
        while next < order.len() {
            let parent = order[next];
            next += 1;
            for (p, child, class) in &edges {
                if *p == parent && placed.insert(*child) {
                    assigned.insert(child, (parent, class));
                    order.push(child);
                }
            }
        }
        let attach = keys.iter().find_map(|&key| {
            if placed.contains(key) {
                return None;
            }
            edges.iter().find_map(|(parent, child, class)| {
                (*parent == key && placed.contains(child)).then_some((key, *child, *class))
            })
        });
        match attach {
            Some((key, under, class)) => {
                placed.insert(key);
                assigned.insert(key, (under, class));
                order.push(key);
            }
            None => break,
        }
    }

    // Build nodes children first.
    let mut nodes: HashMap<&ObjectKey, ViewNode> = HashMap::new();
    for &key in order.iter().rev() {
        let mut node = nodes.remove(key).unwrap_or_else(|| empty_node(known, key));
        node.children.sort_by(|a, b| {
            first_time(a)
                .cmp(&first_time(b))
                .then(a.history.key.cmp(&b.history.key))
        });
        match assigned.get(key) {
            Some((parent, class)) => {
                node.class = (*class).to_owned();
                nodes
                    .entry(parent)
                    .or_insert_with(|| empty_node(known, parent))
                    .children
                    .push(node);
            }
            None => return node,
        }
    }
    empty_node(known, top)
}

/// The link class of ownership, preferred when an object has several parents.
const OWNERSHIP_CLASS: &str = "children";

fn empty_node(known: &HashMap<ObjectKey, ObjectHistory>, key: &ObjectKey) -> ViewNode {
    ViewNode {
        history: known.get(key).cloned().unwrap_or_else(|| ObjectHistory {
            key: key.clone(),
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
