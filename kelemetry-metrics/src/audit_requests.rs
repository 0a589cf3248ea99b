//! [`AuditRequests`]: apiserver request metrics from the audit stream (the original Kelemetry's "kelemetrix"):
//! a count and a latency histogram of every request the audit sources see, reads included, by a configurable set
//! of labels, with the number of label combinations capped.
//!
//! It is an [`AuditObserver`]: set it on the [`AuditMapping`](kelemetry_core::AuditMapping) of the audit sources
//! (`mapping.with_observer(requests)`), which every audit event passes through before it is mapped, whether it
//! becomes an activity or not. A request is counted once, at its last stage (`ResponseComplete`, or `Panic`);
//! its latency is `stageTimestamp - requestReceivedTimestamp` (a `watch` request's latency is how long it
//! watched). A request delivered twice (the apiserver retrying a batch, a write-ahead log replayed after a crash)
//! is counted twice.
//!
//! ```
//! use std::sync::Arc;
//! use kelemetry_core::audit::{AuditMapping, parse_document};
//! use kelemetry_metrics::{AuditLabel, AuditMetricsConfig, AuditRequests};
//!
//! let config = AuditMetricsConfig::new(vec![AuditLabel::Verb, AuditLabel::Code], 2);
//! let requests = Arc::new(AuditRequests::new(&config));
//! let mapping = AuditMapping::default().with_observer(requests.clone());
//! for (verb, code) in [("get", 200), ("get", 200), ("list", 200), ("create", 409)] {
//!     let line = format!(r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete",
//!         "verb":"{verb}","user":{{"username":"alice"}},"objectRef":{{"resource":"pods","namespace":"ns","name":"p"}},
//!         "responseStatus":{{"code":{code}}},
//!         "requestReceivedTimestamp":"2024-05-01T12:00:00.000Z","stageTimestamp":"2024-05-01T12:00:00.250Z"}}"#);
//!     for event in parse_document(line.as_bytes()).unwrap() {
//!         let _ = mapping.map(event, "prod");
//!     }
//! }
//! let series = requests.snapshot();
//! // Two label combinations at most: the third (create 409) is counted under `other`.
//! assert_eq!(series.len(), 3);
//! assert_eq!(series[0].labels, vec![("verb", "get".to_owned()), ("code", "200".to_owned())]);
//! assert_eq!(series[0].requests, 2);
//! assert_eq!(series[2].labels, vec![("verb", "other".to_owned()), ("code", "other".to_owned())]);
//! assert_eq!(requests.overflow(), 1);
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kelemetry_core::audit::{AuditEvent, AuditObserver, Stage};
use kelemetry_core::histogram::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::encode;

/// The value every label takes in the series that counts requests beyond the cap.
pub const OTHER: &str = "other";

/// Label values are cut to this many bytes (at a character boundary), so that a hostile user name or resource
/// cannot make a series large.
pub const MAX_LABEL_BYTES: usize = 128;

/// Default most label combinations: 10,000.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Upper bounds in seconds of the latency histogram's buckets (a `+Inf` bucket follows).
pub const LATENCY_BOUNDS_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A label of the audit request metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
#[non_exhaustive]
pub enum AuditLabel {
    /// The cluster the event came from.
    Cluster,
    /// The request's verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`...
    Verb,
    /// The plural resource (`deployments`); empty for non-resource URLs.
    Resource,
    /// The subresource (`status`, `scale`, `binding`...); empty for the object itself.
    Subresource,
    /// The namespace; empty for cluster-scoped objects.
    Namespace,
    /// The authenticated user's name.
    User,
    /// The HTTP status code of the response; empty when the event has none.
    Code,
}

impl AuditLabel {
    /// Every label, in the order of the metric's labels.
    pub const ALL: [AuditLabel; 7] = [
        Self::Cluster,
        Self::Verb,
        Self::Resource,
        Self::Subresource,
        Self::Namespace,
        Self::User,
        Self::Code,
    ];

    /// The label's name in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Verb => "verb",
            Self::Resource => "resource",
            Self::Subresource => "subresource",
            Self::Namespace => "namespace",
            Self::User => "user",
            Self::Code => "code",
        }
    }

    fn value(self, event: &AuditEvent<'_>, cluster: &str) -> String {
        let object = event.object_ref.as_ref();
        match self {
            Self::Cluster => cluster.to_owned(),
            Self::Verb => event.verb.as_ref().to_owned(),
            Self::Resource => object
                .and_then(|o| o.resource.as_deref())
                .unwrap_or_default()
                .to_owned(),
            Self::Subresource => object
                .and_then(|o| o.subresource.as_deref())
                .unwrap_or_default()
                .to_owned(),
            Self::Namespace => object
                .and_then(|o| o.namespace.as_deref())
                .unwrap_or_default()
                .to_owned(),
            Self::User => event
                .user
                .as_ref()
                .map(|u| u.username.as_ref().to_owned())
                .unwrap_or_default(),
            Self::Code => event
                .response_status
                .as_ref()
                .and_then(|s| s.code)
                .map(|code| code.to_string())
                .unwrap_or_default(),
        }
    }
}

/// `metrics.audit` of `kelemetry run`: which labels, how many label combinations.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct AuditMetricsConfig {
    /// Count audit requests at all (default: yes).
    pub enabled: bool,
    /// The labels, in this order (default: cluster, verb, resource, code). Each label multiplies the series:
    /// `user` and `namespace` are the ones to add with care.
    pub labels: Vec<AuditLabel>,
    /// Most label combinations per metric (default 10,000); requests with a further combination are counted
    /// under one combination whose every label is `other`. The latency histogram has 16 series per combination (14 buckets, `_sum`, `_count`).
    pub max_series: usize,
}

impl AuditMetricsConfig {
    /// Counting by `labels`, at most `max_series` combinations.
    pub fn new(labels: Vec<AuditLabel>, max_series: usize) -> Self {
        Self {
            labels,
            max_series,
            ..Self::default()
        }
    }
}

impl Default for AuditMetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            labels: vec![
                AuditLabel::Cluster,
                AuditLabel::Verb,
                AuditLabel::Resource,
                AuditLabel::Code,
            ],
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

/// One label combination: its requests and their latencies.
#[derive(Debug)]
struct Series {
    requests: u64,
    /// One per bound, then `+Inf`; not cumulative.
    buckets: [u64; LATENCY_BOUNDS_SECONDS.len() + 1],
    sum_seconds: f64,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            requests: 0,
            buckets: [0; LATENCY_BOUNDS_SECONDS.len() + 1],
            sum_seconds: 0.0,
        }
    }
}

/// A copy of one label combination ([`AuditRequests::snapshot`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AuditSeries {
    /// Label names and values, in the configured order.
    pub labels: Vec<(&'static str, String)>,
    /// Requests counted.
    pub requests: u64,
    /// Their latencies (requests without both timestamps are not in it).
    pub latency: HistogramSnapshot,
}

/// Counts audit requests; see the module documentation.
#[derive(Debug)]
pub struct AuditRequests {
    labels: Vec<AuditLabel>,
    max_series: usize,
    series: Mutex<BTreeMap<Box<[Box<str>]>, Series>>,
    overflow: AtomicU64,
    untimed: AtomicU64,
}

/// `value` cut to [`MAX_LABEL_BYTES`] at a character boundary.
fn bounded(mut value: String) -> Box<str> {
    if value.len() > MAX_LABEL_BYTES {
        let mut end = MAX_LABEL_BYTES;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    value.into_boxed_str()
}

impl AuditRequests {
    /// Counts by `config`'s labels, within its cap (at least one combination).
    pub fn new(config: &AuditMetricsConfig) -> Self {
        Self {
            labels: config.labels.clone(),
            max_series: config.max_series.max(1),
            series: Mutex::default(),
            overflow: AtomicU64::new(0),
            untimed: AtomicU64::new(0),
        }
    }

    /// Requests counted under `other` because the cap was reached.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Relaxed)
    }

    /// Requests counted without a latency (a timestamp missing, or the stage before the request).
    pub fn untimed(&self) -> u64 {
        self.untimed.load(Relaxed)
    }

    /// Every label combination counted so far, ordered by label values (the `other` one where it sorts).
    pub fn snapshot(&self) -> Vec<AuditSeries> {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        series
            .iter()
            .map(|(values, series)| AuditSeries {
                labels: self
                    .labels
                    .iter()
                    .zip(values.iter())
                    .map(|(label, value)| (label.name(), value.to_string()))
                    .collect(),
                requests: series.requests,
                latency: HistogramSnapshot::new(
                    LATENCY_BOUNDS_SECONDS
                        .iter()
                        .copied()
                        .chain(std::iter::once(f64::INFINITY))
                        .zip(series.buckets.iter().copied())
                        .collect(),
                    series.sum_seconds,
                ),
            })
            .collect()
    }

    /// Counts one request with `values` and `latency`.
    fn count(&self, values: Box<[Box<str>]>, latency: Option<Duration>) {
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let series = if all.contains_key(&values) || all.len() < self.max_series {
            all.entry(values).or_default()
        } else {
            self.overflow.fetch_add(1, Relaxed);
            let other: Box<[Box<str>]> = self.labels.iter().map(|_| Box::from(OTHER)).collect();
            all.entry(other).or_default()
        };
        series.requests += 1;
        match latency {
            Some(latency) => {
                let seconds = latency.as_secs_f64();
                let index = LATENCY_BOUNDS_SECONDS.partition_point(|bound| *bound < seconds);
                if let Some(bucket) = series.buckets.get_mut(index) {
                    *bucket += 1;
                }
                series.sum_seconds += seconds;
            }
            None => {
                self.untimed.fetch_add(1, Relaxed);
            }
        }
    }
}

impl AuditObserver for AuditRequests {
    fn observe(&self, event: &AuditEvent<'_>, cluster: &str) {
        if !matches!(event.stage, Some(Stage::ResponseComplete | Stage::Panic)) {
            return;
        }
        let values: Box<[Box<str>]> = self
            .labels
            .iter()
            .map(|label| bounded(label.value(event, cluster)))
            .collect();
        let latency = match (event.request_received_timestamp, event.stage_timestamp) {
            (Some(received), Some(stage)) => {
                Duration::try_from(stage.duration_since(received)).ok()
            }
            _ => None,
        };
        self.count(values, latency);
    }
}

impl Collector for AuditRequests {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let series = self.snapshot();
        encode::counters(
            &mut encoder,
            "kelemetry_audit_requests",
            "Apiserver requests seen in the audit stream (reads too), by the configured labels.",
            series.iter().map(|s| (s.labels.clone(), s.requests)),
        )?;
        encode::histograms(
            &mut encoder,
            "kelemetry_audit_request_duration_seconds",
            "Apiserver request latency, stageTimestamp - requestReceivedTimestamp, by the configured labels.",
            series.iter().map(|s| (s.labels.clone(), s.latency.clone())),
        )?;
        encode::gauge(
            &mut encoder,
            "kelemetry_audit_request_series",
            "Label combinations of the audit request metrics held now.",
            series.len() as u64,
        )?;
        encode::gauge(
            &mut encoder,
            "kelemetry_audit_request_series_limit",
            "The most label combinations before requests are counted under `other` (metrics.audit.maxSeries).",
            self.max_series as u64,
        )?;
        encode::counter(
            &mut encoder,
            "kelemetry_audit_request_overflow",
            "Requests counted under the `other` label combination because the limit of combinations was reached.",
            self.overflow(),
        )?;
        encode::counter(
            &mut encoder,
            "kelemetry_audit_request_untimed",
            "Requests counted without a latency (requestReceivedTimestamp or stageTimestamp missing).",
            self.untimed(),
        )
    }
}
