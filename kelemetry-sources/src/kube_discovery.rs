//! What the apiserver serves: [`discover_resources`] lists the resources of every API group (preferred versions)
//! through kube's discovery, and [`register_resources`] teaches a [`ResourceMap`] the kinds it found (custom
//! resources included), so Events and owner references about them resolve without guessing.

use kelemetry_core::resource_map::{ResourceEntry, ResourceMap, ResourceScope};
use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use tracing::debug;

/// One resource the apiserver serves, in its group's preferred version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredResource {
    /// Group, version, kind and plural.
    pub api: ApiResource,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether it can be listed and watched (what the object watch needs).
    pub watchable: bool,
}

impl DiscoveredResource {
    /// `resource` for the core group, else `resource.group` (the form filters and selections use).
    pub fn qualified_name(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }
}

/// Every resource of every group the apiserver serves (not subresources), in preferred versions. Uses aggregated
/// discovery when the apiserver offers it (one request per API root), else one request per group version.
pub async fn discover_resources(client: &Client) -> Result<Vec<DiscoveredResource>, kube::Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(discovery) => discovery,
        Err(err) => {
            debug!(%err, "aggregated discovery failed; discovering group by group");
            Discovery::new(client.clone()).run().await?
        }
    };
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (api, capabilities) in group.recommended_resources() {
            found.push(DiscoveredResource {
                namespaced: capabilities.scope == Scope::Namespaced,
                watchable: capabilities.supports_operation(verbs::LIST)
                    && capabilities.supports_operation(verbs::WATCH),
                api,
            });
        }
    }
    found.sort_by(|a, b| (&a.api.group, &a.api.plural).cmp(&(&b.api.group, &b.api.plural)));
    Ok(found)
}

/// Adds (or updates) the kinds of `resources` in `map`.
pub fn register_resources(map: &ResourceMap, resources: &[DiscoveredResource]) {
    for resource in resources {
        map.insert(ResourceEntry::new(
            resource.api.group.clone(),
            resource.api.version.clone(),
            resource.api.kind.clone(),
            resource.api.plural.clone(),
            if resource.namespaced {
                ResourceScope::Namespaced
            } else {
                ResourceScope::Cluster
            },
        ));
    }
}
