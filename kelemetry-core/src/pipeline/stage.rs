//! The work done on one record: filter → redact → decorate → window → object span and links → activity span.
//!
//! A [`Stage`] holds no state of its own that changes per record: what it remembers lives in the shared, locked
//! [`SpanLedger`] and [`BodyCache`]. So every shard runs records through the same `Stage`, several at once, and
//! each record's spans come back to the caller to be batched.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use async_trait::async_trait;
use tracing::warn;

use super::{PipelineStats, error_chain};
use crate::activity::Record;
use crate::body_cache::BodyCache;
use crate::decorate::Decorator;
use crate::filter::Filter;
use crate::ids::TraceId;
use crate::key::Object;
use crate::ledger::SpanLedger;
use crate::link::{Linker, ObjectLookup};
use crate::redact::Redactor;
use crate::span::{self, SpanRecord};
use crate::window::{Window, Windowing};

/// The pipeline's body cache first, then the configured lookup.
pub(super) struct CachedLookup {
    pub(super) bodies: Arc<BodyCache>,
    pub(super) fallback: Option<Arc<dyn ObjectLookup>>,
}

#[async_trait]
impl ObjectLookup for CachedLookup {
    async fn body(&self, object: &crate::ObjectRef) -> Option<Arc<crate::body::Body>> {
        if let Some(body) = self.bodies.get(&object.key) {
            return Some(body);
        }
        match &self.fallback {
            Some(fallback) => fallback.body(object).await,
            None => None,
        }
    }
}

/// What turns records into spans; shared by every shard.
pub(super) struct Stage {
    pub(super) windowing: Windowing,
    pub(super) filter: Filter,
    pub(super) redactor: Redactor,
    pub(super) decorators: Vec<Arc<dyn Decorator>>,
    pub(super) linkers: Vec<Arc<dyn Linker>>,
    pub(super) lookup: CachedLookup,
    pub(super) bodies: Arc<BodyCache>,
    /// One ledger for every shard: `first_sighting` is atomic, so an object span a linker of one shard and the
    /// object's own shard both want is written once, by whichever asks first.
    pub(super) ledger: Arc<dyn SpanLedger>,
    pub(super) max_link_depth: usize,
    pub(super) stats: Arc<PipelineStats>,
}

impl Stage {
    /// Turns `record` into spans, appended to `out`.
    pub(super) async fn process(&self, record: Record, out: &mut Vec<SpanRecord>) {
        if !self.filter.is_empty() && !self.filter.admits(&record) {
            self.stats.filtered.fetch_add(1, Relaxed);
            return;
        }
        match record {
            Record::Activity(mut activity) => {
                self.redact(&mut activity.object);
                for decorator in &self.decorators {
                    decorator.decorate(&mut activity, &self.bodies).await;
                }
                let window = self.windowing.window_of(activity.start);
                self.ensure_object(&activity.object, window, out).await;
                if let Some(body) = &activity.object.body {
                    self.bodies.insert(activity.object.key(), body.clone());
                }
                out.push(span::activity_into_span(*activity, window));
                self.stats.activity_spans.fetch_add(1, Relaxed);
                self.stats.activities.fetch_add(1, Relaxed);
            }
            Record::Observation(mut observation) => {
                self.redact(&mut observation.object);
                self.stats.observations.fetch_add(1, Relaxed);
                if let Some(body) = &observation.object.body {
                    self.bodies.insert(observation.object.key(), body.clone());
                }
                let window = self.windowing.window_of(observation.time);
                self.ensure_object(&observation.object, window, out).await;
            }
        }
    }

    pub(super) fn redact(&self, object: &mut Object) {
        if let Some(body) = &mut object.body
            && self.redactor.applies_to(&object.object_ref.key, &**body)
        {
            let key = object.object_ref.key.clone();
            self.redactor.redact(&key, Arc::make_mut(body).make_mut());
        }
    }

    /// Emits the object's span for `window` unless already emitted, and runs the linkers when the span is new or
    /// when this is the first time a body is known for it in this window.
    async fn ensure_object(&self, object: &Object, window: Window, out: &mut Vec<SpanRecord>) {
        let trace = TraceId::for_object(object.key(), window);
        let new_span = self.ledger.first_sighting(trace.object_span());
        if new_span {
            out.push(span::object_span(&object.object_ref, window));
            self.stats.object_spans.fetch_add(1, Relaxed);
        }
        if self.linkers.is_empty() {
            return;
        }
        // The linkers see the object as it came when it has a body (no copy of it), else with the body looked up.
        let object = match &object.body {
            Some(_) => Cow::Borrowed(object),
            None if new_span => Cow::Owned(Object {
                object_ref: object.object_ref.clone(),
                body: self.lookup.body(&object.object_ref).await,
            }),
            None => Cow::Borrowed(object),
        };
        let first_with_body =
            object.body.is_some() && self.ledger.first_sighting(trace.body_marker());
        if new_span || first_with_body {
            self.link(object, window, out).await;
        }
    }

    async fn link(&self, object: Cow<'_, Object>, window: Window, out: &mut Vec<SpanRecord>) {
        let mut work = vec![(object, 0usize)];
        while let Some((object, depth)) = work.pop() {
            for linker in &self.linkers {
                let links = match linker.link(&object, &self.lookup).await {
                    Ok(links) => links,
                    Err(err) => {
                        self.stats.link_errors.fetch_add(1, Relaxed);
                        warn!(error = %error_chain(&err), "linker failed");
                        continue;
                    }
                };
                for link in links {
                    if link.object.key == object.object_ref.key {
                        continue;
                    }
                    let linked_trace = TraceId::for_object(&link.object.key, window);
                    let linked_new = self.ledger.first_sighting(linked_trace.object_span());
                    if linked_new {
                        out.push(span::object_span(&link.object, window));
                        self.stats.object_spans.fetch_add(1, Relaxed);
                    }
                    let forward = span::link_span(&object.object_ref, window, &link);
                    if self.ledger.first_sighting(forward.span_id) {
                        out.push(forward);
                        self.stats.link_spans.fetch_add(1, Relaxed);
                    }
                    let backward_link = link.reversed(object.object_ref.clone());
                    let backward = span::link_span(&link.object, window, &backward_link);
                    if self.ledger.first_sighting(backward.span_id) {
                        out.push(backward);
                        self.stats.link_spans.fetch_add(1, Relaxed);
                    }
                    if linked_new && depth + 1 < self.max_link_depth {
                        let body = self.lookup.body(&link.object).await;
                        if body.is_some() {
                            self.ledger.first_sighting(linked_trace.body_marker());
                        }
                        work.push((
                            Cow::Owned(Object {
                                object_ref: link.object,
                                body,
                            }),
                            depth + 1,
                        ));
                    }
                }
            }
        }
    }
}
