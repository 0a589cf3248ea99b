//! [`KafkaForwarder`] (feature `kafka`): the `ingest` role's output, every record produced to one Kafka topic in
//! the [wire format](kelemetry_core::wire), keyed by its object key.
//!
//! **Delivery.** The producer is idempotent with `acks=all`: a record's [`Acknowledgement`] settles `Ok` only when
//! every in-sync replica of its partition holds it, and librdkafka's retries neither duplicate nor reorder a
//! partition's messages. Keyed by object key, one object's records go to one partition, in the order the
//! pipeline forwarded them, and so reach one `process` replica in that order. A record not acknowledged within
//! [`KafkaForwarderConfig::delivery_timeout`] (brokers gone, the topic missing) settles `Err`: the pipeline
//! counts it as not forwarded and its source is told (a webhook answers 503, a follower keeps its checkpoint).
//!
//! **Bounds.** librdkafka's queue holds at most `queue.buffering.max.messages` (100,000) and
//! `queue.buffering.max.kbytes` (1 GiB) by default; set them in [`KafkaForwarderConfig::properties`]. When it is
//! full, [`RecordForwarder::forward`] waits, and the pipeline's back-pressure reaches the sources.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kelemetry_core::Pipeline;
//! use kelemetry_sources::kafka_forward::KafkaForwarderConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let forwarder = KafkaForwarderConfig::new("127.0.0.1:9092", "kelemetry-records").build()?;
//! let pipeline = Pipeline::builder().forward(Arc::new(forwarder)).build();
//! # drop(pipeline);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::forward::{Acknowledgement, RecordForwarder};
use kelemetry_core::{BoxError, Record, wire};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::kafka::{KafkaConfigError, check_properties, check_topic, invalid};

/// The topic of [`KafkaForwarderConfig::default`].
pub const DEFAULT_RECORDS_TOPIC: &str = "kelemetry-records";

/// Properties the forwarder sets itself; giving them in [`KafkaForwarderConfig::properties`] is refused.
pub const MANAGED_PRODUCER_PROPERTIES: [&str; 7] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

/// How long to wait before offering a record again to a full librdkafka queue.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// Where a [`KafkaForwarder`] produces and how; [`KafkaForwarderConfig::build`] makes it. With the feature
/// `config` it is read from configuration files (the `ingest.kafka` section of `kelemetry run`'s file).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct KafkaForwarderConfig {
    /// Brokers to start from, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The topic records are produced to (default [`DEFAULT_RECORDS_TOPIC`]). Give it as many partitions as
    /// `process` replicas may ever run: a partition is read by one replica at a time.
    pub topic: String,
    /// How long a record may wait for its acknowledgement, retries included, before it counts as not
    /// forwarded (librdkafka's `message.timeout.ms`; default 30 s, under the apiserver's webhook timeout).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub delivery_timeout: Duration,
    /// librdkafka producer properties passed through as given (`linger.ms`, `compression.type`,
    /// `security.protocol`...), at most [`crate::kafka::MAX_PROPERTIES`]; the [`MANAGED_PRODUCER_PROPERTIES`] are
    /// refused.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaForwarderConfig {
    /// No brokers, topic [`DEFAULT_RECORDS_TOPIC`], a 30 s delivery timeout, no extra properties.
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            topic: DEFAULT_RECORDS_TOPIC.to_owned(),
            delivery_timeout: Duration::from_secs(30),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaForwarderConfig {
    /// The defaults, producing to `topic` on the brokers `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            ..Self::default()
        }
    }

    /// What the settings alone say is wrong, without asking librdkafka.
    pub fn check(&self) -> Result<(), KafkaConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(invalid("bootstrapServers", "give at least one host:port"));
        }
        check_topic("topic", &self.topic)?;
        if self.delivery_timeout < Duration::from_millis(1) {
            return Err(invalid("deliveryTimeout", "must be at least 1ms"));
        }
        check_properties(
            &self.properties,
            &MANAGED_PRODUCER_PROPERTIES,
            "the forwarder (bootstrapServers, deliveryTimeout; acks=all and idempotence are its own)",
        )
    }

    fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("client.id", "kelemetry-ingest")
            .set("bootstrap.servers", self.bootstrap_servers.trim())
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                self.delivery_timeout
                    .as_millis()
                    .min(i32::MAX as u128)
                    .to_string(),
            )
            .set("linger.ms", "5")
            .set("compression.type", "zstd");
        for (name, value) in &self.properties {
            client.set(name, value);
        }
        client
    }

    /// The forwarder, after checking the settings; librdkafka checks the properties and starts its threads (it
    /// connects lazily, so no broker needs to be up yet).
    pub fn build(&self) -> Result<KafkaForwarder, KafkaConfigError> {
        self.check()?;
        let producer: FutureProducer = self
            .client_config()
            .create()
            .map_err(|source| KafkaConfigError::Client { source })?;
        Ok(KafkaForwarder {
            producer,
            topic: self.topic.clone(),
            name: format!("kafka:{}", self.topic),
        })
    }
}

/// Produces records to a Kafka topic. See the module documentation.
pub struct KafkaForwarder {
    producer: FutureProducer,
    topic: String,
    name: String,
}

impl std::fmt::Debug for KafkaForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaForwarder")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RecordForwarder for KafkaForwarder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn forward(&self, record: Record) -> Acknowledgement {
        let key = wire::message_key(&record);
        let value = wire::encode(&record);
        drop(record);
        loop {
            let message = FutureRecord::to(&self.topic).key(&key).payload(&value);
            match self.producer.send_result(message) {
                Ok(delivery) => {
                    return Box::pin(async move {
                        match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((err, _))) => Err(BoxError::from(err)),
                            Err(_) => Err("the Kafka producer was closed".into()),
                        }
                    });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((err, _)) => return Box::pin(std::future::ready(Err(err.into()))),
            }
        }
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BoxError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .map_err(BoxError::from)?
            .map_err(BoxError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok = KafkaForwarderConfig::new("127.0.0.1:9092", "records");
        assert!(ok.build().is_ok());
        let mut bad = ok.clone();
        bad.topic = "no topic".into();
        assert_eq!(bad.check().unwrap_err().field(), "topic");
        let mut bad = ok.clone();
        bad.properties.insert("acks".into(), "1".into());
        let err = bad.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "properties: acks is set by the forwarder (bootstrapServers, deliveryTimeout; acks=all and idempotence \
             are its own)"
        );
        let mut bad = ok.clone();
        bad.properties.insert("no.such.property".into(), "1".into());
        assert!(matches!(bad.build(), Err(KafkaConfigError::Client { .. })));
        let mut bad = ok;
        bad.bootstrap_servers = " ".into();
        assert_eq!(bad.check().unwrap_err().field(), "bootstrapServers");
    }
}
