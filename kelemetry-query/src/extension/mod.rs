//! Extension traces (docs/extension-traces.md): spans of *other* tracing backends grafted into a view at read time,
//! such as the kube-apiserver's own spans under each audit request, or a controller's reconcile spans under the
//! object it worked on.
//!
//! - [`ExtensionProvider`]: the trait. Asked about one [`ExtensionTarget`] (an object or an activity of the view,
//!   with its fields), it answers with traces in Jaeger's JSON model ([`crate::jaeger_json::Trace`]);
//! - [`Extensions`]: the providers of a view and their [`ExtensionLimits`]; [`Extensions::graft`] asks every
//!   provider about every target at once (at most `max_concurrency` requests in flight), keeps what came back
//!   before the view's time budget ran out, and re-parents each returned trace's roots under the target's span;
//!   a provider that fails or runs late is named in a warning on the view's root span, never fails the view;
//! - [`Template`]: `{field}` placeholders over a target's fields, for tag values and URLs;
//! - [`ExtensionsConfig`] (YAML, beside each provider's config) and its [`ExtensionsConfig::build`];
//! - `JaegerProvider` and `HttpProvider` (feature `extensions`): a Jaeger query service searched by service,
//!   operation and tags; any service answering with Jaeger-shaped JSON at a templated URL.

mod config;
#[cfg(feature = "extensions")]
mod http;
mod template;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kelemetry_core::{SmolStr, vocabulary as v};
use xxhash_rust::xxh3::xxh3_64;

pub use config::{
    ConfigError, ExtensionsConfig, HttpConfig, JaegerConfig, ProviderConfig, TargetFilter,
    TargetKinds,
};
#[cfg(feature = "extensions")]
pub use http::{HttpProvider, JaegerProvider};
pub use template::{Template, TemplateError};

use crate::assemble::{TraceView, ViewNode};
use crate::display::{
    DisplayKind, DisplayLog, DisplaySpan, DisplayTrace, Field, object_display_span_id,
    object_window,
};
use crate::jaeger_json;

/// The tag every grafted span carries: the name of the provider that brought it.
pub const EXTENSION_TAG: &str = "kelemetry.extension";
/// The tag a grafted root carries when it was fetched for an activity: the activity's start, microseconds since
/// the Unix epoch (the viewer finds the activity's mark by it in the modes that show activities as logs).
pub const EXTENSION_ACTIVITY_TAG: &str = "kelemetry.extension.activityTime";

/// What a provider is asked about.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetKind {
    /// An object of the view.
    Object,
    /// An activity of an object (an audit request, an Event, a change, a controller's span).
    Activity,
}

/// One object or activity of a view, as a provider sees it.
///
/// Fields (all strings): the object's `cluster`, `group`, `version`, `resource`, `groupResource`, `namespace`,
/// `name`, `uid` (where known) and `objectApiPath` (`/apis/apps/v1/namespaces/default/deployments/web`); for an
/// activity also `source` (`audit`, `event`, ...), `title` and every attribute of the activity (`auditId`,
/// `resourceVersion`, `username`, `responseCode`, ...); for both `start` and `end` (RFC 3339) and `startMicros`,
/// `endMicros`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtensionTarget {
    /// Object or activity.
    pub kind: TargetKind,
    /// The fields templates are filled from.
    pub fields: BTreeMap<String, String>,
    /// When it starts.
    pub start: Timestamp,
    /// When it ends.
    pub end: Timestamp,
    /// The display span the fetched traces are grafted under.
    pub attach_to: u64,
}

impl ExtensionTarget {
    /// A target of `kind` with `fields`, spanning `start..end`, grafted under the display span `attach_to`; the
    /// time fields are added.
    pub fn new(
        kind: TargetKind,
        mut fields: BTreeMap<String, String>,
        start: Timestamp,
        end: Timestamp,
        attach_to: u64,
    ) -> Self {
        let end = end.max(start);
        fields.insert("start".into(), start.to_string());
        fields.insert("end".into(), end.to_string());
        fields.insert("startMicros".into(), start.as_microsecond().to_string());
        fields.insert("endMicros".into(), end.as_microsecond().to_string());
        Self {
            kind,
            fields,
            start,
            end,
            attach_to,
        }
    }

    /// The value of a field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Why one fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The request did not go through or the backend answered with an error.
    #[error("{url}: {message}")]
    Request {
        /// What was asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer was not Jaeger-shaped JSON.
    #[error("{url}: the answer is not Jaeger-shaped JSON: {source}")]
    Decode {
        /// What was asked.
        url: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The answer was larger than the limit.
    #[error("{url}: the answer exceeds {limit} bytes")]
    TooLarge {
        /// What was asked.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A provider of the user's own failed.
    #[error("{0}")]
    Other(String),
}

/// A source of spans from another tracing backend. Implement it for a backend of your own and add it to
/// [`Extensions::new`].
#[async_trait::async_trait]
pub trait ExtensionProvider: Send + Sync + fmt::Debug {
    /// The name the view's warnings and the grafted spans' [`EXTENSION_TAG`] carry.
    fn name(&self) -> &str;

    /// Whether to ask about `target` at all (cheap; no I/O).
    fn wants(&self, target: &ExtensionTarget) -> bool;

    /// The traces that belong under `target`. The caller drops the future when the view's budget runs out.
    async fn fetch(
        &self,
        target: &ExtensionTarget,
    ) -> Result<Vec<jaeger_json::Trace>, ExtensionError>;
}

/// How much grafting one view may cost.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtensionLimits {
    /// Wall time for all the fetches of one view; what came back before is kept (default 3 s).
    pub timeout: Duration,
    /// Fetches in flight at once, over all providers (default 8).
    pub max_concurrency: usize,
    /// Targets asked about per view, over all providers; the rest are named in a warning (default 1,000).
    pub max_fetches: usize,
    /// Spans grafted into one view; the rest are dropped with a warning (default 10,000).
    pub max_spans: usize,
}

impl Default for ExtensionLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            max_concurrency: 8,
            max_fetches: 1_000,
            max_spans: 10_000,
        }
    }
}

/// What one [`Extensions::graft`] did, per provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GraftReport {
    /// Per provider (in configuration order): its name and its counts.
    pub providers: Vec<(String, ProviderReport)>,
    /// Spans dropped because the view reached [`ExtensionLimits::max_spans`].
    pub spans_dropped: usize,
    /// Targets not asked about because the view reached [`ExtensionLimits::max_fetches`].
    pub fetches_skipped: usize,
}

/// One provider's part of a [`GraftReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderReport {
    /// Targets asked about.
    pub asked: usize,
    /// Fetches that answered.
    pub answered: usize,
    /// Fetches that failed.
    pub failed: usize,
    /// Fetches still running when the budget ran out.
    pub late: usize,
    /// Spans grafted.
    pub spans: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
}

/// The extension providers of the read side, with their limits.
#[derive(Clone, Debug, Default)]
pub struct Extensions {
    providers: Vec<Arc<dyn ExtensionProvider>>,
    limits: ExtensionLimits,
}

impl Extensions {
    /// These providers within these limits.
    pub fn new(providers: Vec<Arc<dyn ExtensionProvider>>, limits: ExtensionLimits) -> Self {
        Self { providers, limits }
    }

    /// The providers.
    pub fn providers(&self) -> &[Arc<dyn ExtensionProvider>] {
        &self.providers
    }

    /// The limits.
    pub fn limits(&self) -> ExtensionLimits {
        self.limits
    }

    /// Asks the providers about the objects and activities of `view` shown in `trace` and grafts what they
    /// return into `trace` (each returned trace's roots under the target's span, ids rewritten so they are unique
    /// in the view). Failures and late answers become warnings on the root span naming the provider.
    pub async fn graft(&self, view: &TraceView, trace: &mut DisplayTrace) -> GraftReport {
        let mut report = GraftReport {
            providers: self
                .providers
                .iter()
                .map(|p| (p.name().to_owned(), ProviderReport::default()))
                .collect(),
            ..GraftReport::default()
        };
        if self.providers.is_empty() {
            return report;
        }
        let shown: HashSet<u64> = trace.spans.iter().map(|s| s.span_id).collect();
        let mut jobs: Vec<(usize, ExtensionTarget)> = Vec::new();
        for target in targets(view, &shown) {
            for (index, provider) in self.providers.iter().enumerate() {
                if provider.wants(&target) {
                    if jobs.len() >= self.limits.max_fetches {
                        report.fetches_skipped += 1;
                        continue;
                    }
                    jobs.push((index, target.clone()));
                }
            }
        }
        for (index, _) in &jobs {
            report.providers[*index].1.asked += 1;
        }
        let mut pending: HashSet<usize> = (0..jobs.len()).collect();
        let mut results: Vec<(usize, Vec<jaeger_json::Trace>)> = Vec::new();
        {
            // Owned futures: the server's handlers need them `Send` for any lifetime.
            let calls: Vec<futures::future::BoxFuture<'static, _>> = jobs
                .iter()
                .enumerate()
                .map(|(job, (index, target))| {
                    let provider = Arc::clone(&self.providers[*index]);
                    let target = target.clone();
                    let call: futures::future::BoxFuture<'static, _> =
                        Box::pin(async move { (job, provider.fetch(&target).await) });
                    call
                })
                .collect();
            let mut fetches =
                futures::stream::iter(calls).buffer_unordered(self.limits.max_concurrency.max(1));
            let deadline = tokio::time::Instant::now() + self.limits.timeout;
            while let Ok(Some((job, outcome))) =
                tokio::time::timeout_at(deadline, fetches.next()).await
            {
                pending.remove(&job);
                let provider = &mut report.providers[jobs[job].0].1;
                match outcome {
                    Ok(traces) => {
                        provider.answered += 1;
                        results.push((job, traces));
                    }
                    Err(err) => {
                        provider.failed += 1;
                        provider.first_error.get_or_insert_with(|| err.to_string());
                    }
                }
            }
        }
        for job in &pending {
            report.providers[jobs[*job].0].1.late += 1;
        }
        // Graft in job order, so the same answers give the same view whatever order they came in.
        results.sort_by_key(|(job, _)| *job);
        let mut grafts: HashMap<u64, Vec<DisplaySpan>> = HashMap::new();
        let mut budget = self.limits.max_spans;
        for (job, traces) in results {
            let (index, target) = &jobs[job];
            let name = self.providers[*index].name();
            for fetched in &traces {
                let spans = graft_spans(name, target, fetched, &shown);
                let keep = spans.len().min(budget);
                report.spans_dropped += spans.len() - keep;
                budget -= keep;
                report.providers[*index].1.spans += keep;
                grafts
                    .entry(target.attach_to)
                    .or_default()
                    .extend(spans.into_iter().take(keep));
            }
        }
        insert_grafts(trace, grafts);
        if let Some(root) = trace.spans.first_mut() {
            root.warnings.extend(warnings(&report, self.limits));
        }
        report
    }
}

/// The warnings a report gives the view.
fn warnings(report: &GraftReport, limits: ExtensionLimits) -> Vec<String> {
    let mut out = Vec::new();
    for (name, counts) in &report.providers {
        if counts.failed > 0 {
            out.push(format!(
                "extension provider {name:?} failed {} of {} fetches: {}",
                counts.failed,
                counts.asked,
                counts.first_error.as_deref().unwrap_or("unknown error")
            ));
        }
        if counts.late > 0 {
            out.push(format!(
                "extension provider {name:?}: {} of {} fetches had not answered within the view's budget of {:?}",
                counts.late, counts.asked, limits.timeout
            ));
        }
    }
    if report.fetches_skipped > 0 {
        out.push(format!(
            "extension traces: {} fetches not made, the view's limit is {}",
            report.fetches_skipped, limits.max_fetches
        ));
    }
    if report.spans_dropped > 0 {
        out.push(format!(
            "extension traces: {} spans left out, the view's limit is {}",
            report.spans_dropped, limits.max_spans
        ));
    }
    out
}

/// The objects and activities of `view` whose display span (or, for an activity shown as a log, whose object's
/// display span) is in `shown`.
fn targets(view: &TraceView, shown: &HashSet<u64>) -> Vec<ExtensionTarget> {
    let mut out = Vec::new();
    for (_, node) in view.root.walk() {
        let object_span = object_display_span_id(&node.history);
        let object_fields = object_fields(node);
        if shown.contains(&object_span) {
            let (start, end) = object_window(node, view.from, view.to);
            out.push(ExtensionTarget::new(
                TargetKind::Object,
                object_fields.clone(),
                start,
                end,
                object_span,
            ));
        }
        for activity in &node.history.activities {
            let own = activity.span_id.to_u64();
            let attach_to = if shown.contains(&own) {
                own
            } else if shown.contains(&object_span) {
                object_span
            } else {
                continue;
            };
            let mut fields = object_fields.clone();
            for (name, value) in &activity.attributes {
                if !name.starts_with(v::INTERNAL_PREFIX) {
                    fields.insert(name.to_string(), value.to_string());
                }
            }
            // An Event's `source` attribute is the component that reported it; `source` here is the activity's.
            if let Some(component) = fields.remove(v::EVENT_SOURCE) {
                fields.insert("eventSource".into(), component);
            }
            fields.insert("source".into(), activity.service_name().to_owned());
            fields.insert("title".into(), activity.name.clone());
            out.push(ExtensionTarget::new(
                TargetKind::Activity,
                fields,
                activity.start,
                activity.end,
                attach_to,
            ));
        }
    }
    out
}

/// An object's fields: its key and its identity attributes.
fn object_fields(node: &ViewNode) -> BTreeMap<String, String> {
    let history = &node.history;
    let key = &history.key;
    let mut fields = BTreeMap::new();
    for (name, value) in [v::CLUSTER, v::GROUP, v::RESOURCE, v::NAMESPACE, v::NAME]
        .into_iter()
        .zip(key.fields())
    {
        fields.insert(name.to_owned(), value.to_owned());
    }
    for name in [v::VERSION, v::UID] {
        if let Some(value) = history.attribute(name) {
            fields.insert(name.to_owned(), value.to_owned());
        }
    }
    fields.insert("groupResource".into(), key.group_resource());
    let version = history.attribute(v::VERSION).unwrap_or("v1");
    let mut path = if key.group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{}/{version}", key.group)
    };
    if !key.namespace.is_empty() {
        path.push_str(&format!("/namespaces/{}", key.namespace));
    }
    path.push_str(&format!("/{}/{}", key.resource, key.name));
    fields.insert("objectApiPath".into(), path);
    fields
}

/// The spans of one fetched trace as display spans: ids rewritten (unique per provider, target and source span),
/// roots (no parent within the trace) under the target's span, the provider named on each, parents before
/// children and siblings by start.
fn graft_spans<'a>(
    provider: &str,
    target: &ExtensionTarget,
    trace: &'a jaeger_json::Trace,
    shown: &HashSet<u64>,
) -> Vec<DisplaySpan> {
    let id_of = |span_id: &str| {
        xxh3_64(
            format!(
                "{provider}\0{}\0{}\0{span_id}",
                target.attach_to, trace.trace_id
            )
            .as_bytes(),
        )
    };
    let present: HashSet<&'a str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let parent_of = |span: &'a jaeger_json::Span| -> Option<&'a str> {
        span.references
            .iter()
            .find(|r| r.ref_type == jaeger_json::RefType::ChildOf)
            .or_else(|| span.references.first())
            .map(|r| r.span_id.as_str())
            .filter(|parent| present.contains(parent) && *parent != span.span_id)
    };
    let mut children: HashMap<&str, Vec<&jaeger_json::Span>> = HashMap::new();
    let mut roots = Vec::new();
    for span in &trace.spans {
        match parent_of(span) {
            Some(parent) => children.entry(parent).or_default().push(span),
            None => roots.push(span),
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| (s.start_time, s.span_id.clone()));
    }
    roots.sort_by_key(|s| (s.start_time, s.span_id.clone()));
    let mut out = Vec::with_capacity(trace.spans.len());
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(&jaeger_json::Span, u64, bool)> = roots
        .into_iter()
        .rev()
        .map(|root| (root, target.attach_to, true))
        .collect();
    while let Some((span, parent, is_root)) = stack.pop() {
        if !seen.insert(span.span_id.as_str()) {
            continue;
        }
        // A span the view shows already (a controller traced with kelemetry-tracing exports the object's span
        // with the same id): not shown twice; its children hang under the target.
        let known = u64::from_str_radix(&span.span_id, 16).is_ok_and(|id| shown.contains(&id));
        let (id, children_are_roots) = if known {
            (target.attach_to, true)
        } else {
            let id = id_of(&span.span_id);
            out.push(display_span(
                provider, target, trace, span, id, parent, is_root,
            ));
            (id, false)
        };
        for child in children
            .get(span.span_id.as_str())
            .into_iter()
            .flatten()
            .rev()
        {
            stack.push((child, id, children_are_roots));
        }
    }
    out
}

fn display_span(
    provider: &str,
    target: &ExtensionTarget,
    trace: &jaeger_json::Trace,
    span: &jaeger_json::Span,
    id: u64,
    parent: u64,
    is_root: bool,
) -> DisplaySpan {
    let time = |micros: u64| {
        Timestamp::from_microsecond(i64::try_from(micros).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    };
    let start = time(span.start_time);
    let end = time(span.start_time.saturating_add(span.duration));
    let mut tags: Vec<Field> = span
        .tags
        .iter()
        .map(|kv| (SmolStr::new(&kv.key), value_text(&kv.value).into()))
        .collect();
    tags.push((SmolStr::new_static(EXTENSION_TAG), SmolStr::new(provider)));
    if is_root && target.kind == TargetKind::Activity {
        tags.push((
            SmolStr::new_static(EXTENSION_ACTIVITY_TAG),
            target.start.as_microsecond().to_string().into(),
        ));
    }
    DisplaySpan {
        span_id: id,
        parent: Some(parent),
        kind: DisplayKind::Extension,
        service: trace
            .processes
            .get(&span.process_id)
            .map(|p| p.service_name.clone())
            .unwrap_or_else(|| provider.to_owned()),
        operation: span.operation_name.clone(),
        start,
        end: end.max(start),
        tags,
        logs: span
            .logs
            .iter()
            .map(|log| DisplayLog {
                time: time(log.timestamp),
                fields: log
                    .fields
                    .iter()
                    .map(|kv| (SmolStr::new(&kv.key), value_text(&kv.value).into()))
                    .collect(),
            })
            .collect(),
        warnings: span.warnings.clone().unwrap_or_default(),
    }
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Puts each group of grafted spans right after the span it hangs under, so the trace stays depth first.
fn insert_grafts(trace: &mut DisplayTrace, mut grafts: HashMap<u64, Vec<DisplaySpan>>) {
    if grafts.is_empty() {
        return;
    }
    let spans = std::mem::take(&mut trace.spans);
    let mut out = Vec::with_capacity(spans.len() + grafts.values().map(Vec::len).sum::<usize>());
    for span in spans {
        let id = span.span_id;
        out.push(span);
        if let Some(grafted) = grafts.remove(&id) {
            out.extend(grafted);
        }
    }
    trace.spans = out;
}

#[cfg(test)]
mod tests;
