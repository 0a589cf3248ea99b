//! The span context of an object span, computed by any process without asking anyone
//! (docs/architecture.md#deterministic-ids).
//!
//! Object spans have deterministic ids: the trace id is a hash of the object's key and window, the span id a hash
//! of the trace id. So a controller that reconciles an object can compute, from the object and the time, the
//! OpenTelemetry span context of the object's span of that window, and make its own reconcile span a child of it
//! (or link to it). When its spans land in the same storage as Kelemetry's, they show up inside the object's trace.
//!
//! - [`ObjectSpanContext`]: trace id, span id and the sampled flag, as plain data; also as a W3C `traceparent`
//!   header and, with the feature `opentelemetry`, as an `opentelemetry::trace::SpanContext` or `Context`.
//! - With the feature `kube`: `object_ref_of` and `object_ref_of_dynamic` read the [`ObjectRef`](crate::ObjectRef)
//!   of any kube `Resource` (typed, custom, or dynamic), with the cluster name Kelemetry was configured with.
//!
//! ```
//! use kelemetry_core::context::ObjectSpanContext;
//! use kelemetry_core::{ObjectKey, TraceId, Windowing};
//!
//! let key = ObjectKey::new("prod", "apps", "deployments", "default", "web");
//! let at: jiff::Timestamp = "2024-05-01T12:34:56Z".parse().unwrap();
//! let context = ObjectSpanContext::at(&key, &Windowing::default(), at);
//! let trace = TraceId::for_object(&key, Windowing::default().window_of(at));
//! assert_eq!(context.trace_id, trace);
//! assert_eq!(context.span_id, trace.object_span());
//! assert_eq!(context.traceparent(), format!("00-{trace}-{}-01", trace.object_span()));
//! ```

use jiff::Timestamp;

use crate::ids::{SpanId, TraceId};
use crate::key::ObjectKey;
use crate::window::{Window, Windowing};

/// The OpenTelemetry span context of one object span: the object's trace of a window and the object span in it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectSpanContext {
    /// The object's trace in the window.
    pub trace_id: TraceId,
    /// The object span, root of that trace.
    pub span_id: SpanId,
    /// Whether spans under it should be recorded. Object spans are always written, so this is `true` unless the
    /// caller turns it off (see [`ObjectSpanContext::with_sampled`]).
    pub sampled: bool,
}

impl ObjectSpanContext {
    /// The context of `key`'s object span in `window`.
    pub fn of(key: &ObjectKey, window: Window) -> Self {
        let trace_id = TraceId::for_object(key, window);
        Self {
            trace_id,
            span_id: trace_id.object_span(),
            sampled: true,
        }
    }

    /// The context of `key`'s object span in the window of `windowing` that holds `at`.
    pub fn at(key: &ObjectKey, windowing: &Windowing, at: Timestamp) -> Self {
        Self::of(key, windowing.window_of(at))
    }

    /// The same context with the sampled flag set to `sampled`.
    pub fn with_sampled(mut self, sampled: bool) -> Self {
        self.sampled = sampled;
        self
    }

    /// The W3C Trace Context `traceparent` header value (`00-<trace id>-<span id>-<flags>`), to propagate the
    /// object's span to another process.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }

    /// As an OpenTelemetry span context: remote (it was not created in this process), with the sampled flag.
    #[cfg(feature = "opentelemetry")]
    pub fn to_span_context(&self) -> opentelemetry::trace::SpanContext {
        use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(self.trace_id.to_bytes()),
            opentelemetry::trace::SpanId::from_bytes(self.span_id.to_bytes()),
            flags,
            true,
            TraceState::NONE,
        )
    }

    /// As an OpenTelemetry [`Context`](opentelemetry::Context) whose current span is the object span, ready to
    /// be a parent (for example `tracing_opentelemetry::OpenTelemetrySpanExt::set_parent`).
    #[cfg(feature = "opentelemetry")]
    pub fn to_context(&self) -> opentelemetry::Context {
        use opentelemetry::trace::TraceContextExt;
        opentelemetry::Context::new().with_remote_span_context(self.to_span_context())
    }
}

/// A kube object cannot be named as an [`ObjectRef`](crate::ObjectRef).
#[cfg(feature = "kube")]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectRefError {
    /// The object has no `metadata.name` (only a `generateName`, before the apiserver named it).
    #[error("the {kind} object has no metadata.name yet, so it has no object span")]
    Unnamed {
        /// The object's kind.
        kind: String,
    },
}

/// The [`ObjectRef`](crate::ObjectRef) of a typed kube object (a built-in type from k8s-openapi or a custom
/// resource derived with `kube::CustomResource`) in `cluster`: group, plural and version from the type,
/// namespace, name and uid from its metadata.
///
/// ```
/// use k8s_openapi::api::apps::v1::Deployment;
/// use kelemetry_core::context::object_ref_of;
///
/// let mut deployment = Deployment::default();
/// deployment.metadata.name = Some("web".into());
/// deployment.metadata.namespace = Some("default".into());
/// let object = object_ref_of("prod", &deployment).unwrap();
/// assert_eq!(object.key.to_string(), "prod/apps/deployments/default/web");
/// assert_eq!(object.version, "v1");
/// ```
#[cfg(feature = "kube")]
pub fn object_ref_of<K>(cluster: &str, object: &K) -> Result<crate::ObjectRef, ObjectRefError>
where
    K: kube_core::Resource,
    K::DynamicType: Default,
{
    object_ref_of_dynamic(cluster, object, &K::DynamicType::default())
}

/// [`object_ref_of`] for a resource whose type is known at run time (`kube_core::DynamicObject` with its
/// `ApiResource`).
#[cfg(feature = "kube")]
pub fn object_ref_of_dynamic<K: kube_core::Resource>(
    cluster: &str,
    object: &K,
    dynamic_type: &K::DynamicType,
) -> Result<crate::ObjectRef, ObjectRefError> {
    let meta = object.meta();
    let Some(name) = meta.name.as_deref() else {
        return Err(ObjectRefError::Unnamed {
            kind: K::kind(dynamic_type).into_owned(),
        });
    };
    let key = ObjectKey::new(
        cluster,
        K::group(dynamic_type),
        K::plural(dynamic_type),
        meta.namespace.as_deref().unwrap_or_default(),
        name,
    );
    Ok(crate::ObjectRef::new(
        key,
        K::version(dynamic_type),
        meta.uid.as_deref().map(smol_str::SmolStr::new),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_context_is_the_object_span_of_the_window_that_holds_the_time() {
        let key = ObjectKey::new("tracetest", "apps", "deployments", "default", "demo");
        let windowing = Windowing::default();
        let early = ObjectSpanContext::at(&key, &windowing, at("2023-05-13T17:46:40Z"));
        let same_window = ObjectSpanContext::at(&key, &windowing, at("2023-05-13T17:59:59Z"));
        let next_window = ObjectSpanContext::at(&key, &windowing, at("2023-05-13T18:00:00Z"));
        assert_eq!(early, same_window);
        assert_ne!(early.trace_id, next_window.trace_id);
        // The pinned ids of `ids::tests` (window of 1_684_000_000 = 2023-05-13T17:46:40Z).
        assert_eq!(
            early.trace_id.to_string(),
            "41a889b2b708ffd2038c1a4fef841c7e"
        );
        assert_eq!(early.span_id.to_string(), "045c44c0a5a5b7b5");
        assert_eq!(
            early.traceparent(),
            "00-41a889b2b708ffd2038c1a4fef841c7e-045c44c0a5a5b7b5-01"
        );
        assert_eq!(
            early.with_sampled(false).traceparent(),
            "00-41a889b2b708ffd2038c1a4fef841c7e-045c44c0a5a5b7b5-00"
        );
    }

    #[test]
    fn the_context_matches_the_span_the_pipeline_writes() {
        let key = ObjectKey::new("c", "", "configmaps", "ns", "settings");
        let window = Windowing::default().window_of(at("2024-01-01T10:00:00Z"));
        let span =
            crate::span::object_span(&crate::ObjectRef::new(key.clone(), "v1", None), window);
        let context = ObjectSpanContext::of(&key, window);
        assert_eq!(
            (context.trace_id, context.span_id),
            (span.trace_id, span.span_id)
        );
    }

    #[cfg(feature = "opentelemetry")]
    #[test]
    fn as_opentelemetry_it_is_a_valid_remote_sampled_parent() {
        use opentelemetry::trace::TraceContextExt;
        let key = ObjectKey::new("tracetest", "apps", "deployments", "default", "demo");
        let context =
            ObjectSpanContext::at(&key, &Windowing::default(), at("2023-05-13T17:46:40Z"));
        let otel = context.to_span_context();
        assert!(otel.is_valid());
        assert!(otel.is_remote());
        assert!(otel.is_sampled());
        assert_eq!(otel.trace_id().to_string(), context.trace_id.to_string());
        assert_eq!(otel.span_id().to_string(), context.span_id.to_string());
        assert!(!context.with_sampled(false).to_span_context().is_sampled());
        let parent = context.to_context();
        assert_eq!(parent.span().span_context(), &otel);
    }

    #[cfg(feature = "kube")]
    #[test]
    fn kube_objects_name_their_key() {
        use k8s_openapi::api::core::v1::{ConfigMap, Node};
        let mut config_map = ConfigMap::default();
        config_map.metadata.name = Some("settings".into());
        config_map.metadata.namespace = Some("team-a".into());
        config_map.metadata.uid = Some("u-1".into());
        let object = object_ref_of("prod", &config_map).unwrap();
        assert_eq!(
            object.key,
            ObjectKey::new("prod", "", "configmaps", "team-a", "settings")
        );
        assert_eq!(object.uid.as_deref(), Some("u-1"));
        assert_eq!(object.api_version(), "v1");

        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        assert_eq!(
            object_ref_of("prod", &node).unwrap().key.to_string(),
            "prod//nodes//n1"
        );

        let mut unnamed = ConfigMap::default();
        unnamed.metadata.generate_name = Some("settings-".into());
        assert_eq!(
            object_ref_of("prod", &unnamed),
            Err(ObjectRefError::Unnamed {
                kind: "ConfigMap".into()
            })
        );
    }

    #[cfg(feature = "kube")]
    #[test]
    fn dynamic_objects_name_their_key() {
        use kube_core::{ApiResource, DynamicObject, GroupVersionKind};
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("example.kelemetry.io", "v1", "ConfigMapSync"),
            "configmapsyncs",
        );
        let object = DynamicObject::new("sync-1", &resource).within("default");
        let object = object_ref_of_dynamic("prod", &object, &resource).unwrap();
        assert_eq!(
            object.key.to_string(),
            "prod/example.kelemetry.io/configmapsyncs/default/sync-1"
        );
        assert_eq!(object.api_version(), "example.kelemetry.io/v1");
    }
}
