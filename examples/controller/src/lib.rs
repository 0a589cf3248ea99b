//! # configmap-sync: a traced kube-rs controller
//!
//! A `ConfigMapSync` custom resource (group `example.kelemetry.io`) names a ConfigMap and the data it should hold;
//! the controller writes that ConfigMap (server-side apply, owned by the `ConfigMapSync`) and reports the synced
//! generation in the status.
//!
//! What Kelemetry adds is five lines (see `docs/tracing-your-controller.md`): a
//! [`TracerSetup`](kelemetry_tracing::TracerSetup) and its layer in `main`, an [`ObjectTracing`] in the context,
//! `objects.reconciler(reconcile)` in `Controller::run`, and `record_on` calls for the activities worth telling.
//! Then, in the trace view of a `ConfigMapSync`, each reconcile is a span inside the object's span, with the spans
//! it opened (`apply ConfigMap`, `update status`) under it, next to the audit records of the same writes; the
//! ConfigMap, linked under it by its owner reference, shows a `synced N keys` activity beside the audit record of
//! the write.
//!
//! The controller runs as a Kelemetry [`Source`] ([`SyncController`]): its custom activities enter the pipeline it
//! runs in, and the pipeline owns its lifecycle — [`Pipeline::run`](kelemetry_core::Pipeline::run) starts it, and
//! cancelling the pipeline's token lets the reconciles in flight finish, then drains and flushes the exporters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kelemetry_core::{ActivitySink, CancellationToken, Source, SourceError};
use kelemetry_tracing::{ActivityRecorder, ObjectTracing};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// The field manager of the controller's writes.
pub const FIELD_MANAGER: &str = "configmap-sync";

/// The desired state: which ConfigMap (in the same namespace) holds which data.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "example.kelemetry.io",
    version = "v1",
    kind = "ConfigMapSync",
    namespaced,
    status = "ConfigMapSyncStatus",
    shortname = "cms"
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSyncSpec {
    /// Name of the ConfigMap to write, in the resource's namespace.
    pub config_map: String,
    /// The data it should hold.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

/// What the controller did last.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSyncStatus {
    /// The `metadata.generation` of the spec last written to the ConfigMap.
    pub synced_generation: Option<i64>,
    /// How many keys the ConfigMap holds.
    pub keys: usize,
}

/// A reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The resource has no namespace (the CRD is namespaced, so only a malformed object has none).
    #[error("ConfigMapSync {0} has no namespace")]
    NoNamespace(String),
    /// An apiserver request failed.
    #[error("{what} of {name}: {source}")]
    Kube {
        /// What was being written.
        what: &'static str,
        /// The object.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// What every reconcile gets.
pub struct SyncContext {
    /// The apiserver.
    pub client: Client,
    /// Where the reconcile spans and activities go.
    pub objects: ObjectTracing,
}

impl std::fmt::Debug for SyncContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncContext")
            .field("objects", &self.objects)
            .finish_non_exhaustive()
    }
}

/// Writes the ConfigMap of `sync` and reports the generation in the status.
pub async fn reconcile(
    sync: Arc<ConfigMapSync>,
    context: Arc<SyncContext>,
) -> Result<Action, SyncError> {
    let name = sync.name_any();
    let namespace = sync
        .namespace()
        .ok_or_else(|| SyncError::NoNamespace(name.clone()))?;
    let generation = sync.metadata.generation;
    let written = apply_config_map(&sync, &namespace, &context.client).await?;

    let status = ConfigMapSyncStatus {
        synced_generation: generation,
        keys: sync.spec.data.len(),
    };
    if sync.status.as_ref() == Some(&status) {
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    // A new generation reached the ConfigMap: tell it on both objects.
    let told = format!(
        "synced {} keys from {}/{name} generation {}",
        status.keys,
        namespace,
        generation.unwrap_or_default()
    );
    if let Err(err) = context
        .objects
        .record_on(&written, told, [("configMapSync", name.clone())])
        .await
    {
        tracing::warn!(%err, "could not record the ConfigMap's activity");
    }
    let syncs: Api<ConfigMapSync> = Api::namespaced(context.client.clone(), &namespace);
    let patch = serde_json::json!({ "status": status });
    let updated = syncs
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .instrument(tracing::info_span!("update status"))
        .await
        .map_err(|source| SyncError::Kube {
            what: "update status",
            name: name.clone(),
            source,
        })?;
    if let Err(err) = context
        .objects
        .record_on(
            &updated,
            format!(
                "synced generation {} into ConfigMap {}",
                generation.unwrap_or_default(),
                sync.spec.config_map
            ),
            [("keys", status.keys.to_string())],
        )
        .await
    {
        tracing::warn!(%err, "could not record the ConfigMapSync's activity");
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Server-side applies the ConfigMap `sync` asks for (owned by `sync`), inside an `apply ConfigMap` span.
async fn apply_config_map(
    sync: &ConfigMapSync,
    namespace: &str,
    client: &Client,
) -> Result<ConfigMap, SyncError> {
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(sync.spec.config_map.clone()),
            namespace: Some(namespace.to_owned()),
            owner_references: sync.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(sync.spec.data.clone()),
        ..ConfigMap::default()
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    config_maps
        .patch(
            &sync.spec.config_map,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&config_map),
        )
        .instrument(tracing::info_span!("apply ConfigMap", configmap = %sync.spec.config_map))
        .await
        .map_err(|source| SyncError::Kube {
            what: "apply ConfigMap",
            name: sync.spec.config_map.clone(),
            source,
        })
}

/// Retries a failed reconcile after five seconds.
pub fn error_policy(_sync: Arc<ConfigMapSync>, error: &SyncError, _: Arc<SyncContext>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// The controller as a Kelemetry [`Source`]: added to a pipeline with
/// [`PipelineBuilder::source`](kelemetry_core::PipelineBuilder::source), it runs until the pipeline's shutdown
/// token is cancelled, and records its custom activities into that pipeline (where they are windowed, linked and
/// exported like any other activity).
pub struct SyncController {
    client: Client,
    objects: ObjectTracing,
}

impl std::fmt::Debug for SyncController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncController")
            .field("objects", &self.objects)
            .finish_non_exhaustive()
    }
}

impl SyncController {
    /// The controller against `client`, its reconcile spans placed by `objects` (cluster name and windowing of
    /// the Kelemetry it reports to).
    pub fn new(client: Client, objects: ObjectTracing) -> Self {
        Self { client, objects }
    }
}

#[async_trait]
impl Source for SyncController {
    fn name(&self) -> &str {
        FIELD_MANAGER
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let objects = self
            .objects
            .with_activities(ActivityRecorder::pipeline(sink));
        run(self.client, objects, shutdown.clone()).await;
        // The controller's stream only ends by itself when the controller died: say so, so that a live run does not
        // read it as a clean stop.
        match shutdown.is_cancelled() {
            true => Ok(()),
            false => Err(SourceError::other(
                FIELD_MANAGER,
                "the controller stopped on its own",
            )),
        }
    }
}

/// Runs the controller until `shutdown` is cancelled: then it takes no new work, lets the reconciles in flight
/// finish (kube's graceful shutdown) and returns.
pub async fn run(client: Client, objects: ObjectTracing, shutdown: CancellationToken) {
    let syncs: Api<ConfigMapSync> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let context = Arc::new(SyncContext {
        client,
        objects: objects.clone(),
    });
    Controller::new(syncs, watcher::Config::default())
        .owns(config_maps, watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(objects.reconciler(reconcile), error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "controller");
            }
        })
        .await;
}

/// The CustomResourceDefinition of `ConfigMapSync`, to install before the controller runs.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    ConfigMapSync::crd()
}
