//! [`TracerSetup`]: a controller's OpenTelemetry tracer provider, its `tracing` layer and its [`ObjectTracing`],
//! built in one call from the settings Kelemetry runs with.
//!
//! The OpenTelemetry crates are this crate's own (re-exported as [`crate::opentelemetry`],
//! [`crate::opentelemetry_sdk`] and [`crate::tracing_opentelemetry`]), so a controller needs no version of them in
//! its own `Cargo.toml`: the layer [`ControllerTracing::layer`] returns fits any `tracing_subscriber` registry.

use std::sync::Arc;

use kelemetry_core::{ExportError, Exporter, Windowing};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, TracerProviderBuilder};
use tokio::runtime::Handle;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::activities::ActivityRecorder;
use crate::objects::{Attachment, ObjectTracing};
use crate::span_records::SpanRecordExporter;

type ProviderHook = Box<dyn FnOnce(TracerProviderBuilder) -> TracerProviderBuilder + Send>;

/// The settings of a controller's tracing: cluster, controller name, windowing (given once, for reconcile spans
/// and custom activities alike), where spans go. [`TracerSetup::build`] makes the tracer provider and returns the
/// [`ControllerTracing`] that holds the layer to add to the `tracing` subscriber and the [`ObjectTracing`] to
/// use in reconcile.
///
/// ```
/// use std::sync::Arc;
/// use kelemetry_core::MemoryExporter;
/// use kelemetry_tracing::{TracerSetup, Windowing};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spans = Arc::new(MemoryExporter::new(1_000)); // in production: kelemetry_exporters::OtlpExporter
/// let telemetry = TracerSetup::new("prod", "configmap-sync")
///     .with_windowing(Windowing::new(1800)?)
///     .with_exporter(spans.clone())
///     .build()?;
/// let subscriber = tracing_subscriber::registry().with(telemetry.layer());
/// # let _guard = tracing::subscriber::set_default(subscriber);
/// // ... run the controller with `telemetry.objects().reconciler(reconcile)` ...
/// # drop(_guard);
/// telemetry.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a TracerSetup does nothing until built"]
pub struct TracerSetup {
    controller: String,
    objects: ObjectTracing,
    exporter: Option<Arc<dyn Exporter>>,
    activities: Option<ActivityRecorder>,
    runtime: Option<Handle>,
    provider: Option<ProviderHook>,
}

impl std::fmt::Debug for TracerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracerSetup")
            .field("objects", &self.objects)
            .field("exporter", &self.exporter.as_ref().map(|e| e.name()))
            .field("activities", &self.activities)
            .field("provider_hook", &self.provider.is_some())
            .finish_non_exhaustive()
    }
}

impl TracerSetup {
    /// A controller named `controller` (its spans' `service.name`, the source name of its custom activities)
    /// working on objects of `cluster` (the cluster name Kelemetry runs with, `cluster:` in its configuration),
    /// with the 30-minute default windowing. Spans go nowhere until [`TracerSetup::with_exporter`] or
    /// [`TracerSetup::with_provider`] says where.
    pub fn new(cluster: impl Into<String>, controller: impl Into<String>) -> Self {
        let controller = controller.into();
        Self {
            objects: ObjectTracing::new(cluster, controller.clone()),
            controller,
            exporter: None,
            activities: None,
            runtime: None,
            provider: None,
        }
    }

    /// The windowing Kelemetry runs with (it must match, or the ids differ). Given once here, it places reconcile
    /// spans and custom activities alike.
    pub fn with_windowing(mut self, windowing: Windowing) -> Self {
        self.objects = self.objects.with_windowing(windowing);
        self
    }

    /// Whether reconcile spans become children of the object span (the default) or link to it.
    pub fn with_attachment(mut self, attachment: Attachment) -> Self {
        self.objects = self.objects.with_attachment(attachment);
        self
    }

    /// Where the spans go: the controller's finished spans are written as Kelemetry span records through
    /// `exporter` (for example `kelemetry_exporters::OtlpExporter` to the backend Kelemetry writes to, or the
    /// embedded store), by a batch span processor. Custom activities go there too, unless
    /// [`TracerSetup::with_activities`] says otherwise.
    pub fn with_exporter(mut self, exporter: Arc<dyn Exporter>) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// Where custom activities go, for example [`ActivityRecorder::pipeline`] into a Kelemetry pipeline running
    /// in the same process.
    pub fn with_activities(mut self, recorder: ActivityRecorder) -> Self {
        self.activities = Some(recorder);
        self
    }

    /// The tokio runtime the Kelemetry exporter runs on (default: the runtime [`TracerSetup::build`] is called
    /// in).
    pub fn with_runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Anything else about the tracer provider (another span exporter, a sampler, more resource attributes):
    /// `change` gets the builder after the `service.name` resource and the [`TracerSetup::with_exporter`]
    /// processor were added.
    pub fn with_provider(
        mut self,
        change: impl FnOnce(TracerProviderBuilder) -> TracerProviderBuilder + Send + 'static,
    ) -> Self {
        self.provider = Some(Box::new(change));
        self
    }

    /// Builds the tracer provider. Fails only when an exporter is set and there is no tokio runtime to run it on.
    pub fn build(self) -> Result<ControllerTracing, SetupError> {
        let runtime = match self.runtime {
            Some(runtime) => Some(runtime),
            None => Handle::try_current().ok(),
        };
        let mut builder = SdkTracerProvider::builder().with_resource(
            Resource::builder()
                .with_service_name(self.controller.clone())
                .build(),
        );
        if let Some(exporter) = &self.exporter {
            let runtime = runtime.clone().ok_or(SetupError::NoRuntime)?;
            builder =
                builder.with_batch_exporter(SpanRecordExporter::new(exporter.clone(), runtime));
        }
        if let Some(change) = self.provider {
            builder = change(builder);
        }
        let provider = builder.build();
        let tracer = provider.tracer(self.controller);
        let activities = self
            .activities
            .or_else(|| self.exporter.clone().map(ActivityRecorder::exporter));
        let objects = match activities {
            Some(recorder) => self.objects.with_activities(recorder),
            None => self.objects,
        };
        Ok(ControllerTracing {
            objects,
            provider,
            tracer,
            exporter: self.exporter,
            runtime,
        })
    }
}

/// A controller's tracing, built by [`TracerSetup::build`]: the layer for the `tracing` subscriber, the
/// [`ObjectTracing`] for reconcile, and the tracer provider to flush at the end.
pub struct ControllerTracing {
    objects: ObjectTracing,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    exporter: Option<Arc<dyn Exporter>>,
    runtime: Option<Handle>,
}

impl std::fmt::Debug for ControllerTracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerTracing")
            .field("objects", &self.objects)
            .field("exporter", &self.exporter.as_ref().map(|e| e.name()))
            .finish_non_exhaustive()
    }
}

impl ControllerTracing {
    /// Reconcile spans and custom activities inside the objects' spans: `objects().reconciler(reconcile)` in
    /// `Controller::run`, `record_on` in reconcile. Clone it into the controller's context.
    pub fn objects(&self) -> &ObjectTracing {
        &self.objects
    }

    /// The tracing-opentelemetry layer over this provider's tracer, to add to the subscriber:
    /// `tracing_subscriber::registry().with(telemetry.layer())`.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.tracer.clone())
    }

    /// The tracer provider (for example to register it as the global provider of `opentelemetry::global`).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports every finished span and flushes the Kelemetry exporter.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let provider = self.provider.clone();
        self.blocking(move || provider.force_flush()).await?;
        self.flush_exporter().await
    }

    /// Exports every finished span, stops the tracer provider (spans ended later are dropped), and flushes the
    /// Kelemetry exporter. Call it once the controller has stopped.
    pub async fn shutdown(self) -> Result<(), FlushError> {
        let provider = self.provider.clone();
        self.blocking(move || provider.shutdown()).await?;
        self.flush_exporter().await
    }

    /// Runs a blocking call of the SDK (it waits for the batch processor's thread) off the runtime's workers.
    async fn blocking(
        &self,
        call: impl FnOnce() -> Result<(), OTelSdkError> + Send + 'static,
    ) -> Result<(), FlushError> {
        let result = match &self.runtime {
            Some(runtime) => runtime
                .spawn_blocking(call)
                .await
                .map_err(|source| FlushError::Task { source })?,
            None => call(),
        };
        result.map_err(|source| FlushError::Provider { source })
    }

    async fn flush_exporter(&self) -> Result<(), FlushError> {
        let Some(exporter) = &self.exporter else {
            return Ok(());
        };
        exporter
            .flush()
            .await
            .map_err(|source| FlushError::Exporter {
                exporter: exporter.name().to_owned(),
                source,
            })
    }
}

/// [`TracerSetup::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// An exporter is set but there is no tokio runtime to run it on: build inside the runtime, or give one with
    /// [`TracerSetup::with_runtime`].
    #[error(
        "the span exporter needs a tokio runtime: build inside one or call TracerSetup::with_runtime"
    )]
    NoRuntime,
}

/// [`ControllerTracing::flush`] or [`ControllerTracing::shutdown`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The tracer provider could not flush or stop (a span exporter failed, timed out, or it was already shut
    /// down).
    #[error("the tracer provider could not flush")]
    Provider {
        /// Why.
        #[source]
        source: OTelSdkError,
    },
    /// The Kelemetry exporter could not flush.
    #[error("the exporter {exporter} could not flush")]
    Exporter {
        /// The exporter's name.
        exporter: String,
        /// Why.
        #[source]
        source: ExportError,
    },
    /// The blocking task that waited for the provider failed.
    #[error("waiting for the tracer provider failed")]
    Task {
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}
