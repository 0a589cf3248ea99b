//! The configuration file of `kelemetry run`: YAML, camelCase keys, unknown keys refused. See
//! `kelemetry.example.yaml` at the root of the repository for every setting with its default.
//!
//! Errors name the file, the line and the field: those found while reading come from the YAML parser (which knows
//! where it was); those found when checking the values afterwards are placed by looking the field's path up in
//! the text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kelemetry_core::Filter;
use kelemetry_core::redact::FieldRedaction;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// A mistake in the configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The field, as a dotted path (`sources.webhook.listen`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// A duration written with a unit: `250ms`, `5s`, `2m`, `1h`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl de::Visitor<'_> for DurationVisitor {
            type Value = DurationText;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like 250ms, 5s, 2m or 1h")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationText, E> {
                self.visit_str(&n.to_string())
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationText, E> {
                self.visit_str(&n.to_string())
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<DurationText, E> {
                parse_duration(text).map(DurationText).map_err(E::custom)
            }
        }

        // Errors raised while the parser is on the value carry its line.
        deserializer.deserialize_any(DurationVisitor)
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 5s, 2m or 1h"))?;
    let seconds = |factor: u64| Duration::from_secs(number.saturating_mul(factor));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3600)),
        "" => Err(format!(
            "{text:?} has no unit: write it like 250ms, 5s, 2m or 1h"
        )),
        other => Err(format!(
            "unknown unit {other:?} in {text:?}: use ms, s, m or h"
        )),
    }
}

/// A size in bytes: a number, or a number with `KiB`, `MiB`, `GiB` (or `KB`, `MB`, `GB`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl de::Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size like 512KiB, 16MiB or 1GiB, or a number of bytes")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                usize::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom("size too large"))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom("a size cannot be negative"))
                    .and_then(|n| self.visit_u64(n))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                parse_size(text).map(ByteSize).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 512KiB, 16MiB or 1GiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use KiB, MiB, GiB (or KB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunConfig {
    /// The name of the cluster (the `cluster` of every object; `/audit` posts without a cluster get it).
    pub cluster: String,
    /// How to reach the apiserver (for `events` and `objectWatch`).
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// Where activities come from.
    pub sources: SourcesConfig,
    /// What to drop.
    #[serde(default)]
    pub filter: Filter,
    /// Fields to redact besides Secret data.
    #[serde(default)]
    pub redaction: Vec<FieldRedaction>,
    /// How objects relate.
    #[serde(default)]
    pub linkers: LinkersConfig,
    /// Where spans go.
    pub exporters: ExportersConfig,
    /// Queue and cache sizes.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The length of a window (default 30m).
    #[serde(default)]
    pub window: Option<DurationText>,
}

/// `kubernetes:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file; without it (and without `inCluster`), `KUBECONFIG`, `~/.kube/config` or the
    /// in-cluster service account, in that order.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    pub context: Option<String>,
    /// Use the pod's service account.
    #[serde(default)]
    pub in_cluster: bool,
}

/// `sources:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourcesConfig {
    /// The audit webhook.
    pub webhook: Option<WebhookSection>,
    /// The audit log follower.
    pub audit_log: Option<AuditLogSection>,
    /// Kubernetes Events.
    pub events: Option<EventsSection>,
    /// The object watch.
    pub object_watch: Option<ObjectWatchSection>,
}

/// `sources.webhook:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSection {
    /// Address to listen on (default 127.0.0.1:8087).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The bearer token (prefer `tokenFile`).
    pub token: Option<String>,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS.
    pub tls: Option<TlsSection>,
    /// Largest request body (default 16MiB).
    pub body_limit: Option<ByteSize>,
    /// Queue room in activities (default 10000).
    pub queue_events: Option<usize>,
    /// Queue room in bytes of request bodies (default 64MiB).
    pub queue_bytes: Option<ByteSize>,
    /// Open connections at most (default 256).
    pub max_connections: Option<usize>,
    /// Bodies read at once at most (default 8).
    pub concurrent_reads: Option<usize>,
    /// Longest time to receive headers, and the body (default 30s).
    pub read_timeout: Option<DurationText>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8087))
}

/// `sources.webhook.tls:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Where the follower starts without a checkpoint.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StartText {
    /// The whole file.
    #[default]
    Beginning,
    /// Only new lines.
    End,
}

/// `sources.auditLog:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditLogSection {
    /// The apiserver's `--audit-log-path`.
    pub path: PathBuf,
    /// Where to keep the position (none: start over on every start).
    pub checkpoint: Option<PathBuf>,
    /// Where to start without a checkpoint.
    #[serde(default)]
    pub start: StartText,
    /// How often to look for new lines (default 200ms).
    pub poll_interval: Option<DurationText>,
    /// Longest line (default 16MiB).
    pub line_limit: Option<ByteSize>,
}

/// Which Event API.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum EventApiText {
    /// `events.k8s.io/v1` when served, else `v1`.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// `events.k8s.io/v1`.
    #[serde(rename = "events.k8s.io/v1")]
    EventsV1,
    /// `v1`.
    #[serde(rename = "v1")]
    CoreV1,
}

/// `sources.events:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventsSection {
    /// Which API to watch.
    #[serde(default)]
    pub api: EventApiText,
    /// Where the restart watermark is kept.
    #[serde(default)]
    pub watermark: WatermarkSection,
    /// How many Event versions are remembered to skip re-deliveries (default 100000).
    pub remember: Option<usize>,
}

/// `sources.events.watermark:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatermarkSection {
    /// Namespace of the ConfigMap (default `default`).
    pub namespace: Option<String>,
    /// Name of the ConfigMap (default `kelemetry-event-watermark`).
    pub name: Option<String>,
    /// How far the floor trails the newest Event (default 1m).
    pub lag: Option<DurationText>,
    /// Most handled keys kept (default 2000).
    pub keys: Option<usize>,
    /// How often it is written when changed (default 5s).
    pub sync_interval: Option<DurationText>,
}

/// `sources.objectWatch:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectWatchSection {
    /// Only these resources (`resource` or `resource.group`); all when empty.
    #[serde(default)]
    pub include: Vec<String>,
    /// Not these (default: events, events.events.k8s.io, leases.coordination.k8s.io).
    pub exclude: Option<Vec<String>>,
    /// Watch at most this many resources (default 200).
    pub max_watches: Option<usize>,
    /// At most this many resources listed at once (default 4).
    pub concurrent_lists: Option<usize>,
    /// Objects whose latest body is kept (default 50000).
    pub max_objects: Option<usize>,
    /// Estimated memory of the kept bodies (default 256MiB).
    pub max_body_bytes: Option<ByteSize>,
    /// Diffs and snapshots kept (default 100000).
    pub max_changes: Option<usize>,
    /// Estimated memory of the kept diffs and snapshots (default 128MiB).
    pub max_change_bytes: Option<ByteSize>,
    /// Also trace each change as a `watch` activity (default false; for clusters without audit).
    #[serde(default)]
    pub watch_activities: bool,
    /// How long audit writes wait for the watch.
    #[serde(default)]
    pub wait: WaitSection,
}

/// `sources.objectWatch.wait:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitSection {
    /// Pause between tries (default 1s).
    pub poll: Option<DurationText>,
    /// Give up at stageTimestamp plus this (default 15s).
    pub after_stage: Option<DurationText>,
    /// Never wait longer than this per activity (default 10s).
    pub total: Option<DurationText>,
}

/// `linkers:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkersConfig {
    /// Owner references (default true).
    #[serde(default = "yes")]
    pub owner: bool,
    /// The parent-link annotation (default true).
    #[serde(default = "yes")]
    pub annotation: bool,
    /// Pod to Node (default true).
    #[serde(default = "yes")]
    pub pod_node: bool,
    /// `default` (the built-in rules), `none`, or a rule file.
    #[serde(default = "default_rules")]
    pub rules: String,
}

fn yes() -> bool {
    true
}

fn default_rules() -> String {
    "default".to_owned()
}

impl Default for LinkersConfig {
    fn default() -> Self {
        Self {
            owner: true,
            annotation: true,
            pod_node: true,
            rules: default_rules(),
        }
    }
}

/// `exporters:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportersConfig {
    /// The embedded store.
    pub store: Option<StoreSection>,
    /// OTLP/JSON lines to a file.
    pub json_lines: Option<JsonLinesSection>,
    /// OTLP to a collector, Jaeger or Tempo.
    pub otlp: Option<OtlpSection>,
}

/// `exporters.otlp:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpSection {
    /// The endpoint, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318` (HTTP).
    pub endpoint: String,
    /// `grpc` (default) or `http` (HTTP/protobuf).
    #[serde(default)]
    pub protocol: OtlpProtocolName,
    /// Headers sent with every request (e.g. a tenant or an API key).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Compress request bodies with gzip.
    #[serde(default)]
    pub gzip: bool,
}

/// The OTLP transport named in the configuration.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocolName {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// `exporters.store:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreSection {
    /// The store folder (created if missing).
    pub path: PathBuf,
}

/// `exporters.jsonLines:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonLinesSection {
    /// The file.
    pub path: PathBuf,
    /// Append instead of replacing (default true).
    #[serde(default = "yes")]
    pub append: bool,
}

/// `limits:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsConfig {
    /// Records buffered between the sources and the pipeline (default 4096).
    pub channel: Option<usize>,
    /// Spans per exported batch (default 512).
    pub batch_size: Option<usize>,
    /// Batches buffered per exporter (default 16).
    pub exporter_queue: Option<usize>,
    /// Objects whose latest body the pipeline keeps for diffs and linkers (default 10000).
    pub body_cache_objects: Option<usize>,
    /// Span ids the ledger remembers (default 1000000).
    pub ledger_ids: Option<usize>,
    /// How many link hops one record may cause (default 8).
    pub max_link_depth: Option<usize>,
    /// How long spans may wait in a partial batch (default 1s).
    pub flush_interval: Option<DurationText>,
    /// How long a shutdown may take to hand over what the sources accepted (default 30s).
    pub shutdown_grace: Option<DurationText>,
    /// A memory ceiling: above 85% of it (resident memory), the webhook answers 429 to new batches while its queue
    /// holds something, until the process is back under 75% (default: none; the queue bounds still hold).
    pub memory: Option<ByteSize>,
}

impl RunConfig {
    /// Reads and checks `text`, the content of `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let config: RunConfig = serde_yaml_ng::from_str(text).map_err(|err| {
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
        config.check(text, file)?;
        Ok(config)
    }

    fn check(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let fail = |path: &[&str], message: String| ConfigError {
            file: file.to_owned(),
            line: line_of(text, path),
            field: Some(path.join(".")),
            message,
        };
        if self.cluster.trim().is_empty() {
            return Err(fail(&["cluster"], "must not be empty".to_owned()));
        }
        let sources = &self.sources;
        if sources.webhook.is_none()
            && sources.audit_log.is_none()
            && sources.events.is_none()
            && sources.object_watch.is_none()
        {
            return Err(fail(
                &["sources"],
                "configure at least one of webhook, auditLog, events, objectWatch".to_owned(),
            ));
        }
        if self.exporters.store.is_none()
            && self.exporters.json_lines.is_none()
            && self.exporters.otlp.is_none()
        {
            return Err(fail(
                &["exporters"],
                "configure at least one of store, jsonLines, otlp".to_owned(),
            ));
        }
        if let Some(webhook) = &sources.webhook {
            let at = |field: &'static str| ["sources", "webhook", field];
            if webhook.token.is_some() && webhook.token_file.is_some() {
                return Err(fail(
                    &at("tokenFile"),
                    "give either token or tokenFile, not both".to_owned(),
                ));
            }
            if webhook.token.is_none()
                && webhook.token_file.is_none()
                && !webhook.listen.ip().is_loopback()
            {
                return Err(fail(
                    &at("listen"),
                    format!(
                        "{} is not a loopback address: a bearer token (token or tokenFile) is required",
                        webhook.listen
                    ),
                ));
            }
            for (field, value) in [
                ("bodyLimit", webhook.body_limit.map(|b| b.0)),
                ("queueEvents", webhook.queue_events),
                ("queueBytes", webhook.queue_bytes.map(|b| b.0)),
                ("maxConnections", webhook.max_connections),
                ("concurrentReads", webhook.concurrent_reads),
            ] {
                if value == Some(0) {
                    return Err(fail(&at(field), "must be at least 1".to_owned()));
                }
            }
        }
        if (sources.events.is_some() || sources.object_watch.is_some())
            && self.kubernetes.in_cluster
            && self.kubernetes.kubeconfig.is_some()
        {
            return Err(fail(
                &["kubernetes", "inCluster"],
                "give either kubeconfig or inCluster, not both".to_owned(),
            ));
        }
        if let Some(window) = self.window
            && window.0.as_secs() == 0
        {
            return Err(fail(&["window"], "must be at least 1s".to_owned()));
        }
        if let Err(err) = kelemetry_core::redact::Redactor::new(&self.redaction) {
            return Err(fail(&["redaction"], err.to_string()));
        }
        Ok(())
    }
}

/// The line of the field at `path` in block-style YAML `text` (the deepest part of the path found).
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
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
mod tests {
    use super::*;

    const MINIMAL: &str = "\
cluster: prod
sources:
  webhook:
    listen: 127.0.0.1:0
exporters:
  jsonLines:
    path: spans.jsonl
";

    fn parse(text: &str) -> Result<RunConfig, ConfigError> {
        RunConfig::parse(text, Path::new("run.yaml"))
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
    }

    #[test]
    fn a_minimal_file_has_the_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.cluster, "prod");
        assert!(config.linkers.owner && config.linkers.rules == "default");
        assert!(config.exporters.json_lines.as_ref().unwrap().append);
    }

    #[test]
    fn parse_errors_name_line_and_field() {
        let text = MINIMAL.replace(
            "    listen: 127.0.0.1:0",
            "    listen: 127.0.0.1:0\n    queueBytes: 12 parsecs",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        let shown = err.to_string();
        assert!(shown.starts_with("run.yaml:5: "), "{shown}");
        assert!(shown.contains("sources.webhook.queueBytes"), "{shown}");
        assert!(shown.contains("parsecs"), "{shown}");

        let text = MINIMAL.replace("  webhook:", "  webhok:");
        let shown = parse(&text).unwrap_err().to_string();
        assert!(shown.starts_with("run.yaml:3: "), "{shown}");
        assert!(shown.contains("unknown field `webhok`"), "{shown}");
    }

    #[test]
    fn checks_name_line_and_field() {
        let text = MINIMAL.replace("127.0.0.1:0", "0.0.0.0:8087");
        let err = parse(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "run.yaml:4: sources.webhook.listen: 0.0.0.0:8087 is not a loopback address: a bearer token \
             (token or tokenFile) is required"
        );
        let text = MINIMAL.replace("  jsonLines:\n    path: spans.jsonl\n", "  {}\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("exporters"));
        assert_eq!(err.line, Some(5));
        let text = format!("{MINIMAL}redaction:\n  - resource: configmaps\n    path: data..x\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("redaction"));
        assert_eq!(err.line, Some(8));
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../kelemetry.example.yaml");
        let config = parse(text).unwrap();
        assert_eq!(config.cluster, "tracetest");
        assert_eq!(
            config.sources.webhook.unwrap().queue_bytes,
            Some(ByteSize(64 << 20))
        );
        // With every optional section switched on.
        let all: String = text
            .lines()
            .map(|line| {
                let trimmed = line.trim_start();
                let indent = line.len() - trimmed.len();
                let Some(rest) = trimmed.strip_prefix("# ") else {
                    return line.to_owned();
                };
                let setting = rest.trim_start();
                let nested = indent >= 2;
                let indent = indent + rest.len() - setting.len();
                let is_setting = nested
                    && setting.split_once(':').is_some_and(|(key, after)| {
                        key.chars().all(|c| c.is_ascii_alphanumeric())
                            && (after.is_empty() || after.starts_with(' '))
                    })
                    && !["kubeconfig", "context", "tokenFile", "tls", "cert", "key"]
                        .iter()
                        .any(|skip| setting.starts_with(&format!("{skip}:")));
                if is_setting {
                    format!("{}{setting}", " ".repeat(indent))
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = parse(&all).unwrap_or_else(|err| panic!("{err}\n{all}"));
        assert!(config.sources.audit_log.is_some());
        assert!(config.sources.events.is_some());
        let watch = config.sources.object_watch.unwrap();
        assert_eq!(
            watch.wait.after_stage,
            Some(DurationText(Duration::from_secs(15)))
        );
        assert!(config.exporters.json_lines.is_some());
    }

    #[test]
    fn lines_of_nested_fields() {
        let text = "a: 1\nsources:\n  # c\n  events: {}\n  webhook:\n    listen: x\nlisten: y\n";
        assert_eq!(line_of(text, &["sources", "webhook", "listen"]), Some(6));
        assert_eq!(line_of(text, &["listen"]), Some(7));
        assert_eq!(line_of(text, &["sources", "events"]), Some(4));
        assert_eq!(line_of(text, &["missing"]), None);
    }
}
