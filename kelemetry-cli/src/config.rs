//! The configuration file of `kelemetry run`: YAML, camelCase keys, unknown keys refused. See
//! `kelemetry.example.yaml` at the root of the repository for every setting with its default.
//!
//! Each section is the configuration type of the component it configures, whose `Default` is the one place its
//! defaults live (a test checks that `kelemetry.example.yaml` states them):
//!
//! | section              | type                                                        |
//! |----------------------|-------------------------------------------------------------|
//! | `sources.webhook`    | [`WebhookConfig`]                                           |
//! | `sources.auditLog`   | [`AuditLogConfig`]                                          |
//! | `sources.events`     | [`KubeEventOptions`]                                        |
//! | `sources.objectWatch`| [`ObjectWatchConfig`]                                       |
//! | `sources.leaderElection` | [`LeaderElection`] (runs `events` and `objectWatch` on one replica) |
//! | `sources.kafka`      | `KafkaConfig` (`kelemetry_sources::kafka`; feature `kafka`) |
//! | `role`               | [`Role`]: `allInOne`, `ingest` or `process`                 |
//! | `forward.kafka`      | `KafkaForwarderConfig` (`kelemetry_sources::kafka_forward`; feature `kafka`; role `ingest`) |
//! | `filter`, `redaction`| [`Filter`], [`FieldRedaction`]                              |
//! | `linkers`            | [`LinkerSetConfig`]                                         |
//! | `exporters.*`        | [`StoreConfig`], [`JsonLinesConfig`], [`OtlpConfig`]        |
//! | `limits`             | [`PipelineLimits`], and `memory` (the CLI's memory watch)   |
//! | `metrics`            | [`MetricsConfig`] (its `audit`: [`AuditMetricsConfig`])     |
//!
//! Errors name the file, the line and the field: those found while reading come from the YAML parser (which knows
//! where it was); those found when checking the values afterwards are placed by looking the field's path up in
//! the text.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kelemetry_core::redact::FieldRedaction;
use kelemetry_core::{Filter, PipelineLimits, Windowing};
use kelemetry_exporters::{JsonLinesConfig, OtlpConfig, StoreConfig};
use kelemetry_linkers::{LinkerSetConfig, RuleChoice};
use kelemetry_metrics::AuditMetricsConfig;
use kelemetry_sources::webhook::{WalConfig, WebhookConfig};
use kelemetry_sources::{AuditLogConfig, KubeEventOptions, LeaderElection, ObjectWatchConfig};
#[cfg(feature = "kafka")]
use kelemetry_sources::{KafkaConfig, KafkaForwarderConfig, MessageFormat};
use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess};

/// A mistake in the configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file.
    pub(crate) file: PathBuf,
    /// The line (1-based), when known.
    pub(crate) line: Option<usize>,
    /// The field, as a dotted path (`sources.webhook.listen`), when known.
    pub(crate) field: Option<String>,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The extension providers of `serve` and `show` from the YAML file `path` (docs/extension-traces.md); an error
/// names the file, the line and the provider.
pub(crate) fn load_extensions(
    path: &Path,
) -> Result<kelemetry_query::extension::Extensions, crate::CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::CliError::Io {
        path: path.to_owned(),
        source,
    })?;
    let config: kelemetry_query::extension::ExtensionsConfig = serde_yaml_ng::from_str(&text)
        .map_err(|err| {
            let at = err
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            crate::CliError::Usage(format!("{}{at}: {err}", path.display()))
        })?;
    config
        .build()
        .map_err(|err| crate::CliError::Usage(format!("{}: {err}", path.display())))
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RunConfig {
    /// The name of the cluster (the `cluster` of every object; `/audit` posts without a cluster get it).
    pub(crate) cluster: String,
    /// What this process does of the whole: everything (the default), only the sources, or only the spans.
    #[serde(default)]
    pub(crate) role: Role,
    /// Where an `ingest` process hands its records.
    #[serde(default)]
    pub(crate) forward: ForwardConfig,
    /// How to reach the apiserver (for `events` and `objectWatch`).
    #[serde(default)]
    pub(crate) kubernetes: KubernetesConfig,
    /// Where activities come from.
    pub(crate) sources: SourcesConfig,
    /// What to drop.
    #[serde(default)]
    pub(crate) filter: Filter,
    /// Fields to redact besides Secret data.
    #[serde(default)]
    pub(crate) redaction: Vec<FieldRedaction>,
    /// How objects relate.
    #[serde(default)]
    pub(crate) linkers: LinkerSetConfig,
    /// Where spans go (none in the `ingest` role).
    #[serde(default)]
    pub(crate) exporters: ExportersConfig,
    /// Queue and cache sizes, the shutdown grace, the memory ceiling.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// The length of a window (the default of [`Windowing`]).
    #[serde(default = "default_window", with = "kelemetry_core::config::duration")]
    pub(crate) window: Duration,
    /// `/metrics`, `/healthz`, `/readyz` and the audit request metrics (off unless configured, or
    /// `--metrics-listen` is given).
    #[serde(default)]
    pub(crate) metrics: Option<MetricsConfig>,
}

/// `role:`: which part of the work a `kelemetry run` process does (docs/scaling.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Role {
    /// Sources, spans and exporters in one process.
    #[default]
    AllInOne,
    /// The sources (webhook, audit log, Events, object watch), every record forwarded to Kafka (`forward.kafka`):
    /// no spans, no exporters.
    Ingest,
    /// The records ingest processes forwarded (`sources.kafka` with `format: records`) made into spans and
    /// exported.
    Process,
}

/// `forward:`, the output of the `ingest` role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ForwardConfig {
    /// Records produced to a Kafka topic, keyed by object key.
    #[cfg(feature = "kafka")]
    pub(crate) kafka: Option<KafkaForwarderConfig>,
}

impl ForwardConfig {
    /// Whether a forwarder is configured (never without the feature `kafka`).
    fn is_set(&self) -> bool {
        #[cfg(feature = "kafka")]
        return self.kafka.is_some();
        #[cfg(not(feature = "kafka"))]
        false
    }
}

/// `metrics:` (docs/metrics.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (default 127.0.0.1:9464).
    #[serde(default = "default_metrics_listen")]
    pub(crate) listen: SocketAddr,
    /// Request counts and latencies from the audit stream.
    #[serde(default)]
    pub(crate) audit: AuditMetricsConfig,
}

/// The default address of the metrics endpoint: 127.0.0.1:9464 (9464 is the port commonly given to Prometheus
/// exporters of OpenTelemetry-style services).
pub(crate) const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

fn default_metrics_listen() -> SocketAddr {
    DEFAULT_METRICS_LISTEN
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_METRICS_LISTEN,
            audit: AuditMetricsConfig::default(),
        }
    }
}

fn default_window() -> Duration {
    Duration::from_secs(Windowing::default().length_secs())
}

/// `kubernetes:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct KubernetesConfig {
    /// A kubeconfig file; without it (and without `inCluster`), `KUBECONFIG`, `~/.kube/config` or the
    /// in-cluster service account, in that order.
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    pub(crate) context: Option<String>,
    /// Use the pod's service account.
    #[serde(default)]
    pub(crate) in_cluster: bool,
}

/// `sources:`; each is off unless configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SourcesConfig {
    /// The audit webhook.
    pub(crate) webhook: Option<WebhookConfig>,
    /// The audit log follower.
    pub(crate) audit_log: Option<AuditLogConfig>,
    /// Kubernetes Events.
    pub(crate) events: Option<KubeEventOptions>,
    /// The object watch.
    pub(crate) object_watch: Option<ObjectWatchConfig>,
    /// Run `events` and `objectWatch` only while this process holds a Lease, so that of several replicas
    /// watching one cluster exactly one runs them (docs/scaling.md#leader-election).
    pub(crate) leader_election: Option<LeaderElection>,
    /// Audit documents from Kafka topics (a consumer group).
    #[cfg(feature = "kafka")]
    pub(crate) kafka: Option<KafkaConfig>,
}

impl SourcesConfig {
    /// Whether `kafka` is configured (never without the feature `kafka`).
    fn has_kafka(&self) -> bool {
        #[cfg(feature = "kafka")]
        return self.kafka.is_some();
        #[cfg(not(feature = "kafka"))]
        false
    }
}

/// `exporters:`; each is off unless configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExportersConfig {
    /// The embedded store.
    pub(crate) store: Option<StoreConfig>,
    /// OTLP/JSON lines to a file.
    pub(crate) json_lines: Option<JsonLinesConfig>,
    /// OTLP to a collector, Jaeger or Tempo.
    pub(crate) otlp: Option<OtlpConfig>,
}

/// `limits:`: the pipeline's [`PipelineLimits`], and `memory`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LimitsConfig {
    /// The pipeline's sizes, shards, intervals and shutdown grace (every key of `limits:` but `memory`, read by
    /// `PipelineLimits` itself: `shards: 0`, the default, is one shard per core).
    pub(crate) pipeline: PipelineLimits,
    /// A memory ceiling in bytes: above 85% of it (resident memory), the webhook answers 429 to new batches while
    /// its queue holds something, until the process is back under 75% (default: none; the queue bounds still
    /// hold).
    pub(crate) memory: Option<usize>,
}

/// The `memory` key of `limits:`.
const MEMORY_KEY: &str = "memory";

impl<'de> Deserialize<'de> for LimitsConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(LimitsVisitor)
    }
}

struct LimitsVisitor;

impl<'de> de::Visitor<'de> for LimitsVisitor {
    type Value = LimitsConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pipeline's limits and `memory`")
    }

    fn visit_unit<E: de::Error>(self) -> Result<LimitsConfig, E> {
        Ok(LimitsConfig::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LimitsConfig, A::Error> {
        let mut memory = None;
        // `PipelineLimits` reads every key but `memory`, straight from the file, so that its errors keep their
        // place and unknown keys are still refused.
        let pipeline =
            PipelineLimits::deserialize(de::value::MapAccessDeserializer::new(WithoutMemory {
                map,
                memory: &mut memory,
            }))?;
        Ok(LimitsConfig { pipeline, memory })
    }
}

/// The entries of `limits:` without `memory`, which it keeps aside.
struct WithoutMemory<'a, A> {
    map: A,
    memory: &'a mut Option<usize>,
}

/// A size in bytes (`256MiB`).
#[derive(Deserialize)]
#[serde(transparent)]
struct Size(#[serde(with = "kelemetry_core::config::size")] usize);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutMemory<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            if key == MEMORY_KEY {
                *self.memory = Some(self.map.next_value::<Size>()?.0);
                continue;
            }
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

impl RunConfig {
    /// Reads and checks the file at `path`, and takes its relative paths from its folder.
    pub(crate) fn load(path: &Path) -> Result<Self, crate::CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::CliError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut config =
            Self::parse(&text, path).map_err(|err| crate::CliError::Usage(err.to_string()))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Reads and checks `text`, the content of `file`.
    pub(crate) fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut config: RunConfig = serde_yaml_ng::from_str(text).map_err(|err| {
            let line = err.location().map(|l| l.line());
            // The message names the field path; the location is given separately.
            let mut message = err.to_string();
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            ConfigError {
                file: file.to_owned(),
                line,
                field: None,
                message,
            }
        })?;
        config.default_webhook_wal();
        config.check().map_err(|(path, message)| ConfigError {
            file: file.to_owned(),
            line: line_of(text, &path),
            field: Some(path.join(".")),
            message,
        })?;
        Ok(config)
    }

    /// With a store, the webhook writes ahead into `<store>/webhook-wal` unless its `wal` says otherwise (another
    /// `path`, or `enabled: false`); without a store, only when `wal` gives a path.
    fn default_webhook_wal(&mut self) {
        let (Some(webhook), Some(store)) = (&mut self.sources.webhook, &self.exporters.store)
        else {
            return;
        };
        let default_path = store.path.join(WEBHOOK_WAL_FOLDER);
        match &mut webhook.wal {
            None => webhook.wal = Some(WalConfig::new(default_path)),
            Some(wal) if wal.path.as_os_str().is_empty() => wal.path = default_path,
            Some(_) => {}
        }
    }

    /// Takes every relative path from `base` (the folder of the file).
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        if let Some(kubeconfig) = &mut self.kubernetes.kubeconfig {
            resolve(kubeconfig);
        }
        if let Some(webhook) = &mut self.sources.webhook {
            if let Some(token_file) = &mut webhook.token_file {
                resolve(token_file);
            }
            if let Some(tls) = &mut webhook.tls {
                resolve(&mut tls.cert);
                resolve(&mut tls.key);
            }
            if let Some(wal) = &mut webhook.wal
                && !wal.path.as_os_str().is_empty()
            {
                resolve(&mut wal.path);
            }
        }
        if let Some(audit_log) = &mut self.sources.audit_log {
            resolve(&mut audit_log.path);
            if let Some(checkpoint) = &mut audit_log.checkpoint {
                resolve(checkpoint);
            }
        }
        if let RuleChoice::File(rules) = &mut self.linkers.rules {
            resolve(rules);
        }
        if let Some(store) = &mut self.exporters.store {
            resolve(&mut store.path);
        }
        if let Some(json_lines) = &mut self.exporters.json_lines {
            resolve(&mut json_lines.path);
        }
    }

    /// What the YAML parser cannot check: the field's path and what is wrong.
    fn check(&self) -> Result<(), (Vec<&'static str>, String)> {
        let fail = |path: &[&'static str], message: &str| Err((path.to_vec(), message.to_owned()));
        if self.cluster.trim().is_empty() {
            return fail(&["cluster"], "must not be empty");
        }
        let sources = &self.sources;
        if sources.webhook.is_none()
            && sources.audit_log.is_none()
            && sources.events.is_none()
            && sources.object_watch.is_none()
            && !sources.has_kafka()
        {
            return fail(
                &["sources"],
                "configure at least one of webhook, auditLog, events, objectWatch, kafka",
            );
        }
        self.check_role()?;
        self.check_required()?;
        if let Some(webhook) = &sources.webhook {
            check_webhook(webhook)?;
        }
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &sources.kafka {
            kafka
                .check()
                .map_err(|err| (vec!["sources", "kafka", err.field()], err.of_field()))?;
        }
        if let Some(election) = &sources.leader_election {
            if sources.events.is_none() && sources.object_watch.is_none() {
                return fail(
                    &["sources", "leaderElection"],
                    "elects the replica that runs events and objectWatch: configure one of them, or remove it",
                );
            }
            election
                .check()
                .map_err(|err| (vec!["sources", "leaderElection", err.field], err.message))?;
        }
        if (sources.events.is_some() || sources.object_watch.is_some())
            && self.kubernetes.in_cluster
            && self.kubernetes.kubeconfig.is_some()
        {
            return fail(
                &["kubernetes", "inCluster"],
                "give either kubeconfig or inCluster, not both",
            );
        }
        if self.window.as_secs() == 0 {
            return fail(&["window"], "must be at least 1s");
        }
        if let Err(err) = kelemetry_core::redact::Redactor::new(&self.redaction) {
            return fail(&["redaction"], &err.to_string());
        }
        if let Some(metrics) = &self.metrics
            && metrics.audit.max_series == 0
        {
            return fail(&["metrics", "audit", "maxSeries"], "must be at least 1");
        }
        Ok(())
    }

    /// What each role needs and refuses: an ingest process forwards and exports nothing; a process process reads
    /// only what ingest processes forwarded.
    fn check_role(&self) -> Result<(), (Vec<&'static str>, String)> {
        let fail = |path: &[&'static str], message: &str| Err((path.to_vec(), message.to_owned()));
        let exporters = &self.exporters;
        let has_exporter =
            exporters.store.is_some() || exporters.json_lines.is_some() || exporters.otlp.is_some();
        match self.role {
            Role::AllInOne | Role::Process if !has_exporter => fail(
                &["exporters"],
                "configure at least one of store, jsonLines, otlp",
            ),
            Role::AllInOne | Role::Process if self.forward.is_set() => fail(
                &["forward"],
                "only a process of role ingest forwards its records: remove it, or set role: ingest",
            ),
            Role::Ingest if has_exporter => fail(
                &["exporters"],
                "a process of role ingest makes no spans: remove the exporters (the process role exports)",
            ),
            Role::Ingest if !self.forward.is_set() => fail(
                &["role"],
                "ingest needs forward.kafka: where its records go",
            ),
            Role::Process => self.check_process_sources(),
            _ => self.check_forward(),
        }
    }

    /// A process of role `process` reads records from Kafka and nothing else.
    fn check_process_sources(&self) -> Result<(), (Vec<&'static str>, String)> {
        let sources = &self.sources;
        let direct = [
            ("webhook", sources.webhook.is_some()),
            ("auditLog", sources.audit_log.is_some()),
            ("events", sources.events.is_some()),
            ("objectWatch", sources.object_watch.is_some()),
        ];
        if let Some((name, _)) = direct.iter().find(|(_, set)| *set) {
            return Err((
                vec!["sources", name],
                "a process of role process reads only sources.kafka (format: records); run this source in a \
                 process of role ingest"
                    .to_owned(),
            ));
        }
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &sources.kafka
            && kafka.format == MessageFormat::Records
        {
            return Ok(());
        }
        Err((
            vec!["sources", "kafka"],
            "role process needs sources.kafka with format: records (the topic ingest processes forward to)"
                .to_owned(),
        ))
    }

    /// The forwarder's own checks, at its fields.
    fn check_forward(&self) -> Result<(), (Vec<&'static str>, String)> {
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.forward.kafka {
            kafka
                .check()
                .map_err(|err| (vec!["forward", "kafka", err.field()], err.of_field()))?;
        }
        Ok(())
    }

    /// The settings without a default: a section that is present must give them.
    fn check_required(&self) -> Result<(), (Vec<&'static str>, String)> {
        let empty = |path: &Path| path.as_os_str().is_empty();
        let missing = [
            (
                self.sources
                    .audit_log
                    .as_ref()
                    .is_some_and(|a| empty(&a.path)),
                ["sources", "auditLog"],
                "path",
            ),
            (
                self.exporters
                    .store
                    .as_ref()
                    .is_some_and(|s| empty(&s.path)),
                ["exporters", "store"],
                "path",
            ),
            (
                self.exporters
                    .json_lines
                    .as_ref()
                    .is_some_and(|j| empty(&j.path)),
                ["exporters", "jsonLines"],
                "path",
            ),
            (
                self.exporters
                    .otlp
                    .as_ref()
                    .is_some_and(|o| o.endpoint.is_empty()),
                ["exporters", "otlp"],
                "endpoint",
            ),
        ];
        match missing.into_iter().find(|(is_missing, _, _)| *is_missing) {
            Some((_, path, field)) => Err((path.to_vec(), format!("missing field `{field}`"))),
            None => Ok(()),
        }
    }
}

/// The folder of the webhook's write-ahead log inside the store's folder, by default.
pub(crate) const WEBHOOK_WAL_FOLDER: &str = "webhook-wal";

/// The webhook's own checks ([`WebhookConfig::check`]), placed at the field they are about.
fn check_webhook(webhook: &WebhookConfig) -> Result<(), (Vec<&'static str>, String)> {
    webhook.check().map_err(|err| {
        let mut path = vec!["sources", "webhook"];
        path.extend(err.field());
        (path, err.of_field())
    })
}

/// The line of the field at `path` in block-style YAML `text` (the deepest part of the path found).
pub(crate) fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let mut found = None;
    let mut depth = 0;
    // Indentation of the last key matched, and of the keys directly below it.
    let mut parent_indent: Option<usize> = None;
    let mut child_indent: Option<usize> = None;
    for (number, line) in text.lines().enumerate() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if parent_indent.is_some_and(|parent| indent <= parent) {
            // Left the matched key without finding the next part: the deepest part found is the answer.
            break;
        }
        let expected = *child_indent.get_or_insert(indent);
        if indent != expected {
            continue;
        }
        let Some(key) = path.get(depth) else {
            break;
        };
        if content
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
        {
            found = Some(number + 1);
            depth += 1;
            if depth == path.len() {
                break;
            }
            parent_indent = Some(indent);
            child_indent = None;
        }
    }
    found
}

#[cfg(test)]
mod tests;
