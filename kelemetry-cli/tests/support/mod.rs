//! What the CLI's integration tests share: where the recorded fixtures are, running the real binary, and reading
//! the counts it prints.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// `../shared/fixtures` (or `KELEMETRY_FIXTURES`); `None` when it is missing, after saying so; a panic instead when
/// `KELEMETRY_REQUIRE_FIXTURES=1` (as in CI), so the conformance suite cannot pass by skipping.
#[allow(unused_imports)] // Not every test binary that includes this module reads fixtures.
pub(crate) use kelemetry_testkit::{fixture, fixtures};

/// Runs `kelemetry ARGS --store STORE`: whether it succeeded, its standard output and its standard error.
pub(crate) fn kelemetry(args: &[&str], store: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .expect("run kelemetry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kelemetry show OBJECT --store STORE`'s output; panics with the output when it fails.
pub(crate) fn show(store: &Path, object: &str) -> String {
    let (ok, stdout, stderr) = kelemetry(&["show", object], store);
    assert!(ok, "show {object} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The counts of a summary line such as `replayed 2 file(s): 26 records read, 19 activities, 7 object
/// observations` or `pipeline: 3 records, 3 activities, 0 rejected; 9 spans (3 object, ...)`: each piece between
/// `,`, `;`, `:`, `(` and `)` that starts with a number, by what follows the number (`records read`,
/// `activities`, `file` (of `file(s)`)...). Matching a count exactly, `counts(line)["rejected"] == 1`, cannot be fooled by
/// `11 rejected` as `contains("1 rejected")` is.
pub(crate) fn counts(line: &str) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for piece in line.split([',', ';', ':', '(', ')']) {
        let piece = piece.trim();
        let (number, label) = piece.split_once(' ').unwrap_or((piece, ""));
        if let Ok(number) = number.parse::<u64>() {
            counts.insert(label.trim().to_owned(), number);
        }
    }
    counts
}

/// The line of `output` that starts with `prefix`, without the prefix; a panic naming the output when there is
/// none.
pub(crate) fn line_after<'a>(output: &'a str, prefix: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{output}"))
}

/// What `kelemetry replay` printed, read back: the counts of its summary line, what was skipped by design by
/// reason, and what was rejected by reason.
#[derive(Debug)]
pub(crate) struct ReplaySummary {
    /// `replayed N file(s): N records read, N activities, N object observations, N skipped, N filtered, N
    /// rejected`, by label (`file(s)`, `records read`, ...).
    pub(crate) counts: std::collections::BTreeMap<String, u64>,
    /// `skipped (not traced by design): REASON: N, ...`.
    pub(crate) skipped: std::collections::BTreeMap<String, u64>,
    /// The `REASON: N` lines under `rejected:`.
    pub(crate) rejected: std::collections::BTreeMap<String, u64>,
}

impl ReplaySummary {
    /// Reads the summary `kelemetry replay` printed on its standard output.
    pub(crate) fn parse(stdout: &str) -> Self {
        let counts = counts(line_after(stdout, "replayed "));
        let mut skipped = std::collections::BTreeMap::new();
        if let Some(reasons) = stdout
            .lines()
            .find_map(|line| line.strip_prefix("skipped (not traced by design): "))
        {
            for reason in reasons.split(", ") {
                let (reason, count) = reason.rsplit_once(": ").expect("REASON: N");
                skipped.insert(reason.to_owned(), count.parse().expect("a count"));
            }
        }
        // `rejected:` is followed by `  REASON: N` lines, then by examples of rejections.
        let mut rejected = std::collections::BTreeMap::new();
        let mut lines = stdout
            .lines()
            .skip_while(|line| *line != "rejected:")
            .skip(1);
        let total = counts.get("rejected").copied().unwrap_or(0);
        while rejected.values().sum::<u64>() < total {
            let line = lines.next().expect("a REASON: N line under rejected:");
            let (reason, count) = line.trim().rsplit_once(": ").expect("REASON: N");
            rejected.insert(reason.to_owned(), count.parse().expect("a count"));
        }
        Self {
            counts,
            skipped,
            rejected,
        }
    }

    /// The count labelled `label` in the summary line; a panic when there is none.
    pub(crate) fn count(&self, label: &str) -> u64 {
        *self
            .counts
            .get(label)
            .unwrap_or_else(|| panic!("no {label:?} in {:?}", self.counts))
    }
}

/// How many times the webhook summary line `webhook` says it answered `status` (`answered 429 N times, 413 N, 401
/// N, ...`).
pub(crate) fn answered(webhook: &str, status: &str) -> u64 {
    let refusals = webhook
        .split_once("answered ")
        .unwrap_or_else(|| panic!("no refusals in {webhook:?}"))
        .1;
    refusals
        .split([',', ';'])
        .find_map(|piece| {
            let mut words = piece.split_whitespace();
            (words.next() == Some(status)).then(|| words.next())?
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count of {status} in {webhook:?}"))
}

/// A span written by the JSON lines exporter: its operation name and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportedSpan {
    /// The operation name (`alice delete`, `deployments/demo`, ...).
    pub(crate) name: String,
    /// The string attributes, by key.
    pub(crate) attributes: std::collections::BTreeMap<String, String>,
}

impl ExportedSpan {
    /// Whether the span is in the trace of the object `resource`/`name` (any namespace and window).
    pub(crate) fn is_of(&self, resource: &str, name: &str) -> bool {
        self.attributes.get("resource").map(String::as_str) == Some(resource)
            && self.attributes.get("name").map(String::as_str) == Some(name)
    }
}

/// The spans in the OTLP/JSON lines file at `path` so far (none when it does not exist yet; a line being written
/// is left out). While `kelemetry run` writes its store, this file is what a test can watch to know what was
/// exported.
pub(crate) fn exported_spans(path: &Path) -> Vec<ExportedSpan> {
    fn collect(value: &serde_json::Value, out: &mut Vec<ExportedSpan>) {
        match value {
            serde_json::Value::Object(map) if map.contains_key("spanId") => {
                let attributes = map
                    .get("attributes")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|attribute| {
                        Some((
                            attribute["key"].as_str()?.to_owned(),
                            attribute["value"]["stringValue"].as_str()?.to_owned(),
                        ))
                    })
                    .collect();
                out.push(ExportedSpan {
                    name: map["name"].as_str().unwrap_or_default().to_owned(),
                    attributes,
                });
            }
            serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, out)),
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut spans = Vec::new();
    for line in text.lines() {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
            collect(&value, &mut spans);
        }
    }
    spans
}

/// Waits (`timeout` at most) until every `(resource, name, title suffix)` of `wanted` has an activity span in the
/// JSON lines file at `path`: positive evidence that a running `kelemetry run` exported them.
pub(crate) fn wait_until_exported(
    path: &Path,
    wanted: &[(&str, &str, &str)],
    timeout: std::time::Duration,
) {
    kelemetry_testkit::wait_until("the spans to be exported", timeout, || {
        let spans = exported_spans(path);
        let all = wanted.iter().all(|(resource, name, suffix)| {
            spans
                .iter()
                .any(|span| span.is_of(resource, name) && span.name.ends_with(suffix))
        });
        Ok(all.then_some(()))
    })
    .unwrap_or_else(|err| panic!("{err}: {wanted:?}"));
}

/// Creates the Kafka topic `topic` with `partitions` partitions (replication 1) on the brokers `bootstrap`.
#[cfg(feature = "kafka")]
pub(crate) async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use kelemetry_sources::kafka::rdkafka::ClientConfig;
    use kelemetry_sources::kafka::rdkafka::admin::{
        AdminClient, AdminOptions, NewTopic, TopicReplication,
    };
    use kelemetry_sources::kafka::rdkafka::client::DefaultClientContext;

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a Kafka admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30))),
        )
        .await
        .expect("the brokers answer");
    for result in results {
        result.unwrap_or_else(|(topic, err)| panic!("creating {topic}: {err}"));
    }
}

/// A topic name no earlier run used: `PREFIX-PID-NANOS`.
pub(crate) fn fresh_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The rest of the first line of `stderr` holding `prefix` (for example the address after
/// `audit webhook listening on http://`); a panic naming the output when there is none.
pub(crate) fn address_after(stderr: &str, prefix: &str) -> String {
    stderr
        .lines()
        .find_map(|line| {
            line.split_once(prefix)
                .map(|(_, rest)| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{stderr}"))
}
