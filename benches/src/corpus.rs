//! A large audit log built from the real recorded audit events in `../shared/fixtures/audit`.
//!
//! The recorded logs hold about a hundred events; a throughput measurement needs a million. [`write_corpus`]
//! takes the recorded events as templates ([`Templates::load`]) and writes a log in which `objects` distinct
//! objects go through their lives over a few hours:
//!
//! - each object is born from one recorded `create` (falco-minikube-2018: pods, configmaps, cluster roles and
//!   bindings, services, service accounts, namespaces, secrets, deployments), at the level it was recorded at
//!   (`Metadata`, `Request` or `RequestResponse`, so some events carry the object's body and some do not);
//! - it is then written to a few more times (`patch` and `update` alternately, derived from its create, or from
//!   a recorded patch of its resource where there is one: a label `bench.kelemetry.io/revision` changes, the
//!   resource version advances, about one update in 40 fails with a 409
//!   Conflict), and about a third of the objects whose resource has a recorded `delete` end with that delete;
//! - names, namespaces, uids, owner references (pods share a ReplicaSet by fours), audit ids and resource versions
//!   are varied per object and per event, and time advances evenly from [`CorpusSpec::start`] over
//!   [`CorpusSpec::duration_minutes`], so the log covers several 30-minute windows and most objects are active in
//!   one or two of them;
//! - a share of the lines ([`CorpusSpec::read_percent`]) are the recorded reads (the audit2rbac demo log: `get`
//!   and `list`, and the falco reads and `exec`/`attach` streams), which a pipeline parses and skips.
//!
//! The output is deterministic for a given [`CorpusSpec`] (including its seed) and set of templates.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

/// Events in the full-size corpus.
pub const DEFAULT_EVENTS: u64 = 1_000_000;
/// Distinct objects in the full-size corpus.
pub const DEFAULT_OBJECTS: u64 = 100_000;

/// How many objects share one ReplicaSet as owner.
const PODS_PER_OWNER: u64 = 4;
/// How many namespaces each recorded namespace is spread over.
const NAMESPACE_SPREAD: u64 = 128;
/// One write in this many fails with 409 Conflict.
const CONFLICT_EVERY: u64 = 40;
/// Percent of the objects (whose resource has a recorded delete) that end deleted.
const DELETED_PERCENT: u64 = 30;
/// The label whose value each write changes.
const REVISION_LABEL: &str = "bench.kelemetry.io/revision";

/// Where the recorded fixtures are: `$KELEMETRY_FIXTURES`, else `../shared/fixtures` beside the workspace.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("KELEMETRY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

/// Building the corpus failed.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A fixture file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The fixtures hold no event usable as a template of this kind.
    #[error("no recorded {what} events found under {dir}")]
    NoTemplates {
        /// Which kind of template is missing.
        what: &'static str,
        /// Where they were looked for.
        dir: PathBuf,
    },
    /// The requested sizes do not make a corpus.
    #[error("invalid corpus size: {0}")]
    Size(String),
    /// Writing the corpus failed.
    #[error("cannot write the corpus: {0}")]
    Write(#[from] io::Error),
    /// Serialising an event failed.
    #[error("cannot serialise an event: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusSpec {
    /// Lines (audit events) in all.
    pub events: u64,
    /// Distinct objects written to; every one is created, so `events` minus the reads must be at least this.
    pub objects: u64,
    /// Percent of the lines that are recorded reads (traced by nobody; parsed and skipped).
    pub read_percent: u8,
    /// When the first event happens.
    pub start: Timestamp,
    /// How long the log lasts, in minutes; events are spread evenly over it.
    pub duration_minutes: u32,
    /// How long, in minutes, the writes to one object are spread over.
    pub object_lifetime_minutes: u32,
    /// Seeds every choice; the same spec gives the same bytes.
    pub seed: u64,
    /// Writes every line at the `Metadata` level: no request or response body (what most managed clusters'
    /// audit policies record for most requests).
    pub metadata_only: bool,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        Self {
            events: DEFAULT_EVENTS,
            objects: DEFAULT_OBJECTS,
            read_percent: 10,
            // Aligned to a 30-minute window, the day the falco events were recorded.
            start: Timestamp::constant(1_540_555_200, 0),
            duration_minutes: 180,
            object_lifetime_minutes: 20,
            seed: 0x6b65_6c65_6d65_7472,
            metadata_only: false,
        }
    }
}

impl CorpusSpec {
    /// The default spec with another size.
    pub fn sized(events: u64, objects: u64) -> Self {
        Self {
            events,
            objects,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(u64, u64), CorpusError> {
        if self.events == 0 || self.objects == 0 {
            return Err(CorpusError::Size(
                "events and objects must be at least 1".into(),
            ));
        }
        if self.events >= u64::from(u32::MAX) || self.objects >= u64::from(u32::MAX) {
            return Err(CorpusError::Size(format!(
                "at most {} events and objects",
                u32::MAX - 1
            )));
        }
        if self.read_percent > 100 {
            return Err(CorpusError::Size(format!(
                "read percent {} is over 100",
                self.read_percent
            )));
        }
        if self.duration_minutes == 0 {
            return Err(CorpusError::Size(
                "the duration must be at least a minute".into(),
            ));
        }
        let reads = self.events * u64::from(self.read_percent) / 100;
        let writes = self.events - reads;
        if writes < self.objects {
            return Err(CorpusError::Size(format!(
                "{writes} writes ({} events, {}% reads) cannot create {} objects",
                self.events, self.read_percent, self.objects
            )));
        }
        Ok((reads, writes))
    }
}

/// What [`write_corpus`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorpusSummary {
    /// Lines written.
    pub events: u64,
    /// Of which writes (create, update, patch, delete).
    pub writes: u64,
    /// Of which recorded reads.
    pub reads: u64,
    /// Distinct objects written to.
    pub objects: u64,
    /// Objects whose last event is a delete.
    pub deleted_objects: u64,
    /// Writes that failed with 409 Conflict.
    pub conflicts: u64,
    /// Writes whose event carries the object's body (`RequestResponse`).
    pub writes_with_body: u64,
    /// Objects at least one of whose writes carries the body (what a body cache would hold).
    pub objects_with_body: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The first event's time.
    pub first: Option<Timestamp>,
    /// The last event's time.
    pub last: Option<Timestamp>,
}

/// One recorded write event used as a template.
#[derive(Clone, Debug)]
struct WriteTemplate {
    /// The event as recorded.
    event: Value,
    resource: String,
    /// The recorded object name (or `generateName` without its trailing dash).
    base_name: String,
    /// The recorded namespace; `None` for cluster-scoped objects.
    namespace: Option<String>,
    /// Whether the object's name is only in the response (`generateName`).
    generated_name: bool,
    /// Whether the event carries the object's body.
    has_body: bool,
}

/// The recorded events a corpus is built from.
#[derive(Clone, Debug)]
pub struct Templates {
    creates: Vec<WriteTemplate>,
    /// Recorded updates and patches by resource.
    updates: BTreeMap<String, Vec<WriteTemplate>>,
    /// Recorded deletes by resource.
    deletes: BTreeMap<String, Vec<WriteTemplate>>,
    /// Recorded events no pipeline traces (reads, streaming `exec`/`attach`).
    reads: Vec<Value>,
    /// Files the templates came from.
    files: usize,
}

impl Templates {
    /// Reads the templates from `fixtures` (the folder holding `audit/falco-minikube-2018` and
    /// `audit/audit2rbac-2017/demo.log`). Lines that are not JSON objects (the recordings hold a deliberately odd
    /// file) or not audit events are passed over.
    pub fn load(fixtures: &Path) -> Result<Self, CorpusError> {
        let falco = fixtures.join("audit/falco-minikube-2018");
        let mut files: Vec<PathBuf> = fs::read_dir(&falco)
            .map_err(|source| CorpusError::Read {
                path: falco.clone(),
                source,
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files.push(fixtures.join("audit/audit2rbac-2017/demo.log"));

        let mut templates = Templates {
            creates: Vec::new(),
            updates: BTreeMap::new(),
            deletes: BTreeMap::new(),
            reads: Vec::new(),
            files: files.len(),
        };
        for path in &files {
            let text = fs::read_to_string(path).map_err(|source| CorpusError::Read {
                path: path.clone(),
                source,
            })?;
            for line in text.lines() {
                let Ok(event @ Value::Object(_)) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                templates.add(event);
            }
        }
        if templates.creates.is_empty() {
            return Err(CorpusError::NoTemplates {
                what: "create",
                dir: falco,
            });
        }
        if templates.reads.is_empty() {
            return Err(CorpusError::NoTemplates {
                what: "read",
                dir: fixtures.join("audit"),
            });
        }
        Ok(templates)
    }

    fn add(&mut self, event: Value) {
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        if text("/kind") != Some("Event") || text("/auditID").is_none_or(str::is_empty) {
            // Not an audit event (the recordings hold a deliberately malformed one).
            return;
        }
        let verb = text("/verb").unwrap_or_default().to_owned();
        let complete = text("/stage") == Some("ResponseComplete");
        let succeeded = event
            .pointer("/responseStatus/code")
            .and_then(Value::as_i64)
            .is_some_and(|code| code < 300);
        let resource = text("/objectRef/resource")
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        let subresource = text("/objectRef/subresource").filter(|s| !s.is_empty());
        let writable = matches!(verb.as_str(), "create" | "update" | "patch" | "delete")
            && complete
            && succeeded
            && subresource.is_none()
            && text("/auditID").is_some();
        let (Some(resource), true) = (resource, writable) else {
            self.reads.push(event);
            return;
        };
        let generate_name = text("/responseObject/metadata/generateName")
            .or_else(|| text("/requestObject/metadata/generateName"));
        let (base_name, generated_name) = match (text("/objectRef/name"), generate_name) {
            (Some(name), _) if !name.is_empty() => (name.to_owned(), false),
            (_, Some(generate)) if verb == "create" => {
                (generate.trim_end_matches('-').to_owned(), true)
            }
            _ => {
                self.reads.push(event);
                return;
            }
        };
        let has_body = event
            .pointer("/responseObject/metadata/name")
            .is_some_and(Value::is_string);
        let namespace = text("/objectRef/namespace")
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned);
        let template = WriteTemplate {
            resource,
            base_name,
            namespace,
            generated_name,
            has_body,
            event,
        };
        if verb == "create" {
            self.creates.push(template);
        } else if verb == "delete" {
            self.deletes
                .entry(template.resource.clone())
                .or_default()
                .push(template);
        } else {
            self.updates
                .entry(template.resource.clone())
                .or_default()
                .push(template);
        }
    }

    /// How many recorded creates, updates (and patches), deletes and reads were found, and in how many files.
    pub fn counts(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.creates.len(),
            self.updates.values().map(Vec::len).sum(),
            self.deletes.values().map(Vec::len).sum(),
            self.reads.len(),
            self.files,
        )
    }
}

/// SplitMix64: a small, fast, seedable generator; enough for choosing templates and spreading events.
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number below `bound` (which must be at least 1).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A UUID-shaped text derived from `seed` and `n`.
fn uuid(seed: u64, domain: u64, n: u64) -> String {
    let a = mix(seed ^ mix(domain.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))));
    let b = mix(a ^ 0x5851_f42d_4c95_7f2d);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

const UID_DOMAIN: u64 = 1;
const OWNER_DOMAIN: u64 = 2;
const AUDIT_DOMAIN: u64 = 3;

/// The life of one object in the corpus.
#[derive(Clone, Debug)]
struct ObjectPlan {
    create: u32,
    delete: Option<(String, u32)>,
    events: u32,
    done: u32,
    resource_version: u64,
    body_seen: bool,
}

/// Writes a corpus as specified to `out`, one JSON audit event per line.
///
/// ```
/// use kelemetry_benches::corpus::{CorpusSpec, Templates, fixtures_dir, write_corpus};
/// let Ok(templates) = Templates::load(&fixtures_dir()) else { return }; // no fixtures here
/// let mut out = Vec::new();
/// let summary = write_corpus(&CorpusSpec::sized(1_000, 100), &templates, &mut out).unwrap();
/// assert_eq!(summary.events, 1_000);
/// assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1_000);
/// ```
pub fn write_corpus<W: Write>(
    spec: &CorpusSpec,
    templates: &Templates,
    out: W,
) -> Result<CorpusSummary, CorpusError> {
    let (reads, writes) = spec.validate()?;
    let mut out = CountingWriter {
        inner: out,
        bytes: 0,
    };
    let mut rng = SplitMix(spec.seed);
    let (mut plans, deleted_objects) = plan_objects(spec, templates, writes, &mut rng);
    let schedule = schedule_writes(spec, &plans, writes, &mut rng);

    let mut summary = CorpusSummary {
        events: spec.events,
        writes,
        reads,
        objects: spec.objects,
        deleted_objects,
        ..CorpusSummary::default()
    };
    let mut next_write = schedule.into_iter();
    let mut resource_version: u64 = 1_000_000;
    let mut line = Vec::with_capacity(8 * 1024);
    for i in 0..spec.events {
        let at = event_time(spec, i);
        let is_read = (i + 1) * reads / spec.events > i * reads / spec.events;
        let event = if is_read {
            let template = &templates.reads[rng.below(templates.reads.len() as u64) as usize];
            render_read(template, spec.seed, i, at)
        } else {
            let Some(entry) = next_write.next() else {
                return Err(CorpusError::Size("ran out of scheduled writes".into()));
            };
            let j = entry & 0xffff_ffff;
            let plan = &mut plans[j as usize];
            let rendered =
                render_write(templates, plan, spec.seed, j, i, at, &mut resource_version);
            count_write(&mut summary, plan, &rendered);
            rendered.event
        };
        let event = if spec.metadata_only {
            at_metadata_level(event)
        } else {
            event
        };
        line.clear();
        serde_json::to_writer(&mut line, &event)?;
        line.push(b'\n');
        out.write_all(&line)?;
        summary.first.get_or_insert(at);
        summary.last = Some(at);
    }
    out.flush()?;
    summary.bytes = out.bytes;
    Ok(summary)
}

/// Plans every object's life: its create template, its number of writes and whether (and with which recorded
/// delete) it ends deleted; also how many objects end deleted.
fn plan_objects(
    spec: &CorpusSpec,
    templates: &Templates,
    writes: u64,
    rng: &mut SplitMix,
) -> (Vec<ObjectPlan>, u64) {
    let mut plans = Vec::with_capacity(spec.objects as usize);
    let mut deleted_objects = 0;
    for j in 0..spec.objects {
        let create = rng.below(templates.creates.len() as u64) as u32;
        let events = (writes / spec.objects + u64::from(j < writes % spec.objects)) as u32;
        let resource = &templates.creates[create as usize].resource;
        let delete = match templates.deletes.get(resource) {
            Some(deletes) if events >= 2 && rng.below(100) < DELETED_PERCENT => {
                deleted_objects += 1;
                Some((resource.clone(), rng.below(deletes.len() as u64) as u32))
            }
            _ => None,
        };
        plans.push(ObjectPlan {
            create,
            delete,
            events,
            done: 0,
            resource_version: 0,
            body_seen: false,
        });
    }
    (plans, deleted_objects)
}

/// The order of all writes, each entry `position << 32 | object index`, sorted: each object's writes are spread
/// over its lifetime, objects starting evenly over the whole log.
fn schedule_writes(
    spec: &CorpusSpec,
    plans: &[ObjectPlan],
    writes: u64,
    rng: &mut SplitMix,
) -> Vec<u64> {
    let lifetime = (writes * u64::from(spec.object_lifetime_minutes)
        / u64::from(spec.duration_minutes))
    .clamp(1, writes);
    let mut schedule = Vec::with_capacity(writes as usize);
    for (j, plan) in plans.iter().enumerate() {
        let j = j as u64;
        let start = j * (writes - lifetime) / spec.objects;
        for _ in 0..plan.events {
            let position = start + rng.below(lifetime);
            schedule.push((position << 32) | j);
        }
    }
    schedule.sort_unstable();
    schedule
}

/// When the `i`-th event happens: events are spread evenly over the spec's duration.
fn event_time(spec: &CorpusSpec, i: u64) -> Timestamp {
    let duration_us = i64::from(spec.duration_minutes) * 60 * 1_000_000;
    let offset_us = (i128::from(duration_us) * i128::from(i) / i128::from(spec.events)) as i64;
    spec.start
        .saturating_add(SignedDuration::from_micros(offset_us))
        .unwrap_or(spec.start)
}

/// Counts a rendered write of the object `plan` in the summary.
fn count_write(summary: &mut CorpusSummary, plan: &mut ObjectPlan, rendered: &RenderedWrite) {
    if rendered.has_body {
        summary.writes_with_body += 1;
        if !plan.body_seen {
            plan.body_seen = true;
            summary.objects_with_body += 1;
        }
    }
    if rendered.conflict {
        summary.conflicts += 1;
    }
}

/// Writes a corpus into a new temporary file (in the system's temporary folder, removed when the handle drops).
pub fn write_corpus_to_temp(
    spec: &CorpusSpec,
    templates: &Templates,
) -> Result<(tempfile::NamedTempFile, CorpusSummary), CorpusError> {
    let file = tempfile::Builder::new()
        .prefix("kelemetry-bench-audit-")
        .suffix(".log")
        .tempfile()?;
    let summary = write_corpus(
        spec,
        templates,
        BufWriter::with_capacity(1 << 20, file.as_file()),
    )?;
    Ok((file, summary))
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The event as the `Metadata` level records it: without its bodies.
fn at_metadata_level(mut event: Value) -> Value {
    if let Some(fields) = event.as_object_mut() {
        fields.remove("requestObject");
        fields.remove("responseObject");
        fields.insert("level".to_owned(), Value::from("Metadata"));
    }
    event
}

fn render_read(template: &Value, seed: u64, i: u64, at: Timestamp) -> Value {
    let mut event = template.clone();
    set_times(&mut event, at);
    set_str(&mut event, "auditID", uuid(seed, AUDIT_DOMAIN, i));
    event
}

struct RenderedWrite {
    event: Value,
    has_body: bool,
    conflict: bool,
}

/// Renders the next write of the object `plan` (the `j`-th object) as the `i`-th event of the log: its create
/// first, its recorded delete last if it has one, updates and patches between.
#[allow(clippy::too_many_arguments)]
fn render_write(
    templates: &Templates,
    plan: &mut ObjectPlan,
    seed: u64,
    j: u64,
    i: u64,
    at: Timestamp,
    resource_version: &mut u64,
) -> RenderedWrite {
    let create = &templates.creates[plan.create as usize];
    let sequence = plan.done;
    plan.done += 1;
    let identity = Identity::new(create, seed, j);

    let last = sequence + 1 == plan.events;
    let delete = plan
        .delete
        .as_ref()
        .filter(|_| last)
        .and_then(|(resource, index)| templates.deletes.get(resource)?.get(*index as usize));

    let (mut event, has_body, conflict) = if sequence == 0 {
        let event = render_create(create, plan, &identity, at, resource_version);
        (event, create.has_body, false)
    } else if let Some(delete) = delete {
        let event = render_delete(delete, &identity, at, resource_version);
        (event, delete.has_body, false)
    } else {
        render_update(
            templates,
            plan,
            &identity,
            sequence,
            i,
            at,
            resource_version,
        )
    };
    set_times(&mut event, at);
    set_str(&mut event, "auditID", uuid(seed, AUDIT_DOMAIN, i));
    RenderedWrite {
        event,
        has_body,
        conflict,
    }
}

/// Who one object of the corpus is: what the recorded events are varied with to be about it.
struct Identity {
    name: String,
    /// `None` for cluster-scoped objects.
    namespace: Option<String>,
    uid: String,
    /// Which shared owner (ReplicaSet) the object has.
    owner_group: u64,
    seed: u64,
    /// Where its creates are sent: the recorded collection URI, in the object's namespace.
    collection_uri: String,
}

impl Identity {
    /// The identity of the `j`-th object, born from the `create` template.
    fn new(create: &WriteTemplate, seed: u64, j: u64) -> Self {
        let namespace = create
            .namespace
            .as_ref()
            .map(|ns| format!("{ns}-{}", j % NAMESPACE_SPREAD));
        let uri = create
            .event
            .get("requestURI")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let collection_uri = match (&create.namespace, &namespace) {
            (Some(old), Some(new)) => uri.replace(
                &format!("/namespaces/{old}/"),
                &format!("/namespaces/{new}/"),
            ),
            _ => uri.to_owned(),
        };
        Self {
            name: format!("{}-{j:05x}", create.base_name),
            namespace,
            uid: uuid(seed, UID_DOMAIN, j),
            owner_group: j / PODS_PER_OWNER,
            seed,
            collection_uri,
        }
    }

    /// Where its updates, patches and delete are sent.
    fn object_uri(&self) -> String {
        format!("{}/{}", self.collection_uri, self.name)
    }

    /// Gives a recorded object body this object's identity, at `resource_version`.
    fn vary(&self, body: &mut Value, resource_version: u64, at: Timestamp) {
        vary_body(
            body,
            &self.name,
            self.namespace.as_deref(),
            &self.uid,
            resource_version,
            self.seed,
            self.owner_group,
            at,
        );
    }
}

/// The object's create: the recorded one, with a new resource version.
fn render_create(
    create: &WriteTemplate,
    plan: &mut ObjectPlan,
    identity: &Identity,
    at: Timestamp,
    resource_version: &mut u64,
) -> Value {
    let mut event = create.event.clone();
    *resource_version += 1;
    plan.resource_version = *resource_version;
    set_str(&mut event, "requestURI", identity.collection_uri.clone());
    if let Some(object_ref) = event.get_mut("objectRef").and_then(Value::as_object_mut) {
        if !create.generated_name {
            object_ref.insert("name".into(), identity.name.clone().into());
        }
        if let Some(ns) = &identity.namespace {
            object_ref.insert("namespace".into(), ns.clone().into());
        }
    }
    for body in ["requestObject", "responseObject"] {
        if let Some(body) = event.get_mut(body) {
            // A `generateName` request has no name, and keeps none: only the response names the object.
            identity.vary(body, plan.resource_version, at);
        }
    }
    event
}

/// The object's delete, from a recorded delete of its resource; a `Status` response names the object.
fn render_delete(
    delete: &WriteTemplate,
    identity: &Identity,
    at: Timestamp,
    resource_version: &mut u64,
) -> Value {
    let mut event = delete.event.clone();
    set_str(&mut event, "requestURI", identity.object_uri());
    if let Some(object_ref) = event.get_mut("objectRef").and_then(Value::as_object_mut) {
        object_ref.insert("name".into(), identity.name.clone().into());
        match &identity.namespace {
            Some(ns) => object_ref.insert("namespace".into(), ns.clone().into()),
            None => object_ref.remove("namespace"),
        };
    }
    *resource_version += 1;
    if let Some(body) = event.get_mut("responseObject") {
        if body.get("kind").and_then(Value::as_str) == Some("Status") {
            if let Some(details) = body.get_mut("details").and_then(Value::as_object_mut) {
                details.insert("name".into(), identity.name.clone().into());
                details.insert("uid".into(), identity.uid.clone().into());
            }
        } else {
            identity.vary(body, *resource_version, at);
        }
    }
    event
}

/// An update or patch (the `sequence`-th write of the object, the `i`-th event): a recorded one of this resource
/// for every other patch when there is one, else one derived from the create; about one in
/// [`CONFLICT_EVERY`] fails with a 409 Conflict and leaves the resource version as it was. Also tells whether
/// the event carries the object's body, and whether it is a conflict.
fn render_update(
    templates: &Templates,
    plan: &mut ObjectPlan,
    identity: &Identity,
    sequence: u32,
    i: u64,
    at: Timestamp,
    resource_version: &mut u64,
) -> (Value, bool, bool) {
    let create = &templates.creates[plan.create as usize];
    let verb = if sequence % 2 == 1 { "patch" } else { "update" };
    let recorded = templates
        .updates
        .get(&create.resource)
        .filter(|_| sequence % 4 == 3)
        .and_then(|updates| updates.get(sequence as usize / 4 % updates.len()));
    let template = recorded.unwrap_or(create);
    let mut event = template.event.clone();
    set_str(&mut event, "verb", verb.to_owned());
    set_str(&mut event, "requestURI", identity.object_uri());
    let conflict = mix(identity.seed ^ i).is_multiple_of(CONFLICT_EVERY);
    if let Some(object_ref) = event.get_mut("objectRef").and_then(Value::as_object_mut) {
        object_ref.insert("name".into(), identity.name.clone().into());
        if let Some(ns) = &identity.namespace {
            object_ref.insert("namespace".into(), ns.clone().into());
        }
        if verb == "update" {
            object_ref.insert(
                "resourceVersion".into(),
                plan.resource_version.to_string().into(),
            );
        }
    }
    let based_on = plan.resource_version;
    if !conflict {
        *resource_version += 1;
        plan.resource_version = *resource_version;
    }
    let revision = Value::from(sequence.to_string());
    if let Some(body) = event.get_mut("requestObject") {
        identity.vary(body, based_on, at);
        set_label(body, revision.clone());
    }
    let mut has_body = false;
    if conflict {
        set_conflict(&mut event, &create.resource, &identity.name);
    } else {
        if let Some(status) = event
            .get_mut("responseStatus")
            .and_then(Value::as_object_mut)
        {
            status.insert("code".into(), 200.into());
        }
        if let Some(body) = event.get_mut("responseObject") {
            identity.vary(body, plan.resource_version, at);
            set_label(body, revision);
            has_body = template.has_body;
        }
    }
    (event, has_body, conflict)
}

/// Makes a write fail with 409 Conflict: no response body, a `Failure` status.
fn set_conflict(event: &mut Value, resource: &str, name: &str) {
    if let Some(event) = event.as_object_mut() {
        event.remove("responseObject");
        event.insert(
            "responseStatus".into(),
            json!({
                "metadata": {},
                "status": "Failure",
                "reason": "Conflict",
                "code": 409,
                "message": format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please \
                     apply your changes to the latest version and try again",
                ),
            }),
        );
    }
}

/// Gives a recorded object body this object's identity.
#[allow(clippy::too_many_arguments)]
fn vary_body(
    body: &mut Value,
    name: &str,
    namespace: Option<&str>,
    uid: &str,
    resource_version: u64,
    seed: u64,
    owner_group: u64,
    at: Timestamp,
) {
    let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let recorded_name = meta.contains_key("name");
    let response = meta.contains_key("uid");
    if recorded_name || response {
        meta.insert("name".into(), name.into());
    }
    if let Some(ns) = namespace
        && (meta.contains_key("namespace") || response)
    {
        meta.insert("namespace".into(), ns.into());
    }
    if response {
        meta.insert("uid".into(), uid.into());
        meta.insert(
            "resourceVersion".into(),
            resource_version.to_string().into(),
        );
        if let Some(link) = meta.get("selfLink").and_then(Value::as_str) {
            let collection = link.rsplit_once('/').map_or(link, |(head, _)| head);
            let collection = match (namespace, collection.split_once("/namespaces/")) {
                (Some(ns), Some((head, tail))) => {
                    let rest = tail.split_once('/').map_or("", |(_, rest)| rest);
                    format!("{head}/namespaces/{ns}/{rest}")
                }
                _ => collection.to_owned(),
            };
            meta.insert("selfLink".into(), format!("{collection}/{name}").into());
        }
        if meta.contains_key("creationTimestamp") {
            meta.insert(
                "creationTimestamp".into(),
                Timestamp::from_second(at.as_second())
                    .unwrap_or(at)
                    .to_string()
                    .into(),
            );
        }
    }
    if let Some(Value::Array(owners)) = meta.get_mut("ownerReferences") {
        for owner in owners {
            if let Some(owner) = owner.as_object_mut() {
                let owner_name = owner.get("name").and_then(Value::as_str).unwrap_or("owner");
                let varied = format!("{owner_name}-{owner_group:04x}");
                owner.insert("name".into(), varied.into());
                owner.insert("uid".into(), uuid(seed, OWNER_DOMAIN, owner_group).into());
            }
        }
    }
}

fn set_label(body: &mut Value, revision: Value) {
    let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(REVISION_LABEL.into(), revision);
    }
}

fn set_str(event: &mut Value, field: &str, value: String) {
    if let Some(event) = event.as_object_mut() {
        event.insert(field.into(), value.into());
    }
}

/// Sets the event's timestamps: received at `at`, completed 3 ms later; second-precision ones truncated.
fn set_times(event: &mut Value, at: Timestamp) {
    let Some(event) = event.as_object_mut() else {
        return;
    };
    let seconds = Timestamp::from_second(at.as_second()).unwrap_or(at);
    let done = at.checked_add(SignedDuration::from_millis(3)).unwrap_or(at);
    event.insert("requestReceivedTimestamp".into(), at.to_string().into());
    event.insert("stageTimestamp".into(), done.to_string().into());
    if event.contains_key("timestamp") {
        event.insert("timestamp".into(), seconds.to_string().into());
    }
    if let Some(meta) = event.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.contains_key("creationTimestamp")
    {
        meta.insert("creationTimestamp".into(), seconds.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use kelemetry_core::audit::{AuditOutcome, map_event, parse_document};
    use kelemetry_core::{ChangeKind, Windowing};

    use super::*;

    /// The templates of the shared fixtures; `None` (skipped) without them, unless they are required.
    fn templates() -> Option<Templates> {
        kelemetry_testkit::fixture("audit")?;
        Some(Templates::load(&fixtures_dir()).expect("the recorded audit events load"))
    }

    #[test]
    fn rejects_impossible_sizes() {
        let Some(templates) = templates() else { return };
        let err = write_corpus(&CorpusSpec::sized(100, 200), &templates, io::sink()).unwrap_err();
        assert!(
            err.to_string().contains("cannot create 200 objects"),
            "{err}"
        );
        let err = write_corpus(&CorpusSpec::sized(0, 0), &templates, io::sink()).unwrap_err();
        assert!(matches!(err, CorpusError::Size(_)));
    }

    #[test]
    fn missing_fixtures_are_named() {
        let err = Templates::load(Path::new("/nonexistent-fixtures")).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent-fixtures/audit/falco-minikube-2018")
        );
    }

    #[test]
    fn corpus_is_deterministic_and_maps_to_the_planned_objects() {
        let Some(templates) = templates() else { return };
        let (creates, updates, deletes, reads, _) = templates.counts();
        assert!(
            creates >= 20 && updates >= 1 && deletes >= 5 && reads >= 30,
            "{creates} {updates} {deletes} {reads}"
        );
        let spec = CorpusSpec::sized(20_000, 2_000);
        let mut first = Vec::new();
        let summary = write_corpus(&spec, &templates, &mut first).unwrap();
        let mut second = Vec::new();
        write_corpus(&spec, &templates, &mut second).unwrap();
        assert!(first == second, "the same spec gives the same bytes");
        assert_eq!(summary.bytes, first.len() as u64);
        assert_eq!(summary.reads, 2_000);
        assert!(
            summary.conflicts > 0 && summary.writes_with_body > 0 && summary.deleted_objects > 0
        );

        let windowing = Windowing::default();
        let mut objects = HashSet::new();
        let mut object_windows = HashSet::new();
        let mut windows = BTreeSet::new();
        let mut audit_ids = HashSet::new();
        let (mut activities, mut skipped, mut creates_seen, mut deletes_seen) = (0, 0, 0, 0);
        let mut last_time = None;
        for line in std::str::from_utf8(&first).unwrap().lines() {
            let events = parse_document(line.as_bytes()).expect("every line is an audit event");
            for event in events {
                assert!(
                    audit_ids.insert(event.audit_id.clone()),
                    "audit ids are unique"
                );
                let time = event.start_time().unwrap();
                assert!(last_time.is_none_or(|last| last <= time), "time advances");
                last_time = Some(time);
                match map_event(event, "bench").expect("every event maps") {
                    AuditOutcome::Activity(activity) => {
                        activities += 1;
                        let window = windowing.window_of(activity.start);
                        windows.insert(window.start_secs());
                        object_windows.insert((activity.object.key().clone(), window.start_secs()));
                        objects.insert(activity.object.key().clone());
                        match activity.change.as_ref().map(|c| c.kind) {
                            Some(ChangeKind::Create) => creates_seen += 1,
                            Some(ChangeKind::Delete) => deletes_seen += 1,
                            _ => {}
                        }
                    }
                    AuditOutcome::Skipped(_) => skipped += 1,
                }
            }
        }
        assert_eq!(activities, summary.writes);
        assert_eq!(skipped, summary.reads);
        assert_eq!(
            objects.len() as u64,
            spec.objects,
            "every object is distinct"
        );
        assert_eq!(creates_seen, spec.objects);
        assert_eq!(deletes_seen, summary.deleted_objects);
        assert!(
            windows.len() >= 6,
            "spread over several windows: {windows:?}"
        );
        let per_object = object_windows.len() as f64 / objects.len() as f64;
        assert!(
            (1.0..2.0).contains(&per_object),
            "object-windows per object: {per_object}"
        );
    }
}
