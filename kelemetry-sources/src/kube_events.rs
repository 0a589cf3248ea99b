//! [`KubeEventSource`]: Kubernetes Events from the apiserver, watched with kube-runtime's watcher
//! (docs/behaviour/events.md; how its watermark differs from the original's: docs/behaviour/events.md#watermark).
//!
//! - **Which API**: `events.k8s.io/v1` when the apiserver serves it (asked at start), else `core/v1`; or the one
//!   configured. Both map through [`kelemetry_core::kube_event`]: the activity is on the Event's object, titled by
//!   its reason, with its message as a log; its dedup key is `event:<uid>:<resourceVersion>`, so each update of an
//!   Event object (a higher count) is another occurrence, as in the original.
//! - **Duplicates**: a re-list (at start, after a watch expired) delivers Events again; an Event object version
//!   (uid + resourceVersion) already handled by this process is skipped, from a bounded set of recent keys.
//! - **Restart watermark**, kept in a ConfigMap (default `default/kelemetry-event-watermark`): the original kept
//!   one RFC 3339 time with second precision and dropped Events *strictly before* it, so Events of the watermark's
//!   second were handled again after a restart, and Events that arrived late were lost. Here the
//!   [`EventWatermark`] keeps a floor with nanosecond precision **and** the keys of the Events handled at or after
//!   it: an Event is taken as already handled when its time is before the floor, or when it is one of those keys.
//!   The floor trails the newest handled time by a lag (default 1 minute), so an Event that reaches us up to that
//!   much later than a newer one is still taken after a restart; the key list is bounded (default 2,000; when full
//!   the floor moves past the oldest keys). The ConfigMap is written every few seconds when something changed, and
//!   on shutdown; the watermark only moves past an Event once every exporter acknowledged its span (each Event is
//!   sent with a [`kelemetry_core::Delivery`]; after a loss it stops moving until the next start). With no ConfigMap yet the
//!   floor is the start time: Events from before the first start are not traced.
//! - Deletions of Event objects are ignored.
//!
//! Leader election is not done here: run one Events source per cluster, or several under
//! [`LeaderElected`](crate::leader::LeaderElected) (one runs at a time).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ConfigMap;
use kelemetry_core::kube_event::event_to_activity;
use kelemetry_core::resource_map::ResourceMap;
use kelemetry_core::{
    Activity, ActivitySink, CancellationToken, Delivery, NotDelivered, Receipt, Rejection, Source,
    SourceError,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{GroupVersionKind, TypeMeta};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use lru::LruCache;
use tracing::{debug, error, info, warn};

use crate::report::ReadCounters;

/// The field manager used to write the watermark ConfigMap.
pub const FIELD_MANAGER: &str = "kelemetry";

/// Which Event API to watch (`auto`, `events.k8s.io/v1` or `v1` in a configuration file).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(serde::Deserialize))]
pub enum EventApiChoice {
    /// `events.k8s.io/v1` when served, else `core/v1`.
    #[default]
    #[cfg_attr(feature = "config", serde(rename = "auto"))]
    Auto,
    /// `events.k8s.io/v1`.
    #[cfg_attr(feature = "config", serde(rename = "events.k8s.io/v1"))]
    EventsV1,
    /// `core/v1`.
    #[cfg_attr(feature = "config", serde(rename = "v1"))]
    CoreV1,
}

/// The watermark as stored: a floor and the keys handled at or after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWatermark {
    /// Events before this time count as handled.
    pub floor: Timestamp,
    /// Events handled at or after the floor: their time and dedup key.
    pub handled: Vec<(Timestamp, String)>,
}

/// A stored watermark could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatermarkError {
    /// No `timestamp` entry.
    #[error("no `timestamp` entry")]
    NoTimestamp,
    /// A time does not parse.
    #[error("`{field}` holds {value:?}, not an RFC 3339 time")]
    BadTime {
        /// The entry.
        field: String,
        /// What it holds.
        value: String,
    },
}

impl StoredWatermark {
    /// The ConfigMap data: `timestamp` (the floor, RFC 3339 with nanoseconds), `handled` (one `time key` per line)
    /// and `lastUpdated` (`now`).
    pub fn to_data(&self, now: Timestamp) -> BTreeMap<String, String> {
        let mut handled = String::new();
        for (time, key) in &self.handled {
            handled.push_str(&time.to_string());
            handled.push(' ');
            handled.push_str(key);
            handled.push('\n');
        }
        BTreeMap::from([
            ("timestamp".to_owned(), self.floor.to_string()),
            ("handled".to_owned(), handled),
            ("lastUpdated".to_owned(), now.to_string()),
        ])
    }

    /// Reads ConfigMap data written by [`StoredWatermark::to_data`] (or by the original, which has only
    /// `timestamp`).
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, WatermarkError> {
        let text = data.get("timestamp").ok_or(WatermarkError::NoTimestamp)?;
        let floor = text.trim().parse().map_err(|_| WatermarkError::BadTime {
            field: "timestamp".to_owned(),
            value: text.clone(),
        })?;
        let mut handled = Vec::new();
        for line in data
            .get("handled")
            .map(String::as_str)
            .unwrap_or("")
            .lines()
        {
            let Some((time, key)) = line.split_once(' ') else {
                continue;
            };
            let time = time.parse().map_err(|_| WatermarkError::BadTime {
                field: "handled".to_owned(),
                value: line.to_owned(),
            })?;
            handled.push((time, key.to_owned()));
        }
        Ok(Self { floor, handled })
    }
}

/// Which Events were handled: a floor and the keys handled at or after it. See the module documentation.
#[derive(Clone, Debug)]
pub struct EventWatermark {
    floor: Timestamp,
    recent: BTreeSet<(Timestamp, String)>,
    capacity: usize,
    lag: SignedDuration,
    changed: bool,
}

impl EventWatermark {
    /// A watermark whose floor is `now`: nothing from before counts.
    pub fn starting_at(now: Timestamp, capacity: usize, lag: Duration) -> Self {
        Self {
            floor: now,
            recent: BTreeSet::new(),
            capacity: capacity.max(1),
            lag: SignedDuration::try_from(lag).unwrap_or(SignedDuration::MAX),
            changed: true,
        }
    }

    /// A watermark as stored.
    pub fn from_stored(stored: StoredWatermark, capacity: usize, lag: Duration) -> Self {
        let mut mark = Self::starting_at(stored.floor, capacity, lag);
        mark.recent = stored
            .handled
            .into_iter()
            .filter(|(time, _)| *time >= stored.floor)
            .collect();
        mark.trim();
        mark.changed = false;
        mark
    }

    /// Whether the Event version `key` of `time` was handled (before the floor, or one of the recent keys).
    pub fn is_handled(&self, time: Timestamp, key: &str) -> bool {
        time < self.floor || self.recent.contains(&(time, key.to_owned()))
    }

    /// Records that the Event version `key` of `time` was handled, at `now`.
    pub fn mark_handled(&mut self, time: Timestamp, key: &str, now: Timestamp) {
        if time >= self.floor {
            self.recent.insert((time, key.to_owned()));
            self.changed = true;
        }
        let newest = self.recent.last().map_or(self.floor, |(t, _)| *t).min(now);
        if let Ok(candidate) = newest.checked_sub(self.lag)
            && candidate > self.floor
        {
            self.floor = candidate;
            self.changed = true;
        }
        self.trim();
    }

    fn trim(&mut self) {
        let floor = self.floor;
        self.recent.retain(|(time, _)| *time >= floor);
        while self.recent.len() > self.capacity {
            // Too many keys: move the floor past the oldest time, dropping every key of that time.
            let Some((oldest, _)) = self.recent.first().cloned() else {
                break;
            };
            self.floor = oldest
                .checked_add(SignedDuration::from_nanos(1))
                .unwrap_or(oldest);
            let floor = self.floor;
            self.recent.retain(|(time, _)| *time >= floor);
            self.changed = true;
        }
    }

    /// The floor: Events before it count as handled.
    pub fn floor(&self) -> Timestamp {
        self.floor
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Whether it changed since the last [`EventWatermark::take_changes`].
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// What to store, if it changed; clears the change flag.
    pub fn take_changes(&mut self) -> Option<StoredWatermark> {
        if !self.changed {
            return None;
        }
        self.changed = false;
        Some(self.stored())
    }

    /// What to store.
    pub fn stored(&self) -> StoredWatermark {
        StoredWatermark {
            floor: self.floor,
            handled: self.recent.iter().cloned().collect(),
        }
    }
}

/// Where the watermark is kept: a ConfigMap.
#[derive(Clone)]
pub struct ConfigMapWatermark {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for ConfigMapWatermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigMap {}/{}", self.namespace, self.name)
    }
}

impl ConfigMapWatermark {
    /// The ConfigMap `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The stored watermark; `None` when there is no ConfigMap, or (with a warning) when it holds something
    /// unreadable, which is then replaced.
    pub async fn load(&self) -> Result<Option<StoredWatermark>, kube::Error> {
        let Some(config_map) = self.api.get_opt(&self.name).await? else {
            return Ok(None);
        };
        match StoredWatermark::from_data(&config_map.data.unwrap_or_default()) {
            Ok(stored) => Ok(Some(stored)),
            Err(err) => {
                warn!(watermark = ?self, %err, "unreadable Event watermark; starting from now");
                Ok(None)
            }
        }
    }

    /// Stores the watermark (server-side apply; creates the ConfigMap when missing).
    pub async fn store(&self, stored: &StoredWatermark) -> Result<(), kube::Error> {
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "data": stored.to_data(Timestamp::now()),
        });
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map(|_| ())
    }
}

/// Options of a [`KubeEventSource`]; [`KubeEventOptions::build`] makes the source.
///
/// [`Default`] holds the defaults. With the feature `config` it is read from configuration files (the
/// `sources.events` section of `kelemetry run`'s file): camelCase keys, unknown keys refused, durations like `5s`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct KubeEventOptions {
    /// Which Event API to watch.
    pub api: EventApiChoice,
    /// Where and how the restart watermark is kept.
    pub watermark: WatermarkOptions,
    /// How many Event versions this process remembers to skip re-deliveries (`remember` in a configuration file).
    #[cfg_attr(feature = "config", serde(rename = "remember"))]
    pub seen_capacity: usize,
}

impl Default for KubeEventOptions {
    /// The API chosen automatically, the default watermark, 100,000 Event versions remembered.
    fn default() -> Self {
        Self {
            api: EventApiChoice::Auto,
            watermark: WatermarkOptions::default(),
            seen_capacity: 100_000,
        }
    }
}

impl KubeEventOptions {
    /// The source of the Events of `cluster`, read through `client`; `resources` names the resources of the
    /// Events' objects.
    pub fn build(
        self,
        client: Client,
        cluster: impl Into<String>,
        resources: Arc<ResourceMap>,
    ) -> KubeEventSource {
        KubeEventSource::new(client, cluster, resources, self)
    }
}

/// Where a [`KubeEventSource`] keeps its restart watermark (a ConfigMap), and how.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct WatermarkOptions {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub name: String,
    /// How far the floor trails the newest Event handled (late Events still count).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub lag: Duration,
    /// How many handled keys it keeps at most.
    pub keys: usize,
    /// How often it is written when it changed.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub sync_interval: Duration,
}

impl Default for WatermarkOptions {
    /// ConfigMap `default/kelemetry-event-watermark`, a lag of 1 min, 2,000 keys, written every 5 s.
    fn default() -> Self {
        Self {
            namespace: "default".to_owned(),
            name: "kelemetry-event-watermark".to_owned(),
            lag: Duration::from_secs(60),
            keys: 2_000,
            sync_interval: Duration::from_secs(5),
        }
    }
}

/// Watches Kubernetes Events and sends their activities. See the module documentation.
pub struct KubeEventSource {
    client: Client,
    cluster: String,
    resources: Arc<ResourceMap>,
    options: KubeEventOptions,
    counters: Arc<ReadCounters>,
}

impl std::fmt::Debug for KubeEventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEventSource")
            .field("cluster", &self.cluster)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The `events.k8s.io/v1` Event resource.
fn events_v1() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
        "events",
    )
}

/// The `core/v1` Event resource.
fn core_v1() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Event"), "events")
}

impl KubeEventSource {
    /// Events of the cluster `client` talks to, named `cluster`, with kinds resolved through `resources`.
    pub fn new(
        client: Client,
        cluster: impl Into<String>,
        resources: Arc<ResourceMap>,
        options: KubeEventOptions,
    ) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            resources,
            options,
            counters: Arc::default(),
        }
    }

    /// The same source counting into `counters` (shared by the terms of a leader-elected source).
    pub fn with_counters(mut self, counters: Arc<ReadCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// The counters: Events found, sent, skipped by reason (`already handled`, `re-delivered`), rejected.
    pub fn counters(&self) -> Arc<ReadCounters> {
        Arc::clone(&self.counters)
    }

    /// The Event API to watch: the configured one, or `events.k8s.io/v1` if the apiserver serves it.
    pub async fn choose_api(&self) -> ApiResource {
        match self.options.api {
            EventApiChoice::EventsV1 => events_v1(),
            EventApiChoice::CoreV1 => core_v1(),
            EventApiChoice::Auto => {
                match self
                    .client
                    .list_api_group_resources("events.k8s.io/v1")
                    .await
                {
                    Ok(list)
                        if list.resources.iter().any(|r| {
                            r.name == "events"
                                && r.verbs.iter().any(|v| v == "list")
                                && r.verbs.iter().any(|v| v == "watch")
                        }) =>
                    {
                        events_v1()
                    }
                    Ok(_) => core_v1(),
                    Err(err) => {
                        debug!(%err, "events.k8s.io/v1 not served; watching core/v1 Events");
                        core_v1()
                    }
                }
            }
        }
    }
}

/// A failure of the Events source as a whole.
fn kube_failure(what: &str, err: kube::Error) -> SourceError {
    SourceError::other(format!("Kubernetes Events: {what}"), err)
}

#[async_trait]
impl Source for KubeEventSource {
    fn name(&self) -> &str {
        "kube-events"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let resource = self.choose_api().await;
        let store = ConfigMapWatermark::new(
            self.client.clone(),
            &self.options.watermark.namespace,
            &self.options.watermark.name,
        );
        let mut mark = self.load_watermark(&store).await?;
        info!(
            api = %resource.api_version,
            floor = %mark.floor(),
            keys = mark.len(),
            "watching Kubernetes Events"
        );
        let capacity = NonZeroUsize::new(self.options.seen_capacity).unwrap_or(NonZeroUsize::MIN);
        let mut seen: LruCache<String, ()> = LruCache::new(capacity);
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut sync = tokio::time::interval(self.options.watermark.sync_interval);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let types = TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        };
        let mut in_flight = InFlight::default();
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = sync.tick() => {
                    in_flight.settle_exported(&mut mark);
                    sync_watermark(&store, &mut mark).await;
                    continue;
                }
                item = stream.next() => item,
            };
            let event = match item {
                None => break,
                Some(Err(err)) => {
                    match crate::object_watch::forbidden(&err) {
                        Some(refusal) => error!(
                            "Kubernetes Events: forbidden to list and watch events (API group {:?}): {refusal}; \
                             grant the verbs list and watch on events in that group; retrying",
                            resource.group
                        ),
                        None => warn!(%err, "Kubernetes Events watch failed; retrying"),
                    }
                    continue;
                }
                Some(Ok(watcher::Event::Apply(event) | watcher::Event::InitApply(event))) => event,
                Some(Ok(
                    watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitDone,
                )) => continue,
            };
            let Some(activity) = self.activity_of(&sink, event, &types) else {
                continue;
            };
            let key = activity.dedup_key.clone();
            let time = activity.start;
            if !self.is_new(&mut seen, &mark, &key, time) {
                continue;
            }
            if in_flight.is_full() {
                tokio::select! {
                    () = in_flight.settle_oldest(&mut mark) => {}
                    () = shutdown.cancelled() => break,
                }
            }
            let (delivery, receipt) = Delivery::new();
            let sent = tokio::select! {
                sent = sink.send_tracked(activity.into(), &delivery) => sent,
                () = shutdown.cancelled() => break,
            };
            if sent.is_err() {
                break;
            }
            self.counters.record_sent();
            seen.put(key.clone(), ());
            in_flight.push(time, key, receipt);
            in_flight.settle_exported(&mut mark);
        }
        in_flight.finish(&mut mark).await;
        if let Some(stored) = mark.take_changes() {
            store
                .store(&stored)
                .await
                .map_err(|err| kube_failure("writing the watermark at shutdown", err))?;
        }
        Ok(())
    }
}

/// How many Events may be in the pipeline, not yet exported, before the source waits for the oldest.
const MAX_IN_FLIGHT: usize = 10_000;

/// Events handed to the pipeline whose spans are not exported yet, oldest first. The watermark moves only past
/// exported Events; after a loss it stops moving until the next start, so the lost Event is taken again then.
#[derive(Default)]
struct InFlight {
    events: std::collections::VecDeque<(Timestamp, String, Receipt)>,
    held: bool,
}

impl InFlight {
    fn is_full(&self) -> bool {
        self.events.len() >= MAX_IN_FLIGHT
    }

    fn push(&mut self, time: Timestamp, key: String, receipt: Receipt) {
        self.events.push_back((time, key, receipt));
    }

    /// Marks as handled the oldest Events that are exported by now.
    fn settle_exported(&mut self, mark: &mut EventWatermark) {
        while let Some((_, _, receipt)) = self.events.front_mut() {
            let Some(outcome) = receipt.try_settled() else {
                return;
            };
            if let Some((time, key, _)) = self.events.pop_front() {
                self.settled(outcome, time, &key, mark);
            }
        }
    }

    /// Waits for the oldest Event's export.
    async fn settle_oldest(&mut self, mark: &mut EventWatermark) {
        if let Some((time, key, receipt)) = self.events.pop_front() {
            let outcome = receipt.await;
            self.settled(outcome, time, &key, mark);
        }
    }

    /// At shutdown: waits (within the pipeline's grace period) until every Event in flight is exported or lost.
    async fn finish(&mut self, mark: &mut EventWatermark) {
        while !self.events.is_empty() {
            self.settle_oldest(mark).await;
        }
    }

    fn settled(
        &mut self,
        outcome: Result<(), NotDelivered>,
        time: Timestamp,
        key: &str,
        mark: &mut EventWatermark,
    ) {
        match outcome {
            Ok(()) if !self.held => mark.mark_handled(time, key, Timestamp::now()),
            Ok(()) => {}
            Err(_) => {
                if !self.held {
                    error!(
                        event = key,
                        "an Event's span was not exported; the watermark stays before it until the next start, which takes it again"
                    );
                }
                self.held = true;
            }
        }
    }
}

/// Stores the watermark's changes, if any; a failure is logged and retried at the next sync.
async fn sync_watermark(store: &ConfigMapWatermark, mark: &mut EventWatermark) {
    if let Some(stored) = mark.take_changes()
        && let Err(err) = store.store(&stored).await
    {
        warn!(%err, "could not write the Event watermark; will retry");
        mark.mark_dirty();
    }
}

impl KubeEventSource {
    /// The watermark kept in `store`, or one starting now; written back at once when loading changed it.
    async fn load_watermark(
        &self,
        store: &ConfigMapWatermark,
    ) -> Result<EventWatermark, SourceError> {
        let options = &self.options.watermark;
        let mut mark = match store
            .load()
            .await
            .map_err(|err| kube_failure("reading the watermark", err))?
        {
            Some(stored) => EventWatermark::from_stored(stored, options.keys, options.lag),
            None => EventWatermark::starting_at(Timestamp::now(), options.keys, options.lag),
        };
        if let Some(stored) = mark.take_changes() {
            store
                .store(&stored)
                .await
                .map_err(|err| kube_failure("writing the watermark", err))?;
        }
        Ok(mark)
    }

    /// Whether the activity `key` at `time` is new: neither re-delivered by the watch nor handled before a
    /// restart. A skip is counted by its reason.
    fn is_new(
        &self,
        seen: &mut LruCache<String, ()>,
        mark: &EventWatermark,
        key: &str,
        time: Timestamp,
    ) -> bool {
        if seen.get(key).is_some() {
            self.counters.record_skipped("re-delivered");
            return false;
        }
        if mark.is_handled(time, key) {
            self.counters.record_skipped("already handled");
            return false;
        }
        true
    }

    /// The activity of one watched Event (counted as found), or `None` once it is reported as rejected.
    fn activity_of(
        &self,
        sink: &Arc<dyn ActivitySink>,
        mut event: DynamicObject,
        types: &TypeMeta,
    ) -> Option<Activity> {
        self.counters.record_found();
        if event.types.is_none() {
            event.types = Some(types.clone());
        }
        let name = format!(
            "{}/{}",
            event.namespace().unwrap_or_default(),
            event.name_any()
        );
        let value = match serde_json::to_value(&event) {
            Ok(value) => value,
            Err(err) => {
                self.reject(sink, &name, "malformed Event", err.to_string());
                return None;
            }
        };
        drop(event);
        match event_to_activity(&value, &self.cluster, &self.resources) {
            Ok(activity) => Some(activity),
            Err(err) => {
                self.reject(sink, &name, err.class(), err.to_string());
                None
            }
        }
    }
}

impl KubeEventSource {
    fn reject(&self, sink: &Arc<dyn ActivitySink>, name: &str, reason: &str, detail: String) {
        self.counters.record_rejected(reason);
        sink.reject(Rejection {
            origin: format!("{} Event {name}", self.cluster),
            reason: reason.to_owned(),
            detail,
        });
    }
}

impl EventWatermark {
    /// Marks it as changed (after a failed write, so the next sync writes again).
    pub fn mark_dirty(&mut self) {
        self.changed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a time")
    }

    #[test]
    fn nothing_before_the_floor_and_no_handled_key_is_taken_again() {
        let start = at("2024-05-01T12:00:00Z");
        let mut mark = EventWatermark::starting_at(start, 100, Duration::from_secs(60));
        assert!(mark.is_handled(at("2024-05-01T11:59:59.999999999Z"), "old"));
        assert!(!mark.is_handled(start, "a"));
        // Two Events in the same second (core/v1 times have second precision): both are distinct.
        let second = at("2024-05-01T12:00:05Z");
        mark.mark_handled(second, "event:u1:10", second);
        assert!(mark.is_handled(second, "event:u1:10"));
        assert!(!mark.is_handled(second, "event:u2:11"));
        // Survives a restart through the stored form, with nanoseconds.
        let late = at("2024-05-01T12:00:05.123456789Z");
        mark.mark_handled(late, "event:u3:12", late);
        let data = mark.take_changes().expect("changed").to_data(late);
        assert_eq!(data["timestamp"], "2024-05-01T12:00:00Z");
        assert!(data["handled"].contains("2024-05-01T12:00:05.123456789Z event:u3:12"));
        let restored = EventWatermark::from_stored(
            StoredWatermark::from_data(&data).expect("reads"),
            100,
            Duration::from_secs(60),
        );
        assert!(restored.is_handled(second, "event:u1:10"));
        assert!(restored.is_handled(late, "event:u3:12"));
        assert!(!restored.is_handled(second, "event:u2:11"));
        assert!(!restored.is_handled(at("2024-05-01T12:00:05.123456788Z"), "event:u3:12"));
        assert!(!restored.changed());
    }

    #[test]
    fn the_floor_trails_the_newest_event_by_the_lag() {
        let start = at("2024-05-01T12:00:00Z");
        let mut mark = EventWatermark::starting_at(start, 100, Duration::from_secs(60));
        let t = |s: i64| {
            start
                .checked_add(SignedDuration::from_secs(s))
                .expect("in range")
        };
        mark.mark_handled(t(10), "a", t(10));
        assert_eq!(mark.floor(), start);
        mark.mark_handled(t(100), "b", t(100));
        assert_eq!(mark.floor(), t(40));
        // "a" is below the floor now: handled by the floor, its key dropped.
        assert_eq!(mark.len(), 1);
        assert!(mark.is_handled(t(10), "a"));
        // A late Event within the lag that was never handled is still taken.
        assert!(!mark.is_handled(t(50), "late"));
        // An Event time in the future does not push the floor past now minus the lag.
        mark.mark_handled(t(10_000), "future", t(101));
        assert_eq!(mark.floor(), t(41));
    }

    #[test]
    fn the_key_list_is_bounded() {
        let start = at("2024-05-01T12:00:00Z");
        let mut mark = EventWatermark::starting_at(start, 3, Duration::from_secs(3600));
        let t = |s: i64| {
            start
                .checked_add(SignedDuration::from_secs(s))
                .expect("in range")
        };
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            mark.mark_handled(t(i as i64 + 1), key, t(10));
        }
        assert_eq!(mark.len(), 3);
        assert!(mark.floor() > t(2) && mark.floor() <= t(3));
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert!(mark.is_handled(t(i as i64 + 1), key), "{key}");
        }
    }

    #[test]
    fn stored_data_errors_name_the_entry() {
        let data = BTreeMap::from([("timestamp".to_owned(), "yesterday".to_owned())]);
        assert_eq!(
            StoredWatermark::from_data(&data),
            Err(WatermarkError::BadTime {
                field: "timestamp".to_owned(),
                value: "yesterday".to_owned()
            })
        );
        assert_eq!(
            StoredWatermark::from_data(&BTreeMap::new()),
            Err(WatermarkError::NoTimestamp)
        );
        // The original's second-precision form is read.
        let data = BTreeMap::from([("timestamp".to_owned(), "2024-05-01T12:00:00Z".to_owned())]);
        let stored = StoredWatermark::from_data(&data).expect("reads");
        assert!(stored.handled.is_empty());
    }
}
