use kelemetry_core::{Filter, PipelineLimits};
use kelemetry_exporters::{JsonLinesConfig, OtlpConfig, StoreConfig};
use kelemetry_linkers::{LinkerSetConfig, RuleChoice};
use kelemetry_sources::webhook::WebhookConfig;
use kelemetry_sources::{AuditLogConfig, KubeEventOptions, ObjectWatchConfig};

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

const EXAMPLE: &str = include_str!("../../../kelemetry.example.yaml");

fn parse(text: &str) -> Result<RunConfig, ConfigError> {
    RunConfig::parse(text, Path::new("run.yaml"))
}

/// `MINIMAL` with `lines` added to `sources.webhook`.
fn with_webhook_lines(lines: &str) -> String {
    MINIMAL.replace(
        "    listen: 127.0.0.1:0\n",
        &format!("    listen: 127.0.0.1:0\n{lines}"),
    )
}

#[test]
fn sizes_and_durations() {
    let text = with_webhook_lines(
        "    queueBytes: 2GB\n    bodyLimit: 512\n    readTimeout: 250ms\n    queueWait: 0s\n",
    ) + "limits:\n  flushInterval: 2m\n  memory: 16MiB\n  shards: 4\n";
    let config = parse(&text).unwrap();
    assert_eq!(config.limits.pipeline.shards, 4);
    let webhook = config.sources.webhook.unwrap();
    assert_eq!(webhook.queue_bytes, 2_000_000_000);
    assert_eq!(webhook.body_limit, 512);
    assert_eq!(webhook.read_timeout, Duration::from_millis(250));
    assert_eq!(webhook.queue_wait, Duration::ZERO);
    assert_eq!(
        config.limits.pipeline.flush_interval,
        Duration::from_secs(120)
    );
    assert_eq!(config.limits.memory, Some(16 << 20));

    let shown = parse(&with_webhook_lines("    readTimeout: 5\n"))
        .unwrap_err()
        .to_string();
    assert!(
        shown.starts_with("run.yaml:5: sources.webhook.readTimeout: \"5\" has no unit"),
        "{shown}"
    );
}

#[test]
fn a_minimal_file_has_the_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.cluster, "prod");
    assert_eq!(config.linkers, LinkerSetConfig::default());
    assert_eq!(
        config.exporters.json_lines,
        Some(JsonLinesConfig::new("spans.jsonl"))
    );
    assert_eq!(config.limits, LimitsConfig::default());
    assert_eq!(config.window, Duration::from_secs(30 * 60));
}

#[test]
fn parse_errors_name_line_and_field() {
    let text = with_webhook_lines("    queueBytes: 12 parsecs\n");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.line, Some(5), "{err}");
    let shown = err.to_string();
    assert!(shown.starts_with("run.yaml:5: "), "{shown}");
    assert!(shown.contains("sources.webhook.queueBytes"), "{shown}");
    assert!(shown.contains("unknown unit \"parsecs\""), "{shown}");

    let text = MINIMAL.replace("  webhook:", "  webhok:");
    let shown = parse(&text).unwrap_err().to_string();
    assert!(shown.starts_with("run.yaml:3: "), "{shown}");
    assert!(shown.contains("unknown field `webhok`"), "{shown}");

    // `limits` is read by `PipelineLimits` with `memory` kept aside: unknown keys are still refused.
    let text = format!("{MINIMAL}limits:\n  memory: 1GiB\n  chanel: 5\n");
    let shown = parse(&text).unwrap_err().to_string();
    assert!(shown.contains("limits: unknown field `chanel`"), "{shown}");
    let text = format!("{MINIMAL}limits:\n  memory: 1GiB\n  channel: lots\n");
    let shown = parse(&text).unwrap_err().to_string();
    assert!(
        shown.starts_with("run.yaml:10: limits.channel: invalid type"),
        "{shown}"
    );
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
    let text = with_webhook_lines("    queueEvents: 0\n");
    let shown = parse(&text).unwrap_err().to_string();
    assert_eq!(
        shown,
        "run.yaml:5: sources.webhook.queueEvents: must be at least 1"
    );
}

#[test]
fn settings_without_a_default_are_required() {
    let text = MINIMAL.replace("    path: spans.jsonl\n", "    append: false\n");
    let shown = parse(&text).unwrap_err().to_string();
    assert_eq!(
        shown,
        "run.yaml:6: exporters.jsonLines: missing field `path`"
    );
    let text = format!("{MINIMAL}  otlp:\n    gzip: true\n");
    let shown = parse(&text).unwrap_err().to_string();
    assert_eq!(
        shown,
        "run.yaml:8: exporters.otlp: missing field `endpoint`"
    );
}

#[test]
fn relative_paths_are_taken_from_the_folder_of_the_file() {
    let text = format!(
        "{MINIMAL}linkers:\n  rules: rules.yaml\n  podNode: false\n"
    )
    .replace(
        "  webhook:\n",
        "  auditLog:\n    path: /var/log/audit.log\n    checkpoint: state/audit.checkpoint\n  webhook:\n",
    );
    let mut config = parse(&text).unwrap();
    config.resolve_paths(Path::new("/etc/kelemetry"));
    let audit_log = config.sources.audit_log.unwrap();
    assert_eq!(audit_log.path, Path::new("/var/log/audit.log"));
    assert_eq!(
        audit_log.checkpoint.as_deref(),
        Some(Path::new("/etc/kelemetry/state/audit.checkpoint"))
    );
    assert_eq!(
        config.linkers.rules,
        RuleChoice::File("/etc/kelemetry/rules.yaml".into())
    );
    assert!(!config.linkers.pod_node && config.linkers.owner);
    assert_eq!(
        config.exporters.json_lines.unwrap().path,
        Path::new("/etc/kelemetry/spans.jsonl")
    );
}

/// Settings commented out in the example whose shown value is an example, not a default.
const EXAMPLE_ONLY: &[&str] = &["kubeconfig", "context", "tokenFile", "tls", "cert", "key"];

/// The example with every commented-out setting (`  # key: value`) switched on, except [`EXAMPLE_ONLY`] ones.
fn example_with_every_setting() -> String {
    EXAMPLE
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let Some(rest) = trimmed.strip_prefix("# ") else {
                return line.to_owned();
            };
            let setting = rest.trim_start();
            // Top-level prose ("# Durations: ...") looks like a setting; the top-level settings are known.
            let nested = indent >= 2 || setting.starts_with("window:");
            let indent = indent + rest.len() - setting.len();
            let is_setting = nested
                && setting.split_once(':').is_some_and(|(key, after)| {
                    key.chars().all(|c| c.is_ascii_alphanumeric())
                        && (after.is_empty() || after.starts_with(' '))
                })
                && !EXAMPLE_ONLY
                    .iter()
                    .any(|skip| setting.starts_with(&format!("{skip}:")));
            if is_setting {
                format!("{}{setting}", " ".repeat(indent))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_file_is_valid() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.cluster, "tracetest");
    assert_eq!(config.sources.webhook.unwrap().queue_bytes, 64 << 20);
    assert!(config.sources.audit_log.is_none() && config.exporters.otlp.is_none());
    let all = example_with_every_setting();
    let config = parse(&all).unwrap_or_else(|err| panic!("{err}\n{all}"));
    assert!(config.sources.audit_log.is_some());
    assert!(config.sources.events.is_some());
    assert!(config.sources.object_watch.is_some());
    #[cfg(feature = "kafka")]
    assert!(config.sources.kafka.is_some());
    assert!(config.exporters.json_lines.is_some());
    assert!(config.exporters.otlp.is_some());
}

/// Changing a default in the code without the example, or the other way round, fails here: every section of the
/// example, with every setting switched on, is the type's `Default` plus the values the example only suggests
/// (paths, the endpoint, headers, the leases filter, a memory ceiling).
#[test]
fn the_example_states_the_defaults() {
    let all = example_with_every_setting();
    let config = parse(&all).unwrap_or_else(|err| panic!("{err}\n{all}"));
    assert_eq!(config.kubernetes, KubernetesConfig::default());

    let webhook = config.sources.webhook.unwrap();
    let mut expected = WebhookConfig::default();
    // With a store, the webhook writes ahead into the store's folder.
    expected.wal = Some(kelemetry_sources::webhook::WalConfig::new(
        ".kelemetry/store/webhook-wal",
    ));
    // `WebhookConfig` holds an `AtomicBool` handle and is compared by its full `Debug` text.
    assert_eq!(format!("{webhook:?}"), format!("{expected:?}"));

    let mut expected = AuditLogConfig::new("/var/log/kubernetes/audit/audit.log");
    expected.checkpoint = Some("/var/lib/kelemetry/audit-log.checkpoint".into());
    assert_eq!(config.sources.audit_log, Some(expected));
    assert_eq!(config.sources.events, Some(KubeEventOptions::default()));
    #[cfg(feature = "kafka")]
    {
        let mut expected = kelemetry_sources::KafkaConfig::new("127.0.0.1:9092", ["kube-audit"]);
        expected.default_cluster = "prod".to_owned();
        assert_eq!(config.sources.kafka, Some(expected));
    }
    assert_eq!(
        config.sources.object_watch,
        Some(ObjectWatchConfig::default())
    );

    let filter = Filter {
        exclude_resources: vec!["leases.coordination.k8s.io".to_owned()],
        ..Filter::default()
    };
    assert_eq!(config.filter, filter);
    assert!(config.redaction.is_empty());
    assert_eq!(config.linkers, LinkerSetConfig::default());

    let exporters = config.exporters;
    assert_eq!(exporters.store, Some(StoreConfig::new(".kelemetry/store")));
    assert_eq!(
        exporters.json_lines,
        Some(JsonLinesConfig::new("spans.jsonl"))
    );
    let expected =
        OtlpConfig::grpc("http://127.0.0.1:4317").with_header("X-Scope-OrgID", "tenant-1");
    assert_eq!(exporters.otlp, Some(expected));

    assert_eq!(config.limits.pipeline, PipelineLimits::default());
    assert_eq!(config.limits.memory, Some(256 << 20));
    assert_eq!(config.window, default_window());
    assert_eq!(config.metrics, Some(super::MetricsConfig::default()));
}

#[test]
fn metrics_are_off_unless_configured_and_their_labels_are_checked() {
    assert_eq!(parse(MINIMAL).unwrap().metrics, None);
    let with_metrics = |section: &str| format!("{MINIMAL}metrics:\n{section}");
    let config = parse(&with_metrics("  listen: 0.0.0.0:9100\n")).unwrap();
    let metrics = config.metrics.unwrap();
    assert_eq!(metrics.listen.to_string(), "0.0.0.0:9100");
    assert_eq!(
        metrics.audit,
        kelemetry_metrics::AuditMetricsConfig::default()
    );
    let config = parse(&with_metrics(
        "  audit:\n    labels: [user, verb]\n    maxSeries: 5\n",
    ))
    .unwrap();
    let audit = config.metrics.unwrap().audit;
    assert_eq!(
        (audit.labels, audit.max_series),
        (
            vec![
                kelemetry_metrics::AuditLabel::User,
                kelemetry_metrics::AuditLabel::Verb
            ],
            5
        )
    );
    let shown = parse(&with_metrics("  audit:\n    labels: [pod]\n"))
        .unwrap_err()
        .to_string();
    assert!(shown.contains("unknown variant `pod`"), "{shown}");
    let shown = parse(&with_metrics("  audit:\n    maxSeries: 0\n"))
        .unwrap_err()
        .to_string();
    assert!(
        shown.ends_with("metrics.audit.maxSeries: must be at least 1"),
        "{shown}"
    );
}

#[test]
fn lines_of_nested_fields() {
    let text = "a: 1\nsources:\n  # c\n  events: {}\n  webhook:\n    listen: x\nlisten: y\n";
    assert_eq!(line_of(text, &["sources", "webhook", "listen"]), Some(6));
    assert_eq!(line_of(text, &["listen"]), Some(7));
    assert_eq!(line_of(text, &["sources", "events"]), Some(4));
    assert_eq!(line_of(text, &["missing"]), None);
}

#[test]
fn the_webhook_writes_ahead_into_the_store_unless_told_otherwise() {
    use kelemetry_sources::webhook::WalConfig;
    let with_store = |wal: &str| {
        with_webhook_lines(wal).replace(
            "  jsonLines:\n    path: spans.jsonl\n",
            "  store:\n    path: data/store\n",
        )
    };
    // Without a store: memory only, unless a path is given.
    assert_eq!(parse(MINIMAL).unwrap().sources.webhook.unwrap().wal, None);
    let shown = parse(&with_webhook_lines("    wal:\n      maxBytes: 64MiB\n"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        shown,
        "run.yaml:5: sources.webhook.wal: the write-ahead log needs a folder: give `path`"
    );
    // With a store: in its folder, sizes as configured.
    let config = parse(&with_store("")).unwrap();
    assert_eq!(
        config.sources.webhook.unwrap().wal,
        Some(WalConfig::new("data/store/webhook-wal"))
    );
    let config = parse(&with_store("    wal:\n      segmentBytes: 1MiB\n")).unwrap();
    let wal = config.sources.webhook.unwrap().wal.unwrap();
    assert_eq!(
        (wal.path.as_path(), wal.segment_bytes),
        (Path::new("data/store/webhook-wal"), 1 << 20)
    );
    // Turned off, and elsewhere (relative to the file's folder once loaded).
    let config = parse(&with_store("    wal:\n      enabled: false\n")).unwrap();
    assert!(config.sources.webhook.unwrap().durable().is_none());
    let mut config = parse(&with_store("    wal:\n      path: wal\n")).unwrap();
    config.resolve_paths(Path::new("/etc/kelemetry"));
    let webhook = config.sources.webhook.unwrap();
    assert_eq!(webhook.wal.unwrap().path, Path::new("/etc/kelemetry/wal"));
    // Sizes that leave no room for a segment being written while another waits.
    let shown = parse(&with_store(
        "    wal:\n      maxBytes: 1MiB\n      segmentBytes: 1MiB\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        shown.starts_with(
            "run.yaml:5: sources.webhook.wal: the write-ahead log's maxBytes (1048576) must be"
        ),
        "{shown}"
    );
}

/// A Kafka section alone is a source; its mistakes are placed at their field.
#[cfg(feature = "kafka")]
#[test]
fn kafka_settings_are_checked_where_they_are() {
    let kafka = |lines: &str| {
        format!(
            "cluster: prod\nsources:\n  kafka:\n    bootstrapServers: 127.0.0.1:9092\n{lines}exporters:\n  jsonLines:\n    path: spans.jsonl\n"
        )
    };
    let config = parse(&kafka(
        "    topics: [audit]\n    properties: {security.protocol: SASL_SSL}\n",
    ))
    .unwrap();
    let kafka_config = config.sources.kafka.unwrap();
    assert_eq!(kafka_config.topics, ["audit"]);
    assert_eq!(kafka_config.properties["security.protocol"], "SASL_SSL");
    assert_eq!(kafka_config.default_cluster, "", "run fills in the cluster");
    for (lines, expected) in [
        (
            "    topics: []\n",
            "run.yaml:5: sources.kafka.topics: give at least one topic",
        ),
        (
            "    topics: [audit]\n    maxInFlight: 0\n",
            "run.yaml:6: sources.kafka.maxInFlight: must be at least 1",
        ),
        (
            "    topics: [audit]\n    properties: {enable.auto.commit: 'true'}\n",
            "run.yaml:6: sources.kafka.properties: enable.auto.commit is set by the source (bootstrapServers, groupId, start; commits are its own)",
        ),
    ] {
        assert_eq!(parse(&kafka(lines)).unwrap_err().to_string(), expected);
    }
    let unknown = parse(&kafka("    topics: [audit]\n    partitions: 3\n")).unwrap_err();
    assert!(
        unknown
            .to_string()
            .starts_with("run.yaml:6: sources.kafka: unknown field `partitions`"),
        "{unknown}"
    );
}

#[cfg(feature = "kafka")]
#[test]
fn each_role_takes_what_it_needs_and_refuses_the_rest() {
    let ingest = "cluster: c\nrole: ingest\nsources:\n  webhook:\n    listen: 127.0.0.1:0\nforward:\n  kafka:\n    \
                  bootstrapServers: 127.0.0.1:9092\n";
    let config = parse(ingest).unwrap();
    assert_eq!(config.role, super::Role::Ingest);
    assert_eq!(
        config.forward.kafka,
        Some(kelemetry_sources::KafkaForwarderConfig::new(
            "127.0.0.1:9092",
            kelemetry_sources::kafka_forward::DEFAULT_RECORDS_TOPIC
        ))
    );
    // An ingest process writes no webhook WAL by default (it has no store): Kafka's acknowledgement is the 200.
    assert!(config.sources.webhook.unwrap().wal.is_none());

    let process = "cluster: c\nrole: process\nsources:\n  kafka:\n    bootstrapServers: 127.0.0.1:9092\n    \
                   topics: [kelemetry-records]\n    format: records\nexporters:\n  store:\n    path: s\n";
    let config = parse(process).unwrap();
    assert_eq!(config.role, super::Role::Process);
    assert_eq!(
        config.sources.kafka.unwrap().format,
        kelemetry_sources::MessageFormat::Records
    );

    for (text, expected) in [
        (
            ingest.replace(
                "forward:\n  kafka:\n    bootstrapServers: 127.0.0.1:9092\n",
                "",
            ),
            "run.yaml:2: role: ingest needs forward.kafka: where its records go",
        ),
        (
            format!("{ingest}exporters:\n  store:\n    path: s\n"),
            "run.yaml:9: exporters: a process of role ingest makes no spans: remove the exporters (the process \
             role exports)",
        ),
        (
            format!("{ingest}    topic: 'no topic'\n"),
            "run.yaml:9: forward.kafka.topic: \"no topic\" is no topic name (1 to 249 of the characters a-z A-Z \
             0-9 . _ -, not . or ..)",
        ),
        (
            format!("{ingest}    properties: {{acks: '1'}}\n"),
            "run.yaml:9: forward.kafka.properties: acks is set by the forwarder (bootstrapServers, \
             deliveryTimeout; acks=all and idempotence are its own)",
        ),
        (
            process.replace("    format: records\n", ""),
            "run.yaml:4: sources.kafka: role process needs sources.kafka with format: records (the topic ingest \
             processes forward to)",
        ),
        (
            process.replace("sources:\n", "sources:\n  webhook: {}\n"),
            "run.yaml:4: sources.webhook: a process of role process reads only sources.kafka (format: records); \
             run this source in a process of role ingest",
        ),
        (
            format!("{MINIMAL}forward:\n  kafka:\n    bootstrapServers: 127.0.0.1:9092\n"),
            "run.yaml:8: forward: only a process of role ingest forwards its records: remove it, or set role: \
             ingest",
        ),
    ] {
        let err = parse(&text).unwrap_err().to_string();
        assert_eq!(err, expected, "\n{text}");
    }
    let unknown = parse(&ingest.replace("role: ingest", "role: both")).unwrap_err();
    assert!(
        unknown.to_string().contains("unknown variant `both`"),
        "{unknown}"
    );
}
