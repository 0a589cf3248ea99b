//! [`Decorator`]: enriches an activity before it becomes a span (diffs, snapshots, tags).

use async_trait::async_trait;

use crate::activity::Activity;
use crate::body_cache::BodyCache;

/// Enriches activities in the pipeline, in arrival order. `bodies` holds the latest body seen of each object
/// *before* this activity; the pipeline stores the activity's own body after every decorator ran.
#[async_trait]
pub trait Decorator: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Adds logs or attributes to `activity`.
    async fn decorate(&self, activity: &mut Activity, bodies: &BodyCache);
}
