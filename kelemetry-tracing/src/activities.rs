//! [`ActivityRecorder`]: where a controller's custom activities go — into a Kelemetry [`Pipeline`] running in the
//! same process, or straight to an [`Exporter`] (OTLP, the embedded store, JSON lines...).
//!
//! [`Pipeline`]: kelemetry_core::Pipeline

use std::sync::Arc;

use kelemetry_core::context::ObjectRefError;
use kelemetry_core::{Activity, ActivitySink, ExportError, Exporter, Windowing, span};

/// A custom activity could not be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The object cannot be named.
    #[error(transparent)]
    Object(#[from] ObjectRefError),
    /// No [`ActivityRecorder`] was configured on the `ObjectTracing`.
    #[error("no activity recorder is configured: call ObjectTracing::with_activities")]
    NoRecorder,
    /// The pipeline the recorder feeds has stopped.
    #[error("the Kelemetry pipeline is closed")]
    PipelineClosed,
    /// The exporter refused the spans.
    #[error("exporting the activity of {object} failed: {source}")]
    Export {
        /// The object, as canonical key text.
        object: String,
        /// Why.
        #[source]
        source: ExportError,
    },
}

/// Where custom activities go: given once to [`ObjectTracing::with_activities`] (or
/// [`TracerSetup::with_activities`]), which records through it with its own windowing. Cloning is cheap.
///
/// [`ObjectTracing::with_activities`]: crate::ObjectTracing::with_activities
/// [`TracerSetup::with_activities`]: crate::TracerSetup::with_activities
#[derive(Clone)]
pub struct ActivityRecorder {
    route: Route,
}

#[derive(Clone)]
enum Route {
    Pipeline(Arc<dyn ActivitySink>),
    Exporter(Arc<dyn Exporter>),
}

impl std::fmt::Debug for ActivityRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.route {
            Route::Pipeline(_) => f.write_str("ActivityRecorder(pipeline)"),
            Route::Exporter(exporter) => {
                write!(f, "ActivityRecorder(exporter {})", exporter.name())
            }
        }
    }
}

impl ActivityRecorder {
    /// Through a pipeline running in this process ([`kelemetry_core::Pipeline::sink`], or the sink a
    /// [`Source`](kelemetry_core::Source) is given): the activity is filtered, decorated, windowed and linked like
    /// any other, and waits for room when the pipeline is busy. The pipeline's windowing applies.
    pub fn pipeline(sink: Arc<dyn ActivitySink>) -> Self {
        Self {
            route: Route::Pipeline(sink),
        }
    }

    /// Straight to an exporter (for example `kelemetry_exporters::OtlpExporter` for OTLP): the activity span is
    /// written together with the object span of its window, so the activity has its parent even where no other
    /// writer made it (the object span is deterministic: a repeat is identical, and storage keeps one). The window
    /// is the one of the `ObjectTracing` that records.
    pub fn exporter(exporter: Arc<dyn Exporter>) -> Self {
        Self {
            route: Route::Exporter(exporter),
        }
    }

    /// Records one activity; `windowing` places it when it goes straight to an exporter.
    pub(crate) async fn record(
        &self,
        activity: Activity,
        windowing: &Windowing,
    ) -> Result<(), RecordError> {
        match &self.route {
            Route::Pipeline(sink) => sink
                .send(activity.into())
                .await
                .map_err(|_| RecordError::PipelineClosed),
            Route::Exporter(exporter) => {
                let window = windowing.window_of(activity.start);
                let object = span::object_span(&activity.object.object_ref, window);
                let key = activity.object.object_ref.key.to_string();
                let batch = [object, span::activity_into_span(activity, window)];
                exporter
                    .export(&batch)
                    .await
                    .map_err(|source| RecordError::Export {
                        object: key,
                        source,
                    })
            }
        }
    }
}
