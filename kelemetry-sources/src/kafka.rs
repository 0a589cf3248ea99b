//! [`KafkaSource`] (feature `kafka`): audit documents read from Kafka topics by a consumer group, each message's
//! offset committed only once what it held was exported.
//!
//! With [`MessageFormat::Audit`] (the default), each message's value is one audit document, taken by
//! [`AuditIntake`]: an audit `Event` or `EventList`, or any envelope the intake knows. With
//! [`MessageFormat::Records`], each is one record in the [wire format](kelemetry_core::wire) that `ingest`
//! processes write through [`KafkaForwarder`](crate::kafka_forward::KafkaForwarder): this source is then the input
//! of the `process` role. Azure Event Hubs speaks the Kafka protocol (SASL_SSL with the PLAIN mechanism, the
//! connection string as the password), and GKE and EKS exports are commonly bridged into Kafka, so one source reads
//! them all. Documents whose envelope names no cluster get [`KafkaConfig::default_cluster`].
//!
//! **Delivery.** Automatic commits are off. The activities of one message are sent with one [`Delivery`]; a
//! partition's committed offset moves past a message only once that message and every message before it in the
//! partition were settled: exported by every exporter, or made no activity at all (skipped, rejected: a poison
//! message is counted and passed). Settled offsets are committed every [`KafkaConfig::commit_interval`], when
//! partitions are revoked, and at shutdown (after the pipeline has taken what was in flight; that last commit and
//! leaving the group are waited for 10 s at most). When a message's spans are lost (an exporter gave up, or a hard
//! stop), its partition's committed offset stays before it until the partition is assigned again (the next start,
//! or a rebalance), which reads it again. That is at least once: a record may be read twice (after a crash, a
//! loss, or a rebalance that revoked a partition while its records were in flight), and its spans are the same
//! spans then (deterministic ids), never a record missed.
//!
//! **Bounds.** At most [`KafkaConfig::max_in_flight`] messages wait for their receipts; then the consumer waits
//! for the oldest, so a stalled exporter backpressures the consumer instead of growing memory. librdkafka's own
//! prefetch queue is bounded by its `queued.max.messages.kbytes` (64 MiB by default; settable through
//! [`KafkaConfig::properties`]). A wait longer than librdkafka's `max.poll.interval.ms` (5 min by default) makes
//! the group give this member's partitions to another (or to this one when it polls again); what was in flight is
//! read again. A message larger than [`KafkaConfig::document_limit`] is rejected as `document too large`, with its
//! origin `kafka:TOPIC/PARTITION@OFFSET`, like any other rejection.
//!
//! ```no_run
//! use kelemetry_sources::kafka::KafkaConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = KafkaConfig::new("127.0.0.1:9092", ["audit"]);
//! config.default_cluster = "prod".to_owned();
//! // Azure Event Hubs: the namespace's Kafka endpoint, SASL_SSL with PLAIN.
//! config.properties.insert("security.protocol".into(), "SASL_SSL".into());
//! config.properties.insert("sasl.mechanism".into(), "PLAIN".into());
//! let source = config.build()?; // a kelemetry_core::Source for a pipeline
//! let counters = source.counters();
//! # let _ = counters;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::audit::AuditMapping;
use kelemetry_core::wire;
use kelemetry_core::{
    ActivitySink, CancellationToken, Delivery, NotDelivered, Receipt, Record, Source, SourceError,
};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

/// The Kafka client this source is built on (librdkafka through rdkafka), re-exported for its error type and for
/// producing to a topic (tests, tools) with the very same build.
pub use rdkafka;

use crate::DEFAULT_DOCUMENT_LIMIT;
use crate::audit_follow::StartPosition;
use crate::audit_intake::{AuditIntake, AuditItem, RecordRejection, RejectReason, SkipCause};
use crate::report::ReadCounters;

/// The consumer group of [`KafkaConfig::default`].
pub const DEFAULT_GROUP_ID: &str = "kelemetry";

/// Messages waiting for their receipts, at most, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

/// Messages read again before a newly assigned partition's committed offset, by default ([`KafkaConfig::warmup`]).
pub const DEFAULT_WARMUP: usize = 10_000;

/// How long the warm-up of newly assigned partitions may wait for the brokers, at one step.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many client properties [`KafkaConfig::properties`] may hold.
pub const MAX_PROPERTIES: usize = 64;

/// The longest property name and value accepted in [`KafkaConfig::properties`] (a PEM certificate fits).
pub const MAX_PROPERTY_BYTES: usize = 64 * 1024;

/// Properties the source sets itself; giving them in [`KafkaConfig::properties`] is refused, because they are
/// configured elsewhere or would break the delivery guarantee.
pub const MANAGED_PROPERTIES: [&str; 7] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "auto.commit.enable",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

/// Where a [`KafkaSource`] reads and how; [`KafkaConfig::build`] makes the source.
///
/// [`Default`] holds the defaults (no brokers and no topics yet: give them). With the feature `config` it is read
/// from configuration files (the `sources.kafka` section of `kelemetry run`'s file): camelCase keys, unknown keys
/// refused, durations like `1s`, sizes like `16MiB`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// Brokers to start from, `host:port[,host:port...]` (librdkafka's `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// The topics to read; every message is one audit document.
    pub topics: Vec<String>,
    /// The consumer group: its members share the partitions, and its committed offsets are where a restart
    /// resumes.
    pub group_id: String,
    /// The cluster of documents whose envelope names none. `kelemetry run` fills in its `cluster` when empty.
    pub default_cluster: String,
    /// Where a partition starts when the group has no committed offset for it: `beginning` (what the topic
    /// holds) or `end` (only what is produced from now on).
    pub start: StartPosition,
    /// Messages handed to the pipeline whose spans are not exported yet, at most; then the consumer waits.
    pub max_in_flight: usize,
    /// Larger messages are rejected (`document too large`).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub document_limit: usize,
    /// How often the settled offsets are committed (also on revocation and at shutdown).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub commit_interval: Duration,
    /// What the messages hold: audit documents (`audit`, the default) or records in the wire format (`records`).
    pub format: MessageFormat,
    /// When this member is given a partition, how many messages before its committed offset it reads again first,
    /// only to learn the objects' latest bodies (as observations: no activity span is made twice), so that the
    /// first write of an object after a rebalance is diffed against its body as the previous owner would have.
    /// `0` turns it off. Default [`DEFAULT_WARMUP`].
    pub warmup: usize,
    /// librdkafka client properties passed through as given (`security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `ssl.ca.location`, `session.timeout.ms`, `group.protocol`...), at most
    /// [`MAX_PROPERTIES`]; the [`MANAGED_PROPERTIES`] are refused. librdkafka refuses names it does not know.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    /// No brokers, no topics, group [`DEFAULT_GROUP_ID`], no default cluster, from the beginning,
    /// [`DEFAULT_MAX_IN_FLIGHT`] messages in flight, documents of at most [`DEFAULT_DOCUMENT_LIMIT`] bytes,
    /// commits every second, no extra properties.
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            topics: Vec::new(),
            group_id: DEFAULT_GROUP_ID.to_owned(),
            default_cluster: String::new(),
            start: StartPosition::Beginning,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            document_limit: DEFAULT_DOCUMENT_LIMIT,
            commit_interval: Duration::from_secs(1),
            format: MessageFormat::Audit,
            warmup: DEFAULT_WARMUP,
            properties: BTreeMap::new(),
        }
    }
}

/// What the messages of a [`KafkaSource`]'s topics hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
#[non_exhaustive]
pub enum MessageFormat {
    /// One audit document a message (any envelope [`AuditIntake`] knows).
    #[default]
    Audit,
    /// One record a message, in [`kelemetry_core::wire`]'s format (what `ingest` processes write).
    Records,
}

/// A [`KafkaConfig`] that cannot make a source: the field and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaConfigError {
    /// A setting has a value the source cannot use.
    #[error("{field}: {message}")]
    Invalid {
        /// The setting (its configuration-file key).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// librdkafka refused the client configuration (an unknown property, a bad value).
    #[error("properties: {source}")]
    Client {
        /// librdkafka's answer.
        #[source]
        source: KafkaError,
    },
}

impl KafkaConfigError {
    /// The configuration-file key of the setting at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Invalid { field, .. } => field,
            Self::Client { .. } => "properties",
        }
    }

    /// The message without the field's name.
    pub fn of_field(&self) -> String {
        match self {
            Self::Invalid { message, .. } => message.clone(),
            Self::Client { source } => source.to_string(),
        }
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> KafkaConfigError {
    KafkaConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks librdkafka `properties` given in a configuration: at most [`MAX_PROPERTIES`], none longer than
/// [`MAX_PROPERTY_BYTES`], none of `managed` (which `managed_by` sets).
pub(crate) fn check_properties(
    properties: &BTreeMap<String, String>,
    managed: &[&str],
    managed_by: &str,
) -> Result<(), KafkaConfigError> {
    if properties.len() > MAX_PROPERTIES {
        return Err(invalid(
            "properties",
            format!(
                "{} properties, at most {MAX_PROPERTIES} are accepted",
                properties.len()
            ),
        ));
    }
    for (name, value) in properties {
        if managed.contains(&name.as_str()) {
            return Err(invalid(
                "properties",
                format!("{name} is set by {managed_by}"),
            ));
        }
        if name.len() > MAX_PROPERTY_BYTES || value.len() > MAX_PROPERTY_BYTES {
            return Err(invalid(
                "properties",
                format!(
                    "{} is longer than {MAX_PROPERTY_BYTES} bytes",
                    name.get(..64).unwrap_or(name)
                ),
            ));
        }
    }
    Ok(())
}

/// `Ok` when `topic` is a name Kafka accepts ([`is_topic_name`]); else the error of the setting `field`.
pub(crate) fn check_topic(field: &'static str, topic: &str) -> Result<(), KafkaConfigError> {
    if is_topic_name(topic) {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "{topic:?} is no topic name (1 to 249 of the characters a-z A-Z 0-9 . _ -, not . or ..)"
        ),
    ))
}

/// Whether `topic` is a name Kafka accepts: 1 to 249 characters of ASCII letters, digits, `.`, `_` and `-`, and
/// not `.` or `..`.
fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KafkaConfig {
    /// The defaults, reading `topics` from the brokers `bootstrap_servers`.
    pub fn new<T: Into<String>>(
        bootstrap_servers: impl Into<String>,
        topics: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// What the settings alone say is wrong, without asking librdkafka.
    pub fn check(&self) -> Result<(), KafkaConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(invalid("bootstrapServers", "give at least one host:port"));
        }
        if self.topics.is_empty() {
            return Err(invalid("topics", "give at least one topic"));
        }
        for topic in &self.topics {
            check_topic("topics", topic)?;
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("groupId", "must not be empty"));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("maxInFlight", "must be at least 1"));
        }
        if self.document_limit == 0 {
            return Err(invalid("documentLimit", "must be at least 1 byte"));
        }
        if self.commit_interval.is_zero() {
            return Err(invalid("commitInterval", "must be longer than 0s"));
        }
        check_properties(
            &self.properties,
            &MANAGED_PROPERTIES,
            "the source (bootstrapServers, groupId, start; commits are its own)",
        )
    }

    /// The librdkafka client configuration of the consumer.
    fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("client.id", "kelemetry")
            .set("bootstrap.servers", self.bootstrap_servers.trim())
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match self.start {
                    StartPosition::Beginning => "earliest",
                    StartPosition::End => "latest",
                },
            );
        for (name, value) in &self.properties {
            client.set(name, value);
        }
        client
    }

    /// The source, after checking the settings and letting librdkafka check the client properties (nothing
    /// connects before the source runs).
    pub fn build(&self) -> Result<KafkaSource, KafkaConfigError> {
        self.check()?;
        let client = self.client_config();
        client
            .create_native_config()
            .map_err(|source| KafkaConfigError::Client { source })?;
        Ok(KafkaSource {
            config: self.clone(),
            client,
            intake: AuditIntake::default(),
            counters: Arc::default(),
        })
    }
}

/// Reads audit documents from Kafka topics as a consumer group member. See the module documentation.
#[derive(Debug)]
pub struct KafkaSource {
    config: KafkaConfig,
    client: ClientConfig,
    intake: AuditIntake,
    counters: Arc<ReadCounters>,
}

impl KafkaSource {
    /// Takes documents in with `intake` instead of the default one (its envelope limits, its mapping).
    pub fn with_intake(mut self, intake: AuditIntake) -> Self {
        self.intake = intake;
        self
    }

    /// Maps audit events with `mapping` (e.g. one whose observer counts requests).
    pub fn with_mapping(self, mapping: AuditMapping) -> Self {
        self.with_intake(AuditIntake::new(mapping))
    }

    /// What the source read so far, updated while it runs: bytes of message values, audit events found (a message
    /// rejected whole counts as one), sent, skipped and rejected by reason.
    pub fn counters(&self) -> Arc<ReadCounters> {
        Arc::clone(&self.counters)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

/// What became of one record of a message.
enum Taken {
    /// To be handed to the pipeline.
    Record(Record),
    /// Well formed, not traced.
    Skipped(SkipCause),
    /// Malformed.
    Rejected(RecordRejection),
}

impl From<AuditItem> for Taken {
    fn from(item: AuditItem) -> Self {
        match item {
            AuditItem::Activity(activity) => Self::Record(Record::Activity(activity)),
            AuditItem::Skipped(cause) => Self::Skipped(cause),
            AuditItem::Rejected(rejection) => Self::Rejected(rejection),
        }
    }
}

/// The observation of an object's body a record holds (none for an activity without a body).
fn observation_of(record: Record) -> Option<Record> {
    match record {
        Record::Activity(activity) if activity.object.body.is_some() => {
            Some(Record::Observation(Box::new(kelemetry_core::Observation {
                time: activity.start,
                object: activity.object,
            })))
        }
        Record::Activity(_) => None,
        observation @ Record::Observation(_) => Some(observation),
    }
}

/// On a consumer of its own (the group's id, never joining the group, never committing): reads each of
/// `partitions` from `warmup` messages before the group's committed offset (or its first message) up to that
/// offset, sending each value to `values`. Partitions without a committed offset have nothing before it. Returns
/// how many messages were read.
fn read_before_committed(
    client: &ClientConfig,
    partitions: &[PartitionKey],
    warmup: usize,
    values: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> KafkaResult<u64> {
    let consumer: BaseConsumer = client.create()?;
    let mut wanted = TopicPartitionList::new();
    for (topic, partition) in partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(wanted, WARMUP_TIMEOUT)?;
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for element in committed.elements() {
        let Offset::Offset(end) = element.offset() else {
            continue;
        };
        let (low, _) =
            consumer.fetch_watermarks(element.topic(), element.partition(), WARMUP_TIMEOUT)?;
        let start = end
            .saturating_sub(i64::try_from(warmup).unwrap_or(i64::MAX))
            .max(low);
        if start >= end {
            continue;
        }
        assignment.add_partition_offset(
            element.topic(),
            element.partition(),
            Offset::Offset(start),
        )?;
        ends.insert((element.topic().to_owned(), element.partition()), end);
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&assignment)?;
    let mut read = 0u64;
    let mut last_progress = std::time::Instant::now();
    while !ends.is_empty() && last_progress.elapsed() < WARMUP_TIMEOUT {
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(err)) => {
                debug!(%err, "Kafka warm-up: consumer error");
                continue;
            }
            Some(Ok(message)) => message,
        };
        last_progress = std::time::Instant::now();
        let key = (message.topic().to_owned(), message.partition());
        let Some(&end) = ends.get(&key) else {
            continue;
        };
        if message.offset() >= end {
            ends.remove(&key);
            continue;
        }
        if values
            .blocking_send(message.payload().unwrap_or_default().to_vec())
            .is_err()
        {
            break;
        }
        read += 1;
        if message.offset() + 1 >= end {
            ends.remove(&key);
        }
    }
    Ok(read)
}

/// Where a message was: `kafka:TOPIC/PARTITION@OFFSET`.
fn origin(topic: &str, partition: i32, offset: i64) -> String {
    format!("kafka:{topic}/{partition}@{offset}")
}

/// A partition of a topic.
type PartitionKey = (Arc<str>, i32);

/// What became of a message handed to the pipeline.
#[derive(Debug)]
enum Outcome {
    /// Its activities are in the pipeline.
    Waiting(Receipt),
    /// The run loop awaits its receipt.
    Awaited,
    /// Exported, or lost.
    Settled(Result<(), NotDelivered>),
}

/// A message handed over, in the order the consumer returned them.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    partition: PartitionKey,
    offset: i64,
    outcome: Outcome,
}

/// Where one assigned partition stands.
#[derive(Debug, Default)]
struct PartitionState {
    /// The offset after the last message settled with every message before it.
    settled_next: Option<i64>,
    /// The offset last committed (or being committed).
    committed_next: Option<i64>,
    /// A message whose spans were lost: the partition's offset stays before it until it is assigned again.
    held_at: Option<i64>,
}

/// The messages in flight and the partitions' offsets, shared by the run loop and the rebalance callback (which
/// librdkafka calls from within the loop's own poll, so the lock is never held across an await).
#[derive(Debug, Default)]
struct Offsets {
    in_flight: VecDeque<InFlight>,
    partitions: HashMap<PartitionKey, PartitionState>,
    next_seq: u64,
    /// Partitions assigned since the run loop last looked: to be warmed up before their next message is handed on.
    newly_assigned: Vec<PartitionKey>,
}

impl Offsets {
    /// A message handed over: `receipt` is `None` when it made no activity (settled at once).
    fn push(&mut self, partition: PartitionKey, offset: i64, receipt: Option<Receipt>) {
        let outcome = match receipt {
            Some(receipt) => Outcome::Waiting(receipt),
            None => Outcome::Settled(Ok(())),
        };
        self.partitions.entry(partition.clone()).or_default();
        self.in_flight.push_back(InFlight {
            seq: self.next_seq,
            partition,
            offset,
            outcome,
        });
        self.next_seq += 1;
    }

    /// Takes the oldest messages whose outcome is known by now, in order, moving their partitions' offsets.
    fn settle_ready(&mut self) {
        while let Some(front) = self.in_flight.front_mut() {
            let outcome = match &mut front.outcome {
                Outcome::Settled(outcome) => *outcome,
                Outcome::Waiting(receipt) => match receipt.try_settled() {
                    Some(outcome) => outcome,
                    None => return,
                },
                Outcome::Awaited => return,
            };
            if let Some(done) = self.in_flight.pop_front() {
                self.settled(&done.partition, done.offset, outcome);
            }
        }
    }

    fn settled(&mut self, key: &PartitionKey, offset: i64, outcome: Result<(), NotDelivered>) {
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        if state.held_at.is_some() {
            return;
        }
        match outcome {
            Ok(()) => state.settled_next = Some(offset + 1),
            Err(lost) => {
                error!(
                    origin = %origin(&key.0, key.1, offset),
                    %lost,
                    "a Kafka message's spans were not exported; its partition's committed offset stays before it \
                     until the partition is assigned again, which reads it again"
                );
                state.held_at = Some(offset);
            }
        }
    }

    /// The receipt of the oldest message in flight, for the loop to await (`None` if it is settled already).
    fn take_oldest(&mut self) -> Option<(u64, Receipt)> {
        let front = self.in_flight.front_mut()?;
        match std::mem::replace(&mut front.outcome, Outcome::Awaited) {
            Outcome::Waiting(receipt) => Some((front.seq, receipt)),
            other => {
                front.outcome = other;
                None
            }
        }
    }

    /// Puts back what became of the message `seq` (or its receipt, not awaited to the end).
    fn put_back(&mut self, seq: u64, outcome: Outcome) {
        if let Some(entry) = self.in_flight.iter_mut().find(|entry| entry.seq == seq) {
            entry.outcome = outcome;
        }
    }

    /// The offsets to commit for the partitions `only` (every partition with `None`): those settled further than
    /// last committed. They count as committed from now on.
    fn take_commits(&mut self, only: Option<&[PartitionKey]>) -> Vec<(PartitionKey, i64)> {
        let mut commits = Vec::new();
        for (key, state) in &mut self.partitions {
            if only.is_some_and(|only| !only.contains(key)) {
                continue;
            }
            if let Some(next) = state.settled_next
                && state
                    .committed_next
                    .is_none_or(|committed| next > committed)
            {
                state.committed_next = Some(next);
                commits.push((key.clone(), next));
            }
        }
        commits
    }

    /// A commit of `partitions` failed: commit them again next time.
    fn commit_failed(&mut self, partitions: &[PartitionKey]) {
        for key in partitions {
            if let Some(state) = self.partitions.get_mut(key) {
                state.committed_next = None;
            }
        }
    }

    /// The partitions are no longer this member's: their state goes, and so do their messages in flight (the
    /// partitions' next owner reads them again).
    fn forget(&mut self, partitions: &[PartitionKey]) -> usize {
        for key in partitions {
            self.partitions.remove(key);
        }
        let before = self.in_flight.len();
        self.in_flight
            .retain(|entry| !partitions.contains(&entry.partition));
        before - self.in_flight.len()
    }
}

/// The consumer's context: commits what is settled when partitions are revoked, and hears of failed commits.
struct GroupContext {
    offsets: Arc<Mutex<Offsets>>,
}

impl GroupContext {
    fn lock(&self) -> MutexGuard<'_, Offsets> {
        lock(&self.offsets)
    }
}

fn lock(offsets: &Mutex<Offsets>) -> MutexGuard<'_, Offsets> {
    offsets.lock().unwrap_or_else(PoisonError::into_inner)
}

fn partitions_of(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|element| (Arc::from(element.topic()), element.partition()))
        .collect()
}

fn commit_list(commits: &[(PartitionKey, i64)]) -> KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), next) in commits {
        list.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
    }
    Ok(list)
}

/// Commits `commits` the way `mode` says; a failure is logged and the partitions are committed again next time.
fn commit<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    offsets: &Mutex<Offsets>,
    commits: &[(PartitionKey, i64)],
    mode: CommitMode,
) {
    if commits.is_empty() {
        return;
    }
    let result = commit_list(commits).and_then(|list| consumer.commit(&list, mode));
    match result {
        Ok(()) => debug!(partitions = commits.len(), ?mode, "committed offsets"),
        Err(err) => {
            warn!(%err, "committing Kafka offsets failed; will retry");
            let keys: Vec<PartitionKey> = commits.iter().map(|(key, _)| key.clone()).collect();
            lock(offsets).commit_failed(&keys);
        }
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let revoked = partitions_of(list);
                let (commits, dropped) = {
                    let mut offsets = self.lock();
                    offsets.settle_ready();
                    let commits = offsets.take_commits(Some(&revoked));
                    let dropped = offsets.forget(&revoked);
                    (commits, dropped)
                };
                // Synchronous: the next owner starts from what is committed now.
                commit(consumer, &self.offsets, &commits, CommitMode::Sync);
                info!(
                    partitions = revoked.len(),
                    committed = commits.len(),
                    in_flight_dropped = dropped,
                    "Kafka partitions revoked; their next owner reads on from the committed offsets"
                );
            }
            Rebalance::Assign(list) => {
                let assigned = partitions_of(list);
                let mut offsets = self.lock();
                for key in &assigned {
                    offsets.partitions.entry(key.clone()).or_default();
                }
                offsets.newly_assigned.extend(assigned.iter().cloned());
                info!(partitions = assigned.len(), "Kafka partitions assigned");
            }
            Rebalance::Error(err) => warn!(%err, "Kafka rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(err) = result {
            warn!(%err, "committing Kafka offsets failed; will retry");
            self.lock().commit_failed(&partitions_of(offsets));
        }
    }
}

/// What to do after a message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// How long the last commit and leaving the group may take at shutdown before the source stops without them.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait after a consumer error before polling again (librdkafka reports some errors, such as an
/// unreachable broker, repeatedly).
const ERROR_PAUSE: Duration = Duration::from_millis(200);

impl KafkaSource {
    fn failure(&self, what: &str, err: KafkaError) -> SourceError {
        SourceError::other(
            format!("Kafka {}: {what}", self.config.topics.join(",")),
            err,
        )
    }

    /// Hands one message's value over: its activities with one delivery, its skips and rejections counted.
    /// Returns the receipt (`None` when nothing was sent) and whether to go on; a message cut short by shutdown or
    /// a closed pipeline is reported as `Stop` and must not count as settled.
    async fn hand_over(
        &self,
        value: Result<Vec<Taken>, RecordRejection>,
        place: &(Arc<str>, i32, i64),
        sink: &Arc<dyn ActivitySink>,
        shutdown: &CancellationToken,
    ) -> (Option<Receipt>, Flow) {
        let (topic, partition, offset) = place;
        let items = match value {
            Ok(items) => items,
            Err(rejection) => {
                self.counters.record_found();
                self.counters.record_rejected(rejection.reason.as_str());
                sink.reject(rejection.into_rejection(origin(topic, *partition, *offset)));
                return (None, Flow::Continue);
            }
        };
        let (delivery, receipt) = Delivery::new();
        let mut sent = false;
        for item in items {
            self.counters.record_found();
            match item {
                Taken::Record(record) => {
                    let sending = sink.send_tracked(record, &delivery);
                    let result = tokio::select! {
                        result = sending => result,
                        () = shutdown.cancelled() => return (None, Flow::Stop),
                    };
                    if result.is_err() {
                        return (None, Flow::Stop);
                    }
                    self.counters.record_sent();
                    sent = true;
                }
                Taken::Skipped(reason) => self.counters.record_skipped(reason.as_str()),
                Taken::Rejected(rejection) => {
                    self.counters.record_rejected(rejection.reason.as_str());
                    sink.reject(rejection.into_rejection(origin(topic, *partition, *offset)));
                }
            }
        }
        drop(delivery);
        (sent.then_some(receipt), Flow::Continue)
    }

    /// Parses a message's value (or rejects it whole).
    fn take(&self, value: &[u8]) -> Result<Vec<Taken>, RecordRejection> {
        if value.len() > self.config.document_limit {
            return Err(RecordRejection::too_large(
                value.len() as u64,
                self.config.document_limit,
            ));
        }
        if value.trim_ascii().is_empty() {
            return Err(RecordRejection::new(
                RejectReason::InvalidJson,
                "the message has no value",
            ));
        }
        match self.config.format {
            MessageFormat::Audit => self
                .intake
                .take(value, &self.config.default_cluster)
                .map(|items| items.map(Taken::from).collect()),
            MessageFormat::Records => match wire::decode(value) {
                Ok(record) => Ok(vec![Taken::Record(record)]),
                Err(err) => Err(RecordRejection::new(
                    RejectReason::InvalidRecord,
                    err.to_string(),
                )),
            },
        }
    }

    /// Reads `partitions` again from up to [`KafkaConfig::warmup`] messages before their committed offsets up to
    /// those offsets, and hands the bodies they hold to the pipeline as observations (untracked: those messages
    /// were settled by the previous owner), so that its caches know the objects' latest bodies before the first
    /// new message of these partitions. A failure to read them is logged, and the partitions go on without.
    async fn warm_up(
        &self,
        partitions: Vec<PartitionKey>,
        sink: &Arc<dyn ActivitySink>,
        shutdown: &CancellationToken,
    ) -> Flow {
        let (sender, mut values) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let (client, warmup) = (self.client.clone(), self.config.warmup);
        let count = partitions.len();
        let reader = tokio::task::spawn_blocking(move || {
            read_before_committed(&client, &partitions, warmup, &sender)
        });
        let mut observed = 0u64;
        loop {
            let value = tokio::select! {
                value = values.recv() => value,
                () = shutdown.cancelled() => return Flow::Stop,
            };
            let Some(value) = value else { break };
            let Ok(items) = self.take(&value) else {
                continue;
            };
            for item in items {
                let Taken::Record(record) = item else {
                    continue;
                };
                let Some(observation) = observation_of(record) else {
                    continue;
                };
                if sink.send(observation).await.is_err() {
                    return Flow::Stop;
                }
                observed += 1;
            }
        }
        match reader.await {
            Ok(Ok(messages)) => info!(
                partitions = count,
                messages,
                observed,
                "warmed up newly assigned Kafka partitions: the bodies before their committed offsets are known"
            ),
            Ok(Err(err)) => {
                warn!(%err, partitions = count, "warming up newly assigned Kafka partitions failed; going on without")
            }
            Err(err) => warn!(%err, "the warm-up of newly assigned Kafka partitions failed"),
        }
        Flow::Continue
    }

    /// Waits for the oldest message's receipt while the window is full. `Stop` when shutdown came first.
    async fn wait_for_room(&self, offsets: &Mutex<Offsets>, shutdown: &CancellationToken) -> Flow {
        loop {
            let oldest = {
                let mut offsets = lock(offsets);
                offsets.settle_ready();
                if offsets.in_flight.len() < self.config.max_in_flight {
                    return Flow::Continue;
                }
                offsets.take_oldest()
            };
            let Some((seq, mut receipt)) = oldest else {
                // Only a settled or awaited message can be first after settle_ready, and nothing else awaits.
                return Flow::Continue;
            };
            tokio::select! {
                outcome = &mut receipt => lock(offsets).put_back(seq, Outcome::Settled(outcome)),
                () = shutdown.cancelled() => {
                    lock(offsets).put_back(seq, Outcome::Waiting(receipt));
                    return Flow::Stop;
                }
            }
        }
    }

    /// At shutdown: waits until every message in flight is exported or lost (the pipeline drains what it took
    /// within its grace period; a hard stop settles the rest as lost).
    async fn finish(offsets: &Mutex<Offsets>) {
        loop {
            let oldest = {
                let mut offsets = lock(offsets);
                offsets.settle_ready();
                if offsets.in_flight.is_empty() {
                    return;
                }
                offsets.take_oldest()
            };
            match oldest {
                Some((seq, receipt)) => {
                    let outcome = receipt.await;
                    lock(offsets).put_back(seq, Outcome::Settled(outcome));
                }
                None => return,
            }
        }
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let offsets = Arc::new(Mutex::new(Offsets::default()));
        let context = GroupContext {
            offsets: Arc::clone(&offsets),
        };
        let consumer: StreamConsumer<GroupContext> = self
            .client
            .create_with_context(context)
            .map_err(|err| self.failure("creating the consumer", err))?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|err| self.failure("subscribing", err))?;
        info!(
            brokers = %self.config.bootstrap_servers,
            topics = %self.config.topics.join(","),
            group = %self.config.group_id,
            "reading audit documents from Kafka"
        );
        let mut tick = tokio::time::interval(self.config.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_topic: Arc<str> = Arc::from("");
        let outcome = loop {
            if self.wait_for_room(&offsets, &shutdown).await == Flow::Stop {
                break Ok(());
            }
            let received = tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                _ = tick.tick() => {
                    let commits = {
                        let mut offsets = lock(&offsets);
                        offsets.settle_ready();
                        offsets.take_commits(None)
                    };
                    commit(&consumer, &offsets, &commits, CommitMode::Async);
                    continue;
                }
                received = consumer.recv() => received,
            };
            let message = match received {
                Ok(message) => message,
                Err(err) => {
                    if matches!(err, KafkaError::MessageConsumptionFatal(_))
                        || err.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
                    {
                        break Err(self.failure("consuming", err));
                    }
                    if err.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
                        warn!(%err, "Kafka consumer error; going on");
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                    continue;
                }
            };
            if &*last_topic != message.topic() {
                last_topic = Arc::from(message.topic());
            }
            let place = (
                Arc::clone(&last_topic),
                message.partition(),
                message.offset(),
            );
            let value = message.payload().unwrap_or_default();
            self.counters.add_bytes(value.len() as u64);
            sink.progress(value.len() as u64);
            let taken = self.take(value);
            drop(message);
            let newly_assigned = std::mem::take(&mut lock(&offsets).newly_assigned);
            if !newly_assigned.is_empty()
                && self.config.warmup > 0
                && self.warm_up(newly_assigned, &sink, &shutdown).await == Flow::Stop
            {
                // This message was not handed over: its offset is not settled, so it is read again.
                break Ok(());
            }
            let (receipt, flow) = self.hand_over(taken, &place, &sink, &shutdown).await;
            if flow == Flow::Stop {
                // Cut short: its offset is not settled, so the next owner reads it again.
                break Ok(());
            }
            let (topic, partition, offset) = place;
            let mut offsets = lock(&offsets);
            offsets.push((topic, partition), offset, receipt);
            offsets.settle_ready();
        };
        Self::finish(&offsets).await;
        let commits = lock(&offsets).take_commits(None);
        let committed = commits.len();
        // Committing and leaving the group wait on the brokers, up to librdkafka's session timeout (45 s) when they
        // are gone: on a thread of their own, waited for at most CLOSE_TIMEOUT.
        let (closed, closing) = tokio::sync::oneshot::channel();
        let close = move || {
            commit(&consumer, &offsets, &commits, CommitMode::Sync);
            consumer.unsubscribe();
            drop(consumer);
            let _ = closed.send(());
        };
        if let Err(err) = std::thread::Builder::new()
            .name("kafka-close".to_owned())
            .spawn(close)
        {
            warn!(%err, "no thread to close the Kafka consumer on");
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
            Ok(_) => info!(
                partitions_committed = committed,
                "stopped reading from Kafka"
            ),
            Err(_) => warn!(
                seconds = CLOSE_TIMEOUT.as_secs(),
                "the Kafka brokers did not answer the last commit in time; what it held is read again at the next \
                 start"
            ),
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: i32) -> PartitionKey {
        (Arc::from("audit"), partition)
    }

    #[test]
    fn offsets_move_only_past_settled_messages_in_order() {
        let mut offsets = Offsets::default();
        let (first, first_receipt) = Delivery::new();
        let pending = first.pending();
        drop(first);
        offsets.push(key(0), 10, Some(first_receipt));
        offsets.push(key(0), 11, None);
        offsets.push(key(1), 5, None);
        offsets.settle_ready();
        // Offset 10 waits: nothing of partition 0 moves, and partition 1 waits behind it in arrival order.
        assert_eq!(offsets.take_commits(None), Vec::new());
        pending.delivered();
        offsets.settle_ready();
        let mut commits = offsets.take_commits(None);
        commits.sort();
        assert_eq!(commits, vec![(key(0), 12), (key(1), 6)]);
        // Committed once.
        assert_eq!(offsets.take_commits(None), Vec::new());
        offsets.commit_failed(&[key(1)]);
        assert_eq!(offsets.take_commits(None), vec![(key(1), 6)]);
    }

    #[test]
    fn a_lost_message_holds_its_partition() {
        let mut offsets = Offsets::default();
        offsets.push(key(0), 0, None);
        let (lost, lost_receipt) = Delivery::new();
        drop(lost.pending());
        drop(lost);
        offsets.push(key(0), 1, Some(lost_receipt));
        offsets.push(key(0), 2, None);
        offsets.push(key(1), 0, None);
        offsets.settle_ready();
        assert!(offsets.in_flight.is_empty());
        let mut commits = offsets.take_commits(None);
        commits.sort();
        // Partition 0 stops before offset 1 for good; partition 1 goes on.
        assert_eq!(commits, vec![(key(0), 1), (key(1), 1)]);
    }

    #[test]
    fn revoked_partitions_drop_their_messages_in_flight() {
        let mut offsets = Offsets::default();
        let (delivery, receipt) = Delivery::new();
        let _pending = delivery.pending();
        offsets.push(key(0), 0, Some(receipt));
        offsets.push(key(1), 0, None);
        assert_eq!(offsets.forget(&[key(0)]), 1);
        offsets.settle_ready();
        assert_eq!(offsets.take_commits(None), vec![(key(1), 1)]);
        assert!(!offsets.partitions.contains_key(&key(0)));
    }

    #[test]
    fn the_oldest_receipt_is_taken_and_put_back() {
        let mut offsets = Offsets::default();
        let (delivery, receipt) = Delivery::new();
        drop(delivery);
        offsets.push(key(0), 7, Some(receipt));
        let (seq, receipt) = offsets.take_oldest().unwrap();
        offsets.settle_ready();
        assert_eq!(
            offsets.in_flight.len(),
            1,
            "an awaited receipt holds the line"
        );
        offsets.put_back(seq, Outcome::Waiting(receipt));
        offsets.settle_ready();
        assert_eq!(offsets.take_commits(None), vec![(key(0), 8)]);
    }

    /// What Azure Event Hubs (SASL_SSL, PLAIN) and compressed topics need is built in.
    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_compression() {
        let native = ClientConfig::new().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        let features: Vec<&str> = features.trim_end_matches('\0').split(',').collect();
        for needed in [
            "gzip",
            "snappy",
            "lz4",
            "zstd",
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "http",
            "oidc",
        ] {
            assert!(
                features.contains(&needed),
                "{needed} missing from {features:?}"
            );
        }
    }

    #[test]
    fn settings_are_checked() {
        let good = KafkaConfig::new("127.0.0.1:9092", ["audit"]);
        good.check().unwrap();
        let mut bad = good.clone();
        bad.topics = vec!["no/slash".into()];
        assert_eq!(bad.check().unwrap_err().field(), "topics");
        let mut bad = good.clone();
        bad.properties
            .insert("enable.auto.commit".into(), "true".into());
        let err = bad.check().unwrap_err();
        assert_eq!(err.field(), "properties");
        assert!(err.to_string().contains("enable.auto.commit"), "{err}");
        let mut bad = good.clone();
        for i in 0..=MAX_PROPERTIES {
            bad.properties.insert(format!("p{i}"), "1".into());
        }
        assert!(bad.check().unwrap_err().to_string().contains("at most 64"));
        let mut bad = good.clone();
        bad.bootstrap_servers = " ".into();
        assert_eq!(bad.check().unwrap_err().field(), "bootstrapServers");
        let mut bad = good.clone();
        bad.properties.insert("no.such.property".into(), "1".into());
        let err = bad.build().unwrap_err();
        assert_eq!(err.field(), "properties");
        assert!(err.to_string().contains("no.such.property"), "{err}");
    }
}
