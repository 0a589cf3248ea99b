//! Declarative linking rules: "for objects of this group/resource (optionally matching a label selector), the
//! related object is found at this path, by this label, in this annotation, or in this reference field", with a
//! role and a class.
//!
//! Rules are written in YAML, validated when loaded (every error says the file, line and column, the rule's number
//! and name, and what is wrong), and each rule becomes one [`RuleLinker`]. Paths are JSONPath (RFC 9535, through
//! the `serde_json_path` crate) evaluated over the object's body.
//!
//! ```yaml
//! rules:
//!   - name: endpointslices→services
//!     match:
//!       group: discovery.k8s.io
//!       resource: endpointslices
//!       labelSelector:
//!         matchExpressions: [{key: kubernetes.io/service-name, operator: Exists}]
//!     target:
//!       group: ""
//!       resource: services
//!       name: {label: kubernetes.io/service-name}
//!     role: parent         # the role of the target, seen from the matched object
//!     class: endpoints
//! ```
//!
//! A rule is written from the side that holds the reference (the EndpointSlice carries the label that names the
//! Service), and the pipeline writes the link both ways, so the Service's trace shows its slices as children.
//!
//! The schema, field by field:
//!
//! | key | meaning |
//! |---|---|
//! | `name` | optional; default `<match resource>→<target>`. The link's dedup id and the name in errors. |
//! | `match.group` | optional; absent matches any group, `""` the core group |
//! | `match.resource` | required; the lowercase plural, or `"*"` for every resource |
//! | `match.labelSelector` | optional; Kubernetes' `matchLabels` and `matchExpressions` (`In`, `NotIn`, `Exists`, `DoesNotExist`) |
//! | `match.when` / `match.unless` | optional JSONPath; the rule applies only when it finds something / nothing |
//! | `target.group`, `target.resource` | the related object's group (required, `""` for core) and resource |
//! | `target.name` | where its name is: `{path: $.spec.x}` (a bare `$...` string is a path too), `{label: k}` or `{annotation: k}`; a path may find several names (one link each) |
//! | `target.namespace` | optional, same forms; default the matched object's namespace; dropped when the target is cluster-scoped |
//! | `target.cluster` | optional, same forms; default the matched object's cluster |
//! | `target.version` | optional; default the preferred version the resource map knows |
//! | `target.scope` | optional `namespaced` or `cluster`; default what the resource map knows |
//! | `target.reference` | instead of group/resource/name: a JSONPath to object references (`kind`, `name`, optional `apiVersion` and `namespace`), resolved to resources through the [`ResourceMap`] |
//! | `role` | `parent` or `child`: the target's role relative to the matched object |
//! | `class` | optional; the grouping span between parent and child in the tree views |

mod load;
mod selector;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kelemetry_core::body::Body;
use kelemetry_core::resource_map::{ResourceMap, ResourceScope};
use kelemetry_core::{
    Link, LinkError, LinkRole, Linker, Object, ObjectKey, ObjectLookup, ObjectRef, SmolStr,
};
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::body::{annotation_of, body_of, label_of};
use crate::link_error;
pub use selector::{LabelSelector, SelectorOperator, SelectorRequirement};

/// The default rule set, as YAML (also in the repository as `kelemetry-linkers/rules/default.yaml`).
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.yaml");

/// The name errors give the embedded [`DEFAULT_RULES`].
const DEFAULT_RULES_ORIGIN: &str = "default.yaml";

/// Where something is in a rule file: file (or origin name), line and column, both counted from 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The file, or the name given to the text.
    pub origin: Arc<str>,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// One thing wrong in a rule file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {}{message}", rule_prefix(*.rule_number, .rule_name.as_deref()))]
pub struct RuleError {
    /// Where: the offending value when there is one, else the rule.
    pub position: Position,
    /// The rule's number in the file (from 1), when the error is inside a rule.
    pub rule_number: Option<usize>,
    /// The rule's name, when the error is inside a rule.
    pub rule_name: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn rule_prefix(number: Option<usize>, name: Option<&str>) -> String {
    match (number, name) {
        (Some(number), Some(name)) => format!("rule {number} ({name}): "),
        (Some(number), None) => format!("rule {number}: "),
        _ => String::new(),
    }
}

/// A rule file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleSetError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has mistakes; all of them, in file order.
    #[error("{}", list_errors(.0))]
    Invalid(Vec<RuleError>),
}

fn list_errors(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A compiled JSONPath with its text.
#[derive(Clone, Debug)]
struct Query {
    text: String,
    path: JsonPath,
}

/// Where a value (a name, a namespace, a cluster) is found in the matched object's body.
#[derive(Clone, Debug)]
enum ValueSource {
    Path(Query),
    Label(String),
    Annotation(String),
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(query) => write!(f, "path {}", query.text),
            Self::Label(key) => write!(f, "label {key}"),
            Self::Annotation(key) => write!(f, "annotation {key}"),
        }
    }
}

impl ValueSource {
    /// The non-empty names found, or what is wrong with what was found.
    fn values<'b>(&self, body: &'b Value) -> Result<Vec<&'b str>, String> {
        let found = match self {
            Self::Path(query) => {
                let mut found = Vec::new();
                for node in query.path.query(body).all() {
                    match node {
                        Value::String(text) => found.push(text.as_str()),
                        Value::Null => {}
                        other => {
                            return Err(format!(
                                "{self} found {} where a name was expected",
                                describe_json(other)
                            ));
                        }
                    }
                }
                found
            }
            Self::Label(key) => label_of(body, key).into_iter().collect(),
            Self::Annotation(key) => annotation_of(body, key).into_iter().collect(),
        };
        let found: Vec<&str> = found.into_iter().filter(|v| !v.is_empty()).collect();
        if let Some(bad) = found.iter().find(|v| v.contains('/')) {
            return Err(format!("{self} found {bad:?}, which is not a name ('/')"));
        }
        Ok(found)
    }
}

fn describe_json(value: &Value) -> String {
    let text = value.to_string();
    let kind = match value {
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        Value::String(_) | Value::Null => "a value",
    };
    if text.len() > 60 {
        kind.to_owned()
    } else {
        format!("{kind} {text}")
    }
}

/// Which objects a rule applies to.
#[derive(Clone, Debug)]
struct ObjectMatch {
    group: Option<String>,
    /// `None` for every resource.
    resource: Option<String>,
    selector: Option<LabelSelector>,
    when: Option<Query>,
    unless: Option<Query>,
}

impl ObjectMatch {
    fn applies_to(&self, key: &ObjectKey) -> bool {
        self.group.as_ref().is_none_or(|g| *g == key.group)
            && self.resource.as_ref().is_none_or(|r| *r == key.resource)
    }

    /// Whether the labels and the `when`/`unless` conditions admit `body`. A rule with a name source asks this
    /// after finding a name, so that a rule for every resource (`"*"`) costs one lookup on most objects.
    fn admits(&self, body: &Value) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(body))
            && self
                .when
                .as_ref()
                .is_none_or(|q| !q.path.query(body).is_empty())
            && self
                .unless
                .as_ref()
                .is_none_or(|q| q.path.query(body).is_empty())
    }
}

/// How the related object is found.
#[derive(Clone, Debug)]
enum Target {
    /// A fixed group and resource; the name (and optionally namespace, cluster) from the body.
    Named {
        group: String,
        resource: String,
        version: Option<String>,
        scope: Option<ResourceScope>,
        name: ValueSource,
        namespace: Option<ValueSource>,
        cluster: Option<ValueSource>,
    },
    /// Object references (`apiVersion`, `kind`, `name`, `namespace`) at a path.
    Reference {
        path: Query,
        cluster: Option<ValueSource>,
    },
}

/// One linking rule, validated. Build rule sets with [`RuleSet::parse`] or [`RuleSet::read`].
#[derive(Clone, Debug)]
pub struct Rule {
    number: usize,
    name: String,
    position: Position,
    matcher: ObjectMatch,
    target: Target,
    role: LinkRole,
    class: String,
}

impl Rule {
    /// The rule's number in its file, from 1.
    pub fn number(&self) -> usize {
        self.number
    }

    /// The rule's name: the link's dedup id, and the name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the rule starts in its file.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The role of the related object, relative to the matched one.
    pub fn role(&self) -> LinkRole {
        self.role
    }

    /// The class of the links the rule makes.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// Whether the rule looks at objects with this key (group and resource; the label selector and conditions
    /// need the body).
    pub fn applies_to(&self, key: &ObjectKey) -> bool {
        self.matcher.applies_to(key)
    }

    /// The parts of a body the rule reads, as paths of field names from the top, none a prefix of another:
    /// where its JSONPath queries start (their `$.name.name...` before anything else), and the labels and
    /// annotations its label selector and its label and annotation sources look up. `None` when a query may read
    /// anywhere (`$..x`, `$.*`, `$['x']`, a `$` not followed by a plain name).
    fn reads(&self) -> Option<Vec<Vec<String>>> {
        let mut paths = Vec::new();
        let add_source = |source: Option<&ValueSource>, paths: &mut Vec<Vec<String>>| {
            if let Some(source) = source {
                paths.extend(source_reads(source)?);
            }
            Some(())
        };
        let matcher = &self.matcher;
        if let Some(selector) = &matcher.selector {
            let keys = selector.match_labels.iter().map(|(key, _)| key);
            let keys = keys.chain(selector.match_expressions.iter().map(|r| &r.key));
            paths.extend(keys.map(|key| metadata_path("labels", key)));
        }
        for query in [&matcher.when, &matcher.unless].into_iter().flatten() {
            paths.extend(query_starts(&query.text)?);
        }
        match &self.target {
            Target::Named {
                name,
                namespace,
                cluster,
                ..
            } => {
                add_source(Some(name), &mut paths)?;
                add_source(namespace.as_ref(), &mut paths)?;
                add_source(cluster.as_ref(), &mut paths)?;
            }
            Target::Reference { path, cluster } => {
                paths.extend(query_starts(&path.text)?);
                add_source(cluster.as_ref(), &mut paths)?;
            }
        }
        // The shorter of two paths where one starts the other: its value holds the other's.
        paths.sort_by_key(Vec::len);
        let mut kept: Vec<Vec<String>> = Vec::new();
        for path in paths {
            if !kept.iter().any(|shorter| path.starts_with(shorter)) {
                kept.push(path);
            }
        }
        Some(kept)
    }

    /// The links of `object`, whose body is `body`, or what is wrong with the body.
    fn links(
        &self,
        object: &Object,
        body: &Value,
        resources: &ResourceMap,
    ) -> Result<Vec<Link>, String> {
        let key = object.key();
        let mut links = Vec::new();
        match &self.target {
            Target::Named {
                group,
                resource,
                version,
                scope,
                name,
                namespace,
                cluster,
            } => {
                // Names first: they are cheap to look for and usually absent.
                let names = name.values(body);
                if matches!(&names, Ok(found) if found.is_empty()) || !self.matcher.admits(body) {
                    return Ok(links);
                }
                let names = names?;
                let cluster = first_or(cluster.as_ref(), body, &key.cluster)?;
                let scope = scope.or_else(|| resources.scope_of(group, resource));
                let namespace = if scope == Some(ResourceScope::Cluster) {
                    String::new()
                } else {
                    first_or(namespace.as_ref(), body, &key.namespace)?
                };
                let version = match version {
                    Some(version) => version.clone(),
                    None => preferred_version(resources, group, resource),
                };
                for name in names {
                    let target = ObjectKey::new(&cluster, group, resource, &namespace, name);
                    links.push(self.link(ObjectRef::new(target, version.clone(), None)));
                }
            }
            Target::Reference { path, cluster } => {
                if !self.matcher.admits(body) {
                    return Ok(links);
                }
                let cluster = first_or(cluster.as_ref(), body, &key.cluster)?;
                for node in path.path.query(body).all() {
                    let target = reference(node, &path.text, resources)?;
                    let info = &target.info;
                    let namespace = target.namespace.unwrap_or(&key.namespace);
                    let target_key = info.object_key(&cluster, namespace, target.name);
                    links.push(self.link(ObjectRef::new(
                        target_key,
                        info.version.clone(),
                        target.uid.map(SmolStr::new),
                    )));
                }
            }
        }
        Ok(links)
    }

    fn link(&self, object: ObjectRef) -> Link {
        Link::new(object, self.role)
            .with_class(self.class.clone())
            .with_dedup_id(self.name.clone())
    }
}

impl fmt::Display for Rule {
    /// One line: what the rule matches and what it links to.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.matcher;
        let resource = m.resource.as_deref().unwrap_or("*");
        match m.group.as_deref() {
            None | Some("") => write!(f, "{resource}")?,
            Some(group) => write!(f, "{resource}.{group}")?,
        }
        if m.selector.is_some() {
            write!(f, " with labels")?;
        }
        if let Some(when) = &m.when {
            write!(f, " when {}", when.text)?;
        }
        if let Some(unless) = &m.unless {
            write!(f, " unless {}", unless.text)?;
        }
        match &self.target {
            Target::Named {
                group,
                resource,
                name,
                ..
            } => {
                let target = if group.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}.{group}")
                };
                write!(f, " → {target} named by {name}")?;
            }
            Target::Reference { path, .. } => {
                write!(f, " → the object referenced at {}", path.text)?
            }
        }
        write!(f, ", as {}", self.role.as_str())?;
        if !self.class.is_empty() {
            write!(f, " (class {})", self.class)?;
        }
        Ok(())
    }
}

/// `metadata.<map>.<key>`, as a path of names.
fn metadata_path(map: &str, key: &str) -> Vec<String> {
    vec!["metadata".to_owned(), map.to_owned(), key.to_owned()]
}

/// Where `source` reads a body (see [`Rule::reads`]).
fn source_reads(source: &ValueSource) -> Option<Vec<Vec<String>>> {
    match source {
        ValueSource::Path(query) => query_starts(&query.text),
        ValueSource::Label(key) => Some(vec![metadata_path("labels", key)]),
        ValueSource::Annotation(key) => Some(vec![metadata_path("annotations", key)]),
    }
}

/// Where the JSONPath query `text` reads a body: for each `$` in it (the query itself, and any absolute query
/// in its filters), the field names that follow it in the shorthand `.name` form, up to the first segment of
/// another kind. The query reads nothing of the body outside the values at those paths. `None` when a `$` is not
/// followed by at least one such name, or a name runs on into characters beyond ASCII (read as the whole body).
/// A `$` inside a string literal of a filter counts too, which can only add a path.
fn query_starts(text: &str) -> Option<Vec<Vec<String>>> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    for (dollar, _) in text.match_indices('$') {
        let mut at = dollar + 1;
        let mut path = Vec::new();
        while bytes.get(at) == Some(&b'.') {
            let start = at + 1;
            let first = bytes.get(start);
            if !first.is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
                // `..`, `.*` or the end: the path stops before it.
                break;
            }
            let mut end = start;
            while bytes
                .get(end)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                end += 1;
            }
            if bytes.get(end).is_some_and(|b| !b.is_ascii()) {
                return None;
            }
            path.push(text.get(start..end)?.to_owned());
            at = end;
        }
        if path.is_empty() {
            return None;
        }
        starts.push(path);
    }
    Some(starts)
}

/// A body holding only the values at `paths` (which [`Rule::reads`] gave) of `body`, each parsed alone: what the
/// rule's queries find in it is what they find in the whole body.
fn body_of_paths(body: &Body, paths: &[Vec<String>]) -> Value {
    let mut root = serde_json::Map::new();
    for path in paths {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        let (Some(value), Some((last, parents))) = (body.field_at(&names), path.split_last())
        else {
            continue;
        };
        // Below a value another path put there, the value is the body's already; where the way is not an
        // object, the path is not in the body either.
        if let Some(object) = object_at(&mut root, parents) {
            object.insert(last.clone(), value.into_owned());
        }
    }
    Value::Object(root)
}

/// The object at `names` below `object`, made empty where missing; `None` if a value there is not an object.
fn object_at<'m>(
    mut object: &'m mut serde_json::Map<String, Value>,
    names: &[String],
) -> Option<&'m mut serde_json::Map<String, Value>> {
    for name in names {
        object = object
            .entry(name.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()))
            .as_object_mut()?;
    }
    Some(object)
}

/// The first value of `source`, else `default`.
fn first_or(source: Option<&ValueSource>, body: &Value, default: &str) -> Result<String, String> {
    Ok(match source {
        Some(source) => source
            .values(body)?
            .first()
            .map_or_else(|| default.to_owned(), |v| (*v).to_owned()),
        None => default.to_owned(),
    })
}

/// The preferred version of a registered resource, else `""`.
fn preferred_version(resources: &ResourceMap, group: &str, resource: &str) -> String {
    let Some(kind) = resources.kind_of(group, resource) else {
        return String::new();
    };
    // `group/` asks for the registered (preferred) version of the group.
    let api_version = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/")
    };
    resources
        .lookup(&api_version, &kind)
        .map(|info| info.version)
        .unwrap_or_default()
}

struct Reference<'b> {
    info: kelemetry_core::ResourceInfo,
    name: &'b str,
    namespace: Option<&'b str>,
    uid: Option<&'b str>,
}

/// An object reference found at `path`: `kind` and `name` required, `apiVersion`, `namespace` and `uid` optional.
fn reference<'b>(
    node: &'b Value,
    path: &str,
    resources: &ResourceMap,
) -> Result<Reference<'b>, String> {
    let Value::Object(fields) = node else {
        return Err(format!(
            "reference {path} found {} where an object reference was expected",
            describe_json(node)
        ));
    };
    let field = |name: &str| -> Result<Option<&'b str>, String> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) if !text.contains('/') || name == "apiVersion" => {
                Ok(Some(text.as_str()))
            }
            Some(other) => Err(format!(
                "reference {path}: {name} is {}, not a name",
                describe_json(other)
            )),
        }
    };
    let (Some(kind), Some(name)) = (field("kind")?, field("name")?) else {
        return Err(format!(
            "reference {path} lacks kind or name: {}",
            describe_json(node)
        ));
    };
    Ok(Reference {
        info: resources.resolve(field("apiVersion")?.unwrap_or(""), kind),
        name,
        namespace: field("namespace")?,
        uid: field("uid")?,
    })
}

/// A validated list of rules. Each becomes a [`RuleLinker`] ([`RuleSet::linkers`]).
///
/// ```
/// use kelemetry_linkers::RuleSet;
///
/// let rules = RuleSet::parse(
///     "rules:\n  - match: {group: '', resource: persistentvolumeclaims}\n    \
///      target: {group: '', resource: persistentvolumes, name: $.spec.volumeName}\n    role: child\n",
///     "rules.yaml",
/// ).unwrap();
/// assert_eq!(rules.rules()[0].name(), "persistentvolumeclaims→persistentvolumes");
///
/// let err = RuleSet::parse("rules:\n  - match: {resource: pods}\n    role: sibling\n", "rules.yaml").unwrap_err();
/// assert!(err.to_string().contains("rules.yaml:3:11: rule 1 (pods→?): unknown role \"sibling\""), "{err}");
/// ```
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
}

impl RuleSet {
    /// Parses and validates rules from YAML `text`; `origin` (a file name) starts every error's position.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RuleSetError> {
        let rules = load::parse(text, &Arc::from(origin)).map_err(RuleSetError::Invalid)?;
        Ok(Self {
            rules: rules.into_iter().map(Arc::new).collect(),
        })
    }

    /// Reads and validates a rule file.
    pub fn read(path: &Path) -> Result<Self, RuleSetError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuleSetError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The built-in rules ([`DEFAULT_RULES`]): Service to EndpointSlices and Endpoints, PersistentVolumeClaim to
    /// PersistentVolume, Pod to PersistentVolumeClaims and ServiceAccount, Job to CronJob beyond controller owners,
    /// HorizontalPodAutoscaler to its target, Helm release members and revisions to the release.
    pub fn default_rules() -> Self {
        match Self::parse(DEFAULT_RULES, DEFAULT_RULES_ORIGIN) {
            Ok(rules) => rules,
            Err(err) => {
                // Unreachable in a tested build: a unit test parses the embedded file.
                tracing::error!(%err, "the built-in linking rules are invalid; using none");
                Self::default()
            }
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// One linker per rule, resolving kinds with `resources`.
    pub fn linkers(&self, resources: Arc<ResourceMap>) -> Vec<Arc<dyn Linker>> {
        self.rules
            .iter()
            .map(|rule| {
                Arc::new(RuleLinker::new(rule.clone(), resources.clone())) as Arc<dyn Linker>
            })
            .collect()
    }
}

/// The linker of one [`Rule`]. Its name is `rule <name>`; a body that does not fit the rule (a path that finds a
/// number where a name should be...) is a [`LinkError`] that names the object, the rule and its position.
#[derive(Clone, Debug)]
pub struct RuleLinker {
    rule: Arc<Rule>,
    resources: Arc<ResourceMap>,
    label: String,
    /// What of a body the rule reads ([`Rule::reads`]).
    reads: Option<Vec<Vec<String>>>,
    /// What of a body its name source reads, when that is all it needs to find that there is no name.
    name_reads: Option<Vec<Vec<String>>>,
}

impl RuleLinker {
    /// The linker of `rule`, resolving kinds of references with `resources`.
    pub fn new(rule: Arc<Rule>, resources: Arc<ResourceMap>) -> Self {
        let label = format!("rule {}", rule.name);
        let reads = rule.reads();
        let name_reads = match &rule.target {
            Target::Named { name, .. } if reads.is_some() => source_reads(name),
            _ => None,
        };
        Self {
            rule,
            resources,
            label,
            reads,
            name_reads,
        }
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
}

#[async_trait]
impl Linker for RuleLinker {
    fn name(&self) -> &str {
        &self.label
    }

    async fn link(
        &self,
        object: &Object,
        lookup: &dyn ObjectLookup,
    ) -> Result<Vec<Link>, LinkError> {
        if !self.rule.applies_to(object.key()) {
            return Ok(Vec::new());
        }
        let Some(body) = body_of(object, lookup).await else {
            return Ok(Vec::new());
        };
        // Of a body not parsed yet, only what the rule reads is parsed; and first only where the name is, which
        // is usually absent (a rule for every resource, looking for one annotation).
        let partial;
        let value = match &self.reads {
            Some(paths) if !body.is_parsed() => {
                if let (Some(name_paths), Target::Named { name, .. }) =
                    (&self.name_reads, &self.rule.target)
                    && matches!(name.values(&body_of_paths(&body, name_paths)), Ok(found) if found.is_empty())
                {
                    return Ok(Vec::new());
                }
                partial = body_of_paths(&body, paths);
                &partial
            }
            _ => body.value(),
        };
        self.rule
            .links(object, value, &self.resources)
            .map_err(|message| {
                link_error(
                    &self.label,
                    object,
                    format!(
                        "{message} (rule {} at {})",
                        self.rule.number, self.rule.position
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests;
