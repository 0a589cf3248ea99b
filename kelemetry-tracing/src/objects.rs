//! [`ObjectTracing`]: a controller's spans and activities inside the traced object's span.

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jiff::Timestamp;
use kelemetry_core::context::{ObjectRefError, object_ref_of};
use kelemetry_core::{
    Activity, Object, ObjectKey, ObjectRef, ObjectSpanContext, SmolStr, SourceKind, Windowing,
};
use kube_core::Resource;
use tracing::Instrument;
use tracing::field::{Empty, display};
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

use crate::activities::{ActivityRecorder, RecordError};

/// How a controller's span joins the object's span.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Attachment {
    /// The span becomes a child of the object span: it lives in the object's trace (the default).
    #[default]
    Parent,
    /// The span keeps its own trace and gets a span link to the object span (for controllers whose traces start
    /// elsewhere, e.g. in an incoming request).
    Link,
}

/// What [`ObjectTracing::attach`] did to a span.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Attached {
    /// The span is now a child of the object span.
    Parented(ObjectSpanContext),
    /// The span links to the object span: asked for ([`Attachment::Link`]), or the span had already started, so
    /// its parent could no longer change (tracing-opentelemetry starts a span when it is first entered).
    Linked(ObjectSpanContext),
    /// The span is not recorded (disabled by a filter, or no OpenTelemetry layer in the subscriber): nothing to do.
    NotRecorded,
}

/// Where a controller's reconcile spans and custom activities go, for objects of one cluster.
///
/// Cloning is cheap. The cluster name must be the one Kelemetry runs with (`cluster:` in its configuration), and
/// the windowing the same (30 minutes by default): both enter the object's trace id.
///
/// ```
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kelemetry_tracing::ObjectTracing;
///
/// let objects = ObjectTracing::new("prod", "configmap-sync");
/// let mut config_map = ConfigMap::default();
/// config_map.metadata.name = Some("settings".into());
/// config_map.metadata.namespace = Some("default".into());
/// let at = "2024-05-01T12:00:00Z".parse().unwrap();
/// let context = objects.span_context(&config_map, at).unwrap();
/// // The same ids Kelemetry writes for the ConfigMap's span of that window.
/// let key = objects.object_key(&config_map).unwrap();
/// assert_eq!(key.to_string(), "prod//configmaps/default/settings");
/// let window = kelemetry_tracing::Windowing::default().window_of(at);
/// assert_eq!(context.trace_id, kelemetry_core::TraceId::for_object(&key, window));
/// ```
#[derive(Clone)]
pub struct ObjectTracing {
    inner: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    cluster: String,
    source: SourceKind,
    windowing: Windowing,
    attachment: Attachment,
    activities: Option<ActivityRecorder>,
}

impl std::fmt::Debug for ObjectTracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectTracing")
            .field("cluster", &self.inner.cluster)
            .field("source", &self.inner.source)
            .field("windowing", &self.inner.windowing)
            .field("attachment", &self.inner.attachment)
            .field("activities", &self.inner.activities.is_some())
            .finish()
    }
}

/// A reconcile future wrapped by [`ObjectTracing::reconciler`].
pub type TracedReconcile<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl ObjectTracing {
    /// Objects of `cluster`; custom activities are written with the source name `controller` (for example
    /// `configmap-sync`), the 30-minute default windowing, reconcile spans as children of the object span.
    pub fn new(cluster: impl Into<String>, controller: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Settings {
                cluster: cluster.into(),
                source: SourceKind::Custom(controller.into()),
                windowing: Windowing::default(),
                attachment: Attachment::Parent,
                activities: None,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// The windowing Kelemetry runs with (it must match, or the ids differ). It places the reconcile spans and
    /// the custom activities alike.
    pub fn with_windowing(self, windowing: Windowing) -> Self {
        self.with(|s| s.windowing = windowing)
    }

    /// Whether reconcile spans become children of the object span or link to it.
    pub fn with_attachment(self, attachment: Attachment) -> Self {
        self.with(|s| s.attachment = attachment)
    }

    /// Where [`ObjectTracing::record`] sends custom activities (placed in the windows of
    /// [`ObjectTracing::with_windowing`]).
    pub fn with_activities(self, recorder: ActivityRecorder) -> Self {
        self.with(|s| s.activities = Some(recorder))
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// The source name of custom activities (the controller's name).
    pub fn source(&self) -> &SourceKind {
        &self.inner.source
    }

    /// The windowing of the object spans.
    pub fn windowing(&self) -> Windowing {
        self.inner.windowing
    }

    /// The [`ObjectKey`] of a kube object in this cluster: the key its object span is computed from.
    pub fn object_key<K>(&self, object: &K) -> Result<ObjectKey, ObjectRefError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        Ok(self.object_ref(object)?.key)
    }

    /// The key, version and uid of a kube object in this cluster.
    fn object_ref<K>(&self, object: &K) -> Result<ObjectRef, ObjectRefError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        object_ref_of(&self.inner.cluster, object)
    }

    /// The span context of `object`'s span in the window that holds `at`.
    pub fn span_context<K>(
        &self,
        object: &K,
        at: Timestamp,
    ) -> Result<ObjectSpanContext, ObjectRefError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let object = self.object_ref(object)?;
        Ok(ObjectSpanContext::at(
            &object.key,
            &self.inner.windowing,
            at,
        ))
    }

    /// Makes `span` a child of `object`'s span of the current window (or links it, see [`Attachment`]).
    ///
    /// A span's parent can only change before the span starts; tracing-opentelemetry starts a span when it is
    /// first entered (or a child needs its context). For a span that already started, a link is added instead and
    /// [`Attached::Linked`] says so: create the span, attach it, then enter it ([`ObjectTracing::reconcile_span`]
    /// does that for you).
    pub fn attach<K>(&self, span: &tracing::Span, object: &K) -> Result<Attached, ObjectRefError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let context = self.span_context(object, Timestamp::now())?;
        Ok(attach_context(span, context, self.inner.attachment))
    }

    /// The one call inside `reconcile`: attaches the current span to `object`'s span (see
    /// [`ObjectTracing::attach`]; inside an entered span this gives a link, so prefer
    /// [`ObjectTracing::reconcile_span`] or [`ObjectTracing::reconciler`] when you create the span yourself).
    pub fn attach_current<K>(&self, object: &K) -> Result<Attached, ObjectRefError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        self.attach(&tracing::Span::current(), object)
    }

    /// A new `reconcile` span for `object`, not yet entered, already attached to the object's span: instrument
    /// the reconcile future with it (`async { ... }.instrument(span)`). Its fields: `object` (the key),
    /// `resourceVersion`, `generation`, and `otel.status_code`/`otel.status_description` left for the outcome.
    /// An object without a name (not created yet) gets a span without a parent.
    pub fn reconcile_span<K>(&self, object: &K) -> tracing::Span
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let meta = object.meta();
        let span = tracing::info_span!(
            parent: None,
            "reconcile",
            object = Empty,
            resourceVersion = meta.resource_version.as_deref().unwrap_or_default(),
            generation = meta.generation.unwrap_or_default(),
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        if let Ok(object_ref) = self.object_ref(object) {
            span.record("object", display(&object_ref.key));
            let context =
                ObjectSpanContext::at(&object_ref.key, &self.inner.windowing, Timestamp::now());
            attach_context(&span, context, self.inner.attachment);
        }
        span
    }

    /// Runs `future` inside a [`ObjectTracing::reconcile_span`] of `object`, marking the span as failed when the
    /// future returns an error.
    pub fn traced<K, F, T, E>(
        &self,
        object: &K,
        future: F,
    ) -> impl Future<Output = Result<T, E>> + Send + use<K, F, T, E>
    where
        K: Resource,
        K::DynamicType: Default,
        F: Future<Output = Result<T, E>> + Send,
        E: Display,
    {
        let span = self.reconcile_span(object);
        outcome(future, span.clone()).instrument(span)
    }

    /// The `kube::runtime::Controller` helper: wraps a reconcile function so that every reconcile runs inside a
    /// `reconcile` span that is a child of the object's span, and is marked as failed on error. The common case
    /// is one line:
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use futures::StreamExt;
    /// # use k8s_openapi::api::core::v1::ConfigMap;
    /// # use kube::runtime::{Controller, controller::Action, watcher};
    /// # #[derive(Debug, thiserror::Error)]
    /// # #[error("failed")]
    /// # struct Error;
    /// # async fn reconcile(_: Arc<ConfigMap>, _: Arc<()>) -> Result<Action, Error> { Ok(Action::await_change()) }
    /// # fn error_policy(_: Arc<ConfigMap>, _: &Error, _: Arc<()>) -> Action { Action::await_change() }
    /// # async fn run(api: kube::Api<ConfigMap>, context: Arc<()>) {
    /// let objects = kelemetry_tracing::ObjectTracing::new("prod", "my-controller");
    /// Controller::new(api, watcher::Config::default())
    ///     .run(objects.reconciler(reconcile), error_policy, context)
    ///     .for_each(|_| async {})
    ///     .await;
    /// # }
    /// ```
    pub fn reconciler<K, Ctx, F, Fut, T, E>(
        &self,
        mut reconcile: F,
    ) -> impl FnMut(Arc<K>, Arc<Ctx>) -> TracedReconcile<T, E> + use<K, Ctx, F, Fut, T, E>
    where
        K: Resource + Send + Sync + 'static,
        K::DynamicType: Default,
        F: FnMut(Arc<K>, Arc<Ctx>) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: 'static,
        E: Display + 'static,
    {
        let objects = self.clone();
        move |object, context| {
            let span = objects.reconcile_span(&*object);
            let future = span.in_scope(|| reconcile(object, context));
            Box::pin(outcome(future, span.clone()).instrument(span))
        }
    }

    /// A custom activity on `object`, starting now, from this controller (source name as given to
    /// [`ObjectTracing::new`]), e.g. `scaled to 3 because queue depth 40`. Add attributes, then
    /// [`ObjectTracing::record`] it. Its dedup key is unique to this call (source, object uid or key, time,
    /// title).
    pub fn activity<K>(
        &self,
        object: &K,
        title: impl Into<String>,
    ) -> Result<Activity, ObjectRefError>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        let object_ref = self.object_ref(object)?;
        let title = title.into();
        let start = Timestamp::now();
        let dedup_key = format!(
            "{}:{}:{}:{}",
            self.inner.source,
            object_ref
                .uid
                .as_ref()
                .map_or_else(|| object_ref.key.to_string(), ToString::to_string),
            start.as_nanosecond(),
            title
        );
        let mut activity = Activity::new(
            Object::new(object_ref),
            self.inner.source.clone(),
            start,
            title,
            dedup_key,
        );
        if let Some(version) = object.meta().resource_version.as_deref() {
            activity.attribute(
                Cow::Borrowed(kelemetry_core::vocabulary::RESOURCE_VERSION),
                version,
            );
        }
        Ok(activity)
    }

    /// Records a custom activity through the configured [`ActivityRecorder`].
    pub async fn record(&self, activity: Activity) -> Result<(), RecordError> {
        match &self.inner.activities {
            Some(recorder) => recorder.record(activity, &self.inner.windowing).await,
            None => Err(RecordError::NoRecorder),
        }
    }

    /// [`ObjectTracing::activity`] with attributes, then [`ObjectTracing::record`], in one call.
    pub async fn record_on<K, I, N, V>(
        &self,
        object: &K,
        title: impl Into<String>,
        attributes: I,
    ) -> Result<(), RecordError>
    where
        K: Resource,
        K::DynamicType: Default,
        I: IntoIterator<Item = (N, V)>,
        N: Into<Cow<'static, str>>,
        V: Into<SmolStr>,
    {
        let mut activity = self.activity(object, title)?;
        for (name, value) in attributes {
            activity.attribute(name, value);
        }
        self.record(activity).await
    }
}

fn attach_context(
    span: &tracing::Span,
    context: ObjectSpanContext,
    attachment: Attachment,
) -> Attached {
    if span.is_disabled() {
        return Attached::NotRecorded;
    }
    if attachment == Attachment::Parent {
        match span.set_parent(context.to_context()) {
            Ok(()) => return Attached::Parented(context),
            Err(SetParentError::AlreadyStarted) => {}
            Err(_) => return Attached::NotRecorded,
        }
    }
    span.add_link(context.to_span_context());
    Attached::Linked(context)
}

async fn outcome<F, T, E>(future: F, span: tracing::Span) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    let result = future.await;
    match &result {
        Ok(_) => {
            span.record("otel.status_code", "OK");
        }
        Err(err) => {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", display(err));
        }
    }
    result
}
