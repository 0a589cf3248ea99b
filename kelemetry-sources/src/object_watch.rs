//! [`ObjectWatchSource`]: watches the objects of the cluster and files their diffs and snapshots in a
//! [`WatchStore`] (docs/behaviour/watch.md), for [`WatchDiffDecorator`]
//! to attach to audit activities.
//!
//! - **What is watched**: every resource the apiserver serves that can be listed and watched (kube discovery,
//!   preferred versions, all namespaces), narrowed by [`ObjectWatchOptions::include`] (when not empty) and
//!   [`ObjectWatchOptions::exclude`] (default: Events and Leases, which change all the time and are traced
//!   otherwise or not at all), at most [`ObjectWatchOptions::max_watches`] resources. Names are `resource` (any
//!   group) or `resource.group`, as in the pipeline's filter.
//! - **Bounded concurrency**: at most [`ObjectWatchOptions::concurrent_lists`] resources list their objects at the
//!   same time (the list is paged by kube's watcher); the watches themselves are multiplexed on one task. A failed
//!   first list gives its slot up (a resource the service account may not list must not starve the others) and is
//!   retried with backoff, outside the bound.
//! - **Refusals**: a list or watch the apiserver refuses (403) is logged at error level, naming the resource, its
//!   API group and the verbs to grant, and retried.
//! - **Versions**: the first list of a resource only fills the store; afterwards an added object gets a creation
//!   snapshot, a modified one a diff against its previous version, a deleted one a deletion snapshot. After an
//!   interrupted watch, the re-list is compared with what the store knew: changed objects get diffs, new ones
//!   creation snapshots, vanished ones deletion snapshots.
//! - **Watch-only activities** ([`ObjectWatchOptions::emit_activities`], off by default): each change also becomes
//!   an activity of source [`SourceKind::Watch`](kelemetry_core::activity::SourceKind::Watch) titled `watch create|update|delete`, with the diff or snapshot as
//!   its log and dedup key `watch:<uid>:<resourceVersion>`. Meant for clusters whose audit records cannot be had:
//!   with an audit source as well, each write would appear twice (once as the request, once as the change), so the
//!   default leaves changes to decorate the audit activities only.
//!
//! Bodies are redacted (Secrets, configured fields) by the store before they are kept or diffed.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use jiff::Timestamp;
use kelemetry_core::activity::ChangeKind;
use kelemetry_core::{
    ActivitySink, CancellationToken, ObjectKey, ObjectRef, SmolStr, Source, SourceError,
};
use kube::api::{Api, DynamicObject};
use kube::core::TypeMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use crate::kube_discovery::{DiscoveredResource, discover_resources};
use crate::watch_store::{
    WatchDiffDecorator, WatchPhase, WatchStore, WatchStoreLimits, WatchWait, WatchedChange,
};

/// Resources left out by default: Events (the Events source traces them) and Leases (renewed every few seconds).
pub const DEFAULT_EXCLUDED: &[&str] = &[
    "events",
    "events.events.k8s.io",
    "leases.coordination.k8s.io",
];

/// What an [`ObjectWatchSource`] watches and does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectWatchOptions {
    /// Only these resources (`resource` or `resource.group`); all when empty.
    pub include: Vec<String>,
    /// Not these resources.
    pub exclude: Vec<String>,
    /// Watch at most this many resources (the first ones by group and name); the rest is reported and left out.
    pub max_watches: usize,
    /// At most this many resources list their objects at once.
    pub concurrent_lists: usize,
    /// Also send each change as a watch activity.
    pub emit_activities: bool,
}

impl Default for ObjectWatchOptions {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: DEFAULT_EXCLUDED.iter().map(|s| (*s).to_owned()).collect(),
            max_watches: 200,
            concurrent_lists: 4,
            emit_activities: false,
        }
    }
}

fn names(list: &[String], resource: &DiscoveredResource) -> bool {
    list.iter().any(|name| match name.split_once('.') {
        Some((plural, group)) => plural == resource.api.plural && group == resource.api.group,
        None => *name == resource.api.plural,
    })
}

/// The object watch as one configuration: what the [`ObjectWatchSource`] watches ([`ObjectWatchOptions`]), the
/// bounds of its [`WatchStore`] ([`WatchStoreLimits`]) and how long audit writes wait for it ([`WatchWait`]);
/// [`ObjectWatchConfig::build`] makes the three parts.
///
/// [`Default`] takes the defaults of those types. With the feature `config` it is read from configuration files
/// (the `sources.objectWatch` section of `kelemetry run`'s file): camelCase keys, unknown keys refused, sizes like
/// `256MiB`, durations like `15s`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ObjectWatchConfig {
    /// [`ObjectWatchOptions::include`].
    pub include: Vec<String>,
    /// [`ObjectWatchOptions::exclude`].
    pub exclude: Vec<String>,
    /// [`ObjectWatchOptions::max_watches`].
    pub max_watches: usize,
    /// [`ObjectWatchOptions::concurrent_lists`].
    pub concurrent_lists: usize,
    /// [`WatchStoreLimits::max_objects`].
    pub max_objects: usize,
    /// [`WatchStoreLimits::max_body_bytes`].
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub max_body_bytes: usize,
    /// [`WatchStoreLimits::max_changes`].
    pub max_changes: usize,
    /// [`WatchStoreLimits::max_change_bytes`].
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub max_change_bytes: usize,
    /// [`ObjectWatchOptions::emit_activities`]: also trace each change as a `watch` activity (for clusters
    /// without audit).
    pub watch_activities: bool,
    /// How long an audit write waits for a lagging watch.
    pub wait: WatchWait,
}

impl Default for ObjectWatchConfig {
    fn default() -> Self {
        Self::from_parts(
            ObjectWatchOptions::default(),
            WatchStoreLimits::default(),
            WatchWait::default(),
        )
    }
}

impl ObjectWatchConfig {
    /// The configuration of these parts.
    pub fn from_parts(
        options: ObjectWatchOptions,
        limits: WatchStoreLimits,
        wait: WatchWait,
    ) -> Self {
        Self {
            include: options.include,
            exclude: options.exclude,
            max_watches: options.max_watches,
            concurrent_lists: options.concurrent_lists,
            max_objects: limits.max_objects,
            max_body_bytes: limits.max_body_bytes,
            max_changes: limits.max_changes,
            max_change_bytes: limits.max_change_bytes,
            watch_activities: options.emit_activities,
            wait,
        }
    }

    /// What the source watches and does.
    pub fn options(&self) -> ObjectWatchOptions {
        ObjectWatchOptions {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            max_watches: self.max_watches,
            concurrent_lists: self.concurrent_lists,
            emit_activities: self.watch_activities,
        }
    }

    /// The bounds of the store.
    pub fn store_limits(&self) -> WatchStoreLimits {
        WatchStoreLimits {
            max_objects: self.max_objects,
            max_body_bytes: self.max_body_bytes,
            max_change_bytes: self.max_change_bytes,
            max_changes: self.max_changes,
        }
    }

    /// The object watch of `cluster` through `client`, its store redacting with `redactor` (use the pipeline's).
    pub fn build(
        &self,
        client: Client,
        cluster: impl Into<String>,
        redactor: kelemetry_core::Redactor,
    ) -> ObjectWatch {
        let store = Arc::new(WatchStore::new(self.store_limits(), redactor));
        ObjectWatch {
            source: ObjectWatchSource::new(client, cluster, Arc::clone(&store), self.options()),
            decorator: WatchDiffDecorator::new(Arc::clone(&store), self.wait),
            store,
        }
    }
}

/// The parts of an object watch, made by [`ObjectWatchConfig::build`]: add the source to a pipeline's sources,
/// the decorator to its decorators and the store as its [`ObjectLookup`](kelemetry_core::ObjectLookup).
#[derive(Debug)]
#[non_exhaustive]
pub struct ObjectWatch {
    /// Watches the objects and fills the store.
    pub source: ObjectWatchSource,
    /// The latest bodies, and the diffs and snapshots filed.
    pub store: Arc<WatchStore>,
    /// Attaches the store's diffs and snapshots to audit writes that have none.
    pub decorator: WatchDiffDecorator,
}

impl ObjectWatchOptions {
    /// Whether `resource` is to be watched (ignoring the count limit).
    pub fn selects(&self, resource: &DiscoveredResource) -> bool {
        resource.watchable
            && (self.include.is_empty() || names(&self.include, resource))
            && !names(&self.exclude, resource)
    }
}

/// Watches objects and files their changes in a [`WatchStore`]. See the module documentation.
pub struct ObjectWatchSource {
    client: Client,
    cluster: String,
    store: Arc<WatchStore>,
    options: ObjectWatchOptions,
    resources: Option<Vec<DiscoveredResource>>,
}

impl std::fmt::Debug for ObjectWatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWatchSource")
            .field("cluster", &self.cluster)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ObjectWatchSource {
    /// Watches the cluster `client` talks to, named `cluster`, filing changes in `store`.
    pub fn new(
        client: Client,
        cluster: impl Into<String>,
        store: Arc<WatchStore>,
        options: ObjectWatchOptions,
    ) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            store,
            options,
            resources: None,
        }
    }

    /// Uses these discovered resources instead of discovering them when it starts.
    pub fn with_resources(mut self, resources: Vec<DiscoveredResource>) -> Self {
        self.resources = Some(resources);
        self
    }

    /// The store it fills.
    pub fn store(&self) -> Arc<WatchStore> {
        Arc::clone(&self.store)
    }
}

type Item = (usize, Result<watcher::Event<DynamicObject>, watcher::Error>);

/// The watch of one resource, which waits for a list slot and gives it back once its first list is complete or
/// has failed.
fn bounded_watch(
    index: usize,
    api: Api<DynamicObject>,
    lists: Arc<Semaphore>,
) -> BoxStream<'static, Item> {
    let start = async move {
        let permit = lists.acquire_owned().await.ok();
        (
            permit,
            watcher(api, watcher::Config::default()).default_backoff(),
        )
    };
    stream::once(start)
        .flat_map(move |(permit, events)| {
            let mut permit = permit;
            events.map(move |event| {
                // The slot goes back once the first list is complete, or when a list fails: a list refused for
                // good (403) would otherwise hold its slot for ever and starve every resource behind it. A list
                // retried after a failure runs without a slot.
                if matches!(event, Ok(watcher::Event::InitDone) | Err(_)) {
                    permit.take();
                }
                (index, event)
            })
        })
        .boxed()
}

/// The apiserver's message when `err` is its refusal for lack of permission (403); it names the verb, the resource
/// and the API group refused.
pub(crate) fn forbidden(err: &watcher::Error) -> Option<&str> {
    let status = match err {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchError(status) => status,
        _ => return None,
    };
    (status.code == 403).then_some(status.message.as_str())
}

/// Where one watched resource is.
struct Watched {
    resource: DiscoveredResource,
    types: TypeMeta,
    listed_once: bool,
    relisted: Option<HashSet<ObjectKey>>,
}

impl Watched {
    fn object(&self, cluster: &str, object: &DynamicObject) -> ObjectRef {
        let namespace = if self.resource.namespaced {
            object.namespace().unwrap_or_default()
        } else {
            String::new()
        };
        ObjectRef::new(
            ObjectKey::new(
                cluster,
                &self.resource.api.group,
                &self.resource.api.plural,
                namespace,
                object.name_any(),
            ),
            self.resource.api.version.clone(),
            object.uid().map(SmolStr::from),
        )
    }
}

#[async_trait]
impl Source for ObjectWatchSource {
    fn name(&self) -> &str {
        "object-watch"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let selected = self.select_resources().await?;
        let lists = Arc::new(Semaphore::new(self.options.concurrent_lists.max(1)));
        let mut watched = Vec::with_capacity(selected.len());
        let mut streams = Vec::with_capacity(selected.len());
        for (index, resource) in selected.into_iter().enumerate() {
            self.store
                .watching(&resource.api.group, &resource.api.plural);
            let api = Api::<DynamicObject>::all_with(self.client.clone(), &resource.api);
            streams.push(bounded_watch(index, api, lists.clone()));
            watched.push(Watched {
                types: TypeMeta {
                    api_version: resource.api.api_version.clone(),
                    kind: resource.api.kind.clone(),
                },
                resource,
                listed_once: false,
                relisted: None,
            });
        }
        if streams.is_empty() {
            warn!("object watch: no resource to watch");
            shutdown.cancelled().await;
            return Ok(());
        }
        let mut events = stream::select_all(streams);
        loop {
            let (index, event) = tokio::select! {
                () = shutdown.cancelled() => break,
                item = events.next() => match item {
                    Some(item) => item,
                    None => break,
                },
            };
            let Some(state) = watched.get_mut(index) else {
                continue;
            };
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    let resource = state.resource.qualified_name();
                    match forbidden(&err) {
                        // Said at error level, with what to grant: a missing RBAC rule does not heal by itself.
                        Some(refusal) => error!(
                            %resource,
                            "object watch: forbidden to list and watch {resource} (resource {:?} in API group \
                             {:?}): {refusal}; grant the verbs list and watch on it, or leave it out of the watch \
                             (include, exclude); retrying",
                            state.resource.api.plural,
                            state.resource.api.group,
                        ),
                        None => warn!(%resource, %err, "object watch failed; retrying"),
                    }
                    continue;
                }
            };
            let changes = self.file_event(state, event);
            if self.options.emit_activities && !self.send_changes(&sink, changes, &shutdown).await {
                return Ok(());
            }
        }
        Ok(())
    }
}

impl ObjectWatchSource {
    /// The resources to watch: the discovered (or given) ones the options select, at most `max_watches`.
    async fn select_resources(&self) -> Result<Vec<DiscoveredResource>, SourceError> {
        let discovered = match self.resources.clone() {
            Some(resources) => resources,
            None => discover_resources(&self.client)
                .await
                .map_err(|err| SourceError::other("object watch: discovery failed", err))?,
        };
        let mut selected: Vec<DiscoveredResource> = discovered
            .into_iter()
            .filter(|r| self.options.selects(r))
            .collect();
        if selected.len() > self.options.max_watches {
            let left_out: Vec<String> = selected[self.options.max_watches..]
                .iter()
                .map(DiscoveredResource::qualified_name)
                .collect();
            warn!(
                limit = self.options.max_watches,
                left_out = %left_out.join(", "),
                "object watch: more resources than the watch limit"
            );
            selected.truncate(self.options.max_watches);
        }
        info!(
            resources = selected.len(),
            "object watch: watching {}",
            selected
                .iter()
                .map(DiscoveredResource::qualified_name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(selected)
    }

    /// Files one watch event of `state`'s resource in the store; returns the changes it made.
    fn file_event(
        &self,
        state: &mut Watched,
        event: watcher::Event<DynamicObject>,
    ) -> Vec<Arc<WatchedChange>> {
        let now = Timestamp::now();
        match event {
            watcher::Event::Init => {
                if state.listed_once {
                    state.relisted = Some(HashSet::new());
                }
                Vec::new()
            }
            watcher::Event::InitDone => self.list_done(state, now),
            watcher::Event::InitApply(object) => {
                let object_ref = state.object(&self.cluster, &object);
                if let Some(listed) = &mut state.relisted {
                    listed.insert(object_ref.key.clone());
                }
                let phase = if state.listed_once {
                    WatchPhase::Relist
                } else {
                    WatchPhase::InitialList
                };
                self.file_object(state, object_ref, object, Some(phase), now)
            }
            watcher::Event::Apply(object) => {
                let object_ref = state.object(&self.cluster, &object);
                self.file_object(state, object_ref, object, Some(WatchPhase::Live), now)
            }
            watcher::Event::Delete(object) => {
                let object_ref = state.object(&self.cluster, &object);
                self.file_object(state, object_ref, object, None, now)
            }
        }
    }

    /// A list of `state`'s resource is complete: the first one marks the resource listed; a relist files the
    /// deletions it reveals.
    fn list_done(&self, state: &mut Watched, now: Timestamp) -> Vec<Arc<WatchedChange>> {
        let (group, plural) = (&state.resource.api.group, &state.resource.api.plural);
        if !state.listed_once {
            state.listed_once = true;
            self.store.listed(group, plural, now);
            Vec::new()
        } else if let Some(listed) = state.relisted.take() {
            self.store.relisted(group, plural, &listed, now)
        } else {
            Vec::new()
        }
    }

    /// Files an object seen in `phase`, or deleted (`None`).
    fn file_object(
        &self,
        state: &Watched,
        object_ref: ObjectRef,
        mut object: DynamicObject,
        phase: Option<WatchPhase>,
        now: Timestamp,
    ) -> Vec<Arc<WatchedChange>> {
        object.types.get_or_insert_with(|| state.types.clone());
        let body = match serde_json::to_value(&object) {
            Ok(body) => body,
            Err(err) => {
                warn!(%err, "object watch: unserialisable object");
                return Vec::new();
            }
        };
        match phase {
            Some(phase) => self
                .store
                .seen(object_ref, body, phase, now)
                .into_iter()
                .collect(),
            None => vec![self.store.deleted(object_ref, body, now)],
        }
    }

    /// Sends the activities of `changes`; `false` when the pipeline closed or shutdown came first.
    async fn send_changes(
        &self,
        sink: &Arc<dyn ActivitySink>,
        changes: Vec<Arc<WatchedChange>>,
        shutdown: &CancellationToken,
    ) -> bool {
        for change in changes {
            let body = match change.kind {
                ChangeKind::Delete => None,
                _ => self.store.body(&change.object.key),
            };
            let activity = change.to_activity(body);
            let sent = tokio::select! {
                sent = sink.send(activity.into()) => sent,
                () = shutdown.cancelled() => return false,
            };
            if sent.is_err() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use kelemetry_core::activity::SourceKind;
    use kelemetry_core::vocabulary;
    use kube::discovery::ApiResource;

    use super::*;
    use crate::watch_store::ChangeContent;

    fn resource(group: &str, plural: &str, watchable: bool) -> DiscoveredResource {
        DiscoveredResource {
            api: ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version: if group.is_empty() {
                    "v1".into()
                } else {
                    format!("{group}/v1")
                },
                kind: "Kind".into(),
                plural: plural.into(),
            },
            namespaced: true,
            watchable,
        }
    }

    #[test]
    fn selection_by_resource_and_group() {
        let options = ObjectWatchOptions::default();
        assert!(options.selects(&resource("apps", "deployments", true)));
        assert!(!options.selects(&resource("apps", "deployments", false)));
        assert!(!options.selects(&resource("", "events", true)));
        assert!(!options.selects(&resource("events.k8s.io", "events", true)));
        assert!(!options.selects(&resource("coordination.k8s.io", "leases", true)));
        let only = ObjectWatchOptions {
            include: vec!["deployments.apps".into(), "pods".into()],
            ..ObjectWatchOptions::default()
        };
        assert!(only.selects(&resource("apps", "deployments", true)));
        assert!(only.selects(&resource("", "pods", true)));
        assert!(!only.selects(&resource("extensions", "deployments", true)));
        assert!(!only.selects(&resource("apps", "replicasets", true)));
    }

    #[test]
    fn refusals_are_told_apart_from_other_failures() {
        let status = |code: u16| {
            Box::new(kube::core::Status {
                code,
                message: "deployments.apps is forbidden: User \"sa\" cannot list resource \"deployments\""
                    .into(),
                ..kube::core::Status::default()
            })
        };
        let refused = watcher::Error::InitialListFailed(kube::Error::Api(status(403)));
        assert_eq!(
            forbidden(&refused),
            Some("deployments.apps is forbidden: User \"sa\" cannot list resource \"deployments\"")
        );
        assert!(forbidden(&watcher::Error::WatchError(status(403))).is_some());
        assert_eq!(
            forbidden(&watcher::Error::WatchStartFailed(kube::Error::Api(status(
                410
            )))),
            None
        );
        assert_eq!(forbidden(&watcher::Error::NoResourceVersion), None);
    }

    #[test]
    fn watch_activities_carry_the_change() {
        let object = ObjectRef::new(
            ObjectKey::new("c", "apps", "deployments", "default", "web"),
            "v1",
            Some("u1".into()),
        );
        let change = WatchedChange {
            object,
            kind: ChangeKind::Update,
            resource_version: Some("12".into()),
            old_resource_version: Some("11".into()),
            seen_at: "2024-05-01T12:00:00Z".parse().unwrap_or_default(),
            content: ChangeContent::Diff("spec.replicas 2 -> 4".into()),
        };
        let activity = change.to_activity(None);
        assert_eq!(activity.title, "watch update");
        assert_eq!(activity.source, SourceKind::Watch);
        assert_eq!(activity.dedup_key, "watch:u1:12");
        assert_eq!(activity.logs[0].message, "spec.replicas 2 -> 4");
        assert_eq!(
            activity.attribute_value(vocabulary::RESOURCE_VERSION),
            Some("12")
        );
    }
}
