//! [`ObjectFileSource`]: recorded Kubernetes objects and Events from a JSON or YAML file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use kelemetry_core::body::metadata_str;
use kelemetry_core::kube_event::{event_api, event_to_activity};
use kelemetry_core::{
    ActivitySink, CancellationToken, Object, ObjectRef, Observation, Record, ResourceMap, SmolStr,
    Source, SourceError,
};
use serde_json::Value;
use tokio::io::AsyncBufRead;

use crate::DEFAULT_DOCUMENT_LIMIT;
use crate::audit_intake::{RecordRejection, RejectReason};
use crate::json_stream::{JsonPiece, JsonSplitter};
use crate::lines::{LineReader, open_buffered};
use crate::object_versions::{FILE_VERSION_LIMITS, ObjectVersions};
use crate::outlet::{Flow, Outlet};
use crate::report::ReadCounters;
use crate::yaml_stream::{YamlPiece, YamlSplitter};

/// Reads recorded Kubernetes objects and Events from a file and turns them into records.
///
/// Accepted input, detected from the first non-blank line (`{` or `[` starts JSON, anything else is YAML):
/// - a multi-document YAML stream (`---` separators); a leading comment `# {"time": "...", ...}` before a
///   document (as kspan's recordings write) gives the time it was recorded;
/// - a JSON stream: one object per line, or pretty-printed objects one after another (as
///   `kubectl get -w -o json` writes);
/// - in either: single objects, arrays of them, `List` kinds (`items`; items without `apiVersion`/`kind` take them from the
///   list, so `PodList` works), and watch events `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK", "object":
///   {...}}`.
///
/// What becomes of a record:
/// - a Kubernetes Event (`v1` or `events.k8s.io/v1` `Event`) becomes an activity
///   ([`event_to_activity`]);
/// - any other object becomes an [`Observation`] with its body, its resource from the [`ResourceMap`], at the
///   recorded time, else `metadata.creationTimestamp`, else `metadata.deletionTimestamp` (for a `DELETED` watch
///   event the deletion time comes first); an object with none of them is rejected;
/// - with [`ObjectFileSource::with_change_activities`], successive versions of the same object become change
///   activities with their diffs (`watch update`, `watch delete`) instead of observations;
/// - a `BOOKMARK` watch event is skipped; an `ERROR` watch event is rejected.
///
/// A document larger than the document limit (default [`DEFAULT_DOCUMENT_LIMIT`], 16 MiB) is rejected; the file
/// is read as a stream, holding one document at a time. Every rejection names `file:line` of the document and
/// the reading goes on.
#[derive(Debug)]
pub struct ObjectFileSource {
    path: PathBuf,
    converter: ObjectConverter,
    document_limit: usize,
    counters: Arc<ReadCounters>,
    versions: Option<ObjectVersions>,
}

impl ObjectFileSource {
    /// A source reading `path`, whose objects belong to `cluster`, with the built-in resource map.
    pub fn new(path: impl Into<PathBuf>, cluster: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            converter: ObjectConverter {
                cluster: cluster.into(),
                resources: Arc::new(ResourceMap::builtin()),
            },
            document_limit: DEFAULT_DOCUMENT_LIMIT,
            counters: Arc::default(),
            versions: None,
        }
    }

    /// Turns successive versions of the same object into change activities, as the live object watch's
    /// `watchActivities` does: the first version of an object stays an observation; a later version with another
    /// `metadata.resourceVersion` becomes a `watch update` activity with the field diff against the version before;
    /// a `DELETED` watch event a `watch delete` activity with the final snapshot. Bodies are redacted with
    /// `redactor` (use the pipeline's) before they are kept or diffed. The latest version of at most 10,000
    /// objects (64 MiB) is remembered; an object pushed out starts again with an observation.
    ///
    /// Off by default: next to audit records of the same writes, each write would be traced twice (the audit
    /// activity already gets its diff from these bodies through the pipeline's body cache).
    pub fn with_change_activities(mut self, redactor: kelemetry_core::Redactor) -> Self {
        self.versions = Some(ObjectVersions::new(FILE_VERSION_LIMITS, redactor));
        self
    }

    /// Uses this resource map (e.g. one that knows the cluster's custom resources).
    pub fn with_resource_map(mut self, resources: Arc<ResourceMap>) -> Self {
        self.converter.resources = resources;
        self
    }

    /// Rejects documents larger than `bytes`.
    pub fn with_document_limit(mut self, bytes: usize) -> Self {
        self.document_limit = bytes;
        self
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counters this source updates while it runs; read them during or after the run.
    pub fn counters(&self) -> Arc<ReadCounters> {
        Arc::clone(&self.counters)
    }

    /// Reads records from any buffered reader, naming it `origin` in rejections. [`Source::run`] calls this with
    /// the file.
    pub async fn read_from<R>(
        &self,
        reader: R,
        origin: &str,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError>
    where
        R: AsyncBufRead + Unpin + Send,
    {
        let mut outlet = Outlet::new(
            sink,
            Arc::clone(&self.counters),
            origin.to_owned(),
            shutdown,
        );
        let io_error = |error| SourceError::io(origin, error);
        let mut lines = LineReader::new(reader);
        let mut line = Vec::new();
        let mut format = None;
        let mut json = JsonSplitter::new(self.document_limit);
        let mut yaml = YamlSplitter::new(self.document_limit);
        let mut json_pieces = Vec::new();
        let mut yaml_pieces = Vec::new();
        let line_limit = self.document_limit.saturating_add(1);
        while let Some(info) = lines
            .next_line(&mut line, line_limit)
            .await
            .map_err(io_error)?
        {
            outlet.consumed(info.bytes);
            let format = match format {
                Some(format) => format,
                None => match line.iter().find(|byte| !byte.is_ascii_whitespace()) {
                    None => continue,
                    Some(b'{' | b'[') => *format.insert(Format::Json),
                    Some(_) => *format.insert(Format::Yaml),
                },
            };
            match format {
                Format::Json if info.overflow => {
                    json_pieces.push(JsonPiece::Oversized {
                        line: info.number,
                        size: info.bytes,
                    });
                    json = JsonSplitter::new(self.document_limit);
                }
                Format::Json => json.feed_line(info.number, &line, &mut json_pieces),
                Format::Yaml => yaml.feed_line(
                    info.number,
                    &String::from_utf8_lossy(&line),
                    &mut yaml_pieces,
                ),
            }
            if self
                .deliver(&mut outlet, &mut json_pieces, &mut yaml_pieces)
                .await
                == Flow::Stop
            {
                outlet.flush_progress();
                return Ok(());
            }
        }
        json.finish(&mut json_pieces);
        yaml.finish(&mut yaml_pieces);
        self.deliver(&mut outlet, &mut json_pieces, &mut yaml_pieces)
            .await;
        outlet.flush_progress();
        Ok(())
    }

    async fn deliver(
        &self,
        outlet: &mut Outlet,
        json_pieces: &mut Vec<JsonPiece>,
        yaml_pieces: &mut Vec<YamlPiece>,
    ) -> Flow {
        let mut flow = Flow::Continue;
        for piece in json_pieces.drain(..) {
            if flow == Flow::Stop || outlet.stopping() {
                return Flow::Stop;
            }
            let document = piece
                .into_document(self.document_limit)
                .and_then(|(line, text)| {
                    serde_json::from_slice(&text)
                        .map(|value| (line, value))
                        .map_err(|error| {
                            (
                                line,
                                RecordRejection::new(RejectReason::InvalidJson, error.to_string()),
                            )
                        })
                });
            flow = match document {
                Ok((line, value)) => self.deliver_value(outlet, value, line, None).await,
                Err((line, rejection)) => {
                    outlet.found();
                    outlet.reject_record(line, rejection);
                    Flow::Continue
                }
            };
        }
        for piece in yaml_pieces.drain(..) {
            if flow == Flow::Stop || outlet.stopping() {
                return Flow::Stop;
            }
            flow = match piece {
                YamlPiece::Document(document) => {
                    match serde_yaml_ng::from_str::<Value>(&document.text) {
                        Ok(value) => {
                            self.deliver_value(outlet, value, document.line, document.recorded_time)
                                .await
                        }
                        Err(error) => {
                            outlet.found();
                            let line = error.location().map_or(document.line, |location| {
                                document.first_text_line + location.line() as u64 - 1
                            });
                            outlet.reject(line, "invalid YAML", error.to_string());
                            Flow::Continue
                        }
                    }
                }
                YamlPiece::Oversized { line, size } => {
                    outlet.found();
                    outlet
                        .reject_record(line, RecordRejection::too_large(size, self.document_limit));
                    Flow::Continue
                }
            };
        }
        flow
    }

    async fn deliver_value(
        &self,
        outlet: &mut Outlet,
        value: Value,
        line: u64,
        recorded_time: Option<Timestamp>,
    ) -> Flow {
        let mut outcomes = Vec::new();
        self.converter.convert(value, recorded_time, &mut outcomes);
        for outcome in outcomes {
            outlet.found();
            match outcome {
                Outcome::Record(record) => {
                    if outlet.send(record).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Outcome::Version {
                    observation,
                    deleted,
                } => {
                    let record = match &self.versions {
                        Some(versions) => {
                            versions.record(observation, deleted, recorded_time.is_some())
                        }
                        None => observation.into(),
                    };
                    if outlet.send(record).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Outcome::Skipped(reason) => outlet.skip(reason),
                Outcome::Rejected { reason, detail } => outlet.reject(line, reason, detail),
            }
        }
        Flow::Continue
    }
}

#[async_trait]
impl Source for ObjectFileSource {
    fn name(&self) -> &str {
        "object-file"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let (reader, origin) = open_buffered(&self.path).await?;
        self.read_from(reader, &origin, sink, shutdown).await
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

/// What one record of the input became.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Something to send.
    Record(Record),
    /// A version of an object (not an Event): an observation, or a change when versions are compared.
    Version {
        /// The object as recorded, at its time.
        observation: Observation,
        /// Seen in a `DELETED` watch event.
        deleted: bool,
    },
    /// Deliberately not sent.
    Skipped(&'static str),
    /// Not usable.
    Rejected {
        /// Short, stable class.
        reason: &'static str,
        /// What is wrong.
        detail: String,
    },
}

fn rejected(reason: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome::Rejected {
        reason,
        detail: detail.into(),
    }
}

/// Turns parsed documents into records.
#[derive(Debug)]
pub(crate) struct ObjectConverter {
    pub(crate) cluster: String,
    pub(crate) resources: Arc<ResourceMap>,
}

/// Prefixes the details of the rejections among `outcomes` with `what index: ` (e.g. `item 3: `).
fn name_rejections(outcomes: &mut [Outcome], what: &str, index: usize) {
    for outcome in outcomes {
        if let Outcome::Rejected { detail, .. } = outcome {
            *detail = format!("{what} {index}: {detail}");
        }
    }
}

fn text<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

impl ObjectConverter {
    /// The records of one document: an object, a list of them, or a watch event.
    pub(crate) fn convert(
        &self,
        mut value: Value,
        recorded_time: Option<Timestamp>,
        out: &mut Vec<Outcome>,
    ) {
        if let Value::Array(elements) = value {
            // A JSON array of documents (`[{...}, {...}]`), e.g. a saved collection of objects.
            for (index, element) in elements.into_iter().enumerate() {
                let before = out.len();
                self.convert(element, recorded_time, out);
                name_rejections(&mut out[before..], "element", index);
            }
            return;
        }
        if !value.is_object() {
            out.push(rejected(
                "not an object",
                format!("expected a JSON object, found {}", kind_of_value(&value)),
            ));
            return;
        }
        if value.get("kind").is_none()
            && let Some(event_type) = text(&value, "type")
            && value.get("object").is_some_and(Value::is_object)
        {
            let event_type = event_type.to_owned();
            let object = value["object"].take();
            self.convert_watch_event(&event_type, object, recorded_time, out);
            return;
        }
        let is_list = text(&value, "kind").is_some_and(|kind| kind.ends_with("List"))
            && value.get("items").is_some_and(Value::is_array);
        if is_list {
            self.convert_list(value, recorded_time, out);
            return;
        }
        self.convert_object(value, recorded_time, false, out);
    }

    /// A watch event (`{"type": "ADDED", "object": {...}}`) of `event_type`.
    fn convert_watch_event(
        &self,
        event_type: &str,
        object: Value,
        recorded_time: Option<Timestamp>,
        out: &mut Vec<Outcome>,
    ) {
        match event_type {
            "ADDED" | "MODIFIED" => self.convert_object(object, recorded_time, false, out),
            "DELETED" => self.convert_object(object, recorded_time, true, out),
            "BOOKMARK" => out.push(Outcome::Skipped("watch bookmark")),
            "ERROR" => out.push(rejected(
                "watch error",
                text(&object, "message")
                    .unwrap_or("ERROR watch event")
                    .to_owned(),
            )),
            other => out.push(rejected(
                "unknown watch event type",
                format!("watch event type {other:?}"),
            )),
        }
    }

    /// A list (`PodList`, `List`...) with its `items`; items without `apiVersion`/`kind` take the list's.
    fn convert_list(
        &self,
        mut list: Value,
        recorded_time: Option<Timestamp>,
        out: &mut Vec<Outcome>,
    ) {
        let list_api_version = text(&list, "apiVersion").unwrap_or("").to_owned();
        let item_kind = text(&list, "kind")
            .and_then(|kind| kind.strip_suffix("List"))
            .unwrap_or("")
            .to_owned();
        let Value::Array(items) = list["items"].take() else {
            return;
        };
        for (index, mut item) in items.into_iter().enumerate() {
            if let Some(fields) = item.as_object_mut() {
                // Items of a typed list (PodList) carry no apiVersion or kind; a `List` has them per item.
                if !fields.contains_key("kind") && !item_kind.is_empty() {
                    fields.insert("kind".to_owned(), Value::from(item_kind.clone()));
                }
                if !fields.contains_key("apiVersion") && !list_api_version.is_empty() {
                    fields.insert(
                        "apiVersion".to_owned(),
                        Value::from(list_api_version.clone()),
                    );
                }
            }
            let before = out.len();
            self.convert_object(item, recorded_time, false, out);
            name_rejections(&mut out[before..], "item", index);
        }
    }

    fn convert_object(
        &self,
        value: Value,
        recorded_time: Option<Timestamp>,
        deleted: bool,
        out: &mut Vec<Outcome>,
    ) {
        if !value.is_object() {
            out.push(rejected(
                "not an object",
                format!("expected a JSON object, found {}", kind_of_value(&value)),
            ));
            return;
        }
        if event_api(&value).is_some() {
            out.push(
                match event_to_activity(&value, &self.cluster, &self.resources) {
                    Ok(activity) => Outcome::Record(activity.into()),
                    Err(error) => rejected(error.class(), error.to_string()),
                },
            );
            return;
        }
        out.push(self.observation(value, recorded_time, deleted));
    }

    fn observation(
        &self,
        value: Value,
        recorded_time: Option<Timestamp>,
        deleted: bool,
    ) -> Outcome {
        let Some(kind) = text(&value, "kind").filter(|kind| !kind.is_empty()) else {
            return rejected("missing kind", "the object has no kind");
        };
        let api_version = text(&value, "apiVersion").unwrap_or("");
        let Some(name) = metadata_str(&value, "name").filter(|name| !name.is_empty()) else {
            return rejected("missing name", format!("{kind} without metadata.name"));
        };
        let namespace = metadata_str(&value, "namespace").unwrap_or("");
        let describe = || {
            if namespace.is_empty() {
                format!("{kind} {name}")
            } else {
                format!("{kind} {namespace}/{name}")
            }
        };
        let time = match recorded_time {
            Some(time) => time,
            None => {
                let order: [&str; 2] = if deleted {
                    ["deletionTimestamp", "creationTimestamp"]
                } else {
                    ["creationTimestamp", "deletionTimestamp"]
                };
                let mut found = None;
                for field in order {
                    if let Some(raw) = metadata_str(&value, field) {
                        match raw.parse::<Timestamp>() {
                            Ok(time) => {
                                found = Some(time);
                                break;
                            }
                            Err(error) => {
                                return rejected(
                                    "invalid time",
                                    format!("{}: metadata.{field} {raw:?}: {error}", describe()),
                                );
                            }
                        }
                    }
                }
                match found {
                    Some(time) => time,
                    None => {
                        return rejected(
                            "object without time",
                            format!(
                                "{} has no recorded time, metadata.creationTimestamp or \
                                 metadata.deletionTimestamp",
                                describe()
                            ),
                        );
                    }
                }
            }
        };
        let info = self.resources.resolve(api_version, kind);
        let key = info.object_key(&self.cluster, namespace, name);
        let uid = metadata_str(&value, "uid")
            .filter(|uid| !uid.is_empty())
            .map(SmolStr::new);
        let object = Object::with_body(ObjectRef::new(key, info.version, uid), Arc::new(value));
        Outcome::Version {
            observation: Observation { object, time },
            deleted,
        }
    }
}

fn kind_of_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn converter() -> ObjectConverter {
        ObjectConverter {
            cluster: "c".to_owned(),
            resources: Arc::new(ResourceMap::builtin()),
        }
    }

    fn convert(value: Value, recorded_time: Option<Timestamp>) -> Vec<Outcome> {
        let mut out = Vec::new();
        converter().convert(value, recorded_time, &mut out);
        out
    }

    fn observation(outcome: &Outcome) -> &Observation {
        match outcome {
            Outcome::Version { observation, .. } => observation,
            other => panic!("expected an observation, got {other:?}"),
        }
    }

    #[test]
    fn typed_list_items_take_kind_from_the_list() {
        let list = json!({
            "apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {},
            "items": [
                {"metadata": {"name": "a", "namespace": "ns", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z"}},
                {"metadata": {"name": "b", "namespace": "ns"}},
            ]
        });
        let out = convert(list, None);
        assert_eq!(out.len(), 2);
        let first = observation(&out[0]);
        assert_eq!(first.object.key().to_string(), "c/apps/deployments/ns/a");
        assert_eq!(first.object.object_ref.uid.as_deref(), Some("u1"));
        assert_eq!(first.time.to_string(), "2024-01-01T00:00:00Z");
        assert!(matches!(
            &out[1],
            Outcome::Rejected { reason: "object without time", detail } if detail.starts_with("item 1: Deployment ns/b")
        ));
    }

    #[test]
    fn watch_events() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "p", "namespace": "ns",
            "creationTimestamp": "2024-01-01T00:00:00Z", "deletionTimestamp": "2024-01-01T01:00:00Z"}});
        let added = convert(json!({"type": "ADDED", "object": pod.clone()}), None);
        assert_eq!(
            observation(&added[0]).time.to_string(),
            "2024-01-01T00:00:00Z"
        );
        let deleted = convert(json!({"type": "DELETED", "object": pod.clone()}), None);
        assert_eq!(
            observation(&deleted[0]).time.to_string(),
            "2024-01-01T01:00:00Z"
        );
        let recorded: Timestamp = "2024-02-02T00:00:00Z".parse().expect("time");
        let at = convert(json!({"type": "MODIFIED", "object": pod}), Some(recorded));
        assert_eq!(observation(&at[0]).time, recorded);
        let bookmark = convert(
            json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}}}),
            None,
        );
        assert!(matches!(bookmark[0], Outcome::Skipped("watch bookmark")));
        let error = convert(
            json!({"type": "ERROR", "object": {"kind": "Status", "message": "too old resource version"}}),
            None,
        );
        assert!(
            matches!(&error[0], Outcome::Rejected { reason: "watch error", detail } if detail == "too old resource version")
        );
    }

    #[test]
    fn bad_objects_are_rejected() {
        let out = convert(
            json!([1, {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"}}]),
            None,
        );
        assert!(
            matches!(&out[0], Outcome::Rejected { reason: "not an object", detail } if detail.starts_with("element 0: "))
        );
        assert_eq!(observation(&out[1]).object.key().name, "p");
        assert!(matches!(
            convert(json!("text"), None)[0],
            Outcome::Rejected {
                reason: "not an object",
                ..
            }
        ));
        assert!(matches!(
            convert(json!({"metadata": {"name": "x"}}), None)[0],
            Outcome::Rejected {
                reason: "missing kind",
                ..
            }
        ));
        assert!(matches!(
            convert(
                json!({"kind": "Pod", "apiVersion": "v1", "metadata": {}}),
                None
            )[0],
            Outcome::Rejected {
                reason: "missing name",
                ..
            }
        ));
        assert!(matches!(
            convert(
                json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "creationTimestamp": "yesterday"}}),
                None
            )[0],
            Outcome::Rejected {
                reason: "invalid time",
                ..
            }
        ));
    }

    #[test]
    fn events_become_activities_and_cluster_scope_is_kept() {
        let node = json!({"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": "n", "namespace": "stray", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        assert_eq!(
            observation(&convert(node, None)[0])
                .object
                .key()
                .to_string(),
            "c//nodes//n"
        );
        let event = json!({"kind": "Event", "apiVersion": "v1",
            "metadata": {"name": "e", "namespace": "ns", "uid": "u", "resourceVersion": "1"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns"},
            "reason": "Started", "lastTimestamp": "2024-01-01T00:00:00Z"});
        match &convert(event, None)[0] {
            Outcome::Record(Record::Activity(activity)) => {
                assert_eq!(activity.title, "Started");
                assert_eq!(activity.object.key().to_string(), "c//pods/ns/p");
            }
            other => panic!("expected an activity, got {other:?}"),
        }
    }
}
