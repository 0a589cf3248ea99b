//! [`TraceQuery`]: the questions the serving side answers — find the views matching a search, show the view a
//! trace id stands for — over a [`Reader`] and a [`ViewStore`].
//!
//! A trace id handed out is `DisplayMode::trace_id(low)` where `low` is [`TraceView::low_half`], a hash of the
//! objects asked about and the time range. The [`ViewStore`] remembers, per `low`, that question (bounded in
//! size and age), so `/api/traces/{id}` re-assembles the view from the current data in the mode the id's digits
//! name: editing those digits switches the mode of the same view.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::{ObjectKey, ObjectSelector, SmolStr, vocabulary as v};
use kelemetry_store::{StoreError, StoredView, ViewStore};

use crate::assemble::{AssembleError, TraceView, ViewRequest, assemble, assemble_components};
use crate::budget::BudgetedReader;
use crate::diagnose::{Diagnosis, Finding};
use crate::display::{DisplayKind, DisplayMode, DisplaySpan, DisplayTrace, display};
use crate::extension::Extensions;
use crate::reader::{ReadError, Reader};

/// A query failed. [`QueryError::status`] says which HTTP status fits.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing is known under that id, or nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// Reading spans failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The view store failed.
    #[error(transparent)]
    Views(#[from] StoreError),
}

impl QueryError {
    /// The HTTP status code that fits.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotFound(_) => 404,
            Self::Read(ReadError::Unsupported { .. }) => 400,
            Self::Read(_) | Self::Views(_) => 500,
        }
    }
}

/// A search (Jaeger's search form mapped as in docs/behaviour/query-api.md#search-form).
///
/// ```
/// use kelemetry_query::{DisplayMode, FindQuery};
/// let query = FindQuery::new(DisplayMode::DEFAULT, "deployments/default/web".parse().unwrap()).with_limit(5);
/// assert_eq!(query.objects.to_string(), "deployments/default/web");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FindQuery {
    /// The display mode (Jaeger's "service").
    pub mode: DisplayMode,
    /// The objects the views start from (Jaeger's "operation" is the cluster, its tags the other fields; see
    /// [`search_selector`]).
    pub objects: ObjectSelector,
    /// Start of the range.
    pub from: Timestamp,
    /// End of the range.
    pub to: Timestamp,
    /// At most this many results (0: the default, 20).
    pub limit: usize,
}

impl FindQuery {
    /// The views of `objects` in `mode`, over all time, at most 20 of them.
    pub fn new(mode: DisplayMode, objects: ObjectSelector) -> Self {
        Self {
            mode,
            objects,
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            limit: 0,
        }
    }

    /// Only what happened between `from` and `to`.
    pub fn with_range(mut self, from: Timestamp, to: Timestamp) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// At most `limit` views (0: the default, 20).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// The objects a Jaeger-style search names: `cluster` (Jaeger's "operation"; empty for any) and tag filters on
/// the fields of [`ObjectSelector::FIELDS`] (`cluster`, `group`, `resource`, `namespace`, `name`); a tag
/// overrides the operation. Any other tag is a [`QueryError::BadRequest`].
pub fn search_selector<'a>(
    cluster: Option<&str>,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<ObjectSelector, QueryError> {
    let mut selector = ObjectSelector::any();
    selector.cluster = cluster.filter(|c| !c.is_empty()).map(str::to_owned);
    for (tag, value) in tags {
        selector.set_field(tag, value).map_err(|_| {
            QueryError::BadRequest(format!(
                "tag {tag:?} cannot be searched; searchable tags: {}",
                ObjectSelector::FIELDS.join(", ")
            ))
        })?;
    }
    Ok(selector)
}

/// What `/redirect` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectTarget {
    /// Exactly one view: its trace id.
    One(u128),
    /// None: a placeholder trace naming the object, with the warning "no events found".
    None(DisplayTrace),
    /// Several views: how many.
    Many(usize),
}

/// How many objects a search may start from at most, whatever its limit.
const MAX_SEARCH_STARTS: usize = 500;
/// How long the list of clusters is reused.
const CLUSTERS_TTL: Duration = Duration::from_secs(60);

/// Finds and shows trace views for the serving side (HTTP, remote storage).
pub struct TraceQuery {
    reader: Arc<dyn Reader>,
    views: Arc<ViewStore>,
    budget: usize,
    clusters: Mutex<Option<(Instant, Vec<String>)>>,
    extensions: Arc<Extensions>,
    diagnosis: Arc<Diagnosis>,
}

impl std::fmt::Debug for TraceQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceQuery")
            .field("views", &self.views)
            .field("budget", &self.budget)
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl TraceQuery {
    /// Answers from `reader`, remembering handed-out views in `views`. Each view fetches at most 2,000 linked
    /// objects.
    pub fn new(reader: Arc<dyn Reader>, views: Arc<ViewStore>) -> Self {
        Self {
            // Counts what each query reads when the caller gives it a budget (the HTTP API does).
            reader: Arc::new(BudgetedReader::new(reader)),
            views,
            budget: 2_000,
            clusters: Mutex::new(None),
            extensions: Arc::new(Extensions::default()),
            diagnosis: Arc::new(Diagnosis::default()),
        }
    }

    /// The same, diagnosing with these diagnosers and thresholds (default: the built-in ones).
    pub fn with_diagnosis(mut self, diagnosis: Arc<Diagnosis>) -> Self {
        self.diagnosis = diagnosis;
        self
    }

    /// The findings about the objects of the view a trace id stands for ([`TraceQuery::get`]).
    pub async fn diagnose_trace(&self, trace_id: u128) -> Result<Vec<Finding>, QueryError> {
        let (_, _, view, _) = self.view_of(trace_id).await?;
        Ok(self.diagnosis.view(self.reader.as_ref(), &view).await?)
    }

    /// The findings about the one object `objects` names (and its whole tree with `full_tree`) between `from`
    /// and `to`.
    pub async fn diagnose_object(
        &self,
        objects: &ObjectSelector,
        from: Timestamp,
        to: Timestamp,
        full_tree: bool,
    ) -> Result<Vec<Finding>, QueryError> {
        let mut found = self.reader.find_objects(objects, 2).await?;
        let key = match found.len() {
            0 => return Err(QueryError::NotFound(format!("no object {objects}"))),
            1 => found.remove(0),
            _ => {
                return Err(QueryError::BadRequest(format!(
                    "{objects} matches several objects; name the cluster or the group"
                )));
            }
        };
        let mode = if full_tree {
            DisplayMode::TRACING.with_modifier(crate::display::Modifier::FullTree)
        } else {
            DisplayMode::TRACING
        };
        let mut request = ViewRequest::new(key);
        request.from = from;
        request.to = to;
        request.selector = mode.selector();
        request.budget = self.budget;
        let view = match assemble(self.reader.as_ref(), &request).await {
            Ok(view) => view,
            Err(err @ AssembleError::NotFound { .. }) => {
                return Err(QueryError::NotFound(err.to_string()));
            }
            Err(AssembleError::Read(err)) => return Err(err.into()),
        };
        Ok(self.diagnosis.view(self.reader.as_ref(), &view).await?)
    }

    /// The same, grafting extension traces into every view [`TraceQuery::get`] shows (searches list views
    /// without them: a search shows many views and is answered before anyone opens one).
    pub fn with_extensions(mut self, extensions: Arc<Extensions>) -> Self {
        self.extensions = extensions;
        self
    }

    /// The same, with another budget of linked objects per view.
    pub fn with_budget(mut self, budget: usize) -> Self {
        self.budget = budget;
        self
    }

    /// The clusters of the stored objects (Jaeger's "operations"), reused for a minute.
    pub async fn clusters(&self) -> Result<Vec<String>, QueryError> {
        if let Ok(cached) = self.clusters.lock()
            && let Some((at, clusters)) = cached.as_ref()
            && at.elapsed() < CLUSTERS_TTL
        {
            return Ok(clusters.clone());
        }
        let clusters = self.reader.clusters().await?;
        if let Ok(mut cached) = self.clusters.lock() {
            *cached = Some((Instant::now(), clusters.clone()));
        }
        Ok(clusters)
    }

    /// The views matching `query`, one per connected component of the matching objects and their links (as the
    /// mode follows them), each remembered so that its trace id can be fetched later.
    pub async fn find(&self, query: &FindQuery) -> Result<Vec<DisplayTrace>, QueryError> {
        if query.from > query.to {
            return Err(QueryError::BadRequest(format!(
                "the range starts ({}) after it ends ({})",
                query.from, query.to
            )));
        }
        let limit = if query.limit == 0 { 20 } else { query.limit };
        let candidates = self
            .reader
            .find_objects(&query.objects, MAX_SEARCH_STARTS)
            .await?;
        // Only objects with a window in the range start a view; at most a few per result asked for.
        let windows = self
            .reader
            .object_traces_many(&candidates, query.from, query.to)
            .await?;
        let starts: Vec<ObjectKey> = candidates
            .into_iter()
            .zip(windows)
            .filter(|(_, windows)| !windows.is_empty())
            .map(|(key, _)| key)
            .take(limit.saturating_mul(5).min(MAX_SEARCH_STARTS))
            .collect();
        let views = assemble_components(
            self.reader.as_ref(),
            &starts,
            query.from,
            query.to,
            &query.mode.selector(),
            self.budget,
            limit,
        )
        .await?;
        let mut traces = Vec::with_capacity(views.len());
        for view in views {
            self.remember(&view).await?;
            traces.push(display(&view, query.mode));
        }
        Ok(traces)
    }

    /// The view a trace id stands for: its mode, its low half, the view, and how many objects were asked about.
    async fn view_of(
        &self,
        trace_id: u128,
    ) -> Result<(DisplayMode, u64, TraceView, usize), QueryError> {
        let Some((mode, low)) = DisplayMode::from_trace_id(trace_id) else {
            return Err(QueryError::BadRequest(format!(
                "{trace_id:032x} is not a trace id of this service (ff<mode>e1e3e7<view>, mode one of {})",
                DisplayMode::all()
                    .iter()
                    .map(|m| format!("{:08x} {m}", m.id()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let views = self.views.clone();
        let stored = tokio::task::spawn_blocking(move || views.get(low, Timestamp::now()))
            .await
            .map_err(|err| QueryError::Read(ReadError::backend("the view store", err)))??;
        let Some(stored) = stored else {
            return Err(QueryError::NotFound(format!(
                "trace {trace_id:032x} is unknown or expired; search again"
            )));
        };
        let mut objects = stored.objects.into_iter();
        let Some(root) = objects.next() else {
            return Err(QueryError::NotFound(format!(
                "trace {trace_id:032x} names no object"
            )));
        };
        let request = ViewRequest {
            root,
            also_queried: objects.collect(),
            from: stored.from,
            to: stored.to,
            selector: mode.selector(),
            budget: self.budget,
        };
        let asked = request.also_queried.len();
        let view = match assemble(self.reader.as_ref(), &request).await {
            Ok(view) => view,
            Err(err @ AssembleError::NotFound { .. }) => {
                return Err(QueryError::NotFound(format!("{err} any more")));
            }
            Err(AssembleError::Read(err)) => return Err(err.into()),
        };
        Ok((mode, low, view, asked))
    }

    /// The view a trace id handed out by [`TraceQuery::find`] stands for, assembled now in the mode its digits
    /// name.
    pub async fn get(&self, trace_id: u128) -> Result<DisplayTrace, QueryError> {
        let (mode, low, view, asked) = self.view_of(trace_id).await?;
        let mut trace = display(&view, mode);
        self.extensions.graft(&view, &mut trace).await;
        // The id asked for, even when this mode connects fewer of the objects asked about.
        trace.trace_id = mode.trace_id(low);
        if view.also_queried.len() < asked
            && let Some(root) = trace.spans.first_mut()
        {
            root.warnings.push(format!(
                "{} of the objects found by the search are not connected to this one in this display mode",
                asked - view.also_queried.len()
            ));
        }
        Ok(trace)
    }

    /// `/redirect` (docs/behaviour/query-api.md#redirect): the views of `resource`/`namespace`/`name` in `cluster`
    /// within 30 minutes of `at`, in the default mode.
    pub async fn redirect(
        &self,
        cluster: &str,
        resource: &str,
        namespace: &str,
        name: &str,
        at: Timestamp,
    ) -> Result<RedirectTarget, QueryError> {
        let clusters = self.clusters().await?;
        if !clusters.is_empty() && !clusters.iter().any(|c| c == cluster) {
            return Err(QueryError::BadRequest(format!(
                "unknown cluster {cluster:?}; known: {}",
                clusters.join(", ")
            )));
        }
        let half_hour = SignedDuration::from_mins(30);
        let mut objects = ObjectSelector::any()
            .with_cluster(cluster)
            .with_resource(resource)
            .with_name(name);
        if !namespace.is_empty() {
            objects = objects.with_namespace(namespace);
        }
        let query = FindQuery::new(DisplayMode::DEFAULT, objects)
            .with_range(
                at.saturating_sub(half_hour).unwrap_or(at),
                at.saturating_add(half_hour).unwrap_or(at),
            )
            .with_limit(2);
        let found = self.find(&query).await?;
        Ok(match found.as_slice() {
            [] => RedirectTarget::None(placeholder(cluster, resource, namespace, name, at)),
            [one] => RedirectTarget::One(one.trace_id),
            many => RedirectTarget::Many(many.len()),
        })
    }

    async fn remember(&self, view: &TraceView) -> Result<(), QueryError> {
        let stored = StoredView {
            objects: std::iter::once(view.queried.clone())
                .chain(view.also_queried.iter().cloned())
                .collect(),
            from: view.from,
            to: view.to,
        };
        let low = view.low_half();
        let views = self.views.clone();
        tokio::task::spawn_blocking(move || views.put(low, &stored, Timestamp::now()))
            .await
            .map_err(|err| QueryError::Read(ReadError::backend("the view store", err)))??;
        Ok(())
    }
}

/// A trace of one span naming the object, with the warning "no events found".
fn placeholder(
    cluster: &str,
    resource: &str,
    namespace: &str,
    name: &str,
    at: Timestamp,
) -> DisplayTrace {
    let key = ObjectKey::new(cluster, "", resource, namespace, name);
    let low = ViewRequest::new(key).low_half();
    let mode = DisplayMode::DEFAULT;
    let tags = [
        (v::CLUSTER, cluster),
        (v::RESOURCE, resource),
        (v::NAMESPACE, namespace),
        (v::NAME, name),
    ]
    .into_iter()
    .map(|(k, value)| (SmolStr::new_static(k), SmolStr::new(value)))
    .collect();
    DisplayTrace {
        trace_id: mode.trace_id(low),
        mode,
        spans: vec![DisplaySpan {
            span_id: low,
            parent: None,
            kind: DisplayKind::Object,
            service: format!("{cluster} {resource}"),
            operation: if namespace.is_empty() || namespace == "default" {
                name.to_owned()
            } else {
                format!("{namespace} {name}")
            },
            start: at,
            end: at,
            tags,
            logs: Vec::new(),
            warnings: vec!["no events found".to_owned()],
        }],
    }
}
