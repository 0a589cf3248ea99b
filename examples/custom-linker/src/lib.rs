//! A linker of one's own, in a crate of its own: Argo Rollouts name the Services their traffic goes through
//! (`spec.strategy.canary.stableService`/`canaryService`, `spec.strategy.blueGreen.activeService`/
//! `previewService`), but the Services carry no owner reference back. [`RolloutServiceLinker`] makes each such
//! Service a child of its Rollout, with the Service's part as the link class, so a Rollout's tree shows its
//! ReplicaSets (by owner reference) and its Services side by side.
//!
//! Plug it into a pipeline next to the built-in linkers:
//!
//! ```
//! use std::sync::Arc;
//!
//! let pipeline = kelemetry::presets::standard()
//!     .linker(Arc::new(custom_linker::RolloutServiceLinker))
//!     .build();
//! # drop(pipeline);
//! ```

use kelemetry::link::body_of;
use kelemetry::{Link, LinkError, Linker, Object, ObjectLookup, ObjectRef, async_trait};
use serde_json::Value;

/// Where a Rollout names a Service, and the Service's part (the link class and dedup id).
const SERVICE_FIELDS: [(&str, &str); 4] = [
    ("/spec/strategy/canary/stableService", "stable"),
    ("/spec/strategy/canary/canaryService", "canary"),
    ("/spec/strategy/blueGreen/activeService", "active"),
    ("/spec/strategy/blueGreen/previewService", "preview"),
];

/// Links an `argoproj.io` Rollout to the Services of its strategy, each a child whose class is its part
/// (`stable`, `canary`, `active`, `preview`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RolloutServiceLinker;

#[async_trait]
impl Linker for RolloutServiceLinker {
    fn name(&self) -> &str {
        "argo-rollout-services"
    }

    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        let key = object.key();
        if key.group != "argoproj.io" || key.resource != "rollouts" {
            return Ok(Vec::new());
        }
        let Some(body) = body_of(object, lookup).await else {
            return Ok(Vec::new());
        };
        let mut links = Vec::new();
        for (pointer, part) in SERVICE_FIELDS {
            let name = match body.pointer(pointer) {
                None | Some(Value::Null) => continue,
                Some(Value::String(name)) if !name.is_empty() && !name.contains('/') => name,
                Some(other) => {
                    let message = format!("{pointer} is not a Service name: {other}");
                    return Err(LinkError::new(self.name(), object.key(), message));
                }
            };
            let service = key.sibling("", "services", name.as_str());
            links.push(
                Link::child(ObjectRef::new(service, "v1", None))
                    .with_class(part)
                    .with_dedup_id(part),
            );
        }
        Ok(links)
    }
}
